use cache_runtime::cached;

#[cached(key = "user:{idd}", ttl = 60)]
async fn get_user(id: u64, name: String) -> Option<u64> {
    let _ = name;
    Some(id)
}

fn main() {}
