//! Encryption and compression of eventsmith payloads.
//!
//! - [`AesGcmCipher`]: AES-256-GCM with a fresh random 96-bit nonce per payload, implementing
//!   [`PayloadCipher`](eventsmith_core::PayloadCipher). The mapper binds each ciphertext to its
//!   sequence id, position, topic and payload header as associated data.
//! - Keys come from a [`KeyProvider`] by key id: a [`Keyring`] (one current key, retired keys
//!   for old data) or [`PerAggregateKeys`] (one data key per aggregate, for crypto-shredding).
//! - [`Zstd`]: compression before encryption, skipped for small payloads.
//!
//! ```
//! use std::sync::Arc;
//! use eventsmith_cipher::{AesGcmCipher, Key, Keyring, Zstd};
//! use eventsmith_mapper::{Encrypt, EventMapper};
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
//! # pub struct Noted { text: String }
//! # impl eventsmith_core::Event for Noted { const TOPIC: &'static str = "Noted"; }
//! # eventsmith_core::domain_events! { pub enum NoteEvent { Noted(Noted) } }
//!
//! let keys = Keyring::new("2026-11", Key::generate());
//! let mapper = EventMapper::<NoteEvent>::builder()
//!     .compressor(Arc::new(Zstd::new()))
//!     .cipher(Arc::new(AesGcmCipher::new(keys)), Encrypt::All)
//!     .build()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Security notes
//!
//! - Confidentiality and integrity of payloads only. Sequence ids, positions, topics, payload
//!   sizes and the header (codec, schema version, event timestamp, key id) are stored in clear.
//! - Associated data binds a ciphertext to its place: moving it to another sequence, position or
//!   topic, or editing its header, makes decryption fail. Deleting or reordering whole items is
//!   not detected by encryption; version contiguity checks on load catch gaps.
//! - A mapper with a cipher requires encryption for the topics it encrypts: a plaintext event or
//!   snapshot of such a topic (a forgery by someone with write access to the database) fails to
//!   load with [`DecodeErrorKind::NotEncrypted`](eventsmith_core::DecodeErrorKind), unless the
//!   reader opted in to old plaintext up to a version bound. The full threat model is in
//!   docs/mapper-codecs-encryption.md.
//! - Decryption failures are one opaque error ([`CipherError::Decrypt`](eventsmith_core::CipherError)):
//!   a wrong key and a tampered payload look the same, so there is no oracle.
//! - Nonces are random 96-bit values from the OS generator. Rotate a [`Keyring`]'s current key
//!   long before 2^32 encryptions under one key. Per-aggregate keys encrypt few payloads each.
//! - Compression before encryption can leak information through ciphertext length when an
//!   attacker controls part of a payload next to a secret (CRIME-style). Leave compression off
//!   for such events.
//! - [`Key`] has no `Debug` and is zeroed on drop. Copies made by the AES implementation's key
//!   schedule are zeroed by `aes-gcm` (feature `zeroize`).
//! - Crypto-shredding destroys the wrapped data key (a tombstone replaces it). Copies of the key
//!   store in backups, or file-system blocks not yet overwritten, still hold the wrapped key;
//!   they are useless without the master key, so keep the master key out of those backups.

mod aead;
mod compress;
mod key;
mod shred;

pub use aead::{AesGcmCipher, NONCE_LEN, TAG_LEN};
pub use compress::Zstd;
pub use key::{Key, KeyProvider, Keyring};
pub use shred::{
    AGGREGATE_KEY_ID, FileKeyStore, MemoryKeyStore, PerAggregateKeys, StoredKey, WrappedKeyStore,
};
