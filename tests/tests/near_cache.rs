//! The near cache: copies in process memory, kept correct by Redis client
//! tracking.
//!
//! * a hit on a copy sends nothing to Redis;
//! * a process reads its own writes and invalidations at once;
//! * a tag invalidation made elsewhere reaches the copies;
//! * losing the tracking connection drops every copy (without that, a change
//!   made while it was down would be served stale for good);
//! * across two processes: once the invalidation of a write is delivered, the
//!   other process never serves the old value (delivery times printed).

use std::convert::Infallible;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cache_runtime::{Cache, Options};

fn opts() -> Options {
    Options::new().ttl(Duration::from_secs(600))
}

async fn near(url: &str, prefix: &str) -> Cache {
    let cache = Cache::builder()
        .url(url)
        .prefix(prefix)
        .near_cache(10_000)
        .build()
        .await
        .unwrap();
    until_live(&cache).await;
    cache
}

async fn until_live(cache: &Cache) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !cache.near_state().is_some_and(|s| s.live) {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the tracking connection comes up");
}

/// Reads `key`; a loader run (the value was not found anywhere) returns `u64::MAX`.
async fn read(cache: &Cache, key: &str, options: &Options) -> u64 {
    let v: Result<u64, Infallible> = cache
        .get_or_load(key, options, || async { Ok(u64::MAX) })
        .await;
    match v {
        Ok(v) => v,
    }
}

/// Commands of one name the server has run so far.
async fn calls(server: &cache_tests::RedisServer, command: &str) -> u64 {
    let mut conn = server.conn().await;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    let field = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&field))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_on_a_copy_sends_nothing_to_redis() {
    let server = cache_tests::RedisServer::start();
    let cache = near(&server.url(), "near-hit").await;
    let tagged = opts().tags(["users"]);
    cache.set("plain", &1u64, &opts()).await.unwrap();
    cache.set("tagged", &2u64, &tagged).await.unwrap();
    // The stores' own invalidations may drop the first copies: read until
    // both reads are served by copies.
    let mut seen = (0, 0);
    for _ in 0..100 {
        assert_eq!(read(&cache, "plain", &opts()).await, 1);
        assert_eq!(read(&cache, "tagged", &tagged).await, 2);
        let now = (calls(&server, "get").await, calls(&server, "mget").await);
        if now == seen {
            break;
        }
        seen = now;
    }
    let (gets, mgets) = seen;
    let hits = cache.stats().hits;
    for _ in 0..100 {
        assert_eq!(read(&cache, "plain", &opts()).await, 1);
        assert_eq!(read(&cache, "tagged", &tagged).await, 2);
    }
    assert_eq!(calls(&server, "get").await, gets, "no GET for copies");
    assert_eq!(calls(&server, "mget").await, mgets, "no MGET for copies");
    assert_eq!(cache.stats().hits, hits + 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_reads_its_own_changes_at_once() {
    let server = cache_tests::RedisServer::start();
    let cache = near(&server.url(), "near-own").await;
    let tagged = opts().tags(["team:1"]);
    cache.set("k", &1u64, &tagged).await.unwrap();
    assert_eq!(read(&cache, "k", &tagged).await, 1);
    cache.set("k", &2u64, &tagged).await.unwrap();
    assert_eq!(read(&cache, "k", &tagged).await, 2, "after set");
    cache.invalidate_keys(["k"]).await.unwrap();
    assert_eq!(
        read(&cache, "k", &tagged).await,
        u64::MAX,
        "after invalidate"
    );
    cache.set("k", &3u64, &tagged).await.unwrap();
    assert_eq!(read(&cache, "k", &tagged).await, 3);
    cache.invalidate_tags(["team:1"]).await.unwrap();
    assert_eq!(read(&cache, "k", &tagged).await, u64::MAX, "after its tag");
}

static DECODED: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
static DECODED_LOADS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A cloneable value: near-cache hits clone the copy decoded by the first.
#[cache_runtime::cached(
    cache = DECODED.get().expect("built"),
    key = "profile:{id}",
    ttl = 600,
    tags = ["team:{team}"]
)]
async fn profile(id: u64, team: u64) -> Result<Vec<String>, Infallible> {
    let n = DECODED_LOADS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    Ok(vec![
        format!("{id}"),
        format!("{team}"),
        format!("load {n}"),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decoded_copies_are_served_until_a_change() {
    let server = cache_tests::RedisServer::start();
    let cache = near(&server.url(), "near-decoded").await;
    let _ = DECODED.set(cache.clone());
    let first = profile(1, 7).await.unwrap();
    assert_eq!(first[2], "load 0");
    // The fill's own invalidation may drop the first copy: read until a read
    // is served by a copy.
    let mut gets = calls(&server, "mget").await;
    for _ in 0..100 {
        assert_eq!(profile(1, 7).await.unwrap(), first);
        let now = calls(&server, "mget").await;
        if now == gets {
            break;
        }
        gets = now;
    }
    for _ in 0..50 {
        assert_eq!(
            profile(1, 7).await.unwrap(),
            first,
            "the copy, decoded once"
        );
    }
    assert_eq!(calls(&server, "mget").await, gets, "served from the copy");
    cache.invalidate_tags(["team:7"]).await.unwrap();
    assert_eq!(
        profile(1, 7).await.unwrap()[2],
        "load 1",
        "reloaded after its tag"
    );
    cache.invalidate_keys(["profile:1"]).await.unwrap();
    assert_eq!(
        profile(1, 7).await.unwrap()[2],
        "load 2",
        "reloaded after its key"
    );
    assert_eq!(profile(1, 7).await.unwrap()[2], "load 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_invalidations_made_elsewhere_reach_the_copies() {
    let server = cache_tests::RedisServer::start();
    let (a, b) = (
        near(&server.url(), "near-tags").await,
        near(&server.url(), "near-tags").await,
    );
    let tagged = opts().tags(["org:7"]);
    a.set("member", &1u64, &tagged).await.unwrap();
    assert_eq!(read(&a, "member", &tagged).await, 1, "copied in a");
    let seen = a.near_state().unwrap().pushed;
    b.invalidate_tags(["org:7"]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), a.near_pushed_beyond(seen))
        .await
        .expect("the invalidation is delivered");
    assert_eq!(read(&a, "member", &tagged).await, u64::MAX);
}

/// The tracking connection's id, found in `CLIENT LIST` by its `t` flag.
async fn tracking_client(server: &cache_tests::RedisServer) -> Option<String> {
    let mut conn = server.conn().await;
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap();
    list.lines().find_map(|l| {
        let field = |name: &str| {
            l.split(' ')
                .find_map(|kv| kv.strip_prefix(name).map(str::to_string))
        };
        field("flags=")
            .filter(|f| f.contains('t'))
            .and(field("id="))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_tracking_connection_drops_every_copy() {
    let server = cache_tests::RedisServer::start();
    let cache = near(&server.url(), "near-lost").await;
    cache.set("k", &1u64, &opts()).await.unwrap();
    assert_eq!(read(&cache, "k", &opts()).await, 1, "copied");
    // The bytes of the new value, as another process would store them.
    cache.set("scratch", &2u64, &opts()).await.unwrap();
    let two = cache
        .debug_get_raw("scratch", &opts())
        .await
        .unwrap()
        .unwrap();
    let id = tracking_client(&server).await.expect("tracking connection");
    // Kill the tracking connection and change the value in one step, so the
    // change cannot be delivered to it.
    let mut conn = server.conn().await;
    let _: () = redis::pipe()
        .atomic()
        .cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(&id)
        .ignore()
        .cmd("SET")
        .arg(cache.stored_key("k", &opts()))
        .arg(two)
        .ignore()
        .query_async(&mut conn)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !cache.near_state().is_some_and(|s| s.live && s.losses == 1) {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the loss is noticed and tracking resumes");
    assert_eq!(
        read(&cache, "k", &opts()).await,
        2,
        "the copy from before the loss is gone"
    );
}

const ROUNDS: u64 = 50;

fn unix_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

/// The writer; the reader runs in a child process (`near_reader_child`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_never_serves_a_value_older_than_a_delivered_invalidation() {
    let server = cache_tests::RedisServer::start();
    let prefix = cache_tests::unique_prefix("near-2p");
    let ctl = format!("{prefix}-ctl");
    let writer = near(&server.url(), &prefix).await;
    writer.set("k", &0u64, &opts()).await.unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "near_reader_child",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("NEAR_URL", server.url())
        .env("NEAR_PREFIX", &prefix)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the reader");
    let mut conn = server.conn().await;
    for round in 1..=ROUNDS {
        let ready: Option<(String, String)> = redis::cmd("BLPOP")
            .arg(format!("{ctl}:ready"))
            .arg(30)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ready.is_some(), "the reader is ready for round {round}");
        let started = unix_us();
        writer.set("k", &round, &opts()).await.unwrap();
        let _: () = redis::cmd("RPUSH")
            .arg(format!("{ctl}:go"))
            .arg(format!("{round} {started}"))
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "reader failed: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let mut delivery: Vec<u64> = stdout
        .lines()
        // The test harness's own "test … " may share the first line.
        .filter_map(|l| l.split("delivered-after-us ").nth(1))
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    assert_eq!(delivery.len() as u64, ROUNDS, "{stdout}");
    delivery.sort_unstable();
    println!(
        "invalidation delivery across processes: p50 {} µs, p99 {} µs",
        delivery[delivery.len() / 2],
        delivery[delivery.len() * 99 / 100]
    );
}

/// Run by the test above in a child process: per round, holds a copy of the
/// old value, waits for the invalidation, then checks that the old value is
/// never served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of another_process_never_serves_a_value_older_than_a_delivered_invalidation"]
async fn near_reader_child() {
    let (Ok(url), Ok(prefix)) = (std::env::var("NEAR_URL"), std::env::var("NEAR_PREFIX")) else {
        panic!("run by another_process_never_serves_a_value_older_than_a_delivered_invalidation");
    };
    let ctl = format!("{prefix}-ctl");
    let reader = near(&url, &prefix).await;
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for round in 1..=ROUNDS {
        let old = read(&reader, "k", &opts()).await;
        assert_eq!(old, round - 1, "round {round} starts from the last write");
        assert_eq!(read(&reader, "k", &opts()).await, old, "copied");
        let seen = reader.near_state().unwrap().pushed;
        let _: () = redis::cmd("RPUSH")
            .arg(format!("{ctl}:ready"))
            .arg(round)
            .query_async(&mut conn)
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), reader.near_pushed_beyond(seen))
            .await
            .expect("the invalidation is delivered");
        let delivered = unix_us();
        let new = read(&reader, "k", &opts()).await;
        assert_eq!(new, round, "round {round}: the old value is gone");
        let (_, go): (String, String) = redis::cmd("BLPOP")
            .arg(format!("{ctl}:go"))
            .arg(30)
            .query_async::<Option<(String, String)>>(&mut conn)
            .await
            .unwrap()
            .expect("the writer reports its write");
        let (n, started) = go.split_once(' ').unwrap();
        assert_eq!(n.parse::<u64>().unwrap(), round);
        let started: u128 = started.parse().unwrap();
        println!("delivered-after-us {}", delivered.saturating_sub(started));
    }
}
