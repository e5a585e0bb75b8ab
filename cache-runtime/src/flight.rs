//! In-process single flight: callers that find a key's lease held wait here
//! for the holder's outcome instead of polling the store.
//!
//! A slot is created by whoever needs it first: the lease holder, or a caller
//! that found the lease held (by this process or another). A holder adopts a
//! slot that waiters already created, so no waiter misses the landing however
//! the replies of the store were ordered. Fills announced by other processes
//! (Redis pub/sub) land the slot with `Retry`, which sends its waiters back
//! to the store, where they find the new entry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

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

type Slot = Arc<watch::Sender<Landing>>;

/// Flights in progress, by stored entry key.
#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<String, Slot>>,
}

impl Flights {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        match self.map.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn slot(&self, key: &str) -> Slot {
        let mut map = self.lock();
        if let Some(s) = map.get(key) {
            return s.clone();
        }
        let s = Arc::new(watch::Sender::new(Landing::Running));
        map.insert(key.to_string(), s.clone());
        s
    }

    /// Joins (or opens) the flight of `key` as a waiter.
    pub(crate) fn wait_on(&self, key: &str) -> Waiter<'_> {
        let slot = self.slot(key);
        let rx = slot.subscribe();
        Waiter {
            flights: self,
            key: key.to_string(),
            slot,
            rx,
        }
    }

    /// Opens (or adopts) the flight of `key` as its lease holder.
    pub(crate) fn lead(&self, key: &str) -> Slot {
        self.slot(key)
    }

    /// Lands a flight: removes it and tells its waiters.
    pub(crate) fn land(&self, key: &str, slot: &Slot, how: Landing) {
        {
            let mut map = self.lock();
            if map.get(key).is_some_and(|s| Arc::ptr_eq(s, slot)) {
                map.remove(key);
            }
        }
        slot.send_replace(how);
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
        let slots: Vec<(String, Slot)> = self.lock().drain().collect();
        for (_, slot) in slots {
            slot.send_replace(Landing::Retry);
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
    slot: Slot,
    rx: watch::Receiver<Landing>,
}

impl Waiter<'_> {
    /// Waits until the flight lands or `limit` passes; the stored bytes if the
    /// holder stored some.
    pub(crate) async fn landed(&mut self, limit: std::time::Duration) -> Option<Arc<Vec<u8>>> {
        let wait = self.rx.wait_for(|l| !matches!(l, Landing::Running));
        match tokio::time::timeout(limit, wait).await {
            Ok(Ok(l)) => match &*l {
                Landing::Stored(b) => Some(b.clone()),
                _ => None,
            },
            _ => None,
        }
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut map = self.flights.lock();
        // Two references: the map's and ours. No holder, no other waiter.
        if Arc::strong_count(&self.slot) <= 2
            && self.slot.receiver_count() <= 1
            && map
                .get(&self.key)
                .is_some_and(|s| Arc::ptr_eq(s, &self.slot))
        {
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
        let slot = f.lead("k");
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
        assert!(matches!(*w.rx.borrow(), Landing::Retry));
    }
}
