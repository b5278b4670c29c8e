//! `eventsmith verify` and `show` against real SQLite files: rows of the wrong SQL type, snapshot
//! problems, a topics file, mixed and wrong keys, and crypto-shredded stores.

mod common;

use std::path::Path;
use std::sync::Arc;

use eventsmith_cipher::{AesGcmCipher, FileKeyStore, Key, Keyring, PerAggregateKeys};
use eventsmith_core::{IntegerSequencedItem, ItemStore, SnapshotStore};
use eventsmith_mapper::{CodecId, Encrypt, Payloads};
use eventsmith_sqlite::SqliteStore;
use uuid::Uuid;

use common::{eventsmith, stderr, stdout, url};

/// `sequences` aggregates of `events` events each (topic `test.Happened`) and one snapshot
/// (`test.Snapshot`) of each aggregate at its last version.
async fn fill(path: &Path, sequences: usize, events: u64, payloads: &Payloads) -> Vec<Uuid> {
    let store = SqliteStore::open(path).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..sequences {
        let id = Uuid::new_v4();
        let batch: Vec<IntegerSequencedItem> = (1..=events)
            .map(|v| {
                payloads
                    .seal(
                        id,
                        v,
                        "test.Happened",
                        1,
                        0,
                        &eventsmith_core::Metadata::default(),
                        &serde_json::json!({ "n": v }),
                    )
                    .unwrap()
            })
            .collect();
        store.append(batch).await.unwrap();
        let snapshot = payloads
            .seal(
                id,
                events,
                "test.Snapshot",
                1,
                0,
                &eventsmith_core::Metadata::default(),
                &serde_json::json!({ "total": events }),
            )
            .unwrap();
        store.write_snapshot(snapshot).await.unwrap();
        ids.push(id);
    }
    store.close().await;
    ids
}

fn notification_id(conn: &rusqlite::Connection, id: Uuid, position: i64) -> i64 {
    conn.query_row(
        "SELECT notification_id FROM integer_items WHERE sequence_id = ?1 AND position = ?2",
        rusqlite::params![id.as_bytes(), position],
        |r| r.get(0),
    )
    .unwrap()
}

fn keyring_payloads(key: u8) -> Payloads {
    let cipher = AesGcmCipher::new(Keyring::new("k1", Key::from_bytes([key; 32])));
    Payloads::new(CodecId::Json).with_cipher(Arc::new(cipher), Encrypt::All)
}

#[tokio::test]
async fn rows_of_the_wrong_sql_type_are_each_reported_by_name_and_verify_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let ids = fill(&path, 4, 3, &Payloads::new(CodecId::Json)).await;
    let conn = rusqlite::Connection::open(&path).unwrap();
    let (n0, n1, n2, n3) = (
        notification_id(&conn, ids[0], 2),
        notification_id(&conn, ids[1], 1),
        notification_id(&conn, ids[2], 3),
        notification_id(&conn, ids[3], 1),
    );
    conn.execute_batch(&format!(
        "UPDATE integer_items SET payload = 'some text' WHERE notification_id = {n0};
         UPDATE integer_items SET topic = X'00ff' WHERE notification_id = {n1};
         UPDATE integer_items SET position = -3 WHERE notification_id = {n2};
         UPDATE integer_items SET topic = CAST(X'ff41' AS TEXT) WHERE notification_id = {n3};
         UPDATE snapshots SET payload = 'text' WHERE sequence_id = X'{}';",
        ids[3].simple()
    ))
    .unwrap();
    drop(conn);

    let out = eventsmith(&["verify", &url(&path)]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    for expected in [
        format!(
            "problem: notification {n0}, sequence {}, version 2: payload is TEXT, not a BLOB",
            ids[0]
        ),
        format!(
            "problem: notification {n1}, sequence {}, version 1: topic is BLOB, not TEXT",
            ids[1]
        ),
        format!(
            "problem: notification {n2}, sequence {}, version -3: negative position -3",
            ids[2]
        ),
        format!(
            "problem: snapshot of sequence {}, version 3: payload is TEXT, not a BLOB",
            ids[3]
        ),
        format!(
            "problem: notification {n3}, sequence {}, version 1: topic is TEXT that is not UTF-8",
            ids[3]
        ),
    ] {
        assert!(text.contains(&expected), "{expected}\n{text}");
    }
    // Rows with a readable place are not reported again as missing versions.
    assert!(
        !text.contains(&format!("sequence {}: version", ids[0])),
        "{text}"
    );
    assert!(
        !text.contains(&format!("sequence {}: version", ids[1])),
        "{text}"
    );
    // Every other item was still checked; the notification order check needs only the
    // sequence id and position, so it leaves out just the row without a version.
    assert!(
        text.contains("checked 4 sequences, 8 items, 3 snapshots, 11 notifications"),
        "{text}"
    );
    assert!(
        !text.contains(&format!("sequence {}: version", ids[3])),
        "{text}"
    );
    assert!(text.contains("5 problem(s)"), "{text}");
}

#[tokio::test]
async fn snapshot_problems_are_reported_by_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let ids = fill(&path, 2, 2, &Payloads::new(CodecId::Json)).await;
    let conn = rusqlite::Connection::open(&path).unwrap();
    // A snapshot whose header is cut short, and one whose body is not JSON.
    conn.execute(
        "UPDATE snapshots SET payload = X'01' WHERE sequence_id = ?1",
        [ids[0].as_bytes()],
    )
    .unwrap();
    let payload: Vec<u8> = conn
        .query_row(
            "SELECT payload FROM snapshots WHERE sequence_id = ?1",
            [ids[1].as_bytes()],
            |r| r.get(0),
        )
        .unwrap();
    let mut broken = payload.clone();
    *broken.last_mut().unwrap() = b'!';
    conn.execute(
        "UPDATE snapshots SET payload = ?1 WHERE sequence_id = ?2",
        rusqlite::params![broken, ids[1].as_bytes()],
    )
    .unwrap();
    drop(conn);

    let out = eventsmith(&["verify", &url(&path)]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "problem: snapshot of sequence {} at version 2 (test.Snapshot): malformed payload header",
            ids[0]
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "problem: snapshot of sequence {} at version 2 (test.Snapshot): invalid JSON",
            ids[1]
        )),
        "{text}"
    );
    assert!(text.contains("2 problem(s)"), "{text}");
}

#[tokio::test]
async fn a_topics_file_reports_items_of_unknown_topics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let ids = fill(&path, 2, 2, &Payloads::new(CodecId::Json)).await;
    let store = SqliteStore::open(&path).await.unwrap();
    let stray = Payloads::new(CodecId::Json)
        .seal(
            ids[1],
            3,
            "test.Renamed",
            1,
            0,
            &eventsmith_core::Metadata::default(),
            &serde_json::json!({}),
        )
        .unwrap();
    store.append(vec![stray]).await.unwrap();
    store.close().await;
    let topics = dir.path().join("topics.txt");
    std::fs::write(&topics, "# known topics\ntest.Happened\n\ntest.Snapshot\n").unwrap();

    let out = eventsmith(&["verify", &url(&path), "--topics", topics.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "problem: sequence {} version 3 (test.Renamed): unknown topic \"test.Renamed\"",
            ids[1]
        )),
        "{text}"
    );
    assert!(text.contains("1 problem(s)"), "{text}");

    std::fs::write(&topics, "test.Happened\ntest.Snapshot\ntest.Renamed\n").unwrap();
    let out = eventsmith(&["verify", &url(&path), "--topics", topics.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stdout(&out));

    let missing = dir.path().join("none.txt");
    let out = eventsmith(&["verify", &url(&path), "--topics", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot read topics file"),
        "{}",
        stderr(&out)
    );
}

/// Some items open under the key file and others do not: those are problems with the items
/// (exit 1), not a wrong key file (exit 2, one line, when none opens).
#[tokio::test]
async fn items_under_another_key_are_per_item_problems_and_a_key_that_opens_none_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret.db");
    let ids = fill(&path, 2, 2, &keyring_payloads(7)).await;
    // Another writer used another key under the same key id.
    let store = SqliteStore::open(&path).await.unwrap();
    let other = keyring_payloads(8)
        .seal(
            ids[1],
            3,
            "test.Happened",
            1,
            0,
            &eventsmith_core::Metadata::default(),
            &serde_json::json!({ "n": 3 }),
        )
        .unwrap();
    store.append(vec![other]).await.unwrap();
    store.close().await;
    let key_file = dir.path().join("keys");
    std::fs::write(&key_file, format!("k1 {}\n", "07".repeat(32))).unwrap();
    let keys = key_file.to_str().unwrap();

    let out = eventsmith(&["verify", &url(&path), "--key-file", keys]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(
        text.contains(&format!(
            "problem: sequence {} version 3 (test.Happened): decryption failed",
            ids[1]
        )),
        "{text}"
    );
    assert!(text.contains("1 problem(s)"), "{text}");

    std::fs::write(&key_file, format!("k1 {}\n", "09".repeat(32))).unwrap();
    let out = eventsmith(&["verify", &url(&path), "--key-file", keys]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("wrong key file"), "{err}");
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
}

#[tokio::test]
async fn a_non_ascii_key_file_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    fill(&path, 1, 1, &keyring_payloads(7)).await;
    let key_file = dir.path().join("keys");
    // 64 bytes, but multi-byte characters: slicing by byte offsets used to panic here.
    std::fs::write(&key_file, format!("k1 {}\n", "éa".repeat(21) + "a")).unwrap();
    let out = eventsmith(&[
        "verify",
        &url(&path),
        "--key-file",
        key_file.to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("line 1") && err.contains("64 hex digits"),
        "{err}"
    );
    assert!(!err.contains('é'), "the error quotes the key: {err}");
}

/// A crypto-shredded store: per-aggregate keys in a key store directory, wrapped by a master
/// key given in the key file. An erased aggregate is erased, not a failure.
#[tokio::test]
async fn a_shredded_store_reports_erased_aggregates_as_erased() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shredded.db");
    let key_dir = dir.path().join("keys.d");
    let keys = Arc::new(PerAggregateKeys::new(
        "master-1",
        Key::from_bytes([9; 32]),
        FileKeyStore::open(&key_dir).unwrap(),
    ));
    let payloads = Payloads::new(CodecId::Json).with_cipher(
        Arc::new(AesGcmCipher::with_shared_keys(keys.clone())),
        Encrypt::All,
    );
    let ids = fill(&path, 3, 2, &payloads).await;
    keys.erase(ids[0]).unwrap();
    let key_file = dir.path().join("master.txt");
    std::fs::write(&key_file, format!("master-1 {}\n", "09".repeat(32))).unwrap();
    let (store, masters, key_store) = (
        url(&path),
        key_file.to_str().unwrap().to_owned(),
        key_dir.to_str().unwrap().to_owned(),
    );
    let with_keys = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--key-file", &masters, "--key-store", &key_store]);
        eventsmith(&all)
    };

    let out = with_keys(&["verify", &store]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.contains(&format!("erased: sequence {} (3 items", ids[0])),
        "{text}"
    );
    assert!(!text.contains("problem"), "{text}");
    assert!(text.contains("3 items of 1 erased aggregates"), "{text}");

    let id0 = ids[0].to_string();
    let out = with_keys(&["show", &store, &id0]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.lines().all(|l| l.contains("<erased: ")), "{text}");
    let out = with_keys(&["show", &store, &id0, "--json"]);
    let line: serde_json::Value =
        serde_json::from_str(stdout(&out).lines().next().unwrap()).unwrap();
    assert!(
        line["erased"].as_str().unwrap().contains("erased"),
        "{line}"
    );

    let id1 = ids[1].to_string();
    let out = with_keys(&["show", &store, &id1, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let line: serde_json::Value =
        serde_json::from_str(stdout(&out).lines().nth(1).unwrap()).unwrap();
    assert_eq!(line["event"]["n"], 2);
    assert_eq!(line["key_id"], "aggregate");

    // Without the key store nothing opens: one line naming the option, exit 2.
    let out = eventsmith(&["verify", &store, "--key-file", &masters]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--key-store"), "{err}");
    // A wrong master key unwraps none of the data keys: a wrong key file.
    std::fs::write(&key_file, format!("master-1 {}\n", "08".repeat(32))).unwrap();
    let out = with_keys(&["verify", &store]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("wrong key file"), "{err}");
    // A key store directory that does not exist is not created.
    let missing = dir.path().join("no-such-dir");
    let out = eventsmith(&[
        "verify",
        &store,
        "--key-file",
        &masters,
        "--key-store",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no key store directory"),
        "{}",
        stderr(&out)
    );
    assert!(!missing.exists());
}
