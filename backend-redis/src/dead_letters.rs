//! Dead letters: a stream per subscriber (`<p>:dead:<name>`) holding the
//! entry's fields plus why, when and after how many attempts; replay moves
//! them to the subscriber's replay stream, which its consumers also read.

use archiver_core::{BackendError, DeadLetter, Replay, SubscriberName};
use chrono::{DateTime, SecondsFormat, Utc};
use redis::RedisResult;
use redis::aio::ConnectionManager;

use crate::entry::{Entry, EntryId, entries, int};
use crate::error::backend_error;
use crate::keys::Keys;

const REASON: &str = "dead-reason";
const ATTEMPTS: &str = "dead-attempts";
const DEAD_AT: &str = "dead-at";
const FROM: &str = "dead-from";
/// Fields the dead-letter stream adds to the entry's own.
const ADDED: [&str; 4] = [REASON, ATTEMPTS, DEAD_AT, FROM];

/// Where a pending entry is, so it can be settled.
pub(crate) struct PendingRef<'a> {
    pub(crate) stream: &'a str,
    pub(crate) group: &'a SubscriberName,
    pub(crate) id: EntryId,
    /// Entries of the replay stream are deleted once settled.
    pub(crate) delete_after: bool,
}

/// Atomically copies the entry's fields into the dead letters with the
/// reason, and acknowledges it.
pub(crate) async fn bury(
    conn: &mut ConnectionManager,
    keys: &Keys,
    pending: &PendingRef<'_>,
    fields: &[(impl AsRef<str>, impl AsRef<[u8]>)],
    attempts: u32,
    reason: &str,
) -> RedisResult<()> {
    let mut pipe = redis::pipe();
    pipe.atomic();
    let xadd = pipe.cmd("XADD").arg(keys.dead(pending.group)).arg("*");
    for (name, value) in fields {
        xadd.arg(name.as_ref()).arg(value.as_ref());
    }
    xadd.arg(REASON).arg(reason).arg(ATTEMPTS).arg(attempts);
    xadd.arg(DEAD_AT)
        .arg(Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true));
    xadd.arg(FROM)
        .arg(format!("{} {}", pending.stream, pending.id));
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

/// The subscriber's dead letters, oldest first. Entries that are not valid
/// envelopes (malformed on arrival) stay in the stream and are only logged.
pub(crate) async fn list(
    conn: &mut ConnectionManager,
    keys: &Keys,
    name: &SubscriberName,
) -> Result<Vec<DeadLetter>, BackendError> {
    Ok(read(conn, keys, name)
        .await?
        .into_iter()
        .filter_map(|(_, letter)| letter)
        .collect())
}

async fn read(
    conn: &mut ConnectionManager,
    keys: &Keys,
    name: &SubscriberName,
) -> Result<Vec<(Entry, Option<DeadLetter>)>, BackendError> {
    let reply: redis::Value = redis::cmd("XRANGE")
        .arg(keys.dead(name))
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .map_err(backend_error)?;
    Ok(entries(&reply)
        .into_iter()
        .map(|entry| {
            let letter = to_dead_letter(&entry);
            if letter.is_none() {
                tracing::warn!(subscriber = %name, entry_id = %entry.id, "a dead letter is not a valid envelope; left in the dead-letter stream");
            }
            (entry, letter)
        })
        .collect())
}

fn to_dead_letter(entry: &Entry) -> Option<DeadLetter> {
    Some(DeadLetter {
        envelope: entry.envelope().ok()?,
        attempts: entry
            .text(ATTEMPTS)
            .and_then(|a| a.parse().ok())
            .unwrap_or(0),
        reason: entry.text(REASON).unwrap_or_default().to_owned(),
        dead_at: entry
            .text(DEAD_AT)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map_or_else(Utc::now, |t| t.with_timezone(&Utc)),
    })
}

/// Moves the chosen dead letters to the replay stream (attempts start
/// again); returns how many.
pub(crate) async fn replay(
    conn: &mut ConnectionManager,
    keys: &Keys,
    name: &SubscriberName,
    which: &Replay,
) -> Result<usize, BackendError> {
    let mut count = 0;
    for (entry, letter) in read(conn, keys, name).await? {
        let Some(letter) = letter else { continue };
        if !which.covers(&letter.envelope.id) {
            continue;
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        let xadd = pipe.cmd("XADD").arg(keys.replay(name)).arg("*");
        for (field, value) in entry
            .fields
            .iter()
            .filter(|(f, _)| !ADDED.contains(&f.as_str()))
        {
            xadd.arg(field).arg(value);
        }
        pipe.ignore();
        pipe.cmd("XDEL")
            .arg(keys.dead(name))
            .arg(entry.id.to_string());
        let replies: Vec<redis::Value> = pipe.query_async(conn).await.map_err(backend_error)?;
        count += replies.first().and_then(int).unwrap_or(0) as usize;
    }
    Ok(count)
}
