#![deny(warnings)]
#![deny(clippy::all)]

use cache_runtime::{Cache, cached};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
}

#[cached(key = "user:{id}", ttl = 60)]
async fn get_user(id: u64) -> Result<User, String> {
    Err(format!("no user {id} in the source"))
}

// Write-through: the returned value becomes the cached one.
#[cached(key = "user:{id}", ttl = 60, strategy = "through")]
async fn rename(id: u64, name: String) -> Result<User, String> {
    Ok(User { id, name })
}

// Write-behind: with no Redis to queue in (the in-process store), the body
// runs at once and the key is dropped.
static WRITES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[cached(key = "user:{id}", strategy = "behind", value = user, batch = 10, flush_interval = "1s")]
async fn save(id: u64, user: User) -> Result<(), String> {
    let _ = (id, user);
    WRITES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    Ok(())
}

async fn bulk(users: Vec<User>) -> Result<(), String> {
    let _ = users;
    Ok(())
}

#[cached(key = "user:{id}", strategy = "behind", value = user, flush_batch = bulk)]
async fn save_bulk(id: u64, user: User) {
    let _ = (id, user);
}

#[cached(key = "secret:{id}", ttl = 60, encrypt = true)]
async fn secret(id: u64) -> String {
    format!("secret {id}")
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let cache = Cache::builder()
            .memory()
            .encryption_key(1, [7; 32])
            .build()
            .await
            .unwrap()
            .install()
            .unwrap();
        assert!(get_user(1).await.is_err());
        assert_eq!(rename(1, "Ada".into()).await.unwrap().name, "Ada");
        assert_eq!(get_user(1).await.unwrap().name, "Ada", "written through");
        save(2, User { id: 2, name: "Grace".into() }).await.unwrap();
        assert_eq!(WRITES.load(std::sync::atomic::Ordering::SeqCst), 1);
        save_bulk(3, User { id: 3, name: "Edsger".into() }).await;
        assert_eq!(secret(1).await, "secret 1");
        assert_eq!(secret(1).await, "secret 1");
        assert_eq!(cache.stats().hits, 2);
    });
}
