#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

// What applications use, by name. Helpers for backend implementors stay in `backend`.
pub use eventsmith_core::{
    AfterCommit, Aggregate, AppendError, Application, ApplicationBuilder, BoxError, BoxFuture,
    Capabilities, CipherError, Clock, Command, CommandError, Committed, CompressError, Compressor,
    DecodeError, DecodeErrorKind, Delivery, DomainEvent, EncodeError, Envelope, ErrorKind, Event,
    EventStore, EventTypeVisitor, EventTypes, FeedPage, FollowError, Follower, FollowerStatus,
    HeaderError, IdempotencyKey, IntegerSequencedItem, InvalidKey, InvalidMetadata, Inventory,
    ItemKind, ItemStore, KeyedAppend, Lease, LeaseClaim, LoadError, MAX_ID_LEN, MAX_KEY_LEN,
    MAX_USER_ENTRIES, MAX_USER_KEY_LEN, MAX_USER_VALUE_LEN, MAX_VERSION, ManualClock, Mapper,
    MemoryProjection, MemoryStore, Metadata, Notification, PayloadCipher, Policy, Position,
    PriorAppend, Process, ReplayError, Repository, RetryPolicy, Root, RootParts, Runner,
    RunnerHandle, RunnerWaker, SaveError, Saved, Select, SequencedItem, SnapshotError,
    SnapshotStore, Snapshots, StoreError, Support, System, SystemClock, SystemError, Timestamp,
    TimestampLog, TimestampSequencedItem, Tracking, Unit, Version, backend, catch_up,
    domain_events, scenario, slice_of,
};
// The derives name the core through this path, whatever the facade re-exports by name.
#[doc(hidden)]
pub use eventsmith_core as __core;

#[cfg(feature = "derive")]
#[cfg_attr(docsrs, doc(cfg(feature = "derive")))]
pub use eventsmith_macros::{DomainEvent, Event};

pub use eventsmith_mapper::{self as mapper, CodecId, Encrypt, EventMapper, Payloads};

#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use eventsmith_sqlite::{
    self as sqlite, SqliteConfig, SqliteProjection, SqliteStore, SqliteUrl, Synchronous,
};

#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use eventsmith_postgres::{self as postgres, PostgresConfig, PostgresStore};

#[cfg(feature = "scylla")]
#[cfg_attr(docsrs, doc(cfg(feature = "scylla")))]
pub use eventsmith_scylla::{self as scylla, CassandraConfig, CassandraStore};

#[cfg(feature = "cipher")]
#[cfg_attr(docsrs, doc(cfg(feature = "cipher")))]
pub use eventsmith_cipher::{
    self as cipher, AesGcmCipher, Key, KeyProvider, Keyring, PerAggregateKeys, Zstd,
};

#[cfg(feature = "snapshot")]
#[cfg_attr(docsrs, doc(cfg(feature = "snapshot")))]
pub use eventsmith_snapshot::{self as snapshot, SnapshotState, StoredSnapshots};

#[cfg(feature = "pubsub")]
#[cfg_attr(docsrs, doc(cfg(feature = "pubsub")))]
pub use eventsmith_pubsub::{self as pubsub, EventBus, PersistencePolicy};

// Every Rust snippet in the repository's README and guides is compiled (and, unless marked
// `no_run`, run) as a doctest of the facade, with the facade's features.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
mod readme_md {}

#[cfg(doctest)]
#[doc = include_str!("../../../docs/aggregates-and-events.md")]
mod aggregates_and_events_md {}

#[cfg(doctest)]
#[doc = include_str!("../../../docs/cassandra.md")]
mod cassandra_md {}

#[cfg(doctest)]
#[doc = include_str!("../../../docs/mapper-codecs-encryption.md")]
mod mapper_codecs_encryption_md {}

#[cfg(doctest)]
#[doc = include_str!("../../../docs/observability.md")]
mod observability_md {}

#[cfg(doctest)]
#[doc = include_str!("../../../docs/postgres.md")]
mod postgres_md {}

#[cfg(doctest)]
#[doc = include_str!("../../../docs/pubsub-and-projections.md")]
mod pubsub_and_projections_md {}

#[cfg(doctest)]
#[doc = include_str!("../../../docs/snapshots.md")]
mod snapshots_md {}

#[cfg(doctest)]
#[doc = include_str!("../../../docs/stores-and-concurrency.md")]
mod stores_and_concurrency_md {}

#[cfg(doctest)]
#[doc = include_str!("../../../docs/web-deployment.md")]
mod web_deployment_md {}
