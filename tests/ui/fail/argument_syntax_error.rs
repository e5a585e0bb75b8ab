use cache_runtime::cached;

#[cached(key = "user:{id}" ttl = 60)]
async fn get_user(id: u64) -> Option<u64> {
    Some(id)
}

fn main() {}
