//! Without `key`: the function's path plus the hash of every argument, for
//! functions with zero, one and several arguments, `mut` bindings included.
#![deny(warnings)]
#![deny(clippy::all)]

use std::sync::atomic::{AtomicUsize, Ordering};

use cache_runtime::{Cache, cached};

static LOADS: AtomicUsize = AtomicUsize::new(0);

#[cached]
async fn none() -> u32 {
    LOADS.fetch_add(1, Ordering::Relaxed);
    1
}

#[cached(ttl = 60)]
async fn one(name: String) -> String {
    LOADS.fetch_add(1, Ordering::Relaxed);
    name
}

#[cached(ttl = 60)]
async fn several(a: u32, b: &str, mut c: Vec<u8>) -> Vec<u8> {
    LOADS.fetch_add(1, Ordering::Relaxed);
    c.push(u8::try_from(a).unwrap_or(0));
    c.extend(b.bytes());
    c
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
        assert_eq!(none().await, 1);
        assert_eq!(none().await, 1);
        assert_eq!(one("x".to_string()).await, "x");
        assert_eq!(one("x".to_string()).await, "x");
        assert_eq!(one("y".to_string()).await, "y");
        assert_eq!(several(1, "a", vec![]).await, [1, b'a']);
        assert_eq!(several(1, "a", vec![]).await, [1, b'a']);
        assert_eq!(several(1, "b", vec![]).await, [1, b'b']);
        assert_eq!(LOADS.load(Ordering::Relaxed), 5);
    });
}
