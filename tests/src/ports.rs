//! Free loopback ports.

use std::collections::HashSet;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, PoisonError};

/// Ports already handed out by this process.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Lowest port tried for servers.
const LOW: u16 = 20_000;
/// Highest port tried (exclusive), so that `port + 10000` (a cluster node's
/// bus port) is still a valid port.
const HIGH: u16 = 55_536;
/// Attempts before giving up.
const ATTEMPTS: usize = 1_000;

/// A TCP port on `127.0.0.1` that was free a moment ago and that this process
/// has not handed out before.
///
/// The port is checked by binding `127.0.0.1:PORT` and releasing it at once,
/// so another process may still take it before the caller binds it (a server
/// that then fails to bind is retried on a new port by
/// [`RedisServer::start`](crate::RedisServer::start)). Ports are picked at
/// random *below* the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`), so the source port of an
/// outgoing connection — tests open many — never lands on a port handed out
/// here; when that range leaves no room, the kernel chooses (`bind` to port
/// 0). Every returned port is recorded, and none is returned twice within a
/// process.
///
/// # Panics
///
/// When no free port is found in 1000 attempts.
pub fn free_port() -> u16 {
    let high = HIGH.min(ephemeral_low());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    let random = RandomState::new();
    for attempt in 0..ATTEMPTS {
        let candidate = if high > LOW + 1_000 {
            let mut h = random.build_hasher();
            h.write_usize(attempt);
            h.write_u32(std::process::id());
            LOW + (h.finish() % u64::from(high - LOW)) as u16
        } else {
            0
        };
        let Ok(listener) = TcpListener::bind((Ipv4Addr::LOCALHOST, candidate)) else {
            continue;
        };
        let Ok(addr) = listener.local_addr() else {
            continue;
        };
        drop(listener);
        if handed_out.insert(addr.port()) {
            return addr.port();
        }
    }
    panic!("no free loopback port found in {ATTEMPTS} attempts");
}

/// The first port of the kernel's ephemeral range (32768 when unknown).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_bindable() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
        for &p in &ports[..10] {
            assert!(p >= 1024, "port {p} is privileged");
            TcpListener::bind((Ipv4Addr::LOCALHOST, p)).expect("handed-out port binds");
        }
    }
}
