//! The one place every backend records the outcome of a store call on its span, so that the
//! `outcome` field means the same on every backend (see `docs/observability.md`).

use crate::error::{AppendError, ErrorKind, SnapshotError, StoreError};

/// An error with an [`ErrorKind`]: what [`outcome`] records when a call fails.
pub trait HasKind {
    /// The error's kind.
    fn kind(&self) -> ErrorKind;
}

impl HasKind for StoreError {
    fn kind(&self) -> ErrorKind {
        StoreError::kind(self)
    }
}

impl HasKind for AppendError {
    fn kind(&self) -> ErrorKind {
        AppendError::kind(self)
    }
}

impl HasKind for SnapshotError {
    fn kind(&self) -> ErrorKind {
        SnapshotError::kind(self)
    }
}

/// Records `outcome` (`"ok"`, or the error's [`ErrorKind::as_str`]) on the current span and
/// hands the result back, so a store method's body is wrapped as `outcome(async { .. }.await)`.
///
/// With no subscriber listening the current span is disabled and this is one check: the
/// instrumentation stays out of the hot path.
#[inline]
pub fn outcome<T, E: HasKind>(result: Result<T, E>) -> Result<T, E> {
    let span = tracing::Span::current();
    if !span.is_disabled() {
        span.record(
            "outcome",
            match &result {
                Ok(_) => "ok",
                Err(e) => e.kind().as_str(),
            },
        );
    }
    result
}

/// [`outcome`] for reads that return rows: also records `items`, how many were read.
#[inline]
pub fn rows<T, E: HasKind>(result: Result<Vec<T>, E>) -> Result<Vec<T>, E> {
    if let Ok(rows) = &result {
        let span = tracing::Span::current();
        if !span.is_disabled() {
            span.record("items", rows.len());
        }
    }
    outcome(result)
}
