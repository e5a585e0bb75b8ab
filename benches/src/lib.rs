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
