//! Durable write-behind.
//!
//! A `strategy = "behind"` call stores its value in the cache and appends the
//! call's arguments to a Redis Stream, then returns: the caller's `Ok(())`
//! means both are in Redis. A background flusher per function runs the
//! function's body later, in batches, through a consumer group:
//!
//! * **One flusher at a time** per function, across processes (a lease,
//!   renewed while it works), so writes to one key are applied in order.
//! * **Coalescing**: of several writes to one key in a batch only the last
//!   runs; the earlier ones are acknowledged with it.
//! * **Retries** with exponential backoff; an entry that fails `max_attempts`
//!   times moves to the dead-letter stream `<stream>:dead`. Attempts are the
//!   group's delivery count of the entry, kept by Redis: they survive the
//!   flusher's process (a poison entry that crashes it still ends up a dead
//!   letter).
//! * **Crash safety**: entries are acknowledged only after their body
//!   succeeded. A process killed mid-flush leaves them pending in the group;
//!   the next flusher (in any process that builds a `Cache` with the same
//!   prefix) claims and runs them before anything newer. Handlers are
//!   registered statically (`linkme`), so that process need not call the
//!   function first.
//! * `Cache::shutdown` drains every stream before it returns.
//!
//! What survives what: an application crash loses nothing that was
//! acknowledged. A Redis crash loses what Redis loses: with
//! `appendonly yes` + `appendfsync always` nothing, with `everysec` up to about
//! a second of acknowledged writes, without persistence everything not yet flushed.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::store::conn::{Conn, Connector};
use crate::{Cache, Options};

/// The outcome of one flushed entry: `Err` carries the error's text.
pub type FlushResult = std::result::Result<(), String>;

/// Runs a batch of calls (each its serialized arguments) and reports each one.
pub type FlushFn = fn(Vec<Vec<u8>>) -> Pin<Box<dyn Future<Output = Vec<FlushResult>> + Send>>;

/// A write-behind function, registered at compile time by `#[cached(strategy = "behind")]`.
#[derive(Debug)]
pub struct FlushHandler {
    /// The function's path; also names its stream.
    pub name: &'static str,
    /// Runs the body (or the `flush_batch` function) for a batch.
    pub run: FlushFn,
    /// Most entries per batch.
    pub batch: usize,
    /// Longest wait for new entries before a flush, in milliseconds.
    pub flush_interval_ms: u64,
}

/// Every write-behind function linked into the program.
#[linkme::distributed_slice]
pub static FLUSH_HANDLERS: [FlushHandler];

/// Attempts before an entry goes to the dead-letter stream.
pub const MAX_ATTEMPTS: u32 = 5;
const GROUP: &str = "flush";
const OWNER_TTL: Duration = Duration::from_secs(2);

/// The stream of a write-behind function.
pub(crate) fn stream_key(prefix: &str, name: &str) -> String {
    format!("{prefix}:wb:{name}")
}

/// Flushers of one cache.
#[derive(Default)]
pub(crate) struct Behind {
    draining: Arc<AtomicBool>,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Cache {
    /// Starts a flusher for every registered write-behind function (Redis only).
    pub(crate) fn start_flushers(&self, connector: &Connector) {
        let mut tasks = match self.inner.behind.tasks.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        };
        for handler in FLUSH_HANDLERS.iter() {
            let flusher = Flusher {
                connector: connector.clone(),
                alive: Arc::downgrade(&self.inner),
                stats: Arc::clone(&self.inner.stats.function(handler.name)),
                handler,
                stream: stream_key(&self.inner.prefix, handler.name),
                consumer: format!("{}-{:08x}", std::process::id(), rand::random::<u32>()),
                owner_token: crate::read::random_token(),
                draining: self.inner.behind.draining.clone(),
                keyring: self.inner.keyring.clone(),
            };
            tasks.push(tokio::spawn(flusher.run()));
        }
    }

    /// Enqueues a write-behind call: stores `value` under `key` and appends
    /// `args` to the function's stream. On `Err` nothing was enqueued and the
    /// caller must run the body itself.
    #[doc(hidden)]
    pub async fn write_behind<V: Serialize + serde::de::DeserializeOwned, A: Serialize + ?Sized>(
        &self,
        function: &'static str,
        key: &str,
        value: &V,
        options: &Options,
        args: &A,
    ) -> Result<()> {
        let crate::store::Store::Redis(store) = &self.inner.store else {
            return Err(Error::Unavailable);
        };
        let stream = stream_key(&self.inner.prefix, function);
        let mut encoded = postcard::to_allocvec(args)
            .map_err(|e| Error::Config(format!("write-behind arguments: {e}")))?;
        if options.encrypt {
            // The arguments hold the value: sealed like it, bound to the stream.
            encoded = self
                .inner
                .keyring
                .seal(stream.as_bytes(), &encoded)
                .map_err(|_| crate::read::no_key())?;
        }
        let entry = self.encode_for_set(key, value, options)?;
        let fresh = crate::read::random_token();
        let write = entry.write(self.inner.tag_ttl, &fresh);
        let args = crate::store::redis::Args {
            bytes: &encoded,
            sealed: options.encrypt,
        };
        store.set_and_enqueue(&write, &stream, key, args).await
    }

    /// Runs every flusher until its stream is drained (bounded).
    pub(crate) async fn drain_flushers(&self) {
        self.inner.behind.draining.store(true, Relaxed);
        let tasks: Vec<_> = match self.inner.behind.tasks.lock() {
            Ok(mut t) => t.drain(..).collect(),
            Err(p) => p.into_inner().drain(..).collect(),
        };
        for t in tasks {
            if tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .is_err()
            {
                tracing::error!("cache: a write-behind flusher did not drain within 30 s");
            }
        }
    }

    /// Entries of a write-behind function's stream not yet flushed, and its
    /// dead letters: `(queued, dead)`.
    pub async fn write_behind_depth(&self, function: &str) -> Result<(u64, u64)> {
        let crate::store::Store::Redis(store) = &self.inner.store else {
            return Ok((0, 0));
        };
        let stream = stream_key(&self.inner.prefix, function);
        let queued = store.xlen(&stream).await?;
        let dead = store.xlen(&format!("{stream}:dead")).await?;
        Ok((queued, dead))
    }
}

struct Flusher {
    connector: Connector,
    /// The flusher ends when its cache is dropped.
    alive: std::sync::Weak<crate::cache::Inner>,
    stats: Arc<crate::stats::Counters>,
    handler: &'static FlushHandler,
    stream: String,
    consumer: String,
    owner_token: String,
    draining: Arc<AtomicBool>,
    /// Opens sealed arguments (`encrypt = true`).
    keyring: crate::crypto::Keyring,
}

/// A stream entry: id, key, serialized arguments (opened when sealed), and
/// the arguments' field as stored (dead letters keep it: sealed stays sealed).
struct Entry {
    id: String,
    key: String,
    args: Vec<u8>,
    stored: (&'static str, Vec<u8>),
}

fn field(e: &StreamId, name: &str) -> Option<Vec<u8>> {
    match e.map.get(name)? {
        redis::Value::BulkString(b) => Some(b.clone()),
        _ => None,
    }
}

/// The entries of `ids`, their sealed arguments opened with `keyring`
/// (bound to the stream `stream`).
fn entries(ids: Vec<StreamId>, keyring: &crate::crypto::Keyring, stream: &str) -> Vec<Entry> {
    ids.into_iter()
        .filter_map(|e| {
            let key = String::from_utf8(field(&e, "k")?).ok()?;
            let (args, stored) = match field(&e, "a") {
                Some(plain) => (plain.clone(), ("a", plain)),
                None => {
                    let sealed = field(&e, "A")?;
                    let args = keyring.open(stream.as_bytes(), &sealed).ok()?;
                    (args, ("A", sealed))
                }
            };
            Some(Entry {
                id: e.id,
                key,
                args,
                stored,
            })
        })
        .collect()
}

impl Flusher {
    async fn run(mut self) {
        let mut delay = Duration::from_millis(50);
        loop {
            if self.alive.strong_count() == 0 {
                return;
            }
            let conn = match self.connector.open().await {
                Ok(c) => c,
                Err(e) => {
                    if self.draining.load(Relaxed) {
                        tracing::error!(error = %e, stream = %self.stream, "cache: cannot drain write-behind queue");
                        return;
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
            delay = Duration::from_millis(50);
            match self.session(conn).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::debug!(error = %e, stream = %self.stream, "cache: write-behind flusher reconnecting");
                    if self.draining.load(Relaxed) {
                        return;
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Flushes until drained (after shutdown began) or the connection fails.
    async fn session(&mut self, mut conn: Conn) -> redis::RedisResult<()> {
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        if let Err(e) = created
            && e.code() != Some("BUSYGROUP")
        {
            return Err(e);
        }
        let owner_key = format!("{}:owner", self.stream);
        loop {
            if self.alive.strong_count() == 0 {
                return Ok(());
            }
            let draining = self.draining.load(Relaxed);
            if !self.own(&mut conn, &owner_key).await? {
                if draining {
                    return Ok(());
                }
                tokio::time::sleep(OWNER_TTL / 4).await;
                continue;
            }
            let batch = self.next_batch(&mut conn, draining).await?;
            if batch.is_empty() {
                if draining {
                    let _: () = redis::cmd("DEL")
                        .arg(&owner_key)
                        .query_async(&mut conn)
                        .await?;
                    return Ok(());
                }
                continue;
            }
            let retry_after = self.flush(&mut conn, batch).await?;
            if let Some(wait) = retry_after {
                tokio::time::sleep(wait).await;
            }
        }
    }

    /// Takes or renews the flusher lease of this stream.
    async fn own(&self, conn: &mut Conn, owner_key: &str) -> redis::RedisResult<bool> {
        let n: i64 = redis::Script::new(
            "local v = redis.call('GET', KEYS[1]) \
             if v == false then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end \
             if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end \
             return 0",
        )
        .key(owner_key)
        .arg(&self.owner_token)
        .arg(OWNER_TTL.as_millis() as u64)
        .invoke_async(conn)
        .await?;
        Ok(n == 1)
    }

    /// Pending entries first (ours, then those of flushers that died), then new ones.
    async fn next_batch(&self, conn: &mut Conn, draining: bool) -> redis::RedisResult<Vec<Entry>> {
        let count = self.handler.batch.max(1);
        let mine: StreamReadReply = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg("0")
            .query_async(conn)
            .await?;
        let mine: Vec<StreamId> = mine.keys.into_iter().flat_map(|k| k.ids).collect();
        if !mine.is_empty() {
            return Ok(entries(mine, &self.keyring, &self.stream));
        }
        let claimed: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&self.stream)
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(0)
            .arg("0-0")
            .arg("COUNT")
            .arg(count)
            .query_async(conn)
            .await?;
        if !claimed.claimed.is_empty() {
            return Ok(entries(claimed.claimed, &self.keyring, &self.stream));
        }
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count);
        if !draining {
            // Shorter than the owner lease, so the lease is renewed in time.
            let block = self
                .handler
                .flush_interval_ms
                .clamp(1, OWNER_TTL.as_millis() as u64 / 2);
            cmd.arg("BLOCK").arg(block);
        }
        let fresh: Option<StreamReadReply> = cmd
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(">")
            .query_async(conn)
            .await?;
        Ok(fresh
            .map(|r| {
                entries(
                    r.keys.into_iter().flat_map(|k| k.ids).collect(),
                    &self.keyring,
                    &self.stream,
                )
            })
            .unwrap_or_default())
    }

    /// Runs one batch; returns how long to wait before retrying failures.
    async fn flush(
        &mut self,
        conn: &mut Conn,
        batch: Vec<Entry>,
    ) -> redis::RedisResult<Option<Duration>> {
        // Coalesce: per key, the last entry runs; earlier ones ride along.
        let mut order: Vec<String> = Vec::new();
        let mut by_key: HashMap<String, (Entry, Vec<String>)> = HashMap::new();
        for e in batch {
            match by_key.get_mut(&e.key) {
                Some((last, earlier)) => {
                    earlier.push(std::mem::replace(last, e).id);
                }
                None => {
                    order.push(e.key.clone());
                    by_key.insert(e.key.clone(), (e, Vec::new()));
                }
            }
        }
        let mut jobs: Vec<(Entry, Vec<String>)> =
            order.iter().filter_map(|k| by_key.remove(k)).collect();
        let results = (self.handler.run)(jobs.iter().map(|(e, _)| e.args.clone()).collect()).await;
        let stats = &self.stats;
        let mut done: Vec<String> = Vec::new();
        let mut worst = 0;
        for ((entry, earlier), result) in jobs.drain(..).zip(results) {
            done.extend(earlier);
            match result {
                Ok(()) => done.push(entry.id),
                Err(msg) => {
                    stats.error();
                    let n = self.deliveries(conn, &entry.id).await?;
                    if n >= MAX_ATTEMPTS {
                        tracing::error!(key = %entry.key, error = %msg, "cache: write-behind entry moved to the dead-letter stream");
                        let _: String = redis::cmd("XADD")
                            .arg(format!("{}:dead", self.stream))
                            .arg("*")
                            .arg("k")
                            .arg(&entry.key)
                            .arg(entry.stored.0)
                            .arg(&entry.stored.1)
                            .arg("error")
                            .arg(&msg)
                            .arg("attempts")
                            .arg(n)
                            .query_async(conn)
                            .await?;
                        done.push(entry.id);
                    } else {
                        tracing::warn!(key = %entry.key, error = %msg, attempt = n, "cache: write-behind entry failed; will retry");
                        worst = worst.max(n);
                    }
                }
            }
        }
        if !done.is_empty() {
            let _: i64 = redis::cmd("XACK")
                .arg(&self.stream)
                .arg(GROUP)
                .arg(&done)
                .query_async(conn)
                .await?;
            let _: i64 = redis::cmd("XDEL")
                .arg(&self.stream)
                .arg(&done)
                .query_async(conn)
                .await?;
        }
        Ok((worst > 0).then(|| Duration::from_millis(10u64 << worst.min(9))))
    }
}

impl Flusher {
    /// How many times the group has delivered the pending entry `id` (every
    /// delivery ran, or was meant to run, the body once); at least 1.
    async fn deliveries(&self, conn: &mut Conn, id: &str) -> redis::RedisResult<u32> {
        let pending: redis::streams::StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(&self.stream)
            .arg(GROUP)
            .arg(id)
            .arg(id)
            .arg(1)
            .query_async(conn)
            .await?;
        Ok(pending
            .ids
            .first()
            .map_or(1, |p| u32::try_from(p.times_delivered).unwrap_or(u32::MAX))
            .max(1))
    }
}

/// Decodes the arguments of a write-behind call (used by generated handlers).
pub fn decode_args<A: serde::de::DeserializeOwned>(bytes: &[u8]) -> std::result::Result<A, String> {
    crate::codec::postcard_take_from_bytes(bytes)
        .map(|(args, _)| args)
        .map_err(|e| format!("undecodable write-behind arguments: {e}"))
}
