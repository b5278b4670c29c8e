//! The memory store's spans carry the same names and fields as every backend's
//! (`docs/observability.md`), so tests against it see what production sees.

use eventsmith_core::{MemoryStore, SequencedItem, SnapshotStore};
use eventsmith_testkit::traces::{Collector, check_store_spans};
use uuid::Uuid;

#[tokio::test(flavor = "current_thread")]
async fn memory_store_calls_are_traced() {
    let collector = Collector::new();
    let _default = tracing::subscriber::set_default(collector.clone());
    let store = MemoryStore::new();
    check_store_spans(&store, &collector, "memory").await;

    collector.clear();
    let id = Uuid::new_v4();
    let snapshot = SequencedItem {
        sequence_id: id,
        position: 2,
        topic: "t".to_owned(),
        payload: vec![1],
    };
    store.write_snapshot(snapshot).await.unwrap();
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
