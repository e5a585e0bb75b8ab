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
//! # Room for a cluster
//!
//! A later `RedisCluster` (in a `cluster` module) will start several
//! [`RedisServer`]s with `start_with(&["--cluster-enabled", "yes",
//! "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", ..])`,
//! each in its own directory, then join them with `redis-cli --cluster create
//! 127.0.0.1:P1 .. --cluster-replicas N --cluster-yes` and wait until
//! `CLUSTER INFO` reports `cluster_state:ok`. Each node also needs its bus port
//! (port + 10000 by default) free: [`free_port`] keeps ports low enough for
//! that, and a cluster may still pass `--cluster-port` explicitly.

mod ports;
mod process;
mod server;

pub use ports::free_port;
pub use server::{RedisServer, redis_server_bin, shared, unique_prefix};
