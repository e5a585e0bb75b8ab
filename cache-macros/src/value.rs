//! Reading the value of one `name = value` argument: strings, durations,
//! fractions, booleans, integers, template arrays and paths. Each reader
//! says what it expected, with an example, when the value has another type.

use std::time::Duration;

use syn::{Expr, Lit, LitStr, UnOp};

/// Strips invisible groups and parentheses (`$e:expr` in `macro_rules!`).
fn peel(expr: &Expr) -> &Expr {
    match expr {
        Expr::Group(group) => peel(&group.expr),
        Expr::Paren(paren) => peel(&paren.expr),
        other => other,
    }
}

/// The literal `expr` is, if it is one.
fn literal(expr: &Expr) -> Option<&Lit> {
    match peel(expr) {
        Expr::Lit(lit) => Some(&lit.lit),
        _ => None,
    }
}

/// Whether `expr` is a negated literal (`-5`, `-0.5`).
fn is_negative_literal(expr: &Expr) -> bool {
    match peel(expr) {
        Expr::Unary(unary) => matches!(unary.op, UnOp::Neg(_)) && literal(&unary.expr).is_some(),
        _ => false,
    }
}

fn expected(expr: &Expr, name: &str, what: &str) -> syn::Error {
    syn::Error::new_spanned(expr, format!("`{name}` expects {what}"))
}

/// A string literal: `key = "user:{id}"`.
pub fn string(expr: &Expr, name: &str, example: &str) -> syn::Result<LitStr> {
    match literal(expr) {
        Some(Lit::Str(lit)) => Ok(lit.clone()),
        _ => Err(expected(
            expr,
            name,
            &format!("a string literal, as in `{name} = {example}`"),
        )),
    }
}

/// `true` or `false`.
pub fn boolean(expr: &Expr, name: &str) -> syn::Result<bool> {
    match literal(expr) {
        Some(Lit::Bool(lit)) => Ok(lit.value()),
        _ => Err(expected(
            expr,
            name,
            &format!("`true` or `false`, as in `{name} = false`"),
        )),
    }
}

/// A positive duration: an integer number of seconds (`1800`) or a
/// humantime string (`"30m"`, `"1h 30m"`, `"500ms"`).
pub fn duration(expr: &Expr, name: &str) -> syn::Result<Duration> {
    let example = format!("as in `{name} = 1800` (seconds) or `{name} = \"30m\"`");
    if is_negative_literal(expr) {
        return Err(syn::Error::new_spanned(
            expr,
            format!("`{name}` must be positive, {example}"),
        ));
    }
    let duration = match literal(expr) {
        Some(Lit::Int(int)) => {
            if !int.suffix().is_empty() {
                return Err(syn::Error::new(
                    int.span(),
                    format!(
                        "`{name} = {int}`: write a duration with units as a string, as in `{name} = \"{}{}\"`",
                        int.base10_digits(),
                        int.suffix()
                    ),
                ));
            }
            let seconds: u64 = int
                .base10_parse()
                .map_err(|_| syn::Error::new(int.span(), format!("`{name}` is too large")))?;
            Duration::from_secs(seconds)
        }
        Some(Lit::Str(text)) => humantime::parse_duration(&text.value()).map_err(|error| {
            syn::Error::new(text.span(), unparsable(name, &text.value(), &error))
        })?,
        _ => return Err(expected(expr, name, &format!("a duration, {example}"))),
    };
    if duration.is_zero() {
        return Err(syn::Error::new_spanned(
            expr,
            format!("`{name}` must be positive, {example}"),
        ));
    }
    Ok(duration)
}

/// What is wrong with a duration string, in the user's terms (the parser's
/// own message names positions and expected tokens).
fn unparsable(name: &str, text: &str, error: &humantime::DurationError) -> String {
    match error {
        humantime::DurationError::NumberOverflow => {
            format!("`{name}`: {text:?} is too long a duration")
        }
        _ => format!(
            "`{name}`: {text:?} is not a duration; write it as \"30m\", \"1h 30m\", \"90s\" or \"500ms\""
        ),
    }
}

/// A number (integer or float literal), with its span's literal checked for
/// a sign. Negative numbers are reported with `range`.
fn number(expr: &Expr, name: &str, range: &str) -> syn::Result<f64> {
    if is_negative_literal(expr) {
        return Err(syn::Error::new_spanned(
            expr,
            format!("`{name}` must be within {range}"),
        ));
    }
    let value = match literal(expr) {
        Some(Lit::Float(float)) => float.base10_parse::<f64>(),
        Some(Lit::Int(int)) => int.base10_parse::<f64>(),
        _ => {
            return Err(expected(expr, name, &format!("a number within {range}")));
        }
    };
    value.map_err(|error| syn::Error::new_spanned(expr, format!("`{name}`: {error}")))
}

/// A fraction within `0 ..= 1`: `jitter = 0.1`.
pub fn fraction(expr: &Expr, name: &str) -> syn::Result<f64> {
    let range = "0.0 ..= 1.0, as in `jitter = 0.1`";
    let value = number(expr, name, range)?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(syn::Error::new_spanned(
            expr,
            format!("`{name}` must be within {range}"),
        ))
    }
}

/// `early_refresh = true` (β = 1), `= false` (off), or `= 1.5` (β > 0).
pub fn beta(expr: &Expr, name: &str) -> syn::Result<Option<f64>> {
    if let Some(Lit::Bool(lit)) = literal(expr) {
        return Ok(lit.value().then_some(1.0));
    }
    let what = format!("`true`, `false`, or a factor β > 0 as in `{name} = 1.5`");
    let value = match literal(expr) {
        Some(Lit::Float(_) | Lit::Int(_)) => number(expr, name, &what)?,
        _ if is_negative_literal(expr) => {
            return Err(syn::Error::new_spanned(
                expr,
                format!("`{name}` must be positive"),
            ));
        }
        _ => return Err(expected(expr, name, &what)),
    };
    if value > 0.0 && value.is_finite() {
        Ok(Some(value))
    } else {
        Err(syn::Error::new_spanned(
            expr,
            format!("`{name}` must be positive: {what}"),
        ))
    }
}

/// An unsuffixed integer within `min ..= max`.
pub fn integer(expr: &Expr, name: &str, min: u64, max: u64) -> syn::Result<u64> {
    let bound = if max >= u64::from(u32::MAX) {
        format!("of at least {min}")
    } else {
        format!("from {min} to {max}")
    };
    let range = format!("an integer {bound}, as in `{name} = {}`", min.max(2));
    if is_negative_literal(expr) {
        return Err(syn::Error::new_spanned(
            expr,
            format!("`{name}` must be {range}"),
        ));
    }
    let Some(Lit::Int(int)) = literal(expr) else {
        return Err(expected(expr, name, &range));
    };
    match int.base10_parse::<u64>() {
        Ok(value) if (min..=max).contains(&value) => Ok(value),
        _ => Err(syn::Error::new(
            int.span(),
            format!("`{name}` must be {range}"),
        )),
    }
}

/// An array of string literals: `tags = ["users", "user:{id}"]`.
pub fn strings(expr: &Expr, name: &str, example: &str) -> syn::Result<Vec<LitStr>> {
    let what = format!("an array of string literals, as in `{name} = {example}`");
    let Expr::Array(array) = peel(expr) else {
        return Err(expected(expr, name, &what));
    };
    let mut out = Vec::with_capacity(array.elems.len());
    let mut errors: Option<syn::Error> = None;
    for elem in &array.elems {
        match literal(elem) {
            Some(Lit::Str(lit)) => out.push(lit.clone()),
            _ => {
                let error = syn::Error::new_spanned(
                    elem,
                    format!("`{name}` holds string literals only, as in `{name} = {example}`"),
                );
                match &mut errors {
                    Some(errors) => errors.combine(error),
                    None => errors = Some(error),
                }
            }
        }
    }
    match errors {
        Some(errors) => Err(errors),
        None => Ok(out),
    }
}

/// A bare identifier: `value = item`.
pub fn ident(expr: &Expr, name: &str) -> syn::Result<syn::Ident> {
    if let Expr::Path(path) = peel(expr)
        && path.qself.is_none()
        && let Some(ident) = path.path.get_ident()
    {
        return Ok(ident.clone());
    }
    Err(expected(
        expr,
        name,
        &format!("the name of an argument, as in `{name} = item`"),
    ))
}

/// A path expression: `flush_batch = db::save_all`.
pub fn path(expr: &Expr, name: &str) -> syn::Result<syn::ExprPath> {
    match peel(expr) {
        Expr::Path(path) => Ok(path.clone()),
        _ => Err(expected(
            expr,
            name,
            &format!("the path of a function, as in `{name} = save_all`"),
        )),
    }
}

/// A path written as a string: `crate = "my_runtime"`.
pub fn path_string(expr: &Expr, name: &str) -> syn::Result<syn::Path> {
    let lit = string(expr, name, "\"cache_runtime\"")?;
    lit.parse::<syn::Path>().map_err(|_| {
        syn::Error::new(
            lit.span(),
            format!(
                "`{name}` expects a path such as \"cache_runtime\" or \"::my_crate::cache\", found {:?}",
                lit.value()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expr(s: &str) -> Expr {
        syn::parse_str(s).unwrap()
    }

    fn message<T>(r: syn::Result<T>) -> String {
        match r {
            Ok(_) => panic!("expected an error"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn durations() {
        assert_eq!(
            duration(&expr("1800"), "ttl").unwrap(),
            Duration::from_secs(1800)
        );
        assert_eq!(
            duration(&expr("\"30m\""), "ttl").unwrap(),
            Duration::from_secs(1800)
        );
        assert_eq!(
            duration(&expr("\"1h 30m\""), "ttl").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            duration(&expr("\"250ms\""), "ttl").unwrap(),
            Duration::from_millis(250)
        );
        assert!(message(duration(&expr("0"), "ttl")).contains("must be positive"));
        assert!(message(duration(&expr("\"0s\""), "ttl")).contains("must be positive"));
        assert!(message(duration(&expr("-5"), "ttl")).contains("must be positive"));
        assert_eq!(
            message(duration(&expr("\"half an hour\""), "ttl")),
            "`ttl`: \"half an hour\" is not a duration; write it as \"30m\", \"1h 30m\", \"90s\" or \"500ms\""
        );
        assert!(message(duration(&expr("\"5 parsecs\""), "stale")).contains("is not a duration"));
        assert!(message(duration(&expr("\"99999999999999 years\""), "ttl")).contains("too long"));
        assert!(message(duration(&expr("true"), "ttl")).contains("expects a duration"));
        assert!(message(duration(&expr("30m"), "ttl")).contains("\"30m\""));
        assert!(message(duration(&expr("99999999999999999999999"), "ttl")).contains("too large"));
    }

    #[test]
    fn fractions() {
        assert_eq!(fraction(&expr("0.1"), "jitter").unwrap(), 0.1);
        assert_eq!(fraction(&expr("0"), "jitter").unwrap(), 0.0);
        assert_eq!(fraction(&expr("1"), "jitter").unwrap(), 1.0);
        assert!(message(fraction(&expr("1.5"), "jitter")).contains("within 0.0 ..= 1.0"));
        assert!(message(fraction(&expr("-0.1"), "jitter")).contains("within 0.0 ..= 1.0"));
        assert!(message(fraction(&expr("\"0.1\""), "jitter")).contains("expects a number"));
    }

    #[test]
    fn betas() {
        assert_eq!(beta(&expr("true"), "early_refresh").unwrap(), Some(1.0));
        assert_eq!(beta(&expr("false"), "early_refresh").unwrap(), None);
        assert_eq!(beta(&expr("1.5"), "early_refresh").unwrap(), Some(1.5));
        assert_eq!(beta(&expr("2"), "early_refresh").unwrap(), Some(2.0));
        assert!(message(beta(&expr("0.0"), "early_refresh")).contains("must be positive"));
        assert!(message(beta(&expr("-1.0"), "early_refresh")).contains("must be positive"));
        assert!(message(beta(&expr("\"x\""), "early_refresh")).contains("expects `true`"));
    }

    #[test]
    fn integers_booleans_strings() {
        assert_eq!(integer(&expr("2"), "version", 1, 100).unwrap(), 2);
        assert!(message(integer(&expr("0"), "version", 1, 100)).contains("from 1 to 100"));
        assert!(message(integer(&expr("-1"), "version", 1, 100)).contains("from 1 to 100"));
        assert!(message(integer(&expr("1.0"), "version", 1, 100)).contains("expects an integer"));
        assert!(!boolean(&expr("false"), "lock").unwrap());
        assert!(message(boolean(&expr("\"yes\""), "lock")).contains("expects `true` or `false`"));
        assert_eq!(string(&expr("\"k\""), "key", "\"k\"").unwrap().value(), "k");
        assert!(message(string(&expr("1"), "key", "\"k\"")).contains("expects a string"));
    }

    #[test]
    fn arrays_idents_paths() {
        let tags = strings(&expr(r#"["a", "b:{id}"]"#), "tags", "[\"a\"]").unwrap();
        assert_eq!(
            tags.iter().map(LitStr::value).collect::<Vec<_>>(),
            ["a", "b:{id}"]
        );
        assert!(strings(&expr("[]"), "tags", "[\"a\"]").unwrap().is_empty());
        assert!(message(strings(&expr("\"a\""), "tags", "[\"a\"]")).contains("expects an array"));
        assert!(
            message(strings(&expr("[\"a\", 1]"), "tags", "[\"a\"]"))
                .contains("string literals only")
        );
        assert_eq!(ident(&expr("item"), "value").unwrap(), "item");
        assert!(message(ident(&expr("a.b"), "value")).contains("the name of an argument"));
        assert!(path(&expr("db::save"), "flush_batch").is_ok());
        assert!(path(&expr("1"), "flush_batch").is_err());
        assert!(path_string(&expr("\"::renamed\""), "crate").is_ok());
        assert!(message(path_string(&expr("\"a b\""), "crate")).contains("expects a path"));
    }
}
