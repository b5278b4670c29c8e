//! The persistence archetype: sequenced items, their positions and how to select them.

use std::fmt;

use time::OffsetDateTime;
use uuid::Uuid;

/// One stored record: an entry at a position of a sequence.
///
/// The store never looks inside `payload`; encoding, compression and encryption are the
/// mapper's business. `P` is the kind of position: [`Version`] for aggregates
/// ([`IntegerSequencedItem`]) or [`Timestamp`] for unversioned logs ([`TimestampSequencedItem`]).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SequencedItem<P> {
    /// The sequence the item belongs to (for aggregates: the originator id).
    pub sequence_id: Uuid,
    /// The item's position, unique within its sequence.
    pub position: P,
    /// The stable type name of what the payload holds.
    pub topic: String,
    /// The encoded (and possibly compressed and encrypted) payload.
    pub payload: Vec<u8>,
}

/// An aggregate version: the first event of an aggregate is version 1.
pub type Version = u64;

/// An item positioned by an integer version (sequence id = originator id, position = version).
pub type IntegerSequencedItem = SequencedItem<Version>;

/// An item positioned by a timestamp, for unversioned logs such as an audit log.
pub type TimestampSequencedItem = SequencedItem<Timestamp>;

impl<P: fmt::Debug> fmt::Debug for SequencedItem<P> {
    // The payload may be large and is often ciphertext, so only its length is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SequencedItem")
            .field("sequence_id", &self.sequence_id)
            .field("position", &self.position)
            .field("topic", &self.topic)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

/// A point in time with nanosecond resolution, counted from the Unix epoch (UTC).
///
/// Used as the position of timestamp-sequenced items and stored as a signed 64-bit integer,
/// which covers the years 1677 to 2262.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The timestamp `nanos` nanoseconds after the Unix epoch.
    pub const fn from_unix_nanos(nanos: i64) -> Self {
        Timestamp(nanos)
    }

    /// Nanoseconds since the Unix epoch.
    pub const fn unix_nanos(self) -> i64 {
        self.0
    }

    /// The current time.
    pub fn now() -> Self {
        Self::from_datetime(OffsetDateTime::now_utc())
            .expect("the current time is within the range of a timestamp")
    }

    /// Converts a date-time, or `None` when it lies outside the years 1677 to 2262.
    pub fn from_datetime(dt: OffsetDateTime) -> Option<Self> {
        i64::try_from(dt.unix_timestamp_nanos()).ok().map(Timestamp)
    }

    /// The timestamp as a UTC date-time.
    pub fn to_datetime(self) -> OffsetDateTime {
        // Every i64 nanosecond count is a valid OffsetDateTime.
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0))
            .expect("every i64 nanosecond count is a valid date-time")
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_datetime())
    }
}

/// A position of either kind, as named in errors.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Position {
    /// A version of an integer-sequenced item.
    Version(Version),
    /// A timestamp of a timestamp-sequenced item.
    Timestamp(Timestamp),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Version(v) => write!(f, "version {v}"),
            Position::Timestamp(t) => write!(f, "timestamp {t}"),
        }
    }
}

impl From<Version> for Position {
    fn from(v: Version) -> Self {
        Position::Version(v)
    }
}

impl From<Timestamp> for Position {
    fn from(t: Timestamp) -> Self {
        Position::Timestamp(t)
    }
}

/// Which items of one sequence to read: bounds on the position, a limit and an order.
///
/// ```
/// use eventsmith_core::Select;
/// let q: Select<u64> = Select::all().gt(3).lte(10).limit(5).descending();
/// assert!(q.contains(&4) && !q.contains(&3) && !q.contains(&11));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Select<P> {
    /// Only positions strictly greater than this.
    pub gt: Option<P>,
    /// Only positions greater than or equal to this.
    pub gte: Option<P>,
    /// Only positions strictly less than this.
    pub lt: Option<P>,
    /// Only positions less than or equal to this.
    pub lte: Option<P>,
    /// At most this many items (after ordering).
    pub limit: Option<usize>,
    /// Newest first when true; oldest first otherwise.
    pub descending: bool,
}

impl<P> Default for Select<P> {
    fn default() -> Self {
        Select {
            gt: None,
            gte: None,
            lt: None,
            lte: None,
            limit: None,
            descending: false,
        }
    }
}

impl<P: PartialOrd> Select<P> {
    /// Every item, oldest first.
    pub fn all() -> Self {
        Self::default()
    }

    /// Keeps positions greater than `p`.
    pub fn gt(mut self, p: P) -> Self {
        self.gt = Some(p);
        self
    }

    /// Keeps positions greater than or equal to `p`.
    pub fn gte(mut self, p: P) -> Self {
        self.gte = Some(p);
        self
    }

    /// Keeps positions less than `p`.
    pub fn lt(mut self, p: P) -> Self {
        self.lt = Some(p);
        self
    }

    /// Keeps positions less than or equal to `p`.
    pub fn lte(mut self, p: P) -> Self {
        self.lte = Some(p);
        self
    }

    /// Returns at most `n` items.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Newest first.
    pub fn descending(mut self) -> Self {
        self.descending = true;
        self
    }

    /// Whether `p` lies within the bounds (the limit and order are not considered).
    pub fn contains(&self, p: &P) -> bool {
        self.gt.as_ref().is_none_or(|b| p > b)
            && self.gte.as_ref().is_none_or(|b| p >= b)
            && self.lt.as_ref().is_none_or(|b| p < b)
            && self.lte.as_ref().is_none_or(|b| p <= b)
    }
}

/// An integer-sequenced item with its place in the global notification log.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Notification {
    /// Strictly increasing in commit order, contiguous within one appended batch; starts at 1.
    pub id: u64,
    /// The item as appended.
    pub item: IntegerSequencedItem,
}
