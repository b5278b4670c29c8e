//! Where time comes from: the clock seam, and a timestamp-sequenced log that takes its
//! positions from a clock.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use uuid::Uuid;

use crate::error::{AppendError, StoreError};
use crate::item::{Position, Select, Timestamp, TimestampSequencedItem};
use crate::store::ItemStore;

/// A source of the current time.
///
/// Event timestamps (an [`Application`](crate::Application)'s, a
/// [`Process`](crate::Process)'s through its application) and the positions a
/// [`TimestampLog`] gives come from a clock, so tests and simulations can replace the system
/// clock with a [`ManualClock`] and get the same timestamps on every run.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The machine's clock ([`Timestamp::now`]): the default everywhere.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that moves only when told to: for tests and simulations. Clones share one time,
/// so a test can hold a clone and move the time an application reads.
#[derive(Clone, Debug)]
pub struct ManualClock {
    nanos: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock {
            nanos: Arc::new(AtomicI64::new(start.unix_nanos())),
        }
    }

    /// Sets the time (it may go backwards, as a real clock's may).
    pub fn set(&self, to: Timestamp) {
        self.nanos.store(to.unix_nanos(), Ordering::SeqCst);
    }

    /// Moves the time forward by `by`, saturating at the last representable nanosecond.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        let _ = self
            .nanos
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_add(by))
            });
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

/// How many times [`TimestampLog::append`] moves past a taken timestamp before it gives up
/// with the conflict. Each move jumps past the newest item the sequence holds, so only
/// writers appending to the same sequence in the same instants, again and again, exhaust it.
const MAX_MOVES: u32 = 32;

/// A log of timestamp-sequenced items (an audit log, a stream of readings) whose positions
/// come from a [`Clock`].
///
/// Two entries can fall on the same nanosecond: two writes within one clock tick, a clock
/// that stood still or went back, two processes writing at once. The log handles that
/// itself: an entry whose timestamp is taken moves to the next free nanosecond after the
/// newest item of the sequence, so a caller never sees a conflict for a position it did not
/// choose. Entries of one [`append`](Self::append) are written in one atomic batch at
/// consecutive nanoseconds.
///
/// ```
/// # use eventsmith_core::{ManualClock, MemoryStore, Timestamp, TimestampLog};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), eventsmith_core::AppendError> {
/// let clock = ManualClock::new(Timestamp::from_unix_nanos(1_000));
/// let log = TimestampLog::new(MemoryStore::new(), uuid::Uuid::new_v4()).with_clock(clock);
/// let first = log.append(vec![("audit.Login".into(), b"alice".to_vec())]).await?;
/// // The clock has not moved: the second entry takes the next nanosecond.
/// let second = log.append(vec![("audit.Login".into(), b"bob".to_vec())]).await?;
/// assert_eq!(first.unix_nanos(), 1_000);
/// assert_eq!(second.unix_nanos(), 1_001);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct TimestampLog<S> {
    store: S,
    sequence_id: Uuid,
    clock: Arc<dyn Clock>,
    /// The newest timestamp this handle (and its clones) wrote: where the next entry starts
    /// at the earliest, so a handle with a stuck clock does not collide with itself.
    last: Arc<AtomicI64>,
}

impl<S: fmt::Debug> fmt::Debug for TimestampLog<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimestampLog")
            .field("store", &self.store)
            .field("sequence_id", &self.sequence_id)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl<S: ItemStore> TimestampLog<S> {
    /// The log `sequence_id` in `store`, timed by the [`SystemClock`].
    pub fn new(store: S, sequence_id: Uuid) -> Self {
        TimestampLog {
            store,
            sequence_id,
            clock: Arc::new(SystemClock),
            last: Arc::new(AtomicI64::new(i64::MIN)),
        }
    }

    /// Takes timestamps from `clock` instead.
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The sequence this log appends to.
    pub fn sequence_id(&self) -> Uuid {
        self.sequence_id
    }

    /// Appends `entries` (topic, payload) atomically at consecutive nanoseconds from the
    /// clock's current time, or from the first free nanosecond after the sequence's newest
    /// item when that time is taken, and returns the first entry's timestamp. An empty batch
    /// writes nothing and returns the clock's time.
    ///
    /// Fails with [`AppendError::Conflict`] only when the sequence kept taking the chosen
    /// timestamps for 32 moves in a row (many writers on one sequence in the same instants),
    /// and with [`StoreError::InvalidItem`] when the timestamps would pass the last
    /// representable nanosecond (the year 2262). A conflict never wrote anything, so a retry
    /// is safe.
    ///
    /// # Cancellation
    ///
    /// As for [`ItemStore::append_timestamped`]: a dropped future may still commit the batch
    /// it had sent (at a timestamp the caller never learns), or nothing.
    pub async fn append(&self, entries: Vec<(String, Vec<u8>)>) -> Result<Timestamp, AppendError> {
        let now = self.clock.now().unix_nanos();
        let mut start = now.max(self.last.load(Ordering::SeqCst).saturating_add(1));
        if entries.is_empty() {
            return Ok(Timestamp::from_unix_nanos(now));
        }
        let mut moves = 0;
        loop {
            let items = self.items(start, &entries)?;
            match self.store.append_timestamped(items).await {
                Ok(()) => {
                    let end = start + (entries.len() as i64 - 1);
                    self.last.fetch_max(end, Ordering::SeqCst);
                    return Ok(Timestamp::from_unix_nanos(start));
                }
                Err(AppendError::Conflict {
                    sequence_id,
                    position: Position::Timestamp(taken),
                }) if sequence_id == self.sequence_id && moves < MAX_MOVES => {
                    moves += 1;
                    // Jump past the newest item, not just past the taken one: a dense block
                    // (another writer's batch) costs one move, not one per nanosecond.
                    let newest = self
                        .store
                        .select_timestamped(
                            self.sequence_id,
                            &Select::all().gte(taken).descending().limit(1),
                        )
                        .await?
                        .first()
                        .map_or(taken, |item| item.position);
                    start = newest
                        .unix_nanos()
                        .checked_add(1)
                        .ok_or_else(|| past_the_end(self.sequence_id, newest))?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn items(
        &self,
        start: i64,
        entries: &[(String, Vec<u8>)],
    ) -> Result<Vec<TimestampSequencedItem>, AppendError> {
        entries
            .iter()
            .enumerate()
            .map(|(i, (topic, payload))| {
                let nanos = i64::try_from(i)
                    .ok()
                    .and_then(|i| start.checked_add(i))
                    .ok_or_else(|| {
                        past_the_end(self.sequence_id, Timestamp::from_unix_nanos(start))
                    })?;
                Ok(TimestampSequencedItem {
                    sequence_id: self.sequence_id,
                    position: Timestamp::from_unix_nanos(nanos),
                    topic: topic.clone(),
                    payload: payload.clone(),
                })
            })
            .collect()
    }
}

fn past_the_end(sequence_id: Uuid, from: Timestamp) -> AppendError {
    AppendError::Store(StoreError::InvalidItem {
        sequence_id,
        position: Position::Timestamp(from),
        reason: "the timestamp would pass the last representable nanosecond (2262)".into(),
    })
}
