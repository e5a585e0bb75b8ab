//! A small user service: an HTTP API (axum) over PostgreSQL, cached in Redis.
//!
//! * `GET /users/{id}`: `#[cached]` (cache-aside, tagged);
//! * `PUT /users/{id}` with `{"name": ".."}`: `strategy = "through"`, so the
//!   next read is a hit with the new name;
//! * `DELETE /users/{id}`: `#[invalidates]` its key and the `users` tag;
//! * `GET /metrics`: Prometheus text, including the cache's counters.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use cache_runtime::{Cache, cached, invalidates};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};

/// A user row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: i64,
    pub name: String,
}

/// Body of `PUT /users/{id}`.
#[derive(Debug, Deserialize)]
pub struct Rename {
    pub name: String,
}

/// The service's state: the database, the cache and the metrics handle.
pub struct App {
    pub db: tokio_postgres::Client,
    pub cache: Cache,
    pub metrics: PrometheusHandle,
}

/// Errors of the data layer.
#[derive(Debug)]
pub enum DbError {
    NotFound,
    Db(String),
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        DbError::Db(e.to_string())
    }
}

impl App {
    /// Creates the table if needed.
    pub async fn migrate(&self) -> Result<(), DbError> {
        self.db
            .batch_execute("CREATE TABLE IF NOT EXISTS service_users (id BIGINT PRIMARY KEY, name TEXT NOT NULL)")
            .await?;
        Ok(())
    }

    /// Reads a user; cached for ten minutes, tagged so all users can be dropped at once.
    #[cached(key = "user:{id}", ttl = "10m", tags = ["users"], cache = self.cache)]
    pub async fn user(&self, id: i64) -> Result<User, DbError> {
        let row = self
            .db
            .query_opt("SELECT id, name FROM service_users WHERE id = $1", &[&id])
            .await?
            .ok_or(DbError::NotFound)?;
        Ok(User {
            id: row.get(0),
            name: row.get(1),
        })
    }

    /// Creates or renames a user; the returned row is written through to the cache.
    #[cached(key = "user:{id}", ttl = "10m", tags = ["users"], strategy = "through", cache = self.cache)]
    pub async fn save(&self, id: i64, name: String) -> Result<User, DbError> {
        let row = self
            .db
            .query_one(
                "INSERT INTO service_users (id, name) VALUES ($1, $2)
                 ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name RETURNING id, name",
                &[&id, &name],
            )
            .await?;
        Ok(User {
            id: row.get(0),
            name: row.get(1),
        })
    }

    /// Deletes a user, then its cache entry.
    #[invalidates(keys = ["user:{id}"], cache = self.cache)]
    pub async fn delete(&self, id: i64) -> Result<(), DbError> {
        self.db
            .execute("DELETE FROM service_users WHERE id = $1", &[&id])
            .await?;
        Ok(())
    }
}

fn status(e: DbError) -> (StatusCode, String) {
    match e {
        DbError::NotFound => (StatusCode::NOT_FOUND, "no such user".into()),
        DbError::Db(msg) => (StatusCode::INTERNAL_SERVER_ERROR, msg),
    }
}

async fn get_user(
    State(app): State<Arc<App>>,
    Path(id): Path<i64>,
) -> Result<Json<User>, (StatusCode, String)> {
    app.user(id).await.map(Json).map_err(status)
}

async fn put_user(
    State(app): State<Arc<App>>,
    Path(id): Path<i64>,
    Json(body): Json<Rename>,
) -> Result<Json<User>, (StatusCode, String)> {
    app.save(id, body.name).await.map(Json).map_err(status)
}

async fn delete_user(
    State(app): State<Arc<App>>,
    Path(id): Path<i64>,
) -> Result<StatusCode, (StatusCode, String)> {
    app.delete(id)
        .await
        .map(|()| StatusCode::NO_CONTENT)
        .map_err(status)
}

async fn metrics(State(app): State<Arc<App>>) -> String {
    app.metrics.render()
}

/// The HTTP routes.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route(
            "/users/{id}",
            get(get_user).put(put_user).delete(delete_user),
        )
        .route("/metrics", get(metrics))
        .with_state(app)
}
