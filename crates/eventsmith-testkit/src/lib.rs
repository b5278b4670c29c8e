//! The conformance suite every eventsmith backend runs.
//!
//! [`cases`] holds one `pub async fn` per behaviour, generic over [`ItemStore`]. The
//! [`conformance_suite!`] macro expands to one `#[tokio::test]` per case, so each failure is
//! reported on its own:
//!
//! ```no_run
//! eventsmith_testkit::conformance_suite!(async { (eventsmith_core::MemoryStore::new(), ()) });
//! ```
//!
//! The expression is an async block yielding the store under test and a guard that lives as
//! long as the test (a temporary directory, say). It is evaluated once per test.
//!
//! For a store that needs a server, `conformance_suite!(optional EXPR)` takes an async block
//! yielding `Option<(store, guard)>`; `None` means the server is not configured, and the
//! fixture must print why the tests were skipped (and fail instead where skipping is not
//! allowed, as in CI).
//!
//! Cases are written to pass on a store shared with other tests running at the same time:
//! they use fresh sequence ids and read the notification log relative to where it stood.
//! A store that lacks an optional capability declares it in [`Capabilities`]; the cases of
//! that capability then check that it fails with [`StoreError::Unsupported`] and print the
//! reason, instead of silently passing.
//!
//! Every case is a test body: dropping its future stops the case part-way, leaving what it
//! wrote so far in the store (fresh sequence ids keep that from disturbing other cases).
//!
//! A feed ([`Capabilities::feed`]) is read through [`ItemStore::read_feed_page`]; the cases of
//! [`feed`] check it on a store that claims one, and followers on it on a store whose
//! delivery is [`Delivery::Idempotent`](eventsmith_core::Delivery::Idempotent).

pub mod application;
pub mod cases;
pub mod clock;
pub mod encryption;
pub mod feed;
pub mod follow;
pub mod idempotency;
pub mod model;
pub mod traces;

pub use eventsmith_core::{Capabilities, ItemStore, StoreError};

/// Polls `done` every 5 ms for up to 4 s (less than SQLite's default busy timeout, during
/// which a writer waits for a lock a test holds); whether it came true.
pub async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(4);
    while !done() {
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    true
}

/// Expands to one `#[tokio::test]` per conformance case. See the crate docs.
#[macro_export]
macro_rules! conformance_suite {
    (optional $fixture:expr) => {
        $crate::conformance_suite!(@list optional $fixture);
    };
    ($fixture:expr) => {
        $crate::conformance_suite!(@list required $fixture);
    };
    (@list $mode:ident $fixture:expr) => {
        $crate::conformance_suite!(@cases $mode $fixture;
            empty_sequence,
            positions_are_per_sequence,
            fields_round_trip,
            duplicate_position_conflicts,
            conflicting_batch_stores_nothing,
            duplicate_within_batch_conflicts,
            empty_batch_is_noop,
            select_every_bound_combination,
            limit_and_order,
            latest_item,
            notification_ids_increase_and_are_contiguous,
            notification_paging,
            concurrent_batches_do_not_interleave,
            topic_filters,
            failed_append_adds_no_notification,
            racing_writers_one_winner_per_position,
            timestamped_select_in_order,
            timestamped_collision_conflicts,
            snapshots_latest_at_or_before,
            snapshot_rewrite_replaces,
            model_based_random_operations,
            versions_beyond_the_limit_are_invalid,
            forged_plaintext_is_refused,
            idempotency_key_replays_the_first_append,
            failed_keyed_append_stores_no_key,
            racing_keyed_appends_apply_once,
            dropped_keyed_appends_apply_once_on_retry,
            first_command_creates_with_many_events,
            idempotent_commands_apply_once,
            metadata_round_trips,
            contended_commands_all_complete,
            cached_commands_never_commit_on_a_stale_state,
            commands_take_and_use_snapshots,
            follower_never_skips,
            follower_resumes_exactly,
            two_runners_never_apply_a_page_twice,
            one_runner_runs_a_follower_at_a_time,
            process_applies_each_event_once,
            application_stamps_events_with_its_clock,
            timestamp_log_moves_past_taken_timestamps,
            feed_matches_the_capability,
            feed_runner_delivers_every_append,
            process_on_a_feed_applies_each_event_once,
            runners_share_the_slices_and_take_over,
        );
    };
    (@cases required $fixture:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let (store, _guard) = $fixture.await;
                $crate::cases::$case(store).await;
            }
        )+
    };
    (@cases optional $fixture:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                // The fixture prints why it yields nothing (a server that is not configured).
                let Some((store, _guard)) = $fixture.await else { return };
                $crate::cases::$case(store).await;
            }
        )+
    };
}
