//! Boots the service against the local PostgreSQL and a harness Redis and
//! checks it through HTTP.

use std::sync::Arc;

use cache_example_service::{App, router};
use cache_runtime::Cache;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 request; returns (status, body).
async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains("function=\"cache_example_service::user\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_hit_updates_show_and_metrics_move() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).unwrap();

    let pg = std::env::var("CACHE_TEST_PG").unwrap_or_else(|_| {
        "host=127.0.0.1 port=5432 user=postgres password=postgres dbname=test".into()
    });
    let (db, conn) = tokio_postgres::connect(&pg, tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 (run scripts/install-postgres.sh)");
    tokio::spawn(conn);
    // A schema of this run's own: rows left by an aborted run cannot meet it.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let schema = format!("service_test_{}_{nanos}", std::process::id());
    db.batch_execute(&format!(
        "CREATE SCHEMA {schema}; SET search_path TO {schema}"
    ))
    .await
    .unwrap();
    let redis = cache_tests::RedisServer::start();
    let cache = Cache::builder()
        .url(redis.url())
        .prefix("service")
        .build()
        .await
        .unwrap();
    let app = Arc::new(App {
        db,
        cache,
        metrics: handle,
    });
    app.migrate().await.unwrap();
    let id = i64::from(std::process::id()) * 1000;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, router(app.clone())).into_future());

    let (s, _) = http(addr, "GET", &format!("/users/{id}"), None).await;
    assert_eq!(s, 404);
    let (s, body) = http(
        addr,
        "PUT",
        &format!("/users/{id}"),
        Some(r#"{"name":"Ada"}"#),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    for _ in 0..3 {
        let (s, body) = http(addr, "GET", &format!("/users/{id}"), None).await;
        assert_eq!((s, body.contains("Ada")), (200, true), "{body}");
    }
    let (_, m) = http(addr, "GET", "/metrics", None).await;
    let hits = counter(&m, "cache_hits_total");
    assert!(hits >= 3, "reads after the write are hits: {m}");

    let (s, _) = http(
        addr,
        "PUT",
        &format!("/users/{id}"),
        Some(r#"{"name":"Grace"}"#),
    )
    .await;
    assert_eq!(s, 200);
    let (_, body) = http(addr, "GET", &format!("/users/{id}"), None).await;
    assert!(
        body.contains("Grace"),
        "the update is visible on the next read: {body}"
    );
    let (_, m) = http(addr, "GET", "/metrics", None).await;
    assert!(
        counter(&m, "cache_hits_total") > hits,
        "the hit counter moved"
    );

    let (s, _) = http(addr, "DELETE", &format!("/users/{id}"), None).await;
    assert_eq!(s, 204);
    let (s, _) = http(addr, "GET", &format!("/users/{id}"), None).await;
    assert_eq!(s, 404, "deleted and invalidated");
    app.db
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}
