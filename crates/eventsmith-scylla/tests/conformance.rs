//! The conformance suite against a real Cassandra node (`EVENTSMITH_CASSANDRA`).

mod common;

eventsmith_testkit::conformance_suite!(optional common::store());
