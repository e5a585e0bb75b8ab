//! What the user's types must be for the generated code to compile, one
//! trait per requirement, each named and worded for the error that reports
//! it unmet: the user's type, what it lacks, and what to do.
//!
//! The expansion checks a requirement by calling the trait on a marker of
//! the type (or on the value), with the call spanned at the tokens the user
//! wrote, so the error points there. The compiler reports the trait's own
//! `#[diagnostic::on_unimplemented]` message rather than a bound behind it,
//! because the impls are `#[diagnostic::do_not_recommend]`.
//!
//! The crate root re-exports this module, hidden, as `__requirements`: the
//! compiler names a trait by its bare name (`BorrowsCache`, not
//! `cache_runtime::__private::requirements::BorrowsCache`) only when it finds
//! it on a path from the crate root that does not pass through a
//! `#[doc(hidden)]` module, as `__private` is.

use std::fmt::Debug;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Cache;
use crate::behind::FlushResult;
use crate::key::KeyWriter;

/// The cached value's type is serializable.
#[diagnostic::on_unimplemented(
    message = "`{Self}` must implement `Serialize` and `Deserialize` to be cached",
    label = "the type of the cached value",
    note = "derive them with `#[derive(serde::Serialize, serde::Deserialize)]`; for a type \
            from another crate, enable that crate's `serde` feature or cache data of your own"
)]
pub trait SerializeAndDeserialize {
    /// Does nothing: calling it requires the trait.
    fn check(_: PhantomData<fn() -> Self>) {}
}

#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned> SerializeAndDeserialize for T {}

/// The cached value's type can cross threads.
#[diagnostic::on_unimplemented(
    message = "`{Self}` must be `Send` to be cached",
    label = "the type of the cached value",
    note = "a cached value can be loaded on one thread and handed to callers on others; \
            cache the plain data it is built from"
)]
pub trait SendAndStatic {
    /// Does nothing: calling it requires the trait.
    fn check(_: PhantomData<fn() -> Self>) {}
}

#[diagnostic::do_not_recommend]
impl<T: Send + 'static> SendAndStatic for T {}

/// `cache = expr` is a cache, or borrows as one.
#[diagnostic::on_unimplemented(
    message = "`cache = ...` must be a `Cache`, a `&Cache` or an `Arc<Cache>` (anything that \
               borrows as a `Cache`), not `{Self}`",
    label = "not a `Cache`",
    note = "give the cache itself (a field of type `Cache` or `Arc<Cache>`, say), or leave \
            `cache` out to use the installed global cache"
)]
pub trait BorrowsCache {
    /// The cache.
    fn cache(&self) -> &Cache;
}

#[diagnostic::do_not_recommend]
impl<C: std::borrow::Borrow<Cache> + ?Sized> BorrowsCache for C {
    #[inline]
    fn cache(&self) -> &Cache {
        self.borrow()
    }
}

/// A `{placeholder}` value has `Display`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be written into a key: it does not implement `Display`",
    label = "a placeholder written with `Display`",
    note = "implement `std::fmt::Display` for it, name a field that has it (`{{arg.field}}`), \
            or write its hash with `{{arg:hash}}` (which needs `Serialize`)"
)]
pub trait WriteIntoKey {
    /// Writes the value with [`KeyWriter::display`].
    fn write_into(&self, w: &mut KeyWriter);
}

#[diagnostic::do_not_recommend]
impl<T: std::fmt::Display + ?Sized> WriteIntoKey for T {
    #[inline]
    fn write_into(&self, w: &mut KeyWriter) {
        w.display(self);
    }
}

/// A `{placeholder:hash}` value is serializable.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be hashed into a key: it does not implement `Serialize`",
    label = "`:hash` writes the hash of the serialized value",
    note = "derive it with `#[derive(serde::Serialize)]`, or hash a field that has it \
            (`{{arg.field:hash}}`)"
)]
pub trait HashIntoKey {
    /// Writes the value's hash with [`KeyWriter::hash`].
    fn write_into(&self, w: &mut KeyWriter);
}

#[diagnostic::do_not_recommend]
impl<T: Serialize + ?Sized> HashIntoKey for T {
    #[inline]
    fn write_into(&self, w: &mut KeyWriter) {
        w.hash(self);
    }
}

/// An argument hashed into the default key is serializable.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be hashed into the default key: it does not implement \
               `Serialize`",
    label = "the default key hashes every argument",
    note = "derive it with `#[derive(serde::Serialize)]`, or give the key with \
            `key = \"...\"`, from the arguments that tell calls apart"
)]
pub trait HashIntoDefaultKey {
    /// Does nothing: calling it requires the trait.
    fn check(_: &Self) {}
}

#[diagnostic::do_not_recommend]
impl<T: Serialize + ?Sized> HashIntoDefaultKey for T {}

/// The return type of a `strategy = "behind"` function: `()` or `Ok(())`
/// once the call is queued, and, from a replayed call, whether the write
/// worked.
#[diagnostic::on_unimplemented(
    message = "a `strategy = \"behind\"` function returns `()` or `Result<(), E>` with \
               `E: Debug`, not `{Self}`",
    label = "the caller gets this back once the write is queued",
    note = "the value to cache is an argument (`value = ...`), stored when the call is \
            queued; the body runs later, to write it, and says only whether that worked"
)]
pub trait BehindReturn: Sized {
    /// What the caller gets once the call is queued.
    fn acknowledged() -> Self;
    /// What a replayed call's result says, with the error's text.
    fn flush_result(self) -> FlushResult;
}

#[diagnostic::do_not_recommend]
impl BehindReturn for () {
    fn acknowledged() -> Self {}

    fn flush_result(self) -> FlushResult {
        Ok(())
    }
}

#[diagnostic::do_not_recommend]
impl<E: Debug> BehindReturn for Result<(), E> {
    fn acknowledged() -> Self {
        Ok(())
    }

    fn flush_result(self) -> FlushResult {
        outcome(&self)
    }
}

/// The return type of a `flush_batch` function: whether the batch's write
/// worked.
#[diagnostic::on_unimplemented(
    message = "a `flush_batch` function returns `()` or `Result<(), E>` with `E: Debug`, \
               not `{Self}`",
    label = "its result is the outcome of every call in the batch",
    note = "return `Ok(())` when the whole batch is written; an `Err` is logged, and the \
            batch's calls are run again later"
)]
pub trait FlushBatchReturn {
    /// What the result says, with the error's text.
    fn flush_result(&self) -> FlushResult;
}

#[diagnostic::do_not_recommend]
impl FlushBatchReturn for () {
    fn flush_result(&self) -> FlushResult {
        Ok(())
    }
}

#[diagnostic::do_not_recommend]
impl<E: Debug> FlushBatchReturn for Result<(), E> {
    fn flush_result(&self) -> FlushResult {
        outcome(self)
    }
}

/// The outcome of a flushed call, with its error's text.
fn outcome<E: Debug>(result: &Result<(), E>) -> FlushResult {
    result.as_ref().map_err(|e| format!("{e:?}")).copied()
}
