//! The feed capability ([`Capabilities::feed`](eventsmith_core::Capabilities::feed)): a store
//! that claims a feed must deliver every committed append through it, in version order per
//! sequence, at least once, within a delay; a store that claims none is never asked for one,
//! and a reader of its feed, if the suite is given one, must fail with
//! [`StoreError::Unsupported`].
//!
//! A feed is read through a backend's own API, so the suite reads it through a
//! [`FeedReader`] the backend's test hands to [`conformance_suite!`](crate::conformance_suite)
//! (`conformance_suite!(FIXTURE, feed = |store| READER)`).

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use eventsmith_core::{
    AppendError, BoxFuture, IntegerSequencedItem, ItemStore, Select, StoreError, Support,
};
use uuid::Uuid;

use crate::cases::item;

/// Reads a store's feed for the suite.
pub trait FeedReader: Send {
    /// What the feed delivered since the previous call; the first call starts the reader
    /// (at about the present: appends made after it must all be delivered).
    ///
    /// Dropping the future abandons the read.
    fn next(&mut self) -> BoxFuture<'_, Result<Vec<IntegerSequencedItem>, StoreError>>;
}

/// The reader of a store the suite was given none for.
#[derive(Debug)]
pub enum NoReader {}

impl FeedReader for NoReader {
    fn next(&mut self) -> BoxFuture<'_, Result<Vec<IntegerSequencedItem>, StoreError>> {
        match *self {}
    }
}

/// How long the suite waits for an append to appear in a feed.
pub const DELAY: Duration = Duration::from_secs(30);

/// A store's feed is what its capabilities say: one it claims delivers every committed append
/// (single and batched, of several sequences, with a conflicting append in between that must
/// not appear) at least once, in version order per sequence, within [`DELAY`], with the
/// payloads stored; one it does not claim is not asked for, and fails with `Unsupported` when
/// read anyway.
pub async fn feed_matches_the_capability<S: ItemStore, R: FeedReader>(store: S, reader: Option<R>) {
    let mut reader = match (store.capabilities().feed, reader) {
        (Support::Missing { reason }, None) => {
            eprintln!("feed case not applicable, capability missing: {reason}");
            return;
        }
        (Support::Missing { reason }, Some(mut reader)) => {
            let result = reader.next().await;
            assert!(
                matches!(result, Err(StoreError::Unsupported { .. })),
                "a store without a feed must fail to read one with Unsupported, got {result:?}"
            );
            eprintln!("feed case not applicable, capability missing: {reason}");
            return;
        }
        (Support::Yes, None) => panic!(
            "the store claims a feed, but the suite was given no reader for it: conformance_suite!(FIXTURE, feed = |store| READER)"
        ),
        (Support::Yes, Some(reader)) => reader,
    };
    reader.next().await.expect("start reading the feed");
    let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    for v in 1..=3 {
        store.append(vec![item(a, v, "feed.A")]).await.unwrap();
    }
    store
        .append((1..=3).map(|v| item(b, v, "feed.B")).collect())
        .await
        .unwrap();
    store.append(vec![item(b, 4, "feed.B")]).await.unwrap();
    store.append(vec![item(c, 1, "feed.C")]).await.unwrap();
    let mut rival = item(c, 1, "feed.C");
    rival.payload = b"a conflicting append".to_vec();
    assert!(matches!(
        store.append(vec![rival]).await,
        Err(AppendError::Conflict { .. })
    ));
    store.append(vec![item(c, 2, "feed.C")]).await.unwrap();
    let mut expected = Vec::new();
    for id in [a, b, c] {
        expected.extend(store.select(id, &Select::all()).await.unwrap());
    }
    let ours: HashSet<Uuid> = [a, b, c].into();
    let mut seen: Vec<IntegerSequencedItem> = Vec::new();
    let deadline = Instant::now() + DELAY;
    loop {
        seen.extend(
            reader
                .next()
                .await
                .expect("read the feed")
                .into_iter()
                .filter(|i| ours.contains(&i.sequence_id)),
        );
        if expected.iter().all(|e| seen.contains(e)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the feed did not deliver every committed append within {DELAY:?}: missing {:?}",
            expected
                .iter()
                .filter(|e| !seen.contains(e))
                .map(|e| (e.sequence_id, e.position))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for s in &seen {
        assert!(
            expected.contains(s),
            "the feed delivered what was never committed: {s:?}"
        );
    }
    // In version order per sequence: a redelivery may repeat, never go back past a version
    // not yet delivered.
    let mut highest: BTreeMap<Uuid, u64> = BTreeMap::new();
    for s in &seen {
        let top = highest.entry(s.sequence_id).or_default();
        assert!(
            s.position <= *top + 1,
            "the feed delivered {} version {} before version {}",
            s.sequence_id,
            s.position,
            *top + 1
        );
        *top = (*top).max(s.position);
    }
}
