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
