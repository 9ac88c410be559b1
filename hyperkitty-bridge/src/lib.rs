//! Feeds a real HyperKitty from its own durable subscription, so HyperKitty
//! can be down, slow or elsewhere and nothing is lost.
//!
//! Today mailman-hyperkitty POSTs each mail from inside Mailman and, when
//! HyperKitty is down, spools it until the *next* mail comes. With the
//! queue, HyperKitty is one more archive server: [`HyperKittyBridge`]
//! consumes a named durable subscription (any backend, by URL, through
//! `mq-archiver`) and POSTs each mail to `{base}/api/mailman/archive` as
//! mailman-hyperkitty does (multipart `mlist=<list address>`, the mail as
//! the file `message`, header `Authorization: Token <key>`).
//!
//! # Archiving into HyperKitty
//!
//! Run the bridge beside an existing HyperKitty (binary `hyperkitty-bridge`):
//!
//! ```text
//! ARCHIVER_URL=redis://archiver:PASSWORD@broker.example.org \
//! HYPERKITTY_API_KEY=... \
//! hyperkitty-bridge --base-url https://lists.example.org/hyperkitty/ --subscriber hyperkitty
//! ```
//!
//! - The key is HyperKitty's `MAILMAN_ARCHIVER_KEY`, read from the
//!   environment (never a command-line argument, never logged).
//! - HyperKitty's `MAILMAN_ARCHIVER_FROM` must list the address the bridge
//!   connects from, else HyperKitty answers 403 and the bridge stops.
//! - The list of each mail is its envelope's `list-address`; else the
//!   mail's `List-Post`; else `--list-address LIST_ID=ADDRESS`; else the
//!   mail goes to the dead letters saying so.
//! - Private lists: HyperKitty creates an unknown list as **public** when
//!   it cannot reach Mailman's REST API. So before the first mail of a
//!   private list (or of an envelope without `archive-policy`) the bridge
//!   asks `GET {base}/api/list/<address>/`: 403 (the anonymous API hides a
//!   private list) or `archive_policy: private` lets it post; 404 or
//!   another policy dead-letters the mail with that reason. Pre-create a
//!   private list in HyperKitty before turning the bridge on, either with
//!   `django-admin mailman_sync` on the HyperKitty host (when HyperKitty
//!   reaches Mailman's REST API), or by hand:
//!   `django-admin shell -c "from hyperkitty.models import MailingList, ArchivePolicy; MailingList.objects.update_or_create(name='LIST@DOMAIN', defaults={'archive_policy': ArchivePolicy.private.value})"`;
//!   then replay the dead letters (`mq-archiver` operator commands).
//! - Turn mailman-hyperkitty off in `mailman.cfg` (`[archiver.hyperkitty]
//!   enable: no`) once the queue archiver publishes every list.
//!
//! # Outcomes
//!
//! | HyperKitty's answer | the delivery |
//! |---|---|
//! | 200 (also for a duplicate) | acked |
//! | refused, timeout, 502/503/504 | released once; the bridge drops its subscription and probes with back-off and jitter, then resumes |
//! | 400 (e.g. no Message-Id) | dead-lettered with HyperKitty's error text |
//! | other 5xx | nacked with back-off; dead-lettered at the attempt limit with HyperKitty's last answer |
//! | 401, 403 | released; the bridge stops with a configuration error; nothing dead-lettered |
//!
//! An outage costs at most one attempt on the deliveries in hand (at most
//! the prefetch), since a release is an attempt on RabbitMQ quorum queues
//! too; a delivery already on its last attempt reaches the dead letters
//! then, as any release of it would (the same holds for the deliveries in
//! hand at a 401/403: keep the attempt limit well above 1).
//!
//! A mail without a Message-ID is posted as a copy with the id the library
//! generated for it (see [`mail::mail_to_post`]): HyperKitty would answer
//! 400, while the list server's permalink already uses that id.
//!
//! List events are acked without a request: HyperKitty has no push API for
//! list metadata and pulls it from Mailman's REST API itself.
//!
//! TLS is rustls on the ring provider the workspace's Redis and RabbitMQ
//! clients use (two providers in one process break redis-rs's TLS set-up);
//! `--ca-file` trusts a private CA instead of the system's roots.

mod bridge;
mod config;
mod error;
mod hyperkitty;
pub mod mail;

pub use bridge::{BridgeCounters, BridgeStats, HyperKittyBridge};
pub use config::{ApiKey, BridgeConfig};
pub use error::BridgeError;
