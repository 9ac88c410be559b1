//! Raw redis-rs, as a hand-written client would do the same durable work:
//! a pipeline of XADDs per batch (the same fields ours writes), consumer
//! groups, XREADGROUP of up to the prefetch, one XACK per read.

use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use mq_archiver::{Envelope, wire};
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamReadOptions, StreamReadReply};

use crate::system::{Arrival, Consumer, Producer, System, id_of_text};

const STREAM: &str = "rawbench:mails";

/// Raw redis-rs on one Redis server.
pub struct RawRedis {
    client: redis::Client,
    prefetch: usize,
}

impl RawRedis {
    /// A client of the Redis at `url`.
    pub fn new(url: &str, prefetch: u16) -> anyhow::Result<Self> {
        Ok(Self {
            client: redis::Client::open(url)?,
            prefetch: usize::from(prefetch),
        })
    }

    /// A connection of its own.
    pub async fn connection(&self) -> anyhow::Result<MultiplexedConnection> {
        // Reads block for up to 1 s; no client-side timeout cuts them off.
        let config = AsyncConnectionConfig::new().set_response_timeout(None);
        Ok(self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?)
    }
}

/// The consumer group of subscriber `index`.
pub fn group(index: usize) -> String {
    format!("group-{index}")
}

/// Creates `stream` with one consumer group per subscriber, each starting
/// after what is in it now.
pub async fn create_groups(
    conn: &mut MultiplexedConnection,
    stream: &str,
    subscribers: usize,
) -> anyhow::Result<()> {
    for index in 0..subscribers {
        let () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(stream)
            .arg(group(index))
            .arg("$")
            .arg("MKSTREAM")
            .query_async(conn)
            .await?;
    }
    Ok(())
}

/// Deletes `stream` and its groups.
pub async fn delete(conn: &mut MultiplexedConnection, stream: &str) -> anyhow::Result<()> {
    let _: usize = redis::cmd("DEL").arg(stream).query_async(conn).await?;
    Ok(())
}

#[async_trait]
impl System for RawRedis {
    async fn prepare(&self, subscribers: usize) -> anyhow::Result<()> {
        create_groups(&mut self.connection().await?, STREAM, subscribers).await
    }

    async fn producer(&self) -> anyhow::Result<Box<dyn Producer>> {
        Ok(Box::new(RawRedisProducer(self.connection().await?)))
    }

    async fn consumer(&self, subscriber: usize) -> anyhow::Result<Box<dyn Consumer>> {
        Ok(Box::new(RawRedisConsumer {
            conn: self.connection().await?,
            group: group(subscriber),
            name: uuid::Uuid::now_v7().simple().to_string(),
            prefetch: self.prefetch,
        }))
    }

    async fn cleanup(&self) -> anyhow::Result<()> {
        delete(&mut self.connection().await?, STREAM).await
    }
}

struct RawRedisProducer(MultiplexedConnection);

#[async_trait]
impl Producer for RawRedisProducer {
    async fn send(&self, batch: &[Envelope]) -> anyhow::Result<()> {
        let mut pipe = redis::pipe();
        for envelope in batch {
            let xadd = pipe.cmd("XADD").arg(STREAM).arg("*");
            for (field, value) in wire::to_fields(envelope) {
                xadd.arg(field).arg(value);
            }
            xadd.arg("body").arg(&envelope.body[..]);
        }
        let _ids: Vec<String> = pipe.query_async(&mut self.0.clone()).await?;
        Ok(())
    }
}

struct RawRedisConsumer {
    conn: MultiplexedConnection,
    group: String,
    name: String,
    prefetch: usize,
}

#[async_trait]
impl Consumer for RawRedisConsumer {
    async fn receive(&mut self, arrivals: &mut Vec<Arrival>) -> anyhow::Result<()> {
        let options = StreamReadOptions::default()
            .group(&self.group, &self.name)
            .count(self.prefetch)
            .block(Duration::from_secs(1).as_millis() as usize);
        let reply: StreamReadReply = loop {
            let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
                .arg(&options)
                .arg("STREAMS")
                .arg(STREAM)
                .arg(">")
                .query_async(&mut self.conn)
                .await?;
            if let Some(reply) = reply.filter(|r| !r.keys.is_empty()) {
                break reply;
            }
        };
        let mut ack = redis::cmd("XACK");
        ack.arg(STREAM).arg(&self.group);
        for entry in reply.keys.iter().flat_map(|key| &key.ids) {
            let id: String = entry
                .get("envelope-id")
                .context("an entry without envelope-id")?;
            let body: Vec<u8> = entry.get("body").context("an entry without body")?;
            arrivals.push(Arrival {
                id: id_of_text(&id)?,
                bytes: body.len(),
                at: Instant::now(),
            });
            ack.arg(&entry.id);
        }
        let _: usize = ack.query_async(&mut self.conn).await?;
        Ok(())
    }
}
