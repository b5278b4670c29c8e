//! How SQLite's errors become eventsmith's.

use std::sync::Arc;

use rusqlite::ErrorCode;

use eventsmith_core::StoreError;

/// Maps a SQLite error: a held lock is `Busy` (retryable), a full disk (`SQLITE_FULL`, also
/// a file at its `max_page_count`) is `StorageFull`, a damaged or foreign file is `Corrupt`,
/// anything else `Backend`; the SQLite error stays as the source.
pub(crate) fn from_sqlite(e: rusqlite::Error, path: &str) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy {
            source: Box::new(e),
        },
        Some(ErrorCode::DiskFull) => StoreError::StorageFull {
            source: Box::new(WithPath {
                path: path.to_owned(),
                source: e,
            }),
        },
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreError::Corrupt {
            detail: format!("{path}: {e}"),
            source: Some(Box::new(e)),
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

/// The source of one failed group's error, shared by the error of every job of the group: it
/// reads as that source and goes on to the source's own sources, so each job's error keeps
/// the whole chain (its text, and the SQLite error under it), not a copy of the text.
#[derive(Debug, Clone)]
pub(crate) struct SharedSource(pub(crate) Arc<StoreError>);

impl SharedSource {
    fn inner(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.0)
    }
}

impl std::fmt::Display for SharedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.inner() {
            Some(source) => std::fmt::Display::fmt(source, f),
            None => std::fmt::Display::fmt(&*self.0, f),
        }
    }
}

impl std::error::Error for SharedSource {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner().and_then(|source| source.source())
    }
}
