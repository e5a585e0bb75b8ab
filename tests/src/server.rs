//! One `redis-server` child process.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError, TryLockError};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ports::free_port;
use crate::process::spawn_tied_to_process;

/// How long a starting server has to answer `PING`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a starting server is probed.
const PROBE_INTERVAL: Duration = Duration::from_millis(10);
/// New ports tried by [`RedisServer::start_with`] when the chosen one turns
/// out to be taken.
const START_ATTEMPTS: usize = 5;
/// Lines of the server's logs quoted in a panic message.
const LOG_TAIL_LINES: usize = 40;
/// The server's own log file, in its directory.
const LOG_FILE: &str = "redis.log";
/// What the process wrote to stdout and stderr (config errors land here).
const OUTPUT_FILE: &str = "output.log";

/// The `redis-server` binary the harness runs: `$REDIS_SERVER` when set and
/// not empty, else `redis-server` (looked up in `PATH`).
pub fn redis_server_bin() -> String {
    std::env::var("REDIS_SERVER")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "redis-server".to_string())
}

/// One `redis-server` child process on `127.0.0.1`, with its own temporary
/// directory.
///
/// The server listens on a port from [`free_port`], bound to `127.0.0.1`
/// only, runs with persistence off (`--save "" --appendonly no`, which
/// [`start_with`](Self::start_with) may override) and with
/// `--enable-debug-command yes` so that [`debug_sleep`](Self::debug_sleep)
/// works on Redis 7. Its log is `redis.log` in [`dir`](Self::dir); startup
/// failures quote it.
///
/// Dropping the value kills the process (`SIGKILL`), reaps it and removes the
/// directory. The process also receives `SIGKILL` if the test process dies
/// first, so no server outlives a test run.
///
/// Starting, killing and restarting block the calling thread (for about the
/// server's startup time, tens of milliseconds); they may be called from
/// async tests.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    /// Removes the directory when the server is dropped (after the process is
    /// killed, since fields drop after `Drop::drop`).
    _tmp: TempDir,
    /// The binary, kept for [`restart`](Self::restart).
    bin: String,
    /// Arguments after the harness's own, kept for [`restart`](Self::restart).
    extra_args: Vec<String>,
    child: Mutex<Option<Child>>,
}

/// A `DEBUG SLEEP` sent by [`RedisServer::debug_sleep`]: whether the server
/// has answered it, that is, woken up.
#[derive(Debug, Clone)]
pub struct Sleeping {
    over: tokio::sync::watch::Receiver<bool>,
}

impl Sleeping {
    /// Whether the server has answered the `DEBUG SLEEP` (its sleep is over).
    pub fn is_over(&self) -> bool {
        *self.over.borrow()
    }

    /// Waits until the server has answered the `DEBUG SLEEP`.
    pub async fn over(mut self) {
        let _ = self.over.wait_for(|over| *over).await;
    }
}

/// Why a launch did not give a ready server.
enum LaunchError {
    /// Someone else holds the port: a new port may work.
    PortTaken(String),
    /// Anything else: give up with this message.
    Fatal(String),
}

impl RedisServer {
    /// Starts a server with the harness's default options; see
    /// [`RedisServer`]. Returns once it answers `PING` (at most 10 s).
    ///
    /// # Panics
    ///
    /// When `redis-server` cannot be run ("redis-server not found: run
    /// scripts/install-redis.sh"), exits during startup, or does not answer
    /// within 10 s; the message quotes the server's log.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// Starts a server with `extra_args` after the harness's own options, so
    /// they may override them: for example `&["--appendonly", "yes"]`, or
    /// ACL options such as `&["--requirepass", "secret"]`. An empty value is
    /// passed as an empty argument (`&["--save", ""]`).
    ///
    /// The harness always listens on the plain TCP port it chose (do not pass
    /// `--port` or `--bind`); a TLS port may be added beside it. Returns once
    /// the server answers `PING`, or with an authentication error when it
    /// requires one (at most 10 s). When the chosen port turns out to be taken
    /// by another process, up to 5 new ports are tried.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_with(extra_args: &[&str]) -> RedisServer {
        RedisServer::start_bin(redis_server_bin(), extra_args)
    }

    /// [`start_with`](Self::start_with) running `bin`.
    fn start_bin(bin: String, extra_args: &[&str]) -> RedisServer {
        let extra_args: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            let tmp = tempfile::Builder::new()
                .prefix("cache-tests-redis-")
                .tempdir()
                .unwrap_or_else(|e| panic!("creating a temporary directory for redis-server: {e}"));
            let mut server = RedisServer {
                port: free_port(),
                dir: tmp.path().to_path_buf(),
                _tmp: tmp,
                bin: bin.clone(),
                extra_args: extra_args.clone(),
                child: Mutex::new(None),
            };
            match server.launch() {
                Ok(()) => return server,
                Err(LaunchError::PortTaken(log)) => last_log = log,
                Err(LaunchError::Fatal(message)) => panic!("{message}"),
            }
        }
        panic!(
            "redis-server found its port taken {START_ATTEMPTS} times in a row; last log:\n{last_log}"
        );
    }

    /// The TCP port the server listens on, on `127.0.0.1`. It stays the same
    /// across [`restart`](Self::restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A `redis::Client` for [`url`](Self::url). Creating it opens no
    /// connection.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url())
            .unwrap_or_else(|e| panic!("a redis client for {}: {e}", self.url()))
    }

    /// A new multiplexed connection to the server.
    ///
    /// Unlike redis-rs's default (500 ms), its commands time out only after
    /// 30 s, so a command held by [`pause_clients`](Self::pause_clients) or
    /// [`debug_sleep`](Self::debug_sleep) completes once the server resumes;
    /// connecting times out after 5 s. A killed server fails commands at once
    /// (the socket closes). The connection does not reconnect by itself.
    ///
    /// # Panics
    ///
    /// When the server does not accept it (for example after
    /// [`kill`](Self::kill)); use [`client`](Self::client) to observe the
    /// error instead.
    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(30)));
        self.client()
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .unwrap_or_else(|e| panic!("connecting to redis-server at {}: {e}", self.url()))
    }

    /// The process id of the running server, `None` after [`kill`](Self::kill)
    /// or when it has exited.
    pub fn pid(&self) -> Option<u32> {
        let mut child = self.lock_child();
        let running = matches!(child.as_mut().map(Child::try_wait), Some(Ok(None)));
        if running {
            child.as_ref().map(Child::id)
        } else {
            None
        }
    }

    /// Kills the server with `SIGKILL` and waits until it has exited: no
    /// shutdown, no save. Open connections break, new ones are refused.
    /// Calling it again (or on a server that already exited) does nothing.
    pub fn kill(&mut self) {
        let child = self
            .child
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut child) = child {
            // Fails only when the process has already exited; wait reaps it
            // either way.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, in the same directory, with
    /// the same arguments, killing it first if it still runs. Returns once it
    /// answers `PING` (at most 10 s). With persistence on (for example
    /// `start_with(&["--appendonly", "yes", "--appendfsync", "always"])`) the
    /// data written before [`kill`](Self::kill) is loaded back; with the
    /// defaults the server starts empty.
    ///
    /// # Panics
    ///
    /// When the server cannot start again, for example because another process
    /// took its port meanwhile; the message quotes the server's log.
    pub fn restart(&mut self) {
        self.kill();
        match self.launch() {
            Ok(()) => {}
            Err(LaunchError::PortTaken(log)) => panic!(
                "redis-server could not restart on port {}: the port is taken; log:\n{log}",
                self.port
            ),
            Err(LaunchError::Fatal(message)) => panic!("{message}"),
        }
    }

    /// [`restart`](Self::restart) with `more_args` after the arguments the
    /// server was started with, for this restart and the later ones: for
    /// example ACL rules (`&["--user", "default", "on", "nopass", "~*", "&*",
    /// "+@all", "-unlink"]`) that hold back what a client may do once the
    /// server is back.
    ///
    /// # Panics
    ///
    /// As [`restart`](Self::restart).
    pub fn restart_with(&mut self, more_args: &[&str]) {
        self.extra_args
            .extend(more_args.iter().map(|s| s.to_string()));
        self.restart();
    }

    /// Whether the server process is alive (it may still be starting or
    /// loading).
    pub fn is_running(&self) -> bool {
        self.pid().is_some()
    }

    /// Sends `CLIENT PAUSE ms ALL` on a connection of its own and returns as
    /// soon as the server acknowledges it, without waiting for the pause to
    /// end. For `ms` milliseconds the server then holds every command from
    /// every client (including connection set-up commands, so connect first)
    /// and runs them when the pause ends; connections stay open.
    ///
    /// # Panics
    ///
    /// When the server cannot be reached or refuses the command.
    pub async fn pause_clients(&self, ms: u64) {
        let mut conn = self.conn().await;
        redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(ms)
            .arg("ALL")
            .query_async::<()>(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("CLIENT PAUSE {ms} ALL on {}: {e}", self.url()));
    }

    /// The commands clients sent while `f` ran, as `MONITOR` prints them,
    /// without those that scripts ran (`[0 lua]`) and without the two `ECHO`
    /// markers that delimit the window.
    ///
    /// # Panics
    ///
    /// When `MONITOR` cannot be opened, or stays silent for 5 s.
    pub async fn client_commands_during<F: std::future::Future<Output = ()>>(
        &self,
        f: F,
    ) -> Vec<String> {
        use futures_util::StreamExt;
        let monitor = self.client().get_async_monitor().await.expect("MONITOR");
        let mut lines = monitor.into_on_message::<String>();
        let mut probe = self.conn().await;
        let mut next = async || {
            tokio::time::timeout(Duration::from_secs(5), lines.next())
                .await
                .expect("a MONITOR line within 5 s")
                .expect("MONITOR open")
        };
        let _: String = redis::cmd("ECHO")
            .arg("window-start")
            .query_async(&mut probe)
            .await
            .expect("ECHO");
        while !next().await.contains("window-start") {}
        f.await;
        let _: String = redis::cmd("ECHO")
            .arg("window-end")
            .query_async(&mut probe)
            .await
            .expect("ECHO");
        let mut seen = Vec::new();
        loop {
            let line = next().await;
            if line.contains("window-end") {
                return seen;
            }
            if !line.contains("[0 lua]") {
                seen.push(line);
            }
        }
    }

    /// Makes the whole server sleep for `secs` seconds (`DEBUG SLEEP secs`),
    /// simulating a server that hangs: connections stay open, and every
    /// command from any client waits until the sleep ends.
    ///
    /// The command is written on a new connection of its own, and this method
    /// returns as soon as the server is asleep (its main thread is in a
    /// `nanosleep` system call, read from `/proc`), *without* waiting for the
    /// sleep to end: every command written afterwards waits for it. The reply
    /// is read by a task spawned on the current Tokio runtime (so this must be
    /// called inside one), which keeps the connection open until the server
    /// answers; the returned [`Sleeping`] tells when it has. Needs
    /// `--enable-debug-command yes`, which the harness sets; a server started
    /// with it overridden replies with an error and does not sleep.
    ///
    /// # Panics
    ///
    /// When `secs` is negative or not finite, or when the command cannot be
    /// sent.
    pub async fn debug_sleep(&self, secs: f64) -> Sleeping {
        assert!(
            secs.is_finite() && secs >= 0.0,
            "DEBUG SLEEP needs a finite, non-negative duration, got {secs}"
        );
        let secs = secs.to_string();
        let command = format!(
            "*3\r\n$5\r\nDEBUG\r\n$5\r\nSLEEP\r\n${}\r\n{secs}\r\n",
            secs.len()
        );
        let mut stream = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))
            .await
            .unwrap_or_else(|e| panic!("connecting to redis-server at {}: {e}", self.url()));
        stream
            .write_all(command.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("sending DEBUG SLEEP to {}: {e}", self.url()));
        let (woke, over) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let mut reply = [0u8; 256];
            let _ = stream.read(&mut reply).await;
            let _ = woke.send(true);
        });
        let sleeping = Sleeping { over };
        let deadline = Instant::now() + READY_TIMEOUT;
        while !self.asleep() && !sleeping.is_over() {
            assert!(
                Instant::now() < deadline,
                "redis-server at {} did not start its DEBUG SLEEP",
                self.url()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        sleeping
    }

    /// Whether the server's main thread is in `nanosleep` or
    /// `clock_nanosleep` (x86-64 and aarch64 numbers), as during `DEBUG SLEEP`.
    fn asleep(&self) -> bool {
        let Some(pid) = self.pid() else {
            return false;
        };
        let syscall = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
        let number = syscall.split_whitespace().next().unwrap_or("");
        let sleeps: &[&str] = if cfg!(target_arch = "aarch64") {
            &["101", "115"]
        } else {
            &["35", "230"]
        };
        sleeps.contains(&number)
    }

    /// The server's own temporary directory (its `--dir`: RDB and AOF files,
    /// `redis.log`). It stays the same across [`restart`](Self::restart) and
    /// is removed when the server is dropped.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock_child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Spawns the process on `self.port` and waits until it is ready.
    fn launch(&mut self) -> Result<(), LaunchError> {
        let bin = self.bin.clone();
        let output = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join(OUTPUT_FILE))
            .map_err(|e| LaunchError::Fatal(format!("creating redis-server's output file: {e}")))?;
        let output_err = output
            .try_clone()
            .map_err(|e| LaunchError::Fatal(format!("duplicating a file handle: {e}")))?;
        let mut cmd = Command::new(&bin);
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join(LOG_FILE))
            .args(["--daemonize", "no"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--enable-debug-command", "yes"])
            .args(&self.extra_args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(output_err);
        let child = spawn_tied_to_process(cmd).map_err(|e| {
            LaunchError::Fatal(if e.kind() == io::ErrorKind::NotFound {
                format!("redis-server not found: run scripts/install-redis.sh (tried `{bin}`: {e})")
            } else {
                format!("running `{bin}`: {e}")
            })
        })?;
        let pid = child.id();
        *self.child.get_mut().unwrap_or_else(PoisonError::into_inner) = Some(child);

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let exited = self
                .lock_child()
                .as_mut()
                .map(|c| c.try_wait().ok().flatten());
            if let Some(Some(status)) = exited {
                self.kill();
                let log = self.log_tail();
                return Err(if port_taken(&log) {
                    LaunchError::PortTaken(log)
                } else {
                    LaunchError::Fatal(format!(
                        "redis-server on port {} exited during startup ({status}); log:\n{log}",
                        self.port
                    ))
                });
            }
            match probe(self.port, pid) {
                Probe::Ready => return Ok(()),
                Probe::Foreign(other) => {
                    self.kill();
                    return Err(LaunchError::PortTaken(format!(
                        "port {} is served by another redis-server (pid {other})",
                        self.port
                    )));
                }
                Probe::NotYet => {}
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(LaunchError::Fatal(format!(
                    "redis-server on port {} did not answer PING within {READY_TIMEOUT:?}; log:\n{}",
                    self.port,
                    self.log_tail()
                )));
            }
            thread::sleep(PROBE_INTERVAL);
        }
    }

    /// The last lines of the server's log and output, for panic messages.
    fn log_tail(&self) -> String {
        let mut text = String::new();
        for name in [OUTPUT_FILE, LOG_FILE] {
            let content = fs::read_to_string(self.dir.join(name)).unwrap_or_default();
            let lines: Vec<&str> = content.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            if !tail.is_empty() {
                text.push_str(&format!("--- {name} ---\n{}\n", tail.join("\n")));
            }
        }
        if text.is_empty() {
            text.push_str("(empty)");
        }
        text
    }

    /// Kills the process and removes the directory without needing `&mut`
    /// (the [`shared`] server is never dropped). Never panics and never
    /// blocks on the lock.
    pub(crate) fn stop_at_exit(&self) {
        let mut guard = match self.child.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            // Another thread is using it: PR_SET_PDEATHSIG still kills the
            // process when this one is gone.
            Err(TryLockError::WouldBlock) => return,
        };
        if let Some(mut child) = guard.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Drop for RedisServer {
    /// Kills the process (`SIGKILL`), reaps it, then removes the directory.
    /// Never panics.
    fn drop(&mut self) {
        self.kill();
    }
}

impl fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisServer")
            .field("port", &self.port)
            .field("dir", &self.dir)
            .field("bin", &self.bin)
            .field("extra_args", &self.extra_args)
            .finish_non_exhaustive()
    }
}

/// Whether a failed start's log says the port was in use.
fn port_taken(log: &str) -> bool {
    log.contains("Address already in use")
}

/// What a probe of a starting server found.
enum Probe {
    /// Not accepting connections yet, or still loading its data.
    NotYet,
    /// Answering commands.
    Ready,
    /// Answering, but it is another process (its pid).
    Foreign(u32),
}

/// Connects to `127.0.0.1:port`, sends `PING`, and when it answers checks
/// with `INFO server` that the server is process `pid`.
fn probe(port: u16, pid: u32) -> Probe {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(250)) else {
        return Probe::NotYet;
    };
    let timeout = Some(Duration::from_secs(1));
    if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
        return Probe::NotYet;
    }
    let Ok(reader) = stream.try_clone() else {
        return Probe::NotYet;
    };
    let mut reader = BufReader::new(reader);
    let mut line = String::new();
    if stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() || reader.read_line(&mut line).is_err() {
        return Probe::NotYet;
    }
    if line.starts_with("-LOADING") {
        return Probe::NotYet;
    }
    if line.starts_with('-') {
        // It answers but wants authentication (ACL options): it is up, and
        // the caller checks that its own process is still alive.
        return Probe::Ready;
    }
    if !line.starts_with("+PONG") {
        return Probe::NotYet;
    }
    match info_process_id(&mut stream, &mut reader) {
        Some(id) if id != pid => Probe::Foreign(id),
        _ => Probe::Ready,
    }
}

/// `process_id` from `INFO server`, or `None` when the reply cannot be read.
fn info_process_id(stream: &mut TcpStream, reader: &mut BufReader<TcpStream>) -> Option<u32> {
    stream
        .write_all(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
        .ok()?;
    let mut header = String::new();
    reader.read_line(&mut header).ok()?;
    let len: usize = header.strip_prefix('$')?.trim_end().parse().ok()?;
    let mut body = vec![0u8; len + 2];
    reader.read_exact(&mut body).ok()?;
    let body = String::from_utf8_lossy(&body);
    body.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The server started by [`shared`].
static SHARED: OnceLock<RedisServer> = OnceLock::new();

/// One server per test binary, started on first use with
/// [`RedisServer::start`], for tests that only need isolation by key prefix
/// (give each one a [`unique_prefix`]). It lives until the test process
/// exits; it is then killed and its directory removed. Tests must not flush
/// it, pause it or make it sleep: other tests run against it concurrently.
///
/// # Panics
///
/// As [`RedisServer::start`]; a later call tries again.
pub fn shared() -> &'static RedisServer {
    SHARED.get_or_init(|| {
        let server = RedisServer::start();
        // SAFETY: registers a plain `extern "C"` function that never panics.
        // A failed registration only leaves the directory behind: the process
        // still dies with this one through PR_SET_PDEATHSIG.
        unsafe {
            libc::atexit(stop_shared_at_exit);
        }
        server
    })
}

extern "C" fn stop_shared_at_exit() {
    if let Some(server) = SHARED.get() {
        server.stop_at_exit();
    }
}

/// A key prefix no other test in any running test process uses:
/// `NAME-PID-N`, where `N` counts calls within this process. Use it (for
/// example as the cache's `.prefix(..)`) for every key a test writes to the
/// [`shared`] server.
pub fn unique_prefix(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{name}-{}-{n}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "redis-server not found: run scripts/install-redis.sh")]
    fn a_missing_binary_panics_with_the_install_hint() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let bin = tmp.path().join("no-such-redis-server");
        RedisServer::start_bin(bin.display().to_string(), &[]);
    }

    #[test]
    fn unique_prefixes_differ() {
        let a = unique_prefix("t");
        let b = unique_prefix("t");
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("t-{}-", std::process::id())));
    }

    #[test]
    fn log_tail_detects_a_taken_port() {
        assert!(port_taken(
            "# Warning: Could not create server TCP listening socket 127.0.0.1:1: bind: Address already in use"
        ));
        assert!(!port_taken("Ready to accept connections"));
    }
}
