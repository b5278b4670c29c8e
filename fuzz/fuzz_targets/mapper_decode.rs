//! The mapper's decode path (bytes -> item -> event), plain, compressed, and encrypted: any
//! bytes under any topic give an event or a typed error, never a panic.
#![no_main]

use std::sync::{Arc, OnceLock};

use eventsmith_cipher::{AesGcmCipher, Key, Keyring, Zstd};
use eventsmith_core::{Event, Mapper, SequencedItem};
use eventsmith_mapper::{CodecId, Encrypt, EventMapper};
use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Noted {
    text: String,
    n: u64,
    tags: Vec<String>,
}
impl Event for Noted {
    const TOPIC: &'static str = "fuzz.Noted";
}
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Cleared;
impl Event for Cleared {
    const TOPIC: &'static str = "fuzz.Cleared";
}
eventsmith_core::domain_events! { pub enum FuzzEvent { Noted(Noted), Cleared(Cleared) } }

fn mappers() -> &'static [EventMapper<FuzzEvent>; 3] {
    static MAPPERS: OnceLock<[EventMapper<FuzzEvent>; 3]> = OnceLock::new();
    MAPPERS.get_or_init(|| {
        let zstd = || Arc::new(Zstd::new().min_size(0).max_decompressed(1 << 20));
        let cipher = Arc::new(AesGcmCipher::new(Keyring::new("k", Key::from_bytes([3; 32]))));
        [
            EventMapper::builder().build().unwrap(),
            EventMapper::builder().codec(CodecId::Postcard).compressor(zstd()).build().unwrap(),
            EventMapper::builder().compressor(zstd()).cipher(cipher, Encrypt::All).build().unwrap(),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else { return };
    let topic = ["fuzz.Noted", "fuzz.Cleared", "fuzz.Unknown"][usize::from(selector % 3)];
    let item = SequencedItem { sequence_id: uuid::Uuid::nil(), position: 1, topic: topic.into(), payload: payload.to_vec() };
    let _ = mappers()[usize::from(selector / 3 % 3)].decode(&item);
});
