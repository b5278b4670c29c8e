//! The writer thread: it owns the write connection and commits appends in groups. Async
//! callers hand it work over a channel and await a oneshot, so no async worker thread ever
//! waits for a commit's fsync.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::{Receiver, TryRecvError};
use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use eventsmith_core::{
    AppendError, IntegerSequencedItem, Position, SequencedItem, StoreError, TimestampSequencedItem,
};

use crate::error::{from_sqlite, is_unique_violation};

/// Counters kept by the writer.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    appends: AtomicU64,
    transactions: AtomicU64,
}

impl Stats {
    pub(crate) fn snapshot(&self) -> CommitStats {
        CommitStats {
            appends: self.appends.load(Ordering::Relaxed),
            transactions: self.transactions.load(Ordering::Relaxed),
        }
    }
}

/// What the writer has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitStats {
    /// Appends (batches) handled, including those that conflicted.
    pub appends: u64,
    /// Write transactions run for them.
    pub transactions: u64,
}

/// Work for a connection's thread.
pub(crate) type Task = Box<dyn FnOnce(&mut Connection) + Send>;

/// What the writer thread receives.
pub(crate) enum WriterMsg {
    /// An append, possibly committed in one transaction with others.
    Append(AppendJob),
    /// Any other work (schema reads for in-memory stores, snapshot writes, ...).
    Run(Task),
    /// Finish: close the connection, then reply.
    Shutdown(oneshot::Sender<()>),
}

/// The items of one append, validated by the caller (no duplicates, positions in range).
pub(crate) enum Batch {
    Integer(Vec<IntegerSequencedItem>),
    Timestamped(Vec<TimestampSequencedItem>),
}

pub(crate) struct AppendJob {
    pub(crate) batch: Batch,
    pub(crate) reply: oneshot::Sender<Result<Range<u64>, AppendError>>,
}

/// Serves the writer channel. Appends queued together are committed in one transaction
/// (group commit): each runs in its own savepoint, so a conflicting batch is rolled back alone
/// while its neighbours commit. Nothing waits for a group to fill: under load the queue holds
/// several appends, when idle each append commits at once.
pub(crate) fn writer_loop(
    mut conn: Connection,
    rx: Receiver<WriterMsg>,
    path: &str,
    max_group: usize,
    stats: &Stats,
) {
    let mut next: Option<WriterMsg> = None;
    loop {
        let msg = match next.take() {
            Some(m) => m,
            None => match rx.recv() {
                Ok(m) => m,
                Err(_) => return,
            },
        };
        match msg {
            WriterMsg::Run(task) => task(&mut conn),
            WriterMsg::Shutdown(done) => {
                drop(conn);
                let _ = done.send(());
                return;
            }
            WriterMsg::Append(job) => {
                let mut group = vec![job];
                while group.len() < max_group {
                    match rx.try_recv() {
                        Ok(WriterMsg::Append(job)) => group.push(job),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                    }
                }
                let n = group.len();
                stats.appends.fetch_add(n as u64, Ordering::Relaxed);
                stats.transactions.fetch_add(1, Ordering::Relaxed);
                commit_group(&mut conn, group, path);
            }
        }
    }
}

/// Why one batch of a group did not insert.
enum Failed {
    Conflict(AppendError),
    Sqlite(rusqlite::Error),
}

fn insert(conn: &Connection, batch: &Batch) -> Result<Range<u64>, Failed> {
    match batch {
        // Versions were checked to fit an i64 before the job was queued.
        Batch::Integer(items) => insert_rows(conn, "integer_items", items, |p| *p as i64),
        Batch::Timestamped(items) => {
            insert_rows(conn, "timestamp_items", items, |t| t.unix_nanos()).map(|_| 0..0)
        }
    }
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

/// One error for every job of a failed group; the retryable kind is kept.
fn replicate(e: &StoreError) -> StoreError {
    let message = e.to_string();
    if e.is_retryable() {
        StoreError::Busy {
            source: message.into(),
        }
    } else {
        StoreError::backend(message)
    }
}

/// Runs a group and replies to each job.
fn commit_group(conn: &mut Connection, group: Vec<AppendJob>, path: &str) {
    let result = run_group(conn, &group, path);
    if result.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    match result {
        Ok(outcomes) => {
            for (job, outcome) in group.into_iter().zip(outcomes) {
                let _ = job.reply.send(outcome);
            }
        }
        Err(e) => {
            // Nothing of the group was committed: every job fails the same way.
            for job in group {
                let _ = job.reply.send(Err(AppendError::Store(replicate(&e))));
            }
        }
    }
}

fn run_group(
    conn: &mut Connection,
    group: &[AppendJob],
    path: &str,
) -> Result<Vec<Result<Range<u64>, AppendError>>, StoreError> {
    let sql = |e| from_sqlite(e, path);
    // IMMEDIATE takes the write lock now (waiting up to the busy timeout for other
    // processes), so the transaction cannot fail to upgrade from a read lock later.
    conn.execute_batch("BEGIN IMMEDIATE").map_err(sql)?;
    let single = group.len() == 1;
    let mut outcomes = Vec::with_capacity(group.len());
    let mut committed_any = false;
    for job in group {
        if !single {
            conn.execute_batch("SAVEPOINT job").map_err(sql)?;
        }
        match insert(conn, &job.batch) {
            Ok(ids) => {
                if !single {
                    conn.execute_batch("RELEASE job").map_err(sql)?;
                }
                committed_any = true;
                outcomes.push(Ok(ids));
            }
            Err(Failed::Conflict(c)) => {
                if !single {
                    conn.execute_batch("ROLLBACK TO job; RELEASE job")
                        .map_err(sql)?;
                }
                outcomes.push(Err(c));
            }
            Err(Failed::Sqlite(e)) => return Err(sql(e)),
        }
    }
    if committed_any {
        conn.execute_batch("COMMIT").map_err(sql)?;
    } else {
        conn.execute_batch("ROLLBACK").map_err(sql)?;
    }
    Ok(outcomes)
}
