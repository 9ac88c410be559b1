//! The live tail: a SUB socket per hub on its PUB/SUB endpoint, subscribed
//! to the selection's list-id topic prefixes. Nothing is kept for it.
//!
//! The slow-joiner problem (a subscription takes effect some time after
//! `subscribe` returns) is solved with a hello topic: after its real
//! topics the tail subscribes to `\x01hello/<token>`, and the hub answers
//! on that topic when it sees the subscription. Subscriptions travel in
//! order, so once the answer arrives every topic is in force and `tail()`
//! returns.

use std::time::{Duration, Instant};

use archiver_core::{BackendError, Envelope, ErrorDetail, Selection};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use super::link::Link;
use crate::config::ClientConfig;
use crate::mailbox::{Inbox, Mailbox, mailbox};
use crate::protocol;

/// Envelopes buffered for a tail before it starts losing them.
const TAIL_BUFFER: usize = 1024;

type Item = Result<Envelope, BackendError>;

/// Stops a tail's thread.
pub struct StopTail;

/// What [`start`] gives: the envelopes (dropping the stream stops the
/// thread), a mailbox that stops the thread (for the client's close), and
/// the answer that says once it is attached.
type Started = (
    BoxStream<'static, Item>,
    Mailbox<StopTail>,
    oneshot::Receiver<Result<(), BackendError>>,
);

/// Starts a tail's thread.
pub fn start(
    context: zmq::Context,
    config: &ClientConfig,
    selection: &Selection,
) -> Result<Started, BackendError> {
    let (mailbox, inbox) = mailbox(&context).map_err(crate::setup_error)?;
    let (sender, receiver) = mpsc::channel(TAIL_BUFFER);
    let (ready, answer) = oneshot::channel();
    let tail = Tail {
        context,
        config: config.clone(),
        selection: selection.clone(),
        inbox,
        envelopes: sender,
    };
    std::thread::Builder::new()
        .name("zmq-tail".into())
        .spawn(move || tail.run(ready))
        .map_err(|e| {
            BackendError::Unavailable(ErrorDetail::caused_by(
                format!("cannot start a tail thread: {e}"),
                e,
            ))
        })?;
    let stop = mailbox.on_drop(StopTail);
    let envelopes = ReceiverStream::new(receiver).map(move |item| {
        // The stream owns the guard: dropping it stops the thread.
        let _owned = &stop;
        item
    });
    Ok((envelopes.boxed(), mailbox, answer))
}

struct Tail {
    context: zmq::Context,
    config: ClientConfig,
    selection: Selection,
    inbox: Inbox<StopTail>,
    envelopes: mpsc::Sender<Item>,
}

impl Tail {
    fn run(self, ready: oneshot::Sender<Result<(), BackendError>>) {
        let links = match self.attach() {
            Ok(links) => {
                let _ = ready.send(Ok(()));
                links
            }
            Err(error) => {
                let _ = ready.send(Err(error));
                return;
            }
        };
        loop {
            let (stop, readable, failed) = {
                let mut items = vec![self.inbox.bell().as_poll_item(zmq::POLLIN)];
                for link in &links {
                    items.push(link.socket.as_poll_item(zmq::POLLIN));
                    items.push(link.monitor().as_poll_item(zmq::POLLIN));
                }
                if zmq::poll(&mut items, 1000).is_err() {
                    return;
                }
                let ready = |at: usize| {
                    (0..links.len())
                        .filter(|i| items[at + 2 * i].is_readable())
                        .collect::<Vec<usize>>()
                };
                (items[0].is_readable(), ready(1), ready(2))
            };
            if (stop && !self.inbox.take().is_empty()) || self.envelopes.is_closed() {
                return;
            }
            // A hub that refuses a reconnection (the principal revoked by
            // an allowlist reload) ends the tail with the reason.
            for i in failed {
                if let Some(failure) = links[i].handshake_failure() {
                    let _ = self.envelopes.try_send(Err(failure));
                    return;
                }
            }
            for i in readable {
                while let Ok(frames) = links[i].socket.recv_multipart(zmq::DONTWAIT) {
                    self.forward(&links[i].endpoint, frames);
                }
            }
        }
    }

    /// Connects to every tail endpoint and waits until each has answered
    /// the hello topic.
    fn attach(&self) -> Result<Vec<Link>, BackendError> {
        if self.config.tail_endpoints.is_empty() {
            return Err(BackendError::Unsupported(
                "live tail: no tail endpoint configured (ClientConfig::tail)",
            ));
        }
        let hello = [
            protocol::TAIL_HELLO_PREFIX,
            uuid::Uuid::now_v7().simple().to_string().as_bytes(),
        ]
        .concat();
        let mut links = Vec::new();
        for endpoint in &self.config.tail_endpoints {
            let link = Link::open(&self.context, endpoint, &self.config, zmq::SUB)?;
            for prefix in protocol::tail_prefixes(&self.selection) {
                link.socket
                    .set_subscribe(&prefix)
                    .map_err(crate::setup_error)?;
            }
            link.socket
                .set_subscribe(&hello)
                .map_err(crate::setup_error)?;
            links.push(link);
        }
        let deadline = Instant::now() + self.config.connect_timeout;
        let mut answered = vec![false; links.len()];
        while answered.contains(&false) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(BackendError::Unavailable(
                    format!(
                        "the hub's tail did not answer within {:?}",
                        self.config.connect_timeout
                    )
                    .into(),
                ));
            }
            let mut items: Vec<zmq::PollItem> = Vec::new();
            for link in &links {
                items.push(link.socket.as_poll_item(zmq::POLLIN));
                items.push(link.monitor().as_poll_item(zmq::POLLIN));
            }
            let wait = left.min(Duration::from_millis(100));
            zmq::poll(&mut items, wait.as_millis().max(1) as i64).map_err(crate::setup_error)?;
            let flags: Vec<(bool, bool)> = (0..links.len())
                .map(|i| (items[2 * i].is_readable(), items[2 * i + 1].is_readable()))
                .collect();
            drop(items);
            for (i, (readable, monitored)) in flags.into_iter().enumerate() {
                if monitored && let Some(failure) = links[i].handshake_failure() {
                    return Err(failure);
                }
                if !readable {
                    continue;
                }
                while let Ok(frames) = links[i].socket.recv_multipart(zmq::DONTWAIT) {
                    if frames.first() == Some(&hello) {
                        answered[i] = true;
                    } else {
                        self.forward(&links[i].endpoint, frames);
                    }
                }
            }
        }
        for link in &links {
            link.socket
                .set_unsubscribe(&hello)
                .map_err(crate::setup_error)?;
        }
        Ok(links)
    }

    fn forward(&self, endpoint: &str, frames: Vec<Vec<u8>>) {
        // A control message (another tail's hello answered): its topic
        // starts with \x01.
        if frames
            .first()
            .is_none_or(|topic| topic.starts_with(b"\x01"))
        {
            return;
        }
        let Ok([_topic, envelope]) = <[Vec<u8>; 2]>::try_from(frames) else {
            tracing::warn!(hub = %endpoint, "a tail message not of topic and envelope ignored");
            return;
        };
        match protocol::parse_envelope(envelope) {
            Ok(envelope) if self.selection.matches(&envelope) => {
                if self.envelopes.try_send(Ok(envelope)).is_err() {
                    tracing::debug!("live tail behind: envelope not shown to it");
                }
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(hub = %endpoint, %error, "malformed tail message ignored");
            }
        }
    }
}
