//! The error type of the runtime API.

use std::fmt;

/// Everything that can go wrong when talking to the cache.
///
/// A read through [`Cache::get_or_load`](crate::Cache::get_or_load) never returns
/// this error: when the store fails, the loader's value is returned instead and
/// the failure is counted in [`FunctionStats::errors`](crate::FunctionStats::errors).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store (Redis) failed or could not be reached.
    #[error("cache store error: {0}")]
    Store(#[from] redis::RedisError),
    /// A store operation took longer than the configured `op_timeout`.
    #[error("cache store operation timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The store failed repeatedly and the circuit breaker is open: the
    /// operation was not attempted.
    #[error("cache store unavailable (circuit open)")]
    Unavailable,
    /// A value could not be encoded or decoded by its codec.
    #[error("codec error: {0}")]
    Codec(#[from] crate::codec::CodecError),
    /// The builder was given an invalid setting.
    #[error("invalid cache configuration: {0}")]
    Config(String),
    /// `install()` was called although a global cache is already installed.
    #[error("a global cache is already installed in this process")]
    AlreadyInstalled,
    /// A key or pattern is not acceptable (for example, a pattern over the length cap).
    #[error("invalid key or pattern: {0}")]
    InvalidKey(String),
    /// The value is larger than the configured maximum value size.
    #[error("value of {size} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Encoded size of the refused value.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
}

impl Error {
    pub(crate) fn config(msg: impl fmt::Display) -> Self {
        Error::Config(msg.to_string())
    }

    /// Whether the store failed (it may answer later): a retry can succeed,
    /// unlike for an input the cache refuses.
    pub fn is_store_failure(&self) -> bool {
        matches!(
            self,
            Error::Store(_) | Error::Timeout(_) | Error::Unavailable
        )
    }

    /// Whether the server refused these credentials or this user's access
    /// (a configuration error, not an outage).
    pub(crate) fn is_access_refused(&self) -> bool {
        match self {
            Error::Store(e) => {
                e.kind() == redis::ErrorKind::AuthenticationFailed
                    || matches!(e.code(), Some("NOPERM" | "WRONGPASS" | "NOAUTH"))
            }
            _ => false,
        }
    }
}

/// Shorthand for `Result<T, cache_runtime::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
