//! Code generation, and the pipeline each macro runs: parse the function,
//! read the arguments, validate, expand.
//!
//! Every path in the output is absolute (`::cache_runtime::__private::...`,
//! or the `crate = "..."` path), and every local is prefixed `__cache_`, so
//! user code that shadows `Option`, `Result`, `String` or `Vec`, or names its
//! own variables freely, cannot change what the expansion means. On any
//! error the output is the errors followed by the function unchanged, so
//! that the rest of the crate (and an IDE) still sees it.

use std::time::Duration;

use proc_macro2::{Literal, Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned as _;
use syn::{AttrStyle, Attribute, ItemFn, Path, ReturnType, Type};

use crate::args::{CachedArgs, Codec, Common, InvalidatesArgs, Strategy, When};
use crate::checks;
use crate::errors::Errors;
use crate::template::Modifier;
use crate::validate::{self, BehindPlan, CachedPlan, InvalidatesPlan, Key, Piece, Resolved};

/// `#[cached(...)]`: the whole pipeline.
pub fn cached(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::new();
    let args = CachedArgs::parse(attr, &mut errors);
    let Some(func) = parse_fn(&item, "cached", &mut errors) else {
        return fallback(errors, item);
    };
    match validate::cached(&args, &func, &mut errors) {
        Some(plan) if errors.is_empty() => cached_fn(&plan),
        _ => fallback(errors, item),
    }
}

/// `#[invalidates(...)]`: the whole pipeline.
pub fn invalidates(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::new();
    let args = InvalidatesArgs::parse(attr, &mut errors);
    let Some(func) = parse_fn(&item, "invalidates", &mut errors) else {
        return fallback(errors, item);
    };
    match validate::invalidates(&args, &func, &mut errors) {
        Some(plan) if errors.is_empty() => invalidates_fn(&plan),
        _ => fallback(errors, item),
    }
}

fn parse_fn(item: &TokenStream, macro_name: &str, errors: &mut Errors) -> Option<ItemFn> {
    match syn::parse2::<ItemFn>(item.clone()) {
        Ok(func) => Some(func),
        Err(error) => {
            errors.at(
                error.span(),
                format!("`#[{macro_name}]` goes on an `async fn`: {error}"),
            );
            None
        }
    }
}

/// The errors, then the item exactly as written.
fn fallback(errors: Errors, item: TokenStream) -> TokenStream {
    let errors = errors.into_compile_errors();
    quote!(#errors #item)
}

/// `::cache_runtime::__private`, or `<crate = "...">::__private`.
fn private_path(krate: Option<&Path>) -> TokenStream {
    match krate {
        Some(path) => quote!(#path::__private),
        None => quote!(::cache_runtime::__private),
    }
}

/// The attributes outside the function, and those inside its body.
fn split_attrs(attrs: &[Attribute]) -> (Vec<&Attribute>, Vec<&Attribute>) {
    attrs
        .iter()
        .partition(|attr| matches!(attr.style, AttrStyle::Outer))
}

/// The function's return type (`()` when it has none).
fn return_type(func: &ItemFn) -> TokenStream {
    match &func.sig.output {
        ReturnType::Type(_, ty) => ty.to_token_stream(),
        ReturnType::Default => quote!(()),
    }
}

/// `let __cache_ref: &Cache = ...;`: the global cache or `cache = expr`.
/// The expression's value is bound first, so that a temporary (as in
/// `cache = Cache::global()` or `cache = Arc::clone(&c)`) lives through the
/// call.
fn cache_ref(p: &TokenStream, common: &Common) -> TokenStream {
    match &common.cache {
        Some(expr) => {
            let spot = checks::Spot::of(expr);
            let borrow = checks::cache_handle(p, &quote!(__cache_holder), spot);
            quote! {
                let __cache_holder = &(#expr);
                let __cache_ref: &#p::Cache = #borrow;
            }
        }
        None => quote!(let __cache_ref: &#p::Cache = #p::global();),
    }
}

/// The body as an `async move` block whose output type is `ret`: a `return`
/// edge typed `ret` comes first, so `?` and `return` in the body check
/// against the function's return type rather than against each other.
fn typed_body(func: &ItemFn, ret: &TokenStream, ret_span: Span) -> TokenStream {
    let block = &func.block;
    let return_edge = quote_spanned! {ret_span=>
        #[allow(
            unknown_lints,
            unreachable_code,
            clippy::diverging_sub_expression,
            clippy::empty_loop,
            clippy::let_unit_value,
            clippy::let_with_type_underscore,
            clippy::needless_return,
            clippy::unreachable
        )]
        if false {
            let __cache_fake_return: #ret = loop {};
            return __cache_fake_return;
        }
    };
    quote! {
        async move {
            #return_edge
            #block
        }
    }
}

/// `{ let mut __cache_w = KeyWriter::new(); __cache_w.lit(..); ..; __cache_w.finish() }`.
///
/// A `Display` value goes through `write_integer` first, which writes
/// integers without `fmt` and declines for every other type (autoref
/// specialization: `KeyInteger` is implemented for `KeyPart` of each
/// integer type, `KeyNotInteger` for `&KeyPart` of anything). Values are
/// written through the runtime's requirement traits, so a value without
/// `Display` (or `Serialize`, for `:hash`) is reported at its placeholder.
fn render(p: &TokenStream, template: &Resolved) -> TokenStream {
    let (v, w) = (quote!(__cache_v), quote!(__cache_w));
    let calls = template.pieces.iter().map(|piece| match piece {
        Piece::Text(text) => quote!(__cache_w.lit(#text);),
        Piece::Value(value) => {
            let root = &value.root;
            let fields = &value.fields;
            let bind = quote_spanned!(value.span=> let __cache_v = &#root #(.#fields)*;);
            match value.modifier {
                Modifier::Display => {
                    let write = checks::write_display(p, &v, &w, value.span);
                    quote_spanned! {value.span=>
                        #bind
                        if !(&#p::KeyPart(__cache_v)).write_integer(&mut __cache_w) {
                            #write;
                        }
                    }
                }
                Modifier::Hash => {
                    let write = checks::write_hash(p, &v, &w, value.span);
                    quote!(#bind #write;)
                }
            }
        }
    });
    quote! {
        {
            #[allow(unused_imports)]
            use #p::{KeyInteger as _, KeyNotInteger as _};
            let mut __cache_w = #p::KeyWriter::new();
            #(#calls)*
            __cache_w.finish()
        }
    }
}

/// `::core::concat!(::core::module_path!(), "::", "name")`, then `suffix`.
fn function_path(func: &ItemFn, suffix: Option<&str>) -> TokenStream {
    let name = func.sig.ident.to_string();
    let name = name.trim_start_matches("r#");
    let suffix = suffix.map(|s| quote!(, #s));
    quote!(::core::concat!(::core::module_path!(), "::", #name #suffix))
}

/// The default key: the function's path, and the hash of its arguments
/// (`args`, names and types). Each argument is checked to be `Serialize` at
/// its type; the hash of them all is written only when they all are
/// (`ArgumentsHash`), so that one that is not is reported once, there.
fn default_key(p: &TokenStream, func: &ItemFn, args: &[(syn::Ident, Type)]) -> TokenStream {
    if args.is_empty() {
        let path = function_path(func, None);
        return quote!(#p::std::string::String::from(#path));
    }
    let path = function_path(func, Some(":"));
    let checks = args
        .iter()
        .map(|(name, ty)| checks::hashable_argument(p, name, checks::Spot::of(ty)));
    let names = args.iter().map(|(name, _)| name);
    quote! {
        {
            #[allow(unused_imports)]
            use #p::{HashArguments as _, SkipArguments as _};
            #(#checks;)*
            let mut __cache_w = #p::KeyWriter::new();
            __cache_w.lit(#path);
            (&#p::ArgumentsHash(&(#(&#names,)*))).write_hash(&mut __cache_w);
            __cache_w.finish()
        }
    }
}

/// `Duration::from_millis(..)` (or `from_nanos` below a millisecond).
fn duration(p: &TokenStream, duration: Duration) -> TokenStream {
    let millis = duration.as_millis();
    if duration.subsec_nanos().is_multiple_of(1_000_000)
        && let Ok(millis) = u64::try_from(millis)
    {
        let millis = Literal::u64_unsuffixed(millis);
        return quote!(#p::core::time::Duration::from_millis(#millis));
    }
    let secs = Literal::u64_unsuffixed(duration.as_secs());
    let nanos = Literal::u32_unsuffixed(duration.subsec_nanos());
    quote!(#p::core::time::Duration::new(#secs, #nanos))
}

fn float(value: f64) -> Literal {
    Literal::f64_unsuffixed(if value.is_finite() { value } else { 0.0 })
}

/// The `Options` builder chain: only the options that were given.
fn options(p: &TokenStream, plan: &CachedPlan) -> TokenStream {
    let args = plan.args;
    let function = function_path(plan.item, None);
    let mut chain = quote!(#p::Options::new().function(#function));
    if let Some(ttl) = args.ttl {
        let ttl = duration(p, ttl);
        chain.extend(quote!(.ttl(#ttl)));
    }
    if let Some(jitter) = args.jitter {
        let jitter = float(jitter);
        chain.extend(quote!(.jitter(#jitter)));
    }
    if !plan.tags.is_empty() {
        let tags = plan.tags.iter().map(|tag| render(p, tag));
        chain.extend(quote!(.tags([#(#tags),*])));
    }
    if let Some(stale) = args.stale {
        let stale = duration(p, stale);
        chain.extend(quote!(.stale(#stale)));
    }
    if let Some(beta) = args.early_refresh {
        let beta = float(beta);
        chain.extend(quote!(.early_refresh(#beta)));
    }
    if let Some(lock) = args.lock {
        chain.extend(quote!(.lock(#lock)));
    }
    if let Some(ttl) = args.cache_none {
        let ttl = duration(p, ttl);
        chain.extend(quote!(.cache_none(#ttl)));
    }
    if let Some(codec) = &args.codec {
        let kind = match codec.value {
            Codec::Postcard => quote!(#p::CodecKind::Postcard),
            Codec::Json => quote!(#p::CodecKind::Json),
            Codec::MsgPack => quote!(#p::CodecKind::MsgPack),
            Codec::Bincode => checks::feature_gate(
                p,
                "if_bincode",
                "bincode",
                "`codec = \"bincode\"`",
                codec.lit.span(),
                quote!(#p::CodecKind::Bincode),
            ),
        };
        chain.extend(quote!(.codec(#kind)));
    }
    if let Some(version) = args.version {
        let version = Literal::u32_unsuffixed(version);
        chain.extend(quote!(.version(#version)));
    }
    if let Some(encrypt) = args.encrypt {
        chain.extend(quote!(.encrypt(#encrypt)));
    }
    chain
}

/// `__cache_kind`: the kind of call that the return type `ret` selects, let
/// through once its value type is checked to be cacheable. The check reports
/// at `value` (the value type as written); a value type that fails it gets a
/// kind that caches nothing, so that nothing else is reported.
fn kind(p: &TokenStream, ret: &TokenStream, value: checks::Spot) -> TokenStream {
    let check = checks::cacheable_value(p, &quote!(__cache_kind), value);
    quote! {
        let __cache_kind = (&&&#p::Wrap::<#ret>::new()).kind();
        #check
        let __cache_kind = (&&#p::Gate::of(&__cache_kind)).open();
    }
}

/// The signature the expansion is emitted under: the function's own, but
/// when the body moves into a function of its own (which keeps the `mut`
/// of its arguments), the outer one binds them without `mut`.
fn outer_signature(plan: &CachedPlan) -> syn::Signature {
    let mut sig = plan.item.sig.clone();
    if plan.owned.is_some() && plan.strategy == Strategy::Aside {
        for input in &mut sig.inputs {
            if let syn::FnArg::Typed(typed) = input
                && let syn::Pat::Ident(pat) = &mut *typed.pat
            {
                pat.mutability = None;
            }
        }
    }
    sig
}

/// The expansion of `#[cached]`.
fn cached_fn(plan: &CachedPlan) -> TokenStream {
    let func = plan.item;
    let p = private_path(plan.args.common.krate.as_ref());
    let (outer, inner) = split_attrs(&func.attrs);
    let vis = &func.vis;
    let sig = &outer_signature(plan);
    let ret = plan.ret.to_token_stream();
    let cache_ref = cache_ref(&p, &plan.args.common);
    let key = match &plan.key {
        Key::Template(template) => render(&p, template),
        Key::Default(params) => default_key(&p, func, params),
    };
    let options = options(&p, plan);
    let prelude = quote! {
        #cache_ref
        let __cache_key: #p::std::string::String = #key;
        let __cache_opts = #options;
    };
    if let Some(behind) = &plan.behind {
        return behind_fn(plan, behind, &p, &ret, prelude);
    }
    let call = cached_call(plan, &p, &ret);
    quote! {
        #(#outer)*
        #vis #sig {
            #(#inner)*
            #[allow(unused_imports)]
            use #p::{
                CopiesCloned as _, CopiesNone as _, GateOpen as _, GateShut as _, InCaller as _,
                InTask as _, SelectOption as _, SelectPlain as _, SelectResult as _,
                SelectResultOption as _,
            };
            #prelude
            #call
        }
    }
}

/// The cached call of a `#[cached]` function other than write-behind, after
/// its key and options (`ret` is its return type).
fn cached_call(plan: &CachedPlan, p: &TokenStream, ret: &TokenStream) -> TokenStream {
    let func = plan.item;
    let ret_span = plan.ret.span();
    let body = typed_body(func, ret, ret_span);
    let kind = kind(p, ret, checks::Spot::of(&plan.value));
    // `.run`, `.store` and `.launch` are spanned at the return type, so that
    // whatever the compiler has to say about the call points there.
    match plan.strategy {
        Strategy::Through => {
            let store = quote_spanned!(ret_span=> store);
            quote! {
                #kind
                let __cache_out: #ret = #body.await;
                __cache_kind
                    .#store(__cache_ref, &__cache_key, &__cache_opts, &__cache_out)
                    .await;
                __cache_out
            }
        }
        _ => match &plan.owned {
            // The body becomes a function of its own, so that whether its
            // future is `Send` can be asked (`Probe`): if it is, loads can
            // outlive their caller.
            Some(params) => {
                let launch = quote_spanned!(ret_span=> launch);
                let block = &func.block;
                let pats = params.iter().map(|(pat, _)| pat);
                let tys = params.iter().map(|(_, ty)| ty);
                let names = params.iter().map(|(pat, _)| &pat.ident);
                quote! {
                    async fn __cache_body(#(#pats: #tys),*) -> #ret #block
                    let __cache_fut = __cache_body(#(#names),*);
                    #kind
                    let __cache_opts = __cache_opts
                        .near_copies((&&#p::CopyProbe::of(&__cache_kind)).copies());
                    (&&#p::Probe::of(&__cache_fut))
                        .#launch(
                            __cache_kind,
                            __cache_ref,
                            __cache_key,
                            __cache_opts,
                            __cache_fut,
                        )
                        .await
                }
            }
            None => {
                let run = quote_spanned!(ret_span=> run);
                quote! {
                    #kind
                    let __cache_opts = __cache_opts
                        .near_copies((&&#p::CopyProbe::of(&__cache_kind)).copies());
                    __cache_kind
                        .#run(__cache_ref, __cache_key, __cache_opts, #body)
                        .await
                }
            }
        },
    }
}

/// The expansion of a write-behind function: a statically registered flush
/// handler that replays stored calls through the original body (or the
/// `flush_batch` function), and a caller side that stores the value and
/// queues the call in one step, or, with no store to queue in, writes at once.
///
/// The return type is checked where the caller gets its value and where a
/// replayed call's result is read, both reported at the return type as
/// written: one error there when it is not `()` or `Result<(), E>`.
fn behind_fn(
    plan: &CachedPlan,
    behind: &BehindPlan,
    p: &TokenStream,
    ret: &TokenStream,
    prelude: TokenStream,
) -> TokenStream {
    let func = plan.item;
    let (outer, inner) = split_attrs(&func.attrs);
    let (vis, sig, block) = (&func.vis, &func.sig, &func.block);
    let name = function_path(func, None);
    let names: Vec<&syn::Ident> = behind.params.iter().map(|(n, _)| *n).collect();
    let tys: Vec<&Type> = behind.params.iter().map(|(_, t)| *t).collect();
    let value = names[behind.value];
    let handler = flush_handler(plan, behind, p, ret);
    let acknowledged = checks::acknowledged(p, ret);
    quote! {
        #(#outer)*
        #vis #sig {
            #(#inner)*
            #handler
            async fn __cache_body(#(#names: #tys),*) -> #ret #block
            #prelude
            match __cache_ref
                .write_behind(#name, &__cache_key, &#value, &__cache_opts, &(#(&#names,)*))
                .await
            {
                #p::core::result::Result::Ok(()) => #acknowledged,
                #p::core::result::Result::Err(_) => {
                    // Nothing was queued (no Redis to queue in): write now, and
                    // drop whatever the cache held for the key.
                    let __cache_out = __cache_body(#(#names),*).await;
                    let __cache_inv = #p::Invalidation {
                        keys: #p::std::vec::Vec::from([__cache_key]),
                        ..#p::core::default::Default::default()
                    };
                    __cache_inv.run(__cache_ref).await;
                    __cache_out
                }
            }
        }
    }
}

/// A write-behind function's flush handler, registered statically: it
/// replays a batch of stored calls through the body (`__cache_body`) or the
/// `flush_batch` function.
fn flush_handler(
    plan: &CachedPlan,
    behind: &BehindPlan,
    p: &TokenStream,
    ret: &TokenStream,
) -> TokenStream {
    let name = function_path(plan.item, None);
    let names: Vec<&syn::Ident> = behind.params.iter().map(|(n, _)| *n).collect();
    let tys: Vec<&Type> = behind.params.iter().map(|(_, t)| *t).collect();
    let args = plan.args;
    let batch = Literal::u64_unsuffixed(args.behind.batch.unwrap_or(100));
    let interval = Literal::u64_unsuffixed(
        args.behind
            .flush_interval
            .map_or(5000, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    );
    let run = match &args.behind.flush_batch {
        // A batch holds at most one call per key (the flusher coalesces), so
        // its calls are independent and run concurrently.
        None => {
            let result = quote!(__cache_body(#(#names),*).await);
            let flush_result = checks::behind_flush_result(p, ret, &result);
            quote! {
                #p::join_all(__cache_batch.into_iter().map(|__cache_bytes| async move {
                    match #p::decode_args::<(#(#tys,)*)>(&__cache_bytes) {
                        #p::core::result::Result::Ok((#(#names,)*)) => #flush_result,
                        #p::core::result::Result::Err(__cache_e) => #p::core::result::Result::Err(__cache_e),
                    }
                }))
                .await
            }
        }
        Some(bulk) => flush_batch(p, behind, bulk),
    };
    quote! {
        #[#p::linkme::distributed_slice(#p::FLUSH_HANDLERS)]
        #[linkme(crate = #p::linkme)]
        static __CACHE_FLUSH_HANDLER: #p::FlushHandler = #p::FlushHandler {
            name: #name,
            run: __cache_flush,
            batch: #batch,
            flush_interval_ms: #interval,
        };
        fn __cache_flush(
            __cache_batch: #p::std::vec::Vec<#p::std::vec::Vec<u8>>,
        ) -> #p::core::pin::Pin<
            #p::std::boxed::Box<
                dyn #p::core::future::Future<Output = #p::std::vec::Vec<#p::FlushResult>>
                    + #p::core::marker::Send,
            >,
        > {
            #p::std::boxed::Box::pin(async move { #run })
        }
    }
}

/// The flush of a batch through `flush_batch = bulk`: the stored values of
/// the calls that decode, in one call of `bulk`, whose outcome is theirs.
fn flush_batch(p: &TokenStream, behind: &BehindPlan, bulk: &syn::ExprPath) -> TokenStream {
    let names: Vec<&syn::Ident> = behind.params.iter().map(|(n, _)| *n).collect();
    let tys: Vec<&Type> = behind.params.iter().map(|(_, t)| *t).collect();
    let value = names[behind.value];
    let flushed = quote!(&__cache_flushed);
    let outcome = checks::flush_batch_result(p, &flushed, checks::Spot::of(bulk));
    quote! {
        let mut __cache_values = #p::std::vec::Vec::with_capacity(__cache_batch.len());
        let mut __cache_results = #p::std::vec::Vec::with_capacity(__cache_batch.len());
        for __cache_bytes in &__cache_batch {
            match #p::decode_args::<(#(#tys,)*)>(__cache_bytes) {
                #p::core::result::Result::Ok((#(#names,)*)) => {
                    #(let _ = &#names;)*
                    __cache_values.push(#value);
                    __cache_results.push(#p::core::result::Result::Ok(()));
                }
                #p::core::result::Result::Err(__cache_e) => {
                    __cache_results.push(#p::core::result::Result::Err(__cache_e));
                }
            }
        }
        if !__cache_values.is_empty() {
            let __cache_flushed = #bulk(__cache_values).await;
            let __cache_outcome = #outcome;
            for __cache_r in &mut __cache_results {
                if __cache_r.is_ok() {
                    *__cache_r = __cache_outcome.clone();
                }
            }
        }
        __cache_results
    }
}

/// `Vec::from([..])` of rendered templates, or `Vec::new()`.
fn rendered_list(p: &TokenStream, templates: &[Resolved]) -> TokenStream {
    if templates.is_empty() {
        return quote!(#p::std::vec::Vec::new());
    }
    let items = templates.iter().map(|t| render(p, t));
    quote!(#p::std::vec::Vec::from([#(#items),*]))
}

/// The expansion of `#[invalidates]`.
fn invalidates_fn(plan: &InvalidatesPlan) -> TokenStream {
    let func = plan.item;
    let p = private_path(plan.args.common.krate.as_ref());
    let (outer, inner) = split_attrs(&func.attrs);
    let vis = &func.vis;
    let sig = &func.sig;
    let cache_ref = cache_ref(&p, &plan.args.common);
    let keys = rendered_list(&p, &plan.keys);
    let tags = rendered_list(&p, &plan.tags);
    let patterns = rendered_list(&p, &plan.patterns);
    let setup = quote! {
        #(#inner)*
        #cache_ref
        let __cache_inv = #p::Invalidation {
            keys: #keys,
            tags: #tags,
            patterns: #patterns,
        };
    };
    let before = match plan.when {
        When::Before | When::Both => quote!(__cache_inv.run(__cache_ref).await;),
        When::After => TokenStream::new(),
    };
    if plan.when == When::Before {
        // Nothing runs after the body: it stays as written.
        let block = &func.block;
        return quote! {
            #(#outer)*
            #vis #sig {
                #setup
                #before
                #block
            }
        };
    }
    let ret_span = match &sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => sig.ident.span(),
    };
    let ret = return_type(func);
    let body = typed_body(func, &ret, ret_span);
    quote! {
        #(#outer)*
        #vis #sig {
            #setup
            #before
            let __cache_out: #ret = #body.await;
            #[allow(unused_imports)]
            use #p::{SucceededAny as _, SucceededResult as _};
            if (&&#p::Wrap::<#ret>::new()).succeeded(&__cache_out) {
                __cache_inv.run(__cache_ref).await;
            }
            __cache_out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proc_macro2::TokenTree;

    fn expand(
        macro_fn: fn(TokenStream, TokenStream) -> TokenStream,
        attr: &str,
        item: &str,
    ) -> TokenStream {
        macro_fn(attr.parse().unwrap(), item.parse().unwrap())
    }

    /// Every token, groups flattened.
    fn flatten(tokens: TokenStream, out: &mut Vec<TokenTree>) {
        for token in tokens {
            if let TokenTree::Group(group) = &token {
                flatten(group.stream(), out);
            } else {
                out.push(token);
            }
        }
    }

    /// The prelude names the expansion uses only behind a `::` path.
    fn assert_no_bare_prelude_names(tokens: TokenStream, user_item: &str) {
        let mut flat = Vec::new();
        flatten(tokens, &mut flat);
        let user: Vec<String> = {
            let mut user = Vec::new();
            flatten(user_item.parse().unwrap(), &mut user);
            user.iter().map(ToString::to_string).collect()
        };
        for (i, token) in flat.iter().enumerate() {
            let TokenTree::Ident(ident) = token else {
                continue;
            };
            let name = ident.to_string();
            if ![
                "Option", "Result", "String", "Vec", "Some", "None", "Ok", "Err", "Box",
            ]
            .contains(&name.as_str())
            {
                continue;
            }
            if user.contains(&name) {
                continue; // written by the user, in the signature or the body
            }
            let after_path =
                i >= 1 && matches!(&flat[i - 1], TokenTree::Punct(p) if p.as_char() == ':');
            assert!(after_path, "bare `{name}` in the expansion");
        }
    }

    const ITEM: &str = "async fn get(id: u64, f: F) -> u64 { id }";

    #[test]
    fn cached_paths_are_absolute() {
        let out = expand(
            cached,
            r#"key = "user:{id}:{f.a:hash}", ttl = "30m", tags = ["u", "u:{id}"], stale = 5,
               early_refresh = true, lock = false, cache_none = "1m", codec = "json", version = 3, jitter = 0.5"#,
            ITEM,
        );
        let text = out.to_string();
        assert!(
            text.contains(":: cache_runtime :: __private :: Wrap :: < u64 >"),
            "{text}"
        );
        assert!(text.contains("Duration :: from_millis (1800000)"), "{text}");
        assert!(text.contains(". version (3)"), "{text}");
        assert!(text.contains(". jitter (0.5)"), "{text}");
        assert!(text.contains(". early_refresh (1.0)"), "{text}");
        assert!(!text.contains("compile_error"), "{text}");
        assert_no_bare_prelude_names(out, ITEM);
        let default = expand(cached, "", ITEM);
        assert!(
            default
                .to_string()
                .contains("__private :: ArgumentsHash (& (& id , & f ,))) . write_hash"),
            "{default}"
        );
        assert_no_bare_prelude_names(default, ITEM);
    }

    #[test]
    fn invalidates_paths_are_absolute() {
        for when in ["before", "after", "both"] {
            let attr = format!(
                r#"keys = ["k:{{id}}"], tags = ["t"], patterns = ["p:*"], when = "{when}""#
            );
            let out = expand(invalidates, &attr, ITEM);
            assert!(!out.to_string().contains("compile_error"), "{out}");
            assert_no_bare_prelude_names(out, ITEM);
        }
    }

    #[test]
    fn crate_path_replaces_the_runtime() {
        let attrs = [
            r#"key = "k:{id}", crate = "::renamed::inner""#,
            r#"key = "k:{f:hash}", crate = "::renamed::inner", codec = "bincode", cache = c"#,
            r#"key = "k", crate = "::renamed::inner", strategy = "behind", value = id"#,
        ];
        for attr in attrs {
            let out = expand(cached, attr, ITEM).to_string();
            assert!(out.contains(":: renamed :: inner :: __private ::"), "{out}");
            assert!(!out.contains("cache_runtime"), "{out}");
        }
    }

    #[test]
    fn errors_keep_the_function_as_written() {
        let out = expand(cached, "ttl = 0, bogus = 1", ITEM).to_string();
        assert_eq!(out.matches("compile_error").count(), 2, "{out}");
        let item: TokenStream = ITEM.parse().unwrap();
        assert!(out.ends_with(&item.to_string()), "{out}");
    }

    #[test]
    fn bad_input_never_panics() {
        let attrs = [
            "",
            "=",
            "key",
            "key =",
            "key = ",
            ", ,",
            "key = \"{\"",
            "key = \"}{\"",
            "key = \"{a.}\"",
            "ttl = 1e999",
            "ttl = 99999999999999999999999999",
            "ttl = \"99999999999 years\"",
            "jitter = 1e400",
            "tags = [[]]",
            "tags = [\"\"]",
            "crate = \"\"",
            "crate = \"::\"",
            "version = 99999999999",
            "cache = ",
            "strategy = \"behind\", value = ",
            "key = r#\"{id}\"#",
            "key = \"\\u{7b}id}\"",
            "when = 1",
            "keys = [1, 2]",
            "key = \"{r#}\"",
            "key = \"{a:b:c}\"",
        ];
        let items = [
            ITEM,
            "",
            "fn",
            "struct S;",
            "async fn f(self) -> u64 { 1 }",
            "async fn f(..) -> u64 { 1 }",
            "async fn f((a, b): (u8, u8), _: u8) -> u64 { 1 }",
            "async fn f() -> ! { loop {} }",
            "async fn f<T>(x: T) -> impl Fn() -> impl Sized { x }",
        ];
        for attr in attrs {
            for item in items {
                let (Ok(attr), Ok(item)) =
                    (attr.parse::<TokenStream>(), item.parse::<TokenStream>())
                else {
                    continue;
                };
                let _ = cached(attr.clone(), item.clone());
                let _ = invalidates(attr, item);
            }
        }
    }
}
