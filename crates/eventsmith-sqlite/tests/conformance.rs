//! The conformance suite against a SQLite file and an in-memory SQLite database.

mod file {
    eventsmith_testkit::conformance_suite!(async {
        let dir = tempfile::tempdir().unwrap();
        let store = eventsmith_sqlite::SqliteStore::open(dir.path().join("events.db"))
            .await
            .unwrap();
        (store, dir)
    });
}

mod memory {
    eventsmith_testkit::conformance_suite!(async {
        (eventsmith_sqlite::SqliteStore::memory().await.unwrap(), ())
    });
}
