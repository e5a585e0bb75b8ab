//! Regression tracking with criterion: the costs that a change to the runtime
//! is most likely to move, each measured on its own with short runs (the
//! whole target takes well under a minute).
//!
//! ```text
//! cargo bench -p cache-benches --bench regress
//! cargo bench -p cache-benches --bench regress -- --save-baseline before
//! cargo bench -p cache-benches --bench regress -- --baseline before
//! ```
//!
//! * `memory/cached_hit`: a `#[cached]` hit on the in-process store;
//! * `key/display`, `key/hash`: rendering a key the way the macro does
//!   (a displayed argument; a hashed one, BLAKE3), and `key/hash_xxh3`, the
//!   same key with the XXH3-128 hash used before (a reference);
//! * `key/long_stored`: the stored key of a 700-byte key (its head and its
//!   BLAKE3 hash), and `key/long_xxh3`, XXH3-128 of the same (a reference);
//! * `memory/set`, `memory/get`: envelope encode and decode through the
//!   public `Cache::set` / `Cache::get` on the in-process store;
//! * `redis/cached_hit`: a `#[cached]` hit against a redis-server that the
//!   harness starts on loopback;
//! * `redis/64_concurrent_hits`: 64 `#[cached]` hits of distinct keys at once
//!   (joined in one task), which coalescing serves with a few `MGET`s.
//!
//! Criterion compares each run with the previous one (or a saved baseline)
//! and reports the change; results are kept under `target/criterion`.

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use cache_runtime::key::KeyWriter;
use cache_runtime::{Cache, Options, cached};
use criterion::{Criterion, criterion_group, criterion_main};
use serde::Serialize;

use cache_benches::{User, user};

/// A filter argument, hashed into the key as `key = "orders:{#filter}"` does.
#[derive(Debug, Clone, Serialize)]
struct Filter {
    status: &'static str,
    page: u32,
}

/// Functions cached in a given `Cache` (the memory one or the Redis one).
struct Users {
    cache: Cache,
}

impl Users {
    #[cached(key = "user:{id}", ttl = 3600, cache = self.cache)]
    async fn user(&self, id: u64) -> Result<User, Infallible> {
        Ok(user(id))
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn memory(c: &mut Criterion) {
    let rt = runtime();
    let users = Users {
        cache: rt.block_on(async {
            Cache::builder()
                .memory()
                .build()
                .await
                .expect("memory cache")
        }),
    };
    rt.block_on(users.user(1)).expect("fill");
    let loads = users.cache.stats().loads;
    c.bench_function("memory/cached_hit", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(users.user(black_box(1)).await.expect("hit")) });
    });
    assert_eq!(users.cache.stats().loads, loads, "every call was a hit");

    let record = user(7);
    let options = Options::new().ttl(Duration::from_secs(3600));
    c.bench_function("memory/set", |b| {
        b.to_async(&rt).iter(|| async {
            users
                .cache
                .set(black_box("record:7"), black_box(&record), &options)
                .await
                .expect("set");
        });
    });
    c.bench_function("memory/get", |b| {
        b.to_async(&rt).iter(|| async {
            let got: Option<User> = users.cache.get(black_box("record:7")).await.expect("get");
            black_box(got.expect("stored"))
        });
    });
}

/// Feeds what postcard writes to an XXH3 hasher.
struct Xxh3Writer<'a>(&'a mut xxhash_rust::xxh3::Xxh3);

impl std::io::Write for Xxh3Writer<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn keys(c: &mut Criterion) {
    c.bench_function("key/display", |b| {
        b.iter(|| {
            let mut w = KeyWriter::new();
            w.lit("user:").display(black_box(&1234567u64));
            black_box(w.finish())
        });
    });
    let filter = Filter {
        status: "open",
        page: 3,
    };
    c.bench_function("key/hash", |b| {
        b.iter(|| {
            let mut w = KeyWriter::new();
            w.lit("orders:")
                .display(black_box(&7u64))
                .lit(":")
                .hash(black_box(&filter));
            black_box(w.finish())
        });
    });
    c.bench_function("key/hash_xxh3", |b| {
        b.iter(|| {
            // What `KeyWriter::hash` did before: XXH3-128 fed by postcard.
            let mut w = KeyWriter::new();
            w.lit("orders:").display(black_box(&7u64)).lit(":");
            let mut hasher = xxhash_rust::xxh3::Xxh3::new();
            postcard::to_io(black_box(&filter), Xxh3Writer(&mut hasher)).expect("encodes");
            w.lit(&format!("{:032x}", hasher.digest128()));
            black_box(w.finish())
        });
    });
    let long = format!("search:alice:{}", "q".repeat(687));
    let options = Options::new();
    let cache =
        runtime().block_on(async { Cache::builder().memory().build().await.expect("cache") });
    c.bench_function("key/long_stored", |b| {
        b.iter(|| black_box(cache.stored_key(black_box(&long), &options)));
    });
    c.bench_function("key/long_xxh3", |b| {
        b.iter(|| {
            let digest = xxhash_rust::xxh3::xxh3_128(black_box(long.as_bytes()));
            black_box(format!("#{digest:032x}"))
        });
    });
}

fn redis(c: &mut Criterion) {
    let server = cache_tests::RedisServer::start();
    let rt = runtime();
    let users = Users {
        cache: rt.block_on(async {
            Cache::builder()
                .url(server.url())
                .prefix("regress")
                .build()
                .await
                .expect("redis cache")
        }),
    };
    rt.block_on(users.user(1)).expect("fill");
    let loads = users.cache.stats().loads;
    c.bench_function("redis/cached_hit", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(users.user(black_box(1)).await.expect("hit")) });
    });
    assert_eq!(users.cache.stats().loads, loads, "every call was a hit");

    for id in 0..64 {
        rt.block_on(users.user(id)).expect("fill");
    }
    let loads = users.cache.stats().loads;
    c.bench_function("redis/64_concurrent_hits", |b| {
        b.to_async(&rt).iter(|| async {
            let hits = (0..64).map(|id| users.user(black_box(id)));
            black_box(futures_util::future::join_all(hits).await)
        });
    });
    assert_eq!(users.cache.stats().loads, loads, "every call was a hit");
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
        .without_plots()
}

criterion_group! {
    name = regress;
    config = config();
    targets = memory, keys, redis
}
criterion_main!(regress);
