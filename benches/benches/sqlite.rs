//! SQLite workloads from issue 4, each beside a raw rusqlite baseline measured in the same run
//! with the same schema and pragmas, for synchronous=FULL and NORMAL:
//!
//! - a: commands (load + decide + save one event), one task; raw: one insert per transaction;
//! - i: workload a through the `Application` against the same load-decide-save by hand on the
//!   bare repository (`plain`): what the one write path costs;
//! - b: the same commands from 8 tasks on distinct aggregates; raw as in a, and beside it
//!   raw-grouped-8, the same commands in raw rusqlite on one thread, 8 to a transaction, and
//!   raw-pipelined-8, loads on one thread and grouped commits on another;
//! - c: appends of 10 events per atomic batch; raw: 10 inserts per transaction;
//! - d: the whole notification log in pages of 1,000, decoded; raw: the same selects;
//! - e: loading one aggregate of 10,000 events; raw: select + decode;
//! - f: workload a with AES-256-GCM and zstd on; the baseline is workload a without them;
//! - h: loading a 10,000-event aggregate with snapshots every 100 events; baseline: without;
//! - g: one point read (`latest`), the cost of the async store API; raw: the same select on
//!   the calling thread;
//! - j: a follower projecting the whole log of d, decoded, into a table of the same file
//!   (pages of 1,000, each one transaction with its tracking record); raw: d's raw read-all,
//!   and beside it raw-projection, the same projection in plain rusqlite.
//! - k (FULL only): what the tracing instrumentation costs: workload a with a subscriber
//!   installed that enables INFO and above (the production case; every store span is DEBUG,
//!   so it is off) against workload a with no subscriber (`raw`), in the same run; beside
//!   them, `disabled-span`, the cost of one disabled store span, to scale by the spans of a
//!   command (a load's select and an append's append: 2).

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eventsmith_benches::{Account, BenchEvent, credit, size};
use eventsmith_cipher::{AesGcmCipher, Key, Keyring, Zstd};
use eventsmith_core::{
    Application, Envelope, EventStore, IntegerSequencedItem, ItemStore, Mapper, Repository,
    RetryPolicy, SequencedItem, catch_up,
};
use eventsmith_mapper::{CodecId, Encrypt, EventMapper};
use eventsmith_snapshot::StoredSnapshots;
use eventsmith_sqlite::{SqliteConfig, SqliteProjection, SqliteStore, Synchronous};
use rusqlite::{Connection, OpenFlags, params};
use tokio::runtime::Runtime;
use uuid::Uuid;

/// A notification row as rusqlite reads it: sequence id, position, topic, payload, id.
type RawNotification = (Vec<u8>, i64, String, Vec<u8>, i64);

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

fn raw_connection(path: &Path, sync: Synchronous) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let sync = match sync {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync};"
    ))
    .unwrap();
    conn
}

fn raw_insert(conn: &Connection, item: &IntegerSequencedItem) {
    let mut stmt = conn
        .prepare_cached("INSERT INTO integer_items (sequence_id, position, topic, payload) VALUES (?1, ?2, ?3, ?4)")
        .unwrap();
    stmt.execute(params![
        item.sequence_id.as_bytes(),
        item.position as i64,
        item.topic,
        item.payload
    ])
    .unwrap();
}

/// Runs `iters` commands from `tasks` tasks, each on its own aggregates, 10 commands per
/// aggregate (the aggregates are created untimed first). `run(id, round)` is one command.
async fn timed_commands<F, Fut>(
    events: &EventStore<BenchEvent, SqliteStore>,
    iters: u64,
    tasks: u64,
    run: F,
) -> Duration
where
    F: Fn(Uuid, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
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
            let (run, mine) = (run.clone(), mine.to_vec());
            tokio::spawn(async move {
                let mut done = 0;
                'rounds: for round in 0..10 {
                    for id in &mine {
                        if done == quota {
                            break 'rounds;
                        }
                        run(*id, round).await;
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

/// Workloads a and b through the application.
async fn commands(app: &Application<Account, SqliteStore>, iters: u64, tasks: u64) -> Duration {
    let app = app.clone();
    let events = app.repository().event_store().clone();
    timed_commands(&events, iters, tasks, move |id, round| {
        let app = app.clone();
        async move {
            app.command(id, |_| Ok::<_, Infallible>([credit(round)]))
                .await
                .unwrap();
        }
    })
    .await
}

/// Enables INFO and above and records nothing: the cost of a production subscriber's filter
/// to eventsmith's DEBUG spans, without the cost of formatting anything.
struct InfoSubscriber;

impl tracing::Subscriber for InfoSubscriber {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= tracing::Level::INFO
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::INFO)
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Workload a with `dispatch` as the default subscriber while each command runs (scoped to
/// the command's future, since the commands run in spawned tasks).
async fn commands_traced(
    app: &Application<Account, SqliteStore>,
    iters: u64,
    dispatch: tracing::Dispatch,
) -> Duration {
    use tracing::instrument::WithSubscriber;
    let app = app.clone();
    let events = app.repository().event_store().clone();
    timed_commands(&events, iters, 1, move |id, round| {
        let (app, dispatch) = (app.clone(), dispatch.clone());
        async move {
            app.command(id, |_| Ok::<_, Infallible>([credit(round)]))
                .into_future()
                .with_subscriber(dispatch)
                .await
                .unwrap();
        }
    })
    .await
}

/// Workload a by hand on the bare repository: load, decide, save, no retry.
async fn repository_commands(repo: &Repository<Account, SqliteStore>, iters: u64) -> Duration {
    let repo = repo.clone();
    let events = repo.event_store().clone();
    timed_commands(&events, iters, 1, move |id, round| {
        let repo = repo.clone();
        async move {
            let mut root = repo.get(id).await.unwrap();
            root.execute(|_| Ok::<_, Infallible>([credit(round)]))
                .unwrap();
            repo.save(&mut root).await.unwrap();
        }
    })
    .await
}

fn raw_single_inserts(conn: &Connection, mapper: &EventMapper<BenchEvent>, iters: u64) -> Duration {
    let items: Vec<_> = (0..iters)
        .map(|_| item(mapper, Uuid::new_v4(), 1))
        .collect();
    let start = Instant::now();
    for it in &items {
        raw_insert(conn, it); // autocommit: one transaction per insert
    }
    start.elapsed()
}

/// Workload b's commands for the raw baselines: `iters` appends to aggregates created (one
/// event each) before timing, round r appending version r + 2 to every aggregate, as
/// `commands` does.
fn raw_commands_workload(
    conn: &Connection,
    mapper: &EventMapper<BenchEvent>,
    iters: u64,
    group: usize,
) -> Vec<IntegerSequencedItem> {
    let aggregates = iters.div_ceil(10).max(group as u64);
    let ids: Vec<Uuid> = (0..aggregates).map(|_| Uuid::new_v4()).collect();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    for id in &ids {
        raw_insert(conn, &item(mapper, *id, 1));
    }
    conn.execute_batch("COMMIT").unwrap();
    (0..10u64)
        .flat_map(|round| ids.iter().map(move |id| (*id, round + 2)))
        .take(iters as usize)
        .map(|(id, version)| item(mapper, id, version))
        .collect()
}

/// Loads an aggregate's items the way a command does; returns how many there are.
fn raw_load(conn: &Connection, id: Uuid) -> usize {
    let mut select = conn
        .prepare_cached("SELECT sequence_id, position, topic, payload FROM integer_items WHERE sequence_id = ?1 ORDER BY position")
        .unwrap();
    select
        .query_map([id.as_bytes()], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Vec<u8>>(3)?,
            ))
        })
        .unwrap()
        .count()
}

/// The most group commit could give workload b on one thread: raw rusqlite runs its commands
/// 8 to a transaction, each a load of the aggregate and an insert of the next item, with
/// nothing decoded or encoded and no hand-offs between tasks.
fn raw_grouped_commands(
    conn: &Connection,
    mapper: &EventMapper<BenchEvent>,
    iters: u64,
    group: usize,
) -> Duration {
    let items = raw_commands_workload(conn, mapper, iters, group);
    let start = Instant::now();
    for chunk in items.chunks(group) {
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        for it in chunk {
            assert_eq!(raw_load(conn, it.sequence_id) as u64, it.position - 1);
            raw_insert(conn, it);
        }
        conn.execute_batch("COMMIT").unwrap();
    }
    start.elapsed()
}

/// What a second core adds: this thread loads each aggregate on a read-only connection and
/// hands the insert to a writer thread, which commits what it has been handed, up to
/// `group` to a transaction.
fn raw_pipelined_commands(
    path: &Path,
    sync: Synchronous,
    mapper: &EventMapper<BenchEvent>,
    iters: u64,
    group: usize,
) -> Duration {
    let writer = raw_connection(path, sync);
    let items = raw_commands_workload(&writer, mapper, iters, group);
    let reader = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let (handed, received) = std::sync::mpsc::sync_channel::<IntegerSequencedItem>(64);
    let start = Instant::now();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            while let Ok(first) = received.recv() {
                writer.execute_batch("BEGIN IMMEDIATE").unwrap();
                raw_insert(&writer, &first);
                for it in received.try_iter().take(group - 1) {
                    raw_insert(&writer, &it);
                }
                writer.execute_batch("COMMIT").unwrap();
            }
        });
        for it in items {
            // The writer may not have committed this aggregate's previous item yet.
            assert!((raw_load(&reader, it.sequence_id) as u64) < it.position);
            handed.send(it).unwrap();
        }
        drop(handed);
    });
    start.elapsed()
}

fn bench_writes(c: &mut Criterion, rt: &Runtime, sync: Synchronous, label: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = SqliteConfig {
        synchronous: sync,
        ..SqliteConfig::default()
    };
    let store = rt
        .block_on(SqliteStore::open_with(dir.path().join("es.db"), config))
        .unwrap();
    let app = Application::<Account, _>::builder(store.clone(), mapper())
        .retry(RetryPolicy::never())
        .build();
    let raw_path = dir.path().join("raw.db");
    let raw_grouped_path = dir.path().join("raw-grouped.db");
    let raw_pipelined_path = dir.path().join("raw-pipelined.db");
    rt.block_on(async {
        for path in [&raw_path, &raw_grouped_path, &raw_pipelined_path] {
            SqliteStore::open(path).await.unwrap().close().await;
        }
    });
    let raw = raw_connection(&raw_path, sync);
    let mapper = mapper();

    let mut g = c.benchmark_group(format!("sqlite-{label}-a-commands"));
    g.throughput(Throughput::Elements(1));
    g.bench_function("eventsmith", |b| {
        b.iter_custom(|iters| rt.block_on(commands(&app, iters, 1)))
    });
    g.bench_function("raw", |b| {
        b.iter_custom(|iters| raw_single_inserts(&raw, &mapper, iters))
    });
    g.finish();

    if label == "full" {
        let mut g = c.benchmark_group("sqlite-full-k-tracing-a");
        g.throughput(Throughput::Elements(1));
        let info = tracing::Dispatch::new(InfoSubscriber);
        g.bench_function("eventsmith", |b| {
            b.iter_custom(|iters| rt.block_on(commands_traced(&app, iters, info.clone())))
        });
        g.bench_function("raw", |b| {
            b.iter_custom(|iters| rt.block_on(commands(&app, iters, 1)))
        });
        // One store span as `#[tracing::instrument]` makes it, with no subscriber: what the
        // instrumentation adds to a call when nobody listens.
        g.bench_function("disabled-span", |b| {
            b.iter(|| {
                let span = tracing::debug_span!(
                    "eventsmith.append",
                    backend = "sqlite",
                    items = std::hint::black_box(1usize),
                    outcome = tracing::field::Empty
                );
                let _entered = span.enter();
                std::hint::black_box(eventsmith_core::backend::outcome::<
                    _,
                    eventsmith_core::StoreError,
                >(Ok(())))
            })
        });
        g.finish();
    }

    let mut g = c.benchmark_group(format!("sqlite-{label}-i-application"));
    g.throughput(Throughput::Elements(1));
    g.bench_function("application", |b| {
        b.iter_custom(|iters| rt.block_on(commands(&app, iters, 1)))
    });
    g.bench_function("plain", |b| {
        b.iter_custom(|iters| rt.block_on(repository_commands(app.repository(), iters)))
    });
    g.finish();

    let mut g = c.benchmark_group(format!("sqlite-{label}-b-commands-8-tasks"));
    g.throughput(Throughput::Elements(1));
    g.bench_function("eventsmith", |b| {
        b.iter_custom(|iters| rt.block_on(commands(&app, iters, 8)))
    });
    g.bench_function("raw", |b| {
        b.iter_custom(|iters| raw_single_inserts(&raw, &mapper, iters))
    });
    // A file of its own: its rows in the shared raw file changed what the c baselines
    // measured (they ran faster against it).
    let grouped = raw_connection(&raw_grouped_path, sync);
    g.bench_function("raw-grouped-8", |b| {
        b.iter_custom(|iters| raw_grouped_commands(&grouped, &mapper, iters, 8))
    });
    g.bench_function("raw-pipelined-8", |b| {
        b.iter_custom(|iters| raw_pipelined_commands(&raw_pipelined_path, sync, &mapper, iters, 8))
    });
    g.finish();

    let mut g = c.benchmark_group(format!("sqlite-{label}-f-commands-cipher"));
    g.throughput(Throughput::Elements(1));
    let keys = Keyring::new("bench", Key::generate());
    let cipher_mapper = EventMapper::<BenchEvent>::builder()
        .codec(CodecId::Postcard)
        .compressor(Arc::new(Zstd::new()))
        .cipher(Arc::new(AesGcmCipher::new(keys)), Encrypt::All)
        .build()
        .unwrap();
    let cipher_app = Application::<Account, _>::builder(store.clone(), cipher_mapper)
        .retry(RetryPolicy::never())
        .build();
    g.bench_function("cipher", |b| {
        b.iter_custom(|iters| rt.block_on(commands(&cipher_app, iters, 1)))
    });
    g.bench_function("plain", |b| {
        b.iter_custom(|iters| rt.block_on(commands(&app, iters, 1)))
    });
    g.finish();

    let mut g = c.benchmark_group(format!("sqlite-{label}-c-batch-10"));
    g.throughput(Throughput::Elements(10));
    let events = EventStore::new(store.clone(), self::mapper());
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
    g.bench_function("raw", |b| {
        b.iter_custom(|iters| {
            let batches: Vec<Vec<_>> = (0..iters)
                .map(|_| {
                    let id = Uuid::new_v4();
                    (1..=10).map(|v| item(&mapper, id, v)).collect()
                })
                .collect();
            let start = Instant::now();
            for batch in &batches {
                raw.execute_batch("BEGIN IMMEDIATE").unwrap();
                for it in batch {
                    raw_insert(&raw, it);
                }
                raw.execute_batch("COMMIT").unwrap();
            }
            start.elapsed()
        })
    });
    g.finish();
    rt.block_on(store.close());
}

/// The whole notification log in pages of 1,000, in plain rusqlite: d's and j's baseline.
fn raw_read_all(raw: &Connection) -> usize {
    let mut stmt = raw
        .prepare_cached("SELECT sequence_id, position, topic, payload, notification_id FROM integer_items WHERE notification_id > ?1 ORDER BY notification_id LIMIT 1000")
        .unwrap();
    let mut after = 0i64;
    let mut read = 0;
    loop {
        let rows: Vec<RawNotification> = stmt
            .query_map([after], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let Some(last) = rows.last() else { break };
        after = last.4;
        read += rows.len();
    }
    read
}

fn bench_reads(c: &mut Criterion, rt: &Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("read.db");
    let store = rt.block_on(SqliteStore::open(&path)).unwrap();
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
    let raw = raw_connection(&path, Synchronous::Full);

    let mut g = c.benchmark_group("sqlite-d-notifications");
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
    g.bench_function("raw", |b| b.iter(|| assert_eq!(raw_read_all(&raw), total)));
    g.finish();

    // j: a follower projecting every event, decoded, into a table of the same file (one
    // transaction per page of 1,000 with its tracking record), against the raw read-all of d.
    let mut g = c.benchmark_group("sqlite-j-follower-projection");
    g.throughput(Throughput::Elements(total as u64));
    g.sampling_mode(criterion::SamplingMode::Flat);
    let projections = std::sync::atomic::AtomicU64::new(0);
    g.bench_function("eventsmith", |b| {
        b.to_async(rt).iter(|| async {
            // A new name each time: a follower that starts at the beginning of the log.
            let n = projections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let decoder = self::mapper();
            let projection = SqliteProjection::open(
                &path,
                &format!("bench-{n}"),
                "CREATE TABLE IF NOT EXISTS bench_view (sequence_id BLOB PRIMARY KEY, events INTEGER NOT NULL)",
                move |tx, n: &eventsmith_core::Notification| {
                    decoder.decode(&n.item)?;
                    tx.prepare_cached(
                        "INSERT INTO bench_view (sequence_id, events) VALUES (?1, 1) \
                         ON CONFLICT (sequence_id) DO UPDATE SET events = events + 1",
                    )?
                    .execute([n.item.sequence_id.as_bytes()])?;
                    Ok(())
                },
            )
            .await
            .unwrap();
            let applied = catch_up(&store, &projection, 1000).await.unwrap();
            assert_eq!(applied, total as u64);
        })
    });
    g.bench_function("raw", |b| b.iter(|| assert_eq!(raw_read_all(&raw), total)));
    // The same work as the projection in plain rusqlite: per page, one transaction reads it,
    // decodes and upserts each event, and moves a tracking row. Context for the goal: what
    // projecting costs SQLite itself.
    raw.execute_batch(
        "CREATE TABLE IF NOT EXISTS raw_view (sequence_id BLOB PRIMARY KEY, events INTEGER NOT NULL)",
    )
    .unwrap();
    g.bench_function("raw-projection", |b| {
        b.iter(|| {
            let mut after = 0i64;
            let mut applied = 0;
            loop {
                raw.execute_batch("BEGIN IMMEDIATE").unwrap();
                let rows: Vec<RawNotification> = raw
                    .prepare_cached("SELECT sequence_id, position, topic, payload, notification_id FROM integer_items WHERE notification_id > ?1 ORDER BY notification_id LIMIT 1000")
                    .unwrap()
                    .query_map([after], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                let Some(last) = rows.last().map(|r| r.4) else {
                    raw.execute_batch("ROLLBACK").unwrap();
                    break;
                };
                let mut upsert = raw
                    .prepare_cached(
                        "INSERT INTO raw_view (sequence_id, events) VALUES (?1, 1) \
                         ON CONFLICT (sequence_id) DO UPDATE SET events = events + 1",
                    )
                    .unwrap();
                for (sequence_id, position, topic, payload, _) in rows.iter().cloned() {
                    let item = SequencedItem {
                        sequence_id: Uuid::from_slice(&sequence_id).unwrap(),
                        position: position as u64,
                        topic,
                        payload,
                    };
                    mapper.decode(&item).unwrap();
                    upsert.execute([&sequence_id]).unwrap();
                }
                raw.execute(
                    "INSERT INTO tracking (projection, notification_id) VALUES ('raw', ?1) \
                     ON CONFLICT (projection) DO UPDATE SET notification_id = excluded.notification_id",
                    [last],
                )
                .unwrap();
                raw.execute_batch("COMMIT").unwrap();
                after = last;
                applied += rows.len();
            }
            assert_eq!(applied, total);
        })
    });
    g.finish();

    let repo = Repository::<Account, _>::new(EventStore::new(store.clone(), self::mapper()));
    let mut g = c.benchmark_group("sqlite-e-load-10000");
    g.throughput(Throughput::Elements(10_000));
    g.sampling_mode(criterion::SamplingMode::Flat);
    g.bench_function("eventsmith", |b| {
        b.to_async(rt)
            .iter(|| async { assert_eq!(repo.get(big).await.unwrap().version(), 10_000) })
    });
    g.bench_function("raw", |b| {
        b.iter(|| {
            let mut stmt = raw
                .prepare_cached("SELECT sequence_id, position, topic, payload FROM integer_items WHERE sequence_id = ?1 ORDER BY position")
                .unwrap();
            let items: Vec<IntegerSequencedItem> = stmt
                .query_map([big.as_bytes()], |r| {
                    let id: Vec<u8> = r.get(0)?;
                    Ok(SequencedItem { sequence_id: Uuid::from_slice(&id).unwrap(), position: r.get::<_, i64>(1)? as u64, topic: r.get(2)?, payload: r.get(3)? })
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let decoded: Vec<_> = items.iter().map(|i| mapper.decode(i).unwrap()).collect();
            assert_eq!(decoded.len(), 10_000);
        })
    });
    g.finish();

    // h: the same 10,000-event aggregate, with a snapshot every 100 events (the latest at
    // version 10,000) against no snapshots; the baseline is the plain load.
    let snapshots = Application::<Account, _>::builder(store.clone(), self::mapper())
        .snapshots(
            StoredSnapshots::new(store.clone(), self::mapper().payloads().clone()).every(100),
        )
        .build();
    rt.block_on(async {
        snapshots.take_snapshot(big).await.unwrap();
        // One more event, so the load reads a snapshot and replays what follows it.
        snapshots
            .command(big, |_| Ok::<_, Infallible>([credit(10_001)]))
            .await
            .unwrap();
    });
    let mut g = c.benchmark_group("sqlite-h-load-10000-snapshots");
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("snapshots", |b| {
        b.to_async(rt)
            .iter(|| async { assert_eq!(snapshots.get(big).await.unwrap().version(), 10_001) })
    });
    g.bench_function("plain", |b| {
        b.to_async(rt)
            .iter(|| async { assert_eq!(repo.get(big).await.unwrap().version(), 10_001) })
    });
    g.finish();

    let mut g = c.benchmark_group("sqlite-g-point-read");
    g.throughput(Throughput::Elements(1));
    g.bench_function("eventsmith", |b| {
        b.to_async(rt)
            .iter(|| async { store.latest(big).await.unwrap().unwrap() })
    });
    g.bench_function("raw", |b| {
        b.iter(|| {
            let mut stmt = raw
                .prepare_cached("SELECT sequence_id, position, topic, payload FROM integer_items WHERE sequence_id = ?1 ORDER BY position DESC LIMIT 1")
                .unwrap();
            stmt.query_row([big.as_bytes()], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?, r.get::<_, Vec<u8>>(3)?)))
                .unwrap()
        })
    });
    g.finish();
    rt.block_on(store.close());
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    bench_writes(c, &rt, Synchronous::Full, "full");
    bench_writes(c, &rt, Synchronous::Normal, "normal");
    bench_reads(c, &rt);
}

criterion_group! { name = sqlite; config = eventsmith_benches::criterion(); targets = benches }
criterion_main!(sqlite);
