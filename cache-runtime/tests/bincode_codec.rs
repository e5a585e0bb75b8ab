//! `codec = "bincode"` with the runtime's `bincode` feature on: the codec is
//! let through (without the feature it is a compile error, see the
//! `codec_bincode_without_feature` UI case), and values round-trip in it.
#![cfg(feature = "bincode")]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use cache_runtime::{Cache, Options, cached};

static CACHE: OnceLock<Cache> = OnceLock::new();
static LOADS: AtomicUsize = AtomicUsize::new(0);

fn cache() -> &'static Cache {
    CACHE.get().expect("built first")
}

#[cached(key = "user:{id}", ttl = 60, codec = "bincode", cache = cache())]
async fn name(id: u64) -> Option<String> {
    LOADS.fetch_add(1, Ordering::SeqCst);
    Some(format!("user {id}"))
}

#[tokio::test]
async fn values_round_trip_in_bincode() {
    let built = Cache::builder().memory().build().await.expect("cache");
    CACHE.set(built).ok();
    assert_eq!(name(7).await.as_deref(), Some("user 7"));
    assert_eq!(name(7).await.as_deref(), Some("user 7"));
    assert_eq!(LOADS.load(Ordering::SeqCst), 1, "the second call is a hit");
    let entry = cache()
        .inspect("user:7", &Options::new())
        .await
        .expect("inspect")
        .expect("an entry");
    assert_eq!(entry.codec, "bincode");
}
