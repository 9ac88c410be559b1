//! Dead letters: a stream per subscriber (`<p>:dead:<name>`) holding the
//! entry's fields plus why, when, after how many attempts and from which
//! stream (the names every backend uses, `docs/wire-format.md`). Every
//! entry is listed, malformed ones too (as they are, with their reason);
//! listing pages with `XRANGE` from an exclusive start. Replay moves valid
//! ones to the subscriber's replay stream, which its consumers also read;
//! malformed ones are never replayed, only purged.

use archiver_core::wire::WireError;
use archiver_core::{BackendError, DeadLetter, Envelope, Replay, SubscriberName};
use chrono::{DateTime, SecondsFormat, Utc};
use redis::RedisResult;
use redis::aio::ConnectionManager;

use crate::entry::{Entry, EntryId, entries, int};
use crate::error::backend_error;
use crate::keys::Keys;

/// Why it is dead.
const REASON: &str = "dead-reason";
/// Deliveries it had.
const ATTEMPTS: &str = "dead-attempts";
/// When it was dead-lettered (RFC 3339, UTC, ms).
const DEAD_AT: &str = "dead-at";
/// The stream the entry was first added to: what its kind and list id must
/// match. Kept on replayed copies, so they are checked against it too.
pub(crate) const ORIGIN: &str = "origin";
/// What earlier versions wrote instead of `origin`: `<stream key> <entry id>`.
const LEGACY_FROM: &str = "dead-from";
/// Fields a dead letter has beyond the entry's; a replayed copy drops them.
const DEAD_FIELDS: [&str; 4] = [REASON, ATTEMPTS, DEAD_AT, LEGACY_FROM];
/// Reasons of dead letters that are not (trustworthy) envelopes start so.
const MALFORMED: &str = "malformed";
/// Entries read per XRANGE when every dead letter is wanted.
const PAGE: usize = 256;

/// One entry of a subscriber's dead-letter stream as it is stored, valid
/// envelope or not, so an operator sees every dead letter.
#[derive(Debug, Clone)]
pub struct RawDeadLetter {
    /// The entry's id in `<p>:dead:<name>`: its place for paging.
    pub id: String,
    /// Every field as stored (the envelope's, `body`, and the dead-letter
    /// metadata).
    pub fields: Vec<(String, Vec<u8>)>,
    /// Why it was dead-lettered; `malformed: ...` for an entry that is not
    /// a valid envelope or not from where it claims.
    pub reason: String,
    /// Deliveries it had.
    pub attempts: u32,
    /// When it was dead-lettered, if recorded.
    pub dead_at: Option<DateTime<Utc>>,
    /// The stream it was first added to, if recorded.
    pub origin: Option<String>,
    /// The envelope, or why the fields are not one.
    pub envelope: Result<Envelope, WireError>,
}

impl RawDeadLetter {
    fn of(entry: Entry) -> Self {
        let origin = entry.text(ORIGIN).map(str::to_owned).or_else(|| {
            let from = entry.text(LEGACY_FROM)?;
            Some(from.split_once(' ').map_or(from, |(key, _)| key).to_owned())
        });
        Self {
            id: entry.id.to_string(),
            reason: entry.text(REASON).unwrap_or_default().to_owned(),
            attempts: entry
                .text(ATTEMPTS)
                .and_then(|a| a.parse().ok())
                .unwrap_or(0),
            dead_at: entry
                .text(DEAD_AT)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc)),
            origin,
            envelope: entry.envelope(),
            fields: entry.fields,
        }
    }

    /// Not a valid envelope, or not from where it claims: never replayed.
    pub fn is_malformed(&self) -> bool {
        self.envelope.is_err() || self.reason.starts_with(MALFORMED)
    }

    fn dead_letter(&self) -> Option<DeadLetter> {
        Some(DeadLetter {
            envelope: self.envelope.clone().ok()?,
            attempts: self.attempts,
            reason: self.reason.clone(),
            dead_at: self.dead_at.unwrap_or_else(Utc::now),
        })
    }
}

/// Up to `limit` dead letters, oldest first, and where the next page
/// starts.
#[derive(Debug, Clone)]
pub struct DeadLetterPage {
    /// The dead letters of this page.
    pub letters: Vec<RawDeadLetter>,
    /// Pass as `after` for the next page; `None` when this one was the last.
    pub next: Option<String>,
}

/// Where a pending entry is, so it can be settled.
pub(crate) struct PendingRef<'a> {
    pub(crate) stream: &'a str,
    pub(crate) group: &'a SubscriberName,
    pub(crate) id: EntryId,
    /// Entries of the replay stream are deleted once settled.
    pub(crate) delete_after: bool,
}

/// Atomically copies the entry's fields into the dead letters with the
/// reason and origin, and acknowledges it.
pub(crate) async fn bury(
    conn: &mut ConnectionManager,
    keys: &Keys,
    pending: &PendingRef<'_>,
    fields: &[(impl AsRef<str>, impl AsRef<[u8]>)],
    origin: Option<&str>,
    attempts: u32,
    reason: &str,
) -> RedisResult<()> {
    let mut pipe = redis::pipe();
    pipe.atomic();
    let xadd = pipe.cmd("XADD").arg(keys.dead(pending.group)).arg("*");
    for (name, value) in fields {
        let name = name.as_ref();
        if name != ORIGIN && !DEAD_FIELDS.contains(&name) {
            xadd.arg(name).arg(value.as_ref());
        }
    }
    xadd.arg(REASON).arg(reason).arg(ATTEMPTS).arg(attempts);
    xadd.arg(DEAD_AT)
        .arg(Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true));
    if let Some(origin) = origin {
        xadd.arg(ORIGIN).arg(origin);
    }
    pipe.ignore();
    settle_entry(&mut pipe, pending);
    tracing::info!(subscriber = %pending.group, stream = pending.stream, entry_id = %pending.id, attempts, reason, "dead-lettered");
    pipe.query_async(conn).await
}

/// Adds the commands that acknowledge (and, for replays, delete) an entry.
pub(crate) fn settle_entry(pipe: &mut redis::Pipeline, pending: &PendingRef<'_>) {
    pipe.cmd("XACK")
        .arg(pending.stream)
        .arg(pending.group.as_str())
        .arg(pending.id.to_string())
        .ignore();
    if pending.delete_after {
        pipe.cmd("XDEL")
            .arg(pending.stream)
            .arg(pending.id.to_string())
            .ignore();
    }
}

/// Up to `limit` dead letters after entry `after` (from the first without).
pub(crate) async fn page(
    conn: &mut ConnectionManager,
    keys: &Keys,
    name: &SubscriberName,
    after: Option<&str>,
    limit: usize,
) -> Result<DeadLetterPage, BackendError> {
    let start = match after {
        None => "-".to_owned(),
        Some(id) => {
            let id: EntryId = id.parse().map_err(|()| {
                BackendError::InvalidSubscription(format!(
                    "dead-letter position {id:?} is not a stream entry id"
                ))
            })?;
            format!("({id}")
        }
    };
    let limit = limit.max(1);
    let reply: redis::Value = redis::cmd("XRANGE")
        .arg(keys.dead(name))
        .arg(start)
        .arg("+")
        .arg("COUNT")
        .arg(limit)
        .query_async(conn)
        .await
        .map_err(backend_error)?;
    let letters: Vec<RawDeadLetter> = entries(&reply).into_iter().map(RawDeadLetter::of).collect();
    let next = (letters.len() == limit)
        .then(|| letters.last().map(|l| l.id.clone()))
        .flatten();
    Ok(DeadLetterPage { letters, next })
}

/// Every dead letter, oldest first, read a page at a time.
#[derive(Default)]
struct Pages {
    after: Option<String>,
    done: bool,
}

impl Pages {
    /// The next page; `None` after the last.
    async fn next(
        &mut self,
        conn: &mut ConnectionManager,
        keys: &Keys,
        name: &SubscriberName,
    ) -> Result<Option<Vec<RawDeadLetter>>, BackendError> {
        if self.done {
            return Ok(None);
        }
        let page = page(conn, keys, name, self.after.as_deref(), PAGE).await?;
        self.done = page.next.is_none();
        self.after = page.next;
        Ok(Some(page.letters))
    }
}

/// The subscriber's dead letters that are envelopes, oldest first.
pub(crate) async fn list(
    conn: &mut ConnectionManager,
    keys: &Keys,
    name: &SubscriberName,
) -> Result<Vec<DeadLetter>, BackendError> {
    let (mut letters, mut pages) = (Vec::new(), Pages::default());
    while let Some(page) = pages.next(conn, keys, name).await? {
        letters.extend(page.iter().filter_map(RawDeadLetter::dead_letter));
    }
    Ok(letters)
}

/// Moves the chosen dead letters to the replay stream (attempts start
/// again), malformed ones excepted; returns how many.
pub(crate) async fn replay(
    conn: &mut ConnectionManager,
    keys: &Keys,
    name: &SubscriberName,
    which: &Replay,
) -> Result<usize, BackendError> {
    let (mut count, mut pages) = (0, Pages::default());
    while let Some(page) = pages.next(conn, keys, name).await? {
        for letter in page {
            count += replay_one(conn, keys, name, which, &letter).await?;
        }
    }
    Ok(count)
}

/// Replays one dead letter if `which` covers it and it is not malformed;
/// 1 if it was moved.
async fn replay_one(
    conn: &mut ConnectionManager,
    keys: &Keys,
    name: &SubscriberName,
    which: &Replay,
    letter: &RawDeadLetter,
) -> Result<usize, BackendError> {
    let Ok(envelope) = &letter.envelope else {
        return Ok(0);
    };
    if !which.covers(&envelope.id) {
        return Ok(0);
    }
    if letter.is_malformed() {
        tracing::warn!(subscriber = %name, entry_id = letter.id, reason = letter.reason, "a malformed dead letter is not replayed");
        return Ok(0);
    }
    let mut pipe = redis::pipe();
    pipe.atomic();
    let xadd = pipe.cmd("XADD").arg(keys.replay(name)).arg("*");
    for (field, value) in &letter.fields {
        if !DEAD_FIELDS.contains(&field.as_str()) && field != ORIGIN {
            xadd.arg(field).arg(value);
        }
    }
    let origin = letter
        .origin
        .clone()
        .unwrap_or_else(|| keys.stream(envelope.kind, &envelope.list_id));
    xadd.arg(ORIGIN).arg(origin);
    pipe.ignore();
    pipe.cmd("XDEL").arg(keys.dead(name)).arg(&letter.id);
    let replies: Vec<redis::Value> = pipe.query_async(conn).await.map_err(backend_error)?;
    Ok(replies.first().and_then(int).unwrap_or(0) as usize)
}

/// Deletes the malformed dead letters; returns how many.
pub(crate) async fn purge_malformed(
    conn: &mut ConnectionManager,
    keys: &Keys,
    name: &SubscriberName,
) -> Result<usize, BackendError> {
    let (mut malformed, mut pages) = (Vec::new(), Pages::default());
    while let Some(page) = pages.next(conn, keys, name).await? {
        malformed.extend(
            page.into_iter()
                .filter(RawDeadLetter::is_malformed)
                .map(|l| l.id),
        );
    }
    if malformed.is_empty() {
        return Ok(0);
    }
    redis::cmd("XDEL")
        .arg(keys.dead(name))
        .arg(&malformed)
        .query_async(conn)
        .await
        .map_err(backend_error)
}
