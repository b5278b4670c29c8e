//! Conformance cases for followers: a follower never skips an event committed while it
//! reads, resumes exactly where it stopped, is never applied twice by two runners, and a
//! process application applies each upstream event once.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventsmith_core::{
    Application, BoxError, BoxFuture, Delivery, FollowError, Follower, IntegerSequencedItem,
    ItemStore, Notification, Policy, Process, Runner, StoreError, Tracking, Unit,
};
use eventsmith_mapper::EventMapper;
use tokio::sync::Barrier;
use uuid::Uuid;

use crate::application::{Marked, Tally, TallyEvent};

/// A follower that keeps every page it applied, in memory, after moving its tracking record
/// in the store (an empty [`ItemStore::append_tracked`]): the pages it keeps are exactly the
/// pages whose position it recorded.
#[derive(Debug)]
pub struct Recorder {
    name: String,
    topics: Vec<String>,
    pages: Mutex<Vec<Vec<Notification>>>,
    /// What it was handed from a feed, of its topics, in the order handed, with when.
    feed: Mutex<Vec<(IntegerSequencedItem, std::time::Instant)>>,
}

impl Recorder {
    /// A recorder named `name` following `topic`.
    pub fn new(name: &str, topic: &str) -> Arc<Self> {
        Arc::new(Recorder {
            name: name.to_owned(),
            topics: vec![topic.to_owned()],
            pages: Mutex::new(Vec::new()),
            feed: Mutex::new(Vec::new()),
        })
    }

    /// Every item of its topic a feed handed it, in the order handed (a redelivered item
    /// appears again).
    pub fn delivered(&self) -> Vec<IntegerSequencedItem> {
        self.arrivals().into_iter().map(|(item, _)| item).collect()
    }

    /// [`delivered`](Self::delivered), each item with when it was handed over: for a
    /// follower's lag.
    pub fn arrivals(&self) -> Vec<(IntegerSequencedItem, std::time::Instant)> {
        self.feed.lock().unwrap().clone()
    }

    /// Every notification applied, in the order applied.
    pub fn applied(&self) -> Vec<Notification> {
        self.pages
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .cloned()
            .collect()
    }
}

impl<S: ItemStore> Follower<S> for Recorder {
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
            let to = page.last().map_or(from, |n| n.id);
            let tracking = Tracking {
                follower: self.name.clone(),
                from,
                to,
            };
            store.append_tracked(Vec::new(), tracking).await?;
            self.pages.lock().unwrap().push(page.to_vec());
            Ok(())
        })
    }

    fn handle_feed<'a>(
        &'a self,
        _: &'a S,
        appends: &'a [Vec<IntegerSequencedItem>],
    ) -> BoxFuture<'a, Result<(), FollowError>> {
        let now = std::time::Instant::now();
        let ours = appends
            .iter()
            .flatten()
            .filter(|i| self.topics.contains(&i.topic))
            .map(|i| (i.clone(), now));
        self.feed.lock().unwrap().extend(ours);
        Box::pin(async { Ok(()) })
    }
}

/// Whether the store keeps tracking records; if not, checks that it says so and prints why.
async fn follows<S: ItemStore>(store: &S, case: &str) -> bool {
    match store.delivery() {
        Some(Delivery::Transactional) => return true,
        Some(Delivery::Idempotent) => {
            println!("{case}: the store delivers through a feed (the feed cases cover it)");
            return false;
        }
        _ => {}
    }
    match store.tracking_position("anyone").await {
        Err(StoreError::Unsupported { reason, .. }) => {
            println!("{case}: the store keeps no tracking records ({reason})");
            false
        }
        other => panic!("a store without a delivery mode must refuse tracking, got {other:?}"),
    }
}

fn item(sequence_id: Uuid, position: u64, topic: &str) -> IntegerSequencedItem {
    crate::cases::item(sequence_id, position, topic)
}

/// `writers` tasks, each appending `batches` batches of 1 to 4 items to sequences of its
/// own (several batches per sequence), all under `topic`.
pub(crate) async fn write<S: ItemStore>(
    store: &S,
    topic: &str,
    writers: usize,
    batches: usize,
) -> Vec<Uuid> {
    let barrier = Arc::new(Barrier::new(writers));
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (store, topic, barrier) = (store.clone(), topic.to_owned(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let ids = [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()];
                let written = ids.to_vec();
                let mut next = [1u64; 3];
                for b in 0..batches {
                    let s = (b + w) % 3;
                    let n = 1 + (b * 7 + w) % 4;
                    let batch = (0..n as u64)
                        .map(|i| item(ids[s], next[s] + i, &topic))
                        .collect();
                    next[s] += n as u64;
                    store.append(batch).await.expect("a writer's append");
                    if b % 5 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                written
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    ids
}

/// The whole log of `topic` read from scratch: what a follower must have applied.
async fn rebuild<S: ItemStore>(store: &S, topic: &str) -> Vec<Notification> {
    let mut all: Vec<Notification> = Vec::new();
    loop {
        let after = all.last().map_or(0, |n| n.id);
        let page = store
            .select_notifications(after, 1000, &[topic])
            .await
            .expect("read the log");
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// What a follower applied is the rebuild: every event exactly once, in log order, each
/// sequence's positions in order.
#[track_caller]
fn assert_same(applied: &[Notification], rebuilt: &[Notification], expected: usize) {
    assert_eq!(rebuilt.len(), expected, "the log holds every appended item");
    let ids: Vec<u64> = applied.iter().map(|n| n.id).collect();
    let unique: HashSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a notification was applied twice");
    let missing: Vec<u64> = rebuilt
        .iter()
        .map(|n| n.id)
        .filter(|id| !unique.contains(id))
        .collect();
    assert!(missing.is_empty(), "skipped notifications {missing:?}");
    assert_eq!(applied, rebuilt, "applied in another order than the log");
    let mut last: BTreeMap<Uuid, u64> = BTreeMap::new();
    for n in applied {
        let before = last
            .insert(n.item.sequence_id, n.item.position)
            .unwrap_or(0);
        assert_eq!(n.item.position, before + 1, "a sequence out of order");
    }
}

/// Eight writers commit batches while a runner follows live: the follower's output equals a
/// rebuild from scratch, every event exactly once, each sequence in order.
pub async fn follower_never_skips<S: ItemStore>(store: S) {
    if !follows(&store, "follower_never_skips").await {
        return;
    }
    let topic = format!("never-skip-{}", Uuid::new_v4());
    let recorder = Recorder::new(&format!("never-skip-{}", Uuid::new_v4()), &topic);
    let running = Runner::new(store.clone())
        .follow(recorder.clone())
        .page_size(7)
        .poll_interval(Duration::from_millis(1))
        .start();
    write(&store, &topic, 8, 40).await;
    let rebuilt = rebuild(&store, &topic).await;
    running
        .wait_for(recorder.name.as_str(), rebuilt.last().unwrap().id)
        .await;
    running.stop().await;
    let expected = (0..8)
        .map(|w| (0..40).map(|b| 1 + (b * 7 + w) % 4).sum::<usize>())
        .sum();
    assert_same(&recorder.applied(), &rebuilt, expected);
}

/// A runner stopped and started again at random points, while writers commit: the output
/// equals a rebuild, nothing skipped or repeated across the restarts.
pub async fn follower_resumes_exactly<S: ItemStore>(store: S) {
    if !follows(&store, "follower_resumes_exactly").await {
        return;
    }
    let topic = format!("resume-{}", Uuid::new_v4());
    let recorder = Recorder::new(&format!("resume-{}", Uuid::new_v4()), &topic);
    let writing = {
        let (store, topic) = (store.clone(), topic.clone());
        tokio::spawn(async move { write(&store, &topic, 4, 60).await })
    };
    for round in 0..8u64 {
        let running = Runner::new(store.clone())
            .follow(recorder.clone())
            .page_size(3)
            .poll_interval(Duration::from_millis(1))
            .start();
        tokio::time::sleep(Duration::from_millis(2 + (round * 37) % 11)).await;
        running.stop().await;
    }
    writing.await.unwrap();
    let rebuilt = rebuild(&store, &topic).await;
    let running = Runner::new(store.clone())
        .follow(recorder.clone())
        .page_size(3)
        .start();
    running
        .wait_for(recorder.name.as_str(), rebuilt.last().unwrap().id)
        .await;
    running.stop().await;
    let expected = (0..4)
        .map(|w| (0..60).map(|b| 1 + (b * 7 + w) % 4).sum::<usize>())
        .sum();
    assert_same(&recorder.applied(), &rebuilt, expected);
}

/// Two catch-ups of the same follower (same name, same tracking record, no lease) run at
/// once, over and over, while writers commit: between them every event is applied exactly
/// once; neither applies a page the other applied. This is the store's tracking check alone,
/// which still protects a runner that stalled past its lease.
pub async fn two_runners_never_apply_a_page_twice<S: ItemStore>(store: S) {
    if !follows(&store, "two_runners_never_apply_a_page_twice").await {
        return;
    }
    let topic = format!("two-runners-{}", Uuid::new_v4());
    let name = format!("two-runners-{}", Uuid::new_v4());
    let (a, b) = (Recorder::new(&name, &topic), Recorder::new(&name, &topic));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let keep_catching_up = |r: &Arc<Recorder>| {
        let (store, r, done) = (store.clone(), r.clone(), done.clone());
        tokio::spawn(async move {
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                eventsmith_core::catch_up(&store, &*r, 5)
                    .await
                    .expect("catch up");
                if finished {
                    return;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let (first, second) = (keep_catching_up(&a), keep_catching_up(&b));
    write(&store, &topic, 8, 30).await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    first.await.unwrap();
    second.await.unwrap();
    let rebuilt = rebuild(&store, &topic).await;
    let last = rebuilt.last().unwrap().id;
    assert_eq!(store.tracking_position(&name).await.unwrap(), last);
    let mut applied = a.applied();
    applied.extend(b.applied());
    applied.sort_by_key(|n| n.id);
    let expected = (0..8)
        .map(|w| (0..30).map(|b| 1 + (b * 7 + w) % 4).sum::<usize>())
        .sum();
    assert_same(&applied, &rebuilt, expected);
}

/// Two runners of one follower, started together: only the one holding the follower's lease
/// runs it; the other stands by and takes over when the first stops (releasing the lease)
/// or its handle is dropped, and a lease left by a runner that died is taken over once it
/// expires. Between them every event is applied exactly once.
pub async fn one_runner_runs_a_follower_at_a_time<S: ItemStore>(store: S) {
    if !follows(&store, "one_runner_runs_a_follower_at_a_time").await {
        return;
    }
    let topic = format!("one-runner-{}", Uuid::new_v4());
    let name = format!("one-runner-{}", Uuid::new_v4());
    // A runner that died holding the lease, which still has 300 ms to run.
    let dead = eventsmith_core::Lease {
        follower: name.clone(),
        owner: Uuid::new_v4(),
        ttl: Duration::from_millis(300),
    };
    assert_eq!(
        store.claim_lease(&dead).await.unwrap(),
        eventsmith_core::LeaseClaim::Held
    );
    let (a, b) = (Recorder::new(&name, &topic), Recorder::new(&name, &topic));
    let start = |r: &Arc<Recorder>| {
        Runner::new(store.clone())
            .follow(r.clone())
            .page_size(5)
            .poll_interval(Duration::from_millis(2))
            .lease_ttl(Duration::from_millis(600))
            .start()
    };
    let started = std::time::Instant::now();
    let first = start(&a);
    write(&store, &topic, 4, 10).await;
    let head = rebuild(&store, &topic).await.last().unwrap().id;
    first.wait_for(&name, head).await;
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "a runner ran the follower while a dead runner's lease had not expired"
    );
    let second = start(&b);
    write(&store, &topic, 4, 10).await;
    let head = rebuild(&store, &topic).await.last().unwrap().id;
    first.wait_for(&name, head).await;
    // The second had time to claim (it looks every 200 ms at most): it stood by.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(
        b.applied().is_empty(),
        "two runners ran one follower at once"
    );
    assert!(first.status(&name).unwrap().active);
    assert!(!second.status(&name).is_some_and(|s| s.active));
    first.stop().await;
    write(&store, &topic, 4, 10).await;
    let rebuilt = rebuild(&store, &topic).await;
    tokio::time::timeout(
        Duration::from_secs(10),
        second.wait_for(&name, rebuilt.last().unwrap().id),
    )
    .await
    .expect("the standing-by runner took over after the first stopped");
    // A third stands by; the second's handle is dropped, which stops it and hands over.
    let c = Recorder::new(&name, &topic);
    let third = start(&c);
    drop(second);
    write(&store, &topic, 4, 10).await;
    let rebuilt = rebuild(&store, &topic).await;
    tokio::time::timeout(
        Duration::from_secs(10),
        third.wait_for(&name, rebuilt.last().unwrap().id),
    )
    .await
    .expect("the runner standing by took over after the other's handle was dropped");
    third.stop().await;
    assert!(!b.applied().is_empty() && !c.applied().is_empty());
    let mut applied = a.applied();
    applied.extend(b.applied());
    applied.extend(c.applied());
    applied.sort_by_key(|n| n.id);
    let expected = 4
        * (0..4)
            .map(|w| (0..10).map(|b| 1 + (b * 7 + w) % 4).sum::<usize>())
            .sum::<usize>();
    assert_same(&applied, &rebuilt, expected);
}

/// Mirrors every mark made on the upstream tallies of one test onto one mirror tally.
struct Mirror {
    upstream: HashSet<Uuid>,
    mirror: Uuid,
}

impl<S: ItemStore> Policy<TallyEvent, Tally, S> for Mirror {
    fn react<'a>(
        &'a self,
        event: &'a eventsmith_core::Envelope<TallyEvent>,
        unit: &'a mut Unit<Tally, S>,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            // Other tests' tallies, and the mirror's own events, are not ours to mirror.
            if !self.upstream.contains(&event.originator_id) {
                return Ok(());
            }
            let TallyEvent::Marked(m) = &event.event;
            let n = m.n;
            unit.execute(self.mirror, |_| Ok::<_, String>([Marked { n }]))
                .await?;
            Ok(())
        })
    }
}

/// A process application mirrors upstream events onto its own aggregate while two runners
/// of it run and are restarted: every upstream event is mirrored exactly once (its emitted
/// events and its tracking record commit together), and they carry the upstream event as
/// their causation.
pub async fn process_applies_each_event_once<S: ItemStore>(store: S) {
    if !follows(&store, "process_applies_each_event_once").await {
        return;
    }
    let mapper = || EventMapper::<TallyEvent>::builder().build().unwrap();
    let app = Application::<Tally, _>::builder(store.clone(), mapper()).build();
    let upstream: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    let mirror = Uuid::new_v4();
    let name = format!("mirror-{}", Uuid::new_v4());
    let process = || {
        Process::new(
            &name,
            mapper(),
            app.clone(),
            Mirror {
                upstream: upstream.iter().copied().collect(),
                mirror,
            },
        )
        .topics(&["testkit.Marked"])
    };
    let writing = {
        let (app, upstream) = (app.clone(), upstream.clone());
        tokio::spawn(async move {
            for n in 0..60u64 {
                let id = upstream[n as usize % upstream.len()];
                app.command(id, move |_| Ok::<_, String>([Marked { n }]))
                    .await
                    .unwrap();
            }
        })
    };
    for round in 0..5u64 {
        let start = || {
            Runner::new(store.clone())
                .follow(process())
                .page_size(4)
                .poll_interval(Duration::from_millis(1))
                .start()
        };
        let (a, b) = (start(), start());
        tokio::time::sleep(Duration::from_millis(3 + round * 5)).await;
        a.stop().await;
        b.stop().await;
    }
    writing.await.unwrap();
    let running = Runner::new(store.clone())
        .follow(process())
        .poll_interval(Duration::from_millis(1))
        .start();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let marks = app
            .get(mirror)
            .await
            .map(|r| r.state().marks.len())
            .unwrap_or(0);
        if marks >= 60 || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Let it run a little longer: a duplicate would show now.
    tokio::time::sleep(Duration::from_millis(50)).await;
    running.stop().await;
    let mirrored = app.get(mirror).await.expect("the mirror exists");
    let mut marks = mirrored.state().marks.clone();
    marks.sort_unstable();
    assert_eq!(
        marks,
        (0..60).collect::<Vec<_>>(),
        "each upstream mark mirrored once"
    );
    let events = app
        .repository()
        .event_store()
        .load(mirror, &eventsmith_core::Select::all())
        .await
        .unwrap();
    assert!(
        events.iter().all(|e| e
            .metadata
            .causation_id
            .as_ref()
            .is_some_and(|c| upstream.iter().any(|u| c.starts_with(&u.to_string())))),
        "mirrored events name their upstream event as their cause"
    );
}
