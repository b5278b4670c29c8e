//! What the CLI's test files share: running the binary, naming a SQLite file as a URL, and
//! filling a store and reading all of it back for comparison.

#![allow(dead_code)] // each test file uses a part

use std::path::Path;
use std::process::{Command, Output};

use eventsmith_core::{
    IntegerSequencedItem, Inventory, ItemKind, ItemStore, Metadata, Select, SequencedItem,
    SnapshotStore, Timestamp, TimestampSequencedItem,
};
use eventsmith_mapper::Payloads;
use eventsmith_sqlite::SqliteStore;
use uuid::Uuid;

/// Runs the `eventsmith` binary with `args`.
pub(crate) fn eventsmith(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eventsmith"))
        .args(args)
        .output()
        .unwrap()
}

/// The store URL of a SQLite file.
pub(crate) fn url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// What the binary printed on stdout.
pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What the binary printed on stderr.
pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Fills a SQLite store: `sequences` aggregates of `events` JSON events sealed with
/// `payloads` (one batch each, the even versions with metadata, so that copies are seen to
/// keep it), one snapshot and one timestamped log item. Returns the aggregate ids.
pub(crate) async fn fill(
    path: &Path,
    sequences: usize,
    events: u64,
    payloads: &Payloads,
) -> Vec<Uuid> {
    let store = SqliteStore::open(path).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..sequences {
        let id = Uuid::new_v4();
        let batch: Vec<IntegerSequencedItem> = (1..=events)
            .map(|v| {
                payloads
                    .seal(
                        id,
                        v,
                        "test.Happened",
                        1,
                        v as i64,
                        &if v % 2 == 0 {
                            Metadata::default()
                                .with_correlation_id(format!("request-{v}"))
                                .with_user("actor", "ada")
                        } else {
                            Metadata::default()
                        },
                        &serde_json::json!({ "n": v, "note": "some text" }),
                    )
                    .unwrap()
            })
            .collect();
        store.append(batch).await.unwrap();
        ids.push(id);
    }
    let snapshot = payloads
        .seal(
            ids[0],
            events,
            "test.Snapshot",
            1,
            0,
            &Metadata::default(),
            &serde_json::json!({ "total": events }),
        )
        .unwrap();
    store.write_snapshot(snapshot).await.unwrap();
    let log: TimestampSequencedItem = SequencedItem {
        sequence_id: Uuid::new_v4(),
        position: Timestamp::from_unix_nanos(42),
        topic: "audit".into(),
        payload: b"entry".to_vec(),
    };
    store.append_timestamped(vec![log]).await.unwrap();
    store.close().await;
    ids
}

/// Everything a store holds, in a comparable form: every sequence's items, every log's
/// items, every snapshot.
pub(crate) type Contents = (
    Vec<Vec<IntegerSequencedItem>>,
    Vec<Vec<TimestampSequencedItem>>,
    Vec<Vec<IntegerSequencedItem>>,
);

pub(crate) async fn contents<S: Inventory>(store: &S) -> Contents {
    async fn ids<S: Inventory>(store: &S, kind: ItemKind) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = store
            .list_sequences(kind)
            .await
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        ids.sort();
        ids
    }
    let mut items = Vec::new();
    for id in ids(store, ItemKind::Integer).await {
        items.push(store.select(id, &Select::all()).await.unwrap());
    }
    let mut logs = Vec::new();
    for id in ids(store, ItemKind::Timestamped).await {
        logs.push(store.select_timestamped(id, &Select::all()).await.unwrap());
    }
    let mut snapshots = Vec::new();
    for id in ids(store, ItemKind::Snapshots).await {
        snapshots.push(store.select_snapshots(id).await.unwrap());
    }
    (items, logs, snapshots)
}
