//! Codecs for event payloads and snapshot states. Every stored value names its codec by
//! a one-byte tag, so a reader never guesses.

use crate::error::{ErrorKind, SharedError, shared};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The most a bincode decode may claim, in bytes (64 MiB): a corrupt or hostile length
/// prefix fails with an error instead of allocating gigabytes.
pub const BINCODE_DECODE_LIMIT: usize = 64 * 1024 * 1024;

type BincodeConfig = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<BINCODE_DECODE_LIMIT>,
>;

fn bincode_config() -> BincodeConfig {
    bincode::config::standard().with_limit::<BINCODE_DECODE_LIMIT>()
}

/// How a payload or a state is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// JSON (serde_json): self-describing, survives added fields. Tag 1.
    Json,
    /// bincode 2.0.1, standard configuration (varint, little endian). Tag 2.
    Bincode,
}

impl Codec {
    /// The tag stored with every value.
    pub fn tag(self) -> u8 {
        match self {
            Codec::Json => 1,
            Codec::Bincode => 2,
        }
    }

    /// The codec of a stored tag.
    pub fn from_tag(tag: u8) -> Result<Self, CodecError> {
        match tag {
            1 => Ok(Codec::Json),
            2 => Ok(Codec::Bincode),
            tag => Err(CodecError::UnknownCodec { tag }),
        }
    }

    /// The codec's name, as used in messages and configuration.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Json => "json",
            Codec::Bincode => "bincode",
        }
    }

    /// Encodes `value`.
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>, CodecError> {
        let encoded = match self {
            Codec::Json => serde_json::to_vec(value).map_err(shared),
            Codec::Bincode => {
                bincode::serde::encode_to_vec(value, bincode_config()).map_err(shared)
            }
        };
        encoded.map_err(|source| CodecError::Encode {
            codec: self,
            source,
        })
    }

    /// Decodes a value from all of `bytes` (trailing bytes are an error).
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, CodecError> {
        let decoded = match self {
            Codec::Json => serde_json::from_slice(bytes).map_err(shared),
            Codec::Bincode => {
                match bincode::serde::decode_from_slice::<T, _>(bytes, bincode_config()) {
                    Ok((value, read)) if read == bytes.len() => Ok(value),
                    Ok((_, read)) => Err(shared(format!(
                        "{} trailing bytes after the value",
                        bytes.len() - read
                    ))),
                    Err(e) => Err(shared(e)),
                }
            }
        };
        decoded.map_err(|source| CodecError::Decode {
            codec: self,
            source,
        })
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Codec {
    type Err = CodecError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "json" => Ok(Codec::Json),
            "bincode" => Ok(Codec::Bincode),
            other => Err(CodecError::UnknownName {
                name: other.to_owned(),
            }),
        }
    }
}

/// A value that could not be encoded or decoded.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The codec could not encode the value.
    #[error("{codec} could not encode the value: {source}")]
    Encode {
        /// The codec used.
        codec: Codec,
        /// The codec's own error.
        source: SharedError,
    },
    /// The bytes are not a valid value of the expected type.
    #[error("{codec} could not decode the value: {source}")]
    Decode {
        /// The codec used.
        codec: Codec,
        /// The codec's own error.
        source: SharedError,
    },
    /// A stored codec tag this version of eventkv does not know.
    #[error("unknown codec tag {tag} (known: 1 = json, 2 = bincode)")]
    UnknownCodec {
        /// The stored tag.
        tag: u8,
    },
    /// A codec name that is not `json` or `bincode`.
    #[error("unknown codec {name:?} (known: json, bincode)")]
    UnknownName {
        /// The name given.
        name: String,
    },
}

impl CodecError {
    /// What kind of failure it is: a value that does not encode or a name that is not a
    /// codec is invalid input; stored bytes that do not decode are corrupt; a stored codec
    /// tag this eventkv does not know is unsupported.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CodecError::Encode { .. } | CodecError::UnknownName { .. } => ErrorKind::InvalidInput,
            CodecError::Decode { .. } => ErrorKind::Corrupt,
            CodecError::UnknownCodec { .. } => ErrorKind::Unsupported,
        }
    }
}

crate::__error_class!(CodecError);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        for codec in [Codec::Json, Codec::Bincode] {
            assert_eq!(Codec::from_tag(codec.tag()).ok(), Some(codec));
            assert_eq!(codec.name().parse::<Codec>().ok(), Some(codec));
        }
        assert!(matches!(
            Codec::from_tag(9),
            Err(CodecError::UnknownCodec { tag: 9 })
        ));
    }

    #[test]
    fn hostile_length_prefix_is_an_error_not_an_allocation() {
        // A Vec<u64> whose varint length prefix claims u64::MAX / 2 elements.
        let mut bytes = vec![253u8];
        bytes.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
        let err = Codec::Bincode
            .decode::<Vec<u64>>(&bytes)
            .expect_err("must fail");
        assert!(
            matches!(
                err,
                CodecError::Decode {
                    codec: Codec::Bincode,
                    ..
                }
            ),
            "{err}"
        );
        // Just above the limit also fails, before reading any element.
        let mut bytes = vec![252u8];
        bytes.extend_from_slice(&((BINCODE_DECODE_LIMIT as u32 / 8) + 1).to_le_bytes());
        assert!(Codec::Bincode.decode::<Vec<u64>>(&bytes).is_err());
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut bytes = Codec::Bincode.encode(&7u32).expect("encodes");
        bytes.push(0);
        assert!(Codec::Bincode.decode::<u32>(&bytes).is_err());
    }

    #[test]
    fn bincode_cannot_decode_self_describing_values() {
        let value = serde_json::json!({"a": [1, 2]});
        let bytes = Codec::Bincode.encode(&value).expect("encoding works");
        assert!(Codec::Bincode.decode::<serde_json::Value>(&bytes).is_err());
        let bytes = Codec::Json.encode(&value).expect("encodes");
        assert_eq!(
            Codec::Json.decode::<serde_json::Value>(&bytes).ok(),
            Some(value)
        );
    }
}
