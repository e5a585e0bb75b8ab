//! Tests of the harness itself, against real `redis-server` processes.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cache_tests::{RedisCluster, RedisServer, free_port, shared, unique_prefix};
use redis::RedisResult;
use redis::aio::MultiplexedConnection;
use tokio::time::timeout;

/// Upper bound for anything that should happen "soon".
const BOUND: Duration = Duration::from_secs(10);

async fn ping(conn: &mut MultiplexedConnection) -> RedisResult<String> {
    redis::cmd("PING").query_async(conn).await
}

async fn config_get(conn: &mut MultiplexedConnection, name: &str) -> String {
    let (key, value): (String, String) = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query_async(conn)
        .await
        .expect("CONFIG GET");
    assert_eq!(key, name);
    value
}

/// Whether a process with this pid is alive (a zombie counts as dead).
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
            .unwrap_or(true),
        Err(_) => false,
    }
}

#[tokio::test]
async fn a_started_server_answers_ping_with_the_harness_options() {
    let server = RedisServer::start();
    assert!(server.is_running());
    assert!(server.pid().is_some());
    assert_eq!(server.url(), format!("redis://127.0.0.1:{}", server.port()));
    assert!(server.dir().is_dir());

    let mut conn = server.conn().await;
    assert_eq!(ping(&mut conn).await.expect("PING"), "PONG");
    assert_eq!(config_get(&mut conn, "save").await, "");
    assert_eq!(config_get(&mut conn, "appendonly").await, "no");
    assert_eq!(config_get(&mut conn, "bind").await, "127.0.0.1");
    assert_eq!(config_get(&mut conn, "enable-debug-command").await, "yes");
    let dir = config_get(&mut conn, "dir").await;
    assert_eq!(
        Path::new(&dir).canonicalize().expect("server dir"),
        server.dir().canonicalize().expect("harness dir")
    );
    assert!(server.dir().join("redis.log").is_file());
}

#[tokio::test]
async fn two_servers_get_different_ports_and_separate_data() {
    let a = RedisServer::start();
    let b = RedisServer::start();
    assert_ne!(a.port(), b.port());
    assert_ne!(a.dir(), b.dir());

    let mut ca = a.conn().await;
    let mut cb = b.conn().await;
    let _: () = redis::cmd("SET")
        .arg("only-in-a")
        .arg(1)
        .query_async(&mut ca)
        .await
        .expect("SET");
    let in_a: Option<i64> = redis::cmd("GET")
        .arg("only-in-a")
        .query_async(&mut ca)
        .await
        .expect("GET");
    let in_b: Option<i64> = redis::cmd("GET")
        .arg("only-in-a")
        .query_async(&mut cb)
        .await
        .expect("GET");
    assert_eq!(in_a, Some(1));
    assert_eq!(in_b, None);
}

#[tokio::test]
async fn kill_breaks_connections_and_restart_serves_the_same_port_again() {
    let mut server = RedisServer::start();
    let port = server.port();
    let dir = server.dir().to_path_buf();
    let mut conn = server.conn().await;
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut conn)
        .await
        .expect("SET");

    server.kill();
    assert!(!server.is_running());
    assert_eq!(server.pid(), None);
    server.kill(); // idempotent
    assert!(!server.is_running());

    let old = timeout(BOUND, ping(&mut conn))
        .await
        .expect("a command on a killed server fails promptly");
    assert!(old.is_err(), "PING on a killed server answered {old:?}");
    let fresh = timeout(BOUND, server.client().get_multiplexed_async_connection())
        .await
        .expect("connecting to a killed server fails promptly");
    assert!(fresh.is_err(), "connected to a killed server");
    assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());

    server.restart();
    assert!(server.is_running());
    assert_eq!(server.port(), port);
    assert_eq!(server.dir(), dir);
    let mut conn = server.conn().await;
    assert_eq!(ping(&mut conn).await.expect("PING after restart"), "PONG");
    // Persistence is off by default: the restarted server is empty.
    let v: Option<String> = redis::cmd("GET")
        .arg("k")
        .query_async(&mut conn)
        .await
        .expect("GET");
    assert_eq!(v, None);
}

#[tokio::test]
async fn restart_kills_a_running_server_first() {
    let mut server = RedisServer::start();
    let before = server.pid().expect("running");
    server.restart();
    let after = server.pid().expect("running again");
    assert_ne!(before, after);
    assert!(
        !process_alive(before),
        "the old process {before} still runs"
    );
    let mut conn = server.conn().await;
    assert_eq!(ping(&mut conn).await.expect("PING"), "PONG");
}

#[tokio::test]
async fn start_with_passes_options_and_restart_keeps_appendonly_data() {
    let mut server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let mut conn = server.conn().await;
    assert_eq!(config_get(&mut conn, "appendonly").await, "yes");
    let _: () = redis::cmd("SET")
        .arg("durable")
        .arg("yes")
        .query_async(&mut conn)
        .await
        .expect("SET");

    server.kill();
    server.restart();
    let mut conn = server.conn().await;
    let v: Option<String> = redis::cmd("GET")
        .arg("durable")
        .query_async(&mut conn)
        .await
        .expect("GET");
    assert_eq!(v.as_deref(), Some("yes"));
}

#[tokio::test]
async fn a_server_requiring_a_password_starts() {
    let server = RedisServer::start_with(&["--requirepass", "s3cret"]);
    let denied = timeout(BOUND, server.client().get_multiplexed_async_connection()).await;
    let denied = match denied {
        Ok(Ok(mut conn)) => ping(&mut conn).await.map(|_| ()),
        Ok(Err(e)) => Err(e),
        Err(_) => panic!("connecting without a password hung"),
    };
    assert!(denied.is_err(), "a command without the password succeeded");

    let url = format!("redis://:s3cret@127.0.0.1:{}", server.port());
    let mut conn = redis::Client::open(url)
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connecting with the password");
    assert_eq!(ping(&mut conn).await.expect("PING"), "PONG");
}

/// The server's clock (`TIME`), in microseconds.
async fn server_time_us(conn: &mut MultiplexedConnection) -> u64 {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(conn).await.expect("TIME");
    secs * 1_000_000 + micros
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_clients_holds_commands_until_the_pause_ends() {
    let server = RedisServer::start();
    // Connect before pausing: the connection's set-up commands would be held
    // too.
    let mut conn = server.conn().await;
    let before = server_time_us(&mut conn).await;
    server.pause_clients(1000).await;
    // Read on the server's own clock: a command sent during the pause runs
    // only once it has ended, however slow this machine is.
    let after = server_time_us(&mut conn).await;
    assert!(
        after - before >= 1_000_000,
        "TIME ran {} µs after the pause began",
        after - before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_sleep_blocks_the_server_without_blocking_the_caller() {
    let server = RedisServer::start();
    let mut conn = server.conn().await;
    let before = server_time_us(&mut conn).await;
    let sleeping = server.debug_sleep(1.5).await;
    assert!(
        !sleeping.is_over(),
        "debug_sleep returned only once the server had woken"
    );
    let after = server_time_us(&mut conn).await;
    assert!(
        after - before >= 1_500_000,
        "TIME ran {} µs after the sleep began",
        after - before
    );
    timeout(BOUND, sleeping.over())
        .await
        .expect("the sleep's reply");
}

#[test]
fn drop_kills_the_process_and_removes_its_directory() {
    let server = RedisServer::start();
    let pid = server.pid().expect("running");
    let port = server.port();
    let dir = server.dir().to_path_buf();
    assert!(process_alive(pid));

    drop(server);
    assert!(
        !process_alive(pid),
        "redis-server {pid} outlived its RedisServer"
    );
    assert!(!dir.exists(), "{} was not removed", dir.display());
    assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
}

/// Started as a child test process by `servers_die_with_the_test_process`:
/// starts a server, reports its pid, and aborts without running any `Drop`.
#[test]
#[ignore = "run as a child process by servers_die_with_the_test_process"]
fn child_starts_a_server_and_aborts() {
    let server = RedisServer::start();
    let pid = server.pid().expect("running");
    assert!(process_alive(pid));
    if std::env::var_os("CACHE_TESTS_ABORT_CHILD").is_some() {
        println!("\nREDIS_DIR={}", server.dir().display());
        println!("REDIS_PID={pid}");
        std::process::abort();
    }
}

#[test]
fn servers_die_with_the_test_process() {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "child_starts_a_server_and_aborts",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CACHE_TESTS_ABORT_CHILD", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("running the child test process");
    let stdout = child.stdout.take().expect("piped stdout");
    // Reading ends when the child exits (its stdout closes); the server's
    // output goes to its log file, not to this pipe.
    let lines: Vec<String> = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .collect();
    let status = child.wait().expect("child exit");
    assert!(!status.success(), "the child was expected to abort");
    let reported = |name: &str| {
        lines
            .iter()
            .find_map(|l| Some(l.split_once(name)?.1.trim().to_string()))
            .unwrap_or_else(|| panic!("the child did not report {name}; it printed {lines:?}"))
    };
    let pid: u32 = reported("REDIS_PID=").parse().expect("a pid");
    // The aborted child could not remove its server's directory.
    let _ = std::fs::remove_dir_all(reported("REDIS_DIR="));

    let deadline = Instant::now() + BOUND;
    while process_alive(pid) {
        assert!(
            Instant::now() < deadline,
            "redis-server {pid} outlived the aborted test process"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn shared_is_one_server_and_prefixes_never_collide() {
    let a = shared();
    let b = shared();
    assert!(std::ptr::eq(a, b));
    assert!(a.is_running());
    let mut conn = a.conn().await;
    assert_eq!(ping(&mut conn).await.expect("PING"), "PONG");

    let prefixes: HashSet<String> = (0..100).map(|_| unique_prefix("harness")).collect();
    assert_eq!(prefixes.len(), 100);
    let first = unique_prefix("harness");
    assert!(first.starts_with("harness-"));
    assert!(first.contains(&std::process::id().to_string()));
}

#[test]
fn free_port_never_hands_out_a_port_twice() {
    let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
    let distinct: HashSet<u16> = ports.iter().copied().collect();
    assert_eq!(distinct.len(), ports.len());
    assert!(ports.iter().all(|&p| p >= 1024));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_serves_every_slot_and_moves_slots_with_their_keys() {
    let cluster = RedisCluster::start(3);
    assert_eq!(cluster.urls().len(), 3);
    let mut pids = Vec::new();
    for i in 0..cluster.len() {
        let mut c = cluster.node(i).conn().await;
        let info: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async(&mut c)
            .await
            .expect("CLUSTER INFO");
        assert!(info.contains("cluster_state:ok"), "{info}");
        assert!(
            info.contains("cluster_size:3"),
            "every node holds slots: {info}"
        );
        pids.push(cluster.node(i).pid().expect("running"));
    }
    let mut conn = cluster.conn().await;
    // Keys on every primary, through one cluster connection.
    let keys: Vec<String> = (0..30).map(|i| format!("harness:{i}")).collect();
    let mut owners = HashSet::new();
    for k in &keys {
        redis::cmd("SET")
            .arg(k)
            .arg(k)
            .query_async::<()>(&mut conn)
            .await
            .expect("SET");
        owners.insert(cluster.owner_of(cluster.slot_of(k).await).await);
    }
    assert_eq!(owners.len(), 3, "30 keys land on every primary");
    // A slot moves with its key, and the key stays readable.
    let key = "{moving}k";
    redis::cmd("SET")
        .arg(key)
        .arg("v")
        .query_async::<()>(&mut conn)
        .await
        .expect("SET");
    let slot = cluster.slot_of(key).await;
    let from = cluster.owner_of(slot).await;
    let to = (from + 1) % cluster.len();
    let moved = cluster.move_slot_in_batches(slot, to, 1).await;
    assert_eq!(
        moved,
        vec![key.as_bytes().to_vec()],
        "the slot's one key moved"
    );
    assert_eq!(cluster.owner_of(slot).await, to);
    for i in 0..cluster.len() {
        let mut c = cluster.node(i).conn().await;
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut c)
            .await
            .expect("CLUSTER NODES");
        assert!(
            !nodes.contains('['),
            "no slot left migrating on node {i}: {nodes}"
        );
    }
    let mut direct = cluster.node(to).conn().await;
    let there: Option<String> = redis::cmd("GET")
        .arg(key)
        .query_async(&mut direct)
        .await
        .expect("GET on the new owner");
    assert_eq!(there.as_deref(), Some("v"));
    let through: Option<String> = redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .expect("GET follows the move");
    assert_eq!(through.as_deref(), Some("v"));
    drop(conn);
    drop(cluster);
    for pid in pids {
        assert!(
            !process_alive(pid),
            "node {pid} was killed with the cluster"
        );
    }
}
