//! `verify` of a SQLite file from its rows, read with rusqlite as SQL values: a row of the
//! wrong SQL type or value (a TEXT payload, a BLOB topic, a negative position, a sequence id
//! that is not 16 bytes) is a problem with that row, named by its notification id, sequence id
//! and position as far as they are readable, and the check goes on to the other rows. Through
//! the store's API the first such row would end the whole run.

use std::path::Path;

use eventsmith_core::IntegerSequencedItem;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use uuid::Uuid;

use crate::error::CliError;
use crate::inspect::Verifier;

/// A SQL value as read: like rusqlite's `Value`, whose conversion panics on TEXT that is not
/// UTF-8 (which SQLite stores without complaint), with such text kept apart.
enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    /// TEXT that is not UTF-8, and its length in bytes.
    BadText(usize),
    Blob(Vec<u8>),
}

/// Column `i` of `row` as a [`Value`].
fn value(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Value> {
    Ok(match row.get_ref(i)? {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(r) => Value::Real(r),
        ValueRef::Text(t) => match std::str::from_utf8(t) {
            Ok(t) => Value::Text(t.to_owned()),
            Err(_) => Value::BadText(t.len()),
        },
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    })
}

/// A SQL value for a message, without its content (payloads may be secret, and long).
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "NULL",
        Value::Integer(_) => "INTEGER",
        Value::Real(_) => "REAL",
        Value::Text(_) => "TEXT",
        Value::BadText(_) => "TEXT that is not UTF-8",
        Value::Blob(_) => "BLOB",
    }
}

/// A SQL value short enough to name a row by.
fn show(value: &Value) -> String {
    match value {
        Value::Null => "NULL".into(),
        Value::Integer(i) => i.to_string(),
        Value::Real(r) => format!("{r} (REAL)"),
        Value::Text(t) if t.chars().count() <= 40 => format!("{t:?} (TEXT)"),
        Value::Text(t) => format!("{}... (TEXT)", t.chars().take(40).collect::<String>()),
        Value::BadText(n) => format!("{n} bytes of TEXT that is not UTF-8"),
        Value::Blob(b) if b.len() == 16 => {
            Uuid::from_slice(b).map_or_else(|_| hex::encode(b), |u| u.to_string())
        }
        Value::Blob(b) => format!("a {}-byte BLOB", b.len()),
    }
}

/// One row of `integer_items` or `snapshots`, converted, or what is wrong with it.
struct Row {
    notification_id: Option<Value>,
    sequence_id: Value,
    position: Value,
    topic: Value,
    payload: Value,
}

impl Row {
    fn read(row: &rusqlite::Row<'_>, with_notification: bool) -> rusqlite::Result<Row> {
        let offset = usize::from(with_notification);
        Ok(Row {
            notification_id: if with_notification {
                Some(value(row, 0)?)
            } else {
                None
            },
            sequence_id: value(row, offset)?,
            position: value(row, offset + 1)?,
            topic: value(row, offset + 2)?,
            payload: value(row, offset + 3)?,
        })
    }

    /// The row as an item, or the row's name and every problem with it (and its place, when
    /// its sequence id and position are readable).
    fn convert(self) -> Result<IntegerSequencedItem, (String, Option<(Uuid, u64)>)> {
        let mut wrong = Vec::new();
        match &self.notification_id {
            None => {}
            Some(Value::Integer(i)) if *i > 0 => {}
            Some(Value::Integer(i)) => wrong.push(format!("notification id {i} is not positive")),
            Some(other) => {
                wrong.push(format!("notification id is {}, not INTEGER", kind(other)));
            }
        }
        let sequence_id = match &self.sequence_id {
            Value::Blob(b) if b.len() == 16 => Uuid::from_slice(b).ok(),
            Value::Blob(b) => {
                wrong.push(format!("sequence id is {} bytes, not 16", b.len()));
                None
            }
            other => {
                wrong.push(format!("sequence id is {}, not a BLOB", kind(other)));
                None
            }
        };
        let position = match &self.position {
            Value::Integer(i) if *i >= 0 => Some(*i as u64),
            Value::Integer(i) => {
                wrong.push(format!("negative position {i}"));
                None
            }
            other => {
                wrong.push(format!("position is {}, not INTEGER", kind(other)));
                None
            }
        };
        let topic = match self.topic {
            Value::Text(t) => Some(t),
            Value::BadText(_) => {
                wrong.push("topic is TEXT that is not UTF-8".to_owned());
                None
            }
            ref other => {
                wrong.push(format!("topic is {}, not TEXT", kind(other)));
                None
            }
        };
        let payload = match self.payload {
            Value::Blob(b) => Some(b),
            ref other => {
                wrong.push(format!("payload is {}, not a BLOB", kind(other)));
                None
            }
        };
        if let (true, Some(sequence_id), Some(position), Some(topic), Some(payload)) =
            (wrong.is_empty(), sequence_id, position, topic, payload)
        {
            return Ok(IntegerSequencedItem {
                sequence_id,
                position,
                topic,
                payload,
            });
        }
        let mut name = Vec::new();
        if let Some(id) = &self.notification_id {
            name.push(format!("notification {}", show(id)));
        }
        name.push(format!("sequence {}", show(&self.sequence_id)));
        name.push(format!("version {}", show(&self.position)));
        let place = sequence_id.zip(position);
        Err((format!("{}: {}", name.join(", "), wrong.join("; ")), place))
    }
}

fn sql_error(path: &Path) -> impl Fn(rusqlite::Error) -> CliError + '_ {
    move |source| CliError::Sqlite {
        path: path.to_owned(),
        source,
    }
}

/// Reads every event, snapshot and notification of the SQLite file at `path` into `verifier`
/// and finishes it. The file has been opened (and its schema checked) by the store already.
pub(crate) fn verify(path: &Path, mut verifier: Verifier<'_>) -> Result<usize, CliError> {
    let err = sql_error(path);
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(&err)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(&err)?;

    // Events, one sequence at a time (SQLite sorts BLOBs bytewise, as `Uuid` does).
    let mut stmt = conn
        .prepare(
            "SELECT notification_id, sequence_id, position, topic, payload FROM integer_items \
             ORDER BY sequence_id, position",
        )
        .map_err(&err)?;
    let mut rows = stmt.query([]).map_err(&err)?;
    // The sequence being read: its readable items, and the positions of its unreadable rows
    // (reported already, so not reported again as missing versions).
    let mut current: Option<(Uuid, Vec<IntegerSequencedItem>, Vec<u64>)> = None;
    while let Some(row) = rows.next().map_err(&err)? {
        let (id, item, unreadable) = match Row::read(row, true).map_err(&err)?.convert() {
            Ok(item) => (item.sequence_id, Some(item), None),
            Err((problem, place)) => {
                verifier.report(problem);
                let Some((id, position)) = place else {
                    continue;
                };
                (id, None, Some(position))
            }
        };
        if current.as_ref().is_some_and(|(c, _, _)| *c != id)
            && let Some((c, items, unreadable)) = current.take()
        {
            verifier.sequence(c, &items, &unreadable);
        }
        let (_, items, positions) = current.get_or_insert_with(|| (id, Vec::new(), Vec::new()));
        items.extend(item);
        positions.extend(unreadable);
    }
    if let Some((id, items, unreadable)) = current.take() {
        verifier.sequence(id, &items, &unreadable);
    }
    drop(rows);
    drop(stmt);

    let mut stmt = conn
        .prepare(
            "SELECT sequence_id, position, topic, payload FROM snapshots \
             ORDER BY sequence_id, position",
        )
        .map_err(&err)?;
    let mut rows = stmt.query([]).map_err(&err)?;
    while let Some(row) = rows.next().map_err(&err)? {
        match Row::read(row, false).map_err(&err)?.convert() {
            Ok(item) => verifier.snapshot(&item),
            Err((problem, _)) => verifier.report(format!("snapshot of {problem}")),
        }
    }
    drop(rows);
    drop(stmt);

    // The notification log; rows reported above are left out here.
    let mut stmt = conn
        .prepare(
            "SELECT notification_id, sequence_id, position FROM integer_items \
             ORDER BY notification_id",
        )
        .map_err(&err)?;
    let mut rows = stmt.query([]).map_err(&err)?;
    while let Some(row) = rows.next().map_err(&err)? {
        let (id, sequence_id, position): (Value, Value, Value) = (
            value(row, 0).map_err(&err)?,
            value(row, 1).map_err(&err)?,
            value(row, 2).map_err(&err)?,
        );
        if let (Value::Integer(id), Value::Blob(sequence_id), Value::Integer(position)) =
            (id, sequence_id, position)
            && let (Ok(id), Ok(sequence_id), Ok(position)) = (
                u64::try_from(id),
                Uuid::from_slice(&sequence_id),
                u64::try_from(position),
            )
            && id > 0
        {
            verifier.notification(id, sequence_id, position);
        }
    }
    drop(rows);
    drop(stmt);
    verifier.finish()
}
