//! The in-process store: a Redis-like string keyspace with per-key expiry
//! behind one mutex, so that every multi-key operation is atomic exactly as
//! the Redis scripts are. The operations mirror `scripts/*.lua` one for one,
//! which is what lets one conformance suite run against both stores.
//!
//! Memory is bounded: past `max_keys` keys, expired keys are purged and then
//! arbitrary keys are evicted (like Redis' `allkeys-random`). Evicting a lease
//! or a tag key never makes a stale value visible: a missing tag key reads as
//! a mismatch, and a missing lease makes the holder's fill fail.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{EntryKeys, LeaseArgs, Lookup};
use crate::error::Result;

/// Default bound on the number of keys.
pub(crate) const DEFAULT_MAX_KEYS: usize = 1_000_000;

struct Slot {
    value: Vec<u8>,
    expires: Instant,
}

struct Space {
    map: HashMap<String, Slot>,
    max_keys: usize,
}

impl Space {
    fn get(&mut self, key: &str, now: Instant) -> Option<&Vec<u8>> {
        if self.map.get(key).is_some_and(|s| s.expires <= now) {
            self.map.remove(key);
        }
        self.map.get(key).map(|s| &s.value)
    }

    fn set(&mut self, key: &str, value: Vec<u8>, ttl_ms: u64, now: Instant) {
        let expires = now + Duration::from_millis(ttl_ms.max(1));
        match self.map.get_mut(key) {
            Some(slot) => {
                slot.value = value;
                slot.expires = expires;
            }
            None => {
                if self.map.len() >= self.max_keys {
                    self.make_room(now);
                }
                self.map.insert(key.to_string(), Slot { value, expires });
            }
        }
    }

    fn del(&mut self, key: &str) -> bool {
        self.map.remove(key).is_some()
    }

    fn pttl(&mut self, key: &str, now: Instant) -> i64 {
        match self.map.get(key) {
            Some(s) if s.expires > now => {
                i64::try_from((s.expires - now).as_millis()).unwrap_or(i64::MAX)
            }
            _ => -2,
        }
    }

    fn make_room(&mut self, now: Instant) {
        self.map.retain(|_, s| s.expires > now);
        if self.map.len() >= self.max_keys {
            let drop_n = (self.max_keys / 10).max(1);
            let victims: Vec<String> = self.map.keys().take(drop_n).cloned().collect();
            for k in victims {
                self.map.remove(&k);
            }
        }
    }

    /// Current tokens of the tags, `None` for a tag with no key.
    fn tokens(&mut self, tag_keys: &[String], now: Instant) -> Vec<Option<Vec<u8>>> {
        tag_keys.iter().map(|k| self.get(k, now).cloned()).collect()
    }

    /// Gives tags without a token a new one (as the scripts do).
    fn ensure_tokens(
        &mut self,
        tag_keys: &[String],
        cur: Vec<Option<Vec<u8>>>,
        fresh: &str,
        ttl_ms: u64,
        now: Instant,
    ) -> String {
        let mut joined = Vec::new();
        for (i, (k, t)) in tag_keys.iter().zip(cur).enumerate() {
            let t = match t {
                Some(t) => t,
                None => {
                    let t = format!("{fresh}{}", i + 1).into_bytes();
                    self.set(k, t.clone(), ttl_ms, now);
                    t
                }
            };
            if i > 0 {
                joined.push(b',');
            }
            joined.extend_from_slice(&t);
        }
        String::from_utf8_lossy(&joined).into_owned()
    }
}

pub(crate) struct MemoryStore {
    space: Mutex<Space>,
}

impl MemoryStore {
    pub(crate) fn new() -> Self {
        Self::with_max_keys(DEFAULT_MAX_KEYS)
    }

    pub(crate) fn with_max_keys(max_keys: usize) -> Self {
        MemoryStore {
            space: Mutex::new(Space {
                map: HashMap::new(),
                max_keys: max_keys.max(16),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Space> {
        // A panic while holding the lock cannot leave a slot half-written
        // (every mutation is a single map operation), so a poisoned lock is safe to use.
        match self.space.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    pub(crate) fn lookup(
        &self,
        k: &EntryKeys,
        tag_keys: &[String],
        lease: Option<&LeaseArgs<'_>>,
    ) -> Result<Lookup> {
        let now = Instant::now();
        let mut s = self.lock();
        let cur = s.tokens(tag_keys, now);
        let mut corrupt = false;
        let look = lease.is_none_or(|l| l.mode == super::LeaseMode::OnMiss);
        if look && let Some(v) = s.get(&k.entry, now) {
            match crate::envelope::header_tokens(v) {
                Some(recorded) => {
                    if crate::envelope::tags_current(recorded, &cur) {
                        return Ok(Lookup::Hit(v.clone()));
                    }
                }
                None => {
                    s.del(&k.entry);
                    corrupt = true;
                }
            }
        }
        let Some(l) = lease else {
            return Ok(Lookup::Miss { corrupt });
        };
        if s.get(&k.lease, now).is_some() {
            let pttl_ms = s.pttl(&k.lease, now);
            return Ok(Lookup::Held { pttl_ms, corrupt });
        }
        s.set(&k.lease, l.token.as_bytes().to_vec(), l.lease_ms, now);
        let tokens = s.ensure_tokens(tag_keys, cur, l.token, l.tag_ttl_ms, now);
        Ok(Lookup::Leased { tokens, corrupt })
    }

    pub(crate) fn fill(&self, k: &EntryKeys, token: &str, bytes: &[u8], px: u64) -> Result<bool> {
        let now = Instant::now();
        let mut s = self.lock();
        if s.get(&k.lease, now).is_some_and(|t| t == token.as_bytes()) {
            s.set(&k.entry, bytes.to_vec(), px, now);
            s.del(&k.lease);
            return Ok(true);
        }
        Ok(false)
    }

    pub(crate) fn release(&self, k: &EntryKeys, token: &str) -> Result<()> {
        let now = Instant::now();
        let mut s = self.lock();
        if s.get(&k.lease, now).is_some_and(|t| t == token.as_bytes()) {
            s.del(&k.lease);
        }
        Ok(())
    }

    pub(crate) fn set(&self, w: &super::Write<'_>) -> Result<()> {
        let now = Instant::now();
        let mut s = self.lock();
        let cur = s.tokens(w.tag_keys, now);
        let tokens = s.ensure_tokens(w.tag_keys, cur, w.fresh, w.tag_ttl_ms, now);
        let mut v = Vec::with_capacity(w.head.len() + tokens.len() + 1 + w.tail.len());
        v.extend_from_slice(w.head);
        v.extend_from_slice(tokens.as_bytes());
        v.push(b';');
        v.extend_from_slice(w.tail);
        let k = w.keys;
        s.set(&k.entry, v, w.px, now);
        s.del(&k.lease);
        Ok(())
    }

    pub(crate) fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.lock().get(key, Instant::now()).cloned())
    }

    pub(crate) fn mget(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        Ok(self.lock().tokens(keys, Instant::now()))
    }

    pub(crate) fn put_raw(&self, key: &str, bytes: &[u8], px: u64) -> Result<()> {
        self.lock().set(key, bytes.to_vec(), px, Instant::now());
        Ok(())
    }

    pub(crate) fn pttl(&self, key: &str) -> i64 {
        self.lock().pttl(key, Instant::now())
    }

    pub(crate) fn delete(&self, keys: &[String]) -> Result<u64> {
        let mut s = self.lock();
        Ok(keys.iter().filter(|k| s.del(k)).count() as u64)
    }

    pub(crate) fn set_tokens(&self, keys: &[String], tokens: &[String], ttl_ms: u64) -> Result<()> {
        let now = Instant::now();
        let mut s = self.lock();
        for (k, t) in keys.iter().zip(tokens) {
            s.set(k, t.as_bytes().to_vec(), ttl_ms, now);
        }
        Ok(())
    }

    /// New tokens for the keys that exist, which keep their lifetimes.
    pub(crate) fn bump_present(&self, keys: &[String], tokens: &[String]) -> Result<()> {
        let now = Instant::now();
        let mut s = self.lock();
        for (k, t) in keys.iter().zip(tokens) {
            if let Some(slot) = s.map.get_mut(k.as_str()).filter(|v| v.expires > now) {
                slot.value = t.as_bytes().to_vec();
            }
        }
        Ok(())
    }

    pub(crate) fn delete_pattern(&self, pattern: &crate::key::StoredPattern) -> Result<u64> {
        let now = Instant::now();
        let mut s = self.lock();
        let before = s.map.len();
        s.map
            .retain(|k, slot| slot.expires > now && !pattern.covers(k));
        Ok((before - s.map.len()) as u64)
    }
}
