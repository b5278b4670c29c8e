//! The memory store's spans carry the same names and fields as every backend's
//! (`docs/observability.md`), so tests against it see what production sees.

use eventsmith_core::{AppendError, ItemStore, MemoryStore, Select, SequencedItem, SnapshotStore};
use eventsmith_testkit::traces::Collector;
use uuid::Uuid;

#[tokio::test(flavor = "current_thread")]
async fn memory_store_calls_are_traced() {
    let collector = Collector::new();
    let _default = tracing::subscriber::set_default(collector.clone());
    let store = MemoryStore::new();
    let id = Uuid::new_v4();
    let item = |position| SequencedItem {
        sequence_id: id,
        position,
        topic: "t".to_owned(),
        payload: vec![1],
    };

    store.append(vec![item(1), item(2)]).await.unwrap();
    let appends = collector.spans_named("eventsmith.append");
    assert_eq!(appends.len(), 1, "{:?}", collector.spans());
    let f = &appends[0].fields;
    assert_eq!(f["backend"], "memory");
    assert_eq!(f["items"], "2");
    assert_eq!(f["sequence_id"], id.to_string());
    assert_eq!(f["position"], "1");
    assert_eq!(f["keyed"], "false");
    assert_eq!(f["outcome"], "ok");

    collector.clear();
    let e = store.append(vec![item(2)]).await.unwrap_err();
    assert!(matches!(e, AppendError::Conflict { .. }), "{e:?}");
    assert_eq!(
        collector.spans_named("eventsmith.append")[0].fields["outcome"],
        "conflict"
    );

    collector.clear();
    let rows = store.select(id, &Select::all()).await.unwrap();
    let select = &collector.spans_named("eventsmith.select")[0].fields;
    assert_eq!(select["items"], rows.len().to_string());
    assert_eq!(select["outcome"], "ok");

    collector.clear();
    let page = store.select_notifications(0, 10, &[]).await.unwrap();
    let notifications = &collector.spans_named("eventsmith.notifications")[0].fields;
    assert_eq!(notifications["items"], page.len().to_string());
    assert_eq!(notifications["after"], "0");

    collector.clear();
    store.write_snapshot(item(2)).await.unwrap();
    store.latest_snapshot(id, None).await.unwrap();
    assert_eq!(
        collector.spans_named("eventsmith.snapshot.write")[0].fields["outcome"],
        "ok"
    );
    assert_eq!(
        collector.spans_named("eventsmith.snapshot.latest")[0].fields["sequence_id"],
        id.to_string()
    );
}
