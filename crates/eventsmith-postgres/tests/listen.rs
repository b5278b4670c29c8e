//! LISTEN/NOTIFY wake-ups: a commit through one store (a process of its own, on its own
//! connections) wakes a runner of another store at once, though the runner polls only every
//! 60 s; and the listener survives losing its connection.

mod common;

use std::sync::Arc;
use std::time::Duration;

use eventsmith_core::{ItemStore, Runner, RunnerHandle, SequencedItem};
use eventsmith_postgres::PostgresStore;
use eventsmith_testkit::follow::Recorder;
use tokio::time::timeout;
use uuid::Uuid;

const TOPIC: &str = "test.Listen";
/// Far longer than any wait below: a follower that applies an append in time was woken.
const POLL: Duration = Duration::from_secs(60);
/// How long a notified follower may take.
const WOKEN_WITHIN: Duration = Duration::from_secs(2);

async fn append(store: &PostgresStore, id: Uuid, position: u64) -> u64 {
    let item = SequencedItem {
        sequence_id: id,
        position,
        topic: TOPIC.into(),
        payload: vec![position as u8],
    };
    store.append(vec![item]).await.expect("append").end - 1
}

/// Two stores on one schema; a runner on the second, polling every 60 s, woken by its
/// listener; the runner has done its first pass and any early wake is spent.
async fn setup(
    schema: &common::Schema,
) -> (
    PostgresStore,
    PostgresStore,
    Arc<Recorder>,
    RunnerHandle,
    eventsmith_postgres::Listener,
    String,
) {
    let a = PostgresStore::connect(schema.config()).await.unwrap();
    let b = PostgresStore::connect(schema.config()).await.unwrap();
    let name = format!("listen-{}", Uuid::new_v4());
    let recorder = Recorder::new(&name, TOPIC);
    let runner = Runner::new(b.clone())
        .follow(recorder.clone())
        .poll_interval(POLL);
    let listener = b.listen(runner.waker()).await.expect("listen");
    assert_eq!(listener.channel(), format!("eventsmith_{}", schema.name));
    assert_eq!(listener.channel(), a.notification_channel());
    let running = runner.start();
    timeout(Duration::from_secs(10), async {
        while running.status(&name).is_none() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the runner starts");
    // The listener's first wake and the runner's first pass are over by now: from here on
    // only a notification (or the 60 s poll) makes it look again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    (a, b, recorder, running, listener, name)
}

/// The server processes of connections whose last statement was `listening`.
async fn listeners(admin: &tokio_postgres::Client, listening: &str) -> Vec<i32> {
    admin
        .query(
            "SELECT pid FROM pg_stat_activity WHERE query = $1",
            &[&listening],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_elsewhere_wakes_a_listening_runner() {
    let Some(schema) = common::schema() else {
        return;
    };
    let (a, _b, recorder, running, _listener, name) = setup(&schema).await;
    let id = Uuid::new_v4();
    for position in 1..=3 {
        let last = append(&a, id, position).await;
        timeout(WOKEN_WITHIN, running.wait_for(&name, last))
            .await
            .unwrap_or_else(|_| {
                panic!("append {position} was not followed within {WOKEN_WITHIN:?}: no wake-up")
            });
    }
    running.stop().await;
    let applied: Vec<u64> = recorder.applied().iter().map(|n| n.item.position).collect();
    assert_eq!(applied, vec![1, 2, 3]);
}

/// The listening connection is killed on the server: an append made while it is down is
/// followed at once all the same (the listener wakes once when it is back), and so are
/// appends after it reconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_reconnects_and_wakes_after_losing_its_connection() {
    let Some(schema) = common::schema() else {
        return;
    };
    let (a, _b, recorder, running, listener, name) = setup(&schema).await;
    let admin = common::raw(&schema.url, None).await;
    let listening = format!("LISTEN \"{}\"", listener.channel());
    let before = listeners(&admin, &listening).await;
    assert_eq!(before.len(), 1, "one listening connection");
    // Waits (up to 5 s) until the server process has gone.
    let ended: bool = admin
        .query_one("SELECT pg_terminate_backend($1, 5000)", &[&before[0]])
        .await
        .unwrap()
        .get(0);
    assert!(ended);
    // Committed while nobody listens: its notification is lost.
    let id = Uuid::new_v4();
    let last = append(&a, id, 1).await;
    timeout(WOKEN_WITHIN, running.wait_for(&name, last))
        .await
        .expect("the append made while the listener was away is followed once it is back");
    timeout(Duration::from_secs(10), async {
        while listeners(&admin, &listening).await.len() != 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the listener reconnects");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let last = append(&a, id, 2).await;
    timeout(WOKEN_WITHIN, running.wait_for(&name, last))
        .await
        .expect("appends after the reconnection wake the runner");
    running.stop().await;
    assert_eq!(recorder.applied().len(), 2);
}
