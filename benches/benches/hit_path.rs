//! Hit path: `#[cached]` against hand-written redis-rs `GET` + postcard
//! decode of the same record, and against the `cached` crate's Redis store
//! (`#[concurrent_cached]` over `AsyncRedisCache`), on the same redis-server,
//! in the same run; then the bytes each one stores for that record. A fourth
//! side is `#[cached]` on a cache that does not coalesce reads
//! (`coalesce_reads(false)`: one command per read), to show what coalescing
//! adds and what the rest of the hit path costs.
//!
//! ```text
//! cargo bench -p cache-benches --bench hit_path
//! ```
//!
//! Rounds run the four sides in four orders in turn (each side once in each
//! place, and after each other side once) so that machine noise hits all
//! alike; the tables show medians over rounds and ratios.
//!
//! `HIT_PATH_ONLY=ours|solo|raw|cached` runs only one side, 2 000 calls in one
//! task (`HIT_PATH_CALLS=n` for another count), for profiling
//! (`valgrind --tool=callgrind`): the difference between two counts, divided
//! by the difference of the counts, is the client's cost of one hit.

use std::sync::OnceLock;
use std::time::Instant;

use cache_runtime::{Cache, Options, cached};
use cached::AsyncRedisCache;
use cached::macros::concurrent_cached;
use redis::aio::MultiplexedConnection;

use cache_benches::{User, Verdict, installed_cache, median, report, server_version, user};

#[cached(key = "user:{id}", ttl = 3600)]
async fn cached_user(id: u64) -> Result<User, std::convert::Infallible> {
    Ok(user(id))
}

/// The cache of [`solo_user`]: reads not coalesced.
static SOLO: OnceLock<Cache> = OnceLock::new();

#[cached(key = "user:{id}", ttl = 3600, cache = SOLO.get().expect("SOLO built first"))]
async fn solo_user(id: u64) -> Result<User, std::convert::Infallible> {
    Ok(user(id))
}

/// The harness server's URL, for the `cached` crate's store (which otherwise
/// reads `CACHED_REDIS_CONNECTION_STRING`).
static PEER_URL: OnceLock<String> = OnceLock::new();

/// Key prefix of the `cached` crate's entries.
const PEER_PREFIX: &str = "peer-user";

/// The same function under the `cached` crate: what its `redis = true` builds
/// (an `AsyncRedisCache` with a ttl, no refresh on hit), given the URL.
#[concurrent_cached(
    map_error = |e| format!("{e:?}"),
    ty = "AsyncRedisCache<u64, User>",
    create = r##"{
        cache_benches::peer_store(PEER_PREFIX, PEER_URL.get().expect("PEER_URL set before the first call")).await
    }"##
)]
async fn peer_user(id: u64) -> Result<User, String> {
    PEER_LOADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(user(id))
}

/// Loads of [`peer_user`]: only the first call may load.
static PEER_LOADS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

async fn raw_user(conn: &mut MultiplexedConnection, key: &str) -> User {
    let bytes: Vec<u8> = redis::cmd("GET")
        .arg(key)
        .query_async(conn)
        .await
        .expect("GET");
    postcard::from_bytes(&bytes).expect("decode")
}

/// A multiple of 4: every order of the four sides is used equally often.
const ROUNDS: usize = 32;
const OPS: usize = 2000;
const TASKS: usize = 64;
const OPS_PER_TASK: usize = 1000;
const RAW_KEY: &str = "raw:user:1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Ours,
    Solo,
    Raw,
    Peer,
}

/// A balanced Latin square: each side once in each place, and once after
/// each other side.
const ORDERS: [[Side; 4]; 4] = {
    use Side::*;
    [
        [Ours, Solo, Peer, Raw],
        [Solo, Raw, Ours, Peer],
        [Raw, Peer, Solo, Ours],
        [Peer, Ours, Raw, Solo],
    ]
};

/// `HIT_PATH_ONLY=ours|solo|raw|cached`: run only one side, once, for profiling
/// (`valgrind --tool=callgrind`).
fn only() -> Option<String> {
    std::env::var("HIT_PATH_ONLY").ok()
}

/// Calls made under `HIT_PATH_ONLY`: `HIT_PATH_CALLS`, else [`OPS`].
fn only_calls() -> usize {
    cache_benches::count_from_env("HIT_PATH_CALLS", OPS)
}

fn main() {
    // The latency phase, and a single side for profiling: one worker (a
    // second one's spinning and stealing would change the count from run
    // to run).
    if std::env::var(PHASE).as_deref() == Ok("latency") || only().is_some() {
        // One worker: the caller, the connection's task and the I/O driver
        // share a thread, so a call never waits for another thread to wake
        // (which on a shared VM costs 20–100 µs and switches between modes
        // from run to run); what remains is the round trip and the client.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        if only().is_some() {
            rt.block_on(run());
            return;
        }
        let [ours, solo, raw, peer] = rt.block_on(latency_phase());
        println!("{LATENCY_LINE} {ours} {solo} {raw} {peer}");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

/// Set to `latency` in the child process that measures latency.
const PHASE: &str = "HIT_PATH_PHASE";
/// How the child reports its medians (µs): ours, solo, raw, peer.
const LATENCY_LINE: &str = "hit_path latency medians:";

/// Runs the latency phase in a child process (a runtime of its own, with
/// one worker) and returns its medians.
fn latency_in_child() -> [f64; 4] {
    let exe = std::env::current_exe().expect("the bench's own path");
    let out = std::process::Command::new(exe)
        .env(PHASE, "latency")
        .env_remove("HIT_PATH_ONLY")
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("latency phase runs");
    assert!(
        out.status.success(),
        "latency phase failed: {:?}",
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(LATENCY_LINE))
        .unwrap_or_else(|| panic!("no latency line in {stdout}"));
    let v: Vec<f64> = line
        .split_whitespace()
        .map(|x| x.parse().expect("a median"))
        .collect();
    v.try_into().expect("four medians")
}

/// The four sides, set up on one fresh server.
struct Setup {
    /// Kept alive for the phase (dropping it stops the server).
    _server: cache_tests::RedisServer,
    cache: &'static Cache,
    solo: &'static Cache,
    conn: MultiplexedConnection,
    loads_before: u64,
}

async fn setup() -> Setup {
    let server = cache_tests::RedisServer::start();
    PEER_URL.set(server.url()).expect("PEER_URL set once");
    let cache = installed_cache(server.url(), "bench").await;
    let solo = Cache::builder()
        .url(server.url())
        .prefix("solo")
        .coalesce_reads(false)
        .build()
        .await
        .expect("solo cache");
    let solo = SOLO.get_or_init(|| solo);
    let mut conn = server.conn().await;
    let bytes = postcard::to_allocvec(&user(1)).expect("encode");
    let _: () = redis::cmd("SET")
        .arg(RAW_KEY)
        .arg(&bytes)
        .query_async(&mut conn)
        .await
        .expect("SET");
    // Warm all paths (fills the cached entries, opens the connections).
    for _ in 0..200 {
        cached_user(1).await.expect("hit");
        solo_user(1).await.expect("hit");
        raw_user(&mut conn, RAW_KEY).await;
        peer_user(1).await.expect("hit");
    }
    let loads_before = cache.stats().loads + solo.stats().loads;
    Setup {
        _server: server,
        cache,
        solo,
        conn,
        loads_before,
    }
}

/// Every measured call was a hit.
fn assert_all_hits(s: &Setup) {
    assert_eq!(
        s.cache.stats().loads + s.solo.stats().loads,
        s.loads_before,
        "every measured call of ours was a hit"
    );
    assert_eq!(
        PEER_LOADS.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "every measured call of the peer was a hit"
    );
}

/// 1 task: latency per call, medians over rounds.
///
/// Within a round the sides take turns call by call (in the round's order),
/// each call timed on its own, so that whatever the machine does at a
/// moment slows every side alike; a round's figure for a side is the median
/// of its calls.
async fn latency_phase() -> [f64; 4] {
    let s = setup().await;
    let mut latency = Samples::default();
    for round in 0..ROUNDS {
        let order = ORDERS[round % ORDERS.len()];
        let conn = s.conn.clone();
        let per_side = tokio::spawn(measure_latency(order, conn))
            .await
            .expect("latency task");
        for side in order {
            latency.push(side, per_side[side as usize]);
        }
    }
    assert_all_hits(&s);
    latency.medians()
}

/// Samples of the four sides, in the order of [`Side`].
#[derive(Default)]
struct Samples([Vec<f64>; 4]);

impl Samples {
    fn push(&mut self, side: Side, value: f64) {
        self.0[side as usize].push(value);
    }

    /// Medians: ours, solo, raw, peer.
    fn medians(self) -> [f64; 4] {
        self.0.map(median)
    }
}

async fn run() {
    let s = setup().await;
    if let Some(side) = only() {
        let side = match side.as_str() {
            "ours" => Side::Ours,
            "solo" => Side::Solo,
            "raw" => Side::Raw,
            "cached" => Side::Peer,
            other => panic!("HIT_PATH_ONLY={other}: expected ours, solo, raw or cached"),
        };
        let conn = s.conn.clone();
        tokio::spawn(calls(side, conn, only_calls()))
            .await
            .expect("calls task");
        return;
    }
    let [lat_ours, lat_solo, lat_raw, lat_peer] = latency_in_child();
    let (cache, mut conn) = (s.cache, s.conn.clone());

    // 64 tasks: throughput.
    let mut throughput = Samples::default();
    let mut p50 = Samples::default();
    let mut p99 = Samples::default();
    for round in 0..ROUNDS {
        for side in ORDERS[round % ORDERS.len()] {
            let (per_second, median, tail) = measure_throughput(side, &conn).await;
            throughput.push(side, per_second);
            p50.push(side, median);
            p99.push(side, tail);
        }
    }
    let [tp_ours, tp_solo, tp_raw, tp_peer] = throughput.medians();
    let [p50_ours, p50_solo, p50_raw, p50_peer] = p50.medians();
    let [p99_ours, p99_solo, p99_raw, p99_peer] = p99.medians();
    assert_all_hits(&s);

    println!(
        "hit path, {ROUNDS} rounds (every order of the sides alike), medians (redis-server {} on loopback)",
        server_version(&mut conn).await
    );
    println!();
    println!(
        "| measure | #[cached] | #[cached], one command per read | redis-rs GET + decode | `cached` crate | ours / raw | ours / `cached` | one command per read / raw |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| latency, 1 task ({OPS} calls/round) | {lat_ours:.1} µs | {lat_solo:.1} µs | {lat_raw:.1} µs | {lat_peer:.1} µs | {:.3}× | {:.3}× | {:.3}× |",
        lat_ours / lat_raw,
        lat_ours / lat_peer,
        lat_solo / lat_raw,
    );
    println!(
        "| throughput, {TASKS} tasks ({OPS_PER_TASK} calls each/round) | {tp_ours:.0} /s | {tp_solo:.0} /s | {tp_raw:.0} /s | {tp_peer:.0} /s | {:.3}× | {:.3}× | {:.3}× |",
        tp_ours / tp_raw,
        tp_ours / tp_peer,
        tp_solo / tp_raw,
    );
    println!(
        "| a call's time under that load, p50 | {p50_ours:.0} µs | {p50_solo:.0} µs | {p50_raw:.0} µs | {p50_peer:.0} µs | {:.3}× | {:.3}× | {:.3}× |",
        p50_ours / p50_raw,
        p50_ours / p50_peer,
        p50_solo / p50_raw,
    );
    println!(
        "| a call's time under that load, p99 | {p99_ours:.0} µs | {p99_solo:.0} µs | {p99_raw:.0} µs | {p99_peer:.0} µs | {:.3}× | {:.3}× | {:.3}× |",
        p99_ours / p99_raw,
        p99_ours / p99_peer,
        p99_solo / p99_raw,
    );
    if let Some(b) = cache.read_batches() {
        println!();
        println!(
            "Coalesced reads of #[cached] over the run: {} MGETs served {} reads ({:.1} per MGET).",
            b.batches,
            b.reads,
            b.reads as f64 / b.batches.max(1) as f64
        );
    }
    println!();
    println!("Latency ratios: lower is better for ours; throughput ratios: higher is better.");
    println!();

    let postcard_len = postcard::to_allocvec(&user(1)).expect("encode").len();
    let bytes = bytes_per_entry(cache, &mut conn, postcard_len).await;
    println!();
    let ratio = |x: f64| format!("{x:.3}×");
    report(
        "hit_path",
        &[
            Verdict::target(
                "hit latency, 1 task: ours / redis-rs GET + decode",
                ratio(lat_ours / lat_raw),
                "≤ 1.05×",
                lat_ours / lat_raw <= 1.05,
            ),
            Verdict::target(
                "hit latency, 1 task: ours / `cached` crate",
                ratio(lat_ours / lat_peer),
                "≤ 1.0×",
                lat_ours / lat_peer <= 1.0,
            ),
            Verdict::target(
                "hit throughput, 64 tasks: ours / redis-rs multiplexed",
                ratio(tp_ours / tp_raw),
                "≥ 0.95×",
                tp_ours / tp_raw >= 0.95,
            ),
            Verdict::target(
                "hit throughput, 64 tasks: ours / `cached` crate",
                ratio(tp_ours / tp_peer),
                "≥ 1.2×",
                tp_ours / tp_peer >= 1.2,
            ),
            Verdict::info(
                "bytes per entry (`MEMORY USAGE`): ours / `cached` crate",
                format!("{} / {} B", bytes.ours, bytes.peer),
            ),
        ],
    );
}

/// `MEMORY USAGE` of one entry: ours and the `cached` crate's.
struct EntryBytes {
    ours: i64,
    peer: i64,
}

/// One task's calls, one after another, timed one by one. It runs as a
/// spawned task on a worker, as a request handler would (not on the thread
/// that blocks on the runtime, whose every call would wait for a wake-up from
/// another thread).
/// The sides take turns call by call; the result is each side's median
/// call, in µs, in the order of [`Side`].
async fn measure_latency(order: [Side; 4], mut conn: MultiplexedConnection) -> [f64; 4] {
    let mut took: [Vec<f64>; 4] = Default::default();
    for _ in 0..OPS {
        for side in order {
            let t = Instant::now();
            one_call(side, &mut conn).await;
            took[side as usize].push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    took.map(median)
}

/// `n` hits of one side, one after another.
async fn calls(side: Side, mut conn: MultiplexedConnection, n: usize) {
    for _ in 0..n {
        one_call(side, &mut conn).await;
    }
}

/// One hit of one side.
async fn one_call(side: Side, conn: &mut MultiplexedConnection) {
    match side {
        Side::Ours => {
            std::hint::black_box(cached_user(1).await.expect("hit"));
        }
        Side::Solo => {
            std::hint::black_box(solo_user(1).await.expect("hit"));
        }
        Side::Raw => {
            std::hint::black_box(raw_user(conn, RAW_KEY).await);
        }
        Side::Peer => {
            std::hint::black_box(peer_user(1).await.expect("hit"));
        }
    }
}

/// One round of `TASKS` tasks calling at once: calls per second, and the
/// 50th and 99th percentiles of the time a call took (µs).
async fn measure_throughput(side: Side, conn: &MultiplexedConnection) -> (f64, f64, f64) {
    let t = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let mut conn = conn.clone();
            tokio::spawn(async move {
                let mut took = Vec::with_capacity(OPS_PER_TASK);
                for _ in 0..OPS_PER_TASK {
                    let t = Instant::now();
                    one_call(side, &mut conn).await;
                    took.push(t.elapsed().as_secs_f64() * 1e6);
                }
                took
            })
        })
        .collect();
    let mut took = Vec::with_capacity(TASKS * OPS_PER_TASK);
    for task in tasks {
        took.extend(task.await.expect("task"));
    }
    let per_second = (TASKS * OPS_PER_TASK) as f64 / t.elapsed().as_secs_f64();
    took.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize];
    (per_second, at(0.50), at(0.99))
}

/// `STRLEN` and `MEMORY USAGE` of the entry each side stored for `user(1)`.
async fn bytes_per_entry(
    cache: &Cache,
    conn: &mut MultiplexedConnection,
    postcard_len: usize,
) -> EntryBytes {
    let ours_key = cache.stored_key("user:1", &Options::new());
    let peer_keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("*{PEER_PREFIX}*"))
        .query_async(conn)
        .await
        .expect("KEYS");
    let [peer_key] = peer_keys.as_slice() else {
        panic!("expected one entry of the `cached` crate, found {peer_keys:?}");
    };
    let mut rows = Vec::new();
    for (label, key) in [
        ("bare postcard (the raw side)", RAW_KEY),
        ("#[cached] (envelope + postcard)", ours_key.as_str()),
        ("`cached` crate (MessagePack)", peer_key.as_str()),
    ] {
        let (len, usage): (i64, i64) = redis::pipe()
            .cmd("STRLEN")
            .arg(key)
            .cmd("MEMORY")
            .arg("USAGE")
            .arg(key)
            .query_async(conn)
            .await
            .expect("STRLEN, MEMORY USAGE");
        assert!(len > 0, "{key} holds the entry");
        rows.push((label, key, len, usage));
    }
    println!("### Bytes stored per entry (the same record: {postcard_len} bytes of postcard)");
    println!();
    println!("| layout | stored key | `STRLEN` | `MEMORY USAGE` |");
    println!("|---|---|---|---|");
    for (label, key, len, usage) in &rows {
        println!("| {label} | `{key}` | {len} | {usage} |");
    }
    EntryBytes {
        ours: rows[1].3,
        peer: rows[2].3,
    }
}
