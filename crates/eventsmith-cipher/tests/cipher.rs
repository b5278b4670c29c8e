//! Encryption, compression and crypto-shredding through the mapper: known answers, tamper
//! detection, typed errors for every kind of bad input, key rotation and erasure.

use std::collections::HashSet;
use std::sync::Arc;

use eventsmith_cipher::{
    AesGcmCipher, FileKeyStore, Key, KeyProvider, Keyring, MemoryKeyStore, PerAggregateKeys, Zstd,
};
use eventsmith_core::{
    CipherError, CompressError, Compressor, DecodeErrorKind, Envelope, Event, IntegerSequencedItem,
    Mapper, PayloadCipher,
};
use eventsmith_mapper::{CodecId, Encrypt, EventMapper, PayloadHeader};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

static_assertions::assert_not_impl_any!(Key: std::fmt::Debug);

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(crate) struct Noted {
    text: String,
    n: u64,
}
impl Event for Noted {
    const TOPIC: &'static str = "note.Noted";
}
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(crate) struct Tagged {
    tags: Vec<String>,
}
impl Event for Tagged {
    const TOPIC: &'static str = "note.Tagged";
}
eventsmith_core::domain_events! { pub(crate) enum NoteEvent { Noted(Noted), Tagged(Tagged) } }

fn envelope(id: Uuid, version: u64, text: &str) -> Envelope<NoteEvent> {
    Envelope {
        originator_id: id,
        version,
        timestamp: OffsetDateTime::now_utc(),
        metadata: Default::default(),
        event: Noted {
            text: text.into(),
            n: version,
        }
        .into(),
    }
}

fn mapper(cipher: Arc<dyn PayloadCipher>, codec: CodecId) -> EventMapper<NoteEvent> {
    EventMapper::builder()
        .codec(codec)
        .compressor(Arc::new(Zstd::new().min_size(64)))
        .cipher(cipher, Encrypt::All)
        .build()
        .unwrap()
}

fn keyring(id: &str, byte: u8) -> Arc<dyn PayloadCipher> {
    Arc::new(AesGcmCipher::new(Keyring::new(
        id,
        Key::from_bytes([byte; 32]),
    )))
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The AES-256 test cases 13 to 16 of McGrew and Viega's GCM specification (also NIST's
/// gcmEncryptExtIV256 vectors), checked through this crate's key type.
#[test]
fn aes_256_gcm_known_answers() {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    let k15 = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
    let p15 = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
    let c15 = "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad";
    let cases = [
        (
            &"00".repeat(32)[..],
            &"00".repeat(12)[..],
            "",
            "",
            "",
            "530f8afbc74536b9a963b4f1c4cb738b",
        ),
        (
            &"00".repeat(32)[..],
            &"00".repeat(12)[..],
            &"00".repeat(16)[..],
            "",
            "cea7403d4d606b6e074ec5d3baf39d18",
            "d0d1c8a799996bf0265b98b5d48ab919",
        ),
        (
            k15,
            "cafebabefacedbaddecaf888",
            p15,
            "",
            c15,
            "b094dac5d93471bdec1a502270e3cc6c",
        ),
        (
            k15,
            "cafebabefacedbaddecaf888",
            &p15[..120],
            "feedfacedeadbeeffeedfacedeadbeefabaddad2",
            &c15[..120],
            "76fc6ece0f4e1768cddf8853bb2d551b",
        ),
    ];
    for (key, iv, plaintext, aad, ciphertext, tag) in cases {
        let key = Key::from_bytes(hex(key).try_into().unwrap());
        let cipher = aes_gcm::Aes256Gcm::new(key.as_bytes().into());
        let (iv, aad) = (hex(iv), hex(aad));
        let sealed = cipher
            .encrypt(
                iv.as_slice().into(),
                Payload {
                    msg: &hex(plaintext),
                    aad: &aad,
                },
            )
            .unwrap();
        assert_eq!(sealed, [hex(ciphertext), hex(tag)].concat());
        let opened = cipher
            .decrypt(
                iv.as_slice().into(),
                Payload {
                    msg: &sealed,
                    aad: &aad,
                },
            )
            .unwrap();
        assert_eq!(opened, hex(plaintext));
        // The same vector through this crate's sealed format (nonce || ciphertext || tag).
        let provider = AesGcmCipher::new(Keyring::new("k", key));
        assert_eq!(
            provider
                .decrypt(Uuid::nil(), "k", &aad, &[iv.clone(), sealed].concat())
                .unwrap(),
            hex(plaintext)
        );
    }
}

#[test]
fn encrypted_events_round_trip_and_nonces_are_fresh() {
    let mapper = mapper(keyring("k1", 1), CodecId::Json);
    let id = Uuid::new_v4();
    let e = envelope(id, 1, &"secret ".repeat(30));
    let a = mapper.encode(&e).unwrap();
    let b = mapper.encode(&e).unwrap();
    assert_ne!(a.payload, b.payload, "a fresh nonce per encryption");
    assert!(
        !String::from_utf8_lossy(&a.payload).contains("secret"),
        "the plaintext is not visible"
    );
    let header = PayloadHeader::parse(&a.payload).unwrap().0;
    assert!(header.compressed && header.key_id.as_deref() == Some("k1"));
    assert_eq!(mapper.decode(&a).unwrap(), e);
}

#[test]
fn every_single_bit_flip_is_detected() {
    let mapper = mapper(keyring("k1", 1), CodecId::Postcard);
    let item = mapper
        .encode(&envelope(Uuid::new_v4(), 3, "flip me"))
        .unwrap();
    for bit in 0..item.payload.len() * 8 {
        let mut bad = item.clone();
        bad.payload[bit / 8] ^= 1 << (bit % 8);
        assert!(
            mapper.decode(&bad).is_err(),
            "flipping bit {bit} went unnoticed"
        );
    }
}

#[test]
fn a_ciphertext_moved_onto_another_event_fails_to_decrypt() {
    let mapper = mapper(keyring("k1", 1), CodecId::Json);
    let item = mapper.encode(&envelope(Uuid::new_v4(), 1, "mine")).unwrap();
    let moves: [fn(&mut IntegerSequencedItem); 3] = [
        |i| i.sequence_id = Uuid::new_v4(),
        |i| i.position = 2,
        |i| i.topic = "note.Tagged".into(),
    ];
    for change in moves {
        let mut moved = item.clone();
        change(&mut moved);
        let err = mapper.decode(&moved).unwrap_err();
        assert!(
            matches!(err.kind, DecodeErrorKind::Cipher(CipherError::Decrypt)),
            "{err}"
        );
    }
}

#[test]
fn each_kind_of_bad_input_has_its_own_typed_error() {
    let mapper = mapper(keyring("k1", 1), CodecId::Json);
    let item = mapper
        .encode(&envelope(Uuid::new_v4(), 1, &"x".repeat(200)))
        .unwrap();
    let kind = |m: &EventMapper<NoteEvent>, i: &IntegerSequencedItem| m.decode(i).unwrap_err().kind;

    let mut truncated = item.clone();
    truncated.payload.truncate(item.payload.len() - 5);
    assert!(matches!(
        kind(&mapper, &truncated),
        DecodeErrorKind::Cipher(CipherError::Decrypt)
    ));

    let wrong_key = self::mapper(keyring("k1", 2), CodecId::Json);
    assert!(matches!(
        kind(&wrong_key, &item),
        DecodeErrorKind::Cipher(CipherError::Decrypt)
    ));

    let other_id = self::mapper(keyring("k9", 1), CodecId::Json);
    assert!(
        matches!(kind(&other_id, &item), DecodeErrorKind::Cipher(CipherError::UnknownKey { key_id }) if key_id == "k1")
    );

    let mut codec = item.clone();
    codec.payload[1] = 42;
    assert!(matches!(
        kind(&mapper, &codec),
        DecodeErrorKind::UnknownCodec(42)
    ));

    // A corrupt zstd frame in an unencrypted, compressed payload.
    let plain = EventMapper::<NoteEvent>::builder()
        .compressor(Arc::new(Zstd::new().min_size(0)))
        .build()
        .unwrap();
    let mut frame = plain
        .encode(&envelope(Uuid::new_v4(), 1, &"y".repeat(300)))
        .unwrap();
    assert!(PayloadHeader::parse(&frame.payload).unwrap().0.compressed);
    let body = frame.payload.len() - 10;
    frame.payload[body] ^= 0xff;
    frame.payload.truncate(frame.payload.len() - 3);
    // The frame's corruption is typed, and zstd's own error stays reachable as the source.
    let err = kind(&plain, &frame);
    let DecodeErrorKind::Decompress(compress) = &err else {
        panic!("{err:?}")
    };
    assert!(
        matches!(
            compress,
            CompressError::Corrupt(_) | CompressError::WrongLength { .. }
        ),
        "{compress:?}"
    );
    let source = std::error::Error::source(&err).expect("the compress error");
    assert!(source.is::<CompressError>(), "{source:?}");
    if let CompressError::Corrupt(_) = compress {
        assert!(
            std::error::Error::source(compress).is_some(),
            "zstd's error"
        );
    }
}

#[test]
fn zstd_refuses_decompression_bombs_and_skips_small_or_incompressible_payloads() {
    let zstd = Zstd::new().min_size(100).max_decompressed(1000);
    assert_eq!(
        zstd.compress(&[7; 99]).unwrap(),
        None,
        "below the minimum size"
    );
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let _ = zstd.compress(&noise).unwrap(); // may or may not gain; must not fail
    let bomb = Zstd::new()
        .min_size(0)
        .compress(&vec![0; 100_000])
        .unwrap()
        .unwrap();
    assert!(matches!(
        zstd.decompress(&bomb).unwrap_err(),
        CompressError::TooLarge { limit: 1000 }
    ));
    // A frame that is not zstd at all: corrupt, with zstd's error as the source.
    let not_zstd = zstd.decompress(b"definitely not a zstd frame").unwrap_err();
    let CompressError::Corrupt(inner) = &not_zstd else {
        panic!("{not_zstd:?}")
    };
    assert!(!inner.to_string().is_empty());
    assert!(std::error::Error::source(&not_zstd).is_some());
    let small = zstd.compress(&[1; 900]).unwrap().unwrap();
    assert_eq!(zstd.decompress(&small).unwrap(), vec![1; 900]);
}

#[test]
fn rotated_keys_write_with_the_current_key_and_read_old_items() {
    let id = Uuid::new_v4();
    let old_key = || Key::from_bytes([1; 32]);
    let before = mapper(
        Arc::new(AesGcmCipher::new(Keyring::new("2026-10", old_key()))),
        CodecId::Json,
    );
    let old_item = before.encode(&envelope(id, 1, "old")).unwrap();
    let rotated =
        Keyring::new("2026-11", Key::from_bytes([2; 32])).with_retired("2026-10", old_key());
    let after = mapper(Arc::new(AesGcmCipher::new(rotated)), CodecId::Json);
    let new_item = after.encode(&envelope(id, 2, "new")).unwrap();
    assert_eq!(
        PayloadHeader::parse(&new_item.payload)
            .unwrap()
            .0
            .key_id
            .as_deref(),
        Some("2026-11")
    );
    assert_eq!(after.decode(&old_item).unwrap().version, 1);
    assert_eq!(after.decode(&new_item).unwrap().version, 2);
}

#[test]
fn only_selected_topics_are_encrypted() {
    let topics = HashSet::from(["note.Tagged".to_owned()]);
    let mapper = EventMapper::<NoteEvent>::builder()
        .cipher(keyring("k", 3), Encrypt::Topics(topics))
        .build()
        .unwrap();
    let noted = mapper
        .encode(&envelope(Uuid::new_v4(), 1, "public"))
        .unwrap();
    assert_eq!(PayloadHeader::parse(&noted.payload).unwrap().0.key_id, None);
    let mut tagged = envelope(Uuid::new_v4(), 1, "");
    tagged.event = Tagged {
        tags: vec!["private".into()],
    }
    .into();
    let item = mapper.encode(&tagged).unwrap();
    assert_eq!(
        PayloadHeader::parse(&item.payload)
            .unwrap()
            .0
            .key_id
            .as_deref(),
        Some("k")
    );
    assert_eq!(mapper.decode(&item).unwrap(), tagged);
}

#[test]
fn erasing_an_aggregates_key_shreds_it_and_spares_the_others_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let master = || Key::from_bytes([9; 32]);
    let open = || {
        PerAggregateKeys::new(
            "master-1",
            master(),
            FileKeyStore::open(dir.path()).unwrap(),
        )
    };
    let keys = Arc::new(open());
    let mapper = mapper(
        Arc::new(AesGcmCipher::with_shared_keys(keys.clone())),
        CodecId::Postcard,
    );
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let a = mapper
        .encode(&envelope(alice, 1, "alice's secret"))
        .unwrap();
    let b = mapper.encode(&envelope(bob, 1, "bob's secret")).unwrap();
    assert_eq!(
        PayloadHeader::parse(&a.payload)
            .unwrap()
            .0
            .key_id
            .as_deref(),
        Some("aggregate")
    );

    // After a restart the wrapped keys are read back from the directory.
    let restarted = self::mapper(Arc::new(AesGcmCipher::new(open())), CodecId::Postcard);
    assert_eq!(restarted.decode(&a).unwrap().originator_id, alice);

    keys.erase(alice).unwrap();
    let err = mapper.decode(&a).unwrap_err();
    assert!(
        matches!(err.kind, DecodeErrorKind::Cipher(CipherError::KeyErased { sequence_id }) if sequence_id == alice),
        "{err}"
    );
    assert_eq!(mapper.decode(&b).unwrap().originator_id, bob);
    // New writes to a shredded aggregate are refused too.
    assert!(matches!(
        mapper.encode(&envelope(alice, 2, "again")),
        Err(eventsmith_core::EncodeError::Cipher(
            CipherError::KeyErased { .. }
        ))
    ));

    // The erasure survives a restart; bob's key too.
    let restarted = self::mapper(Arc::new(AesGcmCipher::new(open())), CodecId::Postcard);
    assert!(matches!(
        restarted.decode(&a).unwrap_err().kind,
        DecodeErrorKind::Cipher(CipherError::KeyErased { .. })
    ));
    assert_eq!(restarted.decode(&b).unwrap().originator_id, bob);

    // A different master key cannot unwrap bob's key: an opaque failure.
    let wrong = PerAggregateKeys::new(
        "master-1",
        Key::from_bytes([8; 32]),
        FileKeyStore::open(dir.path()).unwrap(),
    );
    assert!(matches!(
        wrong.key(bob, "aggregate"),
        Err(CipherError::Decrypt)
    ));
}

#[test]
fn per_aggregate_keys_are_distinct_and_unknown_without_a_write() {
    let keys = PerAggregateKeys::new("m", Key::generate(), MemoryKeyStore::default());
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    assert!(matches!(
        keys.key(a, "aggregate"),
        Err(CipherError::UnknownKey { .. })
    ));
    keys.current_key_id(a).unwrap();
    keys.current_key_id(b).unwrap();
    assert_ne!(
        keys.key(a, "aggregate").unwrap().as_bytes(),
        keys.key(b, "aggregate").unwrap().as_bytes()
    );
    assert!(matches!(
        keys.key(a, "other"),
        Err(CipherError::UnknownKey { .. })
    ));
}

fn codecs() -> Vec<CodecId> {
    [CodecId::Json, CodecId::Postcard, CodecId::Bincode]
        .into_iter()
        .filter(|c| c.is_available())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Arbitrary events round-trip through every codec x compression x cipher combination.
    #[test]
    fn arbitrary_events_round_trip_through_every_combination(
        text in ".{0,300}",
        n in any::<u64>(),
        tags in proptest::collection::vec(".{0,20}", 0..5),
        version in 1u64..1_000_000,
    ) {
        let id = Uuid::new_v4();
        let events = [NoteEvent::from(Noted { text, n }), NoteEvent::from(Tagged { tags })];
        for codec in codecs() {
            for compress in [false, true] {
                for encrypt in [false, true] {
                    let mut builder = EventMapper::<NoteEvent>::builder().codec(codec);
                    if compress {
                        builder = builder.compressor(Arc::new(Zstd::new().min_size(0)));
                    }
                    if encrypt {
                        builder = builder.cipher(keyring("k", 5), Encrypt::All);
                    }
                    let mapper = builder.build().unwrap();
                    for event in &events {
                        let e = Envelope { originator_id: id, version, timestamp: OffsetDateTime::now_utc(), metadata: Default::default(), event: event.clone() };
                        let item = mapper.encode(&e).unwrap();
                        prop_assert_eq!(mapper.decode(&item).unwrap(), e);
                    }
                }
            }
        }
    }
}

/// What is written can be read: an event past the 64 MiB limit that zstd would shrink to
/// kilobytes is refused on encode (nothing to store), and a payload larger than the
/// decompressor's own limit is stored uncompressed, so it loads.
#[test]
fn what_is_written_can_be_read() {
    let id = Uuid::new_v4();
    let compressing = EventMapper::<NoteEvent>::builder()
        .compressor(Arc::new(Zstd::new()))
        .build()
        .unwrap();
    let huge = envelope(id, 1, &"a".repeat(eventsmith_mapper::MAX_PAYLOAD_LEN + 1));
    match compressing.encode(&huge) {
        Err(eventsmith_core::EncodeError::TooLarge { topic, len, max }) => {
            assert_eq!(topic, "note.Noted");
            assert!(len > max && max == eventsmith_mapper::MAX_PAYLOAD_LEN);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    drop(huge);

    // A 4 MiB event under a 1 MiB decompression limit: stored uncompressed, read back.
    let small_limit = EventMapper::<NoteEvent>::builder()
        .compressor(Arc::new(Zstd::new().max_decompressed(1 << 20)))
        .build()
        .unwrap();
    let big = envelope(id, 1, &"a".repeat(4 << 20));
    let item = small_limit.encode(&big).unwrap();
    let (header, _) = PayloadHeader::parse(&item.payload).unwrap();
    assert!(
        !header.compressed,
        "compressed past the decompressor's limit"
    );
    assert_eq!(small_limit.decode(&item).unwrap(), big);
    // Under the limit it is still compressed, and reads back.
    let fits = envelope(id, 2, &"a".repeat(512 << 10));
    let item = small_limit.encode(&fits).unwrap();
    assert!(PayloadHeader::parse(&item.payload).unwrap().0.compressed);
    assert_eq!(small_limit.decode(&item).unwrap(), fits);
}

/// Metadata is stored in the clear beside an encrypted payload but is part of its associated
/// data: an edit to it (here, the tenant) fails decryption, so it cannot be changed unseen.
#[test]
fn edited_metadata_fails_decryption() {
    let m = mapper(keyring("k1", 9), CodecId::Postcard);
    let id = Uuid::new_v4();
    let mut e = envelope(id, 1, "secret");
    e.metadata = eventsmith_core::Metadata::default()
        .with_correlation_id("order-7")
        .with_user("tenant", "acme");
    let item = m.encode(&e).unwrap();
    assert_eq!(m.decode(&item).unwrap().metadata, e.metadata);
    let at = item
        .payload
        .windows(4)
        .position(|w| w == b"acme")
        .expect("metadata is stored in the clear");
    let mut edited = item.clone();
    edited.payload[at + 3] = b'f';
    assert_eq!(
        PayloadHeader::parse(&edited.payload)
            .unwrap()
            .0
            .metadata
            .user["tenant"],
        "acmf",
        "the edit is a well-formed header"
    );
    match m.decode(&edited) {
        Err(err) => assert!(
            matches!(err.kind, DecodeErrorKind::Cipher(CipherError::Decrypt)),
            "{err}"
        ),
        Ok(e) => panic!("an edited tenant decoded: {:?}", e.metadata),
    }
}
