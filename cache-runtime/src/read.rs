//! The read path: lookup-or-lease in one round trip, single flight within
//! the process, lease-guarded fills.
//!
//! A read sends one script call. On a hit that is the whole cost. On a miss
//! the same call takes the entry's lease (a random token, `SET NX PX`) and
//! returns the tags' current tokens; the loader runs; the fill stores the value
//! only if the lease is still ours (compare-and-set). Invalidation deletes the
//! lease, so a loader that read its source before a write can never store what
//! it read after the write's invalidation: its fill is refused.
//!
//! Callers in this process that find the lease held wait on the holder's
//! flight and decode the bytes it stored; callers in other processes back off
//! briefly and look again.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::__private::Cacheable;
use crate::envelope::{self, Meta};
use crate::stats::Counters;
use crate::store::{EntryKeys, LeaseArgs, Lookup, Store};
use crate::{Cache, Options};

/// Outcome of a flight, as seen by the callers waiting on it.
#[derive(Clone, Debug)]
enum Landing {
    Running,
    /// The leader stored these envelope bytes.
    Stored(Arc<Vec<u8>>),
    /// Nothing was stored (loader failed, value not cacheable, fill refused,
    /// leader cancelled): waiters look again.
    Retry,
}

/// In-process loads in progress, by entry key.
#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<String, Arc<watch::Sender<Landing>>>>,
}

impl Flights {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<watch::Sender<Landing>>>> {
        match self.map.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn subscribe(&self, key: &str) -> Option<watch::Receiver<Landing>> {
        self.lock().get(key).map(|tx| tx.subscribe())
    }
}

/// Registered by the caller holding a lease; tells waiters how the flight landed.
/// If dropped before landing (the caller's future was cancelled), waiters are
/// told to look again and the lease is given back so that one of them can lead.
struct FlightGuard<'a> {
    cache: &'a Cache,
    keys: &'a EntryKeys,
    token: &'a str,
    tx: Arc<watch::Sender<Landing>>,
    landed: bool,
}

impl<'a> FlightGuard<'a> {
    fn register(cache: &'a Cache, keys: &'a EntryKeys, token: &'a str) -> Self {
        let tx = Arc::new(watch::Sender::new(Landing::Running));
        cache.inner.flights.lock().insert(keys.entry.clone(), tx.clone());
        FlightGuard {
            cache,
            keys,
            token,
            tx,
            landed: false,
        }
    }

    fn land(mut self, how: Landing) {
        self.finish(how);
    }

    fn finish(&mut self, how: Landing) {
        self.landed = true;
        {
            let mut map = self.cache.inner.flights.lock();
            if map.get(&self.keys.entry).is_some_and(|tx| Arc::ptr_eq(tx, &self.tx)) {
                map.remove(&self.keys.entry);
            }
        }
        self.tx.send_replace(how);
    }
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        if self.landed {
            return;
        }
        self.finish(Landing::Retry);
        // Cancelled while holding the lease: give it back so that a waiter can
        // take over now rather than after the lease ttl.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let cache = self.cache.clone();
            let keys = self.keys.clone();
            let token = self.token.to_string();
            rt.spawn(async move {
                let _ = cache.inner.store.release(&keys, &token).await;
            });
        }
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn random_token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// `ttl` scaled by a uniform factor in `1 ± jitter`, in whole milliseconds (at least 1).
pub(crate) fn jittered_ms(ttl: Duration, jitter: f64) -> u64 {
    let base = ttl.as_secs_f64() * 1000.0;
    let factor = if jitter > 0.0 {
        1.0 + jitter * (rand::random::<f64>() * 2.0 - 1.0)
    } else {
        1.0
    };
    (base * factor).round().max(1.0) as u64
}

fn backoff(attempt: u32, pttl_ms: i64) -> Duration {
    let exp = 1u64 << attempt.min(6); // 2, 4, … 64 ms
    let cap = u64::try_from(pttl_ms).unwrap_or(1).clamp(1, 50);
    Duration::from_millis(exp.min(cap))
}

fn warn_pass_through() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        tracing::warn!("cache: no cache installed (Cache::builder()...build().await?.install()); cached functions run uncached");
    });
}

impl Cache {
    /// Returns the cached value of `key`, or runs `loader`, stores its `Ok`
    /// value and returns it.
    ///
    /// * One round trip on a hit. On a miss the loader runs under the key's
    ///   lease, and its value is stored only if no invalidation came in the meantime.
    /// * Concurrent calls for the same key load once: callers in this process
    ///   wait for the holder's value, callers elsewhere for its fill.
    /// * `Err` is returned as is and never cached.
    /// * Store failures never fail the call: the loader's value is returned and
    ///   the failure counted in [`Stats::errors`](crate::Stats).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use cache_runtime::{Cache, Options};
    /// let cache = Cache::builder().memory().build().await?;
    /// let opts = Options::new().ttl(Duration::from_secs(60)).tags(["users"]);
    /// let name: Result<String, std::io::Error> =
    ///     cache.get_or_load("user:1", &opts, || async { Ok("Ada".to_string()) }).await;
    /// assert_eq!(name.unwrap(), "Ada");
    /// assert_eq!(cache.stats().loads, 1);
    /// # Ok::<(), cache_runtime::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn get_or_load<T, E, F, Fut>(&self, key: impl AsRef<str>, options: &Options, loader: F) -> Result<T, E>
    where
        T: Cacheable,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.load_inner(key.as_ref().to_string(), options, |_| false, async move { loader().await })
            .await
    }

    /// The read path behind [`get_or_load`](Cache::get_or_load) and the macros.
    /// `is_none` tells which values are "none" (cached only with `cache_none`).
    pub(crate) async fn load_inner<T, E, F>(&self, key: String, opts: &Options, is_none: fn(&T) -> bool, body: F) -> Result<T, E>
    where
        T: Cacheable,
        F: Future<Output = Result<T, E>>,
    {
        let inner = &*self.inner;
        let stats = inner.stats.function(opts.function);
        if let Store::PassThrough = inner.store {
            warn_pass_through();
            stats.misses.fetch_add(1, Relaxed);
            return timed_load(&stats, body).await;
        }
        let codec = opts.codec.unwrap_or(inner.codec);
        let keys = self.entry_keys(&key, opts.version);
        let tag_keys: Vec<String> = opts.tags.iter().map(|t| self.tag_key(t)).collect();
        let token = random_token();
        let fresh = random_token();
        let lease = LeaseArgs {
            token: &token,
            lease_ms: inner.lease_ttl.as_millis() as u64,
            tag_ttl_ms: inner.tag_ttl.as_millis() as u64,
            fresh: &fresh,
        };
        let deadline = Instant::now() + inner.lease_ttl * 2;
        let mut waited = false;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let found = inner.store.lookup(&keys, &tag_keys, Some(&lease)).await;
            match found {
                Err(e) => {
                    stats.errors.fetch_add(1, Relaxed);
                    tracing::debug!(error = %e, key = %keys.entry, "cache: lookup failed; running the loader");
                    stats.misses.fetch_add(1, Relaxed);
                    return timed_load(&stats, body).await;
                }
                Ok(Lookup::Hit(bytes)) => match envelope::decode::<T>(&bytes, codec, inner.max_value_size) {
                    Ok((v, _)) => {
                        stats.hits.fetch_add(1, Relaxed);
                        return Ok(v);
                    }
                    Err(e) => {
                        self.discard_corrupt(&keys, &stats, &e).await;
                        if attempt >= 3 {
                            stats.misses.fetch_add(1, Relaxed);
                            return timed_load(&stats, body).await;
                        }
                    }
                },
                Ok(Lookup::Leased { tokens, corrupt }) => {
                    if corrupt {
                        stats.corrupt.fetch_add(1, Relaxed);
                    }
                    stats.misses.fetch_add(1, Relaxed);
                    return self
                        .lead(&keys, &token, &tokens, codec, opts, is_none, &stats, body)
                        .await;
                }
                Ok(Lookup::Held { pttl_ms, corrupt }) => {
                    if corrupt {
                        stats.corrupt.fetch_add(1, Relaxed);
                    }
                    if !opts.lock || Instant::now() >= deadline {
                        // Someone else is filling: load without waiting and store nothing.
                        stats.misses.fetch_add(1, Relaxed);
                        return timed_load(&stats, body).await;
                    }
                    if !waited {
                        waited = true;
                        stats.lock_waits.fetch_add(1, Relaxed);
                    }
                    if let Some(rx) = inner.flights.subscribe(&keys.entry) {
                        if let Some(bytes) = wait_landing(rx, deadline).await
                            && let Ok((v, _)) = envelope::decode::<T>(&bytes, codec, inner.max_value_size)
                        {
                            stats.hits.fetch_add(1, Relaxed);
                            return Ok(v);
                        }
                    } else {
                        tokio::time::sleep(backoff(attempt, pttl_ms)).await;
                    }
                }
                Ok(Lookup::Miss { corrupt }) => {
                    if corrupt {
                        stats.corrupt.fetch_add(1, Relaxed);
                    }
                    stats.misses.fetch_add(1, Relaxed);
                    return timed_load(&stats, body).await;
                }
            }
        }
    }

    /// Runs the loader while holding the lease, then fills.
    #[allow(clippy::too_many_arguments)]
    async fn lead<T, E, F>(
        &self,
        keys: &EntryKeys,
        token: &str,
        tokens: &str,
        codec: crate::CodecKind,
        opts: &Options,
        is_none: fn(&T) -> bool,
        stats: &Counters,
        body: F,
    ) -> Result<T, E>
    where
        T: Cacheable,
        F: Future<Output = Result<T, E>>,
    {
        let inner = &*self.inner;
        let guard = FlightGuard::register(self, keys, token);
        let started = Instant::now();
        let out = body.await;
        let compute = started.elapsed();
        stats.loads.fetch_add(1, Relaxed);
        stats.load_micros.fetch_add(compute.as_micros() as u64, Relaxed);
        let value = match &out {
            Ok(v) => v,
            Err(_) => {
                guard.land(Landing::Retry);
                let _ = inner.store.release(keys, token).await;
                return out;
            }
        };
        let none = is_none(value);
        let ttl = match (none, opts.cache_none) {
            (true, None) => {
                guard.land(Landing::Retry);
                let _ = inner.store.release(keys, token).await;
                return out;
            }
            (true, Some(t)) => t,
            (false, _) => opts.ttl.unwrap_or(inner.default_ttl),
        };
        let px = jittered_ms(ttl, opts.jitter.unwrap_or(inner.jitter));
        let meta = Meta {
            flags: if none { envelope::FLAG_NONE } else { 0 },
            fresh_until_ms: now_ms() + px,
            compute_us: u32::try_from(compute.as_micros()).unwrap_or(u32::MAX),
        };
        let landing = match envelope::encode(codec, value, meta, tokens, &opts.tags, inner.max_value_size) {
            Ok(bytes) => match inner.store.fill(keys, token, &bytes, px).await {
                Ok(true) => Landing::Stored(Arc::new(bytes)),
                Ok(false) => {
                    stats.fills_rejected.fetch_add(1, Relaxed);
                    Landing::Retry
                }
                Err(e) => {
                    stats.errors.fetch_add(1, Relaxed);
                    tracing::debug!(error = %e, key = %keys.entry, "cache: fill failed");
                    Landing::Retry
                }
            },
            Err(e) => {
                stats.errors.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, key = %keys.entry, "cache: value not stored");
                let _ = inner.store.release(keys, token).await;
                Landing::Retry
            }
        };
        guard.land(landing);
        out
    }

    async fn discard_corrupt(&self, keys: &EntryKeys, stats: &Counters, e: &envelope::EnvelopeError) {
        stats.corrupt.fetch_add(1, Relaxed);
        tracing::warn!(error = %e, key = %keys.entry, "cache: undecodable entry deleted");
        if self.inner.store.delete(std::slice::from_ref(&keys.entry)).await.is_err() {
            stats.errors.fetch_add(1, Relaxed);
        }
    }

    /// Reads a value by key without loading anything. A tagged entry whose
    /// tags were invalidated, an expired entry and undecodable bytes are all
    /// `None` (undecodable bytes are deleted).
    ///
    /// Uses the cache's default codec and schema version 1; see
    /// [`get_with`](Cache::get_with) for others.
    pub async fn get<T: DeserializeOwned>(&self, key: impl AsRef<str>) -> crate::Result<Option<T>> {
        self.get_with(key, &Options::new()).await
    }

    /// [`get`](Cache::get) with the codec and version of `options`.
    pub async fn get_with<T: DeserializeOwned>(&self, key: impl AsRef<str>, options: &Options) -> crate::Result<Option<T>> {
        let inner = &*self.inner;
        let stats = inner.stats.function(options.function);
        let keys = self.entry_keys(key.as_ref(), options.version);
        let Some(bytes) = inner.store.get(&keys.entry).await? else {
            stats.misses.fetch_add(1, Relaxed);
            return Ok(None);
        };
        let codec = options.codec.unwrap_or(inner.codec);
        let parsed = match envelope::parse(&bytes, inner.max_value_size) {
            Ok(p) => p,
            Err(e) => {
                self.discard_corrupt(&keys, &stats, &e).await;
                return Ok(None);
            }
        };
        if !parsed.tag_names.is_empty() {
            let tag_keys: Vec<String> = parsed.tag_names.iter().map(|t| self.tag_key(t)).collect();
            let current = inner.store.mget(&tag_keys).await?;
            let mut joined = Vec::new();
            for (i, t) in current.iter().enumerate() {
                let Some(t) = t else {
                    stats.misses.fetch_add(1, Relaxed);
                    return Ok(None);
                };
                if i > 0 {
                    joined.push(b',');
                }
                joined.extend_from_slice(t);
            }
            if joined != parsed.tokens {
                stats.misses.fetch_add(1, Relaxed);
                return Ok(None);
            }
        }
        match envelope::decode::<T>(&bytes, codec, inner.max_value_size) {
            Ok((v, _)) => {
                stats.hits.fetch_add(1, Relaxed);
                Ok(Some(v))
            }
            Err(e) => {
                self.discard_corrupt(&keys, &stats, &e).await;
                Ok(None)
            }
        }
    }

    /// Time left before the stored entry of `key` expires (`None` if there is
    /// none). Jitter makes this differ from the ttl that was asked for.
    pub async fn ttl_of(&self, key: impl AsRef<str>, options: &Options) -> crate::Result<Option<Duration>> {
        let keys = self.entry_keys(key.as_ref(), options.version);
        let ms = self.inner.store.pttl(&keys.entry).await?;
        Ok(u64::try_from(ms).ok().map(Duration::from_millis))
    }

    /// Stores `value` under `key` unconditionally, with the ttl, tags and
    /// codec of `options`, and cancels any load in progress for the key (its
    /// fill will be refused), so an older value can no longer overwrite this one.
    pub async fn set<T: serde::Serialize + ?Sized>(&self, key: impl AsRef<str>, value: &T, options: &Options) -> crate::Result<()> {
        let inner = &*self.inner;
        let codec = options.codec.unwrap_or(inner.codec);
        let keys = self.entry_keys(key.as_ref(), options.version);
        let tag_keys: Vec<String> = options.tags.iter().map(|t| self.tag_key(t)).collect();
        let ttl = options.ttl.unwrap_or(inner.default_ttl);
        let px = jittered_ms(ttl, options.jitter.unwrap_or(inner.jitter));
        let meta = Meta {
            flags: 0,
            fresh_until_ms: now_ms() + px,
            compute_us: 0,
        };
        let bytes = envelope::encode(codec, value, meta, "", &options.tags, inner.max_value_size)?;
        let (head, tail) = envelope::split_for_tokens(&bytes);
        let fresh = random_token();
        inner
            .store
            .set(&keys, &tag_keys, head, tail, px, inner.tag_ttl.as_millis() as u64, &fresh)
            .await
    }
}

async fn timed_load<T, E, F: Future<Output = Result<T, E>>>(stats: &Counters, body: F) -> Result<T, E> {
    let started = Instant::now();
    let out = body.await;
    stats.loads.fetch_add(1, Relaxed);
    stats.load_micros.fetch_add(started.elapsed().as_micros() as u64, Relaxed);
    out
}

/// Waits for a flight to land; `None` if it stored nothing or took too long.
async fn wait_landing(mut rx: watch::Receiver<Landing>, deadline: Instant) -> Option<Arc<Vec<u8>>> {
    let wait = rx.wait_for(|l| !matches!(l, Landing::Running));
    match tokio::time::timeout_at(deadline.into(), wait).await {
        Ok(Ok(l)) => match &*l {
            Landing::Stored(b) => Some(b.clone()),
            _ => None,
        },
        _ => None,
    }
}
