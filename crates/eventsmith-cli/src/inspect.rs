//! `stats`, `list`, `show` and `verify`.

use std::collections::HashMap;

use eventsmith_core::{
    DecodeErrorKind, IntegerSequencedItem, Inventory, ItemKind, Select, Support, Timestamp,
};
use eventsmith_mapper::{CodecId, PayloadHeader, Payloads};
use uuid::Uuid;

use crate::store_error;
use eventsmith_cli::url::StoreUrl;

pub(crate) async fn stats<S: Inventory>(store: &S, url: &StoreUrl) -> Result<(), String> {
    let sequences = store
        .list_sequences(ItemKind::Integer)
        .await
        .map_err(store_error)?;
    let events: i64 = sequences.iter().map(|(_, v)| v).sum();
    let logs = store
        .list_sequences(ItemKind::Timestamped)
        .await
        .map_err(store_error)?;
    let snapshots = store
        .list_sequences(ItemKind::Snapshots)
        .await
        .map_err(store_error)?;
    println!("sequences: {}", sequences.len());
    println!("events: {events} (sum of last versions)");
    println!("timestamped logs: {}", logs.len());
    println!("aggregates with snapshots: {}", snapshots.len());
    match store.capabilities().notifications {
        Support::Yes => {
            let max = store.max_notification_id().await.map_err(store_error)?;
            let first = store
                .select_notifications(0, 1, &[])
                .await
                .map_err(store_error)?;
            match first.first() {
                Some(n) => println!("notifications: {} to {max}", n.id),
                None => println!("notifications: none"),
            }
        }
        Support::Missing { .. } => println!("notifications: not offered by this store"),
    }
    if let StoreUrl::Sqlite(path) = url {
        let size = |suffix: &str| {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
        };
        println!("size: {} bytes (+{} in the WAL)", size(""), size("-wal"));
    }
    Ok(())
}

pub(crate) async fn list<S: Inventory>(store: &S) -> Result<(), String> {
    let mut sequences = store
        .list_sequences(ItemKind::Integer)
        .await
        .map_err(store_error)?;
    sequences.sort();
    for (id, version) in sequences {
        println!("{id} {version}");
    }
    Ok(())
}

/// What a payload holds, as far as the header, the key and the codec allow.
enum Body {
    Json(serde_json::Value),
    Bytes(Vec<u8>),
    Sealed(String),
}

/// Why a payload could not be opened: the key (wrong, unknown or erased) or anything else.
enum OpenError {
    Key(String),
    Other(String),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Key(e) | OpenError::Other(e) => f.write_str(e),
        }
    }
}

/// How the key file fared in `verify`.
#[derive(Default)]
struct KeyUse {
    /// Encrypted items left sealed (no key file).
    sealed: u64,
    /// Encrypted items the key file opened.
    opened: u64,
    /// Encrypted items the key file did not open.
    refused: u64,
}

fn open_payload(
    payloads: &Payloads,
    item: &IntegerSequencedItem,
) -> Result<(PayloadHeader, Body), OpenError> {
    let header = PayloadHeader::parse(&item.payload)
        .map_err(|e| OpenError::Other(e.to_string()))?
        .0;
    if header.key_id.is_some() && !payloads.can_decrypt() {
        return Ok((
            header,
            Body::Sealed("encrypted; pass --key-file to decrypt".into()),
        ));
    }
    let (header, body) = payloads.open(item).map_err(|e| match e {
        DecodeErrorKind::Cipher(_) => OpenError::Key(e.to_string()),
        other => OpenError::Other(other.to_string()),
    })?;
    let body = match header.codec {
        CodecId::Json => match serde_json::from_slice(&body) {
            Ok(v) => Body::Json(v),
            Err(e) => return Err(OpenError::Other(format!("invalid JSON: {e}"))),
        },
        _ => Body::Bytes(body.into_owned()),
    };
    Ok((header, body))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) async fn show<S: Inventory>(
    store: &S,
    sequence_id: Uuid,
    json: bool,
    payloads: &Payloads,
    with_key: bool,
) -> Result<(), String> {
    let items = store
        .select(sequence_id, &Select::all())
        .await
        .map_err(store_error)?;
    if items.is_empty() {
        return Err(format!("sequence {sequence_id} has no items"));
    }
    for item in &items {
        let (header, body) = match open_payload(payloads, item) {
            Ok(v) => v,
            // With a key, a payload that does not open is the key's fault or tampering: stop.
            Err(e) if with_key => {
                return Err(format!(
                    "cannot decode {sequence_id} version {}: {e} (wrong key?)",
                    item.position
                ));
            }
            Err(e) => {
                println!("{} {} unreadable: {e}", item.position, item.topic);
                continue;
            }
        };
        let time = Timestamp::from_unix_nanos(header.timestamp_nanos);
        if json {
            let body = match body {
                Body::Json(v) => v,
                Body::Bytes(b) => serde_json::json!({ "hex": hex(&b) }),
                Body::Sealed(why) => serde_json::json!({ "sealed": why }),
            };
            let line = serde_json::json!({
                "sequence_id": sequence_id.to_string(),
                "position": item.position,
                "topic": item.topic,
                "codec": format!("{:?}", header.codec),
                "schema_version": header.schema_version,
                "timestamp": time.to_string(),
                "compressed": header.compressed,
                "key_id": header.key_id,
                "event": body,
            });
            println!("{line}");
        } else {
            let body = match body {
                Body::Json(v) => v.to_string(),
                Body::Bytes(b) => format!("0x{}", hex(&b)),
                Body::Sealed(why) => format!("<{why}>"),
            };
            let key = header
                .key_id
                .as_deref()
                .map(|k| format!(" key {k}"))
                .unwrap_or_default();
            println!(
                "{} {} v{} {:?}{}{} {time} {body}",
                item.position,
                item.topic,
                header.schema_version,
                header.codec,
                if header.compressed { " zstd" } else { "" },
                key
            );
        }
    }
    Ok(())
}

/// Checks everything; prints each problem; returns how many there were.
pub(crate) async fn verify<S: Inventory>(
    store: &S,
    payloads: &Payloads,
    with_key: bool,
) -> Result<usize, String> {
    // Problems are printed at the end: a key file that opens no encrypted item is one error
    // (a wrong key file, exit 2), not one line per item.
    let mut found: Vec<String> = Vec::new();
    let mut report = |what: String| found.push(what);
    let mut keys = KeyUse::default();
    let check = |item: &IntegerSequencedItem,
                 what: String,
                 keys: &mut KeyUse,
                 report: &mut dyn FnMut(String)| {
        let encrypted =
            PayloadHeader::parse(&item.payload).is_ok_and(|(header, _)| header.key_id.is_some());
        match open_payload(payloads, item) {
            Ok((_, Body::Sealed(_))) => keys.sealed += 1,
            Ok(_) if encrypted => keys.opened += 1,
            Ok(_) => {}
            Err(OpenError::Key(e)) => {
                keys.refused += 1;
                report(format!("{what}: {e}"));
            }
            Err(OpenError::Other(e)) => report(format!("{what}: {e}")),
        }
    };
    let mut sequences = store
        .list_sequences(ItemKind::Integer)
        .await
        .map_err(store_error)?;
    sequences.sort();
    let mut items_checked = 0u64;
    for (id, _) in &sequences {
        let items = store
            .select(*id, &Select::all())
            .await
            .map_err(store_error)?;
        for (expected, item) in (1u64..).zip(&items) {
            if item.position != expected {
                report(format!(
                    "sequence {id}: version {expected} is missing (next is {})",
                    item.position
                ));
                break;
            }
        }
        for item in &items {
            items_checked += 1;
            let what = format!("sequence {id} version {} ({})", item.position, item.topic);
            check(item, what, &mut keys, &mut report);
        }
    }
    // Snapshots are sealed like events: the same checks, without the contiguity one.
    let mut snapshotted = store
        .list_sequences(ItemKind::Snapshots)
        .await
        .map_err(store_error)?;
    snapshotted.sort();
    let mut snapshots_checked = 0u64;
    for (id, _) in &snapshotted {
        for item in store.select_snapshots(*id).await.map_err(store_error)? {
            snapshots_checked += 1;
            let what = format!(
                "snapshot of sequence {id} at version {} ({})",
                item.position, item.topic
            );
            check(&item, what, &mut keys, &mut report);
        }
    }
    let mut notifications = 0u64;
    if store.capabilities().notifications == Support::Yes {
        let mut after = 0;
        let mut last_position: HashMap<Uuid, u64> = HashMap::new();
        loop {
            let page = store
                .select_notifications(after, 1000, &[])
                .await
                .map_err(store_error)?;
            let Some(last) = page.last() else { break };
            for n in &page {
                if n.id <= after {
                    report(format!("notification {} does not follow {after}", n.id));
                }
                after = n.id;
                let previous = last_position
                    .insert(n.item.sequence_id, n.item.position)
                    .unwrap_or(0);
                if n.item.position <= previous {
                    report(format!(
                        "notification {}: sequence {} version {} after version {previous}",
                        n.id, n.item.sequence_id, n.item.position
                    ));
                }
                notifications += 1;
            }
            after = last.id;
        }
    }
    if with_key && keys.opened == 0 && keys.refused > 0 {
        return Err(format!(
            "the key file opens none of the {} encrypted items: a wrong key file?",
            keys.refused
        ));
    }
    let problems = found.len();
    for what in &found {
        println!("problem: {what}");
    }
    println!(
        "checked {} sequences, {items_checked} items, {snapshots_checked} snapshots, {notifications} notifications; {} sealed items {}",
        sequences.len(),
        keys.sealed,
        if with_key {
            ""
        } else {
            "not decrypted (no --key-file)"
        }
    );
    println!(
        "{}",
        if problems == 0 {
            "ok".to_owned()
        } else {
            format!("{problems} problem(s)")
        }
    );
    Ok(problems)
}
