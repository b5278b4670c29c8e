//! The application: the one write path. A command loads an aggregate (from the cache or a
//! snapshot when there is one), decides, saves through the [`Repository`] with its
//! idempotency key and metadata, retries transient failures with backoff, then tells the
//! snapshot policy and the after-commit hooks what was committed.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use lru::LruCache;
use uuid::Uuid;

use crate::aggregate::{Aggregate, Envelope, Root};
use crate::clock::{Clock, SystemClock};
use crate::error::{BoxError, CommandError, ErrorKind, LoadError, SnapshotError};
use crate::idempotency::{IdempotencyKey, PriorAppend};
use crate::item::{Select, Version};
use crate::mapper::Mapper;
use crate::metadata::Metadata;
use crate::repository::{EventStore, Repository, Saved};
use crate::store::ItemStore;

/// A boxed, sendable future: what the object-safe extension traits of this module return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where an application keeps snapshots of aggregates of type `A`, and when it takes them.
///
/// `eventsmith-snapshot` implements it on any backend's
/// [`SnapshotStore`](crate::SnapshotStore); an [`Application`] uses it through
/// [`ApplicationBuilder::snapshots`].
pub trait Snapshots<A: Aggregate>: Send + Sync + 'static {
    /// The aggregate from its latest usable snapshot at or before `until` (the latest when
    /// `None`), or `None` when there is none. A snapshot that cannot be used is skipped
    /// (`None`), unless skipping it would hide a forgery; then the load fails.
    ///
    /// Dropping the future abandons the read; nothing is written.
    fn load(
        &self,
        id: Uuid,
        until: Option<Version>,
    ) -> BoxFuture<'_, Result<Option<Root<A>>, LoadError>>;

    /// Called after a command committed the events after version `before` up to
    /// `root.version()`: writes a snapshot when the policy says so. A snapshot is an
    /// optimisation, so a failure is logged, never returned.
    ///
    /// Dropping the future abandons the snapshot; the events are committed regardless.
    fn committed<'a>(&'a self, root: &'a Root<A>, before: Version) -> BoxFuture<'a, ()>;

    /// Writes a snapshot of `root` now.
    ///
    /// Dropping the future may or may not leave the snapshot written.
    fn take<'a>(&'a self, root: &'a Root<A>) -> BoxFuture<'a, Result<(), SnapshotError>>;
}

/// Something told about every committed command, in the committing task, after the commit.
///
/// This is *at most once*: a crash or a dropped command future between the commit and the
/// call loses it, and a failure cannot undo the commit (it is logged). Effects that must
/// happen belong in followers of the stored log, not here. `eventsmith-pubsub`'s `EventBus`
/// implements it.
pub trait AfterCommit<E>: Send + Sync + 'static {
    /// Called with the events one command committed, in version order.
    ///
    /// Dropping the future abandons the call; the events are committed regardless.
    fn after_commit<'a>(&'a self, events: &'a [Envelope<E>])
    -> BoxFuture<'a, Result<(), BoxError>>;
}

/// How a command retries transient failures: a bounded number of attempts, with an
/// exponentially growing pause between them and random jitter so that racing writers drift
/// apart rather than colliding again.
///
/// Retried: a conflict (another writer saved first: the command runs again on the fresh
/// state), a busy store, and, for a command with an idempotency key only, an outcome that
/// could not be resolved (the key makes a second try safe: it finds the first if it was
/// applied). Nothing else is retried.
///
/// The default makes 20 attempts, pausing 1 ms after the first and doubling up to 200 ms,
/// each pause stretched by a random 0-100 %: 16 writers on one aggregate all get through
/// (a conformance case checks it on every backend), and a command gives up after about 5 s.
///
/// ```
/// use std::time::Duration;
/// use eventsmith_core::RetryPolicy;
/// let patient = RetryPolicy::new(50).pauses(Duration::from_millis(5), Duration::from_secs(1));
/// assert_eq!(patient.attempts(), 50);
/// assert_eq!(RetryPolicy::never().attempts(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    attempts: u32,
    first_pause: Duration,
    max_pause: Duration,
    jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 20,
            first_pause: Duration::from_millis(1),
            max_pause: Duration::from_millis(200),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// At most `attempts` attempts (at least one), with the default pauses.
    pub fn new(attempts: u32) -> Self {
        RetryPolicy {
            attempts: attempts.max(1),
            ..Self::default()
        }
    }

    /// One attempt: every failure is returned at once.
    pub fn never() -> Self {
        Self::new(1)
    }

    /// Pauses `first` after the first attempt, doubling each time up to `max`.
    pub fn pauses(mut self, first: Duration, max: Duration) -> Self {
        self.first_pause = first;
        self.max_pause = max.max(first);
        self
    }

    /// Pauses exactly as configured, without random stretching (for deterministic tests;
    /// racing writers then tend to collide again).
    pub fn without_jitter(mut self) -> Self {
        self.jitter = false;
        self
    }

    /// The most attempts a command makes.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The pauses between attempts: `attempts - 1` of them.
    pub(crate) fn pauses_between(&self) -> impl Iterator<Item = Duration> {
        let builder = ExponentialBuilder::default()
            .with_min_delay(self.first_pause)
            .with_max_delay(self.max_pause)
            .with_factor(2.0)
            .with_max_times(self.attempts as usize - 1);
        if self.jitter {
            builder.with_jitter().build()
        } else {
            builder.build()
        }
    }
}

/// An application for aggregates of type `A` on store `S`: the one way to run a command.
///
/// Built with [`Application::builder`]; cheap to clone (clones share the store, mapper,
/// snapshots and hooks).
///
/// ```
/// # use eventsmith_core::*;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
/// # pub struct Added { n: u64 }
/// # impl Event for Added { const TOPIC: &'static str = "sum.Added"; }
/// # eventsmith_core::domain_events! { pub enum SumEvent { Added(Added) } }
/// # #[derive(Default, Debug)]
/// # pub struct Sum { total: u64 }
/// # impl Aggregate for Sum {
/// #     type Event = SumEvent;
/// #     fn apply(&mut self, SumEvent::Added(e): &SumEvent) { self.total += e.n }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let mapper = doc_mapper::JsonMapper;
/// let app = Application::<Sum, _>::builder(MemoryStore::new(), mapper).build();
/// let id = uuid::Uuid::new_v4();
/// // The first command starts from `Sum::default()` and may emit any number of events.
/// let done = app.command(id, |_| Ok::<_, String>([Added { n: 1 }, Added { n: 2 }])).await?;
/// assert_eq!((done.root.version(), done.root.state().total), (2, 3));
///
/// // With an idempotency key, the same request sent twice appends once.
/// let key: IdempotencyKey = "request-17".parse()?;
/// let add = |_: &Sum| Ok::<_, String>([Added { n: 10 }]);
/// let first = app.command(id, add).idempotency_key(key.clone()).await?;
/// let again = app.command(id, add).idempotency_key(key).await?;
/// assert!(!first.replayed && again.replayed);
/// assert_eq!(app.get(id).await?.state().total, 13);
///
/// // A command that needs the aggregate to exist says so.
/// let missing = app.command(uuid::Uuid::new_v4(), add).require_existing().await;
/// assert!(matches!(missing, Err(CommandError::NotFound { .. })));
/// # Ok(()) }
/// # mod doc_mapper {
/// #   use eventsmith_core::*;
/// #   pub struct JsonMapper;
/// #   impl Mapper<super::SumEvent> for JsonMapper {
/// #     fn encode(&self, e: &Envelope<super::SumEvent>) -> Result<IntegerSequencedItem, EncodeError> {
/// #       Ok(SequencedItem { sequence_id: e.originator_id, position: e.version,
/// #         topic: e.event.topic().into(), payload: serde_json::to_vec(&e.event).unwrap() })
/// #     }
/// #     fn decode(&self, i: &IntegerSequencedItem) -> Result<Envelope<super::SumEvent>, DecodeError> {
/// #       Ok(Envelope { originator_id: i.sequence_id, version: i.position,
/// #         timestamp: time::OffsetDateTime::now_utc(), metadata: Default::default(),
/// #         event: super::SumEvent::Added(serde_json::from_slice(&i.payload).unwrap()) })
/// #     }
/// #   }
/// # }
/// ```
pub struct Application<A: Aggregate, S> {
    repository: Repository<A, S>,
    snapshots: Option<Arc<dyn Snapshots<A>>>,
    cache: Option<Arc<AggregateCache<A>>>,
    hooks: Arc<[Arc<dyn AfterCommit<A::Event>>]>,
    retry: RetryPolicy,
    clock: Arc<dyn Clock>,
}

/// The aggregates an application keeps in memory between commands
/// ([`ApplicationBuilder::cache`]), each at the version its last command committed.
struct AggregateCache<A: Aggregate> {
    roots: Mutex<LruCache<Uuid, Root<A>>>,
    /// `Root::clone`, taken where `A: Clone` is known (the builder's `cache`).
    copy: fn(&Root<A>) -> Root<A>,
}

impl<A: Aggregate> AggregateCache<A> {
    fn roots(&self) -> MutexGuard<'_, LruCache<Uuid, Root<A>>> {
        // Every critical section is a single map operation: a panic cannot leave it half-done.
        self.roots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes and returns the aggregate: a concurrent command on it (in this process) finds
    /// nothing and loads it, and one of the two gets a conflict, as without a cache.
    fn take(&self, id: Uuid) -> Option<Root<A>> {
        self.roots().pop(&id)
    }

    /// Keeps a copy of `root`, just committed, unless a later version is kept already (a
    /// command that loaded after this one's commit may have committed and kept its own
    /// first).
    fn keep(&self, root: &Root<A>) {
        let copy = (self.copy)(root);
        let mut roots = self.roots();
        if roots
            .peek(&root.id())
            .is_none_or(|kept| kept.version() < root.version())
        {
            roots.put(root.id(), copy);
        }
    }

    fn capacity(&self) -> usize {
        self.roots().cap().get()
    }
}

impl<A: Aggregate, S: Clone> Clone for Application<A, S> {
    fn clone(&self) -> Self {
        Application {
            repository: self.repository.clone(),
            snapshots: self.snapshots.clone(),
            cache: self.cache.clone(),
            hooks: self.hooks.clone(),
            retry: self.retry.clone(),
            clock: self.clock.clone(),
        }
    }
}

impl<A: Aggregate, S: fmt::Debug> fmt::Debug for Application<A, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Application")
            .field("repository", &self.repository)
            .field("snapshots", &self.snapshots.is_some())
            .field("cache_capacity", &self.cache.as_ref().map(|c| c.capacity()))
            .field("after_commit_hooks", &self.hooks.len())
            .field("retry", &self.retry)
            .field("clock", &self.clock)
            .finish()
    }
}

/// Configures an [`Application`]: snapshots, the aggregate cache, the retry policy and
/// after-commit hooks.
pub struct ApplicationBuilder<A: Aggregate, S> {
    repository: Repository<A, S>,
    snapshots: Option<Arc<dyn Snapshots<A>>>,
    cache: Option<Arc<AggregateCache<A>>>,
    hooks: Vec<Arc<dyn AfterCommit<A::Event>>>,
    retry: RetryPolicy,
    clock: Arc<dyn Clock>,
}

impl<A: Aggregate, S: fmt::Debug> fmt::Debug for ApplicationBuilder<A, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApplicationBuilder")
            .field("repository", &self.repository)
            .field("snapshots", &self.snapshots.is_some())
            .field("cache_capacity", &self.cache.as_ref().map(|c| c.capacity()))
            .field("after_commit_hooks", &self.hooks.len())
            .field("retry", &self.retry)
            .field("clock", &self.clock)
            .finish()
    }
}

impl<A: Aggregate, S: ItemStore> ApplicationBuilder<A, S> {
    /// Loads aggregates from snapshots and takes them as `snapshots` decides (for example
    /// `eventsmith_snapshot::StoredSnapshots::new(store, payloads).every(100)`).
    pub fn snapshots(mut self, snapshots: impl Snapshots<A>) -> Self {
        self.snapshots = Some(Arc::new(snapshots));
        self
    }

    /// Keeps the `capacity` aggregates most recently commanded in memory, each as its last
    /// command left it, so that the next command on one of them decides without loading it
    /// (one read fewer per command; as Akka Persistence keeps an entity's state, and Python
    /// eventsourcing's aggregate cache). Off by default. A committed command clones the
    /// aggregate once (the caller's [`Committed::root`] and the cache's copy).
    ///
    /// Nothing is committed on a stale state: the save's optimistic check refuses an
    /// aggregate another writer (another process, or another application on the same store)
    /// appended to since. Such a conflict on a cached state drops it and runs the command
    /// once more, at once, on the loaded state; that run is not counted by the retry policy,
    /// so a cache does not add conflicts to what [`RetryPolicy::never`] returns. Reads
    /// ([`Application::get`], [`Application::get_at`]) always load, and a command that fails
    /// (refused, or by the store) drops the aggregate's cached state.
    ///
    /// The cache assumes a cached aggregate's events are never removed from the store while
    /// the application runs (for example a backup restored under it): a cached state ahead
    /// of the store would append after a gap. Use it where this application (or its
    /// process) owns its aggregates' writes, and leave it off where the store is rewritten.
    pub fn cache(mut self, capacity: NonZeroUsize) -> Self
    where
        A: Clone,
    {
        self.cache = Some(Arc::new(AggregateCache {
            roots: Mutex::new(LruCache::new(capacity)),
            copy: Root::clone,
        }));
        self
    }

    /// Retries commands as `policy` says (default: [`RetryPolicy::default`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Tells `hook` about every committed command, after the commit (at most once; see
    /// [`AfterCommit`]). Hooks are called in the order they were added.
    pub fn publish_to(mut self, hook: impl AfterCommit<A::Event>) -> Self {
        self.hooks.push(Arc::new(hook));
        self
    }

    /// Stamps events with `clock`'s time (default: [`SystemClock`]); a
    /// [`ManualClock`](crate::ManualClock) makes tests and simulations repeatable.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The application.
    pub fn build(self) -> Application<A, S> {
        Application {
            repository: self.repository,
            snapshots: self.snapshots,
            cache: self.cache,
            hooks: self.hooks.into(),
            retry: self.retry,
            clock: self.clock,
        }
    }
}

/// What a command did.
#[derive(Debug)]
#[non_exhaustive]
pub struct Committed<A: Aggregate> {
    /// The aggregate just after the command's events (when `replayed`, as it was just after
    /// the first run's events, not necessarily the latest).
    pub root: Root<A>,
    /// The events the command appended, in version order (the first run's, when `replayed`;
    /// empty when the command decided that nothing happens).
    pub events: Vec<Envelope<A::Event>>,
    /// Whether the command's idempotency key had been applied before, so nothing was
    /// appended now and this is the first run's outcome.
    pub replayed: bool,
}

impl<A: Aggregate, S: ItemStore> Application<A, S> {
    /// Starts building an application over an item store and a mapper.
    pub fn builder(store: S, mapper: impl Mapper<A::Event>) -> ApplicationBuilder<A, S> {
        Self::builder_with(Repository::new(EventStore::new(store, mapper)))
    }

    /// Starts building an application over a repository (for a mapper shared with other
    /// applications: [`EventStore::with_shared_mapper`]).
    pub fn builder_with(repository: Repository<A, S>) -> ApplicationBuilder<A, S> {
        ApplicationBuilder {
            repository,
            snapshots: None,
            cache: None,
            hooks: Vec::new(),
            retry: RetryPolicy::default(),
            clock: Arc::new(SystemClock),
        }
    }

    /// The repository: reads and the single save every command goes through.
    pub fn repository(&self) -> &Repository<A, S> {
        &self.repository
    }

    /// The time on the application's clock, as events are stamped with it.
    pub(crate) fn now(&self) -> time::OffsetDateTime {
        self.clock.now().to_datetime()
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// A command on aggregate `id`: `decide` looks at the state and returns the events that
    /// happen (any number, or none) or the domain's reason to refuse. Configure it with
    /// [`Command::idempotency_key`], [`Command::metadata`] and [`Command::require_existing`],
    /// then `.await` it.
    ///
    /// An aggregate without events starts from `A::default()`, so the first command creates
    /// it. `decide` runs again on fresh state after a conflict, so it must not have side
    /// effects.
    pub fn command<D, I, E>(&self, id: Uuid, decide: D) -> Command<'_, A, S, D>
    where
        // Bounded here, not only where the command is awaited, so that a closure's argument
        // is inferred as `&A` for every lifetime.
        D: Fn(&A) -> Result<I, E> + Send + Sync,
        I: IntoIterator,
        I::Item: Into<A::Event>,
    {
        Command {
            app: self,
            id,
            decide,
            key: None,
            metadata: Metadata::default(),
            require_existing: false,
        }
    }

    /// The aggregate at its latest version, from its latest snapshot when snapshots are
    /// configured.
    ///
    /// Fails with [`LoadError::NotFound`] when it has no events and [`LoadError::Discarded`]
    /// when it was discarded. Dropping the future abandons the read.
    pub async fn get(&self, id: Uuid) -> Result<Root<A>, LoadError> {
        live(id, self.load(id, None).await?)
    }

    /// The aggregate as it was at `version`. Dropping the future abandons the read.
    pub async fn get_at(&self, id: Uuid, version: Version) -> Result<Root<A>, LoadError> {
        live(id, self.load(id, Some(version)).await?)
    }

    /// Takes a snapshot of the aggregate's latest version now; returns that version.
    ///
    /// Dropping the future may or may not leave the snapshot written.
    pub async fn take_snapshot(&self, id: Uuid) -> Result<Version, SnapshotError> {
        let snapshots = self
            .snapshots
            .as_ref()
            .ok_or(SnapshotError::NotConfigured)?;
        let root = self.get(id).await.map_err(SnapshotError::Load)?;
        snapshots.take(&root).await?;
        Ok(root.version())
    }

    pub(crate) async fn load(
        &self,
        id: Uuid,
        until: Option<Version>,
    ) -> Result<Option<Root<A>>, LoadError> {
        let start = match &self.snapshots {
            Some(snapshots) => snapshots.load(id, until).await?,
            None => None,
        };
        self.repository.replay_from(id, start, until).await
    }

    /// One load-decide-save cycle, and the one at once after it when a cached state was
    /// stale.
    async fn attempt<I, E>(
        &self,
        command: &Command<'_, A, S, impl Fn(&A) -> Result<I, E>>,
    ) -> Result<Committed<A>, CommandError<E>>
    where
        I: IntoIterator,
        I::Item: Into<A::Event>,
    {
        match self.attempt_on(command, true).await {
            // Another writer appended since the cached state: not a race this command lost
            // but the cache's, so not the retry policy's to count.
            (Err(e), true) if e.kind() == ErrorKind::Conflict => {
                self.attempt_on(command, false).await.0
            }
            (outcome, _) => outcome,
        }
    }

    /// One load-decide-save cycle, on the cached state when `use_cache` and there is one;
    /// says whether it was.
    async fn attempt_on<I, E>(
        &self,
        command: &Command<'_, A, S, impl Fn(&A) -> Result<I, E>>,
        use_cache: bool,
    ) -> (Result<Committed<A>, CommandError<E>>, bool)
    where
        I: IntoIterator,
        I::Item: Into<A::Event>,
    {
        let id = command.id;
        if let Some(key) = &command.key {
            // Checked before deciding: a replayed request must get its first outcome, not a
            // decision on today's state.
            let store = self.repository.event_store().store();
            match store.find_key(id, key).await {
                Ok(Some(prior)) => return (self.replay(prior).await.map_err(Into::into), false),
                Ok(None) => {}
                Err(e) => return (Err(LoadError::Store(e).into()), false),
            }
        }
        let cached = match &self.cache {
            Some(cache) if use_cache => cache.take(id),
            _ => None,
        };
        let from_cache = cached.is_some();
        let outcome = async {
            let mut root = match cached {
                Some(root) => root,
                None => match self.load(id, None).await? {
                    Some(root) => root,
                    None if command.require_existing => return Err(CommandError::NotFound { id }),
                    None => Root::empty(id, self.now()),
                },
            };
            let before = root.version();
            root.execute_at(self.now(), &command.decide)?;
            root.stamp_pending(0, &command.metadata);
            let events = match &command.key {
                None => self.repository.save(&mut root).await?,
                Some(key) => match self.repository.save_with_key(&mut root, key).await? {
                    Saved::Committed(events) => events,
                    // A concurrent run of the same request committed between the check and now.
                    Saved::AlreadyApplied(prior) => return Ok(self.replay(prior).await?),
                },
            };
            if let Some(cache) = &self.cache
                && root.version() > 0
            {
                cache.keep(&root);
            }
            self.committed(&root, before, &events).await;
            Ok(Committed {
                root,
                events,
                replayed: false,
            })
        }
        .await;
        (outcome, from_cache)
    }

    /// Tells the snapshot policy and the after-commit hooks that `events` (the versions after
    /// `before` of `root`) were committed.
    pub(crate) async fn committed(
        &self,
        root: &Root<A>,
        before: Version,
        events: &[Envelope<A::Event>],
    ) {
        if events.is_empty() {
            return;
        }
        if let Some(snapshots) = &self.snapshots {
            snapshots.committed(root, before).await;
        }
        for hook in self.hooks.iter() {
            if let Err(error) = hook.after_commit(events).await {
                tracing::warn!(aggregate = %root.id(), version = root.version(), %error, "after-commit hook failed; the events are committed");
            }
        }
    }

    /// The outcome of the first run of a request whose key is stored.
    async fn replay(&self, prior: PriorAppend) -> Result<Committed<A>, LoadError> {
        let id = prior.sequence_id;
        let (first, last) = (*prior.versions.start(), *prior.versions.end());
        let root = self
            .load(id, Some(last))
            .await?
            .ok_or(LoadError::NotFound { id })?;
        let query = Select::all().gte(first).lte(last);
        let events = self.repository.event_store().load(id, &query).await?;
        Ok(Committed {
            root,
            events,
            replayed: true,
        })
    }
}

fn live<A: Aggregate>(id: Uuid, root: Option<Root<A>>) -> Result<Root<A>, LoadError> {
    match root {
        None => Err(LoadError::NotFound { id }),
        Some(root) if root.is_discarded() => Err(LoadError::Discarded { id }),
        Some(root) => Ok(root),
    }
}

/// A command being configured; `.await` runs it. Made by [`Application::command`].
///
/// Awaiting it loads, decides and saves, retrying as the application's [`RetryPolicy`] says,
/// and returns what was [`Committed`]. If the future is dropped, the command stops at its
/// next suspension point: before the save nothing is written; during the save the events
/// may still be committed (with the idempotency key, if one was given: sending the command
/// again with the same key then returns that outcome without appending again); after the
/// save the snapshot and the after-commit hooks may not run.
#[must_use = "a command does nothing until it is awaited"]
pub struct Command<'a, A: Aggregate, S, D> {
    app: &'a Application<A, S>,
    id: Uuid,
    decide: D,
    key: Option<IdempotencyKey>,
    metadata: Metadata,
    require_existing: bool,
}

impl<A: Aggregate, S, D> fmt::Debug for Command<'_, A, S, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Command")
            .field("id", &self.id)
            .field("key", &self.key)
            .field("metadata", &self.metadata)
            .field("require_existing", &self.require_existing)
            .finish_non_exhaustive()
    }
}

impl<A: Aggregate, S, D> Command<'_, A, S, D> {
    /// Makes the command idempotent under `key` (a client's request id): the key is stored
    /// atomically with the events the command appends, and the same key sent again for this
    /// aggregate returns that first outcome ([`Committed::replayed`]) without deciding or
    /// appending again. A command that appends nothing or is rejected stores no key.
    ///
    /// Unless the metadata says otherwise, the key becomes the events' causation id and,
    /// through it, their correlation id.
    pub fn idempotency_key(mut self, key: IdempotencyKey) -> Self {
        self.key = Some(key);
        self
    }

    /// Stores `metadata` with every event the command appends (limits:
    /// [`Metadata::check`]; a breach fails the save with an encode error).
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Fails with [`CommandError::NotFound`] when the aggregate has no events, instead of
    /// starting from its default state.
    pub fn require_existing(mut self) -> Self {
        self.require_existing = true;
        self
    }
}

impl<'a, A, S, D, I, E> IntoFuture for Command<'a, A, S, D>
where
    A: Aggregate,
    S: ItemStore,
    D: Fn(&A) -> Result<I, E> + Send + Sync + 'a,
    I: IntoIterator,
    I::Item: Into<A::Event>,
    E: Send + 'a,
{
    type Output = Result<Committed<A>, CommandError<E>>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(mut self) -> Self::IntoFuture {
        if let Some(key) = &self.key {
            let metadata = &mut self.metadata;
            if metadata.causation_id.is_none() {
                metadata.causation_id = Some(key.to_string());
            }
            if metadata.correlation_id.is_none() {
                metadata.correlation_id.clone_from(&metadata.causation_id);
            }
        }
        Box::pin(async move {
            let mut pauses = self.app.retry.pauses_between();
            loop {
                match self.app.attempt(&self).await {
                    Err(e) if worth_retrying(&e, self.key.is_some()) => match pauses.next() {
                        Some(pause) => tokio::time::sleep(pause).await,
                        None => return Err(e),
                    },
                    outcome => return outcome,
                }
            }
        })
    }
}

/// Whether another attempt may succeed and is safe, by the error's kind: a conflict re-runs
/// the command on the state the other writer left; a busy or unavailable store is tried
/// again; an unknown outcome only under an idempotency key, which finds the first attempt if
/// it was applied. Everything else (a full disk, a rejection, corrupt data) fails at once.
fn worth_retrying<E>(e: &CommandError<E>, keyed: bool) -> bool {
    match e.kind() {
        ErrorKind::Conflict | ErrorKind::Busy | ErrorKind::Unavailable => true,
        ErrorKind::OutcomeUnknown => keyed,
        _ => false,
    }
}
