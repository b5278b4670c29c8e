//! The spans and events of the SQLite store (`docs/observability.md`): one test, because the
//! collector is installed as the global default so that the writer thread's events are seen too.

use eventsmith_core::{AppendError, ItemStore, SequencedItem};
use eventsmith_sqlite::SqliteStore;
use eventsmith_testkit::traces::Collector;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_and_conflicts_are_traced() {
    let collector = Collector::new();
    tracing::subscriber::set_global_default(collector.clone()).expect("no other subscriber");
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("t.db")).await.unwrap();
    let id = Uuid::new_v4();
    let item = |position| SequencedItem {
        sequence_id: id,
        position,
        topic: "t".to_owned(),
        payload: vec![1],
    };
    collector.clear();
    store.append(vec![item(1), item(2)]).await.unwrap();
    let appends = collector.spans_named("eventsmith.append");
    assert_eq!(appends.len(), 1, "{:?}", collector.spans());
    let f = &appends[0].fields;
    assert_eq!(f["backend"], "sqlite");
    assert_eq!(f["items"], "2");
    assert_eq!(f["sequence_id"], id.to_string());
    assert_eq!(f["position"], "1");
    assert_eq!(f["outcome"], "ok");

    collector.clear();
    let e = store.append(vec![item(2)]).await.unwrap_err();
    assert!(matches!(e, AppendError::Conflict { .. }), "{e:?}");
    let appends = collector.spans_named("eventsmith.append");
    assert_eq!(appends.len(), 1, "{:?}", collector.spans());
    assert_eq!(appends[0].fields["outcome"], "conflict");

    collector.clear();
    let rows = store
        .select(id, &eventsmith_core::Select::all())
        .await
        .unwrap();
    let selects = collector.spans_named("eventsmith.select");
    assert_eq!(selects.len(), 1, "{:?}", collector.spans());
    assert_eq!(selects[0].fields["items"], rows.len().to_string());
    assert_eq!(selects[0].fields["outcome"], "ok");
    store.close().await;
}
