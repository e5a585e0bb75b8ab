//! Every option of `#[cached]` at once, and each codec.
#![deny(warnings)]
#![deny(clippy::all)]

use cache_runtime::{Cache, cached};

#[cached(
    key = "all:{id}",
    ttl = "1h 30m",
    jitter = 0.2,
    tags = ["all", "all:{id}"],
    strategy = "aside",
    stale = "10m",
    early_refresh = 1.5,
    lock = false,
    cache_none = 60,
    codec = "json",
    version = 2,
)]
async fn everything(id: u64) -> Result<Option<u64>, String> {
    Ok(Some(id))
}

#[cached(
    key = "mp:{id}",
    ttl = 1,
    jitter = 0,
    early_refresh = true,
    lock = true,
    codec = "msgpack"
)]
async fn msgpack(id: u64) -> Option<String> {
    Some(id.to_string())
}

#[cached(
    key = "pc:{id}",
    ttl = "250ms",
    early_refresh = false,
    codec = "postcard",
    version = 1
)]
async fn postcard(id: u64) -> (u64, bool) {
    (id, true)
}

#[cached(key = "cache:{id}", cache = Cache::global())]
async fn explicit_global(id: u64) -> u64 {
    id
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        Cache::builder()
            .memory()
            .build()
            .await
            .unwrap()
            .install()
            .unwrap();
        assert_eq!(everything(1).await.unwrap(), Some(1));
        assert_eq!(everything(1).await.unwrap(), Some(1));
        assert_eq!(msgpack(2).await.as_deref(), Some("2"));
        assert_eq!(msgpack(2).await.as_deref(), Some("2"));
        assert_eq!(postcard(3).await, (3, true));
        assert_eq!(postcard(3).await, (3, true));
        assert_eq!(explicit_global(4).await, 4);
    });
}
