//! Where a load runs: in a way that can outlive its caller when the body owns
//! its arguments and its future is `Send`, otherwise only in the caller. Every shape compiles,
//! and the functions stay `Send` wherever their bodies are.
#![deny(warnings)]
#![deny(clippy::all)]

use std::rc::Rc;

use cache_runtime::{Cache, cached};

fn assert_send<T: Send>(t: T) -> T {
    t
}

/// Owned arguments, `Send` body: loads can outlive the caller.
#[cached(key = "owned:{id}", ttl = 60, stale = "10m")]
async fn owned(id: u64, name: String) -> Result<String, String> {
    tokio::task::yield_now().await;
    Ok(format!("{id}:{name}"))
}

/// Owned arguments, body not `Send` (an `Rc` lives across an await): loads
/// in its caller.
#[cached(key = "local:{id}", ttl = 60)]
async fn local(id: u64) -> u64 {
    let shared = Rc::new(id);
    tokio::task::yield_now().await;
    *shared
}

/// An error type that is not `Send`: loads in its caller.
#[cached(key = "rc-err:{id}", ttl = 60)]
async fn rc_error(id: u64) -> Result<u64, Rc<str>> {
    Ok(id)
}

/// Borrowed arguments: loads in its caller.
#[cached(key = "borrowed:{name}", ttl = 60)]
async fn borrowed(name: &str) -> Option<String> {
    Some(name.to_uppercase())
}

/// Mutable and raw argument names.
#[cached(key = "mutable:{r#type}", ttl = 60)]
async fn mutable(mut r#type: u32, mut count: u32) -> u32 {
    count += 1;
    r#type += count;
    r#type
}

struct Repo;

impl Repo {
    fn base() -> u64 {
        10
    }

    /// An associated function that names `Self`: loads in its caller.
    #[cached(key = "assoc:{id}", ttl = 60)]
    async fn assoc(id: u64) -> u64 {
        Self::base() + id
    }

    /// One that does not: loads can outlive the caller.
    #[cached(key = "assoc-owned:{id}", ttl = 60)]
    async fn assoc_owned(id: u64) -> u64 {
        Repo::base() + id
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
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
        assert_eq!(assert_send(owned(1, "a".into())).await.unwrap(), "1:a");
        assert_eq!(local(2).await, 2);
        assert_eq!(rc_error(3).await.unwrap(), 3);
        assert_eq!(assert_send(borrowed("b")).await.as_deref(), Some("B"));
        assert_eq!(assert_send(mutable(1, 1)).await, 3);
        assert_eq!(assert_send(Repo::assoc(1)).await, 11);
        assert_eq!(assert_send(Repo::assoc_owned(2)).await, 12);
    });
}
