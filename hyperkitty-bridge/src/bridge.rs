//! The consuming loop: takes deliveries while HyperKitty answers, stops
//! taking them while it does not, and settles each by HyperKitty's answer.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use mq_archiver::{Deliveries, Delivery, Envelope, Kind, ListAddress, Subscriber, Subscription};
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
    unreachable_answers: AtomicU64,
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
    /// Mails nacked for another attempt after a failure of a running
    /// HyperKitty (5xx, a timeout once connected); not those dead-lettered
    /// at the attempt limit (counted in `dead_lettered`).
    pub retried: u64,
    /// Deliveries in hand released when HyperKitty became unreachable or
    /// refused the bridge (one attempt each, once per outage).
    pub released: u64,
    /// Answers that found no working HyperKitty: refused or failed
    /// connections, connect timeouts, 502/503/504/429, and the failure
    /// that made a run of 5xx an outage.
    pub unreachable_answers: u64,
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
            unreachable_answers: get(&self.unreachable_answers),
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
    /// Lists HyperKitty was seen to hold as private, and when: trusted
    /// for `private_list_ttl`, dropped on a list event of that list.
    private_lists: Mutex<HashMap<ListAddress, Instant>>,
    /// `api/lists/` answered 200 JSON once (so a 403 of the list API is
    /// HyperKitty's own, not a proxy's).
    lists_api_checked: AtomicBool,
    /// Distinct envelopes of the current run of sick failures (5xx,
    /// timeouts once connected) with no success between.
    sick_run: Mutex<Vec<String>>,
    /// The outage was a run of 5xx: probe an endpoint that needs the
    /// database too.
    database_outage: AtomicBool,
    /// Probes failed since HyperKitty last archived a mail: the back-off
    /// keeps growing across outages until a 200.
    probe_failures: AtomicU32,
    /// False after an outage until a mail is archived again: one delivery
    /// at a time until then.
    healthy: AtomicBool,
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
            lists_api_checked: AtomicBool::new(false),
            sick_run: Mutex::default(),
            database_outage: AtomicBool::new(false),
            probe_failures: AtomicU32::new(0),
            healthy: AtomicBool::new(true),
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
                    this.healthy.store(false, Ordering::Release);
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
        let database = self.database_outage.load(Ordering::Acquire);
        loop {
            let failures = self
                .probe_failures
                .fetch_add(1, Ordering::AcqRel)
                .saturating_add(1);
            let delay = jitter(self.config.probe_backoff.delay(failures));
            tokio::select! {
                biased;
                () = shutdown.as_mut() => return false,
                () = tokio::time::sleep(delay) => {}
            }
            self.counters.count(&self.counters.probes);
            if self.hyperkitty.probe(database).await {
                self.database_outage.store(false, Ordering::Release);
                lock(&self.sick_run).clear();
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
        let mut ended = None;
        loop {
            if stop.load(Ordering::Acquire) {
                break;
            }
            // After an outage, one delivery at a time until one is archived.
            let limit = if self.healthy.load(Ordering::Acquire) {
                self.config.concurrency.max(1)
            } else {
                1
            };
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
    /// metadata and pulls it from Mailman's REST API itself; an event
    /// drops its list from the private-list cache (its policy may have
    /// changed).
    async fn judge(&self, envelope: &Envelope) -> Verdict {
        if envelope.kind == Kind::Event {
            self.forget_private(envelope);
            self.counters.count(&self.counters.events_acked);
            return Verdict::Ack;
        }
        let address = match self.list_address(envelope) {
            Ok(address) => address,
            Err(why) => return Verdict::DeadLetter(why),
        };
        if !envelope.is_public()
            && let Some(verdict) = self.check_private(envelope, &address).await
        {
            return verdict;
        }
        let (mail, copied) = mail_to_post(&envelope.body);
        let outcome = self.hyperkitty.post(&address, mail).await;
        if outcome == PostOutcome::Archived && copied {
            self.counters.count(&self.counters.copies_with_generated_id);
        }
        self.outcome_verdict(envelope, outcome)
    }

    /// Sorts an answer into a verdict, keeping the run of sick failures:
    /// `sick_run_limit` of them in a row on distinct mails are an outage
    /// (HyperKitty answers, but e.g. its database is down), not a reason
    /// to spend every mail's attempts.
    fn outcome_verdict(&self, envelope: &Envelope, outcome: PostOutcome) -> Verdict {
        match outcome {
            PostOutcome::Archived | PostOutcome::Rejected(_) => {
                lock(&self.sick_run).clear();
                self.probe_failures.store(0, Ordering::Release);
                self.healthy.store(true, Ordering::Release);
            }
            PostOutcome::Failed { sick: true, .. } => {
                let mut run = lock(&self.sick_run);
                let id = envelope.id.to_string();
                if !run.contains(&id) {
                    run.push(id);
                }
                if run.len() >= self.config.sick_run_limit.max(1) {
                    run.clear();
                    self.database_outage.store(true, Ordering::Release);
                    let PostOutcome::Failed { why, .. } = outcome else {
                        unreachable!()
                    };
                    return Verdict::Unreachable(format!(
                        "{why} ({} failures in a row on distinct mails: HyperKitty counts as down)",
                        self.config.sick_run_limit.max(1)
                    ));
                }
            }
            _ => {}
        }
        match outcome {
            PostOutcome::Archived => Verdict::Ack,
            PostOutcome::Unreachable(why) => Verdict::Unreachable(why),
            PostOutcome::Rejected(why) => Verdict::DeadLetter(why),
            PostOutcome::Failed { why, .. } => Verdict::Retry(why),
            PostOutcome::Misconfigured(why) => Verdict::Misconfigured(why),
        }
    }

    /// Drops the event's list (or, when its address is unknown, every
    /// list) from the private-list cache.
    fn forget_private(&self, envelope: &Envelope) {
        let mut cache = lock(&self.private_lists);
        let address = envelope
            .list_address
            .clone()
            .or_else(|| self.config.list_addresses.get(&envelope.list_id).cloned());
        match address {
            Some(address) => {
                cache.remove(&address);
            }
            None => cache.clear(),
        }
    }

    /// None when `address` may take private mail (HyperKitty holds it as
    /// private), else what to do with the mail.
    async fn check_private(&self, envelope: &Envelope, address: &ListAddress) -> Option<Verdict> {
        let ttl = self.config.private_list_ttl;
        if lock(&self.private_lists)
            .get(address)
            .is_some_and(|seen| seen.elapsed() < ttl)
        {
            return None;
        }
        // Once: HyperKitty's list index answers 200 JSON, so a 403 below
        // is its own answer for a private list, not a proxy blocking /api/.
        if !self.lists_api_checked.load(Ordering::Acquire) {
            if let Err(outcome) = self.hyperkitty.lists_api().await {
                return Some(self.outcome_verdict(envelope, outcome));
            }
            self.lists_api_checked.store(true, Ordering::Release);
        }
        match self.hyperkitty.list_status(address).await {
            Ok(ListStatus::Private) => {
                lock(&self.private_lists).insert(address.clone(), Instant::now());
                None
            }
            Ok(ListStatus::Absent) => Some(Verdict::DeadLetter(format!(
                "private list {address} is not in HyperKitty: its first mail would create it public; pre-create it as private (see the hyperkitty-bridge docs), then replay the dead letters"
            ))),
            Ok(ListStatus::Other(policy)) => Some(Verdict::DeadLetter(format!(
                "private list {address} is held by HyperKitty with archive policy {policy}: a private mail would become readable; make the list private in HyperKitty, then replay the dead letters"
            ))),
            Err(outcome) => Some(self.outcome_verdict(envelope, outcome)),
        }
    }

    /// The envelope's `list-address`, else the mail's `List-Post`, else
    /// the configured map; every candidate a valid posting address (a
    /// forged `List-Post` is skipped, never put into a URL).
    fn list_address(&self, envelope: &Envelope) -> Result<ListAddress, String> {
        if let Some(address) = &envelope.list_address {
            return Ok(address.clone());
        }
        let list_post = list_post_address(&envelope.body);
        if let Some(address) = list_post.as_deref().and_then(|a| ListAddress::new(a).ok()) {
            return Ok(address);
        }
        if let Some(address) = self.config.list_addresses.get(&envelope.list_id) {
            return Ok(address.clone());
        }
        Err(format!(
            "no list address for list {}: the envelope has no list-address, the mail {}, and the bridge's list map no entry (add --list-address {}=LIST@DOMAIN)",
            envelope.list_id,
            if list_post.is_some() {
                "a List-Post that is no valid posting address"
            } else {
                "no List-Post"
            },
            envelope.list_id
        ))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
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
            tracing::warn!(envelope_id = %id, attempt, %why, "HyperKitty failed");
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
                counters.count(&counters.retried);
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
            counters.count(&counters.unreachable_answers);
            release(delivery, &why, max_attempts, &counters).await
        }
        Verdict::Misconfigured(why) => {
            stop.store(true, Ordering::Release);
            let settled = release(delivery, &why, max_attempts, &counters).await;
            *lock(&misconfigured) = Some(why);
            settled
        }
    };
    if let Err(error) = settled {
        tracing::warn!(envelope_id = %id, %error, "settling failed; the broker redelivers it");
        counters.count(&counters.settle_failures);
    }
}

/// Hands a delivery back for when HyperKitty works again (an attempt);
/// one on its last attempt goes to the dead letters saying why, not as a
/// bare "nacked" (replaying them is the fix).
async fn release(
    delivery: Delivery,
    why: &str,
    max_attempts: u32,
    counters: &BridgeCounters,
) -> Result<(), mq_archiver::BackendError> {
    let attempt = delivery.attempt();
    if attempt >= max_attempts {
        counters.count(&counters.dead_lettered);
        delivery
            .reject(format!(
                "HyperKitty unreachable or misconfigured on the last attempt ({attempt} of {max_attempts}): {why}; replay the dead letters when fixed"
            ))
            .await
    } else {
        counters.count(&counters.released);
        delivery.nack(Duration::ZERO).await
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
