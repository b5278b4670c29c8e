//! The write connection and the writer thread.
//!
//! One connection writes. A caller whose append finds it free, with nothing queued, commits on
//! its own thread (no thread hop); otherwise the append is queued for the writer thread, which
//! commits everything queued together (group commit). The writer thread also waits out other
//! processes' write locks, runs checkpoints and the connection's other work, so async callers
//! never wait on a lock or a checkpoint.
//!
//! The queue to the writer thread is bounded ([`Room`]): a caller that finds it full waits
//! asynchronously for a slot, so a burst of appends costs bounded memory and no thread blocks.

use std::cell::Cell;
use std::ffi::c_int;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rusqlite::{Connection, ErrorCode, params};
use tokio::sync::{Semaphore, TryAcquireError, oneshot};
use uuid::Uuid;

use eventsmith_core::{
    AppendError, BoxError, IdempotencyKey, IntegerSequencedItem, KeyedAppend, Lease, LeaseClaim,
    Position, PriorAppend, SequencedItem, StoreError, TimestampSequencedItem, Tracking,
};

use crate::error::{SharedSource, from_sqlite, is_unique_violation};

/// What the writer has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitStats {
    /// Appends (batches) handled, including those that conflicted.
    pub appends: u64,
    /// Write transactions run for them.
    pub transactions: u64,
    /// Of those transactions, how many the appending caller ran on its own thread because the
    /// writer was idle; the rest ran on the writer thread, possibly for several appends.
    pub inline: u64,
    /// Callers' messages (appends and other work for the write connection) waiting in the
    /// writer thread's queue now; never more than [`SqliteConfig::queue_capacity`](crate::SqliteConfig::queue_capacity).
    pub queued: usize,
    /// The most callers' messages the queue has held at once since the store opened.
    pub queue_peak: usize,
    /// How many times a caller found the queue full and waited for room (back-pressure).
    pub queue_full_waits: u64,
}

/// Work for the write connection's thread.
pub(crate) type Task = Box<dyn FnOnce(&mut Connection) + Send>;

/// What the writer thread receives.
pub(crate) enum WriterMsg {
    /// An append, possibly committed in one transaction with others.
    Append(AppendJob),
    /// Any other work (schema reads for in-memory stores, snapshot writes, ...).
    Run(Task),
    /// Copy the WAL into the database file, asked for by an inline commit.
    Checkpoint,
    /// Finish: close the connection, then reply.
    Shutdown(oneshot::Sender<()>),
}

/// The items of one append, validated by the caller (no duplicates, positions in range).
pub(crate) enum Batch {
    Integer(Vec<IntegerSequencedItem>),
    /// Integer items of one sequence, written only if `key` is new for it, and then with it.
    Keyed {
        items: Vec<IntegerSequencedItem>,
        key: IdempotencyKey,
        prior: PriorAppend,
    },
    Timestamped(Vec<TimestampSequencedItem>),
    /// Integer items (possibly none) written only if the follower's tracking record is still
    /// at `tracking.from`, and then with it moved to `tracking.to`.
    Tracked {
        items: Vec<IntegerSequencedItem>,
        tracking: Tracking,
    },
}

/// The outcome of one append: the notification ids its items got (empty for timestamped
/// items), what an earlier append under its key wrote, or why it was not written.
pub(crate) type Outcome = Result<KeyedAppend, AppendError>;

pub(crate) struct AppendJob {
    pub(crate) batch: Batch,
    pub(crate) reply: oneshot::Sender<Outcome>,
}

/// The bound on the writer thread's queue: one permit per free slot. A caller takes a slot
/// before it queues an append or other work (waiting asynchronously while there is none) and
/// the writer thread gives it back as it takes the message off the queue, so at most
/// `capacity` callers' messages wait at once, however many callers there are. The writer's
/// own messages (a checkpoint request, the shutdown) take no slot; each is queued at most
/// once at a time.
pub(crate) struct Room {
    slots: Semaphore,
    capacity: usize,
    /// Messages holding a slot and not yet taken off the queue.
    depth: AtomicUsize,
    peak: AtomicUsize,
    full_waits: AtomicU64,
}

impl Room {
    /// Room for `capacity` messages (at least 1).
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, Semaphore::MAX_PERMITS);
        Room {
            slots: Semaphore::new(capacity),
            capacity,
            depth: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            full_waits: AtomicU64::new(0),
        }
    }
}

/// WAL frames after which the writer copies the WAL back into the database file (SQLite's
/// own auto-checkpoint threshold, which this replaces so that no caller's thread runs one).
const CHECKPOINT_FRAMES: c_int = 1000;

thread_local! {
    /// Frames in the WAL after this thread's last commit, reported by SQLite's WAL hook.
    static WAL_FRAMES: Cell<c_int> = const { Cell::new(0) };
}

fn note_wal_frames(_: &rusqlite::hooks::Wal, frames: c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.set(frames);
    Ok(())
}

/// Whether the commit this thread just ran left the WAL long enough to checkpoint.
fn checkpoint_due() -> bool {
    WAL_FRAMES.replace(0) >= CHECKPOINT_FRAMES
}

/// The write connection, shared by the writer thread and inline committers.
pub(crate) struct Writer {
    /// `None` once the store is closed. Whoever holds the lock may write.
    conn: Mutex<Option<Connection>>,
    path: Arc<str>,
    busy_timeout: Duration,
    /// Every commit fsyncs (a file with `synchronous=FULL`): callers commit inline only
    /// where they may block, and the writer thread may wait briefly to gather a larger group.
    commits_fsync: bool,
    /// A checkpoint request is queued for the writer thread.
    checkpoint_queued: AtomicBool,
    /// The writer thread's last group had several appends: appends are arriving
    /// concurrently, and they commit faster together on the writer thread than one by one
    /// inline.
    grouping: AtomicBool,
    appends: AtomicU64,
    transactions: AtomicU64,
    inline: AtomicU64,
    /// The bound on the writer thread's queue.
    room: Room,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").field("path", &self.path).finish()
    }
}

impl Writer {
    /// Takes over `conn`. Files get a WAL hook in place of SQLite's auto-checkpoint, which
    /// would otherwise run inside whichever commit crosses the threshold, inline ones too.
    pub(crate) fn new(
        conn: Connection,
        path: Arc<str>,
        busy_timeout: Duration,
        commits_fsync: bool,
        room: Room,
    ) -> Self {
        conn.wal_hook(Some(note_wal_frames));
        Writer {
            conn: Mutex::new(Some(conn)),
            path,
            busy_timeout,
            commits_fsync,
            checkpoint_queued: AtomicBool::new(false),
            grouping: AtomicBool::new(false),
            appends: AtomicU64::new(0),
            transactions: AtomicU64::new(0),
            inline: AtomicU64::new(0),
            room,
        }
    }

    pub(crate) fn commits_fsync(&self) -> bool {
        self.commits_fsync
    }

    pub(crate) fn stats(&self) -> CommitStats {
        CommitStats {
            appends: self.appends.load(Ordering::Relaxed),
            transactions: self.transactions.load(Ordering::Relaxed),
            inline: self.inline.load(Ordering::Relaxed),
            queued: self.room.depth.load(Ordering::Relaxed),
            queue_peak: self.room.peak.load(Ordering::Relaxed),
            queue_full_waits: self.room.full_waits.load(Ordering::Relaxed),
        }
    }

    /// Queues `msg` for the writer thread once the queue has room: at once when it has, else
    /// after waiting (asynchronously: the caller's thread runs other tasks meanwhile) for the
    /// writer thread to take messages off it. Cancel-safe: dropped while waiting, nothing is
    /// queued; once this returns `Ok`, the message is queued and the writer thread handles
    /// it whatever becomes of the caller. `Closed` once the writer thread has ended.
    pub(crate) async fn send(
        &self,
        queue: &Sender<WriterMsg>,
        msg: WriterMsg,
    ) -> Result<(), StoreError> {
        let room = &self.room;
        match room.slots.try_acquire() {
            Ok(slot) => slot.forget(),
            Err(TryAcquireError::Closed) => return Err(StoreError::Closed),
            Err(TryAcquireError::NoPermits) => {
                room.full_waits.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(path = %self.path, capacity = room.capacity, "writer queue full; waiting for room");
                let slot = room.slots.acquire().await.map_err(|_| StoreError::Closed)?;
                slot.forget();
            }
        }
        // Counted before it is sent, so that the writer thread, which counts it off as it
        // takes it, never sees a depth below zero.
        let depth = room.depth.fetch_add(1, Ordering::Relaxed) + 1;
        room.peak.fetch_max(depth, Ordering::Relaxed);
        if queue.send(msg).is_err() {
            room.depth.fetch_sub(1, Ordering::Relaxed);
            return Err(StoreError::Closed);
        }
        Ok(())
    }

    /// The writer thread took `msg` off the queue: its slot is free again.
    fn taken(&self, msg: &WriterMsg) {
        if matches!(msg, WriterMsg::Append(_) | WriterMsg::Run(_)) {
            self.room.depth.fetch_sub(1, Ordering::Relaxed);
            self.room.slots.add_permits(1);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Connection>> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connection, if no one is using it and appends are not arriving concurrently (then
    /// the writer thread's groups commit them faster, and should not be kept waiting).
    pub(crate) fn try_idle(&self) -> Option<MutexGuard<'_, Option<Connection>>> {
        if self.grouping.load(Ordering::Relaxed) {
            return None;
        }
        match self.conn.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Commits `batch` in its own transaction on the calling thread, if SQLite's write lock is
    /// free. `None` if another process holds it: the caller queues the batch for the writer
    /// thread, which waits for the lock. Asks the writer thread (over `queue`) for a
    /// checkpoint when the WAL has grown long.
    pub(crate) fn commit_inline(
        &self,
        mut guard: MutexGuard<'_, Option<Connection>>,
        batch: &Batch,
        queue: &Sender<WriterMsg>,
    ) -> Option<Outcome> {
        let Some(conn) = guard.as_mut() else {
            return Some(Err(StoreError::Closed.into()));
        };
        match self.begin(conn, false) {
            Ok(()) => {}
            Err(e) if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) => {
                // Worth a line: this append now waits on the writer thread, up to the busy
                // timeout, for another process's write lock.
                tracing::debug!(path = %self.path, "write lock held by another process; the writer thread waits for it");
                return None;
            }
            Err(e) => return Some(Err(from_sqlite(e, &self.path).into())),
        }
        let outcome = match self.finish_group(conn, &[batch]) {
            Ok(mut outcomes) => outcomes.pop().expect("one outcome per batch"),
            Err(e) => Err(e.into()),
        };
        self.inline.fetch_add(1, Ordering::Relaxed);
        let due = checkpoint_due();
        drop(guard);
        if due && !self.checkpoint_queued.swap(true, Ordering::AcqRel) {
            let _ = queue.send(WriterMsg::Checkpoint);
        }
        Some(outcome)
    }

    /// `BEGIN IMMEDIATE` takes the write lock now, so that the transaction cannot fail to
    /// upgrade from a read lock later. With `wait`, it waits up to the busy timeout for
    /// another process to release it; without, it fails at once.
    fn begin(&self, conn: &Connection, wait: bool) -> rusqlite::Result<()> {
        if !conn.is_autocommit() {
            // Only if a rollback after a failed commit itself failed: start clean.
            run(conn, "ROLLBACK")?;
        }
        if wait {
            return run(conn, "BEGIN IMMEDIATE");
        }
        conn.busy_timeout(Duration::ZERO)?;
        let begun = run(conn, "BEGIN IMMEDIATE");
        conn.busy_timeout(self.busy_timeout)?;
        begun
    }

    /// [`begin`](Self::begin) on the writer thread: at once if the write lock is free, else
    /// waiting up to the busy timeout for another process to release it, with a DEBUG line
    /// when the wait starts and one when it ends (how long it took, and whether it got the
    /// lock).
    fn begin_waiting(&self, conn: &Connection) -> rusqlite::Result<()> {
        match self.begin(conn, false) {
            Err(e) if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) => {}
            done => return done,
        }
        tracing::debug!(path = %self.path, busy_timeout_ms = self.busy_timeout.as_millis() as u64, "busy: write lock held by another process; waiting for it");
        let started = Instant::now();
        let begun = self.begin(conn, true);
        let waited_ms = started.elapsed().as_secs_f64() * 1e3;
        match &begun {
            Ok(()) => {
                tracing::debug!(path = %self.path, waited_ms, "busy wait over: write lock taken")
            }
            Err(e) => {
                tracing::debug!(path = %self.path, waited_ms, error = %e, "busy wait gave up: write lock still held")
            }
        }
        begun
    }

    /// Inserts each batch, in a savepoint of its own when there are several, and commits
    /// (or rolls back if none inserted) the transaction that [`Writer::begin`] opened. An
    /// error of the transaction as a whole rolls everything back.
    fn finish_group(
        &self,
        conn: &mut Connection,
        batches: &[&Batch],
    ) -> Result<Vec<Outcome>, StoreError> {
        let result = self.insert_group(conn, batches);
        if result.is_err() {
            let _ = run(conn, "ROLLBACK");
        }
        let n = batches.len() as u64;
        self.appends.fetch_add(n, Ordering::Relaxed);
        self.transactions.fetch_add(1, Ordering::Relaxed);
        result
    }

    fn insert_group(
        &self,
        conn: &mut Connection,
        batches: &[&Batch],
    ) -> Result<Vec<Outcome>, StoreError> {
        let sql = |e| from_sqlite(e, &self.path);
        let single = batches.len() == 1;
        let mut outcomes = Vec::with_capacity(batches.len());
        let mut committed_any = false;
        for batch in batches {
            if !single {
                run(conn, "SAVEPOINT job").map_err(sql)?;
            }
            match insert(conn, batch) {
                Ok(ids) => {
                    if !single {
                        run(conn, "RELEASE job").map_err(sql)?;
                    }
                    committed_any = true;
                    outcomes.push(Ok(KeyedAppend::Appended(ids)));
                }
                Err(Failed::AlreadyApplied(prior)) => {
                    // Nothing was written; the savepoint (if any) is empty.
                    if !single {
                        run(conn, "RELEASE job").map_err(sql)?;
                    }
                    outcomes.push(Ok(KeyedAppend::AlreadyApplied(prior)));
                }
                Err(Failed::Conflict(c)) => {
                    if !single {
                        run(conn, "ROLLBACK TO job").map_err(sql)?;
                        run(conn, "RELEASE job").map_err(sql)?;
                    }
                    outcomes.push(Err(c));
                }
                Err(Failed::Sqlite(e)) => return Err(sql(e)),
            }
        }
        if committed_any {
            run(conn, "COMMIT").map_err(sql)?;
        } else {
            run(conn, "ROLLBACK").map_err(sql)?;
        }
        Ok(outcomes)
    }

    /// Runs a group on the writer thread and replies to each job.
    fn commit_group(&self, conn: &mut Connection, group: Vec<AppendJob>) {
        // DEBUG, not INFO: one line per commit would be noise in steady state.
        tracing::debug!(path = %self.path, size = group.len(), "group commit");
        let result = self
            .begin_waiting(conn)
            .map_err(|e| from_sqlite(e, &self.path))
            .and_then(|()| {
                let batches: Vec<&Batch> = group.iter().map(|job| &job.batch).collect();
                self.finish_group(conn, &batches)
            });
        match result {
            Ok(outcomes) => {
                for (job, outcome) in group.into_iter().zip(outcomes) {
                    let _ = job.reply.send(outcome);
                }
            }
            Err(e) if group.len() == 1 => {
                // One job: its error as it is, source and all.
                if let Some(job) = group.into_iter().next() {
                    let _ = job.reply.send(Err(AppendError::Store(e)));
                }
            }
            Err(e) => {
                // Nothing of the group was committed: every job fails the same way.
                let e = Arc::new(e);
                for job in group {
                    let _ = job.reply.send(Err(AppendError::Store(replicate(&e))));
                }
            }
        }
    }

    /// Copies the WAL into the database file, as SQLite's auto-checkpoint would. PASSIVE: it
    /// never waits for readers; frames still in use are copied by a later checkpoint.
    fn checkpoint(&self, conn: &Connection) {
        // A failed checkpoint loses nothing: the WAL just stays longer, and the next commit
        // past the threshold asks again.
        // It is still worth a warning: a WAL that never checkpoints grows without bound.
        // The first column is 1 when another connection's checkpoint held the checkpoint
        // lock (SQLite reports that as a row, not an error); `copied` falls short of
        // `wal_pages` while readers still use older frames.
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        }) {
            Ok((0, wal_pages, copied)) => {
                tracing::debug!(path = %self.path, wal_pages, copied, "checkpoint")
            }
            Ok((_, wal_pages, copied)) => {
                tracing::debug!(path = %self.path, wal_pages, copied, "checkpoint blocked by another connection's checkpoint")
            }
            Err(e) => {
                tracing::warn!(path = %self.path, error = %e, "checkpoint failed; the WAL stays until the next one")
            }
        }
    }
}

/// Serves the writer channel. Appends queued together are committed in one transaction
/// (group commit): each runs in its own savepoint, so a conflicting batch is rolled back alone
/// while its neighbours commit. A lone append commits at once; only after a group of several
/// appends, and only when commits fsync, does the writer wait (briefly) for the next group.
pub(crate) fn writer_loop(writer: Arc<Writer>, rx: Receiver<WriterMsg>, max_group: usize) {
    let mut next: Option<WriterMsg> = None;
    let mut last = LastGroup {
        size: 1,
        took: Duration::ZERO,
    };
    loop {
        let msg = match next.take() {
            Some(m) => m,
            None => match rx.recv() {
                Ok(m) => {
                    writer.taken(&m);
                    m
                }
                Err(_) => {
                    writer.room.slots.close();
                    return;
                }
            },
        };
        let mut guard = writer.lock();
        let Some(conn) = guard.as_mut() else {
            // Closed (only `Shutdown` closes, and then the loop ends; kept for safety):
            // dropping the message drops its reply, which its sender reads as closed.
            continue;
        };
        match msg {
            WriterMsg::Run(task) => task(conn),
            WriterMsg::Checkpoint => {
                writer.checkpoint_queued.store(false, Ordering::Release);
                writer.checkpoint(conn);
            }
            WriterMsg::Shutdown(done) => {
                *guard = None;
                drop(guard);
                // Callers waiting for room get `Closed`; what is still queued is dropped
                // with the channel, and its callers get `Closed` too.
                writer.room.slots.close();
                let _ = done.send(());
                return;
            }
            WriterMsg::Append(job) => {
                // Gather what is queued. When commits fsync, and the last group had several
                // appends, their writers are likely about to send their next ones: wait a
                // little (half the last commit's time) for as many, so that they share one
                // fsync instead of alternating between two half-size groups. Without fsync a
                // commit is too short for waiting to pay.
                let target = last.size.min(max_group);
                let wait = if writer.commits_fsync {
                    last.took / 2
                } else {
                    Duration::ZERO
                };
                let deadline = Instant::now() + wait;
                let mut group = vec![job];
                while group.len() < max_group {
                    let received = if group.len() < target {
                        rx.recv_deadline(deadline).ok()
                    } else {
                        rx.try_recv().ok()
                    };
                    if let Some(m) = &received {
                        writer.taken(m);
                    }
                    match received {
                        Some(WriterMsg::Append(job)) => group.push(job),
                        Some(other) => {
                            next = Some(other);
                            break;
                        }
                        None => break,
                    }
                }
                let started = Instant::now();
                last.size = group.len();
                writer.grouping.store(last.size > 1, Ordering::Relaxed);
                writer.commit_group(conn, group);
                last.took = started.elapsed();
                if checkpoint_due() {
                    writer.checkpoint(conn);
                }
            }
        }
    }
}

/// The writer thread's last group commit.
struct LastGroup {
    size: usize,
    took: Duration,
}

/// Runs one transaction-control statement, prepared once per connection: parsing it anew
/// for every commit costs more than running it.
fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Why one batch of a group did not insert.
enum Failed {
    Conflict(AppendError),
    /// The batch's idempotency key was stored before, by this append.
    AlreadyApplied(PriorAppend),
    Sqlite(rusqlite::Error),
}

fn insert(conn: &Connection, batch: &Batch) -> Result<Range<u64>, Failed> {
    match batch {
        // Versions were checked to fit an i64 before the job was queued.
        Batch::Integer(items) => insert_rows(conn, "integer_items", items, |p| *p as i64),
        Batch::Keyed { items, key, prior } => {
            // Looked up in the write transaction, so no other append under the key can
            // commit between the lookup and the insert.
            if let Some(found) = find_key(conn, prior.sequence_id, key).map_err(Failed::Sqlite)? {
                return Err(Failed::AlreadyApplied(found));
            }
            let ids = insert_rows(conn, "integer_items", items, |p| *p as i64)?;
            conn.prepare_cached(
                "INSERT INTO idempotency_keys (sequence_id, key, first_position, last_position) \
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    prior.sequence_id.as_bytes(),
                    key.as_str(),
                    *prior.versions.start() as i64,
                    *prior.versions.end() as i64
                ])
            })
            .map_err(Failed::Sqlite)?;
            Ok(ids)
        }
        Batch::Timestamped(items) => {
            insert_rows(conn, "timestamp_items", items, |t| t.unix_nanos()).map(|_| 0..0)
        }
        Batch::Tracked { items, tracking } => {
            // Read in the write transaction: no other runner can move it before the commit.
            let found = tracking_position(conn, &tracking.follower).map_err(Failed::Sqlite)?;
            if found != tracking.from {
                return Err(Failed::Conflict(AppendError::TrackingMoved {
                    follower: tracking.follower.clone(),
                    expected: tracking.from,
                    found,
                }));
            }
            let ids = insert_rows(conn, "integer_items", items, |p| *p as i64)?;
            conn.prepare_cached(
                "INSERT INTO tracking (projection, notification_id) VALUES (?1, ?2) \
                 ON CONFLICT (projection) DO UPDATE SET notification_id = excluded.notification_id",
            )
            .and_then(|mut stmt| stmt.execute(params![tracking.follower, tracking.to as i64]))
            .map_err(Failed::Sqlite)?;
            Ok(ids)
        }
    }
}

/// The position follower `follower` recorded (0 before its first page), on any connection.
pub(crate) fn tracking_position(conn: &Connection, follower: &str) -> rusqlite::Result<u64> {
    use rusqlite::OptionalExtension;
    let found: Option<i64> = conn
        .prepare_cached("SELECT notification_id FROM tracking WHERE projection = ?1")?
        .query_row([follower], |r| r.get(0))
        .optional()?;
    Ok(found.unwrap_or(0) as u64)
}

/// Inserts the items of one batch into `table`; returns the rowids they got (the
/// notification ids, for integer items). A unique violation is the item's conflict.
fn insert_rows<P: Copy + Into<Position>>(
    conn: &Connection,
    table: &str,
    items: &[SequencedItem<P>],
    to_sql: impl Fn(&P) -> i64,
) -> Result<Range<u64>, Failed> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "INSERT INTO {table} (sequence_id, position, topic, payload) VALUES (?1, ?2, ?3, ?4)"
        ))
        .map_err(Failed::Sqlite)?;
    let mut ids = 0..0;
    for (i, item) in items.iter().enumerate() {
        let inserted = stmt.execute(params![
            item.sequence_id.as_bytes(),
            to_sql(&item.position),
            item.topic,
            item.payload
        ]);
        if let Err(e) = inserted {
            return Err(if is_unique_violation(&e) {
                Failed::Conflict(AppendError::Conflict {
                    sequence_id: item.sequence_id,
                    position: item.position.into(),
                })
            } else {
                Failed::Sqlite(e)
            });
        }
        // The writer is the only one inserting during this transaction, so ids are
        // contiguous: each row takes max(rowid) + 1.
        let id = conn.last_insert_rowid() as u64;
        if i == 0 {
            ids = id..id;
        }
        ids.end = id + 1;
    }
    Ok(ids)
}

/// The append stored under `key` for `sequence_id`, read on any connection.
pub(crate) fn find_key(
    conn: &Connection,
    sequence_id: uuid::Uuid,
    key: &IdempotencyKey,
) -> rusqlite::Result<Option<PriorAppend>> {
    let mut stmt = conn.prepare_cached(
        "SELECT first_position, last_position FROM idempotency_keys \
         WHERE sequence_id = ?1 AND key = ?2",
    )?;
    let mut rows = stmt.query(params![sequence_id.as_bytes(), key.as_str()])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let (first, last): (i64, i64) = (row.get(0)?, row.get(1)?);
    // Written from checked versions (0..=i64::MAX); a negative one is foreign data, read as
    // the smallest version so that the key still blocks a second append.
    Ok(Some(PriorAppend {
        sequence_id,
        versions: first.max(0) as u64..=last.max(0) as u64,
    }))
}

/// One error for every job of a failed group, of the same kind (`Busy`, `StorageFull`,
/// `Corrupt`, `Closed`, ...), with the text once: the source is the group's source, shared
/// ([`SharedSource`]), so its chain down to the SQLite error is kept.
fn replicate(e: &Arc<StoreError>) -> StoreError {
    let source = || -> BoxError { Box::new(SharedSource(Arc::clone(e))) };
    match &**e {
        StoreError::Busy { .. } => StoreError::Busy { source: source() },
        StoreError::StorageFull { .. } => StoreError::StorageFull { source: source() },
        StoreError::Closed => StoreError::Closed,
        StoreError::Corrupt { detail, .. } => StoreError::Corrupt {
            detail: detail.clone(),
            source: None,
        },
        StoreError::Config { detail } => StoreError::Config {
            detail: detail.clone(),
        },
        StoreError::InvalidItem {
            sequence_id,
            position,
            reason,
        } => StoreError::InvalidItem {
            sequence_id: *sequence_id,
            position: *position,
            reason: reason.clone(),
        },
        StoreError::Unsupported { capability, reason } => {
            StoreError::Unsupported { capability, reason }
        }
        StoreError::Unreachable { address, .. } => StoreError::Unreachable {
            address: address.clone(),
            source: source(),
        },
        StoreError::OutcomeUnknown { commit_id, .. } => StoreError::OutcomeUnknown {
            commit_id: *commit_id,
            source: source(),
        },
        StoreError::Backend { .. } => StoreError::Backend { source: source() },
        // A kind added later: the whole error, as a backend failure's source.
        _ => StoreError::Backend {
            source: Box::new(SharedAll(Arc::clone(e))),
        },
    }
}

/// A whole shared error as a source, for kinds [`replicate`] does not know.
#[derive(Debug)]
struct SharedAll(Arc<StoreError>);

impl std::fmt::Display for SharedAll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedAll {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.0)
    }
}

/// Claims or renews `lease` in one statement (so in one atomic write, without holding the
/// write lock across statements): it is taken when no row exists, the row is the owner's,
/// or the row has expired; otherwise the holder is read back.
pub(crate) fn claim_lease(conn: &Connection, lease: &Lease) -> rusqlite::Result<LeaseClaim> {
    use rusqlite::OptionalExtension;
    let now = unix_millis(std::time::SystemTime::now());
    let ttl = i64::try_from(lease.ttl.as_millis()).unwrap_or(i64::MAX);
    let taken = conn
        .prepare_cached(
            "INSERT INTO leases (follower, owner, expires_ms) VALUES (?1, ?2, ?3) \
             ON CONFLICT (follower) DO UPDATE SET owner = excluded.owner, expires_ms = excluded.expires_ms \
             WHERE leases.owner = excluded.owner OR leases.expires_ms <= ?4",
        )?
        .execute(params![
            lease.follower,
            lease.owner.as_bytes(),
            now.saturating_add(ttl),
            now
        ])?;
    if taken == 1 {
        return Ok(LeaseClaim::Held);
    }
    let holder: Option<(Vec<u8>, i64)> = conn
        .prepare_cached("SELECT owner, expires_ms FROM leases WHERE follower = ?1")?
        .query_row([&lease.follower], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(match holder {
        // Released or expired since the insert looked: the caller claims again next time.
        None => LeaseClaim::Taken {
            owner: Uuid::nil(),
            expires_in: Duration::ZERO,
        },
        Some((owner, expires)) => LeaseClaim::Taken {
            owner: Uuid::from_slice(&owner).unwrap_or_default(),
            expires_in: Duration::from_millis(expires.saturating_sub(now).max(0) as u64),
        },
    })
}

/// Milliseconds since the Unix epoch (0 for a clock set before it).
fn unix_millis(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every job of a failed group gets the group's kind of error, its text said once.
    #[test]
    fn a_failed_group_keeps_the_kind_of_its_error() {
        let busy = replicate(&Arc::new(StoreError::Busy {
            source: "database is locked".into(),
        }));
        assert!(busy.is_retryable(), "{busy:?}");
        assert_eq!(busy.to_string().matches("busy").count(), 1, "{busy}");
        assert!(busy.to_string().ends_with("database is locked"), "{busy}");
        assert!(matches!(
            replicate(&Arc::new(StoreError::Closed)),
            StoreError::Closed
        ));
        let corrupt = replicate(&Arc::new(StoreError::Corrupt {
            detail: "f.db: database disk image is malformed".into(),
            source: None,
        }));
        assert!(
            matches!(&corrupt, StoreError::Corrupt { detail, .. } if detail == "f.db: database disk image is malformed"),
            "{corrupt:?}"
        );
        let backend = replicate(&Arc::new(StoreError::backend("f.db: disk I/O error")));
        assert!(matches!(backend, StoreError::Backend { .. }), "{backend:?}");
        assert_eq!(
            backend.to_string(),
            "event store backend failed: f.db: disk I/O error"
        );
    }

    /// A full disk stays a full disk for every job, and each job's error reaches the SQLite
    /// error under it through `source()`, not a copy of its text.
    #[test]
    fn a_failed_group_keeps_the_source_chain() {
        let sqlite = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        );
        let full = Arc::new(from_sqlite(sqlite, "f.db"));
        for _ in 0..2 {
            let job = replicate(&full);
            assert_eq!(
                job.kind(),
                eventsmith_core::ErrorKind::StorageFull,
                "{job:?}"
            );
            assert_eq!(job.to_string(), full.to_string());
            let first = std::error::Error::source(&job).expect("the shared source");
            assert!(first.to_string().starts_with("f.db: "), "{first}");
            let driver = first.source().expect("the SQLite error");
            let driver = driver
                .downcast_ref::<rusqlite::Error>()
                .expect("a rusqlite::Error");
            assert_eq!(driver.sqlite_error_code(), Some(ErrorCode::DiskFull));
        }
    }
}
