//! The runtime under another name, found through `crate = "..."`.
#![deny(warnings)]
#![deny(clippy::all)]

extern crate cache_runtime as renamed;

use renamed::{cached, invalidates};

#[cached(key = "renamed:{id}", ttl = 60, crate = "renamed")]
async fn get(id: u64) -> Result<u64, String> {
    Ok(id)
}

#[cached(key = "renamed-abs:{id}", crate = "::renamed")]
async fn get_absolute(id: u64) -> Option<u64> {
    Some(id)
}

#[invalidates(keys = ["renamed:{id}"], crate = "renamed", when = "both")]
async fn put(id: u64) -> Result<(), String> {
    let _ = id;
    Ok(())
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        assert_eq!(get(1).await, Ok(1));
        assert_eq!(get_absolute(1).await, Some(1));
        assert!(put(1).await.is_ok());
    });
}
