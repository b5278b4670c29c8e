//! Inputs kept from fuzzing (`fuzz/regressions/`), replayed as ordinary tests with the same
//! checks as the fuzz targets: the header parser round-trips what it accepts, and the mapper
//! decodes any bytes to an event or a typed error without panicking.

use std::path::Path;
use std::sync::Arc;

use eventsmith_cipher::{AesGcmCipher, Key, Keyring, Zstd};
use eventsmith_core::{Event, Mapper, SequencedItem};
use eventsmith_mapper::{CodecId, Encrypt, EventMapper, PayloadHeader};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(crate) struct Noted {
    text: String,
    n: u64,
    tags: Vec<String>,
}
impl Event for Noted {
    const TOPIC: &'static str = "fuzz.Noted";
}
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(crate) struct Cleared;
impl Event for Cleared {
    const TOPIC: &'static str = "fuzz.Cleared";
}
eventsmith_core::domain_events! { pub(crate) enum FuzzEvent { Noted(Noted), Cleared(Cleared) } }

fn inputs(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

#[test]
fn payload_header_regressions() {
    let inputs = inputs("payload_header");
    assert!(!inputs.is_empty());
    for data in inputs {
        if let Ok((header, body)) = PayloadHeader::parse(&data) {
            let mut out = Vec::new();
            header.write(&mut out).unwrap();
            assert_eq!(&out[..], &data[..data.len() - body.len()]);
        }
    }
}

#[test]
fn mapper_decode_regressions() {
    let zstd = || Arc::new(Zstd::new().min_size(0).max_decompressed(1 << 20));
    let cipher = Arc::new(AesGcmCipher::new(Keyring::new(
        "k",
        Key::from_bytes([3; 32]),
    )));
    let mappers: [EventMapper<FuzzEvent>; 3] = [
        EventMapper::builder().build().unwrap(),
        EventMapper::builder()
            .codec(CodecId::Postcard)
            .compressor(zstd())
            .build()
            .unwrap(),
        EventMapper::builder()
            .compressor(zstd())
            .cipher(cipher, Encrypt::All)
            .build()
            .unwrap(),
    ];
    let inputs = inputs("mapper_decode");
    assert!(!inputs.is_empty());
    for data in inputs {
        let Some((&selector, payload)) = data.split_first() else {
            continue;
        };
        let topic = ["fuzz.Noted", "fuzz.Cleared", "fuzz.Unknown"][usize::from(selector % 3)];
        let item = SequencedItem {
            sequence_id: uuid::Uuid::nil(),
            position: 1,
            topic: topic.into(),
            payload: payload.to_vec(),
        };
        // These inputs are all malformed: each must be a typed error.
        assert!(
            mappers[usize::from(selector / 3 % 3)]
                .decode(&item)
                .is_err(),
            "{data:?}"
        );
    }
}
