//! Hit path on a Redis Cluster against the same hit on one redis-server, in
//! the same run: an untagged entry (one `GET`) and an entry with one tag (an
//! `MGET` whose keys are in two slots, which the cluster client splits by
//! node).
//!
//! ```text
//! cargo bench -p cache-benches --bench cluster_hit
//! ```
//!
//! Rounds alternate the two stores so that machine noise hits both alike;
//! the table shows medians over rounds and their ratio. The one-server side
//! sends one command per read (`coalesce_reads(false)`), as the cluster does,
//! so that the two stores' paths are compared like for like.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use cache_runtime::{Cache, Options};

use cache_benches::{User, Verdict, median, report, user};

const ROUNDS: usize = 11;
const OPS: usize = 2000;
const TASKS: usize = 64;
const OPS_PER_TASK: usize = 200;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn hit(cache: &Cache, opts: &Options) -> User {
    let v: Result<User, Infallible> = cache
        .get_or_load("user:1", opts, || async { Ok(user(1)) })
        .await;
    match v {
        Ok(u) => u,
    }
}

/// Microseconds per call, one task.
async fn latency(cache: &Cache, opts: &Options) -> f64 {
    let t = Instant::now();
    for _ in 0..OPS {
        std::hint::black_box(hit(cache, opts).await);
    }
    t.elapsed().as_secs_f64() * 1e6 / OPS as f64
}

/// Calls per second, `TASKS` tasks.
async fn throughput(cache: &Cache, opts: &Options) -> f64 {
    let t = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (cache, opts) = (cache.clone(), opts.clone());
            tokio::spawn(async move {
                for _ in 0..OPS_PER_TASK {
                    std::hint::black_box(hit(&cache, &opts).await);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    (TASKS * OPS_PER_TASK) as f64 / t.elapsed().as_secs_f64()
}

/// Medians over alternating rounds: (standalone, cluster).
async fn compare<F>(single: &Cache, cluster: &Cache, opts: &Options, measure: F) -> (f64, f64)
where
    F: AsyncFn(&Cache, &Options) -> f64,
{
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        if round % 2 == 0 {
            a.push(measure(single, opts).await);
            b.push(measure(cluster, opts).await);
        } else {
            b.push(measure(cluster, opts).await);
            a.push(measure(single, opts).await);
        }
    }
    (median(a), median(b))
}

async fn run() {
    let server = cache_tests::RedisServer::start();
    let nodes = cache_tests::RedisCluster::start(3);
    let build = |b: cache_runtime::CacheBuilder| async move {
        b.prefix("bench")
            .op_timeout(Duration::from_secs(1))
            .build()
            .await
            .expect("cache")
    };
    let single = build(Cache::builder().url(server.url()).coalesce_reads(false)).await;
    let cluster = build(Cache::builder().cluster(nodes.urls())).await;
    let plain = Options::new().ttl(Duration::from_secs(3600));
    let tagged = plain.clone().tags(["users"]);
    println!(
        "cluster hit path, {ROUNDS} alternating rounds, medians (one redis-server against a cluster of 3 primaries, loopback)"
    );
    println!();
    println!("| measure | one server | cluster | ratio |");
    println!("|---|---|---|---|");
    let mut verdicts = Vec::new();
    for (name, opts) in [("untagged", &plain), ("one tag", &tagged)] {
        // Warm up: fill the entry (per store, with these options), connect.
        for _ in 0..200 {
            hit(&single, opts).await;
            hit(&cluster, opts).await;
        }
        let loads = (single.stats().loads, cluster.stats().loads);
        let (a, b) = compare(&single, &cluster, opts, latency).await;
        println!(
            "| {name}: latency, 1 task ({OPS} calls/round) | {a:.1} µs | {b:.1} µs | {:.3}× |",
            b / a
        );
        let latency_ratio = b / a;
        let (a, b) = compare(&single, &cluster, opts, throughput).await;
        println!(
            "| {name}: throughput, {TASKS} tasks ({OPS_PER_TASK} calls each/round) | {a:.0} /s | {b:.0} /s | {:.3}× |",
            b / a
        );
        verdicts.push(Verdict::info(
            format!("{name} hit on a cluster / one server: latency, throughput"),
            format!("{latency_ratio:.3}×, {:.3}×", b / a),
        ));
        assert_eq!(
            (single.stats().loads, cluster.stats().loads),
            loads,
            "every measured call was a hit"
        );
        // The next options change the entry's tags: start from a miss.
        single
            .invalidate_keys(["user:1"])
            .await
            .expect("invalidate");
        cluster
            .invalidate_keys(["user:1"])
            .await
            .expect("invalidate");
    }
    println!();
    report("cluster_hit", &verdicts);
}
