//! Runs the user service.
//!
//! ```text
//! DATABASE_URL="host=127.0.0.1 user=postgres password=postgres dbname=test" \
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p cache-example-service
//! curl -X PUT localhost:3000/users/1 -H 'content-type: application/json' -d '{"name":"Ada"}'
//! curl localhost:3000/users/1; curl localhost:3000/metrics
//! ```

use std::sync::Arc;

use cache_example_service::{App, router};
use cache_runtime::Cache;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The recorder first, so that the cache's counters are registered with it.
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    let db_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 user=postgres password=postgres dbname=test".into());
    let (db, conn) = tokio_postgres::connect(&db_url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let builder = Cache::builder().prefix("service");
    let cache = match std::env::var("REDIS_URL") {
        Ok(url) => builder.url(url),
        Err(_) => builder.memory(),
    }
    .build()
    .await?;
    let app = Arc::new(App { db, cache, metrics });
    app.migrate().await.map_err(|e| format!("{e:?}"))?;
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{addr}");
    axum::serve(listener, router(app)).await?;
    Ok(())
}
