//! The list server's side: [`ZmqHub`] binds the endpoints, keeps every
//! durable subscriber's queue on a local journal, and delivers to the
//! archive servers that connect.

mod access;
mod dead_letters;
mod event_loop;
mod queue;
mod record;
mod registry;
mod status;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use archiver_core::journal::{Journal, JournalError, JournalOptions};
use archiver_core::wire;
use archiver_core::{
    BackendError, Connection, Envelope, ErrorDetail, Publisher, PublisherCapabilities,
    SubscriberName,
};
use async_trait::async_trait;
use tokio::sync::oneshot;

use crate::config::{Allowed, HubConfig};
use crate::mailbox::{Mailbox, mailbox};
use crate::protocol::{MAX_COMMAND_BYTES, Welcome, WireCapabilities};
use crate::zap::{self, SharedGate, ZapHandler};
use access::Access;
use dead_letters::DeadLetterStore;
use event_loop::{HubCommand, HubLoop, Limits, Reload};
use queue::Queue;
use registry::Registry;
pub use status::QueueStatus;

/// The list server's end of the ZeroMQ backend: a publisher that needs no
/// broker. Every publish is appended to a journal in the hub's directory
/// (synced before `Ok`); each durable subscriber's queue is a position in
/// that journal, so an archive server that is offline, or a list server
/// that restarts, loses nothing.
///
/// It plays the list server's role only ([`Publisher`]): archive servers,
/// and operators, use a [`ZmqClient`](crate::ZmqClient) over its endpoint,
/// as they would from another machine.
///
/// ```no_run
/// # async fn demo() -> Result<(), archiver_core::BackendError> {
/// use archiver_core::{ArchiveUrls, QueueArchiver};
/// use backend_zeromq::{HubConfig, ZmqHub};
/// // Anonymous peers, so loopback only (see the crate docs).
/// let hub = ZmqHub::bind(
///     HubConfig::new("tcp://127.0.0.1:5555", "/var/lib/mailman/archiver").allow_anonymous(),
/// )?;
/// let archiver = QueueArchiver::new(
///     "mq-archiver",
///     hub.clone(),
///     ArchiveUrls::new("https://archive.example.org/list/{list_id}/").unwrap(),
/// );
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ZmqHub {
    inner: Arc<HubInner>,
}

struct HubInner {
    config: HubConfig,
    endpoint: String,
    tail_endpoint: Option<String>,
    journal: Journal,
    mailbox: Mailbox<HubCommand>,
    closed: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The ZAP handler's gate (swapped on reload), and the handler.
    zap: Option<(SharedGate, ZapHandler)>,
    /// The logins (ZAP user ids) admitted to the live tail now.
    tail_principals: Mutex<Vec<String>>,
}

impl Drop for HubInner {
    fn drop(&mut self) {
        let (reply, _) = oneshot::channel();
        if self.mailbox.send(HubCommand::Close(reply)).is_ok()
            && let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take()
        {
            let _ = thread.join();
        }
    }
}

/// A journal error as the backend error a publisher sees.
fn journal_error(error: JournalError) -> BackendError {
    match error {
        JournalError::Closed => BackendError::Closed,
        JournalError::TooLarge { size, limit } => BackendError::TooLarge { size, limit },
        other => BackendError::Broker(ErrorDetail::caused_by(
            format!("the hub's journal: {other}"),
            other,
        )),
    }
}

/// A socket error while setting up, naming the endpoint.
fn bind_error(endpoint: &str, error: zmq::Error) -> BackendError {
    match error {
        zmq::Error::EINVAL | zmq::Error::EPROTONOSUPPORT | zmq::Error::ENOCOMPATPROTO => {
            BackendError::InvalidUrl(ErrorDetail::caused_by(
                format!("{endpoint}: {error}"),
                error,
            ))
        }
        other => BackendError::Unavailable(ErrorDetail::caused_by(
            format!("cannot bind {endpoint}: {other}"),
            other,
        )),
    }
}

fn bound_endpoint(socket: &zmq::Socket, endpoint: &str) -> Result<String, BackendError> {
    socket.bind(endpoint).map_err(|e| bind_error(endpoint, e))?;
    Ok(socket
        .get_last_endpoint()
        .ok()
        .and_then(Result::ok)
        .unwrap_or_else(|| endpoint.to_owned()))
}

impl ZmqHub {
    /// Opens the hub's directory (recovering from any crash), binds its
    /// endpoints and starts serving. Fails with `InvalidUrl` for a bad
    /// endpoint and `Unavailable` when it cannot be bound; a directory
    /// another hub has open is refused. A hub without credentials is
    /// refused with `Forbidden` unless anonymous access was asked for
    /// ([`HubConfig::allow_anonymous`]) and every endpoint is `ipc://` or
    /// loopback. An allowlist mixing CURVE keys and PLAIN credentials, CURVE
    /// keys without the hub's key pair, or CURVE on a libzmq without it is
    /// refused with `Auth`.
    pub fn bind(config: HubConfig) -> Result<Self, BackendError> {
        let access = Access::of(&config)?;
        let journal = Journal::open(
            config.dir.join("journal"),
            JournalOptions {
                sync: config.sync,
                max_record: config.max_envelope_bytes + (1 << 16),
                ..JournalOptions::default()
            },
        )
        .map_err(journal_error)?;
        let registry = Registry::new(config.dir.join("subscribers.json"));
        let queues: BTreeMap<_, _> = registry
            .load()
            .map_err(journal_error)?
            .into_iter()
            .map(|(name, registered)| {
                let floor = journal
                    .cursor(&Queue::cursor_name(&name))
                    .unwrap_or_else(|| journal.first_seq());
                (name.clone(), Queue::new(name, registered, floor))
            })
            .collect();

        let context = zmq::Context::new();
        let gate = access.gate(&config);
        let tail_principals = gate.as_ref().map(|g| g.tail.clone()).unwrap_or_default();
        let zap = match gate {
            None => None,
            Some(gate) => {
                let shared = SharedGate::new(std::sync::RwLock::new(gate));
                let handler = ZapHandler::start(&context, SharedGate::clone(&shared))
                    .map_err(crate::setup_error)?;
                Some((shared, handler))
            }
        };
        // CURVE (encrypted, the hub authenticated by its key) or PLAIN
        // (tests and loopback); the ZAP domains are the same for both.
        let secure = |socket: &mut zmq::Socket, domain: &str| -> zmq::Result<()> {
            if zap.is_none() {
                return Ok(());
            }
            zap::secure(socket, config.curve.as_ref(), domain)
        };

        let mut router = context.socket(zmq::ROUTER).map_err(crate::setup_error)?;
        router
            .set_router_mandatory(true)
            .map_err(crate::setup_error)?;
        router
            .set_maxmsgsize(MAX_COMMAND_BYTES)
            .map_err(crate::setup_error)?;
        // Credit bounds what is queued per connection, not the socket
        // (deliveries past the ack deadline stay charged: they may still
        // be in this queue).
        router.set_sndhwm(0).map_err(crate::setup_error)?;
        router.set_linger(1000).map_err(crate::setup_error)?;
        secure(&mut router, zap::DOMAIN).map_err(crate::setup_error)?;
        let endpoint = bound_endpoint(&router, &config.endpoint)?;

        let (tail, tail_endpoint) = match &config.tail_endpoint {
            None => (None, None),
            Some(wanted) => {
                let mut tail = context.socket(zmq::XPUB).map_err(crate::setup_error)?;
                tail.set_xpub_verbose(true).map_err(crate::setup_error)?;
                tail.set_maxmsgsize(MAX_COMMAND_BYTES)
                    .map_err(crate::setup_error)?;
                tail.set_linger(0).map_err(crate::setup_error)?;
                secure(&mut tail, zap::TAIL_DOMAIN).map_err(crate::setup_error)?;
                let bound = bound_endpoint(&tail, wanted)?;
                (Some(tail), Some(bound))
            }
        };

        let (mailbox, inbox) = mailbox(&context).map_err(crate::setup_error)?;
        let welcome = Welcome {
            heartbeat_ms: config.heartbeat.as_millis() as u64,
            timeout_ms: config.timeout.as_millis() as u64,
            capabilities: WireCapabilities::of_hub(config.timeout),
        };
        let hub_loop = HubLoop::new(
            router,
            tail,
            inbox,
            journal.clone(),
            DeadLetterStore::new(config.dir.join("dead-letters")),
            registry,
            queues,
            welcome,
            access,
            Limits {
                max_nack_delay: config.max_nack_delay,
                ack_deadline: config.ack_deadline,
                max_unacked_bytes: config.max_unacked_bytes,
                dead_letter_page_bytes: config.dead_letter_page_bytes,
            },
        );
        let thread = std::thread::Builder::new()
            .name("zmq-hub".into())
            .spawn(move || hub_loop.run())
            .map_err(|e| {
                BackendError::Unavailable(ErrorDetail::caused_by(
                    format!("cannot start the hub thread: {e}"),
                    e,
                ))
            })?;
        let mechanism = match (&zap, &config.curve) {
            (None, _) => "none",
            (Some(_), None) => "PLAIN",
            (Some(_), Some(_)) => "CURVE",
        };
        tracing::info!(%endpoint, tail = ?tail_endpoint, mechanism, "ZeroMQ hub listening");
        Ok(Self {
            inner: Arc::new(HubInner {
                config,
                endpoint,
                tail_endpoint,
                journal,
                mailbox,
                closed: AtomicBool::new(false),
                thread: Mutex::new(Some(thread)),
                zap,
                tail_principals: Mutex::new(tail_principals),
            }),
        })
    }

    /// The endpoint archive servers connect to, with the port the system
    /// picked when the configured one was `*`.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// The live tail's endpoint, if it has one.
    pub fn tail_endpoint(&self) -> Option<&str> {
        self.inner.tail_endpoint.as_deref()
    }

    /// The configuration the hub was bound with (a reloaded allowlist,
    /// [`reload_allowlist`](Self::reload_allowlist), is not in it).
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// Replaces the allowlist without a restart: to add a principal,
    /// change a grant, rotate a client's key or password, or revoke a
    /// principal (e.g. after [`Allowed::read_file`] of the edited grants
    /// file). Checked as at bind (the hub's mechanism stays: CURVE keys
    /// for a CURVE hub, PLAIN credentials otherwise); on an error nothing
    /// changes. Then, at one point of the hub thread, the hub checks every
    /// message against the new grants, and new handshakes go through the
    /// new allowlist. A rotated key or password cuts the connections made
    /// with the old one as a revocation does (the ZAP user id of a
    /// connection names its login, not only its principal). A revoked
    /// principal (or one that may no longer use its subscriber name) has
    /// its connections dropped, what they held
    /// goes back to the queue, and its clients' subscriptions end with
    /// `Forbidden`; its messages on a connection still open are refused,
    /// and its new handshakes fail (`Auth` on its side). Its durable
    /// queue stays and keeps collecting (the journal is kept for it) until
    /// an operator deletes it ([`delete_subscriber`](Self::delete_subscriber)
    /// or UNSUBSCRIBE), so a principal granted back resumes where it was.
    /// When a login admitted to the live tail is revoked or rotated, every
    /// tail peer is disconnected and reconnects through the new allowlist.
    /// Fails with `Auth` on a hub without authentication.
    pub async fn reload_allowlist(&self, allowed: Vec<Allowed>) -> Result<(), BackendError> {
        let Some((shared, _)) = &self.inner.zap else {
            return Err(BackendError::Auth(
                "a hub without authentication has no allowlist to reload".into(),
            ));
        };
        let mut config = self.inner.config.clone();
        config.allowed = allowed;
        let access = Access::of(&config)?;
        let gate = access.gate(&config).expect("an allowlist gives a ZAP gate");
        let principals = gate.logins.len() + gate.keys.len();
        let (reply, answer) = oneshot::channel();
        {
            // Held until the reload is queued, so that concurrent reloads
            // reach the hub thread in the order they saw the tail's
            // principals.
            let mut admitted = self
                .inner
                .tail_principals
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let retail = self.inner.tail_endpoint.is_some()
                && admitted.iter().any(|p| !gate.tail.contains(p));
            *admitted = gate.tail.clone();
            self.inner
                .mailbox
                .send(HubCommand::Reload(Reload {
                    access,
                    gate,
                    shared: SharedGate::clone(shared),
                    retail,
                    reply,
                }))
                .map_err(|_| BackendError::Closed)?;
        }
        answer.await.map_err(|_| BackendError::Closed)?;
        tracing::info!(principals, "ZeroMQ hub allowlist reloaded");
        Ok(())
    }

    /// Every durable subscriber's queue, with what it pins of the journal
    /// and since when: an operator's list of subscribers.
    pub async fn status(&self) -> Result<Vec<QueueStatus>, BackendError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .mailbox
            .send(HubCommand::Status(reply))
            .map_err(|_| BackendError::Closed)?;
        answer.await.map_err(|_| BackendError::Closed)
    }

    /// Deletes a subscriber with its queue and dead letters, as an archive
    /// server's `unsubscribe` does: its connections are told it is gone
    /// and the journal no longer keeps records for it. Deleting one that
    /// does not exist is not an error.
    pub async fn delete_subscriber(&self, name: &SubscriberName) -> Result<(), BackendError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .mailbox
            .send(HubCommand::Delete(name.clone(), reply))
            .map_err(|_| BackendError::Closed)?;
        answer
            .await
            .map_err(|_| BackendError::Closed)?
            .map_err(|e| BackendError::Broker(format!("deleting subscriber {name}: {e}").into()))
    }

    /// True once [`close`](Connection::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Connection for ZmqHub {
    /// Saves every queue's position, stops serving and closes the journal.
    /// Archive servers keep their queues for when the hub is back.
    async fn close(&self) -> Result<(), BackendError> {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        if self.inner.mailbox.send(HubCommand::Close(reply)).is_ok() {
            let _ = answer.await;
        }
        let thread = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        self.inner
            .journal
            .clone()
            .close()
            .await
            .map_err(journal_error)
    }
}

#[async_trait]
impl Publisher for ZmqHub {
    fn publisher_capabilities(&self) -> PublisherCapabilities {
        self.inner.config.publisher_capabilities()
    }

    async fn publish(&self, envelope: &Envelope) -> Result<(), BackendError> {
        if self.is_closed() {
            return Err(BackendError::Closed);
        }
        BackendError::check_size(envelope, self.inner.config.max_envelope_bytes)?;
        // The hub routes on a record's header and never decodes it before
        // delivery: an envelope no reader could decode is refused here,
        // or it would be delivered, rejected and never dead-lettered.
        wire::check(envelope)?;
        let (payload, record) = record::published(envelope);
        let seq = self
            .inner
            .journal
            .append(payload)
            .await
            .map_err(journal_error)?;
        let (sent, on_tail) = oneshot::channel();
        let for_tail = self.inner.tail_endpoint.is_some().then(|| (record, sent));
        let tailed = for_tail.is_some();
        self.inner
            .mailbox
            .send(HubCommand::Published(for_tail))
            .map_err(|_| BackendError::Closed)?;
        if tailed {
            // Already durable: a hub closing meanwhile only skips the tail.
            let _ = on_tail.await;
        }
        tracing::debug!(envelope_id = %envelope.id, seq, "published to the hub's journal");
        Ok(())
    }
}
