//! Apache Cassandra / ScyllaDB event store for eventsmith, on the `scylla` driver.
//!
//! One partition per aggregate (the sequence id is the partition key, the position the
//! clustering key), and every item row is written only through a lightweight transaction:
//! one item with `INSERT … IF NOT EXISTS`, several as one single-partition conditional batch,
//! which Cassandra applies atomically and in isolation. Two writers racing for a version both
//! run Paxos; exactly one applies, the other gets [`AppendError::Conflict`].
//!
//! ```no_run
//! use eventsmith_scylla::{CassandraConfig, CassandraStore};
//! # async fn run() -> Result<(), eventsmith_core::StoreError> {
//! let config = CassandraConfig::new(["127.0.0.1:9042"], "events")?;
//! CassandraStore::create_schema(&config).await?; // once, on request
//! let store = CassandraStore::connect(config).await?;
//! # Ok(()) }
//! ```
//!
//! A configuration can also be parsed from a URL, e.g.
//! `cassandra://10.0.0.1:9042,10.0.0.2:9042/events?replication_factor=3&consistency=quorum`
//! (see [`CassandraConfig`]'s `FromStr`).
//!
//! # Unknown outcomes
//!
//! A timeout or a broken connection during an LWT append does not say whether it applied.
//! Every append carries a fresh commit id, stored in each row. When the outcome is unknown,
//! the store reads the positions at SERIAL consistency (which completes any Paxos round in
//! flight): all rows carry our commit id → success; a row carries another → conflict; no row
//! → the identical batch is sent again. A resend refused because of rows carrying our own
//! commit id (the first try applied late, e.g. through a coordinator that was frozen) is a
//! success. Only when that resolution fails too does the append return
//! [`StoreError::OutcomeUnknown`] with the commit id; [`CassandraStore::outcome_stats`] counts
//! how unknown outcomes were resolved.
//!
//! # Frozen nodes
//!
//! A node that stops answering but keeps its TCP connections (SIGSTOP, a long GC pause, a hung
//! host) is taken out of the rotation by the driver's heartbeats:
//! [`CassandraConfig::heartbeat_interval`] and [`CassandraConfig::heartbeat_timeout`] (3 s
//! each by default, against the driver's 30 s). Measured on a 3-node cluster with one node
//! frozen for 20 s, appends kept 91 to 109 % of their rate with them, and fell below 1 %
//! with the driver's defaults (RELIABILITY.md).
//!
//! # What Cassandra cannot do
//!
//! - A conditional batch cannot span partitions, so one atomic append covers one sequence:
//!   [`Capabilities::cross_sequence_batches`] is missing. Repositories append one aggregate
//!   at a time, so this never limits them.
//! - There is no global notification log ([`Capabilities::notifications`] is missing): an item
//!   and a log entry cannot be written atomically, and an LWT-sequenced log would cost two or
//!   more Paxos rounds per append on one hot partition. ARCHITECTURE.md compares the options.
//!   What it offers instead is the [feed] ([`Capabilities::feed`], opt-in per keyspace
//!   with [`CassandraConfig::feed`]): every committed append, across aggregates, at least
//!   once, in version order per sequence, completed by its readers when its writer died
//!   between its two steps; one more write per append. The store trait has what followers
//!   on it need in [`Delivery::Idempotent`] mode: pages ([`ItemStore::read_feed_page`]),
//!   saved positions, one lease per slice ([`ItemStore::claim_lease`], lightweight
//!   transactions with a TTL) and announcements of live runners (docs/cassandra.md,
//!   "Followers on the feed").
//!
//! # Consistency
//!
//! Commits and reads use [`Consistency`] (QUORUM by default, or LOCAL_QUORUM), Paxos uses
//! [`SerialConsistency`] (SERIAL or LOCAL_SERIAL). One store never mixes serial levels on the
//! same data; give every writer of a keyspace the same configuration.

pub mod feed;
mod lease;
mod projection;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use scylla::client::PoolSize;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{DbError, ExecutionError, PrepareError, RequestAttemptError};
use scylla::policies::speculative_execution::SimpleSpeculativeExecutionPolicy;
use scylla::response::PagingState;
use scylla::response::query_result::QueryResult;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, Row};
use uuid::Uuid;

pub use feed::{FeedAppend, FeedConfig, FeedPosition, FeedStats, SlicePage, SlicePosition};
pub use projection::{CqlParam, CqlWrite};

/// The version of the keyspace's tables this build creates and reads, stamped in its
/// `eventsmith_schema` table by [`CassandraStore::create_schema`] and checked by
/// [`CassandraStore::connect`]: 1 was before idempotency keys, 2 has them, 3 has the
/// [feed]'s tables, 4 the followers' tables (`leases`, `feed_runners`, `feed_tracking`).
pub const SCHEMA_VERSION: i32 = 4;

use eventsmith_core::backend::{
    check_append, check_batch_unique, check_version, keyed_batch, outcome, rows,
};
use eventsmith_core::{
    AppendError, BoxError, Capabilities, Delivery, FeedPage, IntegerSequencedItem, Inventory,
    ItemKind, ItemStore, Lease, LeaseClaim, Notification, Position, Select, SequencedItem,
    SnapshotStore, StoreError, Support, Timestamp, TimestampSequencedItem, Version,
};
use eventsmith_core::{IdempotencyKey, KeyedAppend, PriorAppend};

/// Consistency of commits and reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// A majority of all replicas.
    #[default]
    Quorum,
    /// A majority of the replicas in the local datacenter.
    LocalQuorum,
}

/// Consistency of the Paxos phase of lightweight transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SerialConsistency {
    /// Linearizable across all datacenters.
    #[default]
    Serial,
    /// Linearizable within the local datacenter.
    LocalSerial,
}

/// Keyspace replication, used by [`CassandraStore::create_schema`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replication {
    /// `SimpleStrategy` with this many replicas (single-datacenter clusters, tests).
    Simple {
        /// Replicas of each partition.
        replication_factor: u32,
    },
    /// `NetworkTopologyStrategy` with replicas per datacenter.
    NetworkTopology(Vec<(String, u32)>),
}

/// Speculative execution of reads ([`CassandraConfig::speculative_execution`]): a read that
/// has not answered after `delay` is sent to the next node too, up to `max_extra` more times,
/// and the first answer wins. Appends never use it: a lightweight transaction sent twice at
/// once would race with itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeculativeExecution {
    /// Extra attempts after the first.
    pub max_extra: usize,
    /// How long each attempt waits before the next one starts.
    pub delay: Duration,
}

/// Where and how a [`CassandraStore`] connects.
#[derive(Debug, Clone)]
pub struct CassandraConfig {
    nodes: Vec<String>,
    keyspace: String,
    /// Consistency of commits and reads.
    pub consistency: Consistency,
    /// Consistency of the Paxos phase.
    pub serial_consistency: SerialConsistency,
    /// Replication of the keyspace, for [`CassandraStore::create_schema`] to create it with.
    /// `None` (the default) creates no keyspace: `create_schema` then needs the keyspace to
    /// exist, and refuses with [`StoreError::Config`] otherwise, so that no keyspace is ever
    /// created with a replication nobody chose (a single replica loses data with its node).
    /// A development node takes `Some(Replication::Simple { replication_factor: 1 })`.
    pub replication: Option<Replication>,
    /// How long to wait for a connection.
    pub connect_timeout: Duration,
    /// How many times an append with an unknown outcome is resolved before giving up.
    pub resolve_attempts: usize,
    /// Addresses that nodes broadcast, mapped to addresses this client can reach (behind NAT
    /// or a proxy). Contact points are never translated.
    pub address_map: HashMap<SocketAddr, SocketAddr>,
    /// Client-side limit on one request (all its attempts): past it the request fails, and an
    /// append's outcome is unknown (and resolved). `None` waits as long as the server does.
    pub request_timeout: Option<Duration>,
    /// Speculative execution of reads; `None` for none.
    pub speculative_execution: Option<SpeculativeExecution>,
    /// Connections to each node; `None` for the driver's default (one per node on Cassandra,
    /// one per shard on ScyllaDB). More connections do not help against a frozen node: the
    /// requests it holds are bounded by the callers, not by the connections.
    pub connections_per_node: Option<usize>,
    /// How often every connection is probed with a heartbeat (CQL `OPTIONS`).
    pub heartbeat_interval: Duration,
    /// A connection whose heartbeats go unanswered this long is closed: its requests fail at
    /// once (unknown outcome for appends) and the node gets no new requests until it answers
    /// a new connection. This is what takes a frozen node (SIGSTOP, a long GC pause, a hung
    /// host, whose TCP connections stay open) out of the rotation.
    pub heartbeat_timeout: Duration,
    /// The [feed] of appends across aggregates: `Some` makes
    /// [`CassandraStore::create_schema`] give the keyspace one (its slice count and bucket
    /// width are then fixed), and makes [`CassandraStore::connect`] require it. The feed is
    /// the keyspace's: every store on a keyspace that has one writes to it, whatever this
    /// says, at one more write per append. `None` by default.
    pub feed: Option<FeedConfig>,
}

impl CassandraConfig {
    /// Contact points (`host:port`) and a keyspace name (letters, digits and underscores,
    /// 1 to 48 characters, starting with a letter).
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(
        nodes: I,
        keyspace: &str,
    ) -> Result<Self, StoreError> {
        let nodes: Vec<String> = nodes.into_iter().map(Into::into).collect();
        if nodes.is_empty() {
            return Err(StoreError::Config {
                detail: "no Cassandra contact point given".into(),
            });
        }
        let valid = !keyspace.is_empty()
            && keyspace.len() <= 48
            && keyspace.starts_with(|c: char| c.is_ascii_alphabetic())
            && keyspace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(StoreError::Config {
                detail: format!(
                    "invalid keyspace name {keyspace:?}: use 1 to 48 letters, digits or underscores, starting with a letter"
                ),
            });
        }
        Ok(CassandraConfig {
            nodes,
            keyspace: keyspace.to_owned(),
            consistency: Consistency::default(),
            serial_consistency: SerialConsistency::default(),
            replication: None,
            connect_timeout: Duration::from_secs(10),
            resolve_attempts: 3,
            address_map: HashMap::new(),
            // Measured on the 3-node cluster with one node frozen (SIGSTOP) for 20 s, 16
            // conflicting writers (RELIABILITY.md, "3-node Cassandra cluster"): with the
            // driver's 30 s heartbeats, appends fell from ~550 to 4 per second while the node
            // was frozen, because every request routed to it waited for its timeout; a 2 s
            // request timeout gave 10/s, plus speculative reads 16/s, 4 connections per node
            // 4/s. Heartbeats every 3 s with a 3 s timeout kept ~90% of the rate (409 -> 371/s):
            // the frozen node's connections are closed after about 3 to 6 s, and the driver
            // routes around it until it answers again. Speculative execution stays off: it
            // helps reads only (an LWT cannot be sent twice at once) and did not help appends.
            // The 10 s request timeout is above Cassandra's own write and CAS timeouts, so a
            // slow but live cluster answers before the client gives up.
            request_timeout: Some(Duration::from_secs(10)),
            speculative_execution: None,
            connections_per_node: None,
            heartbeat_interval: Duration::from_secs(3),
            heartbeat_timeout: Duration::from_secs(3),
            feed: None,
        })
    }

    /// The keyspace.
    pub fn keyspace(&self) -> &str {
        &self.keyspace
    }

    /// The contact points.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    fn driver_consistency(&self) -> scylla::statement::Consistency {
        match self.consistency {
            Consistency::Quorum => scylla::statement::Consistency::Quorum,
            Consistency::LocalQuorum => scylla::statement::Consistency::LocalQuorum,
        }
    }

    fn driver_serial(&self) -> scylla::statement::SerialConsistency {
        match self.serial_consistency {
            SerialConsistency::Serial => scylla::statement::SerialConsistency::Serial,
            SerialConsistency::LocalSerial => scylla::statement::SerialConsistency::LocalSerial,
        }
    }

    /// A SERIAL read uses the serial level as its consistency.
    fn driver_serial_read(&self) -> scylla::statement::Consistency {
        match self.serial_consistency {
            SerialConsistency::Serial => scylla::statement::Consistency::Serial,
            SerialConsistency::LocalSerial => scylla::statement::Consistency::LocalSerial,
        }
    }
}

fn config_error(detail: String) -> StoreError {
    StoreError::Config { detail }
}

fn millis(name: &str, value: &str) -> Result<Duration, StoreError> {
    value
        .parse()
        .map(Duration::from_millis)
        .map_err(|_| config_error(format!("{name}={value:?} is not a number of milliseconds")))
}

impl std::str::FromStr for Consistency {
    type Err = StoreError;

    /// `quorum` or `local_quorum` (any case).
    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s.to_ascii_lowercase().as_str() {
            "quorum" => Ok(Consistency::Quorum),
            "local_quorum" => Ok(Consistency::LocalQuorum),
            _ => Err(config_error(format!(
                "consistency {s:?}: use quorum or local_quorum"
            ))),
        }
    }
}

impl std::str::FromStr for SerialConsistency {
    type Err = StoreError;

    /// `serial` or `local_serial` (any case).
    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s.to_ascii_lowercase().as_str() {
            "serial" => Ok(SerialConsistency::Serial),
            "local_serial" => Ok(SerialConsistency::LocalSerial),
            _ => Err(config_error(format!(
                "serial consistency {s:?}: use serial or local_serial"
            ))),
        }
    }
}

impl std::str::FromStr for CassandraConfig {
    type Err = StoreError;

    /// Parses `cassandra://HOST:PORT[,HOST:PORT…]/KEYSPACE[?PARAMETERS]` (the CLI's
    /// `cassandra://host:port/keyspace`, with several contact points and parameters):
    ///
    /// - `replication_factor=N`: `SimpleStrategy` with N replicas;
    /// - `replication=DC:N[;DC:N…]`: `NetworkTopologyStrategy` (not with `replication_factor`);
    /// - `consistency=quorum|local_quorum`, `serial_consistency=serial|local_serial`;
    /// - `request_timeout_ms=N` (`0` for none), `connect_timeout_ms=N`,
    ///   `heartbeat_interval_ms=N`, `heartbeat_timeout_ms=N`;
    /// - `feed_slices=N`: a [feed] of N slices, the other feed settings by default.
    ///
    /// Unknown parameters are refused, so that a misspelt one is not silently ignored.
    ///
    /// ```
    /// use eventsmith_scylla::{CassandraConfig, Consistency, Replication};
    /// let config: CassandraConfig =
    ///     "cassandra://10.0.0.1:9042,10.0.0.2:9042/events?replication_factor=3&consistency=quorum"
    ///         .parse()
    ///         .unwrap();
    /// assert_eq!(config.nodes(), ["10.0.0.1:9042", "10.0.0.2:9042"]);
    /// assert_eq!(config.replication, Some(Replication::Simple { replication_factor: 3 }));
    /// assert_eq!(config.consistency, Consistency::Quorum);
    /// ```
    fn from_str(url: &str) -> Result<Self, StoreError> {
        let usage = "use cassandra://host:port[,host:port]/keyspace[?replication_factor=N&consistency=quorum]";
        let rest = url
            .strip_prefix("cassandra://")
            .ok_or_else(|| config_error(format!("{url:?} is not a cassandra:// URL; {usage}")))?;
        // URL syntax has one host per authority, so the contact points are split off here;
        // each, and the rest (keyspace, percent-decoded query), is parsed by `url`.
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (hosts, tail) = rest.split_at(end);
        let mut nodes = Vec::new();
        for node in hosts.split(',') {
            let parsed = url::Url::parse(&format!("cassandra://{node}"))
                .ok()
                .filter(|u| u.username().is_empty() && u.password().is_none())
                .and_then(|u| {
                    // A name outside ASCII stays percent-escaped in a URL's host: decoded here.
                    let host = percent_encoding::percent_decode_str(u.host_str()?)
                        .decode_utf8()
                        .ok()?;
                    Some(format!("{host}:{}", u.port()?))
                });
            match parsed {
                Some(address) if !node.is_empty() => nodes.push(address),
                _ => {
                    return Err(config_error(format!(
                        "{url:?}: {node:?} is not host:port; {usage}"
                    )));
                }
            }
        }
        let first = nodes.first().map_or("", String::as_str);
        let parsed = url::Url::parse(&format!("cassandra://{first}{tail}"))
            .map_err(|e| config_error(format!("{url:?}: {e}; {usage}")))?;
        if parsed.fragment().is_some() {
            return Err(config_error(format!(
                "{url:?}: a #fragment means nothing here"
            )));
        }
        let keyspace = parsed
            .path()
            .strip_prefix('/')
            .ok_or_else(|| config_error(format!("{url:?} names no keyspace; {usage}")))?;
        let keyspace = percent_encoding::percent_decode_str(keyspace)
            .decode_utf8()
            .map_err(|_| config_error(format!("{url:?}: the keyspace is not UTF-8")))?;
        let keyspace = keyspace.as_ref();
        let mut config = CassandraConfig::new(nodes, keyspace)?;
        let mut replication_given = false;
        for (name, value) in parsed.query_pairs() {
            let (name, value) = (name.as_ref(), value.as_ref());
            match name {
                "replication_factor" | "replication" if replication_given => {
                    return Err(config_error(format!(
                        "{url:?}: give one of replication_factor and replication"
                    )));
                }
                "replication_factor" => {
                    let replication_factor =
                        value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                            config_error(format!(
                                "replication_factor={value:?} is not a positive number"
                            ))
                        })?;
                    config.replication = Some(Replication::Simple { replication_factor });
                    replication_given = true;
                }
                "replication" => {
                    let mut dcs = Vec::new();
                    for dc in value.split(';') {
                        let parsed = dc.rsplit_once(':').and_then(|(name, n)| {
                            Some((name.to_owned(), n.parse::<u32>().ok().filter(|n| *n > 0)?))
                                .filter(|(name, _)| !name.is_empty())
                        });
                        dcs.push(parsed.ok_or_else(|| {
                            config_error(format!(
                                "replication={value:?}: use DATACENTER:N[;DATACENTER:N]"
                            ))
                        })?);
                    }
                    config.replication = Some(Replication::NetworkTopology(dcs));
                    replication_given = true;
                }
                "consistency" => config.consistency = value.parse()?,
                "serial_consistency" => config.serial_consistency = value.parse()?,
                "request_timeout_ms" => {
                    let timeout = millis(name, value)?;
                    config.request_timeout = (!timeout.is_zero()).then_some(timeout);
                }
                "connect_timeout_ms" => config.connect_timeout = millis(name, value)?,
                // The driver refuses a zero heartbeat interval at connect; say so here.
                "heartbeat_interval_ms" | "heartbeat_timeout_ms" => {
                    let every = millis(name, value)?;
                    if every.is_zero() {
                        return Err(config_error(format!("{name} must be at least 1")));
                    }
                    if name == "heartbeat_interval_ms" {
                        config.heartbeat_interval = every;
                    } else {
                        config.heartbeat_timeout = every;
                    }
                }
                "feed_slices" => {
                    let slices = value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        config_error(format!("feed_slices={value:?} is not a positive number"))
                    })?;
                    config.feed = Some(FeedConfig {
                        slices,
                        ..FeedConfig::default()
                    });
                }
                other => {
                    return Err(config_error(format!(
                        "{url:?}: unknown parameter {other:?} (known: replication_factor, replication, consistency, serial_consistency, request_timeout_ms, connect_timeout_ms, heartbeat_interval_ms, heartbeat_timeout_ms, feed_slices)"
                    )));
                }
            }
        }
        Ok(config)
    }
}

/// The two item tables, which share their shape.
#[derive(Debug, Clone, Copy)]
enum Table {
    Integer,
    Timestamp,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Integer => "integer_sequenced_items",
            Table::Timestamp => "timestamp_sequenced_items",
        }
    }
}

const SNAPSHOTS: &str = "snapshots";

/// An event store in a Cassandra or ScyllaDB keyspace. Clones share the session.
#[derive(Clone, Debug)]
pub struct CassandraStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    session: Session,
    config: CassandraConfig,
    insert: [PreparedStatement; 2],
    resolve: [PreparedStatement; 2],
    /// `resolve` of integer items at the configured consistency, not SERIAL: the feed
    /// reader's first look at an intent's rows (see [`CassandraStore::settled_rows`]).
    resolve_committed: PreparedStatement,
    /// Stores an idempotency key, if the partition does not have it yet (in a keyed batch).
    insert_key: PreparedStatement,
    /// Reads one idempotency key of a partition at SERIAL consistency.
    find_key: PreparedStatement,
    insert_snapshot: PreparedStatement,
    selects: Mutex<HashMap<String, PreparedStatement>>,
    counters: Counters,
    /// The keyspace's feed, if it has one: every integer append writes its intent first.
    feed: Option<feed::Feed>,
    /// Followers' leases and live runners.
    leases: lease::Statements,
}

/// The live counts behind [`OutcomeStats`].
#[derive(Debug, Default)]
struct Counters {
    resolved_applied: AtomicU64,
    resolved_conflict: AtomicU64,
    resolved_absent: AtomicU64,
    returned_unknown: AtomicU64,
}

impl Counters {
    fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// How the appends of one [`CassandraStore`] (and its clones) whose outcome was unknown were
/// resolved, since it connected ([`CassandraStore::outcome_stats`]). An unknown outcome is a
/// timeout or a broken connection during the lightweight transaction; each is resolved by a
/// SERIAL read of the positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutcomeStats {
    /// The read found the append's own rows: it had applied, and returned success.
    pub resolved_applied: u64,
    /// The read found another writer's rows: returned as a conflict (or, for a keyed append,
    /// as the earlier append under the key).
    pub resolved_conflict: u64,
    /// The read found the positions free: the identical batch was sent again.
    pub resolved_absent: u64,
    /// Resolution failed too: returned as [`StoreError::OutcomeUnknown`].
    pub returned_unknown: u64,
}

fn backend(e: impl Into<BoxError>) -> StoreError {
    StoreError::backend(e)
}

/// Runs a read again while it is answered [`StoreError::Busy`] (a timeout), up to 5 times
/// with growing, jittered pauses. For the SERIAL reads of opening a store: stores opening one
/// keyspace at once run Paxos rounds on the same partition, which time each other out on a
/// loaded cluster (seen on the 3-node cluster), and opening should not fail for that.
pub(crate) async fn retry_busy<T, F: std::future::Future<Output = Result<T, StoreError>>>(
    mut read: impl FnMut() -> F,
) -> Result<T, StoreError> {
    use backon::BackoffBuilder;
    let mut pauses = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(1))
        .with_jitter()
        .with_max_times(5)
        .build();
    loop {
        match read().await {
            Err(StoreError::Busy { source }) => match pauses.next() {
                Some(pause) => {
                    tracing::debug!(error = %source, ?pause, "a SERIAL read timed out; reading again");
                    tokio::time::sleep(pause).await;
                }
                None => return Err(StoreError::Busy { source }),
            },
            other => return other,
        }
    }
}

/// Reads with `select` at the configured consistency and, when that finds nothing, at SERIAL
/// (which completes a conditional write still in flight); each read is made again while it
/// times out ([`retry_busy`]). For what every store reads when it opens (the schema stamp,
/// the feed settings): one partition that all of them read, where SERIAL reads contend.
pub(crate) async fn read_or_serial<
    T,
    F: std::future::Future<Output = Result<Option<T>, StoreError>>,
>(
    config: &CassandraConfig,
    select: &PreparedStatement,
    read: impl Fn(PreparedStatement) -> F,
) -> Result<Option<T>, StoreError> {
    for consistency in [config.driver_consistency(), config.driver_serial_read()] {
        let mut statement = select.clone();
        statement.set_consistency(consistency);
        let found = retry_busy(|| read(statement.clone())).await?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

async fn open_session(config: &CassandraConfig) -> Result<Session, StoreError> {
    let mut profile = ExecutionProfile::builder()
        .consistency(config.driver_consistency())
        .serial_consistency(Some(config.driver_serial()))
        .request_timeout(config.request_timeout);
    if let Some(s) = config.speculative_execution {
        profile = profile.speculative_execution_policy(Some(Arc::new(
            SimpleSpeculativeExecutionPolicy {
                max_retry_count: s.max_extra,
                retry_interval: s.delay,
            },
        )));
    }
    let mut builder = SessionBuilder::new()
        .known_nodes(&config.nodes)
        .connection_timeout(config.connect_timeout)
        .default_execution_profile_handle(profile.build().into_handle())
        .keepalive_interval(config.heartbeat_interval)
        .keepalive_timeout(config.heartbeat_timeout);
    if let Some(n) = config
        .connections_per_node
        .and_then(std::num::NonZeroUsize::new)
    {
        builder = builder.pool_size(PoolSize::PerHost(n));
    }
    if !config.address_map.is_empty() {
        builder = builder.address_translator(Arc::new(config.address_map.clone()));
    }
    builder.build().await.map_err(|e| StoreError::Unreachable {
        address: config.nodes.join(","),
        source: Box::new(e),
    })
}

/// Stamps the keyspace with [`SCHEMA_VERSION`] (a lightweight transaction, so processes
/// creating the schema at once agree), raising an older stamp; refuses a newer one.
async fn stamp_schema(session: &Session, config: &CassandraConfig) -> Result<(), StoreError> {
    let ks = &config.keyspace;
    let mut insert = session
        .prepare(format!(
            "INSERT INTO {ks}.eventsmith_schema (component, version) VALUES ('eventsmith', ?) IF NOT EXISTS"
        ))
        .await
        .map_err(backend)?;
    insert.set_consistency(config.driver_consistency());
    insert.set_serial_consistency(Some(config.driver_serial()));
    let found = session
        .execute_unpaged(&insert, (SCHEMA_VERSION,))
        .await
        .map_err(backend)?;
    let rows = found.into_rows_result().map_err(backend)?;
    let version = rows.column_specs().get_by_name("version").map(|(i, _)| i);
    let Some(row) = rows.rows::<Row>().map_err(backend)?.next() else {
        return Err(backend("a conditional insert answered no row"));
    };
    let row = row.map_err(backend)?;
    if matches!(row.columns.first(), Some(Some(CqlValue::Boolean(true)))) {
        return Ok(());
    }
    let existing = match version.and_then(|i| row.columns.get(i)) {
        Some(Some(CqlValue::Int(v))) => *v,
        _ => 0,
    };
    match existing.cmp(&SCHEMA_VERSION) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Greater => Err(newer_schema(ks, existing)),
        // The tables were brought up to date above; raise the stamp.
        std::cmp::Ordering::Less => {
            let mut update = session
                .prepare(format!(
                    "UPDATE {ks}.eventsmith_schema SET version = ? WHERE component = 'eventsmith' IF version = ?"
                ))
                .await
                .map_err(backend)?;
            update.set_consistency(config.driver_consistency());
            update.set_serial_consistency(Some(config.driver_serial()));
            session
                .execute_unpaged(&update, (SCHEMA_VERSION, existing))
                .await
                .map_err(backend)?;
            Ok(())
        }
    }
}

fn newer_schema(ks: &str, version: i32) -> StoreError {
    StoreError::Corrupt {
        detail: format!(
            "keyspace {ks} has eventsmith schema version {version}, newer than the {SCHEMA_VERSION} this build reads; upgrade eventsmith"
        ),
        source: None,
    }
}

/// Checks the keyspace's stamp before anything is prepared: at the configured consistency,
/// and at SERIAL when it seems missing (so a stamp just written is seen).
async fn check_schema(session: &Session, config: &CassandraConfig) -> Result<(), StoreError> {
    let ks = &config.keyspace;
    let missing = || StoreError::Config {
        detail: format!(
            "keyspace {ks} has no eventsmith schema stamp (run CassandraStore::create_schema, which creates or upgrades the tables)"
        ),
    };
    let select = match session
        .prepare(format!(
            "SELECT version FROM {ks}.eventsmith_schema WHERE component = 'eventsmith'"
        ))
        .await
    {
        Ok(select) => select,
        Err(PrepareError::AllAttemptsFailed {
            first_attempt: RequestAttemptError::DbError(DbError::Invalid, _),
        }) => return Err(missing()),
        Err(e) => return Err(backend(e)),
    };
    let version = read_or_serial(config, &select, |select| async move {
        Ok(session
            .execute_unpaged(&select, ())
            .await
            .map_err(read_error)?
            .into_rows_result()
            .map_err(backend)?
            .maybe_first_row::<(Option<i32>,)>()
            .map_err(backend)?
            .and_then(|(v,)| v))
    })
    .await?;
    match version {
        None => Err(missing()),
        Some(v) if v == SCHEMA_VERSION => Ok(()),
        Some(v) if v > SCHEMA_VERSION => Err(newer_schema(ks, v)),
        Some(v) => Err(StoreError::Config {
            detail: format!(
                "keyspace {ks} has eventsmith schema version {v}, older than {SCHEMA_VERSION}: run CassandraStore::create_schema to upgrade it"
            ),
        }),
    }
}

/// Adds the idempotency keys to a table created before they existed: a static map per
/// partition (key -> first and last version written), so that a key is written in the same
/// single-partition conditional batch as the rows it covers.
async fn add_idempotency_column(session: &Session, ks: &str) -> Result<(), StoreError> {
    let found = session
        .query_unpaged(
            "SELECT column_name FROM system_schema.columns WHERE keyspace_name = ? AND table_name = 'integer_sequenced_items' AND column_name = 'idempotency_keys'",
            (ks,),
        )
        .await
        .map_err(backend)?
        .into_rows_result()
        .map_err(backend)?
        .rows_num();
    if found == 0 {
        session
            .query_unpaged(
                format!(
                    "ALTER TABLE {ks}.integer_sequenced_items ADD idempotency_keys map<text, frozen<tuple<bigint, bigint>>> static"
                ),
                &[],
            )
            .await
            .map_err(backend)?;
    }
    Ok(())
}

impl CassandraStore {
    /// Creates the keyspace (with the configured replication) and the tables, if missing,
    /// brings older tables up to date, waits for schema agreement and stamps the keyspace
    /// with [`SCHEMA_VERSION`]; a keyspace stamped by a newer eventsmith is refused
    /// ([`StoreError::Corrupt`]). Without a configured
    /// [`replication`](CassandraConfig::replication) it creates no keyspace: a missing one is
    /// [`StoreError::Config`].
    ///
    /// # Cancellation
    ///
    /// A dropped future may leave the keyspace with some of the tables: every statement is
    /// `IF NOT EXISTS` (or checked first), so running it again completes the schema.
    pub async fn create_schema(config: &CassandraConfig) -> Result<(), StoreError> {
        let session = open_session(config).await?;
        let ks = &config.keyspace;
        let keyspace = match &config.replication {
            Some(replication) => {
                let replication = match replication {
                    Replication::Simple { replication_factor } => format!(
                        "{{'class': 'SimpleStrategy', 'replication_factor': {replication_factor}}}"
                    ),
                    Replication::NetworkTopology(dcs) => {
                        let dcs: Vec<String> = dcs
                            .iter()
                            .map(|(dc, n)| format!("'{}': {n}", dc.replace('\'', "''")))
                            .collect();
                        format!("{{'class': 'NetworkTopologyStrategy', {}}}", dcs.join(", "))
                    }
                };
                Some(format!(
                    "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {replication}"
                ))
            }
            None => {
                let exists = session
                    .query_unpaged(
                        "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = ?",
                        (ks.as_str(),),
                    )
                    .await
                    .map_err(backend)?
                    .into_rows_result()
                    .map_err(backend)?
                    .rows_num()
                    > 0;
                if !exists {
                    return Err(StoreError::Config {
                        detail: format!(
                            "keyspace {ks} does not exist, and no replication is configured to create it with: set CassandraConfig::replication (replication_factor=N or replication=DC:N in a cassandra:// URL; 3 or more in production, 1 only for a development node)"
                        ),
                    });
                }
                None
            }
        };
        let ddl = [
            format!(
                "CREATE TABLE IF NOT EXISTS {ks}.integer_sequenced_items (sequence_id uuid, position bigint, topic text, state blob, commit_id uuid, PRIMARY KEY ((sequence_id), position)) WITH CLUSTERING ORDER BY (position ASC)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {ks}.timestamp_sequenced_items (sequence_id uuid, position bigint, topic text, state blob, commit_id uuid, PRIMARY KEY ((sequence_id), position)) WITH CLUSTERING ORDER BY (position ASC)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {ks}.snapshots (sequence_id uuid, position bigint, topic text, state blob, PRIMARY KEY ((sequence_id), position)) WITH CLUSTERING ORDER BY (position DESC)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {ks}.tracking (projection text, sequence_id uuid, position bigint, PRIMARY KEY ((projection), sequence_id))"
            ),
        ];
        for statement in keyspace.into_iter().chain(ddl) {
            session
                .query_unpaged(statement, &[])
                .await
                .map_err(backend)?;
        }
        add_idempotency_column(&session, ks).await?;
        // Version 4's tables (leases, runners, saved feed positions) are new tables, so
        // creating them if missing is the whole upgrade from 3.
        for statement in feed::ddl(ks)
            .into_iter()
            .chain(lease::ddl(ks))
            .chain([format!(
            "CREATE TABLE IF NOT EXISTS {ks}.eventsmith_schema (component text PRIMARY KEY, version int)"
        )]) {
            session
                .query_unpaged(statement, &[])
                .await
                .map_err(backend)?;
        }
        session.await_schema_agreement().await.map_err(backend)?;
        stamp_schema(&session, config).await?;
        if let Some(feed) = &config.feed {
            feed::create(&session, config, feed).await?;
        }
        Ok(())
    }

    /// Connects and prepares the statements; the schema must exist
    /// ([`create_schema`](Self::create_schema)) and carry this build's [`SCHEMA_VERSION`]
    /// (an older stamp or none is [`StoreError::Config`]: run `create_schema`, which upgrades
    /// it; a newer one is [`StoreError::Corrupt`]).
    ///
    /// # Cancellation
    ///
    /// A dropped future leaves nothing behind: the session it was opening is closed.
    pub async fn connect(config: CassandraConfig) -> Result<Self, StoreError> {
        let session = open_session(&config).await?;
        check_schema(&session, &config).await?;
        let ks: &str = &config.keyspace;
        let prepare = |cql: String| {
            let session = &session;
            async move {
                session.prepare(cql).await.map_err(|e| match e {
                    PrepareError::AllAttemptsFailed {
                        first_attempt: RequestAttemptError::DbError(DbError::Invalid, _),
                    } => StoreError::Config {
                        detail: format!(
                            "keyspace {ks} lacks the eventsmith tables (run create_schema): {e}"
                        ),
                    },
                    other => backend(other),
                })
            }
        };
        let mut insert = Vec::new();
        let mut resolve = Vec::new();
        for table in [Table::Integer, Table::Timestamp] {
            let ks = &config.keyspace;
            let name = table.name();
            let mut stmt = prepare(format!(
                "INSERT INTO {ks}.{name} (sequence_id, position, topic, state, commit_id) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS"
            ))
            .await?;
            stmt.set_consistency(config.driver_consistency());
            stmt.set_serial_consistency(Some(config.driver_serial()));
            insert.push(stmt);
            let mut stmt = prepare(format!(
                "SELECT position, commit_id FROM {ks}.{name} WHERE sequence_id = ? AND position >= ? AND position <= ?"
            ))
            .await?;
            stmt.set_consistency(config.driver_serial_read());
            resolve.push(stmt);
        }
        let mut resolve_committed = resolve[Table::Integer as usize].clone();
        resolve_committed.set_consistency(config.driver_consistency());
        let ks = &config.keyspace;
        let mut insert_key = prepare(format!(
            "UPDATE {ks}.integer_sequenced_items SET idempotency_keys[?] = ? WHERE sequence_id = ? IF idempotency_keys[?] = null"
        ))
        .await?;
        insert_key.set_consistency(config.driver_consistency());
        insert_key.set_serial_consistency(Some(config.driver_serial()));
        let mut find_key = prepare(format!(
            "SELECT idempotency_keys[?] FROM {ks}.integer_sequenced_items WHERE sequence_id = ? LIMIT 1"
        ))
        .await?;
        find_key.set_consistency(config.driver_serial_read());
        // Snapshots are plain writes: a snapshot at a version is a function of the events up
        // to it, so concurrent writers write equal rows and the last one may win.
        let mut insert_snapshot = prepare(format!(
            "INSERT INTO {}.snapshots (sequence_id, position, topic, state) VALUES (?, ?, ?, ?)",
            config.keyspace
        ))
        .await?;
        insert_snapshot.set_consistency(config.driver_consistency());
        let feed = feed::open(&session, &config).await?;
        let leases = lease::Statements::prepare(&session, &config).await?;
        let array = |v: Vec<PreparedStatement>| -> [PreparedStatement; 2] {
            v.try_into().expect("two tables")
        };
        Ok(CassandraStore {
            inner: Arc::new(Inner {
                session,
                config,
                insert: array(insert),
                resolve: array(resolve),
                resolve_committed,
                insert_key,
                find_key,
                insert_snapshot,
                selects: Mutex::new(HashMap::new()),
                counters: Counters::default(),
                feed,
                leases,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &CassandraConfig {
        &self.inner.config
    }

    /// How the appends with an unknown outcome were resolved since this store connected.
    pub fn outcome_stats(&self) -> OutcomeStats {
        let c = &self.inner.counters;
        OutcomeStats {
            resolved_applied: c.resolved_applied.load(Ordering::Relaxed),
            resolved_conflict: c.resolved_conflict.load(Ordering::Relaxed),
            resolved_absent: c.resolved_absent.load(Ordering::Relaxed),
            returned_unknown: c.returned_unknown.load(Ordering::Relaxed),
        }
    }

    async fn select_statement(&self, cql: String) -> Result<PreparedStatement, StoreError> {
        if let Some(stmt) = self
            .inner
            .selects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&cql)
        {
            return Ok(stmt.clone());
        }
        let mut stmt = self
            .inner
            .session
            .prepare(cql.clone())
            .await
            .map_err(backend)?;
        stmt.set_consistency(self.inner.config.driver_consistency());
        stmt.set_page_size(1000);
        // A read may run twice at once (speculative execution) and be retried elsewhere.
        stmt.set_is_idempotent(true);
        self.inner
            .selects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(cql, stmt.clone());
        Ok(stmt)
    }

    /// Selects one sequence's rows of `table` within the query's bounds, through every page.
    async fn select_rows(
        &self,
        table: &str,
        sequence_id: Uuid,
        query: &Select<i64>,
    ) -> Result<Vec<(i64, String, Vec<u8>)>, StoreError> {
        if query.limit == Some(0) {
            return Ok(Vec::new());
        }
        let ks = &self.inner.config.keyspace;
        let mut cql =
            format!("SELECT position, topic, state FROM {ks}.{table} WHERE sequence_id = ?");
        let mut values = vec![CqlValue::Uuid(sequence_id)];
        // Cassandra allows one lower and one upper bound: keep the tighter of each pair.
        let lower = match (query.gt, query.gte) {
            (Some(gt), Some(gte)) if gte > gt => Some((">=", gte)),
            (Some(gt), _) => Some((">", gt)),
            (None, Some(gte)) => Some((">=", gte)),
            (None, None) => None,
        };
        let upper = match (query.lt, query.lte) {
            (Some(lt), Some(lte)) if lte < lt => Some(("<=", lte)),
            (Some(lt), _) => Some(("<", lt)),
            (None, Some(lte)) => Some(("<=", lte)),
            (None, None) => None,
        };
        for (op, bound) in lower.into_iter().chain(upper) {
            cql.push_str(&format!(" AND position {op} ?"));
            values.push(CqlValue::BigInt(bound));
        }
        cql.push_str(if query.descending {
            " ORDER BY position DESC"
        } else {
            " ORDER BY position ASC"
        });
        if let Some(limit) = query.limit {
            cql.push_str(" LIMIT ?");
            values.push(CqlValue::Int(i32::try_from(limit).unwrap_or(i32::MAX)));
        }
        let stmt = self.select_statement(cql).await?;
        let session = &self.inner.session;
        let mut out = Vec::new();
        let mut page = session
            .execute_single_page(&stmt, &values, PagingState::start())
            .await
            .map_err(read_error)?;
        // Each next page is requested before the current one is deserialized, so the two
        // overlap: read one after the other, the round trips of a 10,000-row load's ten pages
        // took 0.6x the time of the driver's own prefetching pager.
        loop {
            let (result, response) = page;
            let next = match response.into_paging_control_flow() {
                std::ops::ControlFlow::Break(()) => None,
                std::ops::ControlFlow::Continue(next) => Some(next),
            };
            let fetch = async {
                match next {
                    Some(next) => Some(session.execute_single_page(&stmt, &values, next).await),
                    None => None,
                }
            };
            let decode = async {
                let rows = result.into_rows_result().map_err(backend)?;
                for row in rows.rows::<(i64, String, Vec<u8>)>().map_err(backend)? {
                    out.push(row.map_err(backend)?);
                }
                Ok::<(), StoreError>(())
            };
            let (fetched, decoded) = futures_util::future::join(fetch, decode).await;
            decoded?;
            match fetched {
                Some(fetched) => page = fetched.map_err(read_error)?,
                None => break,
            }
        }
        Ok(out)
    }

    /// Appends rows of one sequence with one LWT (a statement or a conditional batch). With
    /// a key, the batch also stores it, on condition that the partition does not have it; then
    /// `Ok(Some(prior))` says the key was there and nothing was written.
    async fn append_rows(
        &self,
        table: Table,
        rows: Vec<(Uuid, i64, String, Vec<u8>)>,
        key: Option<(&IdempotencyKey, &PriorAppend)>,
    ) -> Result<Option<PriorAppend>, AppendError> {
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let sequence_id = first.0;
        if rows.iter().any(|r| r.0 != sequence_id) {
            return Err(StoreError::Unsupported {
                capability: "atomic batches spanning several sequences",
                reason: "a Cassandra conditional batch must stay within one partition",
            }
            .into());
        }
        let commit_id = Uuid::new_v4();
        let values: Vec<(Uuid, i64, String, Vec<u8>, Uuid)> = rows
            .into_iter()
            .map(|(s, p, t, st)| (s, p, t, st, commit_id))
            .collect();
        let positions: Vec<i64> = values.iter().map(|v| v.1).collect();
        let position_of = |p: i64| match table {
            Table::Integer => Position::Version(p as u64),
            Table::Timestamp => Position::Timestamp(Timestamp::from_unix_nanos(p)),
        };
        // Not applied: when the batch carried a key, the key may be what was in the way (an
        // earlier append under it, possibly this one's own first try); a SERIAL read says.
        let refused = async |p: i64| -> Result<Option<PriorAppend>, AppendError> {
            if let Some((key, _)) = key
                && let Some(prior) = self.find_key(sequence_id, key).await?
            {
                return Ok(Some(prior));
            }
            Err(AppendError::Conflict {
                sequence_id,
                position: position_of(p),
            })
        };
        // The batch was not applied. After an unknown outcome and a resend, what is in the way
        // may be this append's own first try, which applied late (a frozen coordinator that
        // resumed between the SERIAL read and the resend): rows with our commit id are a
        // success, never a conflict. Found by the SIGSTOP fault test on the 3-node cluster.
        let not_applied = async |existing: Vec<(i64, Option<Uuid>)>| {
            if existing
                .iter()
                .any(|(p, c)| *c == Some(commit_id) && positions.contains(p))
            {
                tracing::info!(%commit_id, resolution = "applied", "the resent LWT found this append's own first try: applied");
                self.inner
                    .counters
                    .count(&self.inner.counters.resolved_applied);
                return Ok(None);
            }
            let first = positions
                .iter()
                .copied()
                .find(|p| existing.iter().any(|(e, _)| e == p))
                .unwrap_or(positions[0]);
            refused(first).await
        };
        // With a feed, the intent first (see the feed module): if it cannot be written, the
        // append fails before anything of it is committed.
        let written = match (table, &self.inner.feed) {
            (Table::Integer, Some(feed)) => Some((
                feed,
                self.write_intent(feed, commit_id, &values, key).await?,
            )),
            _ => None,
        };
        let intent = written.is_some();
        // A transaction that failed for sure, after an intent: a feed reader may still send
        // it (it cannot tell a dead writer from a failed one), so the outcome is unknown.
        let definite = |e: StoreError| -> AppendError {
            if intent {
                tracing::warn!(%commit_id, error = %e, "the append's transaction failed after its feed intent; a reader may still complete it");
                // The transaction's own error stays the source, with its chain.
                StoreError::OutcomeUnknown {
                    commit_id,
                    source: Box::new(e),
                }
                .into()
            } else {
                e.into()
            }
        };
        let outcome = async {
        let mut sent = self.send_lwt(table, &values, key).await;
        for attempt in 0..self.inner.config.resolve_attempts {
            if attempt > 0 {
                // Give a broken connection time to be replaced before the next try.
                tokio::time::sleep(Duration::from_millis(100 * attempt as u64)).await;
            }
            match sent {
                Ok(Applied::Yes) => return Ok(None),
                Ok(Applied::No { existing }) => return not_applied(existing).await,
                Err(Failure::Definite(e)) => return Err(definite(e)),
                Err(Failure::Unknown(e)) => {
                    // WARN once: rare, and an operator wants to know the cluster lost an
                    // answer; the retries of one resolution are DEBUG.
                    if attempt == 0 {
                        tracing::warn!(%commit_id, %sequence_id, error = %e, "append outcome unknown; resolving it with a SERIAL read");
                    } else {
                        tracing::debug!(%commit_id, attempt, error = %e, "resolving the unknown outcome again");
                    }
                    let resolved = self
                        .resolve(table, sequence_id, &positions, commit_id)
                        .await;
                    match resolved {
                        Ok(Resolution::Ours) => {
                            tracing::info!(%commit_id, resolution = "applied", "unknown outcome resolved: the append was applied");
                            self.inner
                                .counters
                                .count(&self.inner.counters.resolved_applied);
                            return Ok(None);
                        }
                        Ok(Resolution::Theirs(p)) => {
                            tracing::info!(%commit_id, resolution = "conflict", position = p, "unknown outcome resolved: another writer holds the position");
                            self.inner
                                .counters
                                .count(&self.inner.counters.resolved_conflict);
                            return refused(p).await;
                        }
                        // Not applied, and nothing in the way: send the identical batch again.
                        Ok(Resolution::Absent) => {
                            tracing::info!(%commit_id, resolution = "absent", "unknown outcome resolved: not applied; resending the LWT");
                            self.inner
                                .counters
                                .count(&self.inner.counters.resolved_absent);
                            sent = self.send_lwt(table, &values, key).await
                        }
                        Err(resolve_error) => {
                            tracing::debug!(%commit_id, error = %resolve_error, "cannot resolve the unknown outcome yet");
                            sent = Err(Failure::Unknown(
                                format!("{e}; resolving it: {resolve_error}").into(),
                            ))
                        }
                    }
                }
            }
        }
        match sent {
            Ok(Applied::Yes) => Ok(None),
            Ok(Applied::No { existing }) => not_applied(existing).await,
            Err(Failure::Definite(e)) => Err(definite(e)),
            Err(Failure::Unknown(source)) => {
                tracing::error!(%commit_id, %sequence_id, error = %source, "append outcome still unknown after every resolution attempt");
                self.inner
                    .counters
                    .count(&self.inner.counters.returned_unknown);
                Err(StoreError::OutcomeUnknown { commit_id, source }.into())
            }
        }
        }
        .await;
        // A replay refused by its key: its intent can never apply, and would hold the
        // sequence's later intents back until a reader voided it.
        if let (Ok(Some(_)), Some((feed, at))) = (&outcome, written) {
            self.delete_intent(feed, at, commit_id).await;
        }
        outcome
    }

    async fn send_lwt(
        &self,
        table: Table,
        values: &[(Uuid, i64, String, Vec<u8>, Uuid)],
        key: Option<(&IdempotencyKey, &PriorAppend)>,
    ) -> Result<Applied, Failure> {
        let insert = &self.inner.insert[table as usize];
        let result = if let Some((key, prior)) = key {
            // The rows and the key in one conditional batch of the sequence's partition.
            let mut batch = Batch::new(BatchType::Unlogged);
            let mut rows: Vec<Vec<CqlValue>> = Vec::with_capacity(values.len() + 1);
            for (s, p, t, st, c) in values {
                batch.append_statement(insert.clone());
                rows.push(vec![
                    CqlValue::Uuid(*s),
                    CqlValue::BigInt(*p),
                    CqlValue::Text(t.clone()),
                    CqlValue::Blob(st.clone()),
                    CqlValue::Uuid(*c),
                ]);
            }
            batch.append_statement(self.inner.insert_key.clone());
            let range = CqlValue::Tuple(vec![
                Some(CqlValue::BigInt(*prior.versions.start() as i64)),
                Some(CqlValue::BigInt(*prior.versions.end() as i64)),
            ]);
            rows.push(vec![
                CqlValue::Text(key.as_str().to_owned()),
                range,
                CqlValue::Uuid(prior.sequence_id),
                CqlValue::Text(key.as_str().to_owned()),
            ]);
            batch.set_consistency(self.inner.config.driver_consistency());
            batch.set_serial_consistency(Some(self.inner.config.driver_serial()));
            self.inner.session.batch(&batch, rows).await
        } else if values.len() == 1 {
            self.inner.session.execute_unpaged(insert, &values[0]).await
        } else {
            let mut batch = Batch::new(BatchType::Unlogged);
            for _ in values {
                batch.append_statement(insert.clone());
            }
            batch.set_consistency(self.inner.config.driver_consistency());
            batch.set_serial_consistency(Some(self.inner.config.driver_serial()));
            self.inner.session.batch(&batch, values).await
        };
        match result {
            Ok(result) => applied(result).map_err(Failure::Definite),
            Err(e) => Err(classify(e)),
        }
    }

    /// The idempotency key's entry in the sequence's partition, read at SERIAL consistency
    /// (completing any Paxos round in flight, so a key just written is seen).
    async fn find_key(
        &self,
        sequence_id: Uuid,
        key: &IdempotencyKey,
    ) -> Result<Option<PriorAppend>, StoreError> {
        let result = self
            .inner
            .session
            .execute_unpaged(&self.inner.find_key, (key.as_str(), sequence_id))
            .await
            .map_err(read_error)?;
        let rows = result.into_rows_result().map_err(backend)?;
        let Some(row) = rows
            .maybe_first_row::<(Option<(i64, i64)>,)>()
            .map_err(backend)?
        else {
            return Ok(None);
        };
        Ok(row.0.map(|(first, last)| PriorAppend {
            sequence_id,
            // Written from checked versions; a negative one is foreign data, read as the
            // smallest version so that the key still blocks a second append.
            versions: first.max(0) as u64..=last.max(0) as u64,
        }))
    }

    /// Reads the positions at SERIAL consistency, completing any Paxos round in flight.
    async fn resolve(
        &self,
        table: Table,
        sequence_id: Uuid,
        positions: &[i64],
        commit_id: Uuid,
    ) -> Result<Resolution, StoreError> {
        let statement = &self.inner.resolve[table as usize];
        self.resolve_with(statement, sequence_id, positions, commit_id)
            .await
    }

    /// [`resolve`](Self::resolve) of integer items at the configured consistency instead of
    /// SERIAL: rows found this way were written by the commit step of a decided transaction
    /// (Cassandra writes a transaction's rows only after a quorum accepted it), so `Ours` and
    /// `Theirs` are final; only `Absent` may hide a transaction in flight, and needs
    /// [`resolve`](Self::resolve) to be sure. A feed reader settles most intents this way,
    /// without a Paxos round on a partition its writers are busy with.
    async fn settled_rows(
        &self,
        sequence_id: Uuid,
        positions: &[i64],
        commit_id: Uuid,
    ) -> Result<Resolution, StoreError> {
        let statement = &self.inner.resolve_committed;
        self.resolve_with(statement, sequence_id, positions, commit_id)
            .await
    }

    async fn resolve_with(
        &self,
        statement: &PreparedStatement,
        sequence_id: Uuid,
        positions: &[i64],
        commit_id: Uuid,
    ) -> Result<Resolution, StoreError> {
        let (lo, hi) = (
            *positions.iter().min().expect("non-empty"),
            *positions.iter().max().expect("non-empty"),
        );
        let result = self
            .inner
            .session
            .execute_unpaged(statement, (sequence_id, lo, hi))
            .await
            .map_err(read_error)?;
        let rows = result.into_rows_result().map_err(backend)?;
        let mut found = HashMap::new();
        for row in rows.rows::<(i64, Option<Uuid>)>().map_err(backend)? {
            let (p, c) = row.map_err(backend)?;
            found.insert(p, c);
        }
        let ours = positions
            .iter()
            .filter(|p| found.get(p) == Some(&Some(commit_id)))
            .count();
        if ours == positions.len() {
            return Ok(Resolution::Ours);
        }
        if let Some(p) = positions
            .iter()
            .find(|p| found.contains_key(p) && found[p] != Some(commit_id))
        {
            return Ok(Resolution::Theirs(*p));
        }
        if ours == 0 {
            return Ok(Resolution::Absent);
        }
        // A batch of one partition applies whole or not at all: anything else is damage.
        Err(StoreError::Corrupt {
            detail: format!(
                "commit {commit_id} applied to {ours} of {} rows of one partition",
                positions.len()
            ),
            source: None,
        })
    }
}

enum Applied {
    Yes,
    /// The rows in the way: (position, commit id), as the LWT returned them.
    No {
        existing: Vec<(i64, Option<Uuid>)>,
    },
}

enum Failure {
    /// Known not to have been applied.
    Definite(StoreError),
    /// May or may not have been applied.
    Unknown(BoxError),
}

enum Resolution {
    Ours,
    Theirs(i64),
    Absent,
}

/// Reads `[applied]` as column 0 of every returned row: Cassandra returns one row when a
/// batch applied and the existing rows when not; Scylla returns one row per statement, always.
fn applied(result: QueryResult) -> Result<Applied, StoreError> {
    let rows = result.into_rows_result().map_err(backend)?;
    let position = rows.column_specs().get_by_name("position").map(|(i, _)| i);
    let commit = rows.column_specs().get_by_name("commit_id").map(|(i, _)| i);
    let mut all = true;
    let mut existing = Vec::new();
    for row in rows.rows::<Row>().map_err(backend)? {
        let row = row.map_err(backend)?;
        if !matches!(row.columns.first(), Some(Some(CqlValue::Boolean(true)))) {
            all = false;
            if let Some(Some(CqlValue::BigInt(p))) = position.and_then(|i| row.columns.get(i)) {
                let c = match commit.and_then(|i| row.columns.get(i)) {
                    Some(Some(CqlValue::Uuid(c))) => Some(*c),
                    _ => None,
                };
                existing.push((*p, c));
            }
        }
    }
    Ok(if all {
        Applied::Yes
    } else {
        Applied::No { existing }
    })
}

/// Sorts a failed LWT: definitely not applied, or unknown.
fn classify(e: ExecutionError) -> Failure {
    match &e {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, _)) => match db {
            DbError::Unavailable { .. } | DbError::Overloaded | DbError::IsBootstrapping => {
                Failure::Definite(StoreError::Busy {
                    source: Box::new(e),
                })
            }
            DbError::WriteTimeout { .. }
            | DbError::ReadTimeout { .. }
            | DbError::WriteFailure { .. } => Failure::Unknown(Box::new(e)),
            _ => Failure::Definite(backend(e)),
        },
        ExecutionError::LastAttemptError(RequestAttemptError::BrokenConnectionError(_))
        | ExecutionError::ConnectionPoolError(_)
        | ExecutionError::RequestTimeout(_) => Failure::Unknown(Box::new(e)),
        _ => Failure::Definite(backend(e)),
    }
}

fn read_error(e: ExecutionError) -> StoreError {
    match classify(e) {
        Failure::Definite(e) => e,
        Failure::Unknown(source) => StoreError::Busy { source },
    }
}

/// Rows of (position, topic, payload) of one sequence as integer-sequenced items.
fn integer_items(
    sequence_id: Uuid,
    rows: Vec<(i64, String, Vec<u8>)>,
) -> Result<Vec<IntegerSequencedItem>, StoreError> {
    rows.into_iter()
        .map(|(p, topic, payload)| {
            let position = Version::try_from(p).map_err(|_| StoreError::Corrupt {
                detail: format!("negative position {p} in sequence {sequence_id}"),
                source: None,
            })?;
            Ok(SequencedItem {
                sequence_id,
                position,
                topic,
                payload,
            })
        })
        .collect()
}

fn to_sql_select<P: Copy>(q: &Select<P>, f: impl Fn(P) -> i64) -> Select<i64> {
    Select {
        gt: q.gt.map(&f),
        gte: q.gte.map(&f),
        lt: q.lt.map(&f),
        lte: q.lte.map(&f),
        limit: q.limit,
        descending: q.descending,
    }
}

/// Bounds beyond the bigint range clamp rather than wrap.
fn version_to_sql(v: Version) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl ItemStore for CassandraStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            notifications: Support::Missing { reason: NO_LOG },
            timestamped: Support::Yes,
            cross_sequence_batches: Support::Missing {
                reason: "a Cassandra conditional batch (the atomic append) must stay within one partition",
            },
            feed: match self.inner.feed {
                Some(_) => Support::Yes,
                None => Support::Missing {
                    reason: feed::NO_FEED,
                },
            },
        }
    }

    #[tracing::instrument(name = "eventsmith.append", level = "debug", skip_all, fields(backend = "cassandra", items = items.len(), sequence_id = items.first().map(|i| tracing::field::display(i.sequence_id)), position = items.first().map(|i| i.position), keyed = false, outcome = tracing::field::Empty))]
    async fn append(&self, items: Vec<IntegerSequencedItem>) -> Result<Range<u64>, AppendError> {
        outcome(
            async {
                check_append(&items)?;
                let rows = items
                    .into_iter()
                    .map(|i| (i.sequence_id, i.position as i64, i.topic, i.payload))
                    .collect();
                self.append_rows(Table::Integer, rows, None).await?;
                Ok(0..0)
            }
            .await,
        )
    }

    #[tracing::instrument(name = "eventsmith.append", level = "debug", skip_all, fields(backend = "cassandra", items = items.len(), sequence_id = items.first().map(|i| tracing::field::display(i.sequence_id)), position = items.first().map(|i| i.position), keyed = true, outcome = tracing::field::Empty))]
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
                let rows = items
                    .into_iter()
                    .map(|i| (i.sequence_id, i.position as i64, i.topic, i.payload))
                    .collect();
                Ok(
                    match self
                        .append_rows(Table::Integer, rows, Some((key, &prior)))
                        .await?
                    {
                        None => KeyedAppend::Appended(0..0),
                        Some(prior) => KeyedAppend::AlreadyApplied(prior),
                    },
                )
            }
            .await,
        )
    }

    #[tracing::instrument(name = "eventsmith.find_key", level = "debug", skip_all, fields(backend = "cassandra", sequence_id = %sequence_id, outcome = tracing::field::Empty))]
    async fn find_key(
        &self,
        sequence_id: Uuid,
        key: &IdempotencyKey,
    ) -> Result<Option<PriorAppend>, StoreError> {
        outcome(async { CassandraStore::find_key(self, sequence_id, key).await }.await)
    }

    #[tracing::instrument(name = "eventsmith.select", level = "debug", skip_all, fields(backend = "cassandra", sequence_id = %sequence_id, items = tracing::field::Empty, outcome = tracing::field::Empty))]
    async fn select(
        &self,
        sequence_id: Uuid,
        query: &Select<Version>,
    ) -> Result<Vec<IntegerSequencedItem>, StoreError> {
        rows(
            async {
                let rows = self
                    .select_rows(
                        Table::Integer.name(),
                        sequence_id,
                        &to_sql_select(query, version_to_sql),
                    )
                    .await?;
                integer_items(sequence_id, rows)
            }
            .await,
        )
    }

    #[tracing::instrument(name = "eventsmith.notifications", level = "debug", skip_all, fields(backend = "cassandra", after = _after, limit = _limit, items = tracing::field::Empty, outcome = tracing::field::Empty))]
    async fn select_notifications(
        &self,
        _after: u64,
        _limit: usize,
        _topics: &[&str],
    ) -> Result<Vec<Notification>, StoreError> {
        rows(
            async {
                Err(StoreError::Unsupported {
                    capability: "the notification log",
                    reason: NO_LOG,
                })
            }
            .await,
        )
    }

    #[tracing::instrument(name = "eventsmith.max_notification_id", level = "debug", skip_all, fields(backend = "cassandra", outcome = tracing::field::Empty))]
    async fn max_notification_id(&self) -> Result<u64, StoreError> {
        outcome(
            async {
                Err(StoreError::Unsupported {
                    capability: "the notification log",
                    reason: NO_LOG,
                })
            }
            .await,
        )
    }

    #[tracing::instrument(name = "eventsmith.append_timestamped", level = "debug", skip_all, fields(backend = "cassandra", items = items.len(), sequence_id = items.first().map(|i| tracing::field::display(i.sequence_id)), outcome = tracing::field::Empty))]
    async fn append_timestamped(
        &self,
        items: Vec<TimestampSequencedItem>,
    ) -> Result<(), AppendError> {
        outcome(
            async {
                check_batch_unique(&items)?;
                let rows = items
                    .into_iter()
                    .map(|i| (i.sequence_id, i.position.unix_nanos(), i.topic, i.payload))
                    .collect();
                self.append_rows(Table::Timestamp, rows, None)
                    .await
                    .map(|_| ())
            }
            .await,
        )
    }

    #[tracing::instrument(name = "eventsmith.select_timestamped", level = "debug", skip_all, fields(backend = "cassandra", sequence_id = %sequence_id, items = tracing::field::Empty, outcome = tracing::field::Empty))]
    async fn select_timestamped(
        &self,
        sequence_id: Uuid,
        query: &Select<Timestamp>,
    ) -> Result<Vec<TimestampSequencedItem>, StoreError> {
        rows(
            async {
                let rows = self
                    .select_rows(
                        Table::Timestamp.name(),
                        sequence_id,
                        &to_sql_select(query, Timestamp::unix_nanos),
                    )
                    .await?;
                Ok(rows
                    .into_iter()
                    .map(|(p, topic, payload)| SequencedItem {
                        sequence_id,
                        position: Timestamp::from_unix_nanos(p),
                        topic,
                        payload,
                    })
                    .collect())
            }
            .await,
        )
    }

    /// [`Delivery::Idempotent`] on a keyspace with a feed (followers run on the feed:
    /// [`read_feed_page`](ItemStore::read_feed_page), saved feed positions, a lease per
    /// slice, announced runners), `None` without one. Never
    /// [`Delivery::Transactional`]: there is no notification log, and
    /// [`tracking_position`](ItemStore::tracking_position) and
    /// [`append_tracked`](ItemStore::append_tracked) are unsupported (the inherent
    /// [`CassandraStore::tracking_position`] is the per-sequence projections').
    fn delivery(&self) -> Option<Delivery> {
        self.inner.feed.as_ref().map(|_| Delivery::Idempotent)
    }

    /// A position a window behind the store's clock (see [`feed_now`](Self::feed_now)): an
    /// append committed after this call is read after it, and so may a few before it.
    ///
    /// # Cancellation
    ///
    /// Nothing is read or written: the future completes at its first poll.
    async fn feed_head(&self, slice: u32) -> Result<String, StoreError> {
        let slices = self.feed()?.slices;
        if slice >= slices {
            return Err(StoreError::Config {
                detail: format!("slice {slice} of a feed of {slices} slices"),
            });
        }
        Ok(self.feed_now()?.slices()[slice as usize].to_string())
    }

    /// Claims or renews the lease named `lease.follower` (a follower on the feed names one
    /// per slice, `follower/slice`) with one lightweight transaction on the lease's own
    /// partition of the table `leases`, at the configured serial consistency; when another
    /// owner holds it, its holder and remaining time are read back at SERIAL. Expiry is a
    /// TTL, by the server's clock, in whole seconds: **`lease.ttl` is rounded up to whole
    /// seconds, plus one** (Cassandra expires a cell at the start of a second, so a TTL of
    /// `n` lasts between `n - 1` and `n` seconds; `n + 1` lasts at least the `ttl` asked
    /// for): a lease holds at least `ttl` and at most about 2 s more. `Taken`'s
    /// `expires_in` is whole seconds too, an upper bound (the lease ends within it). Works
    /// with or without a feed.
    ///
    /// A transaction whose outcome is unknown (a timeout) is sent again, which renews the
    /// lease if the first one took it; if it stays unknown the claim fails with
    /// [`StoreError::OutcomeUnknown`] (its `commit_id` is the owner), and a lease it may have
    /// taken expires after its TTL.
    ///
    /// # Cancellation
    ///
    /// A dropped future may still have taken the lease; it expires after its TTL.
    #[tracing::instrument(name = "eventsmith.lease.claim", level = "debug", skip_all, fields(backend = "cassandra", follower = %lease.follower, owner = %lease.owner, outcome = tracing::field::Empty))]
    async fn claim_lease(&self, lease: &Lease) -> Result<LeaseClaim, StoreError> {
        outcome(self.lease_claim(lease).await)
    }

    /// Deletes the lease if `owner` holds it (`DELETE … IF owner = ?`, a lightweight
    /// transaction at the configured serial consistency); nothing happens otherwise. An
    /// unknown outcome is sent again, then [`StoreError::OutcomeUnknown`].
    ///
    /// # Cancellation
    ///
    /// A dropped future may still have released the lease.
    #[tracing::instrument(name = "eventsmith.lease.release", level = "debug", skip_all, fields(backend = "cassandra", follower = %follower, owner = %owner, outcome = tracing::field::Empty))]
    async fn release_lease(&self, follower: &str, owner: Uuid) -> Result<(), StoreError> {
        outcome(self.lease_release(follower, owner).await)
    }

    /// The slice count of the keyspace's feed, fixed when it was created;
    /// [`StoreError::Unsupported`] without a feed.
    fn feed_slices(&self) -> Result<u32, StoreError> {
        Ok(self.feed()?.slices)
    }

    /// [`read_feed_slice`](CassandraStore::read_feed_slice) with positions as text: `after`
    /// is a [`SlicePosition`]'s `Display` (what an earlier page returned), `None` the slice's
    /// position in [`feed_start`](CassandraStore::feed_start). A position that does not parse,
    /// or is of another slice, and a slice beyond [`feed_slices`](ItemStore::feed_slices) are
    /// [`StoreError::Config`]. At most `limit` intents are settled, so at most `limit`
    /// appends delivered.
    ///
    /// # Cancellation
    ///
    /// As for [`read_feed_slice`](CassandraStore::read_feed_slice): `after` stays good, and a
    /// helping transaction in flight may still apply, to be delivered by the next read.
    #[tracing::instrument(name = "eventsmith.read_feed", level = "debug", skip_all, fields(backend = "cassandra", slice = slice, limit = limit, outcome = tracing::field::Empty))]
    async fn read_feed_page(
        &self,
        slice: u32,
        after: Option<&str>,
        limit: usize,
    ) -> Result<FeedPage, StoreError> {
        outcome(self.feed_page(slice, after, limit).await)
    }

    /// Reads the table `feed_tracking` at the configured consistency;
    /// [`StoreError::Unsupported`] without a feed, [`StoreError::Config`] for a slice beyond it.
    ///
    /// # Cancellation
    ///
    /// A read: a dropped future leaves nothing behind.
    #[tracing::instrument(name = "eventsmith.feed_position", level = "debug", skip_all, fields(backend = "cassandra", follower = %follower, slice = slice, outcome = tracing::field::Empty))]
    async fn feed_position(
        &self,
        follower: &str,
        slice: u32,
    ) -> Result<Option<String>, StoreError> {
        outcome(self.saved_feed_position(follower, slice).await)
    }

    /// A plain write to the table `feed_tracking` at the configured consistency (the last
    /// write wins; the slice's lease keeps one writer); [`StoreError::Unsupported`] without
    /// a feed, [`StoreError::Config`] for a slice beyond it.
    ///
    /// # Cancellation
    ///
    /// A dropped future may still have saved the position.
    #[tracing::instrument(name = "eventsmith.save_feed_position", level = "debug", skip_all, fields(backend = "cassandra", follower = %follower, slice = slice, outcome = tracing::field::Empty))]
    async fn save_feed_position(
        &self,
        follower: &str,
        slice: u32,
        position: &str,
    ) -> Result<(), StoreError> {
        outcome(self.store_feed_position(follower, slice, position).await)
    }

    /// Writes `(follower, owner)` to the table `feed_runners` with a TTL of `ttl` **rounded
    /// up to whole seconds, plus one**, as for [`claim_lease`](ItemStore::claim_lease)
    /// (expiry by the server's clock: the record lives at least `ttl`), then reads
    /// the follower's partition, both at the configured consistency; the owners are sorted
    /// by [`Uuid`]'s order. [`StoreError::Unsupported`] without a feed.
    ///
    /// # Cancellation
    ///
    /// A dropped future may still have recorded the runner; the record expires after its TTL.
    #[tracing::instrument(name = "eventsmith.announce_runner", level = "debug", skip_all, fields(backend = "cassandra", follower = %follower, owner = %owner, outcome = tracing::field::Empty))]
    async fn announce_runner(
        &self,
        follower: &str,
        owner: Uuid,
        ttl: Duration,
    ) -> Result<Vec<Uuid>, StoreError> {
        outcome(
            async {
                self.feed()?;
                self.runner_announce(follower, owner, ttl).await
            }
            .await,
        )
    }
}

const NO_LOG: &str = "Cassandra cannot write an item and a global log entry atomically; a strict LWT-sequenced log would cost two or more Paxos rounds per append on one hot partition (see ARCHITECTURE.md)";

impl SnapshotStore for CassandraStore {
    #[tracing::instrument(name = "eventsmith.snapshot.write", level = "debug", skip_all, fields(backend = "cassandra", sequence_id = %snapshot.sequence_id, position = snapshot.position, outcome = tracing::field::Empty))]
    async fn write_snapshot(&self, snapshot: IntegerSequencedItem) -> Result<(), StoreError> {
        outcome(
            async {
                check_version(&snapshot)?;
                let position = snapshot.position as i64;
                self.inner
                    .session
                    .execute_unpaged(
                        &self.inner.insert_snapshot,
                        (
                            snapshot.sequence_id,
                            position,
                            snapshot.topic,
                            snapshot.payload,
                        ),
                    )
                    .await
                    .map_err(read_error)?;
                Ok(())
            }
            .await,
        )
    }

    #[tracing::instrument(name = "eventsmith.snapshot.latest", level = "debug", skip_all, fields(backend = "cassandra", sequence_id = %sequence_id, lte = ?lte, outcome = tracing::field::Empty))]
    async fn latest_snapshot(
        &self,
        sequence_id: Uuid,
        lte: Option<Version>,
    ) -> Result<Option<IntegerSequencedItem>, StoreError> {
        outcome(
            async {
                let query = Select {
                    lte: lte.map(version_to_sql),
                    limit: Some(1),
                    ..Select::all().descending()
                };
                let rows = self.select_rows(SNAPSHOTS, sequence_id, &query).await?;
                Ok(integer_items(sequence_id, rows)?.pop())
            }
            .await,
        )
    }
}

impl Inventory for CassandraStore {
    #[tracing::instrument(name = "eventsmith.inventory.sequences", level = "debug", skip_all, fields(backend = "cassandra", kind = ?kind, items = tracing::field::Empty, outcome = tracing::field::Empty))]
    async fn list_sequences(&self, kind: ItemKind) -> Result<Vec<(Uuid, i64)>, StoreError> {
        rows(
            async {
                let table = match kind {
                    ItemKind::Integer => Table::Integer.name(),
                    ItemKind::Timestamped => Table::Timestamp.name(),
                    ItemKind::Snapshots => SNAPSHOTS,
                };
                // A full scan of the partition keys; then the last position of each partition.
                let cql = format!(
                    "SELECT DISTINCT sequence_id FROM {}.{table}",
                    self.inner.config.keyspace
                );
                let mut stmt = self.inner.session.prepare(cql).await.map_err(backend)?;
                stmt.set_consistency(self.inner.config.driver_consistency());
                stmt.set_page_size(1000);
                let mut ids = Vec::new();
                let mut paging = PagingState::start();
                loop {
                    let (result, response) = self
                        .inner
                        .session
                        .execute_single_page(&stmt, (), paging)
                        .await
                        .map_err(read_error)?;
                    for row in result
                        .into_rows_result()
                        .map_err(backend)?
                        .rows::<(Uuid,)>()
                        .map_err(backend)?
                    {
                        ids.push(row.map_err(backend)?.0);
                    }
                    match response.into_paging_control_flow() {
                        std::ops::ControlFlow::Break(()) => break,
                        std::ops::ControlFlow::Continue(next) => paging = next,
                    }
                }
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    let last = Select {
                        limit: Some(1),
                        ..Select::all().descending()
                    };
                    let rows = self.select_rows(table, id, &last).await?;
                    out.push((id, rows.first().map_or(0, |r| r.0)));
                }
                Ok(out)
            }
            .await,
        )
    }

    #[tracing::instrument(name = "eventsmith.inventory.snapshots", level = "debug", skip_all, fields(backend = "cassandra", sequence_id = %sequence_id, items = tracing::field::Empty, outcome = tracing::field::Empty))]
    async fn select_snapshots(
        &self,
        sequence_id: Uuid,
    ) -> Result<Vec<IntegerSequencedItem>, StoreError> {
        rows(
            async {
                let rows = self
                    .select_rows(SNAPSHOTS, sequence_id, &Select::all())
                    .await?;
                integer_items(sequence_id, rows)
            }
            .await,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_nodes_keyspace_and_parameters() {
        let c: CassandraConfig = "cassandra://127.0.0.1:9043,127.0.0.2:9043/es?replication_factor=3&consistency=LOCAL_QUORUM&serial_consistency=local_serial&request_timeout_ms=2500&heartbeat_interval_ms=1000&heartbeat_timeout_ms=2000&connect_timeout_ms=500"
            .parse()
            .unwrap();
        assert_eq!(c.nodes(), ["127.0.0.1:9043", "127.0.0.2:9043"]);
        assert_eq!(c.keyspace(), "es");
        assert_eq!(
            c.replication,
            Some(Replication::Simple {
                replication_factor: 3
            })
        );
        assert_eq!(c.consistency, Consistency::LocalQuorum);
        assert_eq!(c.serial_consistency, SerialConsistency::LocalSerial);
        assert_eq!(c.request_timeout, Some(Duration::from_millis(2500)));
        assert_eq!(c.heartbeat_interval, Duration::from_secs(1));
        assert_eq!(c.heartbeat_timeout, Duration::from_secs(2));
        assert_eq!(c.connect_timeout, Duration::from_millis(500));

        let c: CassandraConfig =
            "cassandra://h:9042/ks?replication=dc1:3;dc2:2&request_timeout_ms=0"
                .parse()
                .unwrap();
        assert_eq!(
            c.replication,
            Some(Replication::NetworkTopology(vec![
                ("dc1".into(), 3),
                ("dc2".into(), 2)
            ]))
        );
        assert_eq!(c.request_timeout, None);
        // Without parameters: the defaults of `new`.
        let plain: CassandraConfig = "cassandra://h:9042/ks".parse().unwrap();
        let new = CassandraConfig::new(["h:9042"], "ks").unwrap();
        assert_eq!(format!("{plain:?}"), format!("{new:?}"));
    }

    /// `url` does the decoding: percent-escapes in the keyspace and the parameters, bracketed
    /// IPv6 contact points.
    #[test]
    fn urls_are_percent_decoded_and_take_ipv6_hosts() {
        let c: CassandraConfig =
            "cassandra://[::1]:9042,h2:9043/%65vents?replication=dc%201:3&consistency=%71uorum"
                .parse()
                .unwrap();
        assert_eq!(c.nodes(), ["[::1]:9042", "h2:9043"]);
        assert_eq!(c.keyspace(), "events");
        assert_eq!(
            c.replication,
            Some(Replication::NetworkTopology(vec![("dc 1".into(), 3)]))
        );
        assert_eq!(c.consistency, Consistency::Quorum);
        let c: CassandraConfig = "cassandra://nœud:9042/ks".parse().unwrap();
        assert_eq!(c.nodes(), ["nœud:9042"]);
    }

    #[test]
    fn bad_urls_are_config_errors() {
        for bad in [
            "",
            "http://h:9042/ks",
            "cassandra://h:9042",
            "cassandra://h/ks",
            "cassandra://:9042/ks",
            "cassandra://h:9042,/ks",
            "cassandra://h:9042/bad-name",
            "cassandra://h:9042/ks?replication_factor=0",
            "cassandra://h:9042/ks?replication_factor=x",
            "cassandra://h:9042/ks?replication_factor=3&replication=dc1:3",
            "cassandra://h:9042/ks?replication=dc1",
            "cassandra://h:9042/ks?replication=:3",
            "cassandra://h:9042/ks?consistency=one",
            "cassandra://h:9042/ks?serial_consistency=quorum",
            "cassandra://h:9042/ks?request_timeout_ms=soon",
            "cassandra://h:9042/ks?heartbeat_interval_ms=0",
            "cassandra://h:9042/ks?replicaton_factor=3",
            "cassandra://h:99999/ks",
            "cassandra://user@h:9042/ks",
            "cassandra://h:9042/ks#fragment",
            "cassandra://h:9042/ks/more",
            "cassandra://h:9042/%ff",
        ] {
            assert!(
                matches!(
                    bad.parse::<CassandraConfig>(),
                    Err(StoreError::Config { .. })
                ),
                "{bad:?}"
            );
        }
    }
}
