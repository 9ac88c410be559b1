//! Migration from the layout of earlier versions (one stream per list and
//! kind, `<p>:streams`, the `<p>:subscribers` hash) to the layout with the
//! access class in key names ([`crate::keys`]), with nothing lost.
//!
//! At connect, a client whose Redis user may read the old keys (the list
//! server's; an archive server's is refused them and skips this) copies
//! each subscriber's record to its own key, then moves each old stream in
//! one script, so a crash leaves every stream either old or moved: the
//! script checks the stream is as read (else it is read again), appends
//! each entry to the stream of its class and content (an entry whose kind
//! or list id is not its stream's goes to that list's private stream,
//! where consumers dead-letter it as malformed), creates every old group
//! on each new stream just after its copy of the last entry that group no
//! longer needs, so its pending and unread entries are delivered again
//! (at least once: an entry read but not yet acknowledged may come twice),
//! drops delayed retries that name the old stream (those entries come again
//! at once), registers the new streams and deletes the old one. Dead
//! letters and replay streams stay where they are; their `origin` may name
//! an old stream, which consumers accept.
//!
//! Duplicates are bounded: when a target stream already has entries (a
//! move interrupted and redone, or the new version already published
//! there) or an old group's name already exists on it, that group starts
//! at its record's start there (or keeps its position), so every copy
//! after it is delivered again once. One EVAL carries a whole stream:
//! while a large stream moves, Redis answers other clients BUSY (scripts
//! block the server), so migrate at a quiet time.
//!
//! Old versions' consumers must be stopped before: one still adding to an
//! old stream makes the move retry, then fail the connect.

use std::collections::HashMap;

use archiver_core::{BackendError, Kind, ListId, SubscriberName};
use redis::RedisResult;
use redis::aio::ConnectionManager;

use crate::entry::{EntryId, entries};
use crate::error::{backend_error, is_no_perm};
use crate::keys::{Class, Content, Keys, Legacy, StreamRef};
use crate::registry::{self, SubscriberRecord};
use crate::retention::group_frontiers;

/// Moves one old stream (KEYS: the old stream, the old set, the targets,
/// their registry sets, the delayed sets of its groups), as planned in
/// ARGV: the old set's member, the list id, the old stream's length and
/// last id, the targets' count, each entry (id, target), each group (name,
/// start for a target that had entries before, and per target the plan
/// index of its last copy the group no longer needs, 0 for none). Returns
/// 0, having changed nothing, when the old stream is not as planned:
/// every planned entry is read before anything is written, so the
/// script never stops with part of a stream copied.
const MOVE: &str = r"
local n = 1
local function arg() local v = ARGV[n]; n = n + 1; return v end
local old = KEYS[1]
local member, list = arg(), arg()
local count, last = tonumber(arg()), arg()
if redis.call('XLEN', old) ~= count then return 0 end
if count > 0 and redis.call('XREVRANGE', old, '+', '-', 'COUNT', 1)[1][1] ~= last then return 0 end
local nt = tonumber(arg())
local before = {}
for t = 1, nt do
  local top = redis.call('XREVRANGE', KEYS[2 + t], '+', '-', 'COUNT', 1)[1]
  before[t] = top and top[1] or '0-0'
end
local planned = {}
for i = 1, count do
  local id, t = arg(), tonumber(arg())
  local entry = redis.call('XRANGE', old, id, id)[1]
  if not entry then return 0 end
  planned[i] = {t, entry[2]}
end
local copied = {}
for i = 1, count do
  copied[i] = redis.call('XADD', KEYS[2 + planned[i][1]], '*', unpack(planned[i][2]))
end
local ng = tonumber(arg())
for g = 1, ng do
  local name, from_record = arg(), arg()
  for t = 1, nt do
    local done = tonumber(arg())
    local start = before[t]
    if done > 0 then start = copied[done] end
    if before[t] ~= '0-0' then start = from_record end
    local made = redis.pcall('XGROUP', 'CREATE', KEYS[2 + t], name, start, 'MKSTREAM')
    if type(made) == 'table' and made.err and not string.find(made.err, 'BUSYGROUP') then
      return redis.error_reply(made.err)
    end
  end
  local delayed, stale = KEYS[2 + 2 * nt + g], old .. '\n'
  for _, m in ipairs(redis.call('ZRANGE', delayed, 0, -1)) do
    if string.sub(m, 1, #stale) == stale then redis.call('ZREM', delayed, m) end
  end
end
for t = 1, nt do redis.call('SADD', KEYS[2 + nt + t], list) end
redis.call('DEL', old)
redis.call('SREM', KEYS[2], member)
return 1
";

/// Times a stream is read again when it changed while being moved.
const TRIES: usize = 5;

/// Entries read per XRANGE while planning.
const PAGE: usize = 1000;

/// Migrates what an earlier version left, if this user may read it.
pub(crate) async fn migrate(conn: &mut ConnectionManager, keys: &Keys) -> Result<(), BackendError> {
    let legacy = keys.legacy();
    let found: i64 = match redis::cmd("EXISTS")
        .arg(legacy.streams())
        .arg(legacy.subscribers())
        .query_async(conn)
        .await
    {
        Err(error) if is_no_perm(&error) => {
            tracing::warn!(
                "this Redis user may not read the earlier layout's keys (NOPERM on EXISTS): \
                 migration skipped; if an earlier version's data remains, connect once as the list server's user"
            );
            return Ok(());
        }
        found => found.map_err(backend_error)?,
    };
    if found == 0 {
        return Ok(());
    }
    let old_records: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg(legacy.subscribers())
        .query_async(conn)
        .await
        .map_err(backend_error)?;
    for (name, record) in &old_records {
        let Ok(name) = SubscriberName::new(name) else {
            tracing::warn!(
                name,
                "an old subscriber record with an invalid name is not migrated"
            );
            continue;
        };
        let _: Option<String> = redis::cmd("SET")
            .arg(keys.subscriber(&name))
            .arg(record)
            .arg("NX")
            .query_async(conn)
            .await
            .map_err(backend_error)?;
    }
    let records: HashMap<String, SubscriberRecord> = registry::load_all(conn, keys)
        .await
        .map_err(backend_error)?
        .into_iter()
        .collect();
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(legacy.streams())
        .query_async(conn)
        .await
        .map_err(backend_error)?;
    for member in &members {
        let Some((kind, list)) = Legacy::parse_member(member) else {
            tracing::warn!(
                member,
                "an old stream name that is not <kind>:<list-id> is left as it is"
            );
            continue;
        };
        move_stream(conn, keys, member, kind, &list, &records).await?;
    }
    let _: () = redis::cmd("DEL")
        .arg(legacy.subscribers())
        .query_async(conn)
        .await
        .map_err(backend_error)?;
    tracing::info!(
        subscribers = old_records.len(),
        streams = members.len(),
        "migrated the key layout of an earlier version"
    );
    Ok(())
}

/// Moves one old stream, reading it again while it changes under us.
async fn move_stream(
    conn: &mut ConnectionManager,
    keys: &Keys,
    member: &str,
    kind: Kind,
    list: &ListId,
    records: &HashMap<String, SubscriberRecord>,
) -> Result<(), BackendError> {
    let old = keys.legacy().stream(kind, list);
    for _ in 0..TRIES {
        let plan = plan(conn, keys, &old, kind, list, records)
            .await
            .map_err(backend_error)?;
        let moved: i64 = plan
            .command(keys, &old, member, list)
            .query_async(conn)
            .await
            .map_err(backend_error)?;
        if moved == 1 {
            tracing::info!(
                stream = old,
                entries = plan.entries.len(),
                "moved an old stream"
            );
            return Ok(());
        }
    }
    Err(BackendError::Broker(format!(
        "the old stream {old} kept changing while it was migrated: stop the consumers and publishers of earlier versions"
    ).into()))
}

/// What the move of one stream does.
struct Plan {
    targets: Vec<StreamRef>,
    /// Each entry and the index of its target.
    entries: Vec<(EntryId, usize)>,
    /// Each group: name, its delayed set, where it starts on a target that
    /// had entries already, and per target the 1-based plan index of the
    /// last copy it no longer needs (0 for none).
    groups: Vec<(String, String, EntryId, Vec<usize>)>,
}

/// Reads the old stream and its groups into a plan.
async fn plan(
    conn: &mut ConnectionManager,
    keys: &Keys,
    old: &str,
    kind: Kind,
    list: &ListId,
    records: &HashMap<String, SubscriberRecord>,
) -> RedisResult<Plan> {
    let mut plan = Plan {
        targets: Vec::new(),
        entries: Vec::new(),
        groups: Vec::new(),
    };
    let mut start = "-".to_owned();
    loop {
        let reply: redis::Value = redis::cmd("XRANGE")
            .arg(old)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(PAGE)
            .query_async(conn)
            .await?;
        let page = entries(reply);
        for entry in &page {
            let target = match entry.envelope() {
                Ok(envelope) if envelope.kind == kind && &envelope.list_id == list => {
                    keys.stream_of(&envelope)
                }
                // Consumers dead-letter it there as malformed.
                _ => keys.stream(Class::Private, misplaced_content(kind), list),
            };
            let index = match plan.targets.iter().position(|t| *t == target) {
                Some(index) => index,
                None => {
                    plan.targets.push(target);
                    plan.targets.len() - 1
                }
            };
            plan.entries.push((entry.id, index));
        }
        match page.last() {
            Some(last) if page.len() == PAGE => start = format!("({}", last.id),
            _ => break,
        }
    }
    let exists: bool = redis::cmd("EXISTS").arg(old).query_async(conn).await?;
    if !exists {
        return Ok(plan);
    }
    for (name, needed_from) in group_frontiers(conn, old).await? {
        let Ok(subscriber) = SubscriberName::new(&name) else {
            tracing::warn!(
                group = name,
                stream = old,
                "an old group with an invalid name is not migrated"
            );
            continue;
        };
        let from_record = records
            .get(&name)
            .map_or(EntryId::ZERO, SubscriberRecord::group_start);
        let done = (0..plan.targets.len())
            .map(|t| {
                plan.entries
                    .iter()
                    .enumerate()
                    .filter(|(_, (id, target))| *target == t && *id < needed_from)
                    .map(|(i, _)| i + 1)
                    .next_back()
                    .unwrap_or(0)
            })
            .collect();
        plan.groups
            .push((name, keys.delayed(&subscriber), from_record, done));
    }
    Ok(plan)
}

/// Where an entry that does not belong in its old stream goes: the most
/// restricted stream of that list.
fn misplaced_content(kind: Kind) -> Content {
    match kind {
        Kind::Mail => Content::Mail,
        Kind::Event => Content::Members,
    }
}

impl Plan {
    /// The EVAL of [`MOVE`] that carries out this plan.
    fn command(&self, keys: &Keys, old: &str, member: &str, list: &ListId) -> redis::Cmd {
        let keys: Vec<String> = [old.to_owned(), keys.legacy().streams()]
            .into_iter()
            .chain(self.targets.iter().map(|t| t.key.clone()))
            .chain(self.targets.iter().map(|t| keys.lists(t.class, t.content)))
            .chain(self.groups.iter().map(|(_, delayed, _, _)| delayed.clone()))
            .collect();
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(MOVE).arg(keys.len()).arg(keys);
        cmd.arg(member).arg(list.as_str()).arg(self.entries.len());
        cmd.arg(
            self.entries
                .last()
                .map(|(id, _)| id.to_string())
                .unwrap_or_default(),
        );
        cmd.arg(self.targets.len());
        for (id, target) in &self.entries {
            cmd.arg(id.to_string()).arg(target + 1);
        }
        cmd.arg(self.groups.len());
        for (name, _, from_record, done) in &self.groups {
            cmd.arg(name).arg(from_record.to_string()).arg(done);
        }
        cmd
    }
}
