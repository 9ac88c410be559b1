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
//! # Security: who may do what, authenticated, not encrypted
//!
//! **Principals and grants.** A hub with credentials
//! ([`HubConfig::allow`], or a grants file: [`Allowed::read_file`]) maps
//! each ZAP PLAIN user to a principal and its [`Grant`]. The ZAP handler
//! answers with the principal's name as the ZAP user id; libzmq attaches it
//! to every message of that connection (`User-Id`), and the hub reads it
//! per message and checks the command against that principal's grant. A
//! refusal is a `FORBIDDEN` reply, nothing done, which the client returns
//! as [`BackendError::Forbidden`](archiver_core::BackendError::Forbidden)
//! naming what was refused. An authenticated principal **can**:
//!
//! - say hello under a subscriber name its grant lists, selecting list
//!   patterns its grant covers (no pattern means `#`);
//! - receive from that queue only envelopes its grant may receive
//!   ([`Grant::may_receive`]: list covered, private lists only if granted,
//!   membership events only if granted), checked at each delivery, so a
//!   stored selection (an old one, or one another principal of the same
//!   name wrote) never widens access: what no consumer of the queue may
//!   receive is passed over, not held;
//! - settle (ACK, NACK, REJECT, RELEASE) only tags delivered to its own
//!   connection;
//! - list, replay and purge the dead letters of, and unsubscribe, its own
//!   subscriber names (dead letters it may not receive are left out);
//! - tail the hub only if its grant covers every list (`#`), and then
//!   sees public lists only.
//!
//! It **cannot**: use another subscriber name, select a list outside its
//! grant, read private lists or membership events it is not granted (on a
//! queue or the tail), settle another connection's deliveries, or touch
//! another subscriber's queue or dead letters — unless its grant makes it
//! an operator ([`Grant::operator`]), which lifts the name checks only
//! (what it may read stays limited by the rest of the grant).
//!
//! **The live tail** is one XPUB socket, which cannot filter per peer, so
//! it carries only what every principal admitted to it may see: envelopes
//! of public lists, never private lists or membership events. It has its
//! own ZAP domain, which admits only principals granted every list. Private
//! lists have no tail; they reach durable subscriptions only.
//!
//! **Anonymous only where it is safe.** A hub without credentials serves
//! anyone with [`full_access`], and binds only when that was asked for
//! ([`HubConfig::allow_anonymous`]) and every endpoint is `ipc://` or
//! loopback (it warns at bind); otherwise [`ZmqHub::bind`] fails with
//! `Forbidden` naming the endpoint.
//!
//! **Not encrypted.** The bundled libzmq has no CURVE (issue 19), so PLAIN
//! protects nothing on the wire: the password, and every mail and event
//! (private lists included), cross the network in clear text, and anyone
//! who can read the traffic reads them, and can replay the password. Use
//! it on a trusted network, over `ipc://` on one machine, or inside a VPN
//! or SSH tunnel. A peer with wrong credentials gets
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
//! [`Grant`]: archiver_core::Grant
//! [`Grant::may_receive`]: archiver_core::Grant::may_receive
//! [`Grant::operator`]: archiver_core::Grant::operator
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
    Allowed, ClientConfig, ClientCurve, Credentials, CurveKey, CurveKeyPair, DEFAULT_ACK_DEADLINE,
    DEFAULT_DEAD_LETTER_PAGE_BYTES, DEFAULT_HEARTBEAT, DEFAULT_MAX_ENVELOPE_BYTES,
    DEFAULT_MAX_NACK_DELAY, DEFAULT_MAX_UNACKED_BYTES, DEFAULT_TIMEOUT, HubConfig, Login,
    curve_available, full_access,
};
pub use hub::{QueueStatus, ZmqHub};
