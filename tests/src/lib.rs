//! Test harness: real `redis-server` processes on free loopback ports.
//!
//! Every integration test of the workspace talks to a Redis server that this
//! crate starts itself, on `127.0.0.1` and a port nobody else uses; the
//! machine's own Redis (6379) is never touched.
//!
//! * [`RedisServer`] owns one `redis-server` child process with its own
//!   temporary directory, started with persistence off (`--save ""
//!   --appendonly no`) and `DEBUG` enabled. It can be killed, restarted on the
//!   same port and directory, paused ([`RedisServer::pause_clients`]) or put to
//!   sleep ([`RedisServer::debug_sleep`]) to simulate failures.
//! * [`shared`] is one lazily started server per test binary, for tests that
//!   only need isolation by key prefix ([`unique_prefix`]).
//! * [`free_port`] hands out loopback ports, never the same one twice within a
//!   process.
//!
//! Server processes never outlive the test process: `Drop` kills and reaps
//! them, and each child is also started with `PR_SET_PDEATHSIG = SIGKILL`, so
//! an aborted run (a panic in a `static`, `SIGKILL` of the test binary, a
//! `process::abort`) leaves no stray `redis-server` behind.
//!
//! The binary is `$REDIS_SERVER` when set, else `redis-server` from `PATH`;
//! `scripts/install-redis.sh` installs it.
//!
//! # Clusters
//!
//! [`RedisCluster`] starts several [`RedisServer`]s with `--cluster-enabled
//! yes` (each with its own directory for `nodes.conf` and its own bus port
//! from [`free_port`]), joins them with `redis-cli --cluster create ..
//! --cluster-replicas 0 --cluster-yes`, and waits until every node reports
//! `cluster_state:ok`. It can move slots between primaries while clients run
//! ([`RedisCluster::move_slot`], or step by step with
//! [`RedisCluster::begin_move`]). [`shared_cluster`] is one lazily started
//! cluster per test binary, isolated by key prefix like [`shared`].
//! `redis-cli` is `$REDIS_CLI` when set, else `redis-cli` from `PATH`.

mod cluster;
mod ports;
mod process;
mod server;

pub use cluster::{RedisCluster, SlotMove, redis_cli_bin, shared_cluster};
pub use ports::free_port;
pub use server::{RedisServer, Sleeping, redis_server_bin, shared, unique_prefix};
