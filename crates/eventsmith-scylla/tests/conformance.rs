//! The conformance suite against a real Cassandra node (`EVENTSMITH_CASSANDRA`): on a
//! keyspace without a feed (whose store must say so, and fail to read one), and on one with a
//! feed (which must deliver every committed append).

mod common;

eventsmith_testkit::conformance_suite!(optional common::store());

/// The same suite on a keyspace with a feed: every append writes its intent first.
mod with_feed {
    use super::common;

    eventsmith_testkit::conformance_suite!(
        optional async {
            common::feed_store(common::feed_settings())
                .await
                .map(|store| (store, ()))
        }
    );
}
