//! Per-aggregate keys and async code: a new aggregate's key is created, wrapped, written and
//! fsynced off the async worker threads (on tokio's blocking threads), before the synchronous
//! encode, which then finds it in memory. Real files; the key store is a `FileKeyStore` whose
//! writes are watched for the thread they run on.

use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use eventsmith_cipher::{
    AesGcmCipher, FileKeyStore, Key, PerAggregateKeys, StoredKey, WrappedKeyStore,
};
use eventsmith_core::{
    CipherError, EncodeError, Envelope, Event, EventStore, MemoryStore, SaveError, Select,
};
use eventsmith_mapper::{Encrypt, EventMapper};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(crate) struct Noted {
    text: String,
}
impl Event for Noted {
    const TOPIC: &'static str = "note.Noted";
}
eventsmith_core::domain_events! { pub(crate) enum NoteEvent { Noted(Noted) } }

/// A [`FileKeyStore`] that notes the thread of every write (a new key, a tombstone).
struct Watched {
    files: FileKeyStore,
    writes: Arc<Mutex<Vec<ThreadId>>>,
}

impl Watched {
    fn note(&self) {
        self.writes
            .lock()
            .unwrap()
            .push(std::thread::current().id());
    }
}

impl WrappedKeyStore for Watched {
    fn get(&self, sequence_id: Uuid) -> Result<Option<StoredKey>, CipherError> {
        self.files.get(sequence_id)
    }
    fn put_if_absent(&self, sequence_id: Uuid, wrapped: &[u8]) -> Result<StoredKey, CipherError> {
        self.note();
        self.files.put_if_absent(sequence_id, wrapped)
    }
    fn erase(&self, sequence_id: Uuid) -> Result<(), CipherError> {
        self.note();
        self.files.erase(sequence_id)
    }
}

/// Per-aggregate keys over a watched [`FileKeyStore`] in `dir`, and the threads of its writes.
fn watched_keys(
    dir: &std::path::Path,
) -> (Arc<PerAggregateKeys<Watched>>, Arc<Mutex<Vec<ThreadId>>>) {
    let writes = Arc::new(Mutex::new(Vec::new()));
    let keys = Arc::new(PerAggregateKeys::new(
        "master-1",
        Key::generate(),
        Watched {
            files: FileKeyStore::open(dir).unwrap(),
            writes: writes.clone(),
        },
    ));
    (keys, writes)
}

fn envelope(id: Uuid, version: u64) -> Envelope<NoteEvent> {
    Envelope {
        originator_id: id,
        version,
        timestamp: time::OffsetDateTime::now_utc(),
        metadata: Default::default(),
        event: Noted {
            text: format!("secret {version}"),
        }
        .into(),
    }
}

// A current-thread runtime: the test's own thread is the only async worker, so a write on
// any other thread ran off it.
#[tokio::test]
async fn new_keys_are_written_and_erased_off_the_async_thread() {
    let dir = tempfile::tempdir().unwrap();
    let (keys, writes) = watched_keys(dir.path());
    let mapper = EventMapper::<NoteEvent>::builder()
        .cipher(
            Arc::new(AesGcmCipher::with_shared_keys(keys.clone())),
            Encrypt::All,
        )
        .build()
        .unwrap();
    let events = EventStore::new(MemoryStore::new(), mapper);
    let async_thread = std::thread::current().id();
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());

    events
        .append(&[envelope(alice, 1), envelope(alice, 2)])
        .await
        .unwrap();
    events.append(&[envelope(bob, 1)]).await.unwrap();
    events.append(&[envelope(alice, 3)]).await.unwrap();
    let seen = writes.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "one key written per aggregate: {seen:?}");
    assert!(
        seen.iter().all(|t| *t != async_thread),
        "a key was written on the async worker thread"
    );
    for id in [alice, bob] {
        assert!(dir.path().join(format!("{id}.key")).exists());
    }
    let loaded = events.load(alice, &Select::all()).await.unwrap();
    assert_eq!(
        loaded.iter().map(|e| e.version).collect::<Vec<_>>(),
        [1, 2, 3]
    );

    keys.erase_async(alice).await.unwrap();
    let seen = writes.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert_ne!(
        seen[2], async_thread,
        "the erase ran on the async worker thread"
    );
    let err = events.append(&[envelope(alice, 4)]).await.unwrap_err();
    assert!(
        matches!(
            err,
            SaveError::Encode(EncodeError::Cipher(CipherError::KeyErased { sequence_id }))
                if sequence_id == alice
        ),
        "{err:?}"
    );
    // Bob's key is still in memory: nothing more is written for him.
    events.append(&[envelope(bob, 2)]).await.unwrap();
    assert_eq!(writes.lock().unwrap().len(), 3);
}

/// The notes of one aggregate, snapshotted.
#[derive(Default, Debug, Clone, Serialize, Deserialize)]
struct Notes {
    count: u64,
}
impl eventsmith_core::Aggregate for Notes {
    type Event = NoteEvent;
    fn apply(&mut self, _: &NoteEvent) {
        self.count += 1;
    }
}
impl eventsmith_snapshot::SnapshotState for Notes {
    const SNAPSHOT_TOPIC: &'static str = "note.Snapshot";
}

// Only the snapshot topic is encrypted: the snapshot is the first thing that needs the
// aggregate's key, and creates it off the async thread too.
#[tokio::test]
async fn a_snapshot_creates_its_key_off_the_async_thread() {
    use eventsmith_core::{Root, SnapshotStore, Snapshots};
    let dir = tempfile::tempdir().unwrap();
    let (keys, writes) = watched_keys(dir.path());
    let mapper = EventMapper::<NoteEvent>::builder()
        .cipher(
            Arc::new(AesGcmCipher::with_shared_keys(keys)),
            Encrypt::Topics(["note.Snapshot".to_owned()].into()),
        )
        .build()
        .unwrap();
    let store = MemoryStore::new();
    let snapshots = eventsmith_snapshot::StoredSnapshots::<Notes, _>::new(
        store.clone(),
        mapper.payloads().clone(),
    );
    let id = Uuid::new_v4();
    let root = Root::<Notes>::create(
        id,
        Noted {
            text: "first".into(),
        },
    );
    snapshots.take(&root).await.unwrap();
    let seen = writes.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        1,
        "the snapshot created the aggregate's key: {seen:?}"
    );
    assert_ne!(
        seen[0],
        std::thread::current().id(),
        "the snapshot's key was written on the async worker thread"
    );
    let stored = store.latest_snapshot(id, None).await.unwrap().unwrap();
    assert!(!stored.payload.windows(5).any(|w| w == b"first"));
    let loaded = Snapshots::<Notes>::load(&snapshots, id, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded.state().count, 1);
}
