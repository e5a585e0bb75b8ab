//! Checks of the arguments against the function they are put on: the
//! function's shape, its return type, and the names its templates use.
//! Produces the plans that `expand` turns into code.

use proc_macro2::Span;
use quote::ToTokens as _;
use syn::ext::IdentExt as _;
use syn::{
    FnArg, GenericArgument, Ident, ItemFn, Member, Pat, PathArguments, Receiver, ReturnType,
    Signature, Type,
};

use crate::args::{CachedArgs, InvalidatesArgs, Strategy, TemplateArg, When};
use crate::errors::{Errors, closest, one_of};
use crate::template::{self, Modifier, Part, Placeholder};

/// The most arguments a default key can hash: serde implements `Serialize`
/// for tuples of up to 16 elements. (The expansion relies on it: it hashes
/// the arguments only when their tuple is `Serialize`, having checked each.)
const MAX_DEFAULT_KEY_ARGS: usize = 16;

/// What `#[cached]` generates, once every check has passed.
pub struct CachedPlan<'a> {
    /// The function as written.
    pub item: &'a ItemFn,
    /// Its return type: the cached value's type (`()` for write-behind
    /// functions that return nothing).
    pub ret: Type,
    /// The type of the cached value as written, for checks to point at:
    /// `T` of `Result<Option<T>, E>`, `Result<T, E>` or `Option<T>`, or the
    /// whole return type.
    pub value: Type,
    /// The strategy.
    pub strategy: Strategy,
    /// With write-behind: the non-`self` arguments (all plain names) and
    /// which of them is the value.
    pub behind: Option<BehindPlan<'a>>,
    /// The key.
    pub key: Key,
    /// The tags.
    pub tags: Vec<Resolved>,
    /// Every argument, for the options.
    pub args: &'a CachedArgs,
    /// With cache-aside, when the body can be moved into a function of its
    /// own that owns every argument (no `self`, no generics, nothing
    /// borrowed): those arguments. Such a body may then load in a task of
    /// its own.
    pub owned: Option<Vec<(&'a syn::PatIdent, &'a Type)>>,
}

/// A write-behind function's arguments.
pub struct BehindPlan<'a> {
    /// Every argument: its name and type, in order.
    pub params: Vec<(&'a Ident, &'a Type)>,
    /// The index in `params` of the value to cache.
    pub value: usize,
}

/// The key of a cached function.
pub enum Key {
    /// `key = "..."`.
    Template(Resolved),
    /// No `key`: the function's path and the hash of these arguments (their
    /// names and types).
    Default(Vec<(Ident, Type)>),
}

/// What `#[invalidates]` generates, once every check has passed.
pub struct InvalidatesPlan<'a> {
    /// The function as written.
    pub item: &'a ItemFn,
    /// Keys to delete.
    pub keys: Vec<Resolved>,
    /// Tags to invalidate.
    pub tags: Vec<Resolved>,
    /// Patterns to delete.
    pub patterns: Vec<Resolved>,
    /// When to invalidate.
    pub when: When,
    /// `cache`, `crate`.
    pub args: &'a InvalidatesArgs,
}

/// A template whose placeholders are resolved to arguments.
pub struct Resolved {
    /// Literal text and values, in order.
    pub pieces: Vec<Piece>,
}

/// One piece of a resolved template.
pub enum Piece {
    /// Literal text.
    Text(String),
    /// A value taken from the arguments.
    Value(Value),
}

/// `{root.fields:modifier}`, resolved.
pub struct Value {
    /// The argument (or `self`) the value starts from.
    pub root: Ident,
    /// The field accesses, spanned at the template.
    pub fields: Vec<Member>,
    /// Display or hash.
    pub modifier: Modifier,
    /// Where the placeholder is written.
    pub span: Span,
}

/// The parts of a signature that templates refer to.
struct FnInfo<'a> {
    sig: &'a Signature,
    receiver: Option<&'a Receiver>,
    /// The non-`self` arguments: their pattern, and its name when it is a
    /// plain binding.
    params: Vec<(&'a Pat, Option<&'a Ident>)>,
}

impl<'a> FnInfo<'a> {
    fn new(sig: &'a Signature) -> Self {
        let mut receiver = None;
        let mut params = Vec::new();
        for input in &sig.inputs {
            match input {
                FnArg::Receiver(r) => receiver = Some(r),
                FnArg::Typed(typed) => {
                    let ident = match &*typed.pat {
                        Pat::Ident(pat) if pat.subpat.is_none() => Some(&pat.ident),
                        _ => None,
                    };
                    params.push((&*typed.pat, ident));
                }
            }
        }
        FnInfo {
            sig,
            receiver,
            params,
        }
    }

    /// The argument called `name` (`r#type` and `type` are the same name).
    fn param(&self, name: &str) -> Option<&'a Ident> {
        let name = name.trim_start_matches("r#");
        self.params
            .iter()
            .filter_map(|(_, ident)| *ident)
            .find(|ident| ident.unraw() == name)
    }

    /// The names a placeholder can start with.
    fn names(&self) -> Vec<String> {
        let receiver = self.receiver.map(|_| "self".to_string());
        receiver
            .into_iter()
            .chain(
                self.params
                    .iter()
                    .filter_map(|(_, ident)| ident.map(ToString::to_string)),
            )
            .collect()
    }

    /// Resolves a template's placeholders, recording every one that names
    /// nothing.
    fn resolve(&self, arg: &TemplateArg, errors: &mut Errors) -> Option<Resolved> {
        let template = arg.template.as_ref()?;
        let text = arg.lit.value();
        // Every part is looked at (no short cut), so every error is recorded.
        let pieces: Vec<Option<Piece>> = template
            .parts
            .iter()
            .map(|part| match part {
                Part::Text(text) => Some(Piece::Text(text.clone())),
                Part::Hole(hole) => self
                    .resolve_hole(arg, &text, hole, errors)
                    .map(Piece::Value),
            })
            .collect();
        let pieces = pieces.into_iter().collect::<Option<Vec<Piece>>>()?;
        Some(Resolved { pieces })
    }

    /// Resolves one placeholder of `arg` (whose value is `text`).
    fn resolve_hole(
        &self,
        arg: &TemplateArg,
        text: &str,
        hole: &Placeholder,
        errors: &mut Errors,
    ) -> Option<Value> {
        let span = template::span_of(&arg.lit, hole.range.clone());
        let source = hole.source(text);
        let root = self.resolve_root(&hole.root, source, span, errors)?;
        let fields = hole
            .fields
            .iter()
            .map(|field| member(field, span))
            .collect();
        let Some(fields) = fields else {
            errors.at(span, format!("invalid field in `{source}`"));
            return None;
        };
        Some(Value {
            root,
            fields,
            modifier: hole.modifier,
            span,
        })
    }

    /// The identifier a placeholder starts from: located at the template,
    /// resolved like the argument (or receiver) it names.
    fn resolve_root(
        &self,
        root: &str,
        source: &str,
        span: Span,
        errors: &mut Errors,
    ) -> Option<Ident> {
        if root == "self" {
            let Some(receiver) = self.receiver else {
                errors.at(
                    span,
                    format!(
                        "`{source}`: `{}` has no `self` receiver; {}",
                        self.sig.ident,
                        self.list_names(),
                    ),
                );
                return None;
            };
            return Some(Ident::new(
                "self",
                span.resolved_at(receiver.self_token.span),
            ));
        }
        let Some(param) = self.param(root) else {
            let names = self.names();
            let hint = closest(root, names.iter().map(String::as_str))
                .map(|c| format!(" (did you mean `{c}`?)"))
                .unwrap_or_default();
            errors.at(
                span,
                format!(
                    "`{source}` names no argument of `{}`{hint}; {}",
                    self.sig.ident,
                    self.list_names(),
                ),
            );
            return None;
        };
        let mut ident = param.clone();
        ident.set_span(span.resolved_at(param.span()));
        Some(ident)
    }

    /// "its arguments are `a` and `b`", or "it takes no arguments".
    fn list_names(&self) -> String {
        let names = self.names();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        match names.as_slice() {
            [] => "it takes no arguments".to_string(),
            [one] => format!("its only argument is `{one}`"),
            _ => format!(
                "its arguments are {}",
                one_of(&names).replace(" or ", " and ")
            ),
        }
    }

    fn resolve_all(&self, args: &[TemplateArg], errors: &mut Errors) -> Option<Vec<Resolved>> {
        let resolved: Vec<Option<Resolved>> =
            args.iter().map(|arg| self.resolve(arg, errors)).collect();
        resolved.into_iter().collect()
    }

    /// The arguments the default key hashes, names and types; records the
    /// arguments that have no name.
    fn default_key(&self, errors: &mut Errors) -> Option<Vec<(Ident, Type)>> {
        let types = self.sig.inputs.iter().filter_map(|input| match input {
            FnArg::Typed(typed) => Some(&*typed.ty),
            FnArg::Receiver(_) => None,
        });
        let mut args = Vec::with_capacity(self.params.len());
        for ((pat, ident), ty) in self.params.iter().zip(types) {
            match ident {
                Some(ident) => args.push(((*ident).clone(), ty.clone())),
                None => errors.spanned(
                    pat,
                    "the default key hashes every argument by name, and this one is a pattern; \
                     bind it to a name, or give the key with `key = \"...\"`",
                ),
            }
        }
        if let Some((name, _)) = args.get(MAX_DEFAULT_KEY_ARGS) {
            errors.at(
                name.span(),
                format!(
                    "the default key hashes the arguments as one tuple, and serde serializes \
                     tuples of at most {MAX_DEFAULT_KEY_ARGS}; give the key with `key = \"...\"`"
                ),
            );
            return None;
        }
        (args.len() == self.params.len()).then_some(args)
    }
}

/// A field name or tuple index, spanned at the template.
fn member(field: &str, span: Span) -> Option<Member> {
    if template::is_tuple_index(field) {
        let index = field.parse::<u32>().ok()?;
        return Some(Member::Unnamed(syn::Index { index, span }));
    }
    let mut ident = syn::parse_str::<Ident>(field).ok()?;
    ident.set_span(span);
    Some(Member::Named(ident))
}

/// Records an error unless `sig` is an `async fn`.
fn check_async(sig: &Signature, macro_name: &str, errors: &mut Errors) {
    if sig.asyncness.is_none() {
        errors.at(
            sig.fn_token.span,
            format!(
                "`#[{macro_name}]` goes on an `async fn`; write `async fn {}`",
                sig.ident
            ),
        );
    }
}

/// The return type of a cached function, when it can hold a cached value.
fn cached_return<'a>(sig: &'a Signature, errors: &mut Errors) -> Option<&'a Type> {
    let ty = match &sig.output {
        ReturnType::Type(_, ty) => &**ty,
        ReturnType::Default => {
            errors.at(
                sig.ident.span(),
                format!(
                    "`{}` returns nothing, so `#[cached]` has nothing to cache; return the value, \
                     or use `#[invalidates]` for a function called for its effect",
                    sig.ident
                ),
            );
            return None;
        }
    };
    match peel(ty) {
        Type::Tuple(tuple) if tuple.elems.is_empty() => {
            errors.spanned(
                ty,
                "`#[cached]` has nothing to cache in `()`; return the value, \
                 or use `#[invalidates]` for a function called for its effect",
            );
            None
        }
        Type::Never(_) => {
            errors.spanned(ty, "`#[cached]` has nothing to cache in `!`");
            None
        }
        Type::Reference(_) => {
            errors.spanned(
                ty,
                "`#[cached]` cannot return a reference: cached values are decoded from the store, \
                 so return an owned type (such as `String` for `&str`, or `Vec<T>` for `&[T]`)",
            );
            None
        }
        _ => match find_impl_trait(ty) {
            Some(found) => {
                errors.spanned(
                    found,
                    "`#[cached]` cannot cache an `impl Trait` return type: the value is decoded \
                     from the store, so name a concrete `Serialize + DeserializeOwned` type",
                );
                None
            }
            None => Some(ty),
        },
    }
}

fn peel(ty: &Type) -> &Type {
    match ty {
        Type::Paren(paren) => peel(&paren.elem),
        Type::Group(group) => peel(&group.elem),
        other => other,
    }
}

/// The type a return type caches, as written: `T` of `Result<Option<T>, E>`,
/// `Result<T, E>` (or an alias such as `Result<T>`) and `Option<T>`, or the
/// type itself. Only where checks of the value type point: which part of the
/// return type is cached is decided by the type, not by how it is spelled.
fn cached_value(ty: &Type) -> &Type {
    let ty = peel(ty);
    match type_argument(ty, "Result") {
        Some(ok) => type_argument(peel(ok), "Option").unwrap_or(ok),
        None => type_argument(ty, "Option").unwrap_or(ty),
    }
}

/// `T` of `name<T, ..>` (the last segment of a path).
fn type_argument<'a>(ty: &'a Type, name: &str) -> Option<&'a Type> {
    let Type::Path(path) = ty else {
        return None;
    };
    let segment = path.path.segments.last()?;
    let PathArguments::AngleBracketed(args) = &segment.arguments else {
        return None;
    };
    if path.qself.is_some() || segment.ident != name {
        return None;
    }
    args.args.iter().find_map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    })
}

/// The first `impl Trait` inside `ty`, if any.
fn find_impl_trait(ty: &Type) -> Option<&Type> {
    match ty {
        Type::ImplTrait(_) => Some(ty),
        Type::Paren(t) => find_impl_trait(&t.elem),
        Type::Group(t) => find_impl_trait(&t.elem),
        Type::Array(t) => find_impl_trait(&t.elem),
        Type::Slice(t) => find_impl_trait(&t.elem),
        Type::Reference(t) => find_impl_trait(&t.elem),
        Type::Ptr(t) => find_impl_trait(&t.elem),
        Type::Tuple(t) => t.elems.iter().find_map(find_impl_trait),
        Type::Path(t) => t
            .path
            .segments
            .iter()
            .find_map(|segment| match &segment.arguments {
                PathArguments::AngleBracketed(args) => args.args.iter().find_map(|arg| match arg {
                    GenericArgument::Type(ty) => find_impl_trait(ty),
                    _ => None,
                }),
                _ => None,
            }),
        _ => None,
    }
}

/// With `when = "after"` or `"both"`, the return value is held and checked
/// for success, so its type must be nameable.
fn check_nameable_return(sig: &Signature, errors: &mut Errors) {
    if let ReturnType::Type(_, ty) = &sig.output
        && let Some(found) = find_impl_trait(ty)
    {
        errors.spanned(
            found,
            "`#[invalidates]` holds the return value to check it for success, so it needs a \
             concrete return type, not `impl Trait`; or use `when = \"before\"`, which leaves \
             the body as written",
        );
    }
}

/// Checks `strategy` and the arguments that only apply to `"behind"`.
fn check_strategy(args: &CachedArgs, info: &FnInfo, errors: &mut Errors) {
    let strategy = args.strategy.as_ref();
    match strategy.map(|s| s.value) {
        None | Some(Strategy::Aside | Strategy::Through) => {
            for name in &args.behind.given {
                errors.at(
                    name.span(),
                    format!("`{name}` only applies with `strategy = \"behind\"`"),
                );
            }
        }
        Some(Strategy::Behind) => {}
    }
    if let Some(strategy) = strategy
        && strategy.value == Strategy::Behind
    {
        check_behind(args, info, strategy.lit.span(), errors);
    }
}

/// Write-behind stores the call and replays it later, in a flusher that may
/// run in another process: no `self`, no generics, owned and nameable
/// arguments, and an explicit key (the one readers use).
fn check_behind(args: &CachedArgs, info: &FnInfo, at: Span, errors: &mut Errors) {
    if info.receiver.is_some() {
        errors.at(
            at,
            "`strategy = \"behind\"` replays the call later, in a flusher that has no `self`: \
             put it on a free function",
        );
    }
    if !info.sig.generics.params.is_empty() {
        errors.spanned(
            &info.sig.generics,
            "`strategy = \"behind\"` functions cannot be generic: their calls are stored and replayed",
        );
    }
    for input in &info.sig.inputs {
        if let FnArg::Typed(typed) = input {
            if !matches!(&*typed.pat, Pat::Ident(p) if p.subpat.is_none()) {
                errors.spanned(
                    &typed.pat,
                    "`strategy = \"behind\"` arguments must be plain names",
                );
            }
            if matches!(peel(&typed.ty), Type::Reference(_)) {
                errors.spanned(
                    &typed.ty,
                    "`strategy = \"behind\"` stores the call's arguments in Redis: \
                     take an owned, serializable type here (such as `String` for `&str`)",
                );
            }
        }
    }
    if args.key.is_none() {
        errors.at(
            at,
            "`strategy = \"behind\"` needs an explicit `key = \"...\"`: the key under which readers find the value",
        );
    }
    check_behind_value(args, info, at, errors);
}

/// With `"behind"`: `value` names an argument, or the function has exactly
/// one argument besides `self`.
fn check_behind_value(args: &CachedArgs, info: &FnInfo, at: Span, errors: &mut Errors) {
    match &args.behind.value {
        Some(value) => {
            if info.param(&value.to_string()).is_none() {
                let names = info.names();
                let hint = closest(&value.to_string(), names.iter().map(String::as_str))
                    .map(|c| format!(" (did you mean `{c}`?)"))
                    .unwrap_or_default();
                errors.at(
                    value.span(),
                    format!(
                        "`value = {value}` names no argument of `{}`{hint}; {}",
                        info.sig.ident,
                        info.list_names()
                    ),
                );
            }
        }
        None if info.params.len() == 1 => {}
        None => errors.at(
            at,
            format!(
                "cannot identify the value to cache: `{}` takes {} arguments besides `self`; \
                 say which one is the value with `value = <argument>` ({})",
                info.sig.ident,
                info.params.len(),
                info.list_names(),
            ),
        ),
    }
}

/// Checks `#[cached]` against its function; the plan when nothing is wrong.
pub fn cached<'a>(
    args: &'a CachedArgs,
    item: &'a ItemFn,
    errors: &mut Errors,
) -> Option<CachedPlan<'a>> {
    let info = FnInfo::new(&item.sig);
    check_async(&item.sig, "cached", errors);
    let strategy = args.strategy.as_ref().map_or(Strategy::Aside, |s| s.value);
    let ret = match strategy {
        // Write-behind returns `()` or `Result<(), E>` (checked by the
        // expansion's `BehindReturn` trait), never a value to cache.
        Strategy::Behind => Some(match &item.sig.output {
            ReturnType::Type(_, ty) => (**ty).clone(),
            ReturnType::Default => syn::parse_quote!(()),
        }),
        _ => cached_return(&item.sig, errors).cloned(),
    };
    check_strategy(args, &info, errors);
    let behind = (strategy == Strategy::Behind)
        .then(|| behind_plan(args, &info))
        .flatten();
    let key = match &args.key {
        Some(key) => info.resolve(key, errors).map(Key::Template),
        None => info.default_key(errors).map(Key::Default),
    };
    let tags = info.resolve_all(&args.tags, errors);
    let owned = (strategy == Strategy::Aside)
        .then(|| owned_params(item))
        .flatten();
    let ret = ret?;
    Some(CachedPlan {
        item,
        value: cached_value(&ret).clone(),
        ret,
        strategy,
        behind,
        key: key?,
        tags: tags?,
        args,
        owned,
    })
}

/// The arguments of a function whose body can live in a function item of its
/// own, owning them: no receiver, no generics, not `unsafe`, every argument a
/// plain name, and no reference, lifetime, `impl Trait` or `Self` in the
/// signature, nor `Self` in the body. `None` otherwise.
fn owned_params(item: &ItemFn) -> Option<Vec<(&syn::PatIdent, &Type)>> {
    let sig = &item.sig;
    if !sig.generics.params.is_empty()
        || sig.generics.where_clause.is_some()
        || !matches!(sig.safety, syn::Safety::Default)
        || !owns_everything(sig.output.to_token_stream(), true)
        || !owns_everything(item.block.to_token_stream(), false)
    {
        return None;
    }
    let mut params = Vec::new();
    for input in &sig.inputs {
        let FnArg::Typed(typed) = input else {
            return None;
        };
        let Pat::Ident(pat) = &*typed.pat else {
            return None;
        };
        if pat.subpat.is_some()
            || pat.by_ref.is_some()
            || !typed.attrs.is_empty()
            || !owns_everything(typed.ty.to_token_stream(), true)
        {
            return None;
        }
        params.push((pat, &*typed.ty));
    }
    Some(params)
}

/// No `Self` in `tokens`, and, for a type, nothing that borrows.
fn owns_everything(tokens: proc_macro2::TokenStream, is_type: bool) -> bool {
    use proc_macro2::TokenTree;
    tokens.into_iter().all(|tree| match tree {
        TokenTree::Ident(ident) => ident != "Self" && !(is_type && ident == "impl"),
        TokenTree::Punct(punct) => !(is_type && matches!(punct.as_char(), '&' | '\'')),
        TokenTree::Group(group) => owns_everything(group.stream(), is_type),
        TokenTree::Literal(_) => true,
    })
}

fn behind_plan<'a>(args: &CachedArgs, info: &FnInfo<'a>) -> Option<BehindPlan<'a>> {
    let mut params = Vec::new();
    for input in &info.sig.inputs {
        if let FnArg::Typed(typed) = input {
            let Pat::Ident(pat) = &*typed.pat else {
                return None;
            };
            params.push((&pat.ident, &*typed.ty));
        }
    }
    let value = match &args.behind.value {
        Some(v) => params.iter().position(|(n, _)| n.unraw() == v.unraw())?,
        None if params.len() == 1 => 0,
        None => return None,
    };
    Some(BehindPlan { params, value })
}

/// Checks `#[invalidates]` against its function; the plan when nothing is
/// wrong.
pub fn invalidates<'a>(
    args: &'a InvalidatesArgs,
    item: &'a ItemFn,
    errors: &mut Errors,
) -> Option<InvalidatesPlan<'a>> {
    let info = FnInfo::new(&item.sig);
    check_async(&item.sig, "invalidates", errors);
    let when = args.when.as_ref().map_or(When::After, |w| w.value);
    if when != When::Before {
        check_nameable_return(&item.sig, errors);
    }
    let keys = info.resolve_all(&args.keys, errors);
    let tags = info.resolve_all(&args.tags, errors);
    let patterns = info.resolve_all(&args.patterns, errors);
    Some(InvalidatesPlan {
        item,
        keys: keys?,
        tags: tags?,
        patterns: patterns?,
        when,
        args,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value_of(ty: &str) -> String {
        let ty: Type = syn::parse_str(ty).unwrap();
        cached_value(&ty).to_token_stream().to_string()
    }

    #[test]
    fn a_default_key_hashes_at_most_16_arguments() {
        let item = |n: usize| -> ItemFn {
            let params: Vec<String> = (0..n).map(|i| format!("a{i}: u8")).collect();
            syn::parse_str(&format!("async fn f({}) -> u8 {{ 0 }}", params.join(", "))).unwrap()
        };
        let args = CachedArgs::default();
        for (n, ok) in [(16, true), (17, false)] {
            let item = item(n);
            let mut errors = Errors::new();
            let plan = cached(&args, &item, &mut errors);
            assert_eq!(plan.is_some() && errors.is_empty(), ok, "{n} arguments");
        }
    }

    #[test]
    fn the_cached_value_as_written() {
        assert_eq!(value_of("Result<Option<User>, E>"), "User");
        assert_eq!(value_of("Result<User, E>"), "User");
        assert_eq!(value_of("io::Result<Vec<u8>>"), "Vec < u8 >");
        assert_eq!(value_of("Option<(u8, u8)>"), "(u8 , u8)");
        assert_eq!(value_of("(Option<User>)"), "User");
        assert_eq!(value_of("Vec<Option<u8>>"), "Vec < Option < u8 > >");
        assert_eq!(value_of("Option<Option<u8>>"), "Option < u8 >");
        assert_eq!(
            value_of("<T as Tr>::Result<u8>"),
            "< T as Tr > :: Result < u8 >"
        );
    }
}
