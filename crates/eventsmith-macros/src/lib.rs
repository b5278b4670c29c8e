//! Derive macros for eventsmith's domain events.
//!
//! - [`Event`](derive@Event) implements `eventsmith_core::Event` for one event type from
//!   `#[event(topic = "...", version = N, discards)]`;
//! - [`DomainEvent`](derive@DomainEvent) turns an aggregate's enum, one variant per event
//!   type, into its `DomainEvent`: topic dispatch for the mapper, serialization as the bare
//!   inner event, `From` conversions and the list of event types. It replaces the
//!   `domain_events!` macro, and the enum stays yours: its docs, per-variant docs and
//!   attributes, visibility and derives are the ones you write.
//!
//! The facade crate `eventsmith` re-exports both derives (its `derive` feature) next to the
//! traits of the same names, so `use eventsmith::{DomainEvent, Event};` brings in each trait
//! and its derive, as `use serde::Serialize;` does.
//!
//! # Example
//!
//! An event type, its next schema version, and an event that ends the aggregate's life,
//! encoded through the mapper and decoded back:
//!
//! ```
//! use eventsmith_core::{DomainEvent as _, Envelope, Mapper, Metadata};
//! use eventsmith_macros::{DomainEvent, Event};
//! use eventsmith_mapper::EventMapper;
//! use serde::{Deserialize, Serialize};
//!
//! /// An account was opened.
//! #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Event)]
//! #[event(topic = "account.Opened")]
//! pub struct Opened {
//!     /// Who owns it.
//!     pub owner: String,
//! }
//!
//! /// Money was paid in; version 2 added the reference.
//! #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Event)]
//! #[event(topic = "account.Deposited", version = 2)]
//! pub struct Deposited {
//!     /// In cents.
//!     pub amount: u64,
//!     /// What the payer wrote.
//!     pub reference: String,
//! }
//!
//! /// The account was closed; it takes no more commands.
//! #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Event)]
//! #[event(topic = "account.Closed", discards)]
//! pub struct Closed;
//!
//! /// Everything that happens to an account.
//! #[derive(Debug, Clone, PartialEq, DomainEvent)]
//! pub enum AccountEvent {
//!     /// Always the first event.
//!     Opened(Opened),
//!     /// Money in.
//!     Deposited(Deposited),
//!     /// Always the last event.
//!     Closed(Closed),
//! }
//!
//! let event = AccountEvent::from(Deposited { amount: 10, reference: "rent".into() });
//! assert_eq!((event.topic(), event.schema_version()), ("account.Deposited", 2));
//! assert!(AccountEvent::from(Closed).is_discard());
//!
//! // Deposits stored at version 1 had no reference; the mapper upcasts them on read.
//! #[derive(Deserialize)]
//! struct DepositedV1 { amount: u64 }
//! let mapper = EventMapper::<AccountEvent>::builder()
//!     .upcast("account.Deposited", 1, |old: DepositedV1| Deposited {
//!         amount: old.amount,
//!         reference: String::new(),
//!     })
//!     .build()?;
//! let envelope = Envelope {
//!     originator_id: uuid::Uuid::new_v4(),
//!     version: 2,
//!     timestamp: time::OffsetDateTime::now_utc(),
//!     metadata: Metadata::default(),
//!     event,
//! };
//! let item = mapper.encode(&envelope)?;
//! assert_eq!(item.topic, "account.Deposited");
//! assert_eq!(mapper.decode(&item)?, envelope);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Which crate the generated code names
//!
//! Generated code names the core's items through the `eventsmith-core` crate: directly if
//! your crate depends on it, else through the hidden re-export of it in the facade
//! `eventsmith`, under the name your `Cargo.toml` gives either (so a renamed dependency works
//! too). Where that cannot be found out (a build system other than Cargo, or eventsmith
//! re-exported by a crate of your own), give the path of the core crate yourself, on the
//! event type or on the enum: `#[event(crate = my_events::eventsmith_core)]`, where
//! `my_events` has `pub use eventsmith_core;`.
//!
//! # Compile-time checks
//!
//! Mistakes are compile errors at the offending tokens: a missing or empty topic, a schema
//! version of 0, an unknown or repeated option, a variant that does not wrap exactly one
//! type, a type wrapped by two variants, two variants whose types share a topic, a generic
//! event type or enum.
//!
//! Renamed topics (aliases), upcasters and retired event types are registered on the
//! mapper's builder, as with hand-written `Event` implementations: they concern reading old
//! data, which the mapper does.
//!
//! # Supported Rust versions
//!
//! The minimum supported Rust version is 1.88, as for the rest of eventsmith.

#![forbid(unsafe_code)]

mod attr;
mod domain_event;
mod event;
mod krate;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Implements `Event` for a struct or an enum that is one domain event type.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # use eventsmith_macros::Event;
/// #[derive(Serialize, Deserialize, Debug, Clone, Event)]
/// #[event(topic = "shop.OrderPlaced", version = 3)]
/// struct OrderPlaced { order: u64, lines: Vec<String> }
///
/// use eventsmith_core::Event as _;
/// assert_eq!(OrderPlaced::TOPIC, "shop.OrderPlaced");
/// assert_eq!(OrderPlaced::SCHEMA_VERSION, 3);
/// assert!(!OrderPlaced::DISCARDS);
/// ```
///
/// The type still derives (or implements) `Serialize` and `Deserialize` itself, with any
/// serde attributes it needs; `Event` requires them.
///
/// # Options of `#[event(...)]`
///
/// | option | meaning | default |
/// | --- | --- | --- |
/// | `topic = "..."` | the stable name stored with every event of the type; never change it once events are stored (register the old one as an alias on the mapper instead) | required |
/// | `version = N` | the schema version, raised when the type changes shape, with an upcaster from the previous version registered on the mapper | 1 |
/// | `discards` (or `discards = true`) | the event ends its aggregate's life: after it the aggregate takes no commands and loads as discarded | not discarding |
/// | `crate = path` | the path of the `eventsmith-core` crate, when it cannot be found from `Cargo.toml` (see the crate docs) | found |
///
/// The options may be split over several `#[event(...)]` attributes; each is given at most
/// once. Generic types are refused: a topic names one concrete type.
#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    event::expand(input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Implements `DomainEvent` for an aggregate's event enum, each variant wrapping one type
/// that implements `Event`.
///
/// ```
/// # use serde::{Deserialize, Serialize};
/// # use eventsmith_macros::{DomainEvent, Event};
/// # #[derive(Serialize, Deserialize, Debug, Clone, Event)]
/// # #[event(topic = "counter.Incremented")]
/// # pub struct Incremented;
/// # #[derive(Serialize, Deserialize, Debug, Clone, Event)]
/// # #[event(topic = "counter.Reset")]
/// # pub struct Reset { to: u64 }
/// /// What happens to a counter.
/// #[derive(Debug, Clone, DomainEvent)]
/// pub enum CounterEvent {
///     /// One more.
///     Incremented(Incremented),
///     /// Back to a given value.
///     #[deprecated = "write `Incremented` events instead"]
///     Reset(Reset),
/// }
///
/// use eventsmith_core::DomainEvent as _;
/// assert_eq!(CounterEvent::from(Incremented).topic(), "counter.Incremented");
/// ```
///
/// It generates, as `domain_events!` did:
///
/// - `From<T>` for each wrapped type `T`, so commands return bare events;
/// - `Serialize`, as the bare inner event (the topic stored beside it says which variant it
///   is); so do not also derive `Serialize` on the enum;
/// - `DomainEvent`: the topic, schema version and discarding of each variant's type;
/// - `EventTypes`: the wrapped types, from which the mapper builds its topic registry.
///
/// Unlike `domain_events!`, it derives nothing else: `DomainEvent` requires `Debug` and
/// `Clone`, which you derive (or implement) yourself, and `PartialEq` only if you want it.
/// Docs and attributes of the enum and its variants (`#[deprecated]` for a retired event,
/// `#[cfg(...)]`, lints) stay as written.
///
/// The only option on the enum is `#[event(crate = path)]`, as for [`Event`](derive@Event).
/// Topics are not written here: they belong to the event types, which can be shared between
/// enums. Two variants whose types have the same topic are a compile error.
#[proc_macro_derive(DomainEvent, attributes(event))]
pub fn derive_domain_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    domain_event::expand(input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
