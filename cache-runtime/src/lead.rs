//! Loading under a lease: the holder runs the loader, fills with a
//! compare-and-set on its lease, and tells the callers of this process that
//! wait on its flight how it landed.
//!
//! A body whose future is `Send + 'static` (see [`Detached`]) can outlive its
//! caller. It runs in its caller, but a caller that is dropped mid-load does
//! not abort it: the rest of the load runs in a task of its own, finishes and
//! fills, and everyone waiting gets its value. A refresh of a stale or
//! early-refreshed entry runs in the background (a task of its own) while its
//! caller is served the current value. Any other body ([`Inline`]) runs in its
//! caller; if that caller is dropped, waiters are told at once and the lease
//! is given back so that one of them takes over.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::__private::Cacheable;
use crate::envelope::{self, Meta};
use crate::flight::{Landing, SlotRef};
use crate::read::{Token, jittered_ms};
use crate::stats::Counters;
use crate::store::EntryKeys;
use crate::{Cache, CodecKind, Options};

/// A flight this caller holds. Dropped before landing (its caller was
/// cancelled, or it stopped asking), it tells waiters to look again and gives
/// back the lease it holds, if any.
pub(crate) struct FlightGuard {
    cache: Cache,
    keys: EntryKeys,
    token: Option<Token>,
    slot: SlotRef,
    landed: bool,
}

impl FlightGuard {
    pub(crate) fn new(cache: &Cache, keys: &EntryKeys, slot: SlotRef) -> FlightGuard {
        FlightGuard {
            cache: cache.clone(),
            keys: keys.clone(),
            token: None,
            slot,
            landed: false,
        }
    }

    /// From now on the guard holds lease `token`.
    pub(crate) fn holds(&mut self, token: Token) {
        self.token = Some(token);
    }

    pub(crate) fn land(mut self, how: Landing) {
        self.landed = true;
        self.cache
            .inner
            .flights
            .land(&self.keys.entry, &self.slot, how);
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if self.landed {
            return;
        }
        self.cache
            .inner
            .flights
            .land(&self.keys.entry, &self.slot, Landing::Retry);
        if let Some(token) = self.token
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let cache = self.cache.clone();
            let keys = self.keys.clone();
            rt.spawn(async move {
                let _ = cache.inner.store.release(&keys, token.as_str()).await;
            });
        }
    }
}

/// Everything a lease holder needs to load and fill, owned, so that the load
/// can outlive its caller.
pub(crate) struct Lead<T> {
    pub(crate) guard: FlightGuard,
    pub(crate) tag_keys: Vec<String>,
    /// The tags' current version tokens, read when the lease was taken.
    pub(crate) tokens: String,
    pub(crate) codec: CodecKind,
    pub(crate) opts: Options,
    pub(crate) is_none: fn(&T) -> bool,
    pub(crate) stats: Arc<Counters>,
}

impl<T: Cacheable> Lead<T> {
    /// Runs the loader while holding the lease, then fills.
    pub(crate) async fn run<E, F>(self, body: F) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        let Lead {
            guard,
            tag_keys,
            tokens,
            codec,
            opts,
            is_none,
            stats,
        } = self;
        let cache = guard.cache.clone();
        let inner = &*cache.inner;
        let keys = &guard.keys.clone();
        let token = guard.token.unwrap_or_else(Token::random);
        let started = Instant::now();
        let out = body.await;
        let compute = started.elapsed();
        stats.loaded(compute);
        let value = match &out {
            Ok(v) => v,
            Err(_) => {
                let _ = inner.store.release(keys, token.as_str()).await;
                guard.land(Landing::Retry);
                return out;
            }
        };
        let none = is_none(value);
        let ttl = match (none, opts.cache_none) {
            (true, None) => {
                let _ = inner.store.release(keys, token.as_str()).await;
                guard.land(Landing::Retry);
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
        let tags = cache.relative(&tag_keys);
        let encoded = cache.sealing(&opts, keys).and_then(|sealing| {
            let writing = envelope::Writing {
                codec,
                max_size: inner.max_value_size,
                sealing,
                fingerprint: crate::fingerprint::of::<T>(),
                tags: &tags,
            };
            envelope::encode(value, meta, &tokens, &writing)
        });
        let bytes = match encoded {
            Ok(bytes) => bytes,
            Err(e) => {
                stats.error();
                tracing::error!(error = %e, key = %cache.shown_key(&keys.entry), "cache: value not stored");
                let _ = inner.store.release(keys, token.as_str()).await;
                guard.land(Landing::Retry);
                return out;
            }
        };
        inner.flights.filling(&guard.slot);
        let landing = match inner.store.fill(keys, token.as_str(), &bytes, px).await {
            Ok(true) => {
                if cache.tags_unmoved(&guard.slot, &tag_keys, &tokens).await {
                    Landing::Stored(Arc::new(bytes))
                } else {
                    Landing::Retry
                }
            }
            Ok(false) => {
                stats.fill_rejected();
                Landing::Retry
            }
            Err(e) => {
                stats.error();
                tracing::debug!(error = %e, "cache: fill failed");
                Landing::Retry
            }
        };
        guard.land(landing);
        out
    }
}

impl Cache {
    /// Whether waiters may be handed a value just stored: a tag invalidation
    /// after the lease was taken leaves the entry in place (a tag is one
    /// counter, not a list of entries) but makes it a miss, so waiters must
    /// not get it either. Checked only when someone waits.
    async fn tags_unmoved(&self, slot: &SlotRef, tag_keys: &[String], tokens: &str) -> bool {
        if tag_keys.is_empty() || !slot.has_waiters() {
            return true;
        }
        let Ok(current) = self.inner.store.mget(tag_keys).await else {
            return false;
        };
        let mut joined = Vec::with_capacity(tokens.len());
        for (i, t) in current.iter().enumerate() {
            let Some(t) = t else {
                return false;
            };
            if i > 0 {
                joined.push(b',');
            }
            joined.extend_from_slice(t);
        }
        joined == tokens.as_bytes()
    }
}

/// A loader as the read path sees it: a future, and whether it may outlive
/// its caller.
pub(crate) trait Body<T, E>: Sized {
    /// The loader's future.
    type Fut: Future<Output = Result<T, E>>;

    /// The loader, to run in the caller.
    fn inline(self) -> Self::Fut;

    /// Loads and fills under `lead`, in the caller; when the body allows it,
    /// dropping the caller does not abort the load (it goes on in a task of
    /// its own).
    fn lead(self, lead: Lead<T>) -> impl Future<Output = Result<T, E>>;

    /// Starts the load in the background; gives everything back when the
    /// body must run in its caller.
    fn detach(self, lead: Lead<T>) -> Result<(), Box<(Self, Lead<T>)>>;
}

/// A loader that runs in its caller (it may borrow from it).
pub(crate) struct Inline<F>(pub(crate) F);

impl<T: Cacheable, E, F: Future<Output = Result<T, E>>> Body<T, E> for Inline<F> {
    type Fut = F;

    fn inline(self) -> F {
        self.0
    }

    fn lead(self, lead: Lead<T>) -> impl Future<Output = Result<T, E>> {
        lead.run(self.0)
    }

    fn detach(self, lead: Lead<T>) -> Result<(), Box<(Self, Lead<T>)>> {
        Err(Box::new((self, lead)))
    }
}

/// A loader that owns everything it uses, so that it can outlive its caller.
pub(crate) struct Detached<F>(pub(crate) F);

impl<T, E, F> Body<T, E> for Detached<F>
where
    T: Cacheable,
    F: Future<Output = Result<T, E>> + Send + 'static,
    Result<T, E>: Send + 'static,
{
    type Fut = F;

    fn inline(self) -> F {
        self.0
    }

    async fn lead(self, lead: Lead<T>) -> Result<T, E> {
        FinishOnDrop::new(lead.run(self.0)).await
    }

    fn detach(self, lead: Lead<T>) -> Result<(), Box<(Self, Lead<T>)>> {
        use tracing::Instrument;
        tokio::spawn(lead.run(self.0).in_current_span());
        Ok(())
    }
}

/// Runs a future in its caller; if the caller is dropped before the future
/// finished, the rest of it runs in a task of its own. A load thus costs no
/// task of its own (no spawn, no hand-over between tasks) unless its caller
/// goes away mid-load.
struct FinishOnDrop<F: Future + Send + 'static>
where
    F::Output: Send + 'static,
{
    fut: Option<Pin<Box<F>>>,
    /// Set while the future is being polled: still set when a poll panicked,
    /// and a future that panicked is not run again.
    polling: bool,
}

impl<F: Future + Send + 'static> FinishOnDrop<F>
where
    F::Output: Send + 'static,
{
    fn new(fut: F) -> Self {
        FinishOnDrop {
            fut: Some(Box::pin(fut)),
            polling: false,
        }
    }
}

impl<F: Future + Send + 'static> Future for FinishOnDrop<F>
where
    F::Output: Send + 'static,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let Some(fut) = this.fut.as_mut() else {
            // Polled after it finished: never by `.await`.
            return Poll::Pending;
        };
        this.polling = true;
        let out = fut.as_mut().poll(cx);
        this.polling = false;
        if out.is_ready() {
            this.fut = None;
        }
        out
    }
}

impl<F: Future + Send + 'static> Drop for FinishOnDrop<F>
where
    F::Output: Send + 'static,
{
    fn drop(&mut self) {
        if self.polling {
            return;
        }
        if let Some(fut) = self.fut.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            use tracing::Instrument;
            rt.spawn(fut.in_current_span());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a current-thread runtime and returns the tasks alive
    /// right after it, less those alive before.
    fn tasks_spawned_by(f: impl FnOnce()) -> usize {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let _inside = rt.enter();
        let before = rt.metrics().num_alive_tasks();
        f();
        rt.metrics().num_alive_tasks() - before
    }

    fn poll_once<F: Future>(f: Pin<&mut F>) -> Poll<F::Output> {
        f.poll(&mut Context::from_waker(std::task::Waker::noop()))
    }

    #[test]
    fn a_future_dropped_mid_way_finishes_in_a_task() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let spawned = tasks_spawned_by(|| {
            let mut f = FinishOnDrop::new(async move {
                tokio::task::yield_now().await;
                let _ = tx.send(());
            });
            assert!(poll_once(Pin::new(&mut f)).is_pending());
            drop(f);
        });
        assert_eq!(spawned, 1);
        drop(rx);
    }

    #[test]
    fn a_finished_future_leaves_nothing_behind() {
        let spawned = tasks_spawned_by(|| {
            let mut f = FinishOnDrop::new(async { 7 });
            assert_eq!(poll_once(Pin::new(&mut f)), Poll::Ready(7));
            drop(f);
        });
        assert_eq!(spawned, 0);
    }

    #[test]
    fn a_future_that_panicked_is_not_run_again() {
        let spawned = tasks_spawned_by(|| {
            let mut f = FinishOnDrop::new(async {
                panic!("the loader panics");
            });
            let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let _ = poll_once(Pin::new(&mut f));
            }));
            assert!(polled.is_err(), "the panic reached the poller");
            drop(f);
        });
        assert_eq!(spawned, 0);
    }
}
