//! The writer task: every integer-sequenced append goes through it, and appends that queue
//! up while it commits are committed together, in one transaction that holds the
//! `integer_items` lock to its commit (group commit): one call of the schema's append
//! function when the group holds only plain appends, else a pipelined transaction.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use eventsmith_core::{
    AppendError, IdempotencyKey, IntegerSequencedItem, KeyedAppend, Position, PriorAppend,
    StoreError, Tracking,
};
use futures_util::future::{join, join_all, join3};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};
use uuid::Uuid;

use crate::config::{PostgresConfig, Role};
use crate::error::{
    from_pg, is_connection_lost, is_fatal, is_pg_storage_full, is_unique_violation,
};
use crate::pool::Conn;

/// The rows of a batch as arrays, for `unnest`; the batch's order is the array order.
const BATCH: &str = "batch AS (
    SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::bytea[])
        WITH ORDINALITY AS b (sequence_id, position, topic, payload, ord)
), conflict AS (
    SELECT b.sequence_id, b.position FROM batch b
    JOIN integer_items i ON i.sequence_id = b.sequence_id AND i.position = b.position
    ORDER BY b.ord LIMIT 1
)";

/// One append: inserts the batch unless one of its items exists, and says which. Runs
/// under the table lock, so no other writer can insert between the check and the insert.
fn insert_sql() -> String {
    format!(
        "WITH {BATCH}, inserted AS (
    INSERT INTO integer_items (sequence_id, position, topic, payload)
    SELECT sequence_id, position, topic, payload FROM batch
    WHERE NOT EXISTS (SELECT 1 FROM conflict) ORDER BY ord
    RETURNING notification_id
)
SELECT (SELECT min(notification_id) FROM inserted), (SELECT max(notification_id) FROM inserted),
    (SELECT count(*) FROM inserted), (SELECT sequence_id FROM conflict),
    (SELECT position FROM conflict), NULL::bigint, NULL::bigint"
    )
}

/// Several plain appends of one group in one statement (`$5` numbers each row's append):
/// each append is inserted unless one of its items exists, and the answer is one row per
/// append, `(append, min id, max id, count, conflict sequence, conflict position)`. One
/// statement instead of one per append saves the server a statement's overhead per append,
/// which is most of a small append's cost under the lock. The appends' items must not
/// overlap each other (the writer defers an append that overlaps an earlier one of its group
/// to the next group): one statement does not see its own inserts, so overlapping items would
/// fail the whole statement on the unique key.
fn insert_many_sql() -> String {
    insert_many_body("integer_items", ["$1", "$2", "$3", "$4", "$5"])
}

/// [`insert_many_sql`] on `table`, its five arrays named `params` (the append function
/// names the table with its schema and the arrays by its own parameters).
pub(crate) fn insert_many_body(table: &str, params: [&str; 5]) -> String {
    let [ids, positions, topics, payloads, appends] = params;
    format!(
        "WITH batch AS (
    SELECT * FROM unnest({ids}::uuid[], {positions}::bigint[], {topics}::text[],
        {payloads}::bytea[], {appends}::int[])
        WITH ORDINALITY AS b (sequence_id, position, topic, payload, append, ord)
), conflict AS (
    SELECT DISTINCT ON (b.append) b.append, b.sequence_id, b.position FROM batch b
    JOIN {table} i ON i.sequence_id = b.sequence_id AND i.position = b.position
    ORDER BY b.append, b.ord
), inserted AS (
    INSERT INTO {table} (sequence_id, position, topic, payload)
    SELECT sequence_id, position, topic, payload FROM batch b
    WHERE NOT EXISTS (SELECT 1 FROM conflict c WHERE c.append = b.append) ORDER BY ord
    RETURNING notification_id, sequence_id, position
)
SELECT b.append, min(i.notification_id), max(i.notification_id), count(*), NULL::uuid,
    NULL::bigint
FROM inserted i JOIN batch b ON b.sequence_id = i.sequence_id AND b.position = i.position
GROUP BY b.append
UNION ALL
SELECT c.append, NULL, NULL, 0, c.sequence_id, c.position FROM conflict c"
    )
}

/// A keyed append: as [`insert_sql`], unless the key is stored for the sequence, and the
/// key is inserted with the items.
fn insert_keyed_sql() -> String {
    format!(
        "WITH prior AS (
    SELECT first_position, last_position FROM idempotency_keys
    WHERE sequence_id = $8 AND key = $5
), {BATCH}, inserted AS (
    INSERT INTO integer_items (sequence_id, position, topic, payload)
    SELECT sequence_id, position, topic, payload FROM batch
    WHERE NOT EXISTS (SELECT 1 FROM prior) AND NOT EXISTS (SELECT 1 FROM conflict) ORDER BY ord
    RETURNING notification_id
), stored_key AS (
    INSERT INTO idempotency_keys (sequence_id, key, first_position, last_position)
    SELECT $8, $5, $6, $7 WHERE EXISTS (SELECT 1 FROM inserted)
)
SELECT (SELECT min(notification_id) FROM inserted), (SELECT max(notification_id) FROM inserted),
    (SELECT count(*) FROM inserted), (SELECT sequence_id FROM conflict),
    (SELECT position FROM conflict), (SELECT first_position FROM prior),
    (SELECT last_position FROM prior)"
    )
}

/// A tracked append (a follower's page): as [`insert_sql`], and only if the follower's
/// tracking record is still at `$6` (0 when it has none), and then with the record moved to
/// `$7`. Under the table lock no other append (of this process or another) can move the
/// record between the check and the move, so two runners of one follower never both commit
/// a page. A moved record wins over a conflicting item, as on SQLite.
fn insert_tracked_sql() -> String {
    format!(
        "WITH recorded AS (
    SELECT coalesce((SELECT notification_id FROM tracking WHERE projection = $5), 0) AS found
), moved AS (
    SELECT found FROM recorded WHERE found <> $6
), {BATCH}, inserted AS (
    INSERT INTO integer_items (sequence_id, position, topic, payload)
    SELECT sequence_id, position, topic, payload FROM batch
    WHERE NOT EXISTS (SELECT 1 FROM moved) AND NOT EXISTS (SELECT 1 FROM conflict) ORDER BY ord
    RETURNING notification_id
), moved_to AS (
    INSERT INTO tracking (projection, notification_id)
    SELECT $5, $7 WHERE NOT EXISTS (SELECT 1 FROM moved) AND NOT EXISTS (SELECT 1 FROM conflict)
    ON CONFLICT (projection) DO UPDATE SET notification_id = EXCLUDED.notification_id
)
SELECT (SELECT min(notification_id) FROM inserted), (SELECT max(notification_id) FROM inserted),
    (SELECT count(*) FROM inserted), (SELECT sequence_id FROM conflict),
    (SELECT position FROM conflict), NULL::bigint, NULL::bigint, (SELECT found FROM moved)"
    )
}

/// The statements' texts, built once (they are prepared by text on every group, from the
/// connection's cache).
static INSERT: LazyLock<String> = LazyLock::new(insert_sql);
static INSERT_MANY: LazyLock<String> = LazyLock::new(insert_many_sql);
static INSERT_KEYED: LazyLock<String> = LazyLock::new(insert_keyed_sql);
static INSERT_TRACKED: LazyLock<String> = LazyLock::new(insert_tracked_sql);

/// The position a follower recorded, for resolving a tracked append whose outcome was lost.
pub(crate) const TRACKING_POSITION: &str =
    "SELECT notification_id FROM tracking WHERE projection = $1";

/// Reads back the items of a batch, for resolving an append whose outcome was lost with
/// its connection.
const RESOLVE: &str = "SELECT b.ord, i.topic, i.payload, i.notification_id
    FROM unnest($1::uuid[], $2::bigint[]) WITH ORDINALITY AS b (sequence_id, position, ord)
    LEFT JOIN integer_items i ON i.sequence_id = b.sequence_id AND i.position = b.position
    ORDER BY b.ord";

const LOCK: &str = "LOCK TABLE integer_items IN EXCLUSIVE MODE";

/// Wakes the schema's listeners when the transaction commits (`$1` is the channel).
const NOTIFY: &str = "SELECT pg_notify($1, '')";

/// What the writer returns for one append.
pub(crate) type Reply = Result<KeyedAppend, AppendError>;

/// One append handed to the writer.
pub(crate) struct Job {
    pub(crate) items: Vec<IntegerSequencedItem>,
    /// The key and what it records, for `append_with_key`.
    pub(crate) key: Option<(IdempotencyKey, PriorAppend)>,
    /// The follower's tracking move, for `append_tracked` (never with a key). Its positions
    /// were checked to fit a bigint before the job was queued.
    pub(crate) tracking: Option<Tracking>,
    pub(crate) reply: oneshot::Sender<Reply>,
}

/// Counters of the writer, for tests and tuning.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    appends: AtomicU64,
    transactions: AtomicU64,
}

/// How many appends the writer committed, in how many transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitStats {
    /// Appends committed (or answered with a conflict or a prior key).
    pub appends: u64,
    /// Transactions run for them; appends per transaction is the group size.
    pub transactions: u64,
}

impl Counters {
    pub(crate) fn stats(&self) -> CommitStats {
        CommitStats {
            appends: self.appends.load(Ordering::Relaxed),
            transactions: self.transactions.load(Ordering::Relaxed),
        }
    }
}

/// The append function of schema version 2 (see the schema module).
const CALL_APPEND: &str = "SELECT * FROM eventsmith_append($1, $2, $3, $4, $5, $6)";

/// The answers of [`insert_many_sql`] (or the append function) by append, in group order.
fn many_answers(group_len: usize, rows: Vec<Row>) -> Vec<Answer> {
    let mut answers: Vec<Answer> = (0..group_len).map(|_| Answer::default()).collect();
    for row in rows {
        let append: i32 = row.get(0);
        if let Some(answer) = usize::try_from(append)
            .ok()
            .and_then(|i| answers.get_mut(i))
        {
            *answer = Answer {
                min: row.get(1),
                max: row.get(2),
                count: row.get(3),
                conflict: row
                    .get::<_, Option<Uuid>>(4)
                    .zip(row.get::<_, Option<i64>>(5)),
                ..Answer::default()
            };
        }
    }
    answers
}

/// What one append's statement answered.
#[derive(Debug, Default)]
struct Answer {
    /// The notification ids its items took, and how many rows were inserted.
    min: Option<i64>,
    max: Option<i64>,
    count: i64,
    /// The first of its items found stored.
    conflict: Option<(Uuid, i64)>,
    /// The versions its key recorded, when the key was stored already.
    prior: Option<(i64, i64)>,
    /// Where the follower's record was found, when it had moved.
    moved: Option<i64>,
}

impl Answer {
    /// From the row of [`insert_sql`], [`insert_keyed_sql`] or [`insert_tracked_sql`].
    fn of_row(row: &Row, tracked: bool) -> Answer {
        let pair = |a: Option<i64>, b: Option<i64>| a.zip(b);
        Answer {
            min: row.get(0),
            max: row.get(1),
            count: row.get(2),
            conflict: row
                .get::<_, Option<Uuid>>(3)
                .zip(row.get::<_, Option<i64>>(4)),
            prior: pair(row.get(5), row.get(6)),
            moved: if tracked { row.get(7) } else { None },
        }
    }
}

/// The plain appends of a group that run as one [`insert_many_sql`] statement: their
/// columns, each row tagged with its append's index in the group.
struct Many {
    jobs: Vec<usize>,
    ids: Vec<Uuid>,
    positions: Vec<i64>,
    topics: Vec<String>,
    payloads: Vec<Vec<u8>>,
    appends: Vec<i32>,
}

impl Many {
    /// The group's plain appends, when there are at least `least` of them.
    fn of(group: &[Job], least: usize) -> Option<Many> {
        let jobs: Vec<usize> = (0..group.len()).filter(|&i| is_plain(&group[i])).collect();
        if jobs.is_empty() || jobs.len() < least {
            return None;
        }
        let n = jobs.iter().map(|&i| group[i].items.len()).sum();
        let mut many = Many {
            jobs: Vec::new(),
            ids: Vec::with_capacity(n),
            positions: Vec::with_capacity(n),
            topics: Vec::with_capacity(n),
            payloads: Vec::with_capacity(n),
            appends: Vec::with_capacity(n),
        };
        for &i in &jobs {
            for item in &group[i].items {
                many.ids.push(item.sequence_id);
                many.positions.push(item.position as i64);
                many.topics.push(item.topic.clone());
                many.payloads.push(item.payload.clone());
                // A group holds at most `max_group` appends, far below i32::MAX.
                many.appends.push(i as i32);
            }
        }
        many.jobs = jobs;
        Some(many)
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 5] {
        [
            &self.ids,
            &self.positions,
            &self.topics,
            &self.payloads,
            &self.appends,
        ]
    }
}

/// An append with items and neither a key nor a tracking move.
fn is_plain(job: &Job) -> bool {
    job.key.is_none() && job.tracking.is_none() && !job.items.is_empty()
}

/// Splits off the appends of `group` that [`insert_many_sql`] cannot take together with an
/// earlier plain append of the group: those writing an item an earlier one writes (the
/// second of two racing commands on one aggregate). They go to the next group, where the
/// first one's items are stored and they get their conflict as usual.
fn defer_overlapping(group: &mut Vec<Job>) -> Vec<Job> {
    if group.len() < 2 {
        return Vec::new();
    }
    let mut taken = std::collections::HashSet::new();
    let mut kept = Vec::with_capacity(group.len());
    let mut deferred = Vec::new();
    for job in group.drain(..) {
        if is_plain(&job) {
            let keys: Vec<(Uuid, u64)> = job
                .items
                .iter()
                .map(|i| (i.sequence_id, i.position))
                .collect();
            if keys.iter().any(|k| taken.contains(k)) {
                deferred.push(job);
                continue;
            }
            taken.extend(keys);
        }
        kept.push(job);
    }
    *group = kept;
    deferred
}

/// A batch's columns, owned while its statement runs.
struct Columns {
    ids: Vec<Uuid>,
    positions: Vec<i64>,
    topics: Vec<String>,
    payloads: Vec<Vec<u8>>,
    key: Option<(String, i64, i64, Uuid)>,
    tracking: Option<(String, i64, i64)>,
}

impl Columns {
    fn of(job: &Job) -> Columns {
        let n = job.items.len();
        let mut c = Columns {
            ids: Vec::with_capacity(n),
            positions: Vec::with_capacity(n),
            topics: Vec::with_capacity(n),
            payloads: Vec::with_capacity(n),
            key: job.key.as_ref().map(|(key, prior)| {
                (
                    key.as_str().to_owned(),
                    *prior.versions.start() as i64,
                    *prior.versions.end() as i64,
                    prior.sequence_id,
                )
            }),
            tracking: job
                .tracking
                .as_ref()
                .map(|t| (t.follower.clone(), t.from as i64, t.to as i64)),
        };
        for item in &job.items {
            c.ids.push(item.sequence_id);
            // Checked against MAX_VERSION before the job was queued.
            c.positions.push(item.position as i64);
            c.topics.push(item.topic.clone());
            c.payloads.push(item.payload.clone());
        }
        c
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut p: Vec<&(dyn ToSql + Sync)> =
            vec![&self.ids, &self.positions, &self.topics, &self.payloads];
        if let Some((key, first, last, id)) = &self.key {
            p.extend([key as &(dyn ToSql + Sync), first, last, id]);
        }
        if let Some((follower, from, to)) = &self.tracking {
            p.extend([follower as &(dyn ToSql + Sync), from, to]);
        }
        p
    }
}

/// The writer: its connection (opened on demand, reopened after a failure) and its queue.
pub(crate) struct Writer {
    config: PostgresConfig,
    /// The schema's notification channel, notified by every group that writes items.
    channel: String,
    address: String,
    conn: Option<(Conn, i32)>,
    counters: Arc<Counters>,
}

/// How many scheduler turns the writer waits, at most, for the callers of its last group
/// before committing a smaller group.
const GATHER_TURNS: usize = 16;

/// How long the writer then waits for each further caller of its last group (tokio's timer
/// rounds it up to its 1 ms tick). A caller back from its load and decision within that
/// joins the group instead of paying for a commit of its own; the first wait that times out
/// ends the gathering. Measured with 8 tasks: 136 us a command without it, 102 us with it.
const GATHER_WAIT: std::time::Duration = std::time::Duration::from_micros(500);

/// Runs the writer until every sender is dropped; what is queued then is still committed.
pub(crate) async fn run(
    config: PostgresConfig,
    channel: String,
    mut queue: mpsc::UnboundedReceiver<Job>,
    counters: Arc<Counters>,
) {
    let max_group = config.max_group.max(1);
    let mut writer = Writer {
        address: config.address(),
        config,
        channel,
        conn: None,
        counters,
    };
    // How many appends the last group answered: the callers that were waiting then are
    // likely to be back with their next append within a few scheduler turns.
    let mut last_group = 0;
    // Appends deferred from the last group (see `defer_overlapping`): the next group's first.
    let mut deferred: Vec<Job> = Vec::new();
    loop {
        let mut group = std::mem::take(&mut deferred);
        if group.is_empty() {
            match queue.recv().await {
                Some(first) => group.push(first),
                None => break,
            }
        }
        let mut turns = 0;
        while group.len() < max_group {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                // Commits are serialised by the log lock, so a group that leaves behind an
                // append arriving a moment later costs that append a whole extra commit.
                // Waiting a few scheduler turns, then briefly on the timer, for the callers of
                // the last group lets them join; a lone caller (last group of 1) never waits.
                Err(_) if group.len() < last_group && turns < GATHER_TURNS => {
                    turns += 1;
                    tokio::task::yield_now().await;
                }
                Err(_) if group.len() < last_group => {
                    match tokio::time::timeout(GATHER_WAIT, queue.recv()).await {
                        Ok(Some(job)) => group.push(job),
                        _ => break,
                    }
                }
                Err(_) => break,
            }
        }
        deferred = defer_overlapping(&mut group);
        last_group = group.len() + deferred.len();
        // A caller that dropped its future no longer waits, but its append is committed all
        // the same (it may have been sent already): the store documents this.
        writer.commit_group(group).await;
    }
}

/// How a group's transaction ended.
enum GroupEnd {
    /// Committed: one answer per job.
    Committed(Vec<Answer>),
    /// Rolled back by a server error: nothing was written.
    Failed {
        /// Which job's statement failed, if one did (else BEGIN or the lock).
        job: Option<usize>,
        error: tokio_postgres::Error,
    },
    /// The connection was lost: whether it committed is not known yet.
    Lost(tokio_postgres::Error),
}

impl Writer {
    fn pg(&self, e: tokio_postgres::Error) -> StoreError {
        from_pg(e, &self.address)
    }

    /// The writer's connection and its server process id, opened when needed.
    async fn connection(&mut self) -> Result<&mut (Conn, i32), StoreError> {
        if self
            .conn
            .as_ref()
            .is_some_and(|(c, _)| c.client.is_closed())
        {
            self.conn = None;
        }
        if self.conn.is_none() {
            let conn = Conn::open(&self.config, Role::Writer).await?;
            let pid: i32 = conn
                .client
                .query_one("SELECT pg_backend_pid()", &[])
                .await
                .map_err(|e| from_pg(e, &self.address))?
                .get(0);
            self.conn = Some((conn, pid));
        }
        Ok(self.conn.as_mut().expect("just opened"))
    }

    async fn commit_group(&mut self, group: Vec<Job>) {
        self.counters
            .appends
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        let end = match self.run_group(&group).await {
            Ok(end) => end,
            Err(e) => {
                // No connection: nothing was sent.
                let text = e.to_string();
                let mut first = Some(e);
                for job in group {
                    let e = first.take().unwrap_or_else(|| StoreError::Unreachable {
                        address: self.address.clone(),
                        source: text.clone().into(),
                    });
                    let _ = job.reply.send(Err(e.into()));
                }
                return;
            }
        };
        match end {
            GroupEnd::Committed(answers) => {
                for (job, answer) in group.into_iter().zip(answers) {
                    let result = read_result(&job, &answer, &self.address);
                    let _ = job.reply.send(result);
                }
            }
            GroupEnd::Failed { job: Some(_), .. } if group.len() > 1 => {
                // One append failed and took its neighbours down: each is tried on its own.
                for job in group {
                    self.commit_alone(job).await;
                }
            }
            GroupEnd::Failed { job, error } => {
                let is_job_error = job.is_some();
                let text = error.to_string();
                // A server out of space fails every append of the group alike.
                let full = is_pg_storage_full(&error);
                let mut first = Some(error);
                for job in group {
                    let e = first.take();
                    let result = match e {
                        Some(e) if is_job_error && is_unique_violation(&e) => {
                            // Another writer that does not take the lock inserted one of the
                            // items: the conflict is reported as usual.
                            self.find_conflict(&job.items).await
                        }
                        Some(e) => Err(AppendError::Store(self.pg(e))),
                        None if full => Err(AppendError::Store(StoreError::StorageFull {
                            source: text.clone().into(),
                        })),
                        None => Err(AppendError::Store(StoreError::Busy {
                            source: text.clone().into(),
                        })),
                    };
                    let _ = job.reply.send(result);
                }
            }
            GroupEnd::Lost(error) => {
                let pid = self.conn.take().map(|(_, pid)| pid);
                let text = error.to_string();
                for job in group {
                    let result = self.resolve(&job, pid, &text).await;
                    let _ = job.reply.send(result);
                }
            }
        }
    }

    async fn commit_alone(&mut self, job: Job) {
        // Counted once already, in the group.
        self.counters.appends.fetch_sub(1, Ordering::Relaxed);
        Box::pin(self.commit_group(vec![job])).await;
    }

    /// Sends BEGIN, the lock, every job's statement and COMMIT in one pipeline (one round
    /// trip and one WAL flush for the whole group), then reads how it ended.
    async fn run_group(&mut self, group: &[Job]) -> Result<GroupEnd, StoreError> {
        let address = self.address.clone();
        let counters = self.counters.clone();
        let channel = self.channel.clone();
        let (conn, _) = self.connection().await?;
        // No connection or no statement: nothing was sent.
        let unsent = |e: tokio_postgres::Error, conn: &mut Option<(Conn, i32)>| {
            if is_connection_lost(&e) {
                *conn = None;
            }
            from_pg(e, &address)
        };
        if group.iter().all(is_plain) {
            let call = match conn.prepare(CALL_APPEND).await {
                Ok(call) => call,
                Err(e) => return Err(unsent(e, &mut self.conn)),
            };
            counters.transactions.fetch_add(1, Ordering::Relaxed);
            let many = Many::of(group, 1).expect("a group is never empty");
            return Ok(self.call_append(&call, group, &many).await);
        }
        let prepared = async {
            Ok::<_, tokio_postgres::Error>((
                conn.prepare("BEGIN").await?,
                conn.prepare(LOCK).await?,
                conn.prepare(&INSERT).await?,
                conn.prepare(&INSERT_MANY).await?,
                conn.prepare(&INSERT_KEYED).await?,
                conn.prepare(&INSERT_TRACKED).await?,
                conn.prepare(NOTIFY).await?,
                conn.prepare("COMMIT").await?,
            ))
        }
        .await;
        let (begin, lock, insert, insert_many, insert_keyed, insert_tracked, notify, commit) =
            match prepared {
                Ok(statements) => statements,
                Err(e) => return Err(unsent(e, &mut self.conn)),
            };
        counters.transactions.fetch_add(1, Ordering::Relaxed);
        let conn = &mut self.conn.as_mut().expect("connected above").0;
        let client = &conn.client;
        let many = Many::of(group, 2);
        let in_many = |i: usize| many.as_ref().is_some_and(|m| m.jobs.contains(&i));
        let columns: Vec<Option<Columns>> = group
            .iter()
            .enumerate()
            .map(|(i, job)| (!in_many(i)).then(|| Columns::of(job)))
            .collect();
        let params: Vec<Option<Vec<&(dyn ToSql + Sync)>>> = columns
            .iter()
            .map(|c| c.as_ref().map(Columns::params))
            .collect();
        let many_params = many.as_ref().map(Many::params);
        let together = async {
            match &many_params {
                Some(params) => client.query(&insert_many, params).await.map(Some),
                None => Ok(None),
            }
        };
        let alone = group
            .iter()
            .zip(&params)
            .enumerate()
            .filter_map(|(i, (job, params))| {
                let params = params.as_ref()?;
                let statement = if job.key.is_some() {
                    &insert_keyed
                } else if job.tracking.is_some() {
                    &insert_tracked
                } else {
                    &insert
                };
                Some(async move { (i, client.query_one(statement, params).await) })
            });
        // Only a group that may have written items wakes listeners: a follower's page that
        // moved its record alone would otherwise wake every follower for nothing.
        let wakes = group.iter().any(|job| !job.items.is_empty());
        let notified = async {
            if wakes {
                client.execute(&notify, &[&channel]).await.map(|_| ())
            } else {
                Ok(())
            }
        };
        // Polled in this order, so sent in this order: BEGIN, the lock, the plain appends
        // together, the others one by one, NOTIFY (delivered at the commit, or never if the
        // transaction rolls back) and COMMIT.
        let ((began, locked), (together, alone), (notified, committed)) = join3(
            join(client.execute(&begin, &[]), client.execute(&lock, &[])),
            join(together, join_all(alone)),
            join(notified, client.execute(&commit, &[])),
        )
        .await;
        // The first server error (in pipeline order) says why the transaction rolled back;
        // a lost connection alone leaves the outcome open.
        let mut first_error = None;
        let mut lost = None;
        let mut consider = |job: Option<usize>, e: tokio_postgres::Error| {
            if is_connection_lost(&e) {
                lost.get_or_insert(e);
            } else if first_error.is_none() {
                first_error = Some((job, e));
            }
        };
        if let Err(e) = began {
            consider(None, e);
        }
        if let Err(e) = locked {
            consider(None, e);
        }
        let mut answers: Vec<Answer> = group.iter().map(|_| Answer::default()).collect();
        match together {
            Ok(Some(rows)) => {
                let found = many_answers(group.len(), rows);
                for (i, answer) in found.into_iter().enumerate() {
                    if in_many(i) {
                        answers[i] = answer;
                    }
                }
            }
            Ok(None) => {}
            Err(e) => consider(many.as_ref().map(|m| m.jobs[0]), e),
        }
        for (i, row) in alone {
            match row {
                Ok(row) => answers[i] = Answer::of_row(&row, group[i].tracking.is_some()),
                Err(e) => consider(Some(i), e),
            }
        }
        if let Err(e) = notified {
            consider(None, e);
        }
        if let Some((job, error)) = first_error {
            // The server rolled the transaction back (COMMIT of a failed transaction is a
            // rollback), whatever happened to the connection after.
            return Ok(GroupEnd::Failed { job, error });
        }
        match committed {
            // A FATAL answer to COMMIT (the server shutting down, `pg_ctl -m immediate`) may
            // come after the commit record was flushed: as unknown as a lost connection.
            Err(e) if is_connection_lost(&e) || is_fatal(&e) => return Ok(GroupEnd::Lost(e)),
            Err(e) => {
                return Ok(GroupEnd::Failed {
                    job: None,
                    error: e,
                });
            }
            Ok(_) => {}
        }
        if let Some(e) = lost {
            return Ok(GroupEnd::Lost(e));
        }
        Ok(GroupEnd::Committed(answers))
    }

    /// Commits a group of plain appends with one call of the append function, in an
    /// autocommit statement (one statement for the server instead of five).
    async fn call_append(&mut self, call: &Statement, group: &[Job], many: &Many) -> GroupEnd {
        let channel = self.channel.clone();
        let (conn, _) = self.conn.as_mut().expect("connected by run_group");
        let [ids, positions, topics, payloads, appends] = many.params();
        let params: [&(dyn ToSql + Sync); 6] =
            [ids, positions, topics, payloads, appends, &channel];
        match conn.client.query(call, &params).await {
            Ok(rows) => GroupEnd::Committed(many_answers(group.len(), rows)),
            // As for a COMMIT: a FATAL answer (the server shutting down) may come after the
            // commit record was flushed.
            Err(e) if is_connection_lost(&e) || is_fatal(&e) => GroupEnd::Lost(e),
            Err(e) => GroupEnd::Failed {
                job: Some(many.jobs[0]),
                error: e,
            },
        }
    }

    /// The first item of `items` (in batch order) that exists, as a conflict. Used when an
    /// insert raced a writer that does not take the lock.
    async fn find_conflict(&mut self, items: &[IntegerSequencedItem]) -> Reply {
        let address = self.address.clone();
        let (conn, _) = self.connection().await?;
        let ids: Vec<Uuid> = items.iter().map(|i| i.sequence_id).collect();
        let positions: Vec<i64> = items.iter().map(|i| i.position as i64).collect();
        let rows = conn
            .client
            .query(RESOLVE, &[&ids, &positions])
            .await
            .map_err(|e| from_pg(e, &address))?;
        for row in rows {
            let ord: i64 = row.get(0);
            let found: Option<i64> = row.get(3);
            if found.is_some() {
                let item = &items[(ord - 1) as usize];
                return Err(AppendError::Conflict {
                    sequence_id: item.sequence_id,
                    position: Position::Version(item.position),
                });
            }
        }
        Err(AppendError::Store(StoreError::Busy {
            source: "an item of the batch was being written by another transaction that rolled back; retry".into(),
        }))
    }

    /// Finds out whether a group whose connection was lost committed: ends the old server
    /// process first (so that it cannot commit after we look), then reads the items back.
    async fn resolve(&mut self, job: &Job, pid: Option<i32>, lost: &str) -> Reply {
        let unknown = |source: String| {
            AppendError::Store(StoreError::OutcomeUnknown {
                commit_id: Uuid::new_v4(),
                source: source.into(),
            })
        };
        let address = self.address.clone();
        let conn = match self.connection().await {
            Ok((conn, _)) => conn,
            Err(e) => return Err(unknown(format!("{lost}; then: {e}"))),
        };
        if let Some(pid) = pid {
            // Waits up to 10 s for the old process to end; false when it had already gone.
            let _ = conn
                .client
                .query_one("SELECT pg_terminate_backend($1, 10000)", &[&pid])
                .await;
            let alive = conn
                .client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                    &[&pid],
                )
                .await;
            match alive {
                Ok(row) if row.get::<_, i64>(0) == 0 => {}
                Ok(_) => {
                    return Err(unknown(format!(
                        "{lost}; the old server process is still running"
                    )));
                }
                Err(e) => return Err(unknown(format!("{lost}; then: {e}"))),
            }
        }
        let ids: Vec<Uuid> = job.items.iter().map(|i| i.sequence_id).collect();
        let positions: Vec<i64> = job.items.iter().map(|i| i.position as i64).collect();
        let rows = match conn.client.query(RESOLVE, &[&ids, &positions]).await {
            Ok(rows) => rows,
            Err(e) => return Err(unknown(format!("{lost}; then: {e}"))),
        };
        let mut notification_ids = Vec::with_capacity(rows.len());
        let mut ours = 0;
        let mut absent = 0;
        for row in &rows {
            let ord: i64 = row.get(0);
            let item = &job.items[(ord - 1) as usize];
            let topic: Option<String> = row.get(1);
            let payload: Option<Vec<u8>> = row.get(2);
            let id: Option<i64> = row.get(3);
            match (topic, payload, id) {
                (Some(t), Some(p), Some(id)) if t == item.topic && p == item.payload => {
                    ours += 1;
                    notification_ids.push(id as u64);
                }
                (None, None, None) => absent += 1,
                _ => {}
            }
        }
        let contiguous = notification_ids.windows(2).all(|w| w[1] == w[0] + 1);
        let all_ours = ours == job.items.len() && contiguous;
        if let Some(tracking) = &job.tracking {
            // Items and record commit together: items of ours say it committed; no items and
            // the record where the page was read from say it did not. A record moved with no
            // items to tell whose move it was (another runner may have made the same one) is
            // left unknown rather than guessed.
            let recorded = match conn
                .client
                .query_opt(TRACKING_POSITION, &[&tracking.follower])
                .await
            {
                Ok(row) => row.map_or(0, |r| r.get::<_, i64>(0)),
                Err(e) => return Err(unknown(format!("{lost}; then: {e}"))),
            };
            if all_ours && !job.items.is_empty() {
                let start = notification_ids[0];
                return Ok(KeyedAppend::Appended(start..start + job.items.len() as u64));
            }
            if absent == job.items.len() && recorded == tracking.from as i64 {
                return Err(AppendError::Store(StoreError::Unreachable {
                    address,
                    source: format!("{lost} (the tracked append was not written)").into(),
                }));
            }
            return Err(unknown(format!(
                "{lost}; follower {:?} is now at {recorded}, which cannot tell whether this page committed",
                tracking.follower
            )));
        }
        if absent == job.items.len() {
            // The transaction rolled back: nothing was written, so a retry is safe.
            return Err(AppendError::Store(StoreError::Unreachable {
                address,
                source: format!("{lost} (the append was not written)").into(),
            }));
        }
        if all_ours {
            let start = notification_ids[0];
            let range = start..start + notification_ids.len() as u64;
            return Ok(KeyedAppend::Appended(range));
        }
        Err(unknown(format!(
            "{lost}; the batch's positions now hold other items"
        )))
    }
}

/// The result of one append from its statement's answer.
fn read_result(job: &Job, answer: &Answer, address: &str) -> Reply {
    let corrupt = |what: &str| {
        AppendError::Store(StoreError::Corrupt {
            detail: format!("{address}: {what}"),
            source: None,
        })
    };
    let Answer {
        min,
        max,
        count,
        conflict,
        prior,
        moved,
    } = *answer;
    if let (Some((first, last)), Some((_, prior))) = (prior, &job.key) {
        return Ok(KeyedAppend::AlreadyApplied(PriorAppend {
            sequence_id: prior.sequence_id,
            versions: first as u64..=last as u64,
        }));
    }
    if let (Some(tracking), Some(found)) = (&job.tracking, moved) {
        return Err(AppendError::TrackingMoved {
            follower: tracking.follower.clone(),
            expected: tracking.from,
            found: u64::try_from(found).map_err(|_| {
                corrupt(&format!(
                    "follower {:?} recorded a negative position {found}",
                    tracking.follower
                ))
            })?,
        });
    }
    if let Some((sequence_id, position)) = conflict {
        return Err(AppendError::Conflict {
            sequence_id,
            position: Position::Version(position as u64),
        });
    }
    match (min, max) {
        // A tracked append of no items: only the record moved.
        (None, None) if count == 0 && job.items.is_empty() => Ok(KeyedAppend::Appended(0..0)),
        (Some(min), Some(max)) if max - min + 1 == count && count == job.items.len() as i64 => {
            Ok(KeyedAppend::Appended(range(min, max)))
        }
        _ => Err(corrupt(&format!(
            "an append of {} items got notification ids {min:?}..={max:?} ({count} rows): not contiguous; is another writer drawing from the notification id sequence?",
            job.items.len()
        ))),
    }
}

fn range(min: i64, max: i64) -> Range<u64> {
    min as u64..max as u64 + 1
}
