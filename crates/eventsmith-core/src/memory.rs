//! The in-memory store: the reference implementation of [`ItemStore`].

use std::collections::{BTreeMap, HashMap};
use std::ops::{Bound, Range};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::error::{AppendError, StoreError};
use crate::idempotency::{IdempotencyKey, KeyedAppend, PriorAppend, keyed_batch};
use crate::item::{
    IntegerSequencedItem, Notification, Select, Timestamp, TimestampSequencedItem, Version,
};
use crate::store::{
    Capabilities, Delivery, FeedPage, Inventory, ItemKind, ItemStore, Lease, LeaseClaim,
    SnapshotStore, Support, Tracking, check_append, check_batch_unique,
};
use crate::trace::{outcome, rows};

/// A thread-safe store held in memory; clones share the same data.
///
/// It is the reference every other backend is compared with, and the fastest store for
/// tests. Its data is lost when the last clone is dropped.
#[derive(Clone, Default, Debug)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    /// The slice count of its feed, when made [`with_feed`](MemoryStore::with_feed).
    feed: Option<u32>,
}

#[derive(Default, Debug)]
struct Inner {
    /// The notification log; an item's notification id is its index plus one.
    log: Vec<IntegerSequencedItem>,
    /// Per log entry: the notification id of the first item of its append, so that the feed
    /// delivers appends whole.
    append_of: Vec<u64>,
    /// Per sequence: version -> index into `log`.
    sequences: HashMap<Uuid, BTreeMap<Version, usize>>,
    timestamped: HashMap<Uuid, BTreeMap<Timestamp, TimestampSequencedItem>>,
    snapshots: HashMap<Uuid, BTreeMap<Version, IntegerSequencedItem>>,
    /// Idempotency keys per sequence.
    keys: HashMap<(Uuid, IdempotencyKey), PriorAppend>,
    /// Followers' tracking records.
    tracking: HashMap<String, u64>,
    /// Followers' leases: holder and expiry.
    leases: HashMap<String, (Uuid, Instant)>,
    /// Feed followers' saved positions, per (follower, slice).
    feed_positions: HashMap<(String, u32), String>,
    /// Live runners of feed followers, with the expiry of their announcements.
    runners: HashMap<String, BTreeMap<Uuid, Instant>>,
}

impl Inner {
    /// Appends a checked batch, or reports the first conflict and writes nothing.
    fn append(&mut self, items: Vec<IntegerSequencedItem>) -> Result<Range<u64>, AppendError> {
        for item in &items {
            if self
                .sequences
                .get(&item.sequence_id)
                .is_some_and(|s| s.contains_key(&item.position))
            {
                return Err(AppendError::Conflict {
                    sequence_id: item.sequence_id,
                    position: item.position.into(),
                });
            }
        }
        let first = self.log.len() as u64 + 1;
        for item in items {
            let index = self.log.len();
            self.sequences
                .entry(item.sequence_id)
                .or_default()
                .insert(item.position, index);
            self.log.push(item);
            self.append_of.push(first);
        }
        Ok(first..self.log.len() as u64 + 1)
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store whose followers follow a feed of `slices` slices (at least 1) in
    /// [`Delivery::Idempotent`] mode rather than its log: the reference for stores whose
    /// feed is their only way across aggregates (Cassandra's), so that followers written for
    /// those run, and are tested, here. The feed of a slice is the log's appends of the
    /// sequences in it ([`slice_of`](crate::slice_of)); a position is the id of the last
    /// notification read.
    pub fn with_feed(slices: u32) -> Self {
        MemoryStore {
            feed: Some(slices.max(1)),
            ..Self::default()
        }
    }

    fn feed(&self) -> Result<u32, StoreError> {
        self.feed.ok_or(StoreError::Unsupported {
            capability: "the feed",
            reason: "this memory store was made without a feed (MemoryStore::with_feed)",
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied append (appends check
        // everything before mutating), so a poisoned lock is safe to reuse.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Applies bounds, order and limit to an ordered map, shared by both kinds of items.
fn select_range<P: Ord + Copy, V, T>(
    map: &BTreeMap<P, V>,
    q: &Select<P>,
    get: impl Fn(&V) -> T,
) -> Vec<T> {
    let lower = match (q.gt, q.gte) {
        (Some(gt), Some(gte)) if gte > gt => Bound::Included(gte),
        (Some(gt), _) => Bound::Excluded(gt),
        (None, Some(gte)) => Bound::Included(gte),
        (None, None) => Bound::Unbounded,
    };
    let upper = match (q.lt, q.lte) {
        (Some(lt), Some(lte)) if lte < lt => Bound::Included(lte),
        (Some(lt), _) => Bound::Excluded(lt),
        (None, Some(lte)) => Bound::Included(lte),
        (None, None) => Bound::Unbounded,
    };
    if !bounds_non_empty(&lower, &upper) {
        return Vec::new();
    }
    let limit = q.limit.unwrap_or(usize::MAX);
    let range = map.range((lower, upper));
    if q.descending {
        range.rev().take(limit).map(|(_, v)| get(v)).collect()
    } else {
        range.take(limit).map(|(_, v)| get(v)).collect()
    }
}

/// `BTreeMap::range` panics on inverted or empty-excluded bounds, so check them first.
fn bounds_non_empty<P: Ord>(lower: &Bound<P>, upper: &Bound<P>) -> bool {
    match (lower, upper) {
        (Bound::Included(a), Bound::Included(b)) => a <= b,
        (Bound::Included(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b))
        | (Bound::Excluded(a), Bound::Excluded(b)) => a < b,
        _ => true,
    }
}

impl ItemStore for MemoryStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            notifications: Support::Yes,
            timestamped: Support::Yes,
            cross_sequence_batches: Support::Yes,
            feed: match self.feed {
                Some(_) => Support::Yes,
                None => Support::Missing {
                    reason: "the notification log is this store's feed (gapless, in commit order): follow it instead (or make the store with_feed)",
                },
            },
        }
    }

    #[tracing::instrument(name = "eventsmith.append", level = "debug", skip_all, fields(backend = "memory", items = items.len(), sequence_id = items.first().map(|i| tracing::field::display(i.sequence_id)), position = items.first().map(|i| i.position), keyed = false, outcome = tracing::field::Empty))]
    async fn append(&self, items: Vec<IntegerSequencedItem>) -> Result<Range<u64>, AppendError> {
        outcome(
            async {
                check_append(&items)?;
                self.lock().append(items)
            }
            .await,
        )
    }

    #[tracing::instrument(name = "eventsmith.append", level = "debug", skip_all, fields(backend = "memory", items = items.len(), sequence_id = items.first().map(|i| tracing::field::display(i.sequence_id)), position = items.first().map(|i| i.position), keyed = true, outcome = tracing::field::Empty))]
    async fn append_with_key(
        &self,
        items: Vec<IntegerSequencedItem>,
        key: &IdempotencyKey,
    ) -> Result<KeyedAppend, AppendError> {
        outcome(
            async {
                let Some(prior) = keyed_batch(&items)? else {
                    return Ok(KeyedAppend::Appended(0..0));
                };
                check_append(&items)?;
                let mut inner = self.lock();
                let slot = (prior.sequence_id, key.clone());
                if let Some(found) = inner.keys.get(&slot) {
                    return Ok(KeyedAppend::AlreadyApplied(found.clone()));
                }
                let ids = inner.append(items)?;
                inner.keys.insert(slot, prior);
                Ok(KeyedAppend::Appended(ids))
            }
            .await,
        )
    }

    fn delivery(&self) -> Option<Delivery> {
        Some(match self.feed {
            Some(_) => Delivery::Idempotent,
            None => Delivery::Transactional,
        })
    }

    fn feed_slices(&self) -> Result<u32, StoreError> {
        self.feed()
    }

    #[tracing::instrument(name = "eventsmith.read_feed", level = "debug", skip_all, fields(backend = "memory", slice, after, limit, outcome = tracing::field::Empty))]
    async fn read_feed_page(
        &self,
        slice: u32,
        after: Option<&str>,
        limit: usize,
    ) -> Result<FeedPage, StoreError> {
        outcome(
            async {
                let slices = self.feed()?;
                if slice >= slices {
                    return Err(StoreError::Config {
                        detail: format!("slice {slice} of a feed of {slices} slices"),
                    });
                }
                let after: u64 = match after {
                    None => 0,
                    Some(text) => text.parse().map_err(|_| StoreError::Config {
                        detail: format!("{text:?} is not a position in this memory store's feed"),
                    })?,
                };
                let inner = self.lock();
                let mut page = FeedPage::default();
                let mut last = after.min(inner.log.len() as u64);
                let mut current = None;
                for (index, item) in inner.log.iter().enumerate().skip(last as usize) {
                    if crate::slice_of(item.sequence_id, slices) != slice {
                        last = index as u64 + 1;
                        continue;
                    }
                    let append = (inner.append_of[index], item.sequence_id);
                    if current != Some(append) {
                        if page.appends.len() == limit.max(1) {
                            break;
                        }
                        page.appends.push(Vec::new());
                        current = Some(append);
                    }
                    page.appends.last_mut().expect("pushed").push(item.clone());
                    last = index as u64 + 1;
                }
                page.position = last.to_string();
                Ok(page)
            }
            .await,
        )
    }

    async fn feed_head(&self, slice: u32) -> Result<String, StoreError> {
        let slices = self.feed()?;
        if slice >= slices {
            return Err(StoreError::Config {
                detail: format!("slice {slice} of a feed of {slices} slices"),
            });
        }
        Ok(self.lock().log.len().to_string())
    }

    async fn feed_position(
        &self,
        follower: &str,
        slice: u32,
    ) -> Result<Option<String>, StoreError> {
        self.feed()?;
        Ok(self
            .lock()
            .feed_positions
            .get(&(follower.to_owned(), slice))
            .cloned())
    }

    async fn save_feed_position(
        &self,
        follower: &str,
        slice: u32,
        position: &str,
    ) -> Result<(), StoreError> {
        self.feed()?;
        self.lock()
            .feed_positions
            .insert((follower.to_owned(), slice), position.to_owned());
        Ok(())
    }

    async fn announce_runner(
        &self,
        follower: &str,
        owner: Uuid,
        ttl: Duration,
    ) -> Result<Vec<Uuid>, StoreError> {
        self.feed()?;
        let now = Instant::now();
        let mut inner = self.lock();
        let live = inner.runners.entry(follower.to_owned()).or_default();
        live.insert(owner, now + ttl);
        live.retain(|_, expires| *expires > now);
        Ok(live.keys().copied().collect())
    }

    #[tracing::instrument(name = "eventsmith.tracking", level = "debug", skip_all, fields(backend = "memory", follower = %follower, outcome = tracing::field::Empty))]
    async fn tracking_position(&self, follower: &str) -> Result<u64, StoreError> {
        outcome(async { Ok(self.lock().tracking.get(follower).copied().unwrap_or(0)) }.await)
    }

    #[tracing::instrument(name = "eventsmith.append_tracked", level = "debug", skip_all, fields(backend = "memory", items = items.len(), follower = %tracking.follower, from = tracking.from, to = tracking.to, outcome = tracing::field::Empty))]
    async fn append_tracked(
        &self,
        items: Vec<IntegerSequencedItem>,
        tracking: Tracking,
    ) -> Result<Range<u64>, AppendError> {
        outcome(
            async {
                check_append(&items)?;
                let mut inner = self.lock();
                let found = inner.tracking.get(&tracking.follower).copied().unwrap_or(0);
                if found != tracking.from {
                    return Err(AppendError::TrackingMoved {
                        follower: tracking.follower,
                        expected: tracking.from,
                        found,
                    });
                }
                let ids = inner.append(items)?;
                inner.tracking.insert(tracking.follower, tracking.to);
                Ok(ids)
            }
            .await,
        )
    }

    #[tracing::instrument(name = "eventsmith.lease.claim", level = "debug", skip_all, fields(backend = "memory", follower = %lease.follower, owner = %lease.owner, outcome = tracing::field::Empty))]
    async fn claim_lease(&self, lease: &Lease) -> Result<LeaseClaim, StoreError> {
        outcome(
            async {
                let now = Instant::now();
                let mut inner = self.lock();
                match inner.leases.get(&lease.follower) {
                    Some(&(owner, expires)) if owner != lease.owner && expires > now => {
                        Ok(LeaseClaim::Taken {
                            owner,
                            expires_in: expires - now,
                        })
                    }
                    _ => {
                        inner
                            .leases
                            .insert(lease.follower.clone(), (lease.owner, now + lease.ttl));
                        Ok(LeaseClaim::Held)
                    }
                }
            }
            .await,
        )
    }

    #[tracing::instrument(name = "eventsmith.lease.release", level = "debug", skip_all, fields(backend = "memory", follower = %follower, owner = %owner, outcome = tracing::field::Empty))]
    async fn release_lease(&self, follower: &str, owner: Uuid) -> Result<(), StoreError> {
        outcome(
            async {
                let mut inner = self.lock();
                if inner.leases.get(follower).is_some_and(|(o, _)| *o == owner) {
                    inner.leases.remove(follower);
                }
                Ok(())
            }
            .await,
        )
    }

    #[tracing::instrument(name = "eventsmith.find_key", level = "debug", skip_all, fields(backend = "memory", sequence_id = %sequence_id, outcome = tracing::field::Empty))]
    async fn find_key(
        &self,
        sequence_id: Uuid,
        key: &IdempotencyKey,
    ) -> Result<Option<PriorAppend>, StoreError> {
        outcome(async { Ok(self.lock().keys.get(&(sequence_id, key.clone())).cloned()) }.await)
    }

    #[tracing::instrument(name = "eventsmith.select", level = "debug", skip_all, fields(backend = "memory", sequence_id = %sequence_id, items = tracing::field::Empty, outcome = tracing::field::Empty))]
    async fn select(
        &self,
        sequence_id: Uuid,
        query: &Select<Version>,
    ) -> Result<Vec<IntegerSequencedItem>, StoreError> {
        rows(
            async {
                let inner = self.lock();
                Ok(match inner.sequences.get(&sequence_id) {
                    Some(seq) => select_range(seq, query, |&i| inner.log[i].clone()),
                    None => Vec::new(),
                })
            }
            .await,
        )
    }

    #[tracing::instrument(name = "eventsmith.notifications", level = "debug", skip_all, fields(backend = "memory", after = after, limit = limit, items = tracing::field::Empty, outcome = tracing::field::Empty))]
    async fn select_notifications(
        &self,
        after: u64,
        limit: usize,
        topics: &[&str],
    ) -> Result<Vec<Notification>, StoreError> {
        rows(
            async {
                let inner = self.lock();
                let start = usize::try_from(after).unwrap_or(usize::MAX);
                Ok(inner
                    .log
                    .iter()
                    .enumerate()
                    .skip(start)
                    .filter(|(_, item)| topics.is_empty() || topics.contains(&item.topic.as_str()))
                    .take(limit)
                    .map(|(i, item)| Notification {
                        id: i as u64 + 1,
                        item: item.clone(),
                    })
                    .collect())
            }
            .await,
        )
    }

    #[tracing::instrument(name = "eventsmith.max_notification_id", level = "debug", skip_all, fields(backend = "memory", outcome = tracing::field::Empty))]
    async fn max_notification_id(&self) -> Result<u64, StoreError> {
        outcome(async { Ok(self.lock().log.len() as u64) }.await)
    }

    #[tracing::instrument(name = "eventsmith.append_timestamped", level = "debug", skip_all, fields(backend = "memory", items = items.len(), sequence_id = items.first().map(|i| tracing::field::display(i.sequence_id)), outcome = tracing::field::Empty))]
    async fn append_timestamped(
        &self,
        items: Vec<TimestampSequencedItem>,
    ) -> Result<(), AppendError> {
        outcome(
            async {
                check_batch_unique(&items)?;
                let mut inner = self.lock();
                for item in &items {
                    if inner
                        .timestamped
                        .get(&item.sequence_id)
                        .is_some_and(|s| s.contains_key(&item.position))
                    {
                        return Err(AppendError::Conflict {
                            sequence_id: item.sequence_id,
                            position: item.position.into(),
                        });
                    }
                }
                for item in items {
                    inner
                        .timestamped
                        .entry(item.sequence_id)
                        .or_default()
                        .insert(item.position, item);
                }
                Ok(())
            }
            .await,
        )
    }

    #[tracing::instrument(name = "eventsmith.select_timestamped", level = "debug", skip_all, fields(backend = "memory", sequence_id = %sequence_id, items = tracing::field::Empty, outcome = tracing::field::Empty))]
    async fn select_timestamped(
        &self,
        sequence_id: Uuid,
        query: &Select<Timestamp>,
    ) -> Result<Vec<TimestampSequencedItem>, StoreError> {
        rows(
            async {
                let inner = self.lock();
                Ok(match inner.timestamped.get(&sequence_id) {
                    Some(seq) => select_range(seq, query, Clone::clone),
                    None => Vec::new(),
                })
            }
            .await,
        )
    }
}

impl SnapshotStore for MemoryStore {
    #[tracing::instrument(name = "eventsmith.snapshot.write", level = "debug", skip_all, fields(backend = "memory", sequence_id = %snapshot.sequence_id, position = snapshot.position, outcome = tracing::field::Empty))]
    async fn write_snapshot(&self, snapshot: IntegerSequencedItem) -> Result<(), StoreError> {
        outcome(
            async {
                self.lock()
                    .snapshots
                    .entry(snapshot.sequence_id)
                    .or_default()
                    .insert(snapshot.position, snapshot);
                Ok(())
            }
            .await,
        )
    }

    #[tracing::instrument(name = "eventsmith.snapshot.latest", level = "debug", skip_all, fields(backend = "memory", sequence_id = %sequence_id, lte = ?lte, outcome = tracing::field::Empty))]
    async fn latest_snapshot(
        &self,
        sequence_id: Uuid,
        lte: Option<Version>,
    ) -> Result<Option<IntegerSequencedItem>, StoreError> {
        outcome(
            async {
                let inner = self.lock();
                Ok(inner.snapshots.get(&sequence_id).and_then(|s| {
                    s.range(..=lte.unwrap_or(Version::MAX))
                        .next_back()
                        .map(|(_, item)| item.clone())
                }))
            }
            .await,
        )
    }
}

impl Inventory for MemoryStore {
    #[tracing::instrument(name = "eventsmith.inventory.sequences", level = "debug", skip_all, fields(backend = "memory", kind = ?kind, items = tracing::field::Empty, outcome = tracing::field::Empty))]
    async fn list_sequences(&self, kind: ItemKind) -> Result<Vec<(Uuid, i64)>, StoreError> {
        rows(
            async {
                let inner = self.lock();
                let last =
                    |v: Option<Version>| v.map_or(0, |v| i64::try_from(v).unwrap_or(i64::MAX));
                Ok(match kind {
                    ItemKind::Integer => inner
                        .sequences
                        .iter()
                        .map(|(id, s)| (*id, last(s.keys().next_back().copied())))
                        .collect(),
                    ItemKind::Timestamped => inner
                        .timestamped
                        .iter()
                        .map(|(id, s)| (*id, s.keys().next_back().map_or(0, |t| t.unix_nanos())))
                        .collect(),
                    ItemKind::Snapshots => inner
                        .snapshots
                        .iter()
                        .map(|(id, s)| (*id, last(s.keys().next_back().copied())))
                        .collect(),
                })
            }
            .await,
        )
    }

    #[tracing::instrument(name = "eventsmith.inventory.snapshots", level = "debug", skip_all, fields(backend = "memory", sequence_id = %sequence_id, items = tracing::field::Empty, outcome = tracing::field::Empty))]
    async fn select_snapshots(
        &self,
        sequence_id: Uuid,
    ) -> Result<Vec<IntegerSequencedItem>, StoreError> {
        rows(
            async {
                let inner = self.lock();
                Ok(inner
                    .snapshots
                    .get(&sequence_id)
                    .map(|s| s.values().cloned().collect())
                    .unwrap_or_default())
            }
            .await,
        )
    }
}
