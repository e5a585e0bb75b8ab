//! Stale-while-revalidate, failover to stale values, and early refresh, driven
//! by an injected clock and random source.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use cache_runtime::Options;
use common::Backend;
use tokio::sync::{Barrier, Notify};

/// The test clocks' time zero: the wall clock when first asked, then frozen,
/// so that only the test moves these clocks (a slow machine cannot).
fn frozen_now() -> u64 {
    static START: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    });
    *START
}

/// A test clock: a frozen time plus an offset the test moves, and a random
/// source the test sets; one per test and store, since tests run in parallel.
struct Knobs {
    offset: AtomicU64,
    random: AtomicU64,
    clock: fn() -> u64,
    rand: fn() -> f64,
}

macro_rules! knobs {
    ($name:ident) => {
        static $name: Knobs = {
            fn clock() -> u64 {
                frozen_now() + $name.offset.load(SeqCst)
            }
            fn rand() -> f64 {
                f64::from_bits($name.random.load(SeqCst))
            }
            Knobs {
                offset: AtomicU64::new(0),
                random: AtomicU64::new(0),
                clock,
                rand,
            }
        };
    };
}

knobs!(STALE_MEMORY);
knobs!(STALE_REDIS);
knobs!(EARLY_MEMORY);
knobs!(EARLY_REDIS);
knobs!(STALE_CLUSTER);
knobs!(EARLY_CLUSTER);

impl Knobs {
    fn advance_to(&self, ms: u64) {
        self.offset.store(ms, SeqCst);
    }
    fn set_random(&self, u: f64) {
        self.random.store(u.to_bits(), SeqCst);
    }
}

async fn stale_while_revalidate(b: Backend) {
    let k = match b {
        Backend::Memory => &STALE_MEMORY,
        Backend::Redis => &STALE_REDIS,
        Backend::Cluster => &STALE_CLUSTER,
    };
    let cache = b
        .builder("stale")
        .jitter(0.0)
        .clock(k.clock)
        .build()
        .await
        .unwrap();
    let opts = Options::new()
        .ttl(Duration::from_secs(10))
        .stale(Duration::from_secs(600));
    let v: Result<u32, String> = cache.get_or_load("k", &opts, || async { Ok(1) }).await;
    assert_eq!(v.unwrap(), 1);

    // Past the ttl, inside the stale window.
    k.advance_to(11_000);
    let gate = Arc::new(Notify::new());
    let loads = Arc::new(AtomicUsize::new(0));
    let n = 10;
    let barrier = Arc::new(Barrier::new(n));
    let mut callers = Vec::new();
    for _ in 0..n {
        let (cache, opts, gate, loads, barrier) = (
            cache.clone(),
            opts.clone(),
            gate.clone(),
            loads.clone(),
            barrier.clone(),
        );
        callers.push(tokio::spawn(async move {
            barrier.wait().await;
            let v: Result<u32, String> = cache
                .get_or_load("k", &opts, || async move {
                    loads.fetch_add(1, SeqCst);
                    gate.notified().await;
                    Ok(2)
                })
                .await;
            v.unwrap()
        }));
    }
    // Everyone but the refresher is served the stale value without waiting.
    tokio::time::timeout(Duration::from_secs(10), async {
        while cache.stats().stale_serves < (n as u64 - 1) {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("stale values served while the refresh runs");
    assert_eq!(loads.load(SeqCst), 1, "one refresh");
    gate.notify_one();
    let mut got: Vec<u32> = Vec::new();
    for c in callers {
        got.push(c.await.unwrap());
    }
    got.sort();
    assert_eq!(
        got,
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 2],
        "nine stale, the refresher's new value"
    );
    let v: Result<u32, String> = cache.get_or_load("k", &opts, || async { Ok(99) }).await;
    assert_eq!(v.unwrap(), 2, "the refreshed value is fresh again");

    // Failover: past the ttl again and the source fails: the stale value is served.
    k.advance_to(30_000);
    let before = cache.stats().stale_serves;
    let v: Result<u32, String> = cache
        .get_or_load("k", &opts, || async { Err("db down".to_string()) })
        .await;
    assert_eq!(v.unwrap(), 2);
    assert_eq!(cache.stats().stale_serves, before + 1);
    assert_eq!(cache.stats().refreshes, 2);
}

async fn early_refresh_one_caller_reloads(b: Backend) {
    let k = match b {
        Backend::Memory => &EARLY_MEMORY,
        Backend::Redis => &EARLY_REDIS,
        Backend::Cluster => &EARLY_CLUSTER,
    };
    let cache = b
        .builder("early")
        .jitter(0.0)
        .clock(k.clock)
        .random(k.rand)
        .build()
        .await
        .unwrap();
    let opts = Options::new()
        .ttl(Duration::from_secs(100))
        .early_refresh(1.0);
    // The loader takes ~200 ms: Δ is recorded in the envelope.
    let v: Result<u32, String> = cache
        .get_or_load("k", &opts, || async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(1)
        })
        .await;
    assert_eq!(v.unwrap(), 1);
    // ~100 ms before expiry: refresh probability exp(-100/200) ≈ 0.6.
    k.advance_to(100_000 - 100);
    // u = 0: -ln(1 - u) = 0 < time left: no refresh.
    let v: Result<u32, String> = cache.get_or_load("k", &opts, || async { Ok(2) }).await;
    assert_eq!(v.unwrap(), 1);
    assert_eq!(cache.stats().refreshes, 0);
    // u = 0.999: -ln(0.001) · 200 ms ≈ 1.4 s ≥ time left: refresh.
    k.set_random(0.999);
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    let c = cache.clone();
    let o = opts.clone();
    let refresher = tokio::spawn(async move {
        let v: Result<u32, String> = c
            .get_or_load("k", &o, || async move {
                g.notified().await;
                Ok(3)
            })
            .await;
        v.unwrap()
    });
    tokio::time::timeout(Duration::from_secs(10), async {
        while cache.stats().refreshes == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("refresh started");
    // Others, also picked for refresh, do not get the lease and are served the current value.
    let v: Result<u32, String> = cache.get_or_load("k", &opts, || async { Ok(4) }).await;
    assert_eq!(v.unwrap(), 1);
    gate.notify_one();
    assert_eq!(refresher.await.unwrap(), 3);
    k.set_random(0.0);
    let v: Result<u32, String> = cache.get_or_load("k", &opts, || async { Ok(5) }).await;
    assert_eq!(v.unwrap(), 3, "the refreshed value is stored");
}

on_every_backend!(stale_while_revalidate, early_refresh_one_caller_reloads);
