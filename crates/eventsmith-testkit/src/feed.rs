//! The feed capability ([`Capabilities::feed`](eventsmith_core::Capabilities::feed)) and the
//! followers on it: a store that claims a feed must deliver every committed append through
//! it ([`ItemStore::read_feed_page`]), in version order per sequence, at least once, within
//! a delay; a store that claims none fails to read one with [`StoreError::Unsupported`]. On
//! a store of [`Delivery::Idempotent`] delivery, a [`Runner`] delivers every append to a
//! follower, runners of one follower share the slices and take over a dead one's, and a
//! process application applies each upstream event once across replays.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventsmith_core::{
    Aggregate, AppendError, Application, BoxError, BoxFuture, Delivery, Envelope, Event,
    IntegerSequencedItem, ItemStore, Policy, Process, Runner, RunnerHandle, Select, StoreError,
    Support, Unit, catch_up,
};
use eventsmith_mapper::EventMapper;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::application::{Marked, Tally, TallyEvent};
use crate::cases::item;
use crate::follow::{Recorder, write};

/// How long the suite waits for an append to appear in a feed: long, because on a store shared
/// with the rest of the suite a reader settles every other case's appends too (on a loaded
/// 3-node cluster, one Paxos read each).
pub const DELAY: Duration = Duration::from_secs(60);

/// A reader of every slice of a store's feed from about the present
/// ([`ItemStore::feed_head`]).
struct Reader<S> {
    store: S,
    positions: Vec<Option<String>>,
}

impl<S: ItemStore> Reader<S> {
    async fn at_head(store: &S) -> Result<Self, StoreError> {
        let mut positions = Vec::new();
        for slice in 0..store.feed_slices()? {
            positions.push(Some(store.feed_head(slice).await?));
        }
        Ok(Reader {
            store: store.clone(),
            positions,
        })
    }

    /// What every slice delivered since the previous call.
    async fn next(&mut self) -> Result<Vec<IntegerSequencedItem>, StoreError> {
        let mut items = Vec::new();
        for (slice, position) in self.positions.iter_mut().enumerate() {
            let page = self
                .store
                .read_feed_page(slice as u32, position.as_deref(), 1000)
                .await?;
            items.extend(page.appends.into_iter().flatten());
            *position = Some(page.position);
        }
        Ok(items)
    }
}

/// Whether the store delivers to followers through a feed; if not, prints why not.
fn on_feed<S: ItemStore>(store: &S, case: &str) -> bool {
    if store.delivery() == Some(Delivery::Idempotent) {
        return true;
    }
    println!("{case}: not applicable, the store delivers through its log, not a feed");
    false
}

/// A store's feed is what its capabilities say: one it claims delivers every committed append
/// (single and batched, of several sequences, with a conflicting append in between that must
/// not appear) at least once, in version order per sequence, within [`DELAY`], with the
/// payloads stored; one it does not claim is not asked for, and fails with `Unsupported` when
/// read anyway.
pub async fn feed_matches_the_capability<S: ItemStore>(store: S) {
    if let Support::Missing { reason } = store.capabilities().feed {
        let slices = store.feed_slices();
        assert!(
            matches!(slices, Err(StoreError::Unsupported { .. })),
            "a store without a feed must say so, got {slices:?}"
        );
        let page = store.read_feed_page(0, None, 10).await;
        assert!(
            matches!(page, Err(StoreError::Unsupported { .. })),
            "a store without a feed must fail to read one with Unsupported, got {page:?}"
        );
        eprintln!("feed case not applicable, capability missing: {reason}");
        return;
    }
    let slices = store.feed_slices().expect("a store with a feed has slices");
    assert!(slices >= 1);
    for bad in [Some("not a position"), None] {
        let out_of_range = bad.is_none();
        let slice = if out_of_range { slices } else { 0 };
        let result = store.read_feed_page(slice, bad, 10).await;
        assert!(
            matches!(result, Err(StoreError::Config { .. })),
            "reading slice {slice} at {bad:?} must be a Config error, got {result:?}"
        );
    }
    let mut reader = Reader::at_head(&store)
        .await
        .expect("start reading the feed");
    let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    for v in 1..=3 {
        store.append(vec![item(a, v, "feed.A")]).await.unwrap();
    }
    store
        .append((1..=3).map(|v| item(b, v, "feed.B")).collect())
        .await
        .unwrap();
    store.append(vec![item(b, 4, "feed.B")]).await.unwrap();
    store.append(vec![item(c, 1, "feed.C")]).await.unwrap();
    let mut rival = item(c, 1, "feed.C");
    rival.payload = b"a conflicting append".to_vec();
    assert!(matches!(
        store.append(vec![rival]).await,
        Err(AppendError::Conflict { .. })
    ));
    store.append(vec![item(c, 2, "feed.C")]).await.unwrap();
    let mut expected = Vec::new();
    for id in [a, b, c] {
        expected.extend(store.select(id, &Select::all()).await.unwrap());
    }
    let ours: HashSet<Uuid> = [a, b, c].into();
    let mut seen: Vec<IntegerSequencedItem> = Vec::new();
    let deadline = Instant::now() + DELAY;
    loop {
        seen.extend(
            reader
                .next()
                .await
                .expect("read the feed")
                .into_iter()
                .filter(|i| ours.contains(&i.sequence_id)),
        );
        if expected.iter().all(|e| seen.contains(e)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the feed did not deliver every committed append within {DELAY:?}: missing {:?}",
            expected
                .iter()
                .filter(|e| !seen.contains(e))
                .map(|e| (e.sequence_id, e.position))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for s in &seen {
        assert!(
            expected.contains(s),
            "the feed delivered what was never committed: {s:?}"
        );
    }
    // In version order per sequence: a redelivery may repeat, never go back past a version
    // not yet delivered.
    let mut highest: BTreeMap<Uuid, u64> = BTreeMap::new();
    for s in &seen {
        let top = highest.entry(s.sequence_id).or_default();
        assert!(
            s.position <= *top + 1,
            "the feed delivered {} version {} before version {}",
            s.sequence_id,
            s.position,
            *top + 1
        );
        *top = (*top).max(s.position);
    }
}

/// Saves the feed's head in every slice as `follower`'s position, so that it follows what
/// comes next rather than the whole feed of a store shared with other tests; the heads.
async fn start_at_head<S: ItemStore>(store: &S, follower: &str) -> Vec<String> {
    let mut heads = Vec::new();
    for slice in 0..store.feed_slices().expect("the feed's slices") {
        let head = store.feed_head(slice).await.expect("the feed's head");
        store
            .save_feed_position(follower, slice, &head)
            .await
            .expect("save a feed position");
        heads.push(head);
    }
    heads
}

/// Every item of the sequences, as stored.
async fn committed<S: ItemStore>(store: &S, ids: &[Uuid]) -> Vec<IntegerSequencedItem> {
    let mut items = Vec::new();
    for id in ids {
        items.extend(
            store
                .select(*id, &Select::all())
                .await
                .expect("read a sequence"),
        );
    }
    items
}

/// Waits up to [`DELAY`] until `delivered()` holds every item of `expected`; panics naming
/// what is missing.
async fn wait_for_all(
    what: &str,
    expected: &[IntegerSequencedItem],
    delivered: impl Fn() -> Vec<IntegerSequencedItem>,
) {
    let deadline = Instant::now() + DELAY;
    loop {
        let seen: HashSet<IntegerSequencedItem> = delivered().into_iter().collect();
        let missing: Vec<(Uuid, u64)> = expected
            .iter()
            .filter(|e| !seen.contains(*e))
            .map(|e| (e.sequence_id, e.position))
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} of {} appended items not delivered within {DELAY:?}, e.g. {:?}",
            missing.len(),
            expected.len(),
            &missing[..missing.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A runner on a feed hands its follower every item committed while it runs, in version
/// order per sequence (a redelivery may repeat a version, never skip ahead), nothing that
/// was never committed; and a runner started after it stopped resumes from the saved
/// positions: it delivers what came after, and nothing the first one handled.
pub async fn feed_runner_delivers_every_append<S: ItemStore>(store: S) {
    if !on_feed(&store, "feed_runner_delivers_every_append") {
        return;
    }
    let topic = format!("feed-runner-{}", Uuid::new_v4());
    let name = format!("feed-runner-{}", Uuid::new_v4());
    start_at_head(&store, &name).await;
    let start = |recorder: &Arc<Recorder>| {
        Runner::new(store.clone())
            .follow(recorder.clone())
            .page_size(5)
            .poll_interval(Duration::from_millis(5))
            .lease_ttl(Duration::from_secs(1))
            .start()
    };
    let first = Recorder::new(&name, &topic);
    let running = start(&first);
    let ids = write(&store, &topic, 4, 10).await;
    let expected = committed(&store, &ids).await;
    wait_for_all("a runner on the feed", &expected, || first.delivered()).await;
    running.stop().await;
    let delivered = first.delivered();
    for item in &delivered {
        assert!(
            expected.contains(item),
            "the runner delivered what was never committed: {item:?}"
        );
    }
    let mut highest: HashMap<Uuid, u64> = HashMap::new();
    for item in &delivered {
        let top = highest.entry(item.sequence_id).or_default();
        assert!(
            item.position <= *top + 1,
            "{} version {} was delivered before version {}",
            item.sequence_id,
            item.position,
            *top + 1
        );
        *top = (*top).max(item.position);
    }
    let second = Recorder::new(&name, &topic);
    let running = start(&second);
    let more = write(&store, &topic, 2, 6).await;
    let expected_more = committed(&store, &more).await;
    wait_for_all(
        "a runner resumed from saved positions",
        &expected_more,
        || second.delivered(),
    )
    .await;
    running.stop().await;
    let again = second
        .delivered()
        .iter()
        .filter(|i| expected.contains(i))
        .count();
    assert_eq!(
        again, 0,
        "a runner resumed from the saved positions delivered {again} items the stopped runner had handled"
    );
}

/// The upstream event of the feed's process case, of a topic no other case writes (a feed
/// shared with other tests holds their events too, some encrypted with keys this case does
/// not have).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Pinged {
    /// Which ping.
    pub n: u64,
}
impl Event for Pinged {
    const TOPIC: &'static str = "testkit.feed.Pinged";
}
eventsmith_core::domain_events! {
    /// The events of [`Pings`].
    pub enum PingEvent { Pinged(Pinged) }
}

/// The upstream aggregate of the feed's process case.
#[derive(Default, Debug, Clone, Serialize, Deserialize)]
pub struct Pings {
    /// How many pings it has sent.
    pub sent: u64,
}
impl Aggregate for Pings {
    type Event = PingEvent;
    fn apply(&mut self, _: &PingEvent) {
        self.sent += 1;
    }
}

/// Mirrors each ping of the case's upstream aggregates as a mark on the mirror tally.
struct PingMirror {
    upstream: HashSet<Uuid>,
    mirror: Uuid,
}

impl<S: ItemStore> Policy<PingEvent, Tally, S> for PingMirror {
    fn react<'a>(
        &'a self,
        event: &'a Envelope<PingEvent>,
        unit: &'a mut Unit<Tally, S>,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            if !self.upstream.contains(&event.originator_id) {
                return Ok(());
            }
            let PingEvent::Pinged(p) = &event.event;
            let n = p.n;
            unit.execute(self.mirror, |_| Ok::<_, String>([Marked { n }]))
                .await?;
            Ok(())
        })
    }
}

/// A process application on a feed mirrors upstream events onto its own aggregate while two
/// runners share the slices; then the whole feed is delivered again from the start (as after
/// a crash that lost every saved position): each upstream event is still mirrored exactly
/// once, because its reaction's append is keyed by (process, upstream sequence id, version).
pub async fn process_on_a_feed_applies_each_event_once<S: ItemStore>(store: S) {
    if !on_feed(&store, "process_on_a_feed_applies_each_event_once") {
        return;
    }
    let pings = Application::<Pings, _>::builder(
        store.clone(),
        EventMapper::<PingEvent>::builder().build().unwrap(),
    )
    .build();
    let app = Application::<Tally, _>::builder(
        store.clone(),
        EventMapper::<TallyEvent>::builder().build().unwrap(),
    )
    .build();
    let upstream: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    let mirror = Uuid::new_v4();
    let name = format!("feed-mirror-{}", Uuid::new_v4());
    let process = || {
        Process::new(
            &name,
            EventMapper::<PingEvent>::builder().build().unwrap(),
            app.clone(),
            PingMirror {
                upstream: upstream.iter().copied().collect(),
                mirror,
            },
        )
        .topics(&[Pinged::TOPIC])
    };
    let heads = start_at_head(&store, &name).await;
    let start = || {
        Runner::new(store.clone())
            .follow(process())
            .page_size(4)
            .poll_interval(Duration::from_millis(5))
            .lease_ttl(Duration::from_secs(1))
            .start()
    };
    let (a, b) = (start(), start());
    for n in 0..40u64 {
        let id = upstream[n as usize % upstream.len()];
        pings
            .command(id, move |_| Ok::<_, String>([Pinged { n }]))
            .await
            .unwrap();
    }
    let marks = || async {
        app.get(mirror)
            .await
            .map(|r| r.state().marks.clone())
            .unwrap_or_default()
    };
    let deadline = Instant::now() + DELAY;
    while marks().await.len() < 40 {
        assert!(
            Instant::now() < deadline,
            "the process mirrored {} of 40 marks within {DELAY:?}",
            marks().await.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.stop().await;
    b.stop().await;
    let version = app.get(mirror).await.unwrap().version();
    // Every saved position lost: the whole feed since the start is delivered again.
    for (slice, head) in heads.iter().enumerate() {
        store
            .save_feed_position(&name, slice as u32, head)
            .await
            .unwrap();
    }
    let handed = catch_up(&store, &process(), 8)
        .await
        .expect("replay the feed");
    assert!(
        handed >= 40,
        "the replay handed the process {handed} items, not every upstream one"
    );
    let mut mirrored = marks().await;
    mirrored.sort_unstable();
    assert_eq!(
        mirrored,
        (0..40).collect::<Vec<_>>(),
        "each upstream mark mirrored once, across a replay of the whole feed"
    );
    assert_eq!(
        app.get(mirror).await.unwrap().version(),
        version,
        "the replay appended to the mirror"
    );
    let events = app
        .repository()
        .event_store()
        .load(mirror, &Select::all())
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

/// A runner of its own runtime, so that it can be killed as a crashed process would be: its
/// tasks dropped mid-flight, no lease released.
struct Detached {
    runtime: tokio::runtime::Runtime,
    handle: RunnerHandle,
    recorder: Arc<Recorder>,
}

impl Detached {
    fn slices(&self, name: &str) -> Vec<u32> {
        self.handle
            .status(name)
            .map(|s| s.slices)
            .unwrap_or_default()
    }
}

/// Whether the runners' slices are every slice, each held by one of them.
fn partition(held: &[Vec<u32>], slices: u32) -> bool {
    let mut all: Vec<u32> = held.iter().flatten().copied().collect();
    all.sort_unstable();
    all == (0..slices).collect::<Vec<_>>()
}

/// Three runners of one follower share a feed's slices, each holding its share and no slice
/// held by two; one is killed (its runtime shut down, as a crash: no lease released); after
/// its leases expire the other two hold every slice, and every item appended before and
/// after the kill is delivered.
pub async fn runners_share_the_slices_and_take_over<S: ItemStore>(store: S) {
    if !on_feed(&store, "runners_share_the_slices_and_take_over") {
        return;
    }
    let slices = store.feed_slices().unwrap();
    let topic = format!("feed-share-{}", Uuid::new_v4());
    let name = format!("feed-share-{}", Uuid::new_v4());
    start_at_head(&store, &name).await;
    let ttl = Duration::from_secs(1);
    let spawn = || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let recorder = Recorder::new(&name, &topic);
        let handle = {
            let _entered = runtime.enter();
            Runner::new(store.clone())
                .follow(recorder.clone())
                .page_size(64)
                .poll_interval(Duration::from_millis(10))
                .lease_ttl(ttl)
                .start()
        };
        Detached {
            runtime,
            handle,
            recorder,
        }
    };
    let mut runners: Vec<Detached> = (0..3).map(|_| spawn()).collect();
    let mut ids = write(&store, &topic, 3, 8).await;
    let (low, high) = (slices / 3, slices.div_ceil(3));
    let deadline = Instant::now() + DELAY;
    loop {
        let held: Vec<Vec<u32>> = runners.iter().map(|r| r.slices(&name)).collect();
        if partition(&held, slices)
            && held
                .iter()
                .all(|h| (low as usize..=high as usize).contains(&h.len()))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "three runners did not share {slices} slices within {DELAY:?}: they hold {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dead = runners.pop().unwrap();
    let dead_slices = dead.slices(&name);
    let killed = Instant::now();
    dead.runtime.shutdown_background();
    drop(dead.handle);
    let deadline = Instant::now() + DELAY;
    loop {
        let held: Vec<Vec<u32>> = runners.iter().map(|r| r.slices(&name)).collect();
        if partition(&held, slices) {
            break;
        }
        let mut all: Vec<u32> = held.iter().flatten().copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(
            all.len(),
            held.iter().map(Vec::len).sum::<usize>(),
            "two runners hold one slice: {held:?}"
        );
        assert!(
            Instant::now() < deadline,
            "the two runners left did not take the killed one's slices {dead_slices:?} within {DELAY:?}: they hold {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = killed.elapsed();
    assert!(
        dead_slices.is_empty() || took >= ttl / 3,
        "the killed runner's slices were taken after {took:?}, before its leases could expire"
    );
    ids.extend(write(&store, &topic, 3, 8).await);
    let expected = committed(&store, &ids).await;
    let recorders: Vec<Arc<Recorder>> = runners
        .iter()
        .map(|r| r.recorder.clone())
        .chain([dead.recorder])
        .collect();
    wait_for_all("three runners, one killed", &expected, || {
        recorders.iter().flat_map(|r| r.delivered()).collect()
    })
    .await;
    for runner in runners {
        runner.handle.stop().await;
        runner.runtime.shutdown_background();
    }
    println!(
        "runners_share_the_slices_and_take_over: the killed runner's slices {dead_slices:?} were taken after {took:?}"
    );
}
