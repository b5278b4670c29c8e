//! The core of eventsmith: event sourcing for Rust.
//!
//! An application's state is the sequence of its domain events. This crate holds the
//! vocabulary every other eventsmith crate shares, and does no I/O:
//!
//! - [`Event`], [`DomainEvent`] and [`domain_events!`]: domain events as plain serde types
//!   with a stable topic and a schema version;
//! - [`Aggregate`] and [`Root`]: state rebuilt from events, versioned, with pending events
//!   recorded by commands; [`Root::replay`] is the event player;
//! - [`SequencedItem`]: the persistence archetype (sequence id, position, topic, payload),
//!   integer-sequenced for aggregates and timestamp-sequenced for logs;
//! - [`ItemStore`]: the trait every backend implements, with atomic batches, optimistic
//!   concurrency and a global notification log; [`MemoryStore`] is the reference backend;
//! - [`Mapper`], [`Compressor`], [`PayloadCipher`]: the seams to `eventsmith-mapper` and
//!   `eventsmith-cipher`;
//! - [`Application`]: the one write path: a command loads (from a snapshot when there is
//!   one), decides, saves with its [`IdempotencyKey`] and [`Metadata`] through the
//!   [`Repository`], retries with backoff ([`RetryPolicy`]), then tells the [`Snapshots`]
//!   policy and [`AfterCommit`] hooks; [`EventStore`] is the mapper over an item store;
//! - [`scenario`]: given/when/then tests for aggregates.
//!
//! # Example
//!
//! ```
//! use eventsmith_core::{Aggregate, Application, Event, MemoryStore, Mapper};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
//! pub struct Opened { pub owner: String }
//! impl Event for Opened { const TOPIC: &'static str = "account.Opened"; }
//!
//! #[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
//! pub struct Deposited { pub amount: u64 }
//! impl Event for Deposited { const TOPIC: &'static str = "account.Deposited"; }
//!
//! eventsmith_core::domain_events! {
//!     /// What happens to an account.
//!     pub enum AccountEvent { Opened(Opened), Deposited(Deposited) }
//! }
//!
//! #[derive(Default, Debug)]
//! pub struct Account { owner: String, balance: u64 }
//! impl Aggregate for Account {
//!     type Event = AccountEvent;
//!     fn apply(&mut self, event: &AccountEvent) {
//!         match event {
//!             AccountEvent::Opened(e) => self.owner = e.owner.clone(),
//!             AccountEvent::Deposited(e) => self.balance += e.amount,
//!         }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let mapper = doc_mapper::JsonMapper;
//! // A real application takes its mapper from `eventsmith-mapper`.
//! let app = Application::<Account, _>::builder(MemoryStore::new(), mapper).build();
//! let id = uuid::Uuid::new_v4();
//! // The first command creates the account: it starts from `Account::default()`.
//! app.command(id, |_| Ok::<_, String>([Opened { owner: "ada".into() }])).await?;
//! app.command(id, |_| Ok::<_, String>([Deposited { amount: 10 }])).await?;
//! let account = app.get(id).await?;
//! assert_eq!((account.version(), account.state().balance), (2, 10));
//! # Ok(()) }
//! # mod doc_mapper {
//! #   use eventsmith_core::*;
//! #   pub struct JsonMapper;
//! #   impl Mapper<super::AccountEvent> for JsonMapper {
//! #     fn encode(&self, e: &Envelope<super::AccountEvent>) -> Result<IntegerSequencedItem, EncodeError> {
//! #       Ok(SequencedItem { sequence_id: e.originator_id, position: e.version,
//! #         topic: e.event.topic().into(), payload: serde_json::to_vec(&e.event).unwrap() })
//! #     }
//! #     fn decode(&self, i: &IntegerSequencedItem) -> Result<Envelope<super::AccountEvent>, DecodeError> {
//! #       let event = match i.topic.as_str() {
//! #         "account.Opened" => super::AccountEvent::Opened(serde_json::from_slice(&i.payload).unwrap()),
//! #         _ => super::AccountEvent::Deposited(serde_json::from_slice(&i.payload).unwrap()),
//! #       };
//! #       Ok(Envelope { originator_id: i.sequence_id, version: i.position,
//! #         timestamp: time::OffsetDateTime::now_utc(), metadata: Default::default(), event })
//! #     }
//! #   }
//! # }
//! ```
//!
//! # Supported Rust versions
//!
//! The minimum supported Rust version is 1.88; it is raised only in a minor release.

mod aggregate;
mod application;
mod clock;
mod error;
mod follow;
mod idempotency;
mod item;
mod mapper;
mod memory;
mod metadata;
mod repository;
pub mod scenario;
mod store;
mod trace;

pub use aggregate::{
    Aggregate, DomainEvent, Envelope, Event, EventTypeVisitor, EventTypes, Root, RootParts,
};
pub use application::{
    AfterCommit, Application, ApplicationBuilder, BoxFuture, Command, Committed, RetryPolicy,
    Snapshots,
};
pub use clock::{Clock, ManualClock, SystemClock, TimestampLog};
pub use error::{
    AppendError, BoxError, CipherError, CommandError, CompressError, DecodeError, DecodeErrorKind,
    EncodeError, ErrorKind, HeaderError, LoadError, ReplayError, SaveError, SnapshotError,
    StoreError,
};
pub use follow::{
    FollowError, Follower, FollowerStatus, MemoryProjection, Policy, Process, Runner, RunnerHandle,
    RunnerWaker, System, SystemError, Unit, catch_up,
};
pub use idempotency::{IdempotencyKey, InvalidKey, KeyedAppend, MAX_KEY_LEN, PriorAppend};
pub use item::{
    IntegerSequencedItem, Notification, Position, Select, SequencedItem, Timestamp,
    TimestampSequencedItem, Version,
};
pub use mapper::{Compressor, Mapper, PayloadCipher};
pub use memory::MemoryStore;
pub use metadata::{
    InvalidMetadata, MAX_ID_LEN, MAX_USER_ENTRIES, MAX_USER_KEY_LEN, MAX_USER_VALUE_LEN, Metadata,
};
pub use repository::{EventStore, Repository, Saved};
pub use store::{
    Capabilities, Delivery, FeedPage, Inventory, ItemKind, ItemStore, Lease, LeaseClaim,
    MAX_VERSION, SnapshotStore, Support, Tracking, slice_of,
};

/// For implementors of a backend: the checks every store applies before it writes, so that
/// every backend reports the same errors for the same batch. Applications never need these.
pub mod backend {
    pub use crate::idempotency::keyed_batch;
    pub use crate::store::{check_append, check_batch_unique, check_version};
    pub use crate::trace::{HasKind, outcome, rows};
}

#[doc(hidden)]
pub mod __private {
    pub use serde;
}
