//! Loads whose body owns what it uses can outlive their caller
//! (`Cache::get_or_spawn`, and `#[cached]` on a function whose arguments are
//! all owned): a refresh runs in the background while every caller, the one
//! that started it included, is served the current value; and a load whose
//! caller is dropped finishes (in a task of its own from then on) and fills,
//! so that its waiters get its value and nobody loads again. A load whose
//! loader panics reaches its caller as that panic, and runs once. A body that borrows (`get_or_load`, `&self`
//! methods) runs in its caller, and is handed over instead
//! (`stampede::cancelled_leader_hands_over`).

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cache_runtime::{Cache, Options, cached};
use common::Backend;
use tokio::sync::{Notify, oneshot};

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

/// Waits (bounded) until `cond` holds, yielding between looks.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !cond() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting: {what}"));
}

/// Reads `key` until it holds `want` (the background fill landed).
async fn until_stored(cache: &Cache, key: &str, want: u32) {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if cache.get::<u32>(key).await.unwrap() == Some(want) {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{key} never became {want}"));
}

static OFFSET_MEMORY: AtomicU64 = AtomicU64::new(0);
static OFFSET_REDIS: AtomicU64 = AtomicU64::new(0);
static OFFSET_CLUSTER: AtomicU64 = AtomicU64::new(0);

fn clock_memory() -> u64 {
    frozen_now() + OFFSET_MEMORY.load(SeqCst)
}
fn clock_redis() -> u64 {
    frozen_now() + OFFSET_REDIS.load(SeqCst)
}
fn clock_cluster() -> u64 {
    frozen_now() + OFFSET_CLUSTER.load(SeqCst)
}

async fn stale_refresh_runs_in_the_background(b: Backend) {
    let (offset, clock): (&AtomicU64, fn() -> u64) = match b {
        Backend::Memory => (&OFFSET_MEMORY, clock_memory),
        Backend::Redis => (&OFFSET_REDIS, clock_redis),
        Backend::Cluster => (&OFFSET_CLUSTER, clock_cluster),
    };
    let cache = b
        .builder("bg-stale")
        .jitter(0.0)
        .clock(clock)
        .build()
        .await
        .unwrap();
    let opts = Options::new()
        .ttl(Duration::from_secs(10))
        .stale(Duration::from_secs(600));
    let v: Result<u32, Infallible> = cache.get_or_spawn("k", &opts, || async { Ok(1) }).await;
    assert_eq!(v.unwrap(), 1);

    offset.store(11_000, SeqCst);
    let gate = Arc::new(Notify::new());
    let loads = Arc::new(AtomicUsize::new(0));
    // Every caller returns the stale value while the refresh is still
    // blocked on the gate: the refresher too.
    for _ in 0..5 {
        let (gate, loads) = (gate.clone(), loads.clone());
        let v: Result<u32, Infallible> = cache
            .get_or_spawn("k", &opts, move || async move {
                loads.fetch_add(1, SeqCst);
                gate.notified().await;
                Ok(2)
            })
            .await;
        assert_eq!(v.unwrap(), 1, "served the stale value at once");
    }
    until("the refresh started", || loads.load(SeqCst) == 1).await;
    assert_eq!(cache.stats().refreshes, 1);
    assert_eq!(cache.stats().stale_serves, 5);
    gate.notify_one();
    until_stored(&cache, "k", 2).await;
    assert_eq!(loads.load(SeqCst), 1, "one refresh");
}

static EARLY: OnceLock<Cache> = OnceLock::new();
static EARLY_RANDOM: AtomicU64 = AtomicU64::new(0);
static EARLY_GATE: OnceLock<Arc<Notify>> = OnceLock::new();
static EARLY_LOADS: AtomicUsize = AtomicUsize::new(0);
static EARLY_VALUE: AtomicU64 = AtomicU64::new(1);

static EARLY_OFFSET: AtomicU64 = AtomicU64::new(0);

fn early_clock() -> u64 {
    frozen_now() + EARLY_OFFSET.load(SeqCst)
}

fn early_random() -> f64 {
    f64::from_bits(EARLY_RANDOM.load(SeqCst))
}

/// Owned arguments: the macro's loads can outlive their caller.
#[cached(
    cache = EARLY.get().expect("cache built"),
    key = "early:{id}",
    ttl = 100,
    early_refresh = 1.0
)]
async fn early(id: u32) -> Result<u64, Infallible> {
    let _ = id;
    if EARLY_LOADS.fetch_add(1, SeqCst) == 0 {
        // The first load takes a while: its compute time (Δ) is recorded.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if let Some(gate) = EARLY_GATE.get() {
        gate.notified().await;
    }
    Ok(EARLY_VALUE.load(SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_refresh_of_a_cached_function_runs_in_the_background() {
    let cache = Backend::Redis
        .builder("bg-early")
        .jitter(0.0)
        .random(early_random)
        .clock(early_clock)
        .build()
        .await
        .unwrap();
    let _ = EARLY.set(cache.clone());
    assert_eq!(early(1).await.unwrap(), 1);
    // ~100 ms before expiry, u = 0.999: -ln(0.001) · 200 ms ≈ 1.4 s ≥ time
    // left, so every read is picked for early refresh.
    EARLY_OFFSET.store(100_000 - 100, SeqCst);
    EARLY_RANDOM.store(0.999f64.to_bits(), SeqCst);
    let gate = EARLY_GATE.get_or_init(|| Arc::new(Notify::new())).clone();
    EARLY_VALUE.store(2, SeqCst);
    for _ in 0..3 {
        // Were the refresh run by its caller, this would wait on the gate.
        let v = tokio::time::timeout(Duration::from_secs(10), early(1))
            .await
            .expect("the refresher's caller does not wait for the refresh");
        assert_eq!(v.unwrap(), 1, "the current value, at once");
    }
    until("the refresh started", || EARLY_LOADS.load(SeqCst) == 2).await;
    assert_eq!(cache.stats().refreshes, 1, "one refresh under the lease");
    gate.notify_one();
    EARLY_RANDOM.store(0f64.to_bits(), SeqCst);
    tokio::time::timeout(Duration::from_secs(10), async {
        while early(1).await.unwrap() != 2 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the refreshed value is served");
    assert_eq!(EARLY_LOADS.load(SeqCst), 2);
}

async fn dropped_leader_load_finishes(b: Backend) {
    let cache = b
        .builder("bg-cancel")
        .lease_ttl(Duration::from_secs(30))
        .build()
        .await
        .unwrap();
    let opts = Options::new().ttl(Duration::from_secs(60));
    let loads = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Notify::new());
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let leader = {
        let (c, o, l, g) = (cache.clone(), opts.clone(), loads.clone(), gate.clone());
        tokio::spawn(async move {
            let _: Result<u32, Infallible> = c
                .get_or_spawn("k", &o, move || async move {
                    l.fetch_add(1, SeqCst);
                    let _ = started_tx.send(());
                    g.notified().await;
                    Ok(42)
                })
                .await;
        })
    };
    started_rx.await.unwrap();
    let mut waiters = Vec::new();
    for _ in 0..10 {
        let (c, o, l) = (cache.clone(), opts.clone(), loads.clone());
        waiters.push(tokio::spawn(async move {
            let v: Result<u32, Infallible> = c
                .get_or_spawn("k", &o, move || async move {
                    l.fetch_add(1, SeqCst);
                    Ok(0)
                })
                .await;
            v.unwrap()
        }));
    }
    until("waiters joined", || cache.stats().lock_waits >= 10).await;
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    // The leader's caller is gone; its load goes on.
    gate.notify_one();
    for w in waiters {
        assert_eq!(w.await.unwrap(), 42, "the dropped leader's value");
    }
    assert_eq!(loads.load(SeqCst), 1, "{b:?}: nobody loaded again");
    until_stored(&cache, "k", 42).await;
}

/// A loader that panics: the panic reaches the caller, the loader is not
/// run again on its behalf, and the key is free for the next caller.
async fn a_panicking_load_reaches_its_caller(b: Backend) {
    let cache = b
        .builder("panicking")
        .lease_ttl(Duration::from_secs(30))
        .build()
        .await
        .expect("cache");
    let opts = Options::new().ttl(Duration::from_secs(60));
    let runs = Arc::new(AtomicUsize::new(0));
    let (c, o, r) = (cache.clone(), opts.clone(), runs.clone());
    let out = tokio::spawn(async move {
        let v: Result<u32, Infallible> = c
            .get_or_spawn("boom", &o, move || async move {
                r.fetch_add(1, SeqCst);
                panic!("the loader panics");
            })
            .await;
        v
    })
    .await;
    assert!(
        out.expect_err("the caller panicked").is_panic(),
        "the loader's panic reached its caller"
    );
    let v: Result<u32, Infallible> = tokio::time::timeout(
        Duration::from_secs(10),
        cache.get_or_spawn("boom", &opts, || async { Ok(7) }),
    )
    .await
    .expect("the key is not held by the panicked load");
    assert_eq!(v.unwrap(), 7);
    assert_eq!(runs.load(SeqCst), 1, "the panicked loader ran once");
}

on_every_backend!(
    stale_refresh_runs_in_the_background,
    dropped_leader_load_finishes,
    a_panicking_load_reaches_its_caller,
);
