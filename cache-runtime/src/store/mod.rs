//! Storage backends behind one set of operations.
//!
//! Each operation is one round trip on Redis (one script or command) and one
//! critical section on the in-process store; they have the same semantics,
//! which the conformance suite checks against both.

mod batch;
mod cluster;
pub(crate) mod conn;
pub(crate) mod memory;
pub(crate) mod near;
pub(crate) mod redis;

use crate::error::Result;

// One per cache, inside its `Arc`: the size difference costs nothing, and
// boxing would add an indirection to every operation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Store {
    Redis(redis::RedisStore),
    Memory(memory::MemoryStore),
    /// No store: every read runs its loader (the global cache before `install`).
    PassThrough,
}

/// The stored keys of one entry.
#[derive(Debug, Clone)]
pub(crate) struct EntryKeys {
    pub(crate) entry: String,
    pub(crate) lease: String,
}

impl EntryKeys {
    /// An entry's keys: the entry, and its lease beside it (same hash tag).
    pub(crate) fn of(entry: String) -> EntryKeys {
        let mut lease = String::with_capacity(entry.len() + 2);
        lease.push_str(&entry);
        lease.push_str(":L");
        EntryKeys { entry, lease }
    }
}

/// When a lookup takes the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeaseMode {
    /// Only when there is no usable entry.
    OnMiss,
    /// Whatever is stored (to refresh a stale or early-refreshed entry).
    Always,
}

/// An unconditional store of an entry: its envelope without the tag-token
/// section (spliced in by the store, from the tags' current versions).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Write<'a> {
    pub(crate) keys: &'a EntryKeys,
    pub(crate) tag_keys: &'a [String],
    pub(crate) head: &'a [u8],
    pub(crate) tail: &'a [u8],
    pub(crate) px: u64,
    pub(crate) tag_ttl_ms: u64,
    /// Random prefix for versions of tags that have none yet.
    pub(crate) fresh: &'a str,
}

/// What a lease request carries.
#[derive(Debug)]
pub(crate) struct LeaseArgs<'a> {
    pub(crate) mode: LeaseMode,
    /// The lease token; also, being unique per call, the prefix of versions
    /// given to tags that have none yet.
    pub(crate) token: &'a str,
    pub(crate) lease_ms: u64,
    pub(crate) tag_ttl_ms: u64,
}

/// Result of a lookup.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// A stored envelope whose tags are all current.
    Hit(Vec<u8>),
    /// No usable entry; the caller now holds the lease. `tokens` are the tags'
    /// tokens read before the loader runs, to be recorded in the fill.
    Leased { tokens: String, corrupt: bool },
    /// No usable entry; another caller holds the lease for this long.
    Held { pttl_ms: i64, corrupt: bool },
    /// No usable entry (no lease was asked for).
    Miss { corrupt: bool },
}

/// Stored bytes as a read returns them: read from Redis, or shared with a
/// near-cache copy (no copying on a near-cache hit).
#[derive(Debug)]
pub(crate) enum Bytes {
    Owned(Vec<u8>),
    Shared(std::sync::Arc<near::Held>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Owned(v) => v,
            Bytes::Shared(h) => h.bytes(),
        }
    }
}

impl Bytes {
    pub(crate) fn into_vec(self) -> Vec<u8> {
        match self {
            Bytes::Owned(v) => v,
            Bytes::Shared(h) => h.bytes().to_vec(),
        }
    }
}

/// What a plain read found: the stored bytes and the tags' current tokens.
#[derive(Debug)]
pub(crate) struct Peek {
    pub(crate) entry: Option<Bytes>,
    pub(crate) tags: Vec<Option<Vec<u8>>>,
}

impl Peek {
    /// The bytes, if they are an envelope whose tags are all current.
    pub(crate) fn hit(self) -> Option<Bytes> {
        let entry = self.entry?;
        let recorded = crate::envelope::header_tokens(&entry)?;
        crate::envelope::tags_current(recorded, &self.tags).then_some(entry)
    }
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $redis:expr, $mem:expr, $pass:expr) => {
        match $self {
            Store::Redis($s) => $redis,
            Store::Memory($s) => $mem,
            Store::PassThrough => $pass,
        }
    };
}

impl Store {
    /// Whether another process's fills wake this process's waiters right now
    /// (so waiting can back off further).
    pub(crate) fn wakeups_live(&self) -> bool {
        match self {
            Store::Redis(s) => s.wakeups_live(),
            _ => true,
        }
    }

    /// Coalesced-read counts, when reads are coalesced.
    pub(crate) fn read_batches(&self) -> Option<batch::Counts> {
        match self {
            Store::Redis(s) => s.read_batches(),
            _ => None,
        }
    }

    /// Whether the store's circuit breaker is open (reads skip the store).
    pub(crate) fn breaker_open(&self) -> bool {
        match self {
            Store::Redis(s) => s.breaker_open(),
            _ => false,
        }
    }

    /// The near cache in front of the store, if any.
    pub(crate) fn near(&self) -> Option<&near::Near> {
        match self {
            Store::Redis(s) => s.near(),
            _ => None,
        }
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Store::Redis(s) if s.cluster => "redis cluster",
            Store::Redis(_) => "redis",
            Store::Memory(_) => "memory",
            Store::PassThrough => "pass-through",
        }
    }

    pub(crate) async fn lookup(
        &self,
        k: &EntryKeys,
        tag_keys: &[String],
        lease: Option<&LeaseArgs<'_>>,
    ) -> Result<Lookup> {
        dispatch!(self, s => s.lookup(k, tag_keys, lease).await, s.lookup(k, tag_keys, lease), Ok(Lookup::Miss { corrupt: false }))
    }

    /// The store that answers a plain read before the lease script, where
    /// that is cheaper (Redis, [`redis::RedisStore::peek`]); `None` where a lookup
    /// is as cheap (the in-process store). A plain accessor, not an `async`
    /// dispatch: the hit path awaits the Redis store's read directly.
    pub(crate) fn peeker(&self) -> Option<&redis::RedisStore> {
        match self {
            Store::Redis(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) async fn fill(
        &self,
        k: &EntryKeys,
        token: &str,
        bytes: &[u8],
        px: u64,
    ) -> Result<bool> {
        dispatch!(self, s => s.fill(k, token, bytes, px).await, s.fill(k, token, bytes, px), Ok(false))
    }

    pub(crate) async fn release(&self, k: &EntryKeys, token: &str) -> Result<()> {
        dispatch!(self, s => s.release(k, token).await, s.release(k, token), Ok(()))
    }

    pub(crate) async fn set(&self, w: &Write<'_>) -> Result<()> {
        dispatch!(self, s => s.set(w).await, s.set(w), Ok(()))
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        dispatch!(self, s => s.get(key).await, s.get(key), Ok(None))
    }

    pub(crate) async fn mget(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        dispatch!(self, s => s.mget(keys).await, s.mget(keys), Ok(vec![None; keys.len()]))
    }

    pub(crate) async fn delete(&self, keys: &[String]) -> Result<u64> {
        dispatch!(self, s => s.delete(keys).await, s.delete(keys), Ok(0))
    }

    pub(crate) async fn set_tokens(
        &self,
        keys: &[String],
        tokens: &[String],
        ttl_ms: u64,
    ) -> Result<()> {
        dispatch!(self, s => s.set_tokens(keys, tokens, ttl_ms).await, s.set_tokens(keys, tokens, ttl_ms), Ok(()))
    }

    /// New tokens for those of `keys` that exist (they keep their lifetime;
    /// none is created).
    pub(crate) async fn bump_present(&self, keys: &[String], tokens: &[String]) -> Result<()> {
        dispatch!(self, s => s.bump_present(keys, tokens).await, s.bump_present(keys, tokens), Ok(()))
    }

    pub(crate) async fn put_raw(&self, key: &str, bytes: &[u8], px: u64) -> Result<()> {
        dispatch!(self, s => s.put_raw(key, bytes, px).await, s.put_raw(key, bytes, px), Ok(()))
    }

    pub(crate) async fn pttl(&self, key: &str) -> Result<i64> {
        dispatch!(self, s => s.pttl(key).await, Ok(s.pttl(key)), Ok(-2))
    }

    pub(crate) async fn delete_pattern(&self, pattern: &crate::key::StoredPattern) -> Result<u64> {
        dispatch!(self, s => s.delete_pattern(pattern).await, s.delete_pattern(pattern), Ok(0))
    }
}

/// A URL with its password replaced by `***`, for `Debug` output and logs.
pub(crate) fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "<invalid url>".to_string(),
    }
}
