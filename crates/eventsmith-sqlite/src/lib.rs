//! SQLite event store for eventsmith, on rusqlite with SQLite bundled (nothing to install).
//!
//! [`SqliteStore`] implements [`ItemStore`]: atomic batch appends with optimistic concurrency,
//! selects, the notification log and timestamp-sequenced items, in one file (WAL mode) or in
//! memory. It passes the eventsmith conformance suite.
//!
//! ```
//! use eventsmith_core::{ItemStore, Select, SequencedItem};
//! use eventsmith_sqlite::SqliteStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = SqliteStore::open(dir.path().join("events.db")).await?;
//! let id = uuid::Uuid::new_v4();
//! let item = SequencedItem { sequence_id: id, position: 1, topic: "t".into(), payload: b"x".to_vec() };
//! let ids = store.append(vec![item.clone()]).await?;
//! assert_eq!(ids.end - ids.start, 1);
//! assert_eq!(store.select(id, &Select::all()).await?, vec![item]);
//! store.close().await;
//! # Ok(()) }
//! ```
//!
//! # Async without stalling the runtime
//!
//! One connection writes; a per-store writer thread and the callers share it. On this kind of
//! machine waking another thread costs 25-100 µs, more than a commit without fsync, so the
//! store avoids thread hops where it safely can:
//!
//! - An append that finds the writer idle (nothing queued, the connection free, the write lock
//!   free) commits on the caller's thread. A commit that fsyncs ([`Synchronous::Full`]) does
//!   so only inside tokio's `block_in_place` on a multi-threaded runtime, which first hands
//!   the worker's other tasks to another thread; on a current-thread runtime, or outside
//!   tokio, it goes to the writer thread.
//! - Otherwise the append is queued for the writer thread and the caller awaits a oneshot
//!   reply. The writer thread is also the one that waits for another process's write lock
//!   (up to [`SqliteConfig::busy_timeout`]) and runs WAL checkpoints, so no async worker ever
//!   waits on either: SQLite's own auto-checkpoint, which would run inside whichever commit
//!   crosses the threshold, is replaced by a WAL hook that asks the writer thread.
//! - Reads run on the calling thread in pages of at most [`READ_PAGE_ROWS`] rows with a
//!   yield to the runtime between pages: on the writer's connection when it is idle (its
//!   page cache is the freshest: a connection drops its whole cache whenever another one has
//!   committed), else on a pooled read-only connection (files) or on the writer thread
//!   (in-memory databases). WAL readers never wait for locks, so each step is short work.
//!   The pooled connections are opened with the store, on the writer thread; a read that
//!   finds them all lent waits for one. Scans have bounded steps too: a topic-filtered page
//!   scans a window of ids at a time, `list_sequences` a few hundred sequences by index
//!   seeks.
//!
//! No `spawn_blocking`: the store works under any async runtime. The benchmarks measure the
//! cost of the approach (`g-point-read` against rusqlite on the calling thread, and the
//! command workloads against raw inserts).
//!
//! # Group commit
//!
//! Appends queued while the writer is busy are committed together in one transaction, each in
//! its own savepoint: a conflicting batch is rolled back alone and gets its conflict, its
//! neighbours commit. One fsync then serves many appends, which is what makes concurrent
//! writers faster than one transaction each. Without fsync ([`Synchronous::Normal`]) there is
//! little to share: a commit costs about as much as its inserts, so grouping gains little.
//! While appends arrive concurrently (the last group had several), they all go to the writer
//! thread rather than inline; when commits fsync, the writer waits up to half its last
//! commit's time for a group as large as the last one, so that writers share one fsync
//! instead of alternating between two half-size groups.
//! [`SqliteStore::commit_stats`] counts appends, transactions and inline commits.
//!
//! # Back-pressure
//!
//! The writer thread's queue holds at most [`SqliteConfig::queue_capacity`] appends (and
//! other writer work) at once. An append that finds it full waits asynchronously for room,
//! never blocking its thread, so a burst of appends faster than the disk holds bounded
//! memory; [`CommitStats`] reports the queue's depth, its peak and how often callers waited.
//! The writer still takes everything queued into its next group commit.
//!
//! # Cancellation
//!
//! Each method says what dropping its future does. In short: reads are cancel-safe; an
//! append, once queued for the writer thread (or committing on the caller's thread), commits
//! even if its future is dropped, and one dropped while it waited for room in a full queue
//! was never queued and writes nothing, so a retry under the same idempotency key never
//! writes twice.
//!
//! # Durability
//!
//! Files use WAL mode. [`Synchronous::Full`] (the default) fsyncs the WAL at every commit: an
//! acknowledged append survives a process crash and a power loss. [`Synchronous::Normal`]
//! fsyncs only at checkpoints: an acknowledged append survives a process crash, but the last
//! commits may be lost on power loss or an OS crash. It is much faster for one-at-a-time
//! appends; group commit narrows the gap under concurrency.
//!
//! # Several processes
//!
//! Several processes may open one file. Writers take SQLite's write lock with
//! `BEGIN IMMEDIATE`, waiting up to [`SqliteConfig::busy_timeout`]; if it is still held, the
//! append fails with [`StoreError::Busy`] (retryable) and nothing is written. Notification ids
//! are given inside the write lock, so they increase in commit order across processes too.
//!
//! # Schema
//!
//! Created on first open, stamped with `PRAGMA application_id` and `PRAGMA user_version`
//! ([`SCHEMA_VERSION`]). Opening a file with a newer schema, or a file that is not an
//! eventsmith database, fails with [`StoreError::Corrupt`] before anything is written to it.
//! Notification ids are `AUTOINCREMENT` rowids: an id is never handed out twice, even after
//! the newest rows are deleted, so a follower positioned past them skips nothing. A version 1
//! file (plain rowids) is migrated on open, in one transaction, keeping every row and id.

mod error;
mod location;
mod projection;
mod schema;
mod worker;

use std::future::Future;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use crossbeam_channel::Sender;
use rusqlite::{Connection, OpenFlags, params_from_iter};
use tokio::sync::oneshot;
use uuid::Uuid;

use eventsmith_core::backend::{
    check_append, check_batch_unique, check_version, keyed_batch, outcome, rows,
};
use eventsmith_core::{
    AppendError, Capabilities, IntegerSequencedItem, Inventory, ItemKind, ItemStore, Notification,
    Select, SequencedItem, SnapshotStore, StoreError, Support, Timestamp, TimestampSequencedItem,
    Version,
};
use eventsmith_core::{
    Delivery, IdempotencyKey, KeyedAppend, Lease, LeaseClaim, PriorAppend, Tracking,
};

pub use location::SqliteUrl;
pub use projection::SqliteProjection;
/// The rusqlite this store is built on. [`SqliteProjection`]'s `apply` writes through a
/// [`rusqlite::Transaction`]: name it (and `params!`) from here rather than adding rusqlite
/// to your own dependencies, so that the versions always match.
pub use rusqlite;
pub use schema::SCHEMA_VERSION;
pub use worker::CommitStats;

use error::from_sqlite;
use worker::{AppendJob, Batch, Room, Task, Writer, WriterMsg};

/// How hard SQLite works to make commits durable (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Every commit is fsynced: survives power loss. The default.
    #[default]
    Full,
    /// Commits are fsynced at checkpoints only: survives a process crash, not a power loss.
    Normal,
}

/// How a [`SqliteStore`] opens its file.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// Durability of commits.
    pub synchronous: Synchronous,
    /// How long an append waits for another process's write lock before failing with
    /// [`StoreError::Busy`].
    pub busy_timeout: Duration,
    /// Read-only connections of a file store, opened with the store (on its writer thread,
    /// never on an async worker) and shared by its reads. A read that finds all of them in
    /// use, and the write connection busy, waits (asynchronously) for one. 0: reads that find
    /// the write connection busy run on the writer thread. In-memory stores have none.
    pub read_connections: usize,
    /// The most appends committed in one transaction.
    pub max_group: usize,
    /// The most appends (and other work for the write connection: snapshots, leases) that
    /// wait in the writer thread's queue at once; at least 1. An append that finds the queue
    /// full waits asynchronously for room (back-pressure), never blocking its thread, so a
    /// burst of appends holds at most this many batches in memory beside the group being
    /// committed. Default 1024: four groups of the default [`max_group`](Self::max_group).
    pub queue_capacity: usize,
    /// A quota: the file grows to at most this many pages (`PRAGMA max_page_count`; a page
    /// is 4096 bytes unless the file says otherwise). An append past it fails with
    /// [`StoreError::StorageFull`] and writes nothing, as on a full disk. `None`: no limit
    /// but the disk's.
    pub max_page_count: Option<u64>,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_secs(5),
            read_connections: 4,
            max_group: 256,
            queue_capacity: 1024,
            max_page_count: None,
        }
    }
}

/// An event store in a SQLite file or in memory. Clones share the connections.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The write connection, shared with the writer thread.
    writer: Arc<Writer>,
    /// Work for the writer thread; it ends when this closes.
    queue: Sender<WriterMsg>,
    /// `None` for in-memory stores, whose only connection is the writer's, and for files
    /// opened with no read connections.
    reads: Option<ReadPool>,
    closed: AtomicBool,
    path: Arc<str>,
}

impl std::fmt::Debug for WriterMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriterMsg")
    }
}

/// The most rows one read step returns before yielding to the async runtime.
pub const READ_PAGE_ROWS: usize = 256;

/// The read-only connections of a file store: opened with the store, on the writer thread
/// (opening a file is I/O, so never on an async worker), and lent to one read step at a time.
#[derive(Debug)]
struct ReadPool {
    idle: Mutex<Vec<Connection>>,
    /// One permit per idle connection: a read waits here (asynchronously) when all are lent.
    free: tokio::sync::Semaphore,
}

impl ReadPool {
    fn new(conns: Vec<Connection>) -> Self {
        ReadPool {
            free: tokio::sync::Semaphore::new(conns.len()),
            idle: Mutex::new(conns),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Connection>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An idle connection, waiting for one to be given back when all are lent. `Closed` once
    /// the store is closed.
    async fn take(&self) -> Result<Connection, StoreError> {
        let permit = self.free.acquire().await.map_err(|_| StoreError::Closed)?;
        permit.forget();
        // A permit stands for an idle connection, so one is there.
        self.lock().pop().ok_or(StoreError::Closed)
    }

    fn give_back(&self, conn: Connection) {
        self.lock().push(conn);
        self.free.add_permits(1);
    }

    /// Closes every idle connection; reads waiting for one get `Closed`, and a lent one is
    /// closed when its read gives it back.
    fn close(&self) {
        self.free.close();
        self.lock().clear();
    }
}

/// Opens one read-only connection to a file store (on the writer thread, at open).
fn open_reader(path: &Path, config: &SqliteConfig, name: &str) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| from_sqlite(e, name))?;
    configure(&conn, config, name)?;
    Ok(conn)
}

/// Returns `Pending` once, so that a long read lets other tasks run between its pages.
fn yield_now() -> impl Future<Output = ()> {
    struct YieldNow(bool);
    impl Future for YieldNow {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                return Poll::Ready(());
            }
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
    YieldNow(false)
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The threads end when their channels close, which happens right after this.
        self.closed.store(true, Ordering::SeqCst);
    }
}

fn spawn<S, T: Send + 'static>(
    name: String,
    setup: impl FnOnce() -> Result<(S, T), StoreError> + Send + 'static,
    serve: impl FnOnce(S) + Send + 'static,
) -> oneshot::Receiver<Result<T, StoreError>> {
    let (tx, rx) = oneshot::channel();
    let result = std::thread::Builder::new()
        .name(name)
        .spawn(move || match setup() {
            Ok((state, value)) => {
                let _ = tx.send(Ok(value));
                serve(state);
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        });
    if let Err(e) = result {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(Err(StoreError::backend(e)));
        return rx;
    }
    rx
}

fn configure(conn: &Connection, config: &SqliteConfig, path: &str) -> Result<(), StoreError> {
    conn.busy_timeout(config.busy_timeout)
        .map_err(|e| from_sqlite(e, path))?;
    let sync = match config.synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    conn.execute_batch(&format!("PRAGMA synchronous = {sync};"))
        .map_err(|e| from_sqlite(e, path))?;
    if let Some(pages) = config.max_page_count {
        // The pragma answers with the limit in force, which never falls below the file's
        // current size; nothing to check.
        conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
            .map_err(|e| from_sqlite(e, path))?;
    }
    Ok(())
}

fn open_writer(
    path: Option<&Path>,
    config: &SqliteConfig,
    name: &str,
) -> Result<Connection, StoreError> {
    let mut conn = match path {
        Some(p) => Connection::open(p),
        None => Connection::open_in_memory(),
    }
    .map_err(|e| from_sqlite(e, name))?;
    conn.busy_timeout(config.busy_timeout)
        .map_err(|e| from_sqlite(e, name))?;
    let create = schema::check(&conn, name)?;
    if path.is_some() {
        switch_to_wal(&conn, config.busy_timeout, name)?;
    }
    configure(&conn, config, name)?;
    if create {
        schema::create(&mut conn, name)?;
    }
    Ok(conn)
}

/// Puts the file in WAL mode (a lasting property of the file, so usually already done).
/// Converting needs exclusive access and SQLite does not run the busy handler for it, so
/// when other connections are opening the same new file it retries here, within the busy
/// timeout; another connection finishing the conversion meanwhile is success too.
fn switch_to_wal(conn: &Connection, busy_timeout: Duration, name: &str) -> Result<(), StoreError> {
    let deadline = std::time::Instant::now() + busy_timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        // Reading the mode takes no lock; `check` has already read the file, so the
        // connection knows whether it is in WAL mode.
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(|e| from_sqlite(e, name))?;
        if mode.eq_ignore_ascii_case("wal") {
            return Ok(());
        }
        match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)) {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(mode) => {
                return Err(StoreError::backend(format!(
                    "{name}: cannot switch to WAL mode (got {mode})"
                )));
            }
            Err(e)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && std::time::Instant::now() < deadline =>
            {
                // This runs on the writer thread, never on an async worker.
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(e) => return Err(from_sqlite(e, name)),
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` with the default configuration.
    ///
    /// # Cancellation
    ///
    /// The file is opened, checked and (if new) given its schema on the store's writer
    /// thread, which runs to the end of that even if the future is dropped: the file may then
    /// exist with its schema (created in one transaction, never half), and the thread ends by
    /// itself once it finds no store to serve. Opening again is the retry.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteConfig::default()).await
    }

    /// Opens the database file at `path` (creating it if needed), with `config`. The writer
    /// thread opens the write connection and [`SqliteConfig::read_connections`] read-only
    /// ones, so no file is opened on an async worker afterwards.
    ///
    /// # Cancellation
    ///
    /// The file is opened, checked and (if new) given its schema on the store's writer
    /// thread, which runs to the end of that even if the future is dropped: the file may then
    /// exist with its schema (created in one transaction, never half), and the thread ends by
    /// itself once it finds no store to serve. Opening again is the retry.
    pub async fn open_with(
        path: impl AsRef<Path>,
        config: SqliteConfig,
    ) -> Result<Self, StoreError> {
        Self::start(Some(path.as_ref().to_path_buf()), config).await
    }

    /// A fresh database in memory, gone when the store is closed or dropped.
    ///
    /// # Cancellation
    ///
    /// Dropped before it answers, the database is made on the writer thread and dropped with
    /// it; nothing is left behind.
    pub async fn memory() -> Result<Self, StoreError> {
        Self::start(None, SqliteConfig::default()).await
    }

    async fn start(path: Option<PathBuf>, config: SqliteConfig) -> Result<Self, StoreError> {
        let name: Arc<str> = match &path {
            Some(p) => p.display().to_string().into(),
            None => ":memory:".into(),
        };
        // Only a file with synchronous=FULL fsyncs at every commit.
        let commits_fsync = path.is_some() && config.synchronous == Synchronous::Full;
        // Unbounded as a channel; bounded by the writer's `Room`, whose slots every caller's
        // message takes (the writer's own checkpoint request and the shutdown take none).
        let (queue, queue_rx) = crossbeam_channel::unbounded();
        let ready = {
            let (path, config, name) = (path.clone(), config.clone(), name.clone());
            let max_group = config.max_group.max(1);
            spawn(
                "eventsmith-sqlite-writer".into(),
                move || {
                    let conn = open_writer(path.as_deref(), &config, &name)?;
                    // After the writer, which creates or migrates the schema.
                    let readers = match &path {
                        Some(p) => (0..config.read_connections)
                            .map(|_| open_reader(p, &config, &name))
                            .collect::<Result<Vec<_>, _>>()?,
                        None => Vec::new(),
                    };
                    let room = Room::new(config.queue_capacity);
                    let writer = Writer::new(conn, name, config.busy_timeout, commits_fsync, room);
                    let writer = Arc::new(writer);
                    let reads =
                        (path.is_some() && !readers.is_empty()).then(|| ReadPool::new(readers));
                    Ok((writer.clone(), (writer, reads)))
                },
                move |writer| worker::writer_loop(writer, queue_rx, max_group),
            )
        };
        let (writer, reads) = ready.await.map_err(|_| StoreError::Closed)??;

        Ok(SqliteStore {
            inner: Arc::new(Inner {
                writer,
                queue,
                reads,
                closed: AtomicBool::new(false),
                path: name,
            }),
        })
    }

    /// Closes the store: later calls on any clone fail with [`StoreError::Closed`]. Work
    /// already queued finishes first; returns once the writer's connection is closed. Calls
    /// waiting for room in the writer's queue fail with [`StoreError::Closed`] and write
    /// nothing.
    ///
    /// # Cancellation
    ///
    /// The store is closed from the first poll: dropping the future only stops waiting for
    /// the writer thread, which still finishes the queued work and closes its connection.
    pub async fn close(&self) {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(reads) = &self.inner.reads {
            reads.close();
        }
        let (tx, rx) = oneshot::channel();
        if self.inner.queue.send(WriterMsg::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// How many appends the store has committed, and in how many transactions; under
    /// concurrent appends group commit makes the second smaller than the first.
    pub fn commit_stats(&self) -> CommitStats {
        self.inner.writer.stats()
    }

    /// The database's path (`:memory:` for in-memory stores).
    pub fn path(&self) -> &str {
        &self.inner.path
    }

    fn check_open(&self) -> Result<(), StoreError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
    }

    /// Runs one bounded read: on the calling thread with a pooled connection for files, on
    /// the writer thread for in-memory databases.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &str) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.check_open()?;
        let path = self.inner.path.clone();
        // The writer's connection, when idle, has the freshest page cache: a pooled
        // connection drops its whole cache whenever another connection has committed.
        if self.inner.queue.is_empty()
            && let Some(guard) = self.inner.writer.try_idle()
        {
            match guard.as_ref() {
                None => return Err(StoreError::Closed),
                // Between transactions, so reads see only committed items.
                Some(conn) if conn.is_autocommit() => return f(conn, &path),
                Some(_) => {}
            }
        }
        if let Some(reads) = &self.inner.reads {
            let conn = reads.take().await?;
            let result = f(&conn, &path);
            if !self.inner.closed.load(Ordering::SeqCst) {
                reads.give_back(conn);
            }
            return result;
        }
        let (tx, rx) = oneshot::channel();
        let task: Task = Box::new(move |conn| {
            let _ = tx.send(f(conn, &path));
        });
        self.send_to_writer(WriterMsg::Run(task)).await?;
        // A dropped reply means the writer ended (closed) before running the task.
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Reads a range of one sequence in pages of at most [`READ_PAGE_ROWS`], yielding to the
    /// runtime between pages; `page` runs one bounded query.
    async fn select_paged<P: Copy + PartialOrd + Send + Sync + 'static, T: Send + 'static>(
        &self,
        query: &Select<P>,
        position: impl Fn(&T) -> P,
        page: impl Fn(&Connection, &str, &Select<P>) -> Result<Vec<T>, StoreError>
        + Send
        + Sync
        + Clone
        + 'static,
    ) -> Result<Vec<T>, StoreError> {
        let mut rest = query.clone();
        let mut out = Vec::new();
        loop {
            let want = rest.limit.map_or(READ_PAGE_ROWS, |l| l.min(READ_PAGE_ROWS));
            if want == 0 {
                break;
            }
            let q = Select {
                limit: Some(want),
                ..rest.clone()
            };
            let page = page.clone();
            let rows = self.read(move |conn, path| page(conn, path, &q)).await?;
            let n = rows.len();
            if let Some(last) = rows.last() {
                // The next page starts after the last row read, in the query's order.
                if rest.descending {
                    rest.lt = Some(position(last));
                } else {
                    rest.gt = Some(position(last));
                }
            }
            out.extend(rows);
            if let Some(limit) = &mut rest.limit {
                *limit -= n;
            }
            if n < want {
                break;
            }
            yield_now().await;
        }
        Ok(out)
    }

    /// Runs `f` on the write connection, on the writer thread between group commits (a
    /// write other than an append: a snapshot, a lease).
    async fn on_writer<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &str) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.check_open()?;
        let (tx, rx) = oneshot::channel();
        let path = self.inner.path.clone();
        let task: Task = Box::new(move |conn| {
            let _ = tx.send(f(conn, &path));
        });
        self.send_to_writer(WriterMsg::Run(task)).await?;
        // A dropped reply means the writer ended (closed) before running the task.
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues `msg` for the writer thread, waiting (asynchronously) while its queue is full.
    /// Dropped while waiting, nothing is queued; once queued, the writer runs it.
    async fn send_to_writer(&self, msg: WriterMsg) -> Result<(), StoreError> {
        self.inner.writer.send(&self.inner.queue, msg).await
    }

    async fn append_batch(&self, batch: Batch) -> Result<KeyedAppend, AppendError> {
        self.check_open()?;
        if let Some(outcome) = self.try_commit_inline(&batch) {
            return outcome;
        }
        let (reply, rx) = oneshot::channel();
        // The only suspension point before the batch is queued: dropped here (the queue
        // full), the append is not queued and writes nothing.
        self.send_to_writer(WriterMsg::Append(AppendJob { batch, reply }))
            .await?;
        // Queued: the writer thread commits it (or finds it conflicting) even if this future
        // is dropped from here on.
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

impl SqliteStore {
    /// Commits `batch` on the calling thread if the writer is idle: nothing queued for it and
    /// its connection free. That skips two thread wake-ups, which cost more than a commit
    /// without fsync. `None`: the batch goes to the writer thread.
    fn try_commit_inline(&self, batch: &Batch) -> Option<Result<KeyedAppend, AppendError>> {
        let inner = &self.inner;
        if !inner.queue.is_empty() {
            // Others are waiting for the writer thread: queue behind them.
            return None;
        }
        let writer = &inner.writer;
        if !writer.commits_fsync() {
            // Without fsync ([`Synchronous::Normal`], memory) a commit is short: run it here.
            let guard = writer.try_idle()?;
            return writer.commit_inline(guard, batch, &inner.queue);
        }
        // An fsync only inside tokio's `block_in_place`, which first hands the worker's other
        // tasks to another thread.
        if !may_block_in_place() {
            return None;
        }
        let guard = writer.try_idle()?;
        tokio::task::block_in_place(|| writer.commit_inline(guard, batch, &inner.queue))
    }
}

/// Whether `tokio::task::block_in_place` is allowed here: on a multi-threaded tokio runtime.
/// It panics on a current-thread runtime; outside tokio it is not needed.
fn may_block_in_place() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

fn sql_bounds<P: Copy>(q: &Select<P>, to_sql: impl Fn(P) -> i64) -> (String, Vec<i64>) {
    let mut sql = String::new();
    let mut args = Vec::new();
    for (bound, op) in [(q.gt, ">"), (q.gte, ">="), (q.lt, "<"), (q.lte, "<=")] {
        if let Some(b) = bound {
            args.push(to_sql(b));
            sql.push_str(&format!(" AND position {op} ?{}", args.len() + 1));
        }
    }
    sql.push_str(if q.descending {
        " ORDER BY position DESC"
    } else {
        " ORDER BY position ASC"
    });
    if let Some(limit) = q.limit {
        sql.push_str(&format!(" LIMIT {}", limit.min(i64::MAX as usize)));
    }
    (sql, args)
}

/// Versions beyond `i64::MAX` cannot be stored; clamp query bounds into range instead of
/// wrapping (a bound above every storable version selects as if unbounded above).
fn version_to_sql(v: Version) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn read_uuid(bytes: &[u8], path: &str) -> Result<Uuid, StoreError> {
    Uuid::from_slice(bytes).map_err(|_| StoreError::Corrupt {
        detail: format!("{path}: a sequence id of {} bytes, not 16", bytes.len()),
        source: None,
    })
}

fn read_version(v: i64, path: &str) -> Result<Version, StoreError> {
    Version::try_from(v).map_err(|_| StoreError::Corrupt {
        detail: format!("{path}: negative position {v}"),
        source: None,
    })
}

/// One bounded query over a sequence of `table` (the query's limit is set by the caller).
fn select_rows<P: Copy, T>(
    conn: &Connection,
    path: &str,
    table: &str,
    sequence_id: Uuid,
    query: &Select<P>,
    to_sql: fn(P) -> i64,
    read_row: fn(&rusqlite::Row<'_>, &str) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let (bounds, args) = sql_bounds(query, to_sql);
    let sql = format!(
        "SELECT sequence_id, position, topic, payload FROM {table} WHERE sequence_id = ?1{bounds}"
    );
    let mut stmt = conn
        .prepare_cached(&sql)
        .map_err(|e| from_sqlite(e, path))?;
    let params = std::iter::once(rusqlite::types::Value::Blob(
        sequence_id.as_bytes().to_vec(),
    ))
    .chain(args.into_iter().map(rusqlite::types::Value::Integer));
    let mut rows = stmt
        .query(params_from_iter(params))
        .map_err(|e| from_sqlite(e, path))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| from_sqlite(e, path))? {
        out.push(read_row(row, path)?);
    }
    Ok(out)
}

/// The most notification ids one step of a topic-filtered read scans (see
/// `select_notifications`): a bounded step even when few rows match.
const SCAN_WINDOW: u64 = 4 * READ_PAGE_ROWS as u64;

/// The highest notification id given so far (0 for none): one seek to the end of the rowid
/// tree.
fn max_notification_id(conn: &Connection, path: &str) -> Result<u64, StoreError> {
    let max: Option<i64> = conn
        .prepare_cached("SELECT max(notification_id) FROM integer_items")
        .and_then(|mut stmt| stmt.query_row([], |r| r.get(0)))
        .map_err(|e| from_sqlite(e, path))?;
    read_version(max.unwrap_or(0), path)
}

/// Up to [`READ_PAGE_ROWS`] sequences of `table` after the id `after` (in id order), each
/// with its highest position: per sequence one seek for the next id and one for its last
/// position (the `(sequence_id, position)` index serves both), so the step is bounded
/// whatever the sequences hold.
fn sequences_page(
    conn: &Connection,
    path: &str,
    table: &str,
    mut after: Vec<u8>,
) -> Result<Vec<(Uuid, i64)>, StoreError> {
    let sql = |e| from_sqlite(e, path);
    let mut next = conn
        .prepare_cached(&format!(
            "SELECT sequence_id FROM {table} WHERE sequence_id > ?1 ORDER BY sequence_id LIMIT 1"
        ))
        .map_err(sql)?;
    let mut last = conn
        .prepare_cached(&format!(
            "SELECT max(position) FROM {table} WHERE sequence_id = ?1"
        ))
        .map_err(sql)?;
    let mut out = Vec::new();
    while out.len() < READ_PAGE_ROWS {
        use rusqlite::OptionalExtension;
        let Some(id) = next
            .query_row([&after], |r| r.get::<_, Vec<u8>>(0))
            .optional()
            .map_err(sql)?
        else {
            break;
        };
        let position: i64 = last.query_row([&id], |r| r.get(0)).map_err(sql)?;
        out.push((read_uuid(&id, path)?, position));
        after = id;
    }
    Ok(out)
}

/// One bounded page of the notification log: at most `limit` rows after `after`, and with a
/// topic filter only among the ids up to `upto` (a window the caller bounds).
fn select_notification_page(
    conn: &Connection,
    path: &str,
    after: u64,
    upto: Option<u64>,
    limit: usize,
    topics: &[String],
) -> Result<Vec<Notification>, StoreError> {
    let mut sql = String::from(
        "SELECT sequence_id, position, topic, payload, notification_id FROM integer_items WHERE notification_id > ?1 AND notification_id <= ?3",
    );
    if !topics.is_empty() {
        let marks: Vec<String> = (0..topics.len()).map(|i| format!("?{}", i + 4)).collect();
        sql.push_str(&format!(" AND topic IN ({})", marks.join(", ")));
    }
    sql.push_str(" ORDER BY notification_id LIMIT ?2");
    let mut stmt = conn
        .prepare_cached(&sql)
        .map_err(|e| from_sqlite(e, path))?;
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let upto = upto.map_or(i64::MAX, |u| i64::try_from(u).unwrap_or(i64::MAX));
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let params = [
        rusqlite::types::Value::Integer(after),
        rusqlite::types::Value::Integer(limit),
        rusqlite::types::Value::Integer(upto),
    ]
    .into_iter()
    .chain(topics.iter().cloned().map(rusqlite::types::Value::Text));
    let mut rows = stmt
        .query(params_from_iter(params))
        .map_err(|e| from_sqlite(e, path))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| from_sqlite(e, path))? {
        let id: i64 = row.get(4).map_err(|e| from_sqlite(e, path))?;
        out.push(Notification {
            id: read_version(id, path)?,
            item: read_integer_row(row, path)?,
        });
    }
    Ok(out)
}

fn read_timestamp_row(
    row: &rusqlite::Row<'_>,
    path: &str,
) -> Result<TimestampSequencedItem, StoreError> {
    let (sequence_id, position, topic, payload) = read_columns(row, path)?;
    Ok(SequencedItem {
        sequence_id,
        position: Timestamp::from_unix_nanos(position),
        topic,
        payload,
    })
}

/// Reads rows of (sequence_id, position, topic, payload[, notification_id]) of integer
/// items or snapshots; a negative position is `Corrupt` naming the item.
fn read_integer_row(
    row: &rusqlite::Row<'_>,
    path: &str,
) -> Result<IntegerSequencedItem, StoreError> {
    let (sequence_id, position, topic, payload) = read_columns(row, path)?;
    let position = Version::try_from(position).map_err(|_| StoreError::Corrupt {
        detail: format!(
            "{path}: sequence {sequence_id} position {position}: negative position {position}"
        ),
        source: None,
    })?;
    Ok(SequencedItem {
        sequence_id,
        position,
        topic,
        payload,
    })
}

/// Reads the columns (sequence_id, position, topic, payload[, notification_id]) of a row of
/// any item table. A column of the wrong SQL type or value (edited by hand, written by
/// another tool) is `Corrupt`, naming the file and the item: its sequence id and position,
/// or its notification id when those cannot be read.
fn read_columns(
    row: &rusqlite::Row<'_>,
    path: &str,
) -> Result<(Uuid, i64, String, Vec<u8>), StoreError> {
    use rusqlite::types::ValueRef;
    let get = |i| row.get_ref(i).map_err(|e| from_sqlite(e, path));
    let corrupt = |at: &str, what: String| StoreError::Corrupt {
        detail: format!("{path}: {at}: {what}"),
        source: None,
    };
    let kind = |v: ValueRef<'_>| v.data_type().to_string().to_uppercase();
    let row_name = || match row.get_ref(4) {
        Ok(ValueRef::Integer(n)) => format!("the row of notification id {n}"),
        _ => "a row".to_owned(),
    };
    let sequence_id = match get(0)? {
        ValueRef::Blob(b) => Uuid::from_slice(b).map_err(|_| {
            corrupt(
                &row_name(),
                format!("a sequence id of {} bytes, not 16", b.len()),
            )
        })?,
        other => {
            return Err(corrupt(
                &row_name(),
                format!("sequence id stored as {}, not BLOB", kind(other)),
            ));
        }
    };
    let position = match get(1)? {
        ValueRef::Integer(v) => v,
        other => {
            return Err(corrupt(
                &format!("sequence {sequence_id}"),
                format!("position stored as {}, not INTEGER", kind(other)),
            ));
        }
    };
    let at = format!("sequence {sequence_id} position {position}");
    let topic = match get(2)? {
        ValueRef::Text(t) => std::str::from_utf8(t)
            .map_err(|_| corrupt(&at, "topic is not UTF-8".to_owned()))?
            .to_owned(),
        other => {
            return Err(corrupt(
                &at,
                format!("topic stored as {}, not TEXT", kind(other)),
            ));
        }
    };
    let payload = match get(3)? {
        ValueRef::Blob(b) => b.to_vec(),
        other => {
            return Err(corrupt(
                &at,
                format!("payload stored as {}, not BLOB", kind(other)),
            ));
        }
    };
    Ok((sequence_id, position, topic, payload))
}

impl ItemStore for SqliteStore {
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

    /// Appends the batch atomically, at the next notification ids (see [`ItemStore::append`]).
    ///
    /// # Cancellation
    ///
    /// Once the batch is queued for the writer thread, or committing on the caller's thread
    /// (which finishes within the poll that began it), dropping the future does not withdraw
    /// it: it commits, or conflicts, as if awaited, and only the answer is lost; a retry of
    /// the same batch then conflicts. Dropped while it waits for room in a full writer queue
    /// ([`SqliteConfig::queue_capacity`]), it was never queued and writes nothing. To retry
    /// safely after a drop, append with an idempotency key.
    #[tracing::instrument(name = "eventsmith.append", level = "debug", skip_all, fields(backend = "sqlite", items = items.len(), sequence_id = items.first().map(|i| tracing::field::display(i.sequence_id)), position = items.first().map(|i| i.position), keyed = false, outcome = tracing::field::Empty))]
    async fn append(&self, items: Vec<IntegerSequencedItem>) -> Result<Range<u64>, AppendError> {
        outcome(
            async {
                if items.is_empty() {
                    self.check_open()?;
                    return Ok(0..0);
                }
                check_append(&items)?;
                match self.append_batch(Batch::Integer(items)).await? {
                    KeyedAppend::Appended(ids) => Ok(ids),
                    KeyedAppend::AlreadyApplied(_) => {
                        unreachable!("a batch without a key is never a replay")
                    }
                }
            }
            .await,
        )
    }

    /// Appends the batch with its idempotency key, or finds the key used and writes nothing
    /// (see [`ItemStore::append_with_key`]).
    ///
    /// # Cancellation
    ///
    /// As for [`append`](Self::append): once queued (or committing inline) the batch and its
    /// key commit even if the future is dropped; dropped while waiting for room in a full
    /// writer queue, nothing is written. Either way a retry under the same key is safe: it
    /// answers [`KeyedAppend::AlreadyApplied`] with the dropped append's versions if that
    /// one committed, and appends otherwise (tested in
    /// `tests/sqlite.rs`: `dropped_appends_commit_once_queued_and_never_while_waiting_for_room`).
    #[tracing::instrument(name = "eventsmith.append", level = "debug", skip_all, fields(backend = "sqlite", items = items.len(), sequence_id = items.first().map(|i| tracing::field::display(i.sequence_id)), position = items.first().map(|i| i.position), keyed = true, outcome = tracing::field::Empty))]
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
                let key = key.clone();
                self.append_batch(Batch::Keyed { items, key, prior }).await
            }
            .await,
        )
    }

    fn delivery(&self) -> Option<Delivery> {
        Some(Delivery::Transactional)
    }

    /// The position follower `follower` recorded (0 before its first page).
    ///
    /// # Cancellation
    ///
    /// Cancel-safe: a read writes nothing. Dropped between its steps it just stops; a step
    /// already handed to the writer thread (in-memory stores) still runs and its answer is
    /// discarded.
    #[tracing::instrument(name = "eventsmith.tracking", level = "debug", skip_all, fields(backend = "sqlite", follower = %follower, outcome = tracing::field::Empty))]
    async fn tracking_position(&self, follower: &str) -> Result<u64, StoreError> {
        outcome(
            async {
                let follower = follower.to_owned();
                self.read(move |conn, path| {
                    worker::tracking_position(conn, &follower).map_err(|e| from_sqlite(e, path))
                })
                .await
            }
            .await,
        )
    }

    /// Appends the items and moves the follower's tracking record from `tracking.from` to
    /// `tracking.to` in one transaction (see [`ItemStore::append_tracked`]).
    ///
    /// # Cancellation
    ///
    /// As for [`append`](Self::append): once queued (or committing inline) it commits even if
    /// the future is dropped, and a retry of the same page then fails with
    /// [`AppendError::TrackingMoved`] (the runner continues from the recorded position);
    /// dropped while waiting for room in a full writer queue, nothing is written.
    #[tracing::instrument(name = "eventsmith.append_tracked", level = "debug", skip_all, fields(backend = "sqlite", items = items.len(), follower = %tracking.follower, from = tracking.from, to = tracking.to, outcome = tracing::field::Empty))]
    async fn append_tracked(
        &self,
        items: Vec<IntegerSequencedItem>,
        tracking: Tracking,
    ) -> Result<Range<u64>, AppendError> {
        outcome(
            async {
                check_append(&items)?;
                match self
                    .append_batch(Batch::Tracked { items, tracking })
                    .await?
                {
                    KeyedAppend::Appended(ids) => Ok(ids),
                    KeyedAppend::AlreadyApplied(_) => {
                        unreachable!("a batch without a key is never a replay")
                    }
                }
            }
            .await,
        )
    }

    /// Claims or renews the follower's lease, in one statement on the write connection.
    ///
    /// # Cancellation
    ///
    /// Once queued for the writer thread (after any wait for room), the claim runs even if
    /// the future is dropped: the lease may be held without the caller knowing. Claiming
    /// again with the same owner renews it, and an unrenewed lease expires after its time
    /// to live, so a dropped claim delays other runners at most that long.
    #[tracing::instrument(name = "eventsmith.lease.claim", level = "debug", skip_all, fields(backend = "sqlite", follower = %lease.follower, owner = %lease.owner, outcome = tracing::field::Empty))]
    async fn claim_lease(&self, lease: &Lease) -> Result<LeaseClaim, StoreError> {
        outcome(
            async {
                let lease = lease.clone();
                self.on_writer(move |conn, path| {
                    worker::claim_lease(conn, &lease).map_err(|e| from_sqlite(e, path))
                })
                .await
            }
            .await,
        )
    }

    /// Releases the follower's lease if `owner` holds it.
    ///
    /// # Cancellation
    ///
    /// Once queued for the writer thread (after any wait for room), the release runs even if
    /// the future is dropped. Releasing again is harmless; a release that never ran leaves
    /// the lease to expire.
    #[tracing::instrument(name = "eventsmith.lease.release", level = "debug", skip_all, fields(backend = "sqlite", follower = %follower, owner = %owner, outcome = tracing::field::Empty))]
    async fn release_lease(&self, follower: &str, owner: Uuid) -> Result<(), StoreError> {
        outcome(
            async {
                let follower = follower.to_owned();
                self.on_writer(move |conn, path| {
                    conn.prepare_cached("DELETE FROM leases WHERE follower = ?1 AND owner = ?2")
                        .and_then(|mut stmt| {
                            stmt.execute(rusqlite::params![follower, owner.as_bytes()])
                        })
                        .map(|_| ())
                        .map_err(|e| from_sqlite(e, path))
                })
                .await
            }
            .await,
        )
    }

    /// What an earlier append under `key` wrote to `sequence_id`, if any.
    ///
    /// # Cancellation
    ///
    /// Cancel-safe: a read writes nothing. Dropped between its steps it just stops; a step
    /// already handed to the writer thread (in-memory stores) still runs and its answer is
    /// discarded.
    #[tracing::instrument(name = "eventsmith.find_key", level = "debug", skip_all, fields(backend = "sqlite", sequence_id = %sequence_id, outcome = tracing::field::Empty))]
    async fn find_key(
        &self,
        sequence_id: Uuid,
        key: &IdempotencyKey,
    ) -> Result<Option<PriorAppend>, StoreError> {
        outcome(
            async {
                let key = key.clone();
                self.read(move |conn, path| {
                    worker::find_key(conn, sequence_id, &key).map_err(|e| from_sqlite(e, path))
                })
                .await
            }
            .await,
        )
    }

    /// The items of one sequence within the query's bounds, read in steps of at most
    /// [`READ_PAGE_ROWS`] rows.
    ///
    /// # Cancellation
    ///
    /// Cancel-safe: a read writes nothing. Dropped between its steps it just stops; a step
    /// already handed to the writer thread (in-memory stores) still runs and its answer is
    /// discarded.
    #[tracing::instrument(name = "eventsmith.select", level = "debug", skip_all, fields(backend = "sqlite", sequence_id = %sequence_id, items = tracing::field::Empty, outcome = tracing::field::Empty))]
    async fn select(
        &self,
        sequence_id: Uuid,
        query: &Select<Version>,
    ) -> Result<Vec<IntegerSequencedItem>, StoreError> {
        rows(
            async {
                self.select_paged(
                    query,
                    |i: &IntegerSequencedItem| i.position,
                    move |conn, path, q| {
                        select_rows(
                            conn,
                            path,
                            "integer_items",
                            sequence_id,
                            q,
                            version_to_sql,
                            read_integer_row,
                        )
                    },
                )
                .await
            }
            .await,
        )
    }

    /// Up to `limit` notifications after `after`, of `topics` if any are given: in steps of
    /// at most [`READ_PAGE_ROWS`] rows, and with topics of at most a few thousand ids
    /// scanned each, so that a rare topic behind a long log is found in bounded steps.
    ///
    /// # Cancellation
    ///
    /// Cancel-safe: a read writes nothing. Dropped between its steps it just stops; a step
    /// already handed to the writer thread (in-memory stores) still runs and its answer is
    /// discarded.
    #[tracing::instrument(name = "eventsmith.notifications", level = "debug", skip_all, fields(backend = "sqlite", after = after, limit = limit, items = tracing::field::Empty, outcome = tracing::field::Empty))]
    async fn select_notifications(
        &self,
        after: u64,
        limit: usize,
        topics: &[&str],
    ) -> Result<Vec<Notification>, StoreError> {
        rows(
            async {
                let topics: Arc<[String]> = topics.iter().map(|t| (*t).to_owned()).collect();
                let (mut after, mut rest) = (after, limit);
                let mut out = Vec::new();
                // With a topic filter, a page of matching rows may lie behind any number of
                // others (there is no index on topics), so each step scans a window of at
                // most `SCAN_WINDOW` ids, up to the head read first: every id up to it is
                // committed (ids are given in commit order), so a window never has a hole
                // that a later commit fills. Without a filter, the rowid order bounds a step.
                let head = if topics.is_empty() || rest == 0 {
                    u64::MAX
                } else {
                    self.read(max_notification_id).await?
                };
                while rest > 0 && after < head {
                    let want = rest.min(READ_PAGE_ROWS);
                    let upto =
                        (!topics.is_empty()).then(|| after.saturating_add(SCAN_WINDOW).min(head));
                    let topics = topics.clone();
                    let page = self
                        .read(move |conn, path| {
                            select_notification_page(conn, path, after, upto, want, &topics)
                        })
                        .await?;
                    let n = page.len();
                    rest -= n;
                    match (page.last(), upto) {
                        // Full: the next step starts after its last row.
                        (Some(last), _) if n == want => after = last.id,
                        // The window is read; the next one starts after it.
                        (_, Some(upto)) => after = upto,
                        // Unfiltered and short: the end of the log.
                        (_, None) => {
                            out.extend(page);
                            break;
                        }
                    }
                    out.extend(page);
                    if rest > 0 && after < head {
                        yield_now().await;
                    }
                }
                Ok(out)
            }
            .await,
        )
    }

    /// The highest notification id given so far (0 for none).
    ///
    /// # Cancellation
    ///
    /// Cancel-safe: a read writes nothing. Dropped between its steps it just stops; a step
    /// already handed to the writer thread (in-memory stores) still runs and its answer is
    /// discarded.
    #[tracing::instrument(name = "eventsmith.max_notification_id", level = "debug", skip_all, fields(backend = "sqlite", outcome = tracing::field::Empty))]
    async fn max_notification_id(&self) -> Result<u64, StoreError> {
        outcome(async { self.read(max_notification_id).await }.await)
    }

    /// Appends timestamp-sequenced items atomically (see [`ItemStore::append_timestamped`]).
    ///
    /// # Cancellation
    ///
    /// As for [`append`](Self::append): once queued (or committing inline) the batch commits
    /// even if the future is dropped, and a retry of it then conflicts; dropped while waiting
    /// for room in a full writer queue, nothing is written.
    #[tracing::instrument(name = "eventsmith.append_timestamped", level = "debug", skip_all, fields(backend = "sqlite", items = items.len(), sequence_id = items.first().map(|i| tracing::field::display(i.sequence_id)), outcome = tracing::field::Empty))]
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
                self.append_batch(Batch::Timestamped(items))
                    .await
                    .map(|_| ())
                    .map(|_| ())
            }
            .await,
        )
    }

    /// The timestamped items of one sequence within the query's bounds, in steps of at most
    /// [`READ_PAGE_ROWS`] rows.
    ///
    /// # Cancellation
    ///
    /// Cancel-safe: a read writes nothing. Dropped between its steps it just stops; a step
    /// already handed to the writer thread (in-memory stores) still runs and its answer is
    /// discarded.
    #[tracing::instrument(name = "eventsmith.select_timestamped", level = "debug", skip_all, fields(backend = "sqlite", sequence_id = %sequence_id, items = tracing::field::Empty, outcome = tracing::field::Empty))]
    async fn select_timestamped(
        &self,
        sequence_id: Uuid,
        query: &Select<Timestamp>,
    ) -> Result<Vec<TimestampSequencedItem>, StoreError> {
        rows(
            async {
                self.select_paged(
                    query,
                    |i: &TimestampSequencedItem| i.position,
                    move |conn, path, q| {
                        select_rows(
                            conn,
                            path,
                            "timestamp_items",
                            sequence_id,
                            q,
                            Timestamp::unix_nanos,
                            read_timestamp_row,
                        )
                    },
                )
                .await
            }
            .await,
        )
    }
}

impl SnapshotStore for SqliteStore {
    /// Writes (or replaces) the snapshot at its position, on the writer thread.
    ///
    /// # Cancellation
    ///
    /// Once queued for the writer thread (after any wait for room), the snapshot is written
    /// even if the future is dropped. Writing the same snapshot again replaces it with
    /// itself, so a retry is harmless.
    #[tracing::instrument(name = "eventsmith.snapshot.write", level = "debug", skip_all, fields(backend = "sqlite", sequence_id = %snapshot.sequence_id, position = snapshot.position, outcome = tracing::field::Empty))]
    async fn write_snapshot(&self, snapshot: IntegerSequencedItem) -> Result<(), StoreError> {
        outcome(async {
        check_version(&snapshot)?;
        let position = snapshot.position as i64;
        self.on_writer(move |conn, path| {
            conn.prepare_cached(
                    "INSERT OR REPLACE INTO snapshots (sequence_id, position, topic, payload) VALUES (?1, ?2, ?3, ?4)",
                )
                .and_then(|mut stmt| {
                    stmt.execute(rusqlite::params![
                        snapshot.sequence_id.as_bytes(),
                        position,
                        snapshot.topic,
                        snapshot.payload
                    ])
                })
                .map(|_| ())
                .map_err(|e| from_sqlite(e, path))
        })
        .await
        }.await)
    }

    /// The latest snapshot of `sequence_id` at or before `lte`.
    ///
    /// # Cancellation
    ///
    /// Cancel-safe: a read writes nothing. Dropped between its steps it just stops; a step
    /// already handed to the writer thread (in-memory stores) still runs and its answer is
    /// discarded.
    #[tracing::instrument(name = "eventsmith.snapshot.latest", level = "debug", skip_all, fields(backend = "sqlite", sequence_id = %sequence_id, lte = ?lte, outcome = tracing::field::Empty))]
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
                self.read(move |conn, path| {
                    select_rows(
                        conn,
                        path,
                        "snapshots",
                        sequence_id,
                        &query,
                        version_to_sql,
                        read_integer_row,
                    )
                })
                .await
                .map(|mut rows| rows.pop())
            }
            .await,
        )
    }
}

impl Inventory for SqliteStore {
    /// Every sequence of one kind with its highest position, in steps of at most
    /// [`READ_PAGE_ROWS`] sequences (two index seeks each), so a large store never holds an
    /// async worker for a whole-table scan.
    ///
    /// # Cancellation
    ///
    /// Cancel-safe: a read writes nothing. Dropped between its steps it just stops; a step
    /// already handed to the writer thread (in-memory stores) still runs and its answer is
    /// discarded.
    #[tracing::instrument(name = "eventsmith.inventory.sequences", level = "debug", skip_all, fields(backend = "sqlite", kind = ?kind, items = tracing::field::Empty, outcome = tracing::field::Empty))]
    async fn list_sequences(&self, kind: ItemKind) -> Result<Vec<(Uuid, i64)>, StoreError> {
        rows(
            async {
                let table = match kind {
                    ItemKind::Integer => "integer_items",
                    ItemKind::Timestamped => "timestamp_items",
                    ItemKind::Snapshots => "snapshots",
                };
                // In steps of at most `READ_PAGE_ROWS` sequences, each sequence two index
                // seeks (its id after the last one, its highest position), with a yield
                // between steps: bounded work however large the table.
                let mut out = Vec::new();
                let mut after: Vec<u8> = Vec::new(); // sorts before every id
                loop {
                    let from = std::mem::take(&mut after);
                    let page = self
                        .read(move |conn, path| sequences_page(conn, path, table, from))
                        .await?;
                    let n = page.len();
                    if let Some((id, _)) = page.last() {
                        after = id.as_bytes().to_vec();
                    }
                    out.extend(page);
                    if n < READ_PAGE_ROWS {
                        break;
                    }
                    yield_now().await;
                }
                Ok(out)
            }
            .await,
        )
    }

    /// Every snapshot of `sequence_id`, in steps of at most [`READ_PAGE_ROWS`] rows.
    ///
    /// # Cancellation
    ///
    /// Cancel-safe: a read writes nothing. Dropped between its steps it just stops; a step
    /// already handed to the writer thread (in-memory stores) still runs and its answer is
    /// discarded.
    #[tracing::instrument(name = "eventsmith.inventory.snapshots", level = "debug", skip_all, fields(backend = "sqlite", sequence_id = %sequence_id, items = tracing::field::Empty, outcome = tracing::field::Empty))]
    async fn select_snapshots(
        &self,
        sequence_id: Uuid,
    ) -> Result<Vec<IntegerSequencedItem>, StoreError> {
        rows(
            async {
                self.select_paged(
                    &Select::all(),
                    |i: &IntegerSequencedItem| i.position,
                    move |conn, path, q| {
                        select_rows(
                            conn,
                            path,
                            "snapshots",
                            sequence_id,
                            q,
                            version_to_sql,
                            read_integer_row,
                        )
                    },
                )
                .await
            }
            .await,
        )
    }
}
