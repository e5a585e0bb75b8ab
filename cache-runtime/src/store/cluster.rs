//! The Redis Cluster side of the Redis store.
//!
//! An entry, its lease and its schema versions share a hash tag
//! (`prefix:{key}`, `prefix:{key}:L`, `prefix:{key}:v2`), so every script
//! that touches them runs on one node. Tag keys (`prefix:t:{tag}`) live in
//! other slots, so on a cluster no script touches a tag key:
//!
//! * **Tag tokens** are read, and created where missing, in a step of their
//!   own before the script: one `SET tag fresh NX GET PX ttl` per tag (it
//!   returns the current token, or nothing when it just set the fresh one),
//!   sent concurrently. The script gets the tokens as an argument. Reading
//!   them before the script is safe: an entry must record tag versions read
//!   before its loader ran, and the loader runs later still; a tag
//!   invalidated in between only makes the entry a miss.
//! * **Tag invalidation** sets each tag's new token with its own command.
//! * **Patterns**: `SCAN` runs on every primary, each with its own cursor,
//!   and `UNLINK` removes what it finds, each entry with its lease (one
//!   command per key, leases first; see `cluster_delete`). A key that moves
//!   to an already scanned node while slots are being migrated would be
//!   missed, so a pattern deletion repeats its pass until two in a row ran while no slot
//!   was migrating and the slot map did not change (two: a fill from before
//!   the deletion may land during the first; see `with_companions`).
//! * **Write-behind** stores the value, then appends the call to the stream
//!   (another slot): two steps. If the append fails, the value is deleted
//!   again and the caller is told that nothing was queued, so it runs the
//!   body itself (which the macros do). Until then readers may see the value,
//!   as they may see any write-behind value before it is flushed.
//!
//! Wake-ups need nothing special: a `PUBLISH` on any node of a cluster
//! reaches the subscribers of every node, so the store subscribes on one
//! seed, moving on to the next one when it fails.
//!
//! Needs Redis 7.0 or later (`SET` with both `NX` and `GET`).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::future::try_join_all;
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo, SingleNodeRoutingInfo};
use redis::{TlsCertificates, Value};

use super::conn::{Conn, Connector, FLUSHER_RESPONSE_TIMEOUT};
use super::redis::{RedisStore, evalsha, open_client, parse_lookup, with_companions};
use super::{EntryKeys, LeaseArgs, LeaseMode, Lookup, Write};
use crate::error::{Error, Result};
use crate::key::StoredPattern;

/// Retries of a redirected or refused command (`MOVED`, `ASK`, `TRYAGAIN`,
/// a node being down), all within the operation timeout.
const RETRIES: u32 = 16;
/// Shortest and longest wait before retrying a command refused with
/// `TRYAGAIN` (a multi-key command on a slot being migrated), in ms.
const MIN_RETRY_WAIT_MS: u64 = 1;
const MAX_RETRY_WAIT_MS: u64 = 50;
/// How long a pattern deletion keeps repeating its pass while slots move.
const SETTLE_WITHIN: Duration = Duration::from_secs(5);

/// What the store needs from a cluster.
pub(super) struct Opened {
    pub(super) conn: Conn,
    pub(super) connector: Connector,
    /// One client per seed, for the wake-up subscription.
    pub(super) subscribers: Vec<redis::Client>,
}

/// Opens a cluster connection through `seeds`. Connecting happens in the
/// background: an unreachable cluster is not an error here (reads use their
/// loaders until it answers); invalid URLs are.
pub(super) fn open(seeds: &[String], tls_root: Option<&[u8]>, timeout: Duration) -> Result<Opened> {
    if seeds.is_empty() {
        return Err(Error::config("cluster(..) needs at least one seed node"));
    }
    let subscribers = seeds
        .iter()
        .map(|s| open_client(s, tls_root))
        .collect::<Result<Vec<_>>>()?;
    let store_client = client(seeds, tls_root, timeout)?;
    let config = ClusterConfig::new()
        .set_connection_timeout(timeout)
        .set_response_timeout(timeout);
    let conn = store_client.get_pending_async_connection_with_config(config);
    let flushers = client(seeds, tls_root, FLUSHER_RESPONSE_TIMEOUT)?;
    Ok(Opened {
        conn: Conn::Cluster(conn),
        connector: Connector::Cluster(flushers),
        subscribers,
    })
}

/// A cluster client whose every request (retries and redirections included)
/// is bounded by `timeout`.
fn client(seeds: &[String], tls_root: Option<&[u8]>, timeout: Duration) -> Result<ClusterClient> {
    let mut builder = ClusterClientBuilder::new(seeds.iter().map(String::as_str))
        .connection_timeout(timeout)
        .response_timeout(timeout)
        .retries(RETRIES)
        .min_retry_wait(MIN_RETRY_WAIT_MS)
        .max_retry_wait(MAX_RETRY_WAIT_MS)
        .retry_wait_formula(2, 2);
    if let Some(pem) = tls_root {
        builder = builder.certs(TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.to_vec()),
        });
    }
    Ok(builder.build()?)
}

/// A primary as the cluster connection routes to it, and how it describes
/// itself in `CLUSTER NODES`.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Primary {
    host: String,
    port: u16,
    /// Its own line without the ping and pong times: id, address, flags,
    /// config epoch, link state and slots (with `[slot->-id]` or
    /// `[slot-<-id]` for slots it is migrating or importing).
    me: String,
    /// How many primaries with slots it knows of.
    known: usize,
}

impl Primary {
    fn routing(&self) -> RoutingInfo {
        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: self.host.clone(),
            port: self.port,
        })
    }
}

/// Whether a pass over `before`, ending with `after`, saw every key that
/// existed throughout it: no slot was migrating, no slot changed owner, and
/// the client knew every primary that has slots.
fn settled(before: &[Primary], after: &[Primary]) -> bool {
    before == after
        && !before.iter().any(|p| p.me.contains('['))
        && before.iter().all(|p| p.known <= before.len())
}

/// Parses one primary's `CLUSTER NODES` reply.
fn describe(host: String, port: u16, nodes: &str) -> Option<Primary> {
    let mut me = None;
    let mut known = 0;
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let flags = fields.get(2)?;
        if flags.split(',').any(|f| f == "master") && fields.len() > 8 {
            known += 1;
        }
        if flags.split(',').any(|f| f == "myself") {
            let mut kept: Vec<&str> = fields.iter().take(4).copied().collect();
            kept.extend(fields.iter().skip(6));
            me = Some(kept.join(" "));
        }
    }
    Some(Primary {
        host,
        port,
        me: me?,
        known,
    })
}

fn unexpected(what: &'static str) -> Error {
    Error::Store(redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        what,
    )))
}

impl RedisStore {
    /// The cluster connection (every caller runs on a cluster only).
    fn cluster_conn(&self) -> Result<redis::cluster_async::ClusterConnection> {
        match &self.conn {
            Conn::Cluster(c) => Ok(c.clone()),
            _ => Err(Error::config("not connected to a Redis Cluster")),
        }
    }

    /// Each tag's current token, comma-separated; a tag without one gets
    /// `fresh` followed by its position (from 1), as the scripts do.
    async fn tag_tokens(&self, tag_keys: &[String], fresh: &str, ttl_ms: u64) -> Result<String> {
        let asks = tag_keys.iter().enumerate().map(|(i, key)| async move {
            let mine = format!("{fresh}{}", i + 1);
            let mut cmd = redis::Cmd::with_capacity(7, key.len() + mine.len() + 32);
            cmd.arg("SET")
                .arg(key)
                .arg(&mine)
                .arg("NX")
                .arg("GET")
                .arg("PX")
                .arg(ttl_ms);
            let current: Option<String> = self.query(&cmd).await?;
            Ok::<String, Error>(current.unwrap_or(mine))
        });
        Ok(try_join_all(asks).await?.join(","))
    }

    /// The tags' current tokens without creating any; `None` if one has none.
    async fn current_tokens(&self, tag_keys: &[String]) -> Result<Option<String>> {
        let current = self.mget(tag_keys).await?;
        let mut out = Vec::with_capacity(current.len());
        for t in current {
            let Some(t) = t else { return Ok(None) };
            out.push(String::from_utf8(t).map_err(|_| unexpected("tag token is not text"))?);
        }
        Ok(Some(out.join(",")))
    }

    /// `lookup` on a cluster: the tags' tokens first, then the entry and
    /// lease in one script.
    pub(super) async fn cluster_lookup(
        &self,
        k: &EntryKeys,
        tag_keys: &[String],
        lease: Option<&LeaseArgs<'_>>,
    ) -> Result<Lookup> {
        let tokens = match lease {
            _ if tag_keys.is_empty() => String::new(),
            Some(l) => self.tag_tokens(tag_keys, l.token, l.tag_ttl_ms).await?,
            // Only looking: a tag without a token makes any entry a miss, and
            // no recorded token section can contain ';'.
            None => self
                .current_tokens(tag_keys)
                .await?
                .unwrap_or_else(|| ";".to_string()),
        };
        let script = &self.scripts.lookup_tokens;
        let bytes = k.entry.len() + k.lease.len() + tokens.len() + 48;
        let mut cmd = evalsha(script, 2, 6, bytes);
        cmd.arg(&k.entry).arg(&k.lease);
        match lease {
            Some(l) => {
                let mode = match l.mode {
                    LeaseMode::OnMiss => "1",
                    LeaseMode::Always => "2",
                };
                cmd.arg(mode).arg(l.token).arg(l.lease_ms)
            }
            None => cmd.arg("0").arg("").arg(0),
        };
        cmd.arg(&tokens);
        let v: Value = self.eval(script, &cmd).await?;
        parse_lookup(v)
    }

    /// `set` on a cluster: the tags' tokens first, then the whole envelope.
    pub(super) async fn cluster_set(&self, w: &Write<'_>) -> Result<()> {
        let tokens = self.tag_tokens(w.tag_keys, w.fresh, w.tag_ttl_ms).await?;
        let mut value = Vec::with_capacity(w.head.len() + tokens.len() + 1 + w.tail.len());
        value.extend_from_slice(w.head);
        value.extend_from_slice(tokens.as_bytes());
        value.push(b';');
        value.extend_from_slice(w.tail);
        let mut inv = self.scripts.put.key(&w.keys.entry);
        inv.key(&w.keys.lease)
            .arg(value)
            .arg(w.px)
            .arg(&self.channel);
        let _: i64 = self.invoke(&inv).await?;
        Ok(())
    }

    /// Write-behind on a cluster: the value, then the stream entry. When the
    /// append fails the value is taken back and the error returned: nothing
    /// was queued, and the caller writes through itself.
    pub(super) async fn cluster_set_and_enqueue(
        &self,
        w: &Write<'_>,
        stream: &str,
        key: &str,
        args: super::redis::Args<'_>,
    ) -> Result<()> {
        self.cluster_set(w).await?;
        let mut cmd = redis::cmd("XADD");
        cmd.arg(stream)
            .arg("*")
            .arg("k")
            .arg(key)
            .arg(args.field())
            .arg(args.bytes);
        if let Err(e) = self.query::<String>(&cmd).await {
            if self
                .delete(std::slice::from_ref(&w.keys.entry))
                .await
                .is_err()
            {
                tracing::warn!(
                    "cache: write-behind value could not be taken back after a failed enqueue; the caller's invalidation removes it"
                );
            }
            return Err(e);
        }
        Ok(())
    }

    /// `set_tokens` on a cluster: one `SET` per tag (their slots differ).
    pub(super) async fn cluster_set_tokens(
        &self,
        keys: &[String],
        tokens: &[String],
        ttl_ms: u64,
    ) -> Result<()> {
        let sets = keys.iter().zip(tokens).map(|(k, t)| async move {
            let mut cmd = redis::cmd("SET");
            cmd.arg(k).arg(t).arg("PX").arg(ttl_ms);
            self.query::<()>(&cmd).await
        });
        try_join_all(sets).await?;
        Ok(())
    }

    /// Every primary the cluster connection routes to, sorted.
    async fn primaries(&self) -> Result<Vec<Primary>> {
        let mut conn = self.cluster_conn()?;
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("NODES");
        let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
        let reply = self
            .timed(async move { conn.route_command(cmd, routing).await })
            .await?;
        let Value::Map(per_node) = reply else {
            return Err(unexpected("CLUSTER NODES on every primary: not a map"));
        };
        let mut out = Vec::with_capacity(per_node.len());
        for (addr, nodes) in per_node {
            let addr: String = redis::from_redis_value(addr).map_err(redis::RedisError::from)?;
            let nodes: String = redis::from_redis_value(nodes).map_err(redis::RedisError::from)?;
            let (host, port) = addr
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.to_string(), p.parse().ok()?)))
                .ok_or_else(|| unexpected("node address without a port"))?;
            out.push(
                describe(host, port, &nodes).ok_or_else(|| unexpected("CLUSTER NODES reply"))?,
            );
        }
        out.sort();
        Ok(out)
    }

    /// One `SCAN` step on one primary.
    async fn scan_page_on(
        &self,
        p: &Primary,
        cursor: u64,
        pattern: &str,
    ) -> Result<(u64, Vec<String>)> {
        let mut conn = self.cluster_conn()?;
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000);
        let routing = p.routing();
        let reply = self
            .timed(async move { conn.route_command(cmd, routing).await })
            .await?;
        Ok(redis::from_redis_value(reply).map_err(redis::RedisError::from)?)
    }

    /// `scan` on a cluster: every primary once, up to `limit` distinct keys.
    pub(super) async fn cluster_scan(&self, pattern: &str, limit: usize) -> Result<Vec<String>> {
        let (mut seen, mut out) = (HashSet::new(), Vec::new());
        for p in self.primaries().await? {
            let mut cursor = 0;
            loop {
                let (next, keys) = self.scan_page_on(&p, cursor, pattern).await?;
                for k in keys {
                    if out.len() >= limit {
                        return Ok(out);
                    }
                    if seen.insert(k.clone()) {
                        out.push(k);
                    }
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(out)
    }

    /// `delete` on a cluster: one single-key `UNLINK` per key, every lease
    /// before any entry, the commands of each step sent at once.
    ///
    /// **Why not one `UNLINK`.** redis-rs splits a multi-key command by
    /// slot; a part whose slot is migrating, with some of its keys moved and
    /// some not (an entry without its lease is enough), is answered
    /// `TRYAGAIN` until the move ends, and a fan-out's part is not followed
    /// through the `MOVED` that ends it. A single-key command is always
    /// served: by the source while the key is there, by the target (`ASK`)
    /// once it has moved. Leases go first so that a fill racing the deletion
    /// either lands before its lease is removed, and is removed in the next
    /// step, or finds its lease gone and stores nothing: the same guarantee
    /// as removing an entry and its lease in one command.
    pub(super) async fn cluster_delete(&self, keys: &[String]) -> Result<u64> {
        let (leases, entries): (Vec<&String>, Vec<&String>) =
            keys.iter().partition(|k| k.ends_with(":L"));
        let mut deleted = 0;
        for step in [leases, entries] {
            let removed = try_join_all(
                step.into_iter()
                    .map(|k| async move { self.query::<u64>(redis::cmd("UNLINK").arg(k)).await }),
            )
            .await?;
            deleted += removed.iter().sum::<u64>();
        }
        Ok(deleted)
    }

    /// `delete_pattern` on a cluster: `SCAN` + `UNLINK` on every primary,
    /// repeated until a pass ran while the slots stood still (see the module
    /// documentation); an error if they kept moving for [`SETTLE_WITHIN`].
    pub(super) async fn cluster_delete_pattern(&self, pattern: &StoredPattern) -> Result<u64> {
        let deadline = Instant::now() + SETTLE_WITHIN;
        let mut deleted = 0;
        let mut pause = Duration::from_millis(5);
        // Settled passes in a row: two are needed (see `with_companions`).
        let mut settled_passes = 0;
        loop {
            let before = self.primaries().await?;
            for p in &before {
                let mut cursor = 0;
                loop {
                    let (next, keys) = self.scan_page_on(p, cursor, &pattern.scan).await?;
                    deleted += self.delete(&with_companions(pattern, keys)).await?;
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
            }
            let after = self.primaries().await?;
            if !settled(&before, &after) {
                settled_passes = 0;
            } else {
                settled_passes += 1;
                if settled_passes == 2 {
                    return Ok(deleted);
                }
                continue;
            }
            if Instant::now() >= deadline {
                return Err(Error::Store(redis::RedisError::from((
                    redis::ErrorKind::Server(redis::ServerErrorKind::TryAgain),
                    "slots kept moving during the pattern deletion",
                ))));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "\
07c3 127.0.0.1:30004@31004 master - 0 1426238317239 4 connected 10923-16383
67ed 127.0.0.1:30002@31002 myself,master - 0 1426238316232 2 connected 5461-10922 [5470->-07c3]
e7d1 127.0.0.1:30001@31001 master - 0 1426238318243 1 connected 0-5460
292f 127.0.0.1:30005@31005 slave 07c3 0 1426238318243 4 connected
";

    #[test]
    fn a_primary_describes_itself_without_its_clock() {
        let p = describe("127.0.0.1".into(), 30002, NODES).expect("parsed");
        assert_eq!(
            p.me,
            "67ed 127.0.0.1:30002@31002 myself,master - 2 connected 5461-10922 [5470->-07c3]"
        );
        assert_eq!(
            p.known, 3,
            "replicas and primaries without slots do not count"
        );
        let later = NODES.replace("1426238316232", "1426238399999");
        assert_eq!(describe("127.0.0.1".into(), 30002, &later), Some(p));
    }

    #[test]
    fn a_pass_is_settled_only_without_migrations_and_moves() {
        let p = |me: &str| Primary {
            host: "h".into(),
            port: 1,
            me: me.into(),
            known: 1,
        };
        let still = [p("a master - 1 connected 0-16383")];
        assert!(settled(&still, &still));
        let migrating = [p("a master - 1 connected 0-16383 [5->-b]")];
        assert!(!settled(&migrating, &migrating));
        let moved = [p("a master - 2 connected 0-4 6-16383")];
        assert!(!settled(&still, &moved));
        let unknown = [Primary {
            known: 2,
            ..p("a master - 1 connected 0-16383")
        }];
        assert!(
            !settled(&unknown, &unknown),
            "a primary the client does not route to"
        );
    }

    #[test]
    fn no_reply_line_about_itself_is_no_description() {
        assert_eq!(
            describe(
                "h".into(),
                1,
                "07c3 127.0.0.1:30004@31004 master - 0 0 4 connected 1\n"
            ),
            None
        );
        assert_eq!(describe("h".into(), 1, "garbage"), None);
    }
}
