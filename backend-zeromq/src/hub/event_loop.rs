//! The hub's socket thread: it owns the ROUTER (durable subscribers) and
//! XPUB (live tail) sockets and every queue, so no lock guards them. It
//! wakes on a peer's message, a command from async code (a publish), a
//! delayed redelivery falling due, or the heartbeat.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use archiver_core::journal::Journal;
use archiver_core::{
    BackendError, DeadLetter, Envelope, Grant, Replay, StartPosition, SubscriberName, Subscription,
    wire,
};
use tokio::sync::oneshot;

use super::access::Access;
use super::dead_letters::DeadLetterStore;
use super::queue::{ConnId, Doomed, Queue, Settled};
use super::record::{self, HubRecord};
use super::registry::{Registered, Registry};
use super::status::QueueStatus;
use crate::mailbox::Inbox;
use crate::protocol::{self, Welcome, command};
use crate::zap::{Gate, SharedGate};

/// What async code asks of the hub thread.
pub enum HubCommand {
    /// Records were appended; the record is for the live tail, and the
    /// sender is answered once it is on the tail socket, so a tail opened
    /// after `publish` returned never sees it.
    Published(Option<(HubRecord, oneshot::Sender<()>)>),
    /// Report every queue's state.
    Status(oneshot::Sender<Vec<QueueStatus>>),
    /// Delete a subscriber with its queue and dead letters.
    Delete(SubscriberName, oneshot::Sender<Result<(), String>>),
    /// Save the cursors and stop.
    Close(oneshot::Sender<()>),
    /// A reloaded allowlist ([`HubLoop::reload`]).
    Reload(Reload),
}

/// A reloaded allowlist: the hub's new access, and the ZAP handler's new
/// gate, swapped by the hub thread together.
pub struct Reload {
    /// What the hub checks each message against from now on.
    pub access: Access,
    /// What the ZAP handler admits from now on.
    pub gate: Gate,
    /// The ZAP handler's gate, to swap.
    pub shared: SharedGate,
    /// Whether a login admitted to the live tail no longer is (its
    /// principal revoked, or its key or password rotated): every tail
    /// peer is then disconnected, and reconnects through the new gate.
    pub retail: bool,
    /// Answered once both are swapped.
    pub reply: oneshot::Sender<()>,
}

/// An archive server's connection.
struct Conn {
    name: SubscriberName,
    /// The ZAP user id of its login: once that login is no longer
    /// current (rotated, revoked), the connection is not served.
    user_id: String,
    /// What its principal may do (its hello passed this grant).
    grant: Grant,
    prefetch: usize,
    inflight: usize,
    /// Envelope bytes delivered to it and not settled, expired ones
    /// included.
    inflight_bytes: usize,
    /// Deliveries taken back at the ack deadline, by tag, with their
    /// bytes: those may still sit in libzmq's queue to this peer (the
    /// router has no send high-water mark), so they stay charged to it
    /// until it settles that tag late or the connection is dropped.
    expired: HashMap<u64, usize>,
    last_seen: Instant,
}

/// One message from a peer, as [`HubLoop::recv_message`] read it.
struct Received {
    /// The routing id, then the frames kept.
    frames: Vec<Vec<u8>>,
    /// False when frames past the limits were dropped.
    whole: bool,
    /// The ZAP user id libzmq attached: the sender's principal.
    user_id: Option<String>,
}

/// What the hub allows one peer (from [`crate::HubConfig`]).
pub struct Limits {
    pub max_nack_delay: Duration,
    pub ack_deadline: Duration,
    pub max_unacked_bytes: usize,
    pub dead_letter_page_bytes: usize,
}

/// Everything the thread owns.
pub struct HubLoop {
    pub router: zmq::Socket,
    pub tail: Option<zmq::Socket>,
    pub inbox: Inbox<HubCommand>,
    pub journal: Journal,
    pub dead: DeadLetterStore,
    pub registry: Registry,
    pub queues: BTreeMap<SubscriberName, Queue>,
    pub welcome: Welcome,
    pub access: Access,
    /// What the live tail may carry ([`Access::tail_grant`]).
    tail_grant: Grant,
    pub limits: Limits,
    conns: HashMap<ConnId, Conn>,
    last_ping: Instant,
}

/// How often moved floors are saved as journal cursors: a crash redelivers
/// at most this much of acked work.
const SAVE_EVERY: Duration = Duration::from_millis(200);

/// Messages handled per socket before the loop looks at the others.
const BATCH: usize = 256;

impl HubLoop {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        router: zmq::Socket,
        tail: Option<zmq::Socket>,
        inbox: Inbox<HubCommand>,
        journal: Journal,
        dead: DeadLetterStore,
        registry: Registry,
        queues: BTreeMap<SubscriberName, Queue>,
        welcome: Welcome,
        access: Access,
        limits: Limits,
    ) -> Self {
        Self {
            router,
            tail,
            inbox,
            journal,
            dead,
            registry,
            queues,
            welcome,
            tail_grant: access.tail_grant(),
            access,
            limits,
            conns: HashMap::new(),
            last_ping: Instant::now(),
        }
    }

    /// Runs until closed (or until every handle to the hub is dropped).
    pub fn run(mut self) {
        let mut last_save = Instant::now();
        loop {
            let timeout = self.poll_timeout(last_save);
            let (router_ready, tail_ready) = {
                let mut items = vec![
                    self.router.as_poll_item(zmq::POLLIN),
                    self.inbox.bell().as_poll_item(zmq::POLLIN),
                ];
                if let Some(tail) = &self.tail {
                    items.push(tail.as_poll_item(zmq::POLLIN));
                }
                if zmq::poll(&mut items, timeout.as_millis() as i64).is_err() {
                    tracing::error!("the hub's poll failed; stopping");
                    return;
                }
                (
                    items[0].is_readable(),
                    items.get(2).is_some_and(|i| i.is_readable()),
                )
            };
            if router_ready {
                self.read_router();
            }
            if tail_ready {
                self.read_tail_subscriptions();
            }
            // Commands are taken on every wake: the bell only ends the poll early.
            {
                for command in self.inbox.take() {
                    match command {
                        HubCommand::Published(Some((record, sent))) => {
                            self.tail_publish(&record);
                            let _ = sent.send(());
                        }
                        HubCommand::Published(None) => {}
                        HubCommand::Status(reply) => {
                            let _ = reply.send(self.status());
                        }
                        HubCommand::Delete(name, reply) => {
                            let _ = reply.send(self.unsubscribe(&name));
                        }
                        HubCommand::Reload(reload) => self.reload(reload),
                        HubCommand::Close(reply) => {
                            self.save_floors();
                            let _ = reply.send(());
                            return;
                        }
                    }
                }
            }
            self.housekeeping();
            self.pump();
            if last_save.elapsed() >= SAVE_EVERY {
                self.save_floors();
                last_save = Instant::now();
            }
        }
    }

    fn poll_timeout(&self, last_save: Instant) -> Duration {
        let now = Instant::now();
        let mut wake = self.last_ping + self.welcome.heartbeat();
        wake = wake.min(last_save + SAVE_EVERY);
        if let Some(due) = self.queues.values().filter_map(Queue::next_due).min() {
            wake = wake.min(due);
        }
        wake.saturating_duration_since(now)
            .max(Duration::from_millis(1))
    }

    fn read_router(&mut self) {
        for _ in 0..BATCH {
            let Received {
                frames,
                whole,
                user_id,
            } = match self.recv_message() {
                Ok(Some(message)) => message,
                Ok(None) => return,
                Err(error) => {
                    tracing::error!(%error, "receiving on the hub socket failed");
                    return;
                }
            };
            let mut frames = frames.into_iter();
            let Some(peer) = frames.next() else { continue };
            let rest: Vec<Vec<u8>> = frames.collect();
            if let Some(conn) = self.conns.get_mut(&peer) {
                conn.last_seen = Instant::now();
            }
            let grant = self.access.grant(user_id.as_deref()).cloned();
            let user_id = user_id.unwrap_or_default();
            let handled = if !whole {
                Err(format!(
                    "a message of more than {} frames or {} bytes is refused",
                    protocol::MAX_MESSAGE_FRAMES,
                    protocol::MAX_MESSAGE_BYTES
                ))
            } else if let Some(grant) = grant {
                self.handle(&peer, rest, &grant, &user_id)
            } else {
                // libzmq attaches the user id the ZAP handler gave: a
                // message without a known one is never served.
                self.forbid(
                    &peer,
                    "the message names no current login of this hub (unknown, revoked, or a key or password since rotated: connect again with the current one)".into(),
                );
                Ok(())
            };
            if let Err(reason) = handled {
                tracing::warn!(peer = %hex(&peer), %reason, "malformed message from a peer refused");
                self.send(&peer, vec![command::ERROR.to_vec(), reason.into_bytes()]);
            }
        }
    }

    /// Receives one message frame by frame into one `zmq::Message`, copying
    /// out at most [`protocol::MAX_MESSAGE_FRAMES`] frames and
    /// [`protocol::MAX_MESSAGE_BYTES`] bytes; the frames past that are
    /// received and dropped, never copied. `None` when nothing is waiting.
    /// With it comes the ZAP `User-Id` libzmq attached to the message (on
    /// the peer's frames, not on the routing id the ROUTER prepends), read
    /// per message so that every command is checked against its sender's
    /// grant.
    fn recv_message(&self) -> zmq::Result<Option<Received>> {
        let mut frame = zmq::Message::new();
        match self.router.recv(&mut frame, zmq::DONTWAIT) {
            Ok(()) => {}
            Err(zmq::Error::EAGAIN) => return Ok(None),
            Err(error) => return Err(error),
        }
        let mut kept = frame.len();
        let mut frames = vec![frame.to_vec()];
        let mut whole = true;
        let mut user_id = None;
        while frame.get_more() {
            self.router.recv(&mut frame, 0)?;
            if user_id.is_none() {
                user_id = frame.gets("User-Id").map(str::to_owned);
            }
            whole = whole
                && frames.len() < protocol::MAX_MESSAGE_FRAMES
                && kept + frame.len() <= protocol::MAX_MESSAGE_BYTES;
            if whole {
                kept += frame.len();
                frames.push(frame.to_vec());
            }
        }
        Ok(Some(Received {
            frames,
            whole,
            user_id,
        }))
    }

    /// Answers FORBIDDEN: the peer's principal is not granted what it
    /// asked, and nothing was done.
    fn forbid(&self, peer: &ConnId, reason: String) {
        tracing::warn!(peer = %hex(peer), %reason, "refused: not granted");
        self.send(peer, vec![command::FORBIDDEN.to_vec(), reason.into_bytes()]);
    }

    /// Whether `grant` may act on `name`'s dead letters or queue; answers
    /// FORBIDDEN if not.
    fn may_act(
        &self,
        peer: &ConnId,
        grant: &Grant,
        name: &SubscriberName,
        action: &'static str,
    ) -> bool {
        match grant.check_operator_action(name, action) {
            Ok(()) => true,
            Err(refusal) => {
                self.forbid(peer, refusal_reason(refusal));
                false
            }
        }
    }

    /// Handles one message from the login `user_id`, of the principal of
    /// `grant`; an `Err` is a malformed message, answered with ERROR and
    /// otherwise ignored.
    fn handle(
        &mut self,
        peer: &ConnId,
        frames: Vec<Vec<u8>>,
        grant: &Grant,
        user_id: &str,
    ) -> Result<(), String> {
        let Some((verb, args)) = frames.split_first() else {
            return Err("empty message".into());
        };
        let arity = |n: usize| {
            if args.len() == n {
                Ok(())
            } else {
                Err(format!(
                    "{} takes {n} frames after the command, got {}",
                    String::from_utf8_lossy(verb),
                    args.len()
                ))
            }
        };
        match verb.as_slice() {
            command::HELLO => {
                arity(1)?;
                self.hello(peer, &args[0], grant, user_id);
                Ok(())
            }
            command::DEAD_LETTERS => {
                if args.len() > 2 {
                    arity(2)?;
                }
                let name = subscriber(args.first().ok_or("DEAD-LETTERS needs a name")?)?;
                let after = match args.get(1) {
                    Some(after) => std::str::from_utf8(after)
                        .map_err(|_| "the page mark is not UTF-8".to_owned())?,
                    None => "",
                };
                if !self.may_act(peer, grant, &name, "dead letters") {
                    return Ok(());
                }
                let page = self
                    .dead
                    .page(&name, after, self.limits.dead_letter_page_bytes);
                let reply = match page {
                    // A dead letter kept before the grant narrowed stays
                    // unread by it.
                    Ok((mut letters, next)) => {
                        letters.retain(|letter| grant.may_receive(&letter.envelope));
                        dead_letter_frames(letters, next)
                    }
                    Err(e) => vec![command::ERROR.to_vec(), e.to_string().into_bytes()],
                };
                self.send(peer, reply);
                Ok(())
            }
            command::REPLAY => {
                let (name, which) = args.split_first().ok_or("REPLAY needs a subscriber name")?;
                let name = subscriber(name)?;
                let which = replay_selection(which)?;
                if !self.may_act(peer, grant, &name, "replay") {
                    return Ok(());
                }
                let reply = match self.replay(&name, &which) {
                    Ok(count) => vec![command::REPLAYED.to_vec(), count.to_string().into_bytes()],
                    Err(e) => vec![command::ERROR.to_vec(), e.into_bytes()],
                };
                self.send(peer, reply);
                Ok(())
            }
            command::PURGE => {
                arity(1)?;
                let name = subscriber(&args[0])?;
                if !self.may_act(peer, grant, &name, "purge") {
                    return Ok(());
                }
                let reply = match self.dead.purge(&name) {
                    Ok(count) => {
                        tracing::info!(subscriber = %name, count, "dead letters purged");
                        vec![command::PURGED.to_vec(), count.to_string().into_bytes()]
                    }
                    Err(e) => vec![command::ERROR.to_vec(), e.to_string().into_bytes()],
                };
                self.send(peer, reply);
                Ok(())
            }
            command::UNSUBSCRIBE => {
                arity(1)?;
                let name = subscriber(&args[0])?;
                if !self.may_act(peer, grant, &name, "unsubscribe") {
                    return Ok(());
                }
                let reply = match self.unsubscribe(&name) {
                    Ok(()) => vec![command::UNSUBSCRIBED.to_vec()],
                    Err(e) => vec![command::ERROR.to_vec(), e.into_bytes()],
                };
                self.send(peer, reply);
                Ok(())
            }
            command::ACK
            | command::NACK
            | command::REJECT
            | command::RELEASE
            | command::PING
            | command::BYE
                if !self.conns.contains_key(peer) =>
            {
                // A hub that restarted does not know the connection.
                if verb.as_slice() != command::BYE {
                    self.send(peer, vec![command::UNKNOWN.to_vec()]);
                }
                Ok(())
            }
            _ if self
                .conns
                .get(peer)
                .is_some_and(|conn| conn.user_id != user_id) =>
            {
                // One connection is one ZAP login: never seen, but a
                // message must not act under another principal's hello.
                self.forbid(
                    peer,
                    format!(
                        "this connection said hello as another principal than {:?}",
                        grant.principal()
                    ),
                );
                Ok(())
            }
            command::PING => Ok(()),
            command::BYE => {
                self.drop_conn(peer, "said goodbye");
                Ok(())
            }
            command::ACK => {
                if args.is_empty() {
                    return Err("ACK needs at least one tag".into());
                }
                let seqs = args
                    .iter()
                    .map(|t| protocol::number::<u64>(t, "a tag"))
                    .collect::<Result<Vec<_>, _>>()?;
                let name = self.conns[peer].name.clone();
                let mut refused = Vec::new();
                for seq in seqs {
                    tracing::trace!(subscriber = %name, seq, peer = %hex(peer), "ack");
                    if self.settle_expired(peer, seq) {
                        continue;
                    }
                    if !self.queue(&name).holds(seq, peer) {
                        refused.push(seq);
                        continue;
                    }
                    let settled = self.queue(&name).ack(seq);
                    self.credit_back(settled);
                }
                if !refused.is_empty() {
                    self.forbid(peer, not_delivered_here("ACK", &refused));
                }
                Ok(())
            }
            command::NACK => {
                arity(2)?;
                let seq = protocol::number::<u64>(&args[0], "the tag")?;
                let delay = protocol::number::<u64>(&args[1], "the delay")?;
                let delay = Duration::from_millis(delay).min(self.limits.max_nack_delay);
                self.settle("NACK", peer, seq, |queue| {
                    queue.nack(seq, peer, delay, "nacked", Instant::now())
                });
                Ok(())
            }
            command::RELEASE => {
                arity(1)?;
                let seq = protocol::number::<u64>(&args[0], "the tag")?;
                self.settle("RELEASE", peer, seq, |queue| queue.release(seq, peer));
                Ok(())
            }
            command::REJECT => {
                arity(2)?;
                let seq = protocol::number::<u64>(&args[0], "the tag")?;
                let reason = String::from_utf8_lossy(&args[1]).into_owned();
                self.settle("REJECT", peer, seq, |queue| queue.reject(seq, peer, reason));
                Ok(())
            }
            _ => Err(format!(
                "unknown command {:?}",
                String::from_utf8_lossy(&verb[..verb.len().min(32)])
            )),
        }
    }

    /// Applies a NACK, RELEASE or REJECT from `peer` to its subscriber's
    /// queue: the holder's credit comes back, and what reached the attempt
    /// limit (or was rejected) goes to the dead letters. A late settlement
    /// of a delivery that expired only gives back its bytes.
    fn settle(
        &mut self,
        verb: &str,
        peer: &ConnId,
        seq: u64,
        apply: impl FnOnce(&mut Queue) -> (Settled, Option<Doomed>),
    ) {
        if self.settle_expired(peer, seq) {
            return;
        }
        let name = self.conns[peer].name.clone();
        if !self.queue(&name).holds(seq, peer) {
            self.forbid(peer, not_delivered_here(verb, &[seq]));
            return;
        }
        let (settled, doomed) = apply(self.queue(&name));
        self.credit_back(settled);
        self.bury(&name, doomed);
    }

    fn queue(&mut self, name: &SubscriberName) -> &mut Queue {
        self.queues
            .get_mut(name)
            .expect("a connection's queue exists while the connection does")
    }

    fn hello(&mut self, peer: &ConnId, json: &[u8], grant: &Grant, user_id: &str) {
        let hello = serde_json::from_slice::<protocol::Hello>(json)
            .map_err(|e| format!("hello is not valid JSON: {e}"))
            .and_then(protocol::Hello::validate);
        let hello = match hello {
            Ok(hello) => hello,
            Err(reason) => {
                tracing::warn!(peer = %hex(peer), %reason, "hello refused");
                self.send(peer, vec![command::DENIED.to_vec(), reason.into_bytes()]);
                return;
            }
        };
        let asked = Subscription::new(hello.name.clone()).select(hello.selection.clone());
        if let Err(refusal) = grant.check_subscription(&asked) {
            self.forbid(peer, refusal_reason(refusal));
            return;
        }
        if self.conns.contains_key(peer) {
            self.drop_conn(peer, "said hello again");
        }
        let registered = Registered {
            selection: Ok(hello.selection),
            max_attempts: hello.max_attempts,
        };
        if let Err(error) = self.register(&hello.name, registered, hello.start) {
            tracing::error!(subscriber = %hello.name, %error, "cannot save the subscriber");
            self.send(
                peer,
                vec![
                    command::DENIED.to_vec(),
                    format!("the hub cannot save the subscription: {error}").into_bytes(),
                ],
            );
            return;
        }
        self.queue(&hello.name).consumers.push(peer.clone());
        tracing::info!(subscriber = %hello.name, principal = grant.principal(), peer = %hex(peer), prefetch = hello.prefetch, "archive server connected");
        self.conns.insert(
            peer.clone(),
            Conn {
                name: hello.name,
                user_id: user_id.to_owned(),
                grant: grant.clone(),
                prefetch: usize::from(hello.prefetch),
                inflight: 0,
                inflight_bytes: 0,
                expired: HashMap::new(),
                last_seen: Instant::now(),
            },
        );
        let welcome = serde_json::to_vec(&self.welcome).expect("welcome serialises");
        self.send(peer, vec![command::WELCOME.to_vec(), welcome]);
    }

    /// Creates or updates a subscriber durably: once this returns, the
    /// queue keeps what it selects whether or not anyone consumes.
    fn register(
        &mut self,
        name: &SubscriberName,
        registered: Registered,
        start: StartPosition,
    ) -> Result<(), archiver_core::journal::JournalError> {
        match self.queues.get_mut(name) {
            Some(queue) if queue.registered == registered => return Ok(()),
            Some(queue) => queue.registered = registered,
            None => {
                let floor = match start {
                    StartPosition::New => self.journal.next_seq(),
                    StartPosition::Beginning => self.journal.first_seq(),
                };
                self.journal.set_cursor(&Queue::cursor_name(name), floor)?;
                self.queues
                    .insert(name.clone(), Queue::new(name.clone(), registered, floor));
            }
        }
        self.registry
            .save(self.queues.iter().map(|(n, q)| (n, &q.registered)))
    }

    fn unsubscribe(&mut self, name: &SubscriberName) -> Result<(), String> {
        let Some(queue) = self.queues.remove(name) else {
            return Ok(());
        };
        for conn in &queue.consumers {
            self.conns.remove(conn);
            self.send(conn, vec![command::GONE.to_vec()]);
        }
        self.registry
            .save(self.queues.iter().map(|(n, q)| (n, &q.registered)))
            .and_then(|()| self.journal.remove_cursor(&Queue::cursor_name(name)))
            .and_then(|()| self.dead.remove_all(name))
            .map_err(|e| e.to_string())?;
        tracing::info!(subscriber = %name, "subscriber deleted with its queue and dead letters");
        Ok(())
    }

    fn replay(&mut self, name: &SubscriberName, which: &Replay) -> Result<usize, String> {
        if !self.queues.contains_key(name) {
            return Ok(0);
        }
        let letters = self.dead.select(name, which).map_err(|e| e.to_string())?;
        let mut count = 0;
        for (path, letter) in letters {
            let appended = futures::executor::block_on(
                self.journal
                    .append(record::replayed(name, &letter.envelope)),
            );
            appended.map_err(|e| e.to_string())?;
            self.dead.remove(&path).map_err(|e| e.to_string())?;
            count += 1;
        }
        tracing::info!(subscriber = %name, count, "dead letters replayed");
        Ok(count)
    }

    /// Keeps dead letters; one that cannot be written goes back into the
    /// queue for later.
    fn bury(&mut self, name: &SubscriberName, doomed: impl IntoIterator<Item = Doomed>) {
        for doomed in doomed {
            let kept = self.read_envelope(doomed.seq).and_then(|envelope| {
                self.dead
                    .add(name, doomed.seq, &envelope, doomed.attempts, &doomed.reason)
                    .map(|()| envelope)
                    .map_err(|e| e.to_string())
            });
            match kept {
                Ok(envelope) => tracing::info!(
                    subscriber = %name, envelope_id = %envelope.id, attempts = doomed.attempts,
                    reason = %doomed.reason, "dead-lettered"
                ),
                Err(error) => {
                    tracing::error!(subscriber = %name, seq = doomed.seq, %error, "cannot keep a dead letter; it stays queued");
                    self.queue(name).retry_later(doomed, Instant::now());
                }
            }
        }
    }

    fn read_record(&self, seq: u64) -> Result<HubRecord, String> {
        let records = self.journal.read(seq, 1, 1).map_err(|e| e.to_string())?;
        let record = records
            .into_iter()
            .find(|r| r.seq == seq)
            .ok_or_else(|| format!("record {seq} is no longer in the journal"))?;
        record::read(record.payload).map_err(|e| e.to_string())
    }

    /// The envelope of `seq`, decoded (to keep it as a dead letter).
    fn read_envelope(&self, seq: u64) -> Result<Envelope, String> {
        self.read_record(seq)?.decode().map_err(|e| e.to_string())
    }

    /// A late ACK, NACK, RELEASE or REJECT of a delivery `peer` held past
    /// the ack deadline: its bytes come back to the connection, and
    /// nothing else is settled (the mail is queued again, perhaps
    /// delivered again under the same tag). True if `seq` was such a one.
    fn settle_expired(&mut self, peer: &ConnId, seq: u64) -> bool {
        let Some(conn) = self.conns.get_mut(peer) else {
            return false;
        };
        let Some(bytes) = conn.expired.remove(&seq) else {
            return false;
        };
        conn.inflight_bytes = conn.inflight_bytes.saturating_sub(bytes);
        true
    }

    fn credit_back(&mut self, settled: Settled) {
        if let Some(conn) = settled.held_by.and_then(|c| self.conns.get_mut(&c)) {
            conn.inflight = conn.inflight.saturating_sub(1);
            conn.inflight_bytes = conn.inflight_bytes.saturating_sub(settled.bytes);
        }
    }

    /// Takes back deliveries held past the ack deadline.
    fn expire_deliveries(&mut self, now: Instant) {
        let deadline = self.limits.ack_deadline;
        let names: Vec<SubscriberName> = self.queues.keys().cloned().collect();
        for name in names {
            let (settled, doomed) = self.queue(&name).expire(now, deadline);
            if !settled.is_empty() {
                tracing::warn!(subscriber = %name, count = settled.len(), ?deadline, "deliveries not settled within the ack deadline go back to the queue");
            }
            // The delivery's slot comes back, its bytes do not: they may
            // still be queued to the peer, and stay charged until it
            // settles the tag or goes.
            for settled in settled {
                if let Some(conn) = settled.held_by.and_then(|c| self.conns.get_mut(&c)) {
                    conn.inflight = conn.inflight.saturating_sub(1);
                    *conn.expired.entry(settled.seq).or_default() += settled.bytes;
                }
            }
            self.bury(&name, doomed);
        }
    }

    /// Swaps in a reloaded allowlist, at one point of the hub thread: the
    /// access first, then the ZAP gate (a peer that logs in between is
    /// checked per message against the new access anyway). A connection
    /// whose login is gone (its principal revoked, or its key or password
    /// rotated), or may no longer use its subscriber name, is dropped (what it held goes back to the queue, which stays) and
    /// told UNKNOWN, so its client says hello again and is refused; the
    /// others keep their connections under their principal's new grant.
    /// Tail peers reconnect when a tail login was revoked or rotated.
    fn reload(&mut self, reload: Reload) {
        self.access = reload.access;
        let peers: Vec<ConnId> = self.conns.keys().cloned().collect();
        for peer in peers {
            let conn = &self.conns[&peer];
            let kept = self
                .access
                .grant(Some(&conn.user_id))
                .filter(|grant| grant.check_operator_action(&conn.name, "hello").is_ok())
                .cloned();
            match kept {
                Some(grant) => {
                    if let Some(conn) = self.conns.get_mut(&peer) {
                        conn.grant = grant;
                    }
                }
                None => {
                    let principal = conn.grant.principal().to_owned();
                    tracing::warn!(principal, peer = %hex(&peer), "principal revoked or its login rotated: its connection is no longer served");
                    self.drop_conn(&peer, "its principal was revoked or its login rotated");
                    self.send(&peer, vec![command::UNKNOWN.to_vec()]);
                }
            }
        }
        *reload.shared.write().unwrap_or_else(|p| p.into_inner()) = reload.gate;
        if reload.retail
            && let Some(tail) = &self.tail
        {
            rebind(tail);
        }
        let _ = reload.reply.send(());
    }

    fn drop_conn(&mut self, peer: &ConnId, why: &str) {
        let Some(conn) = self.conns.remove(peer) else {
            return;
        };
        tracing::info!(subscriber = %conn.name, peer = %hex(peer), why, held = conn.inflight, "archive server connection dropped");
        if let Some(queue) = self.queues.get_mut(&conn.name) {
            let doomed = queue.abandon(peer);
            self.bury(&conn.name, doomed);
        }
    }

    /// Pings idle-or-not connections and drops silent ones.
    fn housekeeping(&mut self) {
        let now = Instant::now();
        if now < self.last_ping + self.welcome.heartbeat() {
            return;
        }
        self.last_ping = now;
        self.expire_deliveries(now);
        let silent: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| now.duration_since(c.last_seen) > self.welcome.timeout())
            .map(|(id, _)| id.clone())
            .collect();
        for peer in silent {
            self.drop_conn(&peer, "silent past the heartbeat timeout");
        }
        let peers: Vec<ConnId> = self.conns.keys().cloned().collect();
        for peer in peers {
            // A process that died closed its connection: the ROUTER no
            // longer knows it, and what it held goes back now rather than
            // after the timeout.
            if !self.send(&peer, vec![command::PING.to_vec()]) {
                self.drop_conn(&peer, "disconnected");
            }
        }
    }

    /// Delivers to every connection with credit what its queue has ready.
    fn pump(&mut self) {
        let now = Instant::now();
        let names: Vec<SubscriberName> = self.queues.keys().cloned().collect();
        for name in names {
            loop {
                let conns = &self.conns;
                let max_bytes = self.limits.max_unacked_bytes;
                // At least one delivery whatever its size, then up to the
                // prefetch and while under the byte bound (so the last one
                // may go over it by its own size: its size is known only
                // once it is read).
                let has_credit = |id: &ConnId| {
                    conns.get(id).is_some_and(|c| {
                        (c.inflight == 0 && c.inflight_bytes == 0)
                            || (c.inflight < c.prefetch && c.inflight_bytes < max_bytes)
                    })
                };
                let queue = self.queues.get_mut(&name).expect("listed above");
                if !queue.consumers.iter().any(has_credit) {
                    break;
                }
                let Some(mut ready) = queue.next_ready(&self.journal, now) else {
                    break;
                };
                let record = match ready.record.take() {
                    Some(record) => record,
                    None => match self.read_record(ready.seq) {
                        Ok(record) => record,
                        Err(error) => {
                            tracing::error!(subscriber = %name, seq = ready.seq, %error, "cannot read a queued envelope");
                            let queue = self.queues.get_mut(&name).expect("listed above");
                            queue.unsent(ready);
                            break;
                        }
                    },
                };
                // The stored selection may be wider than the grants of
                // those consuming it: each envelope goes only to a
                // connection whose principal may receive it.
                let header = &record.header;
                let granted =
                    |id: &ConnId| conns.get(id).is_some_and(|c| header.admitted_by(&c.grant));
                let queue = self.queues.get_mut(&name).expect("listed above");
                // Chosen only once there is something to deliver, so turns
                // go round fairly.
                let Some(peer) = queue.pick_consumer(|id| has_credit(id) && granted(id)) else {
                    if queue.consumers.iter().any(granted) {
                        // Waits for a granted connection's credit.
                        ready.record = Some(record);
                        queue.unsent(ready);
                        break;
                    }
                    tracing::warn!(subscriber = %name, seq = ready.seq, list = %header.list_id, "passed over: no principal consuming this subscriber is granted it");
                    queue.ack(ready.seq);
                    continue;
                };
                let bytes = record.envelope.len();
                let queue = self.queues.get_mut(&name).expect("listed above");
                let attempt =
                    queue.delivered(ready.seq, ready.deliveries, peer.clone(), bytes, now);
                let frames = vec![
                    command::DELIVER.to_vec(),
                    protocol::tag(ready.seq),
                    attempt.to_string().into_bytes(),
                    record.envelope.to_vec(),
                ];
                tracing::trace!(subscriber = %name, seq = ready.seq, attempt, peer = %hex(&peer), "deliver");
                if self.send(&peer, frames) {
                    if let Some(conn) = self.conns.get_mut(&peer) {
                        conn.inflight += 1;
                        conn.inflight_bytes += bytes;
                    }
                } else {
                    ready.record = Some(record);
                    self.queues
                        .get_mut(&name)
                        .expect("listed above")
                        .unsent(ready);
                    self.drop_conn(&peer, "unreachable");
                }
            }
        }
    }

    /// Sends to a peer without blocking; false when the peer is gone.
    fn send(&self, peer: &ConnId, frames: Vec<Vec<u8>>) -> bool {
        let mut message = Vec::with_capacity(frames.len() + 1);
        message.push(peer.clone());
        message.extend(frames);
        match self.router.send_multipart(message, zmq::DONTWAIT) {
            Ok(()) => true,
            Err(zmq::Error::EHOSTUNREACH) | Err(zmq::Error::EAGAIN) => false,
            Err(error) => {
                tracing::warn!(peer = %hex(peer), %error, "sending to a peer failed");
                false
            }
        }
    }

    fn read_tail_subscriptions(&mut self) {
        let Some(tail) = &self.tail else { return };
        for _ in 0..BATCH {
            let Ok(frame) = tail.recv_bytes(zmq::DONTWAIT) else {
                return;
            };
            // A subscription message: 1 (subscribe) or 0, then the topic.
            if frame.first() == Some(&1) && frame[1..].starts_with(protocol::TAIL_HELLO_PREFIX) {
                // Everything this tail subscribed before the hello is in
                // force now: tell it so on the hello's own topic.
                let _ = tail.send(&frame[1..], zmq::DONTWAIT);
            }
        }
    }

    fn tail_publish(&self, record: &HubRecord) {
        let Some(tail) = &self.tail else { return };
        let header = &record.header;
        if !header.admitted_by(&self.tail_grant) {
            return;
        }
        let frames = vec![
            protocol::tail_topic(header.kind, &header.list_id),
            record.envelope.to_vec(),
        ];
        // PUB never blocks: a tail that cannot keep up loses envelopes.
        let _ = tail.send_multipart(frames, zmq::DONTWAIT);
    }

    fn save_floors(&mut self) {
        for queue in self.queues.values_mut() {
            if let Err(error) = queue.save_floor(&self.journal) {
                tracing::error!(subscriber = %queue.name, %error, "cannot save the queue's position");
            }
        }
    }

    fn status(&self) -> Vec<QueueStatus> {
        self.queues
            .values()
            .map(|q| {
                let (unsettled, unexamined) = q.backlog(&self.journal);
                QueueStatus {
                    name: q.name.clone(),
                    connections: q.consumers.len(),
                    unsettled,
                    held: q.held(),
                    unexamined,
                    dead_letters: self.dead.count(&q.name).unwrap_or(0),
                    error: q
                        .registered
                        .selection
                        .as_ref()
                        .err()
                        .map(|u| u.error.clone()),
                    pinned_from: q.floor(),
                    floor_moved_at: q.floor_moved_at,
                }
            })
            .collect()
    }
}

/// The reason of a grant's refusal, for the FORBIDDEN reply.
fn refusal_reason(refusal: BackendError) -> String {
    match refusal {
        BackendError::Forbidden(reason) => reason.to_string(),
        other => other.to_string(),
    }
}

/// The refusal of settling tags this connection does not hold.
fn not_delivered_here(verb: &str, tags: &[u64]) -> String {
    let shown: Vec<String> = tags.iter().take(8).map(u64::to_string).collect();
    let more = if tags.len() > shown.len() {
        ", ..."
    } else {
        ""
    };
    format!(
        "{verb} of tag {}{more}: not delivered to this connection",
        shown.join(", ")
    )
}

fn subscriber(frame: &[u8]) -> Result<SubscriberName, String> {
    std::str::from_utf8(frame)
        .map_err(|_| "the subscriber name is not UTF-8".to_owned())
        .and_then(|n| SubscriberName::new(n).map_err(|e| e.to_string()))
}

fn replay_selection(frames: &[Vec<u8>]) -> Result<Replay, String> {
    if frames == [b"all".to_vec()] {
        return Ok(Replay::All);
    }
    frames
        .iter()
        .map(|f| {
            std::str::from_utf8(f)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| "REPLAY takes `all` or envelope ids".to_owned())
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Replay::Only)
}

/// The reply to DEAD-LETTERS: the mark to ask the next page after (empty
/// on the last page), then per dead letter a JSON frame (`attempts`,
/// `reason`, `dead_at`) and the envelope as one byte string.
fn dead_letter_frames(letters: Vec<DeadLetter>, next: Option<String>) -> Vec<Vec<u8>> {
    let mut frames = vec![
        command::DEAD_LETTERS.to_vec(),
        next.unwrap_or_default().into_bytes(),
    ];
    for letter in letters {
        frames.push(
            serde_json::to_vec(&protocol::DeadLetterMeta::of(&letter))
                .expect("dead-letter metadata serialises"),
        );
        frames.push(wire::to_bytes(&letter.envelope));
    }
    frames
}

/// Unbinds the tail and binds it again on the same endpoint: libzmq ends
/// the connections accepted on an endpoint when it is unbound, so every
/// tail peer reconnects, through the current ZAP gate. Retries the bind
/// for up to a second while the old listener closes.
fn rebind(tail: &zmq::Socket) {
    let Some(endpoint) = tail.get_last_endpoint().ok().and_then(Result::ok) else {
        return;
    };
    if let Err(error) = tail.unbind(&endpoint) {
        tracing::error!(%endpoint, %error, "cannot unbind the live tail to drop revoked peers");
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match tail.bind(&endpoint) {
            Ok(()) => return,
            Err(zmq::Error::EADDRINUSE) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(error) => {
                tracing::error!(%endpoint, %error, "cannot bind the live tail again after a reload: the tail is down until the hub restarts");
                return;
            }
        }
    }
}

/// A routing id for logs.
fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}
