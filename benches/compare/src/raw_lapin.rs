//! Raw lapin, as a hand-written client would do the same durable work: a
//! durable fan-out exchange with one quorum queue per subscriber (the queue
//! type ours uses), persistent mandatory messages with the same headers on
//! a confirm channel, and consumers with a prefetch and manual acks.

use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, bail};
use async_trait::async_trait;
use futures::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use mq_archiver::{Envelope, wire};

use crate::system::{Arrival, Consumer, Producer, System, id_of_text};

/// A durable fan-out exchange with one quorum queue per subscriber, which
/// raw lapin and omniqueue publish to and consume from.
pub struct FanoutTopology {
    url: String,
    exchange: &'static str,
    /// Queues [`FanoutTopology::declare`] declared.
    queues: Mutex<usize>,
}

impl FanoutTopology {
    /// The topology named `exchange` on the broker at `url`.
    pub fn new(url: &str, exchange: &'static str) -> Self {
        Self {
            url: url.to_owned(),
            exchange,
            queues: Mutex::new(0),
        }
    }

    /// The exchange's name.
    pub fn exchange(&self) -> &'static str {
        self.exchange
    }

    /// The queue of subscriber `index`.
    pub fn queue(&self, index: usize) -> String {
        format!("{}-{index}", self.exchange)
    }

    /// A connection of its own, and a channel on it.
    pub async fn channel(&self) -> anyhow::Result<(Connection, Channel)> {
        let connection = Connection::connect(&self.url, ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        Ok((connection, channel))
    }

    /// Declares the exchange and `subscribers` bound queues.
    pub async fn declare(&self, subscribers: usize) -> anyhow::Result<()> {
        let (connection, channel) = self.channel().await?;
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        channel
            .exchange_declare(
                self.exchange.into(),
                ExchangeKind::Fanout,
                durable,
                FieldTable::default(),
            )
            .await?;
        let mut quorum = FieldTable::default();
        quorum.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(LongString::from("quorum")),
        );
        for index in 0..subscribers {
            let name = self.queue(index);
            let options = QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            };
            channel
                .queue_declare(name.as_str().into(), options, quorum.clone())
                .await?;
            channel
                .queue_bind(
                    name.as_str().into(),
                    self.exchange.into(),
                    "".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        *self.queues.lock().expect("not poisoned") = subscribers;
        connection.close(200, "declared".into()).await?;
        Ok(())
    }

    /// Deletes what [`FanoutTopology::declare`] declared.
    pub async fn delete(&self) -> anyhow::Result<()> {
        let (connection, channel) = self.channel().await?;
        let queues = std::mem::take(&mut *self.queues.lock().expect("not poisoned"));
        for index in 0..queues {
            channel
                .queue_delete(
                    self.queue(index).as_str().into(),
                    QueueDeleteOptions::default(),
                )
                .await?;
        }
        channel
            .exchange_delete(self.exchange.into(), ExchangeDeleteOptions::default())
            .await?;
        connection.close(200, "deleted".into()).await?;
        Ok(())
    }
}

/// Raw lapin on one RabbitMQ.
pub struct RawLapin {
    topology: FanoutTopology,
    prefetch: u16,
}

impl RawLapin {
    /// A client of the broker at `url`.
    pub fn new(url: &str, prefetch: u16) -> Self {
        Self {
            topology: FanoutTopology::new(url, "rawbench"),
            prefetch,
        }
    }
}

#[async_trait]
impl System for RawLapin {
    async fn prepare(&self, subscribers: usize) -> anyhow::Result<()> {
        self.topology.declare(subscribers).await
    }

    async fn producer(&self) -> anyhow::Result<Box<dyn Producer>> {
        let (connection, channel) = self.topology.channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Box::new(RawLapinProducer {
            _connection: connection,
            channel,
            exchange: self.topology.exchange(),
        }))
    }

    async fn consumer(&self, subscriber: usize) -> anyhow::Result<Box<dyn Consumer>> {
        let (connection, channel) = self.topology.channel().await?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await?;
        let tag = uuid::Uuid::now_v7().simple().to_string();
        let consumer = channel
            .basic_consume(
                self.topology.queue(subscriber).as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(Box::new(RawLapinConsumer {
            _connection: connection,
            consumer,
            prefetch: usize::from(self.prefetch),
        }))
    }

    async fn cleanup(&self) -> anyhow::Result<()> {
        self.topology.delete().await
    }
}

/// The properties ours gives a mail, written out by hand.
fn properties(envelope: &Envelope) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (name, value) in wire::to_fields(envelope) {
        headers.insert(
            ShortString::from(name),
            AMQPValue::LongString(LongString::from(value)),
        );
    }
    BasicProperties::default()
        .with_content_type(envelope.content_type.as_str().into())
        .with_message_id(envelope.id.to_string().into())
        .with_timestamp(envelope.published_at.timestamp().max(0) as u64)
        .with_type(envelope.kind.as_str().into())
        .with_delivery_mode(2)
        .with_headers(headers)
}

struct RawLapinProducer {
    _connection: Connection,
    channel: Channel,
    exchange: &'static str,
}

#[async_trait]
impl Producer for RawLapinProducer {
    async fn send(&self, batch: &[Envelope]) -> anyhow::Result<()> {
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let mut confirms = Vec::with_capacity(batch.len());
        for envelope in batch {
            confirms.push(
                self.channel
                    .basic_publish(
                        self.exchange.into(),
                        "".into(),
                        options,
                        &envelope.body,
                        properties(envelope),
                    )
                    .await?,
            );
        }
        for confirm in confirms {
            match confirm.await? {
                Confirmation::Ack(None) => {}
                other => bail!("the broker did not take a mail: {other:?}"),
            }
        }
        Ok(())
    }
}

struct RawLapinConsumer {
    _connection: Connection,
    consumer: lapin::Consumer,
    prefetch: usize,
}

#[async_trait]
impl Consumer for RawLapinConsumer {
    async fn receive(&mut self, arrivals: &mut Vec<Arrival>) -> anyhow::Result<()> {
        let mut acks = Vec::new();
        let mut next = self.consumer.next().await;
        loop {
            let delivery = next.context("the consumer was cancelled")??;
            let id = delivery
                .properties
                .message_id()
                .as_ref()
                .context("a message without message_id")?;
            arrivals.push(Arrival {
                id: id_of_text(id.as_str())?,
                bytes: delivery.data.len(),
                at: Instant::now(),
            });
            acks.push(async move { delivery.ack(BasicAckOptions::default()).await });
            if acks.len() >= self.prefetch {
                break;
            }
            match self.consumer.next().now_or_never() {
                Some(item) => next = item,
                None => break,
            }
        }
        futures::future::try_join_all(acks).await?;
        Ok(())
    }
}
