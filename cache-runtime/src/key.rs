//! Key rendering and escaping.
//!
//! A key template such as `"user:{id}"` is rendered by writing its literal
//! text verbatim and every placeholder value *escaped*: the escape is
//! injective, so two different argument values never produce the same key,
//! and it removes every character that means something to Redis key handling:
//!
//! * `:` (the usual separator), so `("a:b", "c")` and `("a", "b:c")` differ;
//! * `{` and `}`, so no value can choose the cluster hash slot of a key;
//! * `*`, `?`, `[`, `]`, `\`, so a value inside a pattern is literal and can
//!   never widen it;
//! * `%` (the escape character itself), control characters and space.
//!
//! Non-ASCII text is kept as UTF-8. Values are escaped with
//! [`percent-encoding`](https://docs.rs/percent-encoding).

use std::fmt::{self, Write as _};

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde::Serialize;

/// Characters escaped inside placeholder values.
const VALUE_ESCAPES: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'%')
    .add(b':')
    .add(b'{')
    .add(b'}')
    .add(b'*')
    .add(b'?')
    .add(b'[')
    .add(b']')
    .add(b'\\');

/// Characters escaped in a whole key or pattern given by hand: only those
/// that would break the hash-tag framing of the stored key.
const FRAME_ESCAPES: &AsciiSet = &CONTROLS.add(b' ').add(b'{').add(b'}');

/// Escapes one placeholder value into `out`.
///
/// ```
/// let mut s = String::new();
/// cache_runtime::key::escape_value_into("a:b*{c}", &mut s);
/// assert_eq!(s, "a%3Ab%2A%7Bc%7D");
/// ```
pub fn escape_value_into(value: &str, out: &mut String) {
    for part in utf8_percent_encode(value, VALUE_ESCAPES) {
        out.push_str(part);
    }
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

/// Longest key (or tag), after escaping, stored as it is; longer ones are
/// stored as `#` and the 128-bit hash of the escaped text, so no argument can
/// make Redis keys grow without bound. (Pattern invalidation cannot see into
/// hashed keys; invalidate those by key or tag.)
pub const MAX_KEY_LEN: usize = 512;

/// Appends the stored form of a key or tag: escaped, or hashed when too long
/// or empty. (An empty key would leave the braces around it empty, and
/// Redis Cluster hashes a key with an empty `{}` as a whole, which would part
/// an entry from its lease.)
pub(crate) fn push_framed(key: &str, out: &mut String) {
    let start = out.len();
    escape_frame_into(key, out);
    let len = out.len() - start;
    if len == 0 || len > MAX_KEY_LEN {
        let digest = xxhash_rust::xxh3::xxh3_128(&out.as_bytes()[start..]);
        out.truncate(start);
        let _ = write!(out, "#{digest:032x}");
    }
}

/// A 128-bit, process- and platform-independent hash of a serializable value,
/// as 32 lowercase hex digits (xxh3-128 over its postcard encoding).
///
/// ```
/// let a = cache_runtime::key::hash_value(&("filter", 3u32));
/// assert_eq!(a.len(), 32);
/// assert_eq!(a, cache_runtime::key::hash_value(&("filter", 3u32)));
/// assert_ne!(a, cache_runtime::key::hash_value(&("filter", 4u32)));
/// ```
pub fn hash_value<T: Serialize + ?Sized>(value: &T) -> String {
    let mut s = String::with_capacity(32);
    write_hash(value, &mut s);
    s
}

fn write_hash<T: Serialize + ?Sized>(value: &T, out: &mut String) {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    // Serializing into a hasher cannot fail for I/O reasons; a value whose
    // `Serialize` impl itself fails hashes to the hash of what it wrote so far,
    // plus a marker, so it still gets a stable key.
    if postcard::to_io(value, HashWriter(&mut hasher)).is_err() {
        hasher.update(b"\xffserialize-error");
    }
    let _ = write!(out, "{:032x}", hasher.digest128());
}

struct HashWriter<'a>(&'a mut xxhash_rust::xxh3::Xxh3);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Builds a key (or pattern) from literal text and escaped placeholder values.
///
/// This is what `#[cached(key = "...")]` expands into; it is public so that
/// hand-written code renders keys exactly as the macros do.
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

    /// Appends an integer placeholder value: its decimal digits, which never
    /// need escaping, written without going through `fmt` (the same text as
    /// [`display`](Self::display) writes for it).
    pub(crate) fn integer<I: itoa::Integer>(&mut self, value: I) -> &mut Self {
        self.buf.push_str(itoa::Buffer::new().format(value));
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

    fn adversarial() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just(":".to_string()),
                Just("{".to_string()),
                Just("}".to_string()),
                Just("*".to_string()),
                Just("?".to_string()),
                Just("[".to_string()),
                Just("]".to_string()),
                Just("\\".to_string()),
                Just("%".to_string()),
                Just("%3A".to_string()),
                Just("é".to_string()),
                Just("🦀".to_string()),
                Just(" ".to_string()),
                Just("\n".to_string()),
                Just("".to_string()),
                "[a-c]{0,2}",
            ],
            0..6,
        )
        .prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn distinct_values_give_distinct_keys(a in adversarial(), b in adversarial(), c in adversarial(), d in adversarial()) {
            let k1 = render(&[&a, &b]);
            let k2 = render(&[&c, &d]);
            prop_assert_eq!(k1 == k2, a == c && b == d);
        }

        #[test]
        fn escaped_values_hold_no_special_characters(a in adversarial()) {
            let mut s = String::new();
            escape_value_into(&a, &mut s);
            for ch in [':', '{', '}', '*', '?', '[', ']', '\\', ' ', '\n'] {
                prop_assert!(!s.contains(ch), "{s:?} contains {ch:?}");
            }
            let decoded = percent_encoding::percent_decode_str(&s).decode_utf8().unwrap();
            prop_assert_eq!(decoded, a);
        }
    }

    #[test]
    fn long_keys_are_hashed_and_stay_distinct() {
        let long_a = "a".repeat(2000);
        let long_b = format!("{}b", "a".repeat(1999));
        let (mut a, mut b, mut short) = (String::new(), String::new(), String::new());
        push_framed(&long_a, &mut a);
        push_framed(&long_b, &mut b);
        push_framed("user:1", &mut short);
        assert_eq!(a.len(), 33);
        assert!(a.starts_with('#'));
        assert_ne!(a, b);
        assert_eq!(short, "user:1");
        let mut braces = String::new();
        push_framed("{x}", &mut braces);
        assert_eq!(braces, "%7Bx%7D", "no hash tag can be smuggled in");
        let mut empty = String::new();
        push_framed("", &mut empty);
        assert_eq!(empty.len(), 33, "the empty key still fills its hash tag");
        assert!(empty.starts_with('#'));
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
    }
}
