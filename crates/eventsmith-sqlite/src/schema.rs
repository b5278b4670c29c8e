//! The schema, its version, and the checks that keep eventsmith away from files it did not write.

use rusqlite::{Connection, TransactionBehavior};

use eventsmith_core::StoreError;

use crate::error::from_sqlite;

/// `PRAGMA application_id` of every eventsmith database ("ESm1").
pub(crate) const APPLICATION_ID: i32 = 0x4553_6d31;

/// `PRAGMA user_version`: the schema version this build creates and reads. Older files are
/// migrated on open, in one transaction, keeping every row and notification id: version 1
/// to 2 makes notification ids `AUTOINCREMENT`, 2 to 3 adds the idempotency keys, 3 to 4
/// the followers' leases.
pub const SCHEMA_VERSION: i32 = 4;

// `AUTOINCREMENT`: a notification id is never handed out twice, even after the newest rows
// are deleted (by hand, a restore, a future retention policy). A plain rowid would reuse them,
// and a follower positioned past them would silently skip the new events.
const CREATE: &str = "
CREATE TABLE integer_items (
    notification_id INTEGER PRIMARY KEY AUTOINCREMENT,
    sequence_id BLOB NOT NULL,
    position INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    UNIQUE (sequence_id, position)
);
CREATE TABLE timestamp_items (
    sequence_id BLOB NOT NULL,
    position INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (sequence_id, position)
) WITHOUT ROWID;
CREATE TABLE snapshots (
    sequence_id BLOB NOT NULL,
    position INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (sequence_id, position)
) WITHOUT ROWID;
CREATE TABLE tracking (
    projection TEXT PRIMARY KEY,
    notification_id INTEGER NOT NULL
) WITHOUT ROWID;
"; // followed by IDEMPOTENCY_KEYS and LEASES

/// Idempotency keys, each written in the transaction of the append it produced.
const IDEMPOTENCY_KEYS: &str = "
CREATE TABLE idempotency_keys (
    sequence_id BLOB NOT NULL,
    key TEXT NOT NULL,
    first_position INTEGER NOT NULL,
    last_position INTEGER NOT NULL,
    PRIMARY KEY (sequence_id, key)
) WITHOUT ROWID;
";

/// Followers' leases: which runner runs a follower, until when (Unix milliseconds by the
/// machine's clock, which every process on it shares).
const LEASES: &str = "
CREATE TABLE leases (
    follower TEXT PRIMARY KEY,
    owner BLOB NOT NULL,
    expires_ms INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Version 1 to 2: the notification id becomes `AUTOINCREMENT`. SQLite cannot alter a column
/// to it, so the table is rebuilt with every row and id kept; inserting the ids sets the
/// counter (`sqlite_sequence`) to the highest one. Runs in the caller's write transaction.
const MIGRATE_1_TO_2: &str = "
CREATE TABLE integer_items_v2 (
    notification_id INTEGER PRIMARY KEY AUTOINCREMENT,
    sequence_id BLOB NOT NULL,
    position INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    UNIQUE (sequence_id, position)
);
INSERT INTO integer_items_v2 (notification_id, sequence_id, position, topic, payload)
    SELECT notification_id, sequence_id, position, topic, payload FROM integer_items
    ORDER BY notification_id;
DROP TABLE integer_items;
ALTER TABLE integer_items_v2 RENAME TO integer_items;
";

/// What a file's stamp says must happen before this build uses it.
#[derive(Debug, PartialEq, Eq)]
enum Needs {
    Nothing,
    Create,
    Migrate { from: i64 },
}

/// Checks the file is empty or an eventsmith database this build can read, before anything
/// writes to it (even `journal_mode=WAL` changes the file header, so this runs first).
/// Returns whether the schema must be created or migrated.
pub(crate) fn check(conn: &Connection, path: &str) -> Result<bool, StoreError> {
    Ok(needs(conn, path)? != Needs::Nothing)
}

fn needs(conn: &Connection, path: &str) -> Result<Needs, StoreError> {
    let stamp = if conn.is_autocommit() {
        // One read transaction: another connection may be creating the schema right now, and
        // three separate reads could see its tables but not yet its stamp.
        let tx = conn
            .unchecked_transaction()
            .map_err(|e| from_sqlite(e, path))?;
        let stamp = read_stamp(&tx, path)?;
        tx.commit().map_err(|e| from_sqlite(e, path))?;
        stamp
    } else {
        read_stamp(conn, path)?
    };
    match stamp {
        (0, 0, 0) => Ok(Needs::Create),
        (id, v, _) if id == i64::from(APPLICATION_ID) && v == i64::from(SCHEMA_VERSION) => {
            Ok(Needs::Nothing)
        }
        (id, v @ (1..=3), _) if id == i64::from(APPLICATION_ID) => Ok(Needs::Migrate { from: v }),
        (id, v, _) if id == i64::from(APPLICATION_ID) && v > i64::from(SCHEMA_VERSION) => {
            Err(StoreError::Corrupt {
                detail: format!(
                    "{path} has eventsmith schema version {v}, newer than the {SCHEMA_VERSION} this build reads; upgrade eventsmith"
                ),
                source: None,
            })
        }
        (id, v, _) if id == i64::from(APPLICATION_ID) => Err(StoreError::Corrupt {
            detail: format!("{path} has unknown eventsmith schema version {v}"),
            source: None,
        }),
        (id, _, n) => Err(StoreError::Corrupt {
            detail: format!(
                "{path} is not an eventsmith database (application_id {id:#x}, {n} schema objects); refusing to touch it"
            ),
            source: None,
        }),
    }
}

/// The file's application id, schema version and number of schema objects.
fn read_stamp(conn: &Connection, path: &str) -> Result<(i64, i64, i64), StoreError> {
    let read = |sql: &str| -> Result<i64, StoreError> {
        conn.query_row(sql, [], |r| r.get(0))
            .map_err(|e| from_sqlite(e, path))
    };
    Ok((
        read("PRAGMA application_id")?,
        read("PRAGMA user_version")?,
        read("SELECT count(*) FROM sqlite_master")?,
    ))
}

/// Creates or migrates the schema and stamps the file, in one transaction. It takes the write
/// lock first and checks again: another process (or store) opening the same file may have
/// created or migrated the schema since [`check`] looked.
pub(crate) fn create(conn: &mut Connection, path: &str) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| from_sqlite(e, path))?;
    let steps: &[&str] = match needs(&tx, path)? {
        Needs::Nothing => return Ok(()),
        Needs::Create => &[CREATE, IDEMPOTENCY_KEYS, LEASES],
        Needs::Migrate { from: 1 } => &[MIGRATE_1_TO_2, IDEMPOTENCY_KEYS, LEASES],
        Needs::Migrate { from: 2 } => &[IDEMPOTENCY_KEYS, LEASES],
        Needs::Migrate { from: 3 } => &[LEASES],
        Needs::Migrate { from } => {
            return Err(StoreError::Corrupt {
                detail: format!(
                    "{path} has eventsmith schema version {from}, which has no migration"
                ),
                source: None,
            });
        }
    };
    for sql in steps {
        tx.execute_batch(sql).map_err(|e| from_sqlite(e, path))?;
    }
    tx.execute_batch(&format!(
        "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};"
    ))
    .map_err(|e| from_sqlite(e, path))?;
    tx.commit().map_err(|e| from_sqlite(e, path))
}
