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

on_every_backend!(
    separators_never_make_two_calls_share_a_key,
    a_pattern_is_not_widened_by_a_separator_in_a_value,
    a_pattern_removes_long_keys,
    a_pattern_over_the_limit_is_refused_by_hand_and_widened_by_the_macro,
);

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
