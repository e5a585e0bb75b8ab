//! What only a Redis Cluster can get wrong: keys and tags spread over every
//! primary, wake-ups published on one node and heard on another, leases
//! moving with their slots, and callers served (never with an error, never
//! stale) while slots move between primaries.

mod common;

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cache_runtime::{Cache, Options};
use cache_tests::{RedisCluster, shared_cluster, unique_prefix};
use common::Source;
use tokio::sync::oneshot;

/// Upper bound for anything that should happen "soon".
const BOUND: Duration = Duration::from_secs(10);

fn opts() -> Options {
    Options::new().ttl(Duration::from_secs(60))
}

fn builder(cluster: &RedisCluster, name: &str) -> cache_runtime::CacheBuilder {
    Cache::builder()
        .cluster(cluster.urls())
        .prefix(unique_prefix(name))
}

/// The stored key of a tag (`prefix:t:{tag}`, for tags without characters
/// that need escaping).
fn tag_key(cache: &Cache, tag: &str) -> String {
    format!("{}:t:{{{tag}}}", cache.prefix())
}

/// The primary that holds a stored key.
async fn owner(cluster: &RedisCluster, stored: &str) -> usize {
    cluster.owner_of(cluster.slot_of(stored).await).await
}

/// For every primary, the first name `stem0`, `stem1`, … whose stored key
/// (`stored(name)`) it holds.
async fn one_per_primary(
    cluster: &RedisCluster,
    stem: &str,
    stored: impl Fn(&str) -> String,
) -> Vec<String> {
    let mut found: Vec<Option<String>> = vec![None; cluster.len()];
    for n in 0..1_000 {
        let name = format!("{stem}{n}");
        let i = owner(cluster, &stored(&name)).await;
        if found[i].is_none() {
            found[i] = Some(name);
        }
        if found.iter().all(Option::is_some) {
            return found.into_iter().flatten().collect();
        }
    }
    panic!("no {stem}N names on every primary within 1000 tries");
}

/// Waits (bounded) until `f` holds, yielding in between.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    tokio::time::timeout(BOUND, async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_tags_and_patterns_over_every_primary_never_fail_a_caller() {
    let cluster = shared_cluster();
    let cache = builder(cluster, "spread").build().await.unwrap();
    let o = Options::new();
    let keys: Vec<String> = (0..60).map(|i| format!("item:{i}")).collect();
    let mut entry_owners = HashSet::new();
    for k in &keys {
        entry_owners.insert(owner(cluster, &cache.stored_key(k, &o)).await);
    }
    assert_eq!(
        entry_owners.len(),
        cluster.len(),
        "entries on every primary"
    );
    // One tag per primary, and one tag on every entry.
    let groups = one_per_primary(cluster, "g", |t| tag_key(&cache, t)).await;
    let tags_of = |i: usize| vec!["all".to_string(), groups[i % groups.len()].clone()];
    let loads = AtomicUsize::new(0);
    let read_all = async |cache: &Cache| {
        for (i, k) in keys.iter().enumerate() {
            let v: Result<usize, Infallible> = cache
                .get_or_load(k, &opts().tags(tags_of(i)), || async {
                    loads.fetch_add(1, SeqCst);
                    Ok(i)
                })
                .await;
            assert_eq!(v.unwrap(), i);
        }
    };

    read_all(&cache).await;
    read_all(&cache).await;
    assert_eq!(loads.load(SeqCst), 60, "the second pass is all hits");

    // A tag whose key is on one primary makes entries on every primary miss.
    cache.invalidate_tags([&groups[0]]).await.unwrap();
    read_all(&cache).await;
    assert_eq!(
        loads.load(SeqCst),
        80,
        "the 20 entries of that group reloaded"
    );
    cache.invalidate_tags(["all"]).await.unwrap();
    read_all(&cache).await;
    assert_eq!(loads.load(SeqCst), 140, "every entry reloaded");
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(cache.get::<usize>(k).await.unwrap(), Some(i), "{k}");
    }
    let info = cache.inspect("item:7", &o).await.unwrap().expect("stored");
    assert!(info.tags_current, "{info:?}");
    assert!(
        cache
            .tag_versions(&["all", &groups[1], &groups[2]])
            .await
            .unwrap()
            .iter()
            .all(Option::is_some)
    );

    // Listing and patterns visit every primary.
    let listed: HashSet<String> = cache
        .keys_matching("item:*", 1_000)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let all: HashSet<String> = keys.iter().cloned().collect();
    assert_eq!(listed, all);
    let ones: Vec<&String> = keys
        .iter()
        .filter(|k| k.strip_prefix("item:").is_some_and(|n| n.starts_with('1')))
        .collect();
    let mut one_owners = HashSet::new();
    for k in &ones {
        one_owners.insert(owner(cluster, &cache.stored_key(k, &o)).await);
    }
    assert!(one_owners.len() > 1, "the pattern spans primaries");
    let removed = cache.invalidate_pattern("item:1*").await.unwrap();
    assert_eq!(removed, ones.len() as u64);
    for k in &keys {
        let expected = !ones.contains(&k);
        assert_eq!(
            cache.get::<usize>(k).await.unwrap().is_some(),
            expected,
            "{k}"
        );
    }

    // Keys on every primary in one call.
    let removed = cache.invalidate_keys(&keys).await.unwrap();
    assert_eq!(removed, (keys.len() - ones.len()) as u64);
    for k in &keys {
        assert_eq!(cache.get::<usize>(k).await.unwrap(), None, "{k}");
    }

    // Unconditional stores with tags on other primaries, and the empty key.
    for (i, k) in keys.iter().enumerate().take(9) {
        cache
            .set(k, &(i * 10), &opts().tags(tags_of(i)))
            .await
            .unwrap();
        cache
            .write_through(k, &(i * 100), &opts().tags(tags_of(i)))
            .await;
        assert_eq!(cache.get::<usize>(k).await.unwrap(), Some(i * 100));
    }
    cache.set("", &1u8, &opts().tags(["all"])).await.unwrap();
    assert_eq!(cache.get::<u8>("").await.unwrap(), Some(1));
    cache.invalidate_keys([""]).await.unwrap();
    assert_eq!(cache.get::<u8>("").await.unwrap(), None);

    assert_eq!(
        cache.stats().errors,
        0,
        "no store error, even a swallowed one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_fails_no_read() {
    // Ports nobody listens on.
    let seeds: Vec<String> = (0..3)
        .map(|_| format!("redis://127.0.0.1:{}", cache_tests::free_port()))
        .collect();
    let cache = Cache::builder()
        .cluster(&seeds)
        .prefix(unique_prefix("down"))
        .op_timeout(Duration::from_millis(100))
        .build()
        .await
        .expect("building does not wait for the cluster");
    assert!(format!("{cache:?}").contains("redis cluster"), "{cache:?}");
    let started = Instant::now();
    for i in 0..20 {
        let v: Result<u32, Infallible> = cache
            .get_or_load("k", &opts(), || async move { Ok(i) })
            .await;
        assert_eq!(v.unwrap(), i, "the loader's value, every time");
    }
    assert!(
        started.elapsed() < BOUND,
        "{:?} for 20 reads",
        started.elapsed()
    );
    assert!(cache.stats().errors > 0, "the failures are counted");
    assert!(
        cache.invalidate_keys(["k"]).await.is_err(),
        "an invalidation reports that it could not run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_wake_waiters_whichever_primary_holds_the_entry() {
    let cluster = shared_cluster();
    let waiting = builder(cluster, "wake")
        .lease_ttl(Duration::from_secs(30))
        .build()
        .await
        .unwrap();
    // Another process with the same prefix: the one that loads.
    let loading = Arc::new(
        Cache::builder()
            .cluster(cluster.urls())
            .prefix(waiting.prefix())
            .lease_ttl(Duration::from_secs(30))
            .build()
            .await
            .unwrap(),
    );
    until("the wake-up subscription", || waiting.wakeups_live()).await;
    let keys = one_per_primary(cluster, "w", |k| waiting.stored_key(k, &Options::new())).await;
    for (i, key) in keys.iter().enumerate() {
        let (started_tx, started_rx) = oneshot::channel::<()>();
        let (go_tx, go_rx) = oneshot::channel::<()>();
        let (c, k) = (loading.clone(), key.clone());
        let leader = tokio::spawn(async move {
            let v: Result<usize, Infallible> = c
                .get_or_load(&k, &opts(), || async move {
                    let _ = started_tx.send(());
                    let _ = go_rx.await;
                    Ok(i)
                })
                .await;
            v.unwrap()
        });
        started_rx.await.unwrap();
        let waits = waiting.stats().lock_waits;
        let (w, k) = (waiting.clone(), key.clone());
        let waiter = tokio::spawn(async move {
            let v: Result<usize, Infallible> = w
                .get_or_load(&k, &opts(), || async { panic!("the waiter must not load") })
                .await;
            v.unwrap()
        });
        until("the waiter to find the lease held", || {
            waiting.stats().lock_waits > waits
        })
        .await;
        let timed_out = waiting.waits_timed_out();
        go_tx.send(()).unwrap();
        assert_eq!(leader.await.unwrap(), i);
        assert_eq!(waiter.await.unwrap(), i);
        // Without the announcement the waiter would look again only when
        // its one-second safety net runs out.
        assert_eq!(
            waiting.waits_timed_out(),
            timed_out,
            "primary {i}: the waiter was woken by the fill's announcement"
        );
    }
}

/// Starts a load of `key` that holds its lease until `go` fires.
fn held_load(
    cache: &Arc<Cache>,
    key: &str,
    options: Options,
    value: u32,
) -> (
    oneshot::Receiver<()>,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<u32>,
) {
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let (c, k) = (cache.clone(), key.to_string());
    let load = tokio::spawn(async move {
        let v: Result<u32, Infallible> = c
            .get_or_load(&k, &options, || async move {
                let _ = started_tx.send(());
                let _ = go_rx.await;
                Ok(value)
            })
            .await;
        v.unwrap()
    });
    (started_rx, go_tx, load)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_moves_with_its_slot() {
    let cluster = RedisCluster::start(3);
    let cache = Arc::new(
        builder(&cluster, "lease_move")
            .lease_ttl(Duration::from_secs(30))
            .op_timeout(Duration::from_secs(2))
            .build()
            .await
            .unwrap(),
    );
    let o = Options::new();

    // 1. A load in flight while its slot moves still fills, on the new owner.
    let stored = cache.stored_key("k", &o);
    let slot = cluster.slot_of(&stored).await;
    let (started, go, load) = held_load(&cache, "k", opts(), 1);
    started.await.unwrap();
    let to = (cluster.owner_of(slot).await + 1) % cluster.len();
    let moved = cluster.move_slot(slot, to).await;
    assert!(
        moved.contains(&format!("{stored}:L").into_bytes()),
        "the lease moved with its slot"
    );
    go.send(()).unwrap();
    assert_eq!(load.await.unwrap(), 1);
    assert_eq!(
        cache.stats().fills_rejected,
        0,
        "the moved lease took its holder's fill"
    );
    let mut direct = cluster.node(to).conn().await;
    let there: Option<Vec<u8>> = redis::cmd("GET")
        .arg(&stored)
        .query_async(&mut direct)
        .await
        .unwrap();
    assert!(there.is_some(), "filled on the new owner");
    assert_eq!(cache.get::<u32>("k").await.unwrap(), Some(1));

    // 2. An invalidation after the move still refuses the older load's fill.
    let stored = cache.stored_key("k2", &o);
    let slot = cluster.slot_of(&stored).await;
    let (started, go, load) = held_load(&cache, "k2", opts(), 1);
    started.await.unwrap();
    let to = (cluster.owner_of(slot).await + 1) % cluster.len();
    cluster.move_slot(slot, to).await;
    cache.invalidate_keys(["k2"]).await.unwrap();
    go.send(()).unwrap();
    assert_eq!(load.await.unwrap(), 1, "the slow reader gets its own value");
    assert_eq!(cache.stats().fills_rejected, 1, "its fill was refused");
    assert_eq!(cache.get::<u32>("k2").await.unwrap(), None);

    // 3. A tag moved and invalidated during a load: the entry is dead.
    let tagged = opts().tags(["t"]);
    let (started, go, load) = held_load(&cache, "k3", tagged.clone(), 1);
    started.await.unwrap();
    let tag_slot = cluster.slot_of(&tag_key(&cache, "t")).await;
    let to = (cluster.owner_of(tag_slot).await + 1) % cluster.len();
    let moved = cluster.move_slot(tag_slot, to).await;
    assert!(moved.contains(&tag_key(&cache, "t").into_bytes()));
    cache.invalidate_tags(["t"]).await.unwrap();
    go.send(()).unwrap();
    assert_eq!(load.await.unwrap(), 1);
    let v: Result<u32, Infallible> = cache.get_or_load("k3", &tagged, || async { Ok(2) }).await;
    assert_eq!(
        v.unwrap(),
        2,
        "the entry recorded the tag's version from before the load"
    );
    assert_eq!(cache.stats().errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_deletion_outlasts_a_slot_in_migration() {
    let cluster = RedisCluster::start(3);
    let cache = builder(&cluster, "pattern_move")
        .op_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    for i in 0..30u32 {
        cache.set(format!("p:{i}"), &i, &opts()).await.unwrap();
    }
    let slot = cluster
        .slot_of(&cache.stored_key("p:0", &Options::new()))
        .await;
    let to = (cluster.owner_of(slot).await + 1) % cluster.len();
    let moving = cluster.begin_move(slot, to).await.expect("another owner");
    let c = cache.clone();
    let mut deletion = tokio::spawn(async move { c.invalidate_pattern("p:*").await });
    // A key may move from a primary not yet scanned to one already scanned
    // while its slot migrates: no pass over a migrating slot counts.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut deletion)
            .await
            .is_err(),
        "the deletion returned while a slot was migrating"
    );
    moving.finish().await;
    let removed = tokio::time::timeout(BOUND, deletion)
        .await
        .expect("the deletion returns once the slot settled")
        .unwrap()
        .unwrap();
    assert_eq!(removed, 30);
    for i in 0..30 {
        assert_eq!(cache.get::<u32>(format!("p:{i}")).await.unwrap(), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidating_a_key_in_a_migrating_slot_is_served_at_once() {
    let cluster = RedisCluster::start(3);
    let cache = builder(&cluster, "key_move")
        .op_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    let slot = cluster
        .slot_of(&cache.stored_key("k", &Options::new()))
        .await;
    // The entry stays on the source, then it has moved to the target; its
    // lease is nowhere. One command over both keys would be answered
    // TRYAGAIN until the move ended, and fail once redis-rs's retries ran out.
    for entry_moved in [false, true] {
        cache.set("k", &1u32, &opts()).await.unwrap();
        let to = (cluster.owner_of(slot).await + 1) % cluster.len();
        let mut moving = cluster.begin_move(slot, to).await.expect("another owner");
        if entry_moved {
            assert_eq!(moving.migrate(10).await.len(), 1);
        }
        assert_eq!(cache.invalidate_keys(["k"]).await.unwrap(), 1);
        assert_eq!(cache.get::<u32>("k").await.unwrap(), None);
        assert_eq!(cache.pending_invalidations(), 0);
        moving.finish().await;
        assert_eq!(cache.get::<u32>("k").await.unwrap(), None);
    }
    assert_eq!(cache.stats().errors, 0);
}

// ---- resharding under load ----

const KEYS: usize = 24;
const GROUPS: usize = 4;
const READERS: usize = 8;
const WRITERS: usize = 2;
/// Slot moves a run makes (the load runs until they are done).
const MOVES: usize = 20;
/// Bounds in case the moves stall: a test failure, not a hang.
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);
const MAX_OPS_PER_TASK: usize = 20_000;

/// Counters of one run.
#[derive(Debug, Default)]
struct Tally {
    reads: AtomicUsize,
    writes: AtomicUsize,
    /// A read that returned an older version than one whose invalidation had
    /// returned before the read began.
    stale: AtomicUsize,
    /// `Err` returned to a caller.
    caller_errors: AtomicUsize,
    moves: AtomicUsize,
    entries_moved: AtomicUsize,
    leases_moved: AtomicUsize,
}

fn key_name(i: usize) -> String {
    format!("k{i}")
}

fn tagged(i: usize) -> Options {
    opts().tags([format!("g{}", i % GROUPS)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moving_slots_under_load_fails_no_caller_and_serves_nothing_stale() {
    let cluster = Arc::new(RedisCluster::start(3));
    let cache = Arc::new(
        builder(&cluster, "reshard")
            // Room for redis-rs's retries while a slot is half moved.
            .op_timeout(Duration::from_secs(2))
            .build()
            .await
            .unwrap(),
    );
    // Every slot that holds an entry (and its lease) or a tag.
    let mut slots = Vec::new();
    for i in 0..KEYS {
        slots.push(
            cluster
                .slot_of(&cache.stored_key(&key_name(i), &Options::new()))
                .await,
        );
    }
    for g in 0..GROUPS {
        slots.push(cluster.slot_of(&tag_key(&cache, &format!("g{g}"))).await);
    }
    slots.sort_unstable();
    slots.dedup();

    let source = Arc::new(Source::default());
    // Per key: the newest version whose invalidation (or store) has returned.
    let committed: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
    let tally = Arc::new(Tally::default());
    let deadline = Instant::now() + GIVE_UP_AFTER;
    // Set once the slot moves are done: the load stops then.
    let moved = Arc::new(AtomicBool::new(false));
    let running = {
        let moved = moved.clone();
        move || !moved.load(SeqCst) && Instant::now() < deadline
    };
    let mut tasks = Vec::new();
    for _ in 0..READERS {
        let (cache, source, committed, tally, running) = (
            cache.clone(),
            source.clone(),
            committed.clone(),
            tally.clone(),
            running.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for _ in 0..MAX_OPS_PER_TASK {
                if !running() {
                    break;
                }
                let key = rand::random_range(0..KEYS);
                let floor = committed[key].load(SeqCst);
                let got = if rand::random_range(0..5) == 0 {
                    match cache.get::<u64>(key_name(key)).await {
                        Ok(v) => v,
                        Err(e) => {
                            eprintln!("get: {e}");
                            tally.caller_errors.fetch_add(1, SeqCst);
                            None
                        }
                    }
                } else {
                    let src = source.clone();
                    let v: Result<u64, Infallible> = cache
                        .get_or_load(key_name(key), &tagged(key), || async move {
                            let v = src.read(key);
                            // The delay between the loader's read and its fill.
                            tokio::time::sleep(Duration::from_millis(rand::random_range(0..20)))
                                .await;
                            Ok(v)
                        })
                        .await;
                    Some(v.unwrap())
                };
                tally.reads.fetch_add(1, SeqCst);
                if got.is_some_and(|v| v < floor) {
                    tally.stale.fetch_add(1, SeqCst);
                }
            }
        }));
    }
    for w in 0..WRITERS {
        let (cache, source, committed, tally, running) = (
            cache.clone(),
            source.clone(),
            committed.clone(),
            tally.clone(),
            running.clone(),
        );
        tasks.push(tokio::spawn(async move {
            // Each writer owns its keys, so that its stores of one key are in order.
            let mine: Vec<usize> = (0..KEYS).filter(|k| k % WRITERS == w).collect();
            for op in 0..MAX_OPS_PER_TASK {
                if !running() {
                    break;
                }
                let key = mine[rand::random_range(0..mine.len())];
                let v = source.bump(key);
                let done = match op % 4 {
                    0 => cache.invalidate_keys([key_name(key)]).await.map(drop),
                    1 => cache.invalidate_tags([format!("g{}", key % GROUPS)]).await,
                    2 => cache.invalidate_pattern(key_name(key)).await.map(drop),
                    _ => cache.set(key_name(key), &v, &tagged(key)).await,
                };
                match done {
                    Ok(()) => {
                        committed[key].fetch_max(v, SeqCst);
                    }
                    Err(e) => {
                        eprintln!("write {}: {e}", op % 4);
                        tally.caller_errors.fetch_add(1, SeqCst);
                    }
                }
                tally.writes.fetch_add(1, SeqCst);
                tokio::time::sleep(Duration::from_millis(rand::random_range(0..10))).await;
            }
        }));
    }
    {
        let (cluster, tally, prefix) = (cluster.clone(), tally.clone(), cache.prefix().to_string());
        let moved = moved.clone();
        tasks.push(tokio::spawn(async move {
            // Moves start under load, with entries in place.
            while (tally.reads.load(SeqCst) < 100 || tally.writes.load(SeqCst) < 20)
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            for n in 0..MOVES {
                if Instant::now() >= deadline {
                    break;
                }
                let slot = slots[n % slots.len()];
                let to = (cluster.owner_of(slot).await + 1) % cluster.len();
                // One key per MIGRATE: the slot stays half moved for longer.
                for key in cluster.move_slot_in_batches(slot, to, 1).await {
                    let key = String::from_utf8_lossy(&key).into_owned();
                    if key.starts_with(&format!("{prefix}:{{")) {
                        if key.ends_with(":L") {
                            tally.leases_moved.fetch_add(1, SeqCst);
                        } else {
                            tally.entries_moved.fetch_add(1, SeqCst);
                        }
                    }
                }
                tally.moves.fetch_add(1, SeqCst);
            }
            moved.store(true, SeqCst);
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }

    // Writers have stopped: every entry must now hold the source's version.
    let mut stale_after = 0;
    for key in 0..KEYS {
        let now = source.read(key);
        let v: Result<u64, Infallible> = cache
            .get_or_load(key_name(key), &tagged(key), || async move { Ok(now) })
            .await;
        if v.unwrap() != now {
            stale_after += 1;
        }
    }
    let stats = cache.stats();
    eprintln!(
        "resharding under load: {tally:?}, stale entries after: {stale_after}, store errors absorbed: {}, fills rejected: {}",
        stats.errors, stats.fills_rejected
    );
    assert!(
        tally.reads.load(SeqCst) > 100 && tally.writes.load(SeqCst) > 20,
        "the load ran: {tally:?}"
    );
    assert!(
        tally.moves.load(SeqCst) == MOVES && tally.entries_moved.load(SeqCst) > 0,
        "slots holding entries moved: {tally:?}"
    );
    assert_eq!(tally.caller_errors.load(SeqCst), 0, "{tally:?}");
    assert_eq!(tally.stale.load(SeqCst), 0, "{tally:?}");
    assert_eq!(stale_after, 0);
}
