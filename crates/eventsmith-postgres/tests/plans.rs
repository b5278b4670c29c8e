//! The writer's statements stay primary-key look-ups however the log grows after they were
//! planned. Generic plans are made once, at a statement's first execution, from the
//! statistics of that moment: made on an empty table, the append's conflict check was a
//! hash join over a sequential scan of `integer_items`, so every later append read the
//! whole log. The server's own counters (`pg_stat_user_tables`) tell whether appends scan.

mod common;

use std::time::{Duration, Instant};

use eventsmith_core::{ItemStore, SequencedItem};
use uuid::Uuid;

const FILLER: i64 = 50_000;
const APPENDS: u64 = 20;

fn item(id: Uuid, position: u64) -> SequencedItem<u64> {
    SequencedItem {
        sequence_id: id,
        position,
        topic: "test.Plan".into(),
        payload: vec![1; 100],
    }
}

/// (rows read by sequential scans, rows inserted) of the schema's `integer_items`, once the
/// server's counters show at least `inserted` rows (backends report them within seconds).
async fn counters(client: &tokio_postgres::Client, schema: &str, inserted: i64) -> (i64, i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let row = client
            .query_one(
                "SELECT coalesce(seq_tup_read, 0), n_tup_ins FROM pg_stat_user_tables \
                 WHERE schemaname = $1 AND relname = 'integer_items'",
                &[&schema],
            )
            .await
            .unwrap();
        let (read, ins): (i64, i64) = (row.get(0), row.get(1));
        if ins >= inserted {
            return (read, ins);
        }
        assert!(
            Instant::now() < deadline,
            "the server's counters show {ins} of {inserted} inserted rows after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_do_not_scan_the_log_planned_when_it_was_empty() {
    let Some((store, schema)) = common::store().await else {
        return;
    };
    // The first append prepares the writer's statements, and plans them, on an empty table.
    let id = Uuid::new_v4();
    store.append(vec![item(id, 1)]).await.unwrap();
    let raw = common::raw(&schema.url, Some(&schema.name)).await;
    raw.execute(
        "INSERT INTO integer_items (sequence_id, position, topic, payload) \
         SELECT gen_random_uuid(), 1, 'test.Filler', '\\x00' FROM generate_series(1, $1::bigint)",
        &[&FILLER],
    )
    .await
    .unwrap();
    let (read_before, _) = counters(&raw, &schema.name, FILLER + 1).await;
    for position in 2..=APPENDS + 1 {
        store.append(vec![item(id, position)]).await.unwrap();
    }
    let (read_after, _) = counters(&raw, &schema.name, FILLER + 1 + APPENDS as i64).await;
    let read = read_after - read_before;
    assert!(
        read < FILLER,
        "{APPENDS} appends read {read} rows by sequential scans of a log of {FILLER} rows"
    );
}
