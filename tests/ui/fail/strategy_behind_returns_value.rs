use cache_runtime::cached;

// A write-behind call returns once it is queued: there is no value to return.
#[cached(key = "user:{id}", strategy = "behind", value = name)]
async fn save_user(id: u64, name: String) -> Result<u64, String> {
    let _ = name;
    Ok(id)
}

fn main() {}
