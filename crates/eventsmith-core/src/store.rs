//! The store trait every backend implements.

use std::future::Future;
use std::ops::Range;
use std::time::Duration;

use uuid::Uuid;

use crate::error::{AppendError, StoreError};
use crate::idempotency::{IdempotencyKey, KeyedAppend, PriorAppend};
use crate::item::{
    IntegerSequencedItem, Notification, Select, Timestamp, TimestampSequencedItem, Version,
};

/// Whether a backend offers an optional capability, and if not, why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// The capability is offered and the conformance suite checks it.
    Yes,
    /// The capability is missing; calls return [`StoreError::Unsupported`] with this reason.
    Missing {
        /// Why the backend cannot offer it.
        reason: &'static str,
    },
}

/// The optional capabilities of a store. The conformance suite checks every capability a
/// store claims, and checks that a missing one fails with [`StoreError::Unsupported`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// The global notification log (`select_notifications`, `max_notification_id`).
    pub notifications: Support,
    /// Timestamp-sequenced items.
    pub timestamped: Support,
    /// One atomic append holding items of several sequences. Repositories never need it
    /// (they append one aggregate at a time); a store without it fails such a batch with
    /// [`StoreError::Unsupported`] and writes nothing.
    pub cross_sequence_batches: Support,
    /// A feed of every committed append across aggregates that is not the notification log:
    /// each append delivered at least once, in version order per sequence, within a stated
    /// delay, even when its writer died between its steps, but with no global order and no
    /// gapless ids (Cassandra's, configured per keyspace). It is split into slices, read with
    /// [`ItemStore::read_feed_page`], and followed by [`Follower::handle_feed`](crate::Follower::handle_feed)
    /// in [`Delivery::Idempotent`] mode. A store with [`notifications`](Self::notifications)
    /// has no need of one: its log is a stronger feed. The conformance suite asks a store for
    /// its feed only when it claims one.
    pub feed: Support,
}

/// A store of sequenced items: the one trait every backend implements.
///
/// Stores are cheap to clone handles onto shared state, so a repository, a projection and
/// a web handler can each own one.
///
/// Methods return `impl Future + Send`, so implementors may write `async fn` and callers can
/// spawn the futures on a multi-threaded runtime.
pub trait ItemStore: Clone + Send + Sync + 'static {
    /// What this store offers beyond the required operations.
    fn capabilities(&self) -> Capabilities;

    /// Appends a batch of integer-sequenced items atomically.
    ///
    /// If any (sequence id, position) already exists, or appears twice in the batch, the whole
    /// batch fails with [`AppendError::Conflict`] naming the first such item, and nothing is
    /// written. Otherwise every item is written and gets a notification id; the ids of one
    /// batch are contiguous and returned as a range (empty for an empty batch, which is a
    /// no-op). Stores without notifications return an empty range.
    ///
    /// Dropping the future does not undo the append: it may still commit (SQLite commits a
    /// queued append; Cassandra's request may already be at the server), or not, but never
    /// in part. To retry an append whose answer was lost, use
    /// [`append_with_key`](Self::append_with_key) with the same key.
    fn append(
        &self,
        items: Vec<IntegerSequencedItem>,
    ) -> impl Future<Output = Result<Range<u64>, AppendError>> + Send;

    /// Appends a batch of one sequence atomically together with an idempotency key, unless the
    /// key was stored for that sequence before.
    ///
    /// When `key` is already stored for the batch's sequence, nothing is written and the
    /// result is [`KeyedAppend::AlreadyApplied`] with what the first append under the key
    /// wrote, whether or not this batch would conflict. Otherwise this is [`append`](Self::append)
    /// and, when it succeeds, the key is stored in the same atomic write, so no reader or
    /// crash ever sees the items without the key or the key without the items. A failed
    /// append stores no key. Keys are scoped to a sequence: the same key on two aggregates is
    /// two keys. A batch of several sequences is a [`StoreError::InvalidItem`]; an empty batch
    /// is a no-op that stores nothing. Backends check batches with
    /// [`keyed_batch`](crate::backend::keyed_batch).
    ///
    /// Dropping the future is as for [`append`](Self::append): the append may still commit,
    /// whole, with its key; sending it again under the same key then answers
    /// [`KeyedAppend::AlreadyApplied`] (the testkit's
    /// `dropped_keyed_appends_apply_once_on_retry` checks this on every backend).
    fn append_with_key(
        &self,
        items: Vec<IntegerSequencedItem>,
        key: &IdempotencyKey,
    ) -> impl Future<Output = Result<KeyedAppend, AppendError>> + Send;

    /// What the append stored under `key` for `sequence_id` wrote, if there was one.
    ///
    /// Reads (this and every other read of this trait) change nothing: dropping their
    /// futures abandons them.
    fn find_key(
        &self,
        sequence_id: Uuid,
        key: &IdempotencyKey,
    ) -> impl Future<Output = Result<Option<PriorAppend>, StoreError>> + Send;

    /// Selects items of one sequence within the query's bounds, in the query's order.
    ///
    /// Dropping the future abandons the read; nothing is written.
    fn select(
        &self,
        sequence_id: Uuid,
        query: &Select<Version>,
    ) -> impl Future<Output = Result<Vec<IntegerSequencedItem>, StoreError>> + Send;

    /// The item at the highest position of a sequence, if any.
    ///
    /// Dropping the future abandons the read; nothing is written.
    fn latest(
        &self,
        sequence_id: Uuid,
    ) -> impl Future<Output = Result<Option<IntegerSequencedItem>, StoreError>> + Send {
        let query = Select::all().descending().limit(1);
        async move { Ok(self.select(sequence_id, &query).await?.pop()) }
    }

    /// Reads the notification log: items with notification id greater than `after`,
    /// in id order, at most `limit` of them, only of the given topics (all topics when
    /// `topics` is empty).
    ///
    /// Dropping the future abandons the read; nothing is written.
    fn select_notifications(
        &self,
        after: u64,
        limit: usize,
        topics: &[&str],
    ) -> impl Future<Output = Result<Vec<Notification>, StoreError>> + Send;

    /// The highest notification id given so far (0 when the log is empty).
    ///
    /// Dropping the future abandons the read; nothing is written.
    fn max_notification_id(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Appends a batch of timestamp-sequenced items atomically; a (sequence id, timestamp)
    /// that already exists is a [`AppendError::Conflict`] and nothing is written.
    ///
    /// Dropping the future does not undo the append: it may still commit, as for
    /// [`append`](Self::append).
    fn append_timestamped(
        &self,
        items: Vec<TimestampSequencedItem>,
    ) -> impl Future<Output = Result<(), AppendError>> + Send;

    /// Selects timestamp-sequenced items of one sequence within the query's bounds.
    ///
    /// Dropping the future abandons the read; nothing is written.
    fn select_timestamped(
        &self,
        sequence_id: Uuid,
        query: &Select<Timestamp>,
    ) -> impl Future<Output = Result<Vec<TimestampSequencedItem>, StoreError>> + Send;

    /// How this store delivers to followers ([`Follower`](crate::Follower)):
    /// [`Delivery::Transactional`] through its notification log and tracking records,
    /// [`Delivery::Idempotent`] through its feed and saved feed positions; `None` when it
    /// has neither. Without `Transactional`, [`tracking_position`](Self::tracking_position)
    /// and [`append_tracked`](Self::append_tracked) fail with [`StoreError::Unsupported`].
    fn delivery(&self) -> Option<Delivery> {
        None
    }

    /// The position follower `follower` recorded: the id of the last notification it
    /// applied, 0 before its first page.
    ///
    /// Dropping the future abandons the read; nothing is written.
    fn tracking_position(
        &self,
        follower: &str,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        let _ = follower;
        async { Err(no_tracking()) }
    }

    /// Appends `items` (possibly none, of any sequences) and moves a follower's tracking
    /// record from `tracking.from` to `tracking.to`, as one atomic write: after a crash
    /// either both happened or neither did. When the recorded position is not
    /// `tracking.from` (another runner of the follower got there first), nothing is written
    /// and the error is [`AppendError::TrackingMoved`]; a conflicting item is
    /// [`AppendError::Conflict`], also writing nothing. This is how a follower's output and
    /// position commit together, and why two runners of one follower never both apply a page.
    ///
    /// Cancellation is as for [`append`](Self::append): a dropped future may still commit.
    fn append_tracked(
        &self,
        items: Vec<IntegerSequencedItem>,
        tracking: Tracking,
    ) -> impl Future<Output = Result<Range<u64>, AppendError>> + Send {
        let _ = (items, tracking);
        async { Err(no_tracking().into()) }
    }

    /// Claims, or renews, `lease.owner`'s lease on follower `lease.follower` for
    /// `lease.ttl` from now: [`LeaseClaim::Held`] when no one else holds an unexpired lease
    /// on it, [`LeaseClaim::Taken`] otherwise (nothing changes then). A [`Runner`](crate::Runner)
    /// runs a follower only while it holds its lease, so two runners of one
    /// follower, in one process or several, do not both run it; if a holder stalls past
    /// its lease, [`append_tracked`](Self::append_tracked)'s check still keeps it from
    /// applying a page twice. Expiry is measured by the store's clock (the machine's for
    /// SQLite, the server's for PostgreSQL).
    ///
    /// A runner of a follower on a feed claims one lease per slice it runs, named
    /// `follower/slice` (see [`Runner`](crate::Runner)). Stores without leases fail with
    /// [`StoreError::Unsupported`]. A dropped future may still have taken the lease; it
    /// expires after `ttl`.
    fn claim_lease(
        &self,
        lease: &Lease,
    ) -> impl Future<Output = Result<LeaseClaim, StoreError>> + Send {
        let _ = lease;
        async { Err(no_tracking()) }
    }

    /// Gives up `owner`'s lease on `follower`, so that another runner may take it at once;
    /// nothing happens when `owner` does not hold it.
    ///
    /// A dropped future may still have released it.
    fn release_lease(
        &self,
        follower: &str,
        owner: Uuid,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = (follower, owner);
        async { Err(no_tracking()) }
    }

    /// How many slices the store's feed has ([`Capabilities::feed`]); the slices are numbered
    /// from 0. [`StoreError::Unsupported`] without a feed.
    fn feed_slices(&self) -> Result<u32, StoreError> {
        Err(no_feed())
    }

    /// Reads one slice of the feed after `after` (a [`FeedPage::position`] this store returned
    /// before, or `None` for the start of the feed): at most `limit` appends (at least 1), in
    /// version order per sequence, and the position to read the next page after. Every
    /// append committed to the slice is delivered by some read at least once; reading on from
    /// each returned position delivers each exactly once. A position this store did not write
    /// is a [`StoreError::Config`].
    ///
    /// Dropping the future abandons the read; `after` is still good to read from, so nothing
    /// is lost (a store may have done work that the next read finds done).
    fn read_feed_page(
        &self,
        slice: u32,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<FeedPage, StoreError>> + Send {
        let _ = (slice, after, limit);
        async { Err(no_feed()) }
    }

    /// A position in feed slice `slice` at about the present: reading after it delivers every
    /// append committed to the slice after this call (and perhaps some a little before it).
    /// Save it as a new follower's position ([`save_feed_position`](Self::save_feed_position))
    /// to follow only what comes next, rather than the whole feed.
    ///
    /// Dropping the future abandons it; nothing is written.
    fn feed_head(&self, slice: u32) -> impl Future<Output = Result<String, StoreError>> + Send {
        let _ = slice;
        async { Err(no_feed()) }
    }

    /// The position `follower` saved for feed slice `slice`, `None` before it saved one.
    ///
    /// Dropping the future abandons the read; nothing is written.
    fn feed_position(
        &self,
        follower: &str,
        slice: u32,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send {
        let _ = (follower, slice);
        async { Err(no_feed()) }
    }

    /// Saves `position` as where `follower` is in feed slice `slice`. In
    /// [`Delivery::Idempotent`] mode this is written after the follower's effects, not with
    /// them: after a crash in between, the page is delivered again.
    ///
    /// A dropped future may still have saved the position.
    fn save_feed_position(
        &self,
        follower: &str,
        slice: u32,
        position: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = (follower, slice, position);
        async { Err(no_feed()) }
    }

    /// Records `owner` as a live runner of `follower` for `ttl` from now, and returns the ids
    /// of every live runner of it, this one included, in ascending order: how runners of one
    /// follower on a feed learn how many share its slices. Expiry is by the store's clock.
    ///
    /// A dropped future may still have recorded the runner; the record expires after `ttl`.
    fn announce_runner(
        &self,
        follower: &str,
        owner: Uuid,
        ttl: Duration,
    ) -> impl Future<Output = Result<Vec<Uuid>, StoreError>> + Send {
        let _ = (follower, owner, ttl);
        async { Err(no_feed()) }
    }
}

/// The slice of a feed of `slices` slices that sequence `sequence_id` is in: its id as a
/// 128-bit number, modulo the slice count. Stable across builds, platforms and backends.
pub fn slice_of(sequence_id: Uuid, slices: u32) -> u32 {
    (sequence_id.as_u128() % u128::from(slices.max(1))) as u32
}

/// One read of one slice of a store's feed ([`ItemStore::read_feed_page`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedPage {
    /// The appends delivered, each the items of one append (one sequence, in position
    /// order), in version order per sequence.
    pub appends: Vec<Vec<IntegerSequencedItem>>,
    /// Where to read the slice's next page after: the store's own text, opaque to callers,
    /// to pass back to [`ItemStore::read_feed_page`] and to save with
    /// [`ItemStore::save_feed_position`].
    pub position: String,
}

/// A runner's claim to run one follower, until it expires or is released
/// ([`ItemStore::claim_lease`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The follower (its tracking record's name).
    pub follower: String,
    /// Who claims it: one id per started runner.
    pub owner: Uuid,
    /// How long the lease holds without being renewed.
    pub ttl: Duration,
}

/// The outcome of [`ItemStore::claim_lease`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseClaim {
    /// The claimer holds the lease, for its time to live from when the claim was made.
    Held,
    /// Another owner holds it, for at most `expires_in` more unless it renews.
    Taken {
        /// The holder.
        owner: Uuid,
        /// Until its lease runs out, by the store's clock.
        expires_in: Duration,
    },
}

/// How a backend delivers its notification log to followers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Delivery {
    /// A follower's output and its position are written in one atomic write
    /// ([`ItemStore::append_tracked`]): each page is applied exactly once, across crashes.
    Transactional,
    /// At least once, through the store's feed ([`ItemStore::read_feed_page`]): a follower's
    /// position in each slice is saved after its output
    /// ([`Follower::handle_feed`](crate::Follower::handle_feed)), so after a crash a page may
    /// be delivered again, and effects must be keyed by (sequence id, version) or by a
    /// deterministic commit id (a [`Process`](crate::Process) keys each append it makes by
    /// (process, upstream sequence id, version)).
    Idempotent,
}

/// A move of a follower's tracking record, written atomically with a follower's output by
/// [`ItemStore::append_tracked`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracking {
    /// The follower's name (unique per store).
    pub follower: String,
    /// The position the follower read from: the write fails unless this is still recorded.
    pub from: u64,
    /// The id of the last notification of the page applied.
    pub to: u64,
}

fn no_feed() -> StoreError {
    StoreError::Unsupported {
        capability: "the feed",
        reason: "this backend has no feed (a store with a notification log is followed through the log)",
    }
}

fn no_tracking() -> StoreError {
    StoreError::Unsupported {
        capability: "tracking records",
        reason: "this backend keeps no tracking records for followers",
    }
}

/// Storage of snapshots: items whose sequence id is an aggregate id and whose position is the
/// version the snapshot was taken at. Writing a snapshot at a version that has one replaces it
/// (a snapshot is a pure function of the events up to its version, so both are equal).
pub trait SnapshotStore: Clone + Send + Sync + 'static {
    /// Stores a snapshot.
    ///
    /// Dropping the future does not undo the write: the snapshot may still be stored (a
    /// snapshot is a cache, so either way is consistent).
    fn write_snapshot(
        &self,
        snapshot: IntegerSequencedItem,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The snapshot of `sequence_id` at the highest version at or below `lte` (any version
    /// when `None`).
    ///
    /// Dropping the future abandons the read; nothing is written.
    fn latest_snapshot(
        &self,
        sequence_id: Uuid,
        lte: Option<Version>,
    ) -> impl Future<Output = Result<Option<IntegerSequencedItem>, StoreError>> + Send;
}

/// Which table of a store an inventory lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemKind {
    /// Integer-sequenced items (aggregates' events).
    Integer,
    /// Timestamp-sequenced items.
    Timestamped,
    /// Snapshots.
    Snapshots,
}

/// What a store holds, for tools that inspect, verify or copy whole stores (the CLI). Not on
/// any hot path: listing may scan a whole table.
pub trait Inventory: ItemStore + SnapshotStore {
    /// Every sequence of one kind with its highest position (a version, or a timestamp's
    /// nanoseconds), in no particular order.
    ///
    /// Dropping the future abandons the read; nothing is written.
    fn list_sequences(
        &self,
        kind: ItemKind,
    ) -> impl Future<Output = Result<Vec<(Uuid, i64)>, StoreError>> + Send;

    /// Every snapshot of one sequence, oldest first.
    ///
    /// Dropping the future abandons the read; nothing is written.
    fn select_snapshots(
        &self,
        sequence_id: Uuid,
    ) -> impl Future<Output = Result<Vec<IntegerSequencedItem>, StoreError>> + Send;
}

/// The highest version a store accepts: SQL and CQL keep versions as signed 64-bit integers,
/// so every backend uses the same limit.
pub const MAX_VERSION: Version = i64::MAX as Version;

/// Checks the rules every backend applies to an integer-sequenced batch before writing
/// anything: versions within [`MAX_VERSION`] (an [`StoreError::InvalidItem`]), and no
/// (sequence id, position) twice (the conflict to report).
pub fn check_append(items: &[IntegerSequencedItem]) -> Result<(), AppendError> {
    items.iter().try_for_each(check_version)?;
    check_batch_unique(items)
}

/// Checks an item's version is within [`MAX_VERSION`] (for appends and snapshot writes).
pub fn check_version(item: &IntegerSequencedItem) -> Result<(), StoreError> {
    if item.position > MAX_VERSION {
        return Err(StoreError::InvalidItem {
            sequence_id: item.sequence_id,
            position: item.position.into(),
            reason: format!("versions go up to {MAX_VERSION}"),
        });
    }
    Ok(())
}

/// Checks the batch-local rules every backend shares: no (sequence id, position) twice in one
/// batch. Returns the conflict a backend must report.
pub fn check_batch_unique<P: Copy + Eq + std::hash::Hash + Into<crate::Position>>(
    items: &[crate::SequencedItem<P>],
) -> Result<(), AppendError> {
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    for item in items {
        if !seen.insert((item.sequence_id, item.position)) {
            return Err(AppendError::Conflict {
                sequence_id: item.sequence_id,
                position: item.position.into(),
            });
        }
    }
    Ok(())
}
