//! After the commit: followers of the notification log, the runner that drives them, and
//! process applications, whose emitted events and tracking record commit together.
//!
//! One contract, two deliveries, chosen by the store ([`ItemStore::delivery`]):
//!
//! - [`Delivery::Transactional`]: a [`Follower`] reads the notification log after its
//!   recorded position, handles a page ([`Follower::handle`]) and records the page's last id
//!   as its new position atomically with its output: each page applied exactly once.
//! - [`Delivery::Idempotent`]: a follower reads each slice of the store's feed after the
//!   position saved for it, handles the page ([`Follower::handle_feed`]), and the position is
//!   saved after: at least once, so effects are keyed by (sequence id, version).
//!
//! [`catch_up`] feeds a follower until it is level with the log or feed; a [`Runner`] does
//! that for several followers and then follows live, woken at once by commits made through
//! this process ([`Runner::waker`]) and by polling for commits made elsewhere. Runners of
//! one follower on a feed share its slices, one lease per slice.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};
use uuid::Uuid;

use crate::aggregate::{Aggregate, Envelope, Root};
use crate::application::{AfterCommit, Application, BoxFuture};
use crate::error::{AppendError, BoxError, CommandError, DecodeErrorKind, LoadError, StoreError};
use crate::idempotency::{IdempotencyKey, KeyedAppend};
use crate::item::{IntegerSequencedItem, Notification, Version};
use crate::mapper::Mapper;
use crate::metadata::Metadata;
use crate::store::{Delivery, FeedPage, ItemStore, Lease, LeaseClaim, Tracking};

/// Why a follower did not apply a page.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FollowError {
    /// The follower's recorded position is no longer where its page was read from: another
    /// runner of the follower applied it first. Nothing of the page was applied.
    #[error("follower {follower:?} is at {found}, not {expected}: another runner applied the page")]
    Moved {
        /// The follower.
        follower: String,
        /// The position the page was read from.
        expected: u64,
        /// The position recorded now.
        found: u64,
    },
    /// Reading the log or writing the page failed.
    #[error("follower store failed: {0}")]
    Store(#[from] StoreError),
    /// Writing the page's output failed (for a process application, the last conflict when
    /// conflicts outlasted its retry policy). Nothing of the page was applied.
    #[error("cannot write the page: {0}")]
    Append(#[source] AppendError),
    /// The follower's handler failed on a notification; nothing of the page was applied.
    #[error("follower {follower:?} failed at notification {id}: {source}")]
    Handler {
        /// The follower.
        follower: String,
        /// The notification it failed on.
        id: u64,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// The follower failed on an item of a feed page; the slice's position was not saved, so
    /// the page is delivered again (what was applied before the failure is applied again, and
    /// must be idempotent).
    #[error(
        "follower {follower:?} failed at {sequence_id} version {version} of the feed: {source}"
    )]
    FeedHandler {
        /// The follower.
        follower: String,
        /// The item's sequence.
        sequence_id: Uuid,
        /// The item's position in it.
        version: Version,
        /// Why.
        #[source]
        source: BoxError,
    },
}

impl From<AppendError> for FollowError {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::TrackingMoved {
                follower,
                expected,
                found,
            } => FollowError::Moved {
                follower,
                expected,
                found,
            },
            AppendError::Store(e) => FollowError::Store(e),
            other => FollowError::Append(other),
        }
    }
}

/// A follower of a store's notification log: a projection, a process application, an
/// integration that forwards events elsewhere.
///
/// The contract: [`handle`](Self::handle) gets the notifications after `from` (the position
/// the follower had recorded when the page was read), in id order, and must apply them and
/// record the last id as its position, each write applying a prefix of the page together
/// with the position it reached (the whole page, or several steps). On a
/// [`Delivery::Transactional`](crate::Delivery::Transactional) store it does both in one
/// atomic write ([`ItemStore::append_tracked`]), which also fails with
/// [`FollowError::Moved`] when another runner applied the page first, so no page is ever
/// applied twice.
pub trait Follower<S: ItemStore>: Send + Sync + 'static {
    /// The follower's name: the key of its tracking record, unique per store.
    fn name(&self) -> &str;

    /// The topics it follows; empty (the default) for all.
    fn topics(&self) -> &[String] {
        &[]
    }

    /// The id of the last notification it applied (0 before the first). By default the
    /// store's tracking record.
    ///
    /// Dropping the future abandons the read.
    fn position<'a>(&'a self, store: &'a S) -> BoxFuture<'a, Result<u64, FollowError>> {
        Box::pin(async move { Ok(store.tracking_position(self.name()).await?) })
    }

    /// Applies `page` (the notifications after `from`) and records the last one's id.
    ///
    /// Either all at once, or in steps that each apply a prefix and record its last id
    /// atomically (a [`Process`] halves its step after a conflict); `Ok` only when the whole
    /// page is applied. After an error, a crash or a dropped future, what was applied is
    /// recorded with it, never in part, so the next read starts right after it.
    fn handle<'a>(
        &'a self,
        store: &'a S,
        from: u64,
        page: &'a [Notification],
    ) -> BoxFuture<'a, Result<(), FollowError>>;

    /// Applies `appends`, read from one slice of the store's feed, on a store of
    /// [`Delivery::Idempotent`](crate::Delivery::Idempotent) delivery (Cassandra's): each
    /// append's items are of one sequence, in position order, and a sequence's appends come
    /// in version order.
    ///
    /// The runner saves the slice's position after this returns `Ok`, not with it: after a
    /// crash, an error or a dropped future in between, the page is delivered again. So the
    /// effects must be idempotent, keyed by (sequence id, version): an upsert of a view
    /// keyed by the sequence with the version it reflects, or an append under an
    /// [`IdempotencyKey`](crate::IdempotencyKey) made from them, as [`Process`] does.
    ///
    /// By default a follower runs on notification logs only, and this fails with
    /// [`StoreError::Unsupported`].
    fn handle_feed<'a>(
        &'a self,
        store: &'a S,
        appends: &'a [Vec<IntegerSequencedItem>],
    ) -> BoxFuture<'a, Result<(), FollowError>> {
        let _ = (store, appends);
        Box::pin(async {
            Err(FollowError::Store(StoreError::Unsupported {
                capability: "followers on a feed",
                reason: "this follower handles notification logs only (it does not implement Follower::handle_feed)",
            }))
        })
    }
}

impl<S: ItemStore, F: Follower<S> + ?Sized> Follower<S> for Arc<F> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn topics(&self) -> &[String] {
        (**self).topics()
    }
    fn position<'a>(&'a self, store: &'a S) -> BoxFuture<'a, Result<u64, FollowError>> {
        (**self).position(store)
    }
    fn handle<'a>(
        &'a self,
        store: &'a S,
        from: u64,
        page: &'a [Notification],
    ) -> BoxFuture<'a, Result<(), FollowError>> {
        (**self).handle(store, from, page)
    }
    fn handle_feed<'a>(
        &'a self,
        store: &'a S,
        appends: &'a [Vec<IntegerSequencedItem>],
    ) -> BoxFuture<'a, Result<(), FollowError>> {
        (**self).handle_feed(store, appends)
    }
}

/// Feeds `follower` every notification after its position, in pages of at most
/// `page_size`, until it has read the whole log; returns how many notifications it applied.
/// A page another runner applied first is skipped (the follower goes on from there).
///
/// On a store of [`Delivery::Idempotent`](crate::Delivery::Idempotent) delivery it reads
/// every slice of the feed instead, from the positions saved for the follower, until each
/// slice returns nothing more, saving each slice's position after each page; it returns how
/// many items it handed the follower.
///
/// It takes no lease: two catch-ups of one follower at once are safe on a
/// [`Delivery::Transactional`](crate::Delivery::Transactional) store (neither applies a page
/// the other applied) or with idempotent effects on a feed, but waste work; run followers in
/// a [`Runner`], which holds leases.
///
/// Dropping the future stops between pages or leaves the current page applied whole or not
/// at all (on a feed: applied, perhaps in part, with its position not saved, so that it is
/// delivered again).
pub async fn catch_up<S: ItemStore, F: Follower<S> + ?Sized>(
    store: &S,
    follower: &F,
    page_size: usize,
) -> Result<u64, FollowError> {
    if store.delivery() == Some(Delivery::Idempotent) {
        let mut handed = 0;
        for slice in 0..store.feed_slices()? {
            let mut position = store.feed_position(follower.name(), slice).await?;
            while let Some(n) = feed_step(store, follower, slice, page_size, &mut position).await? {
                handed += n;
            }
        }
        return Ok(handed);
    }
    let mut from = follower.position(store).await?;
    let mut applied = 0;
    while let Some(n) = step(store, follower, page_size, &mut from).await? {
        applied += n;
    }
    Ok(applied)
}

/// Reads and handles one page after `from`; `None` when there was nothing to read. Moves
/// `from` to the follower's new position.
async fn step<S: ItemStore, F: Follower<S> + ?Sized>(
    store: &S,
    follower: &F,
    page_size: usize,
    from: &mut u64,
) -> Result<Option<u64>, FollowError> {
    let topics: Vec<&str> = follower.topics().iter().map(String::as_str).collect();
    let page = store
        .select_notifications(*from, page_size.max(1), &topics)
        .await?;
    let Some(last) = page.last().map(|n| n.id) else {
        return Ok(None);
    };
    match follower.handle(store, *from, &page).await {
        Ok(()) => {
            *from = last;
            Ok(Some(page.len() as u64))
        }
        Err(FollowError::Moved { found, .. }) => {
            // Another runner applied it; go on from where that one got to.
            *from = found;
            Ok(Some(0))
        }
        Err(e) => Err(e),
    }
}

/// Reads one page of feed slice `slice` after `position`, hands it to the follower, and then
/// saves (and moves `position` to) the slice's new position. How many items it handed over;
/// `None` when the page held nothing.
async fn feed_step<S: ItemStore, F: Follower<S> + ?Sized>(
    store: &S,
    follower: &F,
    slice: u32,
    page_size: usize,
    position: &mut Option<String>,
) -> Result<Option<u64>, FollowError> {
    let page = store
        .read_feed_page(slice, position.as_deref(), page_size.max(1))
        .await?;
    apply_feed_page(store, follower, slice, page, position).await
}

/// Hands a page of feed slice `slice` to the follower, then saves (and moves `position` to)
/// the slice's new position: [`feed_step`] after its read.
async fn apply_feed_page<S: ItemStore, F: Follower<S> + ?Sized>(
    store: &S,
    follower: &F,
    slice: u32,
    page: FeedPage,
    position: &mut Option<String>,
) -> Result<Option<u64>, FollowError> {
    if !page.appends.is_empty() {
        follower.handle_feed(store, &page.appends).await?;
    }
    if position.as_deref() != Some(page.position.as_str()) {
        store
            .save_feed_position(follower.name(), slice, &page.position)
            .await?;
        *position = Some(page.position);
    }
    let items: usize = page.appends.iter().map(Vec::len).sum();
    Ok((items > 0).then_some(items as u64))
}

/// How many feed slices a runner reads at once.
const READ_AT_ONCE: usize = 16;

/// What a runner knows of one follower, for [`RunnerHandle::status`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct FollowerStatus {
    /// The id of the last notification it applied.
    pub position: u64,
    /// The highest notification id when it last looked.
    pub head: u64,
    /// Pages it applied since the runner started.
    pub pages: u64,
    /// The last failure, until the next page applies: the typed error, shared so that the
    /// status can be cloned (its [`kind`](FollowError::kind) says whether the runner's
    /// retries can be expected to succeed).
    pub last_error: Option<Arc<FollowError>>,
    /// Whether this runner holds the follower's lease (and so runs it); `false` while
    /// another runner holds it and this one stands by to take over. On a feed: whether it
    /// holds any slice.
    pub active: bool,
    /// On a feed: the slices this runner holds, and so runs, in ascending order (the
    /// notification-log fields `position` and `head` stay 0).
    pub slices: Vec<u32>,
}

impl FollowerStatus {
    /// How far behind the log the follower is: head minus position. A follower of some
    /// topics records the id of the last notification of those topics, so its lag counts
    /// the other topics' notifications committed after it.
    pub fn lag(&self) -> u64 {
        self.head.saturating_sub(self.position)
    }
}

/// Drives followers of one store: each catches up from its recorded position, then follows
/// live, in its own task.
///
/// ```
/// # use eventsmith_core::*;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemoryStore::new();
/// let counted = std::sync::Arc::new(MemoryProjection::new("count", 0u64, |n: &mut u64, _| {
///     *n += 1;
///     Ok(())
/// }));
/// let runner = Runner::new(store.clone()).follow(counted.clone());
/// let waker = runner.waker(); // an AfterCommit hook: `.publish_to(waker)` on an application
/// let running = runner.start();
/// let item = SequencedItem { sequence_id: uuid::Uuid::new_v4(), position: 1, topic: "t".into(), payload: vec![] };
/// store.append(vec![item]).await?;
/// waker.wake();
/// running.wait_for("count", 1).await;
/// assert_eq!(counted.view(), 1);
/// running.stop().await;
/// # Ok(()) }
/// ```
pub struct Runner<S: ItemStore> {
    store: S,
    followers: Vec<Arc<dyn Follower<S>>>,
    page_size: usize,
    poll_interval: Duration,
    lease_ttl: Duration,
    notifies: Vec<Arc<Notify>>,
    waker: RunnerWaker,
}

impl<S: ItemStore> fmt::Debug for Runner<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.followers.iter().map(|f| f.name()).collect();
        f.debug_struct("Runner")
            .field("followers", &names)
            .field("page_size", &self.page_size)
            .field("poll_interval", &self.poll_interval)
            .field("lease_ttl", &self.lease_ttl)
            .finish()
    }
}

impl<S: ItemStore> Runner<S> {
    /// A runner on `store`, with pages of 256 notifications, a poll every 100 ms and leases
    /// of 10 s.
    pub fn new(store: S) -> Self {
        Runner {
            store,
            followers: Vec::new(),
            page_size: 256,
            poll_interval: Duration::from_millis(100),
            lease_ttl: Duration::from_secs(10),
            notifies: Vec::new(),
            waker: RunnerWaker::default(),
        }
    }

    /// Adds a follower.
    pub fn follow(mut self, follower: impl Follower<S>) -> Self {
        let notify = Arc::new(Notify::new());
        self.waker.add(notify.clone());
        self.followers.push(Arc::new(follower));
        self.notifies.push(notify);
        self
    }

    /// Is woken by `waker` (made before the runner, for example handed to an application's
    /// builder first) as well as by its own.
    pub fn woken_by(mut self, waker: &RunnerWaker) -> Self {
        for notify in &self.notifies {
            waker.add(notify.clone());
        }
        self.waker = waker.clone();
        self
    }

    /// Reads at most `n` notifications per page (at least 1): the bound on what one page
    /// holds in memory, and on what a shutdown waits for.
    pub fn page_size(mut self, n: usize) -> Self {
        self.page_size = n.max(1);
        self
    }

    /// How often a follower that is level with the log looks again, for commits made by
    /// other processes (commits through [`waker`](Self::waker) wake it at once).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How long a follower's lease ([`ItemStore::claim_lease`]) holds without renewal (at
    /// least 30 ms). The runner renews it every third of that while it runs the follower,
    /// and a runner standing by looks at least that often; so this is how long a follower
    /// stays stopped after the process running it dies. A runner stopped with
    /// [`RunnerHandle::stop`] releases its leases at once. On a feed, the same time to live
    /// is that of each slice's lease and of the runner's announcement; a store may round it
    /// (Cassandra's TTLs are whole seconds).
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl.max(Duration::from_millis(30));
        self
    }

    /// Wakes this runner's followers (also those added later): pass it to
    /// [`ApplicationBuilder::publish_to`](crate::ApplicationBuilder::publish_to) so that a
    /// commit in this process is followed at once.
    pub fn waker(&self) -> RunnerWaker {
        self.waker.clone()
    }

    /// Starts one task per follower on the current tokio runtime.
    ///
    /// Each claims the follower's lease (standing by while another runner, in this
    /// process or another, holds it), catches up from its recorded position, then follows
    /// live. A failing page is retried after the poll interval (logged, and shown in
    /// [`RunnerHandle::status`]); nothing after it is applied before it. On a store without
    /// leases ([`StoreError::Unsupported`]) followers run without one.
    ///
    /// On a store of [`Delivery::Idempotent`](crate::Delivery::Idempotent) delivery, each
    /// follower's task runs a share of the feed's slices instead: it announces itself as a
    /// live runner of the follower ([`ItemStore::announce_runner`]) every third of the lease
    /// time to live, and holds the lease `follower/slice` of as many slices as its share of
    /// the live runners gives it (the slice count divided among them), giving up slices over
    /// its share and claiming free ones under it. The slices of a runner that dies are free
    /// once their leases expire, and are taken by the others once its announcement expires
    /// too. Each held slice is read from its saved position, handed to
    /// [`Follower::handle_feed`], and its new position saved.
    pub fn start(self) -> RunnerHandle {
        let (stop, stopped) = watch::channel(false);
        let status = Arc::new(Mutex::new(HashMap::new()));
        let owner = Uuid::new_v4();
        let tasks = self
            .followers
            .into_iter()
            .zip(self.notifies)
            .map(|(follower, wake)| {
                let lease = Lease {
                    follower: follower.name().to_owned(),
                    owner,
                    ttl: self.lease_ttl,
                };
                if self.store.delivery() == Some(Delivery::Idempotent) {
                    let task = FeedTask {
                        store: self.store.clone(),
                        follower,
                        page_size: self.page_size,
                        poll_interval: self.poll_interval,
                        lease,
                        held: BTreeMap::new(),
                        leased: true,
                        next_balance: Instant::now(),
                        wake,
                        stopped: stopped.clone(),
                        status: status.clone(),
                    };
                    return tokio::spawn(task.run());
                }
                let task = FollowerTask {
                    store: self.store.clone(),
                    follower,
                    page_size: self.page_size,
                    poll_interval: self.poll_interval,
                    lease,
                    held_until: None,
                    leased: true,
                    wake,
                    stopped: stopped.clone(),
                    status: status.clone(),
                };
                tokio::spawn(task.run())
            })
            .collect();
        RunnerHandle {
            stop,
            tasks,
            status,
        }
    }
}

/// Why a [`System`] cannot be wired or run as asked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SystemError {
    /// Two followers share a name, and so would share one tracking record and lease.
    #[error("two followers are named {0:?}; a follower's name keys its tracking record")]
    DuplicateFollower(String),
    /// A runner was asked for a follower the system does not have.
    #[error("the system has no follower named {0:?}")]
    UnknownFollower(String),
}

/// The followers of one store, wired once (clones share them): its projections and process applications, each
/// following the applications whose topics it reads. Run it whole in one process
/// ([`runner`](Self::runner)), or split it across processes sharing the store
/// ([`runner_for`](Self::runner_for) in each, with the names that process runs). Either
/// way each follower runs in one runner at a time (its lease), and a process that dies
/// hands its followers to a runner standing by elsewhere; on a feed, the runners of a
/// follower share its slices instead, and a dead one's slices move to the others.
///
/// ```
/// # use eventsmith_core::*;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemoryStore::new();
/// let count = |name| MemoryProjection::new(name, 0u64, |n: &mut u64, _| { *n += 1; Ok(()) });
/// let system = System::new(store.clone())
///     .follow(count("orders"))?
///     .follow(count("invoices"))?;
/// // This process runs the invoices; another would run `system.runner_for(&["orders"])`.
/// let running = system.runner_for(&["invoices"])?.start();
/// assert!(matches!(system.runner_for(&["refunds"]), Err(SystemError::UnknownFollower(_))));
/// running.stop().await;
/// # Ok(()) }
/// ```
pub struct System<S: ItemStore> {
    store: S,
    followers: Vec<Arc<dyn Follower<S>>>,
    waker: RunnerWaker,
}

impl<S: ItemStore> Clone for System<S> {
    fn clone(&self) -> Self {
        System {
            store: self.store.clone(),
            followers: self.followers.clone(),
            waker: self.waker.clone(),
        }
    }
}

impl<S: ItemStore> fmt::Debug for System<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("System")
            .field("followers", &self.names())
            .finish_non_exhaustive()
    }
}

impl<S: ItemStore> System<S> {
    /// A system of no followers on `store`.
    pub fn new(store: S) -> Self {
        System {
            store,
            followers: Vec::new(),
            waker: RunnerWaker::new(),
        }
    }

    /// Adds a follower; its name must be new to the system.
    pub fn follow(mut self, follower: impl Follower<S>) -> Result<Self, SystemError> {
        if self.names().contains(&follower.name()) {
            return Err(SystemError::DuplicateFollower(follower.name().to_owned()));
        }
        self.followers.push(Arc::new(follower));
        Ok(self)
    }

    /// The followers' names, in the order added.
    pub fn names(&self) -> Vec<&str> {
        self.followers.iter().map(|f| f.name()).collect()
    }

    /// Wakes the system's runners: hand it to each application's
    /// [`publish_to`](crate::ApplicationBuilder::publish_to), so that commits in this
    /// process are followed at once.
    pub fn waker(&self) -> RunnerWaker {
        self.waker.clone()
    }

    /// A runner of every follower, woken by [`waker`](Self::waker); configure and
    /// [`start`](Runner::start) it.
    pub fn runner(&self) -> Runner<S> {
        self.followers
            .iter()
            .fold(Runner::new(self.store.clone()), |runner, f| {
                runner.follow(f.clone())
            })
            .woken_by(&self.waker)
    }

    /// A runner of the named followers only: the part of the system one process runs.
    pub fn runner_for(&self, names: &[&str]) -> Result<Runner<S>, SystemError> {
        let mut runner = Runner::new(self.store.clone());
        for name in names {
            let follower = self
                .followers
                .iter()
                .find(|f| f.name() == *name)
                .ok_or_else(|| SystemError::UnknownFollower((*name).to_owned()))?;
            runner = runner.follow(follower.clone());
        }
        Ok(runner.woken_by(&self.waker))
    }
}

/// Wakes the followers of the runners it was given to; an [`AfterCommit`] hook. Cheap to
/// clone; clones wake the same followers.
#[derive(Clone, Debug, Default)]
pub struct RunnerWaker {
    /// Weak: a runner that has stopped (or was never started) drops its followers' notifies,
    /// and a long-lived waker forgets them instead of keeping one per runner ever made.
    notifies: Arc<Mutex<Vec<std::sync::Weak<Notify>>>>,
}

impl RunnerWaker {
    /// A waker for runners made later ([`Runner::woken_by`]).
    pub fn new() -> Self {
        Self::default()
    }

    fn add(&self, notify: Arc<Notify>) {
        self.notifies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::downgrade(&notify));
    }

    /// Wakes every follower now (a follower busy with a page looks again right after it).
    pub fn wake(&self) {
        self.notifies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|n| n.upgrade().map(|n| n.notify_one()).is_some());
    }
}

impl<E> AfterCommit<E> for RunnerWaker {
    fn after_commit<'a>(&'a self, _: &'a [Envelope<E>]) -> BoxFuture<'a, Result<(), BoxError>> {
        self.wake();
        Box::pin(async { Ok(()) })
    }
}

/// A started [`Runner`]. Dropping it stops the followers as [`stop`](Self::stop) does
/// (after their pages, releasing their leases), without waiting for them.
#[derive(Debug)]
pub struct RunnerHandle {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    status: Arc<Mutex<HashMap<String, FollowerStatus>>>,
}

impl RunnerHandle {
    /// What the runner knows of `follower` (its position, the head, its lag).
    pub fn status(&self, follower: &str) -> Option<FollowerStatus> {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(follower)
            .cloned()
    }

    /// Waits until `follower` has applied everything up to notification `id`. (A follower
    /// on a feed has no notification ids: wait for its effects instead.)
    ///
    /// Dropping the future stops waiting; the runner goes on.
    pub async fn wait_for(&self, follower: &str, id: u64) {
        while self.status(follower).is_none_or(|s| s.position < id) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Stops every follower after the page it is applying, and waits for them. No page is
    /// left half applied; the next runner starts from the recorded positions.
    ///
    /// Dropping the future does not cancel the stop: the followers stop after their pages.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

struct FollowerTask<S: ItemStore> {
    store: S,
    follower: Arc<dyn Follower<S>>,
    page_size: usize,
    poll_interval: Duration,
    lease: Lease,
    /// Until when this runner surely holds the lease (measured from before its last claim).
    held_until: Option<Instant>,
    /// Whether the store has leases.
    leased: bool,
    wake: Arc<Notify>,
    stopped: watch::Receiver<bool>,
    status: Arc<Mutex<HashMap<String, FollowerStatus>>>,
}

impl<S: ItemStore> FollowerTask<S> {
    fn update(&self, change: impl FnOnce(&mut FollowerStatus)) {
        let mut all = self.status.lock().unwrap_or_else(|e| e.into_inner());
        change(all.entry(self.follower.name().to_owned()).or_default());
    }

    async fn run(mut self) {
        let name = self.follower.name().to_owned();
        let mut from = None;
        // Stopped, or the handle dropped (then `changed` would return at once, forever).
        while !*self.stopped.borrow() && self.stopped.has_changed().is_ok() {
            let mut standby = None;
            match self.follow(&mut from).await {
                Ok(None) => {}
                Ok(Some(wait)) => standby = Some(wait),
                Err(e) => {
                    tracing::warn!(follower = %name, error = %e, "follower failed; retrying after the poll interval");
                    let e = Arc::new(e);
                    self.update(|s| s.last_error = Some(e));
                    // Read the position again: the failure may have been another runner's page.
                    from = None;
                }
            }
            match standby {
                // Another runner holds the lease: commits are its business, so wake-ups are
                // not; look again when the lease may have ended.
                Some(wait) => {
                    from = None;
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.stopped.changed() => {}
                    }
                }
                None => {
                    let wait = self.poll_interval;
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.stopped.changed() => {}
                    }
                }
            }
        }
        if self.held_until.is_some() {
            // Hand over at once rather than after the lease's time to live.
            if let Err(e) = self
                .store
                .release_lease(&self.lease.follower, self.lease.owner)
                .await
            {
                tracing::warn!(follower = %name, error = %e, "cannot release the follower's lease; it expires by itself");
            }
            self.update(|s| s.active = false);
        }
    }

    /// Claims or renews the lease when a third of its time to live has passed. `None` while
    /// this runner holds it (or the store has no leases); otherwise how long to stand by.
    async fn hold_lease(&mut self) -> Result<Option<Duration>, FollowError> {
        let ttl = self.lease.ttl;
        let now = Instant::now();
        if !self.leased
            || self
                .held_until
                .is_some_and(|until| until > now + ttl * 2 / 3)
        {
            return Ok(None);
        }
        match self.store.claim_lease(&self.lease).await {
            Ok(LeaseClaim::Held) => {
                if self.held_until.is_none() {
                    tracing::info!(follower = %self.lease.follower, owner = %self.lease.owner, "lease taken");
                }
                self.held_until = Some(now + ttl);
                self.update(|s| s.active = true);
                Ok(None)
            }
            Ok(LeaseClaim::Taken { owner, expires_in }) => {
                if self.held_until.take().is_some() {
                    tracing::warn!(follower = %self.lease.follower, by = %owner, "lease lost to another runner");
                }
                self.update(|s| s.active = false);
                Ok(Some(
                    expires_in.min(ttl / 3).max(self.poll_interval.min(ttl / 3)),
                ))
            }
            Err(StoreError::Unsupported { reason, .. }) => {
                tracing::info!(follower = %self.lease.follower, reason, "the store has no leases; running without one");
                self.leased = false;
                self.update(|s| s.active = true);
                Ok(None)
            }
            Err(e) => {
                if self.held_until.is_some_and(|until| until <= now) {
                    self.held_until = None;
                    self.update(|s| s.active = false);
                }
                Err(e.into())
            }
        }
    }

    /// Catches up, page by page, while it holds the lease, stopping early when asked to.
    /// `Some(wait)` when another runner holds the lease.
    async fn follow(&mut self, from: &mut Option<u64>) -> Result<Option<Duration>, FollowError> {
        if let Some(wait) = self.hold_lease().await? {
            return Ok(Some(wait));
        }
        let mut position = match *from {
            Some(p) => p,
            None => self.follower.position(&self.store).await?,
        };
        *from = Some(position);
        self.update(|s| s.position = position);
        loop {
            if *self.stopped.borrow() {
                return Ok(None);
            }
            if let Some(wait) = self.hold_lease().await? {
                return Ok(Some(wait));
            }
            let applied = step(&self.store, &*self.follower, self.page_size, &mut position).await?;
            *from = Some(position);
            let head = self.store.max_notification_id().await?;
            self.update(|s| {
                s.position = position;
                s.head = head;
                if applied.is_some_and(|n| n > 0) {
                    s.pages += 1;
                    s.last_error = None;
                }
            });
            if applied.is_none() {
                return Ok(None);
            }
            tracing::debug!(follower = %self.follower.name(), position, lag = head.saturating_sub(position), "page applied");
        }
    }
}

/// One feed slice a [`FeedTask`] holds.
struct HeldSlice {
    /// Until when its lease surely holds (measured from before the claim that took or
    /// renewed it).
    until: Instant,
    /// Its position: `None` until read from the store, then the saved one (`None` inside
    /// for the start of the feed).
    position: Option<Option<String>>,
}

/// A runner's task for one follower on a feed: holds its share of the slices and follows
/// them.
struct FeedTask<S: ItemStore> {
    store: S,
    follower: Arc<dyn Follower<S>>,
    page_size: usize,
    poll_interval: Duration,
    /// The follower's name and this runner's owner id and lease time; each slice's lease is
    /// named `follower/slice`.
    lease: Lease,
    held: BTreeMap<u32, HeldSlice>,
    /// Whether the store has leases (without, the task runs every slice).
    leased: bool,
    /// When to announce itself, renew its leases and rebalance next.
    next_balance: Instant,
    wake: Arc<Notify>,
    stopped: watch::Receiver<bool>,
    status: Arc<Mutex<HashMap<String, FollowerStatus>>>,
}

impl<S: ItemStore> FeedTask<S> {
    fn update(&self, change: impl FnOnce(&mut FollowerStatus)) {
        let mut all = self.status.lock().unwrap_or_else(|e| e.into_inner());
        change(all.entry(self.follower.name().to_owned()).or_default());
    }

    fn slice_lease(&self, slice: u32) -> Lease {
        Lease {
            follower: format!("{}/{slice}", self.lease.follower),
            ..self.lease.clone()
        }
    }

    async fn run(mut self) {
        let name = self.follower.name().to_owned();
        while !*self.stopped.borrow() && self.stopped.has_changed().is_ok() {
            let wait = match self.round().await {
                // Something was delivered: read again at once, the slices may hold more.
                Ok(true) => None,
                Ok(false) => Some(self.poll_interval),
                Err(e) => {
                    tracing::warn!(follower = %name, error = %e, "feed follower failed; retrying after the poll interval");
                    let e = Arc::new(e);
                    self.update(|s| s.last_error = Some(e));
                    // Read the positions again: another runner may have moved them.
                    for held in self.held.values_mut() {
                        held.position = None;
                    }
                    // And do not retry a failed rebalance at once, in a loop.
                    self.next_balance = self.next_balance.max(Instant::now() + self.poll_interval);
                    Some(self.poll_interval)
                }
            };
            if let Some(wait) = wait {
                let wait = wait.min(self.next_balance.saturating_duration_since(Instant::now()));
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.stopped.changed() => {}
                }
            }
        }
        if self.leased {
            // Hand over at once rather than after the leases' time to live.
            let slices: Vec<u32> = self.held.keys().copied().collect();
            for slice in slices {
                let lease = self.slice_lease(slice);
                if let Err(e) = self.store.release_lease(&lease.follower, lease.owner).await {
                    tracing::warn!(follower = %name, slice, error = %e, "cannot release a feed slice's lease; it expires by itself");
                }
            }
        }
        self.held.clear();
        self.update(|s| {
            s.active = false;
            s.slices.clear();
        });
    }

    /// Rebalances when due, then reads each held slice once; whether anything was delivered.
    ///
    /// The held slices' pages are read at once ([`read_pages`](Self::read_pages)): on a
    /// cluster a slice's read takes a few round trips, and read one after the other, 64
    /// slices held a follower half a second behind. Each page is then handed over and its
    /// position saved one slice at a time, under a lease checked just before.
    async fn round(&mut self) -> Result<bool, FollowError> {
        let mut delivered = false;
        self.balance().await?;
        let mut wanted = Vec::with_capacity(self.held.len());
        for (&slice, held) in &self.held {
            if self.leased && held.until <= Instant::now() {
                continue;
            }
            let position = match &held.position {
                Some(position) => position.clone(),
                None => {
                    self.store
                        .feed_position(self.follower.name(), slice)
                        .await?
                }
            };
            wanted.push((slice, position));
        }
        let pages = self.read_pages(&wanted).await;
        for ((slice, mut position), page) in wanted.into_iter().zip(pages) {
            if *self.stopped.borrow() {
                break;
            }
            // A long round must not outlive the leases it reads under.
            self.balance().await?;
            let Some(held) = self.held.get(&slice) else {
                continue;
            };
            if self.leased && held.until <= Instant::now() {
                continue;
            }
            let step =
                apply_feed_page(&self.store, &*self.follower, slice, page?, &mut position).await;
            if let Some(held) = self.held.get_mut(&slice) {
                held.position = Some(position);
            }
            if step?.is_some() {
                delivered = true;
                self.update(|s| {
                    s.pages += 1;
                    s.last_error = None;
                });
            }
        }
        Ok(delivered)
    }

    /// The next page of each `(slice, position)`, in that order, read [`READ_AT_ONCE`] at a
    /// time, each on a task of its own. Reads only: dropping the round aborts them.
    async fn read_pages(
        &self,
        wanted: &[(u32, Option<String>)],
    ) -> Vec<Result<FeedPage, StoreError>> {
        let mut pages = Vec::with_capacity(wanted.len());
        for chunk in wanted.chunks(READ_AT_ONCE) {
            let mut reads = JoinSet::new();
            for (i, (slice, position)) in chunk.iter().enumerate() {
                let (store, slice, position) = (self.store.clone(), *slice, position.clone());
                let limit = self.page_size.max(1);
                reads.spawn(async move {
                    (
                        i,
                        store
                            .read_feed_page(slice, position.as_deref(), limit)
                            .await,
                    )
                });
            }
            let mut read: Vec<Option<Result<FeedPage, StoreError>>> =
                chunk.iter().map(|_| None).collect();
            while let Some(done) = reads.join_next().await {
                match done {
                    Ok((i, page)) => read[i] = Some(page),
                    // A read that panicked: the store's bug, surfaced rather than hidden.
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Err(_) => {}
                }
            }
            pages.extend(
                read.into_iter()
                    .map(|page| page.unwrap_or_else(|| Err(StoreError::Closed))),
            );
        }
        pages
    }

    /// Every third of the lease time to live: announces this runner, renews its slices'
    /// leases, and gives up or claims slices to hold its share.
    async fn balance(&mut self) -> Result<(), FollowError> {
        let now = Instant::now();
        if now < self.next_balance {
            return Ok(());
        }
        let ttl = self.lease.ttl;
        let slices = self.store.feed_slices()?;
        if !self.leased {
            self.next_balance = now + ttl / 3;
            return Ok(());
        }
        let runners = match self
            .store
            .announce_runner(&self.lease.follower, self.lease.owner, ttl)
            .await
        {
            Ok(runners) => runners,
            Err(StoreError::Unsupported { .. }) => vec![self.lease.owner],
            Err(e) => return Err(e.into()),
        };
        let count = runners.len().max(1) as u32;
        let me = runners
            .iter()
            .position(|r| *r == self.lease.owner)
            .unwrap_or(runners.len()) as u32;
        // Slices divided among the live runners in id order: the first `slices % count`
        // runners take one more, so that the shares add up to every slice.
        let share = (slices / count + u32::from(me < slices % count)) as usize;
        // Where this runner's share starts, so that runners reach first for different slices.
        let start = (me.min(count - 1) as u64 * u64::from(slices) / u64::from(count)) as u32;
        let before: Vec<u32> = self.held.keys().copied().collect();
        for slice in before {
            match self.store.claim_lease(&self.slice_lease(slice)).await {
                Ok(LeaseClaim::Held) => {
                    if let Some(held) = self.held.get_mut(&slice) {
                        held.until = now + ttl;
                    }
                }
                Ok(LeaseClaim::Taken { owner, .. }) => {
                    tracing::warn!(follower = %self.lease.follower, slice, by = %owner, "feed slice lost to another runner");
                    self.held.remove(&slice);
                }
                Err(StoreError::Unsupported { reason, .. }) => {
                    tracing::info!(follower = %self.lease.follower, reason, "the store has no leases; running every slice");
                    return self.hold_every_slice(slices);
                }
                Err(e) => {
                    self.held.retain(|_, h| h.until > now);
                    self.publish();
                    return Err(e.into());
                }
            }
        }
        // Over the share: give up the slices furthest from where the share starts.
        let distance = |slice: u32| (slice + slices - start) % slices.max(1);
        while self.held.len() > share {
            let slice = *self
                .held
                .keys()
                .max_by_key(|s| distance(**s))
                .expect("held is not empty");
            self.held.remove(&slice);
            let lease = self.slice_lease(slice);
            self.store
                .release_lease(&lease.follower, lease.owner)
                .await?;
            tracing::debug!(follower = %self.lease.follower, slice, "feed slice given up to rebalance");
        }
        // Under it: claim free slices, nearest first.
        let mut k = 0;
        while self.held.len() < share && k < slices {
            let slice = (start + k) % slices;
            k += 1;
            if self.held.contains_key(&slice) {
                continue;
            }
            match self.store.claim_lease(&self.slice_lease(slice)).await {
                Ok(LeaseClaim::Held) => {
                    tracing::debug!(follower = %self.lease.follower, slice, "feed slice taken");
                    self.held.insert(
                        slice,
                        HeldSlice {
                            until: now + ttl,
                            position: None,
                        },
                    );
                }
                Ok(LeaseClaim::Taken { .. }) => {}
                Err(StoreError::Unsupported { .. }) => return self.hold_every_slice(slices),
                Err(e) => {
                    self.publish();
                    return Err(e.into());
                }
            }
        }
        self.next_balance = now + ttl / 3;
        self.publish();
        Ok(())
    }

    fn hold_every_slice(&mut self, slices: u32) -> Result<(), FollowError> {
        self.leased = false;
        for slice in 0..slices {
            self.held.entry(slice).or_insert(HeldSlice {
                until: Instant::now(),
                position: None,
            });
        }
        self.next_balance = Instant::now() + self.lease.ttl / 3;
        self.publish();
        Ok(())
    }

    fn publish(&self) {
        let slices: Vec<u32> = self.held.keys().copied().collect();
        self.update(|s| {
            s.active = !slices.is_empty();
            s.slices = slices;
        });
    }
}

/// A projection whose view lives in memory, with its position: a page changes a copy of the
/// view, which replaces the view (with the new position) only when the whole page applied.
/// Its position is not in the store, so it starts from the beginning in every process.
pub struct MemoryProjection<V, F> {
    name: String,
    state: Mutex<(V, u64)>,
    apply: F,
}

impl<V: fmt::Debug, F> fmt::Debug for MemoryProjection<V, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryProjection")
            .field("name", &self.name)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl<V, F> MemoryProjection<V, F>
where
    V: Clone + Send + 'static,
    F: Fn(&mut V, &Notification) -> Result<(), BoxError> + Send + Sync + 'static,
{
    /// A projection named `name`, starting from `view` at the start of the log.
    pub fn new(name: &str, view: V, apply: F) -> Self {
        MemoryProjection {
            name: name.to_owned(),
            state: Mutex::new((view, 0)),
            apply,
        }
    }

    /// A copy of the view.
    pub fn view(&self) -> V {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }
}

impl<S, V, F> Follower<S> for MemoryProjection<V, F>
where
    S: ItemStore,
    V: Clone + Send + 'static,
    F: Fn(&mut V, &Notification) -> Result<(), BoxError> + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn position<'a>(&'a self, _: &'a S) -> BoxFuture<'a, Result<u64, FollowError>> {
        let position = self.state.lock().unwrap_or_else(|e| e.into_inner()).1;
        Box::pin(async move { Ok(position) })
    }

    fn handle<'a>(
        &'a self,
        _: &'a S,
        from: u64,
        page: &'a [Notification],
    ) -> BoxFuture<'a, Result<(), FollowError>> {
        let result = (|| {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.1 != from {
                return Err(FollowError::Moved {
                    follower: self.name.clone(),
                    expected: from,
                    found: state.1,
                });
            }
            let mut next = state.0.clone();
            for n in page {
                (self.apply)(&mut next, n).map_err(|source| FollowError::Handler {
                    follower: self.name.clone(),
                    id: n.id,
                    source,
                })?;
            }
            *state = (next, page.last().map_or(from, |n| n.id));
            Ok(())
        })();
        Box::pin(async move { result })
    }
}

/// What a process application does about one upstream event: commands on its own
/// aggregates, through the [`Unit`] of work of the page.
///
/// Implement it on a type of your own; the method returns a boxed future
/// (`Box::pin(async move { .. })`).
pub trait Policy<U, A: Aggregate, S>: Send + Sync + 'static {
    /// Reacts to `event` by running commands on `unit`. An error fails the whole page
    /// (nothing of it is written); the runner retries it.
    fn react<'a>(
        &'a self,
        event: &'a Envelope<U>,
        unit: &'a mut Unit<A, S>,
    ) -> BoxFuture<'a, Result<(), BoxError>>;
}

/// The aggregates a process application changes while handling one page: loaded once,
/// changed by commands, and saved together with the tracking record when the page is done.
pub struct Unit<A: Aggregate, S> {
    app: Application<A, S>,
    roots: HashMap<Uuid, (Root<A>, Version)>,
    order: Vec<Uuid>,
    cause: Metadata,
}

impl<A: Aggregate, S: fmt::Debug> fmt::Debug for Unit<A, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unit")
            .field("aggregates", &self.order)
            .field("cause", &self.cause)
            .finish_non_exhaustive()
    }
}

impl<A: Aggregate, S: ItemStore> Unit<A, S> {
    /// The aggregate as this page left it so far (version 0 in its default state when it
    /// has no events).
    ///
    /// Dropping the future abandons the load.
    pub async fn get(&mut self, id: Uuid) -> Result<&Root<A>, LoadError> {
        Ok(&self.load(id).await?.0)
    }

    async fn load(&mut self, id: Uuid) -> Result<&mut (Root<A>, Version), LoadError> {
        if !self.roots.contains_key(&id) {
            let root = self
                .app
                .load(id, None)
                .await?
                .unwrap_or_else(|| Root::empty(id, self.app.now()));
            let version = root.version();
            self.roots.insert(id, (root, version));
            self.order.push(id);
        }
        Ok(self.roots.get_mut(&id).expect("inserted above"))
    }

    /// Runs a command on aggregate `id`; its events are saved with the page. They carry the
    /// upstream event as their causation id and its correlation id (or, without one, the
    /// upstream event itself) and user entries.
    ///
    /// Dropping the future abandons the load; nothing is written.
    pub async fn execute<I, E>(
        &mut self,
        id: Uuid,
        decide: impl FnOnce(&A) -> Result<I, E>,
    ) -> Result<(), CommandError<E>>
    where
        I: IntoIterator,
        I::Item: Into<A::Event>,
    {
        let cause = self.cause.clone();
        let now = self.app.now();
        let (root, _) = self.load(id).await?;
        let before = root.pending().len();
        root.execute_at(now, decide)?;
        root.stamp_pending(before, &cause);
        Ok(())
    }
}

/// A process application: follows the log, turns upstream events into commands on its own
/// aggregates (its [`Policy`]), and saves the events those commands emit together with its
/// tracking record, in one atomic write. On a transactional store that is exactly-once
/// processing: a crash before the write redoes the page; after it, never.
///
/// Upstream events are decoded with the upstream mapper; notifications of topics it does not
/// know (other applications sharing the store) are passed over. A conflict with another
/// writer of the process's aggregates re-runs the page on fresh state, as the application's
/// [`RetryPolicy`](crate::RetryPolicy) says.
pub struct Process<U, A: Aggregate, S> {
    name: String,
    upstream: Arc<dyn Mapper<U>>,
    app: Application<A, S>,
    policy: Arc<dyn Policy<U, A, S>>,
    topics: Vec<String>,
}

impl<U, A: Aggregate, S: fmt::Debug> fmt::Debug for Process<U, A, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("app", &self.app)
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl<U: Send + Sync + 'static, A: Aggregate, S: ItemStore> Process<U, A, S> {
    /// A process named `name` (its tracking record's key) reading upstream events with
    /// `upstream` and running `policy` on the aggregates of `app`.
    pub fn new(
        name: &str,
        upstream: impl Mapper<U>,
        app: Application<A, S>,
        policy: impl Policy<U, A, S>,
    ) -> Self {
        Process {
            name: name.to_owned(),
            upstream: Arc::new(upstream),
            app,
            policy: Arc::new(policy),
            topics: Vec::new(),
        }
    }

    /// Follows only these upstream topics (all by default).
    pub fn topics(mut self, topics: &[&str]) -> Self {
        self.topics = topics.iter().map(|t| (*t).to_owned()).collect();
        self
    }

    fn unit(&self) -> Unit<A, S> {
        Unit {
            app: self.app.clone(),
            roots: HashMap::new(),
            order: Vec::new(),
            cause: Metadata::default(),
        }
    }

    /// Runs the policy over the page; the items to append and the aggregates they change.
    async fn decide(&self, page: &[Notification]) -> Result<Unit<A, S>, FollowError> {
        let mut unit = self.unit();
        for n in page {
            self.react(&mut unit, &n.item)
                .await
                .map_err(|e| self.failed(n.id, e))?;
        }
        Ok(unit)
    }

    /// Runs the policy on one upstream item (passing over topics the upstream mapper does
    /// not know).
    async fn react(
        &self,
        unit: &mut Unit<A, S>,
        item: &IntegerSequencedItem,
    ) -> Result<(), BoxError> {
        let event = match self.upstream.decode(item) {
            Ok(event) => event,
            Err(e) if matches!(e.kind, DecodeErrorKind::UnknownTopic) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let upstream = format!("{}/{}", event.originator_id, event.version);
        unit.cause = Metadata {
            correlation_id: event
                .metadata
                .correlation_id
                .clone()
                .or_else(|| Some(upstream.clone())),
            causation_id: Some(upstream),
            user: event.metadata.user.clone(),
        };
        self.policy.react(&event, unit).await
    }

    /// The encoded pending events of the unit's aggregate `id`.
    async fn encode_pending(
        &self,
        unit: &Unit<A, S>,
        id: &Uuid,
    ) -> Result<Vec<IntegerSequencedItem>, BoxError> {
        let mapper = self.app.repository().event_store().mapper();
        let mut items = Vec::new();
        for envelope in unit.roots[id].0.pending() {
            if let Some(ready) = mapper.prepare(envelope) {
                ready.await?;
            }
            items.push(mapper.encode(envelope)?);
        }
        Ok(items)
    }

    /// The key of the appends this process makes in reaction to upstream item
    /// (`sequence_id`, `version`): the same on every replay, so that a replay's append
    /// resolves as already applied.
    fn reaction_key(
        &self,
        sequence_id: Uuid,
        version: Version,
    ) -> Result<IdempotencyKey, BoxError> {
        Ok(IdempotencyKey::new(format!(
            "{}/{}/{version}",
            self.name,
            sequence_id.simple()
        ))?)
    }

    /// Reacts to one upstream item of a feed: each aggregate the policy changed gets one
    /// append keyed by [`reaction_key`](Self::reaction_key), so that an append made before
    /// a crash is found already applied, whatever the policy decides on the replay. A
    /// conflict re-runs the reaction on fresh state, as the application's retry policy says.
    async fn react_once(&self, store: &S, item: &IntegerSequencedItem) -> Result<(), FollowError> {
        let failed = |source: BoxError| FollowError::FeedHandler {
            follower: self.name.clone(),
            sequence_id: item.sequence_id,
            version: item.position,
            source,
        };
        let key = self
            .reaction_key(item.sequence_id, item.position)
            .map_err(failed)?;
        let mut pauses = self.app.retry_policy().pauses_between();
        loop {
            let mut unit = self.unit();
            self.react(&mut unit, item).await.map_err(failed)?;
            let mut conflict = None;
            for id in unit.order.clone() {
                let items = self.encode_pending(&unit, &id).await.map_err(failed)?;
                if items.is_empty() {
                    continue;
                }
                match store.append_with_key(items, &key).await {
                    Ok(KeyedAppend::Appended(_)) => {
                        let (root, before) = unit.roots.get_mut(&id).expect("in order");
                        let events = root.commit_pending();
                        self.app.committed(root, *before, &events).await;
                    }
                    // Made before a crash or a failure of this item's reaction: leave it.
                    Ok(KeyedAppend::AlreadyApplied(_)) => {}
                    Err(e @ AppendError::Conflict { .. }) => {
                        conflict = Some(e);
                        break;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            match conflict {
                None => return Ok(()),
                Some(conflict) => match pauses.next() {
                    Some(pause) => tokio::time::sleep(pause).await,
                    None => return Err(FollowError::Append(conflict)),
                },
            }
        }
    }

    fn failed(&self, id: u64, source: impl Into<BoxError>) -> FollowError {
        FollowError::Handler {
            follower: self.name.clone(),
            id,
            source: source.into(),
        }
    }
}

impl<U: Send + Sync + 'static, A: Aggregate, S: ItemStore> Follower<S> for Process<U, A, S> {
    fn name(&self) -> &str {
        &self.name
    }

    fn topics(&self) -> &[String] {
        &self.topics
    }

    fn handle<'a>(
        &'a self,
        store: &'a S,
        from: u64,
        page: &'a [Notification],
    ) -> BoxFuture<'a, Result<(), FollowError>> {
        Box::pin(async move {
            let policy = self.app.retry_policy();
            let mut pauses = policy.pauses_between();
            // The page is applied in steps, each one atomic write of its events and the
            // tracking record: the whole page at first, halved after each conflict. A page
            // whose events touch aggregates other writers keep changing would otherwise
            // conflict on every try, and never complete under steady contention.
            let (mut from, mut done, mut step) = (from, 0, page.len());
            while done < page.len() {
                let chunk = &page[done..(done + step).min(page.len())];
                let last = chunk.last().expect("a step holds a notification").id;
                let mut unit = self.decide(chunk).await?;
                let mut items = Vec::new();
                for id in &unit.order {
                    items.extend(
                        self.encode_pending(&unit, id)
                            .await
                            .map_err(|e| self.failed(last, e))?,
                    );
                }
                let tracking = Tracking {
                    follower: self.name.clone(),
                    from,
                    to: last,
                };
                match store.append_tracked(items, tracking).await {
                    Ok(_) => {
                        for id in &unit.order {
                            let (root, before) = unit.roots.get_mut(id).expect("in order");
                            let events = root.commit_pending();
                            self.app.committed(root, *before, &events).await;
                        }
                        (from, done) = (last, done + chunk.len());
                        step = (step * 2).min(page.len());
                        pauses = policy.pauses_between();
                    }
                    // Another writer changed one of the aggregates: decide again on fresh
                    // state, over half as many notifications.
                    Err(AppendError::Conflict { .. }) if chunk.len() > 1 => {
                        step = chunk.len() / 2;
                    }
                    Err(conflict @ AppendError::Conflict { .. }) => match pauses.next() {
                        Some(pause) => tokio::time::sleep(pause).await,
                        None => return Err(FollowError::Append(conflict)),
                    },
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        })
    }

    /// Reacts to each upstream item in turn, in idempotent mode: the appends of an item's
    /// reaction are keyed by (process, upstream sequence id, version), so a page delivered
    /// again after a crash changes nothing it changed before.
    fn handle_feed<'a>(
        &'a self,
        store: &'a S,
        appends: &'a [Vec<IntegerSequencedItem>],
    ) -> BoxFuture<'a, Result<(), FollowError>> {
        Box::pin(async move {
            for item in appends.iter().flatten() {
                if self.topics.is_empty() || self.topics.contains(&item.topic) {
                    self.react_once(store, item).await?;
                }
            }
            Ok(())
        })
    }
}
