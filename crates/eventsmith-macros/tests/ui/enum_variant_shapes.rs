use eventsmith_macros::{DomainEvent, Event};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, Event)]
#[event(topic = "a.Opened")]
pub struct Opened;

#[derive(Debug, Clone, DomainEvent)]
pub enum AccountEvent {
    Opened(Opened),
    Closed,
    Moved(Opened, String, u32),
    Renamed { name: String },
    Empty(),
}

fn main() {}
