use eventsmith_macros::Event;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, Event)]
pub struct NoAttribute;

#[derive(Serialize, Deserialize, Debug, Clone, Event)]
#[event(version = 2)]
pub struct NoTopic;

// Deriving `Event` on an aggregate's enum is a likely slip: the message says what to derive.
#[derive(Serialize, Deserialize, Debug, Clone, Event)]
pub enum AccountEvent {
    Opened(NoTopic),
}

fn main() {}
