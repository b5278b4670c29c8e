//! Turning driver errors into [`StoreError`]s, keeping the driver error as the source.

use eventsmith_core::StoreError;
use tokio_postgres::error::SqlState;

/// Whether the error says the connection is gone (closed, reset, an I/O failure, or a
/// class 08 state).
pub(crate) fn is_connection_lost(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || e.code().is_some_and(|c| c.code().starts_with("08"))
        || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// Whether the server ended the session with the error (severity FATAL or PANIC).
pub(crate) fn is_fatal(e: &tokio_postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|d| matches!(d.severity(), "FATAL" | "PANIC"))
}

/// Whether retrying may succeed: a serialization failure, a deadlock, a lock or statement
/// timeout, a server that is starting, shutting down or out of connections.
fn is_busy(code: &SqlState) -> bool {
    [
        SqlState::T_R_SERIALIZATION_FAILURE,
        SqlState::T_R_DEADLOCK_DETECTED,
        SqlState::LOCK_NOT_AVAILABLE,
        SqlState::QUERY_CANCELED,
        SqlState::TOO_MANY_CONNECTIONS,
        SqlState::CANNOT_CONNECT_NOW,
        SqlState::ADMIN_SHUTDOWN,
        SqlState::CRASH_SHUTDOWN,
    ]
    .contains(code)
}

/// A driver error as a [`StoreError`]: `Busy` when a retry may succeed, `Unreachable` when
/// the connection is gone, else `Backend`.
pub(crate) fn from_pg(e: tokio_postgres::Error, address: &str) -> StoreError {
    if e.code().is_some_and(is_busy) {
        return StoreError::Busy {
            source: Box::new(e),
        };
    }
    if is_connection_lost(&e) {
        return StoreError::Unreachable {
            address: address.to_owned(),
            source: Box::new(e),
        };
    }
    StoreError::Backend {
        source: Box::new(e),
    }
}

/// Whether the error is a unique violation (an item that exists).
pub(crate) fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}
