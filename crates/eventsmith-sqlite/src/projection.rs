//! Projections whose view lives in the same SQLite file as the events: the view's rows and the
//! projection's position (its tracking record) are written in one transaction.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use eventsmith_core::{BoxError, Notification, StoreError};
use eventsmith_pubsub::Projection;

use crate::error::from_sqlite;

/// A projection into tables of the event store's own file. Each page of notifications is
/// applied in one transaction that also moves the projection's tracking record, so a crash at
/// any moment leaves the view and its position consistent: a re-run continues where the last
/// committed page ended, never skipping or applying an event twice.
pub struct SqliteProjection<F> {
    conn: Connection,
    name: String,
    position: u64,
    apply: F,
}

impl<F> std::fmt::Debug for SqliteProjection<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteProjection")
            .field("name", &self.name)
            .field("position", &self.position)
            .finish()
    }
}

impl<F: FnMut(&Transaction<'_>, &Notification) -> Result<(), BoxError>> SqliteProjection<F> {
    /// Opens the projection `name` on the event store file at `path` (opened by a
    /// [`SqliteStore`](crate::SqliteStore) before, so the schema exists). `setup` creates the
    /// view's tables (use `IF NOT EXISTS`); `apply` writes one notification into them.
    pub fn open(
        path: impl AsRef<Path>,
        name: &str,
        setup: &str,
        apply: F,
    ) -> Result<Self, StoreError> {
        let shown = path.as_ref().display().to_string();
        let conn = Connection::open(path.as_ref()).map_err(|e| from_sqlite(e, &shown))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| from_sqlite(e, &shown))?;
        conn.execute_batch(setup)
            .map_err(|e| from_sqlite(e, &shown))?;
        let position: Option<i64> = conn
            .query_row(
                "SELECT notification_id FROM tracking WHERE projection = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| from_sqlite(e, &shown))?;
        Ok(SqliteProjection {
            conn,
            name: name.to_owned(),
            position: position.unwrap_or(0) as u64,
            apply,
        })
    }
}

impl<F: FnMut(&Transaction<'_>, &Notification) -> Result<(), BoxError>> Projection
    for SqliteProjection<F>
{
    fn position(&self) -> u64 {
        self.position
    }

    fn apply(&mut self, page: &[Notification]) -> Result<(), BoxError> {
        let Some(last) = page.last() else {
            return Ok(());
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for n in page {
            (self.apply)(&tx, n)?;
        }
        tx.execute(
            "INSERT INTO tracking (projection, notification_id) VALUES (?1, ?2)
             ON CONFLICT (projection) DO UPDATE SET notification_id = excluded.notification_id",
            params![self.name, last.id as i64],
        )?;
        tx.commit()?;
        self.position = last.id;
        Ok(())
    }
}
