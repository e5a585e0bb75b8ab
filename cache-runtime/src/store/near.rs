//! The near cache: an in-process copy (moka) of recently read entries and tag
//! versions, in front of Redis, kept correct by Redis client tracking.
//!
//! A dedicated RESP3 connection asks Redis for `CLIENT TRACKING ON BCAST
//! PREFIX <prefix>:`: every change to a key under the cache's prefix, by any
//! client, is pushed to it, and the copy of that key is dropped. Changes this
//! process makes are dropped here at once as well, so that a process always
//! reads its own writes.
//!
//! **Reads racing invalidations.** A read records the keys' generations
//! before it asks Redis and keeps what Redis returned only if no invalidation
//! of those keys arrived meanwhile (checked after inserting, so an
//! invalidation processed at any moment either prevents the copy or removes
//! it). A value read before a change and an invalidation of that change thus
//! never leave a stale copy behind, whichever is handled first.
//!
//! **Losing the tracking connection** drops every copy and stops serving from
//! the near cache until the connection is back (Redis forgets what it had to
//! tell us), so invalidations missed while it was down cannot leave stale
//! copies.

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use redis::{PushInfo, PushKind, Value};

use crate::CodecKind;
use crate::envelope::{FLAG_SEALED, Meta};

/// Stripes of invalidation generations (by key hash).
const STRIPES: usize = 1024;

/// Copies never outlive this, whatever they say (a safety net: Redis pushes
/// an invalidation when a key expires or is evicted).
const MAX_AGE: Duration = Duration::from_secs(300);

/// A copy of a stored value, when it stops being used, and, once a read of a
/// cloneable type has decoded it, the decoded value (later hits clone it
/// instead of decoding again).
pub(crate) struct Held {
    bytes: Box<[u8]>,
    until: Instant,
    decoded: OnceLock<Decoded>,
}

/// A decoded copy, and how it was read.
struct Decoded {
    value: Box<dyn Any + Send + Sync>,
    meta: Meta,
    codec: CodecKind,
}

/// How a read keeps and takes decoded values of its type (`T: Clone`);
/// made by the macros, type-erased so that options stay one type.
#[derive(Clone, Copy)]
pub struct Copies {
    keep: fn(&dyn Any) -> Option<Box<dyn Any + Send + Sync>>,
    take: fn(&dyn Any, &mut dyn Any),
}

impl std::fmt::Debug for Copies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Copies")
    }
}

impl Copies {
    /// For values of type `T`.
    pub fn of<T: Clone + Send + Sync + 'static>() -> Copies {
        fn keep<T: Clone + Send + Sync + 'static>(
            v: &dyn Any,
        ) -> Option<Box<dyn Any + Send + Sync>> {
            let v = v.downcast_ref::<T>()?;
            Some(Box::new(v.clone()))
        }
        fn take<T: Clone + 'static>(stored: &dyn Any, out: &mut dyn Any) {
            if let (Some(v), Some(out)) =
                (stored.downcast_ref::<T>(), out.downcast_mut::<Option<T>>())
            {
                *out = Some(v.clone());
            }
        }
        Copies {
            keep: keep::<T>,
            take: take::<T>,
        }
    }
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("bytes", &self.bytes.len())
            .field("decoded", &self.decoded.get().is_some())
            .finish()
    }
}

impl Held {
    /// The stored bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The value decoded from this copy by an earlier read with the same
    /// codec, if any; sealed values only when the read asks for sealing.
    pub(crate) fn decoded<T: 'static>(
        &self,
        copies: Copies,
        codec: CodecKind,
        require_sealed: bool,
    ) -> Option<(T, Meta)> {
        let d = self.decoded.get()?;
        if d.codec != codec || (require_sealed && d.meta.flags & FLAG_SEALED == 0) {
            return None;
        }
        let mut out: Option<T> = None;
        (copies.take)(&*d.value, &mut out);
        Some((out?, d.meta))
    }

    /// Keeps `value`, just decoded from this copy, for later reads.
    pub(crate) fn remember<T: 'static>(
        &self,
        value: &T,
        meta: Meta,
        codec: CodecKind,
        copies: Copies,
    ) {
        if self.decoded.get().is_some() {
            return;
        }
        if let Some(value) = (copies.keep)(value) {
            let _ = self.decoded.set(Decoded { value, meta, codec });
        }
    }
}

/// The in-process layer.
pub(crate) struct Near {
    copies: moka::sync::Cache<String, Arc<Held>, foldhash::quality::RandomState>,
    /// Bumped by every invalidation of a key of the stripe.
    stripes: Box<[AtomicU64]>,
    /// Bumped when everything is dropped (and when tracking resumes).
    epoch: AtomicU64,
    /// Whether the tracking connection is up: copies are used only then.
    live: AtomicBool,
    /// Times the tracking connection was lost.
    losses: AtomicU64,
    /// Reads answered from copies alone.
    answered: crate::stats::Striped,
    /// Invalidations received from Redis (pushes), for statistics and
    /// tests; watchable.
    pushed: tokio::sync::watch::Sender<u64>,
}

/// A key's generation as of some moment (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Generation(u64, u64);

impl Near {
    pub(crate) fn new(capacity: u64) -> Near {
        Near {
            // A fast hasher, seeded per process (keys come from arguments).
            // Deadlines are checked on reads (cheaper than moka's timers); an
            // expired copy left unread goes with the capacity limit.
            copies: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .build_with_hasher(foldhash::quality::RandomState::default()),
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            epoch: AtomicU64::new(0),
            live: AtomicBool::new(false),
            losses: AtomicU64::new(0),
            answered: crate::stats::Striped::default(),
            pushed: tokio::sync::watch::Sender::new(0),
        }
    }

    fn stripe(&self, key: &str) -> &AtomicU64 {
        let h = xxhash_rust::xxh3::xxh3_64(key.as_bytes()) as usize;
        &self.stripes[h % STRIPES]
    }

    /// Whether copies are being used (the tracking connection is up).
    pub(crate) fn live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }

    /// The copy of `key`, if there is a usable one.
    pub(crate) fn get(&self, key: &str) -> Option<Arc<Held>> {
        if !self.live() {
            return None;
        }
        let held = self.copies.get(key)?;
        if held.until <= Instant::now() {
            self.copies.invalidate(key);
            return None;
        }
        Some(held)
    }

    /// `key`'s generation now; taken before asking Redis.
    pub(crate) fn generation(&self, key: &str) -> Generation {
        Generation(
            self.epoch.load(Ordering::SeqCst),
            self.stripe(key).load(Ordering::SeqCst),
        )
    }

    /// Keeps a copy of what Redis returned for `key`, unless `key` was
    /// invalidated since `before`; `until` is when the copy stops being used.
    pub(crate) fn keep(&self, key: &str, before: Generation, bytes: &[u8], until: Instant) {
        if !self.live() || self.generation(key) != before {
            return;
        }
        let until = until.min(Instant::now() + MAX_AGE);
        self.copies.insert(
            key.to_string(),
            Arc::new(Held {
                bytes: bytes.into(),
                until,
                decoded: OnceLock::new(),
            }),
        );
        // An invalidation handled between the check and the insert would
        // have found nothing to remove: look again.
        if self.generation(key) != before {
            self.copies.invalidate(key);
        }
    }

    /// Drops the copy of `key` (changed here, or pushed by Redis).
    pub(crate) fn forget(&self, key: &str) {
        self.stripe(key).fetch_add(1, Ordering::SeqCst);
        self.copies.invalidate(key);
    }

    /// Drops every copy.
    pub(crate) fn forget_all(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.copies.invalidate_all();
    }

    /// The tracking connection came up (`true`) or went down.
    pub(crate) fn set_live(&self, live: bool) {
        // Either way, reads that began before this moment keep nothing.
        self.forget_all();
        if !live && self.live.swap(false, Ordering::SeqCst) {
            self.losses.fetch_add(1, Ordering::SeqCst);
        }
        self.live.store(live, Ordering::SeqCst);
        self.forget_all();
    }

    /// Times the tracking connection was lost.
    pub(crate) fn losses(&self) -> u64 {
        self.losses.load(Ordering::SeqCst)
    }

    /// Applies a push from the tracking connection.
    pub(crate) fn on_push(&self, push: &PushInfo) {
        if push.kind != PushKind::Invalidate {
            return;
        }
        match push.data.first() {
            Some(Value::Array(keys)) => {
                for key in keys {
                    if let Value::BulkString(k) = key
                        && let Ok(k) = std::str::from_utf8(k)
                    {
                        self.forget(k);
                    }
                }
            }
            // `FLUSHALL` / `FLUSHDB`: a nil instead of keys.
            _ => self.forget_all(),
        }
        // Counted once applied: whoever sees the count sees its effect.
        self.pushed.send_modify(|n| *n += 1);
    }

    /// A read was answered from copies alone.
    pub(crate) fn answered_one(&self) {
        self.answered.add(1);
    }

    /// Reads answered from copies alone so far.
    pub(crate) fn answered(&self) -> u64 {
        self.answered.sum()
    }

    /// Invalidations pushed by Redis so far.
    pub(crate) fn pushed(&self) -> u64 {
        *self.pushed.borrow()
    }

    /// Waits until more than `seen` invalidations have been applied.
    pub(crate) async fn pushed_beyond(&self, seen: u64) {
        let mut rx = self.pushed.subscribe();
        let _ = rx.wait_for(|n| *n > seen).await;
    }
}

/// Keeps the tracking connection up for `near` until `stopped` fires or the
/// near cache is dropped: on every (re)connection it subscribes to changes
/// under `prefix`, and on every loss it drops all copies.
pub(crate) async fn track(
    client: redis::Client,
    prefix: String,
    near: std::sync::Weak<Near>,
    timeout: Duration,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let mut delay = Duration::from_millis(50);
    loop {
        let (lost_tx, mut lost) = tokio::sync::mpsc::unbounded_channel::<()>();
        let pushes = near.clone();
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_push_sender(move |push: PushInfo| {
                if push.kind == PushKind::Disconnection {
                    let _ = lost_tx.send(());
                } else if let Some(near) = pushes.upgrade() {
                    near.on_push(&push);
                }
                Ok::<(), std::convert::Infallible>(())
            });
        let session = async {
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            redis::cmd("CLIENT")
                .arg("TRACKING")
                .arg("ON")
                .arg("BCAST")
                .arg("PREFIX")
                .arg(format!("{prefix}:"))
                .query_async::<()>(&mut conn)
                .await?;
            match near.upgrade() {
                Some(n) => n.set_live(true),
                None => return Ok::<(), redis::RedisError>(()),
            }
            // Up until the connection reports its loss or stops answering.
            let mut ping = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = lost.recv() => return Ok(()),
                    _ = ping.tick() => {
                        redis::cmd("PING").query_async::<()>(&mut conn).await?;
                        if near.strong_count() == 0 {
                            return Ok(());
                        }
                    }
                }
            }
        };
        tokio::select! {
            _ = &mut stopped => return,
            r = session => {
                let Some(n) = near.upgrade() else { return };
                n.set_live(false);
                match r {
                    Ok(()) => delay = Duration::from_millis(50),
                    Err(e) => tracing::debug!(error = %e, "cache: near-cache tracking lost; reconnecting"),
                }
            }
        }
        tokio::select! {
            _ = &mut stopped => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_decoded_copy_is_taken_for_its_type_and_codec_only() {
        let n = live();
        n.keep("k", n.generation("k"), b"v", later());
        let held = n.get("k").unwrap();
        let copies = Copies::of::<String>();
        let meta = Meta {
            flags: 0,
            fresh_until_ms: 1,
            compute_us: 2,
        };
        assert!(
            held.decoded::<String>(copies, CodecKind::Postcard, false)
                .is_none()
        );
        held.remember(&"v".to_string(), meta, CodecKind::Postcard, copies);
        let again = n.get("k").unwrap();
        let (v, m) = again
            .decoded::<String>(copies, CodecKind::Postcard, false)
            .unwrap();
        assert_eq!((v.as_str(), m.compute_us), ("v", 2));
        assert!(
            again
                .decoded::<String>(copies, CodecKind::Json, false)
                .is_none(),
            "other codec"
        );
        assert!(
            again
                .decoded::<String>(copies, CodecKind::Postcard, true)
                .is_none(),
            "not sealed"
        );
        assert!(
            again
                .decoded::<u64>(Copies::of::<u64>(), CodecKind::Postcard, false)
                .is_none(),
            "other type"
        );
    }

    use super::*;

    fn live() -> Near {
        let n = Near::new(100);
        n.set_live(true);
        n
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn keeps_a_read_unless_invalidated_meanwhile() {
        let n = live();
        let g = n.generation("k");
        n.keep("k", g, b"v1", later());
        assert_eq!(n.get("k").map(|h| h.bytes().to_vec()), Some(b"v1".to_vec()));

        let g = n.generation("k");
        n.forget("k"); // a change lands while the read is in flight
        n.keep("k", g, b"old", later());
        assert!(n.get("k").is_none(), "the read's copy is not kept");
    }

    #[test]
    fn nothing_is_served_or_kept_while_tracking_is_down() {
        let n = live();
        n.keep("k", n.generation("k"), b"v", later());
        let g = n.generation("j");
        n.set_live(false);
        assert!(n.get("k").is_none());
        n.keep("j", g, b"v", later());
        n.set_live(true);
        assert!(
            n.get("k").is_none(),
            "copies were dropped with the connection"
        );
        assert!(
            n.get("j").is_none(),
            "a read from before the loss keeps nothing"
        );
    }

    #[test]
    fn pushes_drop_keys_and_flushes_drop_everything() {
        let n = live();
        for k in ["a", "b", "c"] {
            n.keep(k, n.generation(k), b"v", later());
        }
        n.on_push(&PushInfo {
            kind: PushKind::Invalidate,
            data: vec![Value::Array(vec![Value::BulkString(b"a".to_vec())])],
        });
        assert!(n.get("a").is_none());
        assert!(n.get("b").is_some());
        n.on_push(&PushInfo {
            kind: PushKind::Invalidate,
            data: vec![Value::Nil],
        });
        assert!(n.get("b").is_none());
        assert_eq!(n.pushed(), 2);
    }

    #[test]
    fn copies_expire_at_their_deadline() {
        let n = live();
        n.keep("k", n.generation("k"), b"v", Instant::now());
        assert!(n.get("k").is_none());
    }
}
