//! Key, tag and pattern templates such as `"user:{id}"`,
//! `"{self.tenant}:{user.id}"` or `"search:{filter:hash}"`.
//!
//! A template is literal text and placeholders. A placeholder names an
//! argument (or `self`), optionally followed by field accesses (`.name`,
//! `.0`) and one modifier (`:hash`). `{{` and `}}` stand for literal braces.
//!
//! Parsing works on the string's value and reports byte ranges; [`span_of`]
//! turns a range into a span inside the string literal when the compiler can
//! point there, and into the literal's span otherwise.

use std::ops::Range;

use proc_macro2::Span;

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Literal text and placeholders, in order. Adjacent text is merged.
    pub parts: Vec<Part>,
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Literal text, written to the key as it is.
    Text(String),
    /// A placeholder, written escaped (or hashed).
    Hole(Placeholder),
}

/// `{root.field.field:modifier}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    /// The argument name, or `self`.
    pub root: String,
    /// Field accesses after the root: identifiers or tuple indices.
    pub fields: Vec<String>,
    /// How the value is written.
    pub modifier: Modifier,
    /// Byte range of the whole `{...}` in the template's value.
    pub range: Range<usize>,
}

impl Placeholder {
    /// The placeholder as written, braces included (for messages).
    pub fn source<'a>(&self, text: &'a str) -> &'a str {
        text.get(self.range.clone()).unwrap_or_default()
    }
}

/// How a placeholder's value is written into the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modifier {
    /// `{arg}`: through `Display`, escaped.
    Display,
    /// `{arg:hash}`: the hash of the serialized value.
    Hash,
}

/// The valid modifiers, for messages.
pub const MODIFIERS: &[&str] = &["hash"];

/// A syntax error in a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// Byte range of the offending text in the template's value.
    pub range: Range<usize>,
    /// What is wrong, and how to write it instead.
    pub message: String,
}

/// Parses a template, reporting every syntax error it holds.
pub fn parse(text: &str) -> Result<Template, Vec<TemplateError>> {
    let mut parts = Vec::new();
    let mut errors = Vec::new();
    let mut literal = String::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' if bytes.get(i + 1) == Some(&b'{') => {
                literal.push('{');
                i += 2;
            }
            b'}' if bytes.get(i + 1) == Some(&b'}') => {
                literal.push('}');
                i += 2;
            }
            b'{' => {
                let Some(close) = text[i + 1..].find(['{', '}']).map(|at| i + 1 + at) else {
                    errors.push(unclosed(i..text.len()));
                    break;
                };
                if bytes[close] == b'{' {
                    errors.push(unclosed(i..close));
                    i = close;
                    continue;
                }
                match placeholder(text, i..close + 1) {
                    Ok(hole) => {
                        if !literal.is_empty() {
                            parts.push(Part::Text(std::mem::take(&mut literal)));
                        }
                        parts.push(Part::Hole(hole));
                    }
                    Err(error) => errors.push(error),
                }
                i = close + 1;
            }
            b'}' => {
                errors.push(TemplateError {
                    range: i..i + 1,
                    message: "unmatched `}` in template; write `}}` for a literal brace"
                        .to_string(),
                });
                i += 1;
            }
            _ => {
                // Copy the whole run of text up to the next brace.
                let end = text[i..].find(['{', '}']).map_or(text.len(), |at| i + at);
                literal.push_str(&text[i..end]);
                i = end;
            }
        }
    }
    if !literal.is_empty() {
        parts.push(Part::Text(literal));
    }
    if errors.is_empty() {
        Ok(Template { parts })
    } else {
        Err(errors)
    }
}

/// Whether `c` can separate two placeholders: an escaped value never holds
/// it (the runtime escapes every byte of a value but ASCII letters and
/// digits, as `%XX`).
pub fn separates(c: char) -> bool {
    !c.is_ascii_alphanumeric() && c != '%'
}

impl Template {
    /// Errors for each pair of placeholders with no separator between them:
    /// their values could run together, so that two different calls share a
    /// key (`"{a}{b}"` with `(1, 23)` and `(12, 3)`).
    pub fn unseparated(&self, text: &str) -> Vec<TemplateError> {
        let mut errors = Vec::new();
        let mut last: Option<&Placeholder> = None;
        let mut separated = true;
        for part in &self.parts {
            match part {
                Part::Text(t) => separated |= t.chars().any(separates),
                Part::Hole(hole) => {
                    if let (Some(prev), false) = (last, separated) {
                        errors.push(TemplateError {
                            range: prev.range.start..hole.range.end,
                            message: format!(
                                "`{}` and `{}` need a separator between them, such as `:`, `-` or `/` \
                                 (anything but an ASCII letter, a digit or `%`, which values are escaped into): \
                                 without one, two different values could share a key",
                                prev.source(text),
                                hole.source(text)
                            ),
                        });
                    }
                    last = Some(hole);
                    separated = false;
                }
            }
        }
        errors
    }

    /// Bytes of literal text, placeholders left out.
    pub fn literal_len(&self) -> usize {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.len(),
                Part::Hole(_) => 0,
            })
            .sum()
    }
}

fn unclosed(range: Range<usize>) -> TemplateError {
    TemplateError {
        range,
        message: "unclosed `{` in template; close the placeholder with `}`, or write `{{` for a literal brace"
            .to_string(),
    }
}

/// Parses the placeholder at `range` (braces included).
fn placeholder(text: &str, range: Range<usize>) -> Result<Placeholder, TemplateError> {
    let source = &text[range.clone()];
    let inner = &source[1..source.len() - 1];
    let error = |message: String| TemplateError {
        range: range.clone(),
        message,
    };
    if inner.is_empty() {
        return Err(error(
            "empty placeholder `{}`: name an argument, as in `{id}`, `{user.id}` or `{filter:hash}`"
                .to_string(),
        ));
    }
    let (path, modifier) = match inner.split_once(':') {
        None => (inner, Modifier::Display),
        Some((path, "hash")) => (path, Modifier::Hash),
        Some((_, other)) => {
            return Err(error(format!(
                "unknown modifier `{other}` in `{source}`; the only modifier is `:{}`",
                MODIFIERS.join("`, `:")
            )));
        }
    };
    let mut segments = path.split('.');
    let root = segments.next().unwrap_or_default();
    let fields: Vec<&str> = segments.collect();
    let invalid = || {
        error(format!(
            "invalid placeholder `{source}`: expected an argument name, then optional `.field`s \
             and `:hash`, as in `{{id}}`, `{{user.id}}` or `{{filter:hash}}`"
        ))
    };
    if !(root == "self" || is_identifier(root)) {
        return Err(invalid());
    }
    if !fields.iter().all(|f| is_identifier(f) || is_tuple_index(f)) {
        return Err(invalid());
    }
    Ok(Placeholder {
        root: root.to_string(),
        fields: fields.into_iter().map(str::to_string).collect(),
        modifier,
        range,
    })
}

/// A Rust identifier (raw identifiers included), not a keyword.
pub fn is_identifier(s: &str) -> bool {
    !s.is_empty() && !s.contains(char::is_whitespace) && syn::parse_str::<syn::Ident>(s).is_ok()
}

/// A tuple field index: `0`, `1`, `12`, but not `01`.
pub fn is_tuple_index(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'))
        && s.parse::<u32>().is_ok()
}

/// The span of `range` (a byte range of the literal's value) inside
/// `lit`, or the whole literal's span when the compiler cannot point inside
/// it (stable compilers, or literals written with escapes).
pub fn span_of(lit: &syn::LitStr, range: Range<usize>) -> Span {
    subspan(lit, range).unwrap_or_else(|| lit.span())
}

fn subspan(lit: &syn::LitStr, range: Range<usize>) -> Option<Span> {
    let token = lit.token();
    let repr = token.to_string();
    let value = lit.value();
    // `"..."` or `r#"..."#`: the value starts after the first quote, and the
    // ranges only carry over when the source holds the value unescaped.
    let start = repr.find('"')? + 1;
    if repr.get(start..start + value.len())? != value {
        return None;
    }
    token.subspan(start + range.start..start + range.end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hole(root: &str, fields: &[&str], modifier: Modifier, range: Range<usize>) -> Part {
        Part::Hole(Placeholder {
            root: root.to_string(),
            fields: fields.iter().map(|f| f.to_string()).collect(),
            modifier,
            range,
        })
    }

    fn text(s: &str) -> Part {
        Part::Text(s.to_string())
    }

    fn errors(template: &str) -> Vec<(Range<usize>, String)> {
        match parse(template) {
            Ok(t) => panic!("{template:?} parsed as {t:?}"),
            Err(errors) => errors.into_iter().map(|e| (e.range, e.message)).collect(),
        }
    }

    #[test]
    fn placeholders_need_a_separator() {
        let unseparated = |t: &str| -> Vec<(usize, usize)> {
            parse(t)
                .expect("parses")
                .unseparated(t)
                .into_iter()
                .map(|e| (e.range.start, e.range.end))
                .collect()
        };
        assert_eq!(unseparated("{a}{b}"), [(0, 6)]);
        assert_eq!(unseparated("k:{a}x{b}"), [(2, 9)]);
        assert_eq!(unseparated("k:{a}%{b}"), [(2, 9)]);
        assert_eq!(unseparated("k:{a}x{b}7{c}"), [(2, 9), (6, 13)]);
        for fine in [
            "k:{a}:{b}",
            "{a}-{b}",
            "{a}/{b}",
            "{a}.{b}",
            "{a}_x{b}",
            "{a}é{b}",
            "{a}{{{b}",
            "{a}",
        ] {
            assert!(unseparated(fine).is_empty(), "{fine}");
        }
    }

    #[test]
    fn literal_text_only() {
        assert_eq!(parse("users").unwrap().parts, vec![text("users")]);
        assert_eq!(parse("").unwrap().parts, vec![]);
        assert_eq!(parse("search:*").unwrap().parts, vec![text("search:*")]);
    }

    #[test]
    fn placeholders_and_text() {
        let t = parse("user:{id}:{name}").unwrap();
        assert_eq!(
            t.parts,
            vec![
                text("user:"),
                hole("id", &[], Modifier::Display, 5..9),
                text(":"),
                hole("name", &[], Modifier::Display, 10..16),
            ]
        );
    }

    #[test]
    fn fields_self_and_hash() {
        let t = parse("{self.tenant}/{user.address.city}/{pair.0}/{filter:hash}").unwrap();
        assert_eq!(
            t.parts,
            vec![
                hole("self", &["tenant"], Modifier::Display, 0..13),
                text("/"),
                hole("user", &["address", "city"], Modifier::Display, 14..33),
                text("/"),
                hole("pair", &["0"], Modifier::Display, 34..42),
                text("/"),
                hole("filter", &[], Modifier::Hash, 43..56),
            ]
        );
        let t = parse("{user.id:hash}").unwrap();
        assert_eq!(t.parts, vec![hole("user", &["id"], Modifier::Hash, 0..14)]);
    }

    #[test]
    fn raw_identifiers_are_names() {
        let t = parse("{r#type}.{x.r#type}").unwrap();
        assert_eq!(
            t.parts,
            vec![
                hole("r#type", &[], Modifier::Display, 0..8),
                text("."),
                hole("x", &["r#type"], Modifier::Display, 9..19),
            ]
        );
    }

    #[test]
    fn doubled_braces_are_literal() {
        let t = parse("a{{b}}c{id}}}").unwrap();
        assert_eq!(
            t.parts,
            vec![
                text("a{b}c"),
                hole("id", &[], Modifier::Display, 7..11),
                text("}"),
            ]
        );
    }

    #[test]
    fn non_ascii_text_keeps_byte_ranges() {
        let t = parse("é:{id}").unwrap();
        assert_eq!(
            t.parts,
            vec![text("é:"), hole("id", &[], Modifier::Display, 3..7)]
        );
    }

    #[test]
    fn unclosed_brace() {
        let e = errors("user:{id");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].0, 5..8);
        assert!(e[0].1.starts_with("unclosed `{`"), "{}", e[0].1);
        let e = errors("{a{b}");
        assert_eq!(e[0].0, 0..2);
        assert!(e[0].1.starts_with("unclosed `{`"));
    }

    #[test]
    fn unmatched_closing_brace() {
        let e = errors("user}");
        assert_eq!(e, vec![(4..5, e[0].1.clone())]);
        assert!(e[0].1.starts_with("unmatched `}`"));
    }

    #[test]
    fn empty_placeholder() {
        let e = errors("a:{}");
        assert_eq!(e[0].0, 2..4);
        assert!(e[0].1.starts_with("empty placeholder"), "{}", e[0].1);
    }

    #[test]
    fn unknown_modifier() {
        let e = errors("{id:foo}");
        assert_eq!(e[0].0, 0..8);
        assert!(e[0].1.contains("unknown modifier `foo`"), "{}", e[0].1);
        assert!(e[0].1.contains("`:hash`"), "{}", e[0].1);
        let e = errors("{id:}");
        assert!(e[0].1.contains("unknown modifier ``"), "{}", e[0].1);
        let e = errors("{id:hash:hash}");
        assert!(
            e[0].1.contains("unknown modifier `hash:hash`"),
            "{}",
            e[0].1
        );
    }

    #[test]
    fn invalid_names() {
        for bad in [
            "{a b}", "{ a}", "{a.}", "{.a}", "{a..b}", "{1a}", "{type}", "{a.01}", "{a.-}",
            "{:hash}", "{_}", "{a.self}",
        ] {
            let e = errors(bad);
            assert_eq!(e.len(), 1, "{bad}");
            assert!(
                e[0].1.starts_with("invalid placeholder") || e[0].1.starts_with("empty"),
                "{bad}: {}",
                e[0].1
            );
        }
    }

    #[test]
    fn every_error_is_reported() {
        let e = errors("{}:{a:x}:}:{ok}:{b");
        let ranges: Vec<_> = e.iter().map(|(r, _)| r.clone()).collect();
        assert_eq!(ranges, vec![0..2, 3..8, 9..10, 16..18]);
    }

    #[test]
    fn identifiers_and_indices() {
        assert!(is_identifier("id"));
        assert!(is_identifier("_id"));
        assert!(is_identifier("r#type"));
        assert!(is_identifier("données"));
        assert!(!is_identifier("type"));
        assert!(!is_identifier(""));
        assert!(!is_identifier("a b"));
        assert!(is_tuple_index("0"));
        assert!(is_tuple_index("12"));
        assert!(!is_tuple_index("01"));
        assert!(!is_tuple_index("99999999999"));
        assert!(!is_tuple_index("-1"));
    }

    #[test]
    fn spans_fall_back_to_the_literal() {
        let lit = syn::LitStr::new("user:{id}", Span::call_site());
        // Outside a compiler the subspan is computed by the fallback
        // implementation or not at all; either way, no panic.
        let _ = span_of(&lit, 5..9);
        let escaped: syn::LitStr = syn::parse_str(r#""a\"{id}""#).unwrap();
        assert_eq!(escaped.value(), "a\"{id}");
        let _ = span_of(&escaped, 2..6);
    }
}
