//! The archive server's side: a runner that feeds deliveries to a handler,
//! settles them by its answer, bounds concurrency and shuts down gracefully.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::backend::{BackendError, Delivery, Subscriber, Subscription};
use crate::backoff::Backoff;

/// A handler's failure, which decides what happens to the delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Might work later (disk full, database down): nack with back-off.
    #[error("retryable: {0}")]
    Retryable(String),
    /// Will never work (unparseable content): reject to the dead letters.
    #[error("permanent: {0}")]
    Permanent(String),
}

impl HandlerError {
    /// A retryable error from anything printable (never put a mail body in it).
    pub fn retryable(reason: impl std::fmt::Display) -> Self {
        Self::Retryable(reason.to_string())
    }

    /// A permanent error from anything printable.
    pub fn permanent(reason: impl std::fmt::Display) -> Self {
        Self::Permanent(reason.to_string())
    }
}

/// What an archive server does with each delivery. It must be idempotent:
/// delivery is at least once, so the same envelope may come again.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Processes one delivery; Ok acknowledges it.
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError>;
}

#[async_trait]
impl<H: Handler + ?Sized> Handler for Arc<H> {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        (**self).handle(delivery).await
    }
}

/// Live counts of a runner's settled deliveries.
#[derive(Debug, Default)]
pub struct RunCounters {
    acked: AtomicU64,
    retried: AtomicU64,
    rejected: AtomicU64,
    settle_failures: AtomicU64,
    stream_errors: AtomicU64,
    changed: Notify,
}

/// A snapshot of [`RunCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunStats {
    /// Handled and acknowledged.
    pub acked: u64,
    /// Nacked for a later attempt.
    pub retried: u64,
    /// Rejected to the dead letters by the handler.
    pub rejected: u64,
    /// Settling failed (the backend will redeliver them).
    pub settle_failures: u64,
    /// Problems the delivery stream reported and recovered from.
    pub stream_errors: u64,
}

impl RunCounters {
    /// The counts now.
    pub fn snapshot(&self) -> RunStats {
        RunStats {
            acked: self.acked.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            settle_failures: self.settle_failures.load(Ordering::Relaxed),
            stream_errors: self.stream_errors.load(Ordering::Relaxed),
        }
    }

    /// Waits until at least `count` deliveries reached a final outcome
    /// (acked or rejected).
    pub async fn wait_finished(&self, count: u64) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let stats = self.snapshot();
            if stats.acked + stats.rejected >= count {
                return;
            }
            changed.await;
        }
    }

    fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }
}

/// Runs a [`Handler`] over a durable subscription.
///
/// ```no_run
/// # async fn demo() -> Result<(), archiver_core::BackendError> {
/// use archiver_core::{Delivery, Handler, HandlerError, MemoryBackend, Runner, Subscription, shutdown_signal};
///
/// struct Print;
/// #[async_trait::async_trait]
/// impl Handler for Print {
///     async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
///         println!("{} on {}", delivery.envelope().id, delivery.envelope().list_id);
///         Ok(())
///     }
/// }
///
/// let subscription = Subscription::new("printer".parse().unwrap());
/// let stats = Runner::new(MemoryBackend::new(), subscription)
///     .concurrency(8)
///     .run(Print, shutdown_signal())
///     .await?;
/// println!("{stats:?}");
/// # Ok(()) }
/// ```
pub struct Runner<S> {
    subscriber: S,
    subscription: Subscription,
    concurrency: usize,
    backoff: Backoff,
    drain_timeout: Duration,
    counters: Arc<RunCounters>,
}

impl<S: Subscriber> Runner<S> {
    /// A runner with concurrency 16, the default [`Backoff`] and 30 s to
    /// finish in-flight work at shutdown.
    pub fn new(subscriber: S, subscription: Subscription) -> Self {
        Self {
            subscriber,
            subscription,
            concurrency: 16,
            backoff: Backoff::default(),
            drain_timeout: Duration::from_secs(30),
            counters: Arc::default(),
        }
    }

    /// Most deliveries handled at once (at least 1).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Delay before redelivering after a retryable error, by attempt.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// How long shutdown waits for in-flight handlers before releasing
    /// their deliveries for redelivery.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Live counters, to watch progress while [`run`](Self::run) goes on.
    pub fn counters(&self) -> Arc<RunCounters> {
        Arc::clone(&self.counters)
    }

    /// Subscribes, then consumes until `shutdown` completes (e.g.
    /// [`shutdown_signal`]) or the stream ends; then stops taking deliveries,
    /// lets in-flight handlers finish within the drain timeout and releases
    /// the rest. Errors the stream reports are logged and counted, and
    /// consuming goes on, except [`BackendError::Forbidden`]: the principal
    /// is not granted what it asked for, which retrying cannot change, so
    /// the runner drains and returns it. Returns the counts; fails if
    /// subscribing does or the broker forbids the subscription.
    pub async fn run<H: Handler>(
        self,
        handler: H,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<RunStats, BackendError> {
        let deliveries = self.subscriber.subscribe(&self.subscription).await?;
        self.consume(deliveries, handler, shutdown).await
    }

    /// Subscribes, then runs as [`run`](Self::run) does on a task of its own.
    /// Returns once the subscription exists, so everything published
    /// afterwards reaches this subscriber.
    pub async fn spawn<H: Handler>(
        self,
        handler: H,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<RunningRunner, BackendError>
    where
        S: 'static,
    {
        let deliveries = self.subscriber.subscribe(&self.subscription).await?;
        let counters = self.counters();
        let task = tokio::spawn(self.consume(deliveries, handler, shutdown));
        Ok(RunningRunner { counters, task })
    }

    async fn consume<H: Handler>(
        self,
        mut deliveries: crate::backend::Deliveries,
        handler: H,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<RunStats, BackendError> {
        let name = self.subscription.name.to_string();
        let handler = Arc::new(handler);
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let mut in_flight = JoinSet::new();
        tokio::pin!(shutdown);
        tracing::info!(subscriber = %name, "runner started");
        let mut refused = None;
        loop {
            let slot = tokio::select! {
                biased;
                () = &mut shutdown => break,
                slot = Arc::clone(&slots).acquire_owned() => slot.expect("semaphore is never closed"),
            };
            let delivery = tokio::select! {
                biased;
                () = &mut shutdown => break,
                next = deliveries.next() => match next {
                    Some(Ok(delivery)) => delivery,
                    Some(Err(BackendError::Forbidden(why))) => {
                        tracing::error!(subscriber = %name, %why, "the broker refused this subscriber: stopping");
                        refused = Some(BackendError::Forbidden(why));
                        break;
                    }
                    Some(Err(error)) => {
                        tracing::error!(subscriber = %name, %error, "the delivery stream reported a problem");
                        self.counters.count(&self.counters.stream_errors);
                        continue;
                    }
                    None => break,
                },
            };
            in_flight.spawn(handle_one(
                Arc::clone(&handler),
                delivery,
                self.backoff,
                Arc::clone(&self.counters),
                slot,
            ));
            while in_flight.try_join_next().is_some() {}
        }
        drop(deliveries);
        let drained = tokio::time::timeout(self.drain_timeout, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(subscriber = %name, left = in_flight.len(), "drain timeout: releasing in-flight deliveries");
            in_flight.shutdown().await;
        }
        let stats = self.counters.snapshot();
        tracing::info!(subscriber = %name, ?stats, "runner stopped");
        refused.map_or(Ok(stats), Err)
    }
}

/// A runner started with [`Runner::spawn`].
pub struct RunningRunner {
    counters: Arc<RunCounters>,
    task: tokio::task::JoinHandle<Result<RunStats, BackendError>>,
}

impl RunningRunner {
    /// Live counters.
    pub fn counters(&self) -> &Arc<RunCounters> {
        &self.counters
    }

    /// Waits for the runner to stop (after its shutdown future completed or
    /// its stream ended); a panic in the runner is passed on.
    pub async fn join(self) -> Result<RunStats, BackendError> {
        match self.task.await {
            Ok(result) => result,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_) => Ok(self.counters.snapshot()),
        }
    }
}

async fn handle_one<H: Handler>(
    handler: Arc<H>,
    delivery: Delivery,
    backoff: Backoff,
    counters: Arc<RunCounters>,
    _slot: OwnedSemaphorePermit,
) {
    let envelope = delivery.envelope();
    let span = tracing::info_span!(
        "delivery",
        envelope_id = %envelope.id,
        list_id = %envelope.list_id,
        message_id_hash = envelope.message_id_hash.as_deref().unwrap_or(""),
        attempt = delivery.attempt(),
    );
    async move {
        let settled = match handler.handle(&delivery).await {
            Ok(()) => delivery.ack().await.map(|()| &counters.acked),
            Err(HandlerError::Retryable(reason)) => {
                let delay = backoff.delay(delivery.attempt());
                tracing::warn!(%reason, ?delay, "handler failed, will retry");
                delivery.nack(delay).await.map(|()| &counters.retried)
            }
            Err(HandlerError::Permanent(reason)) => {
                tracing::warn!(%reason, "handler rejected the delivery");
                delivery.reject(reason).await.map(|()| &counters.rejected)
            }
        };
        match settled {
            Ok(counter) => counters.count(counter),
            Err(error) => {
                tracing::warn!(%error, "settling failed; the backend will redeliver");
                counters.count(&counters.settle_failures);
            }
        }
    }
    .instrument(span)
    .await
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM: the usual shutdown trigger for
/// [`Runner::run`].
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{CloseFlag, DEFAULT_MAX_ATTEMPTS, Publisher, Subscriber};
    use crate::envelope::Envelope;
    use crate::event::{ListChange, ListEvent};
    use crate::list::{ListId, MailingList};
    use crate::memory::MemoryBackend;
    use futures::StreamExt;
    use tokio::sync::{Semaphore, mpsc};

    const WAIT: Duration = Duration::from_secs(10);

    /// Reports each start, then waits for a gate permit before finishing.
    struct Gated {
        started: mpsc::UnboundedSender<Envelope>,
        gate: Arc<Semaphore>,
    }

    #[async_trait]
    impl Handler for Gated {
        async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
            let _ = self.started.send(delivery.envelope().clone());
            self.gate.acquire().await.expect("gate open").forget();
            Ok(())
        }
    }

    fn gated() -> (Gated, mpsc::UnboundedReceiver<Envelope>, Arc<Semaphore>) {
        let (started, receiver) = mpsc::unbounded_channel();
        let gate = Arc::new(Semaphore::new(0));
        let handler = Gated {
            started,
            gate: Arc::clone(&gate),
        };
        (handler, receiver, gate)
    }

    async fn publish(backend: &MemoryBackend, count: usize) -> Vec<Envelope> {
        let list = ListId::new("runner.example.org").unwrap();
        let mut envelopes = Vec::new();
        for _ in 0..count {
            let envelope = Envelope::event(
                &ListEvent::now(list.clone(), ListChange::ListDeleted),
                &MailingList::public(list.clone()),
            );
            backend.publish(&envelope).await.unwrap();
            envelopes.push(envelope);
        }
        envelopes
    }

    async fn started(receiver: &mut mpsc::UnboundedReceiver<Envelope>) -> Envelope {
        tokio::time::timeout(WAIT, receiver.recv())
            .await
            .expect("a handler started")
            .unwrap()
    }

    fn subscription() -> Subscription {
        Subscription::new("runner".parse().unwrap())
    }

    #[tokio::test]
    async fn concurrency_limit_holds_and_shutdown_finishes_in_flight() {
        let backend = MemoryBackend::new();
        drop(backend.subscribe(&subscription()).await.unwrap());
        let published = publish(&backend, 10).await;
        let (handler, mut starts, gate) = gated();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runner = Runner::new(backend.connect(), subscription()).concurrency(3);
        let running = tokio::spawn(runner.run(handler, async {
            let _ = stopped.await;
        }));
        for _ in 0..3 {
            started(&mut starts).await;
        }
        assert!(
            tokio::time::timeout(Duration::from_millis(300), starts.recv())
                .await
                .is_err(),
            "a fourth handler started while 3 were in flight"
        );
        stop.send(()).unwrap();
        gate.add_permits(3);
        let stats = tokio::time::timeout(WAIT, running)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            stats.acked, 3,
            "in-flight handlers finish and ack at shutdown"
        );

        // The 7 it never took are still queued, in order.
        let mut rest = backend.subscribe(&subscription()).await.unwrap();
        for expected in &published[3..] {
            let delivery = rest.next().await.unwrap().unwrap();
            assert_eq!(delivery.envelope(), expected);
            assert_eq!(delivery.attempt(), 1);
            delivery.ack().await.unwrap();
        }
    }

    #[tokio::test]
    async fn drain_timeout_releases_in_flight_for_redelivery() {
        let backend = MemoryBackend::new();
        drop(backend.subscribe(&subscription()).await.unwrap());
        let published = publish(&backend, 1).await;
        let (handler, mut starts, _gate_never_opened) = gated();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runner = Runner::new(backend.connect(), subscription())
            .drain_timeout(Duration::from_millis(100));
        let running = tokio::spawn(runner.run(handler, async {
            let _ = stopped.await;
        }));
        started(&mut starts).await;
        stop.send(()).unwrap();
        let stats = tokio::time::timeout(WAIT, running)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(stats, RunStats::default());

        let mut again = backend.subscribe(&subscription()).await.unwrap();
        let delivery = again.next().await.unwrap().unwrap();
        assert_eq!(delivery.envelope(), &published[0]);
        assert_eq!(delivery.attempt(), 2);
    }

    /// Settles by recording the ack.
    struct RecordAck(Arc<AtomicU64>);

    #[async_trait]
    impl crate::backend::Settle for RecordAck {
        async fn ack(self: Box<Self>) -> Result<(), BackendError> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        async fn requeue(self: Box<Self>, _: Duration) -> Result<(), BackendError> {
            Ok(())
        }
        async fn bury(self: Box<Self>, _: String, _: u32) -> Result<(), BackendError> {
            Ok(())
        }
        async fn hand_back(self: Box<Self>) -> Result<(), BackendError> {
            Ok(())
        }
    }

    /// A subscriber whose stream reports a problem between two deliveries,
    /// then ends.
    struct Hiccup(Arc<AtomicU64>, BackendError);

    #[async_trait]
    impl crate::backend::Connection for Hiccup {
        async fn close(&self) -> Result<(), BackendError> {
            Ok(())
        }
    }

    #[async_trait]
    impl Subscriber for Hiccup {
        fn subscriber_capabilities(&self) -> crate::backend::SubscriberCapabilities {
            MemoryBackend::new().subscriber_capabilities()
        }

        async fn subscribe(
            &self,
            _: &Subscription,
        ) -> Result<crate::backend::Deliveries, BackendError> {
            let list = ListId::new("hiccup.example.org").unwrap();
            let delivery = |acks: &Arc<AtomicU64>| {
                let envelope = Envelope::event(
                    &ListEvent::now(list.clone(), ListChange::ListDeleted),
                    &MailingList::public(list.clone()),
                );
                Ok(Delivery::new(
                    envelope,
                    1,
                    DEFAULT_MAX_ATTEMPTS,
                    CloseFlag::new(),
                    Box::new(RecordAck(Arc::clone(acks))),
                ))
            };
            let items = vec![delivery(&self.0), Err(self.1.clone()), delivery(&self.0)];
            Ok(futures::stream::iter(items).boxed())
        }
        async fn tail(
            &self,
            _: &crate::selection::Selection,
        ) -> Result<crate::backend::Tail, BackendError> {
            Err(BackendError::Unsupported("a tail of the hiccup subscriber"))
        }
    }

    struct Accept;

    #[async_trait]
    impl Handler for Accept {
        async fn handle(&self, _: &Delivery) -> Result<(), HandlerError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_reported_stream_error_is_counted_and_consuming_goes_on() {
        let acks = Arc::new(AtomicU64::new(0));
        let reconnected = BackendError::Unavailable("connection lost, reconnected".into());
        let stats = Runner::new(Hiccup(Arc::clone(&acks), reconnected), subscription())
            .run(Accept, std::future::pending())
            .await
            .unwrap();
        assert_eq!(
            stats,
            RunStats {
                acked: 2,
                stream_errors: 1,
                ..RunStats::default()
            }
        );
        assert_eq!(acks.load(Ordering::Relaxed), 2);
    }

    /// A refusal is not retried: the runner settles what it holds and
    /// returns the refusal, taking nothing after it.
    #[tokio::test]
    async fn a_forbidden_stream_stops_the_runner_with_the_refusal() {
        let acks = Arc::new(AtomicU64::new(0));
        let refused = BackendError::Forbidden("list pattern \"#\" is not granted".into());
        let result = Runner::new(Hiccup(Arc::clone(&acks), refused.clone()), subscription())
            .run(Accept, std::future::pending())
            .await;
        assert_eq!(result, Err(refused));
        assert_eq!(
            acks.load(Ordering::Relaxed),
            1,
            "the delivery after it is not taken"
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<_> = (1..=6).map(|a| backoff.delay(a).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(1));
    }
}
