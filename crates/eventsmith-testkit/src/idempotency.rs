//! Conformance cases for idempotency keys: a key is stored atomically with the append it
//! produced, and the same key again writes nothing and returns what the first append wrote.

use std::sync::Arc;

use eventsmith_core::{
    AppendError, ErrorKind, IdempotencyKey, IntegerSequencedItem, ItemStore, KeyedAppend,
    PriorAppend, Select, StoreError, Version,
};
use tokio::sync::Barrier;
use uuid::Uuid;

use crate::cases::item;

fn batch(
    sequence_id: Uuid,
    versions: std::ops::RangeInclusive<Version>,
) -> Vec<IntegerSequencedItem> {
    versions
        .map(|v| item(sequence_id, v, "test.Keyed"))
        .collect()
}

fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::new(format!("{s}-{}", Uuid::new_v4())).expect("a valid key")
}

async fn versions<S: ItemStore>(store: &S, id: Uuid) -> Vec<Version> {
    store
        .select(id, &Select::all())
        .await
        .expect("select")
        .iter()
        .map(|i| i.position)
        .collect()
}

/// The same key twice: the second append writes nothing, even when its items differ or would
/// conflict, and returns the first append's versions; `find_key` agrees; a key is per sequence.
pub async fn idempotency_key_replays_the_first_append<S: ItemStore>(store: S) {
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let k = key("replay");
    assert_eq!(store.find_key(a, &k).await.expect("find_key"), None);
    let first = store
        .append_with_key(batch(a, 1..=3), &k)
        .await
        .expect("the first keyed append");
    assert!(
        matches!(first, KeyedAppend::Appended(_)),
        "a new key appends, got {first:?}"
    );
    let prior = PriorAppend {
        sequence_id: a,
        versions: 1..=3,
    };
    // The retry of the same request (same items), then one whose items would conflict, then
    // one whose items are new: each is the first append's outcome, and nothing is written.
    for retry in [batch(a, 1..=3), batch(a, 2..=2), batch(a, 4..=5)] {
        let outcome = store
            .append_with_key(retry, &k)
            .await
            .expect("a replayed key is not an error");
        assert_eq!(outcome, KeyedAppend::AlreadyApplied(prior.clone()));
    }
    assert_eq!(versions(&store, a).await, [1, 2, 3], "a replay wrote items");
    assert_eq!(
        store.find_key(a, &k).await.expect("find_key"),
        Some(prior),
        "find_key must return what the keyed append wrote"
    );
    // The same key on another sequence is another key.
    assert_eq!(store.find_key(b, &k).await.expect("find_key"), None);
    let other = store
        .append_with_key(batch(b, 1..=1), &k)
        .await
        .expect("the same key on another sequence");
    assert!(matches!(other, KeyedAppend::Appended(_)), "got {other:?}");
    // An unkeyed append after a keyed one goes on as usual.
    store.append(batch(a, 4..=4)).await.expect("plain append");
    assert_eq!(versions(&store, a).await, [1, 2, 3, 4]);
}

/// A keyed append that conflicts stores no key: the retry with the next free version applies.
/// A keyed batch of several sequences is refused and writes nothing; an empty one is a no-op.
pub async fn failed_keyed_append_stores_no_key<S: ItemStore>(store: S) {
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    store.append(batch(a, 1..=1)).await.expect("append");
    let k = key("conflict");
    match store.append_with_key(batch(a, 1..=2), &k).await {
        Err(AppendError::Conflict { sequence_id, .. }) => assert_eq!(sequence_id, a),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        store.find_key(a, &k).await.expect("find_key"),
        None,
        "a conflicting keyed append stored its key"
    );
    let retried = store
        .append_with_key(batch(a, 2..=3), &k)
        .await
        .expect("the retry at the next versions");
    assert!(
        matches!(retried, KeyedAppend::Appended(_)),
        "got {retried:?}"
    );
    assert_eq!(versions(&store, a).await, [1, 2, 3]);

    let mut mixed = batch(b, 1..=1);
    mixed.extend(batch(Uuid::new_v4(), 1..=1));
    let k2 = key("mixed");
    match store.append_with_key(mixed, &k2).await {
        Err(AppendError::Store(StoreError::InvalidItem { .. })) => {}
        other => panic!("a keyed batch of two sequences must be InvalidItem, got {other:?}"),
    }
    assert!(
        versions(&store, b).await.is_empty(),
        "a refused batch wrote"
    );
    assert_eq!(store.find_key(b, &k2).await.expect("find_key"), None);
    assert_eq!(
        store.append_with_key(Vec::new(), &k2).await.expect("empty"),
        KeyedAppend::Appended(0..0)
    );
}

/// Eight writers send the same key at once, each for different versions (a client retrying a
/// request while the first try is still in flight): exactly one appends, every other gets its
/// outcome or a conflict it can retry into that outcome, and only one batch is stored.
pub async fn racing_keyed_appends_apply_once<S: ItemStore>(store: S) {
    const WRITERS: u64 = 8;
    let id = Uuid::new_v4();
    let k = key("race");
    let barrier = Arc::new(Barrier::new(WRITERS as usize));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, k, barrier) = (store.clone(), k.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                // Half race for version 1, half for version w + 1: only the key stops those.
                let at = if w % 2 == 0 { 1 } else { w + 1 };
                for _ in 0..100 {
                    match store.append_with_key(batch(id, at..=at), &k).await {
                        Err(AppendError::Conflict { .. }) => {
                            // The winner's retry: the key is now found, or the winner's write
                            // was a different key (impossible here).
                            match store.find_key(id, &k).await.expect("find_key") {
                                Some(prior) => return KeyedAppend::AlreadyApplied(prior),
                                None => continue,
                            }
                        }
                        Err(AppendError::Store(e)) if e.is_retryable() => continue,
                        other => return other.expect("keyed append"),
                    }
                }
                panic!("a keyed append conflicted 100 times without its key being found")
            })
        })
        .collect();
    let mut appended = 0;
    let mut priors = Vec::new();
    for task in tasks {
        match task.await.expect("writer task") {
            KeyedAppend::Appended(_) => appended += 1,
            KeyedAppend::AlreadyApplied(prior) => priors.push(prior),
        }
    }
    let stored = versions(&store, id).await;
    assert_eq!(appended, 1, "{appended} writers appended under one key");
    assert_eq!(stored.len(), 1, "one key wrote {stored:?}");
    let winner = stored[0];
    for prior in priors {
        assert_eq!(
            prior.versions,
            winner..=winner,
            "a replay names another append"
        );
    }
}

/// A failure a client retries under the same key: a busy or unavailable store, or an
/// outcome left unknown (safe to retry because the append is keyed).
fn transient(e: &AppendError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Busy | ErrorKind::Unavailable | ErrorKind::OutcomeUnknown
    )
}

/// Keyed appends whose futures are dropped at random moments (before they are sent, while
/// they commit, while a lost answer is being resolved), each retried under the same key
/// until it answers: every batch is stored whole and exactly once, versions run on with no
/// gap, and each retry reports either its own append or the dropped one's.
pub async fn dropped_keyed_appends_apply_once_on_retry<S: ItemStore>(store: S) {
    let id = Uuid::new_v4();
    // A small generator seeded per run: the drop points differ from run to run.
    let mut seed = Uuid::new_v4().as_u128() as u64 | 1;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut version = 1;
    let mut dropped = 0;
    for round in 0..40u64 {
        let n = 1 + round % 3;
        let versions = version..=version + n - 1;
        let k = key(&format!("dropped-{round}"));
        // From not at all (0) to after most commits (3 ms) on every backend here.
        let budget = std::time::Duration::from_micros(next() % 3000);
        let first = tokio::time::timeout(
            budget,
            store.append_with_key(batch(id, versions.clone()), &k),
        )
        .await;
        match first {
            Err(_) => dropped += 1,
            Ok(Ok(_)) => {}
            // A loaded cluster may answer busy or unknown; the retry below settles it.
            Ok(Err(e)) if transient(&e) => {}
            Ok(Err(e)) => panic!("round {round}: the first append failed: {e:?}"),
        }
        // Retried as a client would: a transient failure (a busy or unavailable store, an
        // outcome left unknown, as a loaded cluster gives) is tried again under the same key;
        // a conflict is not transient here and fails the case.
        let mut attempts = 0;
        let retry = loop {
            match store.append_with_key(batch(id, versions.clone()), &k).await {
                Ok(answer) => break answer,
                Err(e) if attempts < 20 && transient(&e) => {
                    attempts += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50 * attempts)).await;
                }
                Err(e) => panic!("the retry under the same key (round {round}): {e:?}"),
            }
        };
        match retry {
            KeyedAppend::Appended(_) => {}
            KeyedAppend::AlreadyApplied(prior) => assert_eq!(
                prior,
                PriorAppend {
                    sequence_id: id,
                    versions: versions.clone()
                },
                "the key answers with the dropped append's versions"
            ),
        }
        version += n;
    }
    println!("dropped_keyed_appends_apply_once_on_retry: {dropped} of 40 appends dropped mid-way");
    assert_eq!(
        versions(&store, id).await,
        (1..version).collect::<Vec<_>>(),
        "every batch stored exactly once, in order ({dropped} of 40 dropped mid-way)"
    );
    let stored = store.select(id, &Select::all()).await.expect("select");
    assert!(
        stored
            .iter()
            .all(|i| *i == item(id, i.position, "test.Keyed")),
        "a stored item differs from the one appended"
    );
}
