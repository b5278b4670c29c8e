//! The notification log never skips: many writers (two stores on one schema, as two
//! processes would be, and raw transactions held open mid-append) commit while a follower
//! pages through the log from its last id. At the end the follower has seen every
//! acknowledged item exactly once, with ids strictly increasing and each batch contiguous.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use eventsmith_core::{ItemStore, SequencedItem};
use uuid::Uuid;

const STORES: usize = 2;
const WRITERS_PER_STORE: usize = 4;
const BATCHES: u64 = 40;
const SLOW_WRITERS: usize = 2;
const SLOW_TRANSACTIONS: u64 = 8;

/// What a slow writer sends: the store's own protocol for an append (the lock held to
/// commit), with a pause between the insert and the commit.
const SLOW_LOCK: &str = "LOCK TABLE integer_items IN EXCLUSIVE MODE";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_never_skips_an_item() {
    let Some(schema) = common::schema() else {
        return;
    };
    let mut stores = Vec::new();
    for _ in 0..STORES {
        stores.push(
            eventsmith_postgres::PostgresStore::connect(schema.config())
                .await
                .expect("connect"),
        );
    }
    let done = Arc::new(AtomicBool::new(false));

    // The follower pages from its last id all the time, recording what it saw.
    let follower = {
        let (store, done) = (stores[0].clone(), done.clone());
        tokio::spawn(async move {
            let mut seen: Vec<(u64, Uuid, u64)> = Vec::new();
            let mut last = 0;
            let mut finishing = false;
            loop {
                let page = store.select_notifications(last, 50, &[]).await.unwrap();
                for n in &page {
                    assert!(n.id > last, "id {} after {last}", n.id);
                    last = n.id;
                    seen.push((n.id, n.item.sequence_id, n.item.position));
                }
                if page.is_empty() {
                    if finishing {
                        break;
                    }
                    // One more full pass after the writers stop, to pick up the last commits.
                    finishing = done.load(Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            seen
        })
    };

    // Acknowledged appends: sequence -> positions with the ids the store returned.
    let mut writers = Vec::new();
    for (s, store) in stores.iter().enumerate() {
        for w in 0..WRITERS_PER_STORE {
            let store = store.clone();
            writers.push(tokio::spawn(async move {
                let id = Uuid::new_v4();
                let mut acked = Vec::new();
                let mut failures = Vec::new();
                let mut next = 1;
                for b in 0..BATCHES {
                    let size = 1 + (b + w as u64 + s as u64) % 4;
                    let batch: Vec<_> = (next..next + size)
                        .map(|p| SequencedItem {
                            sequence_id: id,
                            position: p,
                            topic: "test.NeverSkip".into(),
                            payload: format!("{s}/{w}/{p}").into_bytes(),
                        })
                        .collect();
                    // A failed append is recorded, not a panic, so that the follower's
                    // verdict (the point of the test) is reported first.
                    match store.append(batch).await {
                        Ok(range) => {
                            assert_eq!(range.end - range.start, size);
                            acked.extend((next..next + size).zip(range));
                        }
                        Err(e) => failures.push(format!("{id} at {next}: {e}")),
                    }
                    next += size;
                }
                (id, acked, failures)
            }));
        }
    }
    // Raw connections that hold their transaction open between the insert and the commit.
    let mut slow = Vec::new();
    for _ in 0..SLOW_WRITERS {
        let client = common::raw(&schema.url, Some(&schema.name)).await;
        slow.push(tokio::spawn(async move {
            let id = Uuid::new_v4();
            let mut acked = Vec::new();
            for p in 1..=SLOW_TRANSACTIONS {
                client.batch_execute("BEGIN").await.unwrap();
                client.batch_execute(SLOW_LOCK).await.unwrap();
                let row = client
                    .query_one(
                        "INSERT INTO integer_items (sequence_id, position, topic, payload) \
                         VALUES ($1, $2, 'test.Slow', '\\x00') RETURNING notification_id",
                        &[&id, &(p as i64)],
                    )
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(30)).await;
                client.batch_execute("COMMIT").await.unwrap();
                acked.push((p, row.get::<_, i64>(0) as u64));
            }
            (id, acked, Vec::new())
        }));
    }

    let mut expected: HashMap<(Uuid, u64), u64> = HashMap::new();
    let mut failures = Vec::new();
    for task in writers.into_iter().chain(slow) {
        let (id, acked, failed) = task.await.unwrap();
        for (position, notification_id) in acked {
            expected.insert((id, position), notification_id);
        }
        failures.extend(failed);
    }
    done.store(true, Ordering::SeqCst);
    let seen = follower.await.unwrap();

    let mut counts: BTreeMap<(Uuid, u64), usize> = BTreeMap::new();
    for &(_, id, position) in &seen {
        *counts.entry((id, position)).or_default() += 1;
    }
    let missed: Vec<_> = expected
        .iter()
        .filter(|(k, _)| !counts.contains_key(k))
        .map(|(k, id)| (k.0, k.1, *id))
        .collect();
    assert!(
        missed.is_empty(),
        "the follower skipped {} of {} items, e.g. (sequence, position, notification id) {:?}",
        missed.len(),
        expected.len(),
        &missed[..missed.len().min(5)]
    );
    assert!(
        failures.is_empty(),
        "{} appends failed, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert!(counts.values().all(|&n| n == 1), "an item was seen twice");
    assert_eq!(seen.len(), expected.len(), "the follower saw foreign items");
    assert!(
        seen.windows(2).all(|w| w[0].0 < w[1].0),
        "ids are not strictly increasing"
    );
    for &(id, sequence_id, position) in &seen {
        assert_eq!(
            expected[&(sequence_id, position)],
            id,
            "the follower saw {sequence_id}/{position} under another id than its append returned"
        );
    }
    // What the follower built while the writers ran equals a rebuild from the whole log.
    let mut rebuilt = Vec::new();
    let mut after = 0;
    loop {
        let page = stores[1]
            .select_notifications(after, 1000, &[])
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = last.id;
        rebuilt.extend(
            page.iter()
                .map(|n| (n.id, n.item.sequence_id, n.item.position)),
        );
    }
    assert_eq!(
        seen, rebuilt,
        "the follower's output differs from a rebuild"
    );
    let stats: Vec<_> = stores.iter().map(|s| s.commit_stats()).collect();
    eprintln!(
        "never-skip: {} items, follower pages all seen; writer groups {stats:?}",
        expected.len()
    );
}
