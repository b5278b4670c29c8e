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
//! # Unknown outcomes
//!
//! A timeout or a broken connection during an LWT append does not say whether it applied.
//! Every append carries a fresh commit id, stored in each row. When the outcome is unknown,
//! the store reads the positions at SERIAL consistency (which completes any Paxos round in
//! flight): all rows carry our commit id → success; a row carries another → conflict; no row
//! → the identical batch is sent again. Only when that resolution fails too does the append
//! return [`StoreError::OutcomeUnknown`] with the commit id.
//!
//! # What Cassandra cannot do
//!
//! - A conditional batch cannot span partitions, so one atomic append covers one sequence:
//!   [`Capabilities::cross_sequence_batches`] is missing. Repositories append one aggregate
//!   at a time, so this never limits them.
//! - There is no global notification log ([`Capabilities::notifications`] is missing): an item
//!   and a log entry cannot be written atomically, and an LWT-sequenced log would cost two or
//!   more Paxos rounds per append on one hot partition. ARCHITECTURE.md compares the options.
//!
//! # Consistency
//!
//! Commits and reads use [`Consistency`] (QUORUM by default, or LOCAL_QUORUM), Paxos uses
//! [`SerialConsistency`] (SERIAL or LOCAL_SERIAL). One store never mixes serial levels on the
//! same data; give every writer of a keyspace the same configuration.

mod projection;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{DbError, ExecutionError, PrepareError, RequestAttemptError};
use scylla::response::PagingState;
use scylla::response::query_result::QueryResult;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, Row};
use uuid::Uuid;

pub use projection::{CqlParam, CqlWrite};

use eventsmith_core::{
    AppendError, BoxError, Capabilities, IntegerSequencedItem, Inventory, ItemKind, ItemStore,
    Notification, Position, Select, SequencedItem, SnapshotStore, StoreError, Support, Timestamp,
    TimestampSequencedItem, Version, check_append, check_batch_unique, check_version,
};

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

/// Where and how a [`CassandraStore`] connects.
#[derive(Debug, Clone)]
pub struct CassandraConfig {
    nodes: Vec<String>,
    keyspace: String,
    /// Consistency of commits and reads.
    pub consistency: Consistency,
    /// Consistency of the Paxos phase.
    pub serial_consistency: SerialConsistency,
    /// Replication of the keyspace when it is created.
    pub replication: Replication,
    /// How long to wait for a connection.
    pub connect_timeout: Duration,
    /// How many times an append with an unknown outcome is resolved before giving up.
    pub resolve_attempts: usize,
    /// Addresses that nodes broadcast, mapped to addresses this client can reach (behind NAT
    /// or a proxy). Contact points are never translated.
    pub address_map: HashMap<SocketAddr, SocketAddr>,
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
            replication: Replication::Simple {
                replication_factor: 1,
            },
            connect_timeout: Duration::from_secs(10),
            resolve_attempts: 3,
            address_map: HashMap::new(),
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
    insert_snapshot: PreparedStatement,
    selects: Mutex<HashMap<String, PreparedStatement>>,
}

fn backend(e: impl Into<BoxError>) -> StoreError {
    StoreError::backend(e)
}

async fn open_session(config: &CassandraConfig) -> Result<Session, StoreError> {
    let mut builder = SessionBuilder::new()
        .known_nodes(&config.nodes)
        .connection_timeout(config.connect_timeout);
    if !config.address_map.is_empty() {
        builder = builder.address_translator(Arc::new(config.address_map.clone()));
    }
    builder.build().await.map_err(|e| StoreError::Unreachable {
        address: config.nodes.join(","),
        source: Box::new(e),
    })
}

impl CassandraStore {
    /// Creates the keyspace (with the configured replication) and the tables, if missing.
    pub async fn create_schema(config: &CassandraConfig) -> Result<(), StoreError> {
        let session = open_session(config).await?;
        let ks = &config.keyspace;
        let replication = match &config.replication {
            Replication::Simple { replication_factor } => {
                format!("{{'class': 'SimpleStrategy', 'replication_factor': {replication_factor}}}")
            }
            Replication::NetworkTopology(dcs) => {
                let dcs: Vec<String> = dcs
                    .iter()
                    .map(|(dc, n)| format!("'{}': {n}", dc.replace('\'', "''")))
                    .collect();
                format!("{{'class': 'NetworkTopologyStrategy', {}}}", dcs.join(", "))
            }
        };
        let ddl = [
            format!("CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {replication}"),
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
        for statement in ddl {
            session
                .query_unpaged(statement, &[])
                .await
                .map_err(backend)?;
        }
        session.await_schema_agreement().await.map_err(backend)?;
        Ok(())
    }

    /// Connects and prepares the statements; the schema must exist
    /// ([`create_schema`](Self::create_schema)).
    pub async fn connect(config: CassandraConfig) -> Result<Self, StoreError> {
        let session = open_session(&config).await?;
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
        // Snapshots are plain writes: a snapshot at a version is a function of the events up
        // to it, so concurrent writers write equal rows and the last one may win.
        let mut insert_snapshot = prepare(format!(
            "INSERT INTO {}.snapshots (sequence_id, position, topic, state) VALUES (?, ?, ?, ?)",
            config.keyspace
        ))
        .await?;
        insert_snapshot.set_consistency(config.driver_consistency());
        let array = |v: Vec<PreparedStatement>| -> [PreparedStatement; 2] {
            v.try_into().expect("two tables")
        };
        Ok(CassandraStore {
            inner: Arc::new(Inner {
                session,
                config,
                insert: array(insert),
                resolve: array(resolve),
                insert_snapshot,
                selects: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &CassandraConfig {
        &self.inner.config
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
        let mut out = Vec::new();
        let mut paging = PagingState::start();
        loop {
            let (result, response) = self
                .inner
                .session
                .execute_single_page(&stmt, &values, paging)
                .await
                .map_err(read_error)?;
            let rows = result.into_rows_result().map_err(backend)?;
            for row in rows.rows::<(i64, String, Vec<u8>)>().map_err(backend)? {
                out.push(row.map_err(backend)?);
            }
            match response.into_paging_control_flow() {
                std::ops::ControlFlow::Break(()) => break,
                std::ops::ControlFlow::Continue(next) => paging = next,
            }
        }
        Ok(out)
    }

    /// Appends rows of one sequence with one LWT (a statement or a conditional batch).
    async fn append_rows(
        &self,
        table: Table,
        rows: Vec<(Uuid, i64, String, Vec<u8>)>,
    ) -> Result<(), AppendError> {
        let Some(first) = rows.first() else {
            return Ok(());
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
        let conflict = |p: i64| AppendError::Conflict {
            sequence_id,
            position: position_of(p),
        };
        let mut sent = self.send_lwt(table, &values).await;
        for attempt in 0..self.inner.config.resolve_attempts {
            if attempt > 0 {
                // Give a broken connection time to be replaced before the next try.
                tokio::time::sleep(Duration::from_millis(100 * attempt as u64)).await;
            }
            match sent {
                Ok(Applied::Yes) => return Ok(()),
                Ok(Applied::No { existing }) => {
                    let first = positions
                        .iter()
                        .copied()
                        .find(|p| existing.contains(p))
                        .unwrap_or(positions[0]);
                    return Err(conflict(first));
                }
                Err(Failure::Definite(e)) => return Err(e.into()),
                Err(Failure::Unknown(e)) => match self
                    .resolve(table, sequence_id, &positions, commit_id)
                    .await
                {
                    Ok(Resolution::Ours) => return Ok(()),
                    Ok(Resolution::Theirs(p)) => return Err(conflict(p)),
                    // Not applied, and nothing in the way: send the identical batch again.
                    Ok(Resolution::Absent) => sent = self.send_lwt(table, &values).await,
                    Err(resolve_error) => {
                        sent = Err(Failure::Unknown(
                            format!("{e}; resolving it: {resolve_error}").into(),
                        ))
                    }
                },
            }
        }
        match sent {
            Ok(Applied::Yes) => Ok(()),
            Ok(Applied::No { existing }) => {
                let first = positions
                    .iter()
                    .copied()
                    .find(|p| existing.contains(p))
                    .unwrap_or(positions[0]);
                Err(conflict(first))
            }
            Err(Failure::Definite(e)) => Err(e.into()),
            Err(Failure::Unknown(source)) => {
                Err(StoreError::OutcomeUnknown { commit_id, source }.into())
            }
        }
    }

    async fn send_lwt(
        &self,
        table: Table,
        values: &[(Uuid, i64, String, Vec<u8>, Uuid)],
    ) -> Result<Applied, Failure> {
        let insert = &self.inner.insert[table as usize];
        let result = if values.len() == 1 {
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

    /// Reads the positions at SERIAL consistency, completing any Paxos round in flight.
    async fn resolve(
        &self,
        table: Table,
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
            .execute_unpaged(&self.inner.resolve[table as usize], (sequence_id, lo, hi))
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
        Err(backend(format!(
            "commit {commit_id} applied to {ours} of {} rows of one partition",
            positions.len()
        )))
    }
}

enum Applied {
    Yes,
    No { existing: Vec<i64> },
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
    let mut all = true;
    let mut existing = Vec::new();
    for row in rows.rows::<Row>().map_err(backend)? {
        let row = row.map_err(backend)?;
        if !matches!(row.columns.first(), Some(Some(CqlValue::Boolean(true)))) {
            all = false;
            if let Some(Some(CqlValue::BigInt(p))) = position.and_then(|i| row.columns.get(i)) {
                existing.push(*p);
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
        }
    }

    async fn append(&self, items: Vec<IntegerSequencedItem>) -> Result<Range<u64>, AppendError> {
        check_append(&items)?;
        let rows = items
            .into_iter()
            .map(|i| (i.sequence_id, i.position as i64, i.topic, i.payload))
            .collect();
        self.append_rows(Table::Integer, rows).await?;
        Ok(0..0)
    }

    async fn select(
        &self,
        sequence_id: Uuid,
        query: &Select<Version>,
    ) -> Result<Vec<IntegerSequencedItem>, StoreError> {
        let rows = self
            .select_rows(
                Table::Integer.name(),
                sequence_id,
                &to_sql_select(query, version_to_sql),
            )
            .await?;
        integer_items(sequence_id, rows)
    }

    async fn select_notifications(
        &self,
        _after: u64,
        _limit: usize,
        _topics: &[&str],
    ) -> Result<Vec<Notification>, StoreError> {
        Err(StoreError::Unsupported {
            capability: "the notification log",
            reason: NO_LOG,
        })
    }

    async fn max_notification_id(&self) -> Result<u64, StoreError> {
        Err(StoreError::Unsupported {
            capability: "the notification log",
            reason: NO_LOG,
        })
    }

    async fn append_timestamped(
        &self,
        items: Vec<TimestampSequencedItem>,
    ) -> Result<(), AppendError> {
        check_batch_unique(&items)?;
        let rows = items
            .into_iter()
            .map(|i| (i.sequence_id, i.position.unix_nanos(), i.topic, i.payload))
            .collect();
        self.append_rows(Table::Timestamp, rows).await
    }

    async fn select_timestamped(
        &self,
        sequence_id: Uuid,
        query: &Select<Timestamp>,
    ) -> Result<Vec<TimestampSequencedItem>, StoreError> {
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
}

const NO_LOG: &str = "Cassandra cannot write an item and a global log entry atomically; a strict LWT-sequenced log would cost two or more Paxos rounds per append on one hot partition (see ARCHITECTURE.md)";

impl SnapshotStore for CassandraStore {
    async fn write_snapshot(&self, snapshot: IntegerSequencedItem) -> Result<(), StoreError> {
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

    async fn latest_snapshot(
        &self,
        sequence_id: Uuid,
        lte: Option<Version>,
    ) -> Result<Option<IntegerSequencedItem>, StoreError> {
        let query = Select {
            lte: lte.map(version_to_sql),
            limit: Some(1),
            ..Select::all().descending()
        };
        let rows = self.select_rows(SNAPSHOTS, sequence_id, &query).await?;
        Ok(integer_items(sequence_id, rows)?.pop())
    }
}

impl Inventory for CassandraStore {
    async fn list_sequences(&self, kind: ItemKind) -> Result<Vec<(Uuid, i64)>, StoreError> {
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

    async fn select_snapshots(
        &self,
        sequence_id: Uuid,
    ) -> Result<Vec<IntegerSequencedItem>, StoreError> {
        let rows = self
            .select_rows(SNAPSHOTS, sequence_id, &Select::all())
            .await?;
        integer_items(sequence_id, rows)
    }
}
