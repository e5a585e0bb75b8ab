//! The read path: a plain read for hits, lookup-or-lease on a miss, single
//! flight within the process, lease-guarded fills.
//!
//! A read first sends one plain command, `GET entry` (or `MGET entry tag…`
//! for a tagged entry), and checks the envelope's recorded tag versions
//! against the current ones itself. On a hit that is the whole cost: one round
//! trip and no script (a script call costs Redis ten times a `GET`). On a miss
//! the lookup script checks again and takes the entry's lease (a random token,
//! `SET NX PX`) in the same call, returning the tags' current tokens; the
//! loader runs; the fill stores the value only if the lease is still ours
//! (compare-and-set). Invalidation deletes the
//! lease, so a loader that read its source before a write can never store what
//! it read after the write's invalidation: its fill is refused.
//!
//! Callers in this process that find the lease held wait on the holder's
//! flight and decode the bytes it stored; callers in other processes back off
//! briefly and look again.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;

use crate::__private::Cacheable;
use crate::envelope::{self, Meta};
use crate::flight::Landing;
use crate::stats::Counters;
use crate::store::{EntryKeys, LeaseArgs, LeaseMode, Lookup, Store};
use crate::{Cache, Options};

/// Registered by the caller holding a lease; tells waiters how the flight landed.
/// If dropped before landing (the caller's future was cancelled), waiters are
/// told to look again and the lease is given back so that one of them can
/// take over at once rather than after the lease ttl.
struct FlightGuard<'a> {
    cache: &'a Cache,
    keys: &'a EntryKeys,
    token: &'a str,
    slot: Arc<tokio::sync::watch::Sender<Landing>>,
    landed: bool,
}

impl<'a> FlightGuard<'a> {
    fn register(cache: &'a Cache, keys: &'a EntryKeys, token: &'a str) -> Self {
        FlightGuard {
            slot: cache.inner.flights.lead(&keys.entry),
            cache,
            keys,
            token,
            landed: false,
        }
    }

    fn land(mut self, how: Landing) {
        self.landed = true;
        self.cache
            .inner
            .flights
            .land(&self.keys.entry, &self.slot, how);
    }
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        if self.landed {
            return;
        }
        self.cache
            .inner
            .flights
            .land(&self.keys.entry, &self.slot, Landing::Retry);
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

/// Wall-clock Unix time in milliseconds (the default clock).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Uniform in `[0, 1)` (the default random source).
pub(crate) fn random_unit() -> f64 {
    rand::random::<f64>()
}

/// A random 64-bit token as 16 hex digits, without allocating.
#[derive(Clone, Copy)]
pub(crate) struct Token([u8; 16]);

impl Token {
    pub(crate) fn random() -> Token {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut n = rand::random::<u64>();
        let mut out = [0u8; 16];
        for b in out.iter_mut().rev() {
            *b = HEX[(n & 0xf) as usize];
            n >>= 4;
        }
        Token(out)
    }

    pub(crate) fn as_str(&self) -> &str {
        // Hex digits are ASCII, so this never fails.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// A random token as an owned string.
pub(crate) fn random_token() -> String {
    Token::random().as_str().to_string()
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

/// How long a waiter waits before looking again. While fills are announced
/// to this process (or the holder is in this process), the landing comes
/// first and this is only a safety net: up to the lease's remaining time,
/// capped at one second. Otherwise it is short and growing (2, 4, … 50 ms).
fn backoff(attempt: u32, pttl_ms: i64, announced: bool) -> Duration {
    let left = u64::try_from(pttl_ms).unwrap_or(1).max(1);
    if announced {
        return Duration::from_millis(left.min(1000));
    }
    let exp = 1u64 << attempt.min(6);
    Duration::from_millis(exp.min(50).min(left))
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
    pub async fn get_or_load<T, E, F, Fut>(
        &self,
        key: impl AsRef<str>,
        options: &Options,
        loader: F,
    ) -> Result<T, E>
    where
        T: Cacheable,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.load_inner(key.as_ref().to_string(), options, |_| false, async move {
            loader().await
        })
        .await
    }

    /// The read path behind [`get_or_load`](Cache::get_or_load) and the macros.
    /// `is_none` tells which values are "none" (cached only with `cache_none`).
    pub(crate) async fn load_inner<T, E, F>(
        &self,
        key: String,
        opts: &Options,
        is_none: fn(&T) -> bool,
        body: F,
    ) -> Result<T, E>
    where
        T: Cacheable,
        F: Future<Output = Result<T, E>>,
    {
        use tracing::Instrument;
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return self.read_path(key, opts, is_none, body).await;
        }
        let span = tracing::debug_span!(
            "cache.read",
            cache = %self.inner.prefix,
            function = opts.function,
            key = tracing::field::Empty,
        );
        if !span.is_disabled() {
            span.record("key", self.shown_key(&key).as_str());
        }
        self.read_path(key, opts, is_none, body)
            .instrument(span)
            .await
    }

    /// A key as it may appear in spans and logs: itself, or its hash when
    /// keys are redacted.
    pub(crate) fn shown_key(&self, key: &str) -> String {
        if self.inner.redact_keys {
            format!("#{}", crate::key::hash_value(key))
        } else {
            key.to_string()
        }
    }

    async fn read_path<T, E, F>(
        &self,
        key: String,
        opts: &Options,
        is_none: fn(&T) -> bool,
        body: F,
    ) -> Result<T, E>
    where
        T: Cacheable,
        F: Future<Output = Result<T, E>>,
    {
        let inner = &*self.inner;
        let stats = inner.stats.function(opts.function);
        if let Store::PassThrough = inner.store {
            warn_pass_through();
            stats.miss();
            return timed_load(&stats, body).await;
        }
        if inner.pending.len() > 0 {
            // An invalidation could not be applied yet: what the store holds may be
            // exactly what it was meant to remove.
            stats.miss();
            return timed_load(&stats, body).await;
        }
        let codec = opts.codec.unwrap_or(inner.codec);
        let entry = self.entry_key(&key, opts.version);
        let tag_keys: Vec<String> = opts.tags.iter().map(|t| self.tag_key(t)).collect();
        // Hits first, with a plain read; the lease script only on a miss.
        let mut peeked: Option<Vec<u8>> = None;
        match inner.store.peek(&entry, &tag_keys).await {
            Some(Ok(p)) => {
                peeked = p.hit();
                // The common case, decided without building anything else.
                if let Some(bytes) = &peeked {
                    let reading = envelope::Reading {
                        codec,
                        max_size: inner.max_value_size,
                        sealing: self.any_sealing_for(&entry),
                        require_sealed: opts.encrypt,
                    };
                    if let Ok((v, meta)) = envelope::decode::<T>(bytes, reading)
                        && !self.wants_refresh(opts, &meta)
                    {
                        stats.hit();
                        return Ok(v);
                    }
                }
            }
            Some(Err(e)) => {
                stats.error();
                tracing::debug!(error = %e, "cache: read failed; running the loader");
                stats.miss();
                return timed_load(&stats, body).await;
            }
            None => {}
        }
        let keys = EntryKeys::of(entry);
        // One random token: the lease's, and (unique per call) the prefix of
        // versions for tags that have none yet.
        let token = Token::random();
        let mut lease = LeaseArgs {
            mode: LeaseMode::OnMiss,
            token: token.as_str(),
            lease_ms: inner.lease_ttl.as_millis() as u64,
            tag_ttl_ms: inner.tag_ttl.as_millis() as u64,
        };
        // How long this call may wait for others' loads; set on first wait.
        let mut deadline: Option<Instant> = None;
        let mut waited = false;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let found = match peeked.take() {
                Some(bytes) => Ok(Lookup::Hit(bytes)),
                None => inner.store.lookup(&keys, &tag_keys, Some(&lease)).await,
            };
            match found {
                Err(e) => {
                    stats.error();
                    tracing::debug!(error = %e, "cache: lookup failed; running the loader");
                    stats.miss();
                    return timed_load(&stats, body).await;
                }
                Ok(Lookup::Hit(bytes)) => {
                    match envelope::decode::<T>(&bytes, self.reading(opts, &keys)) {
                        Ok((v, meta)) => {
                            if self.wants_refresh(opts, &meta) {
                                // Stale, or chosen for early refresh: one caller (the one
                                // that gets the lease) reloads; everyone else is served `v`.
                                lease.mode = LeaseMode::Always;
                                let stale = meta.fresh_until_ms <= (inner.now_ms)();
                                return self
                                    .refresh(
                                        &keys, &tag_keys, &lease, codec, opts, is_none, &stats, v,
                                        stale, body,
                                    )
                                    .await;
                            }
                            stats.hit();
                            return Ok(v);
                        }
                        Err(e) => {
                            self.discard_corrupt(&keys, &stats, &e).await;
                            if attempt >= 3 {
                                stats.miss();
                                return timed_load(&stats, body).await;
                            }
                        }
                    }
                }
                Ok(Lookup::Leased { tokens, corrupt }) => {
                    if corrupt {
                        stats.corrupt_entry();
                    }
                    stats.miss();
                    return self
                        .lead(
                            &keys,
                            token.as_str(),
                            &tokens,
                            codec,
                            opts,
                            is_none,
                            &stats,
                            body,
                        )
                        .await;
                }
                Ok(Lookup::Held { pttl_ms, corrupt }) => {
                    if corrupt {
                        stats.corrupt_entry();
                    }
                    let deadline =
                        *deadline.get_or_insert_with(|| Instant::now() + inner.lease_ttl * 2);
                    if !opts.lock || Instant::now() >= deadline {
                        // Someone else is filling: load without waiting and store nothing.
                        stats.miss();
                        return timed_load(&stats, body).await;
                    }
                    if !waited {
                        waited = true;
                        stats.lock_wait();
                    }
                    let mut waiter = inner.flights.wait_on(&keys.entry);
                    let limit = backoff(attempt, pttl_ms, inner.store.wakeups_live());
                    if let Some(bytes) = waiter.landed(limit).await
                        && let Ok((v, _)) = envelope::decode::<T>(&bytes, self.reading(opts, &keys))
                    {
                        stats.hit();
                        return Ok(v);
                    }
                }
                Ok(Lookup::Miss { corrupt }) => {
                    if corrupt {
                        stats.corrupt_entry();
                    }
                    stats.miss();
                    return timed_load(&stats, body).await;
                }
            }
        }
    }

    /// How this call reads stored bytes back.
    fn reading<'a>(&'a self, opts: &Options, keys: &'a EntryKeys) -> envelope::Reading<'a> {
        envelope::Reading {
            codec: opts.codec.unwrap_or(self.inner.codec),
            max_size: self.inner.max_value_size,
            sealing: self.sealing(opts, keys).or_else(|| self.any_sealing(keys)),
            require_sealed: opts.encrypt,
        }
    }

    /// Encryption for values this call writes (`None` unless it asks for it).
    fn sealing<'a>(&'a self, opts: &Options, keys: &'a EntryKeys) -> Option<envelope::Sealing<'a>> {
        if opts.encrypt {
            self.any_sealing(keys)
        } else {
            None
        }
    }

    fn any_sealing<'a>(&'a self, keys: &'a EntryKeys) -> Option<envelope::Sealing<'a>> {
        self.any_sealing_for(&keys.entry)
    }

    fn any_sealing_for<'a>(&'a self, entry: &'a str) -> Option<envelope::Sealing<'a>> {
        (!self.inner.keyring.is_empty()).then_some(envelope::Sealing {
            ring: &self.inner.keyring,
            aad: entry.as_bytes(),
        })
    }

    /// Whether a hit should be reloaded now: past its ttl within a `stale`
    /// window, or picked by early refresh.
    fn wants_refresh(&self, opts: &Options, meta: &Meta) -> bool {
        if opts.stale.is_none() && opts.early_refresh.is_none() {
            return false;
        }
        let now = (self.inner.now_ms)();
        if opts.stale.is_some() && meta.fresh_until_ms <= now {
            return true;
        }
        match opts.early_refresh {
            Some(beta) => crate::refresh::xfetch(
                now,
                meta.fresh_until_ms,
                meta.compute_us,
                beta,
                (self.inner.random)(),
            ),
            None => false,
        }
    }

    /// Reloads a stale or early-refreshed entry if this caller gets its lease;
    /// otherwise, and when the loader fails, serves the current value.
    #[allow(clippy::too_many_arguments)]
    async fn refresh<T, E, F>(
        &self,
        keys: &EntryKeys,
        tag_keys: &[String],
        lease: &LeaseArgs<'_>,
        codec: crate::CodecKind,
        opts: &Options,
        is_none: fn(&T) -> bool,
        stats: &Counters,
        current: T,
        stale: bool,
        body: F,
    ) -> Result<T, E>
    where
        T: Cacheable,
        F: Future<Output = Result<T, E>>,
    {
        let serve_current = |stats: &Counters| {
            if stale {
                stats.stale_serve();
            } else {
                stats.hit();
            }
        };
        let tokens = match self.inner.store.lookup(keys, tag_keys, Some(lease)).await {
            Ok(Lookup::Leased { tokens, .. }) => tokens,
            Ok(_) => {
                serve_current(stats);
                return Ok(current);
            }
            Err(_) => {
                stats.error();
                serve_current(stats);
                return Ok(current);
            }
        };
        stats.refresh();
        match self
            .lead(
                keys,
                lease.token,
                &tokens,
                codec,
                opts,
                is_none,
                stats,
                body,
            )
            .await
        {
            Ok(v) => Ok(v),
            Err(_) if stale => {
                // Failover: the source failed, the stale value stands in.
                stats.stale_serve();
                Ok(current)
            }
            Err(_) => {
                stats.hit();
                Ok(current)
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
        stats.loaded(compute);
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
        let fresh_ms = jittered_ms(ttl, opts.jitter.unwrap_or(inner.jitter));
        let px = fresh_ms + opts.stale.map_or(0, |s| s.as_millis() as u64);
        let meta = Meta {
            flags: if none { envelope::FLAG_NONE } else { 0 },
            fresh_until_ms: (inner.now_ms)() + fresh_ms,
            compute_us: u32::try_from(compute.as_micros()).unwrap_or(u32::MAX),
        };
        let landing = match envelope::encode(
            codec,
            value,
            meta,
            tokens,
            &opts.tags,
            inner.max_value_size,
            self.sealing(opts, keys),
        ) {
            Ok(bytes) => match inner.store.fill(keys, token, &bytes, px).await {
                Ok(true) => Landing::Stored(Arc::new(bytes)),
                Ok(false) => {
                    stats.fill_rejected();
                    Landing::Retry
                }
                Err(e) => {
                    stats.error();
                    tracing::debug!(error = %e, "cache: fill failed");
                    Landing::Retry
                }
            },
            Err(e) => {
                stats.error();
                tracing::warn!(error = %e, key = %self.shown_key(&keys.entry), "cache: value not stored");
                let _ = inner.store.release(keys, token).await;
                Landing::Retry
            }
        };
        guard.land(landing);
        out
    }

    async fn discard_corrupt(
        &self,
        keys: &EntryKeys,
        stats: &Counters,
        e: &envelope::EnvelopeError,
    ) {
        stats.corrupt_entry();
        tracing::warn!(error = %e, key = %self.shown_key(&keys.entry), "cache: undecodable entry deleted");
        if self
            .inner
            .store
            .delete(std::slice::from_ref(&keys.entry))
            .await
            .is_err()
        {
            stats.error();
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
    pub async fn get_with<T: DeserializeOwned>(
        &self,
        key: impl AsRef<str>,
        options: &Options,
    ) -> crate::Result<Option<T>> {
        let inner = &*self.inner;
        let stats = inner.stats.function(options.function);
        let keys = self.entry_keys(key.as_ref(), options.version);
        let Some(bytes) = inner.store.get(&keys.entry).await? else {
            stats.miss();
            return Ok(None);
        };
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
                    stats.miss();
                    return Ok(None);
                };
                if i > 0 {
                    joined.push(b',');
                }
                joined.extend_from_slice(t);
            }
            if joined != parsed.tokens {
                stats.miss();
                return Ok(None);
            }
        }
        match envelope::decode::<T>(&bytes, self.reading(options, &keys)) {
            Ok((v, _)) => {
                stats.hit();
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
    pub async fn ttl_of(
        &self,
        key: impl AsRef<str>,
        options: &Options,
    ) -> crate::Result<Option<Duration>> {
        let keys = self.entry_keys(key.as_ref(), options.version);
        let ms = self.inner.store.pttl(&keys.entry).await?;
        Ok(u64::try_from(ms).ok().map(Duration::from_millis))
    }

    /// Writes raw bytes where the entry of `key` is stored, bypassing the
    /// envelope: for tests of how undecodable entries are handled.
    #[doc(hidden)]
    pub async fn debug_put_raw(
        &self,
        key: &str,
        options: &Options,
        bytes: &[u8],
    ) -> crate::Result<()> {
        let keys = self.entry_keys(key, options.version);
        self.inner.store.put_raw(&keys.entry, bytes, 60_000).await
    }

    /// Reads the raw stored bytes of the entry of `key` (envelope included).
    #[doc(hidden)]
    pub async fn debug_get_raw(
        &self,
        key: &str,
        options: &Options,
    ) -> crate::Result<Option<Vec<u8>>> {
        let keys = self.entry_keys(key, options.version);
        self.inner.store.get(&keys.entry).await
    }

    /// The stored (Redis) key of an entry, for inspection with other tools.
    pub fn stored_key(&self, key: &str, options: &Options) -> String {
        self.entry_keys(key, options.version).entry
    }

    /// Stores `value` under `key` unconditionally, with the ttl, tags and
    /// codec of `options`, and cancels any load in progress for the key (its
    /// fill will be refused), so an older value can no longer overwrite this one.
    pub async fn set<T: serde::Serialize + ?Sized>(
        &self,
        key: impl AsRef<str>,
        value: &T,
        options: &Options,
    ) -> crate::Result<()> {
        let e = self.encode_for_set(key.as_ref(), value, options)?;
        let fresh = random_token();
        self.inner
            .store
            .set(&e.write(self.inner.tag_ttl, &fresh))
            .await
    }

    /// What an unconditional store of `value` writes (tokens to be spliced in).
    pub(crate) fn encode_for_set<T: serde::Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        options: &Options,
    ) -> crate::Result<SetEntry> {
        let inner = &*self.inner;
        let codec = options.codec.unwrap_or(inner.codec);
        let keys = self.entry_keys(key, options.version);
        let tag_keys: Vec<String> = options.tags.iter().map(|t| self.tag_key(t)).collect();
        let ttl = options.ttl.unwrap_or(inner.default_ttl);
        let fresh_ms = jittered_ms(ttl, options.jitter.unwrap_or(inner.jitter));
        let px = fresh_ms + options.stale.map_or(0, |s| s.as_millis() as u64);
        let meta = Meta {
            flags: 0,
            fresh_until_ms: (inner.now_ms)() + fresh_ms,
            compute_us: 0,
        };
        let bytes = envelope::encode(
            codec,
            value,
            meta,
            "",
            &options.tags,
            inner.max_value_size,
            self.sealing(options, &keys),
        )?;
        Ok(SetEntry {
            keys,
            tag_keys,
            bytes,
            px,
        })
    }
}

/// An entry ready for an unconditional store.
pub(crate) struct SetEntry {
    pub(crate) keys: EntryKeys,
    pub(crate) tag_keys: Vec<String>,
    pub(crate) bytes: Vec<u8>,
    pub(crate) px: u64,
}

impl SetEntry {
    /// The store operation, with `fresh` as the prefix of new tag versions.
    pub(crate) fn write<'a>(
        &'a self,
        tag_ttl: Duration,
        fresh: &'a str,
    ) -> crate::store::Write<'a> {
        let (head, tail) = envelope::split_for_tokens(&self.bytes);
        crate::store::Write {
            keys: &self.keys,
            tag_keys: &self.tag_keys,
            head,
            tail,
            px: self.px,
            tag_ttl_ms: tag_ttl.as_millis() as u64,
            fresh,
        }
    }
}

async fn timed_load<T, E, F: Future<Output = Result<T, E>>>(
    stats: &Counters,
    body: F,
) -> Result<T, E> {
    let started = Instant::now();
    let out = body.await;
    stats.loaded(started.elapsed());
    out
}
