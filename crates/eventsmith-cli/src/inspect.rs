//! `stats`, `list`, `show` and `verify`.

use std::collections::{BTreeMap, HashMap, HashSet};

use eventsmith_core::{
    CipherError, DecodeErrorKind, IntegerSequencedItem, Inventory, ItemKind, Select, Support,
    Timestamp,
};
use eventsmith_mapper::{CodecId, PayloadHeader, Payloads};
use uuid::Uuid;

use crate::error::CliError;
use eventsmith_cli::url::StoreUrl;

pub(crate) async fn stats<S: Inventory>(store: &S, url: &StoreUrl) -> Result<(), CliError> {
    let sequences = store.list_sequences(ItemKind::Integer).await?;
    let events: i64 = sequences.iter().map(|(_, v)| v).sum();
    let logs = store.list_sequences(ItemKind::Timestamped).await?;
    let snapshots = store.list_sequences(ItemKind::Snapshots).await?;
    println!("sequences: {}", sequences.len());
    println!("events: {events} (sum of last versions)");
    println!("timestamped logs: {}", logs.len());
    println!("aggregates with snapshots: {}", snapshots.len());
    match store.capabilities().notifications {
        Support::Yes => {
            let max = store.max_notification_id().await?;
            let first = store.select_notifications(0, 1, &[]).await?;
            match first.first() {
                Some(n) => println!("notifications: {} to {max}", n.id),
                None => println!("notifications: none"),
            }
        }
        Support::Missing { .. } => println!("notifications: not offered by this store"),
    }
    if let StoreUrl::Sqlite(sqlite) = url {
        let size = |suffix: &str| {
            let mut p = sqlite.path.as_os_str().to_owned();
            p.push(suffix);
            std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
        };
        println!("size: {} bytes (+{} in the WAL)", size(""), size("-wal"));
    }
    Ok(())
}

pub(crate) async fn list<S: Inventory>(store: &S) -> Result<(), CliError> {
    let mut sequences = store.list_sequences(ItemKind::Integer).await?;
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

/// Why a payload could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    /// The header, the key, the decompression or the codec failed.
    #[error(transparent)]
    Decode(#[from] DecodeErrorKind),
    /// A JSON payload that is not JSON.
    #[error("invalid JSON: {0}")]
    Json(#[source] serde_json::Error),
}

impl OpenError {
    /// The aggregate's key was erased (crypto-shredding): not a failure, the data is gone.
    fn is_erased(&self) -> bool {
        matches!(
            self,
            OpenError::Decode(DecodeErrorKind::Cipher(CipherError::KeyErased { .. }))
        )
    }

    /// The key: wrong, unknown, or a key store that failed.
    fn is_key(&self) -> bool {
        matches!(self, OpenError::Decode(DecodeErrorKind::Cipher(_))) && !self.is_erased()
    }
}

fn open_payload(
    payloads: &Payloads,
    item: &IntegerSequencedItem,
) -> Result<(PayloadHeader, Body), OpenError> {
    let header = PayloadHeader::parse(&item.payload)?.0;
    if header.key_id.is_some() && !payloads.can_decrypt() {
        return Ok((
            header,
            Body::Sealed("encrypted; pass --key-file to decrypt".into()),
        ));
    }
    let (header, body) = payloads.open(item)?;
    let body = match header.codec {
        CodecId::Json => match serde_json::from_slice(&body) {
            Ok(v) => Body::Json(v),
            Err(e) => return Err(OpenError::Json(e)),
        },
        _ => Body::Bytes(body.into_owned()),
    };
    Ok((header, body))
}

pub(crate) async fn show<S: Inventory>(
    store: &S,
    sequence_id: Uuid,
    json: bool,
    payloads: &Payloads,
    with_key: bool,
) -> Result<(), CliError> {
    let items = store.select(sequence_id, &Select::all()).await?;
    if items.is_empty() {
        return Err(CliError::EmptySequence(sequence_id));
    }
    for item in &items {
        let (header, body) = match open_payload(payloads, item) {
            Ok(v) => v,
            // A shredded aggregate: its events are gone for good, which is not an error.
            Err(e) if e.is_erased() => {
                if json {
                    let line = serde_json::json!({
                        "sequence_id": sequence_id.to_string(),
                        "position": item.position,
                        "topic": item.topic,
                        "erased": e.to_string(),
                    });
                    println!("{line}");
                } else {
                    println!("{} {} <erased: {e}>", item.position, item.topic);
                }
                continue;
            }
            // With a key, a payload that does not open is the key's fault or tampering: stop.
            Err(source) if with_key => {
                return Err(CliError::Undecodable {
                    sequence_id,
                    version: item.position,
                    source,
                });
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
                Body::Bytes(b) => serde_json::json!({ "hex": hex::encode(&b) }),
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
                Body::Bytes(b) => format!("0x{}", hex::encode(&b)),
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

/// How the key file fared in `verify`.
#[derive(Default)]
struct KeyUse {
    /// Encrypted items left sealed (no key file).
    sealed: u64,
    /// Encrypted items the key file opened.
    opened: u64,
    /// Encrypted items the key file did not open, and why the first did not.
    refused: u64,
    first_refusal: Option<String>,
    /// Items of shredded aggregates, per aggregate.
    erased: BTreeMap<Uuid, u64>,
}

/// The checks of `verify`, fed item by item by a store reader ([`verify`] through the
/// store's API, [`crate::raw`] from SQLite rows); prints the result in [`finish`](Self::finish).
pub(crate) struct Verifier<'a> {
    payloads: &'a Payloads,
    with_key: bool,
    topics: Option<&'a HashSet<String>>,
    // Problems are printed at the end: a key file that opens no encrypted item is one error
    // (a wrong key file, exit 2), not one line per item.
    found: Vec<String>,
    keys: KeyUse,
    sequences: u64,
    items: u64,
    snapshots: u64,
    notifications: u64,
    last_notification: u64,
    last_position: HashMap<Uuid, u64>,
}

impl<'a> Verifier<'a> {
    /// `with_key`: a key file was given (every payload must then be encrypted); `topics`: the
    /// known topics, when a topics file was given.
    pub(crate) fn new(
        payloads: &'a Payloads,
        with_key: bool,
        topics: Option<&'a HashSet<String>>,
    ) -> Self {
        Verifier {
            payloads,
            with_key,
            topics,
            found: Vec::new(),
            keys: KeyUse::default(),
            sequences: 0,
            items: 0,
            snapshots: 0,
            notifications: 0,
            last_notification: 0,
            last_position: HashMap::new(),
        }
    }

    /// A problem with one item (or row), named in `what`.
    pub(crate) fn report(&mut self, what: String) {
        self.found.push(what);
    }

    /// The readable items of one sequence, in version order, and the positions of its rows
    /// that could not be read (reported already; they are not missing versions).
    pub(crate) fn sequence(
        &mut self,
        id: Uuid,
        items: &[IntegerSequencedItem],
        unreadable: &[u64],
    ) {
        self.sequences += 1;
        let mut positions: Vec<u64> = items.iter().map(|i| i.position).collect();
        positions.extend(unreadable);
        positions.sort_unstable();
        for (expected, &position) in (1u64..).zip(&positions) {
            if position != expected {
                self.report(format!(
                    "sequence {id}: version {expected} is missing (next is {position})"
                ));
                break;
            }
        }
        for item in items {
            self.items += 1;
            let what = format!("sequence {id} version {} ({})", item.position, item.topic);
            self.item(item, &what);
        }
    }

    /// One snapshot: sealed like an event, so the same checks without the contiguity one.
    pub(crate) fn snapshot(&mut self, item: &IntegerSequencedItem) {
        self.snapshots += 1;
        let what = format!(
            "snapshot of sequence {} at version {} ({})",
            item.sequence_id, item.position, item.topic
        );
        self.item(item, &what);
    }

    /// One entry of the notification log, in log order.
    pub(crate) fn notification(&mut self, id: u64, sequence_id: Uuid, position: u64) {
        if id <= self.last_notification {
            self.report(format!(
                "notification {id} does not follow {}",
                self.last_notification
            ));
        }
        self.last_notification = id;
        let previous = self
            .last_position
            .insert(sequence_id, position)
            .unwrap_or(0);
        if position <= previous {
            self.report(format!(
                "notification {id}: sequence {sequence_id} version {position} after version {previous}"
            ));
        }
        self.notifications += 1;
    }

    fn item(&mut self, item: &IntegerSequencedItem, what: &str) {
        if let Some(topics) = self.topics
            && !topics.contains(&item.topic)
        {
            self.report(format!(
                "{what}: unknown topic {:?} (not in the topics file)",
                item.topic
            ));
        }
        let header = match PayloadHeader::parse(&item.payload) {
            Ok((header, _)) => header,
            Err(e) => return self.report(format!("{what}: {e}")),
        };
        // Checked here rather than left to the mapper: under a key, plaintext is a forgery or
        // data from before encryption was switched on.
        if self.with_key && header.key_id.is_none() {
            return self.report(format!("{what}: payload is not encrypted"));
        }
        match open_payload(self.payloads, item) {
            Ok((_, Body::Sealed(_))) => self.keys.sealed += 1,
            Ok(_) if header.key_id.is_some() => self.keys.opened += 1,
            Ok(_) => {}
            Err(e) if e.is_erased() => {
                *self.keys.erased.entry(item.sequence_id).or_default() += 1;
            }
            Err(e) if e.is_key() => {
                self.keys.refused += 1;
                self.keys.first_refusal.get_or_insert_with(|| e.to_string());
                self.report(format!("{what}: {e}"));
            }
            Err(e) => self.report(format!("{what}: {e}")),
        }
    }

    /// Prints every problem and a summary; returns how many problems there were, or an error
    /// (exit 2) when a key file opened none of the encrypted items.
    pub(crate) fn finish(self) -> Result<usize, CliError> {
        let keys = &self.keys;
        if self.with_key && keys.opened == 0 && keys.refused > 0 {
            return Err(CliError::WrongKeyFile {
                refused: keys.refused,
                first: keys
                    .first_refusal
                    .clone()
                    .unwrap_or_else(|| "decryption failed".into()),
            });
        }
        let problems = self.found.len();
        for what in &self.found {
            println!("problem: {what}");
        }
        for (id, items) in &keys.erased {
            println!("erased: sequence {id} ({items} items; its key was erased)");
        }
        let erased_items: u64 = keys.erased.values().sum();
        println!(
            "checked {} sequences, {} items, {} snapshots, {} notifications; {} sealed items {}{}",
            self.sequences,
            self.items,
            self.snapshots,
            self.notifications,
            keys.sealed,
            if self.with_key {
                ""
            } else {
                "not decrypted (no --key-file)"
            },
            if keys.erased.is_empty() {
                String::new()
            } else {
                format!(
                    "; {erased_items} items of {} erased aggregates",
                    keys.erased.len()
                )
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
}

/// Checks everything through the store's API; prints each problem; returns how many there
/// were. A row the store cannot read stops it (exit 2): SQLite stores go through
/// [`crate::raw::verify`] instead, which reports such rows one by one.
pub(crate) async fn verify<S: Inventory>(
    store: &S,
    mut verifier: Verifier<'_>,
) -> Result<usize, CliError> {
    let mut sequences = store.list_sequences(ItemKind::Integer).await?;
    sequences.sort();
    for (id, _) in &sequences {
        let items = store.select(*id, &Select::all()).await?;
        verifier.sequence(*id, &items, &[]);
    }
    let mut snapshotted = store.list_sequences(ItemKind::Snapshots).await?;
    snapshotted.sort();
    for (id, _) in &snapshotted {
        for item in store.select_snapshots(*id).await? {
            verifier.snapshot(&item);
        }
    }
    if store.capabilities().notifications == Support::Yes {
        let mut after = 0;
        loop {
            let page = store.select_notifications(after, 1000, &[]).await?;
            let Some(last) = page.last() else { break };
            for n in &page {
                verifier.notification(n.id, n.item.sequence_id, n.item.position);
            }
            after = last.id;
        }
    }
    verifier.finish()
}
