//! A hit costs exactly one round trip to Redis, tags included: one plain
//! command (`MGET entry tag…`), no script. A miss costs three in a function
//! whose reads mostly hit: that read, the lookup-or-lease script, the fill;
//! and two in a function whose reads lately miss, which asks for the lease
//! in its first round trip. Counted by the server:
//! `MONITOR` shows every command a client sends, and marks the commands a
//! script runs as coming from `lua`, so those are told apart.

use std::convert::Infallible;
use std::time::Duration;

use cache_runtime::{Cache, Options};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hit_is_one_round_trip_and_miss_is_three_while_reads_hit() {
    let server = cache_tests::RedisServer::start();
    let cache = Cache::builder()
        .url(server.url())
        .prefix("rt")
        .build()
        .await
        .unwrap();
    let opts = Options::new()
        .ttl(Duration::from_secs(60))
        .tags(["users", "user:1"]);
    // Warm the connection and the scripts.
    let _: Result<u32, Infallible> = cache.get_or_load("warm", &opts, || async { Ok(0) }).await;

    let (c, o) = (&cache, &opts);
    let miss = server
        .client_commands_during(async {
            let v: Result<u32, Infallible> = c.get_or_load("user:1", o, || async { Ok(1) }).await;
            assert_eq!(v.unwrap(), 1);
        })
        .await;
    assert_eq!(
        miss.len(),
        3,
        "a miss: read, lookup-or-lease, fill: {miss:#?}"
    );
    assert!(miss[0].contains("\"MGET\""), "{miss:#?}");
    assert!(
        miss[1..].iter().all(|l| l.contains("\"EVALSHA\"")),
        "{miss:#?}"
    );

    let hit = server
        .client_commands_during(async {
            let v: Result<u32, Infallible> = c
                .get_or_load("user:1", o, || async { unreachable!() })
                .await;
            assert_eq!(v.unwrap(), 1);
        })
        .await;
    assert_eq!(hit.len(), 1, "a hit with two tags is one command: {hit:#?}");
    assert!(hit[0].contains("\"MGET\""), "{hit:#?}");

    let untagged = Options::new().ttl(Duration::from_secs(60));
    let _: Result<u32, Infallible> = cache
        .get_or_load("plain", &untagged, || async { Ok(2) })
        .await;
    let hit = server
        .client_commands_during(async {
            let v: Result<u32, Infallible> = c
                .get_or_load("plain", &untagged, || async { unreachable!() })
                .await;
            assert_eq!(v.unwrap(), 2);
        })
        .await;
    assert_eq!(hit.len(), 1, "{hit:#?}");
    assert!(
        hit[0].contains("\"GET\""),
        "an untagged hit is a plain GET: {hit:#?}"
    );
    assert_eq!(cache.stats().hits, 2);
}

/// Concurrent misses in one process ask Redis for the lease once: the first
/// caller asks, the others wait on its flight instead of running the lookup
/// script too (and are handed its value when it fills).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_ask_for_the_lease_once() {
    let server = cache_tests::RedisServer::start();
    let cache = Cache::builder()
        .url(server.url())
        .prefix("rt-once")
        .build()
        .await
        .unwrap();
    let opts = Options::new().ttl(Duration::from_secs(60));
    let _: Result<u32, Infallible> = cache.get_or_load("warm", &opts, || async { Ok(0) }).await;
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let n = 100;
    let seen = server
        .client_commands_during(async {
            let mut callers = Vec::new();
            for _ in 0..n {
                let (cache, opts, gate) = (cache.clone(), opts.clone(), gate.clone());
                callers.push(tokio::spawn(async move {
                    let v: Result<u32, Infallible> = cache
                        .get_or_load("cold", &opts, || async move {
                            gate.notified().await;
                            Ok(7)
                        })
                        .await;
                    v.unwrap()
                }));
            }
            // Everyone but the holder waits before the loader may finish.
            tokio::time::timeout(Duration::from_secs(10), async {
                while cache.stats().lock_waits < n - 1 {
                    tokio::task::yield_now().await;
                }
            })
            .await
            .expect("callers joined the flight");
            gate.notify_one();
            for c in callers {
                assert_eq!(c.await.unwrap(), 7);
            }
        })
        .await;
    let scripts = seen.iter().filter(|l| l.contains("\"EVALSHA\"")).count();
    let reads = seen.iter().filter(|l| l.contains("\"GET\"")).count();
    assert_eq!(scripts, 2, "one lookup-or-lease and one fill: {seen:#?}");
    assert!(reads <= n as usize, "at most one read per caller");
    assert_eq!(cache.stats().loads, 2, "the warm-up and one load");
}

/// A function whose reads lately miss sends the lookup-or-lease script first:
/// a miss is two round trips (lookup-or-lease, fill). Once its reads hit
/// again, hits go back to one plain `GET`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miss_is_two_round_trips_while_reads_miss() {
    let server = cache_tests::RedisServer::start();
    let cache = Cache::builder()
        .url(server.url())
        .prefix("rt-miss")
        .build()
        .await
        .unwrap();
    let opts = Options::new()
        .function("cold_reads")
        .ttl(Duration::from_secs(60));
    let load = |c: &Cache, k: String, v: u32| {
        let (c, o) = (c.clone(), opts.clone());
        async move {
            let got: Result<u32, Infallible> = c.get_or_load(k, &o, || async move { Ok(v) }).await;
            assert_eq!(got.unwrap(), v);
        }
    };
    // Reads that miss, one after another.
    let mut per_miss = Vec::new();
    for i in 0..8 {
        let seen = server
            .client_commands_during(load(&cache, format!("cold:{i}"), i))
            .await;
        per_miss.push(seen.len());
    }
    assert_eq!(per_miss[0], 3, "the first miss reads first: {per_miss:?}");
    assert_eq!(
        per_miss[per_miss.len() - 1],
        2,
        "once reads keep missing, a miss is lookup-or-lease and fill: {per_miss:?}"
    );
    let last = server
        .client_commands_during(load(&cache, "cold:last".into(), 99))
        .await;
    assert_eq!(last.len(), 2, "{last:#?}");
    assert!(last.iter().all(|l| l.contains("\"EVALSHA\"")), "{last:#?}");

    // Reads that hit: the first ones still go through the script (one round
    // trip each), then hits are plain GETs again.
    let mut per_hit = Vec::new();
    for _ in 0..8 {
        let seen = server
            .client_commands_during(load(&cache, "cold:last".into(), 99))
            .await;
        assert_eq!(
            seen.len(),
            1,
            "a hit is one round trip either way: {seen:#?}"
        );
        per_hit.push(seen[0].contains("\"GET\""));
    }
    assert!(
        !per_hit[0],
        "right after misses, a hit goes through the script"
    );
    assert!(
        per_hit[per_hit.len() - 1],
        "once reads hit again, a hit is a plain GET: {per_hit:?}"
    );
    assert_eq!(cache.stats().loads, 9);
}
