//! Connecting the tests to the real server named by `EVENTSMITH_POSTGRES` (a `postgres://`
//! URL), with a fresh schema per test so that tests run in parallel.

#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicU32, Ordering};

use eventsmith_postgres::{PostgresConfig, PostgresStore};

/// The server's URL, or `None` (printing why) when the tests cannot run here. Under CI a
/// missing server is a failure, never a skip.
pub fn url() -> Option<String> {
    match std::env::var("EVENTSMITH_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but EVENTSMITH_POSTGRES is not: run the tests with `cargo xtask test`, which starts PostgreSQL and sets it"
            );
            eprintln!(
                "skipped: EVENTSMITH_POSTGRES is not set; start a server with `cargo xtask postgres start` and set EVENTSMITH_POSTGRES=postgres://postgres@127.0.0.1:55432/postgres"
            );
            None
        }
    }
}

/// A schema name no other test (or test run) uses.
pub fn fresh_schema() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "es_test_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Drops its schema when the test ends (on a thread of its own, since drop cannot await).
#[derive(Debug)]
pub struct Schema {
    pub url: String,
    pub name: String,
}

impl Schema {
    pub fn config(&self) -> PostgresConfig {
        self.url
            .parse::<PostgresConfig>()
            .unwrap()
            .with_schema(&self.name)
            .unwrap()
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .expect("connect to drop the test schema");
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .await
                    .expect("drop the test schema");
            })
        })
        .join();
        if dropped.is_err() && !std::thread::panicking() {
            panic!("cannot drop test schema {}", self.name);
        }
    }
}

/// A fresh schema on the server, or `None` when no server is configured.
pub fn schema() -> Option<Schema> {
    Some(Schema {
        url: url()?,
        name: fresh_schema(),
    })
}

/// A store on a fresh schema, with the guard that drops it.
pub async fn store() -> Option<(PostgresStore, Schema)> {
    let schema = schema()?;
    let store = PostgresStore::connect(schema.config())
        .await
        .expect("connect to PostgreSQL");
    Some((store, schema))
}

/// A plain driver connection to the server (for statements the store does not offer).
pub async fn raw(url: &str, schema: Option<&str>) -> tokio_postgres::Client {
    let mut config: tokio_postgres::Config = url.parse().unwrap();
    if let Some(schema) = schema {
        config.options(format!("-c search_path={schema}"));
    }
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}
