//! A circuit breaker in front of the store.
//!
//! After `threshold` consecutive failures (connection errors or timeouts, not
//! server replies such as a script error) the breaker opens: for `cooldown`,
//! store operations fail at once, without I/O, so that a dead Redis costs a
//! read its loader plus a few nanoseconds instead of a timeout. Then one probe
//! is let through (half-open); its success closes the breaker, its failure
//! opens it again.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Consecutive failures that open the breaker.
pub const DEFAULT_THRESHOLD: u32 = 5;
/// How long the breaker stays open before a probe.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(1);

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_us() -> u64 {
    EPOCH.elapsed().as_micros() as u64
}

/// The breaker's state, lock-free.
#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    cooldown_us: u64,
    failures: AtomicU32,
    /// 0 when closed; otherwise when the open period ends (µs since EPOCH).
    open_until: AtomicU64,
    probing: AtomicBool,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Self {
        Breaker {
            threshold: threshold.max(1),
            cooldown_us: cooldown.as_micros() as u64,
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        }
    }

    /// Whether an operation may go to the store now.
    #[inline]
    pub(crate) fn allow(&self) -> bool {
        if self.open_until.load(Relaxed) == 0 {
            return true;
        }
        self.allow_at(now_us())
    }

    /// [`allow`](Self::allow) at `now` (µs since the breaker's epoch).
    fn allow_at(&self, now: u64) -> bool {
        let until = self.open_until.load(Relaxed);
        if until == 0 {
            return true;
        }
        if now < until {
            return false;
        }
        // Half-open: exactly one probe at a time.
        self.probing
            .compare_exchange(false, true, Relaxed, Relaxed)
            .is_ok()
    }

    pub(crate) fn success(&self) {
        if self.failures.load(Relaxed) != 0 {
            self.failures.store(0, Relaxed);
        }
        if self.open_until.load(Relaxed) != 0 {
            self.open_until.store(0, Relaxed);
            self.probing.store(false, Relaxed);
            tracing::info!("cache: store reachable again; circuit closed");
        }
    }

    pub(crate) fn failure(&self) {
        self.failure_at(now_us());
    }

    /// [`failure`](Self::failure) at `now` (µs since the breaker's epoch).
    fn failure_at(&self, now: u64) {
        if self.probing.swap(false, Relaxed) {
            self.open_until.store(now + self.cooldown_us, Relaxed);
            return;
        }
        let n = self.failures.fetch_add(1, Relaxed) + 1;
        if n >= self.threshold && self.open_until.load(Relaxed) == 0 {
            self.open_until.store(now + self.cooldown_us, Relaxed);
            tracing::warn!(
                failures = n,
                "cache: store failing; circuit open, reads go to their loaders"
            );
        }
    }

    /// Whether the breaker is open now.
    pub(crate) fn is_open(&self) -> bool {
        self.open_until.load(Relaxed) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Times in µs on the breaker's own clock, moved by the test alone.
    #[test]
    fn opens_after_threshold_and_probes_after_cooldown() {
        let b = Breaker::new(3, Duration::from_millis(20));
        let mut now = 1_000_000;
        for _ in 0..2 {
            assert!(b.allow_at(now));
            b.failure_at(now);
        }
        assert!(!b.is_open());
        b.failure_at(now);
        assert!(b.is_open());
        assert!(!b.allow_at(now), "open: no I/O");
        now += 19_999;
        assert!(!b.allow_at(now), "open for the whole cooldown");
        now += 1;
        assert!(b.allow_at(now), "one probe after the cooldown");
        assert!(!b.allow_at(now), "only one");
        b.failure_at(now);
        assert!(!b.allow_at(now + 19_999), "failed probe: open again");
        now += 20_000;
        assert!(b.allow_at(now));
        b.success();
        assert!(!b.is_open());
        assert!(b.allow_at(now) && b.allow_at(now), "closed");
    }

    #[test]
    fn a_success_resets_the_count() {
        let b = Breaker::new(3, Duration::from_secs(60));
        b.failure();
        b.failure();
        b.success();
        b.failure();
        b.failure();
        assert!(!b.is_open());
    }
}
