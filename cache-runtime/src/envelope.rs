//! The versioned envelope around every stored value.
//!
//! ```text
//! offset  size  field
//! 0       2     magic "RC"
//! 2       1     format version (2)
//! 3       1     codec id (see codec.rs)
//! 4       1     flags (bit 0: the value is a cached "none"; bit 1: the
//!               payload is sealed, see crypto.rs)
//! 5       n     tag tokens, ASCII, comma-separated, then ';'
//! 5+n+1   8     fresh until, Unix ms, little endian
//!         4     loader compute time, µs, little endian
//!         4     payload length, little endian (truncation shows)
//!         8     fingerprint of the value type's serde shape (fingerprint.rs)
//!         4     number of tags, little endian
//!         ...   each tag: u16 length + its stored key after the cache
//!               prefix and `:` (bounded by the key framing)
//!         ...   payload (codec output)
//! ```
//!
//! The tag-token section comes first and is plain ASCII so that the Lua read
//! script can compare it with the tags' current tokens in the same round trip
//! as the GET. Anything that does not parse, carries another format version or
//! another codec is reported as [`EnvelopeError`] and read as a miss; so is a
//! value written by a type of another shape.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{CodecError, CodecKind};

pub(crate) const MAGIC: &[u8; 2] = b"RC";
pub(crate) const FORMAT: u8 = 2;
/// Offset of the tag-token section.
pub(crate) const TOKENS_AT: usize = 5;
pub(crate) const FLAG_NONE: u8 = 1;
pub(crate) const FLAG_SEALED: u8 = 2;

/// Encryption of the payload: the keys, and the associated data (the full
/// stored key) that binds a sealed value to where it is stored.
#[derive(Clone, Copy)]
pub(crate) struct Sealing<'a> {
    pub(crate) ring: &'a crate::crypto::Keyring,
    pub(crate) aad: &'a [u8],
}

/// Why stored bytes were not accepted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EnvelopeError {
    #[error("not an envelope")]
    BadMagic,
    #[error("envelope format {0} is not supported")]
    Format(u8),
    #[error("written with codec {found}, read with {expected}")]
    Codec { found: u8, expected: u8 },
    #[error("truncated envelope")]
    Truncated,
    #[error("value of {0} bytes is over the maximum")]
    TooLarge(usize),
    #[error(transparent)]
    Decode(#[from] CodecError),
    #[error(transparent)]
    Crypto(#[from] crate::crypto::CryptoError),
    #[error("plaintext entry where an encrypted one is required")]
    NotSealed,
    #[error("written by a value type of another shape")]
    TypeMismatch,
}

impl EnvelopeError {
    /// Whether the bytes are sound but belong to another reader (a type of
    /// another shape): a miss, not a corrupt entry to delete.
    pub(crate) fn is_foreign(&self) -> bool {
        matches!(self, EnvelopeError::TypeMismatch)
    }
}

/// Fields of the header besides the tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) flags: u8,
    pub(crate) fresh_until_ms: u64,
    pub(crate) compute_us: u32,
}

/// A parsed envelope, borrowing the stored bytes.
#[derive(Debug)]
pub(crate) struct Parsed<'a> {
    pub(crate) codec: u8,
    pub(crate) meta: Meta,
    #[allow(dead_code)]
    pub(crate) tokens: &'a [u8],
    pub(crate) fingerprint: u64,
    /// Stored keys of the tags, after the cache prefix and `:`.
    pub(crate) tags: Vec<&'a str>,
    pub(crate) payload: &'a [u8],
}

/// How a value is written: its codec, type, tags and encryption.
#[derive(Clone, Copy)]
pub(crate) struct Writing<'a> {
    pub(crate) codec: CodecKind,
    pub(crate) max_size: usize,
    /// Keys and associated data, to seal the value (`None`: plaintext).
    pub(crate) sealing: Option<Sealing<'a>>,
    /// Of the value type (fingerprint.rs).
    pub(crate) fingerprint: u64,
    /// Stored keys of the tags, after the cache prefix and `:`.
    pub(crate) tags: &'a [&'a str],
}

/// Encodes `value` into an envelope with the given tag tokens (comma-separated).
pub(crate) fn encode<T: Serialize + ?Sized>(
    value: &T,
    meta: Meta,
    tokens: &str,
    w: &Writing<'_>,
) -> Result<Vec<u8>, crate::Error> {
    let flags = if w.sealing.is_some() {
        meta.flags | FLAG_SEALED
    } else {
        meta.flags
    };
    let tags_len: usize = w.tags.iter().map(|n| 2 + n.len()).sum();
    let mut out = Vec::with_capacity(TOKENS_AT + tokens.len() + 1 + 28 + tags_len + 64);
    out.extend_from_slice(MAGIC);
    out.push(FORMAT);
    out.push(w.codec.id());
    out.push(flags);
    out.extend_from_slice(tokens.as_bytes());
    out.push(b';');
    out.extend_from_slice(&meta.fresh_until_ms.to_le_bytes());
    out.extend_from_slice(&meta.compute_us.to_le_bytes());
    let len_at = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&w.fingerprint.to_le_bytes());
    let count = u32::try_from(w.tags.len()).map_err(|_| crate::Error::TooLarge {
        size: w.tags.len(),
        max: u32::MAX as usize,
    })?;
    out.extend_from_slice(&count.to_le_bytes());
    for tag in w.tags {
        // Stored keys are bounded by the framing (long ones are hashed).
        let len = u16::try_from(tag.len())
            .map_err(|_| crate::Error::InvalidKey(format!("tag key of {} bytes", tag.len())))?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(tag.as_bytes());
    }
    let (codec, max_size, sealing) = (w.codec, w.max_size, w.sealing);
    let payload_at = out.len();
    match sealing {
        None => codec.encode(value, &mut out)?,
        Some(s) => {
            let mut plain = Vec::new();
            codec.encode(value, &mut plain)?;
            let sealed = s
                .ring
                .seal(s.aad, &plain)
                .map_err(|e| crate::Error::Config(e.to_string()))?;
            out.extend_from_slice(&sealed);
        }
    }
    if out.len() > max_size {
        return Err(crate::Error::TooLarge {
            size: out.len(),
            max: max_size,
        });
    }
    let payload_len =
        u32::try_from(out.len() - payload_at).map_err(|_| crate::Error::TooLarge {
            size: out.len(),
            max: u32::MAX as usize,
        })?;
    out[len_at..len_at + 4].copy_from_slice(&payload_len.to_le_bytes());
    Ok(out)
}

/// Splits an envelope encoded with empty tokens into the part before and the
/// part after the token section, so the store can splice the current tokens in.
pub(crate) fn split_for_tokens(bytes: &[u8]) -> (&[u8], &[u8]) {
    debug_assert_eq!(bytes.get(TOKENS_AT), Some(&b';'));
    (
        &bytes[..TOKENS_AT],
        bytes.get(TOKENS_AT + 1..).unwrap_or_default(),
    )
}

/// The tag-token section of stored bytes, if their header is valid.
pub(crate) fn header_tokens(v: &[u8]) -> Option<&[u8]> {
    if v.len() <= TOKENS_AT || &v[..2] != MAGIC || v[2] != FORMAT {
        return None;
    }
    let semi = v[TOKENS_AT..].iter().position(|&b| b == b';')?;
    Some(&v[TOKENS_AT..TOKENS_AT + semi])
}

/// The wall-clock time (Unix ms) until which stored bytes are fresh, if
/// their header is valid.
pub(crate) fn fresh_until(v: &[u8]) -> Option<u64> {
    let tokens = header_tokens(v)?;
    let at = TOKENS_AT + tokens.len() + 1;
    let b: [u8; 8] = v.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(b))
}

/// Whether the tokens an entry recorded are the tags' current ones: every
/// tag has a token, and they are the recorded ones, in order.
pub(crate) fn tags_current(recorded: &[u8], current: &[Option<Vec<u8>>]) -> bool {
    let mut rest = recorded;
    for (i, t) in current.iter().enumerate() {
        let Some(t) = t else { return false };
        if i > 0 {
            match rest.split_first() {
                Some((b',', r)) => rest = r,
                _ => return false,
            }
        }
        match rest.strip_prefix(t.as_slice()) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty()
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EnvelopeError> {
        let end = self.at.checked_add(n).ok_or(EnvelopeError::Truncated)?;
        let s = self
            .bytes
            .get(self.at..end)
            .ok_or(EnvelopeError::Truncated)?;
        self.at = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, EnvelopeError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, EnvelopeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, EnvelopeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

/// Parses the header of stored bytes without decoding the payload.
pub(crate) fn parse(bytes: &[u8], max_size: usize) -> Result<Parsed<'_>, EnvelopeError> {
    if bytes.len() > max_size {
        return Err(EnvelopeError::TooLarge(bytes.len()));
    }
    if bytes.len() < TOKENS_AT + 1 || &bytes[..2] != MAGIC {
        return Err(EnvelopeError::BadMagic);
    }
    if bytes[2] != FORMAT {
        return Err(EnvelopeError::Format(bytes[2]));
    }
    let codec = bytes[3];
    let flags = bytes[4];
    let semi = bytes[TOKENS_AT..]
        .iter()
        .position(|&b| b == b';')
        .ok_or(EnvelopeError::Truncated)?;
    let tokens = &bytes[TOKENS_AT..TOKENS_AT + semi];
    let mut r = Reader {
        bytes,
        at: TOKENS_AT + semi + 1,
    };
    let fresh_until_ms = r.u64()?;
    let compute_us = r.u32()?;
    let payload_len = r.u32()? as usize;
    let fingerprint = r.u64()?;
    let count = r.u32()? as usize;
    // Each tag needs at least its 2-byte length: refuse counts the buffer cannot hold
    // before allocating for them.
    if count.saturating_mul(2) > bytes.len() - r.at {
        return Err(EnvelopeError::Truncated);
    }
    let mut tags = Vec::with_capacity(count);
    for _ in 0..count {
        let len = r.u16()? as usize;
        let tag = std::str::from_utf8(r.take(len)?).map_err(|_| EnvelopeError::Truncated)?;
        tags.push(tag);
    }
    if bytes.len() - r.at != payload_len {
        return Err(EnvelopeError::Truncated);
    }
    Ok(Parsed {
        codec,
        meta: Meta {
            flags,
            fresh_until_ms,
            compute_us,
        },
        tokens,
        fingerprint,
        tags,
        payload: &bytes[r.at..],
    })
}

/// How stored bytes are read back.
#[derive(Clone, Copy)]
pub(crate) struct Reading<'a> {
    pub(crate) codec: CodecKind,
    pub(crate) max_size: usize,
    /// Keys and associated data, for sealed entries.
    pub(crate) sealing: Option<Sealing<'a>>,
    /// Refuse plaintext entries (the call asked for encryption).
    pub(crate) require_sealed: bool,
    /// Of the type to decode (fingerprint.rs): entries of another are refused.
    pub(crate) fingerprint: u64,
}

/// Parses and decodes a stored value.
pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    r: Reading<'_>,
) -> Result<(T, Meta), EnvelopeError> {
    let p = parse(bytes, r.max_size)?;
    if p.fingerprint != r.fingerprint {
        return Err(EnvelopeError::TypeMismatch);
    }
    if p.codec != r.codec.id() {
        return Err(EnvelopeError::Codec {
            found: p.codec,
            expected: r.codec.id(),
        });
    }
    let v = if p.meta.flags & FLAG_SEALED != 0 {
        let s = r.sealing.ok_or(crate::crypto::CryptoError::NoKey)?;
        r.codec.decode(&s.ring.open(s.aad, p.payload)?)?
    } else if r.require_sealed {
        return Err(EnvelopeError::NotSealed);
    } else {
        r.codec.decode(p.payload)?
    };
    Ok((v, p.meta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: usize = 1 << 20;

    /// A plaintext read of the type `T`.
    fn plain<T: DeserializeOwned>(codec: CodecKind, max_size: usize) -> Reading<'static> {
        Reading {
            codec,
            max_size,
            sealing: None,
            require_sealed: false,
            fingerprint: crate::fingerprint::of::<T>(),
        }
    }

    /// A plaintext write of the type `T`, with `tags`.
    fn writing<'a, T: DeserializeOwned>(
        codec: CodecKind,
        max_size: usize,
        tags: &'a [&'a str],
    ) -> Writing<'a> {
        Writing {
            codec,
            max_size,
            sealing: None,
            fingerprint: crate::fingerprint::of::<T>(),
            tags,
        }
    }

    fn meta() -> Meta {
        Meta {
            flags: 0,
            fresh_until_ms: 1_700_000_000_000,
            compute_us: 1234,
        }
    }

    #[test]
    fn tag_tokens_compare_in_order() {
        let cur = |v: &[&str]| {
            v.iter()
                .map(|t| Some(t.as_bytes().to_vec()))
                .collect::<Vec<_>>()
        };
        assert!(tags_current(b"", &[]));
        assert!(tags_current(b"a1,b2", &cur(&["a1", "b2"])));
        assert!(!tags_current(b"a1,b2", &cur(&["b2", "a1"])));
        assert!(!tags_current(b"a1,b2", &cur(&["a1"])));
        assert!(!tags_current(b"a1", &cur(&["a1", "b2"])));
        assert!(!tags_current(b"a1,b2", &[Some(b"a1".to_vec()), None]));
        assert!(!tags_current(b"a1,b", &cur(&["a1", "b2"])));
        assert!(!tags_current(b"", &cur(&["a"])));
    }

    #[test]
    fn round_trip_with_tags() {
        let tags = ["t:{users}", "t:{user:1}"];
        let w = writing::<(String, u32)>(CodecKind::Postcard, MAX, &tags);
        let b = encode(&("x", 5u32), meta(), "ab,cd", &w).unwrap();
        let p = parse(&b, MAX).unwrap();
        assert_eq!(p.tokens, b"ab,cd");
        assert_eq!(p.tags, tags);
        let read = plain::<(String, u32)>(CodecKind::Postcard, MAX);
        let (v, m): ((String, u32), Meta) = decode(&b, read).unwrap();
        assert_eq!(v, ("x".to_string(), 5));
        assert_eq!(m, meta());
    }

    #[test]
    fn foreign_codec_format_and_truncation_are_errors() {
        let w = writing::<u64>(CodecKind::Json, MAX, &[]);
        let b = encode(&42u64, meta(), "", &w).unwrap();
        assert!(matches!(
            decode::<u64>(&b, plain::<u64>(CodecKind::Postcard, MAX)),
            Err(EnvelopeError::Codec { .. })
        ));
        let mut other = b.clone();
        other[2] = 9;
        assert!(matches!(
            decode::<u64>(&other, plain::<u64>(CodecKind::Json, MAX)),
            Err(EnvelopeError::Format(9))
        ));
        for cut in 0..b.len() {
            assert!(
                decode::<u64>(&b[..cut], plain::<u64>(CodecKind::Json, MAX)).is_err(),
                "cut at {cut}"
            );
        }
        assert!(matches!(
            decode::<u64>(&b, plain::<u64>(CodecKind::Json, 4)),
            Err(EnvelopeError::TooLarge(_))
        ));
    }

    #[test]
    fn a_value_is_decoded_only_as_a_type_of_its_shape() {
        let w = writing::<u32>(CodecKind::Postcard, MAX, &[]);
        let b = encode(&7u32, meta(), "", &w).unwrap();
        assert_eq!(
            decode::<u32>(&b, plain::<u32>(CodecKind::Postcard, MAX))
                .unwrap()
                .0,
            7
        );
        let wrong = decode::<u64>(&b, plain::<u64>(CodecKind::Postcard, MAX));
        assert!(matches!(wrong, Err(EnvelopeError::TypeMismatch)));
        assert!(wrong.unwrap_err().is_foreign());
    }

    #[test]
    fn sealed_payloads_need_their_key_and_their_place() {
        let mut ring = crate::crypto::Keyring::default();
        ring.add(1, &[3; 32]);
        let at = Sealing {
            ring: &ring,
            aad: b"p:{a}",
        };
        let sealed = Writing {
            sealing: Some(at),
            ..writing::<String>(CodecKind::Postcard, MAX, &[])
        };
        let b = encode(&"secret", meta(), "", &sealed).unwrap();
        assert!(!b.windows(6).any(|w| w == b"secret"), "no plaintext stored");
        let read = |aad: &'static [u8], require_sealed| Reading {
            codec: CodecKind::Postcard,
            max_size: MAX,
            sealing: Some(Sealing { ring: &ring, aad }),
            require_sealed,
            fingerprint: crate::fingerprint::of::<String>(),
        };
        assert_eq!(
            decode::<String>(&b, read(b"p:{a}", true)).unwrap().0,
            "secret"
        );
        assert!(matches!(
            decode::<String>(&b, read(b"p:{b}", true)),
            Err(EnvelopeError::Crypto(_))
        ));
        assert!(matches!(
            decode::<String>(&b, plain::<String>(CodecKind::Postcard, MAX)),
            Err(EnvelopeError::Crypto(_))
        ));
        let w = writing::<String>(CodecKind::Postcard, MAX, &[]);
        let clear = encode(&"secret", meta(), "", &w).unwrap();
        assert!(matches!(
            decode::<String>(&clear, read(b"p:{a}", true)),
            Err(EnvelopeError::NotSealed)
        ));
    }

    #[test]
    fn oversized_values_are_refused_on_write() {
        let big = vec![7u8; 1000];
        assert!(matches!(
            encode(
                &big,
                meta(),
                "",
                &writing::<Vec<u8>>(CodecKind::Postcard, 100, &[])
            ),
            Err(crate::Error::TooLarge { .. })
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode::<Vec<String>>(&bytes, plain::<Vec<String>>(CodecKind::Postcard, MAX));
            let _ = decode::<serde_json::Value>(&bytes, plain::<serde_json::Value>(CodecKind::Json, MAX));
        }

        #[test]
        fn prefixed_garbage_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut bytes = b"RC\x02\x01\x00;".to_vec();
            bytes.extend_from_slice(&tail);
            let _ = decode::<Vec<String>>(&bytes, plain::<Vec<String>>(CodecKind::Postcard, MAX));
        }
    }
}
