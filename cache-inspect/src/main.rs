//! `cache-inspect`: look into a cache from a shell.
//!
//! ```text
//! cache-inspect --url redis://127.0.0.1:6379 --prefix myapp entry user:42
//! cache-inspect --prefix myapp tags users user:42
//! cache-inspect --prefix myapp invalidate-tag users
//! cache-inspect --prefix myapp invalidate-pattern 'search:*'
//! cache-inspect --prefix myapp keys 'user:*'
//! cache-inspect --prefix myapp queue myapp::save_user
//! cache-inspect --prefix myapp dead myapp::save_user
//! cache-inspect --cluster redis://10.0.0.1:6379 --cluster redis://10.0.0.2:6379 --prefix myapp keys 'user:*'
//! ```

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use cache_runtime::{Cache, Options};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "Look into a cache-runtime cache on Redis")]
struct Cli {
    /// Redis URL (`redis://`, `rediss://`); the password is never printed.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    url: String,
    /// A seed node of a Redis Cluster (repeat for more); used instead of `--url`.
    #[arg(long = "cluster", value_name = "URL")]
    cluster: Vec<String>,
    /// The cache's key prefix.
    #[arg(long, default_value = "cache")]
    prefix: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show an entry's envelope: codec, ttl left, freshness, compute time, tags.
    Entry {
        /// The key as the application renders it, e.g. `user:42`.
        key: String,
        /// Schema version of the entry.
        #[arg(long, default_value_t = 1)]
        version: u32,
    },
    /// List keys whose entries match a glob pattern (SCAN, never KEYS).
    Keys {
        pattern: String,
        /// Stop after this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show the current version token of tags.
    Tags { tags: Vec<String> },
    /// Delete keys (and their leases).
    InvalidateKey { keys: Vec<String> },
    /// Invalidate tags: every entry carrying one becomes a miss.
    InvalidateTag { tags: Vec<String> },
    /// Delete every entry matching a glob pattern (SCAN, never KEYS).
    InvalidatePattern { pattern: String },
    /// Write-behind queue depth and dead letters of a function (its path).
    Queue { function: String },
    /// List a write-behind function's dead letters: key, error, attempts.
    Dead {
        function: String,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

fn ago_or_in(t: SystemTime) -> String {
    match t.duration_since(SystemTime::now()) {
        Ok(d) => format!("in {:.1} s", d.as_secs_f64()),
        Err(e) => format!("{:.1} s ago", e.duration().as_secs_f64()),
    }
}

async fn run(cli: Cli) -> Result<(), cache_runtime::Error> {
    let builder = if cli.cluster.is_empty() {
        Cache::builder().url(&cli.url)
    } else {
        Cache::builder().cluster(&cli.cluster)
    };
    let cache = builder
        .prefix(&cli.prefix)
        .op_timeout(Duration::from_secs(5))
        .build()
        .await?;
    match cli.command {
        Command::Entry { key, version } => match cache
            .inspect(&key, &Options::new().version(version))
            .await?
        {
            None => println!("{key}: no entry"),
            Some(e) => {
                println!("stored key   {}", e.stored_key);
                println!("size         {} bytes", e.size);
                if let Some(why) = &e.invalid {
                    println!("INVALID      {why} (reads treat it as a miss and delete it)");
                    return Ok(());
                }
                println!("format       {}", e.format);
                println!(
                    "codec        {}{}",
                    e.codec,
                    if e.encrypted { " (encrypted)" } else { "" }
                );
                if e.none {
                    println!("value        a cached none");
                }
                match e.ttl {
                    Some(t) => println!("ttl left     {:.1} s", t.as_secs_f64()),
                    None => println!("ttl left     none (no expiry!)"),
                }
                println!("fresh until  {}", ago_or_in(e.fresh_until));
                println!("computed in  {:?}", e.compute_time);
                for (name, recorded, current) in &e.tags {
                    let state = if current.as_deref() == Some(recorded.as_str()) {
                        "current"
                    } else {
                        "INVALIDATED"
                    };
                    println!(
                        "tag          {name}: recorded {recorded}, now {} ({state})",
                        current.as_deref().unwrap_or("-")
                    );
                }
                println!(
                    "readable     {}",
                    if e.tags_current { "yes" } else { "no: a miss" }
                );
            }
        },
        Command::Keys { pattern, limit } => {
            for key in cache.keys_matching(&pattern, limit).await? {
                println!("{key}");
            }
        }
        Command::Tags { tags } => {
            let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
            for (tag, v) in tags.iter().zip(cache.tag_versions(&refs).await?) {
                println!("{tag}: {}", v.as_deref().unwrap_or("(no version yet)"));
            }
        }
        Command::InvalidateKey { keys } => println!(
            "deleted {} stored keys",
            cache.invalidate_keys(&keys).await?
        ),
        Command::InvalidateTag { tags } => {
            cache.invalidate_tags(&tags).await?;
            println!("invalidated {} tags", tags.len());
        }
        Command::InvalidatePattern { pattern } => {
            println!(
                "deleted {} stored keys",
                cache.invalidate_pattern(&pattern).await?
            )
        }
        Command::Queue { function } => {
            let (queued, dead) = cache.write_behind_depth(&function).await?;
            println!("{function}: {queued} queued, {dead} dead letters");
        }
        Command::Dead { function, limit } => {
            for d in cache.dead_letters(&function, limit).await? {
                println!(
                    "{}  key {}  after {} attempts: {}",
                    d.id, d.key, d.attempts, d.error
                );
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cache-inspect: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cache-inspect: {e}");
            ExitCode::FAILURE
        }
    }
}
