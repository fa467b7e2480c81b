//! The conformance suite every engine runs (feature `testkit`).
//!
//! Each case is a plain async function over an [`EngineFactory`], so any harness can
//! drive it: tokio tests for native engines, wasm-bindgen-test in the browser. The
//! [`conformance_tests!`](crate::conformance_tests) macro writes one test per case.
//!
//! Cases panic (with a message) when the engine breaks the contract, as tests do.
#![allow(clippy::unwrap_used, missing_docs)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::kv::OrderedKv;

pub mod aggregates;
pub mod counted;
pub mod events;
pub mod faults;
pub mod gated;
pub mod history;
pub mod kv;
pub mod projections;
pub mod replica;
pub mod repository;
pub mod snapshots;
pub mod subscriptions;
pub mod upcasting;

/// Makes fresh, empty engines for the suite.
pub trait EngineFactory {
    /// The engine.
    type Kv: OrderedKv + 'static;

    /// A new, empty engine, independent of every engine made before.
    fn create(&self) -> impl Future<Output = Self::Kv>;
}

/// Makes a fresh shared engine.
pub(crate) async fn fresh<F: EngineFactory>(factory: &F) -> Arc<F::Kv> {
    Arc::new(factory.create().await)
}

/// Returns `Pending` once, so that futures joined together take turns.
pub fn yield_now() -> impl Future<Output = ()> {
    struct YieldNow(bool);
    impl Future for YieldNow {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                Poll::Ready(())
            } else {
                self.0 = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }
    YieldNow(false)
}

/// Polls `future` once, in the caller's task: whether it completed.
pub async fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *future).poll(cx))).await
}

/// `future`'s output, unless it takes longer than `seconds`.
pub async fn within<F: Future>(seconds: u64, future: F) -> Option<F::Output> {
    let timeout = futures_timer::Delay::new(std::time::Duration::from_secs(seconds));
    match futures_util::future::select(std::pin::pin!(future), timeout).await {
        futures_util::future::Either::Left((output, _)) => Some(output),
        futures_util::future::Either::Right(_) => None,
    }
}

/// Writes one test per conformance case.
///
/// `$test` is the test attribute (e.g. `tokio::test`), `$factory` an expression that
/// makes an [`EngineFactory`]:
///
/// ```ignore
/// eventkv::conformance_tests!(tokio::test, eventkv::testkit::MemoryFactory);
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($test:meta, $factory:expr) => {
        $crate::conformance_tests!(@cases $test, $factory;
            kv::get_put_delete, kv::empty_value_is_present, kv::scan_byte_order,
            kv::scan_bounds, kv::scan_paging, kv::failed_check_applies_nothing,
            kv::checks, kv::batch_order, kv::large_values, kv::interleaved_compare_and_set, kv::scans_are_bounded,
            kv::write_with_builds_from_what_it_read, kv::get_many_in_order, kv::get_many_is_bounded,
            events::append_and_read, events::expected_version_conflict, events::read_ranges_and_pages,
            events::read_all_in_commit_order, events::interleaved_appends_lose_nothing,
            events::invalid_appends_write_nothing, events::streams_are_isolated,
            events::retried_append_is_idempotent, events::flipped_event_bytes_are_corrupt,
            events::impossible_stored_numbers_are_corrupt, events::reads_are_bounded,
            events::large_retries_after_a_lost_ack_are_idempotent,
            events::a_caller_that_gives_up_fails_nobody_else,
            events::log_pages_are_bounded_in_bytes,
            events::concurrent_appends_share_writes, events::queued_appends_to_one_stream_see_each_other,
            events::two_stores_on_one_engine_lose_nothing, events::catch_up_calls_are_bounded,
            snapshots::save_get_delete, snapshots::monotonic, snapshots::delete_by_type,
            snapshots::clear_and_count, snapshots::invalid_snapshots,
            snapshots::discard_only_the_same_snapshot,
            repository::not_found, repository::save_and_load, repository::threshold_by_crossing,
            repository::sync_mode, repository::background_mode_snapshots_committed_state,
            repository::manual_mode, repository::schema_mismatch, repository::corrupt_snapshot,
            repository::unknown_codec, repository::snapshot_ahead_of_stream,
            repository::json_fallback, repository::conflicting_saves,
            repository::stores_on_different_engines, repository::bincode_events,
            repository::paged_replay, repository::foreign_snapshot_is_not_applied,
            repository::flipped_snapshot_bytes_are_never_applied,
            repository::retried_save_is_idempotent, repository::unreadable_snapshot_store,
            repository::invalid_id_counts_no_miss, repository::commands_retry_on_conflict,
            repository::a_command_whose_save_landed_unconfirmed_decides_once,
            subscriptions::subscription_catches_up, subscriptions::subscription_follows_live_appends,
            subscriptions::subscription_filters_by_type,
            subscriptions::subscription_under_concurrent_writers_skips_nothing,
            subscriptions::subscription_survives_read_errors,
            projections::checkpoints_save_and_delete,
            projections::projection_catches_up_from_its_checkpoint,
            projections::projection_of_one_type_passes_over_the_others,
            projections::read_model_entries_merge_the_page_changes,
            projections::projection_failures_write_nothing,
            projections::projection_run_ends_on_a_bad_name,
            replica::replica_pulls_keep_the_servers_positions,
            replica::replica_local_appends_wait_in_the_outbox,
            replica::replica_pulls_confirm_pushed_entries,
            replica::replica_conflicts_are_rebased_or_parked,
            replica::replica_concurrent_local_appends_take_distinct_versions,
            replica::replica_large_pulls_fit_the_engines_batches,
            replica::replica_outboxes_of_large_entries_page_through,
            upcasting::upcaster_chain_over_a_stored_history,
            upcasting::upcaster_splits_and_drops_events,
            upcasting::missing_upcaster_is_named,
            upcasting::upcasting_on_subscriptions_and_projections,
            history::load_at_every_version_equals_a_replay,
            history::snapshot_history_keeps_the_newest_n,
            history::load_time_snapshot_fires_once,
            history::maintenance_snapshots_stale_aggregates
        );
    };
    (@cases $test:meta, $factory:expr; $($module:ident :: $case:ident),* $(,)?) => {
        $(
            $crate::__paste_case!($test, $factory, $module, $case);
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __paste_case {
    ($test:meta, $factory:expr, $module:ident, $case:ident) => {
        #[$test]
        async fn $case() {
            $crate::testkit::$module::$case(&$factory).await;
        }
    };
}

/// The factory of [`MemoryKv`](crate::MemoryKv) engines.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryFactory;

impl EngineFactory for MemoryFactory {
    type Kv = crate::MemoryKv;

    async fn create(&self) -> crate::MemoryKv {
        crate::MemoryKv::new()
    }
}
