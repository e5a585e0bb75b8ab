//! The 30-second tour: a cached lookup, a hit, an invalidation, a tag.
//!
//! ```text
//! cargo run --example quickstart                              # in-process store
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example quickstart   # Redis
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_runtime::{Cache, cached, invalidates};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
}

/// Counts how often the "database" is asked.
static DB_READS: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug)]
struct DbError;

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("database error")
    }
}

impl std::error::Error for DbError {}

/// A slow lookup, cached for 30 minutes under `user:{id}` with two tags.
#[cached(key = "user:{id}", ttl = "30m", tags = ["users", "user:{id}"])]
async fn get_user(id: u64) -> Result<User, DbError> {
    DB_READS.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(20)).await; // the database round trip
    Ok(User {
        id,
        name: format!("user {id}"),
    })
}

/// A write: after it succeeds, the user's entry is gone.
#[invalidates(keys = ["user:{id}"])]
async fn rename_user(id: u64, name: &str) -> Result<(), DbError> {
    let _ = (id, name); // the UPDATE would go here
    Ok(())
}

/// A bulk change: every entry tagged "users" misses from now on, in O(1).
#[invalidates(tags = ["users"])]
async fn reload_all_users() -> Result<(), DbError> {
    Ok(())
}

async fn timed<T>(f: impl std::future::Future<Output = T>) -> (T, Duration) {
    let start = Instant::now();
    let out = f.await;
    (out, start.elapsed())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let builder = Cache::builder().prefix("quickstart");
    let builder = match std::env::var("REDIS_URL") {
        Ok(url) => {
            println!("store: Redis at {url}");
            builder.url(url)
        }
        Err(_) => {
            println!("store: in-process (set REDIS_URL to use Redis)");
            builder.memory()
        }
    };
    let cache = builder.build().await?.install()?;
    // Start from a clean slate when a previous run left entries in Redis.
    cache.invalidate_pattern("user:*").await?;

    let (user, miss) = timed(get_user(42)).await;
    println!("first call  -> {:?} (miss, {miss:?})", user?);
    let (user, hit) = timed(get_user(42)).await;
    println!("second call -> {:?} (hit, {hit:?})", user?);

    rename_user(42, "Ada").await?;
    get_user(42).await?;
    println!("after rename_user: loaded again");

    get_user(7).await?;
    reload_all_users().await?;
    get_user(7).await?;
    get_user(42).await?;
    println!("after reload_all_users: both users loaded again");

    let stats = cache.stats();
    println!();
    println!("loader calls : {}", DB_READS.load(Ordering::Relaxed));
    println!("hits         : {}", stats.hits);
    println!("misses       : {}", stats.misses);
    println!("miss latency : {miss:?} (loader sleeps 20 ms)");
    println!("hit latency  : {hit:?}");
    cache.shutdown().await?;
    Ok(())
}
