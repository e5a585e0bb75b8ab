//! What the benchmarks share: the record they cache.

use serde::{Deserialize, Serialize};

/// A typical record: a few strings, a list, a number and a flag (49 bytes
/// of postcard).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    /// The key.
    pub id: u64,
    /// A display name.
    pub name: String,
    /// An e-mail address.
    pub email: String,
    /// Role names.
    pub roles: Vec<String>,
    /// Whether the account is active.
    pub active: bool,
}

/// The record of user `id`.
pub fn user(id: u64) -> User {
    User {
        id,
        name: format!("User Number {id}"),
        email: format!("user{id}@example.com"),
        roles: vec!["reader".into(), "writer".into()],
        active: true,
    }
}

/// The median of `v` (the upper one of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// `redis_version` from `INFO server`.
pub async fn server_version(conn: &mut redis::aio::MultiplexedConnection) -> String {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(conn)
        .await
        .unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .trim()
        .to_string()
}

/// A cache on the server at `url` under `prefix`, installed as the process's
/// global cache (the one `#[cached]` uses without `cache = ..`).
pub async fn installed_cache(url: String, prefix: &str) -> &'static cache_runtime::Cache {
    cache_runtime::Cache::builder()
        .url(url)
        .prefix(prefix)
        .build()
        .await
        .expect("cache")
        .install()
        .expect("install")
}

/// The `cached` crate's Redis store of `User`s under `prefix` at `url`: what
/// its `redis = true, ttl_secs = 3600` builds (no refresh on hit), with the
/// URL given instead of read from `CACHED_REDIS_CONNECTION_STRING`.
pub async fn peer_store(prefix: &str, url: &str) -> cached::AsyncRedisCache<u64, User> {
    cached::AsyncRedisCache::builder(prefix)
        .ttl(std::time::Duration::from_secs(3600))
        .connection_string(url)
        .build()
        .await
        .expect("AsyncRedisCache")
}

/// One line of a bench's verdict: a measure, what it came to, its target
/// (empty when the row only informs) and whether it was met.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// What was measured.
    pub measure: String,
    /// The figure, with its unit.
    pub result: String,
    /// The target, in words (`≤ 1.05× raw`); empty for a row that informs.
    pub target: String,
    /// Whether the target was met (ignored without a target).
    pub met: bool,
}

impl Verdict {
    /// A row with a target.
    pub fn target(
        measure: impl Into<String>,
        result: impl Into<String>,
        target: impl Into<String>,
        met: bool,
    ) -> Self {
        Self {
            measure: measure.into(),
            result: result.into(),
            target: target.into(),
            met,
        }
    }

    /// A row without a target.
    pub fn info(measure: impl Into<String>, result: impl Into<String>) -> Self {
        Self::target(measure, result, "", true)
    }

    fn row(&self, bench: &str) -> String {
        let met = match (self.target.is_empty(), self.met) {
            (true, _) => "",
            (false, true) => "yes",
            (false, false) => "**no**",
        };
        let target = if self.target.is_empty() {
            "—"
        } else {
            &self.target
        };
        format!(
            "| {bench} | {} | {} | {target} | {met} |",
            self.measure, self.result
        )
    }
}

/// The header of a verdict table (as [`report`] prints it and
/// `scripts/bench.sh` gathers it).
pub const VERDICT_HEADER: &str =
    "| bench | measure | result | target | met? |\n|---|---|---|---|---|";

/// Prints a bench's verdicts as a table and, when `BENCH_SUMMARY` names a
/// file, appends its rows there for `scripts/bench.sh`'s closing table.
pub fn report(bench: &str, verdicts: &[Verdict]) {
    println!("Against the targets:");
    println!();
    println!("{VERDICT_HEADER}");
    let rows: Vec<String> = verdicts.iter().map(|v| v.row(bench)).collect();
    for r in &rows {
        println!("{r}");
    }
    println!();
    if let Some(path) = std::env::var_os("BENCH_SUMMARY") {
        use std::io::Write as _;
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| rows.iter().try_for_each(|r| writeln!(f, "{r}")));
        if let Err(e) = appended {
            eprintln!("BENCH_SUMMARY {}: {e}", path.to_string_lossy());
        }
    }
}

/// The count in the environment variable `var` (for a side run alone under
/// a profiler, `*_CALLS`), else `default`.
///
/// # Panics
///
/// When `var` is set to something other than a count.
pub fn count_from_env(var: &str, default: usize) -> usize {
    match std::env::var(var) {
        Ok(n) => n
            .parse()
            .unwrap_or_else(|_| panic!("{var}={n}: expected a count")),
        Err(_) => default,
    }
}
