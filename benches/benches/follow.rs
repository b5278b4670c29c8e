//! Followers on SQLite (synchronous=FULL), in one process:
//!
//! - wake-up latency: from a command's commit (its after-commit hook) to the follower's
//!   handler seeing the event, one commit at a time (p50, p99, max);
//! - lag under workload b: 8 tasks run commands while a runner projects every event into a
//!   table of the same file; sampled: how many events the follower is behind the head, and
//!   per event the time from its commit to the follower's page applying it.
//!
//! Percentiles need every sample, so this bench measures by hand and writes
//! `target/criterion/follow.json`, which `cargo xtask bench` reads.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventsmith_benches::{Account, BenchEvent, credit, quick};
use eventsmith_core::{
    AfterCommit, Application, BoxError, BoxFuture, Envelope, ItemStore, MemoryProjection,
    Notification, Runner, RunnerWaker,
};
use eventsmith_mapper::{CodecId, EventMapper};
use eventsmith_sqlite::{SqliteProjection, SqliteStore};
use serde_json::json;
use uuid::Uuid;

/// When each event, by (aggregate id, version), was committed or seen.
type Stamps = Arc<Mutex<HashMap<(Uuid, u64), Instant>>>;

fn main() {
    // `cargo bench` passes --bench; a filter that excludes this bench skips it.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !args.is_empty() && !args.iter().any(|a| "follow".contains(a.as_str())) {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let report = rt.block_on(async {
        json!({
            "wake_up": wake_up(&dir.path().join("wake.db")).await,
            "lag_b": lag_b(&dir.path().join("lag.db")).await,
        })
    });
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/criterion/follow.json"
    );
    std::fs::create_dir_all(std::path::Path::new(path).parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}

fn mapper() -> EventMapper<BenchEvent> {
    EventMapper::builder()
        .codec(CodecId::Postcard)
        .build()
        .unwrap()
}

/// An after-commit hook that stamps each committed event, then wakes the runner: the
/// moment a follower's wake-up latency is measured from.
struct StampThenWake {
    committed: Stamps,
    waker: RunnerWaker,
}

impl AfterCommit<BenchEvent> for StampThenWake {
    fn after_commit<'a>(
        &'a self,
        events: &'a [Envelope<BenchEvent>],
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        let now = Instant::now();
        let mut committed = self.committed.lock().unwrap();
        for e in events {
            committed.insert((e.originator_id, e.version), now);
        }
        drop(committed);
        self.waker.wake();
        Box::pin(async { Ok(()) })
    }
}

/// The bench's application on `store`, stamping its commits into `committed`, then waking.
fn stamped(
    store: &SqliteStore,
    committed: &Stamps,
    waker: &RunnerWaker,
) -> Application<Account, SqliteStore> {
    Application::builder(store.clone(), mapper())
        .publish_to(StampThenWake {
            committed: committed.clone(),
            waker: waker.clone(),
        })
        .build()
}

fn stamp(seen: &Stamps, n: &Notification) {
    seen.lock()
        .unwrap()
        .insert((n.item.sequence_id, n.item.position), Instant::now());
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentile<T: Copy>(sorted: &[T], p: f64) -> T {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The times from commit to seen, sorted.
fn delays(committed: &Stamps, seen: &Stamps) -> Vec<Duration> {
    let (committed, seen) = (committed.lock().unwrap(), seen.lock().unwrap());
    let mut delays: Vec<Duration> = committed
        .iter()
        .map(|(key, at)| seen[key].saturating_duration_since(*at))
        .collect();
    delays.sort();
    delays
}

/// One commit at a time; the follower (in memory, so only the wake-up and the read are
/// measured) must see each before the next.
async fn wake_up(path: &std::path::Path) -> serde_json::Value {
    let store = SqliteStore::open(path).await.unwrap();
    let (committed, seen): (Stamps, Stamps) = Default::default();
    let waker = RunnerWaker::new();
    let app = stamped(&store, &committed, &waker);
    let view = seen.clone();
    let follower = MemoryProjection::new("wake-up", (), move |_, n: &Notification| {
        stamp(&view, n);
        Ok(())
    });
    // A long poll: every page must come from a wake-up, not a poll.
    let running = Runner::new(store.clone())
        .follow(follower)
        .poll_interval(Duration::from_secs(5))
        .woken_by(&waker)
        .start();
    let commits = if quick() { 300 } else { 2000 };
    let ids: Vec<Uuid> = (0..100).map(|_| Uuid::new_v4()).collect();
    for i in 0..commits {
        let id = ids[i % ids.len()];
        let done = app
            .command(id, |_: &Account| Ok::<_, Infallible>([credit(i as u64)]))
            .await
            .unwrap();
        let key = (id, done.root.version());
        while !seen.lock().unwrap().contains_key(&key) {
            tokio::time::sleep(Duration::from_micros(50)).await;
        }
    }
    running.stop().await;
    let delays = delays(&committed, &seen);
    store.close().await;
    json!({
        "commits": commits,
        "p50_ms": millis(percentile(&delays, 0.5)),
        "p99_ms": millis(percentile(&delays, 0.99)),
        "max_ms": millis(*delays.last().unwrap()),
    })
}

/// Workload b (8 tasks, distinct aggregates) with a projection into the same file running
/// beside it.
async fn lag_b(path: &std::path::Path) -> serde_json::Value {
    let store = SqliteStore::open(path).await.unwrap();
    let (committed, seen): (Stamps, Stamps) = Default::default();
    let waker = RunnerWaker::new();
    let app = stamped(&store, &committed, &waker);
    let view = seen.clone();
    let decoder = mapper();
    let projection = SqliteProjection::open(
        path,
        "lag",
        "CREATE TABLE IF NOT EXISTS balances (id BLOB PRIMARY KEY, total INTEGER NOT NULL)",
        move |tx, n: &Notification| {
            let envelope = eventsmith_core::Mapper::decode(&decoder, &n.item)?;
            let BenchEvent::Credited(c) = envelope.event;
            tx.prepare_cached(
                "INSERT INTO balances (id, total) VALUES (?1, ?2) \
                 ON CONFLICT (id) DO UPDATE SET total = total + excluded.total",
            )?
            .execute(rusqlite::params![
                n.item.sequence_id.as_bytes(),
                c.amount as i64
            ])?;
            stamp(&view, n);
            Ok(())
        },
    )
    .await
    .unwrap();
    let running = Runner::new(store.clone())
        .follow(projection)
        .woken_by(&waker)
        .start();
    let run_for = Duration::from_secs(if quick() { 1 } else { 4 });
    let started = Instant::now();
    let writers: Vec<_> = (0..8)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                let id = Uuid::new_v4();
                let mut n = 0u64;
                while started.elapsed() < run_for {
                    app.command(id, |_: &Account| Ok::<_, Infallible>([credit(n)]))
                        .await
                        .unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut behind = Vec::new();
    while started.elapsed() < run_for {
        let head = store.max_notification_id().await.unwrap();
        let position = running.status("lag").map_or(0, |s| s.position);
        behind.push(head.saturating_sub(position));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut commands = 0;
    for w in writers {
        commands += w.await.unwrap();
    }
    let elapsed = started.elapsed();
    let head = store.max_notification_id().await.unwrap();
    running.wait_for("lag", head).await;
    running.stop().await;
    behind.sort();
    let delays = delays(&committed, &seen);
    store.close().await;
    json!({
        "commands": commands,
        "commands_per_s": commands as f64 / elapsed.as_secs_f64(),
        "events_p50": percentile(&behind, 0.5),
        "events_p99": percentile(&behind, 0.99),
        "events_max": behind.last().copied().unwrap_or(0),
        "p50_ms": millis(percentile(&delays, 0.5)),
        "p99_ms": millis(percentile(&delays, 0.99)),
        "max_ms": millis(*delays.last().unwrap()),
    })
}
