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
//!   mail's `List-Post`, if it is a valid posting address (a forged one is
//!   skipped); else `--list-address LIST_ID=ADDRESS`; else the mail goes to
//!   the dead letters saying so. The list's URL is built segment by
//!   segment, so no address can point at another list.
//! - The base URL must be HyperKitty's root as the bridge reaches it: the
//!   bridge follows no redirect (a redirected POST becomes a GET without
//!   its body or key), and its host must be in HyperKitty's `ALLOWED_HOSTS`.
//! - Private lists: HyperKitty creates an unknown list as **public** when
//!   it cannot reach Mailman's REST API. So before the first mail of a
//!   private list (or of an envelope without `archive-policy`) the bridge
//!   asks `GET {base}/api/list/<address>/`: Django REST framework's JSON
//!   403 (`{"detail": ...}`: the anonymous API hides a private list) or
//!   `archive_policy: private` lets it post; 404 or another policy
//!   dead-letters the mail with that reason. Another 403 (a proxy or WAF
//!   blocking `/api/`) or a 401 stops the bridge with a configuration
//!   error, and so does a `GET {base}/api/lists/` that does not answer 200
//!   JSON (checked once, before the first private check): the anonymous
//!   list API must reach HyperKitty. A list seen private is trusted for 5
//!   minutes (`private_list_ttl`), and asked again after a list event of
//!   it, so a list an admin made public gets no more private mail. Pre-create a
//!   private list in HyperKitty before turning the bridge on, either with
//!   `django-admin mailman_sync` on the HyperKitty host (when HyperKitty
//!   reaches Mailman's REST API), or by hand:
//!   `django-admin shell -c "from hyperkitty.models import MailingList, ArchivePolicy; MailingList.objects.update_or_create(name='LIST@DOMAIN', defaults={'archive_policy': ArchivePolicy.private.value})"`;
//!   then replay the dead letters (`mq-archiver-admin replay`).
//! - Turn mailman-hyperkitty off in `mailman.cfg` (`[archiver.hyperkitty]
//!   enable: no`) once the queue archiver publishes every list.
//!
//! # Outcomes
//!
//! | HyperKitty's answer | the delivery |
//! |---|---|
//! | 200 (also for a duplicate) | acked |
//! | refused, connect timeout, 502/503/504, 429 | released once; the bridge drops its subscription and probes with back-off and jitter, then resumes |
//! | 400 with HyperKitty's JSON `error` (e.g. no Message-Id) | dead-lettered with HyperKitty's error text |
//! | timeout once connected, 5xx, other 4xx | nacked with back-off (an attempt); dead-lettered at the attempt limit with the last answer |
//! | 5xx or timeouts once connected on 3 distinct mails in a row (`sick_run_limit`) | an outage: released, and the probe also needs `api/lists/?limit=1` (which uses the database) to answer 200 |
//! | 401, 403, any 3xx, 404, 405, a 400 without HyperKitty's JSON (Django's `DisallowedHost`) | released; the bridge stops with a configuration error; nothing dead-lettered |
//!
//! The probe counts HyperKitty up only on the archive view's own answer
//! (405 to a GET of `api/mailman/archive`); anything else (a proxy's error
//! or maintenance page, a redirect, a 5xx) means still down, so the bridge
//! keeps probing: a misconfiguration shows on the next POST, which stops
//! it. The probe back-off keeps growing across outages until a mail is
//! archived, and after resuming one delivery goes alone before the full
//! concurrency, so a HyperKitty that blinks on and off costs little.
//!
//! An outage costs at most one attempt on the deliveries in hand (at most
//! the prefetch), since a release is an attempt on RabbitMQ quorum queues
//! too. A delivery released on its last attempt (at an outage or a
//! configuration error) goes to the dead letters with the reason
//! "HyperKitty unreachable or misconfigured on the last attempt ...;
//! replay the dead letters when fixed": keep the attempt limit well above
//! 1, and replay them once HyperKitty works.
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
