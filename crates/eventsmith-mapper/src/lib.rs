//! Maps eventsmith domain events to stored items and back.
//!
//! An [`EventMapper`] knows every event type of one aggregate (its topic registry), the codec
//! new payloads are written with, and optionally a compressor and a cipher. Every payload
//! starts with a [`PayloadHeader`], so a mapper reads items written under other settings:
//! another codec, with or without compression, under an older key.
//!
//! Reading an item: parse the header, decrypt (associated data: sequence id, position, topic
//! and header), decompress, find the decoder by topic (following aliases), decode with the
//! header's codec, and upcast from the stored schema version to the current type.
//!
//! ```
//! use eventsmith_core::{Envelope, Event, Mapper};
//! use eventsmith_mapper::{CodecId, EventMapper};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
//! pub struct Renamed { pub name: String }
//! impl Event for Renamed { const TOPIC: &'static str = "user.Renamed"; }
//! eventsmith_core::domain_events! { pub enum UserEvent { Renamed(Renamed) } }
//!
//! let mapper = EventMapper::<UserEvent>::builder().codec(CodecId::Postcard).build()?;
//! let envelope = Envelope {
//!     originator_id: uuid::Uuid::new_v4(),
//!     version: 1,
//!     timestamp: time::OffsetDateTime::now_utc(),
//!     metadata: eventsmith_core::Metadata::default().with_correlation_id("req-1"),
//!     event: UserEvent::from(Renamed { name: "ada".into() }),
//! };
//! let item = mapper.encode(&envelope)?;
//! assert_eq!(item.topic, "user.Renamed");
//! assert_eq!(mapper.decode(&item)?, envelope);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Feature flags
//!
//! | feature | what it adds |
//! | --- | --- |
//! | `bincode` | the bincode 2 codec (unmaintained upstream; prefer postcard) |

mod codec;
mod header;
mod payload;
mod registry;

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use eventsmith_core::{
    Compressor, DecodeError, DecodeErrorKind, DomainEvent, EncodeError, Envelope, Event,
    EventTypes, HeaderError, IntegerSequencedItem, Mapper, PayloadCipher, Position, Version,
};

#[cfg(feature = "bincode")]
pub use codec::Bincode;
pub use codec::{Codec, CodecId, Json, Postcard};
pub use header::{FORMAT_VERSION, MAX_METADATA_LEN, PayloadHeader};
pub use payload::Payloads;
pub use registry::{Registry, RegistryError};

use registry::RegistryBuilder;

/// The largest payload body a codec or decompressor will produce (64 MiB); larger claims in
/// corrupt data are refused instead of allocated.
pub const MAX_PAYLOAD_LEN: usize = 64 * 1024 * 1024;

/// Which events a mapper encrypts (when it has a cipher).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Encrypt {
    /// No event (the default).
    #[default]
    None,
    /// Every event.
    All,
    /// Only events of these topics.
    Topics(HashSet<String>),
}

impl Encrypt {
    pub(crate) fn applies_to(&self, topic: &str) -> bool {
        match self {
            Encrypt::None => false,
            Encrypt::All => true,
            Encrypt::Topics(t) => t.contains(topic),
        }
    }
}

/// Encodes and decodes the events of `E`. Cheap to share behind an `Arc`.
pub struct EventMapper<E> {
    registry: Registry<E>,
    payloads: Payloads,
}

impl<E> fmt::Debug for EventMapper<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventMapper")
            .field("registry", &self.registry)
            .field("payloads", &self.payloads)
            .finish()
    }
}

/// Configures an [`EventMapper`].
pub struct EventMapperBuilder<E> {
    registry: RegistryBuilder<E>,
    codec: CodecId,
    compressor: Option<Arc<dyn Compressor>>,
    cipher: Option<Arc<dyn PayloadCipher>>,
    encrypt: Encrypt,
    plaintext_up_to: Option<u64>,
}

impl<E> fmt::Debug for EventMapperBuilder<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventMapperBuilder")
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl<E: EventTypes> EventMapper<E> {
    /// A builder with every event type of `E` registered, writing JSON.
    pub fn builder() -> EventMapperBuilder<E> {
        let mut registry = RegistryBuilder::default();
        E::visit(&mut registry);
        EventMapperBuilder {
            registry,
            codec: CodecId::Json,
            compressor: None,
            cipher: None,
            encrypt: Encrypt::None,
            plaintext_up_to: None,
        }
    }
}

impl<E: DomainEvent> EventMapperBuilder<E> {
    /// The codec new payloads are written with (JSON by default).
    pub fn codec(mut self, codec: CodecId) -> Self {
        self.codec = codec;
        self
    }

    /// Registers one more event type that reads into `E` (for example a retired type whose
    /// old events still load, converted by its `Into<E>`).
    pub fn event<T: Event + Into<E>>(mut self) -> Self {
        self.registry.add_event::<T>();
        self
    }

    /// Reads items stored under `old_topic` as `topic` (after a type was renamed).
    pub fn alias(mut self, old_topic: &str, topic: &str) -> Self {
        self.registry.add_alias(old_topic, topic);
        self
    }

    /// Registers an upcaster for `topic`: payloads at schema version `from_version` decode as
    /// `Old` and `f` turns them into the type of version `from_version + 1`.
    pub fn upcast<Old, New>(
        mut self,
        topic: &str,
        from_version: u32,
        f: impl Fn(Old) -> New + Send + Sync + 'static,
    ) -> Self
    where
        Old: DeserializeOwned + Send + 'static,
        New: Send + 'static,
    {
        self.registry.add_upcaster(topic, from_version, f);
        self
    }

    /// Compresses payloads before encryption. A mapper needs a compressor to read compressed
    /// payloads too, so keep it configured (even one that never compresses) while any exist.
    pub fn compressor(mut self, compressor: Arc<dyn Compressor>) -> Self {
        self.compressor = Some(compressor);
        self
    }

    /// Encrypts the events `which` selects with `cipher`; any encrypted payload is decrypted
    /// with it, whatever `which` says.
    ///
    /// The selected topics are also *required* to be encrypted on read: a plaintext event or
    /// snapshot of such a topic fails to load with [`DecodeErrorKind::NotEncrypted`], so that
    /// write access to the database is not enough to forge one. To read plaintext written
    /// before encryption was switched on, opt in with
    /// [`accept_plaintext_up_to`](Self::accept_plaintext_up_to).
    pub fn cipher(mut self, cipher: Arc<dyn PayloadCipher>, which: Encrypt) -> Self {
        self.cipher = Some(cipher);
        self.encrypt = which;
        self
    }

    /// Accepts plaintext payloads of encrypted topics at positions (aggregate versions)
    /// `1..=position`, events and snapshots alike; past the bound they are refused.
    ///
    /// This is the migration path for a store that switched encryption on after plaintext was
    /// written: set the bound to the highest version any aggregate had then (`eventsmith verify
    /// --key-file` lists the plaintext items and their positions). Within the bound, an
    /// attacker who can write to the database can still forge plaintext items, for example at
    /// the low versions of a new aggregate, so keep the bound as low as the data allows. Stored
    /// events are immutable, so the bound stays for as long as the old plaintext is kept. Never
    /// on by default.
    pub fn accept_plaintext_up_to(mut self, position: Version) -> Self {
        self.plaintext_up_to = Some(position);
        self
    }

    /// Checks the registry (duplicate topics, aliases, upcaster chains) and builds the mapper.
    pub fn build(self) -> Result<EventMapper<E>, RegistryError> {
        Ok(EventMapper {
            registry: self.registry.build()?,
            payloads: Payloads {
                codec: self.codec,
                compressor: self.compressor,
                cipher: self.cipher,
                encrypt: self.encrypt,
                plaintext_up_to: self.plaintext_up_to,
            },
        })
    }
}

impl<E: DomainEvent> EventMapper<E> {
    /// The registry of topics this mapper reads.
    pub fn registry(&self) -> &Registry<E> {
        &self.registry
    }

    /// How this mapper writes payloads (for snapshots to be stored the same way).
    pub fn payloads(&self) -> &Payloads {
        &self.payloads
    }

    fn encode_inner(&self, envelope: &Envelope<E>) -> Result<IntegerSequencedItem, EncodeError> {
        let topic = envelope.event.topic();
        if !self.registry.knows(topic) {
            return Err(EncodeError::UnknownTopic(topic.to_owned()));
        }
        let timestamp_nanos =
            i64::try_from(envelope.timestamp.unix_timestamp_nanos()).map_err(|_| {
                EncodeError::Serialize {
                    topic: topic.to_owned(),
                    source: "timestamp outside the years 1677 to 2262".into(),
                }
            })?;
        self.payloads.seal(
            envelope.originator_id,
            envelope.version,
            topic,
            envelope.event.schema_version(),
            timestamp_nanos,
            &envelope.metadata,
            &envelope.event,
        )
    }

    fn decode_inner(&self, item: &IntegerSequencedItem) -> Result<Envelope<E>, DecodeErrorKind> {
        let entry = self
            .registry
            .entry(&item.topic)
            .ok_or(DecodeErrorKind::UnknownTopic)?;
        let (header, body) = self.payloads.open(item)?;
        let event = entry.decode(header.codec, header.schema_version, &body)?;
        let timestamp = OffsetDateTime::from_unix_timestamp_nanos(i128::from(
            header.timestamp_nanos,
        ))
        .map_err(|e| {
            DecodeErrorKind::Header(HeaderError::Timestamp {
                nanos: header.timestamp_nanos,
                source: Box::new(e),
            })
        })?;
        Ok(Envelope {
            originator_id: item.sequence_id,
            version: item.position,
            timestamp,
            metadata: header.metadata,
            event,
        })
    }
}

impl<E: DomainEvent> Mapper<E> for EventMapper<E> {
    fn encode(&self, envelope: &Envelope<E>) -> Result<IntegerSequencedItem, EncodeError> {
        self.encode_inner(envelope)
    }

    fn prepare(
        &self,
        envelope: &Envelope<E>,
    ) -> Option<eventsmith_core::BoxFuture<'_, Result<(), EncodeError>>> {
        self.payloads
            .prepare(envelope.originator_id, envelope.event.topic())
    }

    fn decode(&self, item: &IntegerSequencedItem) -> Result<Envelope<E>, DecodeError> {
        self.decode_inner(item).map_err(|kind| DecodeError {
            sequence_id: item.sequence_id,
            position: Position::Version(item.position),
            topic: item.topic.clone(),
            kind,
        })
    }
}
