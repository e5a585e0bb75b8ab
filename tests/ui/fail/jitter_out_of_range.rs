use cache_runtime::cached;

#[cached(key = "user:{id}", jitter = 1.5)]
async fn get_user(id: u64) -> Option<u64> {
    Some(id)
}

#[cached(key = "user2:{id}", jitter = -0.1)]
async fn get_user2(id: u64) -> Option<u64> {
    Some(id)
}

fn main() {}
