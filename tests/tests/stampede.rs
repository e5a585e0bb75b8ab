//! Stampede protection: concurrent misses on one key load once, in one process
//! and across processes; lease holders that die, stall or are cancelled.

mod common;

use std::convert::Infallible;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cache_runtime::{Cache, Options};
use tokio::sync::{Barrier, oneshot};

fn opts() -> Options {
    Options::new().ttl(Duration::from_secs(60))
}

/// The loader: counts its runs in Redis (so that runs in every process are
/// counted together), then takes 50 ms.
async fn counted_load(
    conn: &mut redis::aio::MultiplexedConnection,
    counter: &str,
) -> Result<u64, Infallible> {
    let n: u64 = redis::cmd("INCR")
        .arg(counter)
        .query_async(conn)
        .await
        .expect("INCR");
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(n)
}

async fn callers(
    cache: &Cache,
    conn: &redis::aio::MultiplexedConnection,
    counter: &str,
    n: usize,
) -> Vec<u64> {
    let barrier = Arc::new(Barrier::new(n));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (cache, mut conn, counter, barrier) = (
            cache.clone(),
            conn.clone(),
            counter.to_string(),
            barrier.clone(),
        );
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let v = cache
                .get_or_load("cold", &opts(), || counted_load(&mut conn, &counter))
                .await;
            v.unwrap()
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("caller"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_callers_in_one_process_load_once() {
    let server = cache_tests::shared();
    let prefix = cache_tests::unique_prefix("stampede1");
    let cache = Cache::builder()
        .url(server.url())
        .prefix(&prefix)
        .build()
        .await
        .unwrap();
    let conn = server.conn().await;
    let counter = format!("{prefix}:loads");
    let values = callers(&cache, &conn, &counter, 1000).await;
    assert!(
        values.iter().all(|v| *v == 1),
        "everyone got the one loaded value"
    );
    let mut c = conn.clone();
    let loads: u64 = redis::cmd("GET")
        .arg(&counter)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(loads, 1);
    assert_eq!(cache.stats().loads, 1);
    assert!(cache.stats().lock_waits > 0);
}

/// Four OS processes with 250 callers each: one load in total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_load_once() {
    let server = cache_tests::shared();
    let prefix = cache_tests::unique_prefix("stampede4");
    let counter = format!("{prefix}:loads");
    let start = format!("{prefix}:start");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "stampede_child",
                    "--ignored",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env("STAMPEDE_URL", server.url())
                .env("STAMPEDE_PREFIX", &prefix)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn child")
        })
        .collect();
    // Release all four at once, once each is connected and waiting.
    let mut conn = server.conn().await;
    let ready_key = format!("{prefix}:ready");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, ready): (String, String) = redis::cmd("BLPOP")
            .arg(&ready_key)
            .arg(60)
            .query_async::<Option<(String, String)>>(&mut conn)
            .await
            .unwrap()
            .expect("children report ready");
        let _ = ready;
        let n: u64 = redis::cmd("INCR")
            .arg(format!("{prefix}:nready"))
            .query_async(&mut conn)
            .await
            .unwrap();
        if n == 4 {
            break;
        }
        assert!(Instant::now() < deadline, "children did not start");
    }
    let _: () = redis::cmd("RPUSH")
        .arg(&start)
        .arg(&["go", "go", "go", "go"][..])
        .query_async(&mut conn)
        .await
        .unwrap();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "child failed: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let loads: u64 = redis::cmd("GET")
        .arg(&counter)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(loads, 1, "one load across four processes and 1000 callers");
}

/// Run by `four_processes_load_once` in a child process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of four_processes_load_once"]
async fn stampede_child() {
    let (Ok(url), Ok(prefix)) = (
        std::env::var("STAMPEDE_URL"),
        std::env::var("STAMPEDE_PREFIX"),
    ) else {
        panic!("run by four_processes_load_once");
    };
    let cache = Cache::builder()
        .url(&url)
        .prefix(&prefix)
        .build()
        .await
        .unwrap();
    let client = redis::Client::open(url.as_str()).unwrap();
    let conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut c = conn.clone();
    let _: () = redis::cmd("RPUSH")
        .arg(format!("{prefix}:ready"))
        .arg(std::process::id())
        .query_async(&mut c)
        .await
        .unwrap();
    let _: Option<(String, String)> = redis::cmd("BLPOP")
        .arg(format!("{prefix}:start"))
        .arg(60)
        .query_async(&mut c)
        .await
        .unwrap();
    let values = callers(&cache, &conn, &format!("{prefix}:loads"), 250).await;
    assert!(values.iter().all(|v| *v == 1), "{values:?}");
}

/// A lease holder that stalls past its lease ttl cannot store its value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_holder_cannot_fill() {
    let server = cache_tests::shared();
    let cache = Cache::builder()
        .url(server.url())
        .prefix(cache_tests::unique_prefix("stalled"))
        .lease_ttl(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let c = cache.clone();
    let stalled = tokio::spawn(async move {
        let v: Result<u32, Infallible> = c
            .get_or_load("k", &opts(), || async move {
                let _ = started_tx.send(());
                let _ = go_rx.await;
                Ok(1)
            })
            .await;
        v.unwrap()
    });
    started_rx.await.unwrap();
    // Another caller waits out the lease, takes it over and fills.
    let t = Instant::now();
    let v: Result<u32, Infallible> = cache.get_or_load("k", &opts(), || async { Ok(2) }).await;
    assert_eq!(v.unwrap(), 2);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took over after the lease ttl"
    );
    go_tx.send(()).unwrap();
    assert_eq!(stalled.await.unwrap(), 1);
    assert_eq!(
        cache.stats().fills_rejected,
        1,
        "the stalled holder's fill was refused"
    );
    assert_eq!(cache.get::<u32>("k").await.unwrap(), Some(2));
}

/// The lease ttl of the child that dies holding its lease.
const DEAD_HOLDER_LEASE: Duration = Duration::from_millis(1500);

/// A lease holder whose process dies delays others by at most the lease ttl:
/// a waiter takes the lease over as soon as it expires (a fixed wait of the
/// one-second safety net after it, or of twice the lease, would show), and
/// fills under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_holder_is_taken_over() {
    let server = cache_tests::shared();
    let prefix = cache_tests::unique_prefix("dead_holder");
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(&exe)
        .args([
            "--exact",
            "holder_child",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("HOLDER_URL", server.url())
        .env("HOLDER_PREFIX", &prefix)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let mut conn = server.conn().await;
    // The child announces that it holds the lease and is inside its loader.
    let held: Option<(String, String)> = redis::cmd("BLPOP")
        .arg(format!("{prefix}:holding"))
        .arg(60)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(held.is_some(), "child took the lease");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let cache = Cache::builder()
        .url(server.url())
        .prefix(&prefix)
        .lease_ttl(DEAD_HOLDER_LEASE)
        .build()
        .await
        .unwrap();
    let t = Instant::now();
    let left: i64 = redis::cmd("PTTL")
        .arg(format!("{}:L", cache.stored_key("k", &opts())))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(left > 0, "the dead child's lease is still held ({left} ms)");
    let v: Result<u32, Infallible> = cache.get_or_load("k", &opts(), || async { Ok(7) }).await;
    assert_eq!(v.unwrap(), 7);
    let waited = t.elapsed();
    assert_eq!(cache.stats().lock_waits, 1, "the lease was found held");
    assert_eq!(cache.stats().loads, 1);
    assert_eq!(
        cache.get::<u32>("k").await.unwrap(),
        Some(7),
        "the waiter took the lease over and filled (a waiter that gave up waiting stores nothing)"
    );
    let bound = Duration::from_millis(left as u64 + 400);
    assert!(
        waited < bound,
        "waited {waited:?} for a lease with {left} ms left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of dead_holder_is_taken_over"]
async fn holder_child() {
    let (Ok(url), Ok(prefix)) = (std::env::var("HOLDER_URL"), std::env::var("HOLDER_PREFIX"))
    else {
        panic!("run by dead_holder_is_taken_over");
    };
    let cache = Cache::builder()
        .url(&url)
        .prefix(&prefix)
        .lease_ttl(DEAD_HOLDER_LEASE)
        .build()
        .await
        .unwrap();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let _: Result<u32, Infallible> = cache
        .get_or_load("k", &opts(), || async move {
            let _: () = redis::cmd("RPUSH")
                .arg(format!("{prefix}:holding"))
                .arg(1)
                .query_async(&mut c)
                .await
                .unwrap();
            std::future::pending::<()>().await;
            Ok(0)
        })
        .await;
}

/// Dropping the leading caller's future neither aborts nor poisons the load
/// that others wait on: a waiter takes over at once (not after the lease ttl),
/// and every waiter gets the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_leader_hands_over() {
    for backend in common::Backend::all() {
        let cache = backend
            .builder("cancel")
            .lease_ttl(Duration::from_secs(30))
            .build()
            .await
            .unwrap();
        let loads = Arc::new(AtomicUsize::new(0));
        let (started_tx, started_rx) = oneshot::channel::<()>();
        let c = cache.clone();
        let l = loads.clone();
        let leader = tokio::spawn(async move {
            let _: Result<u32, Infallible> = c
                .get_or_load("k", &opts(), || async move {
                    l.fetch_add(1, SeqCst);
                    let _ = started_tx.send(());
                    std::future::pending::<()>().await;
                    Ok(0)
                })
                .await;
        });
        started_rx.await.unwrap();
        let mut waiters = Vec::new();
        for _ in 0..10 {
            let (c, l) = (cache.clone(), loads.clone());
            waiters.push(tokio::spawn(async move {
                let v: Result<u32, Infallible> = c
                    .get_or_load("k", &opts(), || async move {
                        l.fetch_add(1, SeqCst);
                        Ok(42)
                    })
                    .await;
                v.unwrap()
            }));
        }
        // Let the waiters find the lease held, then cancel the leader.
        tokio::time::timeout(Duration::from_secs(10), async {
            while cache.stats().lock_waits < 10 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("waiters found the lease held");
        leader.abort();
        let t = Instant::now();
        for w in waiters {
            assert_eq!(
                tokio::time::timeout(Duration::from_secs(10), w)
                    .await
                    .unwrap()
                    .unwrap(),
                42
            );
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{backend:?}: no one waited out the 30 s lease"
        );
        assert_eq!(
            loads.load(SeqCst),
            2,
            "{backend:?}: the cancelled load and one takeover"
        );
    }
}
