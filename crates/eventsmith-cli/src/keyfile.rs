//! Key files: one key per line, `KEY_ID HEX` (64 hex digits, 32 bytes); `#` starts a comment.
//! The first key is the current one, later ones are retired keys for old data.
//!
//! ```
//! let text = "# keys\nk2 0000000000000000000000000000000000000000000000000000000000000001\n";
//! assert!(eventsmith_cli::keyfile::parse(text, "keys.txt").is_ok());
//! assert!(eventsmith_cli::keyfile::parse("k2 ÿÿ", "keys.txt").is_err());
//! ```

use std::path::Path;

use eventsmith_cipher::{Key, Keyring};
use zeroize::Zeroizing;

/// Parses the text of a key file; `origin` names the file in errors. Every error is one line
/// naming the file and the line, and never quotes key material.
pub fn parse(text: &str, origin: &str) -> Result<Keyring, String> {
    let mut keyring: Option<Keyring> = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = |what: &str| format!("key file {origin} line {}: {what}", n + 1);
        let (id, hex) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| bad("expected `KEY_ID HEX` with 64 hex digits"))?;
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(hex.trim(), &mut bytes[..])
            .map_err(|e| bad(&format!("the key is not 64 hex digits ({e})")))?;
        let key = Key::from_bytes(*bytes);
        keyring = Some(match keyring {
            None => Keyring::new(id, key),
            Some(k) => k.with_retired(id, key),
        });
    }
    keyring.ok_or_else(|| format!("key file {origin} holds no key"))
}

/// Reads and parses a key file; the text read is zeroed once parsed.
pub fn read(path: &Path) -> Result<Keyring, String> {
    let bytes = Zeroizing::new(
        std::fs::read(path).map_err(|e| format!("cannot read key file {}: {e}", path.display()))?,
    );
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| format!("key file {} is not UTF-8 text ({e})", path.display()))?;
    parse(text, &path.display().to_string())
}
