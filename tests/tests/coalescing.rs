//! Concurrent hit-path reads share one `MGET` (`CacheBuilder::coalesce_reads`,
//! on by default): fewer commands reach the server than reads were made,
//! every caller gets its own key's value, and a failure of the shared read
//! sends every caller in it to its loader.
//!
//! Freshness of shared reads is checked by the race harness
//! (`races::no_stale_reads_on_redis` runs with coalescing on and checks that
//! reads were shared; `races::joining_a_read_in_flight_serves_stale_values`
//! shows what a batch that took callers after it was sent would do).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use cache_runtime::{Cache, Options};

const TASKS: usize = 64;
const READS_PER_TASK: usize = 50;
const KEYS: usize = 256;

/// `calls` of `cmdstat_<name>` in `INFO commandstats`.
async fn calls(server: &cache_tests::RedisServer, name: &str) -> u64 {
    let mut c = server.conn().await;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut c)
        .await
        .expect("INFO commandstats");
    let prefix = format!("cmdstat_{name}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map(|n| n.parse().expect("a count"))
        .unwrap_or(0)
}

/// Reads `TASKS × READS_PER_TASK` cached keys (with one tag each) at once;
/// returns the `GET` + `MGET` commands the server ran meanwhile.
async fn read_concurrently(server: &cache_tests::RedisServer, cache: &Cache) -> u64 {
    // Filled under a function name of their own: the reads measured below
    // belong to a function whose reads hit (so each is a plain read first).
    let opts = |k: usize, function: &'static str| {
        Options::new()
            .function(function)
            .ttl(Duration::from_secs(300))
            .tags([format!("group:{}", k % 8)])
    };
    for k in 0..KEYS {
        let v: Result<usize, Infallible> = cache
            .get_or_load(
                format!("k{k}"),
                &opts(k, "fill"),
                || async move { Ok(k * 10) },
            )
            .await;
        assert_eq!(v.unwrap(), k * 10);
    }
    let before = calls(server, "get").await + calls(server, "mget").await;
    let start = Arc::new(tokio::sync::Barrier::new(TASKS));
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (cache, start) = (cache.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            for i in 0..READS_PER_TASK {
                let k = (t * 31 + i * 7) % KEYS;
                let v: Result<usize, Infallible> = cache
                    .get_or_load(format!("k{k}"), &opts(k, "read"), || async move {
                        panic!("k{k} is cached: its loader must not run")
                    })
                    .await;
                assert_eq!(v.unwrap(), k * 10, "each caller gets its own key's value");
            }
        }));
    }
    for t in tasks {
        t.await.expect("reader");
    }
    calls(server, "get").await + calls(server, "mget").await - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_hits_share_commands() {
    let server = cache_tests::RedisServer::start();
    let cache = Cache::builder()
        .url(server.url())
        .prefix("coalesce")
        .build()
        .await
        .expect("cache");
    let reads = (TASKS * READS_PER_TASK) as u64;
    let commands = read_concurrently(&server, &cache).await;
    let batches = cache.read_batches().expect("coalescing is on by default");
    eprintln!("{reads} reads: {commands} commands; {batches:?}");
    assert_eq!(cache.stats().functions["read"].hits, reads);
    assert!(
        batches.batches > 0 && batches.reads >= 2 * batches.batches,
        "{batches:?}"
    );
    assert!(
        commands < reads,
        "{reads} concurrent reads sent {commands} commands"
    );
    assert_eq!(
        commands,
        reads - batches.reads + batches.batches,
        "every read sent its own command or shared one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_coalescing_every_read_is_a_command() {
    let server = cache_tests::RedisServer::start();
    let cache = Cache::builder()
        .url(server.url())
        .prefix("coalesce-off")
        .coalesce_reads(false)
        .build()
        .await
        .expect("cache");
    let reads = (TASKS * READS_PER_TASK) as u64;
    let commands = read_concurrently(&server, &cache).await;
    assert_eq!(cache.read_batches(), None);
    assert_eq!(commands, reads);
}

/// Shared reads that time out (a paused server) send every caller in them
/// to its loader; none fails, none waits past the timeout for long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_shared_read_runs_every_callers_loader() {
    let server = cache_tests::RedisServer::start();
    let cache = Cache::builder()
        .url(server.url())
        .prefix("coalesce-pause")
        .op_timeout(Duration::from_millis(100))
        .build()
        .await
        .expect("cache");
    let opts = Options::new().ttl(Duration::from_secs(300));
    for k in 0..KEYS {
        let fill = opts.clone().function("fill");
        let v: Result<usize, Infallible> = cache
            .get_or_load(format!("k{k}"), &fill, || async move { Ok(k) })
            .await;
        assert_eq!(v.unwrap(), k);
    }
    let opts = opts.function("read");
    let before = cache.stats();
    let batches_before = cache.read_batches().expect("coalescing on");
    // Keep reads in flight so that later ones are batched, then pause.
    let start = Arc::new(tokio::sync::Barrier::new(TASKS + 1));
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (cache, opts, start) = (cache.clone(), opts.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            for i in 0..10 {
                let k = (t * 13 + i) % KEYS;
                let v: Result<usize, Infallible> = cache
                    .get_or_load(format!("k{k}"), &opts, || async move { Ok(k) })
                    .await;
                assert_eq!(v.unwrap(), k, "a read during the pause returns the value");
            }
        }));
    }
    server.pause_clients(1_000).await;
    start.wait().await;
    for t in tasks {
        t.await.expect("reader");
    }
    let after = cache.stats();
    let loaded = after.loads - before.loads;
    eprintln!(
        "loaded during the pause: {loaded}; {:?}; {:?}",
        cache.read_batches(),
        after.total
    );
    assert!(loaded > 0, "reads timed out and ran their loaders");
    let batches = cache.read_batches().expect("coalescing on");
    let failed = batches.failed_reads - batches_before.failed_reads;
    assert!(
        batches.failed_batches > batches_before.failed_batches && failed > 0,
        "shared reads failed too: {batches:?}"
    );
    assert!(
        loaded >= failed,
        "each of the {failed} reads in a failed batch ran its loader ({loaded} loads)"
    );
    assert!(after.errors > before.errors);
    assert_eq!(
        (after.hits - before.hits) + (after.misses - before.misses),
        (TASKS * 10) as u64,
        "every read was a hit or ran its loader"
    );
}
