//! The payload header: what every stored payload starts with.
//!
//! ```text
//! byte 0      format version (1)
//! byte 1      codec id (1 JSON, 2 postcard, 3 bincode)
//! byte 2      flags: bit 0 compressed (zstd), bit 1 encrypted; other bits must be 0
//! bytes 3-6   event schema version, u32 little-endian
//! bytes 7-14  event timestamp, i64 little-endian nanoseconds since the Unix epoch
//! if encrypted:
//!   byte 15   key id length n (1-255), then n bytes of UTF-8 key id
//! if metadata (flag bit 2):
//!   u32 little-endian length m (1-65536), then m bytes: the metadata, postcard-encoded
//!   (correlation id, causation id, user map in key order)
//! then the body: codec bytes, compressed if flagged, then encrypted if flagged
//! ```
//!
//! The whole header is part of an encrypted payload's associated data, so metadata is
//! authenticated with the body: an edit to it fails decryption.
//!
//! A reader rejects any other format version, unknown flag bits and unknown codec ids with a
//! typed error, so a future format change fails clearly instead of decoding garbage.

use eventsmith_core::{DecodeErrorKind, HeaderError, Metadata};

use crate::codec::CodecId;

/// The only format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;

const FLAG_COMPRESSED: u8 = 0b01;
const FLAG_ENCRYPTED: u8 = 0b10;
const FLAG_METADATA: u8 = 0b100;
const FIXED_LEN: usize = 15;
/// The most bytes encoded metadata may take (well above what [`Metadata::check`] allows).
pub const MAX_METADATA_LEN: usize = 64 * 1024;

/// The decoded header of a stored payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadHeader {
    /// The codec of the body.
    pub codec: CodecId,
    /// Whether the body was compressed (before encryption).
    pub compressed: bool,
    /// The id of the key the body is encrypted under; `None` when not encrypted.
    pub key_id: Option<String>,
    /// The schema version of the event type that wrote the payload.
    pub schema_version: u32,
    /// The event's timestamp, nanoseconds since the Unix epoch.
    pub timestamp_nanos: i64,
    /// The event's metadata (empty for snapshots and for events written without it).
    pub metadata: Metadata,
}

impl PayloadHeader {
    /// Parses a header from the start of `payload`, returning it and the body after it.
    pub fn parse(payload: &[u8]) -> Result<(PayloadHeader, &[u8]), DecodeErrorKind> {
        if payload.len() < FIXED_LEN {
            if let Some(&v) = payload.first()
                && v != FORMAT_VERSION
            {
                return Err(DecodeErrorKind::UnsupportedFormat(v));
            }
            return Err(DecodeErrorKind::Header(HeaderError::Truncated {
                field: "fixed part",
                needed: FIXED_LEN,
                left: payload.len(),
            }));
        }
        if payload[0] != FORMAT_VERSION {
            return Err(DecodeErrorKind::UnsupportedFormat(payload[0]));
        }
        let codec =
            CodecId::from_byte(payload[1]).ok_or(DecodeErrorKind::UnknownCodec(payload[1]))?;
        let flags = payload[2];
        if flags & !(FLAG_COMPRESSED | FLAG_ENCRYPTED | FLAG_METADATA) != 0 {
            return Err(DecodeErrorKind::Header(HeaderError::UnknownFlags(
                flags & !(FLAG_COMPRESSED | FLAG_ENCRYPTED | FLAG_METADATA),
            )));
        }
        let schema_version = u32::from_le_bytes(payload[3..7].try_into().expect("4 bytes"));
        let timestamp_nanos = i64::from_le_bytes(payload[7..15].try_into().expect("8 bytes"));
        let mut rest = &payload[FIXED_LEN..];
        let key_id = if flags & FLAG_ENCRYPTED != 0 {
            let (&len, after) =
                rest.split_first()
                    .ok_or(DecodeErrorKind::Header(HeaderError::Truncated {
                        field: "key id length",
                        needed: 1,
                        left: 0,
                    }))?;
            let len = usize::from(len);
            if len == 0 {
                return Err(DecodeErrorKind::Header(HeaderError::KeyIdLength { len }));
            }
            if after.len() < len {
                return Err(DecodeErrorKind::Header(HeaderError::Truncated {
                    field: "key id",
                    needed: len,
                    left: after.len(),
                }));
            }
            let id = std::str::from_utf8(&after[..len])
                .map_err(|e| DecodeErrorKind::Header(HeaderError::KeyIdNotUtf8(e)))?;
            rest = &after[len..];
            Some(id.to_owned())
        } else {
            None
        };
        let metadata = if flags & FLAG_METADATA != 0 {
            if rest.len() < 4 {
                return Err(DecodeErrorKind::Header(HeaderError::Truncated {
                    field: "metadata length",
                    needed: 4,
                    left: rest.len(),
                }));
            }
            let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
            let after = &rest[4..];
            if len == 0 || len > MAX_METADATA_LEN {
                return Err(DecodeErrorKind::Header(HeaderError::MetadataLength {
                    len,
                    max: MAX_METADATA_LEN,
                }));
            }
            if after.len() < len {
                return Err(DecodeErrorKind::Header(HeaderError::Truncated {
                    field: "metadata",
                    needed: len,
                    left: after.len(),
                }));
            }
            let stored = &after[..len];
            let metadata: Metadata = postcard::from_bytes(stored)
                .map_err(|e| DecodeErrorKind::Header(HeaderError::Metadata(Box::new(e))))?;
            // Only the one encoding the writer produces is accepted (no trailing bytes, no
            // repeated map keys, no empty metadata behind the flag): what is read writes
            // back to the same bytes, which the associated data of an encrypted payload
            // depends on.
            let canonical = !metadata.is_empty()
                && postcard::to_allocvec(&metadata).is_ok_and(|bytes| bytes == stored);
            if !canonical {
                return Err(DecodeErrorKind::Header(HeaderError::NonCanonicalMetadata));
            }
            rest = &after[len..];
            metadata
        } else {
            Metadata::default()
        };
        let header = PayloadHeader {
            codec,
            compressed: flags & FLAG_COMPRESSED != 0,
            key_id,
            schema_version,
            timestamp_nanos,
            metadata,
        };
        Ok((header, rest))
    }

    /// Writes the header; fails only for a key id that is empty or longer than 255 bytes.
    pub fn write(&self, out: &mut Vec<u8>) -> Result<(), HeaderError> {
        let mut flags = 0;
        if self.compressed {
            flags |= FLAG_COMPRESSED;
        }
        if self.key_id.is_some() {
            flags |= FLAG_ENCRYPTED;
        }
        if !self.metadata.is_empty() {
            flags |= FLAG_METADATA;
        }
        out.extend_from_slice(&[FORMAT_VERSION, self.codec.to_byte(), flags]);
        out.extend_from_slice(&self.schema_version.to_le_bytes());
        out.extend_from_slice(&self.timestamp_nanos.to_le_bytes());
        if let Some(key_id) = &self.key_id {
            let len = u8::try_from(key_id.len())
                .ok()
                .filter(|&l| l > 0)
                .ok_or(HeaderError::KeyIdLength { len: key_id.len() })?;
            out.push(len);
            out.extend_from_slice(key_id.as_bytes());
        }
        if !self.metadata.is_empty() {
            let bytes = postcard::to_allocvec(&self.metadata)
                .map_err(|e| HeaderError::Metadata(Box::new(e)))?;
            if bytes.len() > MAX_METADATA_LEN {
                return Err(HeaderError::MetadataLength {
                    len: bytes.len(),
                    max: MAX_METADATA_LEN,
                });
            }
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(&bytes);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(key_id: Option<&str>) -> PayloadHeader {
        PayloadHeader {
            codec: CodecId::Postcard,
            compressed: true,
            key_id: key_id.map(str::to_owned),
            schema_version: 7,
            timestamp_nanos: -42,
            metadata: Metadata::default(),
        }
    }

    /// Each malformed header is its own variant, saying where; a decoder's error stays the
    /// source.
    #[test]
    fn malformed_headers_are_typed_and_keep_their_source() {
        use std::error::Error;

        let mut out = Vec::new();
        assert!(matches!(
            header(Some("")).write(&mut out),
            Err(HeaderError::KeyIdLength { len: 0 })
        ));
        assert!(matches!(
            header(Some(&"k".repeat(256))).write(&mut out),
            Err(HeaderError::KeyIdLength { len: 256 })
        ));

        let mut bytes = Vec::new();
        header(Some("k1")).write(&mut bytes).unwrap();
        assert!(matches!(
            PayloadHeader::parse(&bytes[..9]),
            Err(DecodeErrorKind::Header(HeaderError::Truncated {
                field: "fixed part",
                needed: 15,
                left: 9
            }))
        ));
        assert!(matches!(
            PayloadHeader::parse(&bytes[..17]),
            Err(DecodeErrorKind::Header(HeaderError::Truncated {
                field: "key id",
                needed: 2,
                left: 1
            }))
        ));
        let mut flags = bytes.clone();
        flags[2] |= 0b1000_0000;
        assert!(matches!(
            PayloadHeader::parse(&flags),
            Err(DecodeErrorKind::Header(HeaderError::UnknownFlags(0x80)))
        ));
        let mut utf8 = bytes.clone();
        utf8[16] = 0xff;
        let err = PayloadHeader::parse(&utf8).unwrap_err();
        let DecodeErrorKind::Header(inner @ HeaderError::KeyIdNotUtf8(_)) = &err else {
            panic!("{err:?}")
        };
        assert!(err.source().is_some_and(|s| s.is::<HeaderError>()));
        assert!(
            inner
                .source()
                .is_some_and(|s| s.is::<std::str::Utf8Error>())
        );

        // Metadata that postcard cannot decode: postcard's error is the source.
        let mut plain = Vec::new();
        header(None).write(&mut plain).unwrap();
        plain[2] |= FLAG_METADATA;
        plain.extend_from_slice(&3u32.to_le_bytes());
        plain.extend_from_slice(&[0xff, 0xff, 0xff]);
        let err = PayloadHeader::parse(&plain).unwrap_err();
        let DecodeErrorKind::Header(inner @ HeaderError::Metadata(_)) = &err else {
            panic!("{err:?}")
        };
        assert!(inner.source().is_some_and(|s| s.is::<postcard::Error>()));
        let mut long = plain.clone();
        long[FIXED_LEN..FIXED_LEN + 4]
            .copy_from_slice(&(MAX_METADATA_LEN as u32 + 1).to_le_bytes());
        assert!(matches!(
            PayloadHeader::parse(&long),
            Err(DecodeErrorKind::Header(HeaderError::MetadataLength {
                max: MAX_METADATA_LEN,
                ..
            }))
        ));
    }

    #[test]
    fn non_canonical_metadata_is_refused() {
        // Found by the payload_header fuzz target: trailing bytes after the metadata.
        let found = [
            1, 1, 7, 2, 0, 0, 0, 1, 7, 1, 255, 255, 255, 255, 1, 1, 7, 10, 0, 0, 0, 1, 0, 0, 1, 0,
            0, 1, 7, 7, 0,
        ];
        assert!(matches!(
            PayloadHeader::parse(&found),
            Err(DecodeErrorKind::Header(HeaderError::NonCanonicalMetadata))
        ));
        // The flag with metadata that decodes as empty.
        let mut empty = vec![1, 2, 4, 1, 0, 0, 0];
        empty.extend_from_slice(&0i64.to_le_bytes());
        empty.extend_from_slice(&[3, 0, 0, 0, 0, 0, 0]);
        assert!(PayloadHeader::parse(&empty).is_err());
    }

    #[test]
    fn metadata_round_trips_and_every_truncation_is_typed() {
        let mut h = header(Some("key"));
        h.metadata = Metadata::default()
            .with_correlation_id("c-1")
            .with_causation_id("cmd-9")
            .with_user("actor", "ada");
        let mut out = Vec::new();
        h.write(&mut out).unwrap();
        out.extend_from_slice(b"body");
        let (parsed, body) = PayloadHeader::parse(&out).unwrap();
        assert_eq!(parsed, h);
        assert_eq!(body, b"body");
        let body_at = out.len() - 4;
        for len in 0..body_at {
            assert!(
                PayloadHeader::parse(&out[..len]).is_err(),
                "truncated to {len}"
            );
        }
    }

    #[test]
    fn round_trips_with_and_without_key() {
        for key in [None, Some("k1"), Some(&*"x".repeat(255))] {
            let mut out = Vec::new();
            header(key).write(&mut out).unwrap();
            out.extend_from_slice(b"body");
            let (parsed, body) = PayloadHeader::parse(&out).unwrap();
            assert_eq!(parsed, header(key));
            assert_eq!(body, b"body");
        }
    }

    #[test]
    fn rejects_bad_key_ids_on_write() {
        assert!(header(Some("")).write(&mut Vec::new()).is_err());
        assert!(
            header(Some(&"x".repeat(256)))
                .write(&mut Vec::new())
                .is_err()
        );
    }

    #[test]
    fn every_truncation_is_a_typed_error() {
        let mut out = Vec::new();
        header(Some("key")).write(&mut out).unwrap();
        for len in 0..out.len() {
            assert!(
                matches!(
                    PayloadHeader::parse(&out[..len]),
                    Err(DecodeErrorKind::Header(_))
                ),
                "truncated to {len}"
            );
        }
    }

    #[test]
    fn rejects_future_formats_unknown_codecs_and_flags() {
        let mut out = Vec::new();
        header(None).write(&mut out).unwrap();
        let mut v2 = out.clone();
        v2[0] = 2;
        assert!(matches!(
            PayloadHeader::parse(&v2),
            Err(DecodeErrorKind::UnsupportedFormat(2))
        ));
        let mut codec = out.clone();
        codec[1] = 99;
        assert!(matches!(
            PayloadHeader::parse(&codec),
            Err(DecodeErrorKind::UnknownCodec(99))
        ));
        let mut flags = out;
        flags[2] |= 0x80;
        assert!(matches!(
            PayloadHeader::parse(&flags),
            Err(DecodeErrorKind::Header(_))
        ));
    }
}
