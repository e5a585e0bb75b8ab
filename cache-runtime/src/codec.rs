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

use serde::{Serialize, de::DeserializeOwned};

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
        match postcard::take_from_bytes(bytes) {
            Ok((v, [])) => Ok(v),
            Ok(_) => Err(CodecError::new(Self::NAME, "trailing bytes")),
            Err(e) => Err(CodecError::new(Self::NAME, e)),
        }
    }
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
        let v = T::deserialize(&mut de).map_err(|e| CodecError::new(Self::NAME, e))?;
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
        let limit = bincode::config::standard();
        match bincode::serde::decode_from_slice(bytes, limit) {
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
}
