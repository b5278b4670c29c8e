//! What only the SQLite store has: files it must not touch, group commit, locks held by other
//! connections, closing, durability settings.

use std::time::Duration;

use eventsmith_core::{AppendError, ErrorKind, ItemStore, Select, SequencedItem, StoreError};
use eventsmith_sqlite::{SCHEMA_VERSION, SqliteConfig, SqliteStore, Synchronous};
use eventsmith_testkit::eventually;
use uuid::Uuid;

fn item(id: Uuid, position: u64) -> eventsmith_core::IntegerSequencedItem {
    SequencedItem {
        sequence_id: id,
        position,
        topic: "t".into(),
        payload: vec![position as u8; 100],
    }
}

#[tokio::test]
async fn reopening_a_file_keeps_its_items_and_notification_ids() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let id = Uuid::new_v4();
    let store = SqliteStore::open(&path).await.unwrap();
    let ids = store.append(vec![item(id, 1), item(id, 2)]).await.unwrap();
    store.close().await;
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(
        store.select(id, &Select::all()).await.unwrap(),
        vec![item(id, 1), item(id, 2)]
    );
    assert_eq!(store.max_notification_id().await.unwrap(), ids.end - 1);
    let next = store.append(vec![item(id, 3)]).await.unwrap();
    assert_eq!(next.start, ids.end);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_opening_a_new_file_at_once_all_get_one_schema() {
    for _ in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let opens: Vec<_> = (0..6)
            .map(|_| tokio::spawn(SqliteStore::open(path.clone())))
            .collect();
        let mut stores = Vec::new();
        for open in opens {
            stores.push(open.await.unwrap().expect("every open succeeds"));
        }
        let id = Uuid::new_v4();
        stores[0].append(vec![item(id, 1)]).await.unwrap();
        for store in &stores {
            assert_eq!(store.select(id, &Select::all()).await.unwrap().len(), 1);
            store.close().await;
        }
    }
}

#[tokio::test]
async fn a_newer_schema_is_refused_and_the_file_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    SqliteStore::open(&path).await.unwrap().close().await;
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
            .unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { detail, .. } if detail.contains("newer")),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the file must not change"
    );
}

#[tokio::test]
async fn a_foreign_database_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { detail, .. } if detail.contains("not an eventsmith database")),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert!(
        !dir.path().join("other.db-wal").exists(),
        "no WAL file may be created"
    );
}

#[tokio::test]
async fn a_file_that_is_not_sqlite_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.db");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    // SQLite's own error stays reachable, for a caller that wants its code.
    let source = std::error::Error::source(&err).expect("the SQLite error as the source");
    assert!(
        source
            .downcast_ref::<rusqlite::Error>()
            .is_some_and(|e| { e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) }),
        "{source:?}"
    );
}

#[tokio::test]
async fn random_bytes_in_the_middle_of_a_file_give_errors_not_panics() {
    use rand::{Rng, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let ids: Vec<Uuid> = (0..50).map(|_| Uuid::new_v4()).collect();
    for id in &ids {
        store
            .append((1..=20).map(|p| item(*id, p)).collect())
            .await
            .unwrap();
    }
    store.close().await;
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
    }
    let mut bytes = std::fs::read(&path).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle - 8192..middle + 8192] {
        *b = rng.r#gen();
    }
    std::fs::write(&path, bytes).unwrap();
    // Opening may fail or succeed; reads of damaged pages must fail with a typed error.
    let store = match SqliteStore::open(&path).await {
        Ok(store) => store,
        Err(StoreError::Corrupt { .. } | StoreError::Backend { .. }) => return,
        Err(e) => panic!("unexpected error kind on open: {e}"),
    };
    let mut errors = 0;
    for id in &ids {
        match store.select(*id, &Select::all()).await {
            Ok(items) => assert!(items.len() <= 20),
            Err(StoreError::Corrupt { .. } | StoreError::Backend { .. }) => errors += 1,
            Err(e) => panic!("unexpected error kind: {e}"),
        }
    }
    let log = store.select_notifications(0, 10_000, &[]).await;
    assert!(
        errors > 0 || log.is_err(),
        "16 KiB of random bytes went unnoticed"
    );
}

#[tokio::test]
async fn a_closed_store_refuses_every_call() {
    let store = SqliteStore::memory().await.unwrap();
    let clone = store.clone();
    store.close().await;
    let id = Uuid::new_v4();
    assert!(matches!(
        clone.append(vec![item(id, 1)]).await,
        Err(AppendError::Store(StoreError::Closed))
    ));
    assert!(matches!(
        clone.select(id, &Select::all()).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        clone.max_notification_id().await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        clone.select_notifications(0, 1, &[]).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        clone.append(vec![]).await,
        Err(AppendError::Store(StoreError::Closed))
    ));
    store.close().await; // closing twice is harmless
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_isolates_a_conflicting_batch_from_its_neighbours() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("events.db"))
        .await
        .unwrap();
    let taken = Uuid::new_v4();
    store.append(vec![item(taken, 1)]).await.unwrap();
    let before = store.commit_stats();
    // Many appends at once: most are new, every fifth conflicts on `taken`.
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let id = if i % 5 == 0 { taken } else { Uuid::new_v4() };
                (i, id, store.append(vec![item(id, 1), item(id, 2)]).await)
            })
        })
        .collect();
    for t in tasks {
        let (i, id, result) = t.await.unwrap();
        if i % 5 == 0 {
            assert!(
                matches!(result, Err(AppendError::Conflict { sequence_id, .. }) if sequence_id == taken),
                "{result:?}"
            );
        } else {
            let ids = result.unwrap();
            assert_eq!(ids.end - ids.start, 2);
            assert_eq!(
                store.select(id, &Select::all()).await.unwrap(),
                vec![item(id, 1), item(id, 2)]
            );
        }
    }
    assert_eq!(
        store.select(taken, &Select::all()).await.unwrap(),
        vec![item(taken, 1)]
    );
    let after = store.commit_stats();
    assert_eq!(after.appends - before.appends, 200);
    assert!(
        after.transactions - before.transactions < 200,
        "200 concurrent appends were never grouped: {before:?} -> {after:?}"
    );
}

// Multi-threaded, so that the append first tries to commit inline, finds the lock held, and
// falls back to the writer thread, which waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_lock_held_elsewhere_is_a_retryable_busy_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let config = SqliteConfig {
        busy_timeout: Duration::from_millis(100),
        ..SqliteConfig::default()
    };
    let store = SqliteStore::open_with(&path, config).await.unwrap();
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let id = Uuid::new_v4();
    let err = store.append(vec![item(id, 1)]).await.unwrap_err();
    match &err {
        AppendError::Store(e @ StoreError::Busy { .. }) => assert!(e.is_retryable()),
        other => panic!("expected Busy, got {other:?}"),
    }
    // The writer thread's failed group is replicated for its job: the text is said once.
    let text = err.to_string();
    assert_eq!(text.matches("busy").count(), 1, "{text}");
    assert!(text.contains("database is locked"), "{text}");
    // Readers are not blocked by a writer in WAL mode.
    assert!(store.select(id, &Select::all()).await.unwrap().is_empty());
    other.execute_batch("ROLLBACK").unwrap();
    store.append(vec![item(id, 1)]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_waits_for_a_lock_released_within_the_busy_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        other.execute_batch("ROLLBACK").unwrap();
    });
    let id = Uuid::new_v4();
    let before = store.commit_stats();
    store.append(vec![item(id, 1)]).await.unwrap();
    release.join().unwrap();
    let after = store.commit_stats();
    // The inline attempt found the lock held and handed over to the writer thread.
    assert_eq!(after.transactions - before.transactions, 1);
    assert_eq!(after.inline, before.inline, "{before:?} -> {after:?}");
    assert_eq!(
        store.select(id, &Select::all()).await.unwrap(),
        vec![item(id, 1)]
    );
}

/// A keyed append queued for the writer (another connection holds the write lock) whose
/// future is dropped still commits once the lock is released, as its docs say; a retry under
/// the same key then writes nothing and answers with the dropped append's versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_queued_append_still_commits_and_its_retry_applies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let id = Uuid::new_v4();
    let key = eventsmith_core::IdempotencyKey::new("dropped-while-queued").unwrap();
    let batch = || vec![item(id, 1), item(id, 2)];
    let dropped = tokio::time::timeout(
        Duration::from_millis(50),
        store.append_with_key(batch(), &key),
    )
    .await;
    assert!(
        dropped.is_err(),
        "the append waited for the lock, and was dropped"
    );
    assert!(store.select(id, &Select::all()).await.unwrap().is_empty());
    other.execute_batch("ROLLBACK").unwrap();
    let retry = store.append_with_key(batch(), &key).await.unwrap();
    assert_eq!(
        retry,
        eventsmith_core::KeyedAppend::AlreadyApplied(eventsmith_core::PriorAppend {
            sequence_id: id,
            versions: 1..=2
        }),
        "the dropped append committed first, under its key"
    );
    assert_eq!(store.select(id, &Select::all()).await.unwrap(), batch());
}

/// Appends one item to each of `n` new sequences, one after the other.
async fn append_one_by_one(store: &SqliteStore, n: usize) {
    for _ in 0..n {
        store.append(vec![item(Uuid::new_v4(), 1)]).await.unwrap();
    }
}

#[test]
fn an_fsyncing_commit_runs_inline_only_where_tokio_can_block_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let inline_commits = |runtime: tokio::runtime::Runtime, sync: Synchronous| {
        runtime.block_on(async {
            let config = SqliteConfig {
                synchronous: sync,
                ..SqliteConfig::default()
            };
            let store = SqliteStore::open_with(&path, config).await.unwrap();
            append_one_by_one(&store, 20).await;
            let stats = store.commit_stats();
            store.close().await;
            assert_eq!(stats.appends, 20);
            stats.inline
        })
    };
    let current = || {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    };
    let multi = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap()
    };
    // A current-thread runtime has no other thread to hand its tasks to: an fsync there
    // would stall every task, so FULL commits go to the writer thread.
    assert_eq!(inline_commits(current(), Synchronous::Full), 0);
    // Without fsync a commit is short enough to run inline anywhere.
    assert_eq!(inline_commits(current(), Synchronous::Normal), 20);
    // Sequential appends find the writer idle.
    assert_eq!(inline_commits(multi(), Synchronous::Full), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_commits_still_checkpoint_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let config = SqliteConfig {
        synchronous: Synchronous::Normal,
        ..SqliteConfig::default()
    };
    let store = SqliteStore::open_with(&path, config).await.unwrap();
    // Each commit adds at least two 4 KiB frames (a table and an index page): without
    // checkpoints 4,000 commits would leave a WAL of more than 32 MB.
    append_one_by_one(&store, 4000).await;
    let stats = store.commit_stats();
    assert!(stats.inline > 3000, "{stats:?}");
    let wal = std::fs::metadata(dir.path().join("events.db-wal"))
        .unwrap()
        .len();
    assert!(wal < 16 << 20, "WAL of {wal} bytes: never checkpointed");
    store.close().await;
}

#[tokio::test]
async fn synchronous_normal_stores_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let config = SqliteConfig {
        synchronous: Synchronous::Normal,
        ..SqliteConfig::default()
    };
    let store = SqliteStore::open_with(&path, config).await.unwrap();
    let id = Uuid::new_v4();
    store.append(vec![item(id, 1)]).await.unwrap();
    drop(store);
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(
        store.select(id, &Select::all()).await.unwrap(),
        vec![item(id, 1)]
    );
}

#[tokio::test]
async fn versions_beyond_i64_are_invalid_items_not_wrapped() {
    let store = SqliteStore::memory().await.unwrap();
    let id = Uuid::new_v4();
    let err = store
        .append(vec![item(id, 1), item(id, u64::MAX)])
        .await
        .unwrap_err();
    assert!(
        matches!(err, AppendError::Store(StoreError::InvalidItem { .. })),
        "{err}"
    );
    assert!(store.select(id, &Select::all()).await.unwrap().is_empty());
    // A bound beyond the range selects as unbounded, not as a negative number.
    store.append(vec![item(id, 1)]).await.unwrap();
    assert_eq!(
        store
            .select(id, &Select::all().lt(u64::MAX))
            .await
            .unwrap()
            .len(),
        1
    );
}

/// The newest rows deleted by hand (a restore, a retention job): the next appends get ids
/// above every id ever handed out, so a follower positioned past the deleted ones skips nothing.
#[tokio::test]
async fn deleted_newest_rows_never_give_their_notification_ids_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let id = Uuid::new_v4();
    let ids = store
        .append((1..=5).map(|v| item(id, v)).collect())
        .await
        .unwrap();
    let highest = ids.end - 1;
    store.close().await;
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "DELETE FROM integer_items WHERE notification_id > ?1",
            [highest - 3],
        )
        .unwrap();
    let store = SqliteStore::open(&path).await.unwrap();
    let other = Uuid::new_v4();
    let again = store.append(vec![item(other, 1)]).await.unwrap();
    assert!(
        again.start > highest,
        "ids {again:?} reuse ids up to {highest}"
    );
    // A follower that had read up to `highest` sees the new event.
    let after = store.select_notifications(highest, 10, &[]).await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].item.sequence_id, other);
}

/// A file of schema version 1 (plain rowid ids) is migrated on open: every row and id kept,
/// the stamp raised, and from then on ids are never reused.
#[tokio::test]
async fn a_version_1_file_migrates_keeping_its_ids_and_never_reuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    {
        // The version 1 schema, exactly as version 1 builds created it.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE integer_items (
                 notification_id INTEGER PRIMARY KEY,
                 sequence_id BLOB NOT NULL, position INTEGER NOT NULL,
                 topic TEXT NOT NULL, payload BLOB NOT NULL,
                 UNIQUE (sequence_id, position));
             CREATE TABLE timestamp_items (sequence_id BLOB NOT NULL, position INTEGER NOT NULL,
                 topic TEXT NOT NULL, payload BLOB NOT NULL,
                 PRIMARY KEY (sequence_id, position)) WITHOUT ROWID;
             CREATE TABLE snapshots (sequence_id BLOB NOT NULL, position INTEGER NOT NULL,
                 topic TEXT NOT NULL, payload BLOB NOT NULL,
                 PRIMARY KEY (sequence_id, position)) WITHOUT ROWID;
             CREATE TABLE tracking (projection TEXT PRIMARY KEY,
                 notification_id INTEGER NOT NULL) WITHOUT ROWID;
             PRAGMA application_id = 1163095345; PRAGMA user_version = 1;",
        )
        .unwrap();
        for (n, id, v) in [(1, a, 1), (2, a, 2), (3, b, 1), (10, b, 2)] {
            let it = item(id, v);
            conn.execute(
                "INSERT INTO integer_items VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![n, id.as_bytes(), v as i64, it.topic, it.payload],
            )
            .unwrap();
        }
    }
    let store = SqliteStore::open(&path).await.unwrap();
    let log = store.select_notifications(0, 100, &[]).await.unwrap();
    let got: Vec<(u64, Uuid, u64)> = log
        .iter()
        .map(|n| (n.id, n.item.sequence_id, n.item.position))
        .collect();
    assert_eq!(got, vec![(1, a, 1), (2, a, 2), (3, b, 1), (10, b, 2)]);
    assert_eq!(
        store.select(b, &Select::all()).await.unwrap(),
        vec![item(b, 1), item(b, 2)]
    );
    store.close().await;
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    conn.execute("DELETE FROM integer_items WHERE notification_id = 10", [])
        .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path).await.unwrap();
    let ids = store.append(vec![item(b, 2)]).await.unwrap();
    assert_eq!(ids, 11..12, "id 10 was handed out before the migration");
}

/// A file of schema version 3 (before leases) is migrated on open: its rows and tracking
/// records are kept, and runners can take leases on it.
#[tokio::test]
async fn a_version_3_file_migrates_and_takes_leases() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v3.db");
    let a = Uuid::new_v4();
    {
        let store = SqliteStore::open(&path).await.unwrap();
        store.append(vec![item(a, 1)]).await.unwrap();
        let tracking = eventsmith_core::Tracking {
            follower: "f".into(),
            from: 0,
            to: 1,
        };
        store.append_tracked(Vec::new(), tracking).await.unwrap();
        store.close().await;
        // What version 3 had: everything but the leases.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("DROP TABLE leases; PRAGMA user_version = 3;")
            .unwrap();
    }
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(
        store.select(a, &Select::all()).await.unwrap(),
        vec![item(a, 1)]
    );
    assert_eq!(store.tracking_position("f").await.unwrap(), 1);
    let lease = |owner| eventsmith_core::Lease {
        follower: "f".into(),
        owner,
        ttl: std::time::Duration::from_secs(60),
    };
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(
        store.claim_lease(&lease(first)).await.unwrap(),
        eventsmith_core::LeaseClaim::Held
    );
    assert!(matches!(
        store.claim_lease(&lease(second)).await.unwrap(),
        eventsmith_core::LeaseClaim::Taken { owner, .. } if owner == first
    ));
    store.release_lease("f", first).await.unwrap();
    assert_eq!(
        store.claim_lease(&lease(second)).await.unwrap(),
        eventsmith_core::LeaseClaim::Held
    );
    store.close().await;
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

/// Rows of the wrong SQL type or value, written by hand: reading them is `Corrupt`, naming the
/// file, the sequence id and the position (or the notification id when the sequence id itself
/// is unreadable); the other sequences still load.
#[tokio::test]
async fn rows_of_the_wrong_type_are_corrupt_naming_the_item() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let good = Uuid::new_v4();
    store.append(vec![item(good, 1)]).await.unwrap();
    store.close().await;
    let (text_payload, blob_topic, negative) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let insert = |id: Uuid,
                      position: i64,
                      topic: rusqlite::types::Value,
                      payload: rusqlite::types::Value| {
            conn.execute(
                "INSERT INTO integer_items (sequence_id, position, topic, payload) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![id.as_bytes(), position, topic, payload],
            )
            .unwrap();
        };
        use rusqlite::types::Value::{Blob, Text};
        insert(text_payload, 1, Text("t".into()), Text("not bytes".into()));
        insert(blob_topic, 2, Blob(b"t".to_vec()), Blob(vec![1]));
        insert(negative, -1, Text("t".into()), Blob(vec![1]));
        conn.execute(
            "INSERT INTO integer_items (notification_id, sequence_id, position, topic, payload) VALUES (100, x'0102', 1, 't', x'01')",
            [],
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).await.unwrap();
    let expect = |id: Uuid, at: &str, what: &str| {
        let store = store.clone();
        let (at, what) = (at.to_owned(), what.to_owned());
        async move {
            let err = store.select(id, &Select::all()).await.unwrap_err();
            match &err {
                StoreError::Corrupt { detail, .. } => assert!(
                    detail.contains(&format!("sequence {id} {at}")) && detail.contains(&what),
                    "{detail}"
                ),
                other => panic!("expected Corrupt naming {id} {at}, got {other:?}"),
            }
        }
    };
    expect(
        text_payload,
        "position 1",
        "payload stored as TEXT, not BLOB",
    )
    .await;
    expect(blob_topic, "position 2", "topic stored as BLOB, not TEXT").await;
    expect(negative, "position -1", "negative position -1").await;
    let err = store.select_notifications(0, 100, &[]).await.unwrap_err();
    assert!(err.to_string().contains("position 1"), "{err}");
    // The notification log names the row by its notification id when the id is unreadable.
    let err = store.select_notifications(4, 100, &[]).await.unwrap_err();
    assert!(
        err.to_string().contains("notification id 100") && err.to_string().contains("2 bytes"),
        "{err}"
    );
    assert_eq!(
        store.select(good, &Select::all()).await.unwrap(),
        vec![item(good, 1)]
    );
}

/// A timestamped row of the wrong SQL type is `Corrupt` naming its sequence id and position,
/// as integer rows are.
#[tokio::test]
async fn timestamped_rows_of_the_wrong_type_are_corrupt_naming_the_item() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    SqliteStore::open(&path).await.unwrap().close().await;
    let id = Uuid::new_v4();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "INSERT INTO timestamp_items (sequence_id, position, topic, payload) VALUES (?1, 7, 't', 'not bytes')",
            [id.as_bytes()],
        )
        .unwrap();
    let store = SqliteStore::open(&path).await.unwrap();
    let err = store
        .select_timestamped(id, &Select::all())
        .await
        .unwrap_err();
    match &err {
        StoreError::Corrupt { detail, .. } => assert!(
            detail.contains(&format!("sequence {id} position 7"))
                && detail.contains("payload stored as TEXT, not BLOB"),
            "{detail}"
        ),
        other => panic!("expected Corrupt naming {id} position 7, got {other:?}"),
    }
}

/// A new file at `path` whose store may grow it by `pages` pages at most.
async fn store_with_room(path: &std::path::Path, pages: u64) -> SqliteStore {
    SqliteStore::open(path).await.unwrap().close().await;
    let empty_pages: u64 = rusqlite::Connection::open(path)
        .unwrap()
        .query_row("PRAGMA page_count", [], |row| row.get(0))
        .unwrap();
    let config = SqliteConfig {
        max_page_count: Some(empty_pages + pages),
        ..SqliteConfig::default()
    };
    SqliteStore::open_with(path, config).await.unwrap()
}

/// `n` items of sequence `id` with payloads of `size` bytes.
fn sized_batch(id: Uuid, n: u64, size: usize) -> Vec<eventsmith_core::IntegerSequencedItem> {
    (1..=n)
        .map(|position| SequencedItem {
            sequence_id: id,
            position,
            topic: "t".into(),
            payload: vec![position as u8; size],
        })
        .collect()
}

/// A file at its size limit (`max_page_count`, as a full disk gives `SQLITE_FULL`) fails an
/// append with the full-disk kind, the SQLite error under it, and nothing of the batch
/// written: the appends before it are whole, the file stays sound and takes the batch once
/// there is room.
#[tokio::test]
async fn a_full_file_is_storage_full_and_writes_nothing_half() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let store = store_with_room(&path, 12).await;
    // Batches of 10 items of 1000 bytes: a few pages each, so the limit falls inside one.
    let batch = |id: Uuid| sized_batch(id, 10, 1000);
    let mut stored = Vec::new();
    let (refused, err) = loop {
        assert!(stored.len() < 100, "the file never filled up");
        let id = Uuid::new_v4();
        match store.append(batch(id)).await {
            Ok(_) => stored.push(id),
            Err(e) => break (id, e),
        }
    };
    assert!(
        !stored.is_empty(),
        "the first batch already failed: {err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::StorageFull, "{err:?}");
    assert!(!err.kind().is_retryable());
    let AppendError::Store(e @ StoreError::StorageFull { .. }) = &err else {
        panic!("expected StorageFull, got {err:?}")
    };
    assert!(!e.is_retryable());
    // The chain: the store's error, the file it concerns, SQLite's own error.
    let with_path = std::error::Error::source(e).expect("a source");
    assert!(with_path.to_string().contains("events.db"), "{with_path}");
    let sqlite = with_path
        .source()
        .and_then(|s| s.downcast_ref::<rusqlite::Error>())
        .expect("the rusqlite error under it");
    assert_eq!(
        sqlite.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DiskFull)
    );

    // Nothing half: the refused batch left no item, the others are whole.
    assert!(
        store
            .select(refused, &Select::all())
            .await
            .unwrap()
            .is_empty()
    );
    for id in &stored {
        assert_eq!(store.select(*id, &Select::all()).await.unwrap(), batch(*id));
    }
    let last = store.max_notification_id().await.unwrap();
    assert_eq!(last, 10 * stored.len() as u64);
    store.close().await;

    // Without the limit the same file takes the refused batch, numbered after the others.
    let store = SqliteStore::open(&path).await.unwrap();
    let ids = store.append(batch(refused)).await.unwrap();
    assert_eq!(ids.start, last + 1);
    assert_eq!(
        store.select(refused, &Select::all()).await.unwrap(),
        batch(refused)
    );
}

/// The application's retry policy goes by the error's kind: a full file fails the command at
/// once (its decision is made once), a busy one is tried again until the lock is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_retry_a_busy_store_and_not_a_full_one() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use eventsmith_core::{Application, CommandError, RetryPolicy};
    use eventsmith_mapper::EventMapper;
    use eventsmith_testkit::application::{Marked, Tally, TallyEvent};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    SqliteStore::open(&path).await.unwrap().close().await;
    let empty_pages: u64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA page_count", [], |row| row.get(0))
        .unwrap();
    let config = SqliteConfig {
        busy_timeout: Duration::from_millis(50),
        max_page_count: Some(empty_pages + 12),
        ..SqliteConfig::default()
    };
    let store = SqliteStore::open_with(&path, config).await.unwrap();
    let app: Application<Tally, _> = Application::builder(
        store.clone(),
        EventMapper::<TallyEvent>::builder().build().unwrap(),
    )
    .retry(RetryPolicy::new(20).pauses(Duration::from_millis(20), Duration::from_millis(50)))
    .build();

    // Busy: another connection holds the write lock for a while, then lets go.
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        other.execute_batch("ROLLBACK").unwrap();
    });
    let decided = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&decided);
    let id = Uuid::new_v4();
    app.command(id, move |_| {
        count.fetch_add(1, Ordering::SeqCst);
        Ok::<_, String>([Marked { n: 1 }])
    })
    .await
    .expect("retried past the busy lock");
    release.join().unwrap();
    assert!(
        decided.load(Ordering::SeqCst) > 1,
        "the first attempt should have met the lock"
    );

    // Full: commands of four events each until the file is at its limit; the failing one was
    // decided once, not retried.
    let mut outcome = Ok(());
    for n in 0..200 {
        let decided = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&decided);
        let result = app
            .command(Uuid::new_v4(), move |_| {
                count.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(
                    (0..4)
                        .map(|i| Marked { n: n * 1000 + i })
                        .collect::<Vec<_>>(),
                )
            })
            .await;
        if let Err(e) = result {
            assert_eq!(
                decided.load(Ordering::SeqCst),
                1,
                "a full store was retried"
            );
            outcome = Err(e);
            break;
        }
    }
    let Err(err) = outcome else {
        panic!("the file never filled up")
    };
    assert_eq!(err.kind(), ErrorKind::StorageFull, "{err:?}");
    assert!(
        matches!(&err, CommandError::Save(e) if e.kind() == ErrorKind::StorageFull),
        "{err:?}"
    );
    // The chain reaches SQLite's error.
    let mut chain = std::error::Error::source(&err);
    let mut found = false;
    while let Some(e) = chain {
        found |= e
            .downcast_ref::<rusqlite::Error>()
            .is_some_and(|e| e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull));
        chain = e.source();
    }
    assert!(found, "no SQLite error in the chain of {err:?}");
}

/// Concurrent appends into a file that fills up: those committed together with a failing one
/// fail with it (one transaction), each with the full-disk kind and SQLite's error at the end
/// of its own `source()` chain; every acknowledged batch is whole, every refused one absent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_into_a_full_file_each_keep_the_whole_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let store = store_with_room(&path, 40).await;
    let batch = |id: Uuid| sized_batch(id, 5, 700);
    let (mut acked, mut refused) = (Vec::new(), Vec::new());
    for _round in 0..50 {
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (store, id) = (store.clone(), Uuid::new_v4());
                let items = batch(id);
                tokio::spawn(async move { (id, store.append(items).await) })
            })
            .collect();
        for task in tasks {
            match task.await.unwrap() {
                (id, Ok(_)) => acked.push(id),
                (id, Err(e)) => refused.push((id, e)),
            }
        }
        if !refused.is_empty() {
            break;
        }
    }
    assert!(
        !acked.is_empty() && !refused.is_empty(),
        "the file never filled up"
    );
    for (id, err) in &refused {
        assert_eq!(err.kind(), ErrorKind::StorageFull, "{err:?}");
        let mut chain = std::error::Error::source(err);
        let mut sqlite = None;
        while let Some(e) = chain {
            sqlite = sqlite.or(e.downcast_ref::<rusqlite::Error>());
            chain = e.source();
        }
        assert_eq!(
            sqlite.and_then(|e| e.sqlite_error_code()),
            Some(rusqlite::ErrorCode::DiskFull),
            "no SQLite error in the chain of {err:?}"
        );
        assert!(store.select(*id, &Select::all()).await.unwrap().is_empty());
    }
    for id in &acked {
        assert_eq!(store.select(*id, &Select::all()).await.unwrap(), batch(*id));
    }
    let stats = store.commit_stats();
    eprintln!(
        "{} acknowledged, {} refused; {} appends in {} transactions",
        acked.len(),
        refused.len(),
        stats.appends,
        stats.transactions
    );
}

/// Back-pressure: a burst of 64 appends into a writer queue of 2 while another connection
/// holds the write lock. The queue never holds more than 2 (the others wait, without
/// blocking a thread, for room), every append commits once the lock is released, and they
/// are still committed in groups.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_writer_queue_makes_appends_wait_for_room() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let config = SqliteConfig {
        queue_capacity: 2,
        ..SqliteConfig::default()
    };
    let store = SqliteStore::open_with(&path, config).await.unwrap();
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let before = store.commit_stats();
    let ids: Vec<Uuid> = (0..64).map(|_| Uuid::new_v4()).collect();
    let tasks: Vec<_> = ids
        .iter()
        .map(|&id| {
            let store = store.clone();
            tokio::spawn(async move { store.append(vec![item(id, 1), item(id, 2)]).await })
        })
        .collect();
    // One append is with the writer thread, which waits for the lock; two fill the queue;
    // the rest wait for room.
    assert!(
        eventually(|| store.commit_stats().queue_full_waits >= 50).await,
        "appends never waited for room: {:?}",
        store.commit_stats()
    );
    let held = store.commit_stats();
    other.execute_batch("ROLLBACK").unwrap();
    for task in tasks {
        let ids = task.await.unwrap().unwrap();
        assert_eq!(ids.end - ids.start, 2);
    }
    for id in &ids {
        assert_eq!(
            store.select(*id, &Select::all()).await.unwrap(),
            vec![item(*id, 1), item(*id, 2)]
        );
    }
    let after = store.commit_stats();
    eprintln!("while the lock was held: {held:?}; after: {after:?}");
    assert!(held.queued <= 2, "{held:?}");
    assert_eq!(
        after.queue_peak, 2,
        "the queue grew past its capacity: {after:?}"
    );
    assert_eq!(after.queued, 0, "{after:?}");
    assert_eq!(after.appends - before.appends, 64);
    assert!(
        after.transactions - before.transactions < 64,
        "the queued appends were never grouped: {before:?} -> {after:?}"
    );
    store.close().await;
}

/// Cancellation with a full queue (capacity 1, the write lock held elsewhere): of three keyed
/// appends whose tasks are aborted, the one the writer thread holds and the one queued behind
/// it still commit once the lock is released; the one that was waiting for room was never
/// queued and writes nothing. Retried under their keys, the first two answer with what they
/// wrote and the third appends: every batch stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_appends_commit_once_queued_and_never_while_waiting_for_room() {
    use eventsmith_core::{IdempotencyKey, KeyedAppend, PriorAppend};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let config = SqliteConfig {
        queue_capacity: 1,
        ..SqliteConfig::default()
    };
    let store = SqliteStore::open_with(&path, config).await.unwrap();
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let before = store.commit_stats();
    let batch = |id| vec![item(id, 1), item(id, 2)];
    let key = |name: &str| IdempotencyKey::new(name).unwrap();
    let spawn = |id: Uuid, name: &'static str| {
        let store = store.clone();
        tokio::spawn(async move { store.append_with_key(batch(id), &key(name)).await })
    };
    let (taken, queued, waiting) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let a = spawn(taken, "taken");
    // Off the queue, with the writer thread (which waits for the lock).
    assert!(eventually(|| store.commit_stats().queue_peak == 1).await);
    assert!(eventually(|| store.commit_stats().queued == 0).await);
    let b = spawn(queued, "queued");
    assert!(eventually(|| store.commit_stats().queued == 1).await);
    let c = spawn(waiting, "waiting");
    assert!(eventually(|| store.commit_stats().queue_full_waits == 1).await);
    for task in [a, b, c] {
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
    }
    other.execute_batch("ROLLBACK").unwrap();
    assert!(
        eventually(|| store.commit_stats().appends - before.appends == 2).await,
        "the dropped appends were not committed: {:?}",
        store.commit_stats()
    );
    assert_eq!(
        store.select(taken, &Select::all()).await.unwrap(),
        batch(taken)
    );
    assert_eq!(
        store.select(queued, &Select::all()).await.unwrap(),
        batch(queued)
    );
    assert!(
        store
            .select(waiting, &Select::all())
            .await
            .unwrap()
            .is_empty()
    );
    for (id, name) in [(taken, "taken"), (queued, "queued")] {
        assert_eq!(
            store.append_with_key(batch(id), &key(name)).await.unwrap(),
            KeyedAppend::AlreadyApplied(PriorAppend {
                sequence_id: id,
                versions: 1..=2
            }),
            "{name}"
        );
    }
    assert!(matches!(
        store
            .append_with_key(batch(waiting), &key("waiting"))
            .await
            .unwrap(),
        KeyedAppend::Appended(_)
    ));
    for id in [taken, queued, waiting] {
        assert_eq!(store.select(id, &Select::all()).await.unwrap(), batch(id));
    }
    let stats = store.commit_stats();
    assert_eq!(stats.queued, 0, "{stats:?}");
    store.close().await;
}

/// Callers waiting for room when the store closes get `Closed`, not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_waiting_for_room_fail_closed_when_the_store_closes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let config = SqliteConfig {
        queue_capacity: 1,
        busy_timeout: Duration::from_millis(300),
        ..SqliteConfig::default()
    };
    let store = SqliteStore::open_with(&path, config).await.unwrap();
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.append(vec![item(Uuid::new_v4(), 1)]).await })
        })
        .collect();
    assert!(eventually(|| store.commit_stats().queue_full_waits >= 2).await);
    let closing = {
        let store = store.clone();
        tokio::spawn(async move { store.close().await })
    };
    for task in tasks {
        let outcome = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("an append hung after close")
            .unwrap();
        assert!(
            matches!(
                outcome,
                Err(AppendError::Store(
                    StoreError::Closed | StoreError::Busy { .. }
                ))
            ),
            "{outcome:?}"
        );
    }
    closing.await.unwrap();
    drop(other);
}

/// `list_sequences` reads in bounded steps (a few hundred sequences each): across several
/// steps every sequence is listed once, with its highest position.
#[tokio::test]
async fn list_sequences_spans_several_steps() {
    use eventsmith_core::{Inventory, ItemKind};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("events.db"))
        .await
        .unwrap();
    let mut expected = Vec::new();
    let mut batch = Vec::new();
    for i in 0..700u64 {
        let id = Uuid::new_v4();
        let n = 1 + i % 4;
        batch.extend((1..=n).map(|p| item(id, p)));
        expected.push((id, n as i64));
    }
    store.append(batch).await.unwrap();
    let mut listed = store.list_sequences(ItemKind::Integer).await.unwrap();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected);
    assert!(
        store
            .list_sequences(ItemKind::Snapshots)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A topic-filtered read scans the log in bounded windows: rare matches far apart, behind
/// thousands of other rows, are all found, in order, for any start and limit, exactly as
/// filtering the whole log gives them.
#[tokio::test]
async fn topic_filtered_notifications_cross_scan_windows() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("events.db"))
        .await
        .unwrap();
    let id = Uuid::new_v4();
    let items: Vec<_> = (1..=5000u64)
        .map(|p| SequencedItem {
            topic: if p % 1300 == 0 || p == 4999 {
                "rare"
            } else {
                "common"
            }
            .into(),
            ..item(id, p)
        })
        .collect();
    store.append(items).await.unwrap();
    let all = store.select_notifications(0, 10_000, &[]).await.unwrap();
    assert_eq!(all.len(), 5000);
    for after in [0, 1299, 1300, 2700, 4998, 4999, 5000, 9000] {
        for limit in [1, 2, 3, 10] {
            let want: Vec<_> = all
                .iter()
                .filter(|n| n.id > after && n.item.topic == "rare")
                .take(limit)
                .cloned()
                .collect();
            let got = store
                .select_notifications(after, limit, &["rare"])
                .await
                .unwrap();
            assert_eq!(got, want, "after {after}, limit {limit}");
            let both = store
                .select_notifications(after, limit, &["rare", "common"])
                .await
                .unwrap();
            let want: Vec<_> = all
                .iter()
                .filter(|n| n.id > after)
                .take(limit)
                .cloned()
                .collect();
            assert_eq!(both, want, "after {after}, limit {limit}, both topics");
        }
    }
}

/// More concurrent reads than read connections wait for one (and with none, go to the writer
/// thread): every read answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_share_the_connections_opened_with_the_store() {
    for read_connections in [0, 1, 4] {
        let dir = tempfile::tempdir().unwrap();
        let config = SqliteConfig {
            read_connections,
            ..SqliteConfig::default()
        };
        let store = SqliteStore::open_with(dir.path().join("events.db"), config)
            .await
            .unwrap();
        let id = Uuid::new_v4();
        store
            .append((1..=600).map(|p| item(id, p)).collect())
            .await
            .unwrap();
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    if i % 4 == 0 {
                        store.append(vec![item(Uuid::new_v4(), 1)]).await.unwrap();
                    }
                    store.select(id, &Select::all()).await.unwrap().len()
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(
                task.await.unwrap(),
                600,
                "{read_connections} read connections"
            );
        }
        store.close().await;
        assert!(matches!(
            store.select(id, &Select::all()).await,
            Err(StoreError::Closed)
        ));
    }
}
