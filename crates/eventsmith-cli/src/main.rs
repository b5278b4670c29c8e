//! `eventsmith`: inspect, verify and copy event stores.
//!
//! ```text
//! eventsmith stats URL
//! eventsmith list URL
//! eventsmith show URL SEQUENCE_ID [--json] [--key-file F [--key-store DIR]]
//! eventsmith verify URL [--key-file F [--key-store DIR]] [--topics F]
//! eventsmith copy FROM_URL TO_URL
//! ```
//!
//! URLs, each parsed by its backend's crate (percent-escapes decoded):
//! `sqlite:///path/to/file.db` or `sqlite://relative.db` (`SqliteUrl`'s parameters:
//! `synchronous`, `busy_timeout_ms`, `read_connections`, `max_group`, `max_page_count`),
//! `memory:`, `cassandra://host:port[,host:port...]/keyspace` (`CassandraConfig`'s parameters:
//! `replication_factor`, `consistency`, `connect_timeout_ms`, ...),
//! `postgres://user:password@host:port/database?schema=NAME` (the tables live in that
//! PostgreSQL schema; without `schema`, in the first schema of the server's `search_path`).
//! Exit codes: 0 fine, 1 `verify` found problems (one line per item), 2 the command could not
//! run (a bad URL, an unreachable server, a bad key file, a wrong key — for `verify`, a key file
//! that opens none of the encrypted items —, a schema from a newer version): one line on stderr
//! says why. With `--key-file`, `verify` reports plaintext events and snapshots as problems.
//!
//! A key file holds one key per line, `KEY_ID HEX` (64 hex digits); `#` starts a comment.
//!
//! Crypto-shredded stores (`PerAggregateKeys`) keep each aggregate's data key, wrapped by a
//! master key, in a key store directory (`FileKeyStore`, outside the event store): pass it as
//! `--key-store DIR`, with the master keys in `--key-file`. Aggregates whose key was erased are
//! shown and reported as erased, not as failures.
//!
//! `verify --topics F` checks every event's and snapshot's topic against a file of known topics,
//! one per line (`#` starts a comment line).

mod copy;
mod error;
mod inspect;
mod raw;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use eventsmith_cipher::{
    AGGREGATE_KEY_ID, AesGcmCipher, FileKeyStore, Key, KeyProvider, Keyring, PerAggregateKeys, Zstd,
};
use eventsmith_core::{CipherError, MemoryStore};
use eventsmith_mapper::{CodecId, Encrypt, Payloads};
use eventsmith_postgres::PostgresStore;
use eventsmith_scylla::{CassandraConfig, CassandraStore};
use eventsmith_sqlite::{SqliteStore, SqliteUrl};
use uuid::Uuid;

use error::CliError;
use eventsmith_cli::url::StoreUrl;

#[derive(Parser, Debug)]
#[command(
    name = "eventsmith",
    version,
    about = "Inspect, verify and copy eventsmith event stores",
    after_help = "URLs: sqlite:///path/to/file.db, sqlite://relative.db, memory:, \
                  cassandra://host:port[,host:port...]/keyspace, \
                  postgres://user@host:port/database?schema=NAME"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Sequences, events, notification range and size of a store.
    Stats {
        /// The store.
        url: String,
    },
    /// Every aggregate with its last version.
    List {
        /// The store.
        url: String,
    },
    /// The items of one sequence, decoded as far as the headers and the key allow.
    Show {
        /// The store.
        url: String,
        /// The sequence (aggregate id).
        sequence_id: Uuid,
        /// One JSON object per item.
        #[arg(long)]
        json: bool,
        /// Keys to decrypt with (`KEY_ID HEX` lines).
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// The per-aggregate key directory of a crypto-shredded store (`FileKeyStore`); the
        /// key file then holds the master keys. Erased aggregates are shown as erased.
        #[arg(long, requires = "key_file")]
        key_store: Option<PathBuf>,
    },
    /// Checks every event and snapshot: SQL types (SQLite), headers, decryption, topics,
    /// version contiguity, notification order. Reports each problem naming the item and goes
    /// on; exit 1 if it found any. Exit 2 if the key file opens none of the encrypted items.
    Verify {
        /// The store.
        url: String,
        /// Keys to check decryption with (`KEY_ID HEX` lines); every payload must then be
        /// encrypted: plaintext is reported as "not encrypted".
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// The per-aggregate key directory of a crypto-shredded store (`FileKeyStore`); the
        /// key file then holds the master keys. Erased aggregates are reported as erased, not
        /// as problems.
        #[arg(long, requires = "key_file")]
        key_store: Option<PathBuf>,
        /// A file of known topics, one per line: an event or snapshot of any other topic is a
        /// problem.
        #[arg(long)]
        topics: Option<PathBuf>,
    },
    /// Copies every item, preserving notification order; re-run to resume.
    Copy {
        /// The source.
        from: String,
        /// The destination (created if needed).
        to: String,
    },
}

/// A store chosen at run time.
pub(crate) enum AnyStore {
    Memory(MemoryStore),
    Sqlite(SqliteStore),
    Cassandra(CassandraStore),
    Postgres(PostgresStore),
}

/// Runs `$body` with `$s` bound to the concrete store.
macro_rules! with_store {
    ($store:expr, $s:ident => $body:expr) => {
        match $store {
            $crate::AnyStore::Memory($s) => $body,
            $crate::AnyStore::Sqlite($s) => $body,
            $crate::AnyStore::Cassandra($s) => $body,
            $crate::AnyStore::Postgres($s) => $body,
        }
    };
}

/// Opens a store; `create` makes a Cassandra schema that is missing (copy destinations). A
/// PostgreSQL store creates its tables on connect, when they are missing.
async fn open(url: &StoreUrl, create: bool) -> Result<AnyStore, CliError> {
    match url {
        StoreUrl::Memory => Ok(AnyStore::Memory(MemoryStore::new())),
        StoreUrl::Sqlite(SqliteUrl { path, config }) => {
            if !create && !path.exists() {
                return Err(CliError::NoSqliteFile(path.clone()));
            }
            SqliteStore::open_with(path, config.clone())
                .await
                .map(AnyStore::Sqlite)
                .map_err(CliError::from)
        }
        StoreUrl::Cassandra(config) => {
            let mut config = (**config).clone();
            // A command line waits 5 s, not the library's 10, unless the URL says otherwise.
            let default = CassandraConfig::new(config.nodes().to_vec(), config.keyspace())?;
            if config.connect_timeout == default.connect_timeout {
                config.connect_timeout = std::time::Duration::from_secs(5);
            }
            if create {
                CassandraStore::create_schema(&config)
                    .await
                    .map_err(CliError::from)?;
            }
            CassandraStore::connect(config)
                .await
                .map(AnyStore::Cassandra)
                .map_err(CliError::from)
        }
        StoreUrl::Postgres(url) => {
            let mut config = url.config();
            // A command line waits seconds, not the library's half minute, for a connection.
            config.acquire_timeout = std::time::Duration::from_secs(10);
            PostgresStore::connect(config)
                .await
                .map(AnyStore::Postgres)
                .map_err(CliError::from)
        }
    }
}

/// The keys of a key file and, for a crypto-shredded store, the per-aggregate keys they unwrap.
struct CliKeys {
    keyring: Keyring,
    per_aggregate: Option<PerAggregateKeys<FileKeyStore>>,
}

impl std::fmt::Debug for CliKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CliKeys")
            .field("keyring", &self.keyring)
            .field("per_aggregate", &self.per_aggregate.is_some())
            .finish()
    }
}

impl KeyProvider for CliKeys {
    fn current_key_id(&self, sequence_id: Uuid) -> Result<String, CipherError> {
        self.keyring.current_key_id(sequence_id)
    }

    fn key(&self, sequence_id: Uuid, key_id: &str) -> Result<Arc<Key>, CipherError> {
        match (&self.per_aggregate, key_id == AGGREGATE_KEY_ID) {
            (Some(keys), true) => keys.key(sequence_id, key_id),
            (None, true) => Err(CipherError::KeyStore(
                "the payload is under a per-aggregate key: pass --key-store DIR".into(),
            )),
            (_, false) => self.keyring.key(sequence_id, key_id),
        }
    }
}

/// Reads a key file (and a per-aggregate key directory) into payload settings that decrypt and
/// decompress anything; with a key, `require` says which plaintext payloads are refused
/// (`verify` refuses all).
fn payloads(
    key_file: Option<&PathBuf>,
    key_store: Option<&PathBuf>,
    require: Encrypt,
) -> Result<Payloads, CliError> {
    let payloads = Payloads::new(CodecId::Json).with_compressor(Arc::new(Zstd::new()));
    let Some(path) = key_file else {
        return Ok(payloads);
    };
    let keys = eventsmith_cli::keyfile::read_keys(path)?;
    let per_aggregate = match key_store {
        None => None,
        Some(dir) => {
            // `FileKeyStore::open` would create a missing directory: a typo must not look
            // like a store whose every key is unknown.
            if !dir.is_dir() {
                return Err(CliError::NoKeyStore(dir.clone()));
            }
            let store = FileKeyStore::open(dir).map_err(|source| CliError::KeyStore {
                path: dir.clone(),
                source,
            })?;
            let mut masters = keys.iter().cloned();
            let (id, key) = masters.next().expect("a key file holds at least one key");
            Some(
                masters.fold(PerAggregateKeys::new(id, key, store), |keys, (id, key)| {
                    keys.with_retired_master(id, key)
                }),
            )
        }
    };
    let keys = CliKeys {
        keyring: eventsmith_cli::keyfile::keyring(keys),
        per_aggregate,
    };
    Ok(payloads.with_cipher(Arc::new(AesGcmCipher::new(keys)), require))
}

/// Reads a topics file: one topic per line; blank lines and lines starting with `#` skipped.
fn topics(path: &Path) -> Result<HashSet<String>, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::TopicsFile {
        path: path.to_owned(),
        source,
    })?;
    let topics: HashSet<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    if topics.is_empty() {
        return Err(CliError::NoTopics(path.to_owned()));
    }
    Ok(topics)
}

fn parse(url: &str) -> Result<StoreUrl, CliError> {
    url.parse().map_err(CliError::Url)
}

async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Stats { url } => {
            let url = parse(&url)?;
            let store = open(&url, false).await?;
            with_store!(&store, s => inspect::stats(s, &url).await)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::List { url } => {
            let url = parse(&url)?;
            let store = open(&url, false).await?;
            with_store!(&store, s => inspect::list(s).await)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Show {
            url,
            sequence_id,
            json,
            key_file,
            key_store,
        } => {
            let url = parse(&url)?;
            let payloads = payloads(key_file.as_ref(), key_store.as_ref(), Encrypt::None)?;
            let store = open(&url, false).await?;
            with_store!(&store, s => inspect::show(s, sequence_id, json, &payloads, key_file.is_some()).await)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify {
            url,
            key_file,
            key_store,
            topics: topics_file,
        } => {
            let url = parse(&url)?;
            // With a key file every payload must be encrypted: plaintext is reported.
            let payloads = payloads(key_file.as_ref(), key_store.as_ref(), Encrypt::All)?;
            let topics = topics_file.as_deref().map(topics).transpose()?;
            let verifier = inspect::Verifier::new(&payloads, key_file.is_some(), topics.as_ref());
            // Opening checks the file's schema (and refuses newer ones) before anything else.
            let store = open(&url, false).await?;
            let problems = match (&url, &store) {
                // SQLite rows are read as SQL values, so a row of the wrong type is one problem.
                // Its reads block: off the async worker threads, like the store's own.
                (StoreUrl::Sqlite(sqlite), AnyStore::Sqlite(_)) => {
                    tokio::task::block_in_place(|| raw::verify(&sqlite.path, verifier))?
                }
                _ => with_store!(&store, s => inspect::verify(s, verifier).await)?,
            };
            Ok(if problems == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Copy { from, to } => {
            let (from, to) = (parse(&from)?, parse(&to)?);
            let source = open(&from, false).await?;
            let destination = open(&to, true).await?;
            with_store!(&source, s => with_store!(&destination, d => copy::copy(s, d).await))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("eventsmith: error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            // One line: what went wrong and where (the sources' words are in it already).
            let message = error.to_string();
            eprintln!("eventsmith: error: {}", message.replace('\n', " "));
            ExitCode::from(2)
        }
    }
}
