//! Group commit: appends queued together are committed in one transaction, the plain ones in
//! one statement, and each still gets its own answer: its own contiguous notification ids,
//! or its own conflict, never a neighbour's.
//!
//! The appends are queued from one task on a current-thread runtime, all before the writer
//! task first runs, so they reach the writer as one group.

mod common;

use eventsmith_core::{AppendError, IntegerSequencedItem, ItemStore, Position, SequencedItem};
use futures_util::future::join_all;
use uuid::Uuid;

fn item(sequence_id: Uuid, position: u64, tag: &str) -> IntegerSequencedItem {
    SequencedItem {
        sequence_id,
        position,
        topic: "group.Tagged".into(),
        payload: tag.as_bytes().to_vec(),
    }
}

/// Seven new sequences and one append over a stored item, in one group: the seven commit in
/// one transaction with ids in queue order, the eighth gets its conflict and writes nothing.
#[tokio::test]
async fn a_conflict_in_a_group_is_its_appends_alone() {
    let Some((store, _schema)) = common::store().await else {
        return;
    };
    let taken = Uuid::new_v4();
    store.append(vec![item(taken, 1, "first")]).await.unwrap();
    let before = store.commit_stats();
    let fresh: Vec<Uuid> = (0..7).map(|_| Uuid::new_v4()).collect();
    let mut batches: Vec<Vec<IntegerSequencedItem>> = fresh
        .iter()
        .map(|id| (1..=3).map(|v| item(*id, v, "fresh")).collect())
        .collect();
    // In the middle of the group: its neighbours on both sides must commit.
    batches.insert(3, vec![item(taken, 2, "second"), item(taken, 1, "again")]);
    let results = join_all(batches.iter().map(|b| store.append(b.clone()))).await;
    let after = store.commit_stats();
    assert_eq!(after.appends - before.appends, 8);
    assert_eq!(
        after.transactions - before.transactions,
        1,
        "the eight appends were not one group"
    );
    let mut next = None;
    for (i, result) in results.iter().enumerate() {
        if i == 3 {
            assert!(
                matches!(
                    result,
                    Err(AppendError::Conflict { sequence_id, position: Position::Version(1) })
                        if *sequence_id == taken
                ),
                "{result:?}"
            );
            continue;
        }
        let range = result.as_ref().expect("a fresh sequence's append");
        assert_eq!(range.end - range.start, 3, "{range:?}");
        if let Some(next) = next {
            assert_eq!(range.start, next, "ids in queue order, without gaps");
        }
        next = Some(range.end);
    }
    assert_eq!(
        store
            .select(taken, &eventsmith_core::Select::all())
            .await
            .unwrap()
            .iter()
            .map(|i| i.payload.clone())
            .collect::<Vec<_>>(),
        vec![b"first".to_vec()],
        "the refused append wrote nothing"
    );
    for id in &fresh {
        let stored = store
            .select(*id, &eventsmith_core::Select::all())
            .await
            .unwrap();
        assert_eq!(stored.len(), 3);
    }
}

/// Two appends of one group racing for the same version (two commands on one aggregate):
/// one wins, the other gets the conflict, and every other append of the group commits.
#[tokio::test]
async fn racing_appends_in_one_group_have_one_winner() {
    let Some((store, _schema)) = common::store().await else {
        return;
    };
    let contested = Uuid::new_v4();
    let others: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    let mut batches: Vec<Vec<IntegerSequencedItem>> = others
        .iter()
        .map(|id| vec![item(*id, 1, "other")])
        .collect();
    batches.insert(1, vec![item(contested, 1, "a")]);
    batches.insert(4, vec![item(contested, 1, "b")]);
    let before = store.commit_stats();
    let results = join_all(batches.iter().map(|b| store.append(b.clone()))).await;
    let after = store.commit_stats();
    // The second racer waits for the next transaction; the group is not failed and retried
    // one append at a time.
    assert_eq!(after.transactions - before.transactions, 2);
    assert!(
        results[1].is_ok(),
        "the first in queue order wins: {:?}",
        results[1]
    );
    assert!(
        matches!(
            &results[4],
            Err(AppendError::Conflict { sequence_id, position: Position::Version(1) })
                if *sequence_id == contested
        ),
        "{:?}",
        results[4]
    );
    for i in [0, 2, 3, 5] {
        assert!(results[i].is_ok(), "append {i}: {:?}", results[i]);
    }
    let stored = store
        .select(contested, &eventsmith_core::Select::all())
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].payload, b"a");
}
