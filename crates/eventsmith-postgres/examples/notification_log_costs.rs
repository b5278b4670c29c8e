//! Measures what the notification log's guarantee costs: one-event appends from 1 and 8
//! tasks, in five 1.5 s windows each (taking turns), against a real server (`EVENTSMITH_POSTGRES`, durability defaults):
//!
//! - `raw`: one autocommit `INSERT` per append, ids from a plain identity column: the
//!   baseline, which does NOT keep the log from skipping (a later id can commit first);
//! - `xid`: the same, storing `pg_current_xact_id()` in each row for readers that stop below
//!   `pg_snapshot_xmin(pg_current_snapshot())`: what writers pay for that design;
//! - `lock`: one transaction per append holding `LOCK TABLE … IN EXCLUSIVE MODE` to its
//!   commit (pipelined `BEGIN`, lock, insert, `COMMIT` on each task's own connection);
//! - `store`: `PostgresStore::append` (the lock held to commit, with group commit).
//!
//! Run: `cargo run --release -p eventsmith-postgres --example notification_log_costs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eventsmith_core::{ItemStore, SequencedItem};
use eventsmith_postgres::{PostgresConfig, PostgresStore};
use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

/// One measuring window, and how many windows each approach gets (the median is shown).
const WINDOW: Duration = Duration::from_millis(1500);
const ROUNDS: usize = 5;

async fn connect(url: &str, schema: &str) -> Client {
    let mut config: tokio_postgres::Config = url.parse().unwrap();
    config.options(format!("-c search_path={schema}"));
    let (client, connection) = config.connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

async fn raw_like(url: &str, schema: &str, tasks: usize, sql: &'static str, lock: bool) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let client = connect(url, schema).await;
        let (stop, count) = (stop.clone(), count.clone());
        handles.push(tokio::spawn(async move {
            let insert = client.prepare(sql).await.unwrap();
            let begin = client.prepare("BEGIN").await.unwrap();
            let lock_stmt = client
                .prepare("LOCK TABLE raw_items IN EXCLUSIVE MODE")
                .await
                .unwrap();
            let commit = client.prepare("COMMIT").await.unwrap();
            let id = Uuid::new_v4();
            let payload = vec![7u8; 100];
            let topic = "bench.Event";
            let mut position = 0i64;
            while !stop.load(Ordering::Relaxed) {
                position += 1;
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
                    [&id, &position, &topic, &payload];
                if lock {
                    let (b, l, i, c) = tokio::join!(
                        client.execute(&begin, &[]),
                        client.execute(&lock_stmt, &[]),
                        client.execute(&insert, &params),
                        client.execute(&commit, &[]),
                    );
                    b.unwrap();
                    l.unwrap();
                    i.unwrap();
                    c.unwrap();
                } else {
                    client
                        .execute(&insert, &[&id, &position, &topic, &payload])
                        .await
                        .unwrap();
                }
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(WINDOW).await;
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.await.unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

async fn store(store: &PostgresStore, tasks: usize) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (store, stop, count) = (store.clone(), stop.clone(), count.clone());
        handles.push(tokio::spawn(async move {
            let id = Uuid::new_v4();
            let mut position = 0;
            while !stop.load(Ordering::Relaxed) {
                position += 1;
                store
                    .append(vec![SequencedItem {
                        sequence_id: id,
                        position,
                        topic: "bench.Event".into(),
                        payload: vec![7u8; 100],
                    }])
                    .await
                    .unwrap();
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(WINDOW).await;
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.await.unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Ok(url) = std::env::var("EVENTSMITH_POSTGRES") else {
        eprintln!("set EVENTSMITH_POSTGRES (cargo xtask postgres start)");
        return;
    };
    let schema = format!("es_bench_{}", std::process::id());
    let admin = connect(&url, "public").await;
    admin
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let setup = connect(&url, &schema).await;
    setup
        .batch_execute(
            "CREATE TABLE raw_items (notification_id bigint GENERATED ALWAYS AS IDENTITY UNIQUE, \
             sequence_id uuid NOT NULL, position bigint NOT NULL, topic text NOT NULL, payload bytea NOT NULL, \
             PRIMARY KEY (sequence_id, position));
             CREATE TABLE xid_items (notification_id bigint GENERATED ALWAYS AS IDENTITY UNIQUE, \
             tx xid8 NOT NULL DEFAULT pg_current_xact_id(), \
             sequence_id uuid NOT NULL, position bigint NOT NULL, topic text NOT NULL, payload bytea NOT NULL, \
             PRIMARY KEY (sequence_id, position));",
        )
        .await
        .unwrap();
    let config: PostgresConfig = url
        .parse::<PostgresConfig>()
        .unwrap()
        .with_schema(&schema)
        .unwrap();
    let es = PostgresStore::connect(config).await.unwrap();
    const RAW: &str =
        "INSERT INTO raw_items (sequence_id, position, topic, payload) VALUES ($1, $2, $3, $4)";
    const XID: &str =
        "INSERT INTO xid_items (sequence_id, position, topic, payload) VALUES ($1, $2, $3, $4)";
    // The approaches take turns, window by window, so that a slow patch of the machine's
    // fsync latency hits them all alike; the table shows each one's median window.
    const APPROACHES: [&str; 4] = ["raw", "xid", "lock", "store"];
    let mut windows: Vec<Vec<f64>> = vec![Vec::new(); APPROACHES.len() * 2];
    let mut groups = [(0u64, 0u64); 2];
    for _ in 0..ROUNDS {
        for (a, name) in APPROACHES.iter().enumerate() {
            for (t, tasks) in [1, 8].into_iter().enumerate() {
                let before = es.commit_stats();
                let rate = match *name {
                    "raw" => raw_like(&url, &schema, tasks, RAW, false).await,
                    "xid" => raw_like(&url, &schema, tasks, XID, false).await,
                    "lock" => raw_like(&url, &schema, tasks, RAW, true).await,
                    _ => store(&es, tasks).await,
                };
                let after = es.commit_stats();
                groups[t].0 += after.appends - before.appends;
                groups[t].1 += after.transactions - before.transactions;
                windows[a * 2 + t].push(rate);
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let rates: Vec<f64> = windows.iter_mut().map(median).collect();
    println!("| approach | 1 task | 8 tasks | 8 tasks / 1 task | 8 tasks vs raw 1 task |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (a, name) in APPROACHES.iter().enumerate() {
        let (one, eight) = (rates[a * 2], rates[a * 2 + 1]);
        println!(
            "| {name} | {one:.0}/s | {eight:.0}/s | {:.2}x | {:.2}x |",
            eight / one,
            eight / rates[0]
        );
    }
    for (t, tasks) in [1, 8].into_iter().enumerate() {
        println!(
            "store, {tasks} task(s): {:.1} appends per transaction",
            groups[t].0 as f64 / groups[t].1.max(1) as f64
        );
    }
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}
