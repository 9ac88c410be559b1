//! A durable subscription's consumer: a task that reads the subscriber's
//! consumer groups and feeds deliveries into the stream the user holds.
//!
//! Each turn it: finds streams of newly selected lists (and creates the
//! group there, starting at the subscriber's creation time); claims nacked
//! entries whose delay is over; now and then claims entries a vanished
//! consumer left unsettled longer than `claim_idle`; trims; and reads new
//! entries with XREADGROUP, never more than the in-flight permits allow.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use archiver_core::wire::WireError;
use archiver_core::{
    BackendError, Backoff, Deliveries, Delivery, Envelope, SubscriberName, Subscription,
    attempt_limit_reached,
};
use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use redis::streams::StreamPendingCountReply;
use redis::{RedisResult, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use crate::Shared;
use crate::connection::{self, run_id};
use crate::dead_letters::{ORIGIN, PendingRef, bury};
use crate::entry::{Entry, EntryId, entries, streams};
use crate::error::{backend_error, is_busy_group, is_no_group, is_no_perm, is_no_stream, refusing};
use crate::keys::Keys;
use crate::registry::{self, Discovery, SubscriberRecord};
use crate::retention;
use crate::settle::RedisSettle;

/// Most entries asked for in one read (the prefetch bounds it too).
const BATCH: usize = 1024;

/// Starts consuming; returns once the subscriber's groups exist.
pub(crate) async fn subscribe(
    shared: &Arc<Shared>,
    subscription: &Subscription,
) -> Result<Deliveries, BackendError> {
    shared.ensure_open()?;
    let mut conn = shared.conn.clone();
    let record = registry::register(&mut conn, &shared.keys, subscription)
        .await
        .map_err(refusing(&format!(
            "the record {}",
            shared.keys.subscriber(&subscription.name)
        )))?;
    drop_unselected_groups(&mut conn, shared, &subscription.name, &record)
        .await
        .map_err(backend_error)?;
    let read_conn =
        connection::open(&shared.client, &shared.config, shared.config.poll_interval).await?;
    let prefetch = usize::from(subscription.prefetch);
    let (sender, receiver) = mpsc::channel(prefetch);
    let mut consumer = Consumer {
        shared: Arc::clone(shared),
        read_conn,
        name: subscription.name.clone(),
        consumer: shared.config.consumer_name.clone(),
        run_id: run_id(&mut conn).await.map_err(backend_error)?,
        discovery: Discovery::new(record.selection().ok(), shared.config.retention_interval),
        trims: true,
        record,
        groups: Vec::new(),
        missing: HashMap::new(),
        replay: shared.keys.replay(&subscription.name),
        permits: Arc::new(Semaphore::new(prefetch)),
        overflow: VecDeque::new(),
        sender,
        last_confirmed: Utc::now(),
        next_discovery: Instant::now(),
        next_due: Instant::now(),
        next_claim: Instant::now(),
        next_trim: Instant::now() + shared.config.retention_interval,
    };
    consumer.discover().await.map_err(backend_error)?;
    if let Some(refusal) = consumer.discovery.forbidden(&shared.keys) {
        return Err(BackendError::Forbidden(
            format!("subscription {}: {refusal}", subscription.name).into(),
        ));
    }
    tokio::spawn(consumer.run());
    let deliveries = ReceiverStream::new(receiver);
    Ok(shared.closed.until_closed(deliveries))
}

/// The latest selection is in force: groups on streams it no longer selects
/// are removed, so they neither receive nor hold back trimming. An archive
/// server's Redis user may neither list every stream nor destroy groups:
/// then this is left to the list server (retention ignores such groups).
async fn drop_unselected_groups(
    conn: &mut ConnectionManager,
    shared: &Shared,
    name: &SubscriberName,
    record: &SubscriberRecord,
) -> RedisResult<()> {
    let streams = match registry::streams(conn, &shared.keys).await {
        Err(error) if is_no_perm(&error) => {
            tracing::debug!(subscriber = %name, "this Redis user may not list every stream: groups of an earlier selection stay");
            return Ok(());
        }
        streams => streams?,
    };
    for stream in streams {
        if !record.selects(stream.content.kind(), &stream.list) {
            let _: RedisResult<i64> = redis::cmd("XGROUP")
                .arg("DESTROY")
                .arg(&stream.key)
                .arg(name.as_str())
                .query_async(conn)
                .await;
        }
    }
    Ok(())
}

struct Consumer {
    shared: Arc<Shared>,
    /// Its own connection: XREADGROUP blocks it.
    read_conn: ConnectionManager,
    name: SubscriberName,
    /// This consumer's name within the groups.
    consumer: String,
    /// The server's run id when the groups were last made.
    run_id: String,
    record: SubscriberRecord,
    /// Finds the selected streams this Redis user may read.
    discovery: Discovery,
    /// False once Redis refused this user XTRIM (an archive server's ACL
    /// user): the list server trims then.
    trims: bool,
    /// Stream keys with this subscriber's group, the replay stream first.
    groups: Vec<String>,
    /// Exact lists' streams not written yet → when to look again: not
    /// on every poll.
    missing: HashMap<String, Instant>,
    replay: String,
    permits: Arc<Semaphore>,
    /// Entries already claimed by this consumer but not yet handed over for
    /// want of a permit (XREADGROUP's COUNT is per stream): at most one
    /// read's worth, handed over first.
    overflow: VecDeque<(String, Entry, u32)>,
    sender: mpsc::Sender<Result<Delivery, BackendError>>,
    /// Last time Redis answered with the groups intact: the start of any
    /// loss window reported later.
    last_confirmed: DateTime<Utc>,
    next_discovery: Instant,
    /// Nacked entries are looked for as often as new streams: a nack's
    /// delay is met to within the poll interval.
    next_due: Instant,
    next_claim: Instant,
    next_trim: Instant,
}

enum Step {
    Continue,
    /// The subscriber was deleted: end the stream.
    Deleted,
}

impl Consumer {
    fn stopped(&self) -> bool {
        self.shared.closed.is_closed() || self.sender.is_closed()
    }

    async fn run(mut self) {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut failures = 0;
        while !self.stopped() {
            match self.step().await {
                Ok(Step::Continue) => failures = 0,
                Ok(Step::Deleted) => break,
                Err(error) if is_no_group(&error) => match self.recover().await {
                    Ok(Step::Continue) => failures = 0,
                    Ok(Step::Deleted) => break,
                    Err(error) => failures = self.report(error, failures, &backoff).await,
                },
                Err(error) => failures = self.report(error, failures, &backoff).await,
            }
        }
        tracing::debug!(subscriber = %self.name, consumer = %self.consumer, "consumer stopped");
    }

    /// Logs a failure, tells the stream once per outage, and backs off;
    /// says nothing once stopping (a read cut short by close is no failure).
    async fn report(&self, error: redis::RedisError, failures: u32, backoff: &Backoff) -> u32 {
        if self.stopped() {
            return failures;
        }
        let error = backend_error(error);
        tracing::warn!(subscriber = %self.name, %error, "Redis consumer failed; retrying");
        if failures == 0 {
            let _ = self.sender.try_send(Err(error));
        }
        let failures = failures + 1;
        tokio::select! {
            () = tokio::time::sleep(backoff.delay(failures)) => {}
            () = self.shared.closed.wait() => {}
        }
        failures
    }

    async fn step(&mut self) -> RedisResult<Step> {
        let Some(mut permits) = self.take_permits().await else {
            return Ok(Step::Continue);
        };
        while !permits.is_empty() {
            let Some((stream, entry, attempt)) = self.overflow.pop_front() else {
                break;
            };
            self.deliver(&stream, entry, attempt, &mut permits).await?;
        }
        let now = Instant::now();
        if now >= self.next_discovery {
            self.discover().await?;
            self.next_discovery = now + self.shared.config.poll_interval;
        }
        if now >= self.next_due {
            self.deliver_due(&mut permits).await?;
            self.next_due = now + self.shared.config.poll_interval;
        }
        if now >= self.next_claim {
            self.reclaim_idle(&mut permits).await?;
            self.next_claim =
                now + (self.shared.config.claim_idle / 4).max(self.shared.config.poll_interval);
        }
        if self.trims && now >= self.next_trim {
            let list_streams = &self.groups[1..];
            match retention::trim(
                &mut self.shared.conn.clone(),
                &self.shared.keys,
                list_streams,
                self.shared.config.retention_min_age,
            )
            .await
            {
                Ok(_) => {}
                Err(error) if is_no_perm(&error) => {
                    tracing::info!(subscriber = %self.name, "this Redis user may not trim: the list server trims");
                    self.trims = false;
                }
                Err(error) => {
                    tracing::warn!(subscriber = %self.name, %error, "trimming failed; will retry")
                }
            }
            self.next_trim = now + self.shared.config.retention_interval;
        }
        if !permits.is_empty() && self.overflow.is_empty() {
            self.read_new(&mut permits).await?;
        }
        self.last_confirmed = Utc::now();
        Ok(Step::Continue)
    }

    /// Waits for one in-flight permit, then takes what else is free.
    async fn take_permits(&self) -> Option<Vec<OwnedSemaphorePermit>> {
        let first = tokio::select! {
            permit = Arc::clone(&self.permits).acquire_owned() => permit.ok()?,
            () = self.shared.closed.wait() => return None,
            () = self.sender.closed() => return None,
        };
        let mut permits = vec![first];
        while permits.len() < BATCH {
            match Arc::clone(&self.permits).try_acquire_owned() {
                Ok(permit) => permits.push(permit),
                Err(_) => break,
            }
        }
        Some(permits)
    }

    /// Creates this subscriber's group on every selected stream that lacks
    /// it and that its Redis user may read.
    async fn discover(&mut self) -> RedisResult<()> {
        let conn = &mut self.shared.conn.clone();
        if self.groups.is_empty() {
            ensure_group(conn, &self.replay, &self.name, EntryId::ZERO, true).await?;
            self.groups.push(self.replay.clone());
        }
        let now = Instant::now();
        for stream in self.discovery.candidates(conn, &self.shared.keys).await? {
            if self.groups.contains(&stream.key)
                || self.missing.get(&stream.key).is_some_and(|at| now < *at)
            {
                continue;
            }
            match ensure_group(
                conn,
                &stream.key,
                &self.name,
                self.record.group_start(),
                false,
            )
            .await
            {
                Ok(true) => {
                    tracing::debug!(subscriber = %self.name, stream = %stream.key, "reading a new stream");
                    self.discovery.allow(&stream.key);
                    self.missing.remove(&stream.key);
                    self.groups.push(stream.key);
                }
                Ok(false) => {
                    // An exact list's stream not written yet; its group
                    // starts at the creation time, so looking again later
                    // loses nothing.
                    self.discovery.allow(&stream.key);
                    self.missing
                        .insert(stream.key, now + self.shared.config.poll_interval * 10);
                }
                Err(error) if is_no_perm(&error) => self.discovery.refuse(&stream.key),
                Err(error) => return Err(error),
            }
        }
        // Retention waits for no subscriber on what its user is refused.
        let refused = self.discovery.refused_keys();
        if refused != self.record.refused {
            self.record.refused = refused;
            registry::restore(conn, &self.shared.keys, &self.name, &self.record).await?;
        }
        Ok(())
    }

    async fn read_new(&mut self, permits: &mut Vec<OwnedSemaphorePermit>) -> RedisResult<()> {
        // COUNT applies to each stream: ask each for its share of the permits.
        let count = permits.len().div_ceil(self.groups.len());
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg(self.name.as_str())
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count);
        read.arg("BLOCK")
            .arg(self.shared.config.poll_interval.as_millis() as u64)
            .arg("STREAMS");
        read.arg(&self.groups).arg(vec![">"; self.groups.len()]);
        let reply: Value = read.query_async(&mut self.read_conn).await?;
        for (stream, batch) in streams(reply) {
            for entry in batch {
                self.deliver(&stream, entry, 1, permits).await?;
            }
        }
        Ok(())
    }

    /// Claims nacked entries whose delay is over.
    async fn deliver_due(&mut self, permits: &mut Vec<OwnedSemaphorePermit>) -> RedisResult<()> {
        let delayed = self.shared.keys.delayed(&self.name);
        let conn = &mut self.shared.conn.clone();
        let due: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(&delayed)
            .arg("-inf")
            .arg(Utc::now().timestamp_millis())
            .arg("LIMIT")
            .arg(0)
            .arg(permits.len())
            .query_async(conn)
            .await?;
        for member in due {
            let removed: i64 = redis::cmd("ZREM")
                .arg(&delayed)
                .arg(&member)
                .query_async(conn)
                .await?;
            let Some((stream, id)) = member
                .split_once('\n')
                .and_then(|(s, id)| Some((s.to_owned(), id.parse::<EntryId>().ok()?)))
            else {
                continue;
            };
            if removed == 0 {
                continue; // another consumer took it
            }
            let Some(deliveries) = pending_deliveries(conn, &stream, &self.name, id).await? else {
                continue;
            };
            match self.claim(&stream, &[id], Duration::ZERO).await?.pop() {
                Some(entry) => {
                    self.deliver(&stream, entry, deliveries + 1, permits)
                        .await?
                }
                None => {
                    tracing::debug!(stream, entry_id = %id, "a delayed entry was trimmed meanwhile")
                }
            }
        }
        Ok(())
    }

    /// Claims entries left unsettled longer than `claim_idle` by consumers
    /// that went away (nacked entries waiting for their delay excepted).
    async fn reclaim_idle(&mut self, permits: &mut Vec<OwnedSemaphorePermit>) -> RedisResult<()> {
        let idle = self.shared.config.claim_idle;
        let delayed = self.shared.keys.delayed(&self.name);
        let conn = &mut self.shared.conn.clone();
        for stream in self.groups.clone() {
            if permits.is_empty() {
                break;
            }
            // redis-rs's typed reply (no bodies in it, so no costly copy):
            // it refuses a row of another shape as a whole where a hand
            // parser would skip it, but Redis and Valkey send every row as
            // `[id, consumer, idle, count]` in RESP2 and RESP3 alike.
            let reply: StreamPendingCountReply = redis::cmd("XPENDING")
                .arg(&stream)
                .arg(self.name.as_str())
                .arg("IDLE")
                .arg(idle.as_millis() as u64)
                .arg("-")
                .arg("+")
                .arg(permits.len())
                .query_async(conn)
                .await?;
            let idle_entries: HashMap<EntryId, u32> = reply
                .ids
                .iter()
                .filter_map(|row| Some((row.id.parse().ok()?, row.times_delivered as u32)))
                .collect();
            if idle_entries.is_empty() {
                continue;
            }
            let ids: Vec<EntryId> = idle_entries.keys().copied().collect();
            let members: Vec<String> = ids.iter().map(|id| format!("{stream}\n{id}")).collect();
            let scores: Vec<Option<f64>> = redis::cmd("ZMSCORE")
                .arg(&delayed)
                .arg(&members)
                .query_async(conn)
                .await?;
            let abandoned: Vec<EntryId> = ids
                .into_iter()
                .zip(scores)
                .filter(|(_, s)| s.is_none())
                .map(|(id, _)| id)
                .collect();
            for entry in self.claim(&stream, &abandoned, idle).await? {
                let deliveries = idle_entries.get(&entry.id).copied().unwrap_or(1);
                tracing::info!(subscriber = %self.name, stream, entry_id = %entry.id, deliveries, "reclaimed an abandoned delivery");
                self.deliver(&stream, entry, deliveries + 1, permits)
                    .await?;
            }
        }
        Ok(())
    }

    /// XCLAIM to this consumer; only entries still idle for `min_idle` come
    /// back, so two consumers never both claim one.
    async fn claim(
        &mut self,
        stream: &str,
        ids: &[EntryId],
        min_idle: Duration,
    ) -> RedisResult<Vec<Entry>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = ids.iter().map(EntryId::to_string).collect();
        let reply: Value = redis::cmd("XCLAIM")
            .arg(stream)
            .arg(self.name.as_str())
            .arg(&self.consumer)
            .arg(min_idle.as_millis() as u64)
            .arg(ids)
            .query_async(&mut self.shared.conn.clone())
            .await?;
        Ok(entries(reply))
    }

    /// Hands an entry to the user, or dead-letters it when it is malformed
    /// or out of attempts.
    async fn deliver(
        &mut self,
        stream: &str,
        entry: Entry,
        attempt: u32,
        permits: &mut Vec<OwnedSemaphorePermit>,
    ) -> RedisResult<()> {
        let pending = PendingRef {
            stream,
            group: &self.name,
            id: entry.id,
            delete_after: stream == self.replay,
        };
        let conn = &mut self.shared.conn.clone();
        // Where the entry came from: the list stream it is in, or for a
        // replayed copy the stream its dead letter recorded.
        let origin = if pending.delete_after {
            entry.text(ORIGIN)
        } else {
            Some(stream)
        };
        let checked = entry
            .envelope()
            .and_then(|envelope| from_origin(&self.shared.keys, envelope, origin));
        let envelope = match checked {
            Ok(envelope) => envelope,
            Err(error) => {
                tracing::error!(subscriber = %self.name, stream, entry_id = %entry.id, %error, "malformed entry dead-lettered");
                bury(
                    conn,
                    &self.shared.keys,
                    &pending,
                    &entry.fields,
                    origin,
                    attempt,
                    &archiver_core::malformed_reason(&error),
                )
                .await?;
                let _ = self.sender.try_send(Err(BackendError::Wire(error)));
                return Ok(());
            }
        };
        // `attempt` is the one about to be made: attempt - 1 were abandoned.
        if let Some(reason) =
            attempt_limit_reached("abandoned", attempt - 1, self.record.max_attempts)
        {
            return bury(
                conn,
                &self.shared.keys,
                &pending,
                &entry.fields,
                origin,
                attempt - 1,
                &reason,
            )
            .await;
        }
        let Some(permit) = permits.pop() else {
            self.overflow.push_back((stream.to_owned(), entry, attempt));
            return Ok(());
        };
        let settle = RedisSettle {
            shared: Arc::clone(&self.shared),
            group: self.name.clone(),
            stream: stream.to_owned(),
            id: entry.id,
            envelope: envelope.clone(),
            fields: entry.fields,
            from_replay: pending.delete_after,
            _permit: permit,
        };
        let delivery = Delivery::new(
            envelope,
            attempt,
            self.record.max_attempts,
            self.shared.closed.clone(),
            Box::new(settle),
        );
        // If the user dropped the stream meanwhile, the delivery is dropped
        // here and hands itself back.
        let _ = self.sender.send(Ok(delivery)).await;
        Ok(())
    }

    /// A group vanished. If the server restarted (its run id changed) it lost
    /// data: say which window, re-create the record and the groups, go on.
    /// Otherwise the subscriber was deleted: stop.
    async fn recover(&mut self) -> RedisResult<Step> {
        let conn = &mut self.shared.conn.clone();
        let now_run_id = run_id(conn).await?;
        let record = registry::load(conn, &self.shared.keys, &self.name).await?;
        if now_run_id == self.run_id && record.is_none() {
            tracing::info!(subscriber = %self.name, "the subscriber was deleted; its consumers stop");
            return Ok(Step::Deleted);
        }
        let detected = Utc::now();
        let message = format!(
            "Redis lost the consumer groups of subscriber {} (restarted without persistence, or its data was flushed): \
             entries not acknowledged by {} before {}, and entries published between {} and {}, may be lost; \
             consuming resumes with what Redis holds now",
            self.name,
            self.name,
            self.last_confirmed.to_rfc3339(),
            self.last_confirmed.to_rfc3339(),
            detected.to_rfc3339()
        );
        tracing::error!(subscriber = %self.name, loss_from = %self.last_confirmed, loss_until = %detected, "{message}");
        let _ = self
            .sender
            .try_send(Err(BackendError::Broker(message.into())));
        if record.is_none() {
            registry::restore(conn, &self.shared.keys, &self.name, &self.record).await?;
        }
        self.run_id = now_run_id;
        self.groups.clear();
        self.discover().await?;
        Ok(Step::Continue)
    }
}

/// The envelope, if its kind and list id are those of the stream it came
/// from: an XADD into one list's stream claiming another list's id (a
/// public list's stream carrying a private list's mail) is malformed.
fn from_origin(
    keys: &Keys,
    envelope: Envelope,
    origin: Option<&str>,
) -> Result<Envelope, WireError> {
    let expected = keys.stream_of(&envelope).key;
    // A dead letter of an earlier version names its stream in the old layout.
    let legacy = keys.legacy().stream(envelope.kind, &envelope.list_id);
    if origin == Some(expected.as_str()) || origin == Some(legacy.as_str()) {
        return Ok(envelope);
    }
    Err(WireError::Invalid {
        field: "list-id",
        reason: format!(
            "{} {} does not belong in {}",
            envelope.kind.as_str(),
            envelope.list_id,
            origin.unwrap_or("a stream it does not name (no origin)")
        ),
    })
}

/// Creates a consumer group unless it exists; true when the group is there.
/// `mkstream` creates a missing stream too, otherwise a missing stream
/// gives false.
async fn ensure_group(
    conn: &mut ConnectionManager,
    stream: &str,
    name: &SubscriberName,
    start: EntryId,
    mkstream: bool,
) -> RedisResult<bool> {
    let mut create = redis::cmd("XGROUP");
    create
        .arg("CREATE")
        .arg(stream)
        .arg(name.as_str())
        .arg(start.to_string());
    if mkstream {
        create.arg("MKSTREAM");
    }
    match create.query_async::<()>(conn).await {
        Err(error) if is_busy_group(&error) => Ok(true),
        Err(error) if !mkstream && is_no_stream(&error) => Ok(false),
        Err(error) => Err(error),
        Ok(()) => Ok(true),
    }
}

/// How often the entry was delivered to the group; None when it is no
/// longer pending (acknowledged meanwhile).
async fn pending_deliveries(
    conn: &mut ConnectionManager,
    stream: &str,
    group: &SubscriberName,
    id: EntryId,
) -> RedisResult<Option<u32>> {
    let reply: StreamPendingCountReply = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group.as_str())
        .arg(id.to_string())
        .arg(id.to_string())
        .arg(1)
        .query_async(conn)
        .await?;
    Ok(reply.ids.first().map(|row| row.times_delivered as u32))
}
