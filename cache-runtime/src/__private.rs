//! Support for the code that `#[cached]` and `#[invalidates]` generate.
//!
//! Not public API: everything here may change in any release. The macros
//! refer to these items by absolute path (`::cache_runtime::__private::...`)
//! so that user code that shadows `Option`, `Result` or anything else cannot
//! change what the expansion means.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;

use crate::lead::{Detached, Inline};

pub mod requirements;

pub use crate::behind::{FLUSH_HANDLERS, FlushFn, FlushHandler, FlushResult, decode_args};
pub use crate::codec::CodecKind;
pub use crate::key::KeyWriter;
pub use crate::{Cache, Options};
pub use core;
pub use futures_util::future::join_all;
pub use linkme;
pub use serde;
pub use std;

/// A placeholder value, for choosing how it is written into a key: integers
/// by [`KeyInteger`], everything else by [`KeyWriter::display`] (the
/// expansion calls `display` when `write_integer` returns `false`, so a type
/// that is not `Display` still gets `display`'s error).
pub struct KeyPart<'a, T: ?Sized>(pub &'a T);

/// Integers: written without `fmt` (found first by autoref specialization).
pub trait KeyInteger {
    /// Writes the value; `true`.
    fn write_integer(&self, w: &mut KeyWriter) -> bool;
}

macro_rules! key_integers {
    ($($t:ty)*) => {$(
        impl KeyInteger for KeyPart<'_, $t> {
            #[inline]
            fn write_integer(&self, w: &mut KeyWriter) -> bool {
                w.integer(*self.0);
                true
            }
        }
        impl KeyInteger for KeyPart<'_, &$t> {
            #[inline]
            fn write_integer(&self, w: &mut KeyWriter) -> bool {
                w.integer(**self.0);
                true
            }
        }
    )*};
}
key_integers!(u8 u16 u32 u64 u128 usize i8 i16 i32 i64 i128 isize);

/// Everything else: nothing written; `false`.
pub trait KeyNotInteger {
    /// Writes nothing; `false`.
    fn write_integer(&self, w: &mut KeyWriter) -> bool;
}

impl<T: ?Sized> KeyNotInteger for &KeyPart<'_, T> {
    #[inline]
    fn write_integer(&self, _w: &mut KeyWriter) -> bool {
        false
    }
}

/// The arguments a default key hashes, for choosing by autoref
/// specialisation whether to hash them: `(&ArgumentsHash(&args)).write_hash(w)`
/// hashes them ([`HashArguments`]) when they are `Serialize`, and writes
/// nothing ([`SkipArguments`]) otherwise. The expansion checks each argument
/// where its type is written, so the second is only ever chosen in a build
/// that fails with that error; it spares the expansion a second one.
pub struct ArgumentsHash<'a, T: ?Sized>(pub &'a T);

/// Serializable arguments: hashed.
pub trait HashArguments {
    /// Writes the arguments' hash.
    fn write_hash(&self, w: &mut KeyWriter);
}

impl<T: serde::Serialize + ?Sized> HashArguments for ArgumentsHash<'_, T> {
    #[inline]
    fn write_hash(&self, w: &mut KeyWriter) {
        w.hash(self.0);
    }
}

/// Anything else: nothing written.
pub trait SkipArguments {
    /// Writes nothing.
    fn write_hash(&self, w: &mut KeyWriter);
}

impl<T: ?Sized> SkipArguments for &ArgumentsHash<'_, T> {
    #[inline]
    fn write_hash(&self, _w: &mut KeyWriter) {}
}

/// The cache the macros use when no `cache = expr` is given: the installed
/// global one, or, when none is installed, a pass-through cache that runs
/// every body and warns once.
pub fn global() -> &'static Cache {
    Cache::global()
}

// Cargo features the expansion depends on. Each has a gate: a macro that
// takes two groups, `{ when on } { when off }`, and expands to the first when
// the runtime is built with the feature and to the second otherwise. The
// expansion passes a `compile_error!` naming the feature as the second group,
// spanned at the argument that needs it, so a missing feature is one error
// there. (A gate is `#[macro_export]`ed, as a macro must be to be used from
// another crate, and re-exported here under a short name.) To gate another
// feature, copy the pair below and add its re-export.

/// `{ on } { off }`: `on`, as the runtime has the `bincode` feature.
#[cfg(feature = "bincode")]
#[doc(hidden)]
#[macro_export]
macro_rules! __cache_runtime_if_bincode {
    ({ $($on:tt)* } { $($off:tt)* }) => { $($on)* };
}

/// `{ on } { off }`: `off`, as the runtime lacks the `bincode` feature.
#[cfg(not(feature = "bincode"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __cache_runtime_if_bincode {
    ({ $($on:tt)* } { $($off:tt)* }) => { $($off)* };
}

pub use crate::__cache_runtime_if_bincode as if_bincode;

/// Selects how a return type is cached, by autoref specialisation:
/// `(&&&Wrap::<R>::new()).kind()` picks, in this order,
/// `Result<Option<T>, E>`, `Result<T, E>`, `Option<T>`, then any `T`.
pub struct Wrap<R>(PhantomData<fn() -> R>);

impl<R> Wrap<R> {
    /// A selector for return type `R`.
    pub const fn new() -> Self {
        Wrap(PhantomData)
    }
}

impl<R> Default for Wrap<R> {
    fn default() -> Self {
        Self::new()
    }
}

/// `Result<Option<T>, E>`: `Err` is never cached, `Ok(None)` only with `cache_none`.
pub struct ResultOptionKind<T, E>(PhantomData<fn() -> (T, E)>);
/// `Result<T, E>`: `Err` is never cached.
pub struct ResultKind<T, E>(PhantomData<fn() -> (T, E)>);
/// `Option<T>`: `None` is cached only with `cache_none`.
pub struct OptionKind<T>(PhantomData<fn() -> T>);
/// Any other serializable `T`: always cached.
pub struct PlainKind<T>(PhantomData<fn() -> T>);

/// Highest priority: `Result<Option<T>, E>`.
pub trait SelectResultOption<T, E> {
    /// The selected kind.
    fn kind(&self) -> ResultOptionKind<T, E> {
        ResultOptionKind(PhantomData)
    }
}
impl<T, E> SelectResultOption<T, E> for &&Wrap<Result<Option<T>, E>> {}

/// `Result<T, E>`.
pub trait SelectResult<T, E> {
    /// The selected kind.
    fn kind(&self) -> ResultKind<T, E> {
        ResultKind(PhantomData)
    }
}
impl<T, E> SelectResult<T, E> for &Wrap<Result<T, E>> {}

/// `Option<T>`.
pub trait SelectOption<T> {
    /// The selected kind.
    fn kind(&self) -> OptionKind<T> {
        OptionKind(PhantomData)
    }
}
impl<T> SelectOption<T> for &Wrap<Option<T>> {}

/// Lowest priority: any `T`.
pub trait SelectPlain<T> {
    /// The selected kind.
    fn kind(&self) -> PlainKind<T> {
        PlainKind(PhantomData)
    }
}
impl<T> SelectPlain<T> for Wrap<T> {}

/// What the expansion asks of a kind of call: the type it caches, for the
/// checks that report a value type that is not cacheable.
pub trait Kind: Sized {
    /// `T` of `Result<Option<T>, E>`, `Result<T, E>`, `Option<T>` or `T`.
    type Value;
    /// The function's return type.
    type Out;
    /// The kind.
    const KIND: Self;

    /// A marker of the value type, for a check that names it.
    fn value_type(&self) -> PhantomData<fn() -> Self::Value> {
        PhantomData
    }
}

impl<T, E> Kind for ResultOptionKind<T, E> {
    type Value = T;
    type Out = Result<Option<T>, E>;
    const KIND: Self = ResultOptionKind(PhantomData);
}
impl<T, E> Kind for ResultKind<T, E> {
    type Value = T;
    type Out = Result<T, E>;
    const KIND: Self = ResultKind(PhantomData);
}
impl<T> Kind for OptionKind<T> {
    type Value = T;
    type Out = Option<T>;
    const KIND: Self = OptionKind(PhantomData);
}
impl<T> Kind for PlainKind<T> {
    type Value = T;
    type Out = T;
    const KIND: Self = PlainKind(PhantomData);
}

/// Lets a call through to the cache once its value type is cacheable, by
/// autoref specialisation: `(&&Gate::of(&kind)).open()` is the kind itself
/// when its value type is [`Cacheable`], and [`Refused`] otherwise.
///
/// The expansion checks the value type itself, where the user wrote it, so
/// [`Refused`] is only ever chosen in a build that fails with that one error;
/// it spares the rest of the expansion the same complaint at every use.
pub struct Gate<K>(PhantomData<fn() -> K>);

impl<K> Gate<K> {
    /// A gate for the kind `kind`.
    pub fn of(_kind: &K) -> Self {
        Gate(PhantomData)
    }
}

/// Selected when the value type is cacheable.
pub trait GateOpen<K> {
    /// The kind.
    fn open(self) -> K;
}

impl<K: Kind> GateOpen<K> for &&Gate<K>
where
    K::Value: Cacheable,
{
    fn open(self) -> K {
        K::KIND
    }
}

/// Selected otherwise.
pub trait GateShut<K: Kind> {
    /// A kind that caches nothing.
    fn open(self) -> Refused<K::Out>;
}

impl<K: Kind> GateShut<K> for &Gate<K> {
    fn open(self) -> Refused<K::Out> {
        Refused(PhantomData)
    }
}

/// The kind of a call whose value type is not cacheable: it has every method
/// of a kind, without bounds, and never touches the cache. Only a build that
/// fails chooses it (see [`Gate`]).
pub struct Refused<R>(PhantomData<fn() -> R>);

impl<R> Refused<R> {
    /// Runs the body.
    pub async fn run<F>(self, _cache: &Cache, _key: String, _opts: Options, body: F) -> R
    where
        F: Future<Output = R>,
    {
        body.await
    }

    /// Stores nothing.
    pub async fn store(&self, _cache: &Cache, _key: &str, _opts: &Options, _out: &R) {}
}

impl<R, F: Future<Output = R>> Run<F> for Refused<R> {
    type Out = R;

    fn run(self, _cache: &Cache, _key: String, _opts: Options, body: F) -> impl Future<Output = R> {
        body
    }
}

impl<R, F: Future<Output = R>> Spawn<F> for Refused<R> {
    fn spawn(
        self,
        _cache: &Cache,
        _key: String,
        _opts: Options,
        body: F,
    ) -> impl Future<Output = R> {
        body
    }
}

/// Bounds every cached value must meet.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be cached: it must be `Serialize + DeserializeOwned + Send + 'static`",
    label = "the cached value type"
)]
pub trait Cacheable: serde::Serialize + serde::de::DeserializeOwned + Send + 'static {}
impl<T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static> Cacheable for T {}

impl<T: Cacheable, E> ResultOptionKind<T, E> {
    /// Runs a cached call; the body runs in its caller.
    pub async fn run<F>(
        self,
        cache: &Cache,
        key: String,
        opts: Options,
        body: F,
    ) -> Result<Option<T>, E>
    where
        F: Future<Output = Result<Option<T>, E>>,
    {
        cache
            .load_inner(&key, &opts, Option::is_none, Inline(body))
            .await
    }

    /// Runs a cached call whose body owns its arguments: a load can outlive
    /// its caller (see [`Cache::get_or_spawn`]).
    pub async fn spawn<F>(
        self,
        cache: &Cache,
        key: String,
        opts: Options,
        body: F,
    ) -> Result<Option<T>, E>
    where
        F: Future<Output = Result<Option<T>, E>> + Send + 'static,
        Result<Option<T>, E>: Send + 'static,
    {
        cache
            .load_inner(&key, &opts, Option::is_none, Detached(body))
            .await
    }

    /// Whether the body succeeded (for `#[invalidates]`).
    pub fn succeeded(&self, out: &Result<Option<T>, E>) -> bool {
        out.is_ok()
    }
}

impl<T: Cacheable, E> ResultKind<T, E> {
    /// Runs a cached call; the body runs in its caller.
    pub async fn run<F>(self, cache: &Cache, key: String, opts: Options, body: F) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        cache
            .load_inner(&key, &opts, never_none, Inline(body))
            .await
    }

    /// Runs a cached call whose body owns its arguments: a load can outlive
    /// its caller (see [`Cache::get_or_spawn`]).
    pub async fn spawn<F>(self, cache: &Cache, key: String, opts: Options, body: F) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        Result<T, E>: Send + 'static,
    {
        cache
            .load_inner(&key, &opts, never_none, Detached(body))
            .await
    }

    /// Whether the body succeeded (for `#[invalidates]`).
    pub fn succeeded(&self, out: &Result<T, E>) -> bool {
        out.is_ok()
    }
}

/// Picks where a cached function's body runs, by autoref specialisation on
/// its future: `(&&Probe::of(&fut)).launch(kind, ..)` runs a load in a task
/// of its own ([`Cache::get_or_spawn`]) when the future and its output are
/// `Send + 'static`, and in the caller otherwise.
pub struct Probe<F>(PhantomData<fn() -> F>);

impl<F> Probe<F> {
    /// A probe for the type of `body`.
    pub fn of(_body: &F) -> Self {
        Probe(PhantomData)
    }
}

/// Selected when the body can outlive its caller.
pub trait InTask<F> {
    /// Runs the cached call.
    fn launch<K: Spawn<F>>(
        self,
        kind: K,
        cache: &Cache,
        key: String,
        opts: Options,
        body: F,
    ) -> impl Future<Output = K::Out>;
}

impl<F> InTask<F> for &&Probe<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn launch<K: Spawn<F>>(
        self,
        kind: K,
        cache: &Cache,
        key: String,
        opts: Options,
        body: F,
    ) -> impl Future<Output = K::Out> {
        kind.spawn(cache, key, opts, body)
    }
}

/// Selected when the body must run in its caller.
pub trait InCaller<F> {
    /// Runs the cached call.
    fn launch<K: Run<F>>(
        self,
        kind: K,
        cache: &Cache,
        key: String,
        opts: Options,
        body: F,
    ) -> impl Future<Output = K::Out>;
}

impl<F> InCaller<F> for &Probe<F> {
    fn launch<K: Run<F>>(
        self,
        kind: K,
        cache: &Cache,
        key: String,
        opts: Options,
        body: F,
    ) -> impl Future<Output = K::Out> {
        kind.run(cache, key, opts, body)
    }
}

/// A cached call of one kind whose body runs in its caller.
pub trait Run<F> {
    /// What the call returns.
    type Out;

    /// Runs the call.
    fn run(
        self,
        cache: &Cache,
        key: String,
        opts: Options,
        body: F,
    ) -> impl Future<Output = Self::Out>;
}

/// A cached call of one kind whose loads can outlive their caller.
pub trait Spawn<F>: Run<F> {
    /// Runs the call.
    fn spawn(
        self,
        cache: &Cache,
        key: String,
        opts: Options,
        body: F,
    ) -> impl Future<Output = Self::Out>;
}

/// `Run` and `Spawn` for each kind, by its inherent `run` and `spawn`.
macro_rules! launch {
    ($kind:ty, $out:ty, [$($g:ident),*]) => {
        impl<$($g,)* F> Run<F> for $kind
        where
            T: Cacheable,
            F: Future<Output = $out>,
        {
            type Out = $out;

            fn run(
                self,
                cache: &Cache,
                key: String,
                opts: Options,
                body: F,
            ) -> impl Future<Output = $out> {
                <$kind>::run(self, cache, key, opts, body)
            }
        }

        impl<$($g,)* F> Spawn<F> for $kind
        where
            T: Cacheable,
            F: Future<Output = $out> + Send + 'static,
            $out: Send + 'static,
        {
            fn spawn(
                self,
                cache: &Cache,
                key: String,
                opts: Options,
                body: F,
            ) -> impl Future<Output = $out> {
                <$kind>::spawn(self, cache, key, opts, body)
            }
        }
    };
}

launch!(ResultOptionKind<T, E>, Result<Option<T>, E>, [T, E]);
launch!(ResultKind<T, E>, Result<T, E>, [T, E]);
launch!(OptionKind<T>, Option<T>, [T]);
launch!(PlainKind<T>, T, [T]);

pub use crate::store::near::Copies;

/// The type a kind of call caches (what the read path decodes).
pub trait ValueOf {
    /// That type.
    type Value;
}

impl<T, E> ValueOf for ResultOptionKind<T, E> {
    type Value = Option<T>;
}
impl<T, E> ValueOf for ResultKind<T, E> {
    type Value = T;
}
impl<T> ValueOf for OptionKind<T> {
    type Value = Option<T>;
}
impl<T> ValueOf for PlainKind<T> {
    type Value = T;
}

/// Asks, by autoref specialisation, whether a kind's value type can be
/// cloned: `(&&CopyProbe::of(&kind)).copies()` lets near-cache hits clone a
/// value decoded once instead of decoding it every time.
pub struct CopyProbe<K>(PhantomData<fn() -> K>);

impl<K> CopyProbe<K> {
    /// A probe for the kind `kind`.
    pub fn of(_kind: &K) -> Self {
        CopyProbe(PhantomData)
    }
}

/// Selected when the value type is `Clone + Send + Sync`.
pub trait CopiesCloned {
    /// How decoded copies are kept and taken.
    fn copies(self) -> Option<Copies>;
}

impl<K> CopiesCloned for &&CopyProbe<K>
where
    K: ValueOf,
    K::Value: Clone + Send + Sync + 'static,
{
    fn copies(self) -> Option<Copies> {
        Some(Copies::of::<K::Value>())
    }
}

/// Selected otherwise: every hit decodes.
pub trait CopiesNone {
    /// None.
    fn copies(self) -> Option<Copies>;
}

impl<K> CopiesNone for &CopyProbe<K> {
    fn copies(self) -> Option<Copies> {
        None
    }
}

/// Drops the impossible `Err` of an infallible load.
fn infallible<T>(out: Result<T, Infallible>) -> T {
    match out {
        Ok(v) => v,
    }
}

impl<T: Cacheable> OptionKind<T> {
    /// Runs a cached call; the body runs in its caller.
    pub async fn run<F>(self, cache: &Cache, key: String, opts: Options, body: F) -> Option<T>
    where
        F: Future<Output = Option<T>>,
    {
        let body = Inline(async move { Ok(body.await) });
        infallible(cache.load_inner(&key, &opts, Option::is_none, body).await)
    }

    /// Runs a cached call whose body owns its arguments: a load can outlive
    /// its caller (see [`Cache::get_or_spawn`]).
    pub async fn spawn<F>(self, cache: &Cache, key: String, opts: Options, body: F) -> Option<T>
    where
        F: Future<Output = Option<T>> + Send + 'static,
    {
        let body = Detached(async move { Ok(body.await) });
        infallible(cache.load_inner(&key, &opts, Option::is_none, body).await)
    }

    /// Whether the body succeeded (for `#[invalidates]`): always.
    pub fn succeeded(&self, _out: &Option<T>) -> bool {
        true
    }
}

impl<T: Cacheable> PlainKind<T> {
    /// Runs a cached call; the body runs in its caller.
    pub async fn run<F>(self, cache: &Cache, key: String, opts: Options, body: F) -> T
    where
        F: Future<Output = T>,
    {
        let body = Inline(async move { Ok(body.await) });
        infallible(cache.load_inner(&key, &opts, never_none, body).await)
    }

    /// Runs a cached call whose body owns its arguments: a load can outlive
    /// its caller (see [`Cache::get_or_spawn`]).
    pub async fn spawn<F>(self, cache: &Cache, key: String, opts: Options, body: F) -> T
    where
        F: Future<Output = T> + Send + 'static,
    {
        let body = Detached(async move { Ok(body.await) });
        infallible(cache.load_inner(&key, &opts, never_none, body).await)
    }

    /// Whether the body succeeded (for `#[invalidates]`): always.
    pub fn succeeded(&self, _out: &T) -> bool {
        true
    }
}

/// `succeeded` for `#[invalidates]` functions, whose return type need not be
/// serializable: `Err` is failure, anything else success.
pub trait SucceededResult<T, E> {
    /// Whether the body succeeded.
    fn succeeded(&self, out: &Result<T, E>) -> bool {
        out.is_ok()
    }
}
impl<T, E> SucceededResult<T, E> for &Wrap<Result<T, E>> {}

/// Any non-`Result` return counts as success.
pub trait SucceededAny<T> {
    /// Whether the body succeeded.
    fn succeeded(&self, _out: &T) -> bool {
        true
    }
}
impl<T> SucceededAny<T> for Wrap<T> {}

impl<T: Cacheable, E> ResultOptionKind<T, E> {
    /// Write-through of a returned `Ok(option)`.
    pub async fn store(
        &self,
        cache: &Cache,
        key: &str,
        opts: &Options,
        out: &Result<Option<T>, E>,
    ) {
        if let Ok(v) = out {
            cache.write_through(key, v, opts).await;
        }
    }
}

impl<T: Cacheable, E> ResultKind<T, E> {
    /// Write-through of a returned `Ok(value)`.
    pub async fn store(&self, cache: &Cache, key: &str, opts: &Options, out: &Result<T, E>) {
        if let Ok(v) = out {
            cache.write_through(key, v, opts).await;
        }
    }
}

impl<T: Cacheable> OptionKind<T> {
    /// Write-through of a returned option.
    pub async fn store(&self, cache: &Cache, key: &str, opts: &Options, out: &Option<T>) {
        cache.write_through(key, out, opts).await;
    }
}

impl<T: Cacheable> PlainKind<T> {
    /// Write-through of a returned value.
    pub async fn store(&self, cache: &Cache, key: &str, opts: &Options, out: &T) {
        cache.write_through(key, out, opts).await;
    }
}

/// Parses and decodes stored bytes exactly as a cache hit does (envelope
/// checks, the size limit, then the codec), for a plaintext entry. Lets tests
/// feed the read path bytes of their own making.
pub fn decode_stored<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    codec: CodecKind,
    max_value_size: usize,
) -> Result<T, String> {
    let reading = crate::envelope::Reading {
        codec,
        max_size: max_value_size,
        sealing: None,
        require_sealed: false,
        fingerprint: crate::fingerprint::of::<T>(),
    };
    crate::envelope::decode::<T>(bytes, reading)
        .map(|(v, _)| v)
        .map_err(|e| e.to_string())
}

/// The fingerprint of `T`'s serde shape, as entries of a `T` record it.
/// Lets tests write entries of their own making.
pub fn fingerprint<T: serde::de::DeserializeOwned>() -> u64 {
    crate::fingerprint::of::<T>()
}

fn never_none<T>(_: &T) -> bool {
    false
}

/// What one `#[invalidates]` call removes, rendered before the body runs.
#[derive(Debug, Default, Clone)]
pub struct Invalidation {
    /// Rendered keys.
    pub keys: Vec<String>,
    /// Rendered tags.
    pub tags: Vec<String>,
    /// Rendered patterns.
    pub patterns: Vec<String>,
}

impl Invalidation {
    /// Runs the invalidation. Never fails the caller: a failure is counted,
    /// logged and retried in the background until the store answers.
    pub async fn run(&self, cache: &Cache) {
        cache.invalidate_quiet(self).await
    }
}
