//! Stampede: 1 000 concurrent callers on a cold key whose loader takes 50 ms.
//! Ours (leases, single flight, wake-ups) against the seeds' naive cache-aside
//! (everyone loads) and the seeds' lock with fixed 100 ms polling.
//!
//! ```text
//! cargo bench -p cache-benches --bench stampede
//! ```

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cache_runtime::{Cache, Options};
use redis::aio::MultiplexedConnection;
use tokio::sync::Barrier;

use cache_benches::{Verdict, report};

const CALLERS: usize = 1000;
const LOADER: Duration = Duration::from_millis(50);
const ROUNDS: usize = 5;

async fn load(loads: &AtomicUsize) -> u64 {
    loads.fetch_add(1, SeqCst);
    tokio::time::sleep(LOADER).await;
    42
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Ours,
    Naive,
    Polling,
}

async fn caller(
    side: Side,
    cache: &Cache,
    conn: &mut MultiplexedConnection,
    key: &str,
    loads: &AtomicUsize,
) -> u64 {
    match side {
        Side::Ours => {
            let opts = Options::new().ttl(Duration::from_secs(60));
            let v: Result<u64, Infallible> = cache
                .get_or_load(key, &opts, || async { Ok(load(loads).await) })
                .await;
            v.unwrap_or_default()
        }
        Side::Naive => {
            let hit: Option<u64> = redis::cmd("GET")
                .arg(key)
                .query_async(conn)
                .await
                .expect("GET");
            if let Some(v) = hit {
                return v;
            }
            let v = load(loads).await;
            let _: () = redis::cmd("SETEX")
                .arg(key)
                .arg(60)
                .arg(v)
                .query_async(conn)
                .await
                .expect("SETEX");
            v
        }
        Side::Polling => {
            let hit: Option<u64> = redis::cmd("GET")
                .arg(key)
                .query_async(conn)
                .await
                .expect("GET");
            if let Some(v) = hit {
                return v;
            }
            let lock = format!("lock:{key}");
            let got: Option<String> = redis::cmd("SET")
                .arg(&lock)
                .arg(1)
                .arg("NX")
                .arg("EX")
                .arg(10)
                .query_async(conn)
                .await
                .expect("SET NX");
            if got.is_some() {
                let v = load(loads).await;
                let _: () = redis::cmd("SETEX")
                    .arg(key)
                    .arg(60)
                    .arg(v)
                    .query_async(conn)
                    .await
                    .expect("SETEX");
                let _: () = redis::cmd("DEL")
                    .arg(&lock)
                    .query_async(conn)
                    .await
                    .expect("DEL");
                return v;
            }
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let hit: Option<u64> = redis::cmd("GET")
                    .arg(key)
                    .query_async(conn)
                    .await
                    .expect("GET");
                if let Some(v) = hit {
                    return v;
                }
            }
            load(loads).await
        }
    }
}

/// One round: (loader calls, p50, p99 of the callers' latency).
async fn round(
    side: Side,
    cache: &Cache,
    conn: &MultiplexedConnection,
    key: String,
) -> (usize, Duration, Duration) {
    let loads = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(CALLERS));
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (cache, mut conn, key, loads, barrier) = (
                cache.clone(),
                conn.clone(),
                key.clone(),
                loads.clone(),
                barrier.clone(),
            );
            tokio::spawn(async move {
                barrier.wait().await;
                let t = Instant::now();
                std::hint::black_box(caller(side, &cache, &mut conn, &key, &loads).await);
                t.elapsed()
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.push(t.await.expect("caller"));
    }
    lat.sort();
    (
        loads.load(SeqCst),
        lat[lat.len() / 2],
        lat[lat.len() * 99 / 100],
    )
}

fn median<T: Ord + Copy>(mut v: Vec<T>) -> T {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let server = cache_tests::RedisServer::start();
        let cache = Cache::builder().url(server.url()).prefix("stampede").build().await.expect("cache");
        let conn = server.conn().await;
        println!("{CALLERS} concurrent callers on a cold key, loader {LOADER:?}, {ROUNDS} rounds each, medians");
        println!();
        println!("| implementation | loader calls | caller p50 | caller p99 |");
        println!("|---|---|---|---|");
        let mut ours = None;
        for (name, side) in [
            ("cache-runtime (leases, single flight, wake-ups)", Side::Ours),
            ("naive cache-aside (GET, load, SETEX)", Side::Naive),
            ("lock + fixed 100 ms polling", Side::Polling),
        ] {
            let (mut calls, mut p50s, mut p99s) = (Vec::new(), Vec::new(), Vec::new());
            for r in 0..ROUNDS {
                let key = format!("cold:{r}:{}", name.len());
                let (c, p50, p99) = round(side, &cache, &conn, key).await;
                calls.push(c);
                p50s.push(p50);
                p99s.push(p99);
            }
            let (calls, p50, p99) = (median(calls), median(p50s), median(p99s));
            println!(
                "| {name} | {calls} | {:.1} ms | {:.1} ms |",
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3
            );
            if side == Side::Ours {
                ours = Some((calls, p99));
            }
        }
        println!();
        let (calls, p99) = ours.expect("our side ran");
        let bound = LOADER + Duration::from_millis(5);
        report(
            "stampede",
            &[
                Verdict::target(
                    format!("loader calls, {CALLERS} callers on a cold key"),
                    calls.to_string(),
                    "1",
                    calls == 1,
                ),
                Verdict::target(
                    "caller p99",
                    format!("{:.1} ms", p99.as_secs_f64() * 1e3),
                    format!("≤ loader + 5 ms ({} ms)", bound.as_millis()),
                    p99 <= bound,
                ),
            ],
        );
    });
}
