//! Removing consumers of a subscriber's groups that hold nothing: consumers
//! of instances renamed or retired. `XGROUP DELCONSUMER` drops whatever the
//! consumer still has pending from the group (the entries are then lost for
//! it), so each removal is one script that deletes the consumer only while
//! it has nothing pending. An operator's (or a maintenance job's) call,
//! never made on a consumer's path.

use archiver_core::{BackendError, SubscriberName};
use redis::RedisResult;
use redis::aio::ConnectionManager;

use crate::Shared;
use crate::entry::{items, text};
use crate::error::{backend_error, is_no_group};
use crate::registry;

/// Deletes consumer ARGV[2] of group ARGV[1] on stream KEYS[1] when nothing
/// is pending for it; 1 if deleted.
const DELETE_IF_IDLE: &str = r"
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #pending > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
";

/// Removes every consumer of the subscriber's groups, except this
/// instance's, that has no pending entry; returns how many.
pub(crate) async fn remove_without_pending(
    shared: &Shared,
    name: &SubscriberName,
) -> Result<usize, BackendError> {
    let conn = &mut shared.conn.clone();
    let mut streams = vec![shared.keys.replay(name)];
    streams.extend(
        registry::streams(conn, &shared.keys)
            .await
            .map_err(backend_error)?
            .into_iter()
            .map(|stream| stream.key),
    );
    let mut removed = 0;
    for stream in streams {
        for consumer in consumer_names(conn, &stream, name)
            .await
            .map_err(backend_error)?
        {
            if consumer == shared.config.consumer_name {
                continue;
            }
            let deleted: i64 = redis::cmd("EVAL")
                .arg(DELETE_IF_IDLE)
                .arg(1)
                .arg(&stream)
                .arg(name.as_str())
                .arg(&consumer)
                .query_async(conn)
                .await
                .map_err(backend_error)?;
            if deleted == 1 {
                tracing::info!(subscriber = %name, stream, consumer, "removed a consumer with nothing pending");
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// Names of the group's consumers on the stream; none without the group.
async fn consumer_names(
    conn: &mut ConnectionManager,
    stream: &str,
    group: &SubscriberName,
) -> RedisResult<Vec<String>> {
    let reply: redis::Value = match redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(stream)
        .arg(group.as_str())
        .query_async(conn)
        .await
    {
        Ok(reply) => reply,
        Err(error) if is_no_group(&error) || error.detail() == Some("no such key") => {
            return Ok(Vec::new());
        }
        Err(error) => return Err(error),
    };
    Ok(items(&reply)
        .iter()
        .filter_map(|consumer| field(consumer, "name"))
        .collect())
}

/// A field of an XINFO reply row (RESP2 flat pairs or a RESP3 map).
fn field(row: &redis::Value, name: &str) -> Option<String> {
    match row {
        redis::Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| text(k).as_deref() == Some(name))
            .and_then(|(_, v)| text(v)),
        other => items(other)
            .chunks_exact(2)
            .find(|pair| text(&pair[0]).as_deref() == Some(name))
            .and_then(|pair| text(&pair[1])),
    }
}
