//! What Redis knows about subscribers and lists: each subscriber's selection
//! and creation time, and the streams that exist, so consumers of every
//! instance agree on where each consumer group starts.

use archiver_core::{
    InvalidListId, Kind, ListId, Selection, StartPosition, SubscriberName, Subscription,
};
use redis::RedisResult;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use crate::entry::{EntryId, int, items};
use crate::keys::Keys;

/// A subscriber as stored in `<p>:subscribers`.
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
}

impl SubscriberRecord {
    fn from_subscription(subscription: &Subscription, created_ms: u64) -> Self {
        Self {
            lists: subscription.selection.pattern_texts(),
            kind: subscription.selection.only_kind(),
            max_attempts: subscription.max_attempts,
            from_beginning: subscription.start == StartPosition::Beginning,
            created_ms,
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
    let name = subscription.name.as_str();
    let _: bool = redis::cmd("HSETNX")
        .arg(keys.subscribers())
        .arg(name)
        .arg(json(&fresh))
        .query_async(conn)
        .await?;
    let stored = load(conn, keys, &subscription.name).await?.unwrap_or(fresh);
    let wanted = SubscriberRecord::from_subscription(subscription, stored.created_ms);
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
    redis::cmd("HSET")
        .arg(keys.subscribers())
        .arg(name.as_str())
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
    let raw: Option<String> = redis::cmd("HGET")
        .arg(keys.subscribers())
        .arg(name.as_str())
        .query_async(conn)
        .await?;
    Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
}

/// Every subscriber's record, for retention.
pub(crate) async fn load_all(
    conn: &mut ConnectionManager,
    keys: &Keys,
) -> RedisResult<Vec<(String, SubscriberRecord)>> {
    let raw: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg(keys.subscribers())
        .query_async(conn)
        .await?;
    Ok(raw
        .into_iter()
        .filter_map(|(name, r)| Some((name, serde_json::from_str(&r).ok()?)))
        .collect())
}

/// Every stream of the registry, as `(kind, list, key)`.
pub(crate) async fn streams(
    conn: &mut ConnectionManager,
    keys: &Keys,
) -> RedisResult<Vec<(Kind, ListId, String)>> {
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(keys.streams())
        .query_async(conn)
        .await?;
    Ok(members
        .iter()
        .filter_map(|m| Keys::parse_stream_member(m))
        .map(|(kind, list)| {
            let key = keys.stream(kind, &list);
            (kind, list, key)
        })
        .collect())
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
