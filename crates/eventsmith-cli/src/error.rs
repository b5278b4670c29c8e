//! Why a command failed: one enum for the command line, each variant saying what and where,
//! with the library's typed error kept as the source (printed as one line by `main`).

use std::path::PathBuf;

use eventsmith_cli::keyfile::KeyFileError;
use eventsmith_core::{AppendError, CipherError, StoreError};
use uuid::Uuid;

use crate::inspect::OpenError;

/// Why a command failed (exit status 2).
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// A store URL that does not parse.
    #[error("bad store URL: {0}")]
    Url(#[source] StoreError),
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An append to the destination failed.
    #[error(transparent)]
    Append(#[from] AppendError),
    /// A key file was refused.
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// A SQLite file named by a `sqlite:` URL does not exist (only `copy` creates one).
    #[error("no SQLite file at {}", .0.display())]
    NoSqliteFile(PathBuf),
    /// The `--key-store` directory does not exist.
    #[error("no key store directory at {}", .0.display())]
    NoKeyStore(PathBuf),
    /// The key store could not be opened.
    #[error("key store {}: {source}", path.display())]
    KeyStore {
        /// The directory.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: CipherError,
    },
    /// The topics file could not be read.
    #[error("cannot read topics file {}: {source}", path.display())]
    TopicsFile {
        /// The file.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The topics file lists no topic.
    #[error("topics file {} lists no topic", .0.display())]
    NoTopics(PathBuf),
    /// `show` of a sequence without items.
    #[error("sequence {0} has no items")]
    EmptySequence(Uuid),
    /// Under a key, an item that does not open: the key's fault or tampering.
    #[error("cannot decode {sequence_id} version {version}: {source} (wrong key?)")]
    Undecodable {
        /// The item's sequence.
        sequence_id: Uuid,
        /// The item's version.
        version: u64,
        /// Why it does not open.
        #[source]
        source: OpenError,
    },
    /// `verify` with a key file that opened none of the encrypted items.
    #[error(
        "the key file opens none of the {refused} encrypted items ({first}): a wrong key file?"
    )]
    WrongKeyFile {
        /// How many encrypted items it could not open.
        refused: u64,
        /// The first refusal, as reported.
        first: String,
    },
    /// `copy` found another item where it would write one.
    #[error(
        "the destination holds a different item at sequence {sequence_id} version {version}: refusing to overwrite"
    )]
    DifferentItem {
        /// The sequence.
        sequence_id: Uuid,
        /// The version.
        version: u64,
    },
    /// `copy` found another log item where it would write one.
    #[error("the destination holds a different log item in {0}")]
    DifferentLogItem(Uuid),
    /// `verify`'s own reads of a SQLite file failed.
    #[error("{}: {source}", path.display())]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use eventsmith_core::ErrorKind;

    use super::*;

    /// What the command line reports keeps the library's typed error under it.
    #[test]
    fn failures_keep_their_typed_source() {
        let url = crate::parse("cassandra://h:9042/bad-name").unwrap_err();
        let CliError::Url(config) = &url else {
            panic!("{url:?}")
        };
        assert_eq!(config.kind(), ErrorKind::Config);
        assert!(url.to_string().starts_with("bad store URL: "), "{url}");
        assert!(
            url.source()
                .and_then(|s| s.downcast_ref::<StoreError>())
                .is_some_and(|s| s.kind() == ErrorKind::Config)
        );

        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("topics.txt");
        let topics = crate::topics(&missing).unwrap_err();
        assert!(matches!(&topics, CliError::TopicsFile { path, .. } if *path == missing));
        assert!(
            topics
                .source()
                .and_then(|s| s.downcast_ref::<std::io::Error>())
                .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        );
        std::fs::write(&missing, "# none\n").unwrap();
        assert!(matches!(
            crate::topics(&missing),
            Err(CliError::NoTopics(_))
        ));

        let keys = dir.path().join("keys.txt");
        std::fs::write(&keys, "k1 00\n").unwrap();
        let Err(refused) = crate::payloads(Some(&keys), None, eventsmith_mapper::Encrypt::All)
        else {
            panic!("a bad key file was accepted")
        };
        assert!(
            matches!(&refused, CliError::KeyFile(e) if e.line == Some(1)),
            "{refused:?}"
        );
    }
}
