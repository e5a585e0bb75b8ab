//! Invalidation by key, tag and pattern, and the retry of invalidations that
//! failed because the store did not answer.
//!
//! * A key: its entry (every schema version this process has used) and its
//!   lease are deleted; a load in progress can then no longer fill.
//! * A tag: its version key gets a new random token, one command however many
//!   entries carry the tag. Entries record the tokens read before their loader
//!   ran, so every entry of the tag, including those being loaded right now,
//!   becomes a miss.
//! * A pattern: `SCAN MATCH` + `UNLINK` in batches of 1000, never `KEYS`.
//!   Placeholder values inside the pattern were escaped when it was rendered,
//!   so only the wildcards written in the template are wildcards.

use std::sync::Mutex;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::__private::Invalidation;
use crate::error::{Error, Result};
use crate::key::StoredPattern;
use crate::read::random_token;
use crate::{Cache, Options};

/// Longest pattern accepted, in bytes.
pub const MAX_PATTERN_LEN: usize = 1024;

/// Invalidations waiting for the store to come back.
///
/// While one is pending, reads in this process of what it covers (its keys,
/// entries carrying its tags, keys its patterns match) bypass the cache (they
/// run their loaders and store nothing), so that an entry an invalidation
/// could not yet remove is never served here. Other reads go on as usual.
#[derive(Default)]
pub(crate) struct Pending {
    queue: Mutex<Vec<Waiting>>,
    count: std::sync::atomic::AtomicUsize,
    running: std::sync::atomic::AtomicBool,
    /// Held by the one pass of retries that may run at a time.
    retrying: tokio::sync::Mutex<()>,
}

/// A pending invalidation, and what it covers in stored form.
#[derive(Clone)]
struct Waiting {
    inv: Invalidation,
    /// Stored keys of the entries (schema version 1; other versions add
    /// `:v…`).
    entries: Vec<String>,
    tag_keys: Vec<String>,
    patterns: Vec<StoredPattern>,
}

impl Waiting {
    fn covers(&self, entry: &str, tag_keys: &[String]) -> bool {
        self.entries.iter().any(|e| same_entry(e, entry))
            || self.tag_keys.iter().any(|t| tag_keys.contains(t))
            || self.patterns.iter().any(|p| p.covers(entry))
    }
}

/// Whether `entry` is the stored key `base` or one of its versions.
fn same_entry(base: &str, entry: &str) -> bool {
    entry
        .strip_prefix(base)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(":v"))
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
        match self.queue.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Number of invalidations not yet applied (lock-free).
    pub(crate) fn len(&self) -> usize {
        self.count.load(Relaxed)
    }

    /// Whether a pending invalidation covers the entry `entry` (its stored
    /// key) carrying the tags stored at `tag_keys`.
    pub(crate) fn covers(&self, entry: &str, tag_keys: &[String]) -> bool {
        self.len() > 0 && self.lock().iter().any(|w| w.covers(entry, tag_keys))
    }

    fn push(&self, w: Waiting) {
        let mut q = self.lock();
        q.push(w);
        self.count.store(q.len(), Relaxed);
    }

    fn take(&self) -> Vec<Waiting> {
        let q = self.lock();
        // The count stays until what failed again is put back: reads keep
        // bypassing meanwhile.
        q.clone()
    }

    /// Replaces what was taken by what failed again (queued meanwhile
    /// stays); true when nothing is left.
    fn put_back(&self, taken: usize, failed: Vec<Waiting>) -> bool {
        let mut q = self.lock();
        let taken = taken.min(q.len());
        let newer: Vec<Waiting> = q.drain(taken..).collect();
        *q = failed;
        q.extend(newer);
        self.count.store(q.len(), Relaxed);
        q.is_empty()
    }
}

impl Cache {
    /// Deletes these keys (rendered as by the macros) and their leases.
    /// Returns how many stored keys were removed.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use cache_runtime::{Cache, Options};
    /// let cache = Cache::builder().memory().build().await?;
    /// cache.set("user:1", &"Ada".to_string(), &Options::new()).await?;
    /// cache.invalidate_keys(["user:1"]).await?;
    /// assert_eq!(cache.get::<String>("user:1").await?, None);
    /// # Ok::<(), cache_runtime::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn invalidate_keys<I, S>(&self, keys: I) -> Result<u64>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut stored = Vec::new();
        let mut version_tags = Vec::new();
        for key in keys {
            let k = self.entry_keys(key.as_ref(), 1);
            version_tags.push(crate::cache::version_tag(&k.entry));
            stored.push(k.entry);
            stored.push(k.lease);
        }
        // Entries of other schema versions carry the key's version tag:
        // moving it makes every one of them a miss, fills in flight included.
        let tokens: Vec<String> = version_tags.iter().map(|_| random_token()).collect();
        let store = &self.inner.store;
        let (deleted, moved) = tokio::join!(
            store.delete(&stored),
            store.bump_present(&version_tags, &tokens)
        );
        moved?;
        deleted
    }

    /// Invalidates every entry carrying any of these tags, in O(1) per tag.
    pub async fn invalidate_tags<I, S>(&self, tags: I) -> Result<()>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let keys: Vec<String> = tags.into_iter().map(|t| self.tag_key(t.as_ref())).collect();
        let tokens: Vec<String> = keys.iter().map(|_| random_token()).collect();
        self.inner
            .store
            .set_tokens(&keys, &tokens, self.inner.tag_ttl.as_millis() as u64)
            .await
    }

    /// Deletes every entry whose key matches a Redis glob pattern (`*`, `?`,
    /// `[..]`), e.g. `"search:*"`. Returns how many stored keys were removed.
    pub async fn invalidate_pattern(&self, pattern: impl AsRef<str>) -> Result<u64> {
        let pattern = pattern.as_ref();
        if pattern.len() > MAX_PATTERN_LEN {
            return Err(Error::InvalidKey(format!(
                "pattern of {} bytes is longer than {MAX_PATTERN_LEN}",
                pattern.len()
            )));
        }
        let stored = crate::key::StoredPattern::new(&self.inner.prefix, pattern);
        self.inner.store.delete_pattern(&stored).await
    }

    async fn apply(&self, inv: &Invalidation) -> Result<()> {
        if !inv.keys.is_empty() {
            self.invalidate_keys(&inv.keys).await?;
        }
        if !inv.tags.is_empty() {
            self.invalidate_tags(&inv.tags).await?;
        }
        for p in &inv.patterns {
            self.invalidate_pattern(p).await?;
        }
        Ok(())
    }

    /// What `#[invalidates]` runs: never fails the caller. A pattern longer
    /// than [`MAX_PATTERN_LEN`] is widened to its literal head and `*` (it
    /// removes more, never less). A store failure is counted and logged, and
    /// the invalidation is retried in the background until the store answers.
    pub(crate) async fn invalidate_quiet(&self, inv: &Invalidation) {
        let stats = self.inner.stats.function("");
        stats.invalidation();
        let inv = applicable(inv);
        match self.apply(&inv).await {
            Ok(()) => {}
            Err(e) if e.is_store_failure() => {
                stats.error();
                tracing::warn!(error = %e, "cache: invalidation failed; retrying in the background");
                self.inner.pending.push(self.waiting(inv));
                self.spawn_retrier();
            }
            Err(e) => {
                stats.error();
                tracing::error!(error = %e, "cache: invalidation refused");
            }
        }
    }

    /// A pending invalidation with what it covers in stored form.
    fn waiting(&self, inv: Invalidation) -> Waiting {
        let prefix = &self.inner.prefix;
        Waiting {
            entries: inv.keys.iter().map(|k| self.entry_key(k, 1)).collect(),
            tag_keys: inv.tags.iter().map(|t| self.tag_key(t)).collect(),
            patterns: inv
                .patterns
                .iter()
                .map(|p| StoredPattern::new(prefix, p))
                .collect(),
            inv,
        }
    }

    fn spawn_retrier(&self) {
        if self.inner.pending.running.swap(true, Relaxed) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.inner.pending.running.store(false, Relaxed);
            return;
        };
        let cache = self.clone();
        rt.spawn(async move {
            let mut delay = Duration::from_millis(10);
            loop {
                if cache.retry_pending().await {
                    break;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            cache.inner.pending.running.store(false, Relaxed);
            // An invalidation queued between the last attempt and the flag reset
            // must not be stranded.
            if cache.inner.pending.len() > 0 {
                cache.spawn_retrier();
            }
        });
    }

    /// Tries every pending invalidation once; true when none is left.
    async fn retry_pending(&self) -> bool {
        let _one_pass = self.inner.pending.retrying.lock().await;
        let batch = self.inner.pending.take();
        let taken = batch.len();
        let stats = self.inner.stats.function("");
        let mut failed = Vec::new();
        for w in batch {
            if let Err(e) = self.apply(&w.inv).await {
                stats.invalidation_retry();
                if e.is_store_failure() {
                    failed.push(w);
                }
            }
        }
        self.inner.pending.put_back(taken, failed)
    }

    /// Number of invalidations that failed and are waiting to be retried.
    pub fn pending_invalidations(&self) -> usize {
        self.inner.pending.len()
    }

    /// Invalidates with options of a call (`version` decides which stored key).
    #[doc(hidden)]
    pub async fn invalidate_key_with(&self, key: &str, options: &Options) -> Result<u64> {
        let k = self.entry_keys(key, options.version);
        self.inner.store.delete(&[k.entry, k.lease]).await
    }
}

/// `inv` with every pattern over [`MAX_PATTERN_LEN`] widened to its literal
/// head and `*`.
fn applicable(inv: &Invalidation) -> Invalidation {
    let mut inv = inv.clone();
    for p in &mut inv.patterns {
        if p.len() > MAX_PATTERN_LEN {
            tracing::warn!(
                len = p.len(),
                "cache: pattern longer than {MAX_PATTERN_LEN} bytes; removing every key of its literal head"
            );
            *p = format!("{}*", crate::key::glob_head(p, MAX_PATTERN_LEN - 1));
        }
    }
    inv
}

/// Used by `shutdown`: retries pending invalidations for up to five seconds.
pub(crate) async fn drain_retries(cache: &Cache) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while cache.inner.pending.len() > 0 && tokio::time::Instant::now() < deadline {
        if cache.retry_pending().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = cache.inner.pending.len();
    if left > 0 {
        tracing::error!(
            left,
            "cache: shutting down with invalidations that could not be applied"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(keys: &[&str], tags: &[&str], patterns: &[&str]) -> Waiting {
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Waiting {
            inv: Invalidation::default(),
            entries: owned(keys),
            tag_keys: owned(tags),
            patterns: patterns
                .iter()
                .map(|p| StoredPattern::new("p", p))
                .collect(),
        }
    }

    #[test]
    fn a_pending_invalidation_covers_its_keys_versions_tags_and_patterns() {
        let w = waiting(&["p:{a}"], &["p:t:{users}"], &["s:*"]);
        assert!(w.covers("p:{a}", &[]));
        assert!(w.covers("p:{a}:v2", &[]), "every version");
        assert!(!w.covers("p:{ab}", &[]) && !w.covers("p:{a}b", &[]));
        assert!(w.covers("p:{x}", &["p:t:{other}".into(), "p:t:{users}".into()]));
        assert!(!w.covers("p:{x}", &["p:t:{other}".into()]));
        assert!(w.covers("p:{s:1}", &[]) && !w.covers("p:{t:1}", &[]));
    }

    #[test]
    fn patterns_over_the_limit_are_widened_to_their_head() {
        let long = format!("search:{}*", "%3A".repeat(400));
        let inv = Invalidation {
            patterns: vec!["s:*".into(), long.clone()],
            ..Invalidation::default()
        };
        let applied = applicable(&inv);
        assert_eq!(applied.patterns[0], "s:*");
        let widened = &applied.patterns[1];
        assert!(widened.len() <= MAX_PATTERN_LEN && widened.ends_with('*'));
        assert!(long.starts_with(&widened[..widened.len() - 1]));
    }
}
