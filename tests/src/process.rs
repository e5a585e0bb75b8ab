//! Child processes that die with the test process.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not
//! only when the process does. Test harnesses run every test on its own short
//! lived thread, and a server started there (for example the [`shared`]
//! one) must outlive that thread. So every child is forked by one spawner
//! thread that lives as long as the process.
//!
//! [`shared`]: crate::shared

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::{OnceLock, mpsc};
use std::thread;

type Request = (Command, mpsc::Sender<io::Result<Child>>);

/// Requests to the spawner thread. The sender lives in a `static`, so the
/// thread's loop never ends while the process runs.
static SPAWNER: OnceLock<mpsc::Sender<Request>> = OnceLock::new();

/// Spawns `cmd` so that the child receives `SIGKILL` when this process exits,
/// however it exits.
pub(crate) fn spawn_tied_to_process(mut cmd: Command) -> io::Result<Child> {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the hook runs between fork and exec and only makes
    // async-signal-safe calls (prctl, getppid, _exit); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) == -1
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then no signal
            // will ever come, so do not start at all.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        thread::Builder::new()
            .name("redis-server-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawning the redis-server spawner thread");
        tx
    });
    let (tx, rx) = mpsc::channel();
    spawner
        .send((cmd, tx))
        .map_err(|_| io::Error::other("the redis-server spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("the redis-server spawner thread is gone"))?
}
