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

/// Whether the server said it is out of space: `disk_full` (53100, what PostgreSQL reports
/// for `ENOSPC` when it extends or writes a file), or another state of class 53
/// (insufficient resources, such as the class's generic 53000) whose message says space or
/// a quota ran out. Memory (53200), connections (53300) and configured limits (53400) are
/// not space.
pub(crate) fn is_storage_full(code: &SqlState, message: &str) -> bool {
    if *code == SqlState::DISK_FULL {
        return true;
    }
    let message = message.to_ascii_lowercase();
    let says_space = [
        "no space left",
        "disk full",
        "disk is full",
        "out of space",
        "quota",
    ]
    .iter()
    .any(|m| message.contains(m));
    code.code().starts_with("53")
        && ![
            SqlState::OUT_OF_MEMORY,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::CONFIGURATION_LIMIT_EXCEEDED,
        ]
        .contains(code)
        && says_space
}

/// Whether a driver error is the server saying it is out of space ([`is_storage_full`]).
pub(crate) fn is_pg_storage_full(e: &tokio_postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|d| is_storage_full(d.code(), d.message()))
}

/// A driver error as a [`StoreError`]: `StorageFull` when the server is out of space, `Busy`
/// when a retry may succeed, `Unreachable` when the connection is gone, else `Backend`.
pub(crate) fn from_pg(e: tokio_postgres::Error, address: &str) -> StoreError {
    if is_pg_storage_full(&e) {
        return StoreError::StorageFull {
            source: Box::new(e),
        };
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_space_is_storage_full() {
        let full = |code: &str, message: &str| is_storage_full(&SqlState::from_code(code), message);
        // What PostgreSQL says when a table or the WAL cannot grow.
        assert!(full(
            "53100",
            "could not extend file \"base/5/16384\": No space left on device"
        ));
        assert!(full("53100", "anything at all"));
        // The class's generic state, when it is about space.
        assert!(full(
            "53000",
            "could not write block 7: No space left on device"
        ));
        assert!(full("53000", "Disk quota exceeded"));
        // Other resources of the class are not space.
        assert!(!full("53000", "insufficient resources"));
        assert!(!full("53200", "out of memory"));
        assert!(!full("53300", "sorry, too many clients already"));
        assert!(!full(
            "53400",
            "temporary file size exceeds temp_file_limit (1024kB)"
        ));
        // Other classes, even when the message mentions space.
        assert!(!full(
            "58030",
            "could not write to file: No space left on device"
        ));
        assert!(!full(
            "23505",
            "duplicate key value violates unique constraint"
        ));
    }
}
