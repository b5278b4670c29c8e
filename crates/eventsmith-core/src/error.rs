//! Typed errors, one enum per operation family.
//!
//! Every enum is `#[non_exhaustive]` so that new failure modes are not breaking changes.
//! Backends keep their driver errors as the `source` of [`StoreError::Backend`] or
//! [`StoreError::Busy`]; driver types never appear in these signatures.

use std::error::Error as StdError;

use uuid::Uuid;

use crate::item::{Position, Version};

/// A boxed error from a backend, a codec or a key store, kept as a `source`.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A failure of a store operation other than a version conflict.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store was closed; nothing was done.
    #[error("the event store is closed")]
    Closed,
    /// The store is temporarily unable to serve (a lock held by another process, a timeout
    /// before anything was sent). Nothing was written; the operation may be retried.
    #[error("the event store is busy: {source}")]
    Busy {
        /// What the backend said.
        #[source]
        source: BoxError,
    },
    /// The store does not offer this capability (see [`Capabilities`](crate::Capabilities)).
    #[error("the event store does not support {capability}: {reason}")]
    Unsupported {
        /// The missing capability.
        capability: &'static str,
        /// Why the backend cannot offer it.
        reason: &'static str,
    },
    /// An item cannot be stored as given (for example a version beyond the backend's range).
    #[error("invalid item for sequence {sequence_id} at {position}: {reason}")]
    InvalidItem {
        /// The item's sequence.
        sequence_id: Uuid,
        /// The item's position.
        position: Position,
        /// What is wrong with it.
        reason: String,
    },
    /// The write may or may not have been applied, and resolving it failed too.
    #[error("the outcome of commit {commit_id} is unknown: {source}")]
    OutcomeUnknown {
        /// The id the append was sent with.
        commit_id: Uuid,
        /// Why the outcome could not be resolved.
        #[source]
        source: BoxError,
    },
    /// Data read back from the store is not what this version of eventsmith wrote
    /// (a corrupt file, a foreign or newer schema).
    #[error("corrupt or foreign data in the event store: {detail}")]
    Corrupt {
        /// What was found, and where.
        detail: String,
    },
    /// The store's configuration is invalid (a bad URL, keyspace name or option); nothing
    /// was done.
    #[error("invalid event store configuration: {detail}")]
    Config {
        /// What is wrong, and where.
        detail: String,
    },
    /// The server could not be reached or refused the connection.
    #[error("cannot connect to the event store at {address}: {source}")]
    Unreachable {
        /// The address tried.
        address: String,
        /// Why it failed.
        #[source]
        source: BoxError,
    },
    /// Any other backend failure.
    #[error("event store backend failed: {source}")]
    Backend {
        /// The driver's error.
        #[source]
        source: BoxError,
    },
}

impl StoreError {
    /// Wraps a backend error.
    pub fn backend(source: impl Into<BoxError>) -> Self {
        StoreError::Backend {
            source: source.into(),
        }
    }

    /// Whether retrying the same operation may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Busy { .. })
    }
}

/// Why an append failed. Whatever the variant, nothing of the batch was written
/// (except [`StoreError::OutcomeUnknown`], which says just that it cannot be known).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// An item's (sequence id, position) already exists: optimistic concurrency lost.
    #[error("conflict: sequence {sequence_id} already has an item at {position}")]
    Conflict {
        /// The sequence that already holds the position.
        sequence_id: Uuid,
        /// The first conflicting position of the batch.
        position: Position,
    },
    /// A follower's tracking record is no longer at the position its page was read from:
    /// another runner of the follower applied it first. Nothing was written.
    #[error(
        "follower {follower:?} is at {found}, not {expected}: another runner applied this page"
    )]
    TrackingMoved {
        /// The follower.
        follower: String,
        /// The position the page was read from.
        expected: u64,
        /// The position recorded.
        found: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why an event could not be decoded from a stored item.
#[derive(Debug, thiserror::Error)]
#[error("cannot decode sequence {sequence_id} at {position}, topic {topic:?}: {kind}")]
pub struct DecodeError {
    /// The item's sequence.
    pub sequence_id: Uuid,
    /// The item's position.
    pub position: Position,
    /// The item's topic.
    pub topic: String,
    /// What went wrong.
    #[source]
    pub kind: DecodeErrorKind,
}

/// What went wrong while decoding a stored item.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// No decoder is registered for the topic.
    #[error("unknown topic")]
    UnknownTopic,
    /// The payload header is malformed or truncated.
    #[error("malformed payload header: {0}")]
    Header(String),
    /// The payload was written by a newer, unknown format.
    #[error("unsupported payload format version {0}")]
    UnsupportedFormat(u8),
    /// The payload names a codec this build does not know or was not built with.
    #[error("unknown codec id {0}")]
    UnknownCodec(u8),
    /// The event's schema version has no upcaster path to the current version.
    #[error("no upcaster from schema version {found} (current is {current})")]
    NoUpcaster {
        /// The schema version stored.
        found: u32,
        /// The schema version of the current event type.
        current: u32,
    },
    /// Decompression failed (a corrupt frame or an over-size payload).
    #[error("decompression failed: {0}")]
    Decompress(String),
    /// Decryption failed.
    #[error(transparent)]
    Cipher(#[from] CipherError),
    /// The payload is stored in plaintext, but this reader encrypts its topic and so accepts
    /// only encrypted payloads of it (a forged or downgraded item). Plaintext written before
    /// encryption was switched on is read only through an explicit opt-in with a bound.
    #[error(
        "payload is not encrypted, but this reader requires encryption for its topic (a forged or downgraded item?)"
    )]
    NotEncrypted,
    /// The codec could not deserialize the bytes.
    #[error("deserialization failed: {0}")]
    Deserialize(#[source] BoxError),
}

/// Why an event could not be encoded into a stored item.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The codec could not serialize the event.
    #[error("cannot serialize event {topic:?}: {source}")]
    Serialize {
        /// The event's topic.
        topic: String,
        /// The codec's error.
        #[source]
        source: BoxError,
    },
    /// No encoder is registered for the topic.
    #[error("topic {0:?} is not registered with the mapper")]
    UnknownTopic(String),
    /// Compression failed.
    #[error("compression failed: {0}")]
    Compress(String),
    /// The event's metadata breaks a limit.
    #[error("cannot store the metadata of event {topic:?}: {source}")]
    Metadata {
        /// The event's topic.
        topic: String,
        /// The limit broken.
        #[source]
        source: crate::metadata::InvalidMetadata,
    },
    /// The serialized event is larger than any reader accepts, so nothing is written: what a
    /// store accepts, it must be able to read back.
    #[error("event {topic:?} serializes to {len} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// The event's topic.
        topic: String,
        /// The serialized length.
        len: usize,
        /// The limit (`eventsmith_mapper::MAX_PAYLOAD_LEN`, 64 MiB, in the standard mapper).
        max: usize,
    },
    /// Encryption failed.
    #[error(transparent)]
    Cipher(#[from] CipherError),
}

/// A failure of encryption or decryption.
///
/// Authentication failures are deliberately opaque: a wrong key, a tampered ciphertext and
/// a ciphertext moved onto another event all give [`CipherError::Decrypt`], so that callers
/// cannot learn which (no oracle).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CipherError {
    /// The ciphertext did not authenticate under its key and associated data.
    #[error("decryption failed")]
    Decrypt,
    /// Encryption itself failed.
    #[error("encryption failed")]
    Encrypt,
    /// The payload names a key id the key provider does not have.
    #[error("unknown key id {key_id:?}")]
    UnknownKey {
        /// The key id named by the payload.
        key_id: String,
    },
    /// The aggregate's key was erased (crypto-shredding): its data is gone for good.
    #[error("the key of sequence {sequence_id} was erased")]
    KeyErased {
        /// The sequence whose key was erased.
        sequence_id: Uuid,
    },
    /// The key store failed (I/O, a corrupt wrapped key).
    #[error("key store failed: {0}")]
    KeyStore(#[source] BoxError),
}

/// Why an aggregate could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// No events exist for the id (at or before the requested version).
    #[error("aggregate {id} not found")]
    NotFound {
        /// The requested aggregate id.
        id: Uuid,
    },
    /// The aggregate was discarded; it no longer exists as live state.
    #[error("aggregate {id} was discarded")]
    Discarded {
        /// The requested aggregate id.
        id: Uuid,
    },
    /// A stored event could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The stored events are not a contiguous history.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a sequence of events cannot be replayed into an aggregate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The next event does not have the next version.
    #[error("aggregate {id}: expected version {expected}, found {found}")]
    OutOfOrder {
        /// The aggregate id.
        id: Uuid,
        /// The version the history requires next.
        expected: Version,
        /// The version found.
        found: Version,
    },
    /// An event belongs to another aggregate.
    #[error("aggregate {expected}: event of aggregate {found} in its history")]
    WrongOriginator {
        /// The aggregate being replayed.
        expected: Uuid,
        /// The originator id found.
        found: Uuid,
    },
    /// An event follows the event that discarded the aggregate.
    #[error("aggregate {id}: event at version {version} follows its discard")]
    AfterDiscard {
        /// The aggregate id.
        id: Uuid,
        /// The version of the offending event.
        version: Version,
    },
}

/// Why pending events could not be saved. Nothing was saved; the pending events are kept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SaveError {
    /// Another writer saved events at one of the versions first.
    #[error("conflict: aggregate {id} already has version {version}")]
    Conflict {
        /// The aggregate id.
        id: Uuid,
        /// The first conflicting version.
        version: Version,
    },
    /// An event could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<AppendError> for SaveError {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::Conflict {
                sequence_id,
                position: Position::Version(version),
            } => SaveError::Conflict {
                id: sequence_id,
                version,
            },
            AppendError::Conflict {
                sequence_id,
                position,
            } => SaveError::Store(StoreError::InvalidItem {
                sequence_id,
                position,
                reason: "timestamp conflict reported for an aggregate append".into(),
            }),
            AppendError::Store(e) => SaveError::Store(e),
            // Repositories never move tracking records; kept as the store's error if one did.
            moved @ AppendError::TrackingMoved { .. } => SaveError::Store(StoreError::Backend {
                source: moved.to_string().into(),
            }),
        }
    }
}

/// Why a command did not take effect.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError<E> {
    /// The command requires an existing aggregate
    /// ([`require_existing`](crate::Command::require_existing)) and it has no events.
    #[error("aggregate {id} not found")]
    NotFound {
        /// The aggregate id.
        id: Uuid,
    },
    /// The aggregate is discarded and rejects commands.
    #[error("aggregate {id} is discarded and rejects commands")]
    Discarded {
        /// The aggregate id.
        id: Uuid,
    },
    /// The domain logic rejected the command.
    #[error("command rejected: {0}")]
    Rejected(E),
    /// The aggregate could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The new events could not be saved (after the last retry, for retryable failures).
    #[error(transparent)]
    Save(#[from] SaveError),
}

/// Why a snapshot could not be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The application was built without snapshots.
    #[error("this application takes no snapshots (none were configured)")]
    NotConfigured,
    /// The aggregate could not be loaded.
    #[error("cannot snapshot: {0}")]
    Load(#[source] LoadError),
    /// The snapshot could not be encoded.
    #[error("cannot encode snapshot: {0}")]
    Encode(#[source] EncodeError),
    /// The store failed.
    #[error("cannot store snapshot: {0}")]
    Store(#[source] StoreError),
}
