//! One connection type for every Redis operation, standalone or cluster.
//!
//! [`Conn`] implements redis-rs's `ConnectionLike` by delegating to the
//! connection it holds, so each store operation is written once and runs on
//! either deployment: on a cluster, redis-rs routes every command by its keys
//! (splitting multi-key `MGET` and `UNLINK` by slot) and follows `MOVED` and
//! `ASK` redirections itself.

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// A connection to a standalone server or to a cluster. Cheap to clone (every
/// variant is a handle to a multiplexed connection).
#[derive(Clone)]
pub(crate) enum Conn {
    /// Standalone: multiplexed, reconnecting by itself.
    Single(ConnectionManager),
    /// Standalone, a connection of its own (for blocking stream reads).
    Own(MultiplexedConnection),
    /// Redis Cluster: one multiplexed connection per node, routed by slot.
    Cluster(ClusterConnection),
}

impl Conn {
    /// Sends one command and reads its reply, converted to `T`.
    ///
    /// On a standalone connection this calls the connection's own `async`
    /// method, not [`ConnectionLike::req_packed_command`], which boxes its
    /// future: one allocation and one dynamic call less per command (this is
    /// every hit's path).
    pub(crate) async fn send<T: redis::FromRedisValue>(
        &mut self,
        cmd: &Cmd,
    ) -> redis::RedisResult<T> {
        let value = match self {
            Conn::Single(c) => c.send_packed_command(cmd).await?,
            Conn::Own(c) => c.send_packed_command(cmd).await?,
            Conn::Cluster(c) => c.req_packed_command(cmd).await?,
        };
        Ok(redis::from_redis_value(value.extract_error()?)?)
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Own(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Own(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Own(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Response timeout of the write-behind flushers' connections: longer than
/// their longest blocking read (`XREADGROUP BLOCK`, at most 1 s), so that an
/// idle read is answered, not timed out (which would drop the connection).
pub(crate) const FLUSHER_RESPONSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens connections of their own, for work that blocks a connection (the
/// write-behind flushers' `XREADGROUP BLOCK`).
// One per cache, used when a flusher (re)connects: its size costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub(crate) enum Connector {
    Single(redis::Client),
    /// A cluster client whose response timeout outlasts a blocking read.
    Cluster(ClusterClient),
}

impl Connector {
    /// A new connection.
    pub(crate) async fn open(&self) -> redis::RedisResult<Conn> {
        match self {
            Connector::Single(client) => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_response_timeout(Some(FLUSHER_RESPONSE_TIMEOUT));
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map(Conn::Own)
            }
            Connector::Cluster(client) => client.get_async_connection().await.map(Conn::Cluster),
        }
    }
}
