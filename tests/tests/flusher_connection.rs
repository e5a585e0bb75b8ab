//! An idle write-behind flusher waits on its queue with a blocking read
//! (`XREADGROUP BLOCK`, up to 1 s) on a connection of its own, and keeps that
//! connection: its response timeout outlasts the blocking read. (With the
//! client's default response timeout, 500 ms, every idle read timed out and
//! the flusher reconnected, about twice a second.)

use std::time::{Duration, Instant};

use cache_runtime::{Cache, cached};

/// A write-behind function with the default flush interval (5 s), so the
/// flusher's blocking read lasts the longest it can (1 s).
#[cached(key = "idle:{id}", ttl = 60, strategy = "behind", value = v)]
async fn save_idle(id: u64, v: i64) -> Result<(), String> {
    let _ = (id, v);
    Ok(())
}

/// A field of `INFO <section>`.
async fn info_field(
    conn: &mut redis::aio::MultiplexedConnection,
    section: &str,
    field: &str,
) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query_async(conn)
        .await
        .expect("INFO");
    let prefix = format!("{field}:");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| {
            let v = v.split(',').next().unwrap_or(v);
            v.trim_start_matches("calls=")
                .trim()
                .parse()
                .expect("a number")
        })
        .unwrap_or(0)
}

/// Idle rounds of the flusher so far (each claims pending entries first).
async fn rounds(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    info_field(conn, "commandstats", "cmdstat_xautoclaim").await
}

async fn wait_for_rounds(conn: &mut redis::aio::MultiplexedConnection, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while rounds(conn).await < n {
        assert!(Instant::now() < deadline, "the flusher ran {n} rounds");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_flusher_keeps_its_connection() {
    let server = cache_tests::RedisServer::start();
    let mut admin = server.conn().await;
    let cache = Cache::builder()
        .url(server.url())
        .prefix("idle")
        .build()
        .await
        .expect("cache")
        .install()
        .expect("install");
    save_idle(1, 1).await.expect("queued");
    // The flusher is up and has flushed: from here on its rounds are idle.
    let start = rounds(&mut admin).await + 1;
    wait_for_rounds(&mut admin, start).await;
    let connections = info_field(&mut admin, "stats", "total_connections_received").await;
    wait_for_rounds(&mut admin, start + 3).await;
    let after = info_field(&mut admin, "stats", "total_connections_received").await;
    assert_eq!(
        after - connections,
        0,
        "three idle rounds, each a blocking read of 1 s, opened no connection"
    );
    assert_eq!(
        cache
            .write_behind_depth(concat!(module_path!(), "::save_idle"))
            .await
            .expect("depth")
            .0,
        0
    );
}
