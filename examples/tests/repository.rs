//! The repository, application and event player on the worked example's aggregate: loading,
//! history, discarding, retries on conflict, and typed errors for bad stored data.

use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use eventsmith::EventMapper;
use eventsmith::scenario::given;
use eventsmith::{
    Application, CommandError, DecodeErrorKind, EventStore, ItemStore, LoadError, MemoryStore,
    ReplayError, Repository, RetryPolicy, Root, SaveError, SequencedItem,
};
use eventsmith_examples::example::{
    Created, Discarded, Example, ExampleError, ExampleEvent, FooChanged, create_new_example,
};
use uuid::Uuid;

fn mapper() -> EventMapper<ExampleEvent> {
    EventMapper::builder().build().unwrap()
}

fn repository(store: MemoryStore) -> Repository<Example, MemoryStore> {
    Repository::new(EventStore::new(store, mapper()))
}

#[tokio::test]
async fn saves_loads_and_replays_history() {
    let repo = repository(MemoryStore::new());
    let mut example = create_new_example("bar").unwrap();
    let id = example.id();
    example.execute(|e| e.change_foo("baz")).unwrap();
    example.execute(|e| e.change_foo("qux")).unwrap();
    let saved = repo.save(&mut example).await.unwrap();
    assert_eq!(saved.len(), 3, "all pending events are saved in one batch");
    assert!(example.pending().is_empty());
    assert_eq!(example.saved_version(), 3);

    let loaded = repo.get(id).await.unwrap();
    assert_eq!((loaded.version(), loaded.state().foo.as_str()), (3, "qux"));
    assert_eq!(loaded.created_on(), example.created_on());
    assert_eq!(loaded.modified_on(), example.modified_on());
    for (version, foo) in [(1, "bar"), (2, "baz"), (3, "qux")] {
        let old = repo.get_at(id, version).await.unwrap();
        assert_eq!((old.version(), old.state().foo.as_str()), (version, foo));
    }
    assert!(repo.contains(id).await.unwrap());
    assert!(!repo.contains(Uuid::new_v4()).await.unwrap());
    assert!(matches!(
        repo.get(Uuid::new_v4()).await,
        Err(LoadError::NotFound { .. })
    ));
    assert!(matches!(
        repo.get_at(id, 0).await,
        Err(LoadError::NotFound { .. })
    ));
}

#[tokio::test]
async fn a_discarded_aggregate_rejects_commands_and_loads_as_discarded() {
    let repo = repository(MemoryStore::new());
    let mut example = create_new_example("bar").unwrap();
    let id = example.id();
    example.execute(|e| e.discard()).unwrap();
    repo.save(&mut example).await.unwrap();
    assert!(example.is_discarded());
    assert!(
        matches!(example.execute(|e| e.change_foo("x")), Err(CommandError::Discarded { id: d }) if d == id)
    );
    assert!(matches!(repo.get(id).await, Err(LoadError::Discarded { id: d }) if d == id));
    assert!(!repo.contains(id).await.unwrap());
    // Its history before the discard still loads.
    assert_eq!(repo.get_at(id, 1).await.unwrap().state().foo, "bar");
}

#[tokio::test]
async fn a_stale_save_conflicts_and_keeps_its_pending_events() {
    let repo = repository(MemoryStore::new());
    let mut example = create_new_example("a").unwrap();
    let id = example.id();
    repo.save(&mut example).await.unwrap();
    let mut first = repo.get(id).await.unwrap();
    let mut second = repo.get(id).await.unwrap();
    first.execute(|e| e.change_foo("b")).unwrap();
    second.execute(|e| e.change_foo("c")).unwrap();
    repo.save(&mut first).await.unwrap();
    let err = repo.save(&mut second).await.unwrap_err();
    assert!(
        matches!(err, SaveError::Conflict { id: i, version: 2 } if i == id),
        "{err}"
    );
    assert_eq!(
        second.pending().len(),
        1,
        "a failed save keeps the events pending"
    );
    assert_eq!(repo.get(id).await.unwrap().state().foo, "b");
}

/// A decide function that, on its first `interfere` calls, lets a rival save a new version
/// (to completion, on another thread) before deciding to set `foo` to `target`.
fn interfering_decide(
    rival: Application<Example, MemoryStore>,
    id: Uuid,
    calls: Arc<AtomicUsize>,
    interfere: usize,
    target: &'static str,
) -> impl Fn(&Example) -> Result<Option<FooChanged>, ExampleError> + Send + Sync {
    move |e: &Example| {
        if calls.fetch_add(1, Ordering::SeqCst) < interfere {
            let rival = rival.clone();
            std::thread::spawn(move || {
                tokio::runtime::Runtime::new().unwrap().block_on(async {
                    let value = format!("rival {}", Uuid::new_v4());
                    rival
                        .command(id, move |_| {
                            Ok::<_, ExampleError>([FooChanged { foo: value.clone() }])
                        })
                        .await
                        .unwrap();
                })
            })
            .join()
            .unwrap();
        }
        e.change_foo(target)
    }
}

#[tokio::test]
async fn commands_retry_on_conflict_and_give_up_after_the_configured_attempts() {
    let store = MemoryStore::new();
    let app = Application::<Example, _>::builder(store.clone(), mapper())
        .retry(RetryPolicy::new(3))
        .build();
    let rival = Application::<Example, _>::builder(store.clone(), mapper()).build();
    let id = Uuid::new_v4();
    app.command(id, |_| {
        Ok::<_, ExampleError>([Created {
            foo: "start".into(),
        }])
    })
    .await
    .unwrap();

    let calls = Arc::new(AtomicUsize::new(0));
    let root = app
        .command(
            id,
            interfering_decide(rival.clone(), id, calls.clone(), 2, "mine"),
        )
        .await
        .unwrap()
        .root;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "two conflicts, then success"
    );
    assert_eq!((root.version(), root.state().foo.as_str()), (4, "mine"));
    assert_eq!(app.repository().get(id).await.unwrap().state().foo, "mine");

    // With the rival interfering on every attempt, the last conflict comes back.
    let calls = Arc::new(AtomicUsize::new(0));
    let err = app
        .command(
            id,
            interfering_decide(rival, id, calls.clone(), usize::MAX, "never"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, CommandError::Save(SaveError::Conflict { .. })),
        "{err}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3, "three attempts in all");

    // Domain rejections are not retried.
    let err = app.command(id, |e| e.change_foo("")).await.unwrap_err();
    assert!(matches!(
        err,
        CommandError::Rejected(ExampleError::EmptyFoo)
    ));
}

#[tokio::test]
async fn commands_from_many_tasks_all_land() {
    // The default retry policy: 16 writers on one aggregate all get through.
    let app = Application::<Example, _>::builder(MemoryStore::new(), mapper()).build();
    let id = Uuid::new_v4();
    app.command(id, |_| {
        Ok::<_, ExampleError>([Created { foo: String::new() }])
    })
    .await
    .unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                app.command(id, move |e| e.change_foo(&format!("{}{i},", e.foo)))
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let root = app.repository().get(id).await.unwrap();
    assert_eq!(root.version(), 17);
    assert_eq!(
        root.state()
            .foo
            .split(',')
            .filter(|s| !s.is_empty())
            .count(),
        16
    );
}

async fn stored_example(store: &MemoryStore) -> Uuid {
    let repo = repository(store.clone());
    let mut example = create_new_example("bar").unwrap();
    example.execute(|e| e.change_foo("baz")).unwrap();
    repo.save(&mut example).await.unwrap();
    example.id()
}

#[tokio::test]
async fn corrupt_payloads_and_unknown_topics_load_as_typed_decode_errors() {
    let store = MemoryStore::new();
    let id = stored_example(&store).await;
    let good = store.latest(id).await.unwrap().unwrap();

    let bad_id = Uuid::new_v4();
    let mut first = good.clone();
    first.sequence_id = bad_id;
    first.position = 1;
    first.payload = vec![1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'{'];
    store.append(vec![first]).await.unwrap();
    match repository(store.clone()).get(bad_id).await {
        Err(LoadError::Decode(e)) => {
            assert_eq!(
                (e.sequence_id, e.topic.as_str()),
                (bad_id, "example.FooChanged")
            );
            assert!(matches!(e.kind, DecodeErrorKind::Deserialize(_)));
        }
        other => panic!("{other:?}"),
    }

    let unknown_id = Uuid::new_v4();
    let mut unknown = good.clone();
    unknown.sequence_id = unknown_id;
    unknown.position = 1;
    unknown.topic = "example.Unknown".into();
    store.append(vec![unknown]).await.unwrap();
    match repository(store.clone()).get(unknown_id).await {
        Err(LoadError::Decode(e)) => assert!(matches!(e.kind, DecodeErrorKind::UnknownTopic)),
        other => panic!("{other:?}"),
    }

    let garbage_id = Uuid::new_v4();
    store
        .append(vec![SequencedItem {
            sequence_id: garbage_id,
            position: 1,
            topic: "example.Created".into(),
            payload: vec![9; 3],
        }])
        .await
        .unwrap();
    match repository(store).get(garbage_id).await {
        Err(LoadError::Decode(e)) => {
            assert!(matches!(e.kind, DecodeErrorKind::UnsupportedFormat(9)))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn gaps_and_histories_not_starting_at_version_1_are_replay_errors() {
    let store = MemoryStore::new();
    let id = stored_example(&store).await;
    let items = store.select(id, &eventsmith::Select::all()).await.unwrap();

    // A history with a gap: versions 1 and 3.
    let gap_id = Uuid::new_v4();
    let mut first = items[0].clone();
    first.sequence_id = gap_id;
    let mut third = items[1].clone();
    third.sequence_id = gap_id;
    third.position = 3;
    store.append(vec![first, third]).await.unwrap();
    let err = repository(store.clone()).get(gap_id).await.unwrap_err();
    assert!(
        matches!(
            err,
            LoadError::Replay(ReplayError::OutOfOrder {
                expected: 2,
                found: 3,
                ..
            })
        ),
        "{err}"
    );

    // A history that starts at version 2.
    let late_id = Uuid::new_v4();
    let mut second = items[1].clone();
    second.sequence_id = late_id;
    store.append(vec![second]).await.unwrap();
    let err = repository(store).get(late_id).await.unwrap_err();
    assert!(
        matches!(
            err,
            LoadError::Replay(ReplayError::OutOfOrder {
                expected: 1,
                found: 2,
                ..
            })
        ),
        "{err}"
    );
}

#[test]
fn the_event_player_rejects_events_after_a_discard_and_of_other_aggregates() {
    let root = Root::<Example>::create(Uuid::new_v4(), Created { foo: "a".into() });
    let mut events = root.pending().to_vec();
    let mut discard = events[0].clone();
    discard.version = 2;
    discard.event = Discarded.into();
    let mut after = discard.clone();
    after.version = 3;
    after.event = FooChanged {
        foo: "zombie".into(),
    }
    .into();
    events.extend([discard, after]);
    assert!(matches!(
        Root::<Example>::replay(None, events.clone()),
        Err(ReplayError::AfterDiscard { version: 3, .. })
    ));

    let mut other = events[0].clone();
    other.originator_id = Uuid::new_v4();
    other.version = 2;
    let mixed = vec![events[0].clone(), other];
    assert!(matches!(
        Root::<Example>::replay(None, mixed),
        Err(ReplayError::WrongOriginator { .. })
    ));
    assert!(Root::<Example>::replay(None, Vec::new()).unwrap().is_none());
}

#[test]
fn given_when_then() {
    given::<Example>([Created { foo: "a".into() }])
        .when(|e| e.change_foo("b"))
        .then([FooChanged { foo: "b".into() }]);
    given::<Example>([Created { foo: "a".into() }])
        .when(|e| e.change_foo("a"))
        .then(Vec::<ExampleEvent>::new());
    given::<Example>([Created { foo: "a".into() }])
        .when(|e| e.change_foo(""))
        .then_error(ExampleError::EmptyFoo);
    given::<Example>([
        ExampleEvent::from(Created { foo: "a".into() }),
        Discarded.into(),
    ])
    .when(|e| e.change_foo("b"))
    .then_discarded();
}

#[test]
#[should_panic(expected = "the command recorded other events")]
fn given_when_then_fails_on_other_events() {
    given::<Example>([Created { foo: "a".into() }])
        .when(|e| e.change_foo("b"))
        .then([FooChanged { foo: "c".into() }]);
}

/// Every public future must be `Send`, so it can be spawned on a multi-threaded runtime.
#[allow(dead_code)]
fn futures_are_send(
    app: Application<Example, MemoryStore>,
    repo: Repository<Example, MemoryStore>,
    mut root: Root<Example>,
) {
    fn is_send<T: Send>(_: T) {}
    let id = Uuid::new_v4();
    is_send(repo.get(id));
    is_send(repo.get_at(id, 1));
    is_send(repo.contains(id));
    is_send(repo.save(&mut root));
    is_send(app.command(id, |e| e.change_foo("x")).into_future());
    is_send(app.get(id));
}
