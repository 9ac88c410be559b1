//! A delivery: one envelope handed to one consumer, to be settled once.
//!
//! A backend implements only the primitives of [`Settle`]; the policy on
//! top of them is here, the same for every backend: the attempt limit of a
//! nack, dead-lettering on reject, handing back a delivery dropped
//! unsettled, and refusing to settle once the client is closed.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use tokio::runtime::Handle;

use super::{BackendError, CloseFlag};
use crate::envelope::Envelope;

/// The attempt-limit rule every backend applies: once a delivery that was
/// `how` (nacked, abandoned) has had `attempt` of `max_attempts` attempts,
/// it goes to the dead letters with this reason instead of coming back.
pub fn attempt_limit_reached(how: &str, attempt: u32, max_attempts: u32) -> Option<String> {
    (attempt >= max_attempts)
        .then(|| format!("{how} on attempt {attempt} of {max_attempts}: attempt limit reached"))
}

/// The primitives a backend settles one delivery with. Implemented by each
/// backend; users call the methods on [`Delivery`], which decides which
/// primitive a nack, a reject or a drop comes to.
#[async_trait]
pub trait Settle: Send + Sync {
    /// Done: remove it from the subscriber's queue.
    async fn ack(self: Box<Self>) -> Result<(), BackendError>;

    /// Deliver it again after `delay`, as the next attempt. Called only
    /// below the attempt limit.
    async fn requeue(self: Box<Self>, delay: Duration) -> Result<(), BackendError>;

    /// Move it to the subscriber's dead letters with `reason`, recording
    /// that it was delivered `attempts` times.
    async fn bury(self: Box<Self>, reason: String, attempts: u32) -> Result<(), BackendError>;

    /// It was dropped unsettled: give it back for redelivery as the next
    /// attempt, as soon as the broker can. Runs on a spawned task; if it
    /// fails, the backend redelivers it once the consumer is gone (see
    /// `SubscriberCapabilities::abandoned_redelivery`).
    async fn hand_back(self: Box<Self>) -> Result<(), BackendError>;

    /// True where the broker counts a hand-back as an attempt and
    /// dead-letters at the limit itself (RabbitMQ quorum queues' delivery
    /// limit, the ZeroMQ hub): then a dropped delivery is always handed
    /// back. Otherwise one dropped on its last attempt is buried instead.
    fn broker_limits_hand_back(&self) -> bool {
        false
    }
}

/// One envelope delivered to a consumer, with its attempt number.
///
/// Settle it with [`ack`](Self::ack), [`nack`](Self::nack) or
/// [`reject`](Self::reject). Dropping it unsettled is not a loss: it is
/// delivered again (to this or another instance) with attempt + 1, or goes
/// to the dead letters if that was its last attempt.
pub struct Delivery {
    envelope: Envelope,
    attempt: u32,
    max_attempts: u32,
    closed: CloseFlag,
    /// Where a dropped delivery's hand-back runs: the runtime it was made on.
    runtime: Option<Handle>,
    settle: Option<Box<dyn Settle>>,
}

impl Delivery {
    /// Made by backends: `attempt` counts from 1, `max_attempts` is the
    /// subscription's, `closed` the client's flag.
    pub fn new(
        envelope: Envelope,
        attempt: u32,
        max_attempts: u32,
        closed: CloseFlag,
        settle: Box<dyn Settle>,
    ) -> Self {
        Self {
            envelope,
            attempt,
            max_attempts,
            closed,
            runtime: Handle::try_current().ok(),
            settle: Some(settle),
        }
    }

    /// The envelope delivered.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// 1 for the first delivery, 2 for the first redelivery, and so on.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Acknowledges: the subscriber has it for good.
    pub async fn ack(mut self) -> Result<(), BackendError> {
        self.open_settle()?.ack().await
    }

    /// Asks for redelivery after `delay`; on its last attempt it goes to
    /// the dead letters instead.
    pub async fn nack(mut self, delay: Duration) -> Result<(), BackendError> {
        let settle = self.open_settle()?;
        match attempt_limit_reached("nacked", self.attempt, self.max_attempts) {
            Some(reason) => settle.bury(reason, self.attempt).await,
            None => settle.requeue(delay).await,
        }
    }

    /// Sends it to the dead letters with a reason an operator will read.
    pub async fn reject(mut self, reason: impl Into<String>) -> Result<(), BackendError> {
        self.open_settle()?.bury(reason.into(), self.attempt).await
    }

    /// The primitives, while the client is open. Once it is closed the
    /// delivery stays unsettled and is handed back when dropped.
    fn open_settle(&mut self) -> Result<Box<dyn Settle>, BackendError> {
        self.closed.ensure_open()?;
        Ok(self
            .settle
            .take()
            .expect("a Delivery is settled only once: its settling methods take it by value"))
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        let Some(settle) = self.settle.take() else {
            return;
        };
        let (envelope_id, attempt) = (self.envelope.id, self.attempt);
        let last = if settle.broker_limits_hand_back() {
            None
        } else {
            attempt_limit_reached("abandoned", attempt, self.max_attempts)
        };
        let closed = self.closed.clone();
        let hand_back = async move {
            let result = match last {
                Some(reason) => settle.bury(reason, attempt).await,
                None => settle.hand_back().await,
            };
            match result {
                Ok(()) => {}
                // A closed client's broker takes back what it held.
                Err(error) if closed.is_closed() => {
                    tracing::debug!(%envelope_id, %error, "a dropped delivery of a closed client is left to the broker")
                }
                Err(error) => {
                    tracing::warn!(%envelope_id, %error, "could not hand back a dropped delivery; it is redelivered once its consumer is gone")
                }
            }
        };
        match self.runtime.take().or_else(|| Handle::try_current().ok()) {
            Some(runtime) => drop(runtime.spawn(hand_back)),
            None => {
                tracing::warn!(%envelope_id, "no runtime to hand back a dropped delivery; it is redelivered once its consumer is gone")
            }
        }
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("envelope_id", &self.envelope.id)
            .field("list_id", &self.envelope.list_id)
            .field("attempt", &self.attempt)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::event::{ListChange, ListEvent};
    use crate::list::{ListId, MailingList};

    /// Records which primitive a delivery came to.
    #[derive(Clone, Default)]
    struct Record {
        calls: Arc<Mutex<Vec<String>>>,
        broker_limits: bool,
    }

    impl Record {
        fn push(&self, call: String) -> Result<(), BackendError> {
            self.calls.lock().unwrap().push(call);
            Ok(())
        }

        fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }

        /// Polls until a spawned hand-back has run.
        async fn wait_calls(&self) -> Vec<String> {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while self.calls().is_empty() && tokio::time::Instant::now() < deadline {
                tokio::task::yield_now().await;
            }
            self.calls()
        }
    }

    #[async_trait]
    impl Settle for Record {
        async fn ack(self: Box<Self>) -> Result<(), BackendError> {
            self.push("ack".into())
        }
        async fn requeue(self: Box<Self>, delay: Duration) -> Result<(), BackendError> {
            self.push(format!("requeue {}ms", delay.as_millis()))
        }
        async fn bury(self: Box<Self>, reason: String, attempts: u32) -> Result<(), BackendError> {
            self.push(format!("bury {attempts}: {reason}"))
        }
        async fn hand_back(self: Box<Self>) -> Result<(), BackendError> {
            self.push("hand back".into())
        }
        fn broker_limits_hand_back(&self) -> bool {
            self.broker_limits
        }
    }

    fn delivery(attempt: u32, record: &Record, closed: &CloseFlag) -> Delivery {
        let list = MailingList::public(ListId::new("delivery.example.org").unwrap());
        let envelope = Envelope::event(
            &ListEvent::now(list.list_id.clone(), ListChange::ListDeleted),
            &list,
        );
        Delivery::new(
            envelope,
            attempt,
            3,
            closed.clone(),
            Box::new(record.clone()),
        )
    }

    #[tokio::test]
    async fn nack_requeues_below_the_limit_and_buries_at_it() {
        let (record, open) = (Record::default(), CloseFlag::new());
        delivery(2, &record, &open)
            .nack(Duration::from_millis(7))
            .await
            .unwrap();
        delivery(3, &record, &open)
            .nack(Duration::ZERO)
            .await
            .unwrap();
        delivery(1, &record, &open).reject("broken").await.unwrap();
        assert_eq!(
            record.calls(),
            [
                "requeue 7ms",
                "bury 3: nacked on attempt 3 of 3: attempt limit reached",
                "bury 1: broken",
            ]
        );
    }

    #[tokio::test]
    async fn a_dropped_delivery_is_handed_back_or_buried_on_its_last_attempt() {
        let open = CloseFlag::new();
        let below = Record::default();
        drop(delivery(2, &below, &open));
        assert_eq!(below.wait_calls().await, ["hand back"]);

        let last = Record::default();
        drop(delivery(3, &last, &open));
        assert_eq!(
            last.wait_calls().await,
            ["bury 3: abandoned on attempt 3 of 3: attempt limit reached"]
        );

        let counted_by_broker = Record {
            broker_limits: true,
            ..Record::default()
        };
        drop(delivery(3, &counted_by_broker, &open));
        assert_eq!(counted_by_broker.wait_calls().await, ["hand back"]);
    }

    #[tokio::test]
    async fn a_closed_client_refuses_to_settle_and_hands_back() {
        let (record, closed) = (Record::default(), CloseFlag::new());
        let held = delivery(1, &record, &closed);
        closed.close();
        assert!(matches!(held.ack().await, Err(BackendError::Closed)));
        assert_eq!(record.wait_calls().await, ["hand back"]);
    }

    #[test]
    fn dropped_without_a_runtime_it_does_not_panic() {
        let record = Record::default();
        drop(delivery(1, &record, &CloseFlag::new()));
        assert!(record.calls().is_empty());
    }
}
