//! Miss path: a `#[cached]` call whose key is not cached (the loader runs at
//! once and the value is stored), against the seeds' cache-aside written by
//! hand on redis-rs (`GET`, then `SET … EX` of the postcard bytes: no lease,
//! no single flight, no tags) and against the `cached` crate's Redis store
//! (`#[concurrent_cached]`; its miss is `GET`, then a `GET` + `PSETEX`
//! pipeline), on the same redis-server, in the same run. Every call reads a
//! key never read before.
//!
//! ```text
//! cargo bench -p cache-benches --bench miss_path
//! ```
//!
//! Per side and round: the time per miss (one task on a runtime with one
//! worker, as in `hit_path`'s latency phase); rounds rotate the sides;
//! medians. Then, per side, the commands a client sent for 20 misses, as
//! `MONITOR` shows them (commands run by a script are left out), and the
//! names of those of the first miss.
//!
//! `MISS_PATH_ONLY=ours|raw|cached` runs only one side (`MISS_PATH_CALLS`
//! calls, default 2 000) for profiling with callgrind: the difference
//! between two counts, divided by the difference of the calls, is the
//! client's cost of one miss.

use std::convert::Infallible;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use cache_runtime::cached;
use cached::AsyncRedisCache;
use cached::macros::concurrent_cached;
use redis::aio::MultiplexedConnection;

use cache_benches::{User, Verdict, installed_cache, median, report, server_version, user};

/// Ids never read before, per side.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn fresh_id() -> u64 {
    NEXT_ID.fetch_add(1, Relaxed)
}

#[cached(key = "miss:{id}", ttl = 3600)]
async fn cached_miss(id: u64) -> Result<User, Infallible> {
    Ok(user(id))
}

/// A function whose reads mostly hit: its misses read plainly first.
#[cached(key = "mostly-hit:{id}", ttl = 3600)]
async fn mostly_hit(id: u64) -> Result<User, Infallible> {
    Ok(user(id))
}

static PEER_URL: OnceLock<String> = OnceLock::new();

#[concurrent_cached(
    map_error = |e| format!("{e:?}"),
    ty = "AsyncRedisCache<u64, User>",
    create = r##"{
        cache_benches::peer_store("peer-miss", PEER_URL.get().expect("PEER_URL set before the first call")).await
    }"##
)]
async fn peer_miss(id: u64) -> Result<User, String> {
    Ok(user(id))
}

/// The seeds' cache-aside by hand: `GET`; on a miss, load and `SET … EX`.
async fn raw_miss(conn: &mut MultiplexedConnection, id: u64) -> User {
    let key = format!("raw-miss:{id}");
    let cached: Option<Vec<u8>> = redis::cmd("GET")
        .arg(&key)
        .query_async(conn)
        .await
        .expect("GET");
    if let Some(bytes) = cached {
        return postcard::from_bytes(&bytes).expect("decode");
    }
    let v = user(id);
    let bytes = postcard::to_allocvec(&v).expect("encode");
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(bytes)
        .arg("EX")
        .arg(3600)
        .query_async(conn)
        .await
        .expect("SET");
    v
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Ours,
    Raw,
    Peer,
}

/// Each side once in each place.
const ORDERS: [[Side; 3]; 3] = {
    use Side::*;
    [[Ours, Raw, Peer], [Raw, Peer, Ours], [Peer, Ours, Raw]]
};

const ROUNDS: usize = 15;
const CALLS: usize = 500;

async fn one_miss(side: Side, conn: &mut MultiplexedConnection) {
    let id = fresh_id();
    match side {
        Side::Ours => {
            std::hint::black_box(cached_miss(id).await.expect("load"));
        }
        Side::Raw => {
            std::hint::black_box(raw_miss(conn, id).await);
        }
        Side::Peer => {
            std::hint::black_box(peer_miss(id).await.expect("load"));
        }
    }
}

/// `n` misses of one side in a task of their own: µs per miss.
async fn measure(side: Side, conn: &MultiplexedConnection, n: usize) -> f64 {
    let mut c = conn.clone();
    let t = Instant::now();
    tokio::spawn(async move {
        for _ in 0..n {
            one_miss(side, &mut c).await;
        }
    })
    .await
    .expect("misses");
    t.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn main() {
    // One worker: see `hit_path`'s latency phase.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let server = cache_tests::RedisServer::start();
    PEER_URL.set(server.url()).expect("PEER_URL set once");
    let cache = installed_cache(server.url(), "bench").await;
    let mut conn = server.conn().await;
    // Warm every path (connections, scripts, and ours' sense that this
    // function's reads miss).
    for _ in 0..50 {
        for side in [Side::Ours, Side::Raw, Side::Peer] {
            one_miss(side, &mut conn).await;
        }
    }
    if let Ok(side) = std::env::var("MISS_PATH_ONLY") {
        let side = match side.as_str() {
            "ours" => Side::Ours,
            "raw" => Side::Raw,
            "cached" => Side::Peer,
            other => panic!("MISS_PATH_ONLY={other}: expected ours, raw or cached"),
        };
        let n = cache_benches::count_from_env("MISS_PATH_CALLS", 2000);
        measure(side, &conn, n).await;
        return;
    }
    let loads_before = cache.stats().loads;
    let mut time: [Vec<f64>; 3] = Default::default();
    for round in 0..ROUNDS {
        for side in ORDERS[round % ORDERS.len()] {
            time[side as usize].push(measure(side, &conn, CALLS).await);
        }
    }
    assert_eq!(
        cache.stats().loads - loads_before,
        (ROUNDS * CALLS) as u64,
        "every measured call of ours was a miss"
    );
    let [t_ours, t_raw, t_peer] = time.map(median);
    const SAMPLE: usize = 20;
    let mut sent = Vec::new();
    for side in [Side::Ours, Side::Raw, Side::Peer] {
        let c = &mut conn;
        let misses = async move {
            for _ in 0..SAMPLE {
                one_miss(side, c).await;
            }
        };
        sent.push(server.client_commands_during(misses).await);
    }
    println!(
        "miss path, {ROUNDS} rounds (sides rotated), medians (redis-server {} on loopback)",
        server_version(&mut conn).await
    );
    println!();
    println!(
        "| measure | #[cached] | cache-aside by hand (GET, SET EX) | `cached` crate | ours / by hand | ours / `cached` |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| time per miss, 1 task ({CALLS} calls/round) | {t_ours:.1} µs | {t_raw:.1} µs | {t_peer:.1} µs | {:.3}× | {:.3}× |",
        t_ours / t_raw,
        t_ours / t_peer
    );
    let per = |s: &Vec<String>| s.len() as f64 / SAMPLE as f64;
    println!(
        "| commands sent per miss (`MONITOR`) | {:.2} | {:.2} | {:.2} | | |",
        per(&sent[0]),
        per(&sent[1]),
        per(&sent[2])
    );
    println!();
    for (side, s) in ["#[cached]", "by hand", "`cached` crate"].iter().zip(&sent) {
        let first: Vec<&str> = s
            .iter()
            .take(s.len() / SAMPLE)
            .map(|l| {
                let command = l.split_once(']').map_or(l.as_str(), |(_, c)| c.trim());
                command.split_whitespace().next().unwrap_or("?")
            })
            .collect();
        println!("{side}, one miss: {}", first.join(" · "));
    }
    println!();

    // Round trips of #[cached] in a function whose reads mostly hit: its
    // misses (each after seven hits) and its hits.
    let (mut miss_commands, mut hit_commands) = (0, 0);
    for _ in 0..SAMPLE {
        for _ in 0..7 {
            std::hint::black_box(mostly_hit(0).await.expect("hit"));
        }
        let id = fresh_id();
        let miss = async move {
            std::hint::black_box(mostly_hit(id).await.expect("load"));
        };
        miss_commands += server.client_commands_during(miss).await.len();
        let hit = async {
            std::hint::black_box(mostly_hit(0).await.expect("hit"));
        };
        hit_commands += server.client_commands_during(hit).await.len();
    }
    let per_miss_lately = per(&sent[0]);
    let per_miss_mostly = miss_commands as f64 / SAMPLE as f64;
    let per_hit = hit_commands as f64 / SAMPLE as f64;
    println!(
        "#[cached] in a function whose reads mostly hit: {per_miss_mostly:.2} commands per miss, {per_hit:.2} per hit ({SAMPLE} of each, `MONITOR`)"
    );
    println!();
    report(
        "miss_path",
        &[
            Verdict::info(
                "time per miss, 1 task: ours / by hand, ours / `cached`",
                format!("{:.3}×, {:.3}×", t_ours / t_raw, t_ours / t_peer),
            ),
            Verdict::target(
                "round trips per miss, reads lately missing",
                format!("{per_miss_lately:.2}"),
                "2 (lookup-or-lease, fill)",
                per_miss_lately <= 2.0,
            ),
            Verdict::target(
                "round trips per miss, reads mostly hitting",
                format!("{per_miss_mostly:.2}"),
                "2 (lookup-or-lease, fill)",
                per_miss_mostly <= 2.0,
            ),
            Verdict::target(
                "round trips per hit",
                format!("{per_hit:.2}"),
                "1",
                per_hit <= 1.0,
            ),
        ],
    );
}
