//! Write-behind on a Redis Cluster, where the stream and the entries live in
//! different slots: the value is stored, then the call appended (two steps).
//! One test installs the process-wide cache; the other uses caches of its own.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use cache_runtime::{Cache, Options, cached};
use cache_tests::{RedisCluster, shared_cluster, unique_prefix};
use tokio::sync::Semaphore;

/// The "database".
static ITEMS: LazyLock<Mutex<HashMap<u64, i64>>> = LazyLock::new(Default::default);
/// Holds the flusher inside the body while the test looks at the queue.
static GATE: Semaphore = Semaphore::const_new(0);
static GATED: AtomicUsize = AtomicUsize::new(0);

#[cached(key = "item:{id}", ttl = 600, strategy = "behind", value = v, batch = 50, flush_interval = "20ms")]
async fn save_item(id: u64, v: i64) -> Result<(), String> {
    if GATED.load(SeqCst) > 0 {
        let permit = GATE.acquire().await.map_err(|e| e.to_string())?;
        permit.forget();
    }
    ITEMS.lock().unwrap().insert(id, v);
    Ok(())
}

fn stored(id: u64) -> Option<i64> {
    ITEMS.lock().unwrap().get(&id).copied()
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_behind_on_a_cluster_queues_flushes_and_drains() {
    let cluster = shared_cluster();
    let cache = Cache::builder()
        .cluster(cluster.urls())
        .prefix(unique_prefix("cluster_behind"))
        .build()
        .await
        .unwrap()
        .install()
        .unwrap();
    let name = concat!(module_path!(), "::save_item");
    let ids: Vec<u64> = (0..30).collect();
    let mut owners = HashSet::new();
    for id in &ids {
        let key = cache.stored_key(&format!("item:{id}"), &Options::new());
        owners.insert(cluster.owner_of(cluster.slot_of(&key).await).await);
    }
    assert_eq!(owners.len(), cluster.len(), "entries on every primary");

    // Ok(()) means: the value is in the cache and the call is in the stream.
    GATED.store(1, SeqCst);
    for id in &ids {
        save_item(*id, *id as i64 * 10).await.unwrap();
        assert_eq!(
            cache.get::<i64>(format!("item:{id}")).await.unwrap(),
            Some(*id as i64 * 10),
            "cached at once"
        );
    }
    assert_eq!(cache.write_behind_depth(name).await.unwrap(), (30, 0));
    assert!(
        ids.iter().all(|id| stored(*id).is_none()),
        "nothing written yet"
    );
    GATED.store(0, SeqCst);
    GATE.add_permits(ids.len());
    until("the flush", || {
        ids.iter().all(|id| stored(*id) == Some(*id as i64 * 10))
    })
    .await;

    // shutdown() drains what is queued.
    for id in 100..140u64 {
        save_item(id, id as i64).await.unwrap();
    }
    cache.shutdown().await.unwrap();
    for id in 100..140u64 {
        assert_eq!(stored(id), Some(id as i64), "id {id} flushed by shutdown");
    }
    assert_eq!(cache.write_behind_depth(name).await.unwrap().0, 0);
    assert_eq!(cache.stats().errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_enqueue_on_a_cluster_takes_the_value_back() {
    // A user that may store values and run scripts, but not append to streams.
    let cluster = RedisCluster::start_with(
        3,
        &[
            "--user", "nostream", "on", ">pw", "~*", "&*", "+@all", "-xadd",
        ],
    );
    let prefix = unique_prefix("cluster_behind_fail");
    let full = Cache::builder()
        .cluster(cluster.urls())
        .prefix(&prefix)
        .build()
        .await
        .unwrap();
    let restricted_urls: Vec<String> = (0..cluster.len())
        .map(|i| format!("redis://nostream:pw@127.0.0.1:{}", cluster.node(i).port()))
        .collect();
    let restricted = Cache::builder()
        .cluster(restricted_urls)
        .prefix(&prefix)
        .build()
        .await
        .unwrap();
    let opts = Options::new().ttl(Duration::from_secs(600));
    restricted.set("probe", &1u8, &opts).await.unwrap();
    assert_eq!(
        full.get::<u8>("probe").await.unwrap(),
        Some(1),
        "it may store values"
    );

    full.set("item:1", &"old".to_string(), &opts).await.unwrap();
    let queued = restricted
        .write_behind("save", "item:1", &"new".to_string(), &opts, &(1u64, "new"))
        .await;
    assert!(
        queued.is_err(),
        "the append was refused: nothing was queued"
    );
    assert_eq!(
        full.get::<String>("item:1").await.unwrap(),
        None,
        "neither the old value nor the one that was not queued"
    );
    assert_eq!(full.write_behind_depth("save").await.unwrap(), (0, 0));
}
