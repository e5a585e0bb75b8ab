//! Durability of write-behind against a real PostgreSQL table: a child
//! process gets 10 000 writes acknowledged and is killed with SIGKILL in the
//! middle of flushing them; a new process builds a `Cache` and drains. The
//! table then holds, for every key, the last acknowledged value, and no key's
//! history goes backwards.
//!
//! PostgreSQL: `CACHE_TEST_PG`, by default
//! `host=127.0.0.1 port=5432 user=postgres password=postgres dbname=test`
//! (scripts/install-postgres.sh sets one up).

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cache_runtime::{Cache, cached};
use tokio::sync::OnceCell;

const WRITES: i64 = 10_000;
const KEYS: i64 = 100;

fn pg_config() -> String {
    std::env::var("CACHE_TEST_PG").unwrap_or_else(|_| {
        "host=127.0.0.1 port=5432 user=postgres password=postgres dbname=test".to_string()
    })
}

static TABLE: Mutex<String> = Mutex::new(String::new());
static PG: OnceCell<tokio_postgres::Client> = OnceCell::const_new();

async fn pg() -> Result<&'static tokio_postgres::Client, String> {
    PG.get_or_try_init(|| async {
        let (client, conn) = tokio_postgres::connect(&pg_config(), tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(client)
    })
    .await
}

fn table() -> String {
    TABLE.lock().unwrap().clone()
}

/// The write: an upsert, plus a history row to check ordering. Slowed down a
/// little so that the kill lands in the middle of the flush.
#[cached(key = "row:{k}", ttl = 600, strategy = "behind", value = v, batch = 200, flush_interval = "10ms")]
async fn put(k: i64, v: i64) -> Result<(), String> {
    let t = table();
    let db = pg().await?;
    db.execute(
        &format!("INSERT INTO {t}_hist (k, v) VALUES ($1, $2)"),
        &[&k, &v],
    )
    .await
    .map_err(|e| e.to_string())?;
    db.execute(
        &format!(
            "INSERT INTO {t} (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v"
        ),
        &[&k, &v],
    )
    .await
    .map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_millis(1)).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_flush_loses_nothing() {
    let server = cache_tests::shared();
    let prefix = cache_tests::unique_prefix("wbcrash");
    let t = format!("wb_crash_{}", std::process::id());
    *TABLE.lock().unwrap() = t.clone();
    let db = pg()
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 (run scripts/install-postgres.sh)");
    db.batch_execute(&format!(
        "DROP TABLE IF EXISTS {t}; DROP TABLE IF EXISTS {t}_hist;
         CREATE TABLE {t} (k BIGINT PRIMARY KEY, v BIGINT NOT NULL);
         CREATE TABLE {t}_hist (seq BIGSERIAL PRIMARY KEY, k BIGINT NOT NULL, v BIGINT NOT NULL);"
    ))
    .await
    .unwrap();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "writer_child",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("WB_URL", server.url())
        .env("WB_PREFIX", &prefix)
        .env("WB_TABLE", &t)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut conn = server.conn().await;
    let acked: Option<(String, String)> = redis::cmd("BLPOP")
        .arg(format!("{prefix}:acked"))
        .arg(120)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(acked.is_some(), "the child acknowledged its writes");
    let stream = format!("{prefix}:wb:{}", concat!(module_path!(), "::put"));
    let left: u64 = redis::cmd("XLEN")
        .arg(&stream)
        .query_async(&mut conn)
        .await
        .unwrap();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(left > 0, "the child was killed with writes still queued");

    // A new process (this one) builds a Cache with the same prefix and drains.
    let cache = Cache::builder()
        .url(server.url())
        .prefix(&prefix)
        .build()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done: i64 = db
            .query_one(&format!("SELECT count(*) FROM {t} WHERE v = 9900 + k"), &[])
            .await
            .unwrap()
            .get(0);
        if done == KEYS
            && cache
                .write_behind_depth(concat!(module_path!(), "::put"))
                .await
                .unwrap()
                .0
                == 0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not drained: {done} of {KEYS} keys final"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cache.shutdown().await.unwrap();

    let rows = db
        .query(&format!("SELECT k, v FROM {t} ORDER BY k"), &[])
        .await
        .unwrap();
    assert_eq!(rows.len() as i64, KEYS);
    for row in rows {
        let (k, v): (i64, i64) = (row.get(0), row.get(1));
        assert_eq!(v, WRITES - KEYS + k, "key {k}: the last acknowledged value");
    }
    // Per key, the applied values never go backwards (a value may be applied
    // twice: the one the killed flusher ran but had not acknowledged).
    let hist = db
        .query(&format!("SELECT k, v FROM {t}_hist ORDER BY seq"), &[])
        .await
        .unwrap();
    let mut last = std::collections::HashMap::new();
    for row in &hist {
        let (k, v): (i64, i64) = (row.get(0), row.get(1));
        let prev = last.insert(k, v).unwrap_or(-1);
        assert!(v >= prev, "key {k} went from {prev} back to {v}");
    }
    db.batch_execute(&format!("DROP TABLE {t}; DROP TABLE {t}_hist;"))
        .await
        .unwrap();
}

/// Run by `sigkill_mid_flush_loses_nothing` in a child process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of sigkill_mid_flush_loses_nothing"]
async fn writer_child() {
    let (Ok(url), Ok(prefix), Ok(t)) = (
        std::env::var("WB_URL"),
        std::env::var("WB_PREFIX"),
        std::env::var("WB_TABLE"),
    ) else {
        panic!("run by sigkill_mid_flush_loses_nothing");
    };
    *TABLE.lock().unwrap() = t;
    Cache::builder()
        .url(&url)
        .prefix(&prefix)
        .build()
        .await
        .unwrap()
        .install()
        .unwrap();
    for i in 0..WRITES {
        put(i % KEYS, i).await.unwrap();
    }
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("RPUSH")
        .arg(format!("{prefix}:acked"))
        .arg(1)
        .query_async(&mut c)
        .await
        .unwrap();
    std::future::pending::<()>().await;
}
