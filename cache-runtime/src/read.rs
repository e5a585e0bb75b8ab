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
use crate::flight::{Acquire, Landing};
use crate::lead::{Body, Detached, FlightGuard, Inline, Lead};
use crate::stats::Counters;
use crate::store::{EntryKeys, LeaseArgs, LeaseMode, Lookup, Store};
use crate::{Cache, Options};

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

/// Says once per process, on standard error as well as through `tracing`
/// (a process that set up no logging still shows it), that cached functions
/// run uncached for want of an installed cache.
fn warn_pass_through() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        const MSG: &str = "no cache is installed (Cache::builder()...build().await?.install()): \
                           #[cached] functions run their bodies and cache nothing";
        tracing::warn!("cache: {MSG}");
        eprintln!("cache-runtime: {MSG}");
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
        let body = Inline(async move { loader().await });
        self.load_inner(key.as_ref(), options, |_| false, body)
            .await
    }

    /// [`get_or_load`](Cache::get_or_load) for a loader that owns what it
    /// uses (`Send + 'static`), so that the load can outlive this caller. It
    /// runs in this caller, and:
    ///
    /// * If this caller is dropped mid-load, the rest of the load runs in a
    ///   task of its own: it finishes and fills, and the callers waiting on
    ///   it get its value.
    /// * With `stale` or `early_refresh`, the refresh runs in the background:
    ///   the caller that starts it is served the current value at once, like
    ///   everyone else.
    ///
    /// The macros use this for functions whose arguments are all owned.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use cache_runtime::{Cache, Options};
    /// let cache = Cache::builder().memory().build().await?;
    /// let opts = Options::new().ttl(Duration::from_secs(60)).stale(Duration::from_secs(600));
    /// let id = 7u64;
    /// let name: Result<String, std::io::Error> = cache
    ///     .get_or_spawn("user:7", &opts, move || async move { Ok(format!("user {id}")) })
    ///     .await;
    /// assert_eq!(name.unwrap(), "user 7");
    /// # Ok::<(), cache_runtime::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn get_or_spawn<T, E, F, Fut>(
        &self,
        key: impl AsRef<str>,
        options: &Options,
        loader: F,
    ) -> Result<T, E>
    where
        T: Cacheable,
        E: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let body = Detached(async move { loader().await });
        self.load_inner(key.as_ref(), options, |_| false, body)
            .await
    }

    /// The read path behind [`get_or_load`](Cache::get_or_load) and the macros.
    /// `is_none` tells which values are "none" (cached only with `cache_none`).
    pub(crate) async fn load_inner<T, E, B>(
        &self,
        key: &str,
        opts: &Options,
        is_none: fn(&T) -> bool,
        body: B,
    ) -> Result<T, E>
    where
        T: Cacheable,
        B: Body<T, E>,
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
            span.record("key", self.shown_key(key).as_str());
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

    /// Waits on a load of this process that the call joined before reading
    /// the store (see `flight`); its value if it stored one.
    async fn joined<T: Cacheable>(
        &self,
        mut waiter: crate::flight::Waiter<'_>,
        opts: &Options,
        entry: &str,
        stats: &Counters,
    ) -> Option<T> {
        stats.lock_wait();
        let bytes = waiter.landed(self.inner.lease_ttl).await?;
        let reading = envelope::Reading {
            codec: opts.codec.unwrap_or(self.inner.codec),
            max_size: self.inner.max_value_size,
            sealing: self.any_sealing_for(entry),
            require_sealed: opts.encrypt,
            fingerprint: crate::fingerprint::of::<T>(),
        };
        let (v, _) = envelope::decode::<T>(&bytes, reading).ok()?;
        stats.hit();
        Some(v)
    }

    async fn read_path<T, E, B>(
        &self,
        key: &str,
        opts: &Options,
        is_none: fn(&T) -> bool,
        body: B,
    ) -> Result<T, E>
    where
        T: Cacheable,
        B: Body<T, E>,
    {
        let inner = &*self.inner;
        let stats = inner.stats.function(opts.function);
        if let Store::PassThrough = inner.store {
            warn_pass_through();
            stats.miss();
            return timed_load(&stats, body.inline()).await;
        }
        let codec = opts.codec.unwrap_or(inner.codec);
        let entry = self.entry_key(key, opts.version);
        if self.pending_covers(&entry, opts) {
            // An invalidation of this entry could not be applied yet: what the
            // store holds may be exactly what it was meant to remove.
            stats.miss();
            return timed_load(&stats, body.inline()).await;
        }
        // A load of this key is under way here: its value will be stored after
        // this call began, so it is as fresh as a read of the store.
        if let Some(waiter) = inner.flights.join_loading(&entry)
            && let Some(v) = self.joined(waiter, opts, &entry, &stats).await
        {
            return Ok(v);
        }
        let tag_keys = self.tag_keys(&entry, opts);
        // Hits first, with a plain read; the lease script only on a miss. A
        // function whose reads lately miss asks for the lease at once (a miss
        // in two round trips), unless copies of a near cache may answer.
        let script_first = stats.lately_missing() && !inner.store.near().is_some_and(|n| n.live());
        let mut peeked: Option<crate::store::Bytes> = None;
        let peek = match (script_first, inner.store.peeker()) {
            (false, Some(redis)) => Some(redis.peek(&entry, &tag_keys).await),
            _ => None,
        };
        match peek {
            Some(Ok(p)) => {
                peeked = p.hit();
                match &peeked {
                    Some(_) => stats.found(),
                    None => stats.not_found(),
                }
                // The common case, decided without building anything else.
                if let Some(bytes) = &peeked {
                    // A near-cache copy decoded before: a clone, no decode.
                    let copy = match (bytes, opts.copies) {
                        (crate::store::Bytes::Shared(held), Some(c)) => Some((held, c)),
                        _ => None,
                    };
                    if let Some((held, c)) = copy
                        && let Some((v, meta)) = held.decoded::<T>(c, codec, opts.encrypt)
                        && !self.wants_refresh(opts, &meta)
                    {
                        stats.hit();
                        return Ok(v);
                    }
                    let reading = envelope::Reading {
                        codec,
                        max_size: inner.max_value_size,
                        sealing: self.any_sealing_for(&entry),
                        require_sealed: opts.encrypt,
                        fingerprint: crate::fingerprint::of::<T>(),
                    };
                    if let Ok((v, meta)) = envelope::decode::<T>(bytes, reading) {
                        if let Some((held, c)) = copy {
                            held.remember(&v, meta, codec, c);
                        }
                        if !self.wants_refresh(opts, &meta) {
                            stats.hit();
                            return Ok(v);
                        }
                    }
                }
            }
            Some(Err(e)) => {
                stats.error();
                tracing::debug!(error = %e, "cache: read failed; running the loader");
                stats.miss();
                return timed_load(&stats, body.inline()).await;
            }
            None => {}
        }
        let keys = EntryKeys::of(entry);
        // A miss: the first caller here asks for the lease; the others wait
        // for it instead of asking too.
        // One random token: the lease's, and (unique per call) the prefix of
        // versions for tags that have none yet.
        let token = Token::random();
        let mut asking: Option<FlightGuard> = None;
        if peeked.is_none() {
            match inner.flights.acquire(&keys.entry) {
                Acquire::Ask(slot) => {
                    // Should this call be dropped while asking, the lease it
                    // may just have been granted is given back.
                    let mut guard = FlightGuard::new(self, &keys, slot);
                    guard.holds(token);
                    asking = Some(guard);
                }
                Acquire::Join(waiter) => {
                    if let Some(v) = self.joined(waiter, opts, &keys.entry, &stats).await {
                        return Ok(v);
                    }
                }
            }
        }
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
                Some(bytes) => Ok(Lookup::Hit(bytes.into_vec())),
                None => inner.store.lookup(&keys, &tag_keys, Some(&lease)).await,
            };
            if script_first && attempt == 1 {
                match &found {
                    Ok(Lookup::Hit(_)) => stats.found(),
                    Ok(_) => stats.not_found(),
                    Err(_) => {}
                }
            }
            if let Ok(Lookup::Leased { tokens, corrupt }) = found {
                if corrupt {
                    stats.corrupt_entry();
                }
                stats.miss();
                let mut guard = match asking.take() {
                    Some(g) => g,
                    None => FlightGuard::new(self, &keys, inner.flights.lead(&keys.entry, true)),
                };
                guard.holds(token);
                let lead = Lead {
                    guard,
                    tag_keys,
                    tokens,
                    codec,
                    opts: opts.clone(),
                    is_none,
                    stats: stats.clone(),
                };
                return body.lead(lead).await;
            }
            // Not leased to this call: whoever joined it looks for themselves.
            if let Some(guard) = asking.take() {
                guard.land(Landing::Retry);
            }
            match found {
                Err(e) => {
                    stats.error();
                    tracing::debug!(error = %e, "cache: lookup failed; running the loader");
                    stats.miss();
                    return timed_load(&stats, body.inline()).await;
                }
                Ok(Lookup::Leased { .. }) => unreachable!("handled above"),
                Ok(Lookup::Hit(bytes)) => {
                    match envelope::decode::<T>(&bytes, self.reading::<T>(opts, &keys)) {
                        Ok((v, meta)) => {
                            if self.wants_refresh(opts, &meta) {
                                // Stale, or chosen for early refresh: one caller (the one
                                // that gets the lease) reloads; everyone else is served `v`.
                                lease.mode = LeaseMode::Always;
                                let stale = meta.fresh_until_ms <= (inner.now_ms)();
                                let refresh = Refresh {
                                    keys,
                                    tag_keys,
                                    token,
                                    codec,
                                    is_none,
                                    stale,
                                };
                                return self.refresh(refresh, &lease, opts, &stats, v, body).await;
                            }
                            stats.hit();
                            return Ok(v);
                        }
                        Err(e) => {
                            self.refuse(&keys, &stats, &e).await;
                            // Another type's entry stays; this call loads
                            // without storing over it.
                            if attempt >= 3 || e.is_foreign() {
                                stats.miss();
                                return timed_load(&stats, body.inline()).await;
                            }
                        }
                    }
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
                        return timed_load(&stats, body.inline()).await;
                    }
                    if !waited {
                        waited = true;
                        stats.lock_wait();
                    }
                    let mut waiter = inner.flights.wait_on(&keys.entry);
                    let limit = backoff(attempt, pttl_ms, inner.store.wakeups_live());
                    if let Some(bytes) = waiter.landed(limit).await
                        && let Ok((v, _)) =
                            envelope::decode::<T>(&bytes, self.reading::<T>(opts, &keys))
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
                    return timed_load(&stats, body.inline()).await;
                }
            }
        }
    }

    /// Whether an invalidation that could not be applied yet covers the
    /// entry `entry` read with `opts` (its tags).
    fn pending_covers(&self, entry: &str, opts: &Options) -> bool {
        let pending = &self.inner.pending;
        if pending.len() == 0 {
            return false;
        }
        let tag_keys = self.tag_keys(entry, opts);
        pending.covers(entry, &tag_keys)
    }

    /// How this call reads stored bytes back as a `T`.
    fn reading<'a, T: DeserializeOwned>(
        &'a self,
        opts: &Options,
        keys: &'a EntryKeys,
    ) -> envelope::Reading<'a> {
        envelope::Reading {
            codec: opts.codec.unwrap_or(self.inner.codec),
            max_size: self.inner.max_value_size,
            sealing: self.any_sealing(keys),
            require_sealed: opts.encrypt,
            fingerprint: crate::fingerprint::of::<T>(),
        }
    }

    /// Encryption for values this call writes: `None` unless it asks for it,
    /// and an error when it asks without a key (nothing is then stored:
    /// never plaintext in place of a sealed value).
    pub(crate) fn sealing<'a>(
        &'a self,
        opts: &Options,
        keys: &'a EntryKeys,
    ) -> crate::Result<Option<envelope::Sealing<'a>>> {
        if !opts.encrypt {
            return Ok(None);
        }
        match self.any_sealing(keys) {
            Some(s) => Ok(Some(s)),
            None => Err(no_key()),
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
    /// otherwise, and when the loader fails, serves the current value. A body
    /// that can run on its own reloads in the background, and this caller is
    /// served the current value at once.
    async fn refresh<T, E, B>(
        &self,
        r: Refresh<T>,
        lease: &LeaseArgs<'_>,
        opts: &Options,
        stats: &Arc<Counters>,
        current: T,
        body: B,
    ) -> Result<T, E>
    where
        T: Cacheable,
        B: Body<T, E>,
    {
        let serve_current = |stats: &Counters| {
            if r.stale {
                stats.stale_serve();
            } else {
                stats.hit();
            }
        };
        let tokens = match self
            .inner
            .store
            .lookup(&r.keys, &r.tag_keys, Some(lease))
            .await
        {
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
        let mut guard =
            FlightGuard::new(self, &r.keys, self.inner.flights.lead(&r.keys.entry, false));
        guard.holds(r.token);
        let lead = Lead {
            guard,
            tag_keys: r.tag_keys,
            tokens,
            codec: r.codec,
            opts: opts.clone(),
            is_none: r.is_none,
            stats: stats.clone(),
        };
        let (body, lead) = match body.detach(lead) {
            Ok(()) => {
                serve_current(stats);
                return Ok(current);
            }
            Err(back) => *back,
        };
        match body.lead(lead).await {
            Ok(v) => Ok(v),
            Err(_) => {
                // Failover: the source failed, the current value stands in.
                serve_current(stats);
                Ok(current)
            }
        }
    }

    /// Stored bytes this call cannot use: an entry of another value type is
    /// counted and left alone; undecodable bytes are counted and deleted.
    async fn refuse(&self, keys: &EntryKeys, stats: &Counters, e: &envelope::EnvelopeError) {
        if e.is_foreign() {
            stats.type_mismatch();
            tracing::warn!(key = %self.shown_key(&keys.entry), "cache: entry written by a value type of another shape; read as a miss");
            return;
        }
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
        if self.pending_covers(&keys.entry, options) {
            stats.miss();
            return Ok(None);
        }
        let Some(bytes) = inner.store.get(&keys.entry).await? else {
            stats.miss();
            return Ok(None);
        };
        let parsed = match envelope::parse(&bytes, inner.max_value_size) {
            Ok(p) => p,
            Err(e) => {
                self.refuse(&keys, &stats, &e).await;
                return Ok(None);
            }
        };
        if !parsed.tags.is_empty() {
            let tag_keys: Vec<String> = parsed.tags.iter().map(|t| self.absolute(t)).collect();
            if inner.pending.covers(&keys.entry, &tag_keys) {
                stats.miss();
                return Ok(None);
            }
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
        match envelope::decode::<T>(&bytes, self.reading::<T>(options, &keys)) {
            Ok((v, _)) => {
                stats.hit();
                Ok(Some(v))
            }
            Err(e) => {
                self.refuse(&keys, &stats, &e).await;
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
    ///
    /// The entry records the shape of `T`: it is read back only as a type of
    /// the same shape (a `String` for a `String`, not for a `&str`).
    pub async fn set<T: serde::Serialize + DeserializeOwned>(
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
    pub(crate) fn encode_for_set<T: serde::Serialize + DeserializeOwned>(
        &self,
        key: &str,
        value: &T,
        options: &Options,
    ) -> crate::Result<SetEntry> {
        let inner = &*self.inner;
        let codec = options.codec.unwrap_or(inner.codec);
        let keys = self.entry_keys(key, options.version);
        let tag_keys = self.tag_keys(&keys.entry, options);
        let ttl = options.ttl.unwrap_or(inner.default_ttl);
        let fresh_ms = jittered_ms(ttl, options.jitter.unwrap_or(inner.jitter));
        let px = fresh_ms + options.stale.map_or(0, |s| s.as_millis() as u64);
        let meta = Meta {
            flags: 0,
            fresh_until_ms: (inner.now_ms)() + fresh_ms,
            compute_us: 0,
        };
        let tags = self.relative(&tag_keys);
        let writing = envelope::Writing {
            codec,
            max_size: inner.max_value_size,
            sealing: self.sealing(options, &keys)?,
            fingerprint: crate::fingerprint::of::<T>(),
            tags: &tags,
        };
        let bytes = envelope::encode(value, meta, "", &writing)?;
        Ok(SetEntry {
            keys,
            tag_keys,
            bytes,
            px,
        })
    }
}

/// `encrypt = true` on a cache without an encryption key.
pub(crate) fn no_key() -> crate::Error {
    crate::Error::Config(
        "`encrypt = true` needs an encryption key: CacheBuilder::encryption_key; nothing was stored"
            .to_string(),
    )
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

/// What a refresh needs besides the caller's options.
struct Refresh<T> {
    keys: EntryKeys,
    tag_keys: Vec<String>,
    token: Token,
    codec: crate::CodecKind,
    is_none: fn(&T) -> bool,
    stale: bool,
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
