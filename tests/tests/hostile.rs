//! Keys, patterns, tags and stored types under hostile input, on every
//! backend: argument values chosen to make two calls share a key, patterns
//! that would miss or widen, values over every limit.

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use cache_runtime::{Cache, Options, cached, invalidates};
use common::Backend;

/// Cached and invalidating functions over one cache, counting loads.
struct Service {
    cache: Cache,
    loads: AtomicUsize,
}

impl Service {
    async fn new(b: Backend, name: &str) -> Service {
        Service {
            cache: b.cache(name).await,
            loads: AtomicUsize::new(0),
        }
    }

    fn loads(&self) -> usize {
        self.loads.load(SeqCst)
    }

    fn load<T>(&self, v: T) -> T {
        self.loads.fetch_add(1, SeqCst);
        v
    }

    #[cached(key = "dash:{a}-{b}", ttl = 60, cache = self.cache)]
    async fn dash(&self, a: &str, b: &str) -> String {
        self.load(format!("{a}|{b}"))
    }

    #[cached(key = "slash:{a}/{b}", ttl = 60, cache = self.cache)]
    async fn slash(&self, a: &str, b: &str) -> String {
        self.load(format!("{a}|{b}"))
    }

    #[cached(key = "dot:{a}.{b}", ttl = 60, cache = self.cache)]
    async fn dot(&self, a: &str, b: &str) -> String {
        self.load(format!("{a}|{b}"))
    }

    #[cached(key = "num:{a}_{b}", ttl = 60, cache = self.cache)]
    async fn numbers(&self, a: i64, b: i64) -> String {
        self.load(format!("{a}|{b}"))
    }

    #[cached(key = "feed:{org}-{page}", ttl = 60, cache = self.cache)]
    async fn feed(&self, org: &str, page: u32) -> String {
        self.load(format!("{org}:{page}"))
    }

    #[invalidates(patterns = ["feed:{org}-*"], cache = self.cache)]
    async fn forget_feed(&self, org: &str) {
        let _ = org;
    }

    #[cached(key = "search:{user}:{q}", ttl = 60, cache = self.cache)]
    async fn search(&self, user: &str, q: &str) -> usize {
        self.load(q.len())
    }

    #[invalidates(patterns = ["search:{user}:*"], cache = self.cache)]
    async fn forget_searches(&self, user: &str) {
        let _ = user;
    }

    #[invalidates(patterns = ["search:{user}:{q}*"], cache = self.cache)]
    async fn forget_search(&self, user: &str, q: &str) {
        let _ = (user, q);
    }
}

async fn separators_never_make_two_calls_share_a_key(b: Backend) {
    let s = Service::new(b, "separators").await;
    assert_eq!(s.dash("x-y", "z").await, "x-y|z");
    assert_eq!(s.dash("x", "y-z").await, "x|y-z");
    assert_eq!(s.slash("x/y", "z").await, "x/y|z");
    assert_eq!(s.slash("x", "y/z").await, "x|y/z");
    assert_eq!(s.dot("x.y", "z").await, "x.y|z");
    assert_eq!(s.dot("x", "y.z").await, "x|y.z");
    assert_eq!(s.numbers(-1, 2).await, "-1|2");
    assert_eq!(s.numbers(1, -2).await, "1|-2");
    assert_eq!(s.loads(), 8, "eight calls, eight keys");
    assert_eq!(s.dash("x-y", "z").await, "x-y|z", "and each is a hit");
    assert_eq!(s.loads(), 8);
}

async fn a_pattern_is_not_widened_by_a_separator_in_a_value(b: Backend) {
    let s = Service::new(b, "widen").await;
    s.feed("acme", 1).await;
    s.feed("acme-corp", 1).await;
    assert_eq!(s.loads(), 2);
    s.forget_feed("acme").await;
    s.feed("acme-corp", 1).await;
    assert_eq!(s.loads(), 2, "acme-corp's entry survived acme's pattern");
    s.feed("acme", 1).await;
    assert_eq!(s.loads(), 3, "acme's entry was removed");
}

async fn a_pattern_removes_long_keys(b: Backend) {
    let s = Service::new(b, "long").await;
    let long = "q".repeat(600);
    let other = format!("{}x", "q".repeat(600));
    assert!(
        s.cache
            .stored_key(&format!("search:alice:{long}"), &Options::new())
            .len()
            < 600
    );
    s.search("alice", &long).await;
    s.search("alice", &other).await;
    s.search("bob", &long).await;
    s.search("alice", "short").await;
    assert_eq!(s.loads(), 4);
    s.search("alice", &long).await;
    assert_eq!(s.loads(), 4, "a long key is cached");
    s.forget_searches("alice").await;
    for q in [&long, &other] {
        s.search("alice", q).await;
    }
    s.search("alice", "short").await;
    assert_eq!(
        s.loads(),
        7,
        "every search of alice's was removed, long ones too"
    );
    s.search("bob", &long).await;
    assert_eq!(s.loads(), 7, "bob's stayed");
    // A pattern whose own literal head is longer than a long key keeps.
    s.forget_search("alice", &"q".repeat(550)).await;
    s.search("alice", &long).await;
    assert_eq!(s.loads(), 8);
    assert_eq!(s.cache.pending_invalidations(), 0);
}

async fn a_pattern_over_the_limit_is_refused_by_hand_and_widened_by_the_macro(b: Backend) {
    let s = Service::new(b, "limit").await;
    // By hand: the caller's error, at once, and nothing pending.
    let err = s
        .cache
        .invalidate_pattern(format!("search:{}*", "x".repeat(2000)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("1024"), "{err}");
    assert_eq!(s.cache.pending_invalidations(), 0);
    // Through the macro: a value of 342 `:`, escaped three times longer,
    // makes a pattern over the limit; it is applied to its literal head.
    let colons = ":".repeat(342);
    s.search("carol", &colons).await;
    s.search("carol", "kept?").await;
    s.search("dave", "other").await;
    assert_eq!(s.loads(), 3);
    s.forget_search("carol", &colons).await;
    assert_eq!(s.cache.pending_invalidations(), 0, "nothing pending");
    s.search("carol", &colons).await;
    assert_eq!(s.loads(), 4, "what the pattern covers is gone");
    s.search("dave", "other").await;
    assert_eq!(s.loads(), 4, "and the cache still serves hits");
}

/// A pending invalidation (the store refuses the delete) bypasses the cache
/// for what it covers, and only that: other keys keep being served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_invalidation_bypasses_only_what_it_covers() {
    let server = cache_tests::RedisServer::start_with(&[
        "--user", "nodelete", "on", ">pw", "~*", "&*", "+@all", "-unlink", "-del",
    ]);
    let cache = Cache::builder()
        .url(format!("redis://nodelete:pw@127.0.0.1:{}", server.port()))
        .prefix("covers")
        .build()
        .await
        .unwrap();
    let opts = |tag: &str| Options::new().ttl(Duration::from_secs(60)).tags([tag]);
    let loads = AtomicUsize::new(0);
    let read = async |key: &str, tag: &str| -> u32 {
        let v: Result<u32, Infallible> = cache
            .get_or_load(key, &opts(tag), || async {
                loads.fetch_add(1, SeqCst);
                Ok(1)
            })
            .await;
        v.unwrap()
    };
    for (k, t) in [("a", "ta"), ("b", "tb"), ("p:1", "tp")] {
        read(k, t).await;
    }
    assert_eq!(loads.load(SeqCst), 3);
    // A key and a pattern that cannot be removed: pending.
    let inv = cache_runtime::__private::Invalidation {
        keys: vec!["a".into()],
        patterns: vec!["p:*".into()],
        ..Default::default()
    };
    inv.run(&cache).await;
    assert_eq!(cache.pending_invalidations(), 1);
    read("a", "ta").await;
    read("p:1", "tp").await;
    assert_eq!(loads.load(SeqCst), 5, "what it covers bypasses the cache");
    read("b", "tb").await;
    assert_eq!(loads.load(SeqCst), 5, "anything else is still a hit");
    assert_eq!(cache.get::<u32>("a").await.unwrap(), None, "get too");
    assert_eq!(cache.get::<u32>("b").await.unwrap(), Some(1));
}

// ---- stored types ----

mod v1 {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct Pair {
        pub a: u32,
        pub b: u32,
    }
}

/// The same struct, its fields reordered (as after a deploy).
mod v2 {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    pub struct Pair {
        pub b: u32,
        pub a: u32,
    }
}

struct Typed {
    cache: Cache,
}

impl Typed {
    #[cached(key = "n:{id}", ttl = 60, cache = self.cache)]
    async fn small(&self, id: u32) -> u32 {
        id
    }

    #[cached(key = "n:{id}", ttl = 60, cache = self.cache)]
    async fn big(&self, id: u32) -> u64 {
        u64::from(id) << 40
    }
}

async fn an_entry_is_decoded_only_as_the_type_that_wrote_it(b: Backend) {
    let t = Typed {
        cache: b.cache("types").await,
    };
    assert_eq!(t.small(1).await, 1);
    assert_eq!(t.big(1).await, 1 << 40, "not the u32 function's value");
    assert!(t.cache.stats().type_mismatches > 0);
    assert_eq!(t.small(1).await, 1, "the other function's entry stayed");

    let opts = Options::new().ttl(Duration::from_secs(60));
    t.cache
        .set("pair", &v1::Pair { a: 1, b: 2 }, &opts)
        .await
        .unwrap();
    assert_eq!(
        t.cache.get::<v2::Pair>("pair").await.unwrap(),
        None,
        "fields reordered: a miss, not a swap"
    );
    assert_eq!(
        t.cache.get::<v1::Pair>("pair").await.unwrap(),
        Some(v1::Pair { a: 1, b: 2 })
    );
}

/// A recursive type.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Node {
    next: Vec<Node>,
}

/// An entry of 1 MiB of `Node`s nested one in the next (postcard), with a
/// valid envelope for a `Node` (format 2, see envelope.rs).
fn deeply_nested_entry() -> Vec<u8> {
    let payload = [vec![1u8; 1 << 20], vec![0]].concat();
    let mut v = b"RC\x02\x01\x00;".to_vec();
    v.extend_from_slice(&u64::MAX.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_le_bytes());
    v.extend_from_slice(&cache_runtime::__private::fingerprint::<Node>().to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&payload);
    v
}

async fn a_deeply_nested_entry_is_a_miss_and_a_counter(b: Backend) {
    let cache = b
        .builder("nested")
        .max_value_size(4 << 20)
        .build()
        .await
        .unwrap();
    let opts = Options::new().ttl(Duration::from_secs(60));
    cache
        .debug_put_raw("deep", &opts, &deeply_nested_entry())
        .await
        .unwrap();
    // Decoding it without a bound on depth overflows the stack: the process
    // would abort here.
    let v: Result<Node, Infallible> = cache
        .get_or_load("deep", &opts, || async { Ok(Node { next: Vec::new() }) })
        .await;
    assert!(v.unwrap().next.is_empty(), "the loader's value");
    assert_eq!(cache.stats().corrupt, 1);
    assert!(
        cache.get::<Node>("deep").await.unwrap().is_some(),
        "refilled"
    );
}

// ---- tags and versions ----

async fn tags_of_any_length_are_cached_and_invalidated(b: Backend) {
    let cache = b.cache("long_tags").await;
    let tag = "t".repeat(70_000);
    let opts = Options::new()
        .ttl(Duration::from_secs(60))
        .tags([tag.clone()]);
    let loads = AtomicUsize::new(0);
    let read = async || -> u32 {
        let v: Result<u32, Infallible> = cache
            .get_or_load("k", &opts, || async {
                loads.fetch_add(1, SeqCst);
                Ok(5)
            })
            .await;
        v.unwrap()
    };
    read().await;
    read().await;
    assert_eq!(loads.load(SeqCst), 1, "stored and served");
    assert_eq!(cache.stats().errors, 0);
    cache.invalidate_tags([tag.as_str()]).await.unwrap();
    read().await;
    assert_eq!(
        loads.load(SeqCst),
        2,
        "the long tag's invalidation reached it"
    );
}

async fn every_version_of_a_key_is_invalidated_from_anywhere(b: Backend) {
    let reader = b.cache("versions").await;
    // Another process, which never used a version (the in-process store
    // has no other process: the same cache).
    let writer = match b {
        Backend::Memory => reader.clone(),
        _ => b
            .builder("unused")
            .prefix(reader.prefix())
            .build()
            .await
            .unwrap(),
    };
    let loads = AtomicUsize::new(0);
    let read = async |version: u32| -> u32 {
        let opts = Options::new().ttl(Duration::from_secs(60)).version(version);
        let v: Result<u32, Infallible> = reader
            .get_or_load("k", &opts, || async {
                loads.fetch_add(1, SeqCst);
                Ok(version)
            })
            .await;
        v.unwrap()
    };
    for version in [1, 2, 0, 20240101] {
        read(version).await;
        read(version).await;
    }
    assert_eq!(loads.load(SeqCst), 4, "four versions, each cached");
    writer.invalidate_keys(["k"]).await.unwrap();
    for version in [1, 2, 0, 20240101] {
        read(version).await;
    }
    assert_eq!(loads.load(SeqCst), 8, "every version was invalidated");
}

on_every_backend!(
    separators_never_make_two_calls_share_a_key,
    a_pattern_is_not_widened_by_a_separator_in_a_value,
    a_pattern_removes_long_keys,
    a_pattern_over_the_limit_is_refused_by_hand_and_widened_by_the_macro,
    an_entry_is_decoded_only_as_the_type_that_wrote_it,
    a_deeply_nested_entry_is_a_miss_and_a_counter,
    tags_of_any_length_are_cached_and_invalidated,
    every_version_of_a_key_is_invalidated_from_anywhere,
);

/// A fill of another version in flight when the key is invalidated (by a
/// process that never used that version) does not make its value readable
/// afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_versioned_fill_in_flight_cannot_outlive_the_invalidation() {
    for b in Backend::all() {
        let cache = b.cache("version_race").await;
        let other = match b {
            Backend::Memory => cache.clone(),
            _ => b
                .builder("other")
                .prefix(cache.prefix())
                .build()
                .await
                .unwrap(),
        };
        let opts = Options::new().ttl(Duration::from_secs(60)).version(7);
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let c = cache.clone();
        let o = opts.clone();
        let slow = tokio::spawn(async move {
            let v: Result<u32, Infallible> = c
                .get_or_load("k", &o, || async move {
                    let _ = started_tx.send(());
                    let _ = go_rx.await;
                    Ok(1)
                })
                .await;
            v.unwrap()
        });
        started_rx.await.unwrap();
        other.invalidate_keys(["k"]).await.unwrap();
        go_tx.send(()).unwrap();
        assert_eq!(slow.await.unwrap(), 1, "the old value");
        let v: Result<u32, Infallible> = cache.get_or_load("k", &opts, || async { Ok(2) }).await;
        assert_eq!(v.unwrap(), 2, "{b:?}: the old value is not served");
    }
}

// ---- encryption ----

const PLAIN: &str = "plaintext-marker-4f1d";

static SAVED: std::sync::Mutex<Vec<(u64, String)>> = std::sync::Mutex::new(Vec::new());

#[cached(key = "secret:{id}", ttl = 600, strategy = "behind", value = secret, encrypt = true, flush_interval = "20ms")]
async fn save_secret(id: u64, secret: String) -> Result<(), String> {
    SAVED.lock().unwrap().push((id, secret));
    Ok(())
}

/// Every value Redis holds under `prefix` (strings, and stream entries),
/// concatenated.
async fn everything_stored(server: &cache_tests::RedisServer) -> Vec<u8> {
    let mut conn = server.conn().await;
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut all = Vec::new();
    for k in keys {
        let kind: String = ::redis::cmd("TYPE")
            .arg(&k)
            .query_async(&mut conn)
            .await
            .unwrap();
        let value: ::redis::Value = match kind.as_str() {
            "string" => ::redis::cmd("GET")
                .arg(&k)
                .query_async(&mut conn)
                .await
                .unwrap(),
            "stream" => ::redis::cmd("XRANGE")
                .arg(&k)
                .arg("-")
                .arg("+")
                .query_async(&mut conn)
                .await
                .unwrap(),
            _ => continue,
        };
        all.extend_from_slice(format!("{k}={value:?}\n").as_bytes());
    }
    all
}

fn holds_plaintext(bytes: &[u8]) -> bool {
    bytes.windows(PLAIN.len()).any(|w| w == PLAIN.as_bytes())
}

/// `encrypt = true` never falls back to plaintext: without a key nothing is
/// stored (and the failure is counted), and with one the write-behind queue
/// holds the call's arguments sealed, which the flusher opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_values_and_their_queued_calls_are_never_plaintext_in_redis() {
    let server = cache_tests::RedisServer::start();
    let opts = Options::new().ttl(Duration::from_secs(60)).encrypt(true);
    let keyless = Cache::builder()
        .url(server.url())
        .prefix("nokey")
        .build()
        .await
        .unwrap();
    let v: Result<String, Infallible> = keyless
        .get_or_load("k", &opts, || async { Ok(PLAIN.to_string()) })
        .await;
    assert_eq!(v.unwrap(), PLAIN, "the caller still gets the value");
    assert!(keyless.stats().errors > 0, "the refusal is counted");
    let err = keyless
        .set("k2", &PLAIN.to_string(), &opts)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("encryption key"), "{err}");
    let queued = keyless
        .write_behind(
            "nobody::flushes",
            "k3",
            &PLAIN.to_string(),
            &opts,
            &(3u64, PLAIN),
        )
        .await;
    assert!(
        queued.is_err(),
        "not enqueued: the caller runs the body itself"
    );

    let sealed = Cache::builder()
        .url(server.url())
        .prefix("sealed")
        .encryption_key(1, [7; 32])
        .build()
        .await
        .unwrap();
    sealed
        .write_behind(
            "nobody::flushes",
            "k4",
            &PLAIN.to_string(),
            &opts,
            &(4u64, PLAIN),
        )
        .await
        .unwrap();
    sealed.clone().install().unwrap();
    save_secret(1, PLAIN.to_string()).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !SAVED.lock().unwrap().contains(&(1, PLAIN.to_string())) {
        assert!(
            std::time::Instant::now() < deadline,
            "the sealed call was flushed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stored = everything_stored(&server).await;
    assert!(
        String::from_utf8_lossy(&stored).contains("nobody::flushes"),
        "the queued call is there to be read"
    );
    assert!(
        !holds_plaintext(&stored),
        "{}",
        String::from_utf8_lossy(&stored)
    );
}

// ---- misconfiguration ----

#[cached(key = "plain:{id}", ttl = 60)]
async fn uses_the_global_cache(id: u64) -> u64 {
    id
}

/// A cached call in a process that installed no cache runs uncached, and
/// says so on standard error: a user who set up no logging still sees it.
#[test]
fn a_call_without_an_installed_cache_says_so_on_stderr() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "uninstalled_child", "--ignored", "--nocapture"])
        .output()
        .expect("run the child");
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("no cache is installed").count(),
        1,
        "once, however many calls: {stderr}"
    );
}

#[tokio::test]
#[ignore = "a child process of a_call_without_an_installed_cache_says_so_on_stderr"]
async fn uninstalled_child() {
    for id in 0..3 {
        assert_eq!(uses_the_global_cache(id).await, id);
    }
    assert_eq!(Cache::global().stats().misses, 3);
}
