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
        /// The driver's or the decoder's own error, when there is one (a damaged file the
        /// database engine refused, a column of the wrong type).
        #[source]
        source: Option<BoxError>,
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
    /// The store's disk or quota is full (SQLite's `SQLITE_FULL`, a full tablespace): the
    /// write was rolled back whole, nothing of it was stored. Retrying does not help until
    /// space is freed.
    #[error("the event store is out of space: {source}")]
    StorageFull {
        /// What the backend said.
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

    /// What kind of failure this is (see [`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Closed => ErrorKind::Closed,
            StoreError::Busy { .. } => ErrorKind::Busy,
            StoreError::Unsupported { .. } => ErrorKind::Unsupported,
            StoreError::InvalidItem { .. } => ErrorKind::Invalid,
            StoreError::OutcomeUnknown { .. } => ErrorKind::OutcomeUnknown,
            StoreError::Corrupt { .. } => ErrorKind::Corrupt,
            StoreError::Config { .. } => ErrorKind::Config,
            StoreError::Unreachable { .. } => ErrorKind::Unavailable,
            StoreError::StorageFull { .. } => ErrorKind::StorageFull,
            StoreError::Backend { .. } => ErrorKind::Other,
        }
    }

    /// Whether retrying the same operation may succeed: [`ErrorKind::is_retryable`] of
    /// [`kind`](Self::kind).
    pub fn is_retryable(&self) -> bool {
        self.kind().is_retryable()
    }
}

/// What kind of failure an error is: one small set shared by every error of an operation
/// ([`StoreError::kind`], [`AppendError::kind`], [`LoadError::kind`], [`SaveError::kind`],
/// [`CommandError::kind`], [`SnapshotError::kind`],
/// [`FollowError::kind`](crate::FollowError::kind)), so that a caller can decide what to do (retry, give up, alert)
/// without matching every variant or any driver's error. The driver's error, where there is
/// one, stays reachable through [`source`](std::error::Error::source).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Another writer got there first (optimistic concurrency lost). Reloading and deciding
    /// again may succeed; repeating the same write will not.
    Conflict,
    /// The store is temporarily unable to serve (a lock held, a timeout before anything was
    /// sent, an overloaded or unavailable cluster). Nothing was written; retry later.
    Busy,
    /// The server could not be reached. Nothing was written; retry later.
    Unavailable,
    /// A write may or may not have been applied. Retry only where a retry is idempotent
    /// (under an idempotency key), which then finds the first attempt if it was applied.
    OutcomeUnknown,
    /// The disk or quota is full; nothing of the write was stored. Retrying does not help
    /// until space is freed.
    StorageFull,
    /// What was asked for does not exist (an aggregate without events).
    NotFound,
    /// The domain logic rejected the command.
    Rejected,
    /// Input that cannot be stored or data that cannot be used as it is (an item outside the
    /// backend's range, an event that does not encode or decode, a broken history).
    Invalid,
    /// The stored data is damaged or foreign.
    Corrupt,
    /// The configuration is invalid.
    Config,
    /// The store lacks a capability.
    Unsupported,
    /// The store was closed.
    Closed,
    /// Anything else (a backend failure of no other kind).
    Other,
}

impl ErrorKind {
    /// The kind as a short snake_case name (`"conflict"`, `"busy"`, `"outcome_unknown"`, …):
    /// the `outcome` field of the store's tracing spans, stable so that dashboards and
    /// filters can match on it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Conflict => "conflict",
            ErrorKind::Busy => "busy",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::OutcomeUnknown => "outcome_unknown",
            ErrorKind::StorageFull => "storage_full",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Rejected => "rejected",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Config => "config",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Closed => "closed",
            ErrorKind::Other => "other",
        }
    }

    /// Whether trying again may succeed without anything else changing: a conflict (after
    /// reloading), a busy or unavailable store, an unknown outcome (only where idempotent).
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Conflict
                | ErrorKind::Busy
                | ErrorKind::Unavailable
                | ErrorKind::OutcomeUnknown
        )
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

impl AppendError {
    /// What kind of failure this is: a conflict (a taken position or a moved tracking
    /// record) or the store's kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            AppendError::Conflict { .. } | AppendError::TrackingMoved { .. } => ErrorKind::Conflict,
            AppendError::Store(e) => e.kind(),
        }
    }
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
    Header(#[source] HeaderError),
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
    Decompress(#[source] CompressError),
    /// The payload is encrypted, but this reader has no cipher to decrypt it.
    #[error("payload is encrypted but no cipher is configured")]
    NoCipher,
    /// The payload is compressed, but this reader has no compressor to decompress it.
    #[error("payload is compressed but no compressor is configured")]
    NoCompressor,
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

/// What is wrong with a payload header, read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The payload ends inside the header.
    #[error(
        "the payload ends inside the header: its {field} needs {needed} bytes, {left} are left"
    )]
    Truncated {
        /// The part of the header cut off.
        field: &'static str,
        /// The bytes it needs.
        needed: usize,
        /// The bytes left.
        left: usize,
    },
    /// Flag bits this format does not define are set.
    #[error("unknown flag bits {0:#04x}")]
    UnknownFlags(u8),
    /// A key id is empty or longer than 255 bytes.
    #[error("a key id must be 1 to 255 bytes, not {len}")]
    KeyIdLength {
        /// The key id's length in bytes.
        len: usize,
    },
    /// The key id is not UTF-8.
    #[error("the key id is not UTF-8")]
    KeyIdNotUtf8(#[source] std::str::Utf8Error),
    /// The encoded metadata is empty or over the limit.
    #[error("metadata of {len} bytes is outside 1 to {max} bytes")]
    MetadataLength {
        /// The encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The metadata does not decode (or encode).
    #[error("metadata: {0}")]
    Metadata(#[source] BoxError),
    /// The metadata decodes but is not in the one encoding the writer produces (trailing
    /// bytes, repeated keys, empty metadata behind the flag).
    #[error("metadata is not in its canonical encoding")]
    NonCanonicalMetadata,
    /// The timestamp is outside the range of a date.
    #[error("timestamp {nanos} ns is out of range")]
    Timestamp {
        /// The stored nanoseconds since the Unix epoch.
        nanos: i64,
        /// Why it is out of range.
        #[source]
        source: BoxError,
    },
}

/// Why a payload could not be compressed or decompressed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompressError {
    /// The frame decompresses to more than the limit (a decompression bomb).
    #[error("frame decompresses to more than {limit} bytes")]
    TooLarge {
        /// The most bytes a frame may decompress to.
        limit: usize,
    },
    /// The frame is corrupt (or was not written by this compressor).
    #[error("corrupt frame: {0}")]
    Corrupt(#[source] BoxError),
    /// The frame decompressed to another length than it announced.
    #[error("corrupt frame: {found} bytes instead of the {announced} announced")]
    WrongLength {
        /// The length the frame states.
        announced: u64,
        /// The length it decompressed to.
        found: u64,
    },
    /// The compressor itself failed (it could not allocate its context, a bad level).
    #[error("compressor failed: {0}")]
    Failed(#[source] BoxError),
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
    Compress(#[source] CompressError),
    /// The payload header cannot be written (a key id or metadata out of bounds).
    #[error("cannot write the payload header of event {topic:?}: {source}")]
    Header {
        /// The event's topic.
        topic: String,
        /// What is wrong.
        #[source]
        source: HeaderError,
    },
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

impl LoadError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            LoadError::NotFound { .. } | LoadError::Discarded { .. } => ErrorKind::NotFound,
            LoadError::Decode(_) | LoadError::Replay(_) => ErrorKind::Invalid,
            LoadError::Store(e) => e.kind(),
        }
    }
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

impl SaveError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SaveError::Conflict { .. } => ErrorKind::Conflict,
            SaveError::Encode(_) => ErrorKind::Invalid,
            SaveError::Store(e) => e.kind(),
        }
    }
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
                source: Box::new(moved),
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

impl<E> CommandError<E> {
    /// What kind of failure this is: [`ErrorKind::Conflict`] means another writer saved
    /// first (the command may be run again on the new state); a discarded aggregate is
    /// [`ErrorKind::Rejected`], like a rejection by the domain logic.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CommandError::NotFound { .. } => ErrorKind::NotFound,
            CommandError::Discarded { .. } | CommandError::Rejected(_) => ErrorKind::Rejected,
            CommandError::Load(e) => e.kind(),
            CommandError::Save(e) => e.kind(),
        }
    }
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

impl SnapshotError {
    /// What kind of failure this is (an application without snapshots is
    /// [`ErrorKind::Unsupported`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            SnapshotError::NotConfigured => ErrorKind::Unsupported,
            SnapshotError::Load(e) => e.kind(),
            SnapshotError::Encode(_) => ErrorKind::Invalid,
            SnapshotError::Store(e) => e.kind(),
        }
    }
}

impl crate::follow::FollowError {
    /// What kind of failure this is: another runner applying the page first is a
    /// [`ErrorKind::Conflict`]; a handler's own failure is [`ErrorKind::Other`] (its source
    /// says more).
    pub fn kind(&self) -> ErrorKind {
        use crate::follow::FollowError;
        match self {
            FollowError::Moved { .. } => ErrorKind::Conflict,
            FollowError::Store(e) => e.kind(),
            FollowError::Append(e) => e.kind(),
            FollowError::Handler { .. } | FollowError::FeedHandler { .. } => ErrorKind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every layer reports the kind of the failure under it, and only conflicts, busy or
    /// unavailable stores and unknown outcomes count as retryable.
    #[test]
    fn kinds_pass_through_the_layers() {
        let id = Uuid::nil();
        let full = || StoreError::StorageFull {
            source: "disk full".into(),
        };
        assert_eq!(full().kind(), ErrorKind::StorageFull);
        assert!(!full().is_retryable());
        let unreachable = StoreError::Unreachable {
            address: "h:1".into(),
            source: "refused".into(),
        };
        assert_eq!(unreachable.kind(), ErrorKind::Unavailable);
        assert!(unreachable.is_retryable());
        assert_eq!(
            AppendError::Conflict {
                sequence_id: id,
                position: Position::Version(1)
            }
            .kind(),
            ErrorKind::Conflict
        );
        assert_eq!(AppendError::Store(full()).kind(), ErrorKind::StorageFull);
        assert_eq!(SaveError::Store(full()).kind(), ErrorKind::StorageFull);
        assert_eq!(LoadError::Store(full()).kind(), ErrorKind::StorageFull);
        assert_eq!(SnapshotError::Store(full()).kind(), ErrorKind::StorageFull);
        assert_eq!(SnapshotError::NotConfigured.kind(), ErrorKind::Unsupported);
        let moved = crate::FollowError::from(AppendError::TrackingMoved {
            follower: "f".into(),
            expected: 1,
            found: 2,
        });
        assert_eq!(moved.kind(), ErrorKind::Conflict);
        assert_eq!(
            crate::FollowError::from(AppendError::Store(full())).kind(),
            ErrorKind::StorageFull
        );
        assert_eq!(
            CommandError::<()>::Save(SaveError::Conflict { id, version: 2 }).kind(),
            ErrorKind::Conflict
        );
        assert_eq!(CommandError::Rejected("no").kind(), ErrorKind::Rejected);
        assert_eq!(
            CommandError::<()>::Load(LoadError::NotFound { id }).kind(),
            ErrorKind::NotFound
        );
        let busy = CommandError::<()>::Load(LoadError::Store(StoreError::Busy {
            source: "locked".into(),
        }));
        assert_eq!(busy.kind(), ErrorKind::Busy);
        assert!(busy.kind().is_retryable());
        // The source chain goes through every layer to the backend's words.
        let save = CommandError::<String>::Save(SaveError::Store(full()));
        let source = std::error::Error::source(&save).expect("the store's source");
        assert_eq!(source.to_string(), "disk full");
        // A moved tracking record turned into a save error is still there, typed, as the source.
        let moved = SaveError::from(AppendError::TrackingMoved {
            follower: "f".into(),
            expected: 1,
            found: 2,
        });
        let source = std::error::Error::source(&moved).expect("the append error");
        assert!(
            matches!(
                source.downcast_ref::<AppendError>(),
                Some(AppendError::TrackingMoved { found: 2, .. })
            ),
            "{moved:?}"
        );
        for kind in [
            ErrorKind::StorageFull,
            ErrorKind::Corrupt,
            ErrorKind::Config,
            ErrorKind::Invalid,
            ErrorKind::Rejected,
            ErrorKind::NotFound,
            ErrorKind::Unsupported,
            ErrorKind::Closed,
            ErrorKind::Other,
        ] {
            assert!(!kind.is_retryable(), "{kind:?}");
        }
    }
}
