//! Per-call cache options.

use std::time::Duration;

use crate::codec::CodecKind;

/// How one call is cached: ttl, tags, codec and the rest of the arguments of
/// `#[cached(...)]`. Settings left unset fall back to the cache's defaults.
///
/// ```
/// use std::time::Duration;
/// use cache_runtime::Options;
/// let opts = Options::new()
///     .ttl(Duration::from_secs(1800))
///     .tags(["users", "user:42"])
///     .cache_none(Duration::from_secs(60));
/// assert_eq!(opts.tag_list(), ["users", "user:42"]);
/// ```
#[derive(Debug, Clone)]
pub struct Options {
    pub(crate) ttl: Option<Duration>,
    pub(crate) jitter: Option<f64>,
    pub(crate) tags: Vec<String>,
    pub(crate) stale: Option<Duration>,
    pub(crate) early_refresh: Option<f64>,
    pub(crate) lock: bool,
    pub(crate) cache_none: Option<Duration>,
    pub(crate) codec: Option<CodecKind>,
    pub(crate) version: u32,
    pub(crate) encrypt: bool,
    pub(crate) function: &'static str,
    /// How near-cache copies of this call's value type are kept decoded.
    pub(crate) copies: Option<crate::store::near::Copies>,
}

impl Default for Options {
    fn default() -> Self {
        Self::new()
    }
}

impl Options {
    /// The defaults: the cache's ttl, jitter and codec, no tags, locking on.
    pub fn new() -> Self {
        Options {
            ttl: None,
            jitter: None,
            tags: Vec::new(),
            stale: None,
            early_refresh: None,
            lock: true,
            cache_none: None,
            copies: None,
            codec: None,
            version: 1,
            encrypt: false,
            function: "",
        }
    }

    /// Time to live of the entry (before jitter).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Fraction of the ttl added or removed at random (0.0 ..= 1.0).
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = Some(jitter);
        self
    }

    /// Tags of the entry: `invalidate_tags` of any of them makes it miss.
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Serve the old value for this long past the ttl while one refresh runs.
    pub fn stale(mut self, window: Duration) -> Self {
        self.stale = Some(window);
        self
    }

    /// Probabilistic early recomputation with factor `beta` (1.0 is the usual choice).
    pub fn early_refresh(mut self, beta: f64) -> Self {
        self.early_refresh = Some(beta);
        self
    }

    /// Turns stampede protection (single flight and leases) on or off.
    pub fn lock(mut self, on: bool) -> Self {
        self.lock = on;
        self
    }

    /// Caches `None` / `Ok(None)` results for this long.
    pub fn cache_none(mut self, ttl: Duration) -> Self {
        self.cache_none = Some(ttl);
        self
    }

    /// The codec of this entry.
    pub fn codec(mut self, codec: CodecKind) -> Self {
        self.codec = Some(codec);
        self
    }

    /// Schema version folded into the key (1 adds nothing to the key).
    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// Encrypt the value at rest with the cache's encryption keys (see
    /// [`CacheBuilder::encryption_key`](crate::CacheBuilder::encryption_key)).
    /// Reads then refuse plaintext entries.
    pub fn encrypt(mut self, on: bool) -> Self {
        self.encrypt = on;
        self
    }

    /// The name under which [`Stats`](crate::Stats) counts this call.
    pub fn function(mut self, name: &'static str) -> Self {
        self.function = name;
        self
    }

    /// Lets near-cache hits clone a value decoded once instead of decoding
    /// every time (set by the macros for cloneable types).
    #[doc(hidden)]
    pub fn near_copies(mut self, copies: Option<crate::__private::Copies>) -> Self {
        self.copies = copies;
        self
    }

    /// The tags set so far.
    pub fn tag_list(&self) -> &[String] {
        &self.tags
    }
}
