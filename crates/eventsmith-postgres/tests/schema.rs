//! The schema's version on open: version 1 and 2 schemas are upgraded in place (their
//! tables kept, the append function added or replaced), and a version newer than this build
//! is refused.

mod common;

use eventsmith_core::{ItemStore, Select, SequencedItem, StoreError};
use eventsmith_postgres::{PostgresStore, SCHEMA_VERSION};
use uuid::Uuid;

async fn raw(schema: &common::Schema) -> tokio_postgres::Client {
    let mut config: tokio_postgres::Config = schema.url.parse().unwrap();
    config.options(format!("-c search_path={}", schema.name));
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

fn item(sequence_id: Uuid, position: u64) -> eventsmith_core::IntegerSequencedItem {
    SequencedItem {
        sequence_id,
        position,
        topic: "schema.Noted".into(),
        payload: vec![position as u8],
    }
}

/// Makes a schema, turns it into an older version with `downgrade` (SQL run in the
/// schema), opens it again and checks that it was upgraded: the version is this build's and
/// appends work, next to the item written before.
async fn upgrades_on_open(downgrade: &str) {
    let Some(schema) = common::schema() else {
        return;
    };
    let id = Uuid::new_v4();
    let store = PostgresStore::connect(schema.config()).await.unwrap();
    store.append(vec![item(id, 1)]).await.unwrap();
    store.close();
    let client = raw(&schema).await;
    client
        .batch_execute(&downgrade.replace("SCHEMA", &schema.name))
        .await
        .unwrap();
    let store = PostgresStore::connect(schema.config()).await.unwrap();
    let version: i32 = client
        .query_one("SELECT version FROM schema_version", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, SCHEMA_VERSION);
    store.append(vec![item(id, 2)]).await.unwrap();
    let stored = store.select(id, &Select::all()).await.unwrap();
    assert_eq!(stored, vec![item(id, 1), item(id, 2)]);
}

#[tokio::test]
async fn a_version_1_schema_is_upgraded_on_open() {
    // What a version 1 schema is: the same tables, no append function.
    upgrades_on_open(
        "DROP FUNCTION eventsmith_append(uuid[], bigint[], text[], bytea[], int[], text); \
         UPDATE schema_version SET version = 1",
    )
    .await;
}

#[tokio::test]
async fn a_version_2_schema_gets_the_new_append_function() {
    // Stands for version 2's function: an open that kept it would fail the append.
    upgrades_on_open(
        "CREATE OR REPLACE FUNCTION SCHEMA.eventsmith_append(
             ids uuid[], positions bigint[], topics text[], payloads bytea[], appends int[],
             channel text
         ) RETURNS TABLE (append int, min_id bigint, max_id bigint, inserted bigint,
             conflict_sequence uuid, conflict_position bigint)
         LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'the version 2 function'; END $$;
         UPDATE schema_version SET version = 2",
    )
    .await;
}

// Multi-threaded: the refused open's connection closes (and its transaction ends) on the
// runtime while the schema guard's drop blocks this thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused() {
    let Some(schema) = common::schema() else {
        return;
    };
    PostgresStore::connect(schema.config())
        .await
        .unwrap()
        .close();
    raw(&schema)
        .await
        .execute(
            "UPDATE schema_version SET version = $1",
            &[&(SCHEMA_VERSION + 1)],
        )
        .await
        .unwrap();
    match PostgresStore::connect(schema.config()).await {
        Err(StoreError::Corrupt { detail, .. }) => {
            assert!(detail.contains("newer"), "{detail}");
        }
        other => panic!("expected Corrupt, got {:?}", other.map(|_| ())),
    }
}
