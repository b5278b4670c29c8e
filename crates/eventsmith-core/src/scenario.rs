//! A given/when/then helper for testing aggregates without a store.
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
//! # pub struct Deposited { amount: u64 }
//! # impl eventsmith_core::Event for Deposited { const TOPIC: &'static str = "Deposited"; }
//! # eventsmith_core::domain_events! { pub enum AccountEvent { Deposited(Deposited) } }
//! #[derive(Default)]
//! struct Account { balance: u64 }
//! impl eventsmith_core::Aggregate for Account {
//!     type Event = AccountEvent;
//!     fn apply(&mut self, e: &AccountEvent) {
//!         match e { AccountEvent::Deposited(d) => self.balance += d.amount }
//!     }
//! }
//! fn deposit(a: &Account, amount: u64) -> Result<Option<Deposited>, String> {
//!     if amount == 0 { return Err("nothing to deposit".into()) }
//!     Ok(Some(Deposited { amount }))
//! }
//! use eventsmith_core::scenario::given;
//! given::<Account>([Deposited { amount: 5 }])
//!     .when(|a| deposit(a, 3))
//!     .then([Deposited { amount: 3 }]);
//! given::<Account>([Deposited { amount: 5 }])
//!     .when(|a| deposit(a, 0))
//!     .then_error("nothing to deposit".to_string());
//! ```

use std::fmt::Debug;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::aggregate::{Aggregate, Envelope, Root};
use crate::error::CommandError;

/// Past events of one aggregate, replayed as versions 1, 2, ...
pub fn given<A: Aggregate>(events: impl IntoIterator<Item = impl Into<A::Event>>) -> Given<A> {
    let id = Uuid::new_v4();
    let now = OffsetDateTime::now_utc();
    let history = events.into_iter().enumerate().map(|(i, e)| Envelope {
        originator_id: id,
        version: i as u64 + 1,
        timestamp: now,
        metadata: Default::default(),
        event: e.into(),
    });
    let root = Root::replay(None, history).expect("given events are numbered 1, 2, ... in order");
    Given { id, root }
}

/// The state a scenario starts from.
#[derive(Debug)]
pub struct Given<A: Aggregate> {
    id: Uuid,
    root: Option<Root<A>>,
}

impl<A: Aggregate> Given<A> {
    /// Runs a command on the given state (the default state when no events were given).
    pub fn when<I, E>(self, decide: impl FnOnce(&A) -> Result<I, E>) -> Then<A, E>
    where
        I: IntoIterator,
        I::Item: Into<A::Event>,
    {
        let outcome = match self.root {
            Some(mut root) => root.execute(decide).map(|()| {
                root.commit_pending()
                    .into_iter()
                    .map(|e| e.event)
                    .collect::<Vec<_>>()
            }),
            None => {
                // Nothing exists yet: the command creates the aggregate.
                match decide(&A::default()) {
                    Ok(events) => Ok(events.into_iter().map(Into::into).collect()),
                    Err(e) => Err(CommandError::Rejected(e)),
                }
            }
        };
        Then {
            id: self.id,
            outcome,
        }
    }
}

/// The outcome of a scenario's command, to be checked.
#[derive(Debug)]
pub struct Then<A: Aggregate, E> {
    id: Uuid,
    outcome: Result<Vec<A::Event>, CommandError<E>>,
}

impl<A: Aggregate, E: Debug> Then<A, E>
where
    A::Event: PartialEq,
{
    /// Asserts that the command succeeded with exactly these events.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = impl Into<A::Event>>) {
        let expected: Vec<A::Event> = expected.into_iter().map(Into::into).collect();
        match self.outcome {
            Ok(events) => assert_eq!(events, expected, "the command recorded other events"),
            Err(e) => panic!("expected events {expected:?}, but the command failed: {e:?}"),
        }
    }

    /// Asserts that the domain logic rejected the command with this error.
    #[track_caller]
    pub fn then_error(self, expected: E)
    where
        E: PartialEq,
    {
        match self.outcome {
            Err(CommandError::Rejected(e)) => assert_eq!(e, expected),
            other => panic!("expected rejection {expected:?}, got {other:?}"),
        }
    }

    /// Asserts that the command was refused because the aggregate is discarded.
    #[track_caller]
    pub fn then_discarded(self) {
        match self.outcome {
            Err(CommandError::Discarded { id }) => assert_eq!(id, self.id),
            other => panic!("expected the discarded aggregate to refuse, got {other:?}"),
        }
    }
}
