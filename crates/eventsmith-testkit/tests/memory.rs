//! The conformance suite against the in-memory reference store.

eventsmith_testkit::conformance_suite!(async { (eventsmith_core::MemoryStore::new(), ()) });
