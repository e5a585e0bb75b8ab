//! The race harness: readers and writers over a versioned data source, with
//! random delays between a loader's read and its fill. Checked:
//!
//! 1. once a write's invalidation has returned, no read that starts later
//!    returns an older version;
//! 2. once writers stop, no entry is stale.
//!
//! The same harness, pointed at the naive cache-aside of the seed documents
//! (GET; on a miss load and SETEX; invalidate with DEL), must find stale reads,
//! which shows that the harness can fail.

mod common;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cache_runtime::{Cache, Options};
use common::{Backend, Source};

const KEYS: usize = 4;
const READERS: usize = 12;
const WRITERS: usize = 2;
const RUN_FOR: Duration = Duration::from_secs(3);
const MAX_OPS_PER_TASK: usize = 2_000;

/// A cache as the harness drives it.
trait UnderTest: Send + Sync + 'static {
    fn read(
        &self,
        key: usize,
        load: impl Future<Output = u64> + Send,
    ) -> impl Future<Output = u64> + Send;
    fn invalidate(&self, key: usize) -> impl Future<Output = ()> + Send;
}

struct Ours(Cache);

impl UnderTest for Ours {
    async fn read(&self, key: usize, load: impl Future<Output = u64> + Send) -> u64 {
        let opts = Options::new().ttl(Duration::from_secs(60));
        let v: Result<u64, Infallible> = self
            .0
            .get_or_load(format!("k{key}"), &opts, || async { Ok(load.await) })
            .await;
        match v {
            Ok(v) => v,
        }
    }
    async fn invalidate(&self, key: usize) {
        self.0
            .invalidate_keys([format!("k{key}")])
            .await
            .expect("invalidate");
    }
}

/// Ours, invalidating by pattern (`SCAN` + `UNLINK`) instead of by key: a
/// pattern deletion must also stop loads from before it from storing their
/// values after it returns.
struct OursByPattern(Cache);

impl UnderTest for OursByPattern {
    async fn read(&self, key: usize, load: impl Future<Output = u64> + Send) -> u64 {
        Ours(self.0.clone()).read(key, load).await
    }
    async fn invalidate(&self, key: usize) {
        self.0
            .invalidate_pattern(format!("k{key}"))
            .await
            .expect("invalidate_pattern");
    }
}

/// The seeds' cache-aside: GET, else load and SETEX; invalidate with DEL.
struct Naive {
    conn: redis::aio::MultiplexedConnection,
    prefix: String,
}

impl UnderTest for Naive {
    async fn read(&self, key: usize, load: impl Future<Output = u64> + Send) -> u64 {
        let mut c = self.conn.clone();
        let k = format!("{}:k{key}", self.prefix);
        let cached: Option<u64> = redis::cmd("GET")
            .arg(&k)
            .query_async(&mut c)
            .await
            .expect("GET");
        if let Some(v) = cached {
            return v;
        }
        let v = load.await;
        let _: () = redis::cmd("SETEX")
            .arg(&k)
            .arg(60)
            .arg(v)
            .query_async(&mut c)
            .await
            .expect("SETEX");
        v
    }
    async fn invalidate(&self, key: usize) {
        let mut c = self.conn.clone();
        let _: () = redis::cmd("DEL")
            .arg(format!("{}:k{key}", self.prefix))
            .query_async(&mut c)
            .await
            .expect("DEL");
    }
}

/// Our cache behind a naive read coalescing: a caller joins a read of the
/// same key already in flight, sent before it called (what a batch that
/// still took members after it was sent would do).
struct JoinInFlight {
    inner: Ours,
    inflight: std::sync::Mutex<
        std::collections::HashMap<usize, tokio::sync::watch::Receiver<Option<u64>>>,
    >,
}

impl UnderTest for JoinInFlight {
    async fn read(&self, key: usize, load: impl Future<Output = u64> + Send) -> u64 {
        let joined = self.inflight.lock().unwrap().get(&key).cloned();
        if let Some(mut rx) = joined
            && let Ok(v) = rx.wait_for(Option::is_some).await
            && let Some(v) = *v
        {
            return v;
        }
        let (tx, rx) = tokio::sync::watch::channel(None);
        self.inflight.lock().unwrap().insert(key, rx);
        let v = self.inner.read(key, load).await;
        tx.send_replace(Some(v));
        self.inflight.lock().unwrap().remove(&key);
        v
    }
    async fn invalidate(&self, key: usize) {
        self.inner.invalidate(key).await;
    }
}

#[derive(Debug, Default)]
struct Report {
    reads: usize,
    writes: usize,
    stale_reads: usize,
    stale_entries_after: usize,
}

async fn run<C: UnderTest>(cache: Arc<C>) -> Report {
    let source = Arc::new(Source::default());
    // Per key: the newest version whose invalidation has returned.
    let committed: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
    let stale = Arc::new(AtomicUsize::new(0));
    let reads = Arc::new(AtomicUsize::new(0));
    let writes = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + RUN_FOR;
    let mut tasks = Vec::new();
    for _ in 0..READERS {
        let (cache, source, committed, stale, reads) = (
            cache.clone(),
            source.clone(),
            committed.clone(),
            stale.clone(),
            reads.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for _ in 0..MAX_OPS_PER_TASK {
                if Instant::now() >= deadline {
                    break;
                }
                let key = rand::random_range(0..KEYS);
                let floor = committed[key].load(SeqCst);
                let src = source.clone();
                let got = cache
                    .read(key, async move {
                        let v = src.read(key);
                        // The delay between the loader's read and its fill.
                        tokio::time::sleep(Duration::from_millis(rand::random_range(0..50))).await;
                        v
                    })
                    .await;
                reads.fetch_add(1, SeqCst);
                if got < floor {
                    stale.fetch_add(1, SeqCst);
                }
            }
        }));
    }
    for _ in 0..WRITERS {
        let (cache, source, committed, writes) = (
            cache.clone(),
            source.clone(),
            committed.clone(),
            writes.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for _ in 0..MAX_OPS_PER_TASK {
                if Instant::now() >= deadline {
                    break;
                }
                let key = rand::random_range(0..KEYS);
                let v = source.bump(key);
                cache.invalidate(key).await;
                committed[key].fetch_max(v, SeqCst);
                writes.fetch_add(1, SeqCst);
                tokio::time::sleep(Duration::from_millis(rand::random_range(0..20))).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    // Writers have stopped: every entry must now hold the source's version.
    let mut stale_entries_after = 0;
    for key in 0..KEYS {
        let now = source.read(key);
        let got = cache.read(key, async move { now }).await;
        if got != now {
            stale_entries_after += 1;
        }
    }
    Report {
        reads: reads.load(SeqCst),
        writes: writes.load(SeqCst),
        stale_reads: stale.load(SeqCst),
        stale_entries_after,
    }
}

/// Runs the harness on `cache` and checks that it served nothing stale.
async fn fresh(cache: &Cache) -> Report {
    let report = run(Arc::new(Ours(cache.clone()))).await;
    assert!(
        report.reads > 100 && report.writes > 20,
        "the harness ran: {report:?}"
    );
    assert_eq!(report.stale_reads, 0, "{report:?}");
    assert_eq!(report.stale_entries_after, 0, "{report:?}");
    report
}

async fn ours(b: Backend) {
    fresh(&b.cache("race_harness").await).await;
}

async fn by_pattern(b: Backend) {
    let cache = b.cache("race_pattern").await;
    let report = run(Arc::new(OursByPattern(cache))).await;
    assert!(
        report.reads > 100 && report.writes > 20,
        "the harness ran: {report:?}"
    );
    assert_eq!(report.stale_reads, 0, "{report:?}");
    assert_eq!(report.stale_entries_after, 0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_stale_reads_with_pattern_invalidation_on_memory() {
    by_pattern(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_stale_reads_with_pattern_invalidation_on_redis() {
    by_pattern(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_stale_reads_with_pattern_invalidation_on_cluster() {
    by_pattern(Backend::Cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_stale_reads_on_memory() {
    ours(Backend::Memory).await;
}

/// On Redis, concurrent hits share `MGET`s (coalescing is on by default):
/// the shared reads are as fresh as reads of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_stale_reads_on_redis() {
    let cache = Backend::Redis.cache("race_harness").await;
    let report = fresh(&cache).await;
    let batches = cache.read_batches().expect("coalescing on");
    eprintln!("{report:?}; {batches:?}");
    assert!(batches.reads > 0, "reads were shared: {batches:?}");
}

/// Joining a read that is already in flight (instead of one not yet sent)
/// serves values older than an invalidation that returned before the call:
/// the harness finds it, which is why a batch closes before it is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn joining_a_read_in_flight_serves_stale_values() {
    let naive = JoinInFlight {
        inner: Ours(Backend::Redis.cache("race_join").await),
        inflight: Default::default(),
    };
    let report = run(Arc::new(naive)).await;
    assert!(
        report.stale_reads > 0,
        "joining reads in flight should serve stale values: {report:?}"
    );
    eprintln!("joining reads in flight: {report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_stale_reads_on_cluster() {
    ours(Backend::Cluster).await;
}

/// With a near cache, hits are served from process memory: the copies must
/// not outlive an invalidation, whoever's read raced it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_stale_reads_with_a_near_cache() {
    let cache = Backend::Redis
        .builder("race_near")
        .near_cache(1_000)
        .build()
        .await
        .expect("cache builds");
    tokio::time::timeout(Duration::from_secs(10), async {
        while !cache.near_state().is_some_and(|s| s.live) {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("tracking up");
    fresh(&cache).await;
    let near = cache.near_state().expect("a near cache");
    assert!(near.answered > 0, "copies served hits: {near:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_naive_cache_aside_fails_the_same_harness() {
    let naive = Naive {
        conn: cache_tests::shared().conn().await,
        prefix: cache_tests::unique_prefix("naive"),
    };
    let report = run(Arc::new(naive)).await;
    assert!(
        report.stale_reads > 0 || report.stale_entries_after > 0,
        "the naive implementation should serve stale values: {report:?}"
    );
    eprintln!("naive cache-aside: {report:?}");
}
