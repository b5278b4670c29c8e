//! Codecs: how an event value becomes bytes.

use serde::Serialize;
use serde::de::DeserializeOwned;

use eventsmith_core::BoxError;

/// A serialization format for event payloads.
pub trait Codec {
    /// The id stored in every payload header written with this codec.
    const ID: CodecId;
    /// Serializes a value.
    fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, BoxError>;
    /// Deserializes a value; trailing bytes are an error.
    fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BoxError>;
}

/// JSON (serde_json): self-describing, readable, the most forgiving of schema changes.
#[derive(Debug, Clone, Copy)]
pub struct Json;

/// postcard: compact binary, the default compact codec. Not self-describing: fields are
/// matched by order, so change a type only through a new schema version and an upcaster.
#[derive(Debug, Clone, Copy)]
pub struct Postcard;

/// bincode 2 (`bincode` feature): for users who need that format. Prefer [`Postcard`];
/// bincode is no longer maintained.
#[cfg(feature = "bincode")]
#[derive(Debug, Clone, Copy)]
pub struct Bincode;

/// The codec ids of the payload header. Ids are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CodecId {
    /// [`Json`].
    Json,
    /// [`Postcard`].
    Postcard,
    /// `Bincode` (needs the `bincode` feature to read or write).
    Bincode,
}

impl CodecId {
    /// The byte stored in the header.
    pub const fn to_byte(self) -> u8 {
        match self {
            CodecId::Json => 1,
            CodecId::Postcard => 2,
            CodecId::Bincode => 3,
        }
    }

    /// The codec of a header byte, if known.
    pub const fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(CodecId::Json),
            2 => Some(CodecId::Postcard),
            3 => Some(CodecId::Bincode),
            _ => None,
        }
    }

    /// Whether this build can read and write the codec.
    pub const fn is_available(self) -> bool {
        !matches!(self, CodecId::Bincode) || cfg!(feature = "bincode")
    }

    pub(crate) fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>, BoxError> {
        match self {
            CodecId::Json => Json::to_bytes(value),
            CodecId::Postcard => Postcard::to_bytes(value),
            #[cfg(feature = "bincode")]
            CodecId::Bincode => Bincode::to_bytes(value),
            #[cfg(not(feature = "bincode"))]
            CodecId::Bincode => Err("this build lacks the bincode feature".into()),
        }
    }

    pub(crate) fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, BoxError> {
        match self {
            CodecId::Json => Json::from_bytes(bytes),
            CodecId::Postcard => Postcard::from_bytes(bytes),
            #[cfg(feature = "bincode")]
            CodecId::Bincode => Bincode::from_bytes(bytes),
            #[cfg(not(feature = "bincode"))]
            CodecId::Bincode => Err("this build lacks the bincode feature".into()),
        }
    }
}

impl Codec for Json {
    const ID: CodecId = CodecId::Json;
    fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, BoxError> {
        Ok(serde_json::to_vec(value)?)
    }
    fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BoxError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

impl Codec for Postcard {
    const ID: CodecId = CodecId::Postcard;
    fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, BoxError> {
        Ok(postcard::to_stdvec(value)?)
    }
    fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BoxError> {
        let (value, rest) = postcard::take_from_bytes(bytes)?;
        if !rest.is_empty() {
            return Err(format!("{} trailing bytes after the value", rest.len()).into());
        }
        Ok(value)
    }
}

#[cfg(feature = "bincode")]
impl Codec for Bincode {
    const ID: CodecId = CodecId::Bincode;
    fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, BoxError> {
        Ok(bincode::serde::encode_to_vec(value, bincode_config())?)
    }
    fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BoxError> {
        let (value, read) = bincode::serde::decode_from_slice(bytes, bincode_config())?;
        if read != bytes.len() {
            return Err(format!("{} trailing bytes after the value", bytes.len() - read).into());
        }
        Ok(value)
    }
}

/// A length limit keeps a corrupt length prefix from allocating gigabytes.
#[cfg(feature = "bincode")]
fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ crate::MAX_PAYLOAD_LEN }>()
}
