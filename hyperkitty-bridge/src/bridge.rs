//! The consuming loop: takes deliveries while HyperKitty answers, stops
//! taking them while it does not, and settles each by HyperKitty's answer.

use std::collections::HashSet;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use mq_archiver::{Deliveries, Delivery, Envelope, Kind, Subscriber, Subscription};
use tokio::task::JoinSet;

use crate::config::BridgeConfig;
use crate::error::BridgeError;
use crate::hyperkitty::{HyperKitty, ListStatus, PostOutcome};
use crate::mail::{list_post_address, mail_to_post};

/// Live counts of what the bridge did.
#[derive(Debug, Default)]
pub struct BridgeCounters {
    posted: AtomicU64,
    copies_with_generated_id: AtomicU64,
    events_acked: AtomicU64,
    retried: AtomicU64,
    released: AtomicU64,
    refused_connections: AtomicU64,
    probes: AtomicU64,
    outages: AtomicU64,
    dead_lettered: AtomicU64,
    settle_failures: AtomicU64,
    changed: tokio::sync::Notify,
}

/// A snapshot of [`BridgeCounters`]. Duplicates are not counted:
/// HyperKitty answers a re-posted mail exactly as a new one (200, same
/// URL), so the bridge cannot tell them apart; HyperKitty logs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BridgeStats {
    /// Mails HyperKitty answered 200 to (and that were then acked).
    pub posted: u64,
    /// Of those, mails without a Message-ID posted as a copy with the
    /// library's generated one.
    pub copies_with_generated_id: u64,
    /// List events acknowledged without a request (HyperKitty has no push
    /// API for list metadata).
    pub events_acked: u64,
    /// Mails nacked after a 5xx of a running HyperKitty (each an attempt).
    pub retried: u64,
    /// Deliveries in hand released when HyperKitty became unreachable
    /// (one attempt each, once per outage).
    pub released: u64,
    /// Requests that found HyperKitty unreachable: refused or failed
    /// connections, timeouts, 502/503/504.
    pub refused_connections: u64,
    /// Probes sent while HyperKitty was unreachable.
    pub probes: u64,
    /// Times the bridge stopped taking deliveries for an outage.
    pub outages: u64,
    /// Deliveries sent to the dead letters (with a reason).
    pub dead_lettered: u64,
    /// Settling failed (the broker redelivers those).
    pub settle_failures: u64,
}

impl BridgeCounters {
    /// The counts now.
    pub fn snapshot(&self) -> BridgeStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BridgeStats {
            posted: get(&self.posted),
            copies_with_generated_id: get(&self.copies_with_generated_id),
            events_acked: get(&self.events_acked),
            retried: get(&self.retried),
            released: get(&self.released),
            refused_connections: get(&self.refused_connections),
            probes: get(&self.probes),
            outages: get(&self.outages),
            dead_lettered: get(&self.dead_lettered),
            settle_failures: get(&self.settle_failures),
        }
    }

    /// Waits until `done(stats)` holds, for tests and progress reports.
    pub async fn wait_until(&self, done: impl Fn(&BridgeStats) -> bool) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if done(&self.snapshot()) {
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

/// What to do with one delivery, decided before settling it.
enum Verdict {
    Ack,
    Retry(String),
    DeadLetter(String),
    Unreachable(String),
    Misconfigured(String),
}

/// Why one consuming stretch ended.
enum Stretch {
    Shutdown,
    StreamEnded,
    Unreachable,
    Misconfigured(String),
}

/// Feeds HyperKitty from a durable subscription (see the crate docs for
/// every outcome).
pub struct HyperKittyBridge(Arc<Inner>);

/// The bridge's state, shared with the tasks that post.
struct Inner {
    config: BridgeConfig,
    hyperkitty: HyperKitty,
    counters: Arc<BridgeCounters>,
    /// Lists HyperKitty was seen to hold as private: checked once each.
    private_lists: Mutex<HashSet<String>>,
}

impl HyperKittyBridge {
    /// A bridge to the HyperKitty of `config`; contacts nothing yet.
    pub fn new(config: BridgeConfig) -> Result<Self, BridgeError> {
        let hyperkitty = HyperKitty::new(&config)?;
        Ok(Self(Arc::new(Inner {
            config,
            hyperkitty,
            counters: Arc::default(),
            private_lists: Mutex::default(),
        })))
    }

    /// Live counters, to watch while [`run`](Self::run) goes on.
    pub fn counters(&self) -> Arc<BridgeCounters> {
        Arc::clone(&self.0.counters)
    }

    /// Subscribes and feeds HyperKitty until `shutdown` completes or the
    /// stream ends. While HyperKitty is unreachable it holds no
    /// subscription: the deliveries in hand are released once (each one
    /// attempt), the stream is dropped (so the broker holds nothing for
    /// it past its consumer timeout), and HyperKitty is probed with
    /// back-off and jitter; once it answers, the bridge subscribes again.
    /// Returns the counts; fails with [`BridgeError::Configuration`] when
    /// HyperKitty refuses the key or this address (having dead-lettered
    /// nothing), or with the broker's error when subscribing fails.
    pub async fn run<S: Subscriber + ?Sized>(
        &self,
        subscriber: &S,
        subscription: &Subscription,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<BridgeStats, BridgeError> {
        let this = &self.0;
        let base = mq_archiver::redact_url(this.config.base_url.as_str());
        tokio::pin!(shutdown);
        let mut resuming = false;
        loop {
            let deliveries = match subscriber.subscribe(subscription).await {
                Ok(deliveries) => deliveries,
                // After an outage the broker may be the one that blinked:
                // wait and try again rather than stop a running bridge.
                Err(
                    error @ (mq_archiver::BackendError::Unavailable(_)
                    | mq_archiver::BackendError::Broker(_)),
                ) if resuming => {
                    tracing::warn!(%error, "subscribing again failed; retrying");
                    tokio::select! {
                        biased;
                        () = shutdown.as_mut() => return Ok(this.counters.snapshot()),
                        () = tokio::time::sleep(jitter(this.config.probe_backoff.max)) => continue,
                    }
                }
                Err(error) => return Err(error.into()),
            };
            resuming = true;
            tracing::info!(subscriber = %subscription.name, %base, "consuming");
            match this.consume(deliveries, subscription, &mut shutdown).await {
                Stretch::Shutdown | Stretch::StreamEnded => return Ok(this.counters.snapshot()),
                Stretch::Misconfigured(why) => {
                    tracing::error!(%why, "stopping: HyperKitty refuses this bridge");
                    return Err(BridgeError::Configuration(why));
                }
                Stretch::Unreachable => {
                    this.counters.count(&this.counters.outages);
                    if !this.wait_for_hyperkitty(&mut shutdown).await {
                        return Ok(this.counters.snapshot());
                    }
                    tracing::info!("HyperKitty answers again: resuming");
                }
            }
        }
    }
}

impl Inner {
    /// Probes until HyperKitty answers (true) or shutdown (false).
    async fn wait_for_hyperkitty(
        &self,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> bool {
        let mut failures = 0u32;
        loop {
            failures = failures.saturating_add(1);
            let delay = jitter(self.config.probe_backoff.delay(failures));
            tokio::select! {
                biased;
                () = shutdown.as_mut() => return false,
                () = tokio::time::sleep(delay) => {}
            }
            self.counters.count(&self.counters.probes);
            if self.hyperkitty.probe().await {
                return true;
            }
            tracing::debug!(failures, "HyperKitty still unreachable");
        }
    }

    async fn consume(
        self: &Arc<Self>,
        mut deliveries: Deliveries,
        subscription: &Subscription,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Stretch {
        let stop = Arc::new(AtomicBool::new(false));
        let verdicts: Arc<Mutex<Option<String>>> = Arc::default();
        let mut in_flight = JoinSet::new();
        let limit = self.config.concurrency.max(1);
        let mut ended = None;
        loop {
            if stop.load(Ordering::Acquire) {
                break;
            }
            if in_flight.len() >= limit {
                tokio::select! {
                    biased;
                    () = shutdown.as_mut() => { ended = Some(Stretch::Shutdown); break; }
                    _ = in_flight.join_next() => continue,
                }
            }
            let next = tokio::select! {
                biased;
                () = shutdown.as_mut() => { ended = Some(Stretch::Shutdown); break; }
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => continue,
                next = deliveries.next() => next,
            };
            let delivery = match next {
                Some(Ok(delivery)) => delivery,
                Some(Err(mq_archiver::BackendError::Forbidden(why))) => {
                    ended = Some(Stretch::Misconfigured(format!(
                        "the broker refused the subscription: {why}"
                    )));
                    break;
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, "the delivery stream reported a problem");
                    continue;
                }
                None => {
                    ended = Some(Stretch::StreamEnded);
                    break;
                }
            };
            let (stop, verdicts) = (Arc::clone(&stop), Arc::clone(&verdicts));
            let this = Arc::clone(self);
            let max_attempts = subscription.max_attempts;
            in_flight.spawn(async move {
                let verdict = this.judge(delivery.envelope()).await;
                let retry_delay = this.config.retry_backoff.delay(delivery.attempt());
                let counters = Arc::clone(&this.counters);
                settle(
                    delivery,
                    verdict,
                    retry_delay,
                    max_attempts,
                    counters,
                    stop,
                    verdicts,
                )
                .await;
            });
        }
        while in_flight.join_next().await.is_some() {}
        drop(deliveries);
        if let Some(why) = verdicts.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Stretch::Misconfigured(why);
        }
        match ended {
            Some(stretch) => stretch,
            None => Stretch::Unreachable,
        }
    }

    /// What HyperKitty's answer (or the mail itself) decides for one
    /// envelope. Events are acked: HyperKitty has no push API for list
    /// metadata and pulls it from Mailman's REST API itself.
    async fn judge(&self, envelope: &Envelope) -> Verdict {
        if envelope.kind == Kind::Event {
            self.counters.count(&self.counters.events_acked);
            return Verdict::Ack;
        }
        let Some(address) = self.list_address(envelope) else {
            return Verdict::DeadLetter(format!(
                "no list address for list {}: the envelope has no list-address, the mail no List-Post, and the bridge's list map no entry (add --list-address {}=LIST@DOMAIN)",
                envelope.list_id, envelope.list_id
            ));
        };
        if !envelope.is_public()
            && let Some(verdict) = self.check_private(&address).await
        {
            return verdict;
        }
        let (mail, copied) = mail_to_post(&envelope.body);
        match self.hyperkitty.post(&address, mail).await {
            PostOutcome::Archived => {
                if copied {
                    self.counters.count(&self.counters.copies_with_generated_id);
                }
                Verdict::Ack
            }
            other => outcome_verdict(other),
        }
    }

    /// None when `address` may take private mail (HyperKitty holds it as
    /// private), else what to do with the mail.
    async fn check_private(&self, address: &str) -> Option<Verdict> {
        if self
            .private_lists
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(address)
        {
            return None;
        }
        match self.hyperkitty.list_status(address).await {
            Ok(ListStatus::Private) => {
                self.private_lists
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(address.to_owned());
                None
            }
            Ok(ListStatus::Absent) => Some(Verdict::DeadLetter(format!(
                "private list {address} is not in HyperKitty: its first mail would create it public; pre-create it as private (see the hyperkitty-bridge docs), then replay the dead letters"
            ))),
            Ok(ListStatus::Other(policy)) => Some(Verdict::DeadLetter(format!(
                "private list {address} is held by HyperKitty with archive policy {policy}: a private mail would become readable; make the list private in HyperKitty, then replay the dead letters"
            ))),
            Err(outcome) => Some(outcome_verdict(outcome)),
        }
    }

    /// The envelope's `list-address`, else the mail's `List-Post`, else
    /// the configured map.
    fn list_address(&self, envelope: &Envelope) -> Option<String> {
        envelope
            .list_address
            .as_ref()
            .map(|a| a.as_str().to_owned())
            .or_else(|| list_post_address(&envelope.body))
            .or_else(|| self.config.list_addresses.get(&envelope.list_id).cloned())
    }
}

fn outcome_verdict(outcome: PostOutcome) -> Verdict {
    match outcome {
        PostOutcome::Archived => Verdict::Ack,
        PostOutcome::Unreachable(why) => Verdict::Unreachable(why),
        PostOutcome::Rejected(why) => Verdict::DeadLetter(why),
        PostOutcome::Failed(why) => Verdict::Retry(why),
        PostOutcome::Misconfigured(why) => Verdict::Misconfigured(why),
    }
}

async fn settle(
    delivery: Delivery,
    verdict: Verdict,
    retry_delay: Duration,
    max_attempts: u32,
    counters: Arc<BridgeCounters>,
    stop: Arc<AtomicBool>,
    misconfigured: Arc<Mutex<Option<String>>>,
) {
    let id = delivery.envelope().id;
    let attempt = delivery.attempt();
    let settled = match verdict {
        Verdict::Ack => {
            let is_mail = delivery.envelope().kind == Kind::Mail;
            let result = delivery.ack().await;
            if result.is_ok() && is_mail {
                counters.count(&counters.posted);
            }
            result
        }
        Verdict::Retry(why) => {
            tracing::warn!(envelope_id = %id, attempt, %why, "HyperKitty failed; will retry");
            counters.count(&counters.retried);
            if attempt >= max_attempts {
                // Dead-lettered with HyperKitty's last answer, not only
                // the attempt count, so the operator sees why.
                counters.count(&counters.dead_lettered);
                delivery
                    .reject(format!(
                        "{why} (attempt {attempt} of {max_attempts}: attempt limit reached)"
                    ))
                    .await
            } else {
                delivery.nack(retry_delay).await
            }
        }
        Verdict::DeadLetter(why) => {
            tracing::warn!(envelope_id = %id, %why, "dead-lettering");
            counters.count(&counters.dead_lettered);
            delivery.reject(why).await
        }
        Verdict::Unreachable(why) => {
            if !stop.swap(true, Ordering::AcqRel) {
                tracing::warn!(%why, "HyperKitty is unreachable: stop taking deliveries, probe until it answers");
            }
            counters.count(&counters.refused_connections);
            counters.count(&counters.released);
            delivery.nack(Duration::ZERO).await
        }
        Verdict::Misconfigured(why) => {
            stop.store(true, Ordering::Release);
            *misconfigured.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
            counters.count(&counters.released);
            delivery.nack(Duration::ZERO).await
        }
    };
    if let Err(error) = settled {
        tracing::warn!(envelope_id = %id, %error, "settling failed; the broker redelivers it");
        counters.count(&counters.settle_failures);
    }
}

/// `delay` scaled by a random factor in [0.5, 1.0), so bridges probing
/// one HyperKitty do not all come back in step.
fn jitter(delay: Duration) -> Duration {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let factor = 0.5 + (random % 1000) as f64 / 2000.0;
    delay.mul_f64(factor)
}
