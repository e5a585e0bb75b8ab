//! The arguments of `#[cached(...)]` and `#[invalidates(...)]`.
//!
//! Parsing happens in two steps: the attribute's tokens become a list of
//! `name = value` pairs ([`RawArgs`]), then each pair is read into the typed
//! argument structs by name. Unknown, duplicate and ill-typed arguments are
//! all recorded; the rest is still read, so one build reports every mistake.

use std::collections::HashSet;
use std::time::Duration;

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt as _;
use syn::parse::{Parse, ParseStream, Parser as _};
use syn::punctuated::Punctuated;
use syn::{Expr, ExprPath, Ident, LitStr, Path, Token};

use crate::errors::{Errors, closest, one_of};
use crate::template::{self, Template};
use crate::value;

/// One `name = value` pair; `value` is `None` when `= value` is missing.
struct RawArg {
    name: Ident,
    value: Option<Expr>,
}

impl Parse for RawArg {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let name = Ident::parse_any(input)?;
        let value = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            Some(input.parse()?)
        } else {
            None
        };
        Ok(RawArg { name, value })
    }
}

/// The comma-separated `name = value` pairs of an attribute.
struct RawArgs(Punctuated<RawArg, Token![,]>);

impl Parse for RawArgs {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        Punctuated::parse_terminated(input).map(RawArgs)
    }
}

/// Calls `read` with each known, first-given argument of `tokens`; records
/// syntax errors, unknown names, duplicates and missing values. Returns
/// whether the list was syntactically valid.
fn read_args(
    tokens: TokenStream,
    macro_name: &str,
    known: &[&str],
    errors: &mut Errors,
    mut read: impl FnMut(&str, &Ident, &Expr, &mut Errors),
) -> bool {
    let Some(RawArgs(args)) = errors.ok(RawArgs::parse.parse2(tokens)) else {
        return false;
    };
    let mut seen = HashSet::new();
    for RawArg { name, value } in &args {
        let key = name.unraw().to_string();
        let Some(&known_name) = known.iter().find(|k| **k == key) else {
            let hint = closest(&key, known.iter().copied())
                .map(|c| format!(" (did you mean `{c}`?)"))
                .unwrap_or_default();
            errors.at(
                name.span(),
                format!(
                    "unknown argument `{key}` of `#[{macro_name}]`{hint}; expected one of {}",
                    one_of(known)
                ),
            );
            continue;
        };
        if !seen.insert(known_name) {
            errors.at(
                name.span(),
                format!("duplicate argument `{key}`: give it once"),
            );
            continue;
        }
        match value {
            Some(value) => read(known_name, name, value, errors),
            None => errors.at(name.span(), format!("`{key}` needs a value: `{key} = ...`")),
        }
    }
    true
}

/// Longest pattern the runtime applies as it is (`cache_runtime::invalidate::MAX_PATTERN_LEN`).
const MAX_PATTERN_LEN: usize = 1024;

/// A key, tag or pattern template, with its parse (`None` when it had
/// syntax errors, which are already recorded).
pub struct TemplateArg {
    /// The string literal as written.
    pub lit: LitStr,
    /// The parsed template.
    pub template: Option<Template>,
}

impl TemplateArg {
    /// Parses `lit`, recording its syntax errors (spanned inside the literal
    /// when possible) and an error when it is empty.
    fn new(lit: LitStr, name: &str, errors: &mut Errors) -> Self {
        let text = lit.value();
        let template = match template::parse(&text) {
            Ok(template) if template.parts.is_empty() => {
                errors.at(
                    lit.span(),
                    format!("`{name}` is empty: write a template such as \"user:{{id}}\""),
                );
                None
            }
            Ok(template) => {
                let mut fine = true;
                for error in template.unseparated(&text) {
                    errors.at(template::span_of(&lit, error.range), error.message);
                    fine = false;
                }
                if name == "pattern" && template.literal_len() > MAX_PATTERN_LEN {
                    errors.at(
                        lit.span(),
                        format!(
                            "this pattern's literal text alone is {} bytes, over the {MAX_PATTERN_LEN} a pattern may have",
                            template.literal_len()
                        ),
                    );
                    fine = false;
                }
                fine.then_some(template)
            }
            Err(template_errors) => {
                for error in template_errors {
                    errors.at(template::span_of(&lit, error.range), error.message);
                }
                None
            }
        };
        TemplateArg { lit, template }
    }

    fn list(lits: Vec<LitStr>, name: &str, errors: &mut Errors) -> Vec<Self> {
        lits.into_iter()
            .map(|lit| TemplateArg::new(lit, name, errors))
            .collect()
    }
}

/// A choice among named string values (`strategy`, `codec`, `when`),
/// spanned at its literal.
pub struct Choice<T> {
    /// The chosen value.
    pub value: T,
    /// The literal that chose it.
    pub lit: LitStr,
}

/// Reads a string that must be one of `choices`; `noun` names it in
/// messages ("codec", "`when` value").
fn choice<T: Copy>(
    expr: &Expr,
    name: &str,
    noun: &str,
    choices: &[(&str, T)],
    errors: &mut Errors,
) -> Option<Choice<T>> {
    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
    let example = format!("\"{}\"", names.first().copied().unwrap_or_default());
    let lit = errors.ok(value::string(expr, name, &example))?;
    let given = lit.value();
    match choices.iter().find(|(n, _)| *n == given) {
        Some((_, value)) => Some(Choice { value: *value, lit }),
        None => {
            let hint = closest(&given, names.iter().copied())
                .map(|c| format!(" (did you mean \"{c}\"?)"))
                .unwrap_or_default();
            errors.at(
                lit.span(),
                format!(
                    "unknown {noun} {given:?}{hint}; expected one of {}",
                    one_of(&names).replace('`', "\"")
                ),
            );
            None
        }
    }
}

/// `strategy = "..."`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Cache-aside: read, and on a miss run the body and store its value.
    Aside,
    /// Write-through: store the value the body returns.
    Through,
    /// Write-behind: store the value, queue the body.
    Behind,
}

const STRATEGIES: &[(&str, Strategy)] = &[
    ("aside", Strategy::Aside),
    ("through", Strategy::Through),
    ("behind", Strategy::Behind),
];

/// `codec = "..."`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// postcard.
    Postcard,
    /// JSON.
    Json,
    /// `MessagePack`.
    MsgPack,
    /// bincode (needs the runtime's `bincode` feature).
    Bincode,
}

const CODECS: &[(&str, Codec)] = &[
    ("postcard", Codec::Postcard),
    ("json", Codec::Json),
    ("msgpack", Codec::MsgPack),
    ("bincode", Codec::Bincode),
];

/// `when = "..."` of `#[invalidates]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// After the body, when it succeeded.
    After,
    /// Before the body.
    Before,
    /// Before the body, and again after it when it succeeded.
    Both,
}

const WHENS: &[(&str, When)] = &[
    ("after", When::After),
    ("before", When::Before),
    ("both", When::Both),
];

/// Arguments both macros take.
#[derive(Default)]
pub struct Common {
    /// `cache = expr`.
    pub cache: Option<Expr>,
    /// `crate = "path"`.
    pub krate: Option<Path>,
}

impl Common {
    /// Reads `cache` or `crate`; returns whether `name` was one of them.
    fn read(&mut self, name: &str, expr: &Expr, errors: &mut Errors) -> bool {
        match name {
            "cache" => self.cache = Some(expr.clone()),
            "crate" => self.krate = errors.ok(value::path_string(expr, name)),
            _ => return false,
        }
        true
    }
}

/// The arguments that only mean something with `strategy = "behind"`.
#[derive(Default)]
pub struct BehindArgs {
    /// `value = arg`.
    pub value: Option<Ident>,
    /// `batch = 100`.
    pub batch: Option<u64>,
    /// `flush_interval = "5s"`.
    pub flush_interval: Option<Duration>,
    /// `flush_batch = path`.
    pub flush_batch: Option<ExprPath>,
    /// The names of those given, for errors.
    pub given: Vec<Ident>,
}

/// The arguments of `#[cached(...)]`.
#[derive(Default)]
pub struct CachedArgs {
    /// `key = "..."`.
    pub key: Option<TemplateArg>,
    /// `ttl = 1800` / `"30m"`.
    pub ttl: Option<Duration>,
    /// `jitter = 0.1`.
    pub jitter: Option<f64>,
    /// `tags = [...]`.
    pub tags: Vec<TemplateArg>,
    /// `strategy = "..."`.
    pub strategy: Option<Choice<Strategy>>,
    /// `stale = "10m"`.
    pub stale: Option<Duration>,
    /// `early_refresh = true | β` (`None` when absent or `false`).
    pub early_refresh: Option<f64>,
    /// `lock = bool`.
    pub lock: Option<bool>,
    /// `cache_none = "60s"`.
    pub cache_none: Option<Duration>,
    /// `codec = "..."`.
    pub codec: Option<Choice<Codec>>,
    /// `version = 2`.
    pub version: Option<u32>,
    /// `encrypt = true`.
    pub encrypt: Option<bool>,
    /// `cache`, `crate`.
    pub common: Common,
    /// `value`, `batch`, `flush_interval`, `flush_batch`.
    pub behind: BehindArgs,
}

const CACHED_ARGS: &[&str] = &[
    "key",
    "ttl",
    "jitter",
    "tags",
    "strategy",
    "stale",
    "early_refresh",
    "lock",
    "cache_none",
    "codec",
    "version",
    "encrypt",
    "cache",
    "crate",
    "value",
    "batch",
    "flush_interval",
    "flush_batch",
];

impl CachedArgs {
    /// Reads the attribute's arguments, recording every error.
    pub fn parse(tokens: TokenStream, errors: &mut Errors) -> Self {
        let mut args = CachedArgs::default();
        read_args(
            tokens,
            "cached",
            CACHED_ARGS,
            errors,
            |name, ident, expr, errors| args.read(name, ident, expr, errors),
        );
        args
    }

    fn read(&mut self, name: &str, ident: &Ident, expr: &Expr, errors: &mut Errors) {
        match name {
            "key" => {
                let lit = errors.ok(value::string(expr, name, "\"user:{id}\""));
                self.key = lit.map(|lit| TemplateArg::new(lit, name, errors));
            }
            "ttl" => self.ttl = errors.ok(value::duration(expr, name)),
            "jitter" => self.jitter = errors.ok(value::fraction(expr, name)),
            "tags" => {
                let lits = errors.ok(value::strings(expr, name, "[\"users\", \"user:{id}\"]"));
                self.tags = TemplateArg::list(lits.unwrap_or_default(), "tag", errors);
            }
            "strategy" => self.strategy = choice(expr, name, "strategy", STRATEGIES, errors),
            "stale" => self.stale = errors.ok(value::duration(expr, name)),
            "early_refresh" => self.early_refresh = errors.ok(value::beta(expr, name)).flatten(),
            "lock" => self.lock = errors.ok(value::boolean(expr, name)),
            "encrypt" => self.encrypt = errors.ok(value::boolean(expr, name)),
            "cache_none" => self.cache_none = errors.ok(value::duration(expr, name)),
            "codec" => self.codec = choice(expr, name, "codec", CODECS, errors),
            "version" => {
                let version = errors.ok(value::integer(expr, name, 1, u32::MAX.into()));
                self.version = version.and_then(|v| u32::try_from(v).ok());
            }
            "value" | "batch" | "flush_interval" | "flush_batch" => {
                self.behind.given.push(ident.clone());
                let behind = &mut self.behind;
                match name {
                    "value" => behind.value = errors.ok(value::ident(expr, name)),
                    "batch" => behind.batch = errors.ok(value::integer(expr, name, 1, 1_000_000)),
                    "flush_interval" => {
                        behind.flush_interval = errors.ok(value::duration(expr, name));
                    }
                    _ => behind.flush_batch = errors.ok(value::path(expr, name)),
                }
            }
            _ => {
                self.common.read(name, expr, errors);
            }
        }
    }
}

/// The arguments of `#[invalidates(...)]`.
#[derive(Default)]
pub struct InvalidatesArgs {
    /// `keys = [...]`.
    pub keys: Vec<TemplateArg>,
    /// `tags = [...]`.
    pub tags: Vec<TemplateArg>,
    /// `patterns = [...]`.
    pub patterns: Vec<TemplateArg>,
    /// `when = "..."`.
    pub when: Option<Choice<When>>,
    /// `cache`, `crate`.
    pub common: Common,
    /// Whether any of keys/tags/patterns was given (even with errors).
    named_any: bool,
}

const INVALIDATES_ARGS: &[&str] = &["keys", "tags", "patterns", "when", "cache", "crate"];

impl InvalidatesArgs {
    /// Reads the attribute's arguments, recording every error, including
    /// "nothing to invalidate" (spanned at the attribute).
    pub fn parse(tokens: TokenStream, errors: &mut Errors) -> Self {
        let mut args = InvalidatesArgs::default();
        let parsed = read_args(
            tokens,
            "invalidates",
            INVALIDATES_ARGS,
            errors,
            |name, _, expr, errors| args.read(name, expr, errors),
        );
        // A list that did not parse says nothing about what it meant to
        // invalidate: its syntax error is reported alone.
        if parsed && !args.named_any {
            errors.at(
                Span::call_site(),
                "`#[invalidates]` has nothing to invalidate: give at least one of `keys = [...]`, `tags = [...]` or `patterns = [...]`",
            );
        }
        args
    }

    fn read(&mut self, name: &str, expr: &Expr, errors: &mut Errors) {
        let (list, singular, example) = match name {
            "keys" => (&mut self.keys, "key", "[\"user:{id}\"]"),
            "tags" => (&mut self.tags, "tag", "[\"users\"]"),
            "patterns" => (&mut self.patterns, "pattern", "[\"search:*\"]"),
            "when" => {
                self.when = choice(expr, name, "`when` value", WHENS, errors);
                return;
            }
            _ => {
                self.common.read(name, expr, errors);
                return;
            }
        };
        let lits = errors.ok(value::strings(expr, name, example));
        match lits {
            Some(lits) => {
                self.named_any |= !lits.is_empty();
                *list = TemplateArg::list(lits, singular, errors);
            }
            // Ill-typed: already reported; do not also say "nothing to invalidate".
            None => self.named_any = true,
        }
    }
}
