//! The archive server's side: [`ZmqClient`] connects to one or more hubs
//! and consumes, tails, and administers dead letters over ZeroMQ.

mod capabilities;
mod consumer;
mod link;
mod request;
mod tail;

use std::sync::{Arc, Mutex};

use archiver_core::wire;
use archiver_core::{
    BackendError, CloseFlag, Connection, DeadLetter, Deliveries, ErrorDetail, Operator, Replay,
    Selection, Subscriber, SubscriberCapabilities, SubscriberName, Subscription, Tail,
};
use async_trait::async_trait;

use crate::config::ClientConfig;
use crate::protocol::{DeadLetterMeta, command};
use capabilities::Learned;
use link::check_endpoint;

/// An archive server's client of one or more hubs. Cheap to clone.
///
/// It plays the archive server's role ([`Subscriber`]: `subscribe` consumes
/// a durable queue from every hub, `tail` follows live traffic) and the
/// operator's ([`Operator`]: dead letters are listed, replayed and purged, and
/// subscribers deleted, by asking the hubs). Publishing is the list
/// server's role, which its [`ZmqHub`](crate::ZmqHub) plays.
///
/// ```no_run
/// # async fn demo() -> Result<(), archiver_core::BackendError> {
/// use archiver_core::{Subscriber, Subscription};
/// use backend_zeromq::{ClientConfig, ZmqClient};
/// let client = ZmqClient::connect(ClientConfig::new("tcp://lists.example.org:5555"))?;
/// let deliveries = client.subscribe(&Subscription::new("hyperkitty".parse().unwrap())).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ZmqClient {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    config: ClientConfig,
    context: zmq::Context,
    learned: Arc<Learned>,
    closed: CloseFlag,
    stoppers: Mutex<Vec<Box<dyn Fn() + Send>>>,
}

impl ZmqClient {
    /// A client of the hubs in `config`. Nothing is sent until it is used;
    /// fails only when an endpoint is not a ZeroMQ endpoint (`InvalidUrl`),
    /// or with `Auth` when it asks for PLAIN and CURVE together, or for
    /// CURVE on a libzmq without it.
    pub fn connect(config: ClientConfig) -> Result<Self, BackendError> {
        if config.endpoints.is_empty() {
            return Err(BackendError::InvalidUrl("no hub endpoint given".into()));
        }
        for endpoint in config.endpoints.iter().chain(&config.tail_endpoints) {
            check_endpoint(endpoint)?;
        }
        config.check_security()?;
        Ok(Self {
            inner: Arc::new(ClientInner {
                config,
                context: zmq::Context::new(),
                learned: Arc::default(),
                closed: CloseFlag::new(),
                stoppers: Mutex::default(),
            }),
        })
    }

    fn ensure_open(&self) -> Result<(), BackendError> {
        self.inner.closed.ensure_open()
    }

    fn on_close(&self, stop: impl Fn() + Send + 'static) {
        self.inner
            .stoppers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(stop));
    }

    /// Sends one request to every hub; returns the replies in order.
    async fn ask_all(&self, frames: Vec<Vec<u8>>) -> Result<Vec<Vec<Vec<u8>>>, BackendError> {
        self.with_each_hub(move |ask| ask(frames.clone())).await
    }

    /// Runs `each` once per hub, in order, on a blocking thread (requests
    /// are synchronous zmq); `each` is given `ask`, which sends one
    /// request to that hub and returns its reply. Stops at the first error.
    async fn with_each_hub<T: Send + 'static>(
        &self,
        each: impl Fn(
            &dyn Fn(Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>, BackendError>,
        ) -> Result<T, BackendError>
        + Send
        + 'static,
    ) -> Result<Vec<T>, BackendError> {
        self.ensure_open()?;
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            inner
                .config
                .endpoints
                .iter()
                .map(|endpoint| {
                    each(&|frames| {
                        request::request(&inner.context, endpoint, &inner.config, frames)
                    })
                })
                .collect()
        })
        .await
        .map_err(|e| {
            BackendError::Unavailable(ErrorDetail::caused_by(
                format!("request task failed: {e}"),
                e,
            ))
        })?
    }
}

/// Waits for a socket thread's "attached" answer.
async fn attached(
    answer: tokio::sync::oneshot::Receiver<Result<(), BackendError>>,
) -> Result<(), BackendError> {
    answer.await.unwrap_or_else(|_| {
        Err(BackendError::Unavailable(
            "the socket thread stopped".into(),
        ))
    })
}

#[async_trait]
impl Connection for ZmqClient {
    async fn close(&self) -> Result<(), BackendError> {
        self.inner.closed.close();
        let stoppers = std::mem::take(
            &mut *self
                .inner
                .stoppers
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for stop in stoppers {
            stop();
        }
        Ok(())
    }
}

#[async_trait]
impl Subscriber for ZmqClient {
    /// What the hubs said in their last WELCOME to a subscription of this
    /// client (a hub counts as one of default settings until it has
    /// welcomed one): read it after `subscribe` to know the hubs' own.
    fn subscriber_capabilities(&self) -> SubscriberCapabilities {
        self.inner.learned.across(&self.inner.config.endpoints)
    }

    async fn subscribe(&self, subscription: &Subscription) -> Result<Deliveries, BackendError> {
        self.ensure_open()?;
        let (stream, stopper, answer) = consumer::start(
            self.inner.context.clone(),
            &self.inner.config,
            subscription,
            self.inner.closed.clone(),
            Arc::clone(&self.inner.learned),
        )?;
        attached(answer).await?;
        self.on_close(move || {
            let _ = stopper.send(consumer::ConsumerCommand::Stop);
        });
        Ok(self.inner.closed.until_closed(stream))
    }

    async fn tail(&self, selection: &Selection) -> Result<Tail, BackendError> {
        self.ensure_open()?;
        let (stream, stopper, answer) =
            tail::start(self.inner.context.clone(), &self.inner.config, selection)?;
        attached(answer).await?;
        self.on_close(move || {
            let _ = stopper.send(tail::StopTail);
        });
        Ok(self.inner.closed.until_closed(stream))
    }
}

#[async_trait]
impl Operator for ZmqClient {
    async fn unsubscribe(&self, name: &SubscriberName) -> Result<(), BackendError> {
        let replies = self
            .ask_all(vec![
                command::UNSUBSCRIBE.to_vec(),
                name.as_str().as_bytes().to_vec(),
            ])
            .await?;
        expect_reply(&replies, command::UNSUBSCRIBED).map(drop)
    }

    async fn dead_letters(&self, name: &SubscriberName) -> Result<Vec<DeadLetter>, BackendError> {
        let name = name.as_str().as_bytes().to_vec();
        let per_hub = self
            .with_each_hub(move |ask| {
                // Page by page, each after the mark the previous one gave.
                let mut letters = Vec::new();
                let mut after = Vec::new();
                loop {
                    let reply = ask(vec![command::DEAD_LETTERS.to_vec(), name.clone(), after])?;
                    let args = expect_reply(std::slice::from_ref(&reply), command::DEAD_LETTERS)?;
                    let (next, pairs) = args[0].split_first().ok_or_else(|| {
                        BackendError::Broker("a dead-letter page without its mark".into())
                    })?;
                    letters.extend(dead_letter_page(pairs)?);
                    if next.is_empty() {
                        return Ok(letters);
                    }
                    after = next.clone();
                }
            })
            .await?;
        let mut letters: Vec<DeadLetter> = per_hub.into_iter().flatten().collect();
        letters.sort_by_key(|l| l.dead_at);
        Ok(letters)
    }

    async fn purge_dead_letters(&self, name: &SubscriberName) -> Result<usize, BackendError> {
        let replies = self
            .ask_all(vec![
                command::PURGE.to_vec(),
                name.as_str().as_bytes().to_vec(),
            ])
            .await?;
        counts(&replies, command::PURGED)
    }

    async fn replay_dead_letters(
        &self,
        name: &SubscriberName,
        which: Replay,
    ) -> Result<usize, BackendError> {
        let mut frames = vec![command::REPLAY.to_vec(), name.as_str().as_bytes().to_vec()];
        match &which {
            Replay::All => frames.push(b"all".to_vec()),
            Replay::Only(ids) => frames.extend(ids.iter().map(|id| id.to_string().into_bytes())),
        }
        let replies = self.ask_all(frames).await?;
        counts(&replies, command::REPLAYED)
    }
}
/// Checks every hub answered with `verb`; returns the replies' arguments.
fn expect_reply<'a>(
    replies: &'a [Vec<Vec<u8>>],
    verb: &[u8],
) -> Result<Vec<&'a [Vec<u8>]>, BackendError> {
    replies
        .iter()
        .map(|reply| match reply.split_first() {
            Some((first, rest)) if first == verb => Ok(rest),
            _ => Err(BackendError::Broker(
                format!(
                    "the hub answered {:?} where {:?} was expected",
                    reply
                        .first()
                        .map(|f| String::from_utf8_lossy(f).into_owned()),
                    String::from_utf8_lossy(verb)
                )
                .into(),
            )),
        })
        .collect()
}

/// The sum of the counts every hub answered with `verb` (REPLAYED, PURGED).
fn counts(replies: &[Vec<Vec<u8>>], verb: &[u8]) -> Result<usize, BackendError> {
    expect_reply(replies, verb)?
        .into_iter()
        .map(|args| {
            args.first()
                .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok())
                .ok_or_else(|| {
                    BackendError::Broker(
                        format!("{} without a count", String::from_utf8_lossy(verb)).into(),
                    )
                })
        })
        .sum()
}

/// The dead letters of one DEAD-LETTERS reply page: metadata and envelope
/// frames in pairs.
fn dead_letter_page(frames: &[Vec<u8>]) -> Result<Vec<DeadLetter>, BackendError> {
    if !frames.len().is_multiple_of(2) {
        return Err(BackendError::Broker(
            "dead-letter reply frames do not pair".into(),
        ));
    }
    frames
        .chunks(2)
        .map(|pair| {
            let meta: DeadLetterMeta = serde_json::from_slice(&pair[0]).map_err(|e| {
                BackendError::Broker(ErrorDetail::caused_by(
                    format!("dead-letter metadata: {e}"),
                    e,
                ))
            })?;
            let envelope = wire::from_bytes(bytes::Bytes::from(pair[1].clone()))?;
            Ok(meta.into_letter(envelope))
        })
        .collect()
}
