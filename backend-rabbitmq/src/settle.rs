//! Settling a RabbitMQ delivery: ack; nack as an immediate requeue or a
//! copy through a retry queue; dead letters as a copy with the reason.
//! Every copy goes through the subscriber's own exchange `<p>.x.<name>`.
//! Copies are confirmed before the original is acknowledged, so a crash in
//! between duplicates, never loses.

use std::sync::Arc;
use std::time::Duration;

use archiver_core::{BackendError, Settle, SubscriberName};
use async_trait::async_trait;
use chrono::{SecondsFormat, Utc};
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Channel};

use crate::Shared;
use crate::config::QueueType;
use crate::error::backend_error;
use crate::message::{
    DEAD_AT, DEAD_ATTEMPTS, DEAD_REASON, LEGACY_DEAD, ORIGIN, PRIOR_ATTEMPTS, X_DEATH, rewrite,
};
use crate::names::retry_bucket_ms;
use crate::publish::refusal;
use crate::topology::{declare_retry_queue, send_own, text};

/// One unacknowledged message handed to a consumer.
pub(crate) struct RabbitSettle {
    pub(crate) shared: Arc<Shared>,
    /// The consumer's channel, in confirm mode.
    pub(crate) channel: Channel,
    pub(crate) acker: lapin::Acker,
    pub(crate) properties: BasicProperties,
    pub(crate) body: bytes::Bytes,
    pub(crate) name: SubscriberName,
    /// Its attempt number, written on its retry copies.
    pub(crate) attempt: u32,
    /// The routing key it was first published with, written on its copies.
    pub(crate) origin: Option<String>,
}

impl RabbitSettle {
    /// Publishes a copy into one of the subscriber's queues through its own
    /// exchange, with its origin, and waits for the confirm.
    async fn copy_to(&self, queue: &str, properties: BasicProperties) -> Result<(), BackendError> {
        let properties = match &self.origin {
            Some(origin) => rewrite(&properties, vec![(ORIGIN, text(origin))], &[]),
            None => properties,
        };
        let confirm = send_own(
            &self.channel,
            &self.shared,
            &self.name,
            queue,
            &self.body,
            properties,
        )
        .await?;
        match refusal(&confirm.await.map_err(backend_error)?) {
            None => Ok(()),
            Some(refused) => Err(BackendError::Broker(
                format!("copy to {queue} not taken ({refused})").into(),
            )),
        }
    }

    /// Acknowledges the message this delivery holds.
    pub(crate) async fn ack_original(&self) -> Result<(), BackendError> {
        self.acker
            .ack(BasicAckOptions::default())
            .await
            .map(drop)
            .map_err(backend_error)
    }

    /// Copies the message into the dead letters with the reason and its
    /// deliveries, then acknowledges it.
    pub(crate) async fn dead_letter(
        &self,
        reason: &str,
        attempts: u32,
    ) -> Result<(), BackendError> {
        let dead = self.shared.names.dead(&self.name);
        let headers = vec![
            (DEAD_REASON, text(reason)),
            (DEAD_ATTEMPTS, AMQPValue::LongLongInt(i64::from(attempts))),
            (
                DEAD_AT,
                text(&Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)),
            ),
        ];
        self.copy_to(
            &dead,
            rewrite(
                &self.properties,
                headers,
                &[&[PRIOR_ATTEMPTS, X_DEATH], &LEGACY_DEAD[..]].concat(),
            ),
        )
        .await?;
        tracing::info!(subscriber = %self.name, attempts, reason, "dead-lettered");
        self.ack_original().await
    }
}

#[async_trait]
impl Settle for RabbitSettle {
    async fn ack(self: Box<Self>) -> Result<(), BackendError> {
        self.ack_original().await
    }

    async fn requeue(self: Box<Self>, delay: Duration) -> Result<(), BackendError> {
        if delay.is_zero() && self.shared.config.queue_type == QueueType::Quorum {
            // The quorum queue counts the return: the next attempt is exact.
            return self.hand_back().await;
        }
        let queue = self.shared.names.queue(&self.name);
        let attempts = vec![(
            PRIOR_ATTEMPTS,
            AMQPValue::LongLongInt(i64::from(self.attempt)),
        )];
        let properties = rewrite(&self.properties, attempts, &[X_DEATH]);
        if delay.is_zero() {
            self.copy_to(&queue, properties).await?;
        } else {
            let delay_ms = retry_bucket_ms(delay.as_millis().try_into().unwrap_or(u64::MAX));
            let retry =
                self.shared
                    .names
                    .retry(&self.name, delay_ms, self.shared.config.queue_type);
            declare_retry_queue(&self.shared, &self.name, &retry, delay_ms).await?;
            self.copy_to(&retry, properties).await?;
        }
        self.ack_original().await
    }

    async fn bury(self: Box<Self>, reason: String, attempts: u32) -> Result<(), BackendError> {
        self.dead_letter(&reason, attempts).await
    }

    /// A plain requeue; if it fails, the broker requeues the message when
    /// the channel closes.
    async fn hand_back(self: Box<Self>) -> Result<(), BackendError> {
        let requeue = BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        };
        self.acker
            .nack(requeue)
            .await
            .map(drop)
            .map_err(backend_error)
    }

    /// A quorum queue's delivery limit dead-letters a message returned once
    /// too often.
    fn broker_limits_hand_back(&self) -> bool {
        self.shared.config.queue_type == QueueType::Quorum
    }
}
