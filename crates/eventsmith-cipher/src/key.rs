//! Keys and the providers that hand them out by key id.

use std::collections::HashMap;
use std::sync::Arc;

use aes_gcm::aead::OsRng;
use aes_gcm::aead::rand_core::RngCore;
use zeroize::{Zeroize, ZeroizeOnDrop};

use eventsmith_core::CipherError;
use uuid::Uuid;

/// A 256-bit AES key. It has no `Debug` (so it never reaches a log) and is zeroed on drop.
#[allow(missing_debug_implementations)] // deliberately: key material must never be printed
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Key([u8; 32]);

impl Key {
    /// A key from 32 bytes of key material.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Key(bytes)
    }

    /// A fresh random key from the operating system's generator.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        Key(bytes)
    }

    /// The key material.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Hands out keys by key id. New writes to a sequence use its current key; old payloads name
/// the key id they were written with, so keys can rotate without re-encrypting history.
pub trait KeyProvider: Send + Sync + 'static {
    /// The key id that new writes to `sequence_id` use.
    fn current_key_id(&self, sequence_id: Uuid) -> Result<String, CipherError>;
    /// The key named `key_id`, for `sequence_id`.
    fn key(&self, sequence_id: Uuid, key_id: &str) -> Result<Arc<Key>, CipherError>;
    /// Whether [`current_key_id`](Self::current_key_id) for `sequence_id` may do I/O now
    /// (read, create or store a key). When it may, [`AesGcmCipher`](crate::AesGcmCipher)'s
    /// `prepare` calls it on a blocking thread before the synchronous encode, which then
    /// answers from memory. The default: never (keys in memory).
    fn current_key_needs_io(&self, sequence_id: Uuid) -> bool {
        let _ = sequence_id;
        false
    }
}

/// A fixed set of keys shared by every sequence: one current key for new writes, and retired
/// keys kept to read what they wrote. Rotate by building a new keyring whose current key is
/// new and whose retired keys include the old current one.
pub struct Keyring {
    current: String,
    keys: HashMap<String, Arc<Key>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<_> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("Keyring")
            .field("current", &self.current)
            .field("key_ids", &ids)
            .finish()
    }
}

impl Keyring {
    /// A keyring whose current key is `key`, named `key_id` (1 to 255 bytes).
    pub fn new(key_id: impl Into<String>, key: Key) -> Self {
        let current = key_id.into();
        let keys = HashMap::from([(current.clone(), Arc::new(key))]);
        Keyring { current, keys }
    }

    /// Adds a retired key: it decrypts what it wrote but is not used for new writes.
    pub fn with_retired(mut self, key_id: impl Into<String>, key: Key) -> Self {
        let id = key_id.into();
        if id != self.current {
            self.keys.insert(id, Arc::new(key));
        }
        self
    }
}

impl KeyProvider for Keyring {
    fn current_key_id(&self, _: Uuid) -> Result<String, CipherError> {
        Ok(self.current.clone())
    }

    fn key(&self, _: Uuid, key_id: &str) -> Result<Arc<Key>, CipherError> {
        self.keys
            .get(key_id)
            .cloned()
            .ok_or_else(|| CipherError::UnknownKey {
                key_id: key_id.to_owned(),
            })
    }
}
