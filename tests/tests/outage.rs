//! A store outage never fails a read, and never loses an invalidation.
//! Real faults: the harness's redis-server is killed, paused (`CLIENT PAUSE`),
//! put to sleep (`DEBUG SLEEP`) and restarted.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use cache_runtime::{Cache, Options, invalidates};
use cache_tests::RedisServer;

fn opts() -> Options {
    Options::new().ttl(Duration::from_secs(600))
}

async fn read(cache: &Cache, key: u64) -> u64 {
    let v: Result<u64, Infallible> = cache
        .get_or_load(format!("k{key}"), &opts(), || async move { Ok(key * 10) })
        .await;
    match v {
        Ok(v) => v,
    }
}

/// Reads until the cache serves hits again (the breaker closes on the first
/// successful probe after its cool-down). Bounded.
async fn until_hits_resume(cache: &Cache, key: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let before = cache.stats().hits;
    while cache.stats().hits == before {
        assert!(
            Instant::now() < deadline,
            "hits did not resume: {:?}",
            cache.stats().total
        );
        assert_eq!(read(cache, key).await, key * 10);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_survive_kill_pause_sleep_and_restart() {
    let mut server = RedisServer::start();
    let cache = Cache::builder()
        .url(server.url())
        .prefix("outage")
        .op_timeout(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    let mut reads = 0u64;
    let mut check = async |cache: &Cache, n: u64| {
        for i in 0..n {
            let key = i % 7;
            assert_eq!(
                read(cache, key).await,
                key * 10,
                "a read returned something else"
            );
            reads += 1;
        }
    };
    check(&cache, 50).await;
    assert!(cache.stats().hits > 0);

    server.kill();
    check(&cache, 50).await;
    assert!(
        !cache.store_available(),
        "the breaker opened while the server was dead"
    );
    server.restart();
    until_hits_resume(&cache, 1).await;

    server.pause_clients(400).await;
    check(&cache, 30).await;
    until_hits_resume(&cache, 2).await;

    server.debug_sleep(0.4).await;
    check(&cache, 30).await;
    until_hits_resume(&cache, 3).await;

    check(&cache, 20).await;
    assert!(reads >= 180);
    assert!(cache.stats().errors > 0, "the faults were seen and counted");
}

#[invalidates(keys = ["k{key}"], cache = cache)]
async fn write(cache: &Cache, key: u64) {
    let _ = (cache, key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_during_an_outage_is_retried_and_never_lost() {
    // Persistence on, so that the value to be invalidated survives the crash.
    let mut server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let cache = Cache::builder()
        .url(server.url())
        .prefix("lost")
        .op_timeout(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    cache.set("k1", &111u64, &opts()).await.unwrap();
    assert_eq!(cache.get::<u64>("k1").await.unwrap(), Some(111));

    server.kill();
    write(&cache, 1).await; // the source now says 10; the invalidation cannot reach Redis
    assert_eq!(cache.pending_invalidations(), 1, "kept for retry");
    assert_eq!(
        read(&cache, 1).await,
        10,
        "during the outage: the loader's value"
    );

    // The server comes back with the old value (from the append-only file),
    // but refuses deletes for now: the invalidation stays pending while the
    // old value can be read.
    server.restart_with(&[
        "--user", "default", "on", "nopass", "~*", "&*", "+@all", "-unlink",
    ]);
    let mut admin = server.conn().await;
    let stored = cache.stored_key("k1", &opts());
    let exists: bool = redis::cmd("EXISTS")
        .arg(&stored)
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(exists, "the old value is back");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cache.store_available() {
        assert!(
            Instant::now() < deadline,
            "the store never became available"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Reads bypass the cache rather than serve 111.
    for _ in 0..3 {
        assert_eq!(read(&cache, 1).await, 10, "never the invalidated value");
    }
    assert_eq!(cache.pending_invalidations(), 1, "still pending");
    // Deletes allowed again: the retry lands.
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("+unlink")
        .query_async(&mut admin)
        .await
        .unwrap();
    while cache.pending_invalidations() > 0 {
        assert!(
            Instant::now() < deadline,
            "the invalidation was not retried"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(read(&cache, 1).await, 10);
    assert_eq!(
        cache.get::<u64>("k1").await.unwrap(),
        Some(10),
        "refilled from the loader"
    );
    assert!(
        cache.stats().errors > 0,
        "the failed invalidation was counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_the_server_lost_are_loaded_again() {
    // A restarted server, or `SCRIPT FLUSH`, forgets the scripts: every one
    // the cache calls by SHA (lookup, fill, release, set) is loaded again on
    // the `NOSCRIPT` answer, and nothing fails or goes uncached.
    let server = RedisServer::start();
    let cache = Cache::builder()
        .url(server.url())
        .prefix("noscript")
        .build()
        .await
        .unwrap();
    let mut conn = server.conn().await;
    let flush = async |conn: &mut redis::aio::MultiplexedConnection| {
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(conn)
            .await
            .unwrap();
    };
    let loads = cache.stats().loads;
    flush(&mut conn).await;
    // A miss: lookup-or-lease, then fill.
    assert_eq!(read(&cache, 1).await, 10);
    assert_eq!(read(&cache, 1).await, 10);
    assert_eq!(cache.stats().loads, loads + 1, "filled once, then a hit");
    // A failed load gives its lease back (release).
    flush(&mut conn).await;
    let failed: Result<u64, &str> = cache
        .get_or_load("k2", &opts(), || async { Err("down") })
        .await;
    assert_eq!(failed, Err("down"));
    let lease: Option<String> = redis::cmd("GET")
        .arg(format!("{}:L", cache.stored_key("k2", &opts())))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(lease, None, "the lease was given back");
    // A write (set).
    flush(&mut conn).await;
    cache.set("k3", &30u64, &opts()).await.unwrap();
    assert_eq!(cache.get::<u64>("k3").await.unwrap(), Some(30));
    assert_eq!(cache.stats().errors, 0);
}
