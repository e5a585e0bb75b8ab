use cache_runtime::cached;

struct Repo;

impl Repo {
    // The flusher that replays the call has no `self`.
    #[cached(key = "user:{id}", strategy = "behind", value = name)]
    async fn save_user(&self, id: u64, name: String) -> Result<(), String> {
        let _ = (id, name);
        Ok(())
    }
}

// Borrowed arguments cannot be stored; generic ones cannot be replayed.
#[cached(key = "note:{id}", strategy = "behind", value = text)]
async fn save_note<T: Send>(id: u64, text: &str, extra: T) -> Result<(), String> {
    let _ = (id, text, extra);
    Ok(())
}

// The key readers use must be given.
#[cached(strategy = "behind")]
async fn save_count(count: u64) -> Result<(), String> {
    let _ = count;
    Ok(())
}

fn main() {}
