//! A client killed with SIGKILL mid-append, 20 times: nothing half-written, nothing
//! acknowledged lost. The test re-runs its own binary as the client (`CRASH_CHILD_SCHEMA`
//! set), which appends batches of 1 to 5 events and prints each acknowledgement; the parent
//! kills it at a random moment, then checks the log against every acknowledgement it read.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use eventsmith_core::{ItemStore, SequencedItem};
use uuid::Uuid;

const CHILD_ENV: &str = "CRASH_CHILD_SCHEMA";
const KILLS: usize = 20;

/// The client: appends until killed, printing `ack SEQUENCE BATCH SIZE FIRST_ID` per batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    let Ok(schema) = std::env::var(CHILD_ENV) else {
        // Not a test of its own: the client of `a_client_killed_mid_append_loses_nothing`.
        return;
    };
    let url = common::url().expect("the parent has a server");
    let config = url
        .parse::<eventsmith_postgres::PostgresConfig>()
        .unwrap()
        .with_schema(&schema)
        .unwrap();
    let store = eventsmith_postgres::PostgresStore::connect(config)
        .await
        .unwrap();
    let id = Uuid::new_v4();
    let mut next = 1;
    let mut out = std::io::stdout();
    for b in 0u64.. {
        let size = 1 + b % 5;
        let batch = (next..next + size)
            .map(|p| SequencedItem {
                sequence_id: id,
                position: p,
                topic: "test.Crash".into(),
                payload: format!("{b}/{size}").into_bytes(),
            })
            .collect();
        let range = store.append(batch).await.unwrap();
        writeln!(out, "ack {id} {b} {size} {}", range.start).unwrap();
        out.flush().unwrap();
        next += size;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_mid_append_loses_nothing() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let Some((store, schema)) = common::store().await else {
        return;
    };
    let mut acked: Vec<(Uuid, u64, u64, u64)> = Vec::new();
    for kill in 0..KILLS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &schema.name)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    (f.len() == 5 && f[0] == "ack").then(|| {
                        (
                            f[1].parse::<Uuid>().unwrap(),
                            f[2].parse().unwrap(),
                            f[3].parse().unwrap(),
                            f[4].parse().unwrap(),
                        )
                    })
                })
                .collect::<Vec<_>>()
        });
        // Kill at a different moment each time, once the client is appending.
        tokio::time::sleep(Duration::from_millis(300 + 37 * kill as u64)).await;
        child.kill().unwrap();
        child.wait().unwrap();
        let lines = reader.join().unwrap();
        acked.extend(lines);
    }
    assert!(
        acked.len() >= KILLS,
        "the clients acknowledged only {} appends",
        acked.len()
    );
    // Every batch in the log is whole: its items carry "BATCH/SIZE", and each batch has
    // exactly SIZE items with contiguous ids.
    let log = store.select_notifications(0, 1_000_000, &[]).await.unwrap();
    let mut batches: HashMap<(Uuid, u64), (u64, Vec<u64>)> = HashMap::new();
    for n in &log {
        let text = String::from_utf8(n.item.payload.clone()).unwrap();
        let (b, size) = text.split_once('/').unwrap();
        let entry = batches
            .entry((n.item.sequence_id, b.parse().unwrap()))
            .or_insert((size.parse().unwrap(), Vec::new()));
        entry.1.push(n.id);
    }
    for ((id, b), (size, ids)) in &batches {
        assert_eq!(
            ids.len() as u64,
            *size,
            "batch {b} of {id} is half-written: {ids:?}"
        );
        assert!(
            ids.windows(2).all(|w| w[1] == w[0] + 1),
            "batch {b} of {id} has gaps: {ids:?}"
        );
    }
    // Every acknowledged batch is there, under the ids its append returned.
    for (id, b, size, first) in &acked {
        let (stored_size, ids) = batches
            .get(&(*id, *b))
            .unwrap_or_else(|| panic!("acknowledged batch {b} of {id} was lost"));
        assert_eq!(stored_size, size);
        assert_eq!(ids[0], *first, "batch {b} of {id} moved");
    }
    eprintln!(
        "crash: {KILLS} kills, {} acknowledged batches, {} batches and {} events in the log, all whole",
        acked.len(),
        batches.len(),
        log.len()
    );
}
