use cache_runtime::cached;

// `flush_batch` writes a whole batch; its result says only whether that
// worked.
async fn save_all(names: Vec<String>) -> Result<usize, String> {
    Ok(names.len())
}

#[cached(key = "user:{id}", strategy = "behind", value = name, flush_batch = save_all)]
async fn save_user(id: u64, name: String) -> Result<(), String> {
    let _ = (id, name);
    Ok(())
}

fn main() {}
