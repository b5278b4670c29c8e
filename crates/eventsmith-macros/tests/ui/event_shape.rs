use eventsmith_macros::Event;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, Event)]
#[event(topic = "a.Generic")]
pub struct Generic<T> {
    pub value: T,
}

#[derive(Event)]
#[event(topic = "a.Union")]
pub union Union {
    pub a: u32,
}

fn main() {}
