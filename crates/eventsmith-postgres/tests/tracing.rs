//! The PostgreSQL store's spans: the same names and fields as every backend's
//! (`docs/observability.md`).

mod common;

use eventsmith_testkit::traces::{Collector, check_store_spans};

// A current-thread runtime: the collector, the calling thread's subscriber, sees every span
// of the calls (the writer's own task runs on this thread too).
#[tokio::test(flavor = "current_thread")]
async fn store_calls_are_traced() {
    let Some((store, _schema)) = common::store().await else {
        return;
    };
    let collector = Collector::new();
    let _default = tracing::subscriber::set_default(collector.clone());
    check_store_spans(&store, &collector, "postgres").await;
}
