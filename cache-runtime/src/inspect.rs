//! A look inside stored entries, for tools and debugging.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::envelope::{self, FLAG_NONE, FLAG_SEALED};
use crate::{Cache, Options};

/// What is stored for one key, as [`Cache::inspect`] reads it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EntryInfo {
    /// The key in the store.
    pub stored_key: String,
    /// Size of the stored bytes.
    pub size: usize,
    /// Envelope format version.
    pub format: u8,
    /// The codec's name (or its id when unknown).
    pub codec: String,
    /// The value is sealed (`encrypt = true`).
    pub encrypted: bool,
    /// The value is a cached "none".
    pub none: bool,
    /// Time before the store drops the entry.
    pub ttl: Option<Duration>,
    /// When the value stops being fresh (stale serving and early refresh start).
    pub fresh_until: SystemTime,
    /// How long the loader took to compute it.
    pub compute_time: Duration,
    /// Per tag: name, the version the entry recorded, the tag's current version.
    pub tags: Vec<(String, String, Option<String>)>,
    /// Whether every tag still has the recorded version (else the entry is a miss).
    pub tags_current: bool,
    /// Why the bytes are not a valid envelope, if they are not.
    pub invalid: Option<String>,
}

fn codec_name(id: u8) -> String {
    match id {
        1 => "postcard".into(),
        2 => "json".into(),
        3 => "msgpack".into(),
        4 => "bincode".into(),
        other => format!("unknown ({other})"),
    }
}

/// A write-behind call that failed too often, from the dead-letter stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// Stream entry id.
    pub id: String,
    /// The key the call wrote.
    pub key: String,
    /// The last error.
    pub error: String,
    /// How many times it was tried.
    pub attempts: u32,
}

impl Cache {
    /// Up to `limit` keys (as the application renders them) whose stored
    /// entries match the glob `pattern`. Uses `SCAN`, never `KEYS`. Redis only.
    /// A long key (stored as its head and a hash, see
    /// [`MAX_KEY_LEN`](crate::key::MAX_KEY_LEN)) is listed as its head, `…`
    /// and its hash; so is every long key the pattern could match.
    pub async fn keys_matching(&self, pattern: &str, limit: usize) -> crate::Result<Vec<String>> {
        let crate::store::Store::Redis(store) = &self.inner.store else {
            return Ok(Vec::new());
        };
        let stored = crate::key::StoredPattern::new(&self.inner.prefix, pattern);
        let head = self.inner.prefix.len() + 1;
        let mut keys = Vec::new();
        for k in store.scan(&stored.scan, usize::MAX).await? {
            if k.ends_with(":L") || !stored.covers(&k) {
                continue;
            }
            if let Some(shown) = k.get(head..).and_then(shown_key) {
                keys.push(shown);
            }
            if keys.len() >= limit {
                break;
            }
        }
        Ok(keys)
    }

    /// Up to `limit` dead letters of a write-behind function (its path), oldest first.
    pub async fn dead_letters(
        &self,
        function: &str,
        limit: usize,
    ) -> crate::Result<Vec<DeadLetter>> {
        let crate::store::Store::Redis(store) = &self.inner.store else {
            return Ok(Vec::new());
        };
        let stream = format!(
            "{}:dead",
            crate::behind::stream_key(&self.inner.prefix, function)
        );
        Ok(store
            .xrange(&stream, limit)
            .await?
            .into_iter()
            .map(|(id, fields)| {
                let get = |name: &str| {
                    fields
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                        .unwrap_or_default()
                };
                DeadLetter {
                    id,
                    key: get("k"),
                    error: get("error"),
                    attempts: get("attempts").parse().unwrap_or(0),
                }
            })
            .collect())
    }

    /// Reads the envelope of the entry of `key` without decoding its value.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use cache_runtime::{Cache, Options};
    /// let cache = Cache::builder().memory().build().await?;
    /// let opts = Options::new().ttl(Duration::from_secs(60)).tags(["users"]);
    /// cache.set("user:1", &"Ada".to_string(), &opts).await?;
    /// let info = cache.inspect("user:1", &Options::new()).await?.unwrap();
    /// assert_eq!(info.codec, "postcard");
    /// assert_eq!(info.tags[0].0, "users");
    /// assert!(info.tags_current);
    /// # Ok::<(), cache_runtime::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn inspect(&self, key: &str, options: &Options) -> crate::Result<Option<EntryInfo>> {
        let keys = self.entry_keys(key, options.version);
        let Some(bytes) = self.inner.store.get(&keys.entry).await? else {
            return Ok(None);
        };
        let ttl = u64::try_from(self.inner.store.pttl(&keys.entry).await?)
            .ok()
            .map(Duration::from_millis);
        let mut info = EntryInfo {
            stored_key: keys.entry.clone(),
            size: bytes.len(),
            format: 0,
            codec: String::new(),
            encrypted: false,
            none: false,
            ttl,
            fresh_until: UNIX_EPOCH,
            compute_time: Duration::ZERO,
            tags: Vec::new(),
            tags_current: false,
            invalid: None,
        };
        let p = match envelope::parse(&bytes, usize::MAX) {
            Ok(p) => p,
            Err(e) => {
                info.invalid = Some(e.to_string());
                return Ok(Some(info));
            }
        };
        info.format = envelope::FORMAT;
        info.codec = codec_name(p.codec);
        info.encrypted = p.meta.flags & FLAG_SEALED != 0;
        info.none = p.meta.flags & FLAG_NONE != 0;
        info.fresh_until = UNIX_EPOCH + Duration::from_millis(p.meta.fresh_until_ms);
        info.compute_time = Duration::from_micros(u64::from(p.meta.compute_us));
        let recorded: Vec<String> = String::from_utf8_lossy(p.tokens)
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let tag_keys: Vec<String> = p.tags.iter().map(|t| self.absolute(t)).collect();
        let current = self.inner.store.mget(&tag_keys).await?;
        info.tags_current = recorded.len() == p.tags.len();
        for (i, tag) in p.tags.iter().enumerate() {
            let rec = recorded.get(i).cloned().unwrap_or_default();
            let cur = current
                .get(i)
                .cloned()
                .flatten()
                .map(|c| String::from_utf8_lossy(&c).into_owned());
            if cur.as_deref() != Some(rec.as_str()) {
                info.tags_current = false;
            }
            info.tags.push((tag_name(tag), rec, cur));
        }
        Ok(Some(info))
    }

    /// The current version token of each tag (`None`: the tag has none yet).
    pub async fn tag_versions(&self, tags: &[&str]) -> crate::Result<Vec<Option<String>>> {
        let keys: Vec<String> = tags.iter().map(|t| self.tag_key(t)).collect();
        Ok(self
            .inner
            .store
            .mget(&keys)
            .await?
            .into_iter()
            .map(|v| v.map(|b| String::from_utf8_lossy(&b).into_owned()))
            .collect())
    }
}

/// A tag as an entry records it (its stored key after the cache prefix) as
/// the application names it: `t:{users}` is `users`; a key's version tag
/// (`{key}:V`) is `version of key`.
fn tag_name(relative: &str) -> String {
    match relative.strip_prefix("t:") {
        Some(framed) => shown_key(framed).unwrap_or_else(|| framed.to_string()),
        None => match relative.strip_suffix(":V").and_then(shown_key) {
            Some(key) => format!("version of {key}"),
            None => relative.to_string(),
        },
    }
}

/// A stored key after the prefix (`{key}`, `{key}:v2`, `{head}#hash`) as
/// the application's key (`key`, `key (v2)`, `head…#hash`).
fn shown_key(framed: &str) -> Option<String> {
    let inner = framed.strip_prefix('{')?;
    let close = inner.find('}')?;
    let (key, rest) = (&inner[..close], &inner[close + 1..]);
    let mut shown = match rest.strip_prefix('#') {
        Some(hash) => format!("{key}…#{}", hash.split(':').next().unwrap_or(hash)),
        None => key.to_string(),
    };
    if let Some(version) = rest.rsplit(':').next().filter(|v| v.starts_with('v')) {
        shown.push_str(&format!(" ({version})"));
    }
    Some(shown)
}

/// The near cache's state ([`CacheBuilder::near_cache`](crate::CacheBuilder::near_cache)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct NearState {
    /// The tracking connection is up and copies are being used.
    pub live: bool,
    /// Invalidations Redis has pushed so far.
    pub pushed: u64,
    /// Times the tracking connection was lost (every copy is dropped then).
    pub losses: u64,
    /// Reads answered from copies alone, without a command to Redis.
    pub answered: u64,
}

/// How many reads shared a command ([`CacheBuilder::coalesce_reads`](crate::CacheBuilder::coalesce_reads)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ReadBatches {
    /// `MGET`s sent for two or more concurrent reads.
    pub batches: u64,
    /// Reads those `MGET`s served.
    pub reads: u64,
    /// Of those `MGET`s, the ones that failed (every read in them then ran
    /// its loader).
    pub failed_batches: u64,
    /// Reads in the failed `MGET`s.
    pub failed_reads: u64,
}

impl Cache {
    /// Counts of coalesced reads, when this cache coalesces them (standalone
    /// Redis with [`coalesce_reads`](crate::CacheBuilder::coalesce_reads) on).
    /// `reads / batches` is the mean number of reads per shared command.
    pub fn read_batches(&self) -> Option<ReadBatches> {
        let c = self.inner.store.read_batches()?;
        Some(ReadBatches {
            batches: c.batches,
            reads: c.reads,
            failed_batches: c.failed_batches,
            failed_reads: c.failed_reads,
        })
    }

    /// The near cache's state, when the cache has one.
    pub fn near_state(&self) -> Option<NearState> {
        let near = self.inner.store.near()?;
        Some(NearState {
            live: near.live(),
            pushed: near.pushed(),
            losses: near.losses(),
            answered: near.answered(),
        })
    }

    /// Waits for a fill that ended on their time limit (the safety net)
    /// rather than on the fill's landing or its wake-up message. For tests
    /// that check wake-ups arrive.
    #[doc(hidden)]
    pub fn waits_timed_out(&self) -> u64 {
        self.inner.flights.timed_out()
    }

    /// Waits until the near cache has applied more than `seen` pushed
    /// invalidations ([`NearState::pushed`]); at once without a near cache.
    /// For tests and tools that watch invalidations arrive.
    #[doc(hidden)]
    pub async fn near_pushed_beyond(&self, seen: u64) {
        if let Some(near) = self.inner.store.near() {
            near.pushed_beyond(seen).await;
        }
    }
}
