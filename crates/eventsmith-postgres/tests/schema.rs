//! The schema's version on open: a version 1 schema is upgraded in place (its tables kept,
//! the append function added), and a version newer than this build is refused.

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

#[tokio::test]
async fn a_version_1_schema_is_upgraded_on_open() {
    let Some(schema) = common::schema() else {
        return;
    };
    let id = Uuid::new_v4();
    let store = PostgresStore::connect(schema.config()).await.unwrap();
    store.append(vec![item(id, 1)]).await.unwrap();
    store.close();
    // What a version 1 schema is: the same tables, no append function.
    let client = raw(&schema).await;
    client
        .batch_execute(
            "DROP FUNCTION eventsmith_append(uuid[], bigint[], text[], bytea[], int[], text); \
             UPDATE schema_version SET version = 1",
        )
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
