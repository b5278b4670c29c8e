//! AES-256-GCM payload encryption.

use std::sync::Arc;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

use eventsmith_core::{BoxFuture, CipherError, PayloadCipher};
use uuid::Uuid;

use crate::key::{Key, KeyProvider};

/// Nonce length: 96 bits, fresh and random for every encryption.
pub const NONCE_LEN: usize = 12;
/// Authentication tag length.
pub const TAG_LEN: usize = 16;

pub(crate) fn seal(
    key: &Key,
    associated_data: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CipherError> {
    let cipher = Aes256Gcm::new(key.as_bytes().into());
    // A random 96-bit nonce per encryption: with one key, 2^32 encryptions keep the chance of a
    // repeat below 2^-32 (NIST SP 800-38D); rotate keys well before that.
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let sealed = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad: associated_data,
            },
        )
        .map_err(|_| CipherError::Encrypt)?;
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

pub(crate) fn open(
    key: &Key,
    associated_data: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, CipherError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(CipherError::Decrypt);
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let cipher = Aes256Gcm::new(key.as_bytes().into());
    cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: associated_data,
            },
        )
        .map_err(|_| CipherError::Decrypt)
}

/// Runs `f` on tokio's blocking threads when called inside a tokio runtime, so that the
/// file writes and fsyncs of a key store never run on an async worker; outside tokio, on
/// the calling thread. A panic in `f` is a [`CipherError::KeyStore`].
pub(crate) async fn off_async_threads<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CipherError> + Send + 'static,
) -> Result<T, CipherError> {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => runtime
            .spawn_blocking(f)
            .await
            .map_err(|e| CipherError::KeyStore(Box::new(e)))?,
        Err(_) => f(),
    }
}

/// Encrypts payloads with AES-256-GCM under keys from a [`KeyProvider`].
///
/// A sealed payload is `nonce (12 bytes) || ciphertext || tag (16 bytes)`.
///
/// # Key stores and async code
///
/// Its [`prepare`](PayloadCipher::prepare) runs the key provider's I/O for a sequence (a
/// [`PerAggregateKeys`](crate::PerAggregateKeys) creating, wrapping and durably storing a new
/// aggregate's key) on tokio's blocking threads, and the repository awaits it before the
/// synchronous encode, so no file write or fsync runs on an async worker thread. Encoding
/// without preparing first (calling [`Mapper::encode`](eventsmith_core::Mapper::encode)
/// directly) still works, doing that I/O on the calling thread.
pub struct AesGcmCipher<P> {
    keys: Arc<P>,
}

impl<P> std::fmt::Debug for AesGcmCipher<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AesGcmCipher")
    }
}

impl<P: KeyProvider> AesGcmCipher<P> {
    /// A cipher taking its keys from `keys`.
    pub fn new(keys: P) -> Self {
        Self::with_shared_keys(Arc::new(keys))
    }

    /// A cipher taking its keys from a provider shared with other code (to erase keys, say).
    pub fn with_shared_keys(keys: Arc<P>) -> Self {
        AesGcmCipher { keys }
    }

    /// The key provider.
    pub fn keys(&self) -> &Arc<P> {
        &self.keys
    }
}

impl<P: KeyProvider> PayloadCipher for AesGcmCipher<P> {
    fn current_key_id(&self, sequence_id: Uuid) -> Result<String, CipherError> {
        self.keys.current_key_id(sequence_id)
    }

    /// Runs the key provider's I/O for `sequence_id` (see
    /// [`KeyProvider::current_key_needs_io`]) on tokio's blocking threads, outside tokio on
    /// the calling thread; `None` when it needs none.
    ///
    /// # Cancellation
    ///
    /// Dropping the future does not stop the blocking task: a key being created is still
    /// stored (or found stored by another writer). That is harmless: the next `prepare` or
    /// encode finds it and uses it, and nothing was encrypted with it yet.
    fn prepare(&self, sequence_id: Uuid) -> Option<BoxFuture<'_, Result<(), CipherError>>> {
        if !self.keys.current_key_needs_io(sequence_id) {
            return None;
        }
        let keys = Arc::clone(&self.keys);
        Some(Box::pin(off_async_threads(move || {
            keys.current_key_id(sequence_id).map(|_| ())
        })))
    }

    fn encrypt(
        &self,
        sequence_id: Uuid,
        key_id: &str,
        associated_data: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CipherError> {
        seal(
            &*self.keys.key(sequence_id, key_id)?,
            associated_data,
            plaintext,
        )
    }

    fn decrypt(
        &self,
        sequence_id: Uuid,
        key_id: &str,
        associated_data: &[u8],
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, CipherError> {
        open(
            &*self.keys.key(sequence_id, key_id)?,
            associated_data,
            ciphertext,
        )
    }
}
