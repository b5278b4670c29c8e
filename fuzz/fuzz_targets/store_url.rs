//! The store URL parser: never panics, and what it accepts is one of the three kinds.
#![no_main]

use eventsmith_cli::url::StoreUrl;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(url) = text.parse::<StoreUrl>() {
            match url {
                StoreUrl::Memory => assert_eq!(text, "memory:"),
                StoreUrl::Sqlite(path) => assert!(!path.as_os_str().is_empty()),
                StoreUrl::Cassandra { address, keyspace } => assert!(address.contains(':') && !keyspace.is_empty()),
                StoreUrl::Postgres(url) => {
                    let _ = url.config();
                }
            }
        }
    }
});
