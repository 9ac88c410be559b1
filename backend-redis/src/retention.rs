//! Retention: trim a list stream up to the oldest entry any subscriber still
//! needs, so memory stays bounded while subscribers keep up and no entry a
//! subscriber has not acknowledged is ever removed.
//!
//! For each stream the frontier of every subscriber that selects it is: its
//! oldest pending entry, else the entry after its last delivered one; a
//! subscriber without a group there yet needs everything from its creation
//! time (everything, for one that reads from the beginning), unless its
//! record says Redis refused its user that stream (or the registry set it
//! finds it through): a subscriber selecting more than its grant waits for
//! nothing it may not read. A group whose subscriber's record no longer
//! selects the stream, or whose user Redis refuses it, is ignored (an
//! archive server's Redis user may not destroy it when its selection
//! narrows); one whose record is unreadable (invalid, or of a newer
//! version) still holds trimming back. A refusal that a widened grant
//! lifts is noticed within a retention interval; what was trimmed before
//! that the new group does not get. Entries younger
//! than `retention_min_age` (a minute by default) are never trimmed, which
//! covers a subscriber being created while the frontiers are computed. A
//! stream nobody selects is kept whole, for a later subscriber that starts
//! at the beginning.

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{RedisResult, Value};

use crate::entry::{EntryId, int, items, text};
use crate::keys::Keys;
use crate::registry::{self, redis_time_ms};

/// Trims each of the given list streams, never below `min_age`; returns
/// how many entries went.
pub(crate) async fn trim(
    conn: &mut ConnectionManager,
    keys: &Keys,
    streams: &[String],
    min_age: Duration,
) -> RedisResult<u64> {
    let mut total = 0;
    if streams.is_empty() {
        return Ok(total);
    }
    let subscribers = registry::load_all(conn, keys).await?;
    let registered = registry::streams(conn, keys).await?;
    let now_ms = redis_time_ms(conn).await?;
    let youngest_trimmable =
        EntryId::just_before(now_ms.saturating_sub(min_age.as_millis() as u64)).next();
    for stream in streams {
        let Some(registered) = registered.iter().find(|s| &s.key == stream) else {
            continue;
        };
        let mut frontiers: HashMap<String, EntryId> = group_frontiers(conn, stream).await?;
        // The group of an earlier selection, which an archive server's
        // Redis user may not destroy, holds nothing back; nor one Redis
        // now refuses its user. A group whose record cannot be read (a
        // newer version's selection, say) still does: it may hold
        // entries not yet acknowledged.
        frontiers.retain(|name, _| {
            subscribers
                .iter()
                .find(|(n, _)| n == name)
                .is_none_or(|(_, record)| {
                    record.selection().is_err() || record.needs(keys, registered)
                })
        });
        for (name, record) in &subscribers {
            if record.needs(keys, registered) {
                frontiers
                    .entry(name.clone())
                    .or_insert_with(|| record.group_start().next());
            }
        }
        let Some(oldest_needed) = frontiers.values().min().copied() else {
            continue;
        };
        let min_id = oldest_needed.min(youngest_trimmable);
        let trimmed: u64 = redis::cmd("XTRIM")
            .arg(stream)
            .arg("MINID")
            .arg(min_id.to_string())
            .query_async(conn)
            .await?;
        if trimmed > 0 {
            tracing::debug!(stream, trimmed, %min_id, "trimmed acknowledged entries");
        }
        total += trimmed;
    }
    Ok(total)
}

/// Group name → the first entry that group still needs.
pub(crate) async fn group_frontiers(
    conn: &mut ConnectionManager,
    stream: &str,
) -> RedisResult<HashMap<String, EntryId>> {
    let reply: Value = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query_async(conn)
        .await?;
    let mut frontiers = HashMap::new();
    for group in items(&reply) {
        let fields: HashMap<String, &Value> = match group {
            Value::Map(pairs) => pairs
                .iter()
                .filter_map(|(k, v)| Some((text(k)?, v)))
                .collect(),
            other => items(other)
                .chunks_exact(2)
                .filter_map(|p| Some((text(&p[0])?, &p[1])))
                .collect(),
        };
        let Some(name) = fields.get("name").and_then(|v| text(v)) else {
            continue;
        };
        let pending = fields.get("pending").and_then(|v| int(v)).unwrap_or(0);
        let last_delivered: EntryId = fields
            .get("last-delivered-id")
            .and_then(|v| text(v))
            .and_then(|id| id.parse().ok())
            .unwrap_or(EntryId::ZERO);
        let frontier = if pending > 0 {
            let summary: Value = redis::cmd("XPENDING")
                .arg(stream)
                .arg(&name)
                .query_async(conn)
                .await?;
            items(&summary)
                .get(1)
                .and_then(text)
                .and_then(|id| id.parse().ok())
                .unwrap_or(EntryId::ZERO)
        } else {
            last_delivered.next()
        };
        frontiers.insert(name, frontier);
    }
    Ok(frontiers)
}
