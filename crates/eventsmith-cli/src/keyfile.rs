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

/// Why a hex key did not decode, without quoting any of it.
fn hex_error(e: hex::FromHexError, len: usize) -> String {
    match e {
        hex::FromHexError::InvalidHexCharacter { index, .. } => {
            format!("the key is not 64 hex digits (a non-hex character at offset {index})")
        }
        hex::FromHexError::OddLength | hex::FromHexError::InvalidStringLength => {
            format!("the key is not 64 hex digits ({len} bytes long)")
        }
    }
}

/// Parses the text of a key file into its keys, in file order; `origin` names the file in
/// errors. Every error is one line naming the file and the line, and never quotes key material.
pub fn parse_keys(text: &str, origin: &str) -> Result<Vec<(String, Key)>, String> {
    let mut keys: Vec<(String, Key)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = |what: &str| format!("key file {origin} line {}: {what}", n + 1);
        let (id, hex) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| bad("expected `KEY_ID HEX` with 64 hex digits"))?;
        if id.len() > 255 {
            return Err(bad("the key id is longer than 255 bytes"));
        }
        if keys.iter().any(|(known, _)| known == id) {
            return Err(bad("the key id appears twice"));
        }
        let hex = hex.trim();
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(hex, &mut bytes[..]).map_err(|e| bad(&hex_error(e, hex.len())))?;
        keys.push((id.to_owned(), Key::from_bytes(*bytes)));
    }
    if keys.is_empty() {
        return Err(format!("key file {origin} holds no key"));
    }
    Ok(keys)
}

/// Parses the text of a key file into a keyring (see [`parse_keys`]).
pub fn parse(text: &str, origin: &str) -> Result<Keyring, String> {
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
pub fn read_keys(path: &Path) -> Result<Vec<(String, Key)>, String> {
    let bytes = Zeroizing::new(
        std::fs::read(path).map_err(|e| format!("cannot read key file {}: {e}", path.display()))?,
    );
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| format!("key file {} is not UTF-8 text ({e})", path.display()))?;
    parse_keys(text, &path.display().to_string())
}

/// Reads and parses a key file into a keyring; the text read is zeroed once parsed.
pub fn read(path: &Path) -> Result<Keyring, String> {
    Ok(keyring(read_keys(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        match parse_keys(text, "f") {
            Ok(_) => panic!("{text:?} was accepted"),
            Err(e) => e,
        }
    }

    #[test]
    fn errors_never_quote_the_key() {
        let err = error(&format!("k1 {}q\n", "ab".repeat(31)));
        assert!(err.starts_with("key file f line 1:"), "{err}");
        assert!(!err.contains("abab") && !err.contains('q'), "{err}");
        let err = error(&format!("k1 {}\n", "é".repeat(32)));
        assert!(!err.contains('é'), "{err}");
    }

    #[test]
    fn duplicate_ids_and_empty_files_are_errors() {
        let line = format!("k1 {}\n", "07".repeat(32));
        assert!(error(&line.repeat(2)).contains("twice"));
        assert!(error("# nothing\n").contains("no key"));
        assert_eq!(parse_keys(&line, "f").map(|k| k.len()).ok(), Some(1));
    }
}
