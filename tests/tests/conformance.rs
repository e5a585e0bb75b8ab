//! One suite, run against the in-process store and a real redis-server.

mod common;

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use cache_runtime::{Cache, CodecKind, Options, cached, invalidates};
use common::Backend;
use serde::{Deserialize, Serialize};
use tokio::sync::{Barrier, oneshot};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
}

/// A data source that counts its reads.
#[derive(Default)]
struct Db {
    loads: AtomicUsize,
}

impl Db {
    fn loads(&self) -> usize {
        self.loads.load(SeqCst)
    }
}

/// A service whose methods are cached through `cache = self.cache`.
struct Service {
    cache: Cache,
    db: Db,
}

impl Service {
    #[cached(key = "user:{id}", ttl = "10m", tags = ["users", "user:{id}"], cache = self.cache)]
    async fn user(&self, id: u64) -> Result<User, String> {
        self.db.loads.fetch_add(1, SeqCst);
        if id == 0 {
            return Err("no user 0".to_string());
        }
        Ok(User {
            id,
            name: format!("user-{id}"),
        })
    }

    #[cached(key = "maybe:{id}", ttl = 60, cache = self.cache)]
    async fn maybe(&self, id: u64) -> Option<u64> {
        self.db.loads.fetch_add(1, SeqCst);
        id.is_multiple_of(2).then_some(id)
    }

    #[cached(key = "neg:{id}", ttl = 60, cache_none = "30s", cache = self.cache)]
    async fn negative(&self, id: u64) -> Result<Option<u64>, String> {
        self.db.loads.fetch_add(1, SeqCst);
        Ok(id.is_multiple_of(2).then_some(id))
    }

    #[cached(key = "search:{q}", ttl = 60, cache = self.cache)]
    async fn search(&self, q: &str) -> Vec<String> {
        self.db.loads.fetch_add(1, SeqCst);
        vec![q.to_string()]
    }

    #[invalidates(keys = ["user:{id}"], cache = self.cache)]
    async fn rename(&self, id: u64, fail: bool) -> Result<(), String> {
        if fail { Err("refused".into()) } else { Ok(()) }
    }

    #[invalidates(tags = ["users"], cache = self.cache)]
    async fn reset_all(&self) {}

    #[invalidates(patterns = ["search:{prefix}*"], cache = self.cache)]
    async fn forget_searches(&self, prefix: &str) {
        let _ = prefix;
    }
}

async fn service(b: Backend, name: &str) -> Service {
    Service {
        cache: b.cache(name).await,
        db: Db::default(),
    }
}

fn opts() -> Options {
    Options::new().ttl(Duration::from_secs(60))
}

async fn miss_then_hit(b: Backend) {
    let s = service(b, "miss_then_hit").await;
    let first = s.user(7).await.unwrap();
    let second = s.user(7).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(s.db.loads(), 1);
    let st = s.cache.stats();
    assert_eq!((st.hits, st.misses, st.loads), (1, 1, 1));
    let f = st.function(concat!(module_path!(), "::user"));
    assert_eq!((f.hits, f.misses), (1, 1), "per-function stats: {st:?}");
}

async fn errors_and_none_are_not_cached(b: Backend) {
    let s = service(b, "errors_none").await;
    assert!(s.user(0).await.is_err());
    assert!(s.user(0).await.is_err());
    assert_eq!(s.db.loads(), 2, "Err is never cached");
    assert_eq!(s.maybe(1).await, None);
    assert_eq!(s.maybe(1).await, None);
    assert_eq!(s.db.loads(), 4, "None is not cached without cache_none");
    assert_eq!(s.maybe(2).await, Some(2));
    assert_eq!(s.maybe(2).await, Some(2));
    assert_eq!(s.db.loads(), 5);
}

async fn cache_none_caches_none_with_its_own_ttl(b: Backend) {
    let s = service(b, "cache_none").await;
    assert_eq!(s.negative(1).await, Ok(None));
    assert_eq!(s.negative(1).await, Ok(None));
    assert_eq!(s.db.loads(), 1);
    let o = Options::new();
    let ttl = s.cache.ttl_of("neg:1", &o).await.unwrap().expect("stored");
    assert!(
        ttl <= Duration::from_secs(33) && ttl >= Duration::from_secs(26),
        "none ttl {ttl:?}"
    );
    s.negative(2).await.unwrap();
    let ttl = s.cache.ttl_of("neg:2", &o).await.unwrap().expect("stored");
    assert!(ttl > Duration::from_secs(50), "value ttl {ttl:?}");
}

async fn invalidate_key_after_success_only(b: Backend) {
    let s = service(b, "invalidate_key").await;
    s.user(1).await.unwrap();
    s.user(2).await.unwrap();
    assert!(s.rename(1, true).await.is_err());
    s.user(1).await.unwrap();
    assert_eq!(s.db.loads(), 2, "a failed body invalidates nothing");
    s.rename(1, false).await.unwrap();
    s.user(1).await.unwrap();
    s.user(2).await.unwrap();
    assert_eq!(s.db.loads(), 3, "only user 1 reloads");
}

async fn invalidate_tag(b: Backend) {
    let s = service(b, "invalidate_tag").await;
    s.user(1).await.unwrap();
    s.user(2).await.unwrap();
    s.maybe(4).await;
    s.reset_all().await;
    s.user(1).await.unwrap();
    s.user(2).await.unwrap();
    s.maybe(4).await;
    assert_eq!(
        s.db.loads(),
        5,
        "tagged entries reload, the untagged one does not"
    );
    s.cache.invalidate_tags(["user:2"]).await.unwrap();
    s.user(1).await.unwrap();
    s.user(2).await.unwrap();
    assert_eq!(s.db.loads(), 6, "only the entry with that tag reloads");
    assert_eq!(
        s.cache.get::<User>("user:2").await.unwrap().map(|u| u.id),
        Some(2)
    );
    s.cache.invalidate_tags(["users"]).await.unwrap();
    assert_eq!(
        s.cache.get::<User>("user:2").await.unwrap(),
        None,
        "get checks tags too"
    );
}

async fn invalidate_pattern_is_literal_inside_values(b: Backend) {
    let s = service(b, "pattern").await;
    for q in ["ab", "abc", "a*", "b", "a:z"] {
        s.search(q).await;
    }
    assert_eq!(s.db.loads(), 5);
    // The value "a*" is escaped: it matches the key "search:a*" literally, not "search:ab".
    s.forget_searches("a*").await;
    for q in ["ab", "abc", "a*", "b", "a:z"] {
        s.search(q).await;
    }
    assert_eq!(s.db.loads(), 6, "only search:a* was removed");
    // The template's own `*` is a wildcard.
    s.forget_searches("a").await;
    for q in ["ab", "abc", "a*", "b", "a:z"] {
        s.search(q).await;
    }
    assert_eq!(s.db.loads(), 10, "every search starting with a");
    let n = s.cache.invalidate_pattern("search:*").await.unwrap();
    assert!(n >= 5, "removed {n}");
    assert!(
        s.cache.invalidate_pattern("x".repeat(2000)).await.is_err(),
        "patterns are bounded"
    );
}

async fn ttl_jitter_spreads_expiry(b: Backend) {
    let cache = b.builder("jitter").jitter(0.2).build().await.unwrap();
    let ttl = Duration::from_secs(1000);
    let o = Options::new().ttl(ttl);
    let mut ttls = Vec::new();
    for i in 0..200 {
        let key = format!("j:{i}");
        let _: Result<u32, Infallible> = cache.get_or_load(&key, &o, || async { Ok(1) }).await;
        ttls.push(
            cache
                .ttl_of(&key, &o)
                .await
                .unwrap()
                .expect("stored")
                .as_millis() as u64,
        );
    }
    let (min, max) = (*ttls.iter().min().unwrap(), *ttls.iter().max().unwrap());
    assert!(
        min >= 799_000 && max <= 1_200_000,
        "within ttl·(1±0.2): {min}..{max}"
    );
    assert!(
        max - min > 200_000,
        "200 entries spread over the window: {min}..{max}"
    );
    let distinct: HashSet<u64> = ttls.iter().map(|t| t / 1000).collect();
    assert!(
        distinct.len() > 100,
        "expiries spread: {} distinct seconds",
        distinct.len()
    );
}

async fn undecodable_bytes_are_a_miss(b: Backend) {
    let cache = b.cache("corrupt").await;
    let o = opts();
    let good: Result<User, Infallible> = cache
        .get_or_load("u", &o, || async {
            Ok(User {
                id: 1,
                name: "a".into(),
            })
        })
        .await;
    let good = good.unwrap();
    let mut cases: Vec<Vec<u8>> = vec![
        b"garbage".to_vec(),
        Vec::new(),
        b"RC".to_vec(),
        b"RC\x01\x01\x00;".to_vec(),
        b"RC\x02\x01\x00;\x00\x00\x00\x00\x00\x00\x00\x00".to_vec(),
        vec![0xff; 300],
    ];
    // A valid envelope of another codec and a truncated valid envelope.
    let other = Options::new()
        .ttl(Duration::from_secs(60))
        .codec(CodecKind::Json);
    cache.set("probe", &good, &other).await.unwrap();
    cases.push(raw_of(&cache, b, "probe").await);
    cache.set("probe", &good, &o).await.unwrap();
    let full = raw_of(&cache, b, "probe").await;
    cases.push(full[..full.len() - 1].to_vec());
    for (i, bytes) in cases.iter().enumerate() {
        cache.debug_put_raw("u", &o, bytes).await.unwrap();
        let before = cache.stats().corrupt;
        let loads = cache.stats().loads;
        let v: Result<User, Infallible> = cache
            .get_or_load("u", &o, || async {
                Ok(User {
                    id: 2,
                    name: "b".into(),
                })
            })
            .await;
        assert_eq!(v.unwrap().id, 2, "case {i}: the loader's value");
        assert_eq!(cache.stats().corrupt, before + 1, "case {i}: counted");
        assert_eq!(cache.stats().loads, loads + 1, "case {i}: a miss");
        let again: Result<User, Infallible> = cache
            .get_or_load("u", &o, || async { unreachable!() })
            .await;
        assert_eq!(again.unwrap().id, 2, "case {i}: replaced by a good entry");
    }
    cache.debug_put_raw("g", &o, b"garbage").await.unwrap();
    assert_eq!(
        cache.get::<User>("g").await.unwrap(),
        None,
        "get: garbage is a miss"
    );
}

/// The stored bytes of an entry.
async fn raw_of(cache: &Cache, b: Backend, key: &str) -> Vec<u8> {
    let stored = cache
        .debug_get_raw(key, &Options::new())
        .await
        .unwrap()
        .expect("stored");
    // The same bytes are what Redis itself holds under the stored key.
    let mut get = ::redis::cmd("GET");
    get.arg(cache.stored_key(key, &Options::new()));
    let direct: Option<Vec<u8>> = match b {
        Backend::Memory => None,
        Backend::Redis => {
            let mut c = cache_tests::shared().conn().await;
            Some(get.query_async(&mut c).await.unwrap())
        }
        Backend::Cluster => {
            let mut c = cache_tests::shared_cluster().conn().await;
            Some(get.query_async(&mut c).await.unwrap())
        }
    };
    if let Some(direct) = direct {
        assert_eq!(direct, stored);
    }
    stored
}

async fn fill_after_invalidation_is_refused(b: Backend) {
    let cache = Arc::new(b.cache("lease_race").await);
    let o = opts();
    let (loaded_tx, loaded_rx) = oneshot::channel::<()>();
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let c = cache.clone();
    let reader = tokio::spawn(async move {
        let o = opts();
        let v: Result<u32, Infallible> = c
            .get_or_load("k", &o, || async move {
                let old = 1; // read from the source before the write
                let _ = loaded_tx.send(());
                let _ = go_rx.await;
                Ok(old)
            })
            .await;
        v.unwrap()
    });
    loaded_rx.await.unwrap();
    // The write happens and its invalidation returns while the reader is between load and fill.
    cache.invalidate_keys(["k"]).await.unwrap();
    go_tx.send(()).unwrap();
    assert_eq!(
        reader.await.unwrap(),
        1,
        "the slow reader still gets its own value"
    );
    assert_eq!(cache.stats().fills_rejected, 1, "its fill was refused");
    let v: Result<u32, Infallible> = cache.get_or_load("k", &o, || async { Ok(2) }).await;
    assert_eq!(
        v.unwrap(),
        2,
        "a read after the invalidation never sees the old value"
    );
}

async fn tag_bump_during_load_makes_the_fill_dead(b: Backend) {
    let cache = Arc::new(b.cache("tag_race").await);
    let (loaded_tx, loaded_rx) = oneshot::channel::<()>();
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let c = cache.clone();
    let reader = tokio::spawn(async move {
        let o = opts().tags(["t"]);
        let v: Result<u32, Infallible> = c
            .get_or_load("k", &o, || async move {
                let _ = loaded_tx.send(());
                let _ = go_rx.await;
                Ok(1)
            })
            .await;
        v.unwrap()
    });
    loaded_rx.await.unwrap();
    cache.invalidate_tags(["t"]).await.unwrap();
    go_tx.send(()).unwrap();
    assert_eq!(reader.await.unwrap(), 1);
    let o = opts().tags(["t"]);
    let v: Result<u32, Infallible> = cache.get_or_load("k", &o, || async { Ok(2) }).await;
    assert_eq!(
        v.unwrap(),
        2,
        "the entry recorded the tag's version from before the load"
    );
}

async fn set_cancels_an_older_load(b: Backend) {
    let cache = Arc::new(b.cache("set_race").await);
    let (loaded_tx, loaded_rx) = oneshot::channel::<()>();
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let c = cache.clone();
    let reader = tokio::spawn(async move {
        let v: Result<u32, Infallible> = c
            .get_or_load("k", &opts(), || async move {
                let _ = loaded_tx.send(());
                let _ = go_rx.await;
                Ok(1)
            })
            .await;
        v.unwrap()
    });
    loaded_rx.await.unwrap();
    cache.set("k", &2u32, &opts()).await.unwrap();
    go_tx.send(()).unwrap();
    reader.await.unwrap();
    assert_eq!(
        cache.get::<u32>("k").await.unwrap(),
        Some(2),
        "the newer value stays"
    );
}

async fn concurrent_misses_load_once(b: Backend) {
    let cache = Arc::new(b.cache("single_flight").await);
    let loads = Arc::new(AtomicUsize::new(0));
    let n = 100;
    let barrier = Arc::new(Barrier::new(n));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (cache, loads, barrier) = (cache.clone(), loads.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let v: Result<u64, Infallible> = cache
                .get_or_load("cold", &opts(), || async move {
                    loads.fetch_add(1, SeqCst);
                    tokio::task::yield_now().await;
                    Ok(99)
                })
                .await;
            v.unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 99);
    }
    assert_eq!(
        loads.load(SeqCst),
        1,
        "one loader call for {n} concurrent callers"
    );
}

async fn versions_are_separate_keys(b: Backend) {
    let cache = b.cache("versions").await;
    let v1 = opts();
    let v2 = opts().version(2);
    cache.set("k", &1u32, &v1).await.unwrap();
    cache.set("k", &2u32, &v2).await.unwrap();
    assert_eq!(cache.get_with::<u32>("k", &v1).await.unwrap(), Some(1));
    assert_eq!(cache.get_with::<u32>("k", &v2).await.unwrap(), Some(2));
    assert_ne!(cache.stored_key("k", &v1), cache.stored_key("k", &v2));
    cache.invalidate_keys(["k"]).await.unwrap();
    assert_eq!(cache.get_with::<u32>("k", &v1).await.unwrap(), None);
    assert_eq!(
        cache.get_with::<u32>("k", &v2).await.unwrap(),
        None,
        "every version used is invalidated"
    );
}

async fn escaped_keys_never_collide(b: Backend) {
    let s = service(b, "escaping").await;
    let a = s.search("x:y").await;
    let c = s.search("x%3Ay").await;
    assert_eq!(a, vec!["x:y".to_string()]);
    assert_eq!(
        c,
        vec!["x%3Ay".to_string()],
        "no collision with the escaped form"
    );
    assert_eq!(s.db.loads(), 2);
    assert!(
        s.cache
            .stored_key("a{b}", &Options::new())
            .matches('{')
            .count()
            == 1
    );
}

async fn encrypted_values_are_bound_to_their_key(b: Backend) {
    let cache = b
        .builder("encrypt")
        .encryption_key(1, [42; 32])
        .build()
        .await
        .unwrap();
    let o = opts().encrypt(true);
    let secret = "hunter2-secret".to_string();
    let v: Result<String, Infallible> = cache
        .get_or_load("a", &o, || async { Ok(secret.clone()) })
        .await;
    assert_eq!(v.unwrap(), secret);
    let raw = cache
        .debug_get_raw("a", &Options::new())
        .await
        .unwrap()
        .expect("stored");
    assert!(
        !raw.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "no plaintext at rest"
    );
    assert_eq!(
        cache.get_with::<String>("a", &o).await.unwrap(),
        Some(secret.clone())
    );
    // The ciphertext copied under another key does not authenticate: a miss, counted.
    cache
        .debug_put_raw("b", &Options::new(), &raw)
        .await
        .unwrap();
    let before = cache.stats().corrupt;
    let v: Result<String, Infallible> = cache
        .get_or_load("b", &o, || async { Ok("fresh".to_string()) })
        .await;
    assert_eq!(v.unwrap(), "fresh");
    assert_eq!(cache.stats().corrupt, before + 1);
    // A plaintext entry planted where an encrypted one is expected is refused too.
    cache
        .set("c", &"planted".to_string(), &opts())
        .await
        .unwrap();
    let v: Result<String, Infallible> = cache
        .get_or_load("c", &o, || async { Ok("real".to_string()) })
        .await;
    assert_eq!(v.unwrap(), "real");
}

/// Rotation: a cache with the new key still reads values sealed under the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encryption_key_rotation_reads_older_values() {
    let prefix = cache_tests::unique_prefix("rotation");
    let url = cache_tests::shared().url();
    let o = opts().encrypt(true);
    let old = Cache::builder()
        .url(&url)
        .prefix(&prefix)
        .encryption_key(1, [1; 32])
        .build()
        .await
        .unwrap();
    old.set("k", &"written under key 1".to_string(), &o)
        .await
        .unwrap();
    let new = Cache::builder()
        .url(&url)
        .prefix(&prefix)
        .encryption_key(1, [1; 32])
        .encryption_key(2, [2; 32])
        .build()
        .await
        .unwrap();
    assert_eq!(
        new.get_with::<String>("k", &o).await.unwrap().as_deref(),
        Some("written under key 1")
    );
    new.set("k2", &"written under key 2".to_string(), &o)
        .await
        .unwrap();
    assert_eq!(
        new.debug_get_raw("k2", &Options::new())
            .await
            .unwrap()
            .map(|r| !r.is_empty()),
        Some(true)
    );
    assert_eq!(
        old.get_with::<String>("k2", &o).await.unwrap(),
        None,
        "the old key cannot read the new one"
    );
    assert!(
        !format!("{new:?}").contains("[2, 2"),
        "no key material in Debug output"
    );
}

on_every_backend!(
    encrypted_values_are_bound_to_their_key,
    miss_then_hit,
    errors_and_none_are_not_cached,
    cache_none_caches_none_with_its_own_ttl,
    invalidate_key_after_success_only,
    invalidate_tag,
    invalidate_pattern_is_literal_inside_values,
    ttl_jitter_spreads_expiry,
    undecodable_bytes_are_a_miss,
    fill_after_invalidation_is_refused,
    tag_bump_during_load_makes_the_fill_dead,
    set_cancels_an_older_load,
    concurrent_misses_load_once,
    versions_are_separate_keys,
    escaped_keys_never_collide,
);
