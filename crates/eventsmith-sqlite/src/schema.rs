//! The schema, its version, and the checks that keep eventsmith away from files it did not write.

use rusqlite::{Connection, TransactionBehavior};

use eventsmith_core::StoreError;

use crate::error::from_sqlite;

/// `PRAGMA application_id` of every eventsmith database ("ESm1").
pub(crate) const APPLICATION_ID: i32 = 0x4553_6d31;

/// `PRAGMA user_version`: the schema version this build creates and reads.
pub const SCHEMA_VERSION: i32 = 1;

const CREATE: &str = "
CREATE TABLE integer_items (
    notification_id INTEGER PRIMARY KEY,
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
";

/// Checks the file is empty or an eventsmith database this build can read, before anything
/// writes to it (even `journal_mode=WAL` changes the file header, so this runs first).
/// Returns whether the schema must be created.
pub(crate) fn check(conn: &Connection, path: &str) -> Result<bool, StoreError> {
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
        (0, 0, 0) => Ok(true),
        (id, v, _) if id == i64::from(APPLICATION_ID) && v == i64::from(SCHEMA_VERSION) => {
            Ok(false)
        }
        (id, v, _) if id == i64::from(APPLICATION_ID) && v > i64::from(SCHEMA_VERSION) => {
            Err(StoreError::Corrupt {
                detail: format!(
                    "{path} has eventsmith schema version {v}, newer than the {SCHEMA_VERSION} this build reads; upgrade eventsmith"
                ),
            })
        }
        (id, v, _) if id == i64::from(APPLICATION_ID) => Err(StoreError::Corrupt {
            detail: format!("{path} has unknown eventsmith schema version {v}"),
        }),
        (id, _, n) => Err(StoreError::Corrupt {
            detail: format!(
                "{path} is not an eventsmith database (application_id {id:#x}, {n} schema objects); refusing to touch it"
            ),
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

/// Creates the schema and stamps the file, in one transaction. It takes the write lock first
/// and checks again: another process (or store) opening the same new file may have created
/// the schema since [`check`] looked.
pub(crate) fn create(conn: &mut Connection, path: &str) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| from_sqlite(e, path))?;
    if !check(&tx, path)? {
        return Ok(());
    }
    tx.execute_batch(CREATE).map_err(|e| from_sqlite(e, path))?;
    tx.execute_batch(&format!(
        "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};"
    ))
    .map_err(|e| from_sqlite(e, path))?;
    tx.commit().map_err(|e| from_sqlite(e, path))
}
