//! Each return kind: `Result<T, E>`, `Result<Option<T>, E>`, `Option<T>` and
//! a plain `T`, with `?` and early `return` in the bodies.
#![deny(warnings)]
#![deny(clippy::all)]

use std::sync::atomic::{AtomicUsize, Ordering};

use cache_runtime::{Cache, cached};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
}

#[derive(Debug)]
enum DbError {
    NotANumber,
}

impl From<std::num::ParseIntError> for DbError {
    fn from(_: std::num::ParseIntError) -> Self {
        DbError::NotANumber
    }
}

static LOADS: AtomicUsize = AtomicUsize::new(0);

#[cached(key = "user:{id}", ttl = 60)]
async fn result(id: u64) -> Result<User, DbError> {
    LOADS.fetch_add(1, Ordering::Relaxed);
    if id == 0 {
        return Err(DbError::NotANumber);
    }
    Ok(User {
        id,
        name: format!("user {id}"),
    })
}

#[cached(key = "parsed:{text}", ttl = "30m", cache_none = "1m")]
async fn result_option(text: &str) -> Result<Option<u64>, DbError> {
    LOADS.fetch_add(1, Ordering::Relaxed);
    if text.is_empty() {
        return Ok(None);
    }
    let n: u64 = text.parse()?;
    Ok(Some(n))
}

#[cached(key = "half:{n}", ttl = 60)]
async fn option(n: u32) -> Option<u32> {
    LOADS.fetch_add(1, Ordering::Relaxed);
    if n % 2 == 1 {
        return None;
    }
    Some(n / 2)
}

#[cached(key = "names", ttl = 60)]
async fn plain() -> Vec<String> {
    LOADS.fetch_add(1, Ordering::Relaxed);
    vec!["a".to_string(), "b".to_string()]
}

#[cached(key = "unit-like:{flag}", ttl = 60)]
async fn plain_bool(flag: bool) -> bool {
    !flag
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

        assert_eq!(result(7).await.unwrap().name, "user 7");
        assert_eq!(result(7).await.unwrap().id, 7);
        assert!(matches!(result(0).await, Err(DbError::NotANumber)));
        assert_eq!(
            LOADS.load(Ordering::Relaxed),
            2,
            "a hit, and an error is not cached"
        );

        assert_eq!(result_option("12").await.unwrap(), Some(12));
        assert_eq!(result_option("12").await.unwrap(), Some(12));
        assert_eq!(result_option("").await.unwrap(), None);
        assert!(result_option("x").await.is_err());
        assert_eq!(LOADS.load(Ordering::Relaxed), 5);

        assert_eq!(option(4).await, Some(2));
        assert_eq!(option(4).await, Some(2));
        assert_eq!(option(3).await, None);
        assert_eq!(option(3).await, None);
        assert_eq!(
            LOADS.load(Ordering::Relaxed),
            8,
            "None is not cached without cache_none"
        );

        assert_eq!(plain().await, ["a", "b"]);
        assert_eq!(plain().await, ["a", "b"]);
        assert_eq!(LOADS.load(Ordering::Relaxed), 9);

        assert!(plain_bool(false).await);
    });
}
