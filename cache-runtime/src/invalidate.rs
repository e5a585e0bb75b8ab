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
use crate::read::random_token;
use crate::{Cache, Options};

/// Longest pattern accepted, in bytes.
pub const MAX_PATTERN_LEN: usize = 1024;

/// Invalidations waiting for the store to come back.
///
/// While any is pending, reads in this process bypass the cache (they run
/// their loaders and store nothing), so that an entry an invalidation could
/// not yet remove is never served here.
#[derive(Default)]
pub(crate) struct Pending {
    queue: Mutex<Vec<Invalidation>>,
    count: std::sync::atomic::AtomicUsize,
    running: std::sync::atomic::AtomicBool,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Invalidation>> {
        match self.queue.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Number of invalidations not yet applied (lock-free).
    pub(crate) fn len(&self) -> usize {
        self.count.load(Relaxed)
    }

    fn push(&self, inv: Invalidation) {
        let mut q = self.lock();
        q.push(inv);
        self.count.store(q.len(), Relaxed);
    }

    fn take(&self) -> Vec<Invalidation> {
        let mut q = self.lock();
        self.count.store(q.len(), Relaxed);
        std::mem::take(&mut *q)
    }

    /// Puts back what failed, ahead of anything queued meanwhile.
    fn put_back(&self, mut failed: Vec<Invalidation>) -> bool {
        let mut q = self.lock();
        failed.append(&mut q);
        *q = failed;
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
    /// cache.set("user:1", &"Ada", &Options::new()).await?;
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
        let max_version = self.inner.max_version.load(Relaxed);
        let mut stored = Vec::new();
        for key in keys {
            for version in 1..=max_version {
                let k = self.entry_keys(key.as_ref(), version);
                stored.push(k.entry);
                stored.push(k.lease);
            }
        }
        self.inner.store.delete(&stored).await
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
        let mut stored = String::with_capacity(self.inner.prefix.len() + pattern.len() + 4);
        stored.push_str(&self.inner.prefix);
        stored.push_str(":{");
        crate::key::escape_frame_into(pattern, &mut stored);
        stored.push_str("}*");
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

    /// What `#[invalidates]` runs: never fails the caller. A failure is
    /// counted and logged, and the invalidation is retried in the background
    /// until the store answers.
    pub(crate) async fn invalidate_quiet(&self, inv: &Invalidation) {
        let stats = self.inner.stats.function("");
        stats.invalidation();
        if let Err(e) = self.apply(inv).await {
            stats.error();
            tracing::warn!(error = %e, "cache: invalidation failed; retrying in the background");
            self.inner.pending.push(inv.clone());
            self.spawn_retrier();
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
        let batch = self.inner.pending.take();
        let stats = self.inner.stats.function("");
        let mut failed = Vec::new();
        for inv in batch {
            if self.apply(&inv).await.is_err() {
                stats.invalidation_retry();
                failed.push(inv);
            }
        }
        self.inner.pending.put_back(failed)
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
