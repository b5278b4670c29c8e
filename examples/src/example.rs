//! The classic worked example: an `Example` aggregate with a `foo` attribute that is created,
//! changes `foo`, and is discarded.

use eventsmith::{Aggregate, CommandError, DomainEvent, Event, Root};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An example was created with a first value of `foo`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Event)]
#[event(topic = "example.Created")]
pub struct Created {
    /// The first value of `foo`.
    pub foo: String,
}

/// `foo` changed.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Event)]
#[event(topic = "example.FooChanged")]
pub struct FooChanged {
    /// The new value of `foo`.
    pub foo: String,
}

/// The example was discarded; it no longer exists as live state.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Event)]
#[event(topic = "example.Discarded", discards)]
pub struct Discarded;

/// Everything that can happen to an [`Example`].
#[derive(Debug, Clone, PartialEq, DomainEvent)]
pub enum ExampleEvent {
    /// The example was created.
    Created(Created),
    /// `foo` changed.
    FooChanged(FooChanged),
    /// The example was discarded.
    Discarded(Discarded),
}

/// The state of an example.
#[derive(Default, Debug, Clone, PartialEq)]
pub struct Example {
    /// The current value of `foo`.
    pub foo: String,
}

impl Aggregate for Example {
    type Event = ExampleEvent;
    fn apply(&mut self, event: &ExampleEvent) {
        match event {
            ExampleEvent::Created(e) => self.foo = e.foo.clone(),
            ExampleEvent::FooChanged(e) => self.foo = e.foo.clone(),
            ExampleEvent::Discarded(_) => {}
        }
    }
}

/// Why an example refuses a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExampleError {
    /// `foo` may not be empty.
    #[error("foo may not be empty")]
    EmptyFoo,
}

impl Example {
    /// Decides to change `foo`.
    pub fn change_foo(&self, foo: &str) -> Result<Option<FooChanged>, ExampleError> {
        if foo.is_empty() {
            return Err(ExampleError::EmptyFoo);
        }
        // Setting the same value changes nothing, so nothing happens.
        Ok((foo != self.foo).then(|| FooChanged {
            foo: foo.to_owned(),
        }))
    }

    /// Decides to discard the example.
    pub fn discard(&self) -> Result<[Discarded; 1], ExampleError> {
        Ok([Discarded])
    }
}

/// The factory: a new example with a fresh id, its creation pending until saved.
pub fn create_new_example(foo: &str) -> Result<Root<Example>, CommandError<ExampleError>> {
    if foo.is_empty() {
        return Err(CommandError::Rejected(ExampleError::EmptyFoo));
    }
    Ok(Root::create(
        Uuid::new_v4(),
        Created {
            foo: foo.to_owned(),
        },
    ))
}
