//! A write-behind entry's attempts are counted by Redis (the consumer group's
//! delivery count), not by the flusher: when the process running the flusher
//! dies, the next flusher goes on counting, and a poison entry becomes a dead
//! letter after `MAX_ATTEMPTS` runs in all, not `MAX_ATTEMPTS` more.
//!
//! The first flusher runs in a runtime of its own, which is shut down
//! mid-retry: its tasks stop where they are, as in a killed process.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cache_runtime::{Cache, WRITE_BEHIND_MAX_ATTEMPTS as MAX_ATTEMPTS, cached};

/// Runs of the poison body so far.
static RUNS: AtomicU32 = AtomicU32::new(0);

/// The cache the poison function writes through (set by the test).
static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

fn cache() -> Cache {
    CACHE
        .lock()
        .unwrap()
        .clone()
        .expect("the test sets the cache first")
}

#[cached(key = "poison:{id}", ttl = 60, strategy = "behind", value = v, flush_interval = "10ms", cache = cache())]
async fn poison(id: u64, v: i64) -> Result<(), String> {
    let _ = (id, v);
    RUNS.fetch_add(1, SeqCst);
    Err("this write always fails".to_string())
}

async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_survive_the_flushers_process() {
    let server = cache_tests::RedisServer::start();
    let url = server.url();
    let prefix = "attempts";
    let build = move || {
        let url = url.clone();
        async move {
            Cache::builder()
                .url(url)
                .prefix(prefix)
                .build()
                .await
                .expect("cache")
        }
    };

    // The first "process": a runtime of its own, holding the first flusher.
    let first = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let handle = first.handle().clone();
    let build_first = build.clone();
    let first_cache = tokio::task::spawn_blocking(move || {
        handle.block_on(async move {
            let c = build_first().await;
            *CACHE.lock().unwrap() = Some(c.clone());
            poison(1, 1).await.expect("queued");
            c
        })
    })
    .await
    .expect("first process");
    until("two failed runs", async || RUNS.load(SeqCst) >= 2).await;
    // It dies mid-retry.
    *CACHE.lock().unwrap() = None;
    tokio::task::spawn_blocking(move || {
        first.shutdown_background();
        drop(first_cache);
    })
    .await
    .expect("first process stopped");
    let first_runs = RUNS.load(SeqCst);
    assert!(first_runs < MAX_ATTEMPTS, "stopped before giving up");

    // The next process picks the entry up (once the dead flusher's lease on
    // the stream has expired) and goes on counting.
    let second = build().await;
    let name = concat!(module_path!(), "::poison");
    until("the dead letter", async || {
        second.write_behind_depth(name).await.expect("depth").1 == 1
    })
    .await;
    let second_runs = RUNS.load(SeqCst) - first_runs;
    eprintln!("runs: {first_runs} before the crash, {second_runs} after");
    assert!(
        second_runs <= MAX_ATTEMPTS - first_runs,
        "{second_runs} runs after {first_runs}: attempts were counted afresh"
    );
    let mut conn = server.conn().await;
    let dead: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(format!("{prefix}:wb:{name}:dead"))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("XRANGE");
    let attempts: u32 = dead.ids[0].get("attempts").expect("attempts field");
    assert_eq!(attempts, MAX_ATTEMPTS);
    assert_eq!(second.write_behind_depth(name).await.expect("depth").0, 0);
}
