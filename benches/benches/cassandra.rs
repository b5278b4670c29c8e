//! The Cassandra store against a real node (`EVENTSMITH_CASSANDRA`): append latency (p50,
//! p99) and throughput with 1, 8 and 64 concurrent writers on distinct aggregates, and the
//! load of one 10,000-event aggregate. Beside them, raw scylla-driver baselines on the same
//! table, measured in the same run and interleaved with eventsmith's (one of each in turn,
//! alternating which goes first, so the machine's noise falls on both): a single LWT insert, a 10-row conditional batch, and
//! a paged select (pages of 1,000) of the 10,000-event partition, decoded. The `feed` group:
//! the cost per append of the feed (a keyspace with a 64-slice feed against one without, a
//! single event and 10-event batches, interleaved the same way), and a reader's poll of all
//! 64 slices. Percentiles need
//! every sample, so this bench measures by hand and writes `target/criterion/cassandra.json`,
//! which `cargo xtask bench` reads.

use std::time::{Duration, Instant};

use eventsmith_benches::{BenchEvent, credit, size};
use eventsmith_core::{Envelope, ItemStore, Mapper, Runner, Select};
use eventsmith_mapper::{CodecId, EventMapper};
use eventsmith_scylla::{CassandraConfig, CassandraStore};
use uuid::Uuid;

fn main() {
    // `cargo bench` passes --bench; a filter that excludes this bench skips it.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !args.is_empty() && !args.iter().any(|a| "cassandra".contains(a.as_str())) {
        return;
    }
    let Ok(address) = std::env::var("EVENTSMITH_CASSANDRA") else {
        println!(
            "cassandra bench skipped: EVENTSMITH_CASSANDRA is not set (cargo xtask bench starts a node when it can)"
        );
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let report = rt.block_on(run(&address));
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/criterion/cassandra.json"
    );
    std::fs::create_dir_all(std::path::Path::new(path).parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

async fn run(address: &str) -> serde_json::Value {
    let mut config = CassandraConfig::new([address], "eventsmith_bench").unwrap();
    // The bench's own node: one replica.
    config.replication = Some(eventsmith_scylla::Replication::Simple {
        replication_factor: 1,
    });
    CassandraStore::create_schema(&config).await.unwrap();
    let store = CassandraStore::connect(config).await.unwrap();
    let mapper = std::sync::Arc::new(
        EventMapper::<BenchEvent>::builder()
            .codec(CodecId::Postcard)
            .build()
            .unwrap(),
    );
    let total = size(4000, 800);
    let mut writers = Vec::new();
    for concurrency in [1usize, 8, 64] {
        let per_task = total / concurrency;
        let start = Instant::now();
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let (store, mapper) = (store.clone(), mapper.clone());
                tokio::spawn(async move {
                    // Each writer appends the next version of its own aggregates, 10 per aggregate.
                    let mut latencies = Vec::with_capacity(per_task);
                    let mut id = Uuid::new_v4();
                    for n in 0..per_task {
                        let version = (n % 10) as u64 + 1;
                        if version == 1 {
                            id = Uuid::new_v4();
                        }
                        let envelope = Envelope {
                            originator_id: id,
                            version,
                            timestamp: time::OffsetDateTime::now_utc(),
                            metadata: Default::default(),
                            event: credit(n as u64).into(),
                        };
                        let item = mapper.encode(&envelope).unwrap();
                        let t = Instant::now();
                        store.append(vec![item]).await.unwrap();
                        latencies.push(t.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        let mut latencies = Vec::new();
        for t in tasks {
            latencies.extend(t.await.unwrap());
        }
        let elapsed = start.elapsed();
        latencies.sort();
        writers.push(serde_json::json!({
            "writers": concurrency,
            "appends": latencies.len(),
            "appends_per_s": latencies.len() as f64 / elapsed.as_secs_f64(),
            "p50_ms": percentile(&latencies, 0.5),
            "p99_ms": percentile(&latencies, 0.99),
        }));
    }

    // One aggregate of 10,000 events, appended in conditional batches of 100.
    let id = Uuid::new_v4();
    for chunk in (1..=10_000u64).collect::<Vec<_>>().chunks(100) {
        let items = chunk
            .iter()
            .map(|v| {
                mapper
                    .encode(&Envelope {
                        originator_id: id,
                        version: *v,
                        timestamp: time::OffsetDateTime::now_utc(),
                        metadata: Default::default(),
                        event: credit(*v).into(),
                    })
                    .unwrap()
            })
            .collect();
        store.append(items).await.unwrap();
    }
    let rounds = size(10, 3);
    let mut loads = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let items = store.select(id, &Select::all()).await.unwrap();
        let events: Vec<_> = items.iter().map(|i| mapper.decode(i).unwrap()).collect();
        assert_eq!(events.len(), 10_000);
        loads.push(t.elapsed());
    }
    loads.sort();
    let median = loads[loads.len() / 2];
    let baselines = baselines(&store, &mapper, address, id).await;
    let feed = feed(&store, &mapper, address).await;
    serde_json::json!({
        "writers": writers,
        "load_10000": { "median_ms": median.as_secs_f64() * 1e3, "events_per_s": 10_000.0 / median.as_secs_f64(), "rounds": rounds },
        "baselines": baselines,
        "feed": feed,
    })
}

/// p50 and p99 of two sets of samples, and their ratios (eventsmith over raw).
fn compare(mut ours: Vec<Duration>, mut raw: Vec<Duration>) -> serde_json::Value {
    ours.sort();
    raw.sort();
    let (p50, p99) = (percentile(&ours, 0.5), percentile(&ours, 0.99));
    let (raw50, raw99) = (percentile(&raw, 0.5), percentile(&raw, 0.99));
    serde_json::json!({
        "samples": ours.len(),
        "p50_ms": p50, "p99_ms": p99,
        "raw_p50_ms": raw50, "raw_p99_ms": raw99,
        "p50_ratio": p50 / raw50, "p99_ratio": p99 / raw99,
    })
}

/// The item of version `version` of aggregate `id`, encoded.
fn encoded(
    mapper: &EventMapper<BenchEvent>,
    id: Uuid,
    version: u64,
) -> eventsmith_core::IntegerSequencedItem {
    mapper
        .encode(&Envelope {
            originator_id: id,
            version,
            timestamp: time::OffsetDateTime::now_utc(),
            metadata: Default::default(),
            event: credit(version).into(),
        })
        .unwrap()
}

/// Whether a conditional write applied (its first column).
fn lwt_applied(result: scylla::response::query_result::QueryResult) -> bool {
    let rows = result.into_rows_result().unwrap();
    rows.rows::<scylla::value::Row>().unwrap().all(|row| {
        matches!(
            row.unwrap().columns.first(),
            Some(Some(scylla::value::CqlValue::Boolean(true)))
        )
    })
}

/// eventsmith's appends and load against the same work in plain scylla-driver calls, with
/// the store's consistency levels (QUORUM, SERIAL) and statements prepared once.
async fn baselines(
    store: &CassandraStore,
    mapper: &EventMapper<BenchEvent>,
    address: &str,
    loaded: Uuid,
) -> serde_json::Value {
    use scylla::statement::batch::{Batch, BatchType};
    use scylla::statement::{Consistency, SerialConsistency};
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_node(address)
        .build()
        .await
        .unwrap();
    let table = "eventsmith_bench.integer_sequenced_items";
    let mut insert = session
        .prepare(format!("INSERT INTO {table} (sequence_id, position, topic, state, commit_id) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS"))
        .await
        .unwrap();
    insert.set_consistency(Consistency::Quorum);
    insert.set_serial_consistency(Some(SerialConsistency::Serial));
    let mut select = session
        .prepare(format!(
            "SELECT position, topic, state FROM {table} WHERE sequence_id = ? ORDER BY position ASC"
        ))
        .await
        .unwrap();
    select.set_consistency(Consistency::Quorum);
    select.set_page_size(1000);
    let row = |item: &eventsmith_core::IntegerSequencedItem| {
        (
            item.sequence_id,
            item.position as i64,
            item.topic.clone(),
            item.payload.clone(),
            Uuid::new_v4(),
        )
    };

    let n = size(400, 100);
    let (mut ours, mut raw) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        // Who goes first alternates: the second of a pair may pay for the first's Paxos.
        for turn in [i % 2, 1 - i % 2] {
            let item = encoded(mapper, Uuid::new_v4(), 1);
            let t = Instant::now();
            if turn == 0 {
                store.append(vec![item]).await.unwrap();
                ours.push(t.elapsed());
            } else {
                let result = session.execute_unpaged(&insert, row(&item)).await.unwrap();
                assert!(lwt_applied(result));
                raw.push(t.elapsed());
            }
        }
    }
    let single = compare(ours, raw);

    let n = size(200, 60);
    let (mut ours, mut raw) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut batch = Batch::new(BatchType::Unlogged);
    for _ in 0..10 {
        batch.append_statement(insert.clone());
    }
    batch.set_consistency(Consistency::Quorum);
    batch.set_serial_consistency(Some(SerialConsistency::Serial));
    for i in 0..n {
        for turn in [i % 2, 1 - i % 2] {
            let id = Uuid::new_v4();
            let items: Vec<_> = (1..=10).map(|v| encoded(mapper, id, v)).collect();
            let t = Instant::now();
            if turn == 0 {
                store.append(items).await.unwrap();
                ours.push(t.elapsed());
            } else {
                let rows: Vec<_> = items.iter().map(row).collect();
                let t = Instant::now();
                let result = session.batch(&batch, rows).await.unwrap();
                assert!(lwt_applied(result));
                raw.push(t.elapsed());
            }
        }
    }
    let batch_10 = compare(ours, raw);

    let rounds = size(10, 3);
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let items = store.select(loaded, &Select::all()).await.unwrap();
        let events: Vec<_> = items.iter().map(|i| mapper.decode(i).unwrap()).collect();
        assert_eq!(events.len(), 10_000);
        ours.push(t.elapsed());
        let t = Instant::now();
        let mut rows = session
            .execute_iter(select.clone(), (loaded,))
            .await
            .unwrap()
            .rows_stream::<(i64, String, Vec<u8>)>()
            .unwrap();
        let mut decoded = 0;
        while let Some((position, topic, payload)) = futures_util::TryStreamExt::try_next(&mut rows)
            .await
            .unwrap()
        {
            let item = eventsmith_core::IntegerSequencedItem {
                sequence_id: loaded,
                position: position as u64,
                topic,
                payload,
            };
            mapper.decode(&item).unwrap();
            decoded += 1;
        }
        assert_eq!(decoded, 10_000);
        raw.push(t.elapsed());
    }
    ours.sort();
    raw.sort();
    let (median, raw_median) = (ours[ours.len() / 2], raw[raw.len() / 2]);
    serde_json::json!({
        "lwt_single": single,
        "lwt_batch_10": batch_10,
        "load_10000": {
            "median_ms": median.as_secs_f64() * 1e3,
            "raw_median_ms": raw_median.as_secs_f64() * 1e3,
            "rate_ratio": raw_median.as_secs_f64() / median.as_secs_f64(),
        },
    })
}

/// The feed's cost per append: appends to a keyspace with a 64-slice feed (an intent write,
/// then the transaction) against the same appends to the keyspace without one, interleaved,
/// alternating which goes first; `p50_ratio`/`p99_ratio` are with the feed over without.
/// Then the appends made are read back through the feed: the time of one poll of all 64
/// slices once caught up, and the rate at which a reader settles and delivers a backlog.
async fn feed(
    plain: &CassandraStore,
    mapper: &EventMapper<BenchEvent>,
    address: &str,
) -> serde_json::Value {
    let mut config = CassandraConfig::new([address], "eventsmith_bench_feed").unwrap();
    config.replication = Some(eventsmith_scylla::Replication::Simple {
        replication_factor: 1,
    });
    config.feed = Some(eventsmith_scylla::FeedConfig::default());
    CassandraStore::create_schema(&config).await.unwrap();
    let with_feed = CassandraStore::connect(config).await.unwrap();
    let start = with_feed.feed_now().unwrap();
    let mut appended = 0usize;

    let mut groups = Vec::new();
    for (name, events, n) in [
        ("single", 1u64, size(400, 100)),
        ("batch_10", 10, size(200, 60)),
    ] {
        let (mut ours, mut without) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..n {
            for turn in [i % 2, 1 - i % 2] {
                let id = Uuid::new_v4();
                let items: Vec<_> = (1..=events).map(|v| encoded(mapper, id, v)).collect();
                let t = Instant::now();
                if turn == 0 {
                    with_feed.append(items).await.unwrap();
                    ours.push(t.elapsed());
                    appended += events as usize;
                } else {
                    plain.append(items).await.unwrap();
                    without.push(t.elapsed());
                }
            }
        }
        // `compare` names the second set "raw": here, the store without a feed.
        groups.push((name, compare(ours, without)));
    }

    // Read the backlog back: every append delivered once.
    let t = Instant::now();
    let mut position = start;
    let mut delivered = 0usize;
    let deadline = Instant::now() + Duration::from_secs(120);
    while delivered < appended {
        assert!(
            Instant::now() < deadline,
            "the feed delivered {delivered} of {appended}"
        );
        let (appends, next) = with_feed.read_feed(&position, 1000).await.unwrap();
        delivered += appends.iter().map(|a| a.items.len()).sum::<usize>();
        position = next;
    }
    let backlog = t.elapsed();
    assert_eq!(delivered, appended, "delivered exactly once");
    let mut polls = Vec::new();
    for _ in 0..size(20, 5) {
        let t = Instant::now();
        let (_, next) = with_feed.read_feed(&position, 1000).await.unwrap();
        polls.push(t.elapsed());
        position = next;
    }
    polls.sort();
    let lag = lag(&with_feed, mapper).await;
    let mut report = serde_json::Map::new();
    report.insert("follower_lag".into(), lag);
    for (name, group) in groups {
        report.insert(format!("append_{name}"), group);
    }
    report.insert(
        "backlog".into(),
        serde_json::json!({
            "items": delivered,
            "ms": backlog.as_secs_f64() * 1e3,
            "items_per_s": delivered as f64 / backlog.as_secs_f64(),
        }),
    );
    report.insert(
        "poll_64_slices".into(),
        serde_json::json!({ "p50_ms": percentile(&polls, 0.5), "max_ms": percentile(&polls, 1.0) }),
    );
    serde_json::Value::Object(report)
}

/// A follower's lag on the feed: a `Runner` (polling every 20 ms, all 64 slices, started at
/// the feed's head) while appends are made one every 10 ms; the time from each append's
/// acknowledgement to its delivery.
async fn lag(store: &CassandraStore, mapper: &EventMapper<BenchEvent>) -> serde_json::Value {
    let name = "bench-lag";
    let arrivals = eventsmith_testkit::follow::Recorder::new(name, "bench.Credited");
    for slice in 0..store.feed_slices().unwrap() {
        let head = store.feed_head(slice).await.unwrap();
        store.save_feed_position(name, slice, &head).await.unwrap();
    }
    let running = Runner::new(store.clone())
        .follow(arrivals.clone())
        .poll_interval(Duration::from_millis(20))
        .start();
    let mut acked = Vec::new();
    for _ in 0..size(300, 60) {
        let item = encoded(mapper, Uuid::new_v4(), 1);
        let payload = item.payload.clone();
        store.append(vec![item]).await.unwrap();
        acked.push((payload, Instant::now()));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let first_arrivals = || {
        let mut first = std::collections::HashMap::new();
        for (item, at) in arrivals.arrivals() {
            first.entry(item.payload).or_insert(at);
        }
        first
    };
    // Only this run's appends count: the feed may also hold earlier ones of the topic.
    let at = loop {
        let first = first_arrivals();
        if acked.iter().all(|(p, _)| first.contains_key(p)) {
            break first;
        }
        assert!(Instant::now() < deadline, "the follower fell behind");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    running.stop().await;
    let mut lags: Vec<Duration> = acked
        .iter()
        .map(|(p, t)| at[p].saturating_duration_since(*t))
        .collect();
    lags.sort();
    serde_json::json!({
        "appends": lags.len(),
        "poll_ms": 20,
        "p50_ms": percentile(&lags, 0.5),
        "p99_ms": percentile(&lags, 0.99),
    })
}
