//! Attribute macros of [cache-runtime](https://docs.rs/cache-runtime):
//! `#[cached]` and `#[invalidates]`.
//!
//! Depend on `cache-runtime`, which re-exports both; this crate is its
//! implementation detail. The generated code calls the runtime through
//! `::cache_runtime::__private` (or the path given with `crate = "..."`).

mod args;
mod checks;
mod errors;
mod expand;
mod template;
mod validate;
mod value;

use proc_macro::TokenStream;

/// Caches the result of an `async fn` (a free function or a `&self` method).
///
/// ```ignore
/// #[cached(key = "user:{id}", ttl = "30m", tags = ["users", "user:{id}"])]
/// async fn get_user(id: u64) -> Result<User, DbError> { /* ... */ }
/// ```
///
/// Arguments, all optional:
///
/// * `key = "user:{id}"`: the key template. `{arg}` writes an argument
///   through `Display`, escaped; `{arg.field}` and `{self.field}` reach into
///   values; `{arg:hash}` writes the hash of the serialized value. `{{` and
///   `}}` are literal braces. Default: the function's path and the hash of
///   all its arguments.
/// * `ttl = 1800` (seconds) or `ttl = "30m"`: time to live, never zero.
/// * `jitter = 0.1`: fraction of the ttl added or removed at random.
/// * `tags = ["users", "user:{id}"]`: tag templates.
/// * `strategy = "aside" | "through" | "behind"`: cache-aside (default);
///   write-through (the returned value is stored); write-behind (the value is
///   stored and the call queued durably; the body runs later, in batches).
/// * `value = arg`, `batch = 100`, `flush_interval = "5s"`,
///   `flush_batch = path`: write-behind settings.
/// * `encrypt = true`: encrypt the value at rest.
/// * `stale = "10m"`: serve the old value past the ttl while one refresh runs.
/// * `early_refresh = true` or `= 1.5`: probabilistic early recomputation.
/// * `lock = false`: turn off stampede protection.
/// * `cache_none = "60s"`: cache `None` / `Ok(None)` for this long.
/// * `codec = "postcard" | "json" | "msgpack" | "bincode"`.
/// * `version = 2`: schema version folded into the key.
/// * `cache = expr`: a `Cache` (or anything that borrows as one) to use
///   instead of the installed global cache, such as `self.cache`.
/// * `crate = "path"`: the path of the runtime when it is renamed.
///
/// The function returns `Result<T, E>`, `Result<Option<T>, E>`, `Option<T>`
/// or `T`, where `T: Serialize + DeserializeOwned + Send + 'static`. `Err` is
/// never cached; `None` only with `cache_none`. Every mistake is a compile
/// error pointing at the offending token.
#[proc_macro_attribute]
pub fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::cached(args.into(), item.into()).into()
}

/// Invalidates keys, tags or patterns when an `async fn` runs.
///
/// ```ignore
/// #[invalidates(keys = ["user:{id}"], tags = ["users"])]
/// async fn rename_user(id: u64, name: &str) -> Result<(), DbError> { /* ... */ }
/// ```
///
/// Arguments (at least one of `keys`, `tags` and `patterns`):
///
/// * `keys = [...]`: key templates to delete, written as in `#[cached]`.
/// * `tags = [...]`: tag templates to invalidate.
/// * `patterns = [...]`: glob patterns such as `"search:{user}:*"`; the
///   template's own `*`, `?` and `[...]` match, while placeholder values are
///   escaped and match only themselves.
/// * `when = "after" | "before" | "both"`: relative to the body (default
///   `"after"`). "After" runs only when the body succeeded: `Ok`, or any
///   return value that is not a `Result`.
/// * `cache = expr`, `crate = "path"`: as for `#[cached]`.
///
/// Everything is rendered from the arguments before the body runs, so the
/// body may consume them.
#[proc_macro_attribute]
pub fn invalidates(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::invalidates(args.into(), item.into()).into()
}
