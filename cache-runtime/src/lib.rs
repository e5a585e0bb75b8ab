#![doc = include_str!("../../README.md")]
#![warn(missing_docs)]

mod behind;
mod cache;
pub mod codec;
mod crypto;
mod envelope;
mod error;
mod fingerprint;
mod flight;
mod glob;
pub mod guide;
mod inspect;
mod invalidate;
pub mod key;
mod lead;
mod options;
mod read;
mod refresh;
mod resilience;
mod stats;
mod store;
mod write;

#[doc(hidden)]
pub mod __private;
// A second path to the traits that errors about the user's types name, one
// the compiler prints them by (see `__private::requirements`).
#[doc(hidden)]
pub use __private::requirements as __requirements;

/// Runs of a write-behind entry that fails before it moves to the dead-letter
/// stream (counted by Redis, across processes).
pub use behind::MAX_ATTEMPTS as WRITE_BEHIND_MAX_ATTEMPTS;
pub use cache::{Cache, CacheBuilder};
pub use codec::{Codec, CodecKind};
pub use error::{Error, Result};
pub use inspect::{DeadLetter, EntryInfo, NearState, ReadBatches};
pub use options::Options;
pub use stats::{FunctionStats, Stats};
pub use write::Loader;

/// Caches an `async fn`'s result. See the [crate documentation](crate) for the
/// arguments.
pub use cache_macros::cached;
/// Invalidates keys, tags or patterns when an `async fn` runs. See the
/// [crate documentation](crate) for the arguments.
pub use cache_macros::invalidates;
