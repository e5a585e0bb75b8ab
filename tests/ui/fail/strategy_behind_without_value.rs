use cache_runtime::cached;

#[cached(key = "user:{id}", strategy = "behind")]
async fn save_user(id: u64, name: String) -> Result<(), String> {
    let _ = (id, name);
    Ok(())
}

#[cached(key = "user:{id}", strategy = "behind", value = nmae)]
async fn save_user2(id: u64, name: String) -> Result<(), String> {
    let _ = (id, name);
    Ok(())
}

fn main() {}
