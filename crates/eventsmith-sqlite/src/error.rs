//! How SQLite's errors become eventsmith's.

use rusqlite::ErrorCode;

use eventsmith_core::StoreError;

/// Maps a SQLite error: a held lock is `Busy` (retryable), a damaged or foreign file is
/// `Corrupt`, anything else `Backend`; the SQLite error stays as the source.
pub(crate) fn from_sqlite(e: rusqlite::Error, path: &str) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy {
            source: Box::new(e),
        },
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreError::Corrupt {
            detail: format!("{path}: {e}"),
        },
        _ => StoreError::backend(WithPath {
            path: path.to_owned(),
            source: e,
        }),
    }
}

/// A SQLite error with the database it came from.
#[derive(Debug)]
struct WithPath {
    path: String,
    source: rusqlite::Error,
}

impl std::fmt::Display for WithPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.source)
    }
}

impl std::error::Error for WithPath {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Whether an insert failed on the unique (sequence id, position) constraint.
pub(crate) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}
