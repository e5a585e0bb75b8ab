//! Write strategies: write-through, and read-through with [`Loader`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;

use crate::__private::{Cacheable, Invalidation};
use crate::key::KeyWriter;
use crate::{Cache, Options};

impl Cache {
    /// Write-through: stores `value`, the new state of `key` that a write has
    /// just committed, and cancels older loads of the key (their fills will be
    /// refused). If storing fails, the key is deleted instead, and that delete
    /// is retried until the store answers (reads in this process bypass the
    /// cache meanwhile), so the cache never keeps the value the write replaced.
    ///
    /// Never fails: a failure is counted and logged.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use cache_runtime::{Cache, Options};
    /// let cache = Cache::builder().memory().build().await?;
    /// cache.write_through("user:1", &"Grace".to_string(), &Options::new()).await;
    /// assert_eq!(cache.get::<String>("user:1").await?.as_deref(), Some("Grace"));
    /// # Ok::<(), cache_runtime::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn write_through<T: Serialize + serde::de::DeserializeOwned>(
        &self,
        key: &str,
        value: &T,
        options: &Options,
    ) {
        if let Err(e) = self.set(key, value, options).await {
            let stats = self.inner.stats.function(options.function);
            stats.error();
            tracing::warn!(error = %e, "cache: write-through store failed; deleting the key instead");
            let inv = Invalidation {
                keys: vec![key.to_string()],
                ..Invalidation::default()
            };
            self.invalidate_quiet(&inv).await;
        }
    }

    /// A read-through [`Loader`] for one key family: the cache, not the
    /// caller, owns how values are loaded.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use std::convert::Infallible;
    /// use cache_runtime::{Cache, Options};
    /// let cache = Cache::builder().memory().build().await?;
    /// let users = cache.loader("user", Options::new(), |id: u64| async move {
    ///     Ok::<_, Infallible>(format!("user {id}"))
    /// });
    /// // Code that only has the loader reads without knowing where users come from.
    /// assert_eq!(users.get(7).await, Ok("user 7".to_string()));
    /// assert_eq!(cache.get::<String>("user:7").await?.as_deref(), Some("user 7"));
    /// # Ok::<(), cache_runtime::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn loader<K, V, E, F, Fut>(
        &self,
        family: &str,
        options: Options,
        load: F,
    ) -> Loader<K, V, E>
    where
        K: fmt::Display + Send + 'static,
        V: Cacheable,
        F: Fn(K) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        Loader {
            cache: self.clone(),
            family: family.to_string(),
            options,
            load: Arc::new(move |k| Box::pin(load(k))),
        }
    }
}

type LoadFn<K, V, E> =
    Arc<dyn Fn(K) -> Pin<Box<dyn Future<Output = Result<V, E>> + Send>> + Send + Sync>;

/// Read-through access to one key family (`"{family}:{key}"`): `get` serves
/// from the cache or runs the loading function the loader was built with, with
/// all of [`Cache::get_or_load`]'s guarantees. Cheap to clone and share.
pub struct Loader<K, V, E> {
    cache: Cache,
    family: String,
    options: Options,
    load: LoadFn<K, V, E>,
}

impl<K, V, E> Clone for Loader<K, V, E> {
    fn clone(&self) -> Self {
        Loader {
            cache: self.cache.clone(),
            family: self.family.clone(),
            options: self.options.clone(),
            load: self.load.clone(),
        }
    }
}

impl<K, V, E> fmt::Debug for Loader<K, V, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loader")
            .field("family", &self.family)
            .finish_non_exhaustive()
    }
}

impl<K, V, E> Loader<K, V, E>
where
    K: fmt::Display + Send + 'static,
    V: Cacheable,
    E: Send + 'static,
{
    /// The cache key of `k`: the family, `:`, and `k` escaped as a placeholder.
    pub fn key(&self, k: &K) -> String {
        let mut w = KeyWriter::new();
        w.lit(&self.family).lit(":").display(k);
        w.finish()
    }

    /// The value of `k`, from the cache or loaded. A load can outlive this
    /// caller ([`Cache::get_or_spawn`]): it finishes even if this caller is
    /// dropped, and refreshes (`stale`, `early_refresh`) run in the background.
    pub async fn get(&self, k: K) -> Result<V, E> {
        let key = self.key(&k);
        let load = self.load.clone();
        self.cache
            .get_or_spawn(key, &self.options, move || async move { load(k).await })
            .await
    }

    /// Removes the cached value of `k`.
    pub async fn invalidate(&self, k: &K) -> crate::Result<u64> {
        self.cache.invalidate_keys([self.key(k)]).await
    }
}
