//! Conformance cases for the application's write path on a real store: create-or-command,
//! idempotent commands, metadata, snapshots, and many writers on one aggregate.

use std::collections::BTreeSet;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use eventsmith_cipher::{AesGcmCipher, Key, Keyring};
use eventsmith_core::{
    Aggregate, Application, CommandError, Event, IdempotencyKey, ItemStore, Metadata, RetryPolicy,
    Select, SnapshotStore,
};
use eventsmith_mapper::{Encrypt, EventMapper};
use eventsmith_snapshot::{SnapshotState, StoredSnapshots};
use serde::{Deserialize, Serialize};
use tokio::sync::Barrier;
use uuid::Uuid;

/// The one event of [`Tally`]: a numbered mark.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Marked {
    /// Which mark.
    pub n: u64,
}
impl Event for Marked {
    const TOPIC: &'static str = "testkit.Marked";
}
eventsmith_core::domain_events! {
    /// The events of [`Tally`].
    pub enum TallyEvent { Marked(Marked) }
}

/// An aggregate that keeps every mark it was given.
#[derive(Default, Debug, Clone, Serialize, Deserialize)]
pub struct Tally {
    /// The marks, in the order applied.
    pub marks: Vec<u64>,
}
impl Aggregate for Tally {
    type Event = TallyEvent;
    fn apply(&mut self, TallyEvent::Marked(m): &TallyEvent) {
        self.marks.push(m.n);
    }
}
impl SnapshotState for Tally {
    const SNAPSHOT_TOPIC: &'static str = "testkit.Tally.Snapshot";
}

fn mark(n: u64) -> Marked {
    Marked { n }
}

fn plain_app<S: ItemStore>(store: &S) -> Application<Tally, S> {
    Application::builder(
        store.clone(),
        EventMapper::<TallyEvent>::builder().build().unwrap(),
    )
    .build()
}

fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::new(format!("{s}-{}", Uuid::new_v4())).expect("a valid key")
}

/// A first command on an aggregate with no events starts from its default state and may emit
/// several events, stored as versions 1..=n; `require_existing` is a typed `NotFound`.
pub async fn first_command_creates_with_many_events<S: ItemStore>(store: S) {
    let app = plain_app(&store);
    let id = Uuid::new_v4();
    let missing = app
        .command(id, |_| Ok::<_, String>([mark(0)]))
        .require_existing()
        .await;
    assert!(
        matches!(missing, Err(CommandError::NotFound { id: got }) if got == id),
        "require_existing on no events: {missing:?}"
    );
    assert!(store.select(id, &Select::all()).await.unwrap().is_empty());
    let done = app
        .command(id, |t: &Tally| {
            assert!(t.marks.is_empty(), "a first command sees the default state");
            Ok::<_, String>([mark(1), mark(2), mark(3)])
        })
        .await
        .expect("the first command");
    assert_eq!(done.root.version(), 3);
    assert_eq!(
        done.events.iter().map(|e| e.version).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(!done.replayed);
    let then = app
        .command(id, |_| Ok::<_, String>([mark(4)]))
        .require_existing()
        .await
        .expect("a command on an existing aggregate");
    assert_eq!(then.root.state().marks, [1, 2, 3, 4]);
    assert_eq!(app.get(id).await.unwrap().state().marks, [1, 2, 3, 4]);
    // A command that decides nothing happens appends nothing.
    let nothing = app
        .command(id, |_| Ok::<_, String>(Vec::<Marked>::new()))
        .await
        .unwrap();
    assert!(nothing.events.is_empty());
    assert_eq!(store.select(id, &Select::all()).await.unwrap().len(), 4);
}

/// The same request (idempotency key) sent again, in sequence or by racing tasks, appends
/// once and returns the first outcome, even after the state changed; a rejected command
/// stores no key.
pub async fn idempotent_commands_apply_once<S: ItemStore>(store: S) {
    let app = plain_app(&store);
    let id = Uuid::new_v4();
    let k = key("twice");
    let first = app
        .command(id, |_| Ok::<_, String>([mark(1), mark(2)]))
        .idempotency_key(k.clone())
        .await
        .expect("the first run");
    app.command(id, |_| Ok::<_, String>([mark(3)]))
        .await
        .unwrap();
    // Sent again: not decided again (this decision would refuse), nothing appended.
    let again = app
        .command(id, |_| Err::<[Marked; 0], _>("decided again"))
        .idempotency_key(k)
        .await
        .expect("a replay returns the first outcome");
    assert!(again.replayed);
    assert_eq!(
        again.root.version(),
        2,
        "the state just after the first run"
    );
    assert_eq!(again.events, first.events);
    assert_eq!(store.select(id, &Select::all()).await.unwrap().len(), 3);

    // A rejected command stores no key: the same key later runs for real.
    let k = key("rejected");
    let refused = app
        .command(id, |_| Err::<[Marked; 0], _>("no"))
        .idempotency_key(k.clone())
        .await;
    assert!(matches!(refused, Err(CommandError::Rejected("no"))));
    let later = app
        .command(id, |_| Ok::<_, String>([mark(4)]))
        .idempotency_key(k)
        .await
        .unwrap();
    assert!(!later.replayed);

    // Eight copies of one request at once: one appends, seven replay it.
    let k = key("racing");
    let barrier = Arc::new(Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (app, k, barrier) = (app.clone(), k.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                app.command(id, move |_| Ok::<_, String>([mark(100 + i)]))
                    .idempotency_key(k)
                    .await
                    .expect("every copy succeeds")
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    assert_eq!(outcomes.iter().filter(|o| !o.replayed).count(), 1);
    let applied = &outcomes.iter().find(|o| !o.replayed).unwrap().events;
    assert!(outcomes.iter().all(|o| &o.events == applied));
    assert_eq!(store.select(id, &Select::all()).await.unwrap().len(), 5);
}

/// Metadata round-trips through the store, plaintext and encrypted; an idempotency key
/// becomes the causation and correlation id unless the command set them.
pub async fn metadata_round_trips<S: ItemStore>(store: S) {
    let encrypted = EventMapper::<TallyEvent>::builder()
        .cipher(
            Arc::new(AesGcmCipher::new(Keyring::new(
                "k1",
                Key::from_bytes([3; 32]),
            ))),
            Encrypt::All,
        )
        .build()
        .unwrap();
    let plain = EventMapper::<TallyEvent>::builder().build().unwrap();
    for (name, mapper) in [("plaintext", plain), ("encrypted", encrypted)] {
        let app = Application::<Tally, _>::builder(store.clone(), mapper).build();
        let id = Uuid::new_v4();
        let given = Metadata::default()
            .with_correlation_id("order-7")
            .with_causation_id("cart-checkout/3")
            .with_user("actor", "ada")
            .with_user("tenant", "acme ünïcode");
        app.command(id, |_| Ok::<_, String>([mark(1), mark(2)]))
            .metadata(given.clone())
            .await
            .unwrap();
        let k = key("caused");
        app.command(id, |_| Ok::<_, String>([mark(3)]))
            .idempotency_key(k.clone())
            .metadata(Metadata::default().with_user("actor", "bob"))
            .await
            .unwrap();
        app.command(id, |_| Ok::<_, String>([mark(4)]))
            .await
            .unwrap();
        let events = app
            .repository()
            .event_store()
            .load(id, &Select::all())
            .await
            .unwrap();
        let metadata: Vec<_> = events.iter().map(|e| e.metadata.clone()).collect();
        let from_key = Metadata::default()
            .with_correlation_id(k.as_str())
            .with_causation_id(k.as_str())
            .with_user("actor", "bob");
        assert_eq!(
            metadata,
            [given.clone(), given, from_key, Metadata::default()],
            "{name}"
        );
    }
    // Metadata over the limits fails the command before anything is written.
    let app = plain_app(&store);
    let id = Uuid::new_v4();
    let too_long = Metadata::default().with_correlation_id("x".repeat(256));
    let failed = app
        .command(id, |_| Ok::<_, String>([mark(1)]))
        .metadata(too_long)
        .await;
    assert!(
        matches!(failed, Err(CommandError::Save(_))),
        "oversized metadata: {failed:?}"
    );
    assert!(store.select(id, &Select::all()).await.unwrap().is_empty());
}

/// Sixteen tasks commanding one aggregate at once all succeed with the default retry policy,
/// each mark applied exactly once.
pub async fn contended_commands_all_complete<S: ItemStore>(store: S) {
    let app = plain_app(&store);
    let id = Uuid::new_v4();
    app.command(id, |_| Ok::<_, String>([mark(0)]))
        .await
        .unwrap();
    let barrier = Arc::new(Barrier::new(16));
    let tasks: Vec<_> = (1..=16)
        .map(|n| {
            let (app, barrier) = (app.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                // Keyed, so that an unknown outcome (an LWT timeout under contention) is
                // safe to retry too.
                app.command(id, move |_| Ok::<_, String>([mark(n)]))
                    .idempotency_key(key("contended"))
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().expect("every contended command completes");
    }
    let marks = app.get(id).await.unwrap().state().marks.clone();
    assert_eq!(marks.len(), 17);
    assert_eq!(
        marks.iter().copied().collect::<BTreeSet<_>>(),
        (0..=16).collect(),
        "each mark once"
    );
}

/// An application with an aggregate cache decides on the state its last command left,
/// without loading it; when another writer appended since, the save's conflict drops that
/// state and the command runs again at once on the loaded one, even with
/// [`RetryPolicy::never`], so nothing is committed on a stale state and no conflict reaches
/// the caller. Eight cached commands racing on one aggregate each apply once.
pub async fn cached_commands_never_commit_on_a_stale_state<S: ItemStore>(store: S) {
    let cached = Application::builder(
        store.clone(),
        EventMapper::<TallyEvent>::builder().build().unwrap(),
    )
    .cache(NonZeroUsize::new(16).unwrap())
    .retry(RetryPolicy::never())
    .build();
    let other = plain_app(&store);
    let id = Uuid::new_v4();
    let seen = Mutex::new(Vec::new());
    let decide = |n: u64| {
        let seen = &seen;
        move |t: &Tally| {
            seen.lock().unwrap().push(t.marks.clone());
            Ok::<_, String>([mark(n)])
        }
    };
    cached.command(id, decide(1)).await.unwrap();
    cached.command(id, decide(2)).await.unwrap();
    other
        .command(id, |_| Ok::<_, String>([mark(3)]))
        .await
        .unwrap();
    let committed = cached
        .command(id, decide(4))
        .await
        .expect("a stale cached state is not the caller's conflict");
    assert_eq!(committed.root.state().marks, vec![1, 2, 3, 4]);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![vec![], vec![1], vec![1, 2], vec![1, 2, 3]],
        "the second command decided on the cached state; the third first on the stale cached \
         state, then on the loaded one"
    );
    let stored: Vec<u64> = store
        .select(id, &Select::all())
        .await
        .unwrap()
        .iter()
        .map(|i| i.position)
        .collect();
    assert_eq!(stored, vec![1, 2, 3, 4]);

    // Racing cached commands (the default retry policy): each mark once.
    let racing = Application::builder(
        store.clone(),
        EventMapper::<TallyEvent>::builder().build().unwrap(),
    )
    .cache(NonZeroUsize::new(16).unwrap())
    .build();
    let id = Uuid::new_v4();
    let barrier = Arc::new(Barrier::new(8));
    let tasks: Vec<_> = (1..=8)
        .map(|n| {
            let (app, barrier) = (racing.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                app.command(id, move |_: &Tally| Ok::<_, String>([mark(n)]))
                    .idempotency_key(key("cached"))
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await
            .unwrap()
            .expect("every racing cached command completes");
    }
    let marks = racing.get(id).await.unwrap().state().marks.clone();
    assert_eq!(
        marks.iter().copied().collect::<BTreeSet<_>>(),
        (1..=8).collect(),
        "each mark once"
    );
    assert_eq!(marks.len(), 8);
}

/// With snapshots every 3 events, commands write them as they cross multiples of 3, loads use
/// them (the result equals a replay from events), and `take_snapshot` writes one on demand.
pub async fn commands_take_and_use_snapshots<S: ItemStore + SnapshotStore>(store: S) {
    let mapper = EventMapper::<TallyEvent>::builder().build().unwrap();
    let snapshots = StoredSnapshots::new(store.clone(), mapper.payloads().clone()).every(3);
    let app = Application::<Tally, _>::builder(store.clone(), mapper)
        .snapshots(snapshots)
        .build();
    let plain = plain_app(&store);
    let id = Uuid::new_v4();
    app.command(id, |_| Ok::<_, String>([mark(1), mark(2)]))
        .await
        .unwrap();
    assert!(store.latest_snapshot(id, None).await.unwrap().is_none());
    app.command(id, |_| Ok::<_, String>([mark(3), mark(4)]))
        .await
        .unwrap();
    let at = |v: Option<u64>| {
        let store = store.clone();
        async move {
            store
                .latest_snapshot(id, v)
                .await
                .unwrap()
                .map(|s| s.position)
        }
    };
    assert_eq!(at(None).await, Some(4), "crossed 3");
    for n in 5..=7 {
        app.command(id, move |_| Ok::<_, String>([mark(n)]))
            .await
            .unwrap();
    }
    assert_eq!(at(None).await, Some(6));
    assert_eq!(at(Some(5)).await, Some(4));
    assert_eq!(
        app.get(id).await.unwrap().state().marks,
        [1, 2, 3, 4, 5, 6, 7]
    );
    assert_eq!(
        app.get_at(id, 5).await.unwrap().state().marks,
        plain.get_at(id, 5).await.unwrap().state().marks
    );
    assert_eq!(app.take_snapshot(id).await.unwrap(), 7);
    assert_eq!(at(None).await, Some(7));
}
