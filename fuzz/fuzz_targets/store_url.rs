//! The store URL parsers (the CLI's choice of backend, then each backend's own): never panic,
//! what they accept is usable, and what they refuse is a configuration error.
#![no_main]

use eventsmith_cli::url::StoreUrl;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match text.parse::<StoreUrl>() {
            Ok(StoreUrl::Memory) => assert_eq!(text, "memory:"),
            Ok(StoreUrl::Sqlite(sqlite)) => assert!(!sqlite.path.as_os_str().is_empty()),
            Ok(StoreUrl::Cassandra(config)) => {
                assert!(!config.nodes().is_empty() && !config.keyspace().is_empty());
                assert!(config.nodes().iter().all(|node| node.contains(':')));
            }
            Ok(StoreUrl::Postgres(url)) => {
                let _ = url.config();
            }
            Err(e) => assert_eq!(e.kind(), eventsmith_core::ErrorKind::Config, "{e}"),
        }
    }
});
