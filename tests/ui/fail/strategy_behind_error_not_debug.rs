use cache_runtime::cached;

// The flusher logs why a replayed call failed: its error must be `Debug`.
pub struct WriteFailed;

#[cached(key = "user:{id}", strategy = "behind", value = name)]
async fn save_user(id: u64, name: String) -> Result<(), WriteFailed> {
    let _ = (id, name);
    Ok(())
}

fn main() {}
