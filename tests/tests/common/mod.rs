//! Shared pieces of the integration tests: building a cache on any store.
#![allow(dead_code)]

use cache_runtime::Cache;

/// The stores every conformance test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Redis,
    /// The shared Redis Cluster (3 primaries) of the test binary.
    Cluster,
}

impl Backend {
    /// Every store; without the cluster when `CACHE_TESTS_NO_CLUSTER` is set
    /// (runs that must stay fast, such as `scripts/mutants.sh`).
    pub fn all() -> Vec<Backend> {
        let mut all = vec![Backend::Memory, Backend::Redis];
        if std::env::var_os("CACHE_TESTS_NO_CLUSTER").is_none() {
            all.push(Backend::Cluster);
        }
        all
    }

    /// A cache on this store, isolated from every other test by its prefix.
    pub async fn cache(self, name: &str) -> Cache {
        self.builder(name).build().await.expect("cache builds")
    }

    pub fn builder(self, name: &str) -> cache_runtime::CacheBuilder {
        let prefix = cache_tests::unique_prefix(name);
        match self {
            Backend::Memory => Cache::builder().memory().prefix(prefix),
            Backend::Redis => Cache::builder()
                .url(cache_tests::shared().url())
                .prefix(prefix),
            Backend::Cluster => Cache::builder()
                .cluster(cache_tests::shared_cluster().urls())
                .prefix(prefix),
        }
    }
}

/// Generates `mod memory`, `mod redis` and `mod cluster`, each with one
/// `#[tokio::test]` per listed async fn taking a `Backend`.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Memory).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Redis).await;
                }
            )*
        }
        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Cluster).await;
                }
            )*
        }
    };
}

/// A versioned data source for race harnesses: a version per key, bumped by
/// writers.
#[derive(Default)]
pub struct Source {
    versions: std::sync::Mutex<std::collections::HashMap<usize, u64>>,
}

impl Source {
    /// The current version of `key`.
    pub fn read(&self, key: usize) -> u64 {
        *self.versions.lock().unwrap().get(&key).unwrap_or(&0)
    }

    /// Bumps `key`'s version and returns the new one.
    pub fn bump(&self, key: usize) -> u64 {
        let mut m = self.versions.lock().unwrap();
        let v = m.entry(key).or_insert(0);
        *v += 1;
        *v
    }
}
