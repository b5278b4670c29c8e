//! Snapshots on a SQLite file and in memory: taken every N events and on demand, used by
//! loads (even with every event deleted), upcast or ignored when the state changed shape,
//! encrypted like events.

use std::sync::Arc;

use eventsmith_cipher::{AesGcmCipher, Key, Keyring, Zstd};
use eventsmith_core::{
    Aggregate, Application, Event, ItemStore, MemoryStore, Root, SnapshotError, SnapshotStore,
};
use eventsmith_mapper::{CodecId, Encrypt, EventMapper, PayloadHeader, Payloads};
use eventsmith_snapshot::{SnapshotState, StoredSnapshots};
use eventsmith_sqlite::SqliteStore;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(crate) struct Added {
    n: u64,
}
impl Event for Added {
    const TOPIC: &'static str = "sum.Added";
}
eventsmith_core::domain_events! { pub(crate) enum SumEvent { Added(Added) } }

/// State version 2: a total and a count.
#[derive(Default, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Sum {
    total: u64,
    count: u64,
}
impl Aggregate for Sum {
    type Event = SumEvent;
    fn apply(&mut self, SumEvent::Added(a): &SumEvent) {
        self.total += a.n;
        self.count += 1;
    }
}
impl SnapshotState for Sum {
    const SNAPSHOT_TOPIC: &'static str = "sum.Snapshot";
    const STATE_VERSION: u32 = 2;
}

/// State version 1 had only the total.
#[derive(Default, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SumV1 {
    total: u64,
}
impl Aggregate for SumV1 {
    type Event = SumEvent;
    fn apply(&mut self, SumEvent::Added(a): &SumEvent) {
        self.total += a.n;
    }
}
impl SnapshotState for SumV1 {
    const SNAPSHOT_TOPIC: &'static str = "sum.Snapshot";
}

fn mapper(codec: CodecId) -> EventMapper<SumEvent> {
    EventMapper::builder().codec(codec).build().unwrap()
}

/// An application with snapshots configured by `configure`.
fn app<A: SnapshotState<Event = SumEvent>, S: ItemStore + SnapshotStore>(
    store: S,
    mapper: EventMapper<SumEvent>,
    configure: impl FnOnce(StoredSnapshots<A, S>) -> StoredSnapshots<A, S>,
) -> Application<A, S> {
    let snapshots = configure(StoredSnapshots::new(
        store.clone(),
        mapper.payloads().clone(),
    ));
    Application::builder(store, mapper)
        .snapshots(snapshots)
        .build()
}

/// `n` commands, each adding its number; the aggregate after the last.
async fn sum_of<A: SnapshotState<Event = SumEvent>>(
    app: &Application<A, impl ItemStore>,
    n: u64,
) -> Root<A> {
    let id = Uuid::new_v4();
    let mut last = None;
    for i in 1..=n {
        let done = app.command(id, |_| Ok::<_, String>([Added { n: i }])).await;
        last = Some(done.unwrap().root);
    }
    last.unwrap()
}

#[tokio::test]
async fn snapshots_are_taken_every_n_events_and_used_by_loads() {
    let store = MemoryStore::new();
    let repo = app::<Sum, _>(store.clone(), mapper(CodecId::Postcard), |s| s.every(10));
    let root = sum_of(&repo, 35).await;
    let id = root.id();
    let snapshot = store.latest_snapshot(id, None).await.unwrap().unwrap();
    assert_eq!(snapshot.position, 30);
    assert_eq!(
        store
            .latest_snapshot(id, Some(29))
            .await
            .unwrap()
            .unwrap()
            .position,
        20
    );
    let loaded = repo.get(id).await.unwrap();
    assert_eq!(loaded.state(), root.state());
    assert_eq!(
        (loaded.version(), loaded.created_on(), loaded.modified_on()),
        (35, root.created_on(), root.modified_on())
    );
    for version in [5, 10, 25, 30, 35] {
        let old = repo.get_at(id, version).await.unwrap();
        assert_eq!((old.version(), old.state().count), (version, version));
        assert_eq!(old.state().total, (1..=version).sum::<u64>());
    }
    assert!(matches!(
        repo.get(Uuid::new_v4()).await,
        Err(eventsmith_core::LoadError::NotFound { .. })
    ));
}

#[tokio::test]
async fn with_every_event_deleted_the_aggregate_loads_at_its_snapshot_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let repo = app::<Sum, _>(store.clone(), mapper(CodecId::Json), |s| s);
    let root = sum_of(&repo, 7).await;
    assert_eq!(repo.take_snapshot(root.id()).await.unwrap(), 7);
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("DELETE FROM integer_items", [])
        .unwrap();
    let loaded = repo.get(root.id()).await.unwrap();
    assert_eq!((loaded.version(), loaded.state()), (7, root.state()));
    // The plain repository, which ignores snapshots, finds nothing.
    assert!(repo.repository().get(root.id()).await.is_err());
    // An application without snapshots cannot take one.
    let plain = Application::<Sum, _>::builder(store, mapper(CodecId::Json)).build();
    assert!(matches!(
        plain.take_snapshot(root.id()).await,
        Err(SnapshotError::NotConfigured)
    ));
}

#[tokio::test]
async fn an_old_state_version_is_upcast_when_it_can_be_and_rebuilt_from_events_when_not() {
    for codec in [CodecId::Json, CodecId::Postcard] {
        let store = MemoryStore::new();
        // Written by version 1 of the state.
        let old = app::<SumV1, _>(store.clone(), mapper(codec), |s| s);
        let root = old
            .command(Uuid::new_v4(), |_| {
                Ok::<_, String>([Added { n: 5 }, Added { n: 6 }])
            })
            .await
            .unwrap()
            .root;
        old.take_snapshot(root.id()).await.unwrap();
        let header = PayloadHeader::parse(
            &store
                .latest_snapshot(root.id(), None)
                .await
                .unwrap()
                .unwrap()
                .payload,
        )
        .unwrap()
        .0;
        assert_eq!(header.schema_version, 1);

        // Without an upcaster, version 2 ignores the old snapshot and replays the events.
        let plain = app::<Sum, _>(store.clone(), mapper(codec), |s| s);
        assert_eq!(
            plain.get(root.id()).await.unwrap().state(),
            &Sum {
                total: 11,
                count: 2
            }
        );

        // With one, the snapshot is used: the upcaster's guess for `count` shows it was.
        let upcasting = app::<Sum, _>(store.clone(), mapper(codec), |s| {
            s.upcast(1, |v1: SumV1| Sum {
                total: v1.total,
                count: 999,
            })
        });
        assert_eq!(
            upcasting.get(root.id()).await.unwrap().state(),
            &Sum {
                total: 11,
                count: 999
            }
        );
    }
}

#[tokio::test]
async fn a_corrupt_snapshot_is_ignored_not_fatal() {
    let store = MemoryStore::new();
    let repo = app::<Sum, _>(store.clone(), mapper(CodecId::Json), |s| s);
    let root = sum_of(&repo, 3).await;
    let mut bad = store.latest_snapshot(root.id(), None).await.unwrap();
    assert!(bad.is_none());
    repo.take_snapshot(root.id()).await.unwrap();
    bad = store.latest_snapshot(root.id(), None).await.unwrap();
    let mut bad = bad.unwrap();
    let last = bad.payload.len() - 1;
    bad.payload[last] ^= 0xff;
    bad.payload.truncate(last - 2);
    store.write_snapshot(bad).await.unwrap();
    assert_eq!(repo.get(root.id()).await.unwrap().state(), root.state());
}

#[tokio::test]
async fn snapshots_are_compressed_and_encrypted_like_events() {
    let store = MemoryStore::new();
    let mapper = EventMapper::<SumEvent>::builder()
        .compressor(Arc::new(Zstd::new().min_size(0)))
        .cipher(
            Arc::new(AesGcmCipher::new(Keyring::new("k1", Key::generate()))),
            Encrypt::All,
        )
        .build()
        .unwrap();
    let payloads: Payloads = mapper.payloads().clone();
    let repo = Application::<Sum, _>::builder(store.clone(), mapper)
        .snapshots(StoredSnapshots::new(store.clone(), payloads).every(2))
        .build();
    let root = sum_of(&repo, 4).await;
    let snapshot = store
        .latest_snapshot(root.id(), None)
        .await
        .unwrap()
        .unwrap();
    let header = PayloadHeader::parse(&snapshot.payload).unwrap().0;
    assert_eq!(header.key_id.as_deref(), Some("k1"));
    assert_eq!(repo.get(root.id()).await.unwrap().state(), root.state());
    // A snapshot moved onto another aggregate does not decrypt (and is ignored).
    let mut moved = snapshot.clone();
    moved.sequence_id = Uuid::new_v4();
    store.write_snapshot(moved.clone()).await.unwrap();
    assert!(matches!(
        repo.get(moved.sequence_id).await,
        Err(eventsmith_core::LoadError::NotFound { .. })
    ));
}
