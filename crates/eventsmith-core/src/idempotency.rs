//! Idempotency keys: a client's request id stored atomically with the append it produced, so
//! that the same request sent again (a retry after a lost response) appends nothing.

use std::fmt;
use std::ops::{Range, RangeInclusive};
use std::str::FromStr;
use std::sync::Arc;

use uuid::Uuid;

use crate::error::{AppendError, StoreError};
use crate::item::{IntegerSequencedItem, Position, Version};

/// The longest idempotency key, in bytes of UTF-8.
pub const MAX_KEY_LEN: usize = 200;

/// A client's request id, scoped to the aggregate (sequence) a command targets.
///
/// Any non-empty UTF-8 string of at most [`MAX_KEY_LEN`] bytes without control characters;
/// a UUID converts with `From`. Keys are compared byte for byte.
///
/// ```
/// use eventsmith_core::IdempotencyKey;
/// let key: IdempotencyKey = "req-7f3a".parse()?;
/// assert_eq!(key.as_str(), "req-7f3a");
/// assert!("".parse::<IdempotencyKey>().is_err());
/// # Ok::<(), eventsmith_core::InvalidKey>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey(Arc<str>);

/// Why a string is not an [`IdempotencyKey`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidKey {
    /// The key is empty.
    #[error("an idempotency key cannot be empty")]
    Empty,
    /// The key is longer than [`MAX_KEY_LEN`] bytes.
    #[error("an idempotency key has at most {MAX_KEY_LEN} bytes, not {0}")]
    TooLong(usize),
    /// The key holds a control character (at this byte offset).
    #[error("an idempotency key cannot hold control characters (byte {0})")]
    ControlCharacter(usize),
}

impl IdempotencyKey {
    /// Checks and wraps a key.
    pub fn new(key: impl AsRef<str>) -> Result<Self, InvalidKey> {
        let key = key.as_ref();
        if key.is_empty() {
            return Err(InvalidKey::Empty);
        }
        if key.len() > MAX_KEY_LEN {
            return Err(InvalidKey::TooLong(key.len()));
        }
        if let Some((at, _)) = key.char_indices().find(|(_, c)| c.is_control()) {
            return Err(InvalidKey::ControlCharacter(at));
        }
        Ok(IdempotencyKey(key.into()))
    }

    /// The key as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for IdempotencyKey {
    type Err = InvalidKey;
    fn from_str(s: &str) -> Result<Self, InvalidKey> {
        Self::new(s)
    }
}

impl From<Uuid> for IdempotencyKey {
    fn from(id: Uuid) -> Self {
        IdempotencyKey(id.hyphenated().to_string().into())
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({:?})", &*self.0)
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an earlier append under an idempotency key wrote: one sequence, a range of versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorAppend {
    /// The sequence (aggregate) the append wrote to.
    pub sequence_id: Uuid,
    /// The versions it wrote, lowest to highest.
    pub versions: RangeInclusive<Version>,
}

/// The outcome of [`ItemStore::append_with_key`](crate::ItemStore::append_with_key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyedAppend {
    /// The key was new: the items were written with these notification ids, and the key is
    /// stored with them.
    Appended(Range<u64>),
    /// The key was used before for this sequence: nothing was written. This is what the first
    /// append under the key wrote.
    AlreadyApplied(PriorAppend),
}

/// Checks a keyed batch before anything is written (every backend calls it): the batch holds
/// one sequence. Returns the [`PriorAppend`] to store with the key, or `None` for an empty
/// batch (a no-op that stores no key).
pub fn keyed_batch(items: &[IntegerSequencedItem]) -> Result<Option<PriorAppend>, AppendError> {
    let Some(first) = items.first() else {
        return Ok(None);
    };
    let mut lo = first.position;
    let mut hi = first.position;
    for item in items {
        if item.sequence_id != first.sequence_id {
            return Err(AppendError::Store(StoreError::InvalidItem {
                sequence_id: item.sequence_id,
                position: Position::Version(item.position),
                reason: format!(
                    "an idempotency key covers one sequence; this batch also writes {}",
                    first.sequence_id
                ),
            }));
        }
        lo = lo.min(item.position);
        hi = hi.max(item.position);
    }
    Ok(Some(PriorAppend {
        sequence_id: first.sequence_id,
        versions: lo..=hi,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        assert_eq!(IdempotencyKey::new(""), Err(InvalidKey::Empty));
        assert_eq!(
            IdempotencyKey::new("x".repeat(201)),
            Err(InvalidKey::TooLong(201))
        );
        assert_eq!(
            IdempotencyKey::new("ab\ncd"),
            Err(InvalidKey::ControlCharacter(2))
        );
        assert!(IdempotencyKey::new("x".repeat(200)).is_ok());
        assert!(IdempotencyKey::new("überweisung-1").is_ok());
        let id = Uuid::new_v4();
        assert_eq!(IdempotencyKey::from(id).as_str(), id.to_string());
    }

    fn item(sequence_id: Uuid, position: Version) -> IntegerSequencedItem {
        IntegerSequencedItem {
            sequence_id,
            position,
            topic: "t".into(),
            payload: Vec::new(),
        }
    }

    #[test]
    fn keyed_batches_hold_one_sequence() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(keyed_batch(&[]).unwrap(), None);
        assert!(keyed_batch(&[item(a, 1), item(b, 1)]).is_err());
        assert_eq!(
            keyed_batch(&[item(a, 3), item(a, 4), item(a, 5)]).unwrap(),
            Some(PriorAppend {
                sequence_id: a,
                versions: 3..=5
            })
        );
    }
}
