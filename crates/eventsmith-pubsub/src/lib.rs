//! Synchronous, deterministic publish-subscribe for eventsmith, and the persistence policy.
//! (Projections and process applications follow the stored log instead: `Follower`,
//! `Runner` and `Process` in eventsmith-core.)
//!
//! - [`EventBus`]: handlers subscribe to every event, to topics, or to a predicate, and are
//!   called in registration order; [`EventBus::publish`] returns only after every handler
//!   returned. Handlers are async functions, awaited one after the other.
//! - the bus is an application's after-commit hook: `Application::builder(..).publish_to(bus)`
//!   publishes what each command committed, after the commit (never before), at most once.
//! - [`PersistencePolicy`]: the classic design where entities publish and a policy persists:
//!   a subscriber that appends the events it receives to an event store.
//!
//! # When a handler fails
//!
//! Publishing happens after the commit, so a failing handler cannot undo it: the events are
//! stored, and the caller learns which handlers failed from [`PublishError`]. The remaining
//! handlers are still called, in order: one handler's failure does not starve the others (a
//! handler that must not run after another failed should check for itself). Handlers that
//! need every event exactly once should be followers of the notification log (eventsmith-core's
//! `Follower` and `Runner`), which resume from their tracking record after a failure.
//!
//! ```
//! use eventsmith_core::{Envelope, Event};
//! use eventsmith_pubsub::EventBus;
//! use std::sync::{Arc, Mutex};
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
//! # pub struct Rang;
//! # impl Event for Rang { const TOPIC: &'static str = "bell.Rang"; }
//! # eventsmith_core::domain_events! { pub enum BellEvent { Rang(Rang) } }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let bus = EventBus::<BellEvent>::new();
//! let heard = Arc::new(Mutex::new(0));
//! let h = heard.clone();
//! bus.subscribe_topics(&["bell.Rang"], move |events| {
//!     *h.lock().unwrap() += events.len();
//!     async { Ok(()) }
//! });
//! let event = Envelope { originator_id: uuid::Uuid::nil(), version: 1, timestamp: time::OffsetDateTime::UNIX_EPOCH, metadata: Default::default(), event: Rang.into() };
//! bus.publish(&[event]).await.unwrap();
//! assert_eq!(*heard.lock().unwrap(), 1);
//! # }
//! ```

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use eventsmith_core::{
    AfterCommit, BoxError, BoxFuture, DomainEvent, Envelope, EventStore, ItemStore,
};

type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;
type Handler<E> = Arc<dyn Fn(Vec<Envelope<E>>) -> HandlerFuture + Send + Sync>;
type Predicate<E> = Arc<dyn Fn(&Envelope<E>) -> bool + Send + Sync>;

/// Identifies a subscription, to unsubscribe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriptionId(u64);

enum Filter<E> {
    All,
    Topics(HashSet<String>),
    Where(Predicate<E>),
}

impl<E: DomainEvent> Filter<E> {
    fn accepts(&self, e: &Envelope<E>) -> bool {
        match self {
            Filter::All => true,
            Filter::Topics(topics) => topics.contains(e.event.topic()),
            Filter::Where(predicate) => predicate(e),
        }
    }
}

struct Subscription<E> {
    id: SubscriptionId,
    filter: Arc<Filter<E>>,
    handler: Handler<E>,
}

impl<E> Clone for Subscription<E> {
    fn clone(&self) -> Self {
        Subscription {
            id: self.id,
            filter: self.filter.clone(),
            handler: self.handler.clone(),
        }
    }
}

/// A publish-subscribe channel for the events of one aggregate type. Clones share subscribers.
pub struct EventBus<E> {
    subscriptions: Arc<RwLock<Vec<Subscription<E>>>>,
    next_id: Arc<AtomicU64>,
}

impl<E> Clone for EventBus<E> {
    fn clone(&self) -> Self {
        EventBus {
            subscriptions: self.subscriptions.clone(),
            next_id: self.next_id.clone(),
        }
    }
}

impl<E> fmt::Debug for EventBus<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.subscriptions.read().map(|s| s.len()).unwrap_or(0);
        f.debug_struct("EventBus")
            .field("subscriptions", &n)
            .finish()
    }
}

impl<E: DomainEvent> Default for EventBus<E> {
    fn default() -> Self {
        Self::new()
    }
}

/// Handlers that failed during one [`EventBus::publish`]; the events were committed anyway.
#[derive(Debug)]
pub struct PublishError {
    /// Each failed subscription and its error, in the order they were called.
    pub failures: Vec<(SubscriptionId, BoxError)>,
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} subscriber(s) failed:", self.failures.len())?;
        for (id, e) in &self.failures {
            write!(f, " [subscription {}: {e}]", id.0)?;
        }
        Ok(())
    }
}

impl std::error::Error for PublishError {
    /// The first failure (the others are in [`failures`](Self::failures)).
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.failures
            .first()
            .map(|(_, e)| &**e as &(dyn std::error::Error + 'static))
    }
}

impl<E: DomainEvent> EventBus<E> {
    /// A bus without subscribers.
    pub fn new() -> Self {
        EventBus {
            subscriptions: Arc::new(RwLock::new(Vec::new())),
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }

    fn add<F, Fut>(&self, filter: Filter<E>, handler: F) -> SubscriptionId
    where
        F: Fn(Vec<Envelope<E>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        let id = SubscriptionId(self.next_id.fetch_add(1, Ordering::SeqCst));
        let handler: Handler<E> = Arc::new(move |events| Box::pin(handler(events)));
        self.subscriptions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Subscription {
                id,
                filter: Arc::new(filter),
                handler,
            });
        id
    }

    /// Subscribes `handler` to every event. It receives the events of one publish together.
    pub fn subscribe_all<F, Fut>(&self, handler: F) -> SubscriptionId
    where
        F: Fn(Vec<Envelope<E>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.add(Filter::All, handler)
    }

    /// Subscribes `handler` to events of these topics.
    pub fn subscribe_topics<F, Fut>(&self, topics: &[&str], handler: F) -> SubscriptionId
    where
        F: Fn(Vec<Envelope<E>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.add(
            Filter::Topics(topics.iter().map(|t| (*t).to_owned()).collect()),
            handler,
        )
    }

    /// Subscribes `handler` to the events `predicate` accepts.
    pub fn subscribe_where<F, Fut>(
        &self,
        predicate: impl Fn(&Envelope<E>) -> bool + Send + Sync + 'static,
        handler: F,
    ) -> SubscriptionId
    where
        F: Fn(Vec<Envelope<E>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.add(Filter::Where(Arc::new(predicate)), handler)
    }

    /// Removes a subscription; returns whether it existed. A publish already under way still
    /// calls it.
    pub fn unsubscribe(&self, id: SubscriptionId) -> bool {
        let mut subs = self
            .subscriptions
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let before = subs.len();
        subs.retain(|s| s.id != id);
        subs.len() != before
    }

    /// Calls every subscriber whose filter accepts any of `events`, in registration order,
    /// each with the accepted events, and returns once all have returned. Failures do not stop
    /// the others; they are returned together.
    ///
    /// Dropping the future stops the calls part-way: subscribers already called keep what they
    /// did, later ones are not called (publication is at most once; effects that must happen
    /// follow the stored log).
    pub async fn publish(&self, events: &[Envelope<E>]) -> Result<(), PublishError> {
        // Copy the list so that no lock is held while handlers run (they may subscribe).
        let subscriptions = self
            .subscriptions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut failures = Vec::new();
        for sub in subscriptions {
            let accepted: Vec<Envelope<E>> = events
                .iter()
                .filter(|e| sub.filter.accepts(e))
                .cloned()
                .collect();
            if accepted.is_empty() {
                continue;
            }
            if let Err(e) = (sub.handler)(accepted).await {
                failures.push((sub.id, e));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(PublishError { failures })
        }
    }
}

/// The bus as an application's after-commit hook
/// ([`ApplicationBuilder::publish_to`](eventsmith_core::ApplicationBuilder::publish_to)):
/// every committed command is published, after its commit. At most once: a crash between
/// the commit and the publish loses it, and a subscriber's failure is logged by the
/// application, not returned to the command.
impl<E: DomainEvent> AfterCommit<E> for EventBus<E> {
    fn after_commit<'a>(
        &'a self,
        events: &'a [Envelope<E>],
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move { self.publish(events).await.map_err(BoxError::from) })
    }
}

/// The persistence policy: subscribed to a bus, it appends the events it receives to an event
/// store, as one atomic batch per publish.
#[derive(Debug)]
pub struct PersistencePolicy;

impl PersistencePolicy {
    /// Subscribes a policy persisting every event published on `bus` (or only `topics`, when
    /// not empty) to `events`.
    pub fn subscribe<E: DomainEvent, S: ItemStore>(
        bus: &EventBus<E>,
        events: EventStore<E, S>,
        topics: &[&str],
    ) -> SubscriptionId {
        let handler = move |batch: Vec<Envelope<E>>| {
            let events = events.clone();
            async move {
                events
                    .append(&batch)
                    .await
                    .map(|_| ())
                    .map_err(|e| Box::new(e) as BoxError)
            }
        };
        if topics.is_empty() {
            bus.subscribe_all(handler)
        } else {
            bus.subscribe_topics(topics, handler)
        }
    }
}
