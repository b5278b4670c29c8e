//! The key-file parser: never panics on any text; what it accepts is one key per key line with
//! distinct ids taken from the text; what it refuses is one line naming the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match eventsmith_cli::keyfile::parse_keys(text, "fuzz") {
            Ok(keys) => {
                let lines = text
                    .lines()
                    .filter(|l| !l.split('#').next().unwrap_or("").trim().is_empty())
                    .count();
                assert_eq!(keys.len(), lines);
                for (i, (id, _)) in keys.iter().enumerate() {
                    assert!(!id.is_empty() && id.len() <= 255 && text.contains(id.as_str()));
                    assert!(keys[..i].iter().all(|(other, _)| other != id));
                }
                drop(eventsmith_cli::keyfile::keyring(keys));
            }
            // Errors are one line (no key material is quoted: see the unit tests).
            Err(e) => {
                let e = e.to_string();
                assert!(!e.contains('\n') && e.starts_with("key file fuzz"));
            }
        }
    }
});
