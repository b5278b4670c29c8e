//! The mapper: registry rules, aliases, upcasting under every codec, and typed errors for
//! every kind of bad stored data.

use eventsmith_core::{DecodeErrorKind, Envelope, Event, Mapper, Position, SequencedItem};
use eventsmith_mapper::{CodecId, EventMapper, PayloadHeader, RegistryError};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// The codecs this build can write.
fn codecs() -> Vec<CodecId> {
    [CodecId::Json, CodecId::Postcard, CodecId::Bincode]
        .into_iter()
        .filter(|c| c.is_available())
        .collect()
}

mod v1 {
    use super::*;
    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub(crate) struct ItemAdded {
        pub name: String,
    }
    impl Event for ItemAdded {
        const TOPIC: &'static str = "cart.ItemAdded";
    }
    eventsmith_core::domain_events! { pub(crate) enum CartEvent { ItemAdded(ItemAdded) } }
}

mod v2 {
    use super::*;
    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub(crate) struct ItemAdded {
        pub name: String,
        pub quantity: u32,
    }
}

mod v3 {
    use super::*;
    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub(crate) struct ItemAdded {
        pub name: String,
        pub quantity: u32,
        pub unit_price_cents: u64,
    }
    impl Event for ItemAdded {
        const TOPIC: &'static str = "cart.ItemAdded";
        const SCHEMA_VERSION: u32 = 3;
    }
    /// Renamed from `cart.Emptied`.
    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub(crate) struct Cleared;
    impl Event for Cleared {
        const TOPIC: &'static str = "cart.Cleared";
    }
    eventsmith_core::domain_events! { pub(crate) enum CartEvent { ItemAdded(ItemAdded), Cleared(Cleared) } }
}

fn envelope<E>(event: E) -> Envelope<E> {
    Envelope {
        originator_id: Uuid::new_v4(),
        version: 1,
        timestamp: OffsetDateTime::now_utc(),
        metadata: Default::default(),
        event,
    }
}

fn mapper_v3(codec: CodecId) -> EventMapper<v3::CartEvent> {
    EventMapper::<v3::CartEvent>::builder()
        .codec(codec)
        .upcast("cart.ItemAdded", 1, |old: v1::ItemAdded| v2::ItemAdded {
            name: old.name,
            quantity: 1,
        })
        .upcast("cart.ItemAdded", 2, |old: v2::ItemAdded| v3::ItemAdded {
            name: old.name,
            quantity: old.quantity,
            unit_price_cents: 0,
        })
        .alias("cart.Emptied", "cart.Cleared")
        .build()
        .unwrap()
}

#[test]
fn version_1_items_load_as_version_3_through_two_upcasters_under_each_codec() {
    for codec in codecs() {
        let old = EventMapper::<v1::CartEvent>::builder()
            .codec(codec)
            .build()
            .unwrap();
        let written = envelope(v1::CartEvent::from(v1::ItemAdded { name: "tea".into() }));
        let item = old.encode(&written).unwrap();
        let read = mapper_v3(codec).decode(&item).unwrap();
        assert_eq!(
            read.event,
            v3::CartEvent::from(v3::ItemAdded {
                name: "tea".into(),
                quantity: 1,
                unit_price_cents: 0
            }),
            "codec {codec:?}"
        );
        assert_eq!(
            read.timestamp, written.timestamp,
            "timestamps round-trip to the nanosecond"
        );
        // A reader configured for another codec reads it too: the header names the codec.
        for other in codecs() {
            assert_eq!(mapper_v3(other).decode(&item).unwrap().event, read.event);
        }
    }
}

#[test]
fn current_version_items_round_trip_under_each_codec() {
    for codec in codecs() {
        let mapper = mapper_v3(codec);
        let written = envelope(v3::CartEvent::from(v3::ItemAdded {
            name: "cake".into(),
            quantity: 3,
            unit_price_cents: 250,
        }));
        let item = mapper.encode(&written).unwrap();
        assert_eq!(mapper.decode(&item).unwrap(), written);
    }
}

#[test]
fn an_alias_reads_items_stored_under_an_old_topic() {
    let mapper = mapper_v3(CodecId::Json);
    let mut item = mapper
        .encode(&envelope(v3::CartEvent::from(v3::Cleared)))
        .unwrap();
    item.topic = "cart.Emptied".into();
    assert_eq!(
        mapper.decode(&item).unwrap().event,
        v3::CartEvent::from(v3::Cleared)
    );
}

#[test]
fn registry_mistakes_fail_when_built() {
    let dup = EventMapper::<v3::CartEvent>::builder()
        .event::<v3::Cleared>()
        .build();
    assert_eq!(
        dup.unwrap_err(),
        RegistryError::DuplicateTopic("cart.Cleared".into())
    );

    let alias_clash = EventMapper::<v3::CartEvent>::builder()
        .alias("cart.Cleared", "cart.ItemAdded")
        .build();
    assert_eq!(
        alias_clash.unwrap_err(),
        RegistryError::DuplicateTopic("cart.Cleared".into())
    );

    let alias_twice = EventMapper::<v3::CartEvent>::builder()
        .alias("old", "cart.Cleared")
        .alias("old", "cart.ItemAdded")
        .build();
    assert_eq!(
        alias_twice.unwrap_err(),
        RegistryError::DuplicateTopic("old".into())
    );

    let dangling = EventMapper::<v3::CartEvent>::builder()
        .alias("old", "cart.Nope")
        .build();
    assert!(matches!(
        dangling.unwrap_err(),
        RegistryError::UnknownAliasTarget { .. }
    ));

    // Version 1 -> 2 with no 2 -> 3 step: the chain does not reach the current type.
    let gap = EventMapper::<v3::CartEvent>::builder()
        .upcast("cart.ItemAdded", 1, |old: v1::ItemAdded| v2::ItemAdded {
            name: old.name,
            quantity: 1,
        })
        .build();
    assert!(matches!(
        gap.unwrap_err(),
        RegistryError::BrokenUpcasterChain { from: 1, .. }
    ));

    // A step whose output is not the next version's input.
    let wrong_type = EventMapper::<v3::CartEvent>::builder()
        .upcast("cart.ItemAdded", 2, |old: v2::ItemAdded| old)
        .build();
    assert!(matches!(
        wrong_type.unwrap_err(),
        RegistryError::BrokenUpcasterChain { from: 2, .. }
    ));

    let unknown = EventMapper::<v3::CartEvent>::builder()
        .upcast("cart.Nope", 1, |x: v2::ItemAdded| x)
        .build();
    assert_eq!(
        unknown.unwrap_err(),
        RegistryError::UnknownUpcasterTopic("cart.Nope".into())
    );
}

#[test]
fn an_unknown_topic_is_a_typed_error_naming_the_item() {
    let mapper = mapper_v3(CodecId::Json);
    let mut item = mapper
        .encode(&envelope(v3::CartEvent::from(v3::Cleared)))
        .unwrap();
    item.topic = "cart.Exploded".into();
    item.position = 7;
    let err = mapper.decode(&item).unwrap_err();
    assert!(matches!(err.kind, DecodeErrorKind::UnknownTopic));
    assert_eq!(
        (err.sequence_id, err.position, err.topic.as_str()),
        (item.sequence_id, Position::Version(7), "cart.Exploded")
    );
    let message = err.to_string();
    assert!(
        message.contains("cart.Exploded") && message.contains("version 7"),
        "{message}"
    );
}

#[test]
fn a_schema_version_without_upcaster_is_a_typed_error() {
    let mapper = EventMapper::<v3::CartEvent>::builder().build().unwrap();
    let old = EventMapper::<v1::CartEvent>::builder().build().unwrap();
    let item = old
        .encode(&envelope(v1::CartEvent::from(v1::ItemAdded {
            name: "x".into(),
        })))
        .unwrap();
    let err = mapper.decode(&item).unwrap_err();
    assert!(
        matches!(
            err.kind,
            DecodeErrorKind::NoUpcaster {
                found: 1,
                current: 3
            }
        ),
        "{err}"
    );
}

#[test]
fn corrupt_payloads_are_typed_errors() {
    for codec in codecs() {
        let mapper = mapper_v3(codec);
        let item = mapper
            .encode(&envelope(v3::CartEvent::from(v3::ItemAdded {
                name: "n".into(),
                quantity: 1,
                unit_price_cents: 2,
            })))
            .unwrap();
        // Truncated body.
        let mut cut = item.clone();
        cut.payload.truncate(cut.payload.len() - 1);
        assert!(
            matches!(
                mapper.decode(&cut).unwrap_err().kind,
                DecodeErrorKind::Deserialize(_)
            ),
            "{codec:?}"
        );
        // Trailing garbage.
        let mut long = item.clone();
        long.payload.push(0);
        assert!(
            matches!(
                mapper.decode(&long).unwrap_err().kind,
                DecodeErrorKind::Deserialize(_)
            ),
            "{codec:?}"
        );
        // Header claims compression or encryption the mapper cannot undo.
        let mut flagged = item.clone();
        flagged.payload[2] = 0b01;
        assert!(matches!(
            mapper.decode(&flagged).unwrap_err().kind,
            DecodeErrorKind::NoCompressor
        ));
        let mut flagged = item.clone();
        flagged.payload[2] = 0b10;
        // The body's first bytes are read as a key id: either they do not make one (a header
        // error), or they do and the mapper has no cipher.
        assert!(matches!(
            mapper.decode(&flagged).unwrap_err().kind,
            DecodeErrorKind::Header(_) | DecodeErrorKind::NoCipher
        ));
    }
}

#[test]
fn the_header_records_codec_and_schema_version() {
    let mapper = mapper_v3(CodecId::Json);
    let item = mapper
        .encode(&envelope(v3::CartEvent::from(v3::Cleared)))
        .unwrap();
    assert_eq!(item.topic, "cart.Cleared");
    let header = PayloadHeader::parse(&item.payload).unwrap().0;
    assert_eq!(
        (header.codec, header.schema_version, header.key_id),
        (CodecId::Json, 1, None)
    );
}

proptest! {
    /// Arbitrary bytes under any topic decode to a typed error or an event, never a panic.
    #[test]
    fn arbitrary_payloads_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..64), topic in 0..3usize) {
        let topic = ["cart.ItemAdded", "cart.Cleared", "cart.Other"][topic];
        for codec in codecs() {
            let item = SequencedItem { sequence_id: Uuid::nil(), position: 1, topic: topic.into(), payload: payload.clone() };
            let _ = mapper_v3(codec).decode(&item);
        }
    }

    /// Arbitrary headers followed by arbitrary bodies never panic either.
    #[test]
    fn arbitrary_bodies_behind_valid_headers_never_panic(body in proptest::collection::vec(any::<u8>(), 0..64), version in 0u32..5, codec in 1u8..4) {
        let mut payload = vec![1, codec, 0];
        payload.extend_from_slice(&version.to_le_bytes());
        payload.extend_from_slice(&0i64.to_le_bytes());
        payload.extend_from_slice(&body);
        let item = SequencedItem { sequence_id: Uuid::nil(), position: 1, topic: "cart.ItemAdded".into(), payload };
        let _ = mapper_v3(CodecId::Json).decode(&item);
    }
}
