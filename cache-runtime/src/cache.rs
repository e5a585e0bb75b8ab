//! The cache handle, its builder and the process-wide global.

use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use crate::codec::CodecKind;
use crate::error::{Error, Result};
use crate::flight::Flights;
use crate::stats::{Registry, Stats};
use crate::store::{EntryKeys, Store};

/// Default time to live when neither the call nor the builder sets one.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// Default jitter fraction.
pub const DEFAULT_JITTER: f64 = 0.1;
/// Default per-operation timeout.
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_millis(250);
/// Default lease time to live (how long a crashed loader can delay others).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
/// Default lifetime of a tag's version key.
pub const DEFAULT_TAG_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default maximum encoded value size.
pub const DEFAULT_MAX_VALUE_SIZE: usize = 16 * 1024 * 1024;

/// A handle to a cache: cheap to clone, shareable across tasks.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use cache_runtime::{Cache, Options};
/// let cache = Cache::builder().memory().prefix("doc").build().await?;
/// let v: Result<u32, std::convert::Infallible> =
///     cache.get_or_load("answer", &Options::new(), || async { Ok(42) }).await;
/// assert_eq!(v, Ok(42));
/// assert_eq!(cache.get::<u32>("answer").await?, Some(42));
/// # Ok::<(), cache_runtime::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Cache {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) prefix: String,
    pub(crate) default_ttl: Duration,
    pub(crate) jitter: f64,
    pub(crate) codec: CodecKind,
    pub(crate) op_timeout: Duration,
    pub(crate) lease_ttl: Duration,
    pub(crate) tag_ttl: Duration,
    pub(crate) max_value_size: usize,
    pub(crate) stats: Registry,
    pub(crate) flights: Arc<Flights>,
    pub(crate) now_ms: fn() -> u64,
    pub(crate) random: fn() -> f64,
    pub(crate) keyring: crate::crypto::Keyring,
    pub(crate) behind: crate::behind::Behind,
    pub(crate) redact_keys: bool,
    pub(crate) pending: crate::invalidate::Pending,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("store", &self.inner.store.kind())
            .field("prefix", &self.inner.prefix)
            .field("default_ttl", &self.inner.default_ttl)
            .field("jitter", &self.inner.jitter)
            .field("codec", &self.inner.codec)
            .field("op_timeout", &self.inner.op_timeout)
            .finish_non_exhaustive()
    }
}

static GLOBAL: OnceLock<Cache> = OnceLock::new();
static PASS_THROUGH: LazyLock<Cache> =
    LazyLock::new(|| Cache::from_parts(Store::PassThrough, Arc::default(), CacheBuilder::new()));

impl Cache {
    /// Starts configuring a cache.
    pub fn builder() -> CacheBuilder {
        CacheBuilder::new()
    }

    /// Makes this cache the process-wide one that `#[cached]` and
    /// `#[invalidates]` use when they are given no `cache = ...`.
    ///
    /// Fails with [`Error::AlreadyInstalled`] when called a second time.
    pub fn install(self) -> Result<&'static Cache> {
        let mut fresh = false;
        let installed = GLOBAL.get_or_init(|| {
            fresh = true;
            self
        });
        if fresh {
            Ok(installed)
        } else {
            Err(Error::AlreadyInstalled)
        }
    }

    /// The installed cache. Before [`install`](Cache::install) this is a
    /// pass-through cache that stores nothing and runs every loader, so that
    /// code calling cached functions still works, uncached, in a process that
    /// set up no cache. The first time it is used it says so, once, on
    /// standard error and as a `tracing` warning: a process that calls cached
    /// functions before installing a cache (or never) shows it even without
    /// a log subscriber. Its [`stats`](Cache::stats) count every such call as
    /// a miss.
    pub fn global() -> &'static Cache {
        match GLOBAL.get() {
            Some(c) => c,
            None => &PASS_THROUGH,
        }
    }

    /// Counters of this cache, in total and per function.
    pub fn stats(&self) -> Stats {
        self.inner.stats.snapshot()
    }

    /// Whether the store is reachable as far as the cache knows: false while
    /// its circuit breaker is open (reads then go straight to their loaders).
    pub fn store_available(&self) -> bool {
        !self.inner.store.breaker_open()
    }

    /// Whether fills in other processes are announced to this cache right now
    /// (its wake-up subscription is live). For tests.
    #[doc(hidden)]
    pub fn wakeups_live(&self) -> bool {
        self.inner.store.wakeups_live()
    }

    /// The key prefix of this cache.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    pub(crate) fn from_parts(store: Store, flights: Arc<Flights>, b: CacheBuilder) -> Cache {
        Cache {
            inner: Arc::new(Inner {
                store,
                prefix: b.prefix.clone(),
                default_ttl: b.default_ttl,
                jitter: b.jitter,
                codec: b.codec,
                op_timeout: b.op_timeout,
                lease_ttl: b.lease_ttl,
                tag_ttl: b.tag_ttl,
                max_value_size: b.max_value_size,
                stats: Registry::new(&b.prefix),
                flights,
                now_ms: b.now_ms,
                random: b.random,
                keyring: b.keyring,
                behind: Default::default(),
                redact_keys: b.redact_keys,
                pending: Default::default(),
            }),
        }
    }

    /// The stored keys of an entry: `{prefix}:{<key>}` (plus `:v<N>` for schema
    /// versions above 1) and its lease. The braces make the key its own hash tag,
    /// so an entry and its lease always share a cluster slot.
    pub(crate) fn entry_keys(&self, key: &str, version: u32) -> EntryKeys {
        EntryKeys::of(self.entry_key(key, version))
    }

    /// The stored key of an entry, alone (the hit path needs no lease key).
    pub(crate) fn entry_key(&self, key: &str, version: u32) -> String {
        let mut entry = String::with_capacity(self.inner.prefix.len() + key.len() + 12);
        entry.push_str(&self.inner.prefix);
        entry.push(':');
        crate::key::push_framed(key, &mut entry);
        if version != 1 {
            entry.push_str(":v");
            entry.push_str(&version.to_string());
        }
        entry
    }

    /// The stored keys of the tags of an entry (stored at `entry`) read or
    /// written with `opts`: its named tags, then, for a schema version other
    /// than 1, the key's own version tag, which
    /// [`invalidate_keys`](Cache::invalidate_keys) moves so that every
    /// version of the key becomes a miss at once, however many there are.
    pub(crate) fn tag_keys(&self, entry: &str, opts: &crate::Options) -> Vec<String> {
        let mut keys: Vec<String> = opts.tags.iter().map(|t| self.tag_key(t)).collect();
        if opts.version != 1
            && let Some((base, _)) = entry.rsplit_once(":v")
        {
            keys.push(version_tag(base));
        }
        keys
    }

    /// Stored keys after the cache prefix and `:`, as entries record their
    /// tags.
    pub(crate) fn relative<'a>(&self, keys: &'a [String]) -> Vec<&'a str> {
        let skip = self.inner.prefix.len() + 1;
        keys.iter().map(|k| k.get(skip..).unwrap_or(k)).collect()
    }

    /// A stored key from one after the cache prefix and `:` (as entries
    /// record their tags).
    pub(crate) fn absolute(&self, relative: &str) -> String {
        format!("{}:{relative}", self.inner.prefix)
    }

    /// The stored key of a tag's version token.
    pub(crate) fn tag_key(&self, tag: &str) -> String {
        let mut k = String::with_capacity(self.inner.prefix.len() + tag.len() + 5);
        k.push_str(&self.inner.prefix);
        k.push_str(":t:");
        crate::key::push_framed(tag, &mut k);
        k
    }

    /// Stops the cache: background work is flushed and finished.
    pub async fn shutdown(&self) -> Result<()> {
        self.drain_flushers().await;
        crate::invalidate::drain_retries(self).await;
        Ok(())
    }
}

/// The version tag of the key stored at `base` (schema version 1): in the
/// key's slot, moved when the key is invalidated.
pub(crate) fn version_tag(base: &str) -> String {
    format!("{base}:V")
}

/// Configures and connects a [`Cache`]. Start with [`Cache::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct CacheBuilder {
    pub(crate) backend: Backend,
    pub(crate) prefix: String,
    pub(crate) default_ttl: Duration,
    pub(crate) jitter: f64,
    pub(crate) codec: CodecKind,
    pub(crate) op_timeout: Duration,
    pub(crate) lease_ttl: Duration,
    pub(crate) tag_ttl: Duration,
    pub(crate) max_value_size: usize,
    pub(crate) now_ms: fn() -> u64,
    pub(crate) random: fn() -> f64,
    pub(crate) keyring: crate::crypto::Keyring,
    pub(crate) tls_root: Option<Vec<u8>>,
    pub(crate) redact_keys: bool,
    pub(crate) near_capacity: Option<u64>,
    pub(crate) coalesce_reads: bool,
}

#[derive(Clone)]
pub(crate) enum Backend {
    Unset,
    Url(String),
    Cluster(Vec<String>),
    Memory,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Unset => f.write_str("Unset"),
            Backend::Url(u) => write!(f, "Url({})", crate::store::redact_url(u)),
            Backend::Cluster(us) => {
                let shown: Vec<String> = us.iter().map(|u| crate::store::redact_url(u)).collect();
                write!(f, "Cluster({shown:?})")
            }
            Backend::Memory => f.write_str("Memory"),
        }
    }
}

impl Default for CacheBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl CacheBuilder {
    /// A builder with the defaults: prefix `"cache"`, ttl 1 h, jitter 0.1,
    /// postcard, 250 ms per operation.
    pub fn new() -> Self {
        CacheBuilder {
            backend: Backend::Unset,
            prefix: "cache".to_string(),
            default_ttl: DEFAULT_TTL,
            jitter: DEFAULT_JITTER,
            codec: CodecKind::Postcard,
            op_timeout: DEFAULT_OP_TIMEOUT,
            lease_ttl: DEFAULT_LEASE_TTL,
            tag_ttl: DEFAULT_TAG_TTL,
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
            now_ms: crate::read::now_ms,
            random: crate::read::random_unit,
            keyring: Default::default(),
            tls_root: None,
            redact_keys: false,
            near_capacity: None,
            coalesce_reads: true,
        }
    }

    /// Keeps an in-process copy of up to `capacity` recently read entries
    /// (and tag versions) in front of Redis: a hit on a copy costs no round
    /// trip. Copies stay correct through Redis client tracking: every change
    /// under the cache's prefix, by any process, is pushed to this one and
    /// drops the copy; changes made here drop it at once. If the tracking
    /// connection is lost, every copy is dropped and reads go to Redis until
    /// it is back. Ignored by the in-process store (`.memory()`); with
    /// `.cluster(..)`, `build` refuses it.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), cache_runtime::Error> {
    /// let cache = cache_runtime::Cache::builder()
    ///     .url("redis://127.0.0.1:6379")
    ///     .near_cache(10_000)
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn near_cache(mut self, capacity: u64) -> Self {
        self.near_capacity = Some(capacity);
        self
    }

    /// Whether concurrent reads on the hit path share one `MGET` (default on;
    /// standalone Redis only).
    ///
    /// While other reads of this cache are in flight, a read waits for the
    /// callers running on the same worker thread to add their keys, and one
    /// command carries them all: under load, this saves most of the client's
    /// per-request work and the server's per-command work. A read that finds
    /// nothing else in flight sends its own command at once, so a lone caller
    /// waits for nothing. `MGET` reads all its keys at one instant, after
    /// every caller in it began, so a shared read is as fresh as an own one.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), cache_runtime::Error> {
    /// let cache = cache_runtime::Cache::builder()
    ///     .url("redis://127.0.0.1:6379")
    ///     .coalesce_reads(false) // one command per read
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn coalesce_reads(mut self, on: bool) -> Self {
        self.coalesce_reads = on;
        self
    }

    /// Show keys in tracing spans and logs only as hashes (for keys that
    /// carry personal data).
    pub fn redact_keys(mut self, on: bool) -> Self {
        self.redact_keys = on;
        self
    }

    /// Trust this CA certificate (PEM) for `rediss://` connections instead of
    /// the system's roots.
    pub fn tls_root_cert(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root = Some(pem.into());
        self
    }

    /// Adds a 256-bit key for values cached with `encrypt = true`, under a
    /// one-byte id stored with each value. The key added last encrypts new
    /// values; every key added decrypts, so to rotate, add the new key after
    /// the old one and drop the old one once its values have expired.
    pub fn encryption_key(mut self, id: u8, key: [u8; 32]) -> Self {
        self.keyring.add(id, &key);
        self
    }

    /// Replaces the wall clock (Unix milliseconds) used for freshness, stale
    /// windows and early refresh. For tests.
    #[doc(hidden)]
    pub fn clock(mut self, now_ms: fn() -> u64) -> Self {
        self.now_ms = now_ms;
        self
    }

    /// Replaces the uniform `[0, 1)` random source of early refresh. For tests.
    #[doc(hidden)]
    pub fn random(mut self, random: fn() -> f64) -> Self {
        self.random = random;
        self
    }

    /// Use the Redis server at this URL (`redis://`, `rediss://`, `redis+unix://`).
    pub fn url(mut self, url: impl AsRef<str>) -> Self {
        self.backend = Backend::Url(url.as_ref().to_string());
        self
    }

    /// Use a Redis Cluster (7.0 or later) reached through these seed nodes
    /// (`redis://` or `rediss://` URLs of any of its primaries; the client
    /// discovers the others).
    ///
    /// Everything works as on one server: an entry, its lease and its schema
    /// versions share a hash tag, tag and pattern invalidation reach every
    /// primary, and slots may move between primaries while the cache runs
    /// (redirections are followed within [`op_timeout`](Self::op_timeout)).
    /// A miss on a tagged entry costs one more round trip than on one server
    /// (the tags' versions live in other slots and are read first), and a
    /// write-behind call stores its value and queues the call in two steps:
    /// if queueing fails the value is taken back and the call reports that
    /// nothing was queued. Connecting happens in the background, as with
    /// [`url`](Self::url): a cluster that is down at start is not an error.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), cache_runtime::Error> {
    /// use cache_runtime::Cache;
    /// let cache = Cache::builder()
    ///     .cluster(["redis://10.0.0.1:6379", "redis://10.0.0.2:6379", "redis://10.0.0.3:6379"])
    ///     .prefix("myapp")
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn cluster<I, S>(mut self, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.backend =
            Backend::Cluster(nodes.into_iter().map(|s| s.as_ref().to_string()).collect());
        self
    }

    /// Use the in-process store (no server; same semantics).
    pub fn memory(mut self) -> Self {
        self.backend = Backend::Memory;
        self
    }

    /// Prefix of every stored key (default `"cache"`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Time to live of entries whose call sets none (default 1 h).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// Default jitter fraction (default 0.1).
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// Default codec (default postcard).
    pub fn codec(mut self, codec: CodecKind) -> Self {
        self.codec = codec;
        self
    }

    /// Upper bound of one store operation (default 250 ms). A read whose store
    /// operation times out runs the loader instead.
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// How long a lease lasts: a loader that crashes delays others by at most this.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Lifetime of a tag's version key (default 7 days). An entry outliving
    /// its tag's key becomes a miss, never a stale hit.
    pub fn tag_ttl(mut self, ttl: Duration) -> Self {
        self.tag_ttl = ttl;
        self
    }

    /// Largest encoded value that is stored or read back (default 16 MiB).
    ///
    /// Longer stored bytes are refused before decoding, and decoding reserves
    /// room in advance for at most one collection element per byte of the
    /// value, so a forged length prefix cannot make a read allocate memory
    /// the value could not fill.
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.max_value_size = bytes;
        self
    }

    fn validate(&self) -> Result<()> {
        if self.prefix.is_empty() || self.prefix.len() > 128 {
            return Err(Error::config("prefix must be 1 to 128 bytes long"));
        }
        if let Some(c) = self.prefix.chars().find(|c| {
            matches!(c, '{' | '}' | '*' | '?' | '[' | ']' | '\\')
                || c.is_whitespace()
                || c.is_control()
        }) {
            return Err(Error::config(format_args!("prefix may not contain {c:?}")));
        }
        if self.default_ttl.is_zero() {
            return Err(Error::config("default_ttl must be positive"));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(Error::config("jitter must be within 0.0 ..= 1.0"));
        }
        if matches!(self.backend, Backend::Cluster(_)) && self.near_capacity.is_some() {
            return Err(Error::config(
                "the near cache needs a standalone Redis (.url(..)); it is not available with .cluster(..)",
            ));
        }
        if self.op_timeout.is_zero() || self.lease_ttl.is_zero() || self.tag_ttl.is_zero() {
            return Err(Error::config(
                "op_timeout, lease_ttl and tag_ttl must be positive",
            ));
        }
        Ok(())
    }

    /// Connects (for Redis: opens the connection and loads the scripts).
    pub async fn build(self) -> Result<Cache> {
        self.validate()?;
        let flights = Arc::new(Flights::default());
        let store = match &self.backend {
            Backend::Unset => {
                return Err(Error::config(
                    "choose a store: .url(..), .cluster(..) or .memory()",
                ));
            }
            Backend::Memory => Store::Memory(crate::store::memory::MemoryStore::new()),
            Backend::Url(url) => Store::Redis(
                crate::store::redis::RedisStore::connect(
                    crate::store::redis::Target::Url(url),
                    self.tls_root.as_deref(),
                    self.op_timeout,
                    &self.prefix,
                    Arc::downgrade(&flights),
                    self.near_capacity,
                    self.coalesce_reads,
                )
                .await?,
            ),
            Backend::Cluster(seeds) => Store::Redis(
                crate::store::redis::RedisStore::connect(
                    crate::store::redis::Target::Cluster(seeds),
                    self.tls_root.as_deref(),
                    self.op_timeout,
                    &self.prefix,
                    Arc::downgrade(&flights),
                    self.near_capacity,
                    self.coalesce_reads,
                )
                .await?,
            ),
        };
        let cache = Cache::from_parts(store, flights, self);
        if let Store::Redis(s) = &cache.inner.store {
            cache.start_flushers(s.connector());
        }
        Ok(cache)
    }
}
