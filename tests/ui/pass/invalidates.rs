//! `#[invalidates]` with keys, tags and patterns, and each `when`; "after"
//! runs only when the body succeeded.
#![deny(warnings)]
#![deny(clippy::all)]

use std::sync::atomic::{AtomicUsize, Ordering};

use cache_runtime::{Cache, cached, invalidates};

static LOADS: AtomicUsize = AtomicUsize::new(0);

fn loads() -> usize {
    LOADS.load(Ordering::Relaxed)
}

#[cached(key = "user:{id}", ttl = 60, tags = ["users"])]
async fn user(id: u64) -> Result<String, String> {
    LOADS.fetch_add(1, Ordering::Relaxed);
    Ok(format!("user {id}"))
}

#[cached(key = "search:{owner}:{query}", ttl = 60)]
async fn search(owner: u64, query: &str) -> Vec<String> {
    LOADS.fetch_add(1, Ordering::Relaxed);
    vec![format!("{owner}/{query}")]
}

/// After (the default), only on success; the body may consume its arguments.
#[invalidates(keys = ["user:{id}"])]
async fn rename(id: u64, name: String, fail: bool) -> Result<(), String> {
    drop(name);
    if fail {
        return Err(format!("cannot rename {id}"));
    }
    Ok(())
}

#[invalidates(tags = ["users"], when = "before")]
async fn reload_before() -> Result<(), String> {
    Err("the body failing does not matter before".to_string())
}

#[invalidates(patterns = ["search:{owner}:*"], when = "after")]
async fn clear_searches(owner: u64) {
    let _ = owner;
}

/// A `*` in an argument is escaped: it matches only a literal `*`.
#[invalidates(patterns = ["search:{owner}:{query}"])]
async fn clear_query(owner: u64, query: &str) {
    let _ = (owner, query);
}

#[invalidates(keys = ["user:{id}"], tags = ["users"], patterns = ["search:*"], when = "both")]
async fn everything(id: u64) -> Option<u64> {
    Some(id)
}

#[invalidates(keys = ["user:{id}"], when = "after")]
async fn early_return(id: u64) -> Result<u64, String> {
    if id == 0 {
        return Err("zero".to_string());
    }
    let parsed: u64 = id.to_string().parse().map_err(|_| "parse".to_string())?;
    Ok(parsed)
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

        user(1).await.unwrap();
        user(1).await.unwrap();
        assert_eq!(loads(), 1);
        assert!(rename(1, "x".to_string(), true).await.is_err());
        user(1).await.unwrap();
        assert_eq!(loads(), 1, "a failed body invalidates nothing");
        rename(1, "x".to_string(), false).await.unwrap();
        user(1).await.unwrap();
        assert_eq!(loads(), 2);

        assert!(reload_before().await.is_err());
        user(1).await.unwrap();
        assert_eq!(loads(), 3);

        search(7, "a*").await;
        search(8, "b").await;
        assert_eq!(loads(), 5);
        clear_searches(7).await;
        search(7, "a*").await;
        search(8, "b").await;
        assert_eq!(loads(), 6, "only owner 7's searches were removed");
        clear_query(8, "*").await;
        search(8, "b").await;
        assert_eq!(loads(), 6, "a `*` in a value widens no pattern");
        clear_query(7, "a*").await;
        search(7, "a*").await;
        assert_eq!(loads(), 7, "but it matches itself");

        assert_eq!(everything(1).await, Some(1));
        user(1).await.unwrap();
        search(8, "b").await;
        assert_eq!(loads(), 9);

        assert!(early_return(0).await.is_err());
        assert_eq!(early_return(5).await, Ok(5));
    });
}
