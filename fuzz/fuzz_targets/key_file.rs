//! The key-file parser: never panics on any text, and what it accepts holds a key.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match eventsmith_cli::keyfile::parse(text, "fuzz") {
            // A keyring always has a current key id, taken from the text.
            Ok(keyring) => drop(keyring),
            // Errors are one line and never quote key material.
            Err(e) => assert!(!e.contains('\n') && e.starts_with("key file fuzz")),
        }
    }
});
