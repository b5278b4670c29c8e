//! The encryption-downgrade cases: what a reader configured to encrypt does with plaintext
//! that someone with write access to the database put there.

use std::collections::HashSet;
use std::sync::Arc;

use eventsmith_cipher::{AesGcmCipher, Key, Keyring};
use eventsmith_core::{
    Aggregate, Application, DecodeError, DecodeErrorKind, Envelope, Event, ItemStore, LoadError,
    Mapper, Position, SnapshotStore, Version,
};
use eventsmith_mapper::{Encrypt, EventMapper, EventMapperBuilder};
use eventsmith_snapshot::{SnapshotState, StoredSnapshots};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The one event of [`Counter`].
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Counted;
impl Event for Counted {
    const TOPIC: &'static str = "testkit.Counted";
}
eventsmith_core::domain_events! {
    /// The events of [`Counter`].
    pub enum CounterEvent { Counted(Counted) }
}

/// An aggregate that counts its events, snapshotted.
#[derive(Default, Serialize, Deserialize, Debug)]
pub struct Counter {
    /// How many events were applied (a forged snapshot may claim any number).
    pub count: u64,
}
impl Aggregate for Counter {
    type Event = CounterEvent;
    fn apply(&mut self, _: &CounterEvent) {
        self.count += 1;
    }
}
impl SnapshotState for Counter {
    const SNAPSHOT_TOPIC: &'static str = "testkit.Counter.Snapshot";
}

fn keyring() -> Keyring {
    Keyring::new("k1", Key::from_bytes([7; 32]))
}

fn encrypting(which: Encrypt) -> EventMapperBuilder<CounterEvent> {
    EventMapper::<CounterEvent>::builder().cipher(Arc::new(AesGcmCipher::new(keyring())), which)
}

type Repo<S> = Application<Counter, S>;

fn repository<S: ItemStore + SnapshotStore>(
    store: &S,
    mapper: EventMapper<CounterEvent>,
) -> Repo<S> {
    let snapshots = StoredSnapshots::new(store.clone(), mapper.payloads().clone());
    Application::builder(store.clone(), mapper)
        .snapshots(snapshots)
        .build()
}

/// Saves a new counter with `events` genuine (encrypted) events; returns its id.
async fn genuine<S: ItemStore + SnapshotStore>(repo: &Repo<S>, events: usize) -> Uuid {
    let id = Uuid::new_v4();
    repo.command(id, |_| Ok::<_, String>(vec![Counted; events]))
        .await
        .expect("genuine save");
    id
}

/// A plaintext event at `version` of `id`, as a forger with write access would store it.
async fn forge_event<S: ItemStore>(store: &S, id: Uuid, version: Version) {
    let plain = EventMapper::<CounterEvent>::builder().build().unwrap();
    let item = plain
        .encode(&Envelope {
            originator_id: id,
            version,
            timestamp: time::OffsetDateTime::now_utc(),
            metadata: Default::default(),
            event: Counted.into(),
        })
        .unwrap();
    store.append(vec![item]).await.expect("forged append");
}

/// A plaintext snapshot of `id` at `version` claiming `count`, sealed as the snapshot
/// repository seals its state (created, modified, discarded, state) but without a cipher.
async fn forge_snapshot<S: SnapshotStore>(store: &S, id: Uuid, version: Version, count: u64) {
    let plain = EventMapper::<CounterEvent>::builder().build().unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64;
    let state: (i64, i64, bool, Counter) = (now, now, false, Counter { count });
    let snapshot = plain
        .payloads()
        .seal(
            id,
            version,
            Counter::SNAPSHOT_TOPIC,
            Counter::STATE_VERSION,
            now,
            &eventsmith_core::Metadata::default(),
            &state,
        )
        .unwrap();
    store
        .write_snapshot(snapshot)
        .await
        .expect("forged snapshot");
}

#[track_caller]
fn assert_refused<T: std::fmt::Debug>(
    got: Result<T, LoadError>,
    id: Uuid,
    at: Version,
    topic: &str,
) {
    match got {
        Err(LoadError::Decode(DecodeError {
            sequence_id,
            position: Position::Version(position),
            topic: t,
            kind: DecodeErrorKind::NotEncrypted,
        })) if sequence_id == id && position == at && t == topic => {}
        other => panic!("expected NotEncrypted naming {id} at {at} ({topic}), got {other:?}"),
    }
}

/// With encryption required, a plaintext event or snapshot written straight into the store
/// (a forgery by anyone with write access to the database) fails the load with
/// [`DecodeErrorKind::NotEncrypted`] naming the item; `Encrypt::Topics` requires it only for
/// its topics; the migration opt-in reads plaintext only within its bound.
pub async fn forged_plaintext_is_refused<S: ItemStore + SnapshotStore>(store: S) {
    let repo = repository(&store, encrypting(Encrypt::All).build().unwrap());

    // A forged event after two genuine ones.
    let id = genuine(&repo, 2).await;
    assert_eq!(repo.get(id).await.unwrap().state().count, 2);
    forge_event(&store, id, 3).await;
    assert_refused(repo.get(id).await, id, 3, Counted::TOPIC);
    // Loading up to the genuine part still works; the forged item is never decoded as genuine.
    assert_eq!(repo.get_at(id, 2).await.unwrap().state().count, 2);

    // Topics selected for encryption are required; others are not.
    let selected = Encrypt::Topics(HashSet::from([Counted::TOPIC.to_owned()]));
    let by_topic = repository(&store, encrypting(selected).build().unwrap());
    assert_refused(by_topic.get(id).await, id, 3, Counted::TOPIC);
    let other = Encrypt::Topics(HashSet::from(["testkit.Other".to_owned()]));
    let unselected = repository(&store, encrypting(other).build().unwrap());
    assert_eq!(unselected.get(id).await.unwrap().state().count, 3);

    // A forged snapshot over two genuine events, claiming a count of 1000.
    let snapped = genuine(&repo, 2).await;
    forge_snapshot(&store, snapped, 2, 1000).await;
    assert_refused(repo.get(snapped).await, snapped, 2, Counter::SNAPSHOT_TOPIC);

    // The migration opt-in: plaintext is read at positions up to the bound, never past it.
    let up_to_3 = repository(
        &store,
        encrypting(Encrypt::All)
            .accept_plaintext_up_to(3)
            .build()
            .unwrap(),
    );
    assert_eq!(up_to_3.get(id).await.unwrap().state().count, 3);
    assert_eq!(up_to_3.get(snapped).await.unwrap().state().count, 1000);
    forge_event(&store, id, 4).await;
    assert_refused(up_to_3.get(id).await, id, 4, Counted::TOPIC);
    let up_to_1 = repository(
        &store,
        encrypting(Encrypt::All)
            .accept_plaintext_up_to(1)
            .build()
            .unwrap(),
    );
    assert_refused(
        up_to_1.get(snapped).await,
        snapped,
        2,
        Counter::SNAPSHOT_TOPIC,
    );
}
