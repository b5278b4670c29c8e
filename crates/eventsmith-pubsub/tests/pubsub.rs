//! The bus (order, filters, unsubscribing, failures), publishing after commit, and the
//! persistence policy.

use std::sync::{Arc, Mutex};

use eventsmith_core::{
    Aggregate, Application, BoxError, Envelope, Event, EventStore, ItemStore, MemoryStore,
    Repository, Root,
};
use eventsmith_mapper::EventMapper;
use eventsmith_pubsub::{EventBus, PersistencePolicy};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(crate) struct Deposited {
    amount: u64,
}
impl Event for Deposited {
    const TOPIC: &'static str = "account.Deposited";
}
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(crate) struct Withdrawn {
    amount: u64,
}
impl Event for Withdrawn {
    const TOPIC: &'static str = "account.Withdrawn";
}
eventsmith_core::domain_events! { pub(crate) enum AccountEvent { Deposited(Deposited), Withdrawn(Withdrawn) } }

#[derive(Default, Debug)]
pub(crate) struct Account {
    balance: i64,
}
impl Aggregate for Account {
    type Event = AccountEvent;
    fn apply(&mut self, e: &AccountEvent) {
        match e {
            AccountEvent::Deposited(d) => self.balance += d.amount as i64,
            AccountEvent::Withdrawn(w) => self.balance -= w.amount as i64,
        }
    }
}

fn events() -> Vec<Envelope<AccountEvent>> {
    let id = Uuid::new_v4();
    let e = |v, event: AccountEvent| Envelope {
        originator_id: id,
        version: v,
        timestamp: time::OffsetDateTime::now_utc(),
        metadata: Default::default(),
        event,
    };
    vec![
        e(1, Deposited { amount: 5 }.into()),
        e(2, Withdrawn { amount: 2 }.into()),
        e(3, Deposited { amount: 1 }.into()),
    ]
}

type Log = Arc<Mutex<Vec<String>>>;

fn recorder(
    log: &Log,
    name: &'static str,
) -> impl Fn(Vec<Envelope<AccountEvent>>) -> std::future::Ready<Result<(), BoxError>>
+ Send
+ Sync
+ 'static {
    let log = log.clone();
    move |events| {
        log.lock().unwrap().push(format!(
            "{name}:{}",
            events
                .iter()
                .map(|e| e.version.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ));
        std::future::ready(Ok(()))
    }
}

#[tokio::test]
async fn handlers_run_in_registration_order_with_their_filters() {
    let bus = EventBus::<AccountEvent>::new();
    let log: Log = Arc::default();
    bus.subscribe_all(recorder(&log, "all"));
    bus.subscribe_topics(&["account.Withdrawn"], recorder(&log, "withdrawn"));
    let late = bus.subscribe_where(|e| e.version >= 2, recorder(&log, "late"));
    bus.subscribe_topics(&["account.Closed"], recorder(&log, "never"));
    bus.publish(&events()).await.unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        vec!["all:1,2,3", "withdrawn:2", "late:2,3"]
    );
    assert!(bus.unsubscribe(late));
    assert!(!bus.unsubscribe(late));
    log.lock().unwrap().clear();
    bus.publish(&events()).await.unwrap();
    assert_eq!(*log.lock().unwrap(), vec!["all:1,2,3", "withdrawn:2"]);
}

#[tokio::test]
async fn a_failing_handler_is_reported_and_the_others_still_run() {
    let bus = EventBus::<AccountEvent>::new();
    let log: Log = Arc::default();
    bus.subscribe_all(recorder(&log, "first"));
    let failing = bus.subscribe_all(|_| async { Err::<(), BoxError>("projection is down".into()) });
    bus.subscribe_all(recorder(&log, "third"));
    let err = bus.publish(&events()).await.unwrap_err();
    assert_eq!(err.failures.len(), 1);
    assert_eq!(err.failures[0].0, failing);
    assert!(err.to_string().contains("projection is down"));
    assert_eq!(*log.lock().unwrap(), vec!["first:1,2,3", "third:1,2,3"]);
}

#[tokio::test]
async fn events_are_published_after_the_commit_and_a_failure_leaves_them_committed() {
    let store = MemoryStore::new();
    let bus = EventBus::new();
    // The handler sees the events already stored.
    let seen_in_store = Arc::new(Mutex::new(Vec::new()));
    {
        let (store, seen) = (store.clone(), seen_in_store.clone());
        bus.subscribe_all(move |events: Vec<Envelope<AccountEvent>>| {
            let (store, seen) = (store.clone(), seen.clone());
            async move {
                let stored = store
                    .select(events[0].originator_id, &eventsmith_core::Select::all())
                    .await?;
                seen.lock().unwrap().push(stored.len());
                Err::<(), BoxError>("downstream failed".into())
            }
        });
    }
    let calls = Arc::new(Mutex::new(0));
    {
        let calls = calls.clone();
        bus.subscribe_topics(&["account.Withdrawn"], move |_| {
            *calls.lock().unwrap() += 1;
            async { Ok(()) }
        });
    }
    let app =
        Application::<Account, _>::builder(store.clone(), EventMapper::builder().build().unwrap())
            .publish_to(bus.clone())
            .build();
    let id = Uuid::new_v4();
    let done = app
        .command(id, |_| {
            Ok::<_, String>(vec![
                AccountEvent::from(Deposited { amount: 3 }),
                Withdrawn { amount: 1 }.into(),
            ])
        })
        .await
        .expect("a failing subscriber does not fail the command: the events are committed");
    assert_eq!(done.events.len(), 2);
    assert_eq!(
        *seen_in_store.lock().unwrap(),
        vec![2],
        "published only after both events were stored"
    );
    assert_eq!(
        *calls.lock().unwrap(),
        1,
        "the failure did not stop the next subscriber"
    );
    assert_eq!(
        app.get(id).await.unwrap().state().balance,
        2,
        "the commit stands"
    );
    // A rejected command publishes nothing.
    let rejected = app.command(id, |_| Err::<[Deposited; 0], _>("no")).await;
    assert!(rejected.is_err());
    assert_eq!(seen_in_store.lock().unwrap().len(), 1);
    // Published directly, the failure is returned with its source.
    let err = bus.publish(&done.events).await.unwrap_err();
    assert_eq!(err.failures.len(), 1);
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "downstream failed"
    );
}

#[tokio::test]
async fn the_persistence_policy_stores_what_entities_publish() {
    let store = MemoryStore::new();
    let events = EventStore::new(
        store.clone(),
        EventMapper::<AccountEvent>::builder().build().unwrap(),
    );
    let bus = EventBus::new();
    PersistencePolicy::subscribe(&bus, events.clone(), &[]);
    // The classic style: the entity's events are published, and the policy persists them.
    let mut root = Root::<Account>::create(Uuid::new_v4(), Deposited { amount: 10 });
    root.execute(|_| Ok::<_, String>([Withdrawn { amount: 4 }]))
        .unwrap();
    bus.publish(&root.commit_pending()).await.unwrap();
    let repository = Repository::<Account, _>::new(events);
    assert_eq!(repository.get(root.id()).await.unwrap().state().balance, 6);
    // Publishing the same versions again conflicts in the policy, reported as its failure.
    let mut stale = Root::<Account>::create(root.id(), Deposited { amount: 1 });
    assert!(bus.publish(&stale.commit_pending()).await.is_err());
    assert_eq!(repository.get(root.id()).await.unwrap().version(), 2);
}

/// A handler's error stays typed behind the bus's: the persistence policy's append conflict
/// is reachable through `source()` as the `SaveError` it was, with its kind.
#[tokio::test]
async fn a_failed_persistence_keeps_the_store_error_as_its_source() {
    use eventsmith_core::{ErrorKind, SaveError};

    let store = MemoryStore::new();
    let bus = EventBus::<AccountEvent>::new();
    let events_store = EventStore::new(
        store.clone(),
        EventMapper::<AccountEvent>::builder().build().unwrap(),
    );
    let policy = PersistencePolicy::subscribe(&bus, events_store, &[]);
    let batch = events();
    bus.publish(&batch).await.unwrap();
    // The same versions again: the store refuses them.
    let err = bus.publish(&batch).await.unwrap_err();
    assert_eq!(err.failures.len(), 1);
    assert_eq!(err.failures[0].0, policy);
    let source = std::error::Error::source(&err).expect("the handler's error");
    let save = source
        .downcast_ref::<SaveError>()
        .expect("the persistence policy's SaveError");
    assert_eq!(save.kind(), ErrorKind::Conflict);
    assert!(
        matches!(save, SaveError::Conflict { version: 1, .. }),
        "{save:?}"
    );
}
