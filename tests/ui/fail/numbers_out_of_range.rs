use cache_runtime::cached;

#[cached(key = "user:{id}", version = 0, early_refresh = 0.0, stale = 0, cache_none = -1)]
async fn get_user(id: u64) -> Option<u64> {
    Some(id)
}

fn main() {}
