//! Near cache: a hit on an in-process copy against a bare `moka` get of the
//! same record and against a Redis hit; and how long an invalidation takes to
//! reach another process.
//!
//! ```text
//! cargo bench -p cache-benches --bench near_cache
//! ```
//!
//! Hits: one task, rounds alternating the three sides, medians over rounds.
//! Delivery: a child process (this binary, re-run) holds a copy of a key; per
//! round this process writes the key and the child notes when Redis's
//! invalidation has been applied to its copies. Both read the same wall
//! clock; the time runs from the start of the write.

use std::convert::Infallible;
use std::hint::black_box;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::sync::OnceLock;

use cache_runtime::{Cache, Options, cached};

use cache_benches::{User, Verdict, median, report, user};

const ROUNDS: usize = 15;
const OPS: usize = 20_000;
const DELIVERIES: u64 = 200;

fn opts() -> Options {
    Options::new().ttl(Duration::from_secs(3600))
}

fn unix_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

/// The near-cache side: a `#[cached]` function (its record is `Clone`, so a
/// copy is decoded once and cloned after).
static NEAR: OnceLock<Cache> = OnceLock::new();

#[cached(cache = NEAR.get().expect("near cache built"), key = "user:{id}", ttl = 3600)]
async fn near_user(id: u64) -> Result<User, Infallible> {
    Ok(user(id))
}

async fn hit(cache: &Cache) -> User {
    let v: Result<User, Infallible> = cache
        .get_or_load("user:1", &opts(), || async { Ok(user(1)) })
        .await;
    match v {
        Ok(v) => v,
    }
}

async fn near_cache(url: &str, prefix: &str) -> Cache {
    let cache = Cache::builder()
        .url(url)
        .prefix(prefix)
        .near_cache(100_000)
        .build()
        .await
        .expect("cache");
    let up = tokio::time::timeout(Duration::from_secs(10), async {
        while !cache.near_state().is_some_and(|s| s.live) {
            tokio::task::yield_now().await;
        }
    });
    up.await.expect("tracking connection up");
    cache
}

#[derive(Clone, Copy)]
enum Side {
    Near,
    NearDecoding,
    Moka,
    Redis,
}

/// Nanoseconds per call of `side`, over `calls` calls in one task.
async fn per_call(
    side: Side,
    near: &Cache,
    moka: &moka::sync::Cache<String, User>,
    redis: &Cache,
    calls: usize,
) -> f64 {
    let key = "user:1".to_string();
    let t = Instant::now();
    for _ in 0..calls {
        match side {
            Side::Near => {
                black_box(near_user(black_box(1)).await.ok());
            }
            Side::NearDecoding => {
                black_box(hit(near).await);
            }
            Side::Moka => {
                black_box(moka.get(black_box(&key)));
            }
            Side::Redis => {
                black_box(hit(redis).await);
            }
        }
    }
    t.elapsed().as_nanos() as f64 / calls as f64
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let (Ok(url), Ok(prefix)) = (
        std::env::var("NEAR_CHILD_URL"),
        std::env::var("NEAR_CHILD_PREFIX"),
    ) {
        rt.block_on(child(url, prefix));
        return;
    }
    rt.block_on(async {
        // Run in a task of its own: a loop on the thread that blocks on the
        // runtime waits for another thread to wake it on every call.
        tokio::spawn(run()).await.expect("bench");
    });
}

async fn run() {
    let server = cache_tests::RedisServer::start();
    let near = near_cache(&server.url(), "bench-near").await;
    NEAR.set(near.clone()).expect("set once");
    let redis = Cache::builder()
        .url(server.url())
        .prefix("bench-redis")
        .build()
        .await
        .expect("cache");
    let moka = moka::sync::Cache::new(100_000);
    moka.insert("user:1".to_string(), user(1));
    for _ in 0..1000 {
        hit(&near).await;
        near_user(1).await.ok();
        hit(&redis).await;
    }
    // `NEAR_ONLY=near|decoding|moka`: one side only, `NEAR_CALLS` calls
    // (default `OPS`), for profiling (`valgrind --tool=callgrind`).
    if let Ok(only) = std::env::var("NEAR_ONLY") {
        let side = match only.as_str() {
            "near" => Side::Near,
            "decoding" => Side::NearDecoding,
            "moka" => Side::Moka,
            other => panic!("NEAR_ONLY={other}: expected near, decoding or moka"),
        };
        let calls = cache_benches::count_from_env("NEAR_CALLS", OPS);
        let ns = per_call(side, &near, &moka, &redis, calls).await;
        println!("{ns:.0} ns");
        return;
    }
    let (mut n, mut d, mut m, mut r) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let orders = [
        [Side::Near, Side::NearDecoding, Side::Moka, Side::Redis],
        [Side::NearDecoding, Side::Moka, Side::Redis, Side::Near],
        [Side::Moka, Side::Redis, Side::Near, Side::NearDecoding],
        [Side::Redis, Side::Near, Side::NearDecoding, Side::Moka],
    ];
    for round in 0..ROUNDS {
        for side in orders[round % orders.len()] {
            let ns = per_call(side, &near, &moka, &redis, OPS).await;
            match side {
                Side::Near => n.push(ns),
                Side::NearDecoding => d.push(ns),
                Side::Moka => m.push(ns),
                Side::Redis => r.push(ns),
            }
        }
    }
    assert_eq!(
        near.stats().loads,
        1,
        "every near-cache call after the first was a hit"
    );
    let (n, d, m, r) = (median(n), median(d), median(m), median(r));
    println!("hit latency, 1 task, {OPS} calls per round, {ROUNDS} rounds, medians\n");
    println!("| side | per hit | vs a bare `moka` get |");
    println!("|---|---|---|");
    println!(
        "| near-cache hit, `#[cached]` (a `Clone` record: decoded once, then cloned) | {n:.0} ns | {:.2}× |",
        n / m
    );
    println!(
        "| near-cache hit, `get_or_load` (decoded every time) | {d:.0} ns | {:.2}× |",
        d / m
    );
    println!("| bare `moka` get of the record (clone) | {m:.0} ns | 1.00× |");
    println!("| Redis hit, no near cache | {r:.0} ns | {:.1}× |", r / m);

    let deliveries = deliver(&server).await;
    println!("\ninvalidation delivery to another process, {DELIVERIES} writes\n");
    println!("| p50 | p99 | max |");
    println!("|---|---|---|");
    println!(
        "| {} µs | {} µs | {} µs |",
        deliveries[deliveries.len() / 2],
        deliveries[deliveries.len() * 99 / 100],
        deliveries[deliveries.len() - 1]
    );
    println!();
    report(
        "near_cache",
        &[
            Verdict::target(
                "near-cache hit, `#[cached]`: ours / bare `moka` get",
                format!("{:.2}× ({n:.0} ns)", n / m),
                "≤ 2×",
                n / m <= 2.0,
            ),
            Verdict::info(
                "invalidation delivered to another process, p99",
                format!("{} µs", deliveries[deliveries.len() * 99 / 100]),
            ),
        ],
    );
}

/// Microseconds from the start of each write here to the child applying its
/// invalidation, sorted.
async fn deliver(server: &cache_tests::RedisServer) -> Vec<u64> {
    let prefix = "bench-deliver";
    let ctl = format!("{prefix}-ctl");
    let writer = near_cache(&server.url(), prefix).await;
    writer.set("k", &0u64, &opts()).await.expect("set");
    let child = Command::new(std::env::current_exe().expect("exe"))
        .env("NEAR_CHILD_URL", server.url())
        .env("NEAR_CHILD_PREFIX", prefix)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the child");
    let mut conn = server.conn().await;
    for round in 1..=DELIVERIES {
        let ready: Option<(String, String)> = redis::cmd("BLPOP")
            .arg(format!("{ctl}:ready"))
            .arg(30)
            .query_async(&mut conn)
            .await
            .expect("BLPOP");
        assert!(ready.is_some(), "child ready");
        let started = unix_us();
        writer.set("k", &round, &opts()).await.expect("set");
        let _: () = redis::cmd("RPUSH")
            .arg(format!("{ctl}:go"))
            .arg(started.to_string())
            .query_async(&mut conn)
            .await
            .expect("RPUSH");
    }
    let out = child.wait_with_output().expect("child");
    assert!(out.status.success(), "child failed");
    let mut us: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("delivered "))
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    assert_eq!(us.len() as u64, DELIVERIES);
    us.sort_unstable();
    us
}

/// The other process: per round, a copy of the old value, then the time the
/// invalidation is applied, checked by reading the new value.
async fn child(url: String, prefix: String) {
    let ctl = format!("{prefix}-ctl");
    let reader = near_cache(&url, &prefix).await;
    let mut conn = redis::Client::open(url.as_str())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let read = |c: Cache| async move {
        let v: Result<u64, Infallible> =
            c.get_or_load("k", &opts(), || async { Ok(u64::MAX) }).await;
        match v {
            Ok(v) => v,
        }
    };
    for round in 1..=DELIVERIES {
        assert_eq!(read(reader.clone()).await, round - 1);
        let seen = reader.near_state().expect("near cache").pushed;
        let _: () = redis::cmd("RPUSH")
            .arg(format!("{ctl}:ready"))
            .arg(round)
            .query_async(&mut conn)
            .await
            .expect("RPUSH");
        tokio::time::timeout(Duration::from_secs(10), reader.near_pushed_beyond(seen))
            .await
            .expect("delivered");
        let delivered = unix_us();
        assert_eq!(read(reader.clone()).await, round, "the old value is gone");
        let (_, started): (String, String) = redis::cmd("BLPOP")
            .arg(format!("{ctl}:go"))
            .arg(30)
            .query_async::<Option<(String, String)>>(&mut conn)
            .await
            .expect("BLPOP")
            .expect("the write's start");
        let started: u128 = started.parse().expect("a time");
        println!("delivered {}", delivered.saturating_sub(started));
    }
}
