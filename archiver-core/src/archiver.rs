//! The list server's side: Mailman's `IArchiver`, async, and one generic
//! implementation that publishes through any backend.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tracing::Instrument;
use url::Url;

use crate::backend::{BackendError, Connection, Publisher};
use crate::envelope::{Envelope, EnvelopeId};
use crate::event::ListEvent;
use crate::journal::JournalError;
use crate::list::{ArchivePolicy, ListId, MailingList};
use crate::mail::{ArchivedMail, MailError, MailLimits, SkipReason};
use crate::spool::{Spool, SpoolOptions, SpoolStatus};

/// Why a mail or event was not archived. Nothing was published or spooled.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The mail itself cannot be archived (empty, too large, not a mail).
    #[error(transparent)]
    Mail(#[from] MailError),
    /// The backend did not take it; retrying later may work.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The broker was unavailable and the local spool could not keep it.
    #[error("spooling failed: {0}")]
    Spool(#[from] JournalError),
    /// A spool operation on an archiver configured without a spool.
    #[error("this archiver has no spool")]
    NoSpool,
    /// An event handed over with a list that is not the event's.
    #[error("event of list {event} handed over with list {list}")]
    WrongList {
        /// The list the event says it happened to.
        event: ListId,
        /// The list it was handed over with.
        list: ListId,
    },
}

/// The archive base URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid archive base URL {url:?}: {reason}")]
pub struct InvalidBaseUrl {
    /// The refused URL.
    pub url: String,
    /// What is wrong with it.
    pub reason: String,
}

/// What happened to a mail or event handed to [`Archiver::archive_message`]
/// or [`Archiver::archive_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The backend holds it durably; every subscriber that selects it will
    /// receive it.
    Published,
    /// Held in the local spool, synced to disk: the broker was unreachable
    /// or slower than the spool's deadline (or earlier envelopes are still
    /// spooled). It will be published, in order, as soon as the broker
    /// answers, also after a restart.
    Spooled,
    /// Deliberately not archived (not an error).
    Skipped(SkipReason),
}

/// The answer to [`Archiver::archive_message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The envelope that carries it, when published or spooled.
    pub envelope_id: Option<EnvelopeId>,
    /// Mailman's Message-ID-Hash of the mail.
    pub message_id_hash: String,
    /// Where the mail will be readable (RFC 5064 Archived-At), when archived.
    pub permalink: Option<String>,
    /// Published, spooled or skipped, and why.
    pub outcome: Outcome,
}

/// The answer to [`Archiver::archive_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventReceipt {
    /// The envelope that carries it, when published or spooled.
    pub envelope_id: Option<EnvelopeId>,
    /// Published, spooled, or skipped because the list is not archived
    /// ([`SkipReason::ListNotArchived`]).
    pub outcome: Outcome,
}

/// What a list server calls, shaped like Mailman's `IArchiver`.
#[async_trait]
pub trait Archiver: Send + Sync {
    /// The archiver's name, as in Mailman's configuration.
    fn name(&self) -> &str;

    /// The list's archive URL (RFC 2369 List-Archive), or None when the list
    /// is not archived.
    fn list_url(&self, list: &MailingList) -> Option<String>;

    /// The mail's future URL (RFC 5064 Archived-At), computed without
    /// archiving it; None when the list is not archived.
    fn permalink(&self, list: &MailingList, mail: &ArchivedMail) -> Option<String>;

    /// Hands a mail, as received, to the archives.
    async fn archive_message(
        &self,
        list: &MailingList,
        raw: Bytes,
    ) -> Result<Receipt, ArchiveError>;

    /// Hands an event of `list` to the archives, marked with the list's
    /// archive policy (and posting address, when known) as its mails are:
    /// events of a private list go out `private`, and events of a list
    /// whose policy is `never` are not published at all (the receipt says
    /// [`Outcome::Skipped`]). There is no list-less variant: an event
    /// published without its list's policy could reach the archive of a
    /// private list's readers as public. Fails with
    /// [`ArchiveError::WrongList`] when the event is of another list.
    async fn archive_event(
        &self,
        list: &MailingList,
        event: &ListEvent,
    ) -> Result<EventReceipt, ArchiveError>;
}

/// Where archived mail can be read: a base URL, per list when it contains
/// `{list_id}`. The list URL is the base; a permalink is the list URL
/// joined with the Message-ID-Hash, as Mailman's archivers do.
///
/// ```
/// use archiver_core::{ArchiveUrls, ListId};
/// let urls = ArchiveUrls::new("https://archive.example.org/list/{list_id}/").unwrap();
/// let list = ListId::new("dev.lists.example.org").unwrap();
/// assert_eq!(urls.list_url(&list), "https://archive.example.org/list/dev.lists.example.org/");
/// assert_eq!(
///     urls.permalink(&list, "RSZCG7IGPHFIRW3EMTVMMDNJMNCVCOLE"),
///     "https://archive.example.org/list/dev.lists.example.org/RSZCG7IGPHFIRW3EMTVMMDNJMNCVCOLE"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveUrls {
    template: String,
}

const LIST_ID_PLACEHOLDER: &str = "{list_id}";

impl ArchiveUrls {
    /// Checks that the base is an absolute http(s) URL; a trailing `/` is
    /// added when missing so joining keeps the last path segment.
    pub fn new(base: &str) -> Result<Self, InvalidBaseUrl> {
        let mut template = base.trim().to_owned();
        if !template.ends_with('/') {
            template.push('/');
        }
        let fail = |reason: String| InvalidBaseUrl {
            url: base.to_owned(),
            reason,
        };
        let sample = template.replace(LIST_ID_PLACEHOLDER, "list.example.org");
        let url = Url::parse(&sample).map_err(|e| fail(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(fail(format!(
                "scheme {:?} is not http or https",
                url.scheme()
            )));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(fail("a base URL takes no query or fragment".into()));
        }
        Ok(Self { template })
    }

    /// The list's archive URL.
    pub fn list_url(&self, list: &ListId) -> String {
        self.template.replace(LIST_ID_PLACEHOLDER, list.as_str())
    }

    /// The URL of the mail with this Message-ID-Hash.
    pub fn permalink(&self, list: &ListId, message_id_hash: &str) -> String {
        self.list_url(list) + message_id_hash
    }
}

/// The [`Archiver`] that publishes through any [`Publisher`]: the one a list
/// server embeds.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use archiver_core::{Archiver, ArchiveUrls, ListId, MailingList, MemoryBackend, QueueArchiver};
/// let archiver = QueueArchiver::new(
///     "mq-archiver",
///     MemoryBackend::new(),
///     ArchiveUrls::new("https://archive.example.org/list/{list_id}/")?,
/// );
/// let list = MailingList::public(ListId::new("dev.lists.example.org")?);
/// let raw = bytes::Bytes::from_static(b"Message-ID: <1@example.org>\r\nSubject: hi\r\n\r\nhello\r\n");
/// let receipt = archiver.archive_message(&list, raw).await?;
/// println!("archived at {:?}", receipt.permalink);
/// # Ok(()) }
/// ```
pub struct QueueArchiver<P> {
    name: String,
    publisher: Arc<P>,
    urls: ArchiveUrls,
    limits: MailLimits,
    spool: Option<Spool>,
}

impl<P: Publisher> QueueArchiver<P> {
    /// An archiver named `name` publishing through `publisher`, with the
    /// default [`MailLimits`].
    pub fn new(name: impl Into<String>, publisher: P, urls: ArchiveUrls) -> Self {
        Self {
            name: name.into(),
            publisher: Arc::new(publisher),
            urls,
            limits: MailLimits::default(),
            spool: None,
        }
    }

    /// Adds a local spool: when the broker is unreachable or slower than
    /// [`SpoolOptions::publish_timeout`], envelopes are kept on disk and
    /// published in order by a background task once it answers. A spool
    /// left non-empty by a previous run is drained at once. Call within a
    /// Tokio runtime; one process per spool directory.
    ///
    /// In front of a publisher that is durable on this machine already
    /// ([`PublisherCapabilities::locally_durable`](crate::PublisherCapabilities),
    /// a ZeroMQ hub in this process) a spool only journals each mail twice
    /// on one disk: this logs a warning saying so, and goes on.
    ///
    /// ```
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use archiver_core::{ArchiveUrls, MemoryBackend, QueueArchiver, SpoolOptions};
    /// let spool_dir = std::env::temp_dir().join(format!("spool-doc-{}", std::process::id()));
    /// let archiver = QueueArchiver::new(
    ///     "mq-archiver",
    ///     MemoryBackend::new(),
    ///     ArchiveUrls::new("https://archive.example.org/list/{list_id}/")?,
    /// )
    /// .with_spool(SpoolOptions::new(&spool_dir))?;
    /// assert_eq!(archiver.spool_status().unwrap().depth, 0);
    /// // ... archive_message() as usual; at the end, drain the spool (at
    /// // most 30 s) and close the publisher:
    /// let left = archiver.close(Duration::from_secs(30)).await?;
    /// assert_eq!(left.map(|s| s.depth), Some(0));
    /// # std::fs::remove_dir_all(&spool_dir)?;
    /// # Ok(()) }
    /// ```
    pub fn with_spool(mut self, options: SpoolOptions) -> Result<Self, JournalError>
    where
        P: 'static,
    {
        if self.publisher.publisher_capabilities().locally_durable {
            tracing::warn!(
                archiver = %self.name,
                "a spool in front of a publisher that is already durable on this machine's disk (a ZeroMQ hub in this process) journals each mail twice on one disk and adds nothing: configure no spool for it (no spool-dir)"
            );
        }
        self.spool = Some(Spool::open(options, self.publisher.clone())?);
        Ok(self)
    }

    /// Adopts the spool in `dir` that no live process holds (e.g. one a
    /// list server left under another name, such as after a change of
    /// runner slices): its undrained envelopes are appended to this
    /// archiver's spool, in order, and drained with it; `dir` is deleted
    /// unless it holds set-aside envelopes. Call it at start for each
    /// stale spool directory. Returns how many envelopes were adopted.
    /// Fails with `Locked` when a process holds `dir`, and with
    /// [`ArchiveError::NoSpool`] when this archiver has no spool.
    pub async fn adopt_spool(&self, dir: impl AsRef<std::path::Path>) -> Result<u64, ArchiveError> {
        let spool = self.spool.as_ref().ok_or(ArchiveError::NoSpool)?;
        Ok(spool.adopt(dir.as_ref()).await?)
    }

    /// The spool's depth, age and counters; None without a spool.
    pub fn spool_status(&self) -> Option<SpoolStatus> {
        self.spool.as_ref().map(Spool::status)
    }

    /// Stops the archiver's spool: waits at most `within` for it to drain,
    /// then stops draining and closes it; later archiving through this
    /// archiver fails. Returns what the spool still holds (published on
    /// the next start); None without a spool. The publisher stays open
    /// (for a caller that shares it); [`close`](Self::close) closes it too.
    pub async fn shutdown(&self, within: Duration) -> Option<SpoolStatus> {
        match &self.spool {
            Some(spool) => Some(spool.shutdown(within).await),
            None => None,
        }
    }

    /// Closes the archiver at the end of a list server's run: drains and
    /// stops the spool as [`shutdown`](Self::shutdown) does (at most
    /// `within`), then closes the publisher, so its connections go (a
    /// ZeroMQ hub stops serving) and nothing is left half open. Returns
    /// what the spool still holds (published on the next start; None
    /// without a spool), or the publisher's error on closing.
    pub async fn close(&self, within: Duration) -> Result<Option<SpoolStatus>, BackendError> {
        let left = self.shutdown(within).await;
        self.publisher.close().await?;
        Ok(left)
    }

    /// Publishes `envelope`, or spools it when the broker is unavailable or
    /// slow and a spool is configured.
    async fn deliver(&self, envelope: &Envelope) -> Result<Outcome, ArchiveError> {
        let Some(spool) = &self.spool else {
            self.publisher.publish(envelope).await?;
            return Ok(Outcome::Published);
        };
        if spool.is_empty() {
            let timeout = spool.publish_timeout();
            match tokio::time::timeout(timeout, self.publisher.publish(envelope)).await {
                Ok(Ok(())) => return Ok(Outcome::Published),
                Ok(Err(error)) if !error.is_transient() => return Err(error.into()),
                Ok(Err(error)) => tracing::debug!(%error, "publish failed; spooling"),
                Err(_) => tracing::debug!(?timeout, "publish too slow; spooling"),
            }
        }
        spool.append(envelope).await?;
        Ok(Outcome::Spooled)
    }

    /// Replaces the mail limits.
    pub fn with_limits(mut self, limits: MailLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The limits in force, for parsing a mail before calling
    /// [`Archiver::permalink`].
    pub fn limits(&self) -> &MailLimits {
        &self.limits
    }

    /// The publisher, e.g. to close it.
    pub fn publisher(&self) -> &P {
        &self.publisher
    }
}

#[async_trait]
impl<P: Publisher> Archiver for QueueArchiver<P> {
    fn name(&self) -> &str {
        &self.name
    }

    fn list_url(&self, list: &MailingList) -> Option<String> {
        (list.archive_policy != ArchivePolicy::Never).then(|| self.urls.list_url(&list.list_id))
    }

    fn permalink(&self, list: &MailingList, mail: &ArchivedMail) -> Option<String> {
        (list.archive_policy != ArchivePolicy::Never)
            .then(|| self.urls.permalink(&list.list_id, mail.message_id_hash()))
    }

    async fn archive_message(
        &self,
        list: &MailingList,
        raw: Bytes,
    ) -> Result<Receipt, ArchiveError> {
        let mail = ArchivedMail::parse(raw, &self.limits).inspect_err(|error| {
            tracing::warn!(list_id = %list.list_id, %error, "mail refused");
        })?;
        let hash = mail.message_id_hash().to_owned();
        let skip = if list.archive_policy == ArchivePolicy::Never {
            Some(SkipReason::ListNotArchived)
        } else {
            mail.meta().opt_out
        };
        if let Some(reason) = skip {
            tracing::info!(list_id = %list.list_id, message_id_hash = %hash, ?reason, "mail not archived");
            return Ok(Receipt {
                envelope_id: None,
                message_id_hash: hash,
                permalink: None,
                outcome: Outcome::Skipped(reason),
            });
        }
        let envelope = Envelope::mail(&mail, list);
        let span = tracing::info_span!(
            "archive_message",
            list_id = %list.list_id,
            envelope_id = %envelope.id,
            message_id_hash = %hash,
        );
        async {
            let outcome = self.deliver(&envelope).await.inspect_err(|error| {
                tracing::warn!(%error, "archiving failed");
            })?;
            tracing::debug!(bytes = envelope.body.len(), ?outcome, "archived");
            Ok(Receipt {
                envelope_id: Some(envelope.id),
                permalink: self.permalink(list, &mail),
                message_id_hash: hash,
                outcome,
            })
        }
        .instrument(span)
        .await
    }

    async fn archive_event(
        &self,
        list: &MailingList,
        event: &ListEvent,
    ) -> Result<EventReceipt, ArchiveError> {
        if list.list_id != event.list_id {
            return Err(ArchiveError::WrongList {
                event: event.list_id.clone(),
                list: list.list_id.clone(),
            });
        }
        if list.archive_policy == ArchivePolicy::Never {
            let reason = SkipReason::ListNotArchived;
            tracing::info!(list_id = %list.list_id, event_type = event.change.type_name(), ?reason, "event not archived");
            return Ok(EventReceipt {
                envelope_id: None,
                outcome: Outcome::Skipped(reason),
            });
        }
        let envelope = Envelope::event(event, list);
        let span = tracing::info_span!(
            "archive_event",
            list_id = %event.list_id,
            envelope_id = %envelope.id,
            event_type = event.change.type_name(),
        );
        async {
            let outcome = self.deliver(&envelope).await.inspect_err(|error| {
                tracing::warn!(%error, "archiving failed");
            })?;
            tracing::debug!(?outcome, "archived");
            Ok(EventReceipt {
                envelope_id: Some(envelope.id),
                outcome,
            })
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Subscriber, Subscription};
    use crate::event::ListChange;
    use crate::memory::MemoryBackend;
    use futures::StreamExt;

    fn list(id: &str, archive_policy: ArchivePolicy) -> MailingList {
        MailingList {
            archive_policy,
            ..MailingList::public(ListId::new(id).unwrap())
        }
    }

    /// Events go out marked with their list's policy, as its mails do;
    /// events of a `never` list are not published at all.
    #[tokio::test]
    async fn events_carry_the_lists_policy_and_never_lists_publish_none() {
        let broker = MemoryBackend::new();
        let mut deliveries = broker
            .subscribe(&Subscription::new("web".parse().unwrap()))
            .await
            .unwrap();
        let archiver = QueueArchiver::new(
            "test",
            broker.connect(),
            ArchiveUrls::new("https://archive.example.org/").unwrap(),
        );
        let never = list("never.example.org", ArchivePolicy::Never);
        for event in ListEvent::samples(&never.list_id) {
            let receipt = archiver.archive_event(&never, &event).await.unwrap();
            assert_eq!(
                receipt,
                EventReceipt {
                    envelope_id: None,
                    outcome: Outcome::Skipped(SkipReason::ListNotArchived),
                }
            );
        }
        let mut sent = Vec::new();
        for list in [
            list("private.example.org", ArchivePolicy::Private),
            list("public.example.org", ArchivePolicy::Public),
        ] {
            for event in ListEvent::samples(&list.list_id) {
                let receipt = archiver.archive_event(&list, &event).await.unwrap();
                assert_eq!(receipt.outcome, Outcome::Published);
                sent.push((receipt.envelope_id.unwrap(), list.archive_policy, event));
            }
        }
        // The memory broker keeps publish order: had any event of the
        // `never` list been published, it would come first.
        for (id, policy, event) in &sent {
            let delivery = deliveries.next().await.unwrap().unwrap();
            let envelope = delivery.envelope();
            assert_eq!(envelope.id, *id, "{:?}", envelope.list_id);
            assert_eq!(envelope.archive_policy, Some(*policy));
            assert_eq!(
                envelope.event_type.as_deref(),
                Some(event.change.type_name())
            );
            assert_eq!(ListEvent::from_json(&envelope.body).unwrap(), *event);
            delivery.ack().await.unwrap();
        }
        let samples = ListEvent::samples(&never.list_id).len();
        assert_eq!(sent.len(), 2 * samples);
    }

    #[tokio::test]
    async fn an_event_of_another_list_is_refused() {
        let archiver = QueueArchiver::new(
            "test",
            MemoryBackend::new(),
            ArchiveUrls::new("https://archive.example.org/").unwrap(),
        );
        let event = ListEvent::now(
            ListId::new("b.example.org").unwrap(),
            ListChange::ListDeleted,
        );
        for policy in [ArchivePolicy::Public, ArchivePolicy::Never] {
            assert!(matches!(
                archiver
                    .archive_event(&list("a.example.org", policy), &event)
                    .await,
                Err(ArchiveError::WrongList { .. })
            ));
        }
    }
    #[test]
    fn base_urls_are_checked() {
        assert!(ArchiveUrls::new("ftp://x.org/").is_err());
        assert!(ArchiveUrls::new("not a url").is_err());
        assert!(ArchiveUrls::new("https://x.org/?q=1").is_err());
        let urls = ArchiveUrls::new("https://x.org/archive").unwrap();
        let list = ListId::new("a.x.org").unwrap();
        assert_eq!(urls.list_url(&list), "https://x.org/archive/");
        assert_eq!(urls.permalink(&list, "H"), "https://x.org/archive/H");
    }
}
