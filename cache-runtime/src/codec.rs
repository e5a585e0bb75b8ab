//! Value encodings.
//!
//! Every cached value is serialized by a [`Codec`] and wrapped in a versioned
//! versioned envelope. The codec used is recorded in the envelope, so a
//! value written with another codec is recognised and treated as a miss rather
//! than misread.
//!
//! | codec | id | notes |
//! |---|---|---|
//! | [`Postcard`] (default) | 1 | compact, fast, not self-describing |
//! | [`Json`] | 2 | readable with `redis-cli`, larger |
//! | [`MsgPack`] | 3 | self-describing, compact (struct-as-map) |
//! | `Bincode` (feature `bincode`) | 4 | bincode 2 in serde mode |
//!
//! Decoding reserves room in advance for at most one collection element per
//! byte of the value, and copies a string or byte buffer only once its bytes
//! are known to be there: a forged length prefix in a stored value cannot make
//! a read set aside memory the value could not fill. JSON has no length
//! prefixes, so serde_json is used as it is.

use serde::{Serialize, de::DeserializeOwned};

mod bounded;

/// Why a value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("{codec}: {message}")]
pub struct CodecError {
    codec: &'static str,
    message: String,
}

impl CodecError {
    fn new(codec: &'static str, err: impl std::fmt::Display) -> Self {
        CodecError {
            codec,
            message: err.to_string(),
        }
    }
}

/// A serialization format for cached values.
///
/// Implemented by the zero-sized types [`Postcard`], [`Json`], [`MsgPack`] and
/// (with the `bincode` feature) `Bincode`; [`CodecKind`] selects one at run time.
///
/// ```
/// use cache_runtime::codec::{Codec, Json};
/// let mut buf = Vec::new();
/// Json::encode(&vec![1u8, 2, 3], &mut buf).unwrap();
/// assert_eq!(buf, b"[1,2,3]");
/// let back: Vec<u8> = Json::decode(&buf).unwrap();
/// assert_eq!(back, [1, 2, 3]);
/// ```
pub trait Codec {
    /// The id recorded in the envelope.
    const ID: u8;
    /// Human-readable name, as used in `codec = "..."`.
    const NAME: &'static str;
    /// Appends the encoding of `value` to `out`.
    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError>;
    /// Decodes a whole buffer; trailing bytes are an error.
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError>;
}

/// [postcard](https://docs.rs/postcard): the default codec.
#[derive(Debug, Clone, Copy, Default)]
pub struct Postcard;

impl Codec for Postcard {
    const ID: u8 = 1;
    const NAME: &'static str = "postcard";
    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        postcard::to_io(value, out)
            .map(|_| ())
            .map_err(|e| CodecError::new(Self::NAME, e))
    }
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        match postcard_take_from_bytes(bytes) {
            Ok((v, [])) => Ok(v),
            Ok(_) => Err(CodecError::new(Self::NAME, "trailing bytes")),
            Err(e) => Err(CodecError::new(Self::NAME, e)),
        }
    }
}

/// Decodes a postcard value from the start of `bytes` and returns the bytes
/// after it, reserving no more room than `bytes` can fill.
pub(crate) fn postcard_take_from_bytes<T: DeserializeOwned>(
    bytes: &[u8],
) -> Result<(T, &[u8]), postcard::Error> {
    let mut de = postcard::Deserializer::from_bytes(bytes);
    let v = bounded::deserialize(&mut de, bytes.len())?;
    Ok((v, de.finalize()?))
}

/// JSON via serde_json.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl Codec for Json {
    const ID: u8 = 2;
    const NAME: &'static str = "json";
    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        serde_json::to_writer(out, value).map_err(|e| CodecError::new(Self::NAME, e))
    }
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        serde_json::from_slice(bytes).map_err(|e| CodecError::new(Self::NAME, e))
    }
}

/// MessagePack via rmp-serde, structs encoded as maps (robust to field reordering).
#[derive(Debug, Clone, Copy, Default)]
pub struct MsgPack;

impl Codec for MsgPack {
    const ID: u8 = 3;
    const NAME: &'static str = "msgpack";
    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let mut ser = rmp_serde::Serializer::new(out).with_struct_map();
        value
            .serialize(&mut ser)
            .map_err(|e| CodecError::new(Self::NAME, e))
    }
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        let mut de = rmp_serde::Deserializer::new(std::io::Cursor::new(bytes));
        let v: T = bounded::deserialize(&mut de, bytes.len())
            .map_err(|e| CodecError::new(Self::NAME, e))?;
        if de.position() == bytes.len() as u64 {
            Ok(v)
        } else {
            Err(CodecError::new(Self::NAME, "trailing bytes"))
        }
    }
}

/// bincode 2 in serde mode (feature `bincode`).
#[cfg(feature = "bincode")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Bincode;

#[cfg(feature = "bincode")]
impl Codec for Bincode {
    const ID: u8 = 4;
    const NAME: &'static str = "bincode";
    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        bincode::serde::encode_into_std_write(value, out, bincode::config::standard())
            .map(|_| ())
            .map_err(|e| CodecError::new(Self::NAME, e))
    }
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        let seed = bounded::Seed::<T>::new(bytes.len());
        match bincode::serde::seed_decode_from_slice(seed, bytes, bincode::config::standard()) {
            Ok((v, n)) if n == bytes.len() => Ok(v),
            Ok(_) => Err(CodecError::new(Self::NAME, "trailing bytes")),
            Err(e) => Err(CodecError::new(Self::NAME, e)),
        }
    }
}

/// Run-time choice of codec, as given to the builder or to `codec = "..."`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum CodecKind {
    /// [`Postcard`] (the default).
    #[default]
    Postcard,
    /// [`Json`].
    Json,
    /// [`MsgPack`].
    MsgPack,
    /// [`Bincode`] (needs the `bincode` feature).
    #[cfg(feature = "bincode")]
    Bincode,
}

impl CodecKind {
    /// The id recorded in the envelope.
    pub const fn id(self) -> u8 {
        match self {
            CodecKind::Postcard => Postcard::ID,
            CodecKind::Json => Json::ID,
            CodecKind::MsgPack => MsgPack::ID,
            #[cfg(feature = "bincode")]
            CodecKind::Bincode => Bincode::ID,
        }
    }

    /// The codec's name.
    pub const fn name(self) -> &'static str {
        match self {
            CodecKind::Postcard => Postcard::NAME,
            CodecKind::Json => Json::NAME,
            CodecKind::MsgPack => MsgPack::NAME,
            #[cfg(feature = "bincode")]
            CodecKind::Bincode => Bincode::NAME,
        }
    }

    /// Appends the encoding of `value` to `out`.
    pub fn encode<T: Serialize + ?Sized>(
        self,
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        match self {
            CodecKind::Postcard => Postcard::encode(value, out),
            CodecKind::Json => Json::encode(value, out),
            CodecKind::MsgPack => MsgPack::encode(value, out),
            #[cfg(feature = "bincode")]
            CodecKind::Bincode => Bincode::encode(value, out),
        }
    }

    /// Decodes a whole buffer.
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, CodecError> {
        match self {
            CodecKind::Postcard => Postcard::decode(bytes),
            CodecKind::Json => Json::decode(bytes),
            CodecKind::MsgPack => MsgPack::decode(bytes),
            #[cfg(feature = "bincode")]
            CodecKind::Bincode => Bincode::decode(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Rec {
        id: u64,
        name: String,
        tags: Vec<String>,
        score: Option<f64>,
    }

    /// A recursive type: each level one element deeper.
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Node {
        next: Vec<Node>,
    }

    /// About 1 MiB of `Node`s nested one in the next, as `codec` writes them
    /// (built by hand: encoding it would recurse as deep).
    fn nested(codec: CodecKind) -> Vec<u8> {
        const BYTES: usize = 1 << 20;
        match codec {
            // A one-element vector is its length, 1; the innermost is empty.
            CodecKind::Postcard => [vec![1; BYTES], vec![0]].concat(),
            #[cfg(feature = "bincode")]
            CodecKind::Bincode => [vec![1; BYTES], vec![0]].concat(),
            // {"next": [ ... ]} as a one-entry map holding a one-element array.
            CodecKind::MsgPack => {
                let level = [0x81, 0xa4, b'n', b'e', b'x', b't', 0x91];
                let mut out = level.repeat(BYTES / level.len());
                out.extend_from_slice(&[0x81, 0xa4, b'n', b'e', b'x', b't', 0x90]);
                out
            }
            CodecKind::Json => {
                let levels = BYTES / 20;
                let mut out = r#"{"next":["#.repeat(levels);
                out.push_str(r#"{"next":[]}"#);
                out.push_str(&"]}".repeat(levels));
                out.into_bytes()
            }
        }
    }

    #[test]
    fn values_nested_deeper_than_the_bound_are_refused_by_every_codec() {
        for codec in kinds() {
            let bytes = nested(codec);
            // Without a bound, this recursion overflows the thread's stack.
            assert!(codec.decode::<Node>(&bytes).is_err(), "{}", codec.name());
        }
        // Arguments of write-behind calls too.
        let args = [&[7u8][..], &nested(CodecKind::Postcard)].concat();
        assert!(crate::behind::decode_args::<(u64, Node)>(&args).is_err());
    }

    #[test]
    fn values_within_the_bound_decode() {
        // A `Node` level is two: the struct and its vector.
        let levels = bounded::MAX_DEPTH as usize / 2 - 1;
        let mut bytes = vec![1u8; levels];
        bytes.push(0);
        for codec in [CodecKind::Postcard, CodecKind::MsgPack] {
            let bytes = match codec {
                CodecKind::MsgPack => {
                    let level = [0x81, 0xa4, b'n', b'e', b'x', b't', 0x91];
                    let mut out = level.repeat(levels);
                    out.extend_from_slice(&[0x81, 0xa4, b'n', b'e', b'x', b't', 0x90]);
                    out
                }
                _ => bytes.clone(),
            };
            assert!(codec.decode::<Node>(&bytes).is_ok(), "{}", codec.name());
        }
        bytes.insert(0, 1);
        assert!(
            CodecKind::Postcard.decode::<Node>(&bytes).is_err(),
            "one level more"
        );
    }

    fn kinds() -> Vec<CodecKind> {
        vec![
            CodecKind::Postcard,
            CodecKind::Json,
            CodecKind::MsgPack,
            #[cfg(feature = "bincode")]
            CodecKind::Bincode,
        ]
    }

    #[test]
    fn every_codec_round_trips_and_rejects_truncation() {
        let rec = Rec {
            id: 7,
            name: "ünïcode".into(),
            tags: vec!["a".into(), "".into()],
            score: Some(1.5),
        };
        for k in kinds() {
            let mut buf = Vec::new();
            k.encode(&rec, &mut buf).unwrap();
            assert_eq!(k.decode::<Rec>(&buf).unwrap(), rec, "{k:?}");
            assert!(
                k.decode::<Rec>(&buf[..buf.len() - 1]).is_err(),
                "{k:?} truncated"
            );
            let mut longer = buf.clone();
            longer.push(0);
            assert!(k.decode::<Rec>(&longer).is_err(), "{k:?} trailing");
        }
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Variant {
        Unit,
        Newtype(String),
        Tuple(u8, Vec<u16>),
        Struct { a: Option<Box<Variant>>, b: char },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Newtype(Vec<u8>);

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Unit;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Shapes {
        variants: Vec<Variant>,
        nested: Vec<Vec<Option<String>>>,
        map: std::collections::BTreeMap<String, std::collections::HashMap<u32, Vec<i64>>>,
        set: std::collections::HashSet<String>,
        units: Vec<()>,
        unit_values: std::collections::HashMap<u8, ()>,
        tuple: (u8, String, Unit, Newtype),
        array: [u16; 3],
        wide: (i128, u128),
        empty: Vec<String>,
    }

    fn shapes() -> Shapes {
        Shapes {
            variants: vec![
                Variant::Unit,
                Variant::Newtype("n".into()),
                Variant::Tuple(3, vec![1, 2]),
                Variant::Struct {
                    a: Some(Box::new(Variant::Unit)),
                    b: 'é',
                },
            ],
            nested: vec![vec![Some("x".into()), None], vec![]],
            map: [(
                "k".to_string(),
                [(1, vec![-1, i64::MAX]), (2, vec![])].into(),
            )]
            .into(),
            set: ["a".to_string(), "b".to_string()].into(),
            units: vec![(); 5],
            unit_values: [(1, ()), (2, ())].into(),
            tuple: (9, "t".into(), Unit, Newtype(vec![0, 255])),
            array: [1, 2, 3],
            wide: (i128::MIN, u128::MAX),
            empty: vec![],
        }
    }

    #[test]
    fn every_codec_round_trips_every_shape() {
        for k in kinds() {
            let mut buf = Vec::new();
            k.encode(&shapes(), &mut buf).unwrap();
            assert_eq!(k.decode::<Shapes>(&buf).unwrap(), shapes(), "{k:?}");
        }
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(untagged)]
    enum Untagged {
        Number(u64),
        Words(Vec<String>),
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Flattened {
        id: u32,
        #[serde(flatten)]
        rest: std::collections::BTreeMap<String, Untagged>,
        other: Option<Untagged>,
    }

    #[test]
    fn self_describing_codecs_round_trip_flatten_and_untagged() {
        let v = Flattened {
            id: 1,
            rest: [
                ("n".to_string(), Untagged::Number(5)),
                ("w".to_string(), Untagged::Words(vec!["a".into()])),
            ]
            .into(),
            other: Some(Untagged::Words(vec![])),
        };
        for k in [CodecKind::Json, CodecKind::MsgPack] {
            let mut buf = Vec::new();
            k.encode(&v, &mut buf).unwrap();
            assert_eq!(k.decode::<Flattened>(&buf).unwrap(), v, "{k:?}");
        }
    }

    #[test]
    fn write_behind_arguments_ignore_trailing_bytes() {
        let mut buf = Vec::new();
        Postcard::encode(&(1u8, "a"), &mut buf).unwrap();
        buf.push(9);
        let (args, rest): ((u8, String), _) = postcard_take_from_bytes(&buf).unwrap();
        assert_eq!((args, rest), ((1, "a".to_string()), &[9][..]));
    }
}
