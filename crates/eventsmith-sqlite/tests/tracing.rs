//! The spans and events of the SQLite store (`docs/observability.md`): one test, because the
//! collector is installed as the global default so that the writer thread's events are seen too.

use eventsmith_core::{ItemStore, SequencedItem};
use eventsmith_sqlite::{SqliteConfig, SqliteStore, Synchronous, rusqlite};
use eventsmith_testkit::eventually;
use eventsmith_testkit::traces::{Collector, EventRecord, check_store_spans};
use uuid::Uuid;

/// Steady state is quiet at INFO: every event so far is DEBUG or TRACE.
fn assert_quiet(collector: &Collector) {
    let loud: Vec<_> = collector
        .events()
        .into_iter()
        .filter(|e| e.level != tracing::Level::DEBUG && e.level != tracing::Level::TRACE)
        .collect();
    assert!(loud.is_empty(), "events at INFO or above: {loud:?}");
}

/// The events saying `text`, at least one, all at DEBUG.
fn debug_events(collector: &Collector, text: &str) -> Vec<EventRecord> {
    let found = collector.events_saying(text);
    assert!(
        !found.is_empty(),
        "no event saying {text:?}: {:?}",
        collector.events()
    );
    for e in &found {
        assert_eq!(e.level, tracing::Level::DEBUG, "{e:?}");
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_and_conflicts_are_traced() {
    let collector = Collector::new();
    tracing::subscriber::set_global_default(collector.clone()).expect("no other subscriber");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let config = SqliteConfig {
        queue_capacity: 4,
        ..SqliteConfig::default()
    };
    let store = SqliteStore::open_with(&path, config).await.unwrap();
    check_store_spans(&store, &collector, "sqlite").await;
    assert_quiet(&collector);

    // A busy wait, a full queue and group commits: another connection holds the write lock
    // while 8 appends arrive. One goes to the writer thread, which waits for the lock; 4 fill
    // the queue; 3 wait for room.
    collector.clear();
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let spawn = || {
        let store = store.clone();
        tokio::spawn(async move { store.append(vec![item_in(Uuid::new_v4())]).await })
    };
    let mut tasks = vec![spawn()];
    assert!(
        eventually(|| !collector
            .events_saying("busy: write lock held by another process")
            .is_empty())
        .await,
        "the writer thread never waited for the lock"
    );
    tasks.extend((0..7).map(|_| spawn()));
    assert!(
        eventually(|| {
            let stats = store.commit_stats();
            stats.queued == 4 && stats.queue_full_waits == 3
        })
        .await,
        "{:?}",
        store.commit_stats()
    );
    other.execute_batch("ROLLBACK").unwrap();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    // The inline attempt that found the lock held, in its append's span.
    let handed = debug_events(&collector, "the writer thread waits for it");
    assert!(
        handed.iter().all(|e| e.span == Some("eventsmith.append")),
        "{handed:?}"
    );
    // The writer thread's wait: when it started, and how long it took.
    let waits = debug_events(&collector, "busy: write lock held by another process");
    assert_eq!(waits[0].fields["busy_timeout_ms"], "5000");
    let over = debug_events(&collector, "busy wait over: write lock taken");
    assert!(
        over[0].fields["waited_ms"].parse::<f64>().unwrap() > 0.0,
        "{over:?}"
    );
    // The callers that found the queue full.
    let full = debug_events(&collector, "writer queue full; waiting for room");
    assert_eq!(full.len(), 3, "{full:?}");
    assert!(full.iter().all(|e| e.fields["capacity"] == "4"), "{full:?}");
    // Every group's size: together the 8 appends, at least one group of several.
    let sizes: Vec<usize> = debug_events(&collector, "group commit")
        .iter()
        .map(|e| e.fields["size"].parse().unwrap())
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), 8, "{sizes:?}");
    assert!(sizes.iter().any(|&n| n > 1), "never grouped: {sizes:?}");
    assert_quiet(&collector);
    store.close().await;

    // A checkpoint: without fsync, commits run inline and leave the WAL to the writer
    // thread, which copies it back once it passes 1,000 frames (each commit adds at least
    // two: a table and an index page).
    collector.clear();
    let config = SqliteConfig {
        synchronous: Synchronous::Normal,
        ..SqliteConfig::default()
    };
    let store = SqliteStore::open_with(dir.path().join("wal.db"), config)
        .await
        .unwrap();
    for _ in 0..600 {
        store.append(vec![item_in(Uuid::new_v4())]).await.unwrap();
    }
    assert!(
        eventually(|| !collector.events_saying("checkpoint").is_empty()).await,
        "no checkpoint after 600 commits"
    );
    let checkpoints = debug_events(&collector, "checkpoint");
    let f = &checkpoints[0].fields;
    let wal_pages: i64 = f["wal_pages"].parse().unwrap();
    assert!(wal_pages >= 1000, "{f:?}");
    assert!(f["copied"].parse::<i64>().unwrap() <= wal_pages, "{f:?}");
    assert!(f["path"].ends_with("wal.db"), "{f:?}");
    assert_quiet(&collector);
    store.close().await;
}

fn item_in(id: Uuid) -> eventsmith_core::IntegerSequencedItem {
    SequencedItem {
        sequence_id: id,
        position: 1,
        topic: "t".to_owned(),
        payload: vec![1],
    }
}
