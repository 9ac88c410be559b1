//! What Redis knows about subscribers and lists: each subscriber's selection
//! and creation time, and the streams that exist, so consumers of every
//! instance agree on where each consumer group starts.

use std::collections::HashMap;
use std::time::Duration;

use archiver_core::{
    InvalidListId, Kind, ListId, Selection, StartPosition, SubscriberName, Subscription,
};
use redis::RedisResult;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::entry::{EntryId, int, items};
use crate::error::is_no_perm;
use crate::keys::{Class, Content, Keys, StreamRef};

/// A subscriber as stored in `<p>:sub:<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SubscriberRecord {
    /// List patterns; empty selects every list.
    pub(crate) lists: Vec<String>,
    /// `mail`, `event`, or absent for both.
    pub(crate) kind: Option<Kind>,
    pub(crate) max_attempts: u32,
    /// Reads from the start of every stream instead of from `created_ms`.
    pub(crate) from_beginning: bool,
    /// Redis time (ms) when the subscriber was first created.
    pub(crate) created_ms: u64,
    /// Registry sets and streams Redis refused the subscriber's user
    /// (NOPERM), written by its consumer: retention waits for no
    /// subscriber on a stream it may not read, so a subscriber selecting
    /// more than its grant does not pin the streams it is not granted.
    /// Absent in records of earlier versions (nothing refused).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) refused: Vec<String>,
}

impl SubscriberRecord {
    fn from_subscription(subscription: &Subscription, created_ms: u64) -> Self {
        Self {
            lists: subscription.selection.pattern_texts(),
            kind: subscription.selection.only_kind(),
            max_attempts: subscription.max_attempts,
            from_beginning: subscription.start == StartPosition::Beginning,
            created_ms,
            refused: Vec::new(),
        }
    }

    /// The selection this record stands for; a stored pattern that is
    /// invalid (over the caps of a later version, say) makes the whole
    /// record invalid rather than dropping it, which could leave no
    /// pattern, that is every list.
    pub(crate) fn selection(&self) -> Result<Selection, InvalidListId> {
        Selection::from_texts(&self.lists, self.kind)
    }

    /// Whether this subscriber reads the stream of `kind` and `list`:
    /// never while its stored selection is invalid (logged as an error).
    pub(crate) fn selects(&self, kind: Kind, list: &ListId) -> bool {
        match self.selection() {
            Ok(selection) => selection.kinds().contains(&kind) && selection.selects_list(list),
            Err(error) => {
                tracing::error!(%error, "a stored subscriber selection is invalid; it receives nothing until it subscribes again");
                false
            }
        }
    }

    /// Whether retention waits for this subscriber on `stream`: it selects
    /// the stream and its user was not refused it, neither the stream nor,
    /// unless it selects the list by its exact id (read without the set),
    /// the registry set its discovery goes through.
    pub(crate) fn needs(&self, keys: &Keys, stream: &StreamRef) -> bool {
        if !self.selects(stream.content.kind(), &stream.list) {
            return false;
        }
        let by_id = self
            .lists
            .iter()
            .any(|pattern| pattern == stream.list.as_str());
        let set = keys.lists(stream.class, stream.content);
        !self.refused.contains(&stream.key) && (by_id || !self.refused.contains(&set))
    }

    /// Where its consumer groups start: the first entry it must receive is
    /// the first after this id.
    pub(crate) fn group_start(&self) -> EntryId {
        if self.from_beginning {
            EntryId::ZERO
        } else {
            EntryId::just_before(self.created_ms)
        }
    }
}

/// Redis's clock, in ms: one clock for every client, so group starts and
/// entry ids compare.
pub(crate) async fn redis_time_ms(conn: &mut ConnectionManager) -> RedisResult<u64> {
    let reply: redis::Value = redis::cmd("TIME").query_async(conn).await?;
    let parts = items(&reply);
    let seconds = parts.first().and_then(int).unwrap_or(0) as u64;
    let micros = parts.get(1).and_then(int).unwrap_or(0) as u64;
    Ok(seconds * 1000 + micros / 1000)
}

/// Creates or updates the subscriber's record; the first creation time is
/// kept, the latest selection wins. Returns the record in force.
pub(crate) async fn register(
    conn: &mut ConnectionManager,
    keys: &Keys,
    subscription: &Subscription,
) -> RedisResult<SubscriberRecord> {
    let now = redis_time_ms(conn).await?;
    let fresh = SubscriberRecord::from_subscription(subscription, now);
    let _: Option<String> = redis::cmd("SET")
        .arg(keys.subscriber(&subscription.name))
        .arg(json(&fresh))
        .arg("NX")
        .query_async(conn)
        .await?;
    let stored = load(conn, keys, &subscription.name).await?.unwrap_or(fresh);
    let wanted = SubscriberRecord {
        refused: stored.refused.clone(),
        ..SubscriberRecord::from_subscription(subscription, stored.created_ms)
    };
    if wanted != stored {
        restore(conn, keys, &subscription.name, &wanted).await?;
    }
    Ok(wanted)
}

/// Writes a record back as it was (after Redis lost it).
pub(crate) async fn restore(
    conn: &mut ConnectionManager,
    keys: &Keys,
    name: &SubscriberName,
    record: &SubscriberRecord,
) -> RedisResult<()> {
    redis::cmd("SET")
        .arg(keys.subscriber(name))
        .arg(json(record))
        .query_async(conn)
        .await
}

/// The stored record of one subscriber.
pub(crate) async fn load(
    conn: &mut ConnectionManager,
    keys: &Keys,
    name: &SubscriberName,
) -> RedisResult<Option<SubscriberRecord>> {
    let raw: Option<String> = redis::cmd("GET")
        .arg(keys.subscriber(name))
        .query_async(conn)
        .await?;
    Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
}

/// Every subscriber's record, for retention: the list server's view
/// (SCAN of `<p>:sub:*`).
pub(crate) async fn load_all(
    conn: &mut ConnectionManager,
    keys: &Keys,
) -> RedisResult<Vec<(String, SubscriberRecord)>> {
    let stem = keys.subscribers();
    let stem = stem.trim_end_matches('*');
    let mut records = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(keys.subscribers())
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        if !found.is_empty() {
            let raw: Vec<Option<String>> = redis::cmd("MGET").arg(&found).query_async(conn).await?;
            records.extend(found.iter().zip(raw).filter_map(|(key, raw)| {
                let name = key.strip_prefix(stem)?.to_owned();
                Some((name, serde_json::from_str(&raw?).ok()?))
            }));
        }
        if next == 0 {
            return Ok(records);
        }
        cursor = next;
    }
}

/// Every (class, content) pair, in key order.
fn classes() -> impl Iterator<Item = (Class, Content)> {
    Class::ALL.into_iter().flat_map(|class| {
        Content::ALL
            .into_iter()
            .map(move |content| (class, content))
    })
}

/// Every stream the registry names: the list server's view, which reads
/// every set.
pub(crate) async fn streams(
    conn: &mut ConnectionManager,
    keys: &Keys,
) -> RedisResult<Vec<StreamRef>> {
    let mut pipe = redis::pipe();
    for (class, content) in classes() {
        pipe.cmd("SMEMBERS").arg(keys.lists(class, content));
    }
    let sets: Vec<Vec<String>> = pipe.query_async(conn).await?;
    Ok(classes()
        .zip(sets)
        .flat_map(|((class, content), lists)| {
            lists
                .into_iter()
                .filter_map(|list| ListId::new(&list).ok())
                .map(move |list| keys.stream(class, content, &list))
                .collect::<Vec<_>>()
        })
        .collect())
}

/// Finds the streams of a selection that this client's Redis user may
/// read: the registry sets it may read (an archive server granted every
/// list of a class), plus the streams of the exact list ids it selects
/// (an archive server granted those lists only, which may not read the
/// sets). A set or stream Redis refuses (NOPERM) is not granted: it is
/// left out, said once in the log (warn), so a subscriber selecting more
/// than its grant receives exactly its grant; it is tried again after
/// `retry`, so a grant widened (or re-applied) while the archive server
/// runs is read without a restart.
pub(crate) struct Discovery {
    selection: Option<Selection>,
    /// Refused key → when it was last refused.
    refused: HashMap<String, Instant>,
    retry: Duration,
}

impl Discovery {
    /// For a selection; `None` (a stored selection that is invalid)
    /// finds nothing. A refusal is tried again after `retry`.
    pub(crate) fn new(selection: Option<Selection>, retry: Duration) -> Self {
        Self {
            selection,
            refused: HashMap::new(),
            retry,
        }
    }

    /// Whether `key` was refused less than `retry` ago.
    fn refused_now(&self, key: &str) -> bool {
        self.refused
            .get(key)
            .is_some_and(|at| at.elapsed() < self.retry)
    }

    /// Every key refused when last tried, sorted: what the subscriber's
    /// record says to retention.
    pub(crate) fn refused_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.refused.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Why a subscription gets nothing its selection names, when Redis
    /// refused all of it: every stream of an exact list it selects, or
    /// every registry set and exact-list stream it could read through.
    /// None while anything selected is readable (or not tried yet).
    pub(crate) fn forbidden(&self, keys: &Keys) -> Option<String> {
        let selection = self.selection.as_ref()?;
        let selected: Vec<(Class, Content)> = classes()
            .filter(|(_, content)| selection.kinds().contains(&content.kind()))
            .collect();
        let mut every_exact_refused = true;
        for pattern in selection.lists().iter().filter(|p| p.is_exact()) {
            let Ok(list) = ListId::new(pattern.as_str()) else {
                continue;
            };
            let streams: Vec<String> = selected
                .iter()
                .map(|(class, content)| keys.stream(*class, *content, &list).key)
                .collect();
            if streams.iter().all(|key| self.refused_now(key)) {
                return Some(format!(
                    "list {list}: Redis refuses this user every stream of it (NOPERM on {})",
                    streams.join(", ")
                ));
            }
            every_exact_refused = false;
        }
        let sets: Vec<String> = selected
            .iter()
            .map(|(class, content)| keys.lists(*class, *content))
            .collect();
        (every_exact_refused && sets.iter().all(|set| self.refused_now(set))).then(|| {
            format!(
                "Redis refuses this user every registry set of the selection (NOPERM on {}): it would receive nothing",
                sets.join(", ")
            )
        })
    }

    /// Redis allowed `key` (a refusal tried again): read it from now on.
    pub(crate) fn allow(&mut self, key: &str) {
        if self.refused.remove(key).is_some() {
            tracing::info!(key, "now granted to this Redis user: read");
        }
    }

    /// Streams to read that are not known to be refused.
    pub(crate) async fn candidates(
        &mut self,
        conn: &mut ConnectionManager,
        keys: &Keys,
    ) -> RedisResult<Vec<StreamRef>> {
        let Some(selection) = self.selection.clone() else {
            return Ok(Vec::new());
        };
        let mut found: Vec<StreamRef> = Vec::new();
        let selected =
            || classes().filter(|(_, content)| selection.kinds().contains(&content.kind()));
        let sets: Vec<(Class, Content, String)> = selected()
            .map(|(class, content)| (class, content, keys.lists(class, content)))
            .filter(|(_, _, set)| !self.refused_now(set))
            .collect();
        for ((class, content, _), lists) in sets.iter().zip(self.read_sets(conn, &sets).await?) {
            found.extend(
                lists
                    .iter()
                    .filter_map(|list| ListId::new(list).ok())
                    .filter(|list| selection.selects_list(list))
                    .map(|list| keys.stream(*class, *content, &list)),
            );
        }
        for pattern in selection.lists().iter().filter(|p| p.is_exact()) {
            let Ok(list) = ListId::new(pattern.as_str()) else {
                continue;
            };
            for (class, content) in selected() {
                let stream = keys.stream(class, content, &list);
                if !found.contains(&stream) {
                    found.push(stream);
                }
            }
        }
        found.retain(|stream| !self.refused_now(&stream.key));
        Ok(found)
    }

    /// The members of each set, in one round trip; when Redis refuses one
    /// (NOPERM fails the whole pipeline), set by set, leaving out the
    /// refused ones (empty) from then on.
    async fn read_sets(
        &mut self,
        conn: &mut ConnectionManager,
        sets: &[(Class, Content, String)],
    ) -> RedisResult<Vec<Vec<String>>> {
        if sets.is_empty() {
            return Ok(Vec::new()); // an empty pipeline is no request
        }
        let mut pipe = redis::pipe();
        for (_, _, set) in sets {
            pipe.cmd("SMEMBERS").arg(set);
        }
        match pipe.query_async(conn).await {
            Err(error) if is_no_perm(&error) => {}
            Ok(read) => {
                for (_, _, set) in sets {
                    self.allow(set);
                }
                return Ok(read);
            }
            read => return read,
        }
        let mut all = Vec::new();
        for (_, _, set) in sets {
            match redis::cmd("SMEMBERS").arg(set).query_async(conn).await {
                Ok(lists) => {
                    self.allow(set);
                    all.push(lists);
                }
                Err(error) if is_no_perm(&error) => {
                    self.refuse(set);
                    all.push(Vec::new());
                }
                Err(error) => return Err(error),
            }
        }
        Ok(all)
    }

    /// Redis refused `key` to this user: leave it out until it is tried
    /// again.
    pub(crate) fn refuse(&mut self, key: &str) {
        if self
            .refused
            .insert(key.to_owned(), Instant::now())
            .is_none()
        {
            tracing::warn!(key, "not granted to this Redis user (NOPERM): left out");
        }
    }
}

fn json(record: &SubscriberRecord) -> String {
    serde_json::to_string(record).expect("a subscriber record serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(lists: &[&str]) -> SubscriberRecord {
        SubscriberRecord {
            lists: lists.iter().map(|l| (*l).to_owned()).collect(),
            kind: None,
            max_attempts: 5,
            from_beginning: false,
            created_ms: 0,
            refused: Vec::new(),
        }
    }

    #[test]
    fn a_stored_record_with_invalid_patterns_selects_nothing() {
        let list = ListId::new("dev.lists.example.org").unwrap();
        assert!(
            record(&[]).selects(Kind::Mail, &list),
            "no pattern: every list"
        );
        assert!(record(&["*.lists.example.org"]).selects(Kind::Mail, &list));
        let four_hundred = vec!["#"; 400].join(".");
        for lists in [
            vec![four_hundred.as_str()],
            vec!["no/slash"],
            vec!["no/slash", "*.lists.example.org"],
        ] {
            let record = record(&lists);
            assert!(record.selection().is_err(), "{lists:?}");
            assert!(!record.selects(Kind::Mail, &list), "{lists:?} falls open");
        }
    }
}
