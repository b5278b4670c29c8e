use eventsmith_macros::{DomainEvent, Event};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, Event)]
#[event(topic = "a.Opened")]
pub struct Opened;

#[derive(Serialize, Deserialize, Debug, Clone, Event)]
#[event(topic = "a.Opened")]
pub struct Reopened;

#[derive(Debug, Clone, DomainEvent)]
pub enum SameType {
    Opened(Opened),
    AlsoOpened(Opened),
}

#[derive(Debug, Clone, DomainEvent)]
pub enum SameTopic {
    Opened(Opened),
    /// The error points at the variant, not at its docs.
    Reopened(Reopened),
}

fn main() {}
