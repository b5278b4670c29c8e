//! Crypto-shredding: one data key per aggregate, wrapped by a master key and kept in a key
//! store; erasing an aggregate's key makes its events unreadable for good.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use eventsmith_core::CipherError;
use uuid::Uuid;

use crate::aead::{open, seal};
use crate::key::{Key, KeyProvider};

/// The key id written into payload headers for per-aggregate keys.
pub const AGGREGATE_KEY_ID: &str = "aggregate";

/// What a key store holds for one aggregate.
#[derive(Clone, PartialEq, Eq)]
pub enum StoredKey {
    /// The aggregate's data key, wrapped (encrypted) by a master key.
    Wrapped(Vec<u8>),
    /// The key was erased; a tombstone keeps "erased" apart from "never existed".
    Erased,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoredKey::Wrapped(w) => write!(f, "Wrapped({} bytes)", w.len()),
            StoredKey::Erased => f.write_str("Erased"),
        }
    }
}

/// Durable storage for wrapped per-aggregate keys.
pub trait WrappedKeyStore: Send + Sync + 'static {
    /// What is stored for `sequence_id`, if anything.
    fn get(&self, sequence_id: Uuid) -> Result<Option<StoredKey>, CipherError>;
    /// Stores `wrapped` unless something is stored already; returns what is stored after
    /// the call (the existing entry if another writer won the race).
    fn put_if_absent(&self, sequence_id: Uuid, wrapped: &[u8]) -> Result<StoredKey, CipherError>;
    /// Replaces whatever is stored with a tombstone, durably.
    fn erase(&self, sequence_id: Uuid) -> Result<(), CipherError>;
}

/// Wrapped keys in memory (for tests; they do not survive a restart).
#[derive(Debug, Default)]
pub struct MemoryKeyStore {
    keys: Mutex<HashMap<Uuid, StoredKey>>,
}

impl MemoryKeyStore {
    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, StoredKey>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl WrappedKeyStore for MemoryKeyStore {
    fn get(&self, sequence_id: Uuid) -> Result<Option<StoredKey>, CipherError> {
        Ok(self.lock().get(&sequence_id).cloned())
    }

    fn put_if_absent(&self, sequence_id: Uuid, wrapped: &[u8]) -> Result<StoredKey, CipherError> {
        Ok(self
            .lock()
            .entry(sequence_id)
            .or_insert_with(|| StoredKey::Wrapped(wrapped.to_vec()))
            .clone())
    }

    fn erase(&self, sequence_id: Uuid) -> Result<(), CipherError> {
        self.lock().insert(sequence_id, StoredKey::Erased);
        Ok(())
    }
}

const TOMBSTONE: &[u8] = b"eventsmith erased key\n";

/// Wrapped keys in a directory, one file per aggregate, written atomically and fsynced, so
/// they survive restarts and crashes; safe for several processes sharing the directory.
#[derive(Debug)]
pub struct FileKeyStore {
    dir: PathBuf,
}

fn io_error(e: std::io::Error) -> CipherError {
    CipherError::KeyStore(Box::new(e))
}

impl FileKeyStore {
    /// Uses (creating if needed) the directory `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, CipherError> {
        std::fs::create_dir_all(dir.as_ref()).map_err(io_error)?;
        Ok(FileKeyStore {
            dir: dir.as_ref().to_path_buf(),
        })
    }

    fn path(&self, sequence_id: Uuid) -> PathBuf {
        self.dir.join(format!("{sequence_id}.key"))
    }

    /// Writes `bytes` to a fresh temporary file in the directory and fsyncs it.
    fn temp_file(&self, bytes: &[u8]) -> Result<PathBuf, CipherError> {
        let temp = self.dir.join(format!(".tmp-{}", Uuid::new_v4()));
        let mut file = std::fs::File::create_new(&temp).map_err(io_error)?;
        file.write_all(bytes).map_err(io_error)?;
        file.sync_all().map_err(io_error)?;
        Ok(temp)
    }

    fn sync_dir(&self) -> Result<(), CipherError> {
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error)
    }
}

impl WrappedKeyStore for FileKeyStore {
    fn get(&self, sequence_id: Uuid) -> Result<Option<StoredKey>, CipherError> {
        match std::fs::read(self.path(sequence_id)) {
            Ok(bytes) if bytes == TOMBSTONE => Ok(Some(StoredKey::Erased)),
            Ok(bytes) => Ok(Some(StoredKey::Wrapped(bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(e)),
        }
    }

    fn put_if_absent(&self, sequence_id: Uuid, wrapped: &[u8]) -> Result<StoredKey, CipherError> {
        let temp = self.temp_file(wrapped)?;
        // A hard link fails if the target exists: an atomic create-if-absent, even across
        // processes, and the file appears complete or not at all.
        let linked = std::fs::hard_link(&temp, self.path(sequence_id));
        let _ = std::fs::remove_file(&temp);
        match linked {
            Ok(()) => {
                self.sync_dir()?;
                Ok(StoredKey::Wrapped(wrapped.to_vec()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                self.get(sequence_id)?.ok_or_else(|| io_error(e))
            }
            Err(e) => Err(io_error(e)),
        }
    }

    fn erase(&self, sequence_id: Uuid) -> Result<(), CipherError> {
        let temp = self.temp_file(TOMBSTONE)?;
        std::fs::rename(&temp, self.path(sequence_id)).map_err(io_error)?;
        self.sync_dir()
    }
}

/// Gives every aggregate its own data key, created on its first encrypted write, wrapped by
/// a master key and kept in a [`WrappedKeyStore`]. [`erase`](Self::erase) destroys one
/// aggregate's key: its payloads then fail with [`CipherError::KeyErased`], every other
/// aggregate still loads.
///
/// Unwrapped keys are cached in memory; an erase in another process is seen here only for
/// aggregates not cached yet (or after a restart).
pub struct PerAggregateKeys<S> {
    master_id: String,
    masters: HashMap<String, Key>,
    store: S,
    cache: Mutex<HashMap<Uuid, Arc<Key>>>,
}

impl<S> std::fmt::Debug for PerAggregateKeys<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerAggregateKeys")
            .field("master_id", &self.master_id)
            .finish_non_exhaustive()
    }
}

fn wrap_aad(sequence_id: Uuid) -> Vec<u8> {
    [b"eventsmith data key ".as_slice(), sequence_id.as_bytes()].concat()
}

impl<S: WrappedKeyStore> PerAggregateKeys<S> {
    /// Per-aggregate keys wrapped by `master` (named `master_id`), stored in `store`.
    pub fn new(master_id: impl Into<String>, master: Key, store: S) -> Self {
        let master_id = master_id.into();
        let masters = HashMap::from([(master_id.clone(), master)]);
        PerAggregateKeys {
            master_id,
            masters,
            store,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Adds a retired master key, to unwrap data keys it wrapped.
    pub fn with_retired_master(mut self, master_id: impl Into<String>, master: Key) -> Self {
        self.masters.entry(master_id.into()).or_insert(master);
        self
    }

    fn cache(&self) -> MutexGuard<'_, HashMap<Uuid, Arc<Key>>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Destroys the key of `sequence_id`: its events and snapshots become unreadable.
    ///
    /// This writes and fsyncs on the calling thread; from async code use
    /// [`erase_async`](Self::erase_async).
    pub fn erase(&self, sequence_id: Uuid) -> Result<(), CipherError> {
        self.store.erase(sequence_id)?;
        self.cache().remove(&sequence_id);
        Ok(())
    }

    /// [`erase`](Self::erase) on tokio's blocking threads (outside a tokio runtime, on the
    /// calling thread), so that the key store's writes and fsyncs never run on an async
    /// worker.
    ///
    /// # Cancellation
    ///
    /// Dropping the future does not stop the erase once started: the key may be erased
    /// although no answer came. Erasing is idempotent, so calling it again is the way to know.
    pub async fn erase_async(self: &Arc<Self>, sequence_id: Uuid) -> Result<(), CipherError> {
        let keys = Arc::clone(self);
        crate::aead::off_async_threads(move || keys.erase(sequence_id)).await
    }

    fn wrap(&self, sequence_id: Uuid, key: &Key) -> Result<Vec<u8>, CipherError> {
        let master = &self.masters[&self.master_id];
        let id = self.master_id.as_bytes();
        let len = u8::try_from(id.len())
            .map_err(|_| CipherError::KeyStore("master key id longer than 255 bytes".into()))?;
        let mut out = vec![len];
        out.extend_from_slice(id);
        out.extend_from_slice(&seal(master, &wrap_aad(sequence_id), key.as_bytes())?);
        Ok(out)
    }

    fn unwrap(&self, sequence_id: Uuid, wrapped: &[u8]) -> Result<Key, CipherError> {
        let corrupt =
            || CipherError::KeyStore(format!("corrupt wrapped key for {sequence_id}").into());
        let (&len, rest) = wrapped.split_first().ok_or_else(corrupt)?;
        let (id, sealed) = rest
            .split_at_checked(usize::from(len))
            .ok_or_else(corrupt)?;
        let id = std::str::from_utf8(id).map_err(|_| corrupt())?;
        let master = self
            .masters
            .get(id)
            .ok_or_else(|| CipherError::UnknownKey {
                key_id: id.to_owned(),
            })?;
        let bytes = open(master, &wrap_aad(sequence_id), sealed)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| corrupt())?;
        Ok(Key::from_bytes(bytes))
    }

    /// The aggregate's key from the cache or the store; `create` makes one if none exists.
    fn load(&self, sequence_id: Uuid, create: bool) -> Result<Arc<Key>, CipherError> {
        if let Some(key) = self.cache().get(&sequence_id) {
            return Ok(key.clone());
        }
        let stored = match self.store.get(sequence_id)? {
            Some(stored) => stored,
            None if create => {
                let key = Key::generate();
                self.store
                    .put_if_absent(sequence_id, &self.wrap(sequence_id, &key)?)?
            }
            None => {
                return Err(CipherError::UnknownKey {
                    key_id: AGGREGATE_KEY_ID.to_owned(),
                });
            }
        };
        match stored {
            StoredKey::Erased => Err(CipherError::KeyErased { sequence_id }),
            StoredKey::Wrapped(wrapped) => {
                let key = Arc::new(self.unwrap(sequence_id, &wrapped)?);
                self.cache().insert(sequence_id, key.clone());
                Ok(key)
            }
        }
    }
}

impl<S: WrappedKeyStore> KeyProvider for PerAggregateKeys<S> {
    fn current_key_id(&self, sequence_id: Uuid) -> Result<String, CipherError> {
        // Make sure the key exists (and is not erased) before anything is encrypted with it.
        self.load(sequence_id, true)?;
        Ok(AGGREGATE_KEY_ID.to_owned())
    }

    /// Until the aggregate's key is in the cache: reading it, or creating and storing a new
    /// one, is the key store's I/O.
    fn current_key_needs_io(&self, sequence_id: Uuid) -> bool {
        !self.cache().contains_key(&sequence_id)
    }

    fn key(&self, sequence_id: Uuid, key_id: &str) -> Result<Arc<Key>, CipherError> {
        if key_id != AGGREGATE_KEY_ID {
            return Err(CipherError::UnknownKey {
                key_id: key_id.to_owned(),
            });
        }
        self.load(sequence_id, false)
    }
}
