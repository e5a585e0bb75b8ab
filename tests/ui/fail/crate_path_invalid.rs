use cache_runtime::cached;

#[cached(key = "user:{id}", crate = "not a path")]
async fn get_user(id: u64) -> Option<u64> {
    Some(id)
}

#[cached(key = "user2:{id}", crate = "no_such_crate")]
async fn get_user2(id: u64) -> Option<u64> {
    Some(id)
}

fn main() {}
