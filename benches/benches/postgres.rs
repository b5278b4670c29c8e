//! PostgreSQL workloads from issue 17, each beside a raw `tokio-postgres` baseline measured in
//! the same run, on the same server, with the same schema (the store creates both schemas'
//! tables), against a server with the durability defaults (`fsync=on`,
//! `synchronous_commit=on`; `cargo xtask postgres start` keeps them):
//!
//! - a: commands (load + decide + save one event) from one task; raw: one autocommit
//!   `INSERT` per command on one connection (one insert per transaction);
//! - b: the same commands from 8 tasks on distinct aggregates; raw as in a; beside it, for
//!   context, `raw-8-connections`: 8 connections inserting at once (what the server's own
//!   group commit reaches without a global order);
//! - a and b again as `eventsmith-cached`: the application keeps its aggregates in memory
//!   ([`ApplicationBuilder::cache`](eventsmith_core::ApplicationBuilder::cache)), so a
//!   command decides without loading and is one append;
//! - c: appends of 10 events per atomic batch; raw: one 10-row `INSERT … SELECT unnest(…)` per
//!   batch (one statement, one transaction);
//! - d: the whole notification log in pages of 1,000, decoded; raw: the same selects, rows
//!   read into tuples, nothing decoded;
//! - e: loading one aggregate of 10,000 events; raw: select + decode.
//!
//! The server comes from `EVENTSMITH_POSTGRES` (`cargo xtask bench` sets it); without it the
//! benchmark says it was skipped, and fails under CI.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eventsmith_benches::{Account, BenchEvent, credit, size};
use eventsmith_core::{
    Application, Envelope, EventStore, IntegerSequencedItem, ItemStore, Mapper, Repository,
    RetryPolicy, SequencedItem,
};
use eventsmith_mapper::{CodecId, EventMapper};
use eventsmith_postgres::{PostgresConfig, PostgresStore};
use tokio::runtime::Runtime;
use tokio_postgres::{Client, NoTls, Statement};
use uuid::Uuid;

const INSERT: &str =
    "INSERT INTO integer_items (sequence_id, position, topic, payload) VALUES ($1, $2, $3, $4)";
const INSERT_BATCH: &str = "INSERT INTO integer_items (sequence_id, position, topic, payload) \
     SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::bytea[])";
const SELECT_LOG: &str = "SELECT sequence_id, position, topic, payload, notification_id \
     FROM integer_items WHERE notification_id > $1 ORDER BY notification_id LIMIT 1000";
const SELECT_SEQUENCE: &str = "SELECT sequence_id, position, topic, payload \
     FROM integer_items WHERE sequence_id = $1 ORDER BY position";

fn mapper() -> EventMapper<BenchEvent> {
    EventMapper::builder()
        .codec(CodecId::Postcard)
        .build()
        .unwrap()
}

fn envelope(id: Uuid, version: u64) -> Envelope<BenchEvent> {
    Envelope {
        originator_id: id,
        version,
        timestamp: time::OffsetDateTime::now_utc(),
        metadata: Default::default(),
        event: credit(version).into(),
    }
}

fn item(mapper: &EventMapper<BenchEvent>, id: Uuid, version: u64) -> IntegerSequencedItem {
    mapper.encode(&envelope(id, version)).unwrap()
}

/// A schema of this run: its store, and a raw connection to it.
struct Schema {
    name: String,
    store: PostgresStore,
}

async fn schema(url: &str, what: &str) -> Schema {
    let name = format!("bench_{what}_{}", std::process::id());
    let config: PostgresConfig = url.parse().unwrap();
    let store = PostgresStore::connect(config.with_schema(&name).unwrap())
        .await
        .unwrap();
    Schema { name, store }
}

async fn raw_client(url: &str, schema: &str) -> Client {
    let mut config: tokio_postgres::Config = url.parse().unwrap();
    config.options(format!("-c search_path={schema}"));
    let (client, connection) = config.connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

async fn raw_insert(client: &Client, insert: &Statement, item: &IntegerSequencedItem) {
    client
        .execute(
            insert,
            &[
                &item.sequence_id,
                &(item.position as i64),
                &item.topic,
                &item.payload,
            ],
        )
        .await
        .unwrap();
}

/// Runs `iters` commands from `tasks` tasks, each on its own aggregates, 10 commands per
/// aggregate (the aggregates are created untimed first).
async fn commands(app: &Application<Account, PostgresStore>, iters: u64, tasks: u64) -> Duration {
    let events: EventStore<BenchEvent, PostgresStore> = app.repository().event_store().clone();
    let aggregates = iters.div_ceil(10).max(tasks);
    let ids: Vec<Uuid> = (0..aggregates).map(|_| Uuid::new_v4()).collect();
    for chunk in ids.chunks(500) {
        let creations: Vec<_> = chunk.iter().map(|id| envelope(*id, 1)).collect();
        events.append(&creations).await.unwrap();
    }
    let per_task = ids.len().div_ceil(tasks as usize);
    let quota = iters.div_ceil(tasks);
    let start = Instant::now();
    let handles: Vec<_> = ids
        .chunks(per_task)
        .map(|mine| {
            let (app, mine) = (app.clone(), mine.to_vec());
            tokio::spawn(async move {
                let mut done = 0;
                'rounds: for round in 0..10 {
                    for id in &mine {
                        if done == quota {
                            break 'rounds;
                        }
                        app.command(*id, |_| Ok::<_, Infallible>([credit(round)]))
                            .await
                            .unwrap();
                        done += 1;
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    start.elapsed()
}

/// `iters` autocommit inserts of one item each, from `connections` connections at once.
async fn raw_single_inserts(
    clients: &[(Client, Statement)],
    mapper: &EventMapper<BenchEvent>,
    iters: u64,
) -> Duration {
    let per = iters.div_ceil(clients.len() as u64);
    let items: Vec<Vec<IntegerSequencedItem>> = clients
        .iter()
        .map(|_| (0..per).map(|_| item(mapper, Uuid::new_v4(), 1)).collect())
        .collect();
    let start = Instant::now();
    let runs = clients
        .iter()
        .zip(&items)
        .map(|((client, insert), items)| async move {
            for it in items {
                raw_insert(client, insert, it).await;
            }
        });
    futures_util::future::join_all(runs).await;
    start.elapsed()
}

fn bench_writes(c: &mut Criterion, rt: &Runtime, url: &str) -> Vec<String> {
    let es = rt.block_on(schema(url, "es"));
    let raw_schema = rt.block_on(schema(url, "raw"));
    let app = Application::<Account, _>::builder(es.store.clone(), mapper())
        .retry(RetryPolicy::never())
        .build();
    let cached = Application::<Account, _>::builder(es.store.clone(), mapper())
        .cache(std::num::NonZeroUsize::new(100_000).unwrap())
        .retry(RetryPolicy::never())
        .build();
    let mapper = mapper();
    // One connection for the single-connection baselines, eight more for the context row.
    let mut clients = rt.block_on(async {
        let mut clients = Vec::new();
        for _ in 0..9 {
            let client = raw_client(url, &raw_schema.name).await;
            let insert = client.prepare(INSERT).await.unwrap();
            clients.push((client, insert));
        }
        clients
    });
    let one = clients.split_off(8);
    let eight = clients;

    let mut g = c.benchmark_group("postgres-a-commands");
    g.throughput(Throughput::Elements(1));
    g.bench_function("eventsmith", |b| {
        b.iter_custom(|iters| rt.block_on(commands(&app, iters, 1)))
    });
    g.bench_function("eventsmith-cached", |b| {
        b.iter_custom(|iters| rt.block_on(commands(&cached, iters, 1)))
    });
    g.bench_function("raw", |b| {
        b.iter_custom(|iters| rt.block_on(raw_single_inserts(&one, &mapper, iters)))
    });
    g.finish();

    let mut g = c.benchmark_group("postgres-b-commands-8-tasks");
    g.throughput(Throughput::Elements(1));
    g.bench_function("eventsmith", |b| {
        b.iter_custom(|iters| rt.block_on(commands(&app, iters, 8)))
    });
    g.bench_function("eventsmith-cached", |b| {
        b.iter_custom(|iters| rt.block_on(commands(&cached, iters, 8)))
    });
    g.bench_function("raw", |b| {
        b.iter_custom(|iters| rt.block_on(raw_single_inserts(&one, &mapper, iters)))
    });
    g.bench_function("raw-8-connections", |b| {
        b.iter_custom(|iters| rt.block_on(raw_single_inserts(&eight, &mapper, iters)))
    });
    g.finish();

    let mut g = c.benchmark_group("postgres-c-batch-10");
    g.throughput(Throughput::Elements(10));
    let events = EventStore::new(es.store.clone(), self::mapper());
    g.bench_function("eventsmith", |b| {
        b.iter_custom(|iters| {
            let batches: Vec<Vec<Envelope<BenchEvent>>> = (0..iters)
                .map(|_| {
                    let id = Uuid::new_v4();
                    (1..=10).map(|v| envelope(id, v)).collect()
                })
                .collect();
            rt.block_on(async {
                let start = Instant::now();
                for batch in &batches {
                    events.append(batch).await.unwrap();
                }
                start.elapsed()
            })
        })
    });
    let (client, _) = &one[0];
    let batch_insert = rt.block_on(client.prepare(INSERT_BATCH)).unwrap();
    g.bench_function("raw", |b| {
        b.iter_custom(|iters| {
            let batches: Vec<Vec<_>> = (0..iters)
                .map(|_| {
                    let id = Uuid::new_v4();
                    (1..=10).map(|v| item(&mapper, id, v)).collect()
                })
                .collect();
            rt.block_on(async {
                let start = Instant::now();
                for batch in &batches {
                    let ids: Vec<Uuid> = batch.iter().map(|i| i.sequence_id).collect();
                    let positions: Vec<i64> = batch.iter().map(|i| i.position as i64).collect();
                    let topics: Vec<&str> = batch.iter().map(|i| i.topic.as_str()).collect();
                    let payloads: Vec<&[u8]> = batch.iter().map(|i| i.payload.as_slice()).collect();
                    client
                        .execute(&batch_insert, &[&ids, &positions, &topics, &payloads])
                        .await
                        .unwrap();
                }
                start.elapsed()
            })
        })
    });
    g.finish();
    vec![es.name, raw_schema.name]
}

fn bench_reads(c: &mut Criterion, rt: &Runtime, url: &str) -> Vec<String> {
    let read = rt.block_on(schema(url, "read"));
    let store = read.store.clone();
    let mapper = mapper();
    let total = size(100_000, 20_000);
    let big = Uuid::new_v4();
    rt.block_on(async {
        // One aggregate of 10,000 events, then many small ones.
        for chunk in (1..=10_000u64).collect::<Vec<_>>().chunks(1000) {
            store
                .append(chunk.iter().map(|v| item(&mapper, big, *v)).collect())
                .await
                .unwrap();
        }
        for _ in 0..(total - 10_000) / 1000 {
            let items = (0..100).flat_map(|_| {
                let id = Uuid::new_v4();
                (1..=10).map(move |v| (id, v))
            });
            store
                .append(items.map(|(id, v)| item(&mapper, id, v)).collect())
                .await
                .unwrap();
        }
    });
    let (raw, select_log, select_sequence) = rt.block_on(async {
        let client = raw_client(url, &read.name).await;
        let log = client.prepare(SELECT_LOG).await.unwrap();
        let sequence = client.prepare(SELECT_SEQUENCE).await.unwrap();
        (client, log, sequence)
    });

    let mut g = c.benchmark_group("postgres-d-notifications");
    g.throughput(Throughput::Elements(total as u64));
    g.sampling_mode(criterion::SamplingMode::Flat);
    g.bench_function("eventsmith", |b| {
        b.to_async(rt).iter(|| async {
            let mut after = 0;
            let mut decoded = 0;
            loop {
                let page = store.select_notifications(after, 1000, &[]).await.unwrap();
                let Some(last) = page.last() else { break };
                after = last.id;
                for n in &page {
                    mapper.decode(&n.item).unwrap();
                    decoded += 1;
                }
            }
            assert_eq!(decoded, total);
        })
    });
    g.bench_function("raw", |b| {
        b.to_async(rt).iter(|| async {
            let mut after = 0i64;
            let mut read = 0;
            loop {
                let rows = raw.query(&select_log, &[&after]).await.unwrap();
                let rows: Vec<(Uuid, i64, String, Vec<u8>, i64)> = rows
                    .iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
                    .collect();
                let Some(last) = rows.last() else { break };
                after = last.4;
                read += rows.len();
            }
            assert_eq!(read, total);
        })
    });
    g.finish();

    let repo = Repository::<Account, _>::new(EventStore::new(store.clone(), self::mapper()));
    let mut g = c.benchmark_group("postgres-e-load-10000");
    g.throughput(Throughput::Elements(10_000));
    g.sampling_mode(criterion::SamplingMode::Flat);
    g.bench_function("eventsmith", |b| {
        b.to_async(rt)
            .iter(|| async { assert_eq!(repo.get(big).await.unwrap().version(), 10_000) })
    });
    g.bench_function("raw", |b| {
        b.to_async(rt).iter(|| async {
            let rows = raw.query(&select_sequence, &[&big]).await.unwrap();
            let items: Vec<IntegerSequencedItem> = rows
                .iter()
                .map(|r| SequencedItem {
                    sequence_id: r.get(0),
                    position: r.get::<_, i64>(1) as u64,
                    topic: r.get(2),
                    payload: r.get(3),
                })
                .collect();
            let decoded: Vec<_> = items.iter().map(|i| mapper.decode(i).unwrap()).collect();
            assert_eq!(decoded.len(), 10_000);
        })
    });
    g.finish();
    vec![read.name]
}

fn benches(c: &mut Criterion) {
    let Ok(url) = std::env::var("EVENTSMITH_POSTGRES") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but EVENTSMITH_POSTGRES is not"
        );
        eprintln!(
            "postgres benchmarks skipped: EVENTSMITH_POSTGRES is not set (`cargo xtask bench` starts a server)"
        );
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut schemas = bench_writes(c, &rt, &url);
    schemas.extend(bench_reads(c, &rt, &url));
    rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
        tokio::spawn(connection);
        for name in schemas {
            client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                .await
                .unwrap();
        }
    });
}

criterion_group! { name = postgres; config = eventsmith_benches::criterion(); targets = benches }
criterion_main!(postgres);
