//! The feed's guarantees against the real node, with a TCP proxy between a writer and
//! Cassandra: a writer that dies between its intent and its transaction is completed by a
//! reader; a writer whose transaction is delayed past `help_after` loses the race to a helper
//! and still reports success; of two writers racing for versions one is delivered, the other
//! voided; intents that reach the table late, within the window, are not missed; and a reader
//! resumed from a saved position delivers exactly what follows.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use eventsmith_core::{
    AppendError, IdempotencyKey, IntegerSequencedItem, ItemStore, KeyedAppend, Select,
    SequencedItem, StoreError,
};
use eventsmith_scylla::{CassandraConfig, CassandraStore, FeedConfig, FeedPosition};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Barrier, Mutex};
use uuid::Uuid;

fn item(id: Uuid, position: u64, payload: &str) -> IntegerSequencedItem {
    SequencedItem {
        sequence_id: id,
        position,
        topic: "feed.test".into(),
        payload: payload.as_bytes().to_vec(),
    }
}

/// The feed timings of these tests: a reader helps after 500 ms, keeps a 4 s window.
fn timings() -> FeedConfig {
    FeedConfig {
        window: Duration::from_secs(4),
        help_after: Duration::from_millis(500),
        ..common::feed_settings()
    }
}

/// The bytes that mark the requests the proxy acts on: payloads of the appends under test
/// contain them, so the intent (which carries the payloads) and the transaction both do.
const MARKER: &[u8] = b"feed proxy";

#[derive(Debug, Clone, Copy)]
enum Action {
    /// Never forward the request, never answer it: the writer's process died with it.
    Swallow,
    /// Forward it after this long, while the connection's other requests go on.
    Delay(Duration),
    /// Do not forward it; answer it with an `Overloaded` error, which says for sure that it
    /// was not applied.
    Overloaded,
}

/// What the proxy does to marked EXECUTE or BATCH requests: let `skip` of them through, then
/// act on the next `times`.
#[derive(Debug)]
struct Plan {
    skip: usize,
    times: usize,
    action: Action,
}

/// A TCP proxy in front of Cassandra that reads the CQL frame header (9 bytes: version,
/// flags, stream, opcode, body length) to act on single requests.
struct Proxy {
    address: SocketAddr,
    plan: Arc<std::sync::Mutex<Plan>>,
    acted: Arc<AtomicUsize>,
    /// Delayed requests forwarded.
    forwarded: Arc<AtomicUsize>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let plan = Arc::new(std::sync::Mutex::new(Plan {
            skip: 0,
            times: 0,
            action: Action::Swallow,
        }));
        let acted = Arc::new(AtomicUsize::new(0));
        let forwarded = Arc::new(AtomicUsize::new(0));
        let (p, a, f) = (plan.clone(), acted.clone(), forwarded.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                tokio::spawn(relay(client, server, p.clone(), a.clone(), f.clone()));
            }
        });
        Proxy {
            address,
            plan,
            acted,
            forwarded,
        }
    }

    /// Lets `skip` marked requests through, then applies `action` to the next `times`.
    fn plan(&self, skip: usize, times: usize, action: Action) {
        *self.plan.lock().unwrap() = Plan {
            skip,
            times,
            action,
        };
    }
}

async fn forward(server: &Mutex<OwnedWriteHalf>, header: &[u8], body: &[u8]) -> bool {
    let mut server = server.lock().await;
    server.write_all(header).await.is_ok() && server.write_all(body).await.is_ok()
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    plan: Arc<std::sync::Mutex<Plan>>,
    acted: Arc<AtomicUsize>,
    forwarded: Arc<AtomicUsize>,
) {
    let (mut client_read, client_write) = client.into_split();
    let (mut server_read, server_write) = server.into_split();
    let server_write = Arc::new(Mutex::new(server_write));
    let client_write = Arc::new(Mutex::new(client_write));
    let answers = {
        let client_write = client_write.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match server_read.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if client_write
                    .lock()
                    .await
                    .write_all(&buf[..n])
                    .await
                    .is_err()
                {
                    break;
                }
            }
        })
    };
    let mut header = [0u8; 9];
    loop {
        if client_read.read_exact(&mut header).await.is_err() {
            break;
        }
        let len = u32::from_be_bytes(header[5..9].try_into().unwrap()) as usize;
        let mut body = vec![0; len];
        if client_read.read_exact(&mut body).await.is_err() {
            break;
        }
        let is_write = matches!(header[4], 0x0A | 0x0D); // EXECUTE, BATCH
        let action = if is_write && body.windows(MARKER.len()).any(|w| w == MARKER) {
            let mut plan = plan.lock().unwrap();
            if plan.skip > 0 {
                plan.skip -= 1;
                None
            } else if plan.times > 0 {
                plan.times -= 1;
                Some(plan.action)
            } else {
                None
            }
        } else {
            None
        };
        match action {
            None => {
                if !forward(&server_write, &header, &body).await {
                    break;
                }
            }
            Some(Action::Swallow) => {
                acted.fetch_add(1, Ordering::SeqCst);
            }
            Some(Action::Overloaded) => {
                acted.fetch_add(1, Ordering::SeqCst);
                // An ERROR frame (opcode 0) on the request's stream: code 0x1001, a message.
                let message = b"overloaded by the test proxy";
                let mut frame = vec![header[0] | 0x80, 0, header[2], header[3], 0x00];
                let mut error = 0x1001i32.to_be_bytes().to_vec();
                error.extend((message.len() as u16).to_be_bytes());
                error.extend(message);
                frame.extend((error.len() as u32).to_be_bytes());
                frame.extend(error);
                if client_write.lock().await.write_all(&frame).await.is_err() {
                    break;
                }
            }
            Some(Action::Delay(delay)) => {
                acted.fetch_add(1, Ordering::SeqCst);
                let (server_write, forwarded) = (server_write.clone(), forwarded.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    forward(&server_write, &header, &body).await;
                    forwarded.fetch_add(1, Ordering::SeqCst);
                });
            }
        }
    }
    answers.abort();
}

/// A store on the feed keyspace through a new proxy, with the test timings.
async fn proxied(configure: impl FnOnce(&mut CassandraConfig)) -> Option<(CassandraStore, Proxy)> {
    common::feed_store(timings()).await?; // creates the keyspace
    let address = common::address()?;
    let upstream: SocketAddr = tokio::net::lookup_host(&address)
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = Proxy::start(upstream).await;
    let mut config = CassandraConfig::new(
        [proxy.address.to_string()],
        common::feed_config(&address).keyspace(),
    )
    .unwrap();
    config.address_map = HashMap::from([(upstream, proxy.address), (proxy.address, proxy.address)]);
    config.feed = Some(timings());
    configure(&mut config);
    let store = CassandraStore::connect(config).await.unwrap();
    Some((store, proxy))
}

/// A reader of the whole feed, from about now, keeping everything it was delivered.
struct Reader {
    store: CassandraStore,
    position: FeedPosition,
    delivered: Vec<IntegerSequencedItem>,
    voided: Vec<(Uuid, Uuid)>,
}

impl Reader {
    fn new(store: &CassandraStore) -> Reader {
        Reader::at(store, store.feed_now().unwrap())
    }

    fn at(store: &CassandraStore, position: FeedPosition) -> Reader {
        Reader {
            store: store.clone(),
            position,
            delivered: Vec::new(),
            voided: Vec::new(),
        }
    }

    /// One read of every slice.
    async fn poll(&mut self) {
        let mut slices = Vec::new();
        for slice in self.position.slices() {
            let page = self.store.read_feed_slice(slice, 1000).await.unwrap();
            self.delivered.extend(page.items().cloned());
            self.voided.extend(page.voided.iter().copied());
            slices.push(page.position);
        }
        self.position = slices
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("/")
            .parse()
            .unwrap();
    }

    /// What it was delivered of these sequences.
    fn of(&self, ids: &[Uuid]) -> Vec<IntegerSequencedItem> {
        self.delivered
            .iter()
            .filter(|i| ids.contains(&i.sequence_id))
            .cloned()
            .collect()
    }

    /// Polls every 100 ms until `done` holds of what it was delivered, for at most `limit`.
    async fn until(&mut self, limit: Duration, done: impl Fn(&Reader) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            self.poll().await;
            if done(self) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not delivered within {limit:?} ({} items delivered, {} intents voided)",
                self.delivered.len(),
                self.voided.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls for `time` more (every 100 ms), to see that nothing more comes.
    async fn for_a_while(&mut self, time: Duration) {
        let deadline = Instant::now() + time;
        while Instant::now() < deadline {
            self.poll().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// (1) The writer dies between its intent and its transaction (the proxy swallows the
/// transaction and the writer's task is aborted): a reader helps, the append is delivered
/// exactly once and the aggregate's log has it, with its idempotency key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_dies_after_its_intent_is_completed_by_a_reader() {
    let Some((writer, proxy)) = proxied(|_| ()).await else {
        return;
    };
    let reader_store = common::feed_store(timings()).await.unwrap();
    let mut reader = Reader::new(&reader_store);
    for (n, batch) in [1u64, 3].into_iter().enumerate() {
        let id = Uuid::new_v4();
        let items: Vec<_> = (1..=batch)
            .map(|v| item(id, v, "died, feed proxy"))
            .collect();
        let key = IdempotencyKey::new(format!("command-{n}")).unwrap();
        // Through the intent, then nothing more of it reaches Cassandra.
        proxy.plan(1, usize::MAX, Action::Swallow);
        let acted = proxy.acted.load(Ordering::SeqCst);
        let task = {
            let (writer, items, key) = (writer.clone(), items.clone(), key.clone());
            tokio::spawn(async move {
                if batch == 1 {
                    writer.append(items).await.map(|_| ())
                } else {
                    writer.append_with_key(items, &key).await.map(|_| ())
                }
            })
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while proxy.acted.load(Ordering::SeqCst) == acted {
            assert!(Instant::now() < deadline, "the transaction never came");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        task.abort(); // the writer dies
        assert!(task.await.unwrap_err().is_cancelled());
        proxy.plan(0, 0, Action::Swallow);
        assert!(
            reader_store
                .select(id, &Select::all())
                .await
                .unwrap()
                .is_empty(),
            "the writer's transaction must not have applied"
        );
        reader
            .until(Duration::from_secs(10), |r| {
                r.of(&[id]).len() == items.len()
            })
            .await;
        reader.for_a_while(Duration::from_millis(1500)).await;
        assert_eq!(reader.of(&[id]), items, "delivered exactly once");
        assert_eq!(
            reader_store.select(id, &Select::all()).await.unwrap(),
            items,
            "the aggregate's log has it"
        );
        if batch > 1 {
            // The helper sent the key with the rows: the command is known as applied.
            let again = reader_store
                .append_with_key(items.clone(), &key)
                .await
                .unwrap();
            assert!(matches!(again, KeyedAppend::AlreadyApplied(_)), "{again:?}");
        }
    }
}

/// (2) The writer's transaction is delayed (4 s) past `help_after`: a reader helps and wins;
/// then the writer's own transaction arrives, is refused because of rows carrying its commit
/// id, and the writer reports success: never a conflict, never a second copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_delayed_past_help_after_loses_to_a_helper_and_succeeds() {
    let Some((writer, proxy)) = proxied(|c| {
        c.request_timeout = Some(Duration::from_secs(30));
    })
    .await
    else {
        return;
    };
    let reader_store = common::feed_store(timings()).await.unwrap();
    let mut reader = Reader::new(&reader_store);
    for batch in [1u64, 3] {
        let id = Uuid::new_v4();
        let items: Vec<_> = (1..=batch)
            .map(|v| item(id, v, "late, feed proxy"))
            .collect();
        proxy.plan(1, 1, Action::Delay(Duration::from_secs(4)));
        let forwarded = proxy.forwarded.load(Ordering::SeqCst);
        let applied_before = writer.outcome_stats().resolved_applied;
        let task = {
            let (writer, items) = (writer.clone(), items.clone());
            tokio::spawn(async move { writer.append(items).await })
        };
        reader
            .until(Duration::from_secs(10), |r| {
                r.of(&[id]).len() == items.len()
            })
            .await;
        assert_eq!(
            proxy.forwarded.load(Ordering::SeqCst),
            forwarded,
            "a helper delivered it before the writer's transaction arrived"
        );
        task.await
            .unwrap()
            .expect("the writer's late transaction is resolved by its commit id: a success");
        assert_eq!(proxy.forwarded.load(Ordering::SeqCst), forwarded + 1);
        assert_eq!(
            writer.outcome_stats().resolved_applied,
            applied_before + 1,
            "resolved as applied by the commit id"
        );
        reader.for_a_while(Duration::from_millis(1000)).await;
        assert_eq!(reader.of(&[id]), items, "delivered exactly once");
        assert_eq!(
            reader_store.select(id, &Select::all()).await.unwrap(),
            items,
            "written once"
        );
    }
}

/// (1b) The transaction fails for sure after the intent was stored (the proxy answers it with
/// `Overloaded`): the writer reports an unknown outcome, never a failure, since a reader
/// cannot tell it from a dead writer; and a reader completes the append, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_that_fails_after_its_intent_is_outcome_unknown_and_completed() {
    let Some((writer, proxy)) = proxied(|_| ()).await else {
        return;
    };
    let reader_store = common::feed_store(timings()).await.unwrap();
    let mut reader = Reader::new(&reader_store);
    let id = Uuid::new_v4();
    let items = vec![item(id, 1, "overloaded, feed proxy")];
    proxy.plan(1, 1, Action::Overloaded);
    let err = writer.append(items.clone()).await.unwrap_err();
    assert!(
        matches!(err, AppendError::Store(StoreError::OutcomeUnknown { .. })),
        "{err}"
    );
    // The transaction's own failure is kept as the source, typed.
    let cause = std::error::Error::source(&err)
        .and_then(|s| s.downcast_ref::<StoreError>())
        .map(StoreError::kind);
    assert_eq!(cause, Some(eventsmith_core::ErrorKind::Busy), "{err:?}");
    assert_eq!(proxy.acted.load(Ordering::SeqCst), 1);
    reader
        .until(Duration::from_secs(10), |r| r.of(&[id]).len() == 1)
        .await;
    reader.for_a_while(Duration::from_millis(1000)).await;
    assert_eq!(reader.of(&[id]), items, "delivered exactly once");
    assert_eq!(
        reader_store.select(id, &Select::all()).await.unwrap(),
        items
    );
}

/// (1c) An intent acknowledged later than half the window after its timestamp (held 2.5 s,
/// the window is 4 s) is not committed by its writer, which reports an unknown outcome; it
/// reached the table within the window, so a reader still settles it (here: completes it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intent_acknowledged_too_late_is_not_committed_by_its_writer() {
    let Some((writer, proxy)) = proxied(|_| ()).await else {
        return;
    };
    let reader_store = common::feed_store(timings()).await.unwrap();
    let mut reader = Reader::new(&reader_store);
    let id = Uuid::new_v4();
    let items = vec![item(id, 1, "slow intent, feed proxy")];
    proxy.plan(0, 1, Action::Delay(Duration::from_millis(2500)));
    let err = writer.append(items.clone()).await.unwrap_err();
    assert!(
        matches!(&err, AppendError::Store(StoreError::OutcomeUnknown { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("half the feed window"), "{err}");
    reader
        .until(Duration::from_secs(10), |r| r.of(&[id]).len() == 1)
        .await;
    reader.for_a_while(Duration::from_millis(1000)).await;
    assert_eq!(reader.of(&[id]), items, "completed by a reader, once");
    assert_eq!(
        reader_store.select(id, &Select::all()).await.unwrap(),
        items
    );
}

/// (1d) An intent whose write times out (the proxy swallows it; 1 s request timeout) is
/// written again, the same row, and the append goes on and succeeds, delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intent_write_that_times_out_is_sent_again() {
    let Some((writer, proxy)) = proxied(|c| {
        c.request_timeout = Some(Duration::from_secs(1));
    })
    .await
    else {
        return;
    };
    let reader_store = common::feed_store(timings()).await.unwrap();
    let mut reader = Reader::new(&reader_store);
    let id = Uuid::new_v4();
    let items = vec![item(id, 1, "lost intent, feed proxy")];
    proxy.plan(0, 1, Action::Swallow);
    writer
        .append(items.clone())
        .await
        .expect("the intent is sent again, then the transaction");
    assert_eq!(proxy.acted.load(Ordering::SeqCst), 1);
    reader
        .until(Duration::from_secs(10), |r| r.of(&[id]).len() == 1)
        .await;
    reader.for_a_while(Duration::from_millis(1000)).await;
    assert_eq!(reader.of(&[id]), items, "delivered once");
}

/// (3) Two writers race for the same versions, 10 rounds: each round one wins and is
/// delivered, the other is voided; nothing is left waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_two_racing_writers_one_is_delivered_and_one_voided() {
    let Some(a) = common::feed_store(timings()).await else {
        return;
    };
    let b = common::feed_store(timings()).await.unwrap();
    let mut reader = Reader::new(&a);
    let id = Uuid::new_v4();
    let barrier = Arc::new(Barrier::new(2));
    const ROUNDS: u64 = 10;
    let race = |store: CassandraStore, name: &'static str| {
        let barrier = barrier.clone();
        tokio::spawn(async move {
            let mut won = Vec::new();
            for v in 1..=ROUNDS {
                barrier.wait().await;
                match store.append(vec![item(id, v, name)]).await {
                    Ok(_) => won.push(v),
                    Err(AppendError::Conflict { .. }) => {}
                    Err(e) => panic!("{name} at {v}: {e}"),
                }
            }
            won
        })
    };
    let (wa, wb) = (race(a.clone(), "a"), race(b.clone(), "b"));
    let (wa, wb) = (wa.await.unwrap(), wb.await.unwrap());
    assert_eq!(wa.len() + wb.len(), ROUNDS as usize, "one winner per round");
    let expected: Vec<_> = (1..=ROUNDS)
        .map(|v| item(id, v, if wa.contains(&v) { "a" } else { "b" }))
        .collect();
    assert_eq!(a.select(id, &Select::all()).await.unwrap(), expected);
    reader
        .until(Duration::from_secs(10), |r| {
            r.of(&[id]).len() >= ROUNDS as usize
                && r.voided.iter().filter(|(s, _)| *s == id).count() >= ROUNDS as usize
        })
        .await;
    reader.for_a_while(Duration::from_millis(1000)).await;
    assert_eq!(
        reader.of(&[id]),
        expected,
        "the winners, once each, in order"
    );
    let voided: HashSet<Uuid> = reader
        .voided
        .iter()
        .filter(|(s, _)| *s == id)
        .map(|(_, c)| *c)
        .collect();
    assert_eq!(voided.len(), ROUNDS as usize, "each loser voided once");
}

/// (4) Intents that reach the table late (held 1.5 s by the proxy, within the 4 s window),
/// while other appends commit and a reader polls: nothing is missed, each sequence in version
/// order. Then a reader resumed from the saved position (as a string) delivers exactly what
/// was appended after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn late_intents_within_the_window_are_not_missed_and_resume_is_exact() {
    let Some((slow, proxy)) = proxied(|_| ()).await else {
        return;
    };
    let direct = common::feed_store(timings()).await.unwrap();
    let mut reader = Reader::new(&direct);
    reader.poll().await;
    let slow_ids: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    let fast_ids: Vec<Uuid> = (0..8).map(|_| Uuid::new_v4()).collect();
    // Every intent of the slow writer is held 1.5 s; its transactions pass.
    proxy.plan(0, usize::MAX, Action::Delay(Duration::from_millis(1500)));
    let slow_task = {
        let (slow, ids) = (slow.clone(), slow_ids.clone());
        tokio::spawn(async move {
            for v in 1..=2 {
                for id in &ids {
                    slow.append(vec![item(*id, v, "late intent, feed proxy")])
                        .await
                        .unwrap();
                }
            }
        })
    };
    let fast_task = {
        let (direct, ids) = (direct.clone(), fast_ids.clone());
        tokio::spawn(async move {
            for v in 1..=5 {
                for id in &ids {
                    direct.append(vec![item(*id, v, "fast")]).await.unwrap();
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let all: Vec<Uuid> = slow_ids.iter().chain(&fast_ids).copied().collect();
    // Read all along, as a follower would.
    while !(slow_task.is_finished() && fast_task.is_finished()) {
        reader.poll().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    slow_task.await.unwrap();
    fast_task.await.unwrap();
    assert!(proxy.acted.load(Ordering::SeqCst) >= 8, "intents were held");
    let expected = slow_ids.len() * 2 + fast_ids.len() * 5;
    reader
        .until(Duration::from_secs(10), |r| r.of(&all).len() >= expected)
        .await;
    let delivered = reader.of(&all);
    assert_eq!(delivered.len(), expected, "nothing missed, nothing twice");
    for id in &all {
        let versions: Vec<u64> = delivered
            .iter()
            .filter(|i| i.sequence_id == *id)
            .map(|i| i.position)
            .collect();
        let stored = direct.select(*id, &Select::all()).await.unwrap().len() as u64;
        assert_eq!(versions, (1..=stored).collect::<Vec<_>>(), "{id} in order");
    }

    // Save the position, stop; append more; a new reader from the saved string delivers
    // exactly the new appends.
    proxy.plan(0, 0, Action::Swallow);
    let saved = reader.position.to_string();
    drop(reader);
    let mut more = Vec::new();
    for (n, id) in all.iter().take(5).enumerate() {
        let next = direct.latest(*id).await.unwrap().unwrap().position + 1;
        let it = item(*id, next, &format!("after the save {n}"));
        direct.append(vec![it.clone()]).await.unwrap();
        more.push(it);
    }
    let other = common::feed_store(timings()).await.unwrap();
    let mut resumed = Reader::at(&other, saved.parse().unwrap());
    resumed
        .until(Duration::from_secs(10), |r| r.of(&all).len() >= more.len())
        .await;
    resumed.for_a_while(Duration::from_millis(1000)).await;
    let mut got = resumed.of(&all);
    got.sort_by_key(|i| (i.sequence_id, i.position));
    more.sort_by_key(|i| (i.sequence_id, i.position));
    assert_eq!(got, more, "exactly what followed the saved position");
}

/// A store on a keyspace without a feed says so and refuses to read one; a configuration
/// asking for a feed the keyspace lacks, or for other slices than it has, is refused.
#[tokio::test]
async fn feed_configuration_is_checked() {
    let Some((plain, ())) = common::store().await else {
        return;
    };
    assert!(matches!(
        plain.feed_now(),
        Err(StoreError::Unsupported { .. })
    ));
    let address = common::address().unwrap();
    let mut asks = common::config(&address);
    asks.feed = Some(timings());
    let e = CassandraStore::connect(asks).await.unwrap_err();
    assert!(e.to_string().contains("has no feed"), "{e}");
    common::feed_store(timings()).await.unwrap();
    let mut other = common::feed_config(&address);
    other.feed = Some(FeedConfig {
        slices: 5,
        ..timings()
    });
    for e in [
        CassandraStore::connect(other.clone()).await.unwrap_err(),
        CassandraStore::create_schema(&other).await.unwrap_err(),
    ] {
        assert!(matches!(e, StoreError::Config { .. }), "{e}");
        assert!(e.to_string().contains("4 slices"), "{e}");
    }
    // A store configured without a feed on a keyspace that has one still writes to it.
    let mut silent = common::feed_config(&address);
    silent.feed = None;
    let silent = CassandraStore::connect(silent).await.unwrap();
    assert_eq!(silent.capabilities().feed, eventsmith_core::Support::Yes);
    let reader_store = common::feed_store(timings()).await.unwrap();
    let mut reader = Reader::new(&reader_store);
    let id = Uuid::new_v4();
    silent.append(vec![item(id, 1, "x")]).await.unwrap();
    reader
        .until(Duration::from_secs(10), |r| r.of(&[id]).len() == 1)
        .await;
}
