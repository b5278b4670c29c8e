//! Model-based testing: random sequences of appends (single and batch, many conflicting),
//! selects with random bounds, notification reads and snapshot writes, run against a store and
//! compared step by step with a plain in-memory model. proptest shrinks a failing sequence to
//! a minimal one.

use std::collections::{BTreeMap, HashSet};

use eventsmith_core::{
    AppendError, IntegerSequencedItem, ItemStore, Position, Select, SequencedItem, SnapshotStore,
    Support, Version,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use uuid::Uuid;

/// One step of a run. Sequences are indexes into a fresh set of ids per run.
#[derive(Debug, Clone)]
pub enum Op {
    /// Append these (sequence, position) items as one batch.
    Append(Vec<(usize, Version)>),
    /// Select a sequence with these bounds.
    Select {
        /// The sequence.
        seq: usize,
        /// The bounds, limit and order.
        query: Select<Version>,
    },
    /// Read the notification log after the n-th notification of this run, at most `limit`.
    Notifications {
        /// How many of this run's notifications to skip.
        skip: usize,
        /// The page size.
        limit: usize,
    },
    /// Write a snapshot.
    Snapshot(usize, Version),
    /// Read the latest snapshot at or before a version.
    LatestSnapshot(usize, Option<Version>),
}

const SEQUENCES: usize = 3;
const MAX_POSITION: Version = 8;

fn op(cross_sequence: bool) -> impl Strategy<Value = Op> {
    let position = 1..=MAX_POSITION;
    let bound = proptest::option::of(0..=MAX_POSITION + 1);
    let seq = 0..SEQUENCES;
    let batch = if cross_sequence {
        proptest::collection::vec((0..SEQUENCES, position.clone()), 1..4).boxed()
    } else {
        (
            0..SEQUENCES,
            proptest::collection::vec(position.clone(), 1..4),
        )
            .prop_map(|(s, ps)| ps.into_iter().map(|p| (s, p)).collect())
            .boxed()
    };
    prop_oneof![
        4 => batch.prop_map(Op::Append),
        2 => (seq.clone(), bound.clone(), bound.clone(), bound.clone(), bound.clone(), proptest::option::of(0usize..5), any::<bool>())
            .prop_map(|(seq, gt, gte, lt, lte, limit, descending)| Op::Select { seq, query: Select { gt, gte, lt, lte, limit, descending } }),
        1 => (0usize..12, 1usize..6).prop_map(|(skip, limit)| Op::Notifications { skip, limit }),
        1 => (seq.clone(), position).prop_map(|(s, p)| Op::Snapshot(s, p)),
        1 => (seq, bound).prop_map(|(s, b)| Op::LatestSnapshot(s, b)),
    ]
}

fn payload(seq: usize, position: Version, step: usize) -> Vec<u8> {
    format!("{seq}/{position}/{step}").into_bytes()
}

/// The expected outcome of an append against the model: the conflict a store must report.
fn expected_conflict(
    model: &BTreeMap<(usize, Version), Vec<u8>>,
    batch: &[(usize, Version)],
) -> Option<(usize, Version)> {
    let mut seen = HashSet::new();
    for &(s, p) in batch {
        if !seen.insert((s, p)) {
            return Some((s, p));
        }
    }
    batch.iter().copied().find(|k| model.contains_key(k))
}

/// Runs one sequence of operations against `store` and the model.
pub async fn check<S: ItemStore + SnapshotStore>(
    store: &S,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let ids: Vec<Uuid> = (0..SEQUENCES).map(|_| Uuid::new_v4()).collect();
    let caps = store.capabilities();
    let notifications = caps.notifications == Support::Yes;
    let base = if notifications {
        store
            .max_notification_id()
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?
    } else {
        0
    };
    let mut model: BTreeMap<(usize, Version), Vec<u8>> = BTreeMap::new();
    let mut log: Vec<(u64, IntegerSequencedItem)> = Vec::new();
    let mut snapshots: BTreeMap<(usize, Version), Vec<u8>> = BTreeMap::new();
    let item = |s: usize, p: Version, bytes: Vec<u8>| SequencedItem {
        sequence_id: ids[s],
        position: p,
        topic: format!("model.{s}"),
        payload: bytes,
    };
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Append(batch) => {
                let items: Vec<_> = batch
                    .iter()
                    .map(|&(s, p)| item(s, p, payload(s, p, step)))
                    .collect();
                let result = store.append(items.clone()).await;
                match (expected_conflict(&model, batch), result) {
                    (None, Ok(range)) => {
                        if notifications {
                            prop_assert_eq!(
                                range.end - range.start,
                                items.len() as u64,
                                "step {}: ids per batch",
                                step
                            );
                            for (id, it) in range.zip(&items) {
                                log.push((id, it.clone()));
                            }
                        }
                        for (&(s, p), it) in batch.iter().zip(items) {
                            model.insert((s, p), it.payload);
                        }
                    }
                    (
                        Some((s, p)),
                        Err(AppendError::Conflict {
                            sequence_id,
                            position,
                        }),
                    ) => {
                        prop_assert_eq!(
                            (sequence_id, position),
                            (ids[s], Position::Version(p)),
                            "step {}: conflict names the item",
                            step
                        );
                    }
                    (expected, got) => prop_assert!(
                        false,
                        "step {}: append {:?}: expected conflict {:?}, got {:?}",
                        step,
                        batch,
                        expected,
                        got
                    ),
                }
            }
            Op::Select { seq, query } => {
                let got = store
                    .select(ids[*seq], query)
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let mut expected: Vec<_> = model
                    .iter()
                    .filter(|((s, p), _)| s == seq && query.contains(p))
                    .map(|((s, p), bytes)| item(*s, *p, bytes.clone()))
                    .collect();
                if query.descending {
                    expected.reverse();
                }
                expected.truncate(query.limit.unwrap_or(usize::MAX));
                prop_assert_eq!(got, expected, "step {}: select {:?}", step, query);
            }
            Op::Notifications { skip, limit } => {
                if !notifications {
                    continue;
                }
                let skipped = (*skip).min(log.len());
                let after = if skipped == 0 {
                    base
                } else {
                    log[skipped - 1].0
                };
                let got = store
                    .select_notifications(after, *limit, &[])
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                // Other tests may share the store: keep this run's items only.
                let got: Vec<_> = got
                    .into_iter()
                    .filter(|n| ids.contains(&n.item.sequence_id))
                    .map(|n| (n.id, n.item))
                    .collect();
                let expected: Vec<_> = log.iter().skip(skipped).take(*limit).cloned().collect();
                prop_assert!(
                    got.len() <= expected.len(),
                    "step {}: more notifications than appended",
                    step
                );
                prop_assert_eq!(
                    &got[..],
                    &expected[..got.len()],
                    "step {}: notifications after {}",
                    step,
                    after
                );
            }
            Op::Snapshot(s, p) => {
                let bytes = payload(*s, *p, step);
                store
                    .write_snapshot(item(*s, *p, bytes.clone()))
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                snapshots.insert((*s, *p), bytes);
            }
            Op::LatestSnapshot(s, lte) => {
                let got = store
                    .latest_snapshot(ids[*s], *lte)
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let expected = snapshots
                    .iter()
                    .rfind(|((seq, p), _)| seq == s && lte.is_none_or(|l| *p <= l))
                    .map(|((seq, p), bytes)| item(*seq, *p, bytes.clone()));
                prop_assert_eq!(got, expected, "step {}: latest snapshot", step);
            }
        }
    }
    Ok(())
}

/// Runs `cases` random operation sequences against `store` (call from a multi-threaded tokio
/// runtime); panics with the shrunk counterexample when a store and the model disagree.
pub async fn run<S: ItemStore + SnapshotStore>(store: S, cases: u32) {
    let handle = tokio::runtime::Handle::current();
    let cross = store.capabilities().cross_sequence_batches == Support::Yes;
    let result = tokio::task::spawn_blocking(move || {
        // Counterexamples are printed shrunk; copy one into a regression test to keep it.
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        let strategy = proptest::collection::vec(op(cross), 1..25);
        runner
            .run(&strategy, |ops| handle.block_on(check(&store, &ops)))
            .map_err(|e| e.to_string())
    })
    .await
    .expect("the model test thread");
    if let Err(e) = result {
        panic!("the store disagrees with the model: {e}");
    }
}
