use cache_runtime::cached;

#[cached(key = "user:{id}", tll = 60, colour = "red")]
async fn get_user(id: u64) -> Option<u64> {
    Some(id)
}

fn main() {}
