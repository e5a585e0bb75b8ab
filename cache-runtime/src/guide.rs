//! # Guide: which pattern, and every argument by example
//!
//! ## Choosing a strategy
//!
//! | you have | use | what it buys | what it costs |
//! |---|---|---|---|
//! | reads that dominate writes; writes that know which keys they change | **cache-aside** (`#[cached]` on the read, `#[invalidates]` on the write) | the database only sees misses | a miss after every write |
//! | writes that return the new state (an `UPDATE … RETURNING`) | **write-through** (`strategy = "through"` on the write) | the next read is a hit with the new value | a cache write per database write |
//! | bursts of writes to the same rows, and a database that can lag | **write-behind** (`strategy = "behind"`) | the caller returns once the write is queued in Redis; repeated writes to a key coalesce | the database is behind the cache by the flush interval |
//! | code that must read a family of values without knowing how to load them | **read-through** ([`Cache::loader`](crate::Cache::loader)) | the cache owns the loading function | one more indirection |
//!
//! Add **`stale`** when serving a slightly old value beats waiting for a slow
//! source (and to ride out its failures), and **`early_refresh`** for hot keys
//! whose recomputation is expensive: one caller refreshes shortly before
//! expiry, so expiry never causes a wait.
//!
//! ## Where a load runs
//!
//! A function whose arguments are all owned (no `self`, no references, no
//! generics, no `Self` in its body) and whose future is `Send` has loads that
//! can outlive their caller, like
//! [`Cache::get_or_spawn`](crate::Cache::get_or_spawn). A load runs in its
//! caller (no task is spawned for it), and:
//!
//! * a refresh (`stale`, `early_refresh`) runs in the background, in a task
//!   of its own, and the caller that starts it is served the current value
//!   like everyone else;
//! * a caller dropped mid-load (a client that hung up) does not abort the
//!   load: the rest of it runs in a task of its own, it fills, and the
//!   callers waiting on it get its value.
//!
//! Any other function (a `&self` method, borrowed arguments, a body that is
//! not `Send`) loads in its caller, like
//! [`Cache::get_or_load`](crate::Cache::get_or_load): the caller that wins
//! a refresh waits for it, and a dropped caller hands its lease to a waiter
//! at once. The choice is made at compile time; both are race-free.
//!
//! Every example below runs on the in-process store; point the builder at
//! Redis with `.url(..)`, or at a Redis Cluster with `.cluster(..)`, for the
//! same behaviour across processes.
//!
//! ## `#[cached]` arguments
//!
//! `key`, `ttl`, `jitter`, `tags`:
//!
//! ```
//! use cache_runtime::{cached, Cache};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Serialize, Deserialize)]
//! struct Filter { status: String, page: u32 }
//!
//! // `{arg}` uses Display (escaped), `{arg.field}` a field, `{arg:hash}` the
//! // hash of the serialized value: good for structs and long strings.
//! #[cached(key = "orders:{user}:{filter:hash}", ttl = "5m", jitter = 0.2, tags = ["orders:{user}"])]
//! async fn orders(user: u64, filter: Filter) -> Vec<u64> {
//!     let _ = filter;
//!     vec![user * 10]
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let cache = Cache::builder().memory().build().await.unwrap().install().unwrap();
//! let f = Filter { status: "open".into(), page: 1 };
//! assert_eq!(orders(7, f.clone()).await, vec![70]);
//! assert_eq!(orders(7, f.clone()).await, vec![70]);
//! assert_eq!(cache.stats().hits, 1);
//! cache.invalidate_tags(["orders:7"]).await.unwrap();
//! orders(7, f).await;
//! assert_eq!(cache.stats().misses, 2);
//! # });
//! ```
//!
//! No `key`: the function's path and the hash of all its arguments. `ttl`
//! takes seconds or a duration string; `0` is a compile error.
//!
//! ### Keys
//!
//! A key is the template's text with each placeholder's value escaped: every
//! byte but ASCII letters and digits becomes `%XX` (`"Ada Lovelace"` is
//! `Ada%20Lovelace`, `-1` is `%2D1`). So write any punctuation you like
//! between placeholders (`"{org}:{team}"`, `"{org}-{team}"`, `"{org}/{team}"`):
//! no value can contain it, and no two calls share a key. Two placeholders
//! with nothing but letters, digits or `%` between them are a compile error,
//! since `(1, 23)` and `(12, 3)` would then render alike. Hashes (`{x:hash}`,
//! the default key, keys over 512 bytes) are BLAKE3, 192 bits. A key over 512
//! bytes keeps its first 448 bytes readable, so patterns still find it. The
//! exact guarantees, and their limits, are in the README ("Keys, patterns,
//! tags and types").
//!
//! Entries also record the shape of their value type, so that a function
//! reads only entries of its own type: `version = N` is still the way to
//! retire entries of an older shape at a deploy, and any process's
//! `invalidate_keys` removes every version of a key.
//!
//! `stale`, `early_refresh`, `lock`, `cache_none`, `codec`, `version`,
//! `encrypt`, `cache`:
//!
//! ```
//! use cache_runtime::{cached, Cache};
//!
//! struct Profiles { cache: Cache }
//!
//! impl Profiles {
//!     // Past its 60 s ttl, a value is served for 10 more minutes while one
//!     // caller refreshes it, and when the source fails.
//!     #[cached(key = "profile:{id}", ttl = 60, stale = "10m", early_refresh = true, cache = self.cache)]
//!     async fn profile(&self, id: u64) -> Result<String, std::io::Error> {
//!         Ok(format!("profile {id}"))
//!     }
//!
//!     // `None` is cached too, for 30 s (negative caching); JSON, schema v2.
//!     #[cached(key = "email:{id}", cache_none = "30s", codec = "json", version = 2, cache = self.cache)]
//!     async fn email(&self, id: u64) -> Option<String> {
//!         (id != 0).then(|| format!("user{id}@example.com"))
//!     }
//!
//!     // No waiting for another caller's load; encrypted at rest.
//!     #[cached(key = "token:{id}", lock = false, encrypt = true, cache = self.cache)]
//!     async fn token(&self, id: u64) -> String {
//!         format!("secret-{id}")
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let cache = Cache::builder().memory().encryption_key(1, [9; 32]).build().await.unwrap();
//! let p = Profiles { cache };
//! assert_eq!(p.profile(1).await.unwrap(), "profile 1");
//! assert_eq!(p.email(0).await, None);
//! assert_eq!(p.email(0).await, None);
//! assert_eq!(p.token(3).await, "secret-3");
//! assert_eq!(p.cache.stats().hits, 1, "the cached None");
//! # });
//! ```
//!
//! `strategy = "through"`: the value the write returns is stored, and loads
//! in flight for the key can no longer overwrite it:
//!
//! ```
//! use cache_runtime::{cached, Cache};
//!
//! #[cached(key = "user:{id}", ttl = 600)]
//! async fn name(id: u64) -> Result<String, String> {
//!     Err(format!("user {id} is not in the source yet"))
//! }
//!
//! #[cached(key = "user:{id}", ttl = 600, strategy = "through")]
//! async fn rename(id: u64, new: String) -> Result<String, String> {
//!     let _ = id; // UPDATE users SET name = $2 WHERE id = $1 RETURNING name
//!     Ok(new)
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! Cache::builder().memory().build().await.unwrap().install().unwrap();
//! rename(1, "Ada".into()).await.unwrap();
//! assert_eq!(name(1).await.unwrap(), "Ada");
//! # });
//! ```
//!
//! `strategy = "behind"` with `value`, `batch`, `flush_interval` and
//! `flush_batch`. On Redis the call is queued in a stream and `Ok(())` means
//! it is durable there; a flusher runs the body later (here a bulk upsert of
//! the batch). On the in-process store nothing can be queued durably, so the
//! body runs at once:
//!
//! ```
//! use cache_runtime::{cached, Cache};
//!
//! async fn upsert_all(balances: Vec<i64>) -> Result<(), String> {
//!     let _ = balances; // one INSERT … ON CONFLICT for the whole batch
//!     Ok(())
//! }
//!
//! #[cached(key = "balance:{id}", strategy = "behind", value = balance,
//!          batch = 500, flush_interval = "100ms", flush_batch = upsert_all)]
//! async fn save_balance(id: u64, balance: i64) -> Result<(), String> {
//!     let _ = (id, balance);
//!     Ok(())
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! Cache::builder().memory().build().await.unwrap().install().unwrap();
//! save_balance(1, 100).await.unwrap();
//! # });
//! ```
//!
//! `crate = "path"`, when the runtime is renamed:
//!
//! ```
//! extern crate cache_runtime as caching;
//!
//! #[caching::cached(key = "k", crate = "caching")]
//! async fn answer() -> u32 { 42 }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! assert_eq!(answer().await, 42);
//! # });
//! ```
//!
//! ## `#[invalidates]` arguments
//!
//! ```
//! use cache_runtime::{cached, invalidates, Cache};
//!
//! #[cached(key = "search:{user}:{q}", ttl = 60, tags = ["user:{user}"])]
//! async fn search(user: u64, q: String) -> Vec<String> { vec![q] }
//!
//! // After a successful body (`Ok`, or any non-`Result` return): delete the
//! // keys, bump the tags, delete what the patterns match. A `*` written in the
//! // template is a wildcard; one inside a value is a literal `*`.
//! #[invalidates(keys = ["search:{user}:recent"], tags = ["user:{user}"], patterns = ["search:{user}:*"])]
//! async fn forget(user: u64) -> Result<(), String> { let _ = user; Ok(()) }
//!
//! // Before the body too, for writes that readers must not race.
//! #[invalidates(tags = ["user:{user}"], when = "both")]
//! async fn migrate(user: u64) { let _ = user; }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let cache = Cache::builder().memory().build().await.unwrap().install().unwrap();
//! search(1, "rust".into()).await;
//! forget(1).await.unwrap();
//! search(1, "rust".into()).await;
//! migrate(1).await;
//! assert_eq!(cache.stats().hits, 0);
//! # });
//! ```
//!
//! ## What survives what
//!
//! * **The application crashes**: acknowledged write-behind calls are in
//!   Redis and run in the next process that builds a `Cache` with the same
//!   prefix. Invalidations that were still waiting for a dead Redis are lost
//!   with the process; the entries they targeted expire with their ttl (keep
//!   ttls short where that matters).
//! * **Redis crashes**: the cache loses what Redis loses. With `appendonly
//!   yes` and `appendfsync always`, nothing acknowledged; with `everysec`, up
//!   to about a second of acknowledged writes; without persistence, every
//!   queued write-behind call not yet flushed. Reads never fail meanwhile:
//!   they run their loaders.
