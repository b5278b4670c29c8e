//! The seams between domain events and stored bytes: the mapper, and the compression and
//! encryption hooks a mapper calls. Implementations live in `eventsmith-mapper` and
//! `eventsmith-cipher`; core only names the contracts.

use uuid::Uuid;

use crate::aggregate::Envelope;
use crate::application::BoxFuture;
use crate::error::{CipherError, CompressError, DecodeError, EncodeError};
use crate::item::IntegerSequencedItem;

/// Turns domain events into sequenced items and back.
pub trait Mapper<E>: Send + Sync + 'static {
    /// Encodes one event (with its metadata) as a stored item.
    fn encode(&self, envelope: &Envelope<E>) -> Result<IntegerSequencedItem, EncodeError>;
    /// Decodes a stored item; every failure names the item's sequence id, position and topic.
    fn decode(&self, item: &IntegerSequencedItem) -> Result<Envelope<E>, DecodeError>;

    /// The I/O that [`encode`](Self::encode)ing `envelope` needs first, as a future, so that
    /// it runs off the async worker threads rather than inside the synchronous `encode` (a
    /// per-aggregate key created and stored durably, say); `None` when there is none (the
    /// default). The repository awaits it before encoding.
    fn prepare(&self, envelope: &Envelope<E>) -> Option<BoxFuture<'_, Result<(), EncodeError>>> {
        let _ = envelope;
        None
    }
}

/// Compresses payloads before encryption.
pub trait Compressor: Send + Sync + 'static {
    /// Compresses `bytes`, or returns `None` to store them uncompressed (too small to gain).
    fn compress(&self, bytes: &[u8]) -> Result<Option<Vec<u8>>, CompressError>;
    /// Reverses [`compress`](Self::compress); fails on a corrupt or over-size frame.
    fn decompress(&self, bytes: &[u8]) -> Result<Vec<u8>, CompressError>;
}

/// Authenticated encryption of payloads under rotating keys, addressed by key id.
///
/// The associated data binds a ciphertext to its place (sequence id, position, topic and
/// payload header), so a ciphertext copied onto another event fails to decrypt.
pub trait PayloadCipher: Send + Sync + 'static {
    /// The id of the key new writes to `sequence_id` use.
    fn current_key_id(&self, sequence_id: Uuid) -> Result<String, CipherError>;
    /// The I/O that encrypting for `sequence_id` needs first (creating and storing its key),
    /// as a future that runs it off the async worker threads; `None` when there is none (the
    /// default). A mapper's [`prepare`](Mapper::prepare) awaits it, so that
    /// [`current_key_id`](Self::current_key_id) and [`encrypt`](Self::encrypt) then answer
    /// from memory.
    fn prepare(&self, sequence_id: Uuid) -> Option<BoxFuture<'_, Result<(), CipherError>>> {
        let _ = sequence_id;
        None
    }
    /// Encrypts under the key `key_id`.
    fn encrypt(
        &self,
        sequence_id: Uuid,
        key_id: &str,
        associated_data: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CipherError>;
    /// Decrypts what [`encrypt`](Self::encrypt) returned.
    fn decrypt(
        &self,
        sequence_id: Uuid,
        key_id: &str,
        associated_data: &[u8],
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, CipherError>;
}
