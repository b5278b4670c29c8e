//! The `eventsmith` binary against a real PostgreSQL server (`EVENTSMITH_POSTGRES`, a
//! `postgres://` URL; `cargo xtask test` starts one and sets it): `stats`, `list`, `show` and
//! `verify` on a `postgres://` URL, copies SQLite -> PostgreSQL -> SQLite (and through
//! Cassandra when `EVENTSMITH_CASSANDRA` is set too) with every item equal, a copy into
//! PostgreSQL killed halfway and resumed, and one-line errors with exit code 2. Each test
//! works in a PostgreSQL schema of its own, dropped at its end.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use eventsmith_core::{IntegerSequencedItem, ItemStore};
use eventsmith_mapper::{CodecId, Payloads};
use eventsmith_postgres::{PostgresConfig, PostgresStore};
use eventsmith_sqlite::SqliteStore;
use uuid::Uuid;

use common::{contents, eventsmith, fill, stderr, stdout, url};

/// The server's URL, or `None` (printing why). Under CI a missing server is a failure.
fn server() -> Option<String> {
    match std::env::var("EVENTSMITH_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but EVENTSMITH_POSTGRES is not: run the tests with `cargo xtask test`"
            );
            eprintln!(
                "skipped: EVENTSMITH_POSTGRES is not set (`cargo xtask test` starts PostgreSQL and sets it)"
            );
            None
        }
    }
}

/// A schema of one test, dropped when the test ends.
struct Schema {
    server: String,
    name: String,
}

impl Schema {
    fn new(server: &str, what: &str) -> Schema {
        Schema {
            server: server.to_owned(),
            name: format!(
                "cli_{what}_{}_{}",
                std::process::id(),
                Uuid::new_v4().simple()
            ),
        }
    }

    /// The store URL of the schema, as the CLI takes it.
    fn url(&self) -> String {
        let separator = if self.server.contains('?') { '&' } else { '?' };
        format!("{}{separator}schema={}", self.server, self.name)
    }

    async fn store(&self) -> PostgresStore {
        let config: PostgresConfig = self.url().parse().unwrap();
        PostgresStore::connect(config).await.unwrap()
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop cannot await: a thread with its own runtime drops the schema.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let (client, connection) =
                        tokio_postgres::connect(&server, tokio_postgres::NoTls).await?;
                    tokio::spawn(connection);
                    client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .await
                })
        })
        .join();
        if !std::thread::panicking() {
            dropped
                .expect("the thread dropping the schema")
                .expect("drop the test schema");
        }
    }
}

fn assert_ok(out: &std::process::Output, what: &str) {
    assert!(out.status.success(), "{what}: {}", stderr(out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_list_show_and_verify_read_a_postgres_store() {
    let Some(server) = server() else { return };
    let schema = Schema::new(&server, "inspect");
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    let ids = fill(&source, 3, 5, &Payloads::new(CodecId::Json)).await;
    assert_ok(
        &eventsmith(&["copy", &url(&source), &schema.url()]),
        "copy into PostgreSQL",
    );

    let stats = eventsmith(&["stats", &schema.url()]);
    assert_ok(&stats, "stats");
    let text = stdout(&stats);
    for line in [
        "sequences: 3",
        "events: 15",
        "timestamped logs: 1",
        "aggregates with snapshots: 1",
        "notifications: 1 to 15",
    ] {
        assert!(text.contains(line), "stats lacks {line:?}: {text}");
    }

    let list = eventsmith(&["list", &schema.url()]);
    assert_ok(&list, "list");
    let mut expected: Vec<String> = ids.iter().map(|id| format!("{id} 5")).collect();
    expected.sort();
    assert_eq!(stdout(&list).lines().collect::<Vec<_>>(), expected);

    let show = eventsmith(&["show", &schema.url(), &ids[0].to_string(), "--json"]);
    assert_ok(&show, "show");
    let lines: Vec<serde_json::Value> = stdout(&show)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5, "{}", stdout(&show));
    assert_eq!(lines[4]["event"]["n"], 5);
    assert!(stdout(&show).contains("some text"));

    let verify = eventsmith(&["verify", &schema.url()]);
    assert_ok(&verify, "verify of a sound store");

    // Damage one payload and delete one version behind the store's back: verify names both.
    let client = raw(&server).await;
    client
        .execute(
            &format!(
                "UPDATE {}.integer_items SET payload = '\\xdeadbeef' WHERE sequence_id = $1 AND position = 2",
                schema.name
            ),
            &[&ids[1]],
        )
        .await
        .unwrap();
    client
        .execute(
            &format!(
                "DELETE FROM {}.integer_items WHERE sequence_id = $1 AND position = 3",
                schema.name
            ),
            &[&ids[2]],
        )
        .await
        .unwrap();
    let bad = eventsmith(&["verify", &schema.url()]);
    assert_eq!(bad.status.code(), Some(1), "{}", stdout(&bad));
    let report = stdout(&bad);
    assert!(report.contains(&ids[1].to_string()), "{report}");
    assert!(report.contains(&ids[2].to_string()), "{report}");
}

async fn raw(server: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(server, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copying_sqlite_to_postgres_to_sqlite_keeps_every_item() {
    let Some(server) = server() else { return };
    let schema = Schema::new(&server, "copy");
    let dir = tempfile::tempdir().unwrap();
    let (first, last) = (dir.path().join("first.db"), dir.path().join("last.db"));
    fill(&first, 200, 50, &Payloads::new(CodecId::Json)).await;
    assert_ok(
        &eventsmith(&["copy", &url(&first), &schema.url()]),
        "SQLite -> PostgreSQL",
    );
    assert_ok(
        &eventsmith(&["copy", &schema.url(), &url(&last)]),
        "PostgreSQL -> SQLite",
    );
    let (a, m, b) = (
        SqliteStore::open(&first).await.unwrap(),
        schema.store().await,
        SqliteStore::open(&last).await.unwrap(),
    );
    let (ca, cm, cb) = (contents(&a).await, contents(&m).await, contents(&b).await);
    assert_eq!(ca.0.iter().map(Vec::len).sum::<usize>(), 10_000);
    assert_eq!(ca, cm, "SQLite -> PostgreSQL changed something");
    assert_eq!(ca, cb, "the round trip changed something");
    // The notification log keeps the source's order.
    let (na, nm) = (
        a.select_notifications(0, 20_000, &[]).await.unwrap(),
        m.select_notifications(0, 20_000, &[]).await.unwrap(),
    );
    let items = |n: &[eventsmith_core::Notification]| -> Vec<IntegerSequencedItem> {
        n.iter().map(|n| n.item.clone()).collect()
    };
    assert_eq!(items(&na), items(&nm));
    // A second copy (a resumed one that finds everything there) writes nothing.
    assert_ok(
        &eventsmith(&["copy", &url(&first), &schema.url()]),
        "the copy again",
    );
    assert_eq!(m.max_notification_id().await.unwrap(), 10_000);
}

/// The round trip: SQLite -> PostgreSQL -> Cassandra -> SQLite, every item equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copying_sqlite_to_postgres_to_cassandra_to_sqlite_keeps_every_item() {
    let Some(server) = server() else { return };
    let Ok(cassandra) = std::env::var("EVENTSMITH_CASSANDRA") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but EVENTSMITH_CASSANDRA is not"
        );
        eprintln!("skipped: EVENTSMITH_CASSANDRA is not set (cargo xtask test starts a node)");
        return;
    };
    let schema = Schema::new(&server, "chain");
    let dir = tempfile::tempdir().unwrap();
    let (first, last) = (dir.path().join("first.db"), dir.path().join("last.db"));
    fill(&first, 100, 20, &Payloads::new(CodecId::Json)).await;
    let keyspace = format!("cli_pg_chain_{}", std::process::id());
    let middle = format!("cassandra://{cassandra}/{keyspace}?replication_factor=1");
    for (from, to) in [
        (url(&first), schema.url()),
        (schema.url(), middle.clone()),
        (middle.clone(), url(&last)),
    ] {
        assert_ok(
            &eventsmith(&["copy", &from, &to]),
            &format!("{from} -> {to}"),
        );
    }
    let (a, b) = (
        SqliteStore::open(&first).await.unwrap(),
        SqliteStore::open(&last).await.unwrap(),
    );
    let (ca, cb) = (contents(&a).await, contents(&b).await);
    assert_eq!(ca.0.iter().map(Vec::len).sum::<usize>(), 2_000);
    assert_eq!(ca, cb, "the round trip changed something");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_into_postgres_killed_halfway_resumes_and_never_duplicates() {
    let Some(server) = server() else { return };
    let schema = Schema::new(&server, "resume");
    let dir = tempfile::tempdir().unwrap();
    let from = dir.path().join("from.db");
    fill(&from, 2000, 10, &Payloads::new(CodecId::Json)).await;
    let store = schema.store().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_eventsmith"))
        .args(["copy", &url(&from), &schema.url()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let copied = store.max_notification_id().await.unwrap();
        if copied >= 2_000 || started.elapsed() > Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = store.max_notification_id().await.unwrap();
    assert!(
        partial > 0 && partial < 20_000,
        "killed after {partial} of 20000 events"
    );
    assert_ok(
        &eventsmith(&["copy", &url(&from), &schema.url()]),
        "the resumed copy",
    );
    let source = SqliteStore::open(&from).await.unwrap();
    assert_eq!(contents(&source).await, contents(&store).await);
    let events = store.select_notifications(0, 30_000, &[]).await.unwrap();
    assert_eq!(events.len(), 20_000, "an item was written twice");
    assert_ok(
        &eventsmith(&["verify", &schema.url()]),
        "verify after resume",
    );
}

#[test]
fn postgres_errors_are_one_line_with_exit_code_2() {
    let cases = [
        ("postgres://postgres@127.0.0.1:1/postgres", "cannot connect"),
        ("postgres://h/db?schema=Not-Valid", "invalid schema name"),
        ("postgres://u:hunter2@h:notaport/db", "bad store URL"),
    ];
    for (store, expected) in cases {
        let out = eventsmith(&["stats", store]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{store}: {err}");
        assert!(err.contains(expected), "{store}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{store}: {err}");
        assert!(!err.contains("hunter2"), "the password leaked: {err}");
    }
}
