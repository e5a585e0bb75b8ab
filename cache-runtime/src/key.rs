//! Key rendering, escaping and hashing.
//!
//! A key template such as `"user:{id}"` is rendered by writing its literal
//! text verbatim and every placeholder value *escaped*: each byte of a value
//! that is not an ASCII letter or digit is written as `%XX`. So a value can
//! never contain a separator (`:`, `-`, `/`, `.`, anything but letters,
//! digits and `%`), the braces that choose a cluster slot, or a glob
//! wildcard; and the macros refuse a template with two placeholders that no
//! such separator parts. Together these make rendering injective: two calls
//! whose placeholder values differ never share a key, and a value inside a
//! pattern is literal and can never widen it.
//!
//! A key whose stored form would be longer than [`MAX_KEY_LEN`] keeps its
//! first bytes readable and ends in a hash of the whole key (see
//! the guide), so no argument can make Redis keys grow without bound,
//! and a pattern still finds it. Hashes, here and for `{arg:hash}`, are
//! BLAKE3 truncated to 192 bits: finding two inputs with the same hash takes
//! about 2^96 work.
//!
//! Values are escaped with [`percent-encoding`](https://docs.rs/percent-encoding).

use std::fmt::{self, Write as _};

use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;

/// Bytes escaped inside placeholder values: all but ASCII letters and digits.
const VALUE_ESCAPES: &AsciiSet = NON_ALPHANUMERIC;

/// Characters escaped in a whole key or pattern given by hand: only those
/// that would break the hash-tag framing of the stored key.
const FRAME_ESCAPES: &AsciiSet = &CONTROLS.add(b' ').add(b'{').add(b'}');

/// Escapes one placeholder value into `out`.
///
/// ```
/// let mut s = String::new();
/// cache_runtime::key::escape_value_into("a:b-c*{d}", &mut s);
/// assert_eq!(s, "a%3Ab%2Dc%2A%7Bd%7D");
/// ```
pub fn escape_value_into(value: &str, out: &mut String) {
    if value.bytes().all(|b| b.is_ascii_alphanumeric()) {
        out.push_str(value);
        return;
    }
    for part in utf8_percent_encode(value, VALUE_ESCAPES) {
        out.push_str(part);
    }
}

/// Whether `c` can separate two placeholders: an escaped value never holds
/// it (anything but an ASCII letter, an ASCII digit and `%`).
///
/// ```
/// use cache_runtime::key::separates;
/// assert!(separates(':') && separates('-') && separates('/') && separates('é'));
/// assert!(!separates('x') && !separates('7') && !separates('%'));
/// ```
pub fn separates(c: char) -> bool {
    !c.is_ascii_alphanumeric() && c != '%'
}

/// Escapes the characters of a hand-written key that would break the stored
/// key's framing (`{`, `}`, white space, control characters).
pub(crate) fn escape_frame_into(key: &str, out: &mut String) {
    // Most keys need no escaping: copy them in one go. (Printable ASCII
    // but for `{` and `}` is exactly what `FRAME_ESCAPES` leaves alone.)
    if key
        .bytes()
        .all(|b| (b'!'..=b'~').contains(&b) && b != b'{' && b != b'}')
    {
        out.push_str(key);
        return;
    }
    for part in utf8_percent_encode(key, FRAME_ESCAPES) {
        out.push_str(part);
    }
}

/// Longest key (or tag), after escaping, stored as it is. A longer one (and
/// the empty key) is stored as its first [`KEPT`] bytes and a hash of the
/// whole (`prefix:{head}#hash`).
pub const MAX_KEY_LEN: usize = 512;

/// Bytes of a long key kept readable in its stored form.
pub const KEPT: usize = 448;

/// Hex digits of a hash in a key: 192 bits.
pub const HASH_HEX: usize = 48;

/// What follows the closing brace of a long key's stored form (then the
/// hash). Nothing else can follow it: a short key's brace is followed by
/// nothing, `:L` or `:v…`.
pub(crate) const LONG_MARK: &str = "}#";

/// Appends the stored form of a key or tag, braces included: `{key}`,
/// escaped for the framing; or, when that is longer than [`MAX_KEY_LEN`] or
/// empty, `{head}#hash`: its first [`KEPT`] bytes (at most; cut on a
/// character boundary), then the BLAKE3 hash of the whole. The head keeps
/// the key's slot choice and lets a pattern find it (see
/// `StoredPattern`). The empty key's head is `#`: an empty `{}` would make
/// Redis Cluster hash the key as a whole, which would part an entry from its
/// lease.
pub(crate) fn push_framed(key: &str, out: &mut String) {
    out.push('{');
    let start = out.len();
    escape_frame_into(key, out);
    let len = out.len() - start;
    if len > 0 && len <= MAX_KEY_LEN {
        out.push('}');
        return;
    }
    let digest = hash_hex(&out.as_bytes()[start..]);
    let mut head = KEPT.min(len);
    while !out.is_char_boundary(start + head) {
        head -= 1;
    }
    out.truncate(start + head);
    if head == 0 {
        out.push('#');
    }
    out.push_str(LONG_MARK);
    out.push_str(&digest);
}

/// The literal head of a glob pattern (what comes before its first
/// wildcard), at most `max` bytes, cut on a character boundary and never
/// inside a `\\x` escape. Every key the pattern matches starts with what
/// the head matches.
pub(crate) fn glob_head(pattern: &str, max: usize) -> &str {
    let bytes = pattern.as_bytes();
    let mut end = 0;
    while end < bytes.len() && end < max {
        match bytes[end] {
            b'*' | b'?' | b'[' => break,
            b'\\' if end + 2 <= max.min(bytes.len()) => end += 2,
            b'\\' => break,
            _ => end += 1,
        }
    }
    while !pattern.is_char_boundary(end) {
        end -= 1;
    }
    &pattern[..end]
}

/// A pattern as the store applies it: the glob a stored key must match,
/// and the wider one its `SCAN` uses so that long keys are found too.
#[derive(Debug, Clone)]
pub(crate) struct StoredPattern {
    /// For `SCAN MATCH`: every key the pattern covers matches it.
    pub(crate) scan: String,
    /// What a short stored key must match.
    exact: String,
}

impl StoredPattern {
    /// The stored form of `pattern` (a glob over keys as the application
    /// renders them) under the cache prefix `prefix`.
    pub(crate) fn new(prefix: &str, pattern: &str) -> StoredPattern {
        let mut framed = String::with_capacity(pattern.len() + 8);
        escape_frame_into(pattern, &mut framed);
        let head = glob_escape(prefix);
        let exact = format!("{head}:{{{framed}}}*");
        // A long form keeps at least `KEPT - 3` bytes of its key (it is cut
        // on a character boundary).
        let scan = format!("{head}:{{{}*", glob_head(&framed, KEPT - 3));
        StoredPattern { scan, exact }
    }

    /// Whether the pattern removes the stored key `stored`: a short key that
    /// matches it, or a long key whose kept head could (the rest of a long
    /// key is hashed, so a pattern removes every long key it could match).
    pub(crate) fn covers(&self, stored: &str) -> bool {
        let (stored, scan) = (stored.as_bytes(), self.scan.as_bytes());
        crate::glob::matches(self.exact.as_bytes(), stored)
            || (is_long_bytes(stored) && crate::glob::matches(scan, stored))
    }
}

fn is_long_bytes(stored: &[u8]) -> bool {
    stored
        .windows(LONG_MARK.len())
        .any(|w| w == LONG_MARK.as_bytes())
}

/// `text` with the glob's special characters escaped, to match itself.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// BLAKE3 of `bytes`, truncated to 192 bits, as 48 lowercase hex digits.
fn hash_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(HASH_HEX);
    push_hex(&blake3::hash(bytes), &mut s);
    s
}

fn push_hex(hash: &blake3::Hash, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; HASH_HEX];
    for (pair, b) in digits.chunks_exact_mut(2).zip(hash.as_bytes()) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
    // Hex digits are ASCII.
    out.push_str(std::str::from_utf8(&digits).unwrap_or_default());
}

/// A 192-bit, process- and platform-independent hash of a serializable value,
/// as 48 lowercase hex digits (BLAKE3 over its postcard encoding, truncated).
///
/// ```
/// let a = cache_runtime::key::hash_value(&("filter", 3u32));
/// assert_eq!(a.len(), 48);
/// assert_eq!(a, cache_runtime::key::hash_value(&("filter", 3u32)));
/// assert_ne!(a, cache_runtime::key::hash_value(&("filter", 4u32)));
/// ```
pub fn hash_value<T: Serialize + ?Sized>(value: &T) -> String {
    let mut s = String::with_capacity(HASH_HEX);
    write_hash(value, &mut s);
    s
}

fn write_hash<T: Serialize + ?Sized>(value: &T, out: &mut String) {
    // Serialized first, then hashed in one call: cheaper than feeding the
    // hasher the encoder's many small writes. A value whose `Serialize` impl
    // itself fails hashes what it wrote so far plus a marker, so it still
    // gets a stable key.
    let mut bytes = Vec::with_capacity(64);
    if postcard::to_io(value, &mut bytes).is_err() {
        bytes.extend_from_slice(b"\xffserialize-error");
    }
    push_hex(&blake3::hash(&bytes), out);
}

/// Builds a key (or pattern) from literal text and escaped placeholder values.
///
/// This is what `#[cached(key = "...")]` expands into; it is public so that
/// hand-written code renders keys exactly as the macros do. As in a
/// template, write literal text holding a separator (any character but ASCII
/// letters, digits and `%`, see [`separates`]) between two values: without
/// one, `("1", "23")` and `("12", "3")` would render alike.
///
/// ```
/// use cache_runtime::key::KeyWriter;
/// let mut w = KeyWriter::new();
/// w.lit("user:");
/// w.display(&"42:admin");
/// assert_eq!(w.finish(), "user:42%3Aadmin");
/// ```
#[derive(Debug, Default, Clone)]
pub struct KeyWriter {
    buf: String,
}

impl KeyWriter {
    /// An empty key.
    pub fn new() -> Self {
        KeyWriter {
            buf: String::with_capacity(48),
        }
    }

    /// Appends literal template text, unescaped.
    pub fn lit(&mut self, text: &str) -> &mut Self {
        self.buf.push_str(text);
        self
    }

    /// Appends a placeholder value through its `Display` impl, escaped.
    pub fn display<T: fmt::Display + ?Sized>(&mut self, value: &T) -> &mut Self {
        let _ = write!(EscapingWriter(&mut self.buf), "{value}");
        self
    }

    /// Appends an integer placeholder value: its decimal digits (a minus
    /// sign escaped), written without going through `fmt` (the same text as
    /// [`display`](Self::display) writes for it).
    pub(crate) fn integer<I: itoa::Integer>(&mut self, value: I) -> &mut Self {
        let mut digits = itoa::Buffer::new();
        let text = digits.format(value);
        match text.strip_prefix('-') {
            Some(abs) => {
                self.buf.push_str("%2D");
                self.buf.push_str(abs);
            }
            None => self.buf.push_str(text),
        }
        self
    }

    /// Appends the hash of a placeholder value (`{arg:hash}`).
    pub fn hash<T: Serialize + ?Sized>(&mut self, value: &T) -> &mut Self {
        write_hash(value, &mut self.buf);
        self
    }

    /// The rendered key.
    pub fn finish(self) -> String {
        self.buf
    }
}

/// A `fmt::Write` that escapes everything written through it.
struct EscapingWriter<'a>(&'a mut String);

impl fmt::Write for EscapingWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_value_into(s, self.0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn render(parts: &[&str]) -> String {
        let mut w = KeyWriter::new();
        w.lit("k:");
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                w.lit(":");
            }
            w.display(p);
        }
        w.finish()
    }

    /// Renders a template: literal texts around the values (one more text
    /// than values).
    fn render_template(texts: &[String], values: &[String]) -> String {
        let mut w = KeyWriter::new();
        for (i, text) in texts.iter().enumerate() {
            w.lit(text);
            if let Some(v) = values.get(i) {
                w.display(v);
            }
        }
        w.finish()
    }

    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(":".to_string()),
            Just("-".to_string()),
            Just("/".to_string()),
            Just(".".to_string()),
            Just("_".to_string()),
            Just(",".to_string()),
            Just("|".to_string()),
            Just("{".to_string()),
            Just("}".to_string()),
            Just("*".to_string()),
            Just("?".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just("\\".to_string()),
            Just("%".to_string()),
            Just("%3A".to_string()),
            Just("%2D".to_string()),
            Just("é".to_string()),
            Just("🦀".to_string()),
            Just(" ".to_string()),
            Just("\n".to_string()),
            Just("".to_string()),
            "[a-c0-2]{0,2}",
        ]
    }

    fn adversarial() -> impl Strategy<Value = String> {
        proptest::collection::vec(piece(), 0..6).prop_map(|v| v.concat())
    }

    /// Literal text a template may hold between two placeholders: anything,
    /// with at least one separating character.
    fn separator() -> impl Strategy<Value = String> {
        (
            adversarial(),
            prop_oneof![
                Just(':'),
                Just('-'),
                Just('/'),
                Just('.'),
                Just('_'),
                Just(','),
                Just('|'),
                Just('é')
            ],
            adversarial(),
        )
            .prop_map(|(a, c, b)| format!("{a}{c}{b}"))
            .prop_filter("a separator", |s| s.chars().any(separates))
    }

    /// A template of 1 to 3 placeholders: its literal texts.
    fn template() -> impl Strategy<Value = Vec<String>> {
        (
            adversarial(),
            proptest::collection::vec(separator(), 0..3),
            adversarial(),
        )
            .prop_map(|(head, seps, tail)| {
                let mut texts = vec![head];
                texts.extend(seps);
                texts.push(tail);
                texts
            })
    }

    fn values(n: usize) -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec(adversarial(), n)
    }

    proptest! {
        #[test]
        fn distinct_values_give_distinct_keys(
            (texts, a, b) in template().prop_flat_map(|t| {
                let n = t.len() - 1;
                (Just(t), values(n), values(n))
            })
        ) {
            let k1 = render_template(&texts, &a);
            let k2 = render_template(&texts, &b);
            prop_assert_eq!(k1 == k2, a == b, "{:?} / {:?} -> {} / {}", a, b, k1, k2);
        }

        #[test]
        fn escaped_values_hold_letters_digits_and_escapes_only(a in adversarial()) {
            let mut s = String::new();
            escape_value_into(&a, &mut s);
            prop_assert!(s.chars().all(|c| !separates(c)), "{s:?}");
            let decoded = percent_encoding::percent_decode_str(&s).decode_utf8().unwrap();
            prop_assert_eq!(decoded, a);
        }
    }

    #[test]
    fn separators_other_than_colons_do_not_collide() {
        let t = |sep: &str| vec!["k:".to_string(), sep.to_string(), String::new()];
        let v = |a: &str, b: &str| vec![a.to_string(), b.to_string()];
        for sep in ["-", "/", ".", "_", ",", "|", ":"] {
            let (x, y) = (v(&format!("x{sep}y"), "z"), v("x", &format!("y{sep}z")));
            assert_ne!(
                render_template(&t(sep), &x),
                render_template(&t(sep), &y),
                "{sep}"
            );
        }
    }

    #[test]
    fn long_keys_keep_a_head_and_end_in_a_hash() {
        let long_a = "a".repeat(2000);
        let long_b = format!("{}b", "a".repeat(1999));
        let (mut a, mut b, mut short) = (String::new(), String::new(), String::new());
        push_framed(&long_a, &mut a);
        push_framed(&long_b, &mut b);
        push_framed("user:1", &mut short);
        assert_eq!(a.len(), 1 + KEPT + LONG_MARK.len() + HASH_HEX);
        assert!(a.starts_with(&format!("{{{}", "a".repeat(KEPT))));
        assert_ne!(a, b);
        assert_eq!(short, "{user:1}");
        let mut braces = String::new();
        push_framed("{x}", &mut braces);
        assert_eq!(braces, "{%7Bx%7D}", "no hash tag can be smuggled in");
        let mut empty = String::new();
        push_framed("", &mut empty);
        assert_eq!(empty.len(), 1 + 1 + LONG_MARK.len() + HASH_HEX);
        assert!(
            empty.starts_with("{#}#"),
            "the empty key still fills its hash tag"
        );
        let mut at_limit = String::new();
        push_framed(&"c".repeat(MAX_KEY_LEN), &mut at_limit);
        assert_eq!(at_limit.len(), MAX_KEY_LEN + 2, "kept whole");
    }

    #[test]
    fn a_long_key_keeps_the_head_of_its_framed_form() {
        let key = "é".repeat(400);
        let mut framed = String::new();
        escape_frame_into(&key, &mut framed);
        let mut stored = String::new();
        push_framed(&key, &mut stored);
        let head = &stored[1..stored.find(LONG_MARK).unwrap()];
        assert!(head.len() <= KEPT && head.len() >= KEPT - 3);
        assert!(framed.starts_with(head));
    }

    #[test]
    fn patterns_cover_long_keys_they_could_match() {
        let stored = |key: &str| {
            let mut s = "p:".to_string();
            push_framed(key, &mut s);
            s
        };
        let q = "x".repeat(600);
        let long = stored(&format!("search:alice:{q}"));
        let other = stored(&format!("search:bob:{q}"));
        let p = StoredPattern::new("p", "search:alice:*");
        assert!(p.covers(&long) && p.covers(&format!("{long}:L")));
        assert!(!p.covers(&other));
        assert!(crate::glob::matches(p.scan.as_bytes(), long.as_bytes()));
        assert!(p.covers(&stored("search:alice:short")));
        assert!(!p.covers(&stored("search:alicex")));
        // A pattern whose literal head is longer than a long key keeps.
        let deep = StoredPattern::new("p", &format!("search:alice:{}*", "x".repeat(500)));
        assert!(deep.covers(&long));
        // The prefix's own glob characters match only themselves.
        let odd = StoredPattern::new("a*", "k");
        assert!(odd.covers("a*:{k}") && !odd.covers("ab:{k}"));
    }

    #[test]
    fn glob_heads_stop_at_wildcards_and_escapes() {
        assert_eq!(glob_head("search:a*b", 100), "search:a");
        assert_eq!(glob_head("a\\*b?c", 100), "a\\*b");
        assert_eq!(glob_head("ab\\*", 3), "ab");
        assert_eq!(glob_head("[ab]", 100), "");
        assert_eq!(glob_head("éé", 3), "é");
    }

    /// Two different byte strings whose postcard encodings have the same
    /// XXH3-128 (the hash keys used before): in the first two 64-byte stripes
    /// of a long input, lane 1's low half is set to the public default
    /// secret's bytes, so its multiply term is zero, and the high halves
    /// trade one unit between the two stripes, so the accumulator's sum is
    /// unchanged.
    fn xxh3_colliding_values() -> (Vec<u8>, Vec<u8>) {
        // The first bytes of XXH3's published default secret (`kSecret`).
        let secret: [u8; 24] = [
            0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21,
            0xad, 0x1c, 0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb,
        ];
        let mut a = vec![b'q'; 402];
        // postcard: the length (400) as a varint, then the bytes.
        a[..2].copy_from_slice(&[0x90, 0x03]);
        let mut b = a.clone();
        for (buf, high) in [(&mut a, [1u32, 1]), (&mut b, [2, 0])] {
            for (stripe, h) in high.into_iter().enumerate() {
                let at = 64 * stripe + 8;
                let key_at = 8 * stripe + 8;
                buf[at..at + 4].copy_from_slice(&secret[key_at..key_at + 4]);
                buf[at + 4..at + 8].copy_from_slice(&h.to_le_bytes());
            }
        }
        (a[2..].to_vec(), b[2..].to_vec())
    }

    #[test]
    fn values_that_collide_under_xxh3_hash_apart() {
        let (a, b) = xxh3_colliding_values();
        assert_ne!(a, b);
        let encoded = |v: &Vec<u8>| postcard::to_stdvec(v).expect("encodes");
        assert_eq!(
            xxhash_rust::xxh3::xxh3_128(&encoded(&a)),
            xxhash_rust::xxh3::xxh3_128(&encoded(&b)),
            "the construction collides under XXH3-128"
        );
        assert_ne!(hash_value(&a), hash_value(&b));
        let mut w = (KeyWriter::new(), KeyWriter::new());
        w.0.lit("search:").hash(&a);
        w.1.lit("search:").hash(&b);
        assert_ne!(w.0.finish(), w.1.finish(), "`{{q:hash}}` keys differ");
        assert_eq!(hash_value(&a).len(), HASH_HEX);
    }

    proptest! {
        #[test]
        fn integers_render_as_their_display(a: i64, b: u128, c: i8, d: usize) {
            let mut fast = KeyWriter::new();
            fast.integer(a).integer(b).integer(c).integer(d);
            let mut slow = KeyWriter::new();
            slow.display(&a).display(&b).display(&c).display(&d);
            prop_assert_eq!(fast.finish(), slow.finish());
        }
    }

    #[test]
    fn single_value_collisions_across_arity_are_impossible() {
        assert_ne!(render(&["a:b", "c"]), render(&["a", "b:c"]));
        assert_ne!(render(&["", ":"]), render(&[":", ""]));
        assert_eq!(render(&["*"]), "k:%2A");
        let mut w = KeyWriter::new();
        w.integer(-12i32).lit(":").integer(7u8);
        assert_eq!(w.finish(), "%2D12:7");
    }
}
