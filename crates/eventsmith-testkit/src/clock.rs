//! Conformance cases for the clock seam: events stamped with the application's clock, and a
//! timestamp-sequenced log whose colliding timestamps the log resolves, not its caller.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use eventsmith_core::{
    Application, ItemStore, ManualClock, Select, SequencedItem, Support, Timestamp, TimestampLog,
};
use eventsmith_mapper::EventMapper;
use tokio::sync::Barrier;
use uuid::Uuid;

use crate::application::{Marked, Tally, TallyEvent};

/// 2030-01-01T00:00:00.123456789Z: a time no test run happens at, with nanoseconds set.
const START: i64 = 1_893_456_000_123_456_789;

/// An application built with a [`ManualClock`] stamps its events with the clock's time, to
/// the nanosecond, as read back from the store.
pub async fn application_stamps_events_with_its_clock<S: ItemStore>(store: S) {
    let clock = ManualClock::new(Timestamp::from_unix_nanos(START));
    let app: Application<Tally, S> = Application::builder(
        store.clone(),
        EventMapper::<TallyEvent>::builder().build().unwrap(),
    )
    .clock(clock.clone())
    .build();
    let id = Uuid::new_v4();
    let start = Timestamp::from_unix_nanos(START).to_datetime();
    app.command(id, |_| Ok::<_, String>([Marked { n: 1 }]))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(60));
    app.command(id, |_| Ok::<_, String>([Marked { n: 2 }]))
        .await
        .unwrap();
    let root = app.get(id).await.unwrap();
    assert_eq!(
        root.created_on(),
        start,
        "the first event carries the clock's time"
    );
    assert_eq!(
        root.modified_on(),
        start + Duration::from_secs(60),
        "the second event carries the clock's time after it moved"
    );
}

fn entry(n: usize) -> (String, Vec<u8>) {
    (
        "testkit.Entry".to_owned(),
        format!("entry {n}").into_bytes(),
    )
}

/// A [`TimestampLog`] on a stuck clock never reports a conflict: an entry whose nanosecond is
/// taken (by the same handle, by another handle as another process would be, by a block of
/// items written directly, or by eight writers at once) moves to the next free one, and
/// every entry is stored once.
pub async fn timestamp_log_moves_past_taken_timestamps<S: ItemStore>(store: S) {
    let id = Uuid::new_v4();
    if let Support::Missing { reason } = store.capabilities().timestamped {
        eprintln!("timestamp log case not applicable, capability missing: {reason}");
        return;
    }
    let clock = ManualClock::new(Timestamp::from_unix_nanos(START));
    let log = TimestampLog::new(store.clone(), id).with_clock(clock.clone());
    let at = |n: i64| Timestamp::from_unix_nanos(START + n);

    // One handle, the clock standing still: consecutive nanoseconds.
    assert_eq!(log.append(vec![entry(0)]).await.unwrap(), at(0));
    assert_eq!(log.append(vec![entry(1), entry(2)]).await.unwrap(), at(1));

    // Another handle knows nothing of the first one's writes, as another process would not.
    let other = TimestampLog::new(store.clone(), id).with_clock(clock.clone());
    assert_eq!(other.append(vec![entry(3)]).await.unwrap(), at(3));

    // A block written around the log: the next entry lands after all of it.
    let block = (4..104)
        .map(|n| SequencedItem {
            sequence_id: id,
            position: at(n),
            topic: "testkit.Entry".to_owned(),
            payload: format!("entry {n}").into_bytes(),
        })
        .collect();
    store.append_timestamped(block).await.unwrap();
    let fresh = TimestampLog::new(store.clone(), id).with_clock(clock.clone());
    assert_eq!(fresh.append(vec![entry(104)]).await.unwrap(), at(104));

    // Eight writers with their own handles, all at the same instant.
    let writers = 8;
    let barrier = Arc::new(Barrier::new(writers));
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let log = TimestampLog::new(store.clone(), id).with_clock(clock.clone());
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                log.append(vec![entry(105 + w)]).await
            })
        })
        .collect();
    let mut starts = BTreeSet::new();
    for task in tasks {
        let start = task
            .await
            .unwrap()
            .expect("a taken timestamp is moved past, never reported");
        starts.insert(start);
    }
    assert_eq!(starts.len(), writers, "each writer got its own timestamp");

    let stored = store.select_timestamped(id, &Select::all()).await.unwrap();
    let positions: Vec<i64> = stored
        .iter()
        .map(|i| i.position.unix_nanos() - START)
        .collect();
    assert_eq!(
        positions,
        (0..105 + writers as i64).collect::<Vec<_>>(),
        "every entry stored once, at consecutive nanoseconds"
    );
    let mut payloads: Vec<String> = stored
        .iter()
        .map(|i| String::from_utf8(i.payload.clone()).unwrap())
        .collect();
    payloads.sort();
    let mut expected: Vec<String> = (0..105 + writers).map(|n| format!("entry {n}")).collect();
    expected.sort();
    assert_eq!(payloads, expected, "no entry lost or written twice");
}
