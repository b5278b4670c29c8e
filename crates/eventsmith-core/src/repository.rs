//! The event store (mapper + item store), the repository of aggregates, and the application
//! object with its retrying command helper.

use std::ops::Range;
use std::sync::Arc;

use uuid::Uuid;

use crate::aggregate::{Aggregate, DomainEvent, Envelope, Root};
use crate::error::{CommandError, LoadError, SaveError};
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
    pub async fn append(&self, events: &[Envelope<E>]) -> Result<Range<u64>, SaveError> {
        let items = events
            .iter()
            .map(|e| self.mapper.encode(e))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.store.append(items).await?)
    }

    /// Loads and decodes the events of one aggregate within the query's bounds.
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
    pub async fn get(&self, id: Uuid) -> Result<Root<A>, LoadError> {
        self.load(id, Select::all()).await
    }

    /// The aggregate as it was at `version`.
    pub async fn get_at(&self, id: Uuid, version: Version) -> Result<Root<A>, LoadError> {
        self.load(id, Select::all().lte(version)).await
    }

    /// Replays the given events on top of `start`, then checks the result is live.
    /// Snapshotting repositories call this with a state loaded from a snapshot.
    pub async fn load_from(
        &self,
        id: Uuid,
        start: Option<Root<A>>,
        until: Option<Version>,
    ) -> Result<Root<A>, LoadError> {
        let mut query = Select::all();
        if let Some(start) = &start {
            query = query.gt(start.version());
        }
        if let Some(until) = until {
            query = query.lte(until);
        }
        let events = self.events.load(id, &query).await?;
        let root = Root::replay(start, events)?.ok_or(LoadError::NotFound { id })?;
        if root.is_discarded() {
            return Err(LoadError::Discarded { id });
        }
        Ok(root)
    }

    async fn load(&self, id: Uuid, query: Select<Version>) -> Result<Root<A>, LoadError> {
        self.load_from(id, None, query.lte).await
    }

    /// Whether the aggregate exists and is not discarded. Reads only its latest event.
    pub async fn contains(&self, id: Uuid) -> Result<bool, LoadError> {
        match self.events.store().latest(id).await? {
            None => Ok(false),
            Some(item) => Ok(!self.events.mapper().decode(&item)?.event.is_discard()),
        }
    }

    /// Appends every pending event of the aggregate in one atomic batch. On success the
    /// events are no longer pending and are returned (for publishing); on failure nothing was
    /// written and they stay pending.
    pub async fn save(&self, root: &mut Root<A>) -> Result<Vec<Envelope<A::Event>>, SaveError> {
        if root.pending().is_empty() {
            return Ok(Vec::new());
        }
        self.events.append(root.pending()).await?;
        Ok(root.commit_pending())
    }
}

/// How many times [`Application::command`] runs a load-decide-save cycle before it gives up
/// on conflicts.
pub const DEFAULT_COMMAND_ATTEMPTS: usize = 5;

/// An application: a repository plus the command cycle that keeps aggregates consistent
/// under concurrent writers.
pub struct Application<A: Aggregate, S> {
    repository: Repository<A, S>,
    attempts: usize,
}

impl<A: Aggregate, S: Clone> Clone for Application<A, S> {
    fn clone(&self) -> Self {
        Application {
            repository: self.repository.clone(),
            attempts: self.attempts,
        }
    }
}

impl<A: Aggregate, S: std::fmt::Debug> std::fmt::Debug for Application<A, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("repository", &self.repository)
            .field("attempts", &self.attempts)
            .finish()
    }
}

impl<A: Aggregate, S: ItemStore> Application<A, S> {
    /// An application over an item store and a mapper.
    pub fn new(store: S, mapper: impl Mapper<A::Event>) -> Self {
        Application {
            repository: Repository::new(EventStore::new(store, mapper)),
            attempts: DEFAULT_COMMAND_ATTEMPTS,
        }
    }

    /// Sets how many load-decide-save cycles a command may run (at least one).
    pub fn with_command_attempts(mut self, attempts: usize) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// The repository.
    pub fn repository(&self) -> &Repository<A, S> {
        &self.repository
    }

    /// Creates and saves a new aggregate from its first event.
    pub async fn create(&self, id: Uuid, event: impl Into<A::Event>) -> Result<Root<A>, SaveError> {
        let mut root = Root::create(id, event);
        self.repository.save(&mut root).await?;
        Ok(root)
    }

    /// Loads the aggregate, runs `decide` on its state and saves the events it returns.
    /// When another writer saved first, the cycle runs again on the fresh state, up to the
    /// configured number of attempts; then the last conflict is returned.
    pub async fn command<I, E, F>(&self, id: Uuid, decide: F) -> Result<Root<A>, CommandError<E>>
    where
        F: Fn(&A) -> Result<I, E> + Send + Sync,
        I: IntoIterator,
        I::Item: Into<A::Event>,
        E: Send,
    {
        let mut attempt = 1;
        loop {
            let mut root = self.repository.get(id).await?;
            root.execute(&decide)?;
            match self.repository.save(&mut root).await {
                Ok(_) => return Ok(root),
                Err(SaveError::Conflict { .. }) if attempt < self.attempts => attempt += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }
}
