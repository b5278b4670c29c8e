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
