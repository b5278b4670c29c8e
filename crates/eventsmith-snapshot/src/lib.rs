//! Snapshots for eventsmith: an aggregate's state at a version, so that loading it replays
//! only the events after that version.
//!
//! [`StoredSnapshots`] is the [`Snapshots`] policy an [`Application`](eventsmith_core::Application) is built with: it takes
//! a snapshot whenever a command crosses a multiple of N events (a per-aggregate-type
//! setting) and on demand
//! ([`Application::take_snapshot`](eventsmith_core::Application::take_snapshot)), stores it through the backend's
//! [`SnapshotStore`], and loads an aggregate from its latest snapshot at or before the
//! requested version. Snapshots are sealed like events (the same codec, compression and
//! encryption, from the event mapper's [`Payloads`]).
//!
//! ```
//! use eventsmith_core::{Aggregate, Application, Event, MemoryStore, SnapshotStore};
//! use eventsmith_mapper::EventMapper;
//! use eventsmith_snapshot::{SnapshotState, StoredSnapshots};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
//! pub struct Ticked;
//! impl Event for Ticked { const TOPIC: &'static str = "clock.Ticked"; }
//! eventsmith_core::domain_events! { pub enum ClockEvent { Ticked(Ticked) } }
//!
//! #[derive(Default, Serialize, Deserialize)]
//! pub struct Clock { ticks: u64 }
//! impl Aggregate for Clock {
//!     type Event = ClockEvent;
//!     fn apply(&mut self, _: &ClockEvent) { self.ticks += 1 }
//! }
//! impl SnapshotState for Clock { const SNAPSHOT_TOPIC: &'static str = "clock.Snapshot"; }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mapper = EventMapper::<ClockEvent>::builder().build()?;
//! let store = MemoryStore::new();
//! let snapshots = StoredSnapshots::new(store.clone(), mapper.payloads().clone()).every(100);
//! let app = Application::<Clock, _>::builder(store.clone(), mapper).snapshots(snapshots).build();
//! let id = uuid::Uuid::new_v4();
//! // Versions 1..=250 in one command: a snapshot at 250 (it crossed 100 and 200).
//! app.command(id, |_| Ok::<_, String>(vec![Ticked; 250])).await?;
//! assert_eq!(store.latest_snapshot(id, None).await?.unwrap().position, 250);
//! assert_eq!(app.get(id).await?.state().ticks, 250);
//! # Ok(()) }
//! ```
//!
//! # Schema evolution
//!
//! Each snapshot records [`SnapshotState::STATE_VERSION`]. A snapshot of an older version is
//! upcast when an upcaster from that version is registered
//! ([`StoredSnapshots::upcast`]); otherwise it is ignored, a warning is logged (`tracing`),
//! and the aggregate is rebuilt from its events. An unreadable snapshot never fails a load,
//! with one exception: a plaintext snapshot where the mapper requires encryption (a forgery or
//! a downgrade, [`DecodeErrorKind::NotEncrypted`]) fails it with [`LoadError::Decode`].

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use uuid::Uuid;

use eventsmith_core::{
    Aggregate, BoxError, BoxFuture, DecodeError, DecodeErrorKind, EncodeError,
    IntegerSequencedItem, LoadError, Metadata, Position, Root, RootParts, SnapshotError,
    SnapshotStore, Snapshots, Version,
};
use eventsmith_mapper::{CodecId, Payloads};

/// An aggregate state that can be snapshotted.
pub trait SnapshotState: Aggregate + Serialize + DeserializeOwned {
    /// The topic snapshots of this type are stored under.
    const SNAPSHOT_TOPIC: &'static str;
    /// The schema version of the state; raise it when the state changes shape.
    const STATE_VERSION: u32 = 1;
}

type Upcaster<A> = Box<dyn Fn(CodecId, &[u8]) -> Result<Stored<A>, BoxError> + Send + Sync>;

/// Why a stored snapshot is not used.
enum Unusable {
    /// Refused: the load fails (a plaintext snapshot where encryption is required).
    Refused(DecodeErrorKind),
    /// Ignored with a warning: the aggregate is rebuilt from its events.
    Ignored(String),
}

/// Snapshots of aggregates of type `A` kept in store `S`, taken every N events and on
/// demand: the [`Snapshots`] policy of an [`Application`](eventsmith_core::Application).
pub struct StoredSnapshots<A: SnapshotState, S> {
    store: S,
    payloads: Payloads,
    every: Option<u64>,
    upcasters: Arc<HashMap<u32, Upcaster<A>>>,
}

impl<A: SnapshotState, S: Clone> Clone for StoredSnapshots<A, S> {
    fn clone(&self) -> Self {
        StoredSnapshots {
            store: self.store.clone(),
            payloads: self.payloads.clone(),
            every: self.every,
            upcasters: self.upcasters.clone(),
        }
    }
}

impl<A: SnapshotState, S: fmt::Debug> fmt::Debug for StoredSnapshots<A, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredSnapshots")
            .field("store", &self.store)
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

/// What a snapshot stores besides the version and id (the item's position and sequence id).
type Stored<T> = (i64, i64, bool, T);

fn nanos(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

fn datetime(nanos: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl<A: SnapshotState, S: SnapshotStore> StoredSnapshots<A, S> {
    /// Snapshots kept in `store`, sealed with `payloads` (usually the event mapper's, so
    /// snapshots are compressed and encrypted like events). No automatic snapshots until
    /// [`every`](Self::every) is set.
    pub fn new(store: S, payloads: Payloads) -> Self {
        StoredSnapshots {
            store,
            payloads,
            every: None,
            upcasters: Arc::new(HashMap::new()),
        }
    }

    /// Takes a snapshot whenever a command crosses a multiple of `n` events.
    pub fn every(mut self, n: u64) -> Self {
        self.every = (n > 0).then_some(n);
        self
    }

    /// Reads snapshots of state version `from_version` as `Old` and turns them into the
    /// current state with `f`.
    pub fn upcast<Old: DeserializeOwned + 'static>(
        mut self,
        from_version: u32,
        f: impl Fn(Old) -> A + Send + Sync + 'static,
    ) -> Self {
        let upcaster: Upcaster<A> = Box::new(move |codec, bytes| {
            let (created, modified, discarded, old): Stored<Old> =
                Payloads::decode(codec, bytes).map_err(|e| e.to_string())?;
            Ok((created, modified, discarded, f(old)))
        });
        Arc::get_mut(&mut self.upcasters)
            .expect("upcasters are registered before the snapshots are shared")
            .insert(from_version, upcaster);
        self
    }

    async fn load(&self, id: Uuid, until: Option<Version>) -> Result<Option<Root<A>>, LoadError> {
        Ok(match self.store.latest_snapshot(id, until).await? {
            Some(item) => match self.decode(&item) {
                Ok(root) => Some(root),
                Err(Unusable::Refused(kind)) => {
                    return Err(LoadError::Decode(DecodeError {
                        sequence_id: item.sequence_id,
                        position: Position::Version(item.position),
                        topic: item.topic.clone(),
                        kind,
                    }));
                }
                Err(Unusable::Ignored(reason)) => {
                    tracing::warn!(aggregate = %id, version = item.position, %reason, "ignoring snapshot; rebuilding from events");
                    None
                }
            },
            None => None,
        })
    }

    /// Decodes a snapshot. A snapshot that cannot be used is a reason to rebuild from events,
    /// except a plaintext one where encryption is required: that is a forgery or a downgrade,
    /// and the load fails so that it is seen.
    fn decode(&self, item: &IntegerSequencedItem) -> Result<Root<A>, Unusable> {
        if item.topic != A::SNAPSHOT_TOPIC {
            return Err(Unusable::Ignored(format!(
                "topic {:?} is not {:?}",
                item.topic,
                A::SNAPSHOT_TOPIC
            )));
        }
        let (header, body) = self.payloads.open(item).map_err(|e| match e {
            DecodeErrorKind::NotEncrypted => Unusable::Refused(e),
            other => Unusable::Ignored(other.to_string()),
        })?;
        let ignored = |e: &dyn fmt::Display| Unusable::Ignored(e.to_string());
        let (created, modified, discarded, state) = if header.schema_version == A::STATE_VERSION {
            Payloads::decode::<Stored<A>>(header.codec, &body).map_err(|e| ignored(&e))?
        } else {
            let upcaster = self.upcasters.get(&header.schema_version).ok_or_else(|| {
                ignored(&DecodeErrorKind::NoUpcaster {
                    found: header.schema_version,
                    current: A::STATE_VERSION,
                })
            })?;
            upcaster(header.codec, &body).map_err(|e| ignored(&e))?
        };
        Ok(Root::from_parts(RootParts {
            id: item.sequence_id,
            version: item.position,
            created_on: datetime(created),
            modified_on: datetime(modified),
            discarded,
            state,
        }))
    }

    fn encode(&self, root: &Root<A>) -> Result<IntegerSequencedItem, EncodeError> {
        let stored: Stored<&A> = (
            nanos(root.created_on()),
            nanos(root.modified_on()),
            root.is_discarded(),
            root.state(),
        );
        self.payloads.seal(
            root.id(),
            root.version(),
            A::SNAPSHOT_TOPIC,
            A::STATE_VERSION,
            nanos(root.modified_on()),
            &Metadata::default(),
            &stored,
        )
    }

    async fn write(&self, root: &Root<A>) -> Result<(), SnapshotError> {
        // An encrypted snapshot topic may need its aggregate's key created first: that I/O
        // runs off the async threads, before the synchronous seal.
        if let Some(ready) = self.payloads.prepare(root.id(), A::SNAPSHOT_TOPIC) {
            ready.await.map_err(SnapshotError::Encode)?;
        }
        let item = self.encode(root).map_err(SnapshotError::Encode)?;
        self.store
            .write_snapshot(item)
            .await
            .map_err(SnapshotError::Store)
    }
}

impl<A: SnapshotState, S: SnapshotStore> Snapshots<A> for StoredSnapshots<A, S> {
    fn load(
        &self,
        id: Uuid,
        until: Option<Version>,
    ) -> BoxFuture<'_, Result<Option<Root<A>>, LoadError>> {
        Box::pin(self.load(id, until))
    }

    fn committed<'a>(&'a self, root: &'a Root<A>, before: Version) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Some(n) = self.every
                && before / n < root.version() / n
                && let Err(e) = self.write(root).await
            {
                // The next crossing writes one; until then loads replay a few more events.
                tracing::warn!(aggregate = %root.id(), version = root.version(), error = %e, "snapshot not written");
            }
        })
    }

    fn take<'a>(&'a self, root: &'a Root<A>) -> BoxFuture<'a, Result<(), SnapshotError>> {
        Box::pin(self.write(root))
    }
}
