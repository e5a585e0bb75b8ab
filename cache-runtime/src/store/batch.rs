//! Concurrent hit-path reads coalesced into one `MGET`.
//!
//! Under load, many callers read at once, and each plain `GET` would be a
//! request of its own on the multiplexed connection: a message to the
//! connection's task, a reply channel, a timer, a reply frame to parse and a
//! wake-up. Here, a caller that reads while other reads of this store are in
//! flight opens a *batch* and yields once; the callers that run on the same
//! worker meanwhile append their keys to it; then the opener (the *leader*)
//! sends one `MGET` for all of them and hands each its values. A caller that
//! reads while nothing else is in flight sends its own command at once, so a
//! lone caller pays nothing for this.
//!
//! **Why a batched read is as fresh as a read of its own.** A caller joins a
//! batch only while it is open, and the leader closes it before sending: the
//! `MGET` therefore runs after every member's call began and before it
//! returns, and `MGET` reads all its keys at one instant.
//!
//! **Cancellation.** Should the leader's call be dropped before it delivered,
//! the batch is abandoned: every member is told so and sends its own read.
//! A member that is dropped just stops waiting.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use crate::error::{Error, Result};

/// Values read by one `MGET`, in the order of its keys.
pub(crate) type Values = Vec<Option<Vec<u8>>>;

/// Keys per batch at most; a caller that would exceed it opens another.
const MAX_KEYS: usize = 128;

/// Open batches, one slot per worker thread (stripe), and the number of
/// reads this store has in flight.
pub(crate) struct Coalescer {
    slots: Box<[Slot]>,
    inflight: AtomicUsize,
    /// Batches of two or more callers sent, and the callers they served.
    batches: AtomicU64,
    shared_reads: AtomicU64,
    /// Of those, the batches whose read failed, and their callers.
    failed_batches: AtomicU64,
    failed_reads: AtomicU64,
}

/// What a coalescer has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Counts {
    pub(crate) batches: u64,
    pub(crate) reads: u64,
    pub(crate) failed_batches: u64,
    pub(crate) failed_reads: u64,
}

#[repr(align(128))]
#[derive(Default)]
struct Slot(Mutex<Option<Open>>);

/// A batch that callers may still join.
struct Open {
    cmd: redis::Cmd,
    keys: usize,
    callers: u64,
    shared: Arc<Shared>,
}

/// What the members of one batch wait on.
#[derive(Default)]
struct Shared {
    outcome: Mutex<Outcome>,
    done: Notify,
}

#[derive(Default)]
enum Outcome {
    #[default]
    Pending,
    Read(Values),
    Failed(Failure),
    /// The leader was dropped before it delivered.
    Abandoned,
}

/// A failed batch, as each member reports it.
#[derive(Clone)]
enum Failure {
    Timeout(Duration),
    Unavailable,
    Store(redis::RedisError),
    Other(String),
}

impl Failure {
    fn of(e: &Error) -> Failure {
        match e {
            Error::Timeout(d) => Failure::Timeout(*d),
            Error::Unavailable => Failure::Unavailable,
            Error::Store(e) => Failure::Store(e.clone()),
            other => Failure::Other(other.to_string()),
        }
    }

    fn into_error(self) -> Error {
        match self {
            Failure::Timeout(d) => Error::Timeout(d),
            Failure::Unavailable => Error::Unavailable,
            Failure::Store(e) => Error::Store(e),
            Failure::Other(msg) => Error::Store(redis::RedisError::from((
                redis::ErrorKind::Io,
                "batched read failed",
                msg,
            ))),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How one caller takes part in reading its keys.
pub(crate) enum Role<'a> {
    /// Nothing else in flight: send a command of its own.
    Alone(Inflight<'a>),
    /// Wait for the leader of the batch it joined.
    Member(Member),
    /// Opened a batch: gather, send, deliver.
    Leader(Leader<'a>),
}

/// Counts a read in flight while it lives.
pub(crate) struct Inflight<'a>(&'a AtomicUsize);

impl<'a> Inflight<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        Inflight(n)
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Coalescer {
    pub(crate) fn new() -> Self {
        Coalescer {
            slots: (0..crate::stats::STRIPES)
                .map(|_| Slot::default())
                .collect(),
            inflight: AtomicUsize::new(0),
            batches: AtomicU64::new(0),
            shared_reads: AtomicU64::new(0),
            failed_batches: AtomicU64::new(0),
            failed_reads: AtomicU64::new(0),
        }
    }

    /// Batches of two or more callers sent so far, the reads they served,
    /// and those of them that failed.
    pub(crate) fn counts(&self) -> Counts {
        Counts {
            batches: self.batches.load(Ordering::Relaxed),
            reads: self.shared_reads.load(Ordering::Relaxed),
            failed_batches: self.failed_batches.load(Ordering::Relaxed),
            failed_reads: self.failed_reads.load(Ordering::Relaxed),
        }
    }

    /// Joins the open batch of this worker, opens one, or (nothing else in
    /// flight) lets the caller read alone.
    pub(crate) fn join(&self, entry: &str, tag_keys: &[String]) -> Role<'_> {
        let n = 1 + tag_keys.len();
        let keys = std::iter::once(entry).chain(tag_keys.iter().map(String::as_str));
        let slot = &self.slots[crate::stats::stripe()];
        let mut open = lock(&slot.0);
        if let Some(o) = open.as_mut()
            && o.keys + n <= MAX_KEYS
        {
            for k in keys {
                o.cmd.arg(k);
            }
            let offset = o.keys;
            o.keys += n;
            o.callers += 1;
            return Role::Member(Member {
                shared: o.shared.clone(),
                offset,
                len: n,
            });
        }
        // Nothing else in flight (a lone caller), or this worker's batch is
        // full: a command of its own.
        if open.is_some() || self.inflight.load(Ordering::Relaxed) == 0 {
            drop(open);
            return Role::Alone(Inflight::new(&self.inflight));
        }
        let mut cmd = redis::Cmd::with_capacity(1 + MAX_KEYS / 4, 256);
        cmd.arg("MGET");
        for k in keys {
            cmd.arg(k);
        }
        let shared = Arc::new(Shared::default());
        *open = Some(Open {
            cmd,
            keys: n,
            callers: 1,
            shared: shared.clone(),
        });
        drop(open);
        Role::Leader(Leader {
            coalescer: self,
            slot,
            shared,
            len: n,
            callers: 1,
            delivered: false,
        })
    }
}

/// A caller that joined a batch.
pub(crate) struct Member {
    shared: Arc<Shared>,
    offset: usize,
    len: usize,
}

impl Member {
    /// This member's values; `None` if the batch was abandoned (the caller
    /// then reads on its own).
    pub(crate) async fn wait(self) -> Option<Result<Values>> {
        let notified = self.shared.done.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(r) = self.take() {
            return r;
        }
        notified.await;
        self.take().unwrap_or(None)
    }

    /// `None` while pending.
    fn take(&self) -> Option<Option<Result<Values>>> {
        match &mut *lock(&self.shared.outcome) {
            Outcome::Pending => None,
            Outcome::Abandoned => Some(None),
            Outcome::Failed(f) => Some(Some(Err(f.clone().into_error()))),
            Outcome::Read(all) => Some(Some(Ok(all
                .get_mut(self.offset..self.offset + self.len)
                .map(|mine| mine.iter_mut().map(Option::take).collect())
                .unwrap_or_default()))),
        }
    }
}

/// The caller that opened a batch.
pub(crate) struct Leader<'a> {
    coalescer: &'a Coalescer,
    slot: &'a Slot,
    shared: Arc<Shared>,
    len: usize,
    /// Callers in the batch once it is closed, the leader included.
    callers: u64,
    delivered: bool,
}

/// A closed batch, ready to send.
pub(crate) struct Sealed<'a> {
    /// `MGET` and every member's keys, the leader's first.
    pub(crate) cmd: redis::Cmd,
    /// Whether the leader is alone in it (it may send a plain `GET`).
    pub(crate) alone: bool,
    /// Keys in `cmd`: the values its reply must hold.
    pub(crate) keys: usize,
    _inflight: Inflight<'a>,
}

impl Sealed<'_> {
    /// The reply, if it holds a value for every key.
    pub(crate) fn check(&self, values: Values) -> Result<Values> {
        if values.len() == self.keys {
            return Ok(values);
        }
        Err(Error::Store(redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "MGET reply of another length than its keys",
        ))))
    }
}

impl<'a> Leader<'a> {
    /// Lets the callers on this worker join (when other reads are in flight,
    /// so that more are about to come), then closes the batch.
    pub(crate) async fn gather(&mut self) -> Result<Sealed<'a>> {
        if self.coalescer.inflight.load(Ordering::Relaxed) > 0 {
            tokio::task::yield_now().await;
        }
        // Only a batch's leader opens it (into an empty slot) and closes it,
        // so the slot still holds this one.
        let mine = lock(&self.slot.0).take_if(|o| Arc::ptr_eq(&o.shared, &self.shared));
        let Some(mine) = mine else {
            return Err(Error::Store(redis::RedisError::from((
                redis::ErrorKind::Client,
                "batched read: the batch was closed by another caller",
            ))));
        };
        self.callers = mine.callers;
        if mine.callers > 1 {
            self.coalescer.batches.fetch_add(1, Ordering::Relaxed);
            self.coalescer
                .shared_reads
                .fetch_add(mine.callers, Ordering::Relaxed);
        }
        Ok(Sealed {
            alone: mine.keys == self.len,
            keys: mine.keys,
            cmd: mine.cmd,
            _inflight: Inflight::new(&self.coalescer.inflight),
        })
    }

    /// Hands the members their values and returns the leader's own.
    pub(crate) fn deliver(mut self, read: Result<Values>) -> Result<Values> {
        self.delivered = true;
        let mut outcome = lock(&self.shared.outcome);
        let mine = match read {
            Ok(mut all) => {
                let rest = all.split_off(self.len.min(all.len()));
                // Members index the whole batch: keep the leader's places.
                let mut whole = vec![None; self.len];
                whole.extend(rest);
                *outcome = Outcome::Read(whole);
                Ok(all)
            }
            Err(e) => {
                if self.callers > 1 {
                    let c = self.coalescer;
                    c.failed_batches.fetch_add(1, Ordering::Relaxed);
                    c.failed_reads.fetch_add(self.callers, Ordering::Relaxed);
                }
                *outcome = Outcome::Failed(Failure::of(&e));
                Err(e)
            }
        };
        drop(outcome);
        self.shared.done.notify_waiters();
        mine
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if self.delivered {
            return;
        }
        // Dropped while gathering: close the batch so nobody else joins it.
        drop(lock(&self.slot.0).take_if(|o| Arc::ptr_eq(&o.shared, &self.shared)));
        *lock(&self.shared.outcome) = Outcome::Abandoned;
        self.shared.done.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(cmd: &redis::Cmd) -> Vec<String> {
        cmd.args_iter()
            .map(|a| match a {
                redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                _ => "<not a simple argument>".to_string(),
            })
            .collect()
    }

    fn value(s: &str) -> Option<Vec<u8>> {
        Some(s.as_bytes().to_vec())
    }

    fn tags(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    fn alone<'c>(c: &'c Coalescer, key: &str) -> Inflight<'c> {
        match c.join(key, &[]) {
            Role::Alone(inflight) => inflight,
            _ => panic!("{key}: expected to read alone"),
        }
    }

    fn leader<'c>(c: &'c Coalescer, key: &str) -> Leader<'c> {
        match c.join(key, &[]) {
            Role::Leader(leader) => leader,
            _ => panic!("{key}: expected to open a batch"),
        }
    }

    fn member(c: &Coalescer, key: &str, tag_keys: &[String]) -> Member {
        match c.join(key, tag_keys) {
            Role::Member(member) => member,
            _ => panic!("{key}: expected to join the open batch"),
        }
    }

    #[tokio::test]
    async fn a_read_with_nothing_in_flight_reads_alone_and_opens_no_batch() {
        let c = Coalescer::new();
        let first = alone(&c, "a");
        // Had the first read opened a batch, this one would join it.
        let _second = leader(&c, "b");
        drop(first);
        assert_eq!(c.counts(), Counts::default());
    }

    #[tokio::test]
    async fn reads_while_others_are_in_flight_share_one_mget() {
        let c = Coalescer::new();
        let _busy = alone(&c, "x");
        let mut leader = leader(&c, "a");
        let member = member(&c, "b", &tags(&["t"]));
        let sealed = leader.gather().await.expect("sealed");
        assert!(!sealed.alone);
        assert_eq!(args(&sealed.cmd), ["MGET", "a", "b", "t"]);
        let mine = leader
            .deliver(Ok(vec![value("A"), None, value("T")]))
            .expect("leader's values");
        assert_eq!(mine, vec![value("A")]);
        let theirs = member.wait().await.expect("delivered").expect("read");
        assert_eq!(theirs, vec![None, value("T")]);
        let counts = c.counts();
        assert_eq!((counts.batches, counts.reads), (1, 2));
        assert_eq!((counts.failed_batches, counts.failed_reads), (0, 0));
    }

    #[tokio::test]
    async fn a_sealed_batch_takes_no_more_members() {
        // The freshness argument: a read joining after the batch was closed
        // (and possibly sent) would be served values read before it began.
        let c = Coalescer::new();
        let _busy = alone(&c, "x");
        let mut first = leader(&c, "a");
        let sealed = first.gather().await.expect("sealed");
        assert_eq!(args(&sealed.cmd), ["MGET", "a"]);
        assert!(sealed.alone);
        assert!(
            matches!(c.join("b", &[]), Role::Leader(_)),
            "a read after the batch closed opens a new one"
        );
    }

    #[tokio::test]
    async fn a_dropped_leader_abandons_its_batch() {
        let c = Coalescer::new();
        let _busy = alone(&c, "x");
        let leader = leader(&c, "a");
        let member = member(&c, "b", &[]);
        drop(leader);
        assert!(
            member.wait().await.is_none(),
            "members of an abandoned batch read on their own"
        );
        assert!(
            matches!(c.join("c", &[]), Role::Leader(_)),
            "the abandoned batch no longer takes members"
        );
    }

    #[tokio::test]
    async fn a_failed_read_fails_every_member() {
        let c = Coalescer::new();
        let _busy = alone(&c, "x");
        let mut leader = leader(&c, "a");
        let member = member(&c, "b", &[]);
        let _sealed = leader.gather().await.expect("sealed");
        let timeout = Duration::from_millis(5);
        assert!(matches!(
            leader.deliver(Err(Error::Timeout(timeout))),
            Err(Error::Timeout(_))
        ));
        assert!(matches!(
            member.wait().await,
            Some(Err(Error::Timeout(d))) if d == timeout
        ));
        let counts = c.counts();
        assert_eq!((counts.failed_batches, counts.failed_reads), (1, 2));
    }

    #[tokio::test]
    async fn a_reply_of_another_length_is_refused() {
        let c = Coalescer::new();
        let _busy = alone(&c, "x");
        let mut leader = leader(&c, "a");
        let _member = member(&c, "b", &tags(&["t"]));
        let sealed = leader.gather().await.expect("sealed");
        assert_eq!(sealed.keys, 3);
        assert!(sealed.check(vec![None, None]).is_err());
        assert!(sealed.check(vec![None, value("B"), None]).is_ok());
    }

    #[tokio::test]
    async fn a_full_batch_sends_later_reads_alone() {
        let c = Coalescer::new();
        let _busy = alone(&c, "x");
        let _leader = leader(&c, "a");
        let many = tags(&["t"; MAX_KEYS - 2]);
        assert!(matches!(c.join("b", &many), Role::Member(_)));
        assert!(
            matches!(c.join("c", &[]), Role::Alone(_)),
            "a full batch takes no more keys"
        );
    }

    #[tokio::test]
    async fn reads_finished_leave_nothing_in_flight() {
        let c = Coalescer::new();
        {
            let _busy = alone(&c, "x");
            let mut leader = leader(&c, "a");
            let sealed = leader.gather().await.expect("sealed");
            drop(sealed);
            let _ = leader.deliver(Ok(vec![None]));
        }
        assert_eq!(c.inflight.load(Ordering::Relaxed), 0);
        assert!(matches!(c.join("b", &[]), Role::Alone(_)));
    }
}
