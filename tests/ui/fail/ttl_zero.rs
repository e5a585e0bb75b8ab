use cache_runtime::cached;

#[cached(key = "user:{id}", ttl = 0)]
async fn get_user(id: u64) -> Option<u64> {
    Some(id)
}

#[cached(key = "user2:{id}", ttl = "0s")]
async fn get_user2(id: u64) -> Option<u64> {
    Some(id)
}

fn main() {}
