//! `&self` methods: `{self.field}` in templates, `cache = self.cache` with a
//! `Cache` field and with an `Arc<Cache>` field, and a `&mut self` method on
//! the global cache.
#![deny(warnings)]
#![deny(clippy::all)]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cache_runtime::{Cache, cached, invalidates};

struct Repo {
    cache: Cache,
    tenant: String,
    loads: AtomicUsize,
}

impl Repo {
    #[cached(key = "{self.tenant}:user:{id}", ttl = 60, tags = ["{self.tenant}:users"], cache = self.cache)]
    async fn user_name(&self, id: u64) -> Result<String, Infallible> {
        self.loads.fetch_add(1, Ordering::Relaxed);
        Ok(format!("{}/{id}", self.tenant))
    }

    #[invalidates(keys = ["{self.tenant}:user:{id}"], cache = self.cache)]
    async fn rename(&self, id: u64, name: String) -> Result<(), Infallible> {
        let _ = (id, name);
        Ok(())
    }

    #[invalidates(tags = ["{self.tenant}:users"], cache = self.cache, when = "before")]
    async fn reload(&self) {}
}

struct Shared {
    cache: Arc<Cache>,
}

impl Shared {
    #[cached(key = "shared:{n}", ttl = 60, cache = self.cache)]
    pub async fn double(&self, n: u32) -> u32 {
        n * 2
    }
}

struct Counter {
    calls: u32,
}

impl Counter {
    #[cached(key = "counter:{step}", ttl = 60)]
    async fn bump(&mut self, step: u32) -> u32 {
        self.calls += step;
        self.calls
    }

    #[cached(key = "assoc:{n}", ttl = 60)]
    async fn associated(n: u32) -> u32 {
        n + 1
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let repo = Repo {
            cache: Cache::builder().memory().build().await.unwrap(),
            tenant: "acme".to_string(),
            loads: AtomicUsize::new(0),
        };
        assert_eq!(repo.user_name(1).await.unwrap(), "acme/1");
        assert_eq!(repo.user_name(1).await.unwrap(), "acme/1");
        assert_eq!(repo.loads.load(Ordering::Relaxed), 1);
        repo.rename(1, "x".to_string()).await.unwrap();
        assert_eq!(repo.user_name(1).await.unwrap(), "acme/1");
        assert_eq!(repo.loads.load(Ordering::Relaxed), 2);
        repo.reload().await;
        assert_eq!(repo.user_name(1).await.unwrap(), "acme/1");
        assert_eq!(repo.loads.load(Ordering::Relaxed), 3);

        let shared = Shared {
            cache: Arc::new(Cache::builder().memory().build().await.unwrap()),
        };
        assert_eq!(shared.double(21).await, 42);

        let mut counter = Counter { calls: 0 };
        assert_eq!(counter.bump(2).await, 2);
        assert_eq!(Counter::associated(1).await, 2);
    });
}
