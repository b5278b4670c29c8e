//! The conformance suite (and its model-based test) against a real PostgreSQL server
//! (`EVENTSMITH_POSTGRES`), each test on a fresh schema dropped after it.

mod common;

eventsmith_testkit::conformance_suite!(optional common::store());
