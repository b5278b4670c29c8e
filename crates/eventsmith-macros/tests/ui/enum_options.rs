use eventsmith_macros::{DomainEvent, Event};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, Event)]
#[event(topic = "a.Opened")]
pub struct Opened;

#[derive(Debug, Clone, DomainEvent)]
#[event(topic = "a.Account", colour = "red")]
pub enum TopicOnEnum {
    Opened(Opened),
}

#[derive(Debug, Clone, DomainEvent)]
pub enum OptionOnVariant {
    #[event(topic = "a.Opened")]
    Opened(Opened),
}

#[derive(Debug, Clone, DomainEvent)]
pub enum Generic<T> {
    Opened(Opened),
    Other(T),
}

#[derive(Debug, Clone, DomainEvent)]
pub enum NoVariants {}

#[derive(Debug, Clone, DomainEvent)]
pub struct NotAnEnum(Opened);

fn main() {}
