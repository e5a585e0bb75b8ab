//! Redis store, standalone or cluster: one multiplexed connection
//! (redis-rs `ConnectionManager`, or a `cluster_async::ClusterConnection`,
//! behind [`Conn`]) and Lua scripts, loaded at start and called by SHA.
//!
//! Every operation is written once for both deployments. Where a cluster
//! needs another way (tag keys live in other slots than entries, and `SCAN`
//! must visit every primary), the operation hands over to `cluster.rs`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};

use super::batch::{self, Coalescer, Role};
use super::conn::{Conn, Connector};
use super::near::{Generation, Near};
use super::{EntryKeys, LeaseArgs, LeaseMode, Lookup, Write};
use crate::error::{Error, Result};
use crate::flight::Flights;
use crate::key::StoredPattern;
use crate::resilience::{Breaker, DEFAULT_COOLDOWN, DEFAULT_THRESHOLD};

/// A peek from `MGET entry tag…` values.
/// The command of a read of a caller's own: `GET entry`, or `MGET entry
/// tag…` for an entry with tags.
fn own_read(entry: &str, tag_keys: &[String]) -> redis::Cmd {
    if tag_keys.is_empty() {
        let mut cmd = redis::Cmd::with_capacity(2, entry.len() + 8);
        cmd.arg("GET").arg(entry);
        return cmd;
    }
    let bytes = entry.len() + tag_keys.iter().map(String::len).sum::<usize>() + 8;
    let mut cmd = redis::Cmd::with_capacity(2 + tag_keys.len(), bytes);
    cmd.arg("MGET").arg(entry);
    for t in tag_keys {
        cmd.arg(t);
    }
    cmd
}

/// The reply to [`own_read`]: a bulk string or nil (`GET`), or an array
/// (`MGET`).
fn own_reply(reply: Value) -> Result<super::Peek> {
    match reply {
        Value::Array(_) => {
            peek_of(redis::from_redis_value(reply).map_err(redis::RedisError::from)?)
        }
        single => {
            let v: Option<Vec<u8>> =
                redis::from_redis_value(single).map_err(redis::RedisError::from)?;
            Ok(super::Peek {
                entry: v.map(super::Bytes::Owned),
                tags: Vec::new(),
            })
        }
    }
}

fn peek_of(mut values: batch::Values) -> Result<super::Peek> {
    if values.is_empty() {
        return Err(Error::Store(redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "empty MGET reply",
        ))));
    }
    let entry = values.remove(0).map(super::Bytes::Owned);
    Ok(super::Peek {
        entry,
        tags: values,
    })
}

/// The scripts, hashed once.
pub(super) struct Scripts {
    lookup: Script,
    fill: Script,
    release: Script,
    set: Script,
    behind: Script,
    /// `lookup.lua` with the tags' tokens given (cluster: tags live elsewhere).
    pub(super) lookup_tokens: Script,
    /// An unconditional store of a whole envelope (cluster).
    pub(super) put: Script,
    /// New tokens for the version tags that exist.
    bump: Script,
}

impl Scripts {
    fn new() -> Self {
        Scripts {
            lookup: Script::new(include_str!("scripts/lookup.lua")),
            fill: Script::new(include_str!("scripts/fill.lua")),
            release: Script::new(include_str!("scripts/release.lua")),
            set: Script::new(include_str!("scripts/set.lua")),
            behind: Script::new(include_str!("scripts/behind.lua")),
            lookup_tokens: Script::new(include_str!("scripts/lookup_tokens.lua")),
            put: Script::new(include_str!("scripts/put.lua")),
            bump: Script::new(include_str!("scripts/bump.lua")),
        }
    }

    /// The scripts a deployment uses.
    fn used(&self, cluster: bool) -> Vec<&Script> {
        let mut all = vec![&self.fill, &self.release, &self.bump];
        if cluster {
            all.extend([&self.lookup_tokens, &self.put]);
        } else {
            all.extend([&self.lookup, &self.set, &self.behind]);
        }
        all
    }
}

/// Where the store connects.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    /// A standalone server.
    Url(&'a str),
    /// A Redis Cluster, through these seed nodes.
    Cluster(&'a [String]),
}

pub(crate) struct RedisStore {
    pub(super) conn: Conn,
    /// Opens connections of their own (write-behind flushers).
    connector: Connector,
    /// Whether the store is a Redis Cluster.
    pub(super) cluster: bool,
    pub(super) scripts: Scripts,
    timeout: Duration,
    /// Channel on which fills of awaited leases are announced.
    pub(super) channel: String,
    wakeups: Arc<Wakeups>,
    breaker: Breaker,
    /// The near cache, when there is one.
    near: Option<Arc<Near>>,
    /// Coalesces concurrent hit-path reads (standalone only: on a cluster,
    /// keys of one `MGET` must share a slot).
    coalescer: Option<Coalescer>,
    /// Dropping it stops the subscriber task (and the tracking task).
    _stop: Vec<tokio::sync::oneshot::Sender<()>>,
}

/// State of the wake-up subscription.
#[derive(Default)]
pub(crate) struct Wakeups {
    live: AtomicBool,
}

impl RedisStore {
    /// Opens the connection and loads the scripts. An unreachable server is
    /// not an error (the connection is retried in the background and reads
    /// fall back to their loaders meanwhile); an invalid URL is.
    pub(crate) async fn connect(
        target: Target<'_>,
        tls_root: Option<&[u8]>,
        timeout: Duration,
        prefix: &str,
        flights: Weak<Flights>,
        near_capacity: Option<u64>,
        coalesce: bool,
    ) -> Result<Self> {
        // The near cache's tracking connection goes to the one server.
        let mut standalone: Option<redis::Client> = None;
        let (conn, connector, subscribers, cluster) = match target {
            Target::Url(url) => {
                let client = open_client(url, tls_root)?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_millis(500));
                let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
                standalone = Some(client.clone());
                (
                    Conn::Single(conn),
                    Connector::Single(client.clone()),
                    vec![client],
                    false,
                )
            }
            Target::Cluster(seeds) => {
                let c = super::cluster::open(seeds, tls_root, timeout)?;
                (c.conn, c.connector, c.subscribers, true)
            }
        };
        let channel = format!("{prefix}:fills");
        let wakeups = Arc::new(Wakeups::default());
        let (stop, stopped) = tokio::sync::oneshot::channel();
        tokio::spawn(subscribe(
            subscribers,
            channel.clone(),
            flights,
            wakeups.clone(),
            stopped,
        ));
        let mut stops = vec![stop];
        // (A cluster with a near cache is refused by the builder.)
        let near = match (near_capacity, standalone) {
            (Some(capacity), Some(client)) => {
                let near = Arc::new(Near::new(capacity));
                let (stop, stopped) = tokio::sync::oneshot::channel();
                stops.push(stop);
                tokio::spawn(super::near::track(
                    open_client_with(&client, tls_root, redis::ProtocolVersion::RESP3)?,
                    prefix.to_string(),
                    Arc::downgrade(&near),
                    timeout,
                    stopped,
                ));
                Some(near)
            }
            _ => None,
        };
        let store = RedisStore {
            conn,
            connector,
            cluster,
            scripts: Scripts::new(),
            timeout,
            channel,
            wakeups,
            breaker: Breaker::new(DEFAULT_THRESHOLD, DEFAULT_COOLDOWN),
            near,
            coalescer: (coalesce && !cluster).then(Coalescer::new),
            _stop: stops,
        };
        match store.check_access(prefix).await {
            Ok(()) => {}
            Err(e) if e.is_access_refused() => {
                return Err(Error::Config(format!(
                    "Redis refused this cache's credentials or access ({e}): check the user and \
                     password of the URL, and that its ACL lets it run scripts and read and write \
                     keys under `{prefix}:`"
                )));
            }
            Err(e) => {
                tracing::warn!(error = %e, "cache: Redis not reachable at start; reads use their loaders until it is");
            }
        }
        Ok(store)
    }

    /// Loads the scripts, then reads and writes (without changing anything)
    /// a key under the prefix: what every call needs the server to allow.
    async fn check_access(&self, prefix: &str) -> Result<()> {
        self.load_scripts().await?;
        let probe = format!("{prefix}:{{#access}}");
        self.query::<i64>(redis::cmd("EXISTS").arg(&probe)).await?;
        self.query::<i64>(redis::cmd("PEXPIRE").arg(&probe).arg(1))
            .await?;
        Ok(())
    }

    async fn load_scripts(&self) -> Result<()> {
        for script in self.scripts.used(self.cluster) {
            let mut conn = self.conn.clone();
            self.timed(async move { script.prepare_invoke().load_async(&mut conn).await })
                .await?;
        }
        Ok(())
    }

    /// Whether the circuit breaker is open.
    pub(crate) fn breaker_open(&self) -> bool {
        self.breaker.is_open()
    }

    /// Whether fills are being announced to this process right now.
    pub(crate) fn wakeups_live(&self) -> bool {
        self.wakeups.live.load(Ordering::Relaxed)
    }

    pub(super) async fn timed<T, F>(&self, f: F) -> Result<T>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        self.admit()?;
        // The connection bounds each request by the operation timeout itself
        // (its response timeout), which saves a second timer per call.
        self.settle(f.await)
    }

    /// Whether the breaker lets a request through.
    fn admit(&self) -> Result<()> {
        match self.breaker.allow() {
            true => Ok(()),
            false => Err(Error::Unavailable),
        }
    }

    /// Tells the breaker how a request ended, and maps its error.
    fn settle<T>(&self, r: redis::RedisResult<T>) -> Result<T> {
        match r {
            Ok(v) => {
                self.breaker.success();
                Ok(v)
            }
            Err(e) if e.is_timeout() => {
                self.breaker.failure();
                Err(Error::Timeout(self.timeout))
            }
            Err(e) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
                    self.breaker.failure();
                } else {
                    // The server answered: it is up.
                    self.breaker.success();
                }
                Err(Error::from(e))
            }
        }
    }

    pub(crate) async fn lookup(
        &self,
        k: &EntryKeys,
        tag_keys: &[String],
        lease: Option<&LeaseArgs<'_>>,
    ) -> Result<Lookup> {
        if self.cluster {
            return self.cluster_lookup(k, tag_keys, lease).await;
        }
        let bytes =
            k.entry.len() + k.lease.len() + tag_keys.iter().map(String::len).sum::<usize>() + 48;
        let mut cmd = evalsha(
            &self.scripts.lookup,
            2 + tag_keys.len(),
            6 + tag_keys.len(),
            bytes,
        );
        cmd.arg(&k.entry).arg(&k.lease);
        for t in tag_keys {
            cmd.arg(t);
        }
        match lease {
            Some(l) => {
                let mode = match l.mode {
                    LeaseMode::OnMiss => "1",
                    LeaseMode::Always => "2",
                };
                cmd.arg(mode).arg(l.token).arg(l.lease_ms).arg(l.tag_ttl_ms)
            }
            None => cmd.arg("0").arg("").arg(0).arg(0),
        };
        let v: Value = self.eval(&self.scripts.lookup, &cmd).await?;
        parse_lookup(v)
    }

    /// The hit path: the entry and its tags' current tokens in one command
    /// (`GET`, or `MGET entry tag…`), no script: a plain read costs the server
    /// a fraction of a script call. A miss then takes the lease with `lookup`.
    /// With a near cache, copies answer when they can, and what Redis returns
    /// is copied.
    pub(crate) async fn peek(&self, entry: &str, tag_keys: &[String]) -> Result<super::Peek> {
        let near = self.near.as_deref().filter(|n| n.live());
        let before: Option<Vec<Generation>> = match near {
            None => None,
            Some(near) => {
                if let Some(p) = near_peek(near, entry, tag_keys) {
                    return Ok(p);
                }
                Some(
                    std::iter::once(entry)
                        .chain(tag_keys.iter().map(String::as_str))
                        .map(|k| near.generation(k))
                        .collect(),
                )
            }
        };
        // The read itself, written out here rather than in a function of its
        // own: on the hit path every nested future costs a dispatch per poll.
        let p = match self.coalescer.as_ref().map(|c| c.join(entry, tag_keys)) {
            None => own_reply(self.query(&own_read(entry, tag_keys)).await?)?,
            // Held through the read: later reads see this one in flight.
            Some(Role::Alone(_inflight)) => {
                own_reply(self.query(&own_read(entry, tag_keys)).await?)?
            }
            Some(role) => self.peek_shared(role, entry, tag_keys).await?,
        };
        if let (Some(near), Some(before)) = (near, before) {
            let now = Instant::now();
            if let Some(bytes) = &p.entry
                && let Some(until) = crate::envelope::fresh_until(bytes)
            {
                let left = until.saturating_sub(crate::read::now_ms());
                near.keep(entry, before[0], bytes, now + Duration::from_millis(left));
            }
            for ((key, token), g) in tag_keys.iter().zip(&p.tags).zip(&before[1..]) {
                if let Some(token) = token {
                    near.keep(key, *g, token, now + NEAR_TAG_AGE);
                }
            }
        }
        Ok(p)
    }

    /// A read that shares a batch with concurrent callers' (`batch.rs`): as
    /// a member, or as the leader that sends it.
    async fn peek_shared(
        &self,
        role: Role<'_>,
        entry: &str,
        tag_keys: &[String],
    ) -> Result<super::Peek> {
        match role {
            Role::Alone(_inflight) => own_reply(self.query(&own_read(entry, tag_keys)).await?),
            Role::Member(member) => match member.wait().await {
                Some(values) => peek_of(values?),
                // The batch's leader was dropped before it read.
                None => own_reply(self.query(&own_read(entry, tag_keys)).await?),
            },
            Role::Leader(mut leader) => {
                let sealed = leader.gather().await?;
                let read = if sealed.alone {
                    let reply = self.query(&own_read(entry, tag_keys)).await;
                    reply.and_then(own_reply).map(|p| {
                        let mut values = Vec::with_capacity(1 + p.tags.len());
                        values.push(p.entry.map(super::Bytes::into_vec));
                        values.extend(p.tags);
                        values
                    })
                } else {
                    let values = self.query::<batch::Values>(&sealed.cmd).await;
                    values.and_then(|v| sealed.check(v))
                };
                peek_of(leader.deliver(read)?)
            }
        }
    }

    /// Drops the near-cache copies of keys this process changes, so that it
    /// reads its own writes before Redis's invalidation arrives.
    fn forget<'k>(&self, keys: impl IntoIterator<Item = &'k str>) {
        if let Some(near) = &self.near {
            for k in keys {
                near.forget(k);
            }
        }
    }

    /// Coalesced-read counts, when reads are coalesced.
    pub(crate) fn read_batches(&self) -> Option<super::batch::Counts> {
        self.coalescer.as_ref().map(Coalescer::counts)
    }

    /// The near cache, when there is one.
    pub(crate) fn near(&self) -> Option<&Near> {
        self.near.as_deref()
    }

    /// Runs a prepared `EVALSHA`; loads the script and retries once if the
    /// server does not know it (after a restart or `SCRIPT FLUSH`).
    pub(super) async fn eval<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        cmd: &redis::Cmd,
    ) -> Result<T> {
        let mut conn = self.conn.clone();
        let first: Result<T> = self.timed(conn.send(cmd)).await;
        match first {
            Err(Error::Store(e))
                if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                let mut c = self.conn.clone();
                self.timed(async move { script.prepare_invoke().load_async(&mut c).await })
                    .await?;
                let mut c = self.conn.clone();
                self.timed(c.send(cmd)).await
            }
            other => other,
        }
    }

    pub(crate) async fn fill(
        &self,
        k: &EntryKeys,
        token: &str,
        bytes: &[u8],
        px: u64,
    ) -> Result<bool> {
        // A prepared EVALSHA: the value is copied once, into the command
        // (a ScriptInvocation copies every key and argument, then again).
        let size = k.entry.len() + k.lease.len() + token.len() + bytes.len() + self.channel.len();
        let mut cmd = evalsha(&self.scripts.fill, 2, 6, size + 24);
        cmd.arg(&k.entry)
            .arg(&k.lease)
            .arg(token)
            .arg(bytes)
            .arg(px)
            .arg(&self.channel);
        let n: Result<i64> = self.eval(&self.scripts.fill, &cmd).await;
        self.forget([k.entry.as_str()]);
        Ok(n? == 1)
    }

    pub(crate) async fn release(&self, k: &EntryKeys, token: &str) -> Result<()> {
        let size = k.entry.len() + k.lease.len() + token.len() + self.channel.len();
        let mut cmd = evalsha(&self.scripts.release, 2, 4, size);
        cmd.arg(&k.lease)
            .arg(&k.entry)
            .arg(token)
            .arg(&self.channel);
        let _: i64 = self.eval(&self.scripts.release, &cmd).await?;
        Ok(())
    }

    pub(crate) async fn set(&self, w: &Write<'_>) -> Result<()> {
        if self.cluster {
            return self.cluster_set(w).await;
        }
        let mut inv = self.scripts.set.prepare_invoke();
        push_write(&mut inv, w, None);
        inv.arg(&self.channel);
        let r: Result<i64> = self.invoke(&inv).await;
        self.forget(write_keys(w));
        r.map(|_| ())
    }

    /// Runs one command within the operation timeout and the breaker.
    pub(super) async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        // `timed`, written out: one future less around every command.
        self.admit()?;
        let mut conn = self.conn.clone();
        self.settle(conn.send(cmd).await)
    }

    /// Runs a script invocation (loading the script first if the server lost it).
    pub(super) async fn invoke<T: redis::FromRedisValue>(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T> {
        let mut conn = self.conn.clone();
        self.timed(inv.invoke_async(&mut conn)).await
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.query(redis::cmd("GET").arg(key)).await
    }

    pub(crate) async fn put_raw(&self, key: &str, bytes: &[u8], px: u64) -> Result<()> {
        let r = self
            .query(redis::cmd("SET").arg(key).arg(bytes).arg("PX").arg(px))
            .await;
        self.forget([key]);
        r
    }

    pub(crate) async fn pttl(&self, key: &str) -> Result<i64> {
        self.query(redis::cmd("PTTL").arg(key)).await
    }

    /// Stores an entry and appends a write-behind call to `stream`: atomically
    /// on a standalone server, in two steps on a cluster (see `cluster.rs`).
    pub(crate) async fn set_and_enqueue(
        &self,
        w: &Write<'_>,
        stream: &str,
        key: &str,
        args: Args<'_>,
    ) -> Result<()> {
        if self.cluster {
            return self.cluster_set_and_enqueue(w, stream, key, args).await;
        }
        let mut inv = self.scripts.behind.prepare_invoke();
        push_write(&mut inv, w, Some(stream));
        inv.arg(&self.channel)
            .arg(key)
            .arg(args.bytes)
            .arg(args.field());
        let r: Result<String> = self.invoke(&inv).await;
        self.forget(write_keys(w));
        r.map(|_| ())
    }

    pub(crate) async fn xlen(&self, stream: &str) -> Result<u64> {
        self.query(redis::cmd("XLEN").arg(stream)).await
    }

    /// Opens connections of their own (blocking stream reads).
    pub(crate) fn connector(&self) -> &Connector {
        &self.connector
    }

    pub(crate) async fn mget(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.query(redis::cmd("MGET").arg(keys)).await
    }

    pub(crate) async fn delete(&self, keys: &[String]) -> Result<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        let r = if self.cluster {
            self.cluster_delete(keys).await
        } else {
            self.query(redis::cmd("UNLINK").arg(keys)).await
        };
        self.forget(keys.iter().map(String::as_str));
        r
    }

    pub(crate) async fn set_tokens(
        &self,
        keys: &[String],
        tokens: &[String],
        ttl_ms: u64,
    ) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        if self.cluster {
            return self.cluster_set_tokens(keys, tokens, ttl_ms).await;
        }
        let mut pipe = redis::pipe();
        for (k, t) in keys.iter().zip(tokens) {
            pipe.cmd("SET").arg(k).arg(t).arg("PX").arg(ttl_ms).ignore();
        }
        let mut conn = self.conn.clone();
        let r = self
            .timed(async move { pipe.query_async::<()>(&mut conn).await })
            .await;
        self.forget(keys.iter().map(String::as_str));
        r
    }

    /// Gives each of `keys` that exists its token, keeping its lifetime
    /// (`bump.lua`; on a cluster, one key per call: their slots differ).
    pub(crate) async fn bump_present(&self, keys: &[String], tokens: &[String]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        if self.cluster {
            let calls = keys.iter().zip(tokens).map(|(k, t)| async move {
                let mut inv = self.scripts.bump.prepare_invoke();
                inv.key(k).arg(t);
                self.invoke::<i64>(&inv).await
            });
            futures_util::future::try_join_all(calls).await?;
        } else {
            let mut inv = self.scripts.bump.prepare_invoke();
            for (k, t) in keys.iter().zip(tokens) {
                inv.key(k).arg(t);
            }
            self.invoke::<i64>(&inv).await?;
        }
        self.forget(keys.iter().map(String::as_str));
        Ok(())
    }

    /// One `SCAN` step: the next cursor and the keys of this page.
    async fn scan_page(&self, cursor: u64, pattern: &str) -> Result<(u64, Vec<String>)> {
        self.query(
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000),
        )
        .await
    }

    /// Up to `limit` keys matching `pattern` (SCAN, never KEYS).
    pub(crate) async fn scan(&self, pattern: &str, limit: usize) -> Result<Vec<String>> {
        if self.cluster {
            return self.cluster_scan(pattern, limit).await;
        }
        let (mut cursor, mut out) = (0, Vec::new());
        loop {
            let (next, keys) = self.scan_page(cursor, pattern).await?;
            out.extend(keys);
            if next == 0 || out.len() >= limit {
                out.truncate(limit);
                return Ok(out);
            }
            cursor = next;
        }
    }

    /// Up to `limit` entries of a stream, oldest first: (id, fields).
    pub(crate) async fn xrange(
        &self,
        stream: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<(String, Vec<u8>)>)>> {
        let reply: redis::streams::StreamRangeReply = self
            .query(
                redis::cmd("XRANGE")
                    .arg(stream)
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(limit),
            )
            .await?;
        Ok(reply
            .ids
            .into_iter()
            .map(|e| {
                let fields = e
                    .map
                    .into_iter()
                    .filter_map(|(k, v)| match v {
                        Value::BulkString(b) => Some((k, b)),
                        _ => None,
                    })
                    .collect();
                (e.id, fields)
            })
            .collect())
    }

    /// SCAN + UNLINK in batches; never KEYS. Each step has its own timeout.
    pub(crate) async fn delete_pattern(&self, pattern: &StoredPattern) -> Result<u64> {
        if self.cluster {
            return self.cluster_delete_pattern(pattern).await;
        }
        let mut deleted = 0;
        // Two passes: see `with_companions`.
        for _ in 0..2 {
            let mut cursor = 0;
            loop {
                let (next, keys) = self.scan_page(cursor, &pattern.scan).await?;
                deleted += self.delete(&with_companions(pattern, keys)).await?;
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(deleted)
    }
}

/// The keys a pattern deletion removes for the keys its `SCAN` found: each
/// entry with its lease, each lease with its entry (one `UNLINK` removes
/// both at once; on a cluster, leases are removed before entries, which
/// gives the same guarantee).
///
/// **Why pairs, and why two passes.** A load that took its lease before the
/// deletion began must not store its value after the deletion returns. Its
/// fill replaces the lease with the entry in one step, so a `SCAN` may find
/// the lease and, by the time the `UNLINK` runs, the entry is there instead:
/// removing both covers either order. And a fill may land while the pass
/// runs, writing an entry where the cursor has already been and removing a
/// lease before the cursor gets there: then the entry exists throughout the
/// next pass, which finds it. A lease that existed throughout a pass was
/// found and removed by it, so no fill from before the deletion lands after
/// the second pass.
/// Keys the scan found that the pattern does not cover (it scans wider, to
/// find long keys) are left alone.
pub(super) fn with_companions(pattern: &StoredPattern, found: Vec<String>) -> Vec<String> {
    let mut keys = Vec::with_capacity(found.len() * 2);
    for key in found.into_iter().filter(|k| pattern.covers(k)) {
        match key.strip_suffix(":L") {
            Some(entry) => keys.push(entry.to_string()),
            None => keys.push(format!("{key}:L")),
        }
        keys.push(key);
    }
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// The serialized arguments of a write-behind call, as its stream entry
/// holds them.
#[derive(Clone, Copy)]
pub(crate) struct Args<'a> {
    pub(crate) bytes: &'a [u8],
    /// Sealed with the cache's encryption key (`encrypt = true`).
    pub(crate) sealed: bool,
}

impl Args<'_> {
    /// The entry's field: `a` for plain arguments, `A` for sealed ones.
    pub(crate) fn field(&self) -> &'static str {
        if self.sealed { "A" } else { "a" }
    }
}

/// How long a copied tag version is used without news from Redis (which
/// pushes every change of it).
const NEAR_TAG_AGE: Duration = Duration::from_secs(60);

/// A peek answered by near-cache copies alone: the entry and every tag.
fn near_peek(near: &Near, entry: &str, tag_keys: &[String]) -> Option<super::Peek> {
    let bytes = near.get(entry)?;
    let mut tags = Vec::with_capacity(tag_keys.len());
    for t in tag_keys {
        tags.push(Some(near.get(t)?.bytes().to_vec()));
    }
    near.answered_one();
    Some(super::Peek {
        entry: Some(super::Bytes::Shared(bytes)),
        tags,
    })
}

/// The keys an unconditional store changes: the entry and its tags (a tag
/// with no version gets one).
fn write_keys<'a>(w: &'a Write<'_>) -> impl Iterator<Item = &'a str> {
    std::iter::once(w.keys.entry.as_str()).chain(w.tag_keys.iter().map(String::as_str))
}

/// The keys and arguments `set.lua` and `behind.lua` share: entry, lease,
/// (stream,) tags; head, tail, ttl, tag ttl, fresh prefix.
fn push_write(inv: &mut redis::ScriptInvocation<'_>, w: &Write<'_>, stream: Option<&str>) {
    inv.key(&w.keys.entry).key(&w.keys.lease);
    if let Some(stream) = stream {
        inv.key(stream);
    }
    for t in w.tag_keys {
        inv.key(t);
    }
    inv.arg(w.head)
        .arg(w.tail)
        .arg(w.px)
        .arg(w.tag_ttl_ms)
        .arg(w.fresh);
}

/// `EVALSHA <sha> <nkeys>`, with room for `nargs` more arguments of about
/// `bytes` bytes in all (sized up front: growing the buffers argument by
/// argument costs more than the rest of building the command).
pub(super) fn evalsha(script: &Script, nkeys: usize, nargs: usize, bytes: usize) -> redis::Cmd {
    let mut cmd = redis::Cmd::with_capacity(3 + nargs, 64 + bytes);
    cmd.arg("EVALSHA").arg(script.get_hash()).arg(nkeys);
    cmd
}

/// Another client for the server of `client`, speaking `protocol`.
fn open_client_with(
    client: &redis::Client,
    tls_root: Option<&[u8]>,
    protocol: redis::ProtocolVersion,
) -> Result<redis::Client> {
    let info = client.get_connection_info().clone();
    let settings = info.redis_settings().clone().set_protocol(protocol);
    let info = info.set_redis_settings(settings);
    Ok(match tls_root {
        Some(pem) => redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.to_vec()),
            },
        )?,
        None => redis::Client::open(info)?,
    })
}

/// A client for `url`; `rediss://` over rustls (ring), trusting `tls_root`
/// (PEM) when given, the system's roots otherwise.
pub(super) fn open_client(url: &str, tls_root: Option<&[u8]>) -> Result<redis::Client> {
    if url.starts_with("rediss://") {
        // The process may already have chosen a provider; either way one is set.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    Ok(match tls_root {
        Some(pem) => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.to_vec()),
            },
        )?,
        None => redis::Client::open(url)?,
    })
}

/// Listens for fill announcements and wakes the callers of this process that
/// wait on those entries. Reconnects with backoff, to the next of `clients`
/// each time (a cluster's seeds: a `PUBLISH` on any node of a cluster reaches
/// the subscribers of every node, so one subscription is enough); while it is
/// down, waiters fall back to short polling. Ends when the store is dropped.
async fn subscribe(
    clients: Vec<redis::Client>,
    channel: String,
    flights: Weak<Flights>,
    wakeups: Arc<Wakeups>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let mut delay = Duration::from_millis(50);
    let mut next = 0;
    loop {
        let Some(client) = clients.get(next % clients.len().max(1)) else {
            return;
        };
        next += 1;
        let session = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            wakeups.live.store(true, Ordering::Relaxed);
            let mut messages = pubsub.on_message();
            while let Some(msg) = messages.next().await {
                let Some(flights) = flights.upgrade() else {
                    return Ok(());
                };
                if let Ok(key) = std::str::from_utf8(msg.get_payload_bytes()) {
                    flights.wake(key);
                }
            }
            Ok::<(), redis::RedisError>(())
        };
        tokio::select! {
            _ = &mut stopped => return,
            r = session => {
                wakeups.live.store(false, Ordering::Relaxed);
                if flights.strong_count() == 0 {
                    return;
                }
                if let Err(e) = r {
                    tracing::debug!(error = %e, "cache: wake-up subscription lost; reconnecting");
                }
                // Anyone waiting may have missed an announcement.
                if let Some(f) = flights.upgrade() {
                    f.wake_all();
                }
            }
        }
        tokio::select! {
            _ = &mut stopped => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

pub(super) fn parse_lookup(v: Value) -> Result<Lookup> {
    let bad = || {
        Error::Store(redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "unexpected reply from the lookup script",
        )))
    };
    let Value::BulkString(bytes) = v else {
        return Err(bad());
    };
    if bytes.starts_with(crate::envelope::MAGIC) {
        return Ok(Lookup::Hit(bytes));
    }
    let [what, corrupt, rest @ ..] = bytes.as_slice() else {
        return Err(bad());
    };
    let corrupt = *corrupt == b'1';
    match what {
        b'0' => Ok(Lookup::Miss { corrupt }),
        b'1' => {
            let tokens = std::str::from_utf8(rest).map_err(|_| bad())?.to_string();
            Ok(Lookup::Leased { tokens, corrupt })
        }
        b'2' => {
            let pttl_ms = std::str::from_utf8(rest)
                .ok()
                .and_then(|n| n.parse().ok())
                .ok_or_else(bad)?;
            Ok(Lookup::Held { pttl_ms, corrupt })
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(bytes: &[u8]) -> Result<Lookup> {
        parse_lookup(Value::BulkString(bytes.to_vec()))
    }

    #[test]
    fn a_pattern_deletion_removes_entries_with_their_leases() {
        let found = vec![
            "p:{a}".to_string(),
            "p:{b}:L".to_string(),
            "p:{c}:v2".to_string(),
            "p:{a}:L".to_string(),
        ];
        assert_eq!(
            with_companions(&StoredPattern::new("p", "*"), found),
            [
                "p:{a}",
                "p:{a}:L",
                "p:{b}",
                "p:{b}:L",
                "p:{c}:v2",
                "p:{c}:v2:L"
            ]
        );
    }

    #[test]
    fn lookup_replies_parse() {
        assert!(
            matches!(reply(b"RC\x02\x01\x00;rest"), Ok(Lookup::Hit(b)) if b.starts_with(b"RC"))
        );
        assert!(matches!(
            reply(b"10t1,t2"),
            Ok(Lookup::Leased { tokens, corrupt: false }) if tokens == "t1,t2"
        ));
        assert!(matches!(
            reply(b"11"),
            Ok(Lookup::Leased { tokens, corrupt: true }) if tokens.is_empty()
        ));
        assert!(matches!(
            reply(b"201500"),
            Ok(Lookup::Held {
                pttl_ms: 1500,
                corrupt: false
            })
        ));
        assert!(matches!(
            reply(b"20-2"),
            Ok(Lookup::Held {
                pttl_ms: -2,
                corrupt: false
            })
        ));
        assert!(matches!(reply(b"01"), Ok(Lookup::Miss { corrupt: true })));
    }

    #[test]
    fn other_lookup_replies_are_errors() {
        for bad in [&b""[..], b"1", b"9x", b"2x", b"1\xff\xfe\xfd"] {
            assert!(reply(bad).is_err(), "{bad:?}");
        }
        assert!(parse_lookup(Value::Int(1)).is_err());
        assert!(parse_lookup(Value::Array(vec![Value::Int(1)])).is_err());
    }
}
