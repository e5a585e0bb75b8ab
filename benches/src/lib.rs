//! What the benchmarks share: the record they cache.

use serde::{Deserialize, Serialize};

/// A typical record: a few strings, a list, a number and a flag (49 bytes
/// of postcard).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    /// The key.
    pub id: u64,
    /// A display name.
    pub name: String,
    /// An e-mail address.
    pub email: String,
    /// Role names.
    pub roles: Vec<String>,
    /// Whether the account is active.
    pub active: bool,
}

/// The record of user `id`.
pub fn user(id: u64) -> User {
    User {
        id,
        name: format!("User Number {id}"),
        email: format!("user{id}@example.com"),
        roles: vec!["reader".into(), "writer".into()],
        active: true,
    }
}

/// The median of `v` (the upper one of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// `redis_version` from `INFO server`.
pub async fn server_version(conn: &mut redis::aio::MultiplexedConnection) -> String {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(conn)
        .await
        .unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .trim()
        .to_string()
}

/// A cache on the server at `url` under `prefix`, installed as the process's
/// global cache (the one `#[cached]` uses without `cache = ..`).
pub async fn installed_cache(url: String, prefix: &str) -> &'static cache_runtime::Cache {
    cache_runtime::Cache::builder()
        .url(url)
        .prefix(prefix)
        .build()
        .await
        .expect("cache")
        .install()
        .expect("install")
}

/// The `cached` crate's Redis store of `User`s under `prefix` at `url`: what
/// its `redis = true, ttl_secs = 3600` builds (no refresh on hit), with the
/// URL given instead of read from `CACHED_REDIS_CONNECTION_STRING`.
pub async fn peer_store(prefix: &str, url: &str) -> cached::AsyncRedisCache<u64, User> {
    cached::AsyncRedisCache::builder(prefix)
        .ttl(std::time::Duration::from_secs(3600))
        .connection_string(url)
        .build()
        .await
        .expect("AsyncRedisCache")
}
