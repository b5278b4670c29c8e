//! Event metadata: why an event happened and on whose behalf, stored beside the event.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The longest correlation or causation id, in bytes.
pub const MAX_ID_LEN: usize = 255;
/// The most entries a [`Metadata::user`] map may hold.
pub const MAX_USER_ENTRIES: usize = 32;
/// The longest key of a [`Metadata::user`] entry, in bytes.
pub const MAX_USER_KEY_LEN: usize = 64;
/// The longest value of a [`Metadata::user`] entry, in bytes.
pub const MAX_USER_VALUE_LEN: usize = 1024;

/// What the store keeps about an event besides the event: the request it belongs to, what
/// caused it, and a small map of the application's own (actor, tenant, ...).
///
/// Metadata is stored in the clear beside the payload; when the payload is encrypted it is
/// part of the associated data, so an edit to it fails decryption. Keep secrets out of it.
///
/// ```
/// use eventsmith_core::Metadata;
/// let m = Metadata::default()
///     .with_correlation_id("req-42")
///     .with_user("actor", "ada");
/// assert_eq!(m.correlation_id.as_deref(), Some("req-42"));
/// assert_eq!(m.user["actor"], "ada");
/// assert!(m.check().is_ok());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Metadata {
    /// Groups every event of one business request or process, across aggregates (usually
    /// the id of the request that started it).
    pub correlation_id: Option<String>,
    /// What directly caused this event: the command's idempotency key or request id, or the
    /// upstream event (as `"{sequence id}/{version}"`) a process application reacted to.
    pub causation_id: Option<String>,
    /// The application's own entries, such as the acting user or the tenant.
    pub user: BTreeMap<String, String>,
}

/// Why metadata cannot be stored: the limit it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidMetadata {
    /// A correlation or causation id is empty or longer than [`MAX_ID_LEN`].
    #[error("the {field} must be 1 to {MAX_ID_LEN} bytes, not {len}")]
    Id {
        /// `"correlation id"` or `"causation id"`.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// More than [`MAX_USER_ENTRIES`] user entries.
    #[error("metadata holds at most {MAX_USER_ENTRIES} user entries, not {0}")]
    TooManyEntries(usize),
    /// A user entry's key is empty or too long, or its value too long.
    #[error(
        "user entry {key:?}: keys are 1 to {MAX_USER_KEY_LEN} bytes and values at most {MAX_USER_VALUE_LEN}"
    )]
    Entry {
        /// The entry's key (cut to the limit).
        key: String,
    },
}

impl Metadata {
    /// Whether nothing is set (such metadata takes no bytes in the store).
    pub fn is_empty(&self) -> bool {
        self.correlation_id.is_none() && self.causation_id.is_none() && self.user.is_empty()
    }

    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Sets the causation id.
    pub fn with_causation_id(mut self, id: impl Into<String>) -> Self {
        self.causation_id = Some(id.into());
        self
    }

    /// Adds a user entry (replacing one with the same key).
    pub fn with_user(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.user.insert(key.into(), value.into());
        self
    }

    /// Checks the limits every store applies (mappers call it before encoding).
    pub fn check(&self) -> Result<(), InvalidMetadata> {
        for (field, id) in [
            ("correlation id", &self.correlation_id),
            ("causation id", &self.causation_id),
        ] {
            if let Some(id) = id
                && (id.is_empty() || id.len() > MAX_ID_LEN)
            {
                return Err(InvalidMetadata::Id {
                    field,
                    len: id.len(),
                });
            }
        }
        if self.user.len() > MAX_USER_ENTRIES {
            return Err(InvalidMetadata::TooManyEntries(self.user.len()));
        }
        for (key, value) in &self.user {
            if key.is_empty() || key.len() > MAX_USER_KEY_LEN || value.len() > MAX_USER_VALUE_LEN {
                let mut cut = key.clone();
                let mut end = cut.len().min(MAX_USER_KEY_LEN);
                while !cut.is_char_boundary(end) {
                    end -= 1;
                }
                cut.truncate(end);
                return Err(InvalidMetadata::Entry { key: cut });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked() {
        assert!(Metadata::default().check().is_ok());
        assert!(Metadata::default().is_empty());
        let long = "x".repeat(256);
        assert!(matches!(
            Metadata::default().with_correlation_id(&long).check(),
            Err(InvalidMetadata::Id {
                field: "correlation id",
                len: 256
            })
        ));
        assert!(Metadata::default().with_causation_id("").check().is_err());
        assert!(Metadata::default().with_user("", "v").check().is_err());
        assert!(
            Metadata::default()
                .with_user("k", "v".repeat(1025))
                .check()
                .is_err()
        );
        let many = (0..33).fold(Metadata::default(), |m, i| {
            m.with_user(format!("k{i}"), "v")
        });
        assert_eq!(many.check(), Err(InvalidMetadata::TooManyEntries(33)));
    }
}
