//! In-process counters, per cache and per function.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock, RwLock};

/// Counters of one function, mirrored to the `metrics` facade.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    m: Handles,
    /// Counted on every hit by every core: striped, so that cores do not
    /// contend for one cache line.
    pub(crate) hits: Striped,
    pub(crate) misses: AtomicU64,
    pub(crate) stale_serves: AtomicU64,
    pub(crate) loads: AtomicU64,
    pub(crate) refreshes: AtomicU64,
    pub(crate) load_micros: AtomicU64,
    pub(crate) lock_waits: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) corrupt: AtomicU64,
    pub(crate) type_mismatches: AtomicU64,
    pub(crate) fills_rejected: AtomicU64,
    pub(crate) invalidations: AtomicU64,
    pub(crate) invalidation_retries: AtomicU64,
    /// Recent reads that found no entry, less recent ones that found one,
    /// kept within `0..=MISSES_CAP`: what the next read probably finds.
    recent_misses: AtomicU32,
}

/// Upper bound of [`Counters::recent_misses`].
const MISSES_CAP: u32 = 8;
/// From this score on, a function's reads are expected to miss.
const MISSING_FROM: u32 = 4;

/// Handles into whatever `metrics` recorder was installed when the function
/// first ran (no-ops without one).
#[derive(Debug)]
struct Handles {
    hits: metrics::Counter,
    misses: metrics::Counter,
    stale_serves: metrics::Counter,
    loads: metrics::Counter,
    load_seconds: metrics::Histogram,
    refreshes: metrics::Counter,
    lock_waits: metrics::Counter,
    errors: metrics::Counter,
    corrupt: metrics::Counter,
    type_mismatches: metrics::Counter,
    fills_rejected: metrics::Counter,
    invalidations: metrics::Counter,
    invalidation_retries: metrics::Counter,
}

impl Default for Handles {
    fn default() -> Self {
        use metrics::{Counter, Histogram};
        Handles {
            hits: Counter::noop(),
            misses: Counter::noop(),
            stale_serves: Counter::noop(),
            loads: Counter::noop(),
            load_seconds: Histogram::noop(),
            refreshes: Counter::noop(),
            lock_waits: Counter::noop(),
            errors: Counter::noop(),
            corrupt: Counter::noop(),
            type_mismatches: Counter::noop(),
            fills_rejected: Counter::noop(),
            invalidations: Counter::noop(),
            invalidation_retries: Counter::noop(),
        }
    }
}

impl Handles {
    fn new(cache: &str, function: &'static str) -> Self {
        let labels = [
            ("cache", cache.to_string()),
            ("function", function.to_string()),
        ];
        Handles {
            hits: metrics::counter!("cache_hits_total", &labels),
            misses: metrics::counter!("cache_misses_total", &labels),
            stale_serves: metrics::counter!("cache_stale_serves_total", &labels),
            loads: metrics::counter!("cache_loads_total", &labels),
            load_seconds: metrics::histogram!("cache_load_seconds", &labels),
            refreshes: metrics::counter!("cache_refreshes_total", &labels),
            lock_waits: metrics::counter!("cache_lock_waits_total", &labels),
            errors: metrics::counter!("cache_errors_total", &labels),
            corrupt: metrics::counter!("cache_corrupt_total", &labels),
            type_mismatches: metrics::counter!("cache_type_mismatches_total", &labels),
            fills_rejected: metrics::counter!("cache_fills_rejected_total", &labels),
            invalidations: metrics::counter!("cache_invalidations_total", &labels),
            invalidation_retries: metrics::counter!("cache_invalidation_retries_total", &labels),
        }
    }
}

/// A counter split over cache lines; each thread adds to its own stripe.
#[derive(Debug, Default)]
pub(crate) struct Striped([Stripe; STRIPES]);

/// Stripes of per-thread state (counters, open read batches).
pub(crate) const STRIPES: usize = 8;

/// This thread's stripe: threads take stripes in turn as they first ask.
pub(crate) fn stripe() -> usize {
    use std::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static MINE: usize = NEXT.fetch_add(1, Relaxed) % STRIPES;
    }
    MINE.try_with(|i| *i).unwrap_or(0)
}

#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe(AtomicU64);

impl Striped {
    pub(crate) fn add(&self, n: u64) {
        self.0[stripe()].0.fetch_add(n, Relaxed);
    }

    pub(crate) fn sum(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Relaxed)).sum()
    }
}

macro_rules! bump {
    ($($method:ident => $field:ident),* $(,)?) => {
        $(
            pub(crate) fn $method(&self) {
                self.$field.fetch_add(1, Relaxed);
                self.m.$field.increment(1);
            }
        )*
    };
}

impl Counters {
    fn new(cache: &str, function: &'static str) -> Self {
        Counters {
            m: Handles::new(cache, function),
            ..Counters::default()
        }
    }

    pub(crate) fn hit(&self) {
        self.hits.add(1);
        self.m.hits.increment(1);
    }

    /// Whether this function's recent reads mostly found no entry (so the
    /// next one had better ask for the lease in its first round trip).
    pub(crate) fn lately_missing(&self) -> bool {
        self.recent_misses.load(Relaxed) >= MISSING_FROM
    }

    /// A read found its entry. Only a load while reads keep hitting: the
    /// score is written only when it changes.
    pub(crate) fn found(&self) {
        if self.recent_misses.load(Relaxed) > 0 {
            let _ = self
                .recent_misses
                .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
        }
    }

    /// A read found no entry.
    pub(crate) fn not_found(&self) {
        if self.recent_misses.load(Relaxed) < MISSES_CAP {
            let _ = self
                .recent_misses
                .fetch_update(Relaxed, Relaxed, |n| (n < MISSES_CAP).then_some(n + 1));
        }
    }

    bump!(
        miss => misses,
        stale_serve => stale_serves,
        refresh => refreshes,
        lock_wait => lock_waits,
        error => errors,
        corrupt_entry => corrupt,
        type_mismatch => type_mismatches,
        fill_rejected => fills_rejected,
        invalidation => invalidations,
        invalidation_retry => invalidation_retries,
    );

    /// A loader ran for this long.
    pub(crate) fn loaded(&self, took: std::time::Duration) {
        self.loads.fetch_add(1, Relaxed);
        self.load_micros.fetch_add(took.as_micros() as u64, Relaxed);
        self.m.loads.increment(1);
        self.m.load_seconds.record(took.as_secs_f64());
    }

    fn snapshot(&self) -> FunctionStats {
        FunctionStats {
            hits: self.hits.sum(),
            misses: self.misses.load(Relaxed),
            stale_serves: self.stale_serves.load(Relaxed),
            loads: self.loads.load(Relaxed),
            refreshes: self.refreshes.load(Relaxed),
            load_time: std::time::Duration::from_micros(self.load_micros.load(Relaxed)),
            lock_waits: self.lock_waits.load(Relaxed),
            errors: self.errors.load(Relaxed),
            corrupt: self.corrupt.load(Relaxed),
            type_mismatches: self.type_mismatches.load(Relaxed),
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
    /// Entries written by a value type of another shape (another function
    /// sharing the key, or a type changed between deploys): read as a miss,
    /// left in place.
    pub type_mismatches: u64,
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

/// A function's counters, as the registry hands them out.
pub(crate) enum CountersRef<'a> {
    /// From a fast slot: no lock taken, no reference counted.
    Slot(&'a Arc<Counters>),
    /// From the map.
    Map(Arc<Counters>),
}

impl std::ops::Deref for CountersRef<'_> {
    type Target = Arc<Counters>;

    fn deref(&self) -> &Arc<Counters> {
        match self {
            CountersRef::Slot(c) => c,
            CountersRef::Map(c) => c,
        }
    }
}

/// Functions whose counters are found without a lock (the rest, rarely
/// any, go through the map).
const FAST_SLOTS: usize = 32;

#[derive(Debug, Default)]
pub(crate) struct Registry {
    cache: String,
    /// Every function's counters.
    by_function: RwLock<HashMap<&'static str, Arc<Counters>>>,
    /// The first functions seen, filled once each and never changed: the hit
    /// path finds its counters here without a lock or a reference count,
    /// which many tasks on many cores would all contend on.
    fast: [OnceLock<(&'static str, Arc<Counters>)>; FAST_SLOTS],
}

impl Registry {
    /// Counters of the cache with this prefix (the `cache` label of its metrics).
    pub(crate) fn new(cache: &str) -> Self {
        Registry {
            cache: cache.to_string(),
            ..Registry::default()
        }
    }

    /// The counters of function `name`.
    pub(crate) fn function(&self, name: &'static str) -> CountersRef<'_> {
        for slot in &self.fast {
            match slot.get() {
                Some((n, c)) if *n == name => return CountersRef::Slot(c),
                Some(_) => continue,
                None => break,
            }
        }
        self.register(name)
    }

    #[cold]
    fn register(&self, name: &'static str) -> CountersRef<'_> {
        let counters = {
            let mut map = match self.by_function.write() {
                Ok(m) => m,
                Err(poisoned) => poisoned.into_inner(),
            };
            map.entry(name)
                .or_insert_with(|| Arc::new(Counters::new(&self.cache, name)))
                .clone()
        };
        for slot in &self.fast {
            let (n, c) = slot.get_or_init(|| (name, counters.clone()));
            if *n == name {
                return CountersRef::Slot(c);
            }
        }
        // More functions than slots: found through the map.
        CountersRef::Map(counters)
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
    total.type_mismatches += s.type_mismatches;
    total.fills_rejected += s.fills_rejected;
    total.invalidations += s.invalidations;
    total.invalidation_retries += s.invalidation_retries;
}
