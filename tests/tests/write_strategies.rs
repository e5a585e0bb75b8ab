//! Write-through and write-behind through the macros, on a real redis-server.
//! One test function runs the write-behind scenarios in order, because they
//! share the process-wide cache that `#[cached]` functions use.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use cache_runtime::{Cache, Options, cached};
use cache_tests::RedisServer;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
}

/// The "database".
static USERS: LazyLock<Mutex<HashMap<u64, String>>> = LazyLock::new(Default::default);
static USER_LOADS: AtomicUsize = AtomicUsize::new(0);

struct Repo {
    cache: Cache,
}

impl Repo {
    #[cached(key = "user:{id}", ttl = 600, cache = self.cache)]
    async fn user(&self, id: u64) -> Result<User, String> {
        USER_LOADS.fetch_add(1, SeqCst);
        let name = USERS
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .ok_or("no such user")?;
        Ok(User { id, name })
    }

    #[cached(key = "user:{id}", ttl = 600, strategy = "through", cache = self.cache)]
    async fn rename(&self, id: u64, name: &str) -> Result<User, String> {
        USERS.lock().unwrap().insert(id, name.to_string());
        Ok(User {
            id,
            name: name.to_string(),
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_through_stores_the_new_value() {
    let server = cache_tests::shared();
    let repo = Repo {
        cache: Cache::builder()
            .url(server.url())
            .prefix(cache_tests::unique_prefix("through"))
            .build()
            .await
            .unwrap(),
    };
    USERS.lock().unwrap().insert(1, "Ada".into());
    assert_eq!(repo.user(1).await.unwrap().name, "Ada");
    let loads = USER_LOADS.load(SeqCst);
    assert_eq!(repo.rename(1, "Grace").await.unwrap().name, "Grace");
    assert_eq!(
        repo.user(1).await.unwrap().name,
        "Grace",
        "the write stored its result"
    );
    assert_eq!(
        USER_LOADS.load(SeqCst),
        loads,
        "served from the cache, not reloaded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_through_that_cannot_store_deletes_the_key() {
    // ACL users that may run scripts but not SET (the store fails on the
    // server), and one that may not UNLINK either (the delete fails too).
    let server = RedisServer::start_with(&[
        "--user", "nowrite", "on", ">pw", "~*", "&*", "+@all", "-set", "--user", "nodelete", "on",
        ">pw", "~*", "&*", "+@all", "-set", "-unlink",
    ]);
    let prefix = cache_tests::unique_prefix("through_fail");
    let full = Cache::builder()
        .url(server.url())
        .prefix(&prefix)
        .build()
        .await
        .unwrap();
    let port = server.port();
    let as_user = async |url: String| {
        Cache::builder()
            .url(url)
            .prefix(&prefix)
            .op_timeout(Duration::from_millis(100))
            .build()
            .await
            .unwrap()
    };
    let restricted = as_user(format!("redis://nowrite:pw@127.0.0.1:{port}")).await;
    let opts = Options::new().ttl(Duration::from_secs(600));
    full.set("k", &"old".to_string(), &opts).await.unwrap();
    restricted
        .write_through("k", &"new".to_string(), &opts)
        .await;
    assert!(restricted.stats().errors > 0, "the failed store is counted");
    assert_eq!(
        full.get::<String>("k").await.unwrap(),
        None,
        "the old value was deleted, not kept"
    );

    // The delete is refused too: it stays pending, and reads bypass the cache
    // although the old value is still there to be read.
    let refused = as_user(format!("redis://nodelete:pw@127.0.0.1:{port}")).await;
    full.set("p", &"old".to_string(), &opts).await.unwrap();
    refused.write_through("p", &"new".to_string(), &opts).await;
    assert_eq!(refused.pending_invalidations(), 1);
    assert_eq!(
        full.get::<String>("p").await.unwrap().as_deref(),
        Some("old"),
        "the old value is still stored"
    );
    for _ in 0..3 {
        let v: Result<String, Infallible> = refused
            .get_or_load("p", &opts, || async { Ok("from the source".to_string()) })
            .await;
        assert_eq!(
            v.unwrap(),
            "from the source",
            "no old value while the delete is pending"
        );
    }
    // Allowed again: the retry lands.
    let mut admin = server.conn().await;
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("nodelete")
        .arg("+unlink")
        .query_async(&mut admin)
        .await
        .unwrap();
    until_no_pending(&refused).await;
    assert_eq!(full.get::<String>("p").await.unwrap(), None);

    // A paused server: the store and the delete time out; the delete is retried
    // until the server answers.
    let paused = as_user(server.url()).await;
    full.set("q", &"old".to_string(), &opts).await.unwrap();
    server.pause_clients(600).await;
    paused.write_through("q", &"new".to_string(), &opts).await;
    assert_eq!(paused.pending_invalidations(), 1);
    until_no_pending(&paused).await;
    assert_eq!(full.get::<String>("q").await.unwrap(), None);
}

/// Waits (bounded) until `cache` has applied every pending invalidation.
async fn until_no_pending(cache: &Cache) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while cache.pending_invalidations() > 0 {
        assert!(Instant::now() < deadline, "the delete was not retried");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- write-behind ----

static BALANCES: LazyLock<Mutex<HashMap<u64, i64>>> = LazyLock::new(Default::default);
static BALANCE_WRITES: AtomicUsize = AtomicUsize::new(0);
/// Holds the flusher inside the body while a test looks at the queue.
static GATE: Semaphore = Semaphore::const_new(0);
static GATED: AtomicUsize = AtomicUsize::new(0);

#[cached(key = "balance:{id}", ttl = 600, strategy = "behind", value = balance, batch = 50, flush_interval = "20ms")]
async fn save_balance(id: u64, balance: i64) -> Result<(), String> {
    if id == 666 {
        return Err("poison".to_string());
    }
    if GATED.load(SeqCst) > 0 {
        let permit = GATE.acquire().await.map_err(|e| e.to_string())?;
        permit.forget();
    }
    BALANCE_WRITES.fetch_add(1, SeqCst);
    BALANCES.lock().unwrap().insert(id, balance);
    Ok(())
}

#[cached(key = "balance:{id}", ttl = 600)]
async fn balance(id: u64) -> Result<i64, String> {
    BALANCES
        .lock()
        .unwrap()
        .get(&id)
        .copied()
        .ok_or_else(|| "none".to_string())
}

async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_behind() {
    let server = cache_tests::shared();
    let cache = Cache::builder()
        .url(server.url())
        .prefix(cache_tests::unique_prefix("behind"))
        .build()
        .await
        .unwrap()
        .install()
        .unwrap();
    let name = concat!(module_path!(), "::save_balance");

    // 1. Ok(()) means: the value is in the cache and the call is in the stream.
    GATED.store(1, SeqCst);
    save_balance(1, 100).await.unwrap();
    assert_eq!(
        cache.get::<i64>("balance:1").await.unwrap(),
        Some(100),
        "cached at once"
    );
    let (queued, _) = cache.write_behind_depth(name).await.unwrap();
    assert_eq!(queued, 1, "queued in the stream");
    assert_eq!(
        balance(1).await,
        Ok(100),
        "readers see it before the database does"
    );
    assert!(BALANCES.lock().unwrap().get(&1).is_none());
    GATED.store(0, SeqCst);
    GATE.add_permits(1);
    until("the flush", async || {
        BALANCES.lock().unwrap().get(&1) == Some(&100)
    })
    .await;

    // 2. Coalescing: 200 writes to one key, far fewer body runs, the last value wins.
    let before = BALANCE_WRITES.load(SeqCst);
    for v in 0..200 {
        save_balance(2, v).await.unwrap();
    }
    until("the last value", async || {
        BALANCES.lock().unwrap().get(&2) == Some(&199)
    })
    .await;
    let runs = BALANCE_WRITES.load(SeqCst) - before;
    assert!(runs < 200, "coalesced: {runs} body runs for 200 writes");

    // 3. A write that keeps failing goes to the dead-letter stream.
    save_balance(666, 1).await.unwrap();
    until("the dead letter", async || {
        cache.write_behind_depth(name).await.unwrap().1 == 1
    })
    .await;
    assert!(
        cache.stats().function(name).errors >= 5,
        "retried before giving up"
    );

    // 4. shutdown() drains what is queued.
    for id in 10..60 {
        save_balance(id, id as i64 * 10).await.unwrap();
    }
    cache.shutdown().await.unwrap();
    for id in 10..60 {
        assert_eq!(
            BALANCES.lock().unwrap().get(&id),
            Some(&(id as i64 * 10)),
            "id {id} flushed by shutdown"
        );
    }
    assert_eq!(cache.write_behind_depth(name).await.unwrap().0, 0);
}
