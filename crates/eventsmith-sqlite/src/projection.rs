//! Projections whose view lives in the same SQLite file as the events: the view's rows and the
//! projection's position (its tracking record) are written in one transaction.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, Transaction, TransactionBehavior, params};

use eventsmith_core::{BoxError, BoxFuture, FollowError, Follower, Notification, StoreError};

use crate::SqliteStore;
use crate::error::from_sqlite;
use crate::worker::tracking_position;

/// A projection into tables of the event store's own file: a [`Follower`] whose view's rows
/// and tracking record are written in one transaction, so a crash at any moment leaves the
/// view and its position consistent: a re-run continues where the last committed page ended,
/// never skipping or applying an event twice. Its transactions run on tokio's blocking
/// threads, never on the async workers.
pub struct SqliteProjection<F> {
    conn: Arc<Mutex<Connection>>,
    path: String,
    name: String,
    apply: Arc<F>,
}

impl<F> std::fmt::Debug for SqliteProjection<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteProjection")
            .field("name", &self.name)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl<F> SqliteProjection<F>
where
    F: Fn(&Transaction<'_>, &Notification) -> Result<(), BoxError> + Send + Sync + 'static,
{
    /// Opens the projection `name` on the event store file at `path` (opened by a
    /// [`SqliteStore`] before, so the schema exists). `setup` creates the view's tables (use
    /// `IF NOT EXISTS`); `apply` writes one notification into them, through the page's
    /// transaction. The file is opened and `setup` run on tokio's blocking threads.
    ///
    /// # Cancellation
    ///
    /// Dropping the future does not stop the blocking task: the setup may have run (it is
    /// idempotent), and its connection is closed with the task.
    pub async fn open(
        path: impl AsRef<Path>,
        name: &str,
        setup: &str,
        apply: F,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref().to_owned();
        let setup = setup.to_owned();
        let shown = path.display().to_string();
        let conn = blocking(move || {
            let shown = path.display().to_string();
            let conn = Connection::open(&path).map_err(|e| from_sqlite(e, &shown))?;
            conn.busy_timeout(std::time::Duration::from_secs(5))
                .map_err(|e| from_sqlite(e, &shown))?;
            conn.execute_batch(&setup)
                .map_err(|e| from_sqlite(e, &shown))?;
            Ok(conn)
        })
        .await?;
        Ok(SqliteProjection {
            conn: Arc::new(Mutex::new(conn)),
            path: shown,
            name: name.to_owned(),
            apply: Arc::new(apply),
        })
    }
}

/// Runs `f` on tokio's blocking threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(StoreError::backend)?
}

impl<F> Follower<SqliteStore> for SqliteProjection<F>
where
    F: Fn(&Transaction<'_>, &Notification) -> Result<(), BoxError> + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    /// The projection's tracking record, read on tokio's blocking threads.
    ///
    /// # Cancellation
    ///
    /// Cancel-safe: it writes nothing.
    fn position<'a>(&'a self, _: &'a SqliteStore) -> BoxFuture<'a, Result<u64, FollowError>> {
        let (conn, name, path) = (self.conn.clone(), self.name.clone(), self.path.clone());
        Box::pin(async move {
            Ok(blocking(move || {
                let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
                tracking_position(&conn, &name).map_err(|e| from_sqlite(e, &path))
            })
            .await?)
        })
    }

    /// Applies the page and records its last id in one transaction, on tokio's blocking
    /// threads; [`FollowError::Moved`] if the recorded position is no longer `from`.
    ///
    /// # Cancellation
    ///
    /// Dropping the future does not stop the blocking transaction: the page and its
    /// tracking record commit together or not at all. A retry of the same page after a
    /// commit fails with [`FollowError::Moved`], and the runner continues from the recorded
    /// position: never applied twice.
    fn handle<'a>(
        &'a self,
        _: &'a SqliteStore,
        from: u64,
        page: &'a [Notification],
    ) -> BoxFuture<'a, Result<(), FollowError>> {
        let (conn, name, path) = (self.conn.clone(), self.name.clone(), self.path.clone());
        let apply = self.apply.clone();
        let page = page.to_vec();
        Box::pin(async move {
            let Some(last) = page.last().map(|n| n.id) else {
                return Ok(());
            };
            let outcome = tokio::task::spawn_blocking(move || {
                let sql = |e| FollowError::Store(from_sqlite(e, &path));
                let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sql)?;
                // Read under the write lock: no other runner moves it before the commit.
                let found = tracking_position(&tx, &name).map_err(sql)?;
                if found != from {
                    return Err(FollowError::Moved {
                        follower: name,
                        expected: from,
                        found,
                    });
                }
                for n in &page {
                    apply(&tx, n).map_err(|source| FollowError::Handler {
                        follower: name.clone(),
                        id: n.id,
                        source,
                    })?;
                }
                tx.execute(
                    "INSERT INTO tracking (projection, notification_id) VALUES (?1, ?2)
                     ON CONFLICT (projection) DO UPDATE SET notification_id = excluded.notification_id",
                    params![name, last as i64],
                )
                .map_err(sql)?;
                tx.commit().map_err(sql)
            })
            .await;
            outcome.map_err(|e| FollowError::Store(StoreError::backend(e)))?
        })
    }
}
