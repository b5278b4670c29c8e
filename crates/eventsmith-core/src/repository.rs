//! The event store (mapper + item store) and the repository of aggregates: the one place
//! that saves an aggregate's pending events.

use std::ops::Range;
use std::sync::Arc;

use uuid::Uuid;

use crate::aggregate::{Aggregate, DomainEvent, Envelope, Root};
use crate::error::{LoadError, SaveError};
use crate::idempotency::{IdempotencyKey, KeyedAppend, PriorAppend};
use crate::item::{Select, Version};
use crate::mapper::Mapper;
use crate::store::ItemStore;

/// Domain events over an item store: encodes on append, decodes on load.
pub struct EventStore<E, S> {
    store: S,
    mapper: Arc<dyn Mapper<E>>,
}

impl<E, S: Clone> Clone for EventStore<E, S> {
    fn clone(&self) -> Self {
        EventStore {
            store: self.store.clone(),
            mapper: Arc::clone(&self.mapper),
        }
    }
}

impl<E, S: std::fmt::Debug> std::fmt::Debug for EventStore<E, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStore")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl<E: DomainEvent, S: ItemStore> EventStore<E, S> {
    /// Combines an item store with a mapper.
    pub fn new(store: S, mapper: impl Mapper<E>) -> Self {
        Self::with_shared_mapper(store, Arc::new(mapper))
    }

    /// Combines an item store with a mapper shared with other parts of the application.
    pub fn with_shared_mapper(store: S, mapper: Arc<dyn Mapper<E>>) -> Self {
        EventStore { store, mapper }
    }

    /// The item store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The mapper.
    pub fn mapper(&self) -> &Arc<dyn Mapper<E>> {
        &self.mapper
    }

    /// Encodes every event, then appends them as one atomic batch; returns their
    /// notification ids. An encoding failure writes nothing.
    ///
    /// Dropping the future does not undo the append: it may still commit, as for
    /// [`ItemStore::append`].
    pub async fn append(&self, events: &[Envelope<E>]) -> Result<Range<u64>, SaveError> {
        self.prepare(events).await?;
        let items = events
            .iter()
            .map(|e| self.mapper.encode(e))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.store.append(items).await?)
    }

    /// Like [`append`](Self::append), with the idempotency key stored in the same atomic
    /// write: when the key was used before for the aggregate, nothing is written and the
    /// earlier append is returned.
    ///
    /// Dropping the future is as for [`ItemStore::append_with_key`]: the append may still
    /// commit, and a retry with the same key then finds it.
    pub async fn append_with_key(
        &self,
        events: &[Envelope<E>],
        key: &IdempotencyKey,
    ) -> Result<KeyedAppend, SaveError> {
        self.prepare(events).await?;
        let items = events
            .iter()
            .map(|e| self.mapper.encode(e))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.store.append_with_key(items, key).await?)
    }

    /// Runs the I/O encoding `events` needs ([`Mapper::prepare`]: a new aggregate's key,
    /// say) before they are encoded, so that none runs inside the synchronous encode.
    async fn prepare(&self, events: &[Envelope<E>]) -> Result<(), crate::EncodeError> {
        for event in events {
            if let Some(ready) = self.mapper.prepare(event) {
                ready.await?;
            }
        }
        Ok(())
    }

    /// Loads and decodes the events of one aggregate within the query's bounds.
    ///
    /// Dropping the future abandons the read; nothing is written.
    pub async fn load(
        &self,
        originator_id: Uuid,
        query: &Select<Version>,
    ) -> Result<Vec<Envelope<E>>, LoadError> {
        let items = self.store.select(originator_id, query).await?;
        Ok(items
            .iter()
            .map(|item| self.mapper.decode(item))
            .collect::<Result<Vec<_>, _>>()?)
    }
}

/// Loads and saves aggregates of one type.
pub struct Repository<A: Aggregate, S> {
    events: EventStore<A::Event, S>,
}

impl<A: Aggregate, S: Clone> Clone for Repository<A, S> {
    fn clone(&self) -> Self {
        Repository {
            events: self.events.clone(),
        }
    }
}

impl<A: Aggregate, S: std::fmt::Debug> std::fmt::Debug for Repository<A, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("events", &self.events)
            .finish()
    }
}

impl<A: Aggregate, S: ItemStore> Repository<A, S> {
    /// A repository over an event store.
    pub fn new(events: EventStore<A::Event, S>) -> Self {
        Repository { events }
    }

    /// The event store.
    pub fn event_store(&self) -> &EventStore<A::Event, S> {
        &self.events
    }

    /// The aggregate at its latest version.
    ///
    /// Fails with [`LoadError::NotFound`] when it has no events and
    /// [`LoadError::Discarded`] when it was discarded.
    ///
    /// Dropping the future abandons the read; nothing is written.
    pub async fn get(&self, id: Uuid) -> Result<Root<A>, LoadError> {
        self.load(id, Select::all()).await
    }

    /// The aggregate as it was at `version`.
    ///
    /// Dropping the future abandons the read; nothing is written.
    pub async fn get_at(&self, id: Uuid, version: Version) -> Result<Root<A>, LoadError> {
        self.load(id, Select::all().lte(version)).await
    }

    /// Replays the given events on top of `start`, then checks the result is live.
    /// Snapshotting repositories call this with a state loaded from a snapshot.
    ///
    /// Dropping the future abandons the read; nothing is written.
    pub async fn load_from(
        &self,
        id: Uuid,
        start: Option<Root<A>>,
        until: Option<Version>,
    ) -> Result<Root<A>, LoadError> {
        let root = self
            .replay_from(id, start, until)
            .await?
            .ok_or(LoadError::NotFound { id })?;
        if root.is_discarded() {
            return Err(LoadError::Discarded { id });
        }
        Ok(root)
    }

    /// Replays the events after `start` (all of them without a start) up to `until` on top of
    /// it. `None` when there is neither a start nor an event; a discarded aggregate is
    /// returned as such.
    ///
    /// Dropping the future abandons the read; nothing is written.
    pub async fn replay_from(
        &self,
        id: Uuid,
        start: Option<Root<A>>,
        until: Option<Version>,
    ) -> Result<Option<Root<A>>, LoadError> {
        let mut query = Select::all();
        if let Some(start) = &start {
            query = query.gt(start.version());
        }
        if let Some(until) = until {
            query = query.lte(until);
        }
        let events = self.events.load(id, &query).await?;
        Ok(Root::replay(start, events)?)
    }

    async fn load(&self, id: Uuid, query: Select<Version>) -> Result<Root<A>, LoadError> {
        self.load_from(id, None, query.lte).await
    }

    /// Whether the aggregate exists and is not discarded. Reads only its latest event.
    ///
    /// Dropping the future abandons the read; nothing is written.
    pub async fn contains(&self, id: Uuid) -> Result<bool, LoadError> {
        match self.events.store().latest(id).await? {
            None => Ok(false),
            Some(item) => Ok(!self.events.mapper().decode(&item)?.event.is_discard()),
        }
    }

    /// Appends every pending event of the aggregate in one atomic batch. On success the
    /// events are no longer pending and are returned (for publishing); on failure nothing was
    /// written and they stay pending.
    ///
    /// If the future is dropped, the append may still be committed (see the backend's
    /// cancellation notes); the events then stay pending here, and saving them again is a
    /// conflict.
    pub async fn save(&self, root: &mut Root<A>) -> Result<Vec<Envelope<A::Event>>, SaveError> {
        if !root.pending().is_empty() {
            self.events.append(root.pending()).await?;
        }
        Ok(root.commit_pending())
    }

    /// Like [`save`](Self::save), with `key` stored atomically with the events. When the key
    /// was used before for this aggregate, nothing is written, the events stay pending, and
    /// what the first save under the key wrote is returned.
    ///
    /// If the future is dropped, the append may still be committed with its key; a later
    /// save under the same key then reports it as already applied.
    pub async fn save_with_key(
        &self,
        root: &mut Root<A>,
        key: &IdempotencyKey,
    ) -> Result<Saved<A::Event>, SaveError> {
        if !root.pending().is_empty()
            && let KeyedAppend::AlreadyApplied(prior) =
                self.events.append_with_key(root.pending(), key).await?
        {
            return Ok(Saved::AlreadyApplied(prior));
        }
        Ok(Saved::Committed(root.commit_pending()))
    }
}

/// What [`Repository::save_with_key`] did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Saved<E> {
    /// The pending events were committed (with the key); these are they.
    Committed(Vec<Envelope<E>>),
    /// The key was used before: nothing was written. This is what the first save wrote.
    AlreadyApplied(PriorAppend),
}
