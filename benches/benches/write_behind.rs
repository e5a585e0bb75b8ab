//! Write-behind: acknowledged writes per second against direct PostgreSQL
//! upserts, and how many writes coalesce under a skewed key distribution.
//!
//! ```text
//! cargo bench -p cache-benches --bench write_behind
//! ```
//! PostgreSQL: `CACHE_TEST_PG`, default
//! `host=127.0.0.1 port=5432 user=postgres password=postgres dbname=test`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use cache_runtime::{Cache, cached};
use tokio::sync::OnceCell;

use cache_benches::{Verdict, report};

const TASKS: u64 = 64;
const WRITES_PER_TASK: u64 = 500;
const KEYS: f64 = 1000.0;

static TABLE: Mutex<String> = Mutex::new(String::new());
static PG: OnceCell<tokio_postgres::Client> = OnceCell::const_new();
static BODY_RUNS: AtomicU64 = AtomicU64::new(0);

async fn pg() -> &'static tokio_postgres::Client {
    PG.get_or_init(|| async {
        let url = std::env::var("CACHE_TEST_PG").unwrap_or_else(|_| {
            "host=127.0.0.1 port=5432 user=postgres password=postgres dbname=test".into()
        });
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL");
        tokio::spawn(conn);
        client
    })
    .await
}

async fn upsert(k: i64, v: i64) -> Result<(), String> {
    let t = TABLE.lock().map_err(|e| e.to_string())?.clone();
    pg().await
        .execute(
            &format!("INSERT INTO {t} (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v"),
            &[&k, &v],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[cached(key = "acct:{k}", ttl = 600, strategy = "behind", value = v, batch = 500, flush_interval = "20ms")]
async fn put(k: i64, v: i64) -> Result<(), String> {
    BODY_RUNS.fetch_add(1, Relaxed);
    upsert(k, v).await
}

/// A skewed key: most writes go to a few keys.
fn skewed_key() -> i64 {
    let u: f64 = rand::random();
    (KEYS * u * u * u) as i64
}

async fn run_tasks<F, Fut>(f: F) -> f64
where
    F: Fn(i64, i64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let f = f.clone();
            tokio::spawn(async move {
                for i in 0..WRITES_PER_TASK {
                    f(skewed_key(), (t * WRITES_PER_TASK + i) as i64)
                        .await
                        .expect("write");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    (TASKS * WRITES_PER_TASK) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let t = format!("bench_wb_{}", std::process::id());
        *TABLE.lock().expect("table") = t.clone();
        pg().await
            .batch_execute(&format!("DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (k BIGINT PRIMARY KEY, v BIGINT NOT NULL)"))
            .await
            .expect("create table");
        let server = cache_tests::RedisServer::start();
        let cache = Cache::builder().url(server.url()).prefix("wbbench").build().await.expect("cache").install().expect("install");

        let direct = run_tasks(upsert).await;
        let acked = run_tasks(put).await;
        let drain = Instant::now();
        cache.shutdown().await.expect("drain");
        let drained_in = drain.elapsed();
        let runs = BODY_RUNS.load(Relaxed);
        let total = TASKS * WRITES_PER_TASK;
        pg().await.batch_execute(&format!("DROP TABLE {t}")).await.expect("drop table");

        println!("{TASKS} tasks × {WRITES_PER_TASK} writes, keys skewed (k = {KEYS}·u³), PostgreSQL on loopback");
        println!();
        println!("| path | writes/s | ratio |");
        println!("|---|---|---|");
        println!("| direct upserts (one pipelined tokio-postgres connection) | {direct:.0} | 1.00× |");
        println!("| write-behind, acknowledged | {acked:.0} | {:.2}× |", acked / direct);
        println!();
        println!(
            "coalescing: {total} acknowledged writes ran the body {runs} times ({:.1} writes per upsert); the queue drained in {:.2} s",
            total as f64 / runs.max(1) as f64,
            drained_in.as_secs_f64()
        );
        println!();
        report(
            "write_behind",
            &[
                Verdict::info("acknowledged writes, write-behind / direct upserts (one run)", format!("{:.2}×", acked / direct)),
                Verdict::info("writes per body run (coalescing)", format!("{:.1}", total as f64 / runs.max(1) as f64)),
            ],
        );
    });
}
