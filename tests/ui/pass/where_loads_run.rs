//! Where a load runs: in a way that can outlive its caller when the body owns
//! its arguments and its future is `Send`, otherwise only in the caller. Every
//! shape compiles, the functions stay `Send` wherever their bodies are, and
//! each shape's load is checked to outlive its caller, or not: a first call
//! is dropped while its body waits behind a closed gate, the gate opens, and
//! a second call either finds the first load went on without its caller (the
//! body ran once) or runs the body again.
#![deny(warnings)]
#![deny(clippy::all)]

use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use cache_runtime::{Cache, cached};
use tokio::sync::RwLock;

fn assert_send<T: Send>(t: T) -> T {
    t
}

/// Runs of every body below.
static RUNS: AtomicUsize = AtomicUsize::new(0);
/// Held for writing while bodies must wait.
static GATE: RwLock<()> = RwLock::const_new(());

/// Counts a run, then waits while the gate is closed.
async fn body_runs() {
    RUNS.fetch_add(1, SeqCst);
    drop(GATE.read().await);
}

/// Whether a load of `call` outlives its caller (see the module docs).
async fn outlives_its_caller<F, Fut>(call: F) -> bool
where
    F: Fn() -> Fut,
    Fut: Future,
{
    let closed = GATE.write().await;
    let before = RUNS.load(SeqCst);
    let started = async {
        while RUNS.load(SeqCst) == before {
            tokio::task::yield_now().await;
        }
    };
    tokio::select! {
        _ = call() => panic!("a body finished behind the closed gate"),
        _ = started => {}
    }
    drop(closed);
    call().await;
    RUNS.load(SeqCst) == before + 1
}

/// Owned arguments, `Send` body: loads can outlive the caller.
#[cached(key = "owned:{id}", ttl = 60, stale = "10m")]
async fn owned(id: u64, name: String) -> Result<String, String> {
    body_runs().await;
    Ok(format!("{id}:{name}"))
}

/// Owned arguments, body not `Send` (an `Rc` lives across an await): loads
/// in its caller.
#[cached(key = "local:{id}", ttl = 60)]
async fn local(id: u64) -> u64 {
    let shared = Rc::new(id);
    body_runs().await;
    *shared
}

/// An error type that is not `Send`: loads in its caller.
#[cached(key = "rc-err:{id}", ttl = 60)]
async fn rc_error(id: u64) -> Result<u64, Rc<str>> {
    body_runs().await;
    Ok(id)
}

/// Borrowed arguments: loads in its caller.
#[cached(key = "borrowed:{name}", ttl = 60)]
async fn borrowed(name: &str) -> Option<String> {
    body_runs().await;
    Some(name.to_uppercase())
}

/// Mutable and raw argument names: owned, so loads can outlive the caller.
#[cached(key = "mutable:{r#type}", ttl = 60)]
async fn mutable(mut r#type: u32, mut count: u32) -> u32 {
    body_runs().await;
    count += 1;
    r#type += count;
    r#type
}

struct Repo;

impl Repo {
    fn base() -> u64 {
        10
    }

    /// An associated function that names `Self`: loads in its caller.
    #[cached(key = "assoc:{id}", ttl = 60)]
    async fn assoc(id: u64) -> u64 {
        body_runs().await;
        Self::base() + id
    }

    /// One that does not: loads can outlive the caller.
    #[cached(key = "assoc-owned:{id}", ttl = 60)]
    async fn assoc_owned(id: u64) -> u64 {
        body_runs().await;
        Repo::base() + id
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        Cache::builder()
            .memory()
            .build()
            .await
            .unwrap()
            .install()
            .unwrap();
        assert_eq!(assert_send(owned(1, "a".into())).await.unwrap(), "1:a");
        assert_eq!(local(2).await, 2);
        assert_eq!(rc_error(3).await.unwrap(), 3);
        assert_eq!(assert_send(borrowed("b")).await.as_deref(), Some("B"));
        assert_eq!(assert_send(mutable(1, 1)).await, 3);
        assert_eq!(assert_send(Repo::assoc(1)).await, 11);
        assert_eq!(assert_send(Repo::assoc_owned(2)).await, 12);

        assert!(outlives_its_caller(|| owned(10, "x".into())).await, "owned");
        assert!(!outlives_its_caller(|| local(20)).await, "local");
        assert!(!outlives_its_caller(|| rc_error(30)).await, "rc_error");
        assert!(!outlives_its_caller(|| borrowed("y")).await, "borrowed");
        assert!(outlives_its_caller(|| mutable(40, 1)).await, "mutable");
        assert!(!outlives_its_caller(|| Repo::assoc(50)).await, "assoc");
        assert!(outlives_its_caller(|| Repo::assoc_owned(60)).await, "assoc_owned");
    });
}
