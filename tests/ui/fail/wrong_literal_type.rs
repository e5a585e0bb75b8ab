use cache_runtime::cached;

#[cached(
    key = 42,
    ttl = true,
    jitter = "0.1",
    tags = "users",
    lock = "yes",
    early_refresh = "often",
    version = 1.5,
    strategy = aside,
)]
async fn get_user(id: u64) -> Option<u64> {
    Some(id)
}

fn main() {}
