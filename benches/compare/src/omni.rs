//! omniqueue 0.3 (svix), the Rust peer, on its Redis Streams and RabbitMQ
//! backends, carrying `wire::to_bytes` of each mail: `send_raw` per mail
//! (concurrently within a batch), `receive_all` up to the prefetch, `ack`
//! per delivery.
//!
//! omniqueue creates neither consumer groups nor queues: as its users do,
//! the bench creates them (the same groups and quorum queues the raw
//! clients get). Its RabbitMQ producer does not put the channel in confirm
//! mode, so its `send` returns before the broker has the mail: it does
//! less durable work than ours and raw lapin, and the table says so.

use std::time::Duration;

use anyhow::bail;
use async_trait::async_trait;
use mq_archiver::{Envelope, wire};
use omniqueue::backends::{RabbitMqBackend, RabbitMqConfig, RedisBackend, RedisConfig};
use omniqueue::{Delivery, QueueConsumer as _, QueueProducer as _};

use crate::raw_lapin::FanoutTopology;
use crate::raw_redis::{RawRedis, create_groups, delete, group};
use crate::system::{Arrival, Consumer, Producer, System, body_len_of_payload, id_of_payload};

const STREAM: &str = "omnibench:mails";

/// How long one `receive_all` waits for a first mail.
const RECEIVE_WAIT: Duration = Duration::from_millis(100);

/// omniqueue on Redis.
pub struct OmniRedis {
    url: String,
    prefetch: usize,
    /// For what omniqueue leaves to its user: groups, clean-up.
    admin: RawRedis,
}

impl OmniRedis {
    /// omniqueue on the Redis at `url`.
    pub fn new(url: &str, prefetch: u16) -> anyhow::Result<Self> {
        Ok(Self {
            url: url.to_owned(),
            prefetch: usize::from(prefetch),
            admin: RawRedis::new(url, prefetch)?,
        })
    }

    fn config(&self, subscriber: usize) -> RedisConfig {
        RedisConfig {
            dsn: self.url.clone(),
            max_connections: 8,
            reinsert_on_nack: false,
            queue_key: STREAM.to_owned(),
            // No delayed sends here: no scheduler polling for them.
            delayed_queue_key: String::new(),
            delayed_lock_key: String::new(),
            consumer_group: group(subscriber),
            consumer_name: uuid::Uuid::now_v7().simple().to_string(),
            payload_key: "payload".to_owned(),
            ack_deadline_ms: 30_000,
            dlq_config: None,
            sentinel_config: None,
        }
    }
}

#[async_trait]
impl System for OmniRedis {
    async fn prepare(&self, subscribers: usize) -> anyhow::Result<()> {
        create_groups(&mut self.admin.connection().await?, STREAM, subscribers).await
    }

    async fn producer(&self) -> anyhow::Result<Box<dyn Producer>> {
        let producer = RedisBackend::builder(self.config(0))
            .build_producer()
            .await?;
        Ok(Box::new(OmniProducer(producer.into_dyn())))
    }

    async fn consumer(&self, subscriber: usize) -> anyhow::Result<Box<dyn Consumer>> {
        let consumer = RedisBackend::builder(self.config(subscriber))
            .build_consumer()
            .await?
            .into_dyn();
        Ok(Box::new(OmniConsumer {
            consumer,
            prefetch: self.prefetch,
        }))
    }

    async fn cleanup(&self) -> anyhow::Result<()> {
        delete(&mut self.admin.connection().await?, STREAM).await
    }
}

/// omniqueue on RabbitMQ.
pub struct OmniRabbit {
    url: String,
    prefetch: u16,
    topology: FanoutTopology,
}

impl OmniRabbit {
    /// omniqueue on the broker at `url`.
    pub fn new(url: &str, prefetch: u16) -> Self {
        Self {
            url: url.to_owned(),
            prefetch,
            topology: FanoutTopology::new(url, "omnibench"),
        }
    }

    fn config(&self, subscriber: usize) -> RabbitMqConfig {
        use omniqueue::backends::rabbitmq::{
            BasicConsumeOptions, BasicProperties, BasicPublishOptions, ConnectionProperties,
            FieldTable,
        };
        RabbitMqConfig {
            uri: self.url.clone(),
            connection_properties: ConnectionProperties::default(),
            publish_exchange: self.topology.exchange().to_owned(),
            publish_routing_key: String::new(),
            publish_options: BasicPublishOptions::default(),
            publish_properties: BasicProperties::default().with_delivery_mode(2),
            consume_queue: self.topology.queue(subscriber),
            consumer_tag: uuid::Uuid::now_v7().simple().to_string(),
            consume_options: BasicConsumeOptions::default(),
            consume_arguments: FieldTable::default(),
            consume_prefetch_count: Some(self.prefetch),
            requeue_on_nack: false,
        }
    }
}

#[async_trait]
impl System for OmniRabbit {
    async fn prepare(&self, subscribers: usize) -> anyhow::Result<()> {
        self.topology.declare(subscribers).await
    }

    async fn producer(&self) -> anyhow::Result<Box<dyn Producer>> {
        let producer = RabbitMqBackend::builder(self.config(0))
            .build_producer()
            .await?;
        Ok(Box::new(OmniProducer(producer.into_dyn())))
    }

    async fn consumer(&self, subscriber: usize) -> anyhow::Result<Box<dyn Consumer>> {
        let consumer = RabbitMqBackend::builder(self.config(subscriber))
            .build_consumer()
            .await?
            .into_dyn();
        Ok(Box::new(OmniConsumer {
            consumer,
            prefetch: usize::from(self.prefetch),
        }))
    }

    async fn cleanup(&self) -> anyhow::Result<()> {
        self.topology.delete().await
    }
}

struct OmniProducer(omniqueue::DynProducer);

#[async_trait]
impl Producer for OmniProducer {
    async fn send(&self, batch: &[Envelope]) -> anyhow::Result<()> {
        futures::future::try_join_all(
            batch
                .iter()
                .map(|envelope| async move { self.0.send_raw(&wire::to_bytes(envelope)).await }),
        )
        .await?;
        Ok(())
    }
}

struct OmniConsumer {
    consumer: omniqueue::DynConsumer,
    prefetch: usize,
}

#[async_trait]
impl Consumer for OmniConsumer {
    async fn receive(&mut self, arrivals: &mut Vec<Arrival>) -> anyhow::Result<()> {
        let deliveries: Vec<Delivery> = loop {
            let batch = self
                .consumer
                .receive_all(self.prefetch, RECEIVE_WAIT)
                .await?;
            if !batch.is_empty() {
                break batch;
            }
        };
        let at = std::time::Instant::now();
        for delivery in &deliveries {
            let Some(payload) = delivery.borrow_payload() else {
                bail!("a delivery without payload");
            };
            arrivals.push(Arrival {
                id: id_of_payload(payload)?,
                bytes: body_len_of_payload(payload),
                at,
            });
        }
        futures::future::try_join_all(
            deliveries
                .into_iter()
                .map(|delivery| async move { delivery.ack().await.map_err(|(error, _)| error) }),
        )
        .await?;
        Ok(())
    }
}
