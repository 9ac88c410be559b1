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
//! # Security: who may do what; CURVE encrypts, PLAIN does not
//!
//! **Principals and grants.** A hub with an allowlist (CURVE client
//! public keys, [`HubConfig::allow_key`]; or ZAP PLAIN credentials,
//! [`HubConfig::allow`]; or a grants file: [`Allowed::read_file`]) maps
//! each login to a principal and its [`Grant`]. The ZAP handler
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
//! **CURVE** (ZeroMQ RFC 26, [`HubConfig::curve`] and
//! [`ClientConfig::curve`]; keys from `mq-archiver-admin keygen NAME`, which
//! writes `NAME.key`, mode 0600, and `NAME.pub`: [`CurveKeyPair`]) is what
//! to use between machines. It **protects**: the content of every
//! connection, router and tail alike (mail, events, commands, tags; a
//! capture of the traffic shows none of it: `tests/curve.rs` checks this
//! with the corpus through relays of the router and of the tail), against reading and against tampering or replay; the
//! hub's identity (a client talks only to a hub holding the secret half of
//! the hub key it was given, so an impostor hub fails the handshake); the
//! client's identity (the hub admits only the public keys of its
//! allowlist, and the client proves it holds the secret half; no password
//! crosses the wire, so there is none to replay). It **does not protect**:
//! who talks to whom, when and how much (connection metadata and message
//! sizes are visible); anything once it is on either side (the journal on
//! the list server's disk and the archive servers' stores are not
//! encrypted); a stolen secret key file (whoever holds `NAME.key` is that
//! principal: revoke its key, see below); and the reach of the port (an
//! unknown key costs the hub a handshake, nothing more). The hub's ZAP
//! handler stays bound for the hub's life (it retries an interrupted
//! call; on any other error it logs at error and admits no one from then
//! on), and the router and tail enforce their ZAP domain
//! (`ZMQ_ZAP_ENFORCE_DOMAIN`): libzmq 4.3 otherwise admits every CURVE
//! key when no handler is bound, and the tail has no per-message check. Errors are typed
//! on the client within the connect timeout (from the socket monitor, as
//! libzmq only reports a failed handshake): [`BackendError::Auth`](archiver_core::BackendError::Auth)
//! saying "wrong hub key" when the hub could not decrypt the hello (or
//! does not speak CURVE), "unknown client key" when it did and refused the
//! key; on a link whose handshake succeeded before, a failure without
//! detail is reported only when the next one fails too (one alone is a
//! connection cut mid-handshake, by a hub restart or a tail rebind, and
//! is retried). Keys are never logged; `Debug` shows public keys only. One
//! mechanism per hub: CURVE and PLAIN together, or PLAIN credentials and
//! CURVE keys on one side, are refused with `Auth`.
//!
//! **PLAIN is not encrypted.** The password, and every mail and event
//! (private lists included), cross the network in clear text, and anyone
//! who can read the traffic reads them and can replay the password. It is
//! for tests and loopback: a hub with PLAIN warns at bind that it is not
//! encrypted, and warns loudly when an endpoint is not loopback. A peer
//! with wrong credentials gets `Auth` from `subscribe`, not silence.
//!
//! **Reloading the allowlist** ([`ZmqHub::reload_allowlist`], e.g. with
//! the edited grants file) adds principals, changes grants, rotates a key
//! or password (replace the entry's key: from the reload on, new
//! handshakes with the old key are refused, and the connections made with
//! it are cut: the hub drops them, their next message is refused with
//! `Forbidden`, as the ZAP user id libzmq keeps for a connection names the
//! login, principal and key fingerprint, not the principal alone; a tail
//! principal's rotation disconnects every tail peer, which reconnect
//! through the new allowlist) or
//! revokes a principal, without a restart. From the reload on, each
//! message is checked against the new grants and each new handshake
//! against the new keys. A revoked principal's connections are dropped
//! (what they held goes back to its queue), its subscriptions end with
//! `Forbidden`, its tails with `Auth` (every tail peer is disconnected and
//! reconnects through the new allowlist, so the others' tails miss what
//! is published while they reconnect), and its new handshakes fail with
//! `Auth` ("unknown client key"). Its durable queue stays and keeps
//! collecting what it selects (the journal is kept for it) until an
//! operator deletes it ([`ZmqHub::delete_subscriber`], or UNSUBSCRIBE as an
//! operator principal); granted back, it resumes where it was.
//!
//! # Which libzmq: the system's, for CURVE
//!
//! The bundled libzmq that `zmq-sys` 0.12 builds is built without
//! libsodium, so it has no CURVE, and `zmq-sys` has no switch for that.
//! This repository's `.cargo/config.toml` overrides `zmq-sys`'s `links =
//! "zmq"` build script (`[target.x86_64-unknown-linux-gnu.zmq]
//! rustc-link-lib = ["zmq"]`), so it links the system's libzmq instead:
//! Debian's 4.3.4, built with libsodium (`zmq::has("curve")` is true; a
//! unit test checks it). The alternative, building libzmq with libsodium
//! from source crates, needs a modified copy of `zmq-sys`, which this
//! project does not carry. **Cost**: building needs `libzmq3-dev` (and
//! `pkg-config`), running needs `libzmq5` (`scripts/setup-machine` and
//! `scripts/quickstart` install the former when missing); on another
//! target triple the table's name changes. **Saving**: `zmq-sys` no longer
//! compiles libzmq with CMake: on this 2-core machine a clean `cargo
//! build -p zmq-sys` took 187 s (156.7 s of it its build script) and
//! takes 2.0 s with the override (its build script and build
//! dependencies, `zeromq-src`, `cmake`, `cc`, are not built at all). **An embedder outside this
//! repository** needs the same lines in its own `.cargo/config.toml`
//! (Cargo reads it from the directory it runs in, never from a
//! dependency); without them it links the bundled libzmq, which works for
//! PLAIN and anonymous hubs, and configuring CURVE is refused with a clear
//! `Auth` error at bind, at connect and at key generation
//! ([`curve_available`] says which it has).
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
//! with an allowlist: configure one (CURVE keys, [`HubConfig::allow_key`])
//! on any network that is not wholly trusted.
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
//! use std::path::Path;
//! use archiver_core::{Grant, Subscriber, Subscription};
//! use backend_zeromq::{ClientConfig, CurveKey, CurveKeyPair, HubConfig, ZmqClient, ZmqHub};
//! use futures::StreamExt;
//!
//! // The list server, with its key pair and the archive server's public
//! // key (each made once with `mq-archiver-admin keygen`).
//! let hub = ZmqHub::bind(
//!     HubConfig::new("tcp://0.0.0.0:5555", "/var/lib/mailman/archiver")
//!         .curve(CurveKeyPair::read_file(Path::new("/etc/mailman/hub.key"))?)
//!         .allow_key(
//!             CurveKey::read_file(Path::new("/etc/mailman/hyperkitty.pub"))?,
//!             Grant::new("hyperkitty")
//!                 .subscriber("hyperkitty".parse()?)
//!                 .lists("#".parse()?),
//!         ),
//! )?;
//!
//! // An archive server, on another machine, with the hub's public key.
//! let client = ZmqClient::connect(ClientConfig::new("tcp://lists.example.org:5555").curve(
//!     CurveKey::read_file(Path::new("/etc/hyperkitty/hub.pub"))?,
//!     CurveKeyPair::read_file(Path::new("/etc/hyperkitty/hyperkitty.key"))?,
//! ))?;
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

/// A socket error while setting up a socket or a mailbox: the one
/// wording of that failure, the zmq error kept as its source.
fn setup_error(error: zmq::Error) -> archiver_core::BackendError {
    archiver_core::BackendError::Unavailable(archiver_core::ErrorDetail::caused_by(
        format!("ZeroMQ setup: {error}"),
        error,
    ))
}

pub use client::ZmqClient;
pub use config::{
    Allowed, ClientConfig, ClientCurve, Credentials, CurveKey, CurveKeyPair, DEFAULT_ACK_DEADLINE,
    DEFAULT_DEAD_LETTER_PAGE_BYTES, DEFAULT_HEARTBEAT, DEFAULT_MAX_ENVELOPE_BYTES,
    DEFAULT_MAX_NACK_DELAY, DEFAULT_MAX_UNACKED_BYTES, DEFAULT_TIMEOUT, HubConfig, Login,
    curve_available, full_access,
};
pub use hub::{QueueStatus, ZmqHub};
