use eventsmith_macros::Event;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, Event)]
#[event(topic = "a.Unknown", name = "Unknown")]
pub struct UnknownOption;

#[derive(Serialize, Deserialize, Debug, Clone, Event)]
#[event(topic = "a.Twice")]
#[event(topic = "a.Again")]
pub struct TopicTwice;

#[derive(Serialize, Deserialize, Debug, Clone, Event)]
#[event(topic = "")]
pub struct EmptyTopic;

#[derive(Serialize, Deserialize, Debug, Clone, Event)]
#[event(topic = "a.Spaced ")]
pub struct SpacedTopic;

#[derive(Serialize, Deserialize, Debug, Clone, Event)]
#[event(topic = a.NotAString)]
pub struct TopicNotAString;

#[derive(Serialize, Deserialize, Debug, Clone, Event)]
#[event(topic = "a.VersionZero", version = 0)]
pub struct VersionZero;

#[derive(Serialize, Deserialize, Debug, Clone, Event)]
#[event(topic = "a.VersionString", version = "2")]
pub struct VersionString;

#[derive(Serialize, Deserialize, Debug, Clone, Event)]
#[event(topic = "a.VersionTooBig", version = 4294967296)]
pub struct VersionTooBig;

#[derive(Serialize, Deserialize, Debug, Clone, Event)]
#[event(topic = "a.DiscardsNumber", discards = 1)]
pub struct DiscardsNumber;

#[derive(Serialize, Deserialize, Debug, Clone, Event)]
#[event = "a.NotAList"]
pub struct NotAList;

fn main() {}
