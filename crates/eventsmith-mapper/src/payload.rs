//! Sealing and opening payloads: header, compression, encryption. Shared by the event mapper
//! and by snapshots, so both are stored the same way.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use eventsmith_core::{
    Compressor, DecodeErrorKind, EncodeError, IntegerSequencedItem, Metadata, PayloadCipher,
    SequencedItem,
};

use crate::Encrypt;
use crate::codec::CodecId;
use crate::header::PayloadHeader;

/// How payloads are written: the codec, and optionally a compressor and a cipher. Readers
/// follow each payload's header instead, so settings can change while old data stays readable.
#[derive(Clone)]
pub struct Payloads {
    pub(crate) codec: CodecId,
    pub(crate) compressor: Option<Arc<dyn Compressor>>,
    pub(crate) cipher: Option<Arc<dyn PayloadCipher>>,
    pub(crate) encrypt: Encrypt,
    pub(crate) plaintext_up_to: Option<u64>,
}

impl fmt::Debug for Payloads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Payloads")
            .field("codec", &self.codec)
            .field("compressor", &self.compressor.is_some())
            .field("cipher", &self.cipher.is_some())
            .field("encrypt", &self.encrypt)
            .field("plaintext_up_to", &self.plaintext_up_to)
            .finish()
    }
}

/// The associated data that binds an encrypted payload to its place.
fn associated_data(sequence_id: Uuid, position: u64, topic: &str, header: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(16 + 8 + 4 + topic.len() + header.len());
    aad.extend_from_slice(sequence_id.as_bytes());
    aad.extend_from_slice(&position.to_be_bytes());
    aad.extend_from_slice(&(topic.len() as u32).to_be_bytes());
    aad.extend_from_slice(topic.as_bytes());
    aad.extend_from_slice(header);
    aad
}

impl Payloads {
    /// Plain payloads written with `codec`.
    pub fn new(codec: CodecId) -> Self {
        Payloads {
            codec,
            compressor: None,
            cipher: None,
            encrypt: Encrypt::None,
            plaintext_up_to: None,
        }
    }

    /// Compresses new payloads with `compressor`, and decompresses compressed ones.
    pub fn with_compressor(mut self, compressor: Arc<dyn Compressor>) -> Self {
        self.compressor = Some(compressor);
        self
    }

    /// Encrypts the payloads `which` selects with `cipher`, and decrypts encrypted ones.
    pub fn with_cipher(mut self, cipher: Arc<dyn PayloadCipher>, which: Encrypt) -> Self {
        self.cipher = Some(cipher);
        self.encrypt = which;
        self
    }

    /// Reads plaintext payloads of encrypted topics at positions `1..=position`: the opt-in
    /// for a store that switched encryption on after plaintext was written. See
    /// [`EventMapperBuilder::accept_plaintext_up_to`](crate::EventMapperBuilder::accept_plaintext_up_to).
    pub fn accept_plaintext_up_to(mut self, position: u64) -> Self {
        self.plaintext_up_to = Some(position);
        self
    }

    /// Whether this reader refuses a plaintext payload of `topic` at `position`: a cipher is
    /// configured, it encrypts `topic`, and `position` is past the plaintext opt-in bound.
    pub fn requires_encryption(&self, topic: &str, position: u64) -> bool {
        self.cipher.is_some()
            && self.encrypt.applies_to(topic)
            && self.plaintext_up_to.is_none_or(|bound| position > bound)
    }

    /// Whether encrypted payloads can be opened (a cipher is configured).
    pub fn can_decrypt(&self) -> bool {
        self.cipher.is_some()
    }

    /// The codec new payloads are written with.
    pub fn codec(&self) -> CodecId {
        self.codec
    }

    /// The I/O sealing a payload of `topic` for `sequence_id` needs first, if any: the
    /// cipher's [`prepare`](PayloadCipher::prepare) (a new aggregate's key created and
    /// stored) when this topic is encrypted. Await it before [`seal`](Self::seal) so that the
    /// synchronous seal does no I/O.
    pub fn prepare(
        &self,
        sequence_id: Uuid,
        topic: &str,
    ) -> Option<eventsmith_core::BoxFuture<'_, Result<(), EncodeError>>> {
        let cipher = self
            .cipher
            .as_ref()
            .filter(|_| self.encrypt.applies_to(topic))?;
        let ready = cipher.prepare(sequence_id)?;
        Some(Box::pin(
            async move { ready.await.map_err(EncodeError::Cipher) },
        ))
    }

    /// Serializes `value` and seals it as the item at (`sequence_id`, `position`, `topic`),
    /// with `metadata` in the header (authenticated with the body when it is encrypted).
    #[allow(clippy::too_many_arguments)] // one call per kind of item: events and snapshots
    pub fn seal<T: Serialize + ?Sized>(
        &self,
        sequence_id: Uuid,
        position: u64,
        topic: &str,
        schema_version: u32,
        timestamp_nanos: i64,
        metadata: &Metadata,
        value: &T,
    ) -> Result<IntegerSequencedItem, EncodeError> {
        metadata.check().map_err(|source| EncodeError::Metadata {
            topic: topic.to_owned(),
            source,
        })?;
        let serialize_error = |source| EncodeError::Serialize {
            topic: topic.to_owned(),
            source,
        };
        let mut body = self.codec.encode(value).map_err(serialize_error)?;
        // Every reader refuses bodies past the limit (codecs and the decompressor alike), so
        // a larger one is refused here, before anything is written.
        if body.len() > crate::MAX_PAYLOAD_LEN {
            return Err(EncodeError::TooLarge {
                topic: topic.to_owned(),
                len: body.len(),
                max: crate::MAX_PAYLOAD_LEN,
            });
        }
        let mut compressed = false;
        if let Some(compressor) = &self.compressor
            && let Some(smaller) = compressor.compress(&body).map_err(EncodeError::Compress)?
        {
            body = smaller;
            compressed = true;
        }
        let cipher = self
            .cipher
            .as_ref()
            .filter(|_| self.encrypt.applies_to(topic));
        let key_id = match cipher {
            Some(c) => Some(c.current_key_id(sequence_id)?),
            None => None,
        };
        let header = PayloadHeader {
            codec: self.codec,
            compressed,
            key_id,
            schema_version,
            timestamp_nanos,
            metadata: metadata.clone(),
        };
        let mut payload = Vec::with_capacity(32 + body.len());
        header
            .write(&mut payload)
            .map_err(|source| EncodeError::Header {
                topic: topic.to_owned(),
                source,
            })?;
        if let (Some(cipher), Some(key_id)) = (cipher, &header.key_id) {
            let aad = associated_data(sequence_id, position, topic, &payload);
            let sealed = cipher.encrypt(sequence_id, key_id, &aad, &body)?;
            payload.extend_from_slice(&sealed);
        } else {
            payload.extend_from_slice(&body);
        }
        Ok(SequencedItem {
            sequence_id,
            position,
            topic: topic.to_owned(),
            payload,
        })
    }

    /// Checks, decrypts and decompresses an item's payload: its header and codec bytes.
    ///
    /// A plaintext payload of a topic this reader encrypts is refused with
    /// [`DecodeErrorKind::NotEncrypted`] (see [`requires_encryption`](Self::requires_encryption)):
    /// without the check, anyone who can write to the database could insert a plaintext item
    /// and have it load as genuine.
    pub fn open<'a>(
        &self,
        item: &'a IntegerSequencedItem,
    ) -> Result<(PayloadHeader, Cow<'a, [u8]>), DecodeErrorKind> {
        let (header, body) = PayloadHeader::parse(&item.payload)?;
        if !header.codec.is_available() {
            return Err(DecodeErrorKind::UnknownCodec(header.codec.to_byte()));
        }
        let body = match &header.key_id {
            Some(key_id) => {
                let cipher = self.cipher.as_ref().ok_or(DecodeErrorKind::NoCipher)?;
                let header_len = item.payload.len() - body.len();
                let aad = associated_data(
                    item.sequence_id,
                    item.position,
                    &item.topic,
                    &item.payload[..header_len],
                );
                Cow::Owned(cipher.decrypt(item.sequence_id, key_id, &aad, body)?)
            }
            None if self.requires_encryption(&item.topic, item.position) => {
                return Err(DecodeErrorKind::NotEncrypted);
            }
            // Plain payloads are decoded in place: no copy on the common read path.
            None => Cow::Borrowed(body),
        };
        let body = if header.compressed {
            let compressor = self
                .compressor
                .as_ref()
                .ok_or(DecodeErrorKind::NoCompressor)?;
            Cow::Owned(
                compressor
                    .decompress(&body)
                    .map_err(DecodeErrorKind::Decompress)?,
            )
        } else {
            body
        };
        Ok((header, body))
    }

    /// Deserializes codec bytes that [`open`](Self::open) returned.
    pub fn decode<T: DeserializeOwned>(codec: CodecId, bytes: &[u8]) -> Result<T, DecodeErrorKind> {
        codec.decode(bytes).map_err(DecodeErrorKind::Deserialize)
    }
}
