use eventsmith_macros::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Plain;

#[derive(Debug, Clone, DomainEvent)]
pub enum AccountEvent {
    Plain(Plain),
}

fn main() {}
