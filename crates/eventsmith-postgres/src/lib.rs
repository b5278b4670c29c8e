//! PostgreSQL event store for eventsmith, on `tokio-postgres`.
//!
//! [`PostgresStore`] implements [`ItemStore`], [`SnapshotStore`] and [`Inventory`]: atomic
//! batch appends with optimistic concurrency (one batch may span several sequences),
//! idempotency keys stored in the same transaction as their items, selects, a notification
//! log that never skips, timestamp-sequenced items and snapshots. It passes the eventsmith
//! conformance suite.
//!
//! ```no_run
//! use eventsmith_core::{ItemStore, Select, SequencedItem};
//! use eventsmith_postgres::{PostgresConfig, PostgresStore};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config: PostgresConfig = "postgres://postgres@127.0.0.1:55432/postgres?schema=shop".parse()?;
//! let store = PostgresStore::connect(config).await?;
//! let id = uuid::Uuid::new_v4();
//! let item = SequencedItem { sequence_id: id, position: 1, topic: "t".into(), payload: b"x".to_vec() };
//! let ids = store.append(vec![item.clone()]).await?;
//! assert_eq!(ids.end - ids.start, 1);
//! assert_eq!(store.select(id, &Select::all()).await?, vec![item]);
//! # Ok(()) }
//! ```
//!
//! # The notification log never skips
//!
//! Notification ids come from an identity column, but only while the appending transaction
//! holds `LOCK TABLE integer_items IN EXCLUSIVE MODE`, which it keeps to its commit. So ids
//! increase in commit order, a batch's ids are contiguous, and a reader that has seen id `n`
//! can never later find a smaller id committed: a follower paging from its last id misses
//! nothing, with no barrier and no waiting. The lock admits readers (`SELECT` takes a lock
//! that `EXCLUSIVE` does not conflict with); it blocks only other appends of integer items.
//!
//! A lock held to commit serialises commits, so each would wait for its own WAL flush. The
//! store wins that back with group commit: every append goes to one writer task per store,
//! and the appends that queue up while it commits are committed together in the next
//! transaction. A group of plain appends (the usual case) is one call of the schema's
//! `eventsmith_append` function in an autocommit statement: it takes the lock, inserts every
//! append of the group in one statement and notifies; a group with keyed or tracked appends
//! is `BEGIN`, the lock, the plain appends' statement, one statement per other append and
//! `COMMIT` in one pipeline. Either way: one round trip and one WAL flush for the whole group.
//! Each append's conflict is checked on its own (under the lock nobody else can insert between
//! the check and the insert), so a conflicting append fails alone and its neighbours commit;
//! an append that writes an item an earlier append of its group writes waits for the next
//! group.
//! ARCHITECTURE.md has the alternatives measured and the numbers.
//!
//! Several processes (or stores) may write one schema: they take the same table lock, so
//! the log stays gap-free across them; each process groups its own appends.
//!
//! # Followers
//!
//! Delivery is [`Delivery::Transactional`]: [`append_tracked`](ItemStore::append_tracked)
//! is one more statement in the writer's transaction, so a follower's output and its
//! tracking record commit together, under the same lock as every append (its items' ids are
//! ordered like any others), and the record's compare-and-set cannot race another runner.
//!
//! Every group commit that writes items also runs `SELECT pg_notify(channel, '')` in its
//! transaction ([`PostgresStore::notification_channel`], one channel per schema), so the
//! notification is delivered when, and only if, it commits. [`PostgresStore::listen`] wakes a
//! [`RunnerWaker`](eventsmith_core::RunnerWaker) on those notifications, from whichever
//! process committed: runners need not poll often to follow other processes promptly.
//!
//! # Cancellation
//!
//! Every async method may be cancelled by dropping its future, with these effects:
//!
//! - Reads, snapshot writes, timestamped appends and key look-ups are single statements on a
//!   pooled connection. Dropped before the statement is sent, nothing happens; after, the
//!   statement still runs to its end on the server (a write may commit) and the connection
//!   goes back to the pool once the driver has read the answer.
//! - [`append`](ItemStore::append) and [`append_with_key`](ItemStore::append_with_key) hand
//!   the batch to the writer task before their first suspension point returns. Once handed
//!   over, dropping the future does not withdraw the append: it is committed (or fails) as
//!   if awaited, and only its result is lost. Read it back (`select`, or `find_key` for a
//!   keyed append) to learn what happened.
//!
//! # Failures
//!
//! - The server unreachable, or the connection lost before anything was sent:
//!   [`StoreError::Unreachable`].
//! - A serialization failure, a deadlock, a lock timeout (`lock_timeout_ms`), a full pool, a
//!   server starting or shutting down: [`StoreError::Busy`] (retryable; nothing written).
//! - The connection lost while an append's commit was in flight: the writer ends the old
//!   server process (`pg_terminate_backend`, so it cannot commit later), reads the batch back
//!   and answers with what happened: success with the ids, or `Unreachable` (not written).
//!   Only when that fails too is the answer [`StoreError::OutcomeUnknown`]. A tracked
//!   append with no items whose record moved cannot tell whose move it was: also
//!   `OutcomeUnknown`.
//! - Rows that this version cannot read (a negative position, a column of another type):
//!   [`StoreError::Corrupt`]; a schema newer than [`SCHEMA_VERSION`] is refused on open
//!   with `Corrupt` too.
//!
//! # Schema
//!
//! Tables `integer_items`, `timestamp_items`, `snapshots`, `tracking`, `idempotency_keys`
//! and the one-row `schema_version` live in the configured schema
//! ([`PostgresConfig::schema`]) or the first schema of the server's `search_path`. They are
//! created on first connect and checked on every connect. docs/postgres.md shows them.

mod config;
mod error;
mod listen;
mod pool;
mod schema;
mod writer;

use std::fmt::Write as _;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use eventsmith_core::backend::{
    check_append, check_batch_unique, check_version, keyed_batch, outcome, rows,
};
use eventsmith_core::{
    AppendError, Capabilities, Delivery, IdempotencyKey, IntegerSequencedItem, Inventory, ItemKind,
    ItemStore, KeyedAppend, Lease, LeaseClaim, MAX_VERSION, Notification, Position, PriorAppend,
    Select, SequencedItem, SnapshotStore, StoreError, Support, Timestamp, TimestampSequencedItem,
    Tracking, Version,
};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

pub use config::PostgresConfig;
pub use listen::Listener;
pub use schema::SCHEMA_VERSION;
pub use writer::CommitStats;

use error::{from_pg, is_unique_violation};
use pool::Pool;
use writer::{Counters, Job};

/// An event store in a PostgreSQL schema. Clones share the connection pool and the writer.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: Arc<Pool>,
    /// Appends for the writer task; it ends when every clone of the store is gone.
    queue: mpsc::UnboundedSender<Job>,
    counters: Arc<Counters>,
    closed: AtomicBool,
    config: PostgresConfig,
    /// Where the writer's commits are notified ([`PostgresStore::listen`]).
    channel: String,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("items", &self.items.len())
            .finish_non_exhaustive()
    }
}

/// Version bounds beyond what a bigint holds select as if unbounded above.
fn version_to_sql(v: Version) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn read_version(v: i64, address: &str, at: &str) -> Result<Version, StoreError> {
    Version::try_from(v).map_err(|_| StoreError::Corrupt {
        detail: format!("{address}: {at}: negative position {v}"),
        source: None,
    })
}

/// Reads a column, turning a type mismatch (a column altered by hand) into `Corrupt`.
fn column<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    i: usize,
    address: &str,
    at: &dyn Fn() -> String,
) -> Result<T, StoreError> {
    row.try_get(i).map_err(|e| StoreError::Corrupt {
        detail: format!("{address}: {}: column {i}: {e}", at()),
        source: Some(Box::new(e)),
    })
}

/// Reads (sequence_id, position, topic, payload) from the first four columns.
fn read_columns(row: &Row, address: &str) -> Result<(Uuid, i64, String, Vec<u8>), StoreError> {
    let sequence_id: Uuid = column(row, 0, address, &|| "a row".to_owned())?;
    let position: i64 = column(row, 1, address, &|| format!("sequence {sequence_id}"))?;
    let at = || format!("sequence {sequence_id} position {position}");
    Ok((
        sequence_id,
        position,
        column(row, 2, address, &at)?,
        column(row, 3, address, &at)?,
    ))
}

fn read_integer(row: &Row, address: &str) -> Result<IntegerSequencedItem, StoreError> {
    let (sequence_id, position, topic, payload) = read_columns(row, address)?;
    Ok(SequencedItem {
        sequence_id,
        position: read_version(position, address, &format!("sequence {sequence_id}"))?,
        topic,
        payload,
    })
}

fn read_timestamped(row: &Row, address: &str) -> Result<TimestampSequencedItem, StoreError> {
    let (sequence_id, position, topic, payload) = read_columns(row, address)?;
    Ok(SequencedItem {
        sequence_id,
        position: Timestamp::from_unix_nanos(position),
        topic,
        payload,
    })
}

/// The WHERE bounds, ORDER BY and LIMIT of a select over `table`, with the bounds as bind
/// parameters `$2`, `$3`, … (`$1` is the sequence id). Only fixed fragments go into the SQL
/// text, so the statement cache holds at most a few dozen shapes.
fn select_sql<P: Copy>(
    table: &str,
    query: &Select<P>,
    to_sql: impl Fn(P) -> i64,
) -> (String, Vec<i64>) {
    let mut sql =
        format!("SELECT sequence_id, position, topic, payload FROM {table} WHERE sequence_id = $1");
    let mut args = Vec::new();
    for (bound, op) in [
        (query.gt, ">"),
        (query.gte, ">="),
        (query.lt, "<"),
        (query.lte, "<="),
    ] {
        if let Some(b) = bound {
            args.push(to_sql(b));
            let _ = write!(sql, " AND position {op} ${}", args.len() + 1);
        }
    }
    sql.push_str(if query.descending {
        " ORDER BY position DESC"
    } else {
        " ORDER BY position ASC"
    });
    if let Some(limit) = query.limit {
        args.push(i64::try_from(limit).unwrap_or(i64::MAX));
        let _ = write!(sql, " LIMIT ${}", args.len() + 1);
    }
    (sql, args)
}

impl PostgresStore {
    /// Connects, creates the schema when it is missing and checks its version.
    ///
    /// Fails with [`StoreError::Unreachable`] when the server cannot be reached,
    /// [`StoreError::Corrupt`] when the schema holds foreign tables or a newer version, and
    /// [`StoreError::Config`] when no schema can hold the tables.
    ///
    /// # Cancellation
    ///
    /// Dropping the future closes the connection it opened; a schema creation in flight is
    /// rolled back by the server (it runs in one transaction).
    pub async fn connect(config: PostgresConfig) -> Result<Self, StoreError> {
        let pool = Arc::new(Pool::new(config.clone()));
        let schema = {
            let mut conn = pool.get().await?;
            schema::open(conn.conn(), &config).await?
        };
        let channel = listen::channel(&schema);
        let (queue, rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        tokio::spawn(writer::run(
            config.clone(),
            channel.clone(),
            rx,
            counters.clone(),
        ));
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                pool,
                queue,
                counters,
                closed: AtomicBool::new(false),
                config,
                channel,
            }),
        })
    }

    /// The configuration the store was connected with.
    pub fn config(&self) -> &PostgresConfig {
        &self.inner.config
    }

    /// The channel every commit of items to this schema is notified on (`NOTIFY`, sent in
    /// the commit's transaction, so delivered only when it commits): `eventsmith_SCHEMA`, or
    /// for a schema name too long for that a prefix of it and a hash.
    pub fn notification_channel(&self) -> &str {
        &self.inner.channel
    }

    /// Wakes `waker` (a [`Runner`](eventsmith_core::Runner)'s) whenever items are committed
    /// to this schema by any process, so its followers need not wait for their next poll.
    ///
    /// Returns once a dedicated connection is listening (fails with
    /// [`StoreError::Unreachable`] when none can be opened, [`StoreError::Closed`] after
    /// [`close`](Self::close)); then wakes `waker` once for commits made before. The listener
    /// runs as a task until the returned [`Listener`] is dropped; it reconnects after a lost
    /// connection, with backoff, and wakes `waker` once each time it is back.
    ///
    /// # Cancellation
    ///
    /// Dropping the future before it resolves closes the connection it was opening; no task
    /// is left running.
    pub async fn listen(
        &self,
        waker: eventsmith_core::RunnerWaker,
    ) -> Result<Listener, StoreError> {
        self.check_open()?;
        listen::start(self.inner.config.clone(), self.inner.channel.clone(), waker).await
    }

    /// How many appends were committed in how many transactions (group commit at work).
    pub fn commit_stats(&self) -> CommitStats {
        self.inner.counters.stats()
    }

    /// Closes the pooled connections; every later call fails with [`StoreError::Closed`].
    /// Appends already handed to the writer are still committed; its connection closes when
    /// the last clone of the store is dropped.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.pool.close();
    }

    fn check_open(&self) -> Result<(), StoreError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
    }

    fn address(&self) -> &str {
        self.inner.pool.address()
    }

    /// Hands a batch to the writer and waits for its result. The batch is queued before the
    /// first await, so dropping the future later does not withdraw it.
    fn submit(
        &self,
        items: Vec<IntegerSequencedItem>,
        key: Option<(IdempotencyKey, PriorAppend)>,
        tracking: Option<Tracking>,
    ) -> Result<oneshot::Receiver<writer::Reply>, StoreError> {
        self.check_open()?;
        let (reply, rx) = oneshot::channel();
        self.inner
            .queue
            .send(Job {
                items,
                key,
                tracking,
                reply,
            })
            .map_err(|_| StoreError::Closed)?;
        Ok(rx)
    }

    /// Runs one read statement on a pooled connection.
    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        self.check_open()?;
        let mut pooled = self.inner.pool.get().await?;
        let conn = pooled.conn();
        let statement = conn
            .prepare(sql)
            .await
            .map_err(|e| from_pg(e, self.address()))?;
        conn.client
            .query(&statement, params)
            .await
            .map_err(|e| from_pg(e, self.address()))
    }

    async fn select_table<P: Copy, T>(
        &self,
        table: &str,
        sequence_id: Uuid,
        query: &Select<P>,
        to_sql: impl Fn(P) -> i64,
        read: fn(&Row, &str) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        if query.limit == Some(0) {
            self.check_open()?;
            return Ok(Vec::new());
        }
        let (sql, args) = select_sql(table, query, to_sql);
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&sequence_id];
        params.extend(args.iter().map(|a| a as &(dyn ToSql + Sync)));
        let rows = self.query(&sql, &params).await?;
        rows.iter().map(|r| read(r, self.address())).collect()
    }

    /// The first item of a timestamped batch (in batch order) that exists.
    async fn timestamped_conflict(
        &self,
        items: &[TimestampSequencedItem],
    ) -> Result<Option<(Uuid, Timestamp)>, StoreError> {
        let ids: Vec<Uuid> = items.iter().map(|i| i.sequence_id).collect();
        let positions: Vec<i64> = items.iter().map(|i| i.position.unix_nanos()).collect();
        let rows = self
            .query(
                "SELECT b.sequence_id, b.position FROM unnest($1::uuid[], $2::bigint[]) \
                 WITH ORDINALITY AS b (sequence_id, position, ord) \
                 JOIN timestamp_items t ON t.sequence_id = b.sequence_id AND t.position = b.position \
                 ORDER BY b.ord LIMIT 1",
                &[&ids, &positions],
            )
            .await?;
        Ok(rows
            .first()
            .map(|r| (r.get(0), Timestamp::from_unix_nanos(r.get(1)))))
    }
}

/// A batch's sequence ids, positions, topics and payloads, as arrays.
type ColumnArrays<'a> = (Vec<Uuid>, Vec<i64>, Vec<&'a str>, Vec<&'a [u8]>);

/// The columns of a batch as arrays, for one `unnest` insert.
fn columns<P>(items: &[SequencedItem<P>], position: impl Fn(&P) -> i64) -> ColumnArrays<'_> {
    (
        items.iter().map(|i| i.sequence_id).collect(),
        items.iter().map(|i| position(&i.position)).collect(),
        items.iter().map(|i| i.topic.as_str()).collect(),
        items.iter().map(|i| i.payload.as_slice()).collect(),
    )
}

impl ItemStore for PostgresStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            notifications: Support::Yes,
            timestamped: Support::Yes,
            cross_sequence_batches: Support::Yes,
            feed: Support::Missing {
                reason: "the notification log is this store's feed (gapless, in commit order): follow it instead",
            },
        }
    }

    /// Appends a batch atomically through the writer task (see the crate docs).
    ///
    /// # Cancellation
    ///
    /// The batch is handed to the writer when the future is first polled; dropping the
    /// future after that does not withdraw it: it commits or fails as if awaited.
    #[tracing::instrument(name = "eventsmith.append", level = "debug", skip_all, fields(backend = "postgres", items = items.len(), sequence_id = items.first().map(|i| tracing::field::display(i.sequence_id)), position = items.first().map(|i| i.position), keyed = false, outcome = tracing::field::Empty))]
    async fn append(&self, items: Vec<IntegerSequencedItem>) -> Result<Range<u64>, AppendError> {
        outcome(
            async {
                if items.is_empty() {
                    self.check_open()?;
                    return Ok(0..0);
                }
                check_append(&items)?;
                let rx = self.submit(items, None, None)?;
                match rx.await.map_err(|_| StoreError::Closed)?? {
                    KeyedAppend::Appended(range) => Ok(range),
                    KeyedAppend::AlreadyApplied(_) => unreachable!("an append without a key"),
                }
            }
            .await,
        )
    }

    /// Appends a batch of one sequence with its idempotency key in the same transaction,
    /// unless the key is stored for the sequence.
    ///
    /// # Cancellation
    ///
    /// As for [`append`](ItemStore::append): once handed to the writer, the append and its
    /// key commit (or not) whether or not the future is awaited; `find_key` tells which.
    #[tracing::instrument(name = "eventsmith.append", level = "debug", skip_all, fields(backend = "postgres", items = items.len(), sequence_id = items.first().map(|i| tracing::field::display(i.sequence_id)), position = items.first().map(|i| i.position), keyed = true, outcome = tracing::field::Empty))]
    async fn append_with_key(
        &self,
        items: Vec<IntegerSequencedItem>,
        key: &IdempotencyKey,
    ) -> Result<KeyedAppend, AppendError> {
        outcome(
            async {
                let Some(prior) = keyed_batch(&items)? else {
                    self.check_open()?;
                    return Ok(KeyedAppend::Appended(0..0));
                };
                check_append(&items)?;
                let rx = self.submit(items, Some((key.clone(), prior)), None)?;
                rx.await.map_err(|_| StoreError::Closed)?
            }
            .await,
        )
    }

    /// Followers' output and positions commit together: [`Delivery::Transactional`].
    fn delivery(&self) -> Option<Delivery> {
        Some(Delivery::Transactional)
    }

    /// Reads the follower's row of the `tracking` table (0 when it has none).
    ///
    /// # Cancellation
    ///
    /// A read: dropping the future has no effect on the store.
    #[tracing::instrument(name = "eventsmith.tracking", level = "debug", skip_all, fields(backend = "postgres", follower = %follower, outcome = tracing::field::Empty))]
    async fn tracking_position(&self, follower: &str) -> Result<u64, StoreError> {
        outcome(
            async {
                let rows = self.query(writer::TRACKING_POSITION, &[&follower]).await?;
                let Some(row) = rows.first() else {
                    return Ok(0);
                };
                let at = || format!("the tracking record of follower {follower:?}");
                let position: i64 = column(row, 0, self.address(), &at)?;
                read_version(position, self.address(), &at())
            }
            .await,
        )
    }

    /// One statement on a pooled connection, timed by the server's clock (so runners in
    /// processes on different machines agree on expiry): the lease is taken when free,
    /// the claimer's own, or expired; otherwise the holder is read back.
    ///
    /// # Cancellation
    ///
    /// A dropped future may still have taken the lease; it expires after its time to live.
    #[tracing::instrument(name = "eventsmith.lease.claim", level = "debug", skip_all, fields(backend = "postgres", follower = %lease.follower, owner = %lease.owner, outcome = tracing::field::Empty))]
    async fn claim_lease(&self, lease: &Lease) -> Result<LeaseClaim, StoreError> {
        outcome(async {
        let ttl = i64::try_from(lease.ttl.as_millis()).unwrap_or(i64::MAX);
        let taken = self
            .query(
                "INSERT INTO leases AS l (follower, owner, expires) \
                 VALUES ($1, $2, clock_timestamp() + $3::bigint * interval '1 millisecond') \
                 ON CONFLICT (follower) DO UPDATE SET owner = excluded.owner, expires = excluded.expires \
                 WHERE l.owner = excluded.owner OR l.expires <= clock_timestamp() \
                 RETURNING true",
                &[&lease.follower, &lease.owner, &ttl],
            )
            .await?;
        if !taken.is_empty() {
            return Ok(LeaseClaim::Held);
        }
        let holder = self
            .query(
                "SELECT owner, greatest(0, (extract(epoch FROM expires - clock_timestamp()) * 1000)::bigint) \
                 FROM leases WHERE follower = $1",
                &[&lease.follower],
            )
            .await?;
        let at = || format!("the lease of follower {:?}", lease.follower);
        Ok(match holder.first() {
            // Released or expired since the insert looked: the next claim takes it.
            None => LeaseClaim::Taken {
                owner: Uuid::nil(),
                expires_in: std::time::Duration::ZERO,
            },
            Some(row) => LeaseClaim::Taken {
                owner: column(row, 0, self.address(), &at)?,
                expires_in: std::time::Duration::from_millis(
                    column::<i64>(row, 1, self.address(), &at)?.max(0) as u64,
                ),
            },
        })
        }.await)
    }

    /// # Cancellation
    ///
    /// A dropped future may still have released the lease.
    #[tracing::instrument(name = "eventsmith.lease.release", level = "debug", skip_all, fields(backend = "postgres", follower = %follower, owner = %owner, outcome = tracing::field::Empty))]
    async fn release_lease(&self, follower: &str, owner: Uuid) -> Result<(), StoreError> {
        outcome(
            async {
                self.query(
                    "DELETE FROM leases WHERE follower = $1 AND owner = $2",
                    &[&follower, &owner],
                )
                .await?;
                Ok(())
            }
            .await,
        )
    }

    /// Appends `items` and moves the follower's tracking record in one transaction, through
    /// the writer like every append (so its items take notification ids under the same lock,
    /// and it may share a group commit with other appends). The record's check and move run
    /// under that lock, so two runners of one follower, in this process or others, never both
    /// commit from the same position: the later gets [`AppendError::TrackingMoved`].
    ///
    /// # Cancellation
    ///
    /// As for [`append`](ItemStore::append): once handed to the writer, the items and the
    /// move commit (or not) whether or not the future is awaited;
    /// [`tracking_position`](ItemStore::tracking_position) tells which.
    #[tracing::instrument(name = "eventsmith.append_tracked", level = "debug", skip_all, fields(backend = "postgres", items = items.len(), follower = %tracking.follower, from = tracking.from, to = tracking.to, outcome = tracing::field::Empty))]
    async fn append_tracked(
        &self,
        items: Vec<IntegerSequencedItem>,
        tracking: Tracking,
    ) -> Result<Range<u64>, AppendError> {
        outcome(
            async {
                check_append(&items)?;
                // Positions are notification ids, bigints in the table: a larger one cannot be
                // recorded (nor be recorded already), so it is refused before anything is sent.
                if let Some(bad) = [tracking.from, tracking.to]
                    .into_iter()
                    .find(|p| *p > MAX_VERSION)
                {
                    return Err(StoreError::InvalidItem {
                sequence_id: Uuid::nil(),
                position: Position::Version(bad),
                reason: format!(
                    "follower {:?}: tracking positions are notification ids, up to {MAX_VERSION}",
                    tracking.follower
                ),
            }
            .into());
                }
                let rx = self.submit(items, None, Some(tracking))?;
                match rx.await.map_err(|_| StoreError::Closed)?? {
                    KeyedAppend::Appended(range) => Ok(range),
                    KeyedAppend::AlreadyApplied(_) => unreachable!("a tracked append has no key"),
                }
            }
            .await,
        )
    }

    /// # Cancellation
    ///
    /// A read: dropping the future has no effect on the store.
    #[tracing::instrument(name = "eventsmith.find_key", level = "debug", skip_all, fields(backend = "postgres", sequence_id = %sequence_id, outcome = tracing::field::Empty))]
    async fn find_key(
        &self,
        sequence_id: Uuid,
        key: &IdempotencyKey,
    ) -> Result<Option<PriorAppend>, StoreError> {
        outcome(
            async {
                let rows = self
                    .query(
                        "SELECT first_position, last_position FROM idempotency_keys \
                 WHERE sequence_id = $1 AND key = $2",
                        &[&sequence_id, &key.as_str()],
                    )
                    .await?;
                let Some(row) = rows.first() else {
                    return Ok(None);
                };
                let at = || format!("idempotency key {key} of sequence {sequence_id}");
                let first: i64 = column(row, 0, self.address(), &at)?;
                let last: i64 = column(row, 1, self.address(), &at)?;
                Ok(Some(PriorAppend {
                    sequence_id,
                    versions: read_version(first, self.address(), &at())?
                        ..=read_version(last, self.address(), &at())?,
                }))
            }
            .await,
        )
    }

    /// # Cancellation
    ///
    /// A read: dropping the future has no effect on the store.
    #[tracing::instrument(name = "eventsmith.select", level = "debug", skip_all, fields(backend = "postgres", sequence_id = %sequence_id, items = tracing::field::Empty, outcome = tracing::field::Empty))]
    async fn select(
        &self,
        sequence_id: Uuid,
        query: &Select<Version>,
    ) -> Result<Vec<IntegerSequencedItem>, StoreError> {
        rows(
            async {
                self.select_table(
                    "integer_items",
                    sequence_id,
                    query,
                    version_to_sql,
                    read_integer,
                )
                .await
            }
            .await,
        )
    }

    /// # Cancellation
    ///
    /// A read: dropping the future has no effect on the store.
    #[tracing::instrument(name = "eventsmith.notifications", level = "debug", skip_all, fields(backend = "postgres", after = after, limit = limit, items = tracing::field::Empty, outcome = tracing::field::Empty))]
    async fn select_notifications(
        &self,
        after: u64,
        limit: usize,
        topics: &[&str],
    ) -> Result<Vec<Notification>, StoreError> {
        rows(
            async {
                if limit == 0 {
                    self.check_open()?;
                    return Ok(Vec::new());
                }
                let after = i64::try_from(after).unwrap_or(i64::MAX);
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                let rows = if topics.is_empty() {
                    self.query(
                "SELECT sequence_id, position, topic, payload, notification_id FROM integer_items \
                 WHERE notification_id > $1 ORDER BY notification_id LIMIT $2",
                &[&after, &limit],
            )
            .await?
                } else {
                    self.query(
                "SELECT sequence_id, position, topic, payload, notification_id FROM integer_items \
                 WHERE notification_id > $1 AND topic = ANY($3) ORDER BY notification_id LIMIT $2",
                &[&after, &limit, &topics],
            )
            .await?
                };
                rows.iter()
                    .map(|row| {
                        let item = read_integer(row, self.address())?;
                        let at =
                            || format!("sequence {} position {}", item.sequence_id, item.position);
                        let id: i64 = column(row, 4, self.address(), &at)?;
                        Ok(Notification {
                            id: read_version(id, self.address(), &at())?,
                            item,
                        })
                    })
                    .collect()
            }
            .await,
        )
    }

    /// # Cancellation
    ///
    /// A read: dropping the future has no effect on the store.
    #[tracing::instrument(name = "eventsmith.max_notification_id", level = "debug", skip_all, fields(backend = "postgres", outcome = tracing::field::Empty))]
    async fn max_notification_id(&self) -> Result<u64, StoreError> {
        outcome(
            async {
                let rows = self
                    .query(
                        "SELECT coalesce(max(notification_id), 0) FROM integer_items",
                        &[],
                    )
                    .await?;
                let id: i64 = column(&rows[0], 0, self.address(), &|| "the log".to_owned())?;
                read_version(id, self.address(), "the notification log")
            }
            .await,
        )
    }

    /// Appends timestamped items in one statement on a pooled connection; they take no
    /// notification ids and no lock.
    ///
    /// # Cancellation
    ///
    /// Once the statement is sent, it commits or fails on the server whether or not the
    /// future is awaited.
    #[tracing::instrument(name = "eventsmith.append_timestamped", level = "debug", skip_all, fields(backend = "postgres", items = items.len(), sequence_id = items.first().map(|i| tracing::field::display(i.sequence_id)), outcome = tracing::field::Empty))]
    async fn append_timestamped(
        &self,
        items: Vec<TimestampSequencedItem>,
    ) -> Result<(), AppendError> {
        outcome(
            async {
                if items.is_empty() {
                    self.check_open()?;
                    return Ok(());
                }
                check_batch_unique(&items)?;
                let (ids, positions, topics, payloads) = columns(&items, |p| p.unix_nanos());
                let result = self
                    .query(
                        "INSERT INTO timestamp_items (sequence_id, position, topic, payload) \
                 SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::bytea[])",
                        &[&ids, &positions, &topics, &payloads],
                    )
                    .await;
                match result {
                    Ok(_) => Ok(()),
                    Err(StoreError::Backend { source })
                        if source
                            .downcast_ref::<tokio_postgres::Error>()
                            .is_some_and(is_unique_violation) =>
                    {
                        match self.timestamped_conflict(&items).await? {
                            Some((sequence_id, position)) => Err(AppendError::Conflict {
                                sequence_id,
                                position: Position::Timestamp(position),
                            }),
                            None => Err(AppendError::Store(StoreError::Busy { source })),
                        }
                    }
                    Err(e) => Err(e.into()),
                }
            }
            .await,
        )
    }

    /// # Cancellation
    ///
    /// A read: dropping the future has no effect on the store.
    #[tracing::instrument(name = "eventsmith.select_timestamped", level = "debug", skip_all, fields(backend = "postgres", sequence_id = %sequence_id, items = tracing::field::Empty, outcome = tracing::field::Empty))]
    async fn select_timestamped(
        &self,
        sequence_id: Uuid,
        query: &Select<Timestamp>,
    ) -> Result<Vec<TimestampSequencedItem>, StoreError> {
        rows(
            async {
                self.select_table(
                    "timestamp_items",
                    sequence_id,
                    query,
                    Timestamp::unix_nanos,
                    read_timestamped,
                )
                .await
            }
            .await,
        )
    }
}

impl SnapshotStore for PostgresStore {
    /// Stores (or replaces) a snapshot in one statement on a pooled connection.
    ///
    /// # Cancellation
    ///
    /// Once the statement is sent, it commits on the server whether or not the future is
    /// awaited.
    #[tracing::instrument(name = "eventsmith.snapshot.write", level = "debug", skip_all, fields(backend = "postgres", sequence_id = %snapshot.sequence_id, position = snapshot.position, outcome = tracing::field::Empty))]
    async fn write_snapshot(&self, snapshot: IntegerSequencedItem) -> Result<(), StoreError> {
        outcome(async {
        check_version(&snapshot)?;
        let position = snapshot.position as i64;
        self.query(
            "INSERT INTO snapshots (sequence_id, position, topic, payload) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (sequence_id, position) DO UPDATE SET topic = EXCLUDED.topic, payload = EXCLUDED.payload",
            &[&snapshot.sequence_id, &position, &snapshot.topic, &snapshot.payload],
        )
        .await
        .map(|_| ())
        }.await)
    }

    /// # Cancellation
    ///
    /// A read: dropping the future has no effect on the store.
    #[tracing::instrument(name = "eventsmith.snapshot.latest", level = "debug", skip_all, fields(backend = "postgres", sequence_id = %sequence_id, lte = ?lte, outcome = tracing::field::Empty))]
    async fn latest_snapshot(
        &self,
        sequence_id: Uuid,
        lte: Option<Version>,
    ) -> Result<Option<IntegerSequencedItem>, StoreError> {
        outcome(
            async {
                let query = Select {
                    lte,
                    limit: Some(1),
                    ..Select::all().descending()
                };
                let mut rows = self
                    .select_table(
                        "snapshots",
                        sequence_id,
                        &query,
                        version_to_sql,
                        read_integer,
                    )
                    .await?;
                Ok(rows.pop())
            }
            .await,
        )
    }
}

impl Inventory for PostgresStore {
    /// # Cancellation
    ///
    /// A read: dropping the future has no effect on the store.
    #[tracing::instrument(name = "eventsmith.inventory.sequences", level = "debug", skip_all, fields(backend = "postgres", kind = ?kind, items = tracing::field::Empty, outcome = tracing::field::Empty))]
    async fn list_sequences(&self, kind: ItemKind) -> Result<Vec<(Uuid, i64)>, StoreError> {
        rows(async {
        let sql = match kind {
            ItemKind::Integer => {
                "SELECT sequence_id, max(position) FROM integer_items GROUP BY sequence_id"
            }
            ItemKind::Timestamped => {
                "SELECT sequence_id, max(position) FROM timestamp_items GROUP BY sequence_id"
            }
            ItemKind::Snapshots => {
                "SELECT sequence_id, max(position) FROM snapshots GROUP BY sequence_id"
            }
        };
        let rows = self.query(sql, &[]).await?;
        rows.iter()
            .map(|row| {
                let id: Uuid = column(row, 0, self.address(), &|| "a sequence".to_owned())?;
                let max: i64 = column(row, 1, self.address(), &|| format!("sequence {id}"))?;
                Ok((id, max))
            })
            .collect()
        }.await)
    }

    /// # Cancellation
    ///
    /// A read: dropping the future has no effect on the store.
    #[tracing::instrument(name = "eventsmith.inventory.snapshots", level = "debug", skip_all, fields(backend = "postgres", sequence_id = %sequence_id, items = tracing::field::Empty, outcome = tracing::field::Empty))]
    async fn select_snapshots(
        &self,
        sequence_id: Uuid,
    ) -> Result<Vec<IntegerSequencedItem>, StoreError> {
        rows(
            async {
                self.select_table(
                    "snapshots",
                    sequence_id,
                    &Select::all(),
                    version_to_sql,
                    read_integer,
                )
                .await
            }
            .await,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_bind_every_bound() {
        let (sql, args) = select_sql(
            "integer_items",
            &Select::all().gt(2u64).lte(9).limit(3).descending(),
            version_to_sql,
        );
        assert_eq!(
            sql,
            "SELECT sequence_id, position, topic, payload FROM integer_items WHERE sequence_id = $1 AND position > $2 AND position <= $3 ORDER BY position DESC LIMIT $4"
        );
        assert_eq!(args, vec![2, 9, 3]);
    }

    #[test]
    fn futures_are_send() {
        fn send<T: Send>(_: &T) {}
        async fn all(store: PostgresStore, key: IdempotencyKey) {
            let id = Uuid::new_v4();
            send(&store.append(Vec::new()));
            send(&store.append_with_key(Vec::new(), &key));
            send(&store.find_key(id, &key));
            send(&store.select(id, &Select::all()));
            send(&store.select_notifications(0, 1, &[]));
            send(&store.append_timestamped(Vec::new()));
            send(&store.write_snapshot(cases_item(id)));
            send(&store.list_sequences(ItemKind::Integer));
            send(&PostgresStore::connect(store.config().clone()));
        }
        fn cases_item(id: Uuid) -> IntegerSequencedItem {
            SequencedItem {
                sequence_id: id,
                position: 1,
                topic: "t".into(),
                payload: Vec::new(),
            }
        }
        let _ = all;
    }
}
