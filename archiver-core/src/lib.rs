//! The core of the message-queue mailing-list archiver.
//!
//! A list server hands every archived mail and every list event to an
//! [`Archiver`]; [`QueueArchiver`] publishes them as [`Envelope`]s through a
//! backend (RabbitMQ, Redis, ZeroMQ, or the [`MemoryBackend`] here). Any
//! number of archive servers consume them, each from its own durable queue,
//! with acks, redelivery and dead letters, most simply through a [`Runner`].
//!
//! | module | idea |
//! |---|---|
//! | [`mail`] | the raw mail, untouched, and the metadata read from it |
//! | [`list`], [`event`] | lists, archive policy, list events |
//! | [`envelope`], [`wire`] | what travels, and its fields on the wire |
//! | [`selection`] | which lists and kinds a subscriber wants |
//! | [`grant`] | which of them an authenticated archive server may read |
//! | [`backend`] | the message patterns as traits, one per role |
//! | [`archiver`] | the list server's side (Mailman's `IArchiver`) |
//! | [`journal`] | a durable local log: the spool's and ZeroMQ's storage |
//! | [`spool`] | the list server's spool for broker outages |
//! | [`runner`] | the archive server's side |
//! | [`memory`] | the in-memory backend |
//! | `conformance` | the suite every backend passes (feature `conformance`) |
//! | `admin` | the operator's commands of backend tools (feature `admin`) |

pub mod archiver;
pub mod backend;
pub mod backoff;
pub mod envelope;
pub mod event;
pub mod grant;
pub mod journal;
pub mod list;
pub mod mail;
pub mod memory;
pub mod runner;
pub mod selection;
pub mod spool;
pub mod wire;

#[cfg(feature = "admin")]
pub mod admin;
#[cfg(feature = "conformance")]
pub mod conformance;

pub use archiver::{
    ArchiveError, ArchiveUrls, Archiver, EventReceipt, InvalidBaseUrl, Outcome, QueueArchiver,
    Receipt,
};
pub use backend::{
    Backend, BackendError, CloseFlag, Connection, DeadLetter, Deliveries, Delivery, ErrorDetail,
    InvalidPrefix, LazyPublisher, Operator, Prefix, Publisher, PublisherCapabilities,
    RawDeadLetter, Replay, Settle, StartPosition, Subscriber, SubscriberCapabilities,
    SubscriberName, Subscription, Tail, attempt_limit_reached, malformed_reason, redact_url,
};
pub use backoff::Backoff;
pub use envelope::{DEFAULT_MAX_ENVELOPE_BYTES, Envelope, EnvelopeId, Kind};
pub use event::{ListChange, ListEvent, MemberRole};
pub use grant::Grant;
pub use list::{
    ArchivePolicy, InvalidListAddress, InvalidListId, ListAddress, ListId, MailingList,
};
pub use mail::mbox::MboxReader;
pub use mail::message_id::message_id_hash;
pub use mail::{ArchivedMail, MailError, MailLimits, MailMeta, SkipReason};
pub use memory::MemoryBackend;
pub use runner::{
    Handler, HandlerError, RunCounters, RunStats, Runner, RunningRunner, shutdown_signal,
};
pub use selection::{ListPattern, MAX_PATTERN_LABELS, MAX_SELECTION_PATTERNS, Selection};
pub use spool::{SpoolOptions, SpoolStatus, Stuck};
