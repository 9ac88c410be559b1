//! A durable subscription's socket thread: one DEALER per hub, the hello,
//! deliveries into a bounded channel, settlements back, heartbeats, and
//! reconnection when a hub falls silent or restarts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use archiver_core::{BackendError, CloseFlag, Delivery, ErrorDetail, Settle, Subscription};
use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use super::capabilities::Learned;
use super::link::Link;
use crate::config::{ClientConfig, DEFAULT_HEARTBEAT, DEFAULT_TIMEOUT};
use crate::mailbox::{Inbox, Mailbox, mailbox};
use crate::protocol::{self, Hello, Welcome, WireCapabilities, command};

/// What deliveries and the stream ask of the thread.
pub enum ConsumerCommand {
    Ack {
        link: usize,
        seq: u64,
    },
    Nack {
        link: usize,
        seq: u64,
        delay: Duration,
    },
    Reject {
        link: usize,
        seq: u64,
        reason: String,
    },
    Release {
        link: usize,
        seq: u64,
    },
    Stop,
}

type Item = Result<Delivery, BackendError>;

/// What [`start`] gives: the deliveries (dropping the stream says goodbye
/// to the hubs, which redeliver what it held), a mailbox that stops the
/// thread (for the client's close), and the answer that says once every
/// hub welcomed the subscription (or why not).
type Started = (
    futures::stream::BoxStream<'static, Item>,
    Mailbox<ConsumerCommand>,
    oneshot::Receiver<Result<(), BackendError>>,
);

/// Starts the thread. Its deliveries refuse to settle once `closed` is
/// set, and hand themselves back on the runtime current here. What each
/// hub's WELCOME says it guarantees goes into `learned`.
pub fn start(
    context: zmq::Context,
    config: &ClientConfig,
    subscription: &Subscription,
    closed: CloseFlag,
    learned: Arc<Learned>,
) -> Result<Started, BackendError> {
    let (mailbox, inbox) = mailbox(&context).map_err(crate::setup_error)?;
    let capacity = usize::from(subscription.prefetch) * config.endpoints.len() + 1;
    let (sender, receiver) = mpsc::channel(capacity);
    let (ready, answer) = oneshot::channel();
    let hello =
        serde_json::to_vec(&Hello::for_subscription(subscription)).expect("hello serialises");
    let consumer = Consumer {
        context,
        config: config.clone(),
        hello,
        links: Vec::new(),
        inbox,
        mailbox: mailbox.clone(),
        deliveries: sender,
        max_attempts: subscription.max_attempts,
        closed,
        welcome: Welcome {
            heartbeat_ms: DEFAULT_HEARTBEAT.as_millis() as u64,
            timeout_ms: DEFAULT_TIMEOUT.as_millis() as u64,
            capabilities: WireCapabilities::of_hub(DEFAULT_TIMEOUT),
        },
        learned,
    };
    let runtime = tokio::runtime::Handle::try_current().ok();
    std::thread::Builder::new()
        .name(format!("zmq-sub-{}", subscription.name))
        .spawn(move || {
            let _entered = runtime.as_ref().map(tokio::runtime::Handle::enter);
            consumer.run(ready)
        })
        .map_err(|e| {
            BackendError::Unavailable(ErrorDetail::caused_by(
                format!("cannot start a consumer thread: {e}"),
                e,
            ))
        })?;
    let goodbye = mailbox.on_drop(ConsumerCommand::Stop);
    let deliveries = ReceiverStream::new(receiver).map(move |item| {
        // The stream owns the guard: dropping it stops the thread at once.
        let _owned = &goodbye;
        item
    });
    Ok((deliveries.boxed(), mailbox, answer))
}

/// Settles one delivery through the consumer thread.
struct ZmqSettle {
    mailbox: Mailbox<ConsumerCommand>,
    link: usize,
    seq: u64,
}

impl ZmqSettle {
    fn send(&self, command: ConsumerCommand) -> Result<(), BackendError> {
        // A stopped consumer said goodbye: the hub redelivers it anyway.
        self.mailbox.send(command).map_err(|_| BackendError::Closed)
    }
}

#[async_trait]
impl Settle for ZmqSettle {
    async fn ack(self: Box<Self>) -> Result<(), BackendError> {
        self.send(ConsumerCommand::Ack {
            link: self.link,
            seq: self.seq,
        })
    }

    async fn requeue(self: Box<Self>, delay: Duration) -> Result<(), BackendError> {
        self.send(ConsumerCommand::Nack {
            link: self.link,
            seq: self.seq,
            delay,
        })
    }

    /// The hub records the attempts it counted itself: the same number.
    async fn bury(self: Box<Self>, reason: String, _attempts: u32) -> Result<(), BackendError> {
        self.send(ConsumerCommand::Reject {
            link: self.link,
            seq: self.seq,
            reason,
        })
    }

    async fn hand_back(self: Box<Self>) -> Result<(), BackendError> {
        self.send(ConsumerCommand::Release {
            link: self.link,
            seq: self.seq,
        })
    }

    /// The hub counts a release as an attempt and dead-letters at the limit.
    fn broker_limits_hand_back(&self) -> bool {
        true
    }
}

/// One hub as this consumer sees it.
struct HubLink {
    link: Link,
    welcomed: bool,
    last_seen: Instant,
    last_sent: Instant,
}

struct Consumer {
    context: zmq::Context,
    config: ClientConfig,
    hello: Vec<u8>,
    links: Vec<HubLink>,
    inbox: Inbox<ConsumerCommand>,
    mailbox: Mailbox<ConsumerCommand>,
    deliveries: mpsc::Sender<Item>,
    max_attempts: u32,
    closed: CloseFlag,
    welcome: Welcome,
    learned: Arc<Learned>,
}

/// Why the thread stops.
enum Stop {
    /// Asked to, or the stream was dropped: say goodbye.
    Leaving,
    /// The hub ended the subscription or refused it.
    Ended,
}

impl Consumer {
    fn run(mut self, ready: oneshot::Sender<Result<(), BackendError>>) {
        match self.connect_all() {
            Ok(()) => {
                let _ = ready.send(Ok(()));
            }
            Err(error) => {
                let _ = ready.send(Err(error));
                return;
            }
        }
        let stop = self.serve();
        if let Stop::Leaving = stop {
            for hub in &self.links {
                let _ = hub.link.socket.send(command::BYE, zmq::DONTWAIT);
            }
        }
    }

    fn open(&self, endpoint: &str) -> Result<HubLink, BackendError> {
        let link = Link::open(&self.context, endpoint, &self.config, zmq::DEALER)?;
        let hub = HubLink {
            link,
            welcomed: false,
            last_seen: Instant::now(),
            last_sent: Instant::now(),
        };
        self.say_hello(&hub);
        Ok(hub)
    }

    fn say_hello(&self, hub: &HubLink) {
        let _ = hub
            .link
            .socket
            .send_multipart([command::HELLO, &self.hello[..]], zmq::DONTWAIT);
    }

    /// Connects to every hub and waits for each welcome.
    fn connect_all(&mut self) -> Result<(), BackendError> {
        for endpoint in self.config.endpoints.clone() {
            let hub = self.open(&endpoint)?;
            self.links.push(hub);
        }
        let deadline = Instant::now() + self.config.connect_timeout;
        while self.links.iter().any(|h| !h.welcomed) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let silent: Vec<&str> = self
                    .links
                    .iter()
                    .filter(|h| !h.welcomed)
                    .map(|h| h.link.endpoint.as_str())
                    .collect();
                return Err(BackendError::Unavailable(
                    format!(
                        "no hub answered at {} within {:?}",
                        silent.join(", "),
                        self.config.connect_timeout
                    )
                    .into(),
                ));
            }
            if let Some(stop) = self.poll_once(left.min(Duration::from_millis(100)))? {
                return Err(match stop {
                    Stop::Leaving => BackendError::Closed,
                    Stop::Ended => BackendError::Unavailable("the subscription ended".into()),
                });
            }
        }
        Ok(())
    }

    fn serve(&mut self) -> Stop {
        loop {
            match self.poll_once(self.welcome.heartbeat()) {
                Ok(Some(stop)) => return stop,
                Ok(None) => {}
                Err(error) => {
                    let _ = self.deliveries.try_send(Err(error));
                    return Stop::Ended;
                }
            }
            if self.deliveries.is_closed() {
                return Stop::Leaving;
            }
            if let Err(error) = self.heartbeat() {
                let _ = self.deliveries.try_send(Err(error));
                return Stop::Ended;
            }
        }
    }

    /// Waits up to `wait` for something to do and does it. An `Err` is a
    /// failure the subscription cannot recover from (refused credentials,
    /// a refused hello).
    fn poll_once(&mut self, wait: Duration) -> Result<Option<Stop>, BackendError> {
        let (readable, failed) = {
            let mut items = vec![self.inbox.bell().as_poll_item(zmq::POLLIN)];
            for hub in &self.links {
                items.push(hub.link.socket.as_poll_item(zmq::POLLIN));
                items.push(hub.link.monitor().as_poll_item(zmq::POLLIN));
            }
            zmq::poll(&mut items, wait.as_millis().max(1) as i64).map_err(|e| {
                BackendError::Unavailable(ErrorDetail::caused_by(format!("poll: {e}"), e))
            })?;
            let readable: Vec<usize> = (0..self.links.len())
                .filter(|i| items[1 + 2 * i].is_readable())
                .collect();
            let failed: Vec<usize> = (0..self.links.len())
                .filter(|i| items[2 + 2 * i].is_readable())
                .collect();
            (readable, failed)
        };
        for i in failed {
            if let Some(failure) = self.links[i].link.handshake_failure() {
                return Err(failure);
            }
        }
        for i in readable {
            if let Some(stop) = self.read(i)? {
                return Ok(Some(stop));
            }
        }
        // Commands are taken on every wake: the bell only ends the poll early.
        Ok(self.commands())
    }

    /// Forwards settlements to their hubs, acks batched per hub.
    fn commands(&mut self) -> Option<Stop> {
        let mut acks: Vec<Vec<Vec<u8>>> = vec![Vec::new(); self.links.len()];
        let mut stop = None;
        for command in self.inbox.take() {
            let (link, frames) = match command {
                ConsumerCommand::Ack { link, seq } => {
                    acks[link].push(protocol::tag(seq));
                    continue;
                }
                ConsumerCommand::Nack { link, seq, delay } => (
                    link,
                    vec![
                        command::NACK.to_vec(),
                        protocol::tag(seq),
                        delay.as_millis().to_string().into_bytes(),
                    ],
                ),
                ConsumerCommand::Reject { link, seq, reason } => (
                    link,
                    vec![
                        command::REJECT.to_vec(),
                        protocol::tag(seq),
                        reason.into_bytes(),
                    ],
                ),
                ConsumerCommand::Release { link, seq } => {
                    (link, vec![command::RELEASE.to_vec(), protocol::tag(seq)])
                }
                ConsumerCommand::Stop => {
                    stop = Some(Stop::Leaving);
                    continue;
                }
            };
            self.send_settlement(link, frames);
        }
        for (link, tags) in acks.into_iter().enumerate() {
            if !tags.is_empty() {
                let mut frames = vec![command::ACK.to_vec()];
                frames.extend(tags);
                self.send_settlement(link, frames);
            }
        }
        stop
    }

    /// Sends without blocking the consumer thread; false if it could not
    /// go now (no connection to the hub, or its queue full).
    fn send(&mut self, link: usize, frames: Vec<Vec<u8>>) -> bool {
        let hub = &mut self.links[link];
        let sent = hub.link.socket.send_multipart(frames, zmq::DONTWAIT);
        if sent.is_ok() {
            hub.last_sent = Instant::now();
        }
        sent.is_ok()
    }

    /// Sends a settlement. One that cannot go now is not kept: the hub
    /// delivers the mail again once its ack deadline passes or the
    /// connection is gone, so it costs at worst a duplicate, and the
    /// warning says it happened.
    fn send_settlement(&mut self, link: usize, frames: Vec<Vec<u8>>) {
        if !self.send(link, frames) {
            let hub = &self.links[link].link.endpoint;
            tracing::warn!(%hub, "a settlement could not be sent now; the hub delivers that mail again");
        }
    }

    /// Handles what one hub sent.
    fn read(&mut self, i: usize) -> Result<Option<Stop>, BackendError> {
        while let Ok(frames) = self.links[i].link.socket.recv_multipart(zmq::DONTWAIT) {
            self.links[i].last_seen = Instant::now();
            let Some((verb, args)) = frames.split_first() else {
                continue;
            };
            match verb.as_slice() {
                command::DELIVER => self.deliver(i, args.to_vec()),
                command::PING => {}
                command::WELCOME => {
                    if let Ok(welcome) =
                        serde_json::from_slice::<Welcome>(args.first().map_or(&[][..], |a| a))
                    {
                        self.learned
                            .record(&self.links[i].link.endpoint, welcome.capabilities);
                        self.welcome = welcome;
                    }
                    self.links[i].welcomed = true;
                }
                command::UNKNOWN => {
                    tracing::info!(hub = %self.links[i].link.endpoint, "the hub restarted; saying hello again");
                    // Until welcomed again, a FORBIDDEN refuses the hello.
                    self.links[i].welcomed = false;
                    self.say_hello(&self.links[i]);
                }
                command::DENIED => {
                    let reason = args
                        .first()
                        .map(|r| String::from_utf8_lossy(r).into_owned());
                    return Err(BackendError::InvalidSubscription(format!(
                        "the hub at {} refused the subscription: {}",
                        self.links[i].link.endpoint,
                        reason.unwrap_or_default()
                    )));
                }
                command::FORBIDDEN => {
                    let reason = args
                        .first()
                        .map(|r| String::from_utf8_lossy(r).into_owned())
                        .unwrap_or_default();
                    if !self.links[i].welcomed {
                        return Err(BackendError::Forbidden(
                            format!(
                                "the hub at {} refused the subscription: {reason}",
                                self.links[i].link.endpoint
                            )
                            .into(),
                        ));
                    }
                    // A settlement the hub refused (a tag it no longer
                    // counts as this connection's): nothing was settled.
                    tracing::warn!(hub = %self.links[i].link.endpoint, %reason, "the hub refused a settlement");
                }
                command::GONE => return Ok(Some(Stop::Ended)),
                command::ERROR => {
                    let reason = args
                        .first()
                        .map(|r| String::from_utf8_lossy(r).into_owned());
                    tracing::warn!(hub = %self.links[i].link.endpoint, reason = ?reason, "the hub refused a message");
                }
                other => tracing::warn!(
                    hub = %self.links[i].link.endpoint,
                    command = %String::from_utf8_lossy(&other[..other.len().min(32)]),
                    "unexpected message from the hub ignored"
                ),
            }
        }
        Ok(None)
    }

    fn deliver(&mut self, link: usize, args: Vec<Vec<u8>>) {
        let endpoint = &self.links[link].link.endpoint;
        let Ok([tag, attempt, envelope]) = <[Vec<u8>; 3]>::try_from(args) else {
            tracing::warn!(hub = %endpoint, "a delivery not of tag, attempt and envelope ignored");
            return;
        };
        let Ok(seq) = protocol::number::<u64>(&tag, "tag") else {
            tracing::warn!(hub = %endpoint, "a delivery with a malformed tag ignored");
            return;
        };
        let envelope = protocol::number::<u32>(&attempt, "attempt")
            .map_err(|e| e.to_string())
            .and_then(|attempt| {
                protocol::parse_envelope(envelope)
                    .map(|envelope| (attempt, envelope))
                    .map_err(|e| e.to_string())
            });
        match envelope {
            Ok((attempt, envelope)) => {
                let settle = ZmqSettle {
                    mailbox: self.mailbox.clone(),
                    link,
                    seq,
                };
                let delivery = Delivery::new(
                    envelope,
                    attempt,
                    self.max_attempts,
                    self.closed.clone(),
                    Box::new(settle),
                );
                // Credit keeps the channel from filling; if it does, the
                // delivery is dropped here and so released to the hub.
                let _ = self.deliveries.try_send(Ok(delivery));
            }
            Err(reason) => {
                tracing::warn!(hub = %endpoint, seq, %reason, "malformed delivery dead-lettered");
                self.send_settlement(
                    link,
                    vec![
                        command::REJECT.to_vec(),
                        tag,
                        format!("malformed on the wire: {reason}").into_bytes(),
                    ],
                );
            }
        }
    }

    /// Pings idle hubs; reconnects to one that fell silent.
    fn heartbeat(&mut self) -> Result<(), BackendError> {
        let now = Instant::now();
        for i in 0..self.links.len() {
            if now.duration_since(self.links[i].last_seen) > self.welcome.timeout() {
                let endpoint = self.links[i].link.endpoint.clone();
                tracing::warn!(hub = %endpoint, "no word from the hub; reconnecting");
                self.links[i] = self.open(&endpoint)?;
                let _ = self.deliveries.try_send(Err(BackendError::Unavailable(
                    format!(
                        "no word from the hub at {endpoint} for {:?}; reconnected",
                        self.welcome.timeout()
                    )
                    .into(),
                )));
            } else if now.duration_since(self.links[i].last_sent) >= self.welcome.heartbeat() {
                // A ping that cannot go now is not missed: the next one
                // follows, and silence from the hub reconnects.
                let _ = self.send(i, vec![command::PING.to_vec()]);
            }
        }
        Ok(())
    }
}
