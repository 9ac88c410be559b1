//! A durable subscription's consumer: its own connection and confirm-mode
//! channel, `basic.qos` as the in-flight bound, and a task that turns AMQP
//! deliveries into [`Delivery`]s. After a lost connection it reconnects with
//! back-off and declares its topology again; what it held unacknowledged
//! the broker has already requeued.

use std::sync::Arc;
use std::time::Duration;

use archiver_core::{
    BackendError, Backoff, Deliveries, Delivery, StartPosition, Subscription, attempt_limit_reached,
};
use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::Shared;
use crate::error::backend_error;
use crate::link;
use crate::message;
use crate::settle::RabbitSettle;
use crate::topology::declare_subscriber;

type Sender = mpsc::Sender<Result<Delivery, BackendError>>;

/// Declares the subscriber's queue (so it keeps messages from now on) and
/// starts consuming it.
pub(crate) async fn subscribe(
    shared: &Arc<Shared>,
    subscription: &Subscription,
) -> Result<Deliveries, BackendError> {
    shared.ensure_open()?;
    if subscription.start == StartPosition::Beginning {
        return Err(BackendError::Unsupported(
            "replay from the start: a RabbitMQ queue holds only what arrived after it was declared",
        ));
    }
    // Before any connection: a selection outside the grant is refused
    // by the client, not by the broker.
    if let Some(grant) = shared.config.role.grant() {
        grant.check_subscription(subscription)?;
    }
    let session = Session::open(shared, subscription).await?;
    let (sender, receiver) = mpsc::channel(usize::from(subscription.prefetch));
    tokio::spawn(run(
        Arc::clone(shared),
        subscription.clone(),
        session,
        sender,
    ));
    let deliveries = ReceiverStream::new(receiver);
    Ok(shared.closed.until_closed(deliveries))
}

/// One connection's worth of consuming.
struct Session {
    connection: Connection,
    channel: Channel,
    consumer: Consumer,
}

impl Session {
    async fn open(shared: &Arc<Shared>, subscription: &Subscription) -> Result<Self, BackendError> {
        let connection =
            link::connect(&shared.config, &format!("consumer {}", subscription.name)).await?;
        let channel = declare_subscriber(&connection, shared, subscription).await?;
        channel
            .basic_qos(subscription.prefetch, BasicQosOptions::default())
            .await
            .map_err(backend_error)?;
        let queue = shared.names.queue(&subscription.name);
        let tag = format!("mq-archiver-{}", uuid::Uuid::now_v7().simple());
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(backend_error)?;
        Ok(Self {
            connection,
            channel,
            consumer,
        })
    }

    async fn close(self) {
        let _ = self.connection.close(200, "consumer stopped".into()).await;
    }
}

async fn run(
    shared: Arc<Shared>,
    subscription: Subscription,
    mut session: Session,
    sender: Sender,
) {
    let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let next = tokio::select! {
            next = session.consumer.next() => next,
            () = shared.closed.wait() => break,
            () = sender.closed() => break,
        };
        match next {
            Some(Ok(delivery)) => {
                forward(&shared, &subscription, &session.channel, delivery, &sender).await
            }
            lost => {
                let error = match lost {
                    Some(Err(error)) => backend_error(error),
                    _ => BackendError::Unavailable("the broker ended the consumer".into()),
                };
                tracing::warn!(subscriber = %subscription.name, %error, "RabbitMQ consumer lost; reconnecting");
                let _ = sender.try_send(Err(error));
                session.close().await;
                match reconnect(&shared, &subscription, &sender, &backoff).await {
                    Some(reopened) => session = reopened,
                    None => return,
                }
            }
        }
    }
    session.close().await;
}

/// Reconnects with back-off until it works or the consumer is stopped.
async fn reconnect(
    shared: &Arc<Shared>,
    subscription: &Subscription,
    sender: &Sender,
    backoff: &Backoff,
) -> Option<Session> {
    let mut failures = 0;
    loop {
        failures += 1;
        tokio::select! {
            () = tokio::time::sleep(backoff.delay(failures)) => {}
            () = shared.closed.wait() => return None,
            () = sender.closed() => return None,
        }
        match Session::open(shared, subscription).await {
            Ok(session) => {
                tracing::info!(subscriber = %subscription.name, "RabbitMQ consumer reconnected");
                return Some(session);
            }
            Err(error) if !error.is_transient() => {
                // A refusal (its grant changed) will not pass by retrying.
                tracing::error!(subscriber = %subscription.name, %error, "reconnecting refused; the consumer stops");
                // Waits for room (a full buffer must not swallow why the
                // stream ends), unless the user stops reading it.
                tokio::select! {
                    _ = sender.send(Err(error)) => {}
                    () = shared.closed.wait() => {}
                }
                return None;
            }
            Err(error) => {
                tracing::warn!(subscriber = %subscription.name, %error, "reconnecting failed; retrying")
            }
        }
    }
}

/// Hands a message to the user, or dead-letters it when it is malformed or
/// out of attempts.
async fn forward(
    shared: &Arc<Shared>,
    subscription: &Subscription,
    channel: &Channel,
    delivery: lapin::message::Delivery,
    sender: &Sender,
) {
    let attempt = message::attempt(
        &delivery.properties,
        delivery.redelivered,
        shared.config.queue_type,
    );
    let origin = message::origin(
        &delivery.properties,
        delivery.exchange.as_str(),
        delivery.routing_key.as_str(),
        shared.names.exchange(),
    );
    let settle = RabbitSettle {
        shared: Arc::clone(shared),
        channel: channel.clone(),
        acker: delivery.acker,
        properties: delivery.properties,
        body: bytes::Bytes::from(delivery.data),
        name: subscription.name.clone(),
        attempt,
        origin,
    };
    let checked = message::envelope(&settle.properties, settle.body.clone())
        .and_then(|envelope| message::from_origin(envelope, settle.origin.as_deref()));
    let envelope = match checked {
        Ok(envelope) => envelope,
        Err(error) => {
            tracing::error!(subscriber = %subscription.name, %error, "malformed message dead-lettered");
            if let Err(bury) = settle
                .dead_letter(&archiver_core::malformed_reason(&error), attempt)
                .await
            {
                tracing::warn!(%bury, "dead-lettering a malformed message failed; the broker redelivers it");
            }
            let _ = sender.try_send(Err(BackendError::Wire(error)));
            return;
        }
    };
    // An earlier version's binding kept for the upgrade can match another
    // list's new key (`mail.*.example.org` matches `mail.private.example.org`,
    // list `example.org`): what the selection does not select is dropped.
    if !subscription.selection.matches(&envelope) {
        tracing::warn!(
            subscriber = %subscription.name,
            list_id = %envelope.list_id,
            "a delivery the selection does not select (an earlier binding matched it) is dropped"
        );
        if let Err(error) = settle.ack_original().await {
            tracing::warn!(%error, "acknowledging an unselected delivery failed; the broker redelivers it");
        }
        return;
    }
    // `attempt` is the one about to be made: attempt - 1 were abandoned.
    // Classic queues have no broker-side limit; quorum queues dead-letter
    // before this happens.
    if let Some(reason) = attempt_limit_reached("abandoned", attempt - 1, subscription.max_attempts)
    {
        if let Err(error) = settle.dead_letter(&reason, attempt).await {
            tracing::warn!(%error, "dead-lettering failed; the broker redelivers it");
        }
        return;
    }
    // If the user dropped the stream meanwhile, the delivery is dropped here
    // and hands itself back.
    let delivery = Delivery::new(
        envelope,
        attempt,
        subscription.max_attempts,
        shared.closed.clone(),
        Box::new(settle),
    );
    let _ = sender.send(Ok(delivery)).await;
}
