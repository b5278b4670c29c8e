//! The feed: every committed append of integer-sequenced items, across aggregates, at least
//! once, in version order per sequence, read in slices.
//!
//! # The protocol
//!
//! A keyspace has a feed when [`CassandraStore::create_schema`] ran with
//! [`CassandraConfig::feed`](crate::CassandraConfig::feed) set: it records the slice count and
//! the bucket width in the table `feed_settings`, and from then on every store on the
//! keyspace writes to the feed, whatever its own configuration says (a writer that skipped
//! the feed would make readers miss its appends).
//!
//! 1. **Intent.** An append first writes an *intent* row to the table `feed`, at the
//!    configured consistency: partition `(slice, bucket)` with `slice = sequence id mod S`
//!    and `bucket = ts / bucket width`, clustered by `(ts, commit_id)`, where `ts` is the
//!    writer's clock in microseconds; it carries the append's commit id, positions, topics,
//!    payloads and idempotency key, that is everything needed to send the append's
//!    lightweight transaction again. An intent that cannot be written fails the append with
//!    nothing written (or [`StoreError::OutcomeUnknown`] when the write timed out, since the
//!    intent may be stored and a reader may complete it). An intent acknowledged later than
//!    half the [window](FeedConfig::window) after its `ts` is not followed by the
//!    transaction either, and the append is reported as outcome-unknown for the same reason.
//! 2. **Commit.** The usual lightweight transaction, carrying the same commit id. Once the
//!    intent is stored, a transaction that fails for sure (overloaded, unavailable) is reported
//!    as outcome-unknown too, never as a failure: a reader cannot tell a failed writer from a
//!    dead one, and may complete the append. A refused transaction is a conflict (the intent
//!    can never apply: its positions are taken).
//! 3. **Read.** A reader of a slice reads the intents after its position's horizon, and
//!    settles each one it has not settled before by a read of the item rows at the intent's
//!    positions, at the configured consistency first (rows there were written by a decided
//!    transaction) and at SERIAL when none are found (which completes a transaction in
//!    flight): rows with the intent's commit id: *deliver*; rows of another commit:
//!    *void* (that append can never apply); no rows and the intent younger than
//!    [`help_after`](FeedConfig::help_after): *wait* (its writer is probably still at it); no
//!    rows and older: *help*, by sending the identical conditional batch (same rows, same
//!    commit id, same key), then deliver or void by what it finds. The positions were free, so
//!    the aggregate is still at the version its writer decided at: applying the batch late is
//!    a slow append, and the writer, if alive, resolves its own late answer by the commit id.
//! 4. **Position.** A slice's position is a horizon (every intent at or before it has been
//!    settled) and the commit ids settled after it. The horizon stays a window behind the
//!    reader's clock and before the first intent still waiting, so an intent that reaches the
//!    table late, within the window, is still read; the settled ids keep a reread window from
//!    delivering twice.
//!
//! Delivery within a page is in version order per sequence; a sequence with an intent still
//! waiting delivers nothing after it until it is settled.
//!
//! # Followers
//!
//! The store trait reads the feed a slice at a time
//! ([`ItemStore::read_feed_page`](eventsmith_core::ItemStore::read_feed_page), a
//! [`SlicePosition`] as text) and keeps followers' saved positions in the table
//! `feed_tracking (follower, slice, position)`, plain writes at the configured consistency;
//! the leases and live runners that share the slices among runners are the `lease` module's.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eventsmith_core::{
    FeedPage, IdempotencyKey, IntegerSequencedItem, PriorAppend, SequencedItem, StoreError, Version,
};
use futures_util::future::join_all;
use scylla::client::session::Session;
use scylla::response::PagingState;
use scylla::statement::prepared::PreparedStatement;
use uuid::Uuid;

use crate::{
    Applied, CassandraConfig, CassandraStore, Failure, Resolution, Table, backend, classify,
    read_error,
};

/// The feed's settings ([`CassandraConfig::feed`](crate::CassandraConfig::feed)). The slice
/// count and the bucket width are fixed when [`CassandraStore::create_schema`] creates the
/// feed; the timings are each reader's and writer's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedConfig {
    /// How many slices the feed is split into (at least 1): the unit a reader reads and,
    /// later, that runners of one follower share. Fixed at creation.
    pub slices: u32,
    /// The width of a time bucket: intents of one slice and one bucket are one partition.
    /// Fixed at creation.
    pub bucket: Duration,
    /// How far behind its clock a reader keeps its horizon: an intent that reaches the table
    /// up to this long after its writer took its timestamp (including clock skew between the
    /// writer and the reader) is still read. Writers refuse to commit an intent acknowledged
    /// later than half of it. 20 s by default (twice the default request timeout).
    pub window: Duration,
    /// How old an intent with no rows must be before a reader helps it, by sending its
    /// transaction itself. 5 s by default: long enough for a live writer to finish, so that
    /// helpers rarely compete with it.
    pub help_after: Duration,
    /// How long intents are kept (the rows' TTL): a reader further behind than this misses
    /// appends. 7 days by default.
    pub retention: Duration,
}

impl Default for FeedConfig {
    fn default() -> Self {
        FeedConfig {
            slices: 64,
            bucket: Duration::from_secs(3600),
            window: Duration::from_secs(20),
            help_after: Duration::from_secs(5),
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// What the keyspace's `feed_settings` row says, with this store's timings.
#[derive(Debug)]
pub(crate) struct Feed {
    pub(crate) slices: u32,
    bucket_us: i64,
    since_us: i64,
    window_us: i64,
    help_after_us: i64,
    ttl_secs: i32,
    insert_intent: PreparedStatement,
    delete_intent: PreparedStatement,
    select_intents: PreparedStatement,
    /// A follower's saved position in a slice, read and written at the configured consistency.
    select_position: PreparedStatement,
    save_position: PreparedStatement,
    stats: FeedCounters,
}

#[derive(Debug, Default)]
struct FeedCounters {
    delivered: AtomicU64,
    voided: AtomicU64,
    helped: AtomicU64,
}

/// What the feed readers of one [`CassandraStore`] (and its clones) settled since it
/// connected ([`CassandraStore::feed_stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeedStats {
    /// Intents delivered (their append committed).
    pub delivered: u64,
    /// Intents voided (another commit holds their positions).
    pub voided: u64,
    /// Intents whose transaction a reader sent itself and which applied.
    pub helped: u64,
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The slice of a sequence (the core's: one rule for every store with a feed).
pub use eventsmith_core::slice_of;

const SETTINGS: &str = "eventsmith";

/// The feed tables (always created; empty without a feed): the intents, the settings and
/// the followers' saved positions.
pub(crate) fn ddl(ks: &str) -> [String; 3] {
    [
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.feed_tracking (follower text, slice int, position text, PRIMARY KEY ((follower), slice))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.feed (slice int, bucket bigint, ts bigint, commit_id uuid, sequence_id uuid, positions list<bigint>, topics list<text>, states list<blob>, idempotency_key text, key_versions frozen<tuple<bigint, bigint>>, PRIMARY KEY ((slice, bucket), ts, commit_id)) WITH CLUSTERING ORDER BY (ts ASC, commit_id ASC) AND compaction = {{'class': 'TimeWindowCompactionStrategy', 'compaction_window_unit': 'HOURS', 'compaction_window_size': 1}}"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.feed_settings (component text PRIMARY KEY, slices int, bucket_us bigint, since_us bigint)"
        ),
    ]
}

/// Records the feed's slice count and bucket width, unless the keyspace has a feed already;
/// then they must agree.
pub(crate) async fn create(
    session: &Session,
    config: &CassandraConfig,
    feed: &FeedConfig,
) -> Result<(), StoreError> {
    if feed.slices == 0 || feed.bucket.is_zero() {
        return Err(StoreError::Config {
            detail: "a feed needs at least one slice and a bucket width above zero".into(),
        });
    }
    let ks = &config.keyspace;
    let mut insert = session
        .prepare(format!(
            "INSERT INTO {ks}.feed_settings (component, slices, bucket_us, since_us) VALUES (?, ?, ?, ?) IF NOT EXISTS"
        ))
        .await
        .map_err(backend)?;
    insert.set_consistency(config.driver_consistency());
    insert.set_serial_consistency(Some(config.driver_serial()));
    session
        .execute_unpaged(
            &insert,
            (SETTINGS, feed.slices as i32, micros(feed.bucket), now_us()),
        )
        .await
        .map_err(backend)?;
    match read_settings(session, config).await? {
        Some((slices, bucket_us, _))
            if slices == feed.slices && bucket_us == micros(feed.bucket) =>
        {
            Ok(())
        }
        Some((slices, bucket_us, _)) => Err(mismatch(ks, feed, slices, bucket_us)),
        None => Err(backend(
            "the feed's settings were written but cannot be read",
        )),
    }
}

fn mismatch(ks: &str, feed: &FeedConfig, slices: u32, bucket_us: i64) -> StoreError {
    StoreError::Config {
        detail: format!(
            "keyspace {ks} has a feed of {slices} slices and {bucket_us} µs buckets, but the configuration asks for {} slices and {} µs buckets (fixed at creation)",
            feed.slices,
            micros(feed.bucket)
        ),
    }
}

/// How many of a page's intents have their rows read at once.
const SETTLE_READS: usize = 16;

/// The keyspace's feed settings (slices, bucket width, creation time), seen at SERIAL when
/// missing.
async fn read_settings(
    session: &Session,
    config: &CassandraConfig,
) -> Result<Option<(u32, i64, i64)>, StoreError> {
    let ks = &config.keyspace;
    let select = session
        .prepare(format!(
            "SELECT slices, bucket_us, since_us FROM {ks}.feed_settings WHERE component = ?"
        ))
        .await
        .map_err(backend)?;
    let row = crate::read_or_serial(config, &select, |select| async move {
        session
            .execute_unpaged(&select, (SETTINGS,))
            .await
            .map_err(read_error)?
            .into_rows_result()
            .map_err(backend)?
            .maybe_first_row::<(Option<i32>, Option<i64>, Option<i64>)>()
            .map_err(backend)
    })
    .await?;
    match row {
        Some((Some(slices), Some(bucket_us), Some(since_us))) if slices > 0 && bucket_us > 0 => {
            Ok(Some((slices as u32, bucket_us, since_us)))
        }
        Some(_) => Err(StoreError::Corrupt {
            detail: format!("keyspace {ks}: invalid feed settings"),
            source: None,
        }),
        None => Ok(None),
    }
}

/// Opens the keyspace's feed, if it has one, for a store that connects.
pub(crate) async fn open(
    session: &Session,
    config: &CassandraConfig,
) -> Result<Option<Feed>, StoreError> {
    let ks = &config.keyspace;
    let settings = read_settings(session, config).await?;
    let Some((slices, bucket_us, since_us)) = settings else {
        return match config.feed {
            Some(_) => Err(StoreError::Config {
                detail: format!(
                    "keyspace {ks} has no feed: run CassandraStore::create_schema with CassandraConfig::feed set"
                ),
            }),
            None => Ok(None),
        };
    };
    if let Some(feed) = &config.feed
        && (feed.slices != slices || micros(feed.bucket) != bucket_us)
    {
        return Err(mismatch(ks, feed, slices, bucket_us));
    }
    // A store configured without a feed on a keyspace that has one still writes to it, with
    // the default timings.
    let timing = config.feed.unwrap_or_default();
    let mut insert_intent = session
        .prepare(format!(
            "INSERT INTO {ks}.feed (slice, bucket, ts, commit_id, sequence_id, positions, topics, states, idempotency_key, key_versions) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?"
        ))
        .await
        .map_err(backend)?;
    insert_intent.set_consistency(config.driver_consistency());
    // A plain insert of fixed values: sending it twice writes the same row.
    insert_intent.set_is_idempotent(true);
    let mut delete_intent = session
        .prepare(format!(
            "DELETE FROM {ks}.feed WHERE slice = ? AND bucket = ? AND ts = ? AND commit_id = ?"
        ))
        .await
        .map_err(backend)?;
    delete_intent.set_consistency(config.driver_consistency());
    delete_intent.set_is_idempotent(true);
    let mut select_intents = session
        .prepare(format!(
            "SELECT ts, commit_id, sequence_id, positions, topics, states, idempotency_key, key_versions FROM {ks}.feed WHERE slice = ? AND bucket = ? AND ts > ?"
        ))
        .await
        .map_err(backend)?;
    select_intents.set_consistency(config.driver_consistency());
    select_intents.set_page_size(500);
    select_intents.set_is_idempotent(true);
    // Saved positions are plain writes: in Delivery::Idempotent mode a position is saved
    // after the follower's effects, and one lease per slice keeps a single writer of it (one
    // that stalled past its lease may write an older position back, which only redelivers).
    let mut select_position = session
        .prepare(format!(
            "SELECT position FROM {ks}.feed_tracking WHERE follower = ? AND slice = ?"
        ))
        .await
        .map_err(backend)?;
    select_position.set_consistency(config.driver_consistency());
    select_position.set_is_idempotent(true);
    let mut save_position = session
        .prepare(format!(
            "INSERT INTO {ks}.feed_tracking (follower, slice, position) VALUES (?, ?, ?)"
        ))
        .await
        .map_err(backend)?;
    save_position.set_consistency(config.driver_consistency());
    save_position.set_is_idempotent(true);
    Ok(Some(Feed {
        slices,
        bucket_us,
        since_us,
        window_us: micros(timing.window).max(1),
        help_after_us: micros(timing.help_after),
        ttl_secs: i32::try_from(timing.retention.as_secs().max(1)).unwrap_or(i32::MAX),
        insert_intent,
        delete_intent,
        select_intents,
        select_position,
        save_position,
        stats: FeedCounters::default(),
    }))
}

/// An intent row: everything needed to send its append's transaction again.
#[derive(Debug, Clone)]
struct Intent {
    ts: i64,
    commit_id: Uuid,
    sequence_id: Uuid,
    positions: Vec<i64>,
    topics: Vec<String>,
    states: Vec<Vec<u8>>,
    key: Option<(IdempotencyKey, PriorAppend)>,
}

type IntentRow = (
    i64,
    Uuid,
    Uuid,
    Option<Vec<i64>>,
    Option<Vec<String>>,
    Option<Vec<Vec<u8>>>,
    Option<String>,
    Option<(i64, i64)>,
);

fn intent_of(row: IntentRow) -> Result<Intent, StoreError> {
    let (ts, commit_id, sequence_id, positions, topics, states, key, key_versions) = row;
    let (positions, topics, states) = (
        positions.unwrap_or_default(),
        topics.unwrap_or_default(),
        states.unwrap_or_default(),
    );
    if positions.is_empty() || positions.len() != topics.len() || positions.len() != states.len() {
        return Err(StoreError::Corrupt {
            detail: format!("feed intent {commit_id} has inconsistent rows"),
            source: None,
        });
    }
    let key = match (key, key_versions) {
        (Some(key), Some((first, last))) => Some((
            IdempotencyKey::new(&key).map_err(|e| StoreError::Corrupt {
                detail: format!("feed intent {commit_id}: {e}"),
                source: None,
            })?,
            PriorAppend {
                sequence_id,
                versions: first.max(0) as u64..=last.max(0) as u64,
            },
        )),
        _ => None,
    };
    Ok(Intent {
        ts,
        commit_id,
        sequence_id,
        positions,
        topics,
        states,
        key,
    })
}

/// Where an intent is stored: its partition and timestamp (with its commit id, its key).
#[derive(Debug, Clone, Copy)]
pub(crate) struct IntentAt {
    slice: i32,
    bucket: i64,
    ts: i64,
}

/// Where a reader of one slice is: every intent at or before the horizon is settled, and so
/// is every intent after it whose commit id is listed. Serialisable with `Display` and
/// `FromStr` (`SLICE@HORIZON[,COMMIT:TS]…`), so that a follower can save it and resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlicePosition {
    slice: u32,
    /// Microseconds since the epoch, by the writers' clocks.
    horizon: i64,
    /// Intents settled after the horizon: commit id -> ts.
    settled: BTreeMap<Uuid, i64>,
}

impl SlicePosition {
    /// The slice this position is in.
    pub fn slice(&self) -> u32 {
        self.slice
    }

    /// Every intent with a timestamp (microseconds since the epoch, writer's clock) at or
    /// before this has been settled.
    pub fn horizon_micros(&self) -> i64 {
        self.horizon
    }
}

impl fmt::Display for SlicePosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.slice, self.horizon)?;
        for (commit, ts) in &self.settled {
            write!(f, ",{}:{ts}", commit.simple())?;
        }
        Ok(())
    }
}

fn bad_position(s: &str) -> StoreError {
    StoreError::Config {
        detail: format!("{s:?} is not a feed position"),
    }
}

impl FromStr for SlicePosition {
    type Err = StoreError;

    /// Parses what `Display` wrote.
    fn from_str(s: &str) -> Result<Self, StoreError> {
        let mut parts = s.split(',');
        let head = parts.next().unwrap_or_default();
        let (slice, horizon) = head.split_once('@').ok_or_else(|| bad_position(s))?;
        let mut position = SlicePosition {
            slice: slice.parse().map_err(|_| bad_position(s))?,
            horizon: horizon.parse().map_err(|_| bad_position(s))?,
            settled: BTreeMap::new(),
        };
        for part in parts {
            let (commit, ts) = part.split_once(':').ok_or_else(|| bad_position(s))?;
            position.settled.insert(
                Uuid::try_parse(commit).map_err(|_| bad_position(s))?,
                ts.parse().map_err(|_| bad_position(s))?,
            );
        }
        Ok(position)
    }
}

/// Where a reader of the whole feed is: one [`SlicePosition`] per slice. Serialisable with
/// `Display` and `FromStr` (the slices' positions separated by `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedPosition {
    slices: Vec<SlicePosition>,
}

impl FeedPosition {
    /// The position of each slice, by slice number.
    pub fn slices(&self) -> &[SlicePosition] {
        &self.slices
    }
}

impl fmt::Display for FeedPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, slice) in self.slices.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            write!(f, "{slice}")?;
        }
        Ok(())
    }
}

impl FromStr for FeedPosition {
    type Err = StoreError;

    /// Parses what `Display` wrote; the slices must be 0, 1, … in order.
    fn from_str(s: &str) -> Result<Self, StoreError> {
        let slices = s
            .split('/')
            .map(str::parse)
            .collect::<Result<Vec<SlicePosition>, _>>()?;
        if slices
            .iter()
            .enumerate()
            .any(|(i, p)| p.slice as usize != i)
        {
            return Err(bad_position(s));
        }
        Ok(FeedPosition { slices })
    }
}

/// One committed append, as the feed delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedAppend {
    /// The append's commit id (the same in its item rows).
    pub commit_id: Uuid,
    /// Its items, in position order, all of one sequence.
    pub items: Vec<IntegerSequencedItem>,
}

/// What one read of a slice found ([`CassandraStore::read_feed_slice`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlicePage {
    /// The appends delivered, in version order per sequence.
    pub appends: Vec<FeedAppend>,
    /// The position to read the next page after.
    pub position: SlicePosition,
    /// The intents voided in this read, as (sequence id, commit id): another commit holds
    /// their positions, so those appends never applied and never will.
    pub voided: Vec<(Uuid, Uuid)>,
    /// Intents still waiting for their writer (or a helper): read again later.
    pub waiting: usize,
}

impl SlicePage {
    /// The delivered items, append after append.
    pub fn items(&self) -> impl Iterator<Item = &IntegerSequencedItem> {
        self.appends.iter().flat_map(|a| a.items.iter())
    }
}

enum Settled {
    Deliver,
    Void,
    Wait,
}

/// A slice number outside the feed is a [`StoreError::Config`].
fn check_slice(feed: &Feed, slice: u32) -> Result<(), StoreError> {
    if slice >= feed.slices {
        return Err(StoreError::Config {
            detail: format!("slice {slice} of a feed of {} slices", feed.slices),
        });
    }
    Ok(())
}

fn no_feed() -> StoreError {
    StoreError::Unsupported {
        capability: "the feed",
        reason: NO_FEED,
    }
}

/// Why a store without a feed has none.
pub(crate) const NO_FEED: &str = "the keyspace was created without a feed (set CassandraConfig::feed and run create_schema; it costs one more write per append)";

impl CassandraStore {
    pub(crate) fn feed(&self) -> Result<&Feed, StoreError> {
        self.inner.feed.as_ref().ok_or_else(no_feed)
    }

    /// The slice `sequence_id`'s appends are in.
    pub fn feed_slice_of(&self, sequence_id: Uuid) -> Result<u32, StoreError> {
        Ok(slice_of(sequence_id, self.feed()?.slices))
    }

    /// The position before everything the feed has kept: the feed's creation, or the start of
    /// its retention, whichever is later.
    pub fn feed_start(&self) -> Result<FeedPosition, StoreError> {
        let feed = self.feed()?;
        Ok(FeedPosition {
            slices: (0..feed.slices)
                .map(|slice| self.slice_start(feed, slice))
                .collect(),
        })
    }

    /// The position of a reader that wants what is appended from now on: a window before
    /// the present (so it may deliver a few appends of the last window too).
    pub fn feed_now(&self) -> Result<FeedPosition, StoreError> {
        let feed = self.feed()?;
        let horizon = now_us() - feed.window_us;
        Ok(FeedPosition {
            slices: (0..feed.slices)
                .map(|slice| SlicePosition {
                    slice,
                    horizon,
                    settled: BTreeMap::new(),
                })
                .collect(),
        })
    }

    fn slice_start(&self, feed: &Feed, slice: u32) -> SlicePosition {
        let retained = now_us().saturating_sub(i64::from(feed.ttl_secs) * 1_000_000);
        SlicePosition {
            slice,
            horizon: feed.since_us.max(retained) - feed.window_us,
            settled: BTreeMap::new(),
        }
    }

    /// How the feed readers of this store settled intents since it connected.
    pub fn feed_stats(&self) -> FeedStats {
        match &self.inner.feed {
            None => FeedStats::default(),
            Some(feed) => FeedStats {
                delivered: feed.stats.delivered.load(Ordering::Relaxed),
                voided: feed.stats.voided.load(Ordering::Relaxed),
                helped: feed.stats.helped.load(Ordering::Relaxed),
            },
        }
    }

    /// Writes an append's intent (step 1 of the protocol), before its transaction.
    pub(crate) async fn write_intent(
        &self,
        feed: &Feed,
        commit_id: Uuid,
        values: &[(Uuid, i64, String, Vec<u8>, Uuid)],
        key: Option<(&IdempotencyKey, &PriorAppend)>,
    ) -> Result<IntentAt, StoreError> {
        let sequence_id = values[0].0;
        let ts = now_us();
        let at = IntentAt {
            slice: slice_of(sequence_id, feed.slices) as i32,
            bucket: ts.div_euclid(feed.bucket_us),
            ts,
        };
        let row = (
            slice_of(sequence_id, feed.slices) as i32,
            ts.div_euclid(feed.bucket_us),
            ts,
            commit_id,
            sequence_id,
            values.iter().map(|v| v.1).collect::<Vec<i64>>(),
            values.iter().map(|v| v.2.clone()).collect::<Vec<String>>(),
            values.iter().map(|v| v.3.clone()).collect::<Vec<Vec<u8>>>(),
            key.map(|(k, _)| k.as_str().to_owned()),
            key.map(|(_, p)| (*p.versions.start() as i64, *p.versions.end() as i64)),
            feed.ttl_secs,
        );
        let mut last = None;
        for attempt in 0..self.inner.config.resolve_attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 * attempt as u64)).await;
            }
            match self
                .inner
                .session
                .execute_unpaged(&feed.insert_intent, &row)
                .await
            {
                Ok(_) => {
                    last = None;
                    break;
                }
                Err(e) => match classify(e) {
                    Failure::Definite(e) if last.is_none() => return Err(e),
                    // After a try whose outcome is unknown, the intent may be stored.
                    Failure::Definite(e) => last = Some(Box::new(e) as eventsmith_core::BoxError),
                    Failure::Unknown(e) => last = Some(e),
                },
            }
        }
        if let Some(source) = last {
            tracing::warn!(%commit_id, error = %source, "the feed intent's outcome is unknown; the append is not sent");
            return Err(StoreError::OutcomeUnknown { commit_id, source });
        }
        // Readers keep their horizon a window behind: an intent acknowledged later than half
        // of it might reach some of them too late, so it is not committed by its writer.
        let took = now_us() - ts;
        if took > feed.window_us / 2 {
            tracing::warn!(%commit_id, took_us = took, "the feed intent took too long; the append is not sent");
            return Err(StoreError::OutcomeUnknown {
                commit_id,
                source: format!(
                    "the feed intent took {took} µs, more than half the feed window; a reader may still complete the append"
                )
                .into(),
            });
        }
        Ok(at)
    }

    /// Deletes the intent of an append whose transaction was refused because its key was
    /// stored before (a replay): its positions are still free, so a reader would wait
    /// [`help_after`](FeedConfig::help_after) for it, then help and void it, while the
    /// sequence's later intents wait behind it. Refused for good, it can never apply, so
    /// deleting it loses nothing; a failed delete only leaves it to be voided that way.
    pub(crate) async fn delete_intent(&self, feed: &Feed, at: IntentAt, commit_id: Uuid) {
        if let Err(e) = self
            .inner
            .session
            .execute_unpaged(&feed.delete_intent, (at.slice, at.bucket, at.ts, commit_id))
            .await
        {
            tracing::debug!(%commit_id, error = %e, "cannot delete a refused append's feed intent; a reader voids it");
        }
    }

    /// Reads one slice of the feed after `after`: settles at most `limit` intents not settled
    /// before (delivering, voiding or helping them, see the [module docs](crate::feed)) and
    /// returns the appends delivered, in version order per sequence, with the position to read
    /// the next page after. Delivery is at least once across a reader's crash (resume from the
    /// last position it saved) and exactly once from one position. Returns
    /// [`StoreError::Unsupported`] when the keyspace has no feed.
    ///
    /// # Cancellation
    ///
    /// Dropping the future abandons the read; `after` is unchanged, so nothing is lost. A
    /// transaction it sent to help an intent may still apply: that append then commits and is
    /// delivered by the next read, as if its writer had been slow.
    pub async fn read_feed_slice(
        &self,
        after: &SlicePosition,
        limit: usize,
    ) -> Result<SlicePage, StoreError> {
        let feed = self.feed()?;
        check_slice(feed, after.slice)?;
        let now = now_us();
        let mut position = after.clone();
        // Intents after the horizon, in (ts, commit id) order, bucket after bucket; writers
        // whose clocks run ahead write into later buckets, up to a window ahead.
        // At most one more than `limit`: the first left for the next read.
        let limit = limit.max(1);
        let mut intents = Vec::new();
        let first = position
            .horizon
            .saturating_add(1)
            .div_euclid(feed.bucket_us);
        let last = now
            .saturating_add(feed.window_us)
            .div_euclid(feed.bucket_us);
        for bucket in first..=last {
            if intents.len() > limit {
                break;
            }
            let mut paging = PagingState::start();
            loop {
                let (result, response) = self
                    .inner
                    .session
                    .execute_single_page(
                        &feed.select_intents,
                        (position.slice as i32, bucket, position.horizon),
                        paging,
                    )
                    .await
                    .map_err(read_error)?;
                for row in result
                    .into_rows_result()
                    .map_err(backend)?
                    .rows::<IntentRow>()
                    .map_err(backend)?
                {
                    let intent = intent_of(row.map_err(backend)?)?;
                    if !position.settled.contains_key(&intent.commit_id) {
                        intents.push(intent);
                    }
                }
                if intents.len() > limit {
                    break;
                }
                match response.into_paging_control_flow() {
                    std::ops::ControlFlow::Break(()) => break,
                    std::ops::ControlFlow::Continue(next) => paging = next,
                }
            }
        }
        let (mut voided, mut waiting) = (Vec::new(), 0);
        let mut delivered: Vec<Intent> = Vec::new();
        let mut waiting_sequences = HashSet::new();
        // The earliest intent not settled by this read: the horizon stays before it.
        let mut first_unsettled: Option<i64> = None;
        if intents.len() > limit {
            first_unsettled = Some(intents[limit].ts);
            intents.truncate(limit);
        }
        // Most intents' transactions finished before a reader gets to them: their rows are
        // read at the configured consistency, all of the page's at once (reads only; what
        // they find is final). Only an intent whose rows are not found is settled further,
        // one after the other, in order.
        let mut first_looks = Vec::with_capacity(intents.len());
        for chunk in intents.chunks(SETTLE_READS) {
            let reads = chunk
                .iter()
                .map(|i| self.settled_rows(i.sequence_id, &i.positions, i.commit_id));
            first_looks.extend(join_all(reads).await);
        }
        for (intent, first_look) in intents.into_iter().zip(first_looks) {
            // Versions in order: nothing of a sequence after one of its intents that waits.
            let settled = if waiting_sequences.contains(&intent.sequence_id) {
                Settled::Wait
            } else {
                match first_look? {
                    Resolution::Ours => Settled::Deliver,
                    Resolution::Theirs(_) => Settled::Void,
                    Resolution::Absent => self.settle(feed, &intent, now).await?,
                }
            };
            match settled {
                Settled::Deliver => {
                    position.settled.insert(intent.commit_id, intent.ts);
                    delivered.push(intent);
                }
                Settled::Void => {
                    position.settled.insert(intent.commit_id, intent.ts);
                    voided.push((intent.sequence_id, intent.commit_id));
                }
                Settled::Wait => {
                    waiting += 1;
                    waiting_sequences.insert(intent.sequence_id);
                    first_unsettled.get_or_insert(intent.ts);
                }
            }
        }
        let mut horizon = now - feed.window_us;
        if let Some(ts) = first_unsettled {
            horizon = horizon.min(ts - 1);
        }
        position.horizon = position.horizon.max(horizon);
        let h = position.horizon;
        position.settled.retain(|_, ts| *ts > h);
        feed.stats
            .delivered
            .fetch_add(delivered.len() as u64, Ordering::Relaxed);
        feed.stats
            .voided
            .fetch_add(voided.len() as u64, Ordering::Relaxed);
        Ok(SlicePage {
            appends: in_version_order(delivered),
            position,
            voided,
            waiting,
        })
    }

    /// Reads every slice once after `after` ([`read_feed_slice`](Self::read_feed_slice) on
    /// each, at most `limit_per_slice` intents settled per slice): the appends delivered and
    /// the next position. Slices are read one after the other.
    ///
    /// # Cancellation
    ///
    /// As for [`read_feed_slice`](Self::read_feed_slice): `after` is unchanged, and a helping
    /// transaction in flight may still apply, to be delivered by the next read.
    pub async fn read_feed(
        &self,
        after: &FeedPosition,
        limit_per_slice: usize,
    ) -> Result<(Vec<FeedAppend>, FeedPosition), StoreError> {
        let feed = self.feed()?;
        if after.slices.len() != feed.slices as usize {
            return Err(StoreError::Config {
                detail: format!(
                    "a position of {} slices on a feed of {}",
                    after.slices.len(),
                    feed.slices
                ),
            });
        }
        let mut appends = Vec::new();
        let mut slices = Vec::with_capacity(after.slices.len());
        for slice in &after.slices {
            let page = self.read_feed_slice(slice, limit_per_slice).await?;
            appends.extend(page.appends);
            slices.push(page.position);
        }
        Ok((appends, FeedPosition { slices }))
    }

    /// [`ItemStore::read_feed_page`](eventsmith_core::ItemStore::read_feed_page):
    /// [`read_feed_slice`](Self::read_feed_slice) from `after` (a [`SlicePosition`] as text),
    /// or from the slice's [start](Self::feed_start) when `None`.
    pub(crate) async fn feed_page(
        &self,
        slice: u32,
        after: Option<&str>,
        limit: usize,
    ) -> Result<FeedPage, StoreError> {
        let feed = self.feed()?;
        check_slice(feed, slice)?;
        let after = match after {
            None => self.slice_start(feed, slice),
            Some(text) => {
                let position: SlicePosition = text.parse()?;
                // A position of another slice would read that slice under this one's name.
                if position.slice != slice {
                    return Err(StoreError::Config {
                        detail: format!(
                            "{text:?} is a position in feed slice {}, not in slice {slice}",
                            position.slice
                        ),
                    });
                }
                position
            }
        };
        let page = self.read_feed_slice(&after, limit).await?;
        Ok(FeedPage {
            appends: page.appends.into_iter().map(|a| a.items).collect(),
            position: page.position.to_string(),
        })
    }

    /// [`ItemStore::feed_position`](eventsmith_core::ItemStore::feed_position).
    pub(crate) async fn saved_feed_position(
        &self,
        follower: &str,
        slice: u32,
    ) -> Result<Option<String>, StoreError> {
        let feed = self.feed()?;
        check_slice(feed, slice)?;
        let row = self
            .inner
            .session
            .execute_unpaged(&feed.select_position, (follower, slice as i32))
            .await
            .map_err(read_error)?
            .into_rows_result()
            .map_err(backend)?
            .maybe_first_row::<(Option<String>,)>()
            .map_err(backend)?;
        Ok(row.and_then(|(position,)| position))
    }

    /// [`ItemStore::save_feed_position`](eventsmith_core::ItemStore::save_feed_position).
    pub(crate) async fn store_feed_position(
        &self,
        follower: &str,
        slice: u32,
        position: &str,
    ) -> Result<(), StoreError> {
        let feed = self.feed()?;
        check_slice(feed, slice)?;
        self.inner
            .session
            .execute_unpaged(&feed.save_position, (follower, slice as i32, position))
            .await
            .map_err(read_error)?;
        Ok(())
    }

    /// Settles one intent whose rows were not found at the configured consistency (step 3 of
    /// the protocol).
    async fn settle(&self, feed: &Feed, intent: &Intent, now: i64) -> Result<Settled, StoreError> {
        let seq = intent.sequence_id;
        // At SERIAL, which completes a transaction still in flight before saying it is absent.
        match self
            .resolve(Table::Integer, seq, &intent.positions, intent.commit_id)
            .await?
        {
            Resolution::Ours => return Ok(Settled::Deliver),
            Resolution::Theirs(_) => return Ok(Settled::Void),
            Resolution::Absent if now - intent.ts < feed.help_after_us => return Ok(Settled::Wait),
            Resolution::Absent => {}
        }
        // Help: the identical conditional batch, with the intent's commit id and key.
        let values: Vec<(Uuid, i64, String, Vec<u8>, Uuid)> = intent
            .positions
            .iter()
            .zip(&intent.topics)
            .zip(&intent.states)
            .map(|((p, t), s)| (seq, *p, t.clone(), s.clone(), intent.commit_id))
            .collect();
        let key = intent.key.as_ref().map(|(k, p)| (k, p));
        tracing::info!(commit_id = %intent.commit_id, sequence_id = %seq, "helping a feed intent whose append has not applied");
        match self.send_lwt(Table::Integer, &values, key).await {
            Ok(Applied::Yes) => {
                feed.stats.helped.fetch_add(1, Ordering::Relaxed);
                Ok(Settled::Deliver)
            }
            // Refused: its conditions (free positions, a new key) are false for good.
            Ok(Applied::No { .. }) => Ok(
                match self
                    .resolve(Table::Integer, seq, &intent.positions, intent.commit_id)
                    .await?
                {
                    Resolution::Ours => Settled::Deliver,
                    Resolution::Theirs(_) | Resolution::Absent => Settled::Void,
                },
            ),
            // Unknown or failed: the next read resolves it again.
            Err(Failure::Unknown(e)) => {
                tracing::debug!(commit_id = %intent.commit_id, error = %e, "helping: outcome unknown, settled by a later read");
                Ok(Settled::Wait)
            }
            Err(Failure::Definite(e)) => Err(e),
        }
    }
}

/// The delivered intents' appends, the order of the read kept across sequences but each
/// sequence's appends sorted by version (writers' clocks may disagree on which came first).
fn in_version_order(delivered: Vec<Intent>) -> Vec<FeedAppend> {
    let mut by_sequence: HashMap<Uuid, Vec<usize>> = HashMap::new();
    for (i, intent) in delivered.iter().enumerate() {
        by_sequence.entry(intent.sequence_id).or_default().push(i);
    }
    let mut order: Vec<usize> = (0..delivered.len()).collect();
    for slots in by_sequence.values() {
        let mut sorted = slots.clone();
        sorted.sort_by_key(|&i| delivered[i].positions.iter().min().copied());
        for (slot, i) in slots.iter().zip(sorted) {
            order[*slot] = i;
        }
    }
    order
        .into_iter()
        .map(|i| {
            let intent = &delivered[i];
            let mut items: Vec<IntegerSequencedItem> = intent
                .positions
                .iter()
                .zip(&intent.topics)
                .zip(&intent.states)
                .map(|((p, t), s)| SequencedItem {
                    sequence_id: intent.sequence_id,
                    position: (*p).max(0) as Version,
                    topic: t.clone(),
                    payload: s.clone(),
                })
                .collect();
            items.sort_by_key(|i| i.position);
            FeedAppend {
                commit_id: intent.commit_id,
                items,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_through_strings() {
        let mut slice = SlicePosition {
            slice: 3,
            horizon: -5,
            settled: BTreeMap::new(),
        };
        assert_eq!(slice.to_string().parse::<SlicePosition>().unwrap(), slice);
        slice.settled.insert(Uuid::new_v4(), 17);
        slice.settled.insert(Uuid::new_v4(), 18);
        assert_eq!(slice.to_string().parse::<SlicePosition>().unwrap(), slice);
        let mut other = slice.clone();
        other.slice = 0;
        let feed = FeedPosition {
            slices: vec![other, SlicePosition { slice: 1, ..slice }],
        };
        assert_eq!(feed.to_string().parse::<FeedPosition>().unwrap(), feed);
        for bad in ["", "1", "x@1", "1@1,nope", "1@1,abc:1", "1@2/0@2"] {
            assert!(bad.parse::<FeedPosition>().is_err(), "{bad:?}");
        }
    }

    fn intent(sequence_id: Uuid, positions: &[i64], ts: i64) -> Intent {
        Intent {
            ts,
            commit_id: Uuid::new_v4(),
            sequence_id,
            positions: positions.to_vec(),
            topics: positions.iter().map(|_| "t".to_owned()).collect(),
            states: positions
                .iter()
                .map(|p| p.to_string().into_bytes())
                .collect(),
            key: None,
        }
    }

    /// Writers' clocks may disagree: a sequence's later append may carry the earlier
    /// timestamp. A page delivers each sequence in version order, keeping the slots of the
    /// read order across sequences.
    #[test]
    fn a_page_delivers_each_sequence_in_version_order() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let delivered = in_version_order(vec![
            intent(a, &[3], 1),
            intent(b, &[1], 2),
            intent(a, &[1, 2], 3),
            intent(b, &[2], 4),
        ]);
        let order: Vec<(Uuid, Vec<u64>)> = delivered
            .iter()
            .map(|d| {
                (
                    d.items[0].sequence_id,
                    d.items.iter().map(|i| i.position).collect(),
                )
            })
            .collect();
        assert_eq!(
            order,
            vec![(a, vec![1, 2]), (b, vec![1]), (a, vec![3]), (b, vec![2])]
        );
    }

    #[test]
    fn slices_are_stable() {
        let id = Uuid::from_u128(130);
        assert_eq!(slice_of(id, 64), 2);
        assert_eq!(slice_of(id, 1), 0);
        assert_eq!(slice_of(id, 0), 0);
    }
}
