//! The derives on real events: constants, topic dispatch, and round trips through the mapper
//! under every codec, with docs and attributes kept on the variants.

// Generated code must not warn, even where the user's enum has deprecated variants.
#![deny(warnings)]

use eventsmith_core::{
    Aggregate, DomainEvent as _, Envelope, Event as _, EventTypeVisitor, EventTypes, Mapper,
    Metadata, Root,
};
use eventsmith_macros::{DomainEvent, Event};
use eventsmith_mapper::{CodecId, EventMapper};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// An account was opened.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Event)]
#[event(topic = "account.Opened")]
pub struct Opened {
    /// Who owns it.
    pub owner: String,
}

/// Money was paid in; version 2 added the reference.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Event)]
#[event(topic = "account.Deposited")]
#[event(version = 2)]
pub struct Deposited {
    /// In cents.
    pub amount: u64,
    /// What the payer wrote.
    pub reference: String,
}

/// How a deposit was stored at schema version 1.
#[derive(Deserialize)]
struct DepositedV1 {
    amount: u64,
}

/// An event that is itself an enum.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Event)]
#[event(topic = "account.Frozen", discards = false)]
pub enum Frozen {
    /// By the bank.
    ByBank {
        /// Why.
        reason: String,
    },
    /// By the owner.
    ByOwner,
}

/// Retired: old accounts still have these events.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Event)]
#[event(topic = "account.Renamed")]
pub struct Renamed {
    /// The new owner name.
    pub owner: String,
}

/// The account was closed.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Event)]
#[event(topic = "account.Closed", discards)]
pub struct Closed;

/// Never part of the enum: its variant is compiled out.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Event)]
#[event(topic = "account.Audited")]
pub struct Audited;

/// Everything that happens to an account. Deliberately not `PartialEq`: the derive must not
/// need it.
#[derive(Debug, Clone, DomainEvent)]
#[non_exhaustive]
pub enum AccountEvent {
    /// Always the first event.
    Opened(Opened),
    /// Money in.
    #[doc(alias = "credit")]
    Deposited(Deposited),
    /// Frozen, by the bank or the owner.
    #[allow(clippy::large_enum_variant)]
    Frozen(Frozen),
    /// Owners are no longer renamed, but their old events still load.
    #[deprecated = "owners are no longer renamed"]
    Renamed(Renamed),
    /// Compiled out: not in the enum, so not in the mapper's registry either.
    #[cfg(any())]
    Audited(Audited),
    /// Always the last event.
    Closed(Closed),
}

fn envelope<E>(version: u64, event: E) -> Envelope<E> {
    Envelope {
        originator_id: Uuid::new_v4(),
        version,
        timestamp: OffsetDateTime::now_utc(),
        metadata: Metadata::default().with_correlation_id("req-1"),
        event,
    }
}

fn codecs() -> Vec<CodecId> {
    [CodecId::Json, CodecId::Postcard, CodecId::Bincode]
        .into_iter()
        .filter(|c| c.is_available())
        .collect()
}

fn mapper(codec: CodecId) -> EventMapper<AccountEvent> {
    EventMapper::<AccountEvent>::builder()
        .codec(codec)
        .upcast("account.Deposited", 1, |old: DepositedV1| Deposited {
            amount: old.amount,
            reference: String::new(),
        })
        .build()
        .expect("the registry is valid")
}

#[allow(deprecated)]
fn every_event() -> Vec<AccountEvent> {
    vec![
        Opened {
            owner: "ada".into(),
        }
        .into(),
        Deposited {
            amount: 10,
            reference: "rent".into(),
        }
        .into(),
        Frozen::ByBank {
            reason: "audit".into(),
        }
        .into(),
        Frozen::ByOwner.into(),
        Renamed {
            owner: "grace".into(),
        }
        .into(),
        Closed.into(),
    ]
}

/// Without `PartialEq` on the enum, compare through the inner events, which have it.
#[allow(deprecated)]
fn same(a: &AccountEvent, b: &AccountEvent) -> bool {
    use AccountEvent as E;
    match (a, b) {
        (E::Opened(a), E::Opened(b)) => a == b,
        (E::Deposited(a), E::Deposited(b)) => a == b,
        (E::Frozen(a), E::Frozen(b)) => a == b,
        (E::Renamed(a), E::Renamed(b)) => a == b,
        (E::Closed(a), E::Closed(b)) => a == b,
        _ => false,
    }
}

#[test]
fn the_event_derive_sets_the_constants_written_and_leaves_the_defaults() {
    let constants = |topic, version, discards| (topic, version, discards);
    assert_eq!(
        [
            constants(Opened::TOPIC, Opened::SCHEMA_VERSION, Opened::DISCARDS),
            constants(
                Deposited::TOPIC,
                Deposited::SCHEMA_VERSION,
                Deposited::DISCARDS
            ),
            constants(Frozen::TOPIC, Frozen::SCHEMA_VERSION, Frozen::DISCARDS),
            constants(Closed::TOPIC, Closed::SCHEMA_VERSION, Closed::DISCARDS),
        ],
        [
            ("account.Opened", 1, false),
            ("account.Deposited", 2, false),
            ("account.Frozen", 1, false),
            ("account.Closed", 1, true),
        ]
    );
}

#[test]
fn each_variant_reports_the_topic_version_and_discarding_of_its_type() {
    let seen: Vec<_> = every_event()
        .iter()
        .map(|e| (e.topic(), e.schema_version(), e.is_discard()))
        .collect();
    assert_eq!(
        seen,
        [
            ("account.Opened", 1, false),
            ("account.Deposited", 2, false),
            ("account.Frozen", 1, false),
            ("account.Frozen", 1, false),
            ("account.Renamed", 1, false),
            ("account.Closed", 1, true),
        ]
    );
}

#[test]
fn every_event_round_trips_through_the_mapper_under_every_codec() {
    for codec in codecs() {
        let mapper = mapper(codec);
        for (i, event) in every_event().into_iter().enumerate() {
            let sent = envelope(i as u64 + 1, event);
            let item = mapper.encode(&sent).expect("encodes");
            assert_eq!(item.topic, sent.event.topic(), "{codec:?}");
            let back = mapper.decode(&item).expect("decodes");
            assert!(same(&back.event, &sent.event), "{codec:?}: {back:?}");
            assert_eq!(
                (back.originator_id, back.version, back.metadata),
                (sent.originator_id, sent.version, sent.metadata)
            );
        }
    }
}

#[test]
fn the_stored_topic_picks_the_variant() {
    let mapper = mapper(CodecId::Json);
    let mut item = mapper
        .encode(&envelope(
            1,
            Opened {
                owner: "ada".into(),
            }
            .into(),
        ))
        .expect("encodes");
    // A payload that both `Opened` and `Renamed` can read: only the topic tells them apart.
    item.topic = "account.Renamed".into();
    #[allow(deprecated)]
    let renamed = matches!(
        mapper.decode(&item).expect("decodes").event,
        AccountEvent::Renamed(Renamed { ref owner }) if owner == "ada"
    );
    assert!(renamed);
}

#[test]
fn the_enum_serializes_as_the_bare_inner_event() {
    let mapper = mapper(CodecId::Json);
    let item = mapper
        .encode(&envelope(
            1,
            Opened {
                owner: "ada".into(),
            }
            .into(),
        ))
        .expect("encodes");
    // The JSON body follows the payload header: the inner event alone, no variant tag.
    let text = String::from_utf8_lossy(&item.payload);
    assert!(text.ends_with(r#"{"owner":"ada"}"#), "{text}");
}

#[test]
fn an_older_schema_version_is_upcast_on_read() {
    for codec in codecs() {
        // Written by version 1 of the application, whose deposits had no reference.
        let old = EventMapper::<OldAccountEvent>::builder()
            .codec(codec)
            .build()
            .expect("the registry is valid");
        let item = old
            .encode(&envelope(1, old::Deposited { amount: 7 }.into()))
            .expect("encodes");
        let back = mapper(codec).decode(&item).expect("decodes");
        let upcast = matches!(
            back.event,
            AccountEvent::Deposited(Deposited { amount: 7, ref reference }) if reference.is_empty()
        );
        assert!(upcast, "{codec:?}: {back:?}");
    }
}

mod old {
    use super::*;
    /// Version 1 of [`super::Deposited`].
    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Event)]
    #[event(topic = "account.Deposited", version = 1)]
    pub struct Deposited {
        /// In cents.
        pub amount: u64,
    }
}

/// The account events as version 1 of the application wrote them.
#[derive(Debug, Clone, PartialEq, DomainEvent)]
pub enum OldAccountEvent {
    /// Money in, before references.
    Deposited(old::Deposited),
}

#[test]
fn the_event_types_are_listed_for_the_registry_in_variant_order() {
    struct Topics(Vec<&'static str>);
    impl EventTypeVisitor<AccountEvent> for Topics {
        fn visit<T: eventsmith_core::Event + Into<AccountEvent>>(&mut self) {
            self.0.push(T::TOPIC);
        }
    }
    let mut topics = Topics(Vec::new());
    AccountEvent::visit(&mut topics);
    assert_eq!(
        topics.0,
        [
            "account.Opened",
            "account.Deposited",
            "account.Frozen",
            "account.Renamed",
            "account.Closed",
        ]
    );
    // The compiled-out variant's type is not registered, so its topic is unknown.
    assert!(!mapper(CodecId::Json).registry().knows(Audited::TOPIC));
}

#[derive(Default, Debug)]
struct Account {
    balance: u64,
}

impl Aggregate for Account {
    type Event = AccountEvent;
    fn apply(&mut self, event: &AccountEvent) {
        if let AccountEvent::Deposited(d) = event {
            self.balance += d.amount;
        }
    }
}

#[test]
fn a_discarding_event_discards_the_aggregate() {
    let mut account = Root::<Account>::create(
        Uuid::new_v4(),
        Opened {
            owner: "ada".into(),
        },
    );
    account
        .execute(|_| {
            Ok::<_, String>([
                AccountEvent::from(Deposited {
                    amount: 5,
                    reference: String::new(),
                }),
                Closed.into(),
            ])
        })
        .expect("the command runs");
    assert_eq!((account.state().balance, account.version()), (5, 3));
    assert!(account.is_discarded());
}

/// A crate of the user's own that re-exports the core, as the facade does.
mod my_events {
    pub(crate) use eventsmith_core as events_core;
}

mod overridden {
    use super::*;

    /// Named through `crate = ...`, as a user of a re-export would.
    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Event)]
    #[event(topic = "bell.Rang", crate = crate::my_events::events_core)]
    pub(crate) struct Rang;

    /// The path may also be written as a string, as serde's `crate = "..."` is.
    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Event)]
    #[event(
        crate = "crate::my_events::events_core",
        topic = "bell.Silenced",
        discards
    )]
    pub(crate) struct Silenced;

    /// The bell's events.
    #[derive(Debug, Clone, PartialEq, DomainEvent)]
    #[event(crate = crate::my_events::events_core)]
    pub(crate) enum BellEvent {
        /// It rang.
        Rang(Rang),
        /// It will never ring again.
        Silenced(Silenced),
    }
}

#[test]
fn an_explicit_crate_path_is_used() {
    use overridden::{BellEvent, Rang, Silenced};
    let mapper = EventMapper::<BellEvent>::builder()
        .build()
        .expect("the registry is valid");
    for event in [BellEvent::from(Rang), BellEvent::from(Silenced)] {
        let sent = envelope(1, event);
        let back = mapper
            .decode(&mapper.encode(&sent).expect("encodes"))
            .expect("decodes");
        assert_eq!(back, sent);
    }
    assert!(BellEvent::from(Silenced).is_discard());
}
