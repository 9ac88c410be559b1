//! ZeroMQ backend of the message-queue archiver: brokerless, yet with what
//! a broker gives (durable per-subscriber queues, acks, redelivery, dead
//! letters, competing consumers), built on the list server's own journal.
//!
//! # Shape
//!
//! - The list server runs a [`ZmqHub`]: it binds an endpoint (`tcp://`,
//!   `ipc://`), appends every published envelope to a journal
//!   ([`archiver_core::journal`]) and syncs it before `publish` returns.
//!   Each durable subscriber's queue is a cursor in that journal plus what
//!   it holds unsettled, so an archive server that is offline, or a list
//!   server that restarts (even after `kill -9`), loses nothing.
//! - Archive servers run a [`ZmqClient`]: one DEALER per hub (an archive
//!   server may consume from several list servers). Its hello names the
//!   subscriber and its selection; connections with the same name share the
//!   queue (competing consumers).
//! - **Roles**: the hub is the list server's client ([`Publisher`]) and
//!   nothing else; a [`ZmqClient`] is an archive server's and an
//!   operator's ([`Subscriber`], [`Operator`]), even in the list server's
//!   own process. What a subscriber can rely on (how soon an abandoned
//!   delivery comes back) depends on the hub's settings, so the hub says
//!   it in its WELCOME and the client reports that
//!   ([`Subscriber::subscriber_capabilities`]).
//! - **Acks, nacks, rejects** go back by delivery tag; a nack's delay, the
//!   attempt count and the dead letters (kept as files, listed, replayed
//!   and purged over the wire) behave as on the brokers.
//! - **Credit**: the hub never has more than a connection's prefetch
//!   unsettled on it, nor more than [`DEFAULT_MAX_UNACKED_BYTES`] of
//!   envelopes, so neither side's memory grows with the backlog, which
//!   stays on disk. The byte bound is per connection and is checked
//!   before each delivery, so one connection that never reads costs the
//!   hub at most the bound plus one envelope (and at least one envelope,
//!   whatever its size), and a peer with N connections N times that. A
//!   delivery unsettled past the ack deadline ([`DEFAULT_ACK_DEADLINE`])
//!   goes back to the queue as a failed attempt, but its bytes stay
//!   charged to the connection (they may still be queued to it) until it
//!   settles that tag or is dropped; a NACK delay is cut to
//!   [`DEFAULT_MAX_NACK_DELAY`].
//! - **What a subscriber pins**: every subscriber keeps the journal from
//!   its floor on. [`ZmqHub::status`] lists each with where it pins the
//!   journal and since when; [`ZmqHub::delete_subscriber`] deletes one
//!   that was abandoned.
//! - **Heartbeats** both ways: a connection silent for the timeout (10 s by
//!   default) is dropped and what it held goes to the subscriber's other
//!   connections; a client whose hub falls silent reconnects, and says
//!   hello again when a restarted hub does not know it.
//! - **Live tail** on PUB/SUB with topic `<list-id>/<kind>`, so a tail of
//!   one list filters on the hub; a hello topic the hub answers makes
//!   `tail()` return only once its subscription is in force (no slow
//!   joiner).
//! - The `zmq` crate is synchronous: every socket lives on its own thread,
//!   and async code talks to those threads through channels and an
//!   `inproc` bell, never blocking the runtime.
//!
//! # Security: authenticated, not encrypted
//!
//! The bundled libzmq has no CURVE, so **traffic is not encrypted**: mails
//! (including those of private lists) and PLAIN passwords cross the network
//! in clear text. Use it on a trusted network, over `ipc://` on one
//! machine, or inside a VPN or SSH tunnel. What there is: ZAP PLAIN
//! authentication. A hub with credentials ([`HubConfig::allow`]) refuses
//! every peer without a listed user and password, and such a client gets
//! [`BackendError::Auth`](archiver_core::BackendError::Auth) from
//! `subscribe`, not silence.
//!
//! # What a peer can make the hub hold
//!
//! Patterns are capped ([`archiver_core::MAX_PATTERN_LABELS`] labels,
//! [`archiver_core::MAX_SELECTION_PATTERNS`] per selection) and matched in
//! time linear in pattern labels × list labels; credit and the ack
//! deadline bound what a connection holds; dead letters are counted
//! without being read and listed a page at a time. The hub reads a
//! message frame by frame and copies out at most
//! [`protocol::MAX_MESSAGE_BYTES`]; the rest is dropped as it is read.
//! **Residual:** libzmq 4.3 holds a whole multipart message before its
//! first frame can be read, and caps only each frame's size, so a peer
//! can make the hub's libzmq buffer one large multipart message (its
//! memory rises by that message's size, once, until it is read and
//! dropped). Only peers that pass authentication can do this on a hub
//! with credentials: configure them ([`HubConfig::allow`]) on any network
//! that is not wholly trusted.
//!
//! [`Publisher`]: archiver_core::Publisher
//! [`Subscriber`]: archiver_core::Subscriber
//! [`Operator`]: archiver_core::Operator
//! [`Subscriber::subscriber_capabilities`]: archiver_core::Subscriber::subscriber_capabilities
//!
//! # Wire format
//!
//! `docs/wire-format.md` ("ZeroMQ") gives every message, so an archive
//! server can be written in any language with a ZeroMQ binding;
//! `tests/interop.py` does it with pyzmq.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use archiver_core::{Grant, Subscriber, Subscription};
//! use backend_zeromq::{ClientConfig, Credentials, HubConfig, ZmqClient, ZmqHub};
//! use futures::StreamExt;
//!
//! // The list server.
//! let hub = ZmqHub::bind(
//!     HubConfig::new("tcp://127.0.0.1:5555", "/var/lib/mailman/archiver")
//!         .allow(
//!             Credentials::new("hyperkitty", "s3cret"),
//!             Grant::new("hyperkitty")
//!                 .subscriber("hyperkitty".parse()?)
//!                 .lists("#".parse()?),
//!         ),
//! )?;
//!
//! // An archive server, in another process.
//! let client = ZmqClient::connect(
//!     ClientConfig::new("tcp://127.0.0.1:5555").credentials(Credentials::new("hyperkitty", "s3cret")),
//! )?;
//! let mut deliveries = client.subscribe(&Subscription::new("hyperkitty".parse()?)).await?;
//! while let Some(delivery) = deliveries.next().await {
//!     let delivery = delivery?;
//!     // store delivery.envelope() ...
//!     delivery.ack().await?;
//! }
//! # Ok(()) }
//! ```

mod client;
mod config;
mod hub;
mod mailbox;
pub mod protocol;
mod zap;

pub use client::ZmqClient;
pub use config::{
    Allowed, ClientConfig, Credentials, DEFAULT_ACK_DEADLINE, DEFAULT_DEAD_LETTER_PAGE_BYTES,
    DEFAULT_HEARTBEAT, DEFAULT_MAX_ENVELOPE_BYTES, DEFAULT_MAX_NACK_DELAY,
    DEFAULT_MAX_UNACKED_BYTES, DEFAULT_TIMEOUT, HubConfig, full_access,
};
pub use hub::{QueueStatus, ZmqHub};
