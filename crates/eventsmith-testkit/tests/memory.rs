//! The conformance suite against the in-memory reference store: followed through its log, and
//! through a feed of 8 slices (the reference for Cassandra's idempotent delivery).

eventsmith_testkit::conformance_suite!(async { (eventsmith_core::MemoryStore::new(), ()) });

mod with_feed {
    eventsmith_testkit::conformance_suite!(async {
        (eventsmith_core::MemoryStore::with_feed(8), ())
    });
}
