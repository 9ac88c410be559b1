//! The conformance suite: the scenarios every backend must pass against its
//! real broker, in the manner of arrow-rs `object_store`'s shared tests and
//! watermill's universal Pub/Sub tests.
//!
//! A [`Harness`] gives the clients of one isolated namespace (each a new
//! client, as a separate process would open) and
//! [`conformance_tests!`](crate::conformance_tests) expands the scenarios in
//! an integration test:
//!
//! ```text
//! archiver_core::conformance_tests!(my_backend::TestHarness::new());
//! ```
//!
//! The workspace runs it once per backend through the facade's URLs and
//! options (`mq-archiver/tests/conformance.rs`), so what is tested is what a
//! user configures.
//!
//! Every scenario asserts counts and byte-exact envelopes, waits on events
//! with a deadline (never a fixed sleep), and adapts to the backend's
//! capabilities ([`PublisherCapabilities`](crate::PublisherCapabilities),
//! [`SubscriberCapabilities`](crate::SubscriberCapabilities)) where a
//! guarantee is optional.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;

mod content;
mod corpus;
mod delivery;
pub mod errors;
pub mod faults;
pub mod fixtures;
mod harness;
pub mod interop;
pub mod leaks;
pub mod server;
mod settlement;
pub mod strategies;
mod support;
pub mod tls;
mod transient;

pub use content::{
    closed_client_refuses_work, corpus_round_trip, large_mail_round_trip, list_address_round_trip,
    list_events_round_trip, over_limit_is_refused,
};
pub use corpus::{corpus_dir, corpus_mbox};
pub use delivery::{
    churning_subscribers_lose_nothing, competing_consumers, concurrent_publishers, fan_out,
    offline_subscriber_catches_up, per_list_order, replay_from_start, routing_by_list_and_kind,
};
pub use harness::Harness;
pub use settlement::{
    abandoned_delivery_is_redelivered, dead_letters_after_max_attempts,
    nack_redelivers_with_next_attempt, prefetch_bounds_in_flight, runner_settles_by_outcome,
};
pub use transient::live_tail_sees_only_live_messages;

/// Runs one scenario, then cleans up what it left on the broker whether it
/// passed or failed (a failure is then reported as it was): a failing
/// scenario must not leave queues or keys behind on a shared broker.
pub async fn run<H: Harness>(harness: &H, scenario: impl Future<Output = ()>) {
    let outcome = AssertUnwindSafe(scenario).catch_unwind().await;
    harness.cleanup().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Expands to one `#[tokio::test]` per conformance scenario, each with a
/// fresh harness from the given expression.
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::conformance_tests!(@each $harness;
            corpus_round_trip,
            fan_out,
            competing_consumers,
            routing_by_list_and_kind,
            offline_subscriber_catches_up,
            nack_redelivers_with_next_attempt,
            abandoned_delivery_is_redelivered,
            dead_letters_after_max_attempts,
            live_tail_sees_only_live_messages,
            per_list_order,
            concurrent_publishers,
            churning_subscribers_lose_nothing,
            large_mail_round_trip,
            over_limit_is_refused,
            closed_client_refuses_work,
            list_events_round_trip,
            list_address_round_trip,
            replay_from_start,
            prefetch_bounds_in_flight,
            runner_settles_by_outcome,
        );
    };
    (@each $harness:expr; $($scenario:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() {
                let harness = $harness;
                $crate::conformance::run(&harness, $crate::conformance::$scenario(&harness)).await;
            }
        )+
    };
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::memory::MemoryBackend;

    /// Notes whether it was cleaned up.
    struct Noting(Arc<AtomicBool>);

    #[async_trait]
    impl Harness for Noting {
        type Publisher = MemoryBackend;
        type Subscriber = MemoryBackend;
        async fn publisher(&self) -> MemoryBackend {
            MemoryBackend::new()
        }
        async fn subscriber(&self) -> MemoryBackend {
            MemoryBackend::new()
        }
        async fn cleanup(&self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_failed_scenario_is_cleaned_up_and_still_fails() {
        let cleaned = Arc::new(AtomicBool::new(false));
        let harness = Noting(Arc::clone(&cleaned));
        let failed = tokio::spawn(async move {
            run(&harness, async { panic!("scenario failed") }).await;
        })
        .await;
        assert!(failed.unwrap_err().is_panic(), "the failure is reported");
        assert!(cleaned.load(Ordering::SeqCst), "and cleaned up after");
    }
}
