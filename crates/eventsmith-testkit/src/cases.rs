//! The conformance cases. Each takes a fresh handle on the store under test and panics with
//! a message naming what the store did wrong.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use eventsmith_core::{
    AppendError, IntegerSequencedItem, ItemStore, Notification, Position, Select, SequencedItem,
    SnapshotStore, StoreError, Support, Timestamp, TimestampSequencedItem, Version,
};
use tokio::sync::Barrier;
use uuid::Uuid;

pub use crate::application::{
    cached_commands_never_commit_on_a_stale_state, commands_take_and_use_snapshots,
    contended_commands_all_complete, first_command_creates_with_many_events,
    idempotent_commands_apply_once, metadata_round_trips,
};
pub use crate::clock::{
    application_stamps_events_with_its_clock, timestamp_log_moves_past_taken_timestamps,
};
pub use crate::encryption::forged_plaintext_is_refused;
pub use crate::feed::{
    feed_matches_the_capability, feed_runner_delivers_every_append,
    process_on_a_feed_applies_each_event_once, runners_share_the_slices_and_take_over,
};
pub use crate::follow::{
    follower_never_skips, follower_resumes_exactly, one_runner_runs_a_follower_at_a_time,
    process_applies_each_event_once, two_runners_never_apply_a_page_twice,
};
pub use crate::idempotency::{
    dropped_keyed_appends_apply_once_on_retry, failed_keyed_append_stores_no_key,
    idempotency_key_replays_the_first_append, racing_keyed_appends_apply_once,
};

/// An item with a payload that says where it belongs.
pub fn item(sequence_id: Uuid, position: Version, topic: &str) -> IntegerSequencedItem {
    SequencedItem {
        sequence_id,
        position,
        topic: topic.to_owned(),
        payload: format!("{sequence_id}/{position}").into_bytes(),
    }
}

fn items(
    sequence_id: Uuid,
    positions: impl IntoIterator<Item = Version>,
) -> Vec<IntegerSequencedItem> {
    positions
        .into_iter()
        .map(|p| item(sequence_id, p, "test.Item"))
        .collect()
}

async fn select_all<S: ItemStore>(store: &S, id: Uuid) -> Vec<IntegerSequencedItem> {
    store.select(id, &Select::all()).await.expect("select")
}

fn positions(items: &[IntegerSequencedItem]) -> Vec<Version> {
    items.iter().map(|i| i.position).collect()
}

#[track_caller]
fn assert_conflict<T: std::fmt::Debug>(
    result: Result<T, AppendError>,
    sequence_id: Uuid,
    position: impl Into<Position>,
) {
    let position = position.into();
    match result {
        Err(AppendError::Conflict {
            sequence_id: s,
            position: p,
        }) => {
            assert_eq!(
                (s, p),
                (sequence_id, position),
                "the conflict names the wrong item"
            )
        }
        other => panic!("expected a conflict at {sequence_id} {position}, got {other:?}"),
    }
}

/// When the store lacks notifications, checks that it says so and returns `true`.
async fn notifications_missing<S: ItemStore>(store: &S) -> bool {
    match store.capabilities().notifications {
        Support::Yes => false,
        Support::Missing { reason } => {
            let result = store.select_notifications(0, 10, &[]).await;
            assert!(
                matches!(result, Err(StoreError::Unsupported { .. })),
                "a store without notifications must fail with Unsupported, got {result:?}"
            );
            eprintln!("notification case not applicable, capability missing: {reason}");
            true
        }
    }
}

/// Reads every notification after `after` (in pages), keeping those of the given sequences.
async fn notifications_of<S: ItemStore>(store: &S, after: u64, ids: &[Uuid]) -> Vec<Notification> {
    let mut out = Vec::new();
    let mut cursor = after;
    loop {
        let page = store
            .select_notifications(cursor, 500, &[])
            .await
            .expect("select_notifications");
        let Some(last) = page.last() else { break };
        cursor = last.id;
        out.extend(
            page.into_iter()
                .filter(|n| ids.contains(&n.item.sequence_id)),
        );
    }
    out
}

/// A sequence nobody wrote to is empty, has no latest item and reads as empty in any order.
pub async fn empty_sequence<S: ItemStore>(store: S) {
    let id = Uuid::new_v4();
    assert!(select_all(&store, id).await.is_empty());
    assert!(
        store
            .select(id, &Select::all().descending().limit(3))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.latest(id).await.unwrap(), None);
}

/// Positions are per sequence: two sequences can both hold position 1.
pub async fn positions_are_per_sequence<S: ItemStore>(store: S) {
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    store.append(items(a, [1, 2])).await.unwrap();
    store.append(items(b, [1])).await.unwrap();
    assert_eq!(select_all(&store, a).await, items(a, [1, 2]));
    assert_eq!(select_all(&store, b).await, items(b, [1]));
}

/// Every field round-trips exactly: binary and empty payloads, unicode topics, large positions.
pub async fn fields_round_trip<S: ItemStore>(store: S) {
    let id = Uuid::new_v4();
    let written = vec![
        SequencedItem {
            sequence_id: id,
            position: 1,
            topic: "t".into(),
            payload: vec![],
        },
        SequencedItem {
            sequence_id: id,
            position: 2,
            topic: "ünïcødé.Tøpic/with spaces".into(),
            payload: (0..=255u8).collect(),
        },
        SequencedItem {
            sequence_id: id,
            position: 1 << 40,
            topic: "x".repeat(300),
            payload: vec![0u8; 200_000],
        },
    ];
    store.append(written.clone()).await.unwrap();
    assert_eq!(select_all(&store, id).await, written);
    assert_eq!(store.latest(id).await.unwrap().as_ref(), written.last());
}

/// Appending at a position that exists fails, names the item, and changes nothing.
pub async fn duplicate_position_conflicts<S: ItemStore>(store: S) {
    let id = Uuid::new_v4();
    store.append(items(id, [1, 2])).await.unwrap();
    let mut dup = item(id, 2, "test.Item");
    dup.payload = b"other".to_vec();
    assert_conflict(store.append(vec![dup]).await, id, 2u64);
    assert_eq!(select_all(&store, id).await, items(id, [1, 2]));
}

/// A batch [conflicting, new, new] stores nothing (items of one sequence, plus one of
/// another sequence where the store offers cross-sequence batches).
pub async fn conflicting_batch_stores_nothing<S: ItemStore>(store: S) {
    let (id, other) = (Uuid::new_v4(), Uuid::new_v4());
    store.append(items(id, [1])).await.unwrap();
    if let Support::Missing { reason } = store.capabilities().cross_sequence_batches {
        let mixed = vec![item(id, 2, "test.Item"), item(other, 1, "test.Item")];
        let result = store.append(mixed).await;
        assert!(
            matches!(
                result,
                Err(AppendError::Store(StoreError::Unsupported { .. }))
            ),
            "{result:?}"
        );
        assert!(select_all(&store, other).await.is_empty());
        eprintln!("cross-sequence part not applicable, capability missing: {reason}");
        assert_conflict(store.append(items(id, [1, 2, 3])).await, id, 1u64);
        assert_eq!(select_all(&store, id).await, items(id, [1]));
        return;
    }
    let mut batch = items(id, [1, 2]);
    batch.push(item(other, 1, "test.Item"));
    assert_conflict(store.append(batch).await, id, 1u64);
    assert_eq!(select_all(&store, id).await, items(id, [1]));
    assert!(
        select_all(&store, other).await.is_empty(),
        "no item of a failed batch may be written"
    );
    // The same batch without the conflicting item goes through.
    let mut batch = items(id, [2]);
    batch.push(item(other, 1, "test.Item"));
    store.append(batch).await.unwrap();
}

/// The same (sequence id, position) twice in one batch conflicts, and nothing is written.
pub async fn duplicate_within_batch_conflicts<S: ItemStore>(store: S) {
    let id = Uuid::new_v4();
    assert_conflict(store.append(items(id, [1, 2, 2])).await, id, 2u64);
    assert!(select_all(&store, id).await.is_empty());
}

/// An empty batch is a no-op that returns an empty range and uses no notification id.
pub async fn empty_batch_is_noop<S: ItemStore>(store: S) {
    let before = match store.capabilities().notifications {
        Support::Yes => Some(store.max_notification_id().await.unwrap()),
        Support::Missing { .. } => None,
    };
    let range = store.append(Vec::new()).await.unwrap();
    assert!(range.is_empty(), "an empty batch returned ids {range:?}");
    if let Some(before) = before {
        // Others may append meanwhile on a shared store, so only check ours took no id.
        let id = Uuid::new_v4();
        let range = store.append(items(id, [1])).await.unwrap();
        assert!(range.start > before);
    }
}

/// Every combination of gt, gte, lt and lte selects exactly what a model selects.
pub async fn select_every_bound_combination<S: ItemStore>(store: S) {
    let id = Uuid::new_v4();
    store.append(items(id, 1..=10)).await.unwrap();
    let all: Vec<Version> = (1..=10).collect();
    let bounds = [None, Some(0), Some(1), Some(3), Some(5), Some(10), Some(11)];
    let mut checked = 0;
    for gt in bounds {
        for gte in bounds {
            for lt in bounds {
                for lte in bounds {
                    let q = Select {
                        gt,
                        gte,
                        lt,
                        lte,
                        limit: None,
                        descending: false,
                    };
                    let expected: Vec<Version> =
                        all.iter().copied().filter(|p| q.contains(p)).collect();
                    let got = positions(&store.select(id, &q).await.unwrap());
                    assert_eq!(got, expected, "select with {q:?}");
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 7 * 7 * 7 * 7);
}

/// Limits apply after ordering, ascending and descending, together with bounds.
pub async fn limit_and_order<S: ItemStore>(store: S) {
    let id = Uuid::new_v4();
    store.append(items(id, 1..=10)).await.unwrap();
    let cases: [(Select<Version>, Vec<Version>); 6] = [
        (Select::all().limit(3), vec![1, 2, 3]),
        (Select::all().descending().limit(3), vec![10, 9, 8]),
        (Select::all().descending(), (1..=10).rev().collect()),
        (Select::all().gt(4).limit(2), vec![5, 6]),
        (Select::all().lt(8).descending().limit(2), vec![7, 6]),
        (Select::all().limit(0), vec![]),
    ];
    for (q, expected) in cases {
        assert_eq!(
            positions(&store.select(id, &q).await.unwrap()),
            expected,
            "{q:?}"
        );
    }
}

/// The latest item is the one at the highest position, whatever the append order.
pub async fn latest_item<S: ItemStore>(store: S) {
    let id = Uuid::new_v4();
    store.append(items(id, [5])).await.unwrap();
    store.append(items(id, [2, 9])).await.unwrap();
    store.append(items(id, [7])).await.unwrap();
    assert_eq!(
        store.latest(id).await.unwrap(),
        Some(item(id, 9, "test.Item"))
    );
}

/// Notification ids increase in commit order and are contiguous within a batch; the range an
/// append returns names them.
pub async fn notification_ids_increase_and_are_contiguous<S: ItemStore>(store: S) {
    if notifications_missing(&store).await {
        return;
    }
    let before = store.max_notification_id().await.unwrap();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let first = store.append(items(a, 1..=3)).await.unwrap();
    let second = store.append(items(b, 1..=2)).await.unwrap();
    assert_eq!(first.end - first.start, 3);
    assert_eq!(second.end - second.start, 2);
    assert!(
        first.start > before && second.start >= first.end,
        "{first:?} then {second:?}"
    );
    assert!(store.max_notification_id().await.unwrap() >= second.end - 1);
    let got = notifications_of(&store, before, &[a, b]).await;
    let ids: Vec<u64> = got.iter().map(|n| n.id).collect();
    let expected: Vec<u64> = first.clone().chain(second.clone()).collect();
    assert_eq!(ids, expected);
    let stored: Vec<IntegerSequencedItem> = got.into_iter().map(|n| n.item).collect();
    let mut written = items(a, 1..=3);
    written.extend(items(b, 1..=2));
    assert_eq!(stored, written, "notifications carry the items as written");
}

/// `after` and `limit` page through the log without gaps or repeats.
pub async fn notification_paging<S: ItemStore>(store: S) {
    if notifications_missing(&store).await {
        return;
    }
    let id = Uuid::new_v4();
    let range = store.append(items(id, 1..=7)).await.unwrap();
    let mut seen = Vec::new();
    let mut after = range.start - 1;
    while after < range.end - 1 {
        let page = store.select_notifications(after, 3, &[]).await.unwrap();
        assert!(
            !page.is_empty() && page.len() <= 3,
            "page of {}",
            page.len()
        );
        assert!(
            page.windows(2).all(|w| w[0].id < w[1].id),
            "a page is in id order"
        );
        assert!(page[0].id > after);
        after = page.last().unwrap().id;
        seen.extend(
            page.into_iter()
                .filter(|n| n.item.sequence_id == id)
                .map(|n| n.item.position),
        );
    }
    assert_eq!(seen, (1..=7).collect::<Vec<_>>());
    assert!(
        store
            .select_notifications(u64::MAX - 1, 10, &[])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .select_notifications(0, 0, &[])
            .await
            .unwrap()
            .is_empty()
    );
}

/// Two concurrent batches of 1,000 items each get contiguous notification ids.
pub async fn concurrent_batches_do_not_interleave<S: ItemStore>(store: S) {
    if notifications_missing(&store).await {
        return;
    }
    let before = store.max_notification_id().await.unwrap();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let (sa, sb) = (store.clone(), store.clone());
    let ta = tokio::spawn(async move { sa.append(items(a, 1..=1000)).await });
    let tb = tokio::spawn(async move { sb.append(items(b, 1..=1000)).await });
    let (ra, rb) = (ta.await.unwrap().unwrap(), tb.await.unwrap().unwrap());
    assert!(
        ra.end <= rb.start || rb.end <= ra.start,
        "ranges overlap: {ra:?} {rb:?}"
    );
    let got = notifications_of(&store, before, &[a, b]).await;
    assert_eq!(got.len(), 2000);
    for (id, range) in [(a, ra), (b, rb)] {
        let ids: Vec<u64> = got
            .iter()
            .filter(|n| n.item.sequence_id == id)
            .map(|n| n.id)
            .collect();
        assert_eq!(
            ids,
            range.collect::<Vec<_>>(),
            "batch of {id} is not contiguous"
        );
    }
}

/// A topic filter returns only items of those topics, in id order.
pub async fn topic_filters<S: ItemStore>(store: S) {
    if notifications_missing(&store).await {
        return;
    }
    let before = store.max_notification_id().await.unwrap();
    let id = Uuid::new_v4();
    let (t1, t2, t3) = (format!("a.{id}"), format!("b.{id}"), format!("c.{id}"));
    let batch = vec![
        item(id, 1, &t1),
        item(id, 2, &t2),
        item(id, 3, &t3),
        item(id, 4, &t1),
    ];
    store.append(batch).await.unwrap();
    let only = |topics: Vec<String>| {
        let store = store.clone();
        async move {
            let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
            let got = store
                .select_notifications(before, 100, &topics)
                .await
                .unwrap();
            got.into_iter().map(|n| n.item.position).collect::<Vec<_>>()
        }
    };
    assert_eq!(only(vec![t1.clone()]).await, vec![1, 4]);
    assert_eq!(only(vec![t3.clone(), t2.clone()]).await, vec![2, 3]);
    assert_eq!(
        only(vec![format!("none.{id}")]).await,
        Vec::<Version>::new()
    );
}

/// A failed append takes no notification ids: the next batch follows the previous one.
pub async fn failed_append_adds_no_notification<S: ItemStore>(store: S) {
    if notifications_missing(&store).await {
        return;
    }
    let id = Uuid::new_v4();
    let before = store.max_notification_id().await.unwrap();
    store.append(items(id, [1])).await.unwrap();
    assert_conflict(store.append(items(id, [2, 1])).await, id, 1u64);
    store.append(items(id, [2])).await.unwrap();
    let got = notifications_of(&store, before, &[id]).await;
    assert_eq!(
        got.iter().map(|n| n.item.position).collect::<Vec<_>>(),
        vec![1, 2]
    );
}

/// 8 writers race for the same next position of one sequence, 100 rounds: exactly one wins
/// each position, every loser gets the conflict, and the winner's item is what is stored.
pub async fn racing_writers_one_winner_per_position<S: ItemStore>(store: S) {
    const WRITERS: usize = 8;
    const ROUNDS: u64 = 100;
    let id = Uuid::new_v4();
    let barrier = Arc::new(Barrier::new(WRITERS));
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let (store, barrier) = (store.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let mut won = Vec::new();
            for position in 1..=ROUNDS {
                barrier.wait().await;
                let mut it = item(id, position, "test.Race");
                it.payload = format!("writer {writer}").into_bytes();
                match store.append(vec![it]).await {
                    Ok(_) => won.push(position),
                    Err(AppendError::Conflict {
                        sequence_id,
                        position: p,
                    }) => {
                        assert_eq!((sequence_id, p), (id, Position::Version(position)));
                    }
                    Err(e) => panic!("writer {writer} round {position}: {e}"),
                }
            }
            (writer, won)
        }));
    }
    let mut winners: BTreeMap<Version, usize> = BTreeMap::new();
    for task in tasks {
        let (writer, won) = task.await.unwrap();
        for position in won {
            assert!(
                winners.insert(position, writer).is_none(),
                "two winners at {position}"
            );
        }
    }
    assert_eq!(
        winners.keys().copied().collect::<Vec<_>>(),
        (1..=ROUNDS).collect::<Vec<_>>()
    );
    let stored = select_all(&store, id).await;
    assert_eq!(positions(&stored), (1..=ROUNDS).collect::<Vec<_>>());
    for it in stored {
        assert_eq!(
            it.payload,
            format!("writer {}", winners[&it.position]).into_bytes()
        );
    }
}

fn timestamped(id: Uuid, nanos: i64) -> TimestampSequencedItem {
    SequencedItem {
        sequence_id: id,
        position: Timestamp::from_unix_nanos(nanos),
        topic: "test.Audit".into(),
        payload: nanos.to_le_bytes().to_vec(),
    }
}

/// Timestamp-sequenced items select in timestamp order by range, whatever the append order.
pub async fn timestamped_select_in_order<S: ItemStore>(store: S) {
    let id = Uuid::new_v4();
    if let Support::Missing { reason } = store.capabilities().timestamped {
        let result = store.select_timestamped(id, &Select::all()).await;
        assert!(
            matches!(result, Err(StoreError::Unsupported { .. })),
            "{result:?}"
        );
        eprintln!("timestamped case not applicable, capability missing: {reason}");
        return;
    }
    let base = Timestamp::now().unix_nanos();
    let order = [5i64, 1, 9, 3, 7, -2];
    for offsets in order.chunks(2) {
        store
            .append_timestamped(offsets.iter().map(|o| timestamped(id, base + o)).collect())
            .await
            .unwrap();
    }
    let at = |o: i64| Timestamp::from_unix_nanos(base + o);
    let got = |q: Select<Timestamp>| {
        let store = store.clone();
        async move {
            let items = store.select_timestamped(id, &q).await.unwrap();
            for it in &items {
                assert_eq!(
                    it.payload,
                    it.position.unix_nanos().to_le_bytes(),
                    "payload round-trips"
                );
            }
            items
                .iter()
                .map(|i| i.position.unix_nanos() - base)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(got(Select::all()).await, vec![-2, 1, 3, 5, 7, 9]);
    assert_eq!(got(Select::all().gte(at(1)).lt(at(7))).await, vec![1, 3, 5]);
    assert_eq!(
        got(Select::all().gt(at(1)).lte(at(7)).descending()).await,
        vec![7, 5, 3]
    );
    assert_eq!(got(Select::all().descending().limit(2)).await, vec![9, 7]);
    assert!(got(Select::all().gt(at(9))).await.is_empty());
}

/// A timestamp already used in a sequence is a conflict, and nothing of the batch is written.
pub async fn timestamped_collision_conflicts<S: ItemStore>(store: S) {
    let id = Uuid::new_v4();
    if let Support::Missing { reason } = store.capabilities().timestamped {
        let result = store.append_timestamped(vec![timestamped(id, 1)]).await;
        assert!(
            matches!(
                result,
                Err(AppendError::Store(StoreError::Unsupported { .. }))
            ),
            "{result:?}"
        );
        eprintln!("timestamped case not applicable, capability missing: {reason}");
        return;
    }
    store
        .append_timestamped(vec![timestamped(id, 10)])
        .await
        .unwrap();
    let result = store
        .append_timestamped(vec![timestamped(id, 20), timestamped(id, 10)])
        .await;
    assert_conflict(result, id, Timestamp::from_unix_nanos(10));
    let all = store.select_timestamped(id, &Select::all()).await.unwrap();
    let got: HashSet<i64> = all.iter().map(|i| i.position.unix_nanos()).collect();
    assert_eq!(got, HashSet::from([10]));
    // Another sequence may use the same timestamp.
    store
        .append_timestamped(vec![timestamped(Uuid::new_v4(), 10)])
        .await
        .unwrap();
}

/// The latest snapshot at or before a version is found; other sequences are not mixed in.
pub async fn snapshots_latest_at_or_before<S: SnapshotStore>(store: S) {
    let (id, other) = (Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(store.latest_snapshot(id, None).await.unwrap(), None);
    for v in [10, 20, 30] {
        store
            .write_snapshot(item(id, v, "test.Snapshot"))
            .await
            .unwrap();
    }
    store
        .write_snapshot(item(other, 25, "test.Snapshot"))
        .await
        .unwrap();
    let at = |lte: Option<Version>| {
        let store = store.clone();
        async move {
            store
                .latest_snapshot(id, lte)
                .await
                .unwrap()
                .map(|s| s.position)
        }
    };
    assert_eq!(at(None).await, Some(30));
    assert_eq!(at(Some(29)).await, Some(20));
    assert_eq!(at(Some(20)).await, Some(20));
    assert_eq!(at(Some(9)).await, None);
    assert_eq!(
        store.latest_snapshot(id, Some(30)).await.unwrap(),
        Some(item(id, 30, "test.Snapshot"))
    );
}

/// Writing a snapshot again at the same version replaces it.
pub async fn snapshot_rewrite_replaces<S: SnapshotStore>(store: S) {
    let id = Uuid::new_v4();
    store
        .write_snapshot(item(id, 5, "test.Snapshot"))
        .await
        .unwrap();
    let mut again = item(id, 5, "test.Snapshot.v2");
    again.payload = b"newer".to_vec();
    store.write_snapshot(again.clone()).await.unwrap();
    assert_eq!(store.latest_snapshot(id, None).await.unwrap(), Some(again));
}

/// Random operation sequences (appends single and batched, many conflicting; selects with random
/// bounds; notification reads; snapshots) agree step by step with a plain model.
pub async fn model_based_random_operations<S: ItemStore + SnapshotStore>(store: S) {
    crate::model::run(store, 256).await;
}

/// A version beyond [`MAX_VERSION`](eventsmith_core::MAX_VERSION) is an invalid item, and its
/// batch writes nothing.
pub async fn versions_beyond_the_limit_are_invalid<S: ItemStore>(store: S) {
    let id = Uuid::new_v4();
    let result = store
        .append(items(id, [1, eventsmith_core::MAX_VERSION + 1]))
        .await;
    assert!(
        matches!(
            result,
            Err(AppendError::Store(StoreError::InvalidItem { .. }))
        ),
        "{result:?}"
    );
    assert!(select_all(&store, id).await.is_empty());
    store
        .append(items(id, [eventsmith_core::MAX_VERSION]))
        .await
        .unwrap();
    assert_eq!(
        positions(&select_all(&store, id).await),
        vec![eventsmith_core::MAX_VERSION]
    );
}
