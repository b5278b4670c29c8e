//! The topic registry: which decoder reads which topic, at which schema version.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use serde::de::DeserializeOwned;

use eventsmith_core::{BoxError, DecodeErrorKind, Event, EventTypeVisitor};

use crate::codec::CodecId;

type AnyValue = Box<dyn Any + Send>;
type DecodeAny = Box<dyn Fn(CodecId, &[u8]) -> Result<AnyValue, BoxError> + Send + Sync>;
type Step = Box<dyn Fn(AnyValue) -> AnyValue + Send + Sync>;

/// A problem found while building a registry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryError {
    /// Two event types (or an event type and an alias) claim the same topic.
    #[error("topic {0:?} is registered twice")]
    DuplicateTopic(String),
    /// An alias points at a topic no event type has.
    #[error("alias {alias:?} points at unregistered topic {target:?}")]
    UnknownAliasTarget {
        /// The old topic.
        alias: String,
        /// The topic it should read as.
        target: String,
    },
    /// An upcaster names a topic no event type has.
    #[error("upcaster for unregistered topic {0:?}")]
    UnknownUpcasterTopic(String),
    /// Two upcasters start from the same (topic, version).
    #[error("two upcasters for topic {topic:?} from schema version {from}")]
    DuplicateUpcaster {
        /// The topic.
        topic: String,
        /// The schema version both start from.
        from: u32,
    },
    /// The upcasters of a topic do not chain: a step's output type is not the next step's
    /// input type, or a version is skipped, or the chain does not end at the current version.
    #[error("upcasters of topic {topic:?} do not chain from version {from} to the current type")]
    BrokenUpcasterChain {
        /// The topic.
        topic: String,
        /// The first version whose chain is broken.
        from: u32,
    },
}

struct Upcaster {
    decode: DecodeAny,
    step: Step,
    input: TypeId,
    output: TypeId,
}

pub(crate) struct Entry<E> {
    pub(crate) schema_version: u32,
    decode_current: fn(CodecId, &[u8]) -> Result<E, BoxError>,
    current_type: TypeId,
    finish: fn(AnyValue) -> Option<E>,
    upcasters: BTreeMap<u32, Upcaster>,
}

impl<E> Entry<E> {
    pub(crate) fn decode(
        &self,
        codec: CodecId,
        version: u32,
        bytes: &[u8],
    ) -> Result<E, DecodeErrorKind> {
        if version == self.schema_version {
            return (self.decode_current)(codec, bytes).map_err(DecodeErrorKind::Deserialize);
        }
        let no_path = || DecodeErrorKind::NoUpcaster {
            found: version,
            current: self.schema_version,
        };
        let first = self.upcasters.get(&version).ok_or_else(no_path)?;
        let mut value = (first.decode)(codec, bytes).map_err(DecodeErrorKind::Deserialize)?;
        // The chain was checked when the registry was built, so every step exists and its
        // types line up; `finish` still checks the final type rather than trusting that.
        for step in self.upcasters.range(version..self.schema_version) {
            value = (step.1.step)(value);
        }
        (self.finish)(value).ok_or_else(no_path)
    }
}

/// Maps topics to decoders for the events of `E`; built once, then read-only.
pub struct Registry<E> {
    entries: HashMap<String, Entry<E>>,
    aliases: HashMap<String, String>,
}

impl<E> fmt::Debug for Registry<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut topics: Vec<_> = self.entries.keys().collect();
        topics.sort();
        f.debug_struct("Registry")
            .field("topics", &topics)
            .field("aliases", &self.aliases)
            .finish()
    }
}

impl<E> Registry<E> {
    /// The entry that reads `topic`, following an alias.
    pub(crate) fn entry(&self, topic: &str) -> Option<&Entry<E>> {
        let topic = self.aliases.get(topic).map_or(topic, String::as_str);
        self.entries.get(topic)
    }

    /// Whether an event type or an alias reads `topic`.
    pub fn knows(&self, topic: &str) -> bool {
        self.entry(topic).is_some()
    }
}

/// Collects event types, aliases and upcasters; [`build`](Self::build) checks them.
pub(crate) struct RegistryBuilder<E> {
    entries: Vec<(String, Entry<E>)>,
    aliases: Vec<(String, String)>,
    upcasters: Vec<(String, u32, Upcaster)>,
}

impl<E> fmt::Debug for RegistryBuilder<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryBuilder").finish_non_exhaustive()
    }
}

impl<E> Default for RegistryBuilder<E> {
    fn default() -> Self {
        RegistryBuilder {
            entries: Vec::new(),
            aliases: Vec::new(),
            upcasters: Vec::new(),
        }
    }
}

impl<E: 'static> EventTypeVisitor<E> for RegistryBuilder<E> {
    fn visit<T: Event + Into<E>>(&mut self) {
        self.add_event::<T>();
    }
}

impl<E: 'static> RegistryBuilder<E> {
    pub(crate) fn add_event<T: Event + Into<E>>(&mut self) {
        self.entries.push((
            T::TOPIC.to_owned(),
            Entry {
                schema_version: T::SCHEMA_VERSION,
                decode_current: |codec, bytes| codec.decode::<T>(bytes).map(Into::into),
                current_type: TypeId::of::<T>(),
                finish: |value| value.downcast::<T>().ok().map(|t| (*t).into()),
                upcasters: BTreeMap::new(),
            },
        ));
    }

    pub(crate) fn add_alias(&mut self, old_topic: &str, topic: &str) {
        self.aliases.push((old_topic.to_owned(), topic.to_owned()));
    }

    pub(crate) fn add_upcaster<Old, New>(
        &mut self,
        topic: &str,
        from_version: u32,
        f: impl Fn(Old) -> New + Send + Sync + 'static,
    ) where
        Old: DeserializeOwned + Send + 'static,
        New: Send + 'static,
    {
        let upcaster = Upcaster {
            decode: Box::new(|codec, bytes| Ok(Box::new(codec.decode::<Old>(bytes)?) as AnyValue)),
            step: Box::new(move |value| match value.downcast::<Old>() {
                Ok(old) => Box::new(f(*old)),
                // Unreachable once the chain is checked; pass the value on so that the final
                // type check reports it instead of panicking here.
                Err(value) => value,
            }),
            input: TypeId::of::<Old>(),
            output: TypeId::of::<New>(),
        };
        self.upcasters
            .push((topic.to_owned(), from_version, upcaster));
    }

    pub(crate) fn build(self) -> Result<Registry<E>, RegistryError> {
        let mut entries = HashMap::new();
        for (topic, entry) in self.entries {
            if entries.insert(topic.clone(), entry).is_some() {
                return Err(RegistryError::DuplicateTopic(topic));
            }
        }
        for (topic, from, upcaster) in self.upcasters {
            let entry = entries
                .get_mut(&topic)
                .ok_or_else(|| RegistryError::UnknownUpcasterTopic(topic.clone()))?;
            if entry.upcasters.insert(from, upcaster).is_some() {
                return Err(RegistryError::DuplicateUpcaster { topic, from });
            }
        }
        for (topic, entry) in &entries {
            check_chain(topic, entry)?;
        }
        let mut aliases = HashMap::new();
        let mut seen = HashSet::new();
        for (alias, target) in self.aliases {
            if entries.contains_key(&alias) || !seen.insert(alias.clone()) {
                return Err(RegistryError::DuplicateTopic(alias));
            }
            if !entries.contains_key(&target) {
                return Err(RegistryError::UnknownAliasTarget { alias, target });
            }
            aliases.insert(alias, target);
        }
        Ok(Registry { entries, aliases })
    }
}

/// Every upcaster from version v must turn v's type into v+1's, ending at the current type.
fn check_chain<E>(topic: &str, entry: &Entry<E>) -> Result<(), RegistryError> {
    let broken = |from| RegistryError::BrokenUpcasterChain {
        topic: topic.to_owned(),
        from,
    };
    for (&from, upcaster) in &entry.upcasters {
        if from >= entry.schema_version {
            return Err(broken(from));
        }
        let expected_output = if from + 1 == entry.schema_version {
            entry.current_type
        } else {
            entry.upcasters.get(&(from + 1)).ok_or(broken(from))?.input
        };
        if upcaster.output != expected_output {
            return Err(broken(from));
        }
    }
    Ok(())
}
