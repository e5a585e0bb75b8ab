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

async fn tag_invalidation(server: &cache_tests::RedisServer) {
    let cache = Cache::builder()
        .url(server.url())
        .prefix("tagbench")
        .build()
        .await
        .expect("cache");
    let mut conn = server.conn().await;
    // Our entries: 100 000 values tagged "big"; set-per-tag: the same keys in a SET.
    let opts = Options::new().ttl(Duration::from_secs(3600)).tags(["big"]);
    let bytes = postcard::to_allocvec(&record(1)).expect("encode");
    for chunk in (0..ENTRIES).collect::<Vec<_>>().chunks(1000) {
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
        let mut pipe = redis::pipe();
        for &i in chunk {
            pipe.cmd("SET")
                .arg(format!("naive:r:{i}"))
                .arg(&bytes)
                .ignore();
            pipe.cmd("SADD")
                .arg("naive:tag:big")
                .arg(format!("naive:r:{i}"))
                .ignore();
        }
        let _: () = pipe.query_async(&mut conn).await.expect("naive fill");
    }

    let probe = server.conn().await;
    let busy = Arc::new(AtomicBool::new(false));
    let spike = tokio::spawn(worst_ping_while(probe, busy.clone()));
    busy.store(true, SeqCst);
    let t = Instant::now();
    cache.invalidate_tags(["big"]).await.expect("invalidate");
    let ours = t.elapsed();
    busy.store(false, SeqCst);
    let ours_spike = spike.await.expect("probe");

    let probe = server.conn().await;
    let busy = Arc::new(AtomicBool::new(false));
    let spike = tokio::spawn(worst_ping_while(probe, busy.clone()));
    busy.store(true, SeqCst);
    let t = Instant::now();
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg("naive:tag:big")
        .query_async(&mut conn)
        .await
        .expect("SMEMBERS");
    let _: () = redis::cmd("DEL")
        .arg(&members)
        .query_async(&mut conn)
        .await
        .expect("DEL");
    let _: () = redis::cmd("DEL")
        .arg("naive:tag:big")
        .query_async(&mut conn)
        .await
        .expect("DEL tag");
    let naive = t.elapsed();
    busy.store(false, SeqCst);
    let naive_spike = spike.await.expect("probe");

    // Every tagged entry is now a miss.
    let loads = cache.stats().loads;
    let _: Result<Record, Infallible> = cache
        .get_or_load("r:5", &opts, || async { Ok(record(5)) })
        .await;
    assert_eq!(cache.stats().loads, loads + 1, "invalidated");

    println!("### Invalidating a tag of {ENTRIES} entries");
    println!();
    println!("| implementation | time | worst PING round trip during it |");
    println!("|---|---|---|");
    println!(
        "| cache-runtime (tag version token: one SET) | {:.3} ms | {:.3} ms |",
        ms(ours),
        ms(ours_spike)
    );
    println!(
        "| set per tag (SMEMBERS + DEL) | {:.1} ms | {:.1} ms |",
        ms(naive),
        ms(naive_spike)
    );
    println!();
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

fn codec_table() {
    let r = record(42);
    const N: u32 = 200_000;
    println!("### Codecs on a typical record");
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
        let t = Instant::now();
        for _ in 0..N {
            buf.clear();
            codec
                .encode(std::hint::black_box(&r), &mut buf)
                .expect("encode");
        }
        let enc = t.elapsed() / N;
        let t = Instant::now();
        for _ in 0..N {
            let back: Record = codec.decode(std::hint::black_box(&buf)).expect("decode");
            std::hint::black_box(back);
        }
        let dec = t.elapsed() / N;
        println!(
            "| {} | {size} | {} ns | {} ns |",
            codec.name(),
            enc.as_nanos(),
            dec.as_nanos()
        );
    }
    println!();
    println!(
        "(bincode 2: `cargo bench -p cache-benches --bench limits --features bincode` is not wired; see the codec unit tests.)"
    );
    println!();
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
        tag_invalidation(&server).await;
    });
}
