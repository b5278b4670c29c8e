//! A small fixed pool of connections, each with its own cache of prepared statements.
//!
//! Hand-rolled rather than deadpool or bb8: the store needs only "at most N connections,
//! made lazily, dropped when broken, statements prepared once per connection", which is
//! about a hundred lines, keeps driver and pool error types out of the way, and adds no
//! dependency (ARCHITECTURE.md, PostgreSQL).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use eventsmith_core::StoreError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, NoTls, Statement};

use crate::config::{PostgresConfig, Role};
use crate::error::from_pg;

/// One connection and the statements prepared on it.
pub(crate) struct Conn {
    pub(crate) client: Client,
    statements: HashMap<String, Statement>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("closed", &self.client.is_closed())
            .field("statements", &self.statements.len())
            .finish()
    }
}

impl Conn {
    /// Opens a connection; its I/O runs on a spawned task that ends when the client is
    /// dropped or the server goes away.
    pub(crate) async fn open(config: &PostgresConfig, role: Role) -> Result<Conn, StoreError> {
        let (client, connection) = config
            .connection(role)
            .connect(NoTls)
            .await
            .map_err(|e| connect_error(e, config))?;
        tokio::spawn(async move {
            // The client sees the failure as a closed connection.
            let _ = connection.await;
        });
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }

    /// The statement for `sql`, prepared on first use.
    pub(crate) async fn prepare(&mut self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

/// A failed connect as a [`StoreError`]: `Unreachable`, unless the server answered.
pub(crate) fn connect_error(e: tokio_postgres::Error, config: &PostgresConfig) -> StoreError {
    match e.code() {
        // The server answered but refused: too many connections, starting up.
        Some(_) => from_pg(e, &config.address()),
        None => StoreError::Unreachable {
            address: config.address(),
            source: Box::new(e),
        },
    }
}

/// At most `pool_size` connections, opened when needed and kept while healthy.
#[derive(Debug)]
pub(crate) struct Pool {
    config: PostgresConfig,
    address: String,
    idle: Mutex<Vec<Conn>>,
    permits: Arc<Semaphore>,
}

impl Pool {
    pub(crate) fn new(config: PostgresConfig) -> Pool {
        Pool {
            address: config.address(),
            permits: Arc::new(Semaphore::new(config.pool_size)),
            idle: Mutex::new(Vec::new()),
            config,
        }
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Conn>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection: an idle one, or a new one when fewer than `pool_size` are open. Waits
    /// up to the acquire timeout for one to be returned, then fails with `Busy`.
    pub(crate) async fn get(self: &Arc<Self>) -> Result<Pooled, StoreError> {
        let permit = tokio::time::timeout(
            self.config.acquire_timeout,
            self.permits.clone().acquire_owned(),
        )
        .await
        .map_err(|_| StoreError::Busy {
            source: format!(
                "no pooled connection to {} was free within {:?}",
                self.address, self.config.acquire_timeout
            )
            .into(),
        })?
        .map_err(|_| StoreError::Closed)?;
        let reused = {
            let mut idle = self.idle();
            loop {
                match idle.pop() {
                    Some(conn) if conn.client.is_closed() => continue,
                    other => break other,
                }
            }
        };
        let conn = match reused {
            Some(conn) => conn,
            None => Conn::open(&self.config, Role::Pooled).await?,
        };
        Ok(Pooled {
            conn: Some(conn),
            pool: self.clone(),
            _permit: permit,
        })
    }

    /// Closes the idle connections and refuses new ones.
    pub(crate) fn close(&self) {
        self.permits.close();
        self.idle().clear();
    }

    pub(crate) fn address(&self) -> &str {
        &self.address
    }
}

/// A connection on loan; it goes back to the pool when dropped, unless it is broken.
///
/// A query future dropped half-way leaves the connection usable: the driver's connection
/// task discards the rest of the answer. Pooled connections never hold a transaction open
/// across an `await` that a caller could cancel (every pooled statement is its own
/// transaction), so a returned connection is always outside a transaction.
pub(crate) struct Pooled {
    conn: Option<Conn>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl std::fmt::Debug for Pooled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pooled").field("conn", &self.conn).finish()
    }
}

impl Pooled {
    pub(crate) fn conn(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("present until dropped")
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && !conn.client.is_closed()
            && !self.pool.permits.is_closed()
        {
            self.pool.idle().push(conn);
        }
    }
}
