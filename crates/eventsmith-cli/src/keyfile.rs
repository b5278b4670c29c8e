//! Key files: one key per line, `KEY_ID HEX` (64 hex digits, 32 bytes); `#` starts a comment.
//! The first key is the current one, later ones are retired keys for old data. With a
//! per-aggregate key store (crypto-shredding, `--key-store DIR`), the same lines are the master
//! keys that unwrap the aggregates' data keys.
//!
//! ```
//! let text = "# keys\nk2 0000000000000000000000000000000000000000000000000000000000000001\n";
//! assert!(eventsmith_cli::keyfile::parse(text, "keys.txt").is_ok());
//! assert!(eventsmith_cli::keyfile::parse("k2 ÿÿ", "keys.txt").is_err());
//! ```

use std::path::Path;

use eventsmith_cipher::{Key, Keyring};
use zeroize::Zeroizing;

/// Why a key file was refused: the file, the line (for a bad line) and what is wrong. Its
/// text never quotes key material.
#[derive(Debug, thiserror::Error)]
#[error("key file {origin}{}: {problem}", line.map(|n| format!(" line {n}")).unwrap_or_default())]
pub struct KeyFileError {
    /// The file, as given.
    pub origin: String,
    /// The line, counting from 1, when a line is wrong.
    pub line: Option<usize>,
    /// What is wrong.
    #[source]
    pub problem: KeyFileProblem,
}

/// What is wrong with a key file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileProblem {
    /// The file could not be read.
    #[error("cannot read it: {0}")]
    Read(#[source] std::io::Error),
    /// The file is not UTF-8 text.
    #[error("it is not UTF-8 text ({0})")]
    NotUtf8(#[source] std::str::Utf8Error),
    /// A line is not `KEY_ID HEX`.
    #[error("expected `KEY_ID HEX` with 64 hex digits")]
    Syntax,
    /// A key id is longer than 255 bytes.
    #[error("the key id is longer than 255 bytes")]
    KeyIdTooLong,
    /// A key id appears on two lines.
    #[error("the key id appears twice")]
    DuplicateKeyId,
    /// The key has a non-hex character (its offset, never the character).
    #[error("the key is not 64 hex digits (a non-hex character at offset {offset})")]
    NotHex {
        /// The offset of the first non-hex character in the key.
        offset: usize,
    },
    /// The key is not 64 hex digits long.
    #[error("the key is not 64 hex digits ({len} bytes long)")]
    WrongLength {
        /// The key's length in bytes.
        len: usize,
    },
    /// The file holds no key.
    #[error("it holds no key")]
    Empty,
}

/// Parses the text of a key file into its keys, in file order; `origin` names the file in
/// errors. Every error names the file and the line, and never quotes key material.
pub fn parse_keys(text: &str, origin: &str) -> Result<Vec<(String, Key)>, KeyFileError> {
    let mut keys: Vec<(String, Key)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = |problem| KeyFileError {
            origin: origin.to_owned(),
            line: Some(n + 1),
            problem,
        };
        let (id, hex) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| bad(KeyFileProblem::Syntax))?;
        if id.len() > 255 {
            return Err(bad(KeyFileProblem::KeyIdTooLong));
        }
        if keys.iter().any(|(known, _)| known == id) {
            return Err(bad(KeyFileProblem::DuplicateKeyId));
        }
        let hex = hex.trim();
        let mut bytes = Zeroizing::new([0u8; 32]);
        // hex's own error would quote the offending character: only its offset is kept.
        hex::decode_to_slice(hex, &mut bytes[..]).map_err(|e| {
            bad(match e {
                hex::FromHexError::InvalidHexCharacter { index, .. } => {
                    KeyFileProblem::NotHex { offset: index }
                }
                hex::FromHexError::OddLength | hex::FromHexError::InvalidStringLength => {
                    KeyFileProblem::WrongLength { len: hex.len() }
                }
            })
        })?;
        keys.push((id.to_owned(), Key::from_bytes(*bytes)));
    }
    if keys.is_empty() {
        return Err(KeyFileError {
            origin: origin.to_owned(),
            line: None,
            problem: KeyFileProblem::Empty,
        });
    }
    Ok(keys)
}

/// Parses the text of a key file into a keyring (see [`parse_keys`]).
pub fn parse(text: &str, origin: &str) -> Result<Keyring, KeyFileError> {
    Ok(keyring(parse_keys(text, origin)?))
}

/// A keyring whose current key is the first of `keys`, the others retired.
pub fn keyring(keys: Vec<(String, Key)>) -> Keyring {
    let mut keys = keys.into_iter();
    let (id, key) = keys.next().expect("parse_keys returns at least one key");
    keys.fold(Keyring::new(id, key), |ring, (id, key)| {
        ring.with_retired(id, key)
    })
}

/// Reads a key file and parses its keys; the text read is zeroed once parsed.
pub fn read_keys(path: &Path) -> Result<Vec<(String, Key)>, KeyFileError> {
    let origin = path.display().to_string();
    let whole = |problem| KeyFileError {
        origin: origin.clone(),
        line: None,
        problem,
    };
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| whole(KeyFileProblem::Read(e)))?);
    let text = std::str::from_utf8(&bytes).map_err(|e| whole(KeyFileProblem::NotUtf8(e)))?;
    parse_keys(text, &origin)
}

/// Reads and parses a key file into a keyring; the text read is zeroed once parsed.
pub fn read(path: &Path) -> Result<Keyring, KeyFileError> {
    Ok(keyring(read_keys(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> KeyFileError {
        match parse_keys(text, "f") {
            Ok(_) => panic!("{text:?} was accepted"),
            Err(e) => e,
        }
    }

    #[test]
    fn errors_never_quote_the_key() {
        let err = error(&format!("k1 {}q0\n", "ab".repeat(31)));
        assert!(
            matches!(err.problem, KeyFileProblem::NotHex { offset: 62 }),
            "{err:?}"
        );
        assert_eq!(err.line, Some(1));
        let text = err.to_string();
        assert!(text.starts_with("key file f line 1:"), "{text}");
        assert!(!text.contains("abab") && !text.contains('q'), "{text}");
        let err = error(&format!("k1 {}\n", "é".repeat(32)));
        assert!(!err.to_string().contains('é'), "{err}");
        assert!(matches!(
            error("k1 abcd\n").problem,
            KeyFileProblem::WrongLength { len: 4 }
        ));
        assert!(matches!(error("k1\n").problem, KeyFileProblem::Syntax));
    }

    #[test]
    fn duplicate_ids_and_empty_files_are_errors() {
        let line = format!("k1 {}\n", "07".repeat(32));
        let twice = error(&line.repeat(2));
        assert!(matches!(twice.problem, KeyFileProblem::DuplicateKeyId));
        assert_eq!(twice.line, Some(2));
        let empty = error("# nothing\n");
        assert!(matches!(empty.problem, KeyFileProblem::Empty));
        assert_eq!(empty.line, None);
        assert_eq!(empty.to_string(), "key file f: it holds no key");
        assert_eq!(parse_keys(&line, "f").map(|k| k.len()).ok(), Some(1));
    }

    /// A file that cannot be read keeps the I/O error as its source.
    #[test]
    fn unreadable_files_keep_the_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let Err(err) = read_keys(&dir.path().join("missing.keys")) else {
            panic!("a missing file was read")
        };
        let KeyFileProblem::Read(io) = &err.problem else {
            panic!("{err:?}")
        };
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
        let source = std::error::Error::source(&err).expect("the problem");
        assert!(source.source().is_some_and(|s| s.is::<std::io::Error>()));
        std::fs::write(dir.path().join("latin1.keys"), [0xe9, b'\n']).unwrap();
        let Err(err) = read_keys(&dir.path().join("latin1.keys")) else {
            panic!("a Latin-1 file was read")
        };
        assert!(matches!(err.problem, KeyFileProblem::NotUtf8(_)), "{err:?}");
    }
}
