//! A Redis Cluster of `redis-server` child processes.

use std::fmt;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crate::ports::free_port;
use crate::server::RedisServer;

/// How long a new cluster has to agree on its slots.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a joining cluster is probed.
const JOIN_PROBE_INTERVAL: Duration = Duration::from_millis(20);
/// Keys moved per `MIGRATE` by [`RedisCluster::move_slot`].
const DEFAULT_MIGRATE_BATCH: usize = 10;
/// `MIGRATE`'s own timeout, in milliseconds.
const MIGRATE_TIMEOUT_MS: u64 = 5_000;

/// The `redis-cli` binary the harness runs: `$REDIS_CLI` when set and not
/// empty, else `redis-cli` (looked up in `PATH`).
pub fn redis_cli_bin() -> String {
    std::env::var("REDIS_CLI")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "redis-cli".to_string())
}

/// One node of a [`RedisCluster`]: its server and its cluster node id.
struct Node {
    server: RedisServer,
    id: String,
}

/// A Redis Cluster of primaries only, each a [`RedisServer`] on
/// `127.0.0.1` with its own port, cluster bus port and directory (where its
/// `nodes.conf` lives).
///
/// [`start`](Self::start) launches the servers with `--cluster-enabled yes`,
/// joins them with `redis-cli --cluster create .. --cluster-replicas 0
/// --cluster-yes` (slots spread evenly), and returns once every node reports
/// `cluster_state:ok`, knows every other node and sees all 16384 slots
/// assigned (polled, at most 30 s). Dropping the value kills every node.
///
/// Slots can be moved between primaries while clients run
/// ([`move_slot`](Self::move_slot)), the way `redis-cli --cluster reshard`
/// does it: `IMPORTING` on the target, `MIGRATING` on the source, the keys
/// moved in batches with `MIGRATE`, then `SETSLOT .. NODE` on every node.
pub struct RedisCluster {
    nodes: Vec<Node>,
}

impl RedisCluster {
    /// Starts a cluster of `primaries` nodes (at least 3, as Redis requires
    /// for `--cluster create`); see [`RedisCluster`].
    ///
    /// # Panics
    ///
    /// When fewer than 3 primaries are asked for, a server does not start
    /// (see [`RedisServer::start`]), `redis-cli` fails (its output is
    /// quoted), or the nodes do not agree within 30 s.
    pub fn start(primaries: usize) -> RedisCluster {
        RedisCluster::start_with(primaries, &[])
    }

    /// [`start`](Self::start) with `extra_args` passed to every node after the
    /// cluster options (see [`RedisServer::start_with`]), for example ACL
    /// users (`&["--user", "name", "on", ">pw", "~*", "&*", "+@all"]`). The
    /// default user must stay usable without a password: `redis-cli` joins
    /// the nodes with it.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_with(primaries: usize, extra_args: &[&str]) -> RedisCluster {
        assert!(
            primaries >= 3,
            "a Redis Cluster needs at least 3 primaries, asked for {primaries}"
        );
        let servers: Vec<RedisServer> = (0..primaries)
            .map(|_| {
                let bus = free_port().to_string();
                let mut args = vec![
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                    "--cluster-port",
                    &bus,
                ];
                args.extend_from_slice(extra_args);
                RedisServer::start_with(&args)
            })
            .collect();
        create(&servers);
        let deadline = Instant::now() + JOIN_TIMEOUT;
        for server in &servers {
            wait_until_joined(server, primaries, deadline);
        }
        let nodes = servers
            .into_iter()
            .map(|server| {
                let id: String = sync_query(&server, redis::cmd("CLUSTER").arg("MYID"));
                Node { server, id }
            })
            .collect();
        RedisCluster { nodes }
    }

    /// `redis://127.0.0.1:PORT` of every node, to use as seeds.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.server.url()).collect()
    }

    /// Number of primaries.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: a cluster has at least 3 nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The server of node `i` (in [`urls`](Self::urls) order).
    ///
    /// # Panics
    ///
    /// When `i` is out of range.
    pub fn node(&self, i: usize) -> &RedisServer {
        &self.nodes[i].server
    }

    /// A cluster client for the seeds, with a 30 s response timeout (so a
    /// test's own commands outlast any migration).
    pub fn client(&self) -> redis::cluster::ClusterClient {
        redis::cluster::ClusterClientBuilder::new(self.urls())
            .response_timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_else(|e| panic!("a cluster client for {:?}: {e}", self.urls()))
    }

    /// A new cluster connection ([`client`](Self::client)).
    ///
    /// # Panics
    ///
    /// When the cluster cannot be reached.
    pub async fn conn(&self) -> redis::cluster_async::ClusterConnection {
        self.client()
            .get_async_connection()
            .await
            .unwrap_or_else(|e| panic!("connecting to the cluster {:?}: {e}", self.urls()))
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT`).
    pub async fn slot_of(&self, key: &str) -> u16 {
        let mut c = self.node(0).conn().await;
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut c)
            .await
            .unwrap_or_else(|e| panic!("CLUSTER KEYSLOT {key}: {e}"))
    }

    /// The node (index) that owns `slot`, as node 0 sees it. After
    /// [`move_slot`](Self::move_slot) returned, every node sees the same.
    pub async fn owner_of(&self, slot: u16) -> usize {
        let mut c = self.node(0).conn().await;
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut c)
            .await
            .unwrap_or_else(|e| panic!("CLUSTER NODES: {e}"));
        let id =
            owner_in(&nodes, slot).unwrap_or_else(|| panic!("no node owns slot {slot}:\n{nodes}"));
        self.index_of(&id)
    }

    /// Moves `slot` to node `to`, keys included, while clients keep running;
    /// see [`move_slot_in_batches`](Self::move_slot_in_batches). Moves 10
    /// keys per `MIGRATE`.
    pub async fn move_slot(&self, slot: u16, to: usize) -> Vec<Vec<u8>> {
        self.move_slot_in_batches(slot, to, DEFAULT_MIGRATE_BATCH)
            .await
    }

    /// Moves `slot` to node `to`: `CLUSTER SETSLOT slot IMPORTING` on the
    /// target, `MIGRATING` on the source, then `CLUSTER GETKEYSINSLOT` and
    /// `MIGRATE .. KEYS` with `batch` keys at a time until the slot is empty
    /// on the source, and finally `CLUSTER SETSLOT slot NODE` on the target,
    /// the source and every other node. While keys are moving, clients get
    /// `ASK` for keys already moved and `TRYAGAIN` for multi-key commands
    /// over keys on both sides, as in a production resharding. Returns the
    /// keys it moved. Does nothing when `to` already owns the slot.
    ///
    /// The same steps one at a time: [`begin_move`](Self::begin_move).
    ///
    /// # Panics
    ///
    /// When a node refuses a step (the reply is quoted), or `to` is out of
    /// range.
    pub async fn move_slot_in_batches(&self, slot: u16, to: usize, batch: usize) -> Vec<Vec<u8>> {
        let Some(mut moving) = self.begin_move(slot, to).await else {
            return Vec::new();
        };
        let mut moved = Vec::new();
        loop {
            let keys = moving.migrate(batch).await;
            if keys.is_empty() {
                break;
            }
            moved.extend(keys);
        }
        moved.extend(moving.finish().await);
        moved
    }

    /// Starts moving `slot` to node `to` and stops there: the target is
    /// `IMPORTING` it and the source `MIGRATING` it, and no key has moved
    /// yet. Move keys with [`SlotMove::migrate`] and end with
    /// [`SlotMove::finish`]. `None` when `to` already owns the slot.
    ///
    /// # Panics
    ///
    /// As [`move_slot_in_batches`](Self::move_slot_in_batches).
    pub async fn begin_move(&self, slot: u16, to: usize) -> Option<SlotMove<'_>> {
        let from = self.owner_of(slot).await;
        if from == to {
            return None;
        }
        let (source, target) = (&self.nodes[from], &self.nodes[to]);
        let mut src = source.server.conn().await;
        let mut dst = target.server.conn().await;
        setslot(&mut dst, slot, &["IMPORTING", &source.id]).await;
        setslot(&mut src, slot, &["MIGRATING", &target.id]).await;
        Some(SlotMove {
            cluster: self,
            slot,
            from,
            to,
            src,
            dst,
        })
    }

    /// The index of the node with this id.
    fn index_of(&self, id: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.id == id)
            .unwrap_or_else(|| panic!("node {id} is not one of this cluster's"))
    }

    fn stop_at_exit(&self) {
        for n in &self.nodes {
            n.server.stop_at_exit();
        }
    }
}

/// A slot half way between two primaries; see [`RedisCluster::begin_move`].
/// Dropping it without [`finish`](Self::finish) leaves the slot migrating.
pub struct SlotMove<'a> {
    cluster: &'a RedisCluster,
    slot: u16,
    from: usize,
    to: usize,
    src: redis::aio::MultiplexedConnection,
    dst: redis::aio::MultiplexedConnection,
}

impl SlotMove<'_> {
    /// Moves up to `batch` of the slot's keys still on the source with one
    /// `MIGRATE`; returns them (none when the source holds no more).
    ///
    /// # Panics
    ///
    /// When a node refuses a step.
    pub async fn migrate(&mut self, batch: usize) -> Vec<Vec<u8>> {
        let slot = self.slot;
        let keys: Vec<Vec<u8>> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(batch.max(1))
            .query_async(&mut self.src)
            .await
            .unwrap_or_else(|e| panic!("CLUSTER GETKEYSINSLOT {slot}: {e}"));
        if keys.is_empty() {
            return keys;
        }
        redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(self.cluster.node(self.to).port())
            .arg("")
            .arg(0)
            .arg(MIGRATE_TIMEOUT_MS)
            .arg("KEYS")
            .arg(&keys)
            .query_async::<()>(&mut self.src)
            .await
            .unwrap_or_else(|e| panic!("MIGRATE of slot {slot} to node {}: {e}", self.to));
        keys
    }

    /// Moves the keys left on the source, then hands the slot to the
    /// target on every node (the target first, then the source, then the
    /// others). Returns the keys it moved.
    ///
    /// # Panics
    ///
    /// When a node refuses a step.
    pub async fn finish(mut self) -> Vec<Vec<u8>> {
        let mut moved = Vec::new();
        loop {
            let keys = self.migrate(DEFAULT_MIGRATE_BATCH).await;
            if keys.is_empty() {
                break;
            }
            moved.extend(keys);
        }
        let slot = self.slot;
        let id = self.cluster.nodes[self.to].id.clone();
        setslot(&mut self.dst, slot, &["NODE", &id]).await;
        setslot(&mut self.src, slot, &["NODE", &id]).await;
        for (i, other) in self.cluster.nodes.iter().enumerate() {
            if i != self.from && i != self.to {
                let mut c = other.server.conn().await;
                setslot(&mut c, slot, &["NODE", &id]).await;
            }
        }
        moved
    }
}

impl fmt::Debug for RedisCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCluster")
            .field("urls", &self.urls())
            .finish_non_exhaustive()
    }
}

/// `CLUSTER SETSLOT slot args..`.
async fn setslot(conn: &mut redis::aio::MultiplexedConnection, slot: u16, args: &[&str]) {
    redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(slot)
        .arg(args)
        .query_async::<()>(conn)
        .await
        .unwrap_or_else(|e| panic!("CLUSTER SETSLOT {slot} {args:?}: {e}"));
}

/// The id of the node that `CLUSTER NODES` output says owns `slot`.
fn owner_in(nodes: &str, slot: u16) -> Option<String> {
    nodes.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let owns = fields.iter().skip(8).any(|range| {
            if range.starts_with('[') {
                return false;
            }
            let (lo, hi) = range.split_once('-').unwrap_or((range, range));
            matches!((lo.parse::<u16>(), hi.parse::<u16>()), (Ok(lo), Ok(hi)) if (lo..=hi).contains(&slot))
        });
        owns.then(|| fields[0].to_string())
    })
}

/// `redis-cli --cluster create` over `servers`, primaries only.
fn create(servers: &[RedisServer]) {
    let bin = redis_cli_bin();
    let mut cmd = Command::new(&bin);
    cmd.arg("--cluster").arg("create");
    for s in servers {
        cmd.arg(format!("127.0.0.1:{}", s.port()));
    }
    cmd.args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdin(Stdio::null());
    let out = cmd.output().unwrap_or_else(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            panic!("redis-cli not found: run scripts/install-redis.sh (tried `{bin}`: {e})")
        }
        panic!("running `{bin}`: {e}")
    });
    if !out.status.success() {
        panic!(
            "redis-cli --cluster create failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Polls `CLUSTER INFO` on `server` until the node is part of a healthy
/// cluster of `size` nodes with every slot assigned.
fn wait_until_joined(server: &RedisServer, size: usize, deadline: Instant) {
    let known = format!("cluster_known_nodes:{size}");
    let mut last = String::new();
    loop {
        let info: Option<String> = server
            .client()
            .get_connection_with_timeout(Duration::from_secs(1))
            .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query(&mut c))
            .ok();
        if let Some(info) = info {
            let has = |line: &str| info.lines().any(|l| l.trim() == line);
            if has("cluster_state:ok") && has("cluster_slots_assigned:16384") && has(&known) {
                return;
            }
            last = info;
        }
        if Instant::now() >= deadline {
            panic!(
                "the cluster node on port {} did not join within {JOIN_TIMEOUT:?}; last CLUSTER INFO:\n{last}",
                server.port()
            );
        }
        thread::sleep(JOIN_PROBE_INTERVAL);
    }
}

/// One command on a blocking connection of its own.
fn sync_query<T: redis::FromRedisValue>(server: &RedisServer, cmd: &redis::Cmd) -> T {
    server
        .client()
        .get_connection_with_timeout(Duration::from_secs(5))
        .and_then(|mut c| cmd.query(&mut c))
        .unwrap_or_else(|e| panic!("{cmd:?} on port {}: {e}", server.port()))
}

/// The cluster started by [`shared_cluster`].
static SHARED: OnceLock<RedisCluster> = OnceLock::new();

/// One cluster of 3 primaries per test binary, started on first use, for
/// tests that only need isolation by key prefix (give each one a
/// [`unique_prefix`](crate::unique_prefix)). It lives until the test process
/// exits; its nodes are then killed. Tests must not move its slots, flush,
/// pause or stop it: other tests use it concurrently.
///
/// # Panics
///
/// As [`RedisCluster::start`]; a later call tries again.
pub fn shared_cluster() -> &'static RedisCluster {
    SHARED.get_or_init(|| {
        let cluster = RedisCluster::start(3);
        // SAFETY: registers a plain `extern "C"` function that never panics.
        // A failed registration only leaves directories behind: the
        // processes still die with this one through PR_SET_PDEATHSIG.
        unsafe {
            libc::atexit(stop_shared_at_exit);
        }
        cluster
    })
}

extern "C" fn stop_shared_at_exit() {
    if let Some(cluster) = SHARED.get() {
        cluster.stop_at_exit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_of_a_slot_is_read_from_cluster_nodes() {
        let nodes = "\
a1 127.0.0.1:1@2 myself,master - 0 0 1 connected 0-5460 [5461-<-b2]
b2 127.0.0.1:3@4 master - 0 0 2 connected 5461-10922 [5470->-c3]
c3 127.0.0.1:5@6 master - 0 0 3 connected 10923 10924-16383
";
        assert_eq!(owner_in(nodes, 0).as_deref(), Some("a1"));
        assert_eq!(owner_in(nodes, 5461).as_deref(), Some("b2"));
        assert_eq!(owner_in(nodes, 5470).as_deref(), Some("b2"));
        assert_eq!(owner_in(nodes, 10923).as_deref(), Some("c3"));
        assert_eq!(owner_in(nodes, 16383).as_deref(), Some("c3"));
        assert_eq!(owner_in("", 1), None);
    }
}
