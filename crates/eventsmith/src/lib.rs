#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use eventsmith_core::*;
pub use eventsmith_mapper::{self as mapper, CodecId, Encrypt, EventMapper, Payloads};

#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use eventsmith_sqlite::{
    self as sqlite, SqliteConfig, SqliteProjection, SqliteStore, Synchronous,
};

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
pub use eventsmith_snapshot::{self as snapshot, SnapshotRepository, SnapshotState};

#[cfg(feature = "pubsub")]
#[cfg_attr(docsrs, doc(cfg(feature = "pubsub")))]
pub use eventsmith_pubsub::{
    self as pubsub, EventBus, PersistencePolicy, Projection, PublishingRepository,
};

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
