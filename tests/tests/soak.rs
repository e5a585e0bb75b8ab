//! Soak: mixed reads, writes and invalidations against a redis-server that is
//! killed, restarted and paused at random, for a bounded time (`SOAK_SECS`,
//! 30 s by default). At the end: no panic, no stale read, no stale entry once
//! the server is back, nothing left queued, and memory that did not grow.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cache_runtime::{Cache, Options, invalidates};
use cache_tests::RedisServer;

const KEYS: u64 = 16;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[derive(Default)]
struct Source {
    versions: Mutex<HashMap<u64, u64>>,
}

impl Source {
    fn read(&self, k: u64) -> u64 {
        *self.versions.lock().unwrap().get(&k).unwrap_or(&0)
    }
    fn bump(&self, k: u64) -> u64 {
        let mut m = self.versions.lock().unwrap();
        let v = m.entry(k).or_insert(0);
        *v += 1;
        *v
    }
}

#[invalidates(keys = ["k{key}"], cache = cache)]
async fn changed(cache: &Cache, key: u64) {
    let _ = (cache, key);
}

async fn read(cache: &Cache, source: &Source, key: u64) -> u64 {
    let opts = Options::new().ttl(Duration::from_secs(600)).tags(["all"]);
    let v: Result<u64, Infallible> = cache
        .get_or_load(format!("k{key}"), &opts, || async move {
            let v = source.read(key);
            tokio::time::sleep(Duration::from_millis(rand::random_range(0..5))).await;
            Ok(v)
        })
        .await;
    match v {
        Ok(v) => v,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak_with_kills_and_pauses() {
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let server = Arc::new(tokio::sync::Mutex::new(RedisServer::start_with(&[
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
    ])));
    let url = server.lock().await.url();
    let cache = Cache::builder()
        .url(&url)
        .prefix("soak")
        .op_timeout(Duration::from_millis(100))
        .lease_ttl(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    let source = Arc::new(Source::default());
    let committed: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
    let stale = Arc::new(AtomicUsize::new(0));
    let reads = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    // Warm up, then take the memory baseline.
    for k in 0..KEYS {
        read(&cache, &source, k).await;
    }
    let rss_start = rss_bytes();

    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (cache, source, committed, stale, reads, stop) = (
            cache.clone(),
            source.clone(),
            committed.clone(),
            stale.clone(),
            reads.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(SeqCst) {
                let k = rand::random_range(0..KEYS);
                let floor = committed[k as usize].load(SeqCst);
                if read(&cache, &source, k).await < floor {
                    stale.fetch_add(1, SeqCst);
                }
                reads.fetch_add(1, SeqCst);
            }
        }));
    }
    for _ in 0..2 {
        let (cache, source, committed, stop) = (
            cache.clone(),
            source.clone(),
            committed.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(SeqCst) {
                let k = rand::random_range(0..KEYS);
                let v = source.bump(k);
                changed(&cache, k).await;
                committed[k as usize].fetch_max(v, SeqCst);
                if rand::random_bool(0.05) {
                    // Now and then a tag invalidation over everything.
                    let _ = cache.invalidate_tags(["all"]).await;
                }
                tokio::time::sleep(Duration::from_millis(rand::random_range(1..10))).await;
            }
        }));
    }
    // Chaos: kill and restart, or pause, every 1-3 s.
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut faults = 0;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(rand::random_range(1000..3000))).await;
        let mut s = server.lock().await;
        if rand::random_bool(0.5) {
            s.kill();
            tokio::time::sleep(Duration::from_millis(rand::random_range(100..600))).await;
            s.restart();
        } else {
            s.pause_clients(rand::random_range(100..600)).await;
        }
        faults += 1;
    }
    stop.store(true, SeqCst);
    for t in tasks {
        t.await.expect("no task panicked");
    }

    // Recovery: the queue drains and every entry matches the source.
    let recovered = Instant::now() + Duration::from_secs(30);
    while cache.pending_invalidations() > 0 || !cache.store_available() {
        assert!(
            Instant::now() < recovered,
            "did not recover: {:?}",
            cache.stats().total
        );
        read(&cache, &source, 0).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for k in 0..KEYS {
        assert_eq!(
            read(&cache, &source, k).await,
            source.read(k),
            "key {k} stale after recovery"
        );
    }
    let rss_end = rss_bytes();
    let stats = cache.stats();
    let batches = cache.read_batches().expect("reads are coalesced");
    eprintln!(
        "soak: {secs} s, {faults} faults, {} reads, rss {} -> {} KiB, {:?}, {batches:?}",
        reads.load(SeqCst),
        rss_start / 1024,
        rss_end / 1024,
        stats.total
    );
    assert!(faults >= 3 && reads.load(SeqCst) > 1000, "the soak ran");
    assert!(batches.reads > 0, "reads were shared through the faults");
    assert_eq!(stale.load(SeqCst), 0, "stale reads");
    assert!(
        rss_end < rss_start + 64 * 1024 * 1024,
        "memory grew: {rss_start} -> {rss_end}"
    );
}
