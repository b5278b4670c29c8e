//! `eventsmith`: inspect, verify and copy event stores.
//!
//! ```text
//! eventsmith stats URL
//! eventsmith list URL
//! eventsmith show URL SEQUENCE_ID [--json] [--key-file F]
//! eventsmith verify URL [--key-file F]
//! eventsmith copy FROM_URL TO_URL
//! ```
//!
//! URLs: `sqlite:///path/to/file.db`, `memory:`, `cassandra://host:port/keyspace`.
//! Exit codes: 0 fine, 1 `verify` found problems (one line per item), 2 the command could not
//! run (a bad URL, an unreachable server, a bad key file, a wrong key — for `verify`, a key file
//! that opens none of the encrypted items —, a schema from a newer version): one line on stderr
//! says why. With `--key-file`, `verify` reports plaintext events and snapshots as problems.
//!
//! A key file holds one key per line, `KEY_ID HEX` (64 hex digits); `#` starts a comment.

mod copy;
mod inspect;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use eventsmith_cipher::{AesGcmCipher, Zstd};
use eventsmith_core::{MemoryStore, StoreError};
use eventsmith_mapper::{CodecId, Encrypt, Payloads};
use eventsmith_scylla::{CassandraConfig, CassandraStore};
use eventsmith_sqlite::SqliteStore;
use uuid::Uuid;

use eventsmith_cli::url::StoreUrl;

#[derive(Parser, Debug)]
#[command(
    name = "eventsmith",
    version,
    about = "Inspect, verify and copy eventsmith event stores"
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
        /// Keys to decrypt with.
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// Checks every item: headers, decryption, version contiguity, notification order.
    Verify {
        /// The store.
        url: String,
        /// Keys to check decryption with.
        #[arg(long)]
        key_file: Option<PathBuf>,
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
}

/// Runs `$body` with `$s` bound to the concrete store.
macro_rules! with_store {
    ($store:expr, $s:ident => $body:expr) => {
        match $store {
            $crate::AnyStore::Memory($s) => $body,
            $crate::AnyStore::Sqlite($s) => $body,
            $crate::AnyStore::Cassandra($s) => $body,
        }
    };
}

/// Opens a store; `create` makes a Cassandra schema that is missing (copy destinations).
async fn open(url: &StoreUrl, create: bool) -> Result<AnyStore, String> {
    match url {
        StoreUrl::Memory => Ok(AnyStore::Memory(MemoryStore::new())),
        StoreUrl::Sqlite(path) => {
            if !create && !path.exists() {
                return Err(format!("no SQLite file at {}", path.display()));
            }
            SqliteStore::open(path)
                .await
                .map(AnyStore::Sqlite)
                .map_err(|e| e.to_string())
        }
        StoreUrl::Cassandra { address, keyspace } => {
            let mut config =
                CassandraConfig::new([address.as_str()], keyspace).map_err(|e| e.to_string())?;
            config.connect_timeout = std::time::Duration::from_secs(5);
            if create {
                CassandraStore::create_schema(&config)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            CassandraStore::connect(config)
                .await
                .map(AnyStore::Cassandra)
                .map_err(|e| e.to_string())
        }
    }
}

/// Reads a key file into payload settings that decrypt and decompress anything; with a key,
/// `require` says which plaintext payloads are refused (`verify` refuses all).
fn payloads(key_file: Option<&PathBuf>, require: Encrypt) -> Result<Payloads, String> {
    let payloads = Payloads::new(CodecId::Json).with_compressor(Arc::new(Zstd::new()));
    let Some(path) = key_file else {
        return Ok(payloads);
    };
    let keyring = eventsmith_cli::keyfile::read(path)?;
    Ok(payloads.with_cipher(Arc::new(AesGcmCipher::new(keyring)), require))
}

/// `StoreError`s as one line.
pub(crate) fn store_error(e: StoreError) -> String {
    e.to_string()
}

fn parse(url: &str) -> Result<StoreUrl, String> {
    url.parse()
}

async fn run(cli: Cli) -> Result<ExitCode, String> {
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
        } => {
            let url = parse(&url)?;
            let payloads = payloads(key_file.as_ref(), Encrypt::None)?;
            let store = open(&url, false).await?;
            with_store!(&store, s => inspect::show(s, sequence_id, json, &payloads, key_file.is_some()).await)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { url, key_file } => {
            let url = parse(&url)?;
            // With a key file every payload must be encrypted: plaintext is reported.
            let payloads = payloads(key_file.as_ref(), Encrypt::All)?;
            let store = open(&url, false).await?;
            let problems =
                with_store!(&store, s => inspect::verify(s, &payloads, key_file.is_some()).await)?;
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
        Err(message) => {
            // One line: what went wrong and where.
            eprintln!("eventsmith: error: {}", message.replace('\n', " "));
            ExitCode::from(2)
        }
    }
}
