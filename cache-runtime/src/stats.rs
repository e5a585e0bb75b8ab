//! In-process counters, per cache and per function.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) stale_serves: AtomicU64,
    pub(crate) loads: AtomicU64,
    pub(crate) refreshes: AtomicU64,
    pub(crate) load_micros: AtomicU64,
    pub(crate) lock_waits: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) corrupt: AtomicU64,
    pub(crate) fills_rejected: AtomicU64,
    pub(crate) invalidations: AtomicU64,
    pub(crate) invalidation_retries: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> FunctionStats {
        FunctionStats {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            stale_serves: self.stale_serves.load(Relaxed),
            loads: self.loads.load(Relaxed),
            refreshes: self.refreshes.load(Relaxed),
            load_time: std::time::Duration::from_micros(self.load_micros.load(Relaxed)),
            lock_waits: self.lock_waits.load(Relaxed),
            errors: self.errors.load(Relaxed),
            corrupt: self.corrupt.load(Relaxed),
            fills_rejected: self.fills_rejected.load(Relaxed),
            invalidations: self.invalidations.load(Relaxed),
            invalidation_retries: self.invalidation_retries.load(Relaxed),
        }
    }
}

/// Counters of one function (or of the whole cache).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FunctionStats {
    /// Reads answered from the cache.
    pub hits: u64,
    /// Reads that found no usable entry.
    pub misses: u64,
    /// Reads answered with a value past its ttl (within `stale`).
    pub stale_serves: u64,
    /// Times the loader (the function body) ran.
    pub loads: u64,
    /// Loads that refreshed an entry still being served (stale or early refresh).
    pub refreshes: u64,
    /// Total time spent in loaders.
    pub load_time: std::time::Duration,
    /// Times a caller waited for another caller's load.
    pub lock_waits: u64,
    /// Store failures (each one fell back to the loader or was retried).
    pub errors: u64,
    /// Entries that could not be decoded (deleted and treated as a miss).
    pub corrupt: u64,
    /// Fills refused because an invalidation came first.
    pub fills_rejected: u64,
    /// Invalidation calls run.
    pub invalidations: u64,
    /// Invalidation attempts that failed and were retried.
    pub invalidation_retries: u64,
}

/// A snapshot of a cache's counters, from [`Cache::stats`](crate::Cache::stats).
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// The sum over all functions.
    pub total: FunctionStats,
    /// Per function, keyed by the function's path (or the name given with
    /// [`Options::function`](crate::Options::function); `""` for unnamed calls).
    pub functions: HashMap<&'static str, FunctionStats>,
}

impl Stats {
    /// The counters of one function (all zero if it never ran).
    pub fn function(&self, name: &str) -> FunctionStats {
        self.functions.get(name).copied().unwrap_or_default()
    }
}

impl std::ops::Deref for Stats {
    type Target = FunctionStats;
    fn deref(&self) -> &FunctionStats {
        &self.total
    }
}

#[derive(Debug, Default)]
pub(crate) struct Registry {
    by_function: RwLock<HashMap<&'static str, Arc<Counters>>>,
}

impl Registry {
    pub(crate) fn function(&self, name: &'static str) -> Arc<Counters> {
        if let Ok(map) = self.by_function.read()
            && let Some(c) = map.get(name)
        {
            return c.clone();
        }
        let mut map = match self.by_function.write() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry(name).or_default().clone()
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let map = match self.by_function.read() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut stats = Stats::default();
        for (name, c) in map.iter() {
            let s = c.snapshot();
            add(&mut stats.total, &s);
            stats.functions.insert(name, s);
        }
        stats
    }
}

fn add(total: &mut FunctionStats, s: &FunctionStats) {
    total.hits += s.hits;
    total.misses += s.misses;
    total.stale_serves += s.stale_serves;
    total.loads += s.loads;
    total.refreshes += s.refreshes;
    total.load_time += s.load_time;
    total.lock_waits += s.lock_waits;
    total.errors += s.errors;
    total.corrupt += s.corrupt;
    total.fills_rejected += s.fills_rejected;
    total.invalidations += s.invalidations;
    total.invalidation_retries += s.invalidation_retries;
}
