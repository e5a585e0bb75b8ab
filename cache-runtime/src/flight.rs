//! In-process single flight: callers that find a key being loaded wait here
//! for the holder's outcome instead of asking the store again.
//!
//! A slot is created by whoever needs it first: a caller about to ask for the
//! lease, the lease holder, or a caller that found the lease held (by this
//! process or another). A holder adopts a slot that waiters already created,
//! so no waiter misses the landing however the replies of the store were
//! ordered. Fills announced by other processes (Redis pub/sub) land the slot
//! with `Retry`, which sends its waiters back to the store, where they find
//! the new entry.
//!
//! **Why handing stored bytes to a waiter is safe.** A waiter may take the
//! holder's bytes only if it joined before the holder sent its fill: the
//! holder marks its slot as filling first, and a filling slot takes no new
//! waiters (a newcomer opens a fresh slot). So the fill reaches the store after
//! the waiter's call began. If an invalidation returned before that, either
//! it deleted the holder's lease (the fill is refused) or it came before the
//! lease was taken (the loader read the source after it). Either way no
//! waiter is handed a value older than an invalidation that returned before
//! it called.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

/// Outcome of a flight, as seen by the callers waiting on it.
#[derive(Clone, Debug)]
pub(crate) enum Landing {
    Running,
    /// The holder stored these envelope bytes.
    Stored(Arc<Vec<u8>>),
    /// Look again: nothing was stored here (loader failed, value not
    /// cacheable, fill refused, holder cancelled), or another process filled.
    Retry,
}

/// One flight: its landing, and whether callers may still join it.
pub(crate) struct Slot {
    landing: Mutex<Landing>,
    /// Notified when `landing` changes.
    landed: Notify,
    /// Callers waiting on this flight (live [`Waiter`]s).
    waiters: AtomicUsize,
    /// A caller of this process is asking for the lease or loading under it,
    /// and has not sent its fill: callers that find the slot before reading
    /// the store may wait on it.
    joinable: AtomicBool,
    /// The holder has sent (or is about to send) its fill.
    filling: AtomicBool,
}

impl Slot {
    fn new(joinable: bool) -> Arc<Slot> {
        Arc::new(Slot {
            landing: Mutex::new(Landing::Running),
            landed: Notify::new(),
            waiters: AtomicUsize::new(0),
            joinable: AtomicBool::new(joinable),
            filling: AtomicBool::new(false),
        })
    }

    /// Whether anyone besides the holder waits on this flight.
    pub(crate) fn has_waiters(&self) -> bool {
        self.waiters.load(Ordering::SeqCst) > 0
    }

    /// Sets the landing and wakes every waiter.
    fn set(&self, how: Landing) {
        *self.landing.lock().unwrap_or_else(PoisonError::into_inner) = how;
        self.landed.notify_waiters();
    }

    fn landing(&self) -> Landing {
        self.landing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

pub(crate) type SlotRef = Arc<Slot>;

/// Flights in progress, by stored entry key.
#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<String, SlotRef>>,
    /// Slots that callers may join before reading the store; lets a hit skip
    /// the map entirely while no key is being loaded.
    joinable: AtomicUsize,
    /// Waits that ended on their time limit rather than a landing or a
    /// wake-up: each is a caller that looked again only on its safety net.
    timed_out: std::sync::atomic::AtomicU64,
}

/// What a caller that missed gets from [`Flights::acquire`].
pub(crate) enum Acquire<'a> {
    /// Nobody here is loading the key: ask for the lease, holding this slot.
    Ask(SlotRef),
    /// A caller here is already asking or loading: wait for it.
    Join(Waiter<'a>),
}

impl Flights {
    /// Waits so far that ended on their time limit.
    pub(crate) fn timed_out(&self) -> u64 {
        self.timed_out.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, SlotRef>> {
        match self.map.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn waiter(&self, key: &str, slot: SlotRef) -> Waiter<'_> {
        slot.waiters.fetch_add(1, Ordering::SeqCst);
        Waiter {
            flights: self,
            key: key.to_string(),
            slot,
        }
    }

    /// The slot of `key` that new callers may use: the current one unless its
    /// holder is already filling, in which case a fresh one replaces it.
    fn usable(map: &mut HashMap<String, SlotRef>, key: &str) -> SlotRef {
        if let Some(s) = map.get(key)
            && !s.filling.load(Ordering::SeqCst)
        {
            return s.clone();
        }
        let s = Slot::new(false);
        map.insert(key.to_string(), s.clone());
        s
    }

    /// Joins the flight of `key` if a caller of this process is asking for its
    /// lease or loading it and has not sent its fill. Cheap when nothing is
    /// being loaded: no lock is taken.
    pub(crate) fn join_loading(&self, key: &str) -> Option<Waiter<'_>> {
        if self.joinable.load(Ordering::SeqCst) == 0 {
            return None;
        }
        let map = self.lock();
        let slot = map.get(key)?;
        if !slot.joinable.load(Ordering::SeqCst) {
            return None;
        }
        let slot = slot.clone();
        drop(map);
        Some(self.waiter(key, slot))
    }

    /// For a caller that missed: either the slot it holds while it asks for
    /// the lease (later callers here join it), or the flight to wait on.
    pub(crate) fn acquire(&self, key: &str) -> Acquire<'_> {
        let mut map = self.lock();
        if let Some(s) = map.get(key)
            && s.joinable.load(Ordering::SeqCst)
        {
            let s = s.clone();
            drop(map);
            return Acquire::Join(self.waiter(key, s));
        }
        let s = Slot::new(true);
        map.insert(key.to_string(), s.clone());
        self.joinable.fetch_add(1, Ordering::SeqCst);
        Acquire::Ask(s)
    }

    /// Joins (or opens) the flight of `key` as a waiter, after finding its
    /// lease held.
    pub(crate) fn wait_on(&self, key: &str) -> Waiter<'_> {
        let slot = Self::usable(&mut self.lock(), key);
        self.waiter(key, slot)
    }

    /// Opens (or adopts) the flight of `key` as its lease holder. A refresh
    /// is not `joinable`: callers that have not read the store are served the
    /// current value, not made to wait for the new one.
    pub(crate) fn lead(&self, key: &str, joinable: bool) -> SlotRef {
        let mut map = self.lock();
        let slot = Self::usable(&mut map, key);
        if joinable && !slot.joinable.swap(true, Ordering::SeqCst) {
            self.joinable.fetch_add(1, Ordering::SeqCst);
        }
        slot
    }

    /// The holder is about to send its fill: from now on, newcomers do not
    /// join this flight (see the module docs).
    pub(crate) fn filling(&self, slot: &SlotRef) {
        let _map = self.lock();
        slot.filling.store(true, Ordering::SeqCst);
        self.close(slot);
    }

    fn close(&self, slot: &SlotRef) {
        if slot.joinable.swap(false, Ordering::SeqCst) {
            self.joinable.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Lands a flight: removes it and tells its waiters.
    pub(crate) fn land(&self, key: &str, slot: &SlotRef, how: Landing) {
        {
            let mut map = self.lock();
            self.close(slot);
            if map.get(key).is_some_and(|s| Arc::ptr_eq(s, slot)) {
                map.remove(key);
            }
        }
        slot.set(how);
    }

    /// Another process filled `key`: its waiters here look again.
    pub(crate) fn wake(&self, key: &str) {
        let slot = self.lock().get(key).cloned();
        if let Some(slot) = slot {
            self.land(key, &slot, Landing::Retry);
        }
    }

    /// Wakes every waiter (wake-ups may have been missed).
    pub(crate) fn wake_all(&self) {
        let slots: Vec<(String, SlotRef)> = self.lock().drain().collect();
        for (_, slot) in slots {
            self.close(&slot);
            slot.set(Landing::Retry);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// A caller waiting on a flight. Dropping the last waiter of a flight that no
/// holder adopted removes it, so abandoned slots do not accumulate.
pub(crate) struct Waiter<'a> {
    flights: &'a Flights,
    key: String,
    slot: SlotRef,
}

impl Waiter<'_> {
    /// Waits until the flight lands or `limit` passes; the stored bytes if the
    /// holder stored some.
    pub(crate) async fn landed(&mut self, limit: std::time::Duration) -> Option<Arc<Vec<u8>>> {
        let slot = &self.slot;
        let wait = async {
            loop {
                // Registered before the landing is read: a landing set in
                // between still wakes this waiter.
                let notified = slot.landed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                match slot.landing() {
                    Landing::Running => notified.await,
                    Landing::Stored(b) => return Some(b),
                    Landing::Retry => return None,
                }
            }
        };
        match tokio::time::timeout(limit, wait).await {
            Ok(landed) => landed,
            Err(_) => {
                self.flights.timed_out.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let others = self.slot.waiters.fetch_sub(1, Ordering::SeqCst) - 1;
        let mut map = self.flights.lock();
        // Two references: the map's and ours. No holder, no other waiter.
        if Arc::strong_count(&self.slot) <= 2
            && others == 0
            && map
                .get(&self.key)
                .is_some_and(|s| Arc::ptr_eq(s, &self.slot))
        {
            self.flights.close(&self.slot);
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn holder_adopts_a_slot_opened_by_waiters() {
        let f = Flights::default();
        let mut w = f.wait_on("k");
        let slot = f.lead("k", false);
        f.land("k", &slot, Landing::Stored(Arc::new(vec![1])));
        assert_eq!(
            w.landed(Duration::from_secs(1)).await.as_deref(),
            Some(&vec![1])
        );
        drop(w);
        assert_eq!(f.len(), 0);
    }

    #[tokio::test]
    async fn abandoned_waiter_slots_are_removed() {
        let f = Flights::default();
        let mut a = f.wait_on("k");
        let b = f.wait_on("k");
        assert_eq!(a.landed(Duration::from_millis(1)).await, None);
        drop(a);
        assert_eq!(f.len(), 1, "b still waits");
        drop(b);
        assert_eq!(f.len(), 0);
    }

    #[tokio::test]
    async fn wake_sends_waiters_back() {
        let f = Flights::default();
        let mut w = f.wait_on("k");
        f.wake("k");
        assert_eq!(w.landed(Duration::from_secs(1)).await, None);
        assert!(matches!(w.slot.landing(), Landing::Retry));
    }

    #[tokio::test]
    async fn callers_join_a_load_until_its_fill_is_sent() {
        let f = Flights::default();
        assert!(f.join_loading("k").is_none(), "nothing is loading");
        let Acquire::Ask(slot) = f.acquire("k") else {
            panic!("the first caller asks for the lease");
        };
        let mut early = f.join_loading("k").expect("joins while loading");
        assert!(matches!(f.acquire("k"), Acquire::Join(_)));
        f.filling(&slot);
        assert!(
            f.join_loading("k").is_none(),
            "a filling flight takes no newcomers"
        );
        let Acquire::Ask(next) = f.acquire("k") else {
            panic!("a newcomer opens a fresh flight");
        };
        assert!(!Arc::ptr_eq(&slot, &next));
        f.land("k", &slot, Landing::Stored(Arc::new(vec![7])));
        assert_eq!(
            early.landed(Duration::from_secs(1)).await.as_deref(),
            Some(&vec![7])
        );
        assert!(f.join_loading("k").is_some(), "the fresh flight stays");
        f.land("k", &next, Landing::Retry);
        assert_eq!(f.joinable.load(Ordering::SeqCst), 0);
        assert_eq!(f.len(), 0);
    }

    #[tokio::test]
    async fn waiters_after_a_held_lease_skip_a_filling_flight() {
        let f = Flights::default();
        let Acquire::Ask(old) = f.acquire("k") else {
            panic!("asks");
        };
        f.filling(&old);
        let mut w = f.wait_on("k");
        f.land("k", &old, Landing::Stored(Arc::new(vec![1])));
        assert_eq!(
            w.landed(Duration::from_millis(5)).await,
            None,
            "the old flight's bytes may predate this waiter's call"
        );
    }
}
