//! Requirements that only the compiler can check, reported where the user
//! wrote what they concern.
//!
//! A requirement on a type (the cached value is `Serialize`, a placeholder
//! is `Display`, `cache = expr` borrows as a `Cache`, ...) is a trait of the
//! runtime's `__private::requirements`, worded for the error that reports it
//! unmet. The expansion calls the trait with the call's tokens spanned at
//! the user's tokens, so that error is the only one, and points there.
//!
//! A cargo feature of the runtime is checked by one of the runtime's gate
//! macros (see [`feature_gate`]).

use proc_macro2::{Delimiter, Group, Ident, Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote};

/// Where a check reports: from the first to the last token of what the user
/// wrote. (A span cannot be widened over several tokens on stable Rust, but
/// an expression whose first token is at `first` and last at `last` covers
/// both and all between.)
#[derive(Clone, Copy)]
pub struct Spot {
    first: Span,
    last: Span,
}

impl Spot {
    /// The tokens of `node`.
    pub fn of(node: &impl ToTokens) -> Self {
        let mut tokens = node.to_token_stream().into_iter();
        let first = tokens.next().map_or_else(Span::call_site, |t| t.span());
        let last = tokens.last().map_or(first, |t| t.span());
        Spot { first, last }
    }

    /// One token.
    pub fn at(span: Span) -> Self {
        Spot {
            first: span,
            last: span,
        }
    }

    /// `tokens`, spanned so that an expression made of them covers the spot:
    /// the last token (tree) at its end, everything before at its start.
    fn respan(self, tokens: TokenStream) -> TokenStream {
        let mut tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let last = tokens.pop().map(|token| respan(token, self.last));
        tokens
            .into_iter()
            .map(|token| respan(token, self.first))
            .chain(last)
            .collect()
    }
}

/// `token`, and every token and delimiter inside it, spanned at `span`.
fn respan(mut token: TokenTree, span: Span) -> TokenTree {
    if let TokenTree::Group(group) = &token {
        let stream = group
            .stream()
            .into_iter()
            .map(|t| respan(t, span))
            .collect();
        let mut respanned = Group::new(group.delimiter(), stream);
        respanned.set_span(span);
        token = TokenTree::Group(respanned);
    } else {
        token.set_span(span);
    }
    token
}

/// `#p::requirements::Trait::function(argument, rest..)`, reported at
/// `spot`. The compiler reports an unmet bound on `Self` at the argument it
/// is inferred from (so that argument is `identity(argument)`, spanned
/// there), and may point at the call as well (so the call is spanned there
/// too).
fn call(
    p: &TokenStream,
    (trait_name, function): (&str, &str),
    argument: &TokenStream,
    rest: TokenStream,
    spot: Spot,
) -> TokenStream {
    let (trait_name, function) = (format_ident!("{trait_name}"), format_ident!("{function}"));
    let argument = spot.respan(quote!(#p::core::convert::identity(#argument)));
    let function = spot.respan(quote!(#p::requirements::#trait_name::#function));
    let mut arguments = Group::new(Delimiter::Parenthesis, quote!(#argument #rest));
    arguments.set_span(spot.last);
    quote!(#function #arguments)
}

/// Checks that the value type of `kind` (a local holding the kind of call)
/// can be cached, reporting at `spot` (the value type as written).
pub fn cacheable_value(p: &TokenStream, kind: &TokenStream, spot: Spot) -> TokenStream {
    let value = quote!(#p::Kind::value_type(&#kind));
    let serde = call(
        p,
        ("SerializeAndDeserialize", "check"),
        &value,
        quote!(),
        spot,
    );
    let send = call(p, ("SendAndStatic", "check"), &value, quote!(), spot);
    quote!(#serde; #send;)
}

/// `&Cache` from `holder`, a reference to the value of `cache = expr`,
/// reporting at `spot` (the expression) when it does not borrow as a cache.
pub fn cache_handle(p: &TokenStream, holder: &TokenStream, spot: Spot) -> TokenStream {
    call(p, ("BorrowsCache", "cache"), holder, quote!(), spot)
}

/// `value` (a reference) written into the key writer `writer` (a local)
/// with `Display`, reported at `span` (the placeholder) when it has none.
pub fn write_display(
    p: &TokenStream,
    value: &TokenStream,
    writer: &TokenStream,
    span: Span,
) -> TokenStream {
    let writer = quote!(, &mut #writer);
    call(
        p,
        ("WriteIntoKey", "write_into"),
        value,
        writer,
        Spot::at(span),
    )
}

/// The hash of `value` (a reference) written into the key writer `writer`
/// (a local), reported at `span` (the placeholder) when it is not
/// `Serialize`.
pub fn write_hash(
    p: &TokenStream,
    value: &TokenStream,
    writer: &TokenStream,
    span: Span,
) -> TokenStream {
    let writer = quote!(, &mut #writer);
    call(
        p,
        ("HashIntoKey", "write_into"),
        value,
        writer,
        Spot::at(span),
    )
}

/// Checks that the argument `name` can be hashed into the default key,
/// reporting at `spot` (its type) when it is not `Serialize`.
pub fn hashable_argument(p: &TokenStream, name: &Ident, spot: Spot) -> TokenStream {
    call(
        p,
        ("HashIntoDefaultKey", "check"),
        &quote!(&#name),
        quote!(),
        spot,
    )
}

/// `<ret as BehindReturn>::acknowledged()`, reported at `ret` (the return
/// type as written) when it is not a write-behind function's.
pub fn acknowledged(p: &TokenStream, ret: &TokenStream) -> TokenStream {
    quote!(<#ret as #p::requirements::BehindReturn>::acknowledged())
}

/// `<ret as BehindReturn>::flush_result(result)`: what a replayed call's
/// `result` says. Reported at `ret` as [`acknowledged`] is: the compiler
/// reports the same error at the same place once.
pub fn behind_flush_result(
    p: &TokenStream,
    ret: &TokenStream,
    result: &TokenStream,
) -> TokenStream {
    quote!(<#ret as #p::requirements::BehindReturn>::flush_result(#result))
}

/// What the result of `flush_batch` (`result`, a reference to it) says,
/// reported at `spot` (the path given to `flush_batch`) when it is not `()`
/// or `Result<(), E>`.
pub fn flush_batch_result(p: &TokenStream, result: &TokenStream, spot: Spot) -> TokenStream {
    call(
        p,
        ("FlushBatchReturn", "flush_result"),
        result,
        quote!(),
        spot,
    )
}

/// `on` when the runtime has the cargo feature `feature`, and otherwise one
/// error at `span` saying that `what` needs it and how to enable it. `gate`
/// is the runtime's gate macro for the feature (`if_bincode`).
pub fn feature_gate(
    p: &TokenStream,
    gate: &str,
    feature: &str,
    what: &str,
    span: Span,
    on: TokenStream,
) -> TokenStream {
    let gate = format_ident!("{gate}");
    let message = format!(
        "{what} needs the `{feature}` feature of cache-runtime; enable it in Cargo.toml with \
         `cache-runtime = {{ version = \"..\", features = [\"{feature}\"] }}`"
    );
    let spot = Spot::at(span);
    let error = spot.respan(quote!(#p::core::compile_error! { #message }));
    let gate = spot.respan(quote!(#p::#gate!));
    quote!(#gate { { #on } { #error } })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(tokens: &TokenStream) -> String {
        tokens
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn a_check_calls_the_runtime_trait_on_the_value() {
        let p = quote!(::cache_runtime::__private);
        let spot = Spot::of(&quote!(Vec<u8>));
        let check = flat(&cacheable_value(&p, &quote!(__cache_kind), spot));
        assert!(
            check.contains(
                ":: cache_runtime :: __private :: requirements :: SerializeAndDeserialize :: check \
                 (:: cache_runtime :: __private :: core :: convert :: identity \
                 (:: cache_runtime :: __private :: Kind :: value_type (& __cache_kind)))"
            ),
            "{check}"
        );
        assert!(check.contains("SendAndStatic :: check"), "{check}");
        let write = flat(&write_display(
            &p,
            &quote!(v),
            &quote!(w),
            Span::call_site(),
        ));
        assert!(write.ends_with("identity (v) , & mut w)"), "{write}");
    }

    #[test]
    fn a_missing_feature_is_a_compile_error_inside_its_gate() {
        let p = quote!(::renamed::__private);
        let out = feature_gate(
            &p,
            "if_bincode",
            "bincode",
            "`codec = \"bincode\"`",
            Span::call_site(),
            quote!(on),
        );
        let out = flat(&out);
        assert!(
            out.starts_with(":: renamed :: __private :: if_bincode ! { { on } {"),
            "{out}"
        );
        assert!(
            out.contains(":: renamed :: __private :: core :: compile_error !"),
            "{out}"
        );
        assert!(out.contains("features = [\\\"bincode\\\"]"), "{out}");
    }
}
