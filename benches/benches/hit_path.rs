//! Hit path: `#[cached]` against hand-written redis-rs `GET` + postcard
//! decode of the same record, on the same redis-server, in the same run.
//!
//! ```text
//! cargo bench -p cache-benches --bench hit_path
//! ```
//!
//! Rounds alternate the two sides so that machine noise hits both alike; the
//! table shows medians over rounds and their ratio.

use std::time::Instant;

use cache_runtime::{Cache, cached};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
    email: String,
    roles: Vec<String>,
    active: bool,
}

fn user(id: u64) -> User {
    User {
        id,
        name: format!("User Number {id}"),
        email: format!("user{id}@example.com"),
        roles: vec!["reader".into(), "writer".into()],
        active: true,
    }
}

#[cached(key = "user:{id}", ttl = 3600)]
async fn cached_user(id: u64) -> Result<User, std::convert::Infallible> {
    Ok(user(id))
}

async fn raw_user(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> User {
    let bytes: Vec<u8> = redis::cmd("GET")
        .arg(key)
        .query_async(conn)
        .await
        .expect("GET");
    postcard::from_bytes(&bytes).expect("decode")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

const ROUNDS: usize = 15;
const OPS: usize = 2000;

/// `HIT_PATH_ONLY=ours|raw`: run only one side, once, for profiling
/// (`valgrind --tool=callgrind`).
fn only() -> Option<String> {
    std::env::var("HIT_PATH_ONLY").ok()
}
const TASKS: usize = 64;
const OPS_PER_TASK: usize = 200;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let server = cache_tests::RedisServer::start();
    let cache = Cache::builder()
        .url(server.url())
        .prefix("bench")
        .build()
        .await
        .expect("cache")
        .install()
        .expect("install");
    let mut conn = server.conn().await;
    let raw_key = "raw:user:1";
    let bytes = postcard::to_allocvec(&user(1)).expect("encode");
    let _: () = redis::cmd("SET")
        .arg(raw_key)
        .arg(bytes)
        .query_async(&mut conn)
        .await
        .expect("SET");
    // Warm both paths (fills the cached entry, loads the scripts).
    for _ in 0..200 {
        cached_user(1).await.expect("hit");
        raw_user(&mut conn, raw_key).await;
    }
    let loads_before = cache.stats().loads;
    if let Some(side) = only() {
        for _ in 0..OPS {
            if side == "ours" {
                std::hint::black_box(cached_user(1).await.expect("hit"));
            } else {
                std::hint::black_box(raw_user(&mut conn, raw_key).await);
            }
        }
        return;
    }

    // 1 task: latency per call.
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let measure_ours = async || {
            let t = Instant::now();
            for _ in 0..OPS {
                std::hint::black_box(cached_user(1).await.expect("hit"));
            }
            t.elapsed().as_secs_f64() * 1e6 / OPS as f64
        };
        if round % 2 == 0 {
            ours.push(measure_ours().await);
            raw.push(measure_raw(&mut conn, raw_key).await);
        } else {
            raw.push(measure_raw(&mut conn, raw_key).await);
            ours.push(measure_ours().await);
        }
    }
    let (lat_ours, lat_raw) = (median(ours), median(raw));

    // 64 tasks: throughput.
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        if round % 2 == 0 {
            ours.push(throughput_ours().await);
            raw.push(throughput_raw(&conn, raw_key).await);
        } else {
            raw.push(throughput_raw(&conn, raw_key).await);
            ours.push(throughput_ours().await);
        }
    }
    let (tp_ours, tp_raw) = (median(ours), median(raw));
    assert_eq!(
        cache.stats().loads,
        loads_before,
        "every measured call was a hit"
    );

    println!(
        "hit path, {ROUNDS} alternating rounds, medians (redis-server {} on loopback)",
        server_version(&mut conn).await
    );
    println!();
    println!("| measure | #[cached] | redis-rs GET + decode | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| latency, 1 task ({OPS} calls/round) | {lat_ours:.1} µs | {lat_raw:.1} µs | {:.3}× |",
        lat_ours / lat_raw
    );
    println!(
        "| throughput, {TASKS} tasks ({OPS_PER_TASK} calls each/round) | {:.0} /s | {:.0} /s | {:.3}× |",
        tp_ours,
        tp_raw,
        tp_ours / tp_raw
    );
}

async fn measure_raw(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> f64 {
    let t = Instant::now();
    for _ in 0..OPS {
        std::hint::black_box(raw_user(conn, key).await);
    }
    t.elapsed().as_secs_f64() * 1e6 / OPS as f64
}

async fn throughput_ours() -> f64 {
    let t = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            tokio::spawn(async {
                for _ in 0..OPS_PER_TASK {
                    std::hint::black_box(cached_user(1).await.expect("hit"));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    (TASKS * OPS_PER_TASK) as f64 / t.elapsed().as_secs_f64()
}

async fn throughput_raw(conn: &redis::aio::MultiplexedConnection, key: &'static str) -> f64 {
    let t = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let mut conn = conn.clone();
            tokio::spawn(async move {
                for _ in 0..OPS_PER_TASK {
                    std::hint::black_box(raw_user(&mut conn, key).await);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    (TASKS * OPS_PER_TASK) as f64 / t.elapsed().as_secs_f64()
}

async fn server_version(conn: &mut redis::aio::MultiplexedConnection) -> String {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(conn)
        .await
        .unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .trim()
        .to_string()
}
