//! Dead letters: a stream per subscriber (`<p>:dead:<name>`) holding the
//! entry's fields plus why, when, after how many attempts and from which
//! stream (the names every backend uses, `docs/wire-format.md`). Every
//! entry is listed, malformed ones too (as they are, with their reason);
//! listing pages with `XRANGE` from an exclusive start. Replay moves valid
//! ones to the subscriber's replay stream, which its consumers also read;
//! malformed ones are never replayed, only purged.

use archiver_core::{BackendError, DeadLetter, RawDeadLetter, Replay, SubscriberName};
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use redis::RedisResult;
use redis::aio::ConnectionManager;

use crate::entry::{BODY, Entry, EntryId, entries, int};
use crate::error::refusing;
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
/// Entries read per XRANGE when every dead letter is wanted.
const PAGE: usize = 256;

/// The entry as an operator sees it: its fields but `body` as text, and
/// the dead-letter metadata read out of them.
fn raw(entry: &Entry) -> RawDeadLetter {
    let origin = entry.text(ORIGIN).map(str::to_owned).or_else(|| {
        let from = entry.text(LEGACY_FROM)?;
        Some(from.split_once(' ').map_or(from, |(key, _)| key).to_owned())
    });
    let (body, fields): (Vec<_>, Vec<_>) = entry.fields.iter().partition(|(k, _)| k == BODY);
    RawDeadLetter {
        fields: fields
            .into_iter()
            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect(),
        body: body.first().map(|(_, v)| v.clone()).unwrap_or_default(),
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

/// Appends an entry's fields, as stored and in their order, to an XADD,
/// but for the dead-letter fields and `origin`
/// (which the caller writes anew). A dead letter keeps what its entry
/// held, fields this version does not know and a newer format version
/// included, and a replayed copy keeps what its dead letter held.
fn add_stored_fields(xadd: &mut redis::Cmd, fields: &[(String, Bytes)]) {
    for (name, value) in fields {
        if name != ORIGIN && !DEAD_FIELDS.contains(&name.as_str()) {
            xadd.arg(name).arg(&value[..]);
        }
    }
}

/// Atomically copies the entry's fields (as read, not re-encoded) into the
/// dead letters with the reason and origin, and acknowledges it.
pub(crate) async fn bury(
    conn: &mut ConnectionManager,
    keys: &Keys,
    pending: &PendingRef<'_>,
    fields: &[(String, Bytes)],
    origin: Option<&str>,
    attempts: u32,
    reason: &str,
) -> RedisResult<()> {
    let mut xadd = redis::cmd("XADD");
    xadd.arg(keys.dead(pending.group)).arg("*");
    add_stored_fields(&mut xadd, fields);
    xadd.arg(REASON).arg(reason).arg(ATTEMPTS).arg(attempts);
    xadd.arg(DEAD_AT)
        .arg(Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true));
    if let Some(origin) = origin {
        xadd.arg(ORIGIN).arg(origin);
    }
    let mut pipe = redis::pipe();
    pipe.atomic().add_command(xadd).ignore();
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
    let (entries, next) = stored_page(conn, keys, name, after, limit).await?;
    Ok(DeadLetterPage {
        letters: entries.iter().map(raw).collect(),
        next,
    })
}

/// Up to `limit` dead-letter entries as stored after entry `after`, and
/// the id of the last when there may be more.
async fn stored_page(
    conn: &mut ConnectionManager,
    keys: &Keys,
    name: &SubscriberName,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<Entry>, Option<String>), BackendError> {
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
        .map_err(refusing(&format!("XRANGE {}", keys.dead(name))))?;
    let entries = entries(reply);
    let next = (entries.len() == limit)
        .then(|| entries.last().map(|e| e.id.to_string()))
        .flatten();
    Ok((entries, next))
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
    ) -> Result<Option<Vec<Entry>>, BackendError> {
        if self.done {
            return Ok(None);
        }
        let (entries, next) = stored_page(conn, keys, name, self.after.as_deref(), PAGE).await?;
        self.done = next.is_none();
        self.after = next;
        Ok(Some(entries))
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
        letters.extend(page.iter().filter_map(|entry| raw(entry).dead_letter()));
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
        for entry in page {
            count += replay_one(conn, keys, name, which, &entry).await?;
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
    entry: &Entry,
) -> Result<usize, BackendError> {
    let letter = raw(entry);
    let Ok(envelope) = &letter.envelope else {
        return Ok(0);
    };
    if !which.covers(&envelope.id) {
        return Ok(0);
    }
    if letter.is_malformed() {
        tracing::warn!(subscriber = %name, entry_id = %entry.id, reason = letter.reason, "a malformed dead letter is not replayed");
        return Ok(0);
    }
    let mut xadd = redis::cmd("XADD");
    xadd.arg(keys.replay(name)).arg("*");
    // The stored bytes, not the operator's text of them.
    add_stored_fields(&mut xadd, &entry.fields);
    let origin = letter
        .origin
        .clone()
        .unwrap_or_else(|| keys.stream_of(envelope).key);
    xadd.arg(ORIGIN).arg(origin);
    let mut pipe = redis::pipe();
    pipe.atomic().add_command(xadd).ignore();
    pipe.cmd("XDEL")
        .arg(keys.dead(name))
        .arg(entry.id.to_string());
    let replies: Vec<redis::Value> = pipe.query_async(conn).await.map_err(refusing(&format!(
        "XADD {} and XDEL {}",
        keys.replay(name),
        keys.dead(name)
    )))?;
    Ok(replies.first().and_then(int).unwrap_or(0) as usize)
}

/// Deletes every dead letter; returns how many. One transaction, so a
/// dead letter added meanwhile is either counted and deleted or kept.
pub(crate) async fn purge(
    conn: &mut ConnectionManager,
    keys: &Keys,
    name: &SubscriberName,
) -> Result<usize, BackendError> {
    let (count, _deleted): (usize, usize) = redis::pipe()
        .atomic()
        .cmd("XLEN")
        .arg(keys.dead(name))
        .cmd("DEL")
        .arg(keys.dead(name))
        .query_async(conn)
        .await
        .map_err(refusing(&format!("DEL {}", keys.dead(name))))?;
    Ok(count)
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
            page.iter()
                .filter(|entry| raw(entry).is_malformed())
                .map(|entry| entry.id.to_string()),
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
        .map_err(refusing(&format!("XDEL {}", keys.dead(name))))
}
