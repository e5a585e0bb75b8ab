//! Limits and costs: tag invalidation of 100 000 entries against the seeds'
//! set-per-tag (`SMEMBERS` + `DEL`) with the server's worst latency during it;
//! per-call overhead with the circuit breaker open; bytes stored per entry;
//! the codec table.
//!
//! ```text
//! cargo bench -p cache-benches --bench limits --features bincode
//! ```

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cache_runtime::{Cache, CodecKind, Options};
use redis::aio::MultiplexedConnection;

use cache_benches::{Verdict, report};
use serde::{Deserialize, Serialize};

const ENTRIES: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    id: u64,
    name: String,
    email: String,
    roles: Vec<String>,
    score: f64,
    active: bool,
}

fn record(id: u64) -> Record {
    Record {
        id,
        name: format!("User Number {id}"),
        email: format!("user{id}@example.com"),
        roles: vec!["reader".into(), "writer".into()],
        score: 4.25,
        active: true,
    }
}

/// Worst round trip of PINGs sent back to back while `busy` is set.
async fn worst_ping_while(mut conn: MultiplexedConnection, busy: Arc<AtomicBool>) -> Duration {
    let mut worst = Duration::ZERO;
    while !busy.load(SeqCst) {
        tokio::task::yield_now().await;
    }
    while busy.load(SeqCst) {
        let t = Instant::now();
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .expect("PING");
        worst = worst.max(t.elapsed());
    }
    worst
}

/// Rounds of each tag-invalidation side; the table shows medians.
const TAG_ROUNDS: usize = 5;
/// The small tag, to show that our time does not grow with the entries.
const SMALL: usize = 1_000;

/// Our entries `r:{from}..r:{to}`, tagged `tag`, filled through the cache.
async fn fill_ours(cache: &Cache, tag: &str, from: usize, to: usize) {
    let opts = Options::new().ttl(Duration::from_secs(3600)).tags([tag]);
    for chunk in (from..to).collect::<Vec<_>>().chunks(1000) {
        let mut tasks = Vec::new();
        for &i in chunk {
            let (cache, opts) = (cache.clone(), opts.clone());
            tasks.push(tokio::spawn(async move {
                let _: Result<Record, Infallible> = cache
                    .get_or_load(
                        format!("r:{i}"),
                        &opts,
                        || async move { Ok(record(i as u64)) },
                    )
                    .await;
            }));
        }
        for t in tasks {
            t.await.expect("fill");
        }
    }
}

/// The seeds' set per tag: `n` values, their keys in the set `naive:tag:{tag}`.
async fn fill_naive(conn: &mut MultiplexedConnection, tag: &str, n: usize) {
    let bytes = postcard::to_allocvec(&record(1)).expect("encode");
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for &i in chunk {
            let key = format!("naive:{tag}:r:{i}");
            pipe.cmd("SET").arg(&key).arg(&bytes).ignore();
            pipe.cmd("SADD")
                .arg(format!("naive:tag:{tag}"))
                .arg(key)
                .ignore();
        }
        let _: () = pipe.query_async(conn).await.expect("naive fill");
    }
}

/// The seeds' invalidation: `SMEMBERS`, `DEL` of the members, `DEL` of the set.
async fn invalidate_naive(conn: &mut MultiplexedConnection, tag: &str) {
    let set = format!("naive:tag:{tag}");
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(&set)
        .query_async(conn)
        .await
        .expect("SMEMBERS");
    let _: () = redis::cmd("DEL")
        .arg(&members)
        .query_async(conn)
        .await
        .expect("DEL");
    let _: () = redis::cmd("DEL")
        .arg(&set)
        .query_async(conn)
        .await
        .expect("DEL tag");
}

/// Runs `f` while another connection sends `PING`s back to back: how long
/// `f` took and the worst `PING` round trip meanwhile.
async fn timed_with_spike<F: std::future::Future<Output = ()>>(
    server: &cache_tests::RedisServer,
    f: F,
) -> (Duration, Duration) {
    let probe = server.conn().await;
    let busy = Arc::new(AtomicBool::new(false));
    let spike = tokio::spawn(worst_ping_while(probe, busy.clone()));
    busy.store(true, SeqCst);
    let t = Instant::now();
    f.await;
    let took = t.elapsed();
    busy.store(false, SeqCst);
    (took, spike.await.expect("probe"))
}

/// Medians of the times and of the spikes.
fn medians(samples: Vec<(Duration, Duration)>) -> (Duration, Duration) {
    let (mut took, mut spikes): (Vec<_>, Vec<_>) = samples.into_iter().unzip();
    took.sort();
    spikes.sort();
    (took[took.len() / 2], spikes[spikes.len() / 2])
}

async fn tag_invalidation(server: &cache_tests::RedisServer) -> Vec<Verdict> {
    let cache = Cache::builder()
        .url(server.url())
        .prefix("tagbench")
        .build()
        .await
        .expect("cache");
    let mut conn = server.conn().await;
    fill_ours(&cache, "big", 0, ENTRIES).await;
    fill_ours(&cache, "small", ENTRIES, ENTRIES + SMALL).await;
    let (mut ours_big, mut ours_small, mut naive_big, mut naive_small) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..TAG_ROUNDS {
        ours_big.push(
            timed_with_spike(server, async {
                cache.invalidate_tags(["big"]).await.expect("invalidate");
            })
            .await,
        );
        ours_small.push(
            timed_with_spike(server, async {
                cache.invalidate_tags(["small"]).await.expect("invalidate");
            })
            .await,
        );
        for (tag, n, out) in [
            ("big", ENTRIES, &mut naive_big),
            ("small", SMALL, &mut naive_small),
        ] {
            fill_naive(&mut conn, tag, n).await;
            let mut c = conn.clone();
            out.push(timed_with_spike(server, invalidate_naive(&mut c, tag)).await);
        }
    }

    // Every tagged entry is now a miss.
    let loads = cache.stats().loads;
    let opts = Options::new().ttl(Duration::from_secs(3600)).tags(["big"]);
    let _: Result<Record, Infallible> = cache
        .get_or_load("r:5", &opts, || async { Ok(record(5)) })
        .await;
    assert_eq!(cache.stats().loads, loads + 1, "invalidated");

    let (ob, obs) = medians(ours_big);
    let (os, oss) = medians(ours_small);
    let (nb, nbs) = medians(naive_big);
    let (ns, nss) = medians(naive_small);
    println!("### Invalidating a tag ({TAG_ROUNDS} rounds, medians)");
    println!();
    println!("| implementation | entries | time | worst PING round trip during it |");
    println!("|---|---|---|---|");
    for (name, n, t, sp) in [
        (
            "cache-runtime (tag version token: one SET)",
            ENTRIES,
            ob,
            obs,
        ),
        ("cache-runtime (tag version token: one SET)", SMALL, os, oss),
        ("set per tag (SMEMBERS + DEL)", ENTRIES, nb, nbs),
        ("set per tag (SMEMBERS + DEL)", SMALL, ns, nss),
    ] {
        println!(
            "| {name} | {} | {:.3} ms | {:.3} ms |",
            grouped(n),
            ms(t),
            ms(sp)
        );
    }
    println!();
    let growth = ob.as_secs_f64() / os.as_secs_f64();
    vec![
        Verdict::target(
            "tag invalidation, 100 000 entries: time (vs 1 000 entries)",
            format!(
                "{:.3} ms ({growth:.2}×; set per tag {:.1} ms)",
                ms(ob),
                ms(nb)
            ),
            "O(1): no growth with the entries",
            // One command whatever the count: within noise of the small tag.
            growth < 3.0,
        ),
        Verdict::target(
            "tag invalidation, 100 000 entries: worst PING during it",
            format!("{:.3} ms (set per tag {:.1} ms)", ms(obs), ms(nbs)),
            "≤ 1 ms",
            obs <= Duration::from_millis(1),
        ),
    ]
}

/// `100000` as `100 000`.
fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn breaker_overhead() {
    // A server that is started and killed: the breaker opens.
    let mut server = cache_tests::RedisServer::start();
    let cache = Cache::builder()
        .url(server.url())
        .prefix("breaker")
        .op_timeout(Duration::from_millis(50))
        .build()
        .await
        .expect("cache");
    server.kill();
    let opts = Options::new().ttl(Duration::from_secs(60));
    while cache.store_available() {
        let _: Result<u64, Infallible> = cache.get_or_load("k", &opts, || async { Ok(1) }).await;
    }
    const N: u32 = 100_000;
    let mut per_call = Vec::new();
    let mut bare = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        for i in 0..N {
            let v: Result<u64, Infallible> = cache
                .get_or_load(
                    "k",
                    &opts,
                    || async move { Ok(std::hint::black_box(i as u64)) },
                )
                .await;
            std::hint::black_box(v.ok());
        }
        per_call.push(t.elapsed() / N);
        let t = Instant::now();
        for i in 0..N {
            let v: Result<u64, Infallible> =
                async move { Ok(std::hint::black_box(i as u64)) }.await;
            std::hint::black_box(v.ok());
        }
        bare.push(t.elapsed() / N);
    }
    per_call.sort();
    bare.sort();
    assert!(!cache.store_available(), "the breaker stayed open");
    println!("### Redis down, circuit breaker open");
    println!();
    println!("| measure | per call |");
    println!("|---|---|");
    println!(
        "| `get_or_load` (loader runs) | {:.2} µs |",
        per_call[2].as_secs_f64() * 1e6
    );
    println!(
        "| the loader alone | {:.3} µs |",
        bare[2].as_secs_f64() * 1e6
    );
    println!();
}

async fn bytes_per_entry(server: &cache_tests::RedisServer) {
    let cache = Cache::builder()
        .url(server.url())
        .prefix("size")
        .build()
        .await
        .expect("cache");
    let mut conn = server.conn().await;
    let r = record(42);
    let opts = Options::new().ttl(Duration::from_secs(3600));
    cache.set("user:42", &r, &opts).await.expect("set");
    let tagged = opts.clone().tags(["users", "user:42"]);
    cache.set("user:43", &r, &tagged).await.expect("set");
    let plain = postcard::to_allocvec(&r).expect("encode");
    let raw_key = "raw:user:42";
    let _: () = redis::cmd("SET")
        .arg(raw_key)
        .arg(&plain)
        .query_async(&mut conn)
        .await
        .expect("SET");
    let usage = async |conn: &mut MultiplexedConnection, key: &str| -> i64 {
        redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(key)
            .query_async(conn)
            .await
            .expect("MEMORY USAGE")
    };
    let ours = usage(&mut conn, &cache.stored_key("user:42", &opts)).await;
    let ours_tagged = usage(&mut conn, &cache.stored_key("user:43", &opts)).await;
    let raw = usage(&mut conn, raw_key).await;
    let value_len = cache
        .debug_get_raw("user:42", &opts)
        .await
        .expect("get")
        .map_or(0, |b| b.len());
    let tagged_len = cache
        .debug_get_raw("user:43", &opts)
        .await
        .expect("get")
        .map_or(0, |b| b.len());
    println!(
        "### Bytes stored per entry (a {}-byte postcard record)",
        plain.len()
    );
    println!();
    println!("| layout | value bytes | `MEMORY USAGE` of the key |");
    println!("|---|---|---|");
    println!(
        "| bare postcard under `raw:user:42` | {} | {raw} |",
        plain.len()
    );
    println!("| cache-runtime, no tags | {value_len} | {ours} |");
    println!("| cache-runtime, two tags | {tagged_len} | {ours_tagged} |");
    println!();
    println!("Leases exist only while a load runs; a tag costs one key per tag (not per entry).");
    println!();
}

/// Repeats of each codec measure; the table shows medians.
const CODEC_ROUNDS: usize = 5;

fn codec_table() {
    let r = record(42);
    const N: u32 = 200_000;
    println!("### Codecs on a typical record ({CODEC_ROUNDS} rounds of {N} calls, medians)");
    println!();
    println!("| codec | encoded bytes | encode | decode |");
    println!("|---|---|---|---|");
    let codecs = [
        CodecKind::Postcard,
        CodecKind::Json,
        CodecKind::MsgPack,
        #[cfg(feature = "bincode")]
        CodecKind::Bincode,
    ];
    for codec in codecs {
        let mut buf = Vec::new();
        codec.encode(&r, &mut buf).expect("encode");
        let size = buf.len();
        let (mut enc, mut dec) = (Vec::new(), Vec::new());
        for _ in 0..CODEC_ROUNDS {
            let mut out = Vec::with_capacity(size);
            let t = Instant::now();
            for _ in 0..N {
                out.clear();
                codec
                    .encode(std::hint::black_box(&r), &mut out)
                    .expect("encode");
            }
            enc.push(t.elapsed() / N);
            let t = Instant::now();
            for _ in 0..N {
                let back: Record = codec.decode(std::hint::black_box(&buf)).expect("decode");
                std::hint::black_box(back);
            }
            dec.push(t.elapsed() / N);
        }
        enc.sort();
        dec.sort();
        println!(
            "| {} | {size} | {} ns | {} ns |",
            codec.name(),
            enc[CODEC_ROUNDS / 2].as_nanos(),
            dec[CODEC_ROUNDS / 2].as_nanos()
        );
    }
    println!();
    if cfg!(not(feature = "bincode")) {
        println!("(bincode 2 is an opt-in feature: add `--features bincode` for its row.)");
        println!();
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let server = cache_tests::RedisServer::start();
        codec_table();
        bytes_per_entry(&server).await;
        breaker_overhead().await;
        let verdicts = tag_invalidation(&server).await;
        report("limits", &verdicts);
    });
}
