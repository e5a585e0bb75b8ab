use cache_runtime::cached;

#[cached(key = "user:{id}", value = name, batch = 10, flush_interval = "1s", flush_batch = save_all)]
async fn save_user(id: u64, name: String) -> Result<String, String> {
    let _ = id;
    Ok(name)
}

fn main() {}
