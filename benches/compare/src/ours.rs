//! Ours: the library's `Backend` on Redis, RabbitMQ or a ZeroMQ hub, used
//! as a list server and an archive server use it (concurrent `publish`
//! calls; a subscription stream whose deliveries are acked).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, bail};
use archiver_core::{Backend, Deliveries, Envelope, Subscription};
use archiver_examples::broker::{BackendKind, Broker};
use async_trait::async_trait;
use futures::{FutureExt, StreamExt};

use crate::system::{Arrival, Consumer, Producer, System};

/// Ours on one backend.
pub struct Ours {
    kind: BackendKind,
    /// Broker URL (Redis, RabbitMQ); unused for ZeroMQ.
    url: String,
    /// Where ZeroMQ hubs keep their journals, one directory per scenario.
    hub_dirs: PathBuf,
    prefetch: u16,
    /// The deployment of the scenario under way.
    broker: Mutex<Option<Arc<Broker>>>,
    runs: AtomicUsize,
}

impl Ours {
    /// Ours on `kind`; ZeroMQ hubs keep their journals under `hub_dirs`.
    pub fn new(kind: BackendKind, url: &str, hub_dirs: PathBuf, prefetch: u16) -> Self {
        Self {
            kind,
            url: url.to_owned(),
            hub_dirs,
            prefetch,
            broker: Mutex::default(),
            runs: AtomicUsize::new(0),
        }
    }

    fn broker(&self) -> anyhow::Result<Arc<Broker>> {
        self.broker
            .lock()
            .expect("not poisoned")
            .clone()
            .context("prepare was not called")
    }
}

/// The subscription ours creates for subscriber `index`.
pub fn subscription(index: usize, prefetch: u16) -> Subscription {
    let name = format!("bench-{index}")
        .parse()
        .expect("a valid subscriber name");
    Subscription::new(name).prefetch(prefetch)
}

#[async_trait]
impl System for Ours {
    async fn prepare(&self, subscribers: usize) -> anyhow::Result<()> {
        let run = self.runs.fetch_add(1, Ordering::Relaxed);
        let broker = match self.kind {
            BackendKind::Zeromq => {
                let dir = self.hub_dirs.join(format!("hub-{run}"));
                Broker::zeromq_hub("tcp://127.0.0.1:*", &dir)?
            }
            kind => Broker::new(kind, Some(self.url.clone()), &format!("bench{run}")),
        };
        let client = broker.client().await?;
        for index in 0..subscribers {
            // The stream is dropped at once: the durable queue stays.
            drop(
                client
                    .subscribe(&subscription(index, self.prefetch))
                    .await?,
            );
        }
        *self.broker.lock().expect("not poisoned") = Some(Arc::new(broker));
        Ok(())
    }

    async fn producer(&self) -> anyhow::Result<Box<dyn Producer>> {
        Ok(Box::new(OursProducer(self.broker()?.client().await?)))
    }

    async fn consumer(&self, subscriber: usize) -> anyhow::Result<Box<dyn Consumer>> {
        let client = self.broker()?.client().await?;
        let deliveries = client
            .subscribe(&subscription(subscriber, self.prefetch))
            .await?;
        Ok(Box::new(OursConsumer {
            deliveries,
            prefetch: usize::from(self.prefetch),
        }))
    }

    async fn cleanup(&self) -> anyhow::Result<()> {
        let broker = self.broker.lock().expect("not poisoned").take();
        if let Some(broker) = broker {
            broker.purge().await?;
        }
        Ok(())
    }
}

/// Concurrent `publish` calls, one per mail of the batch.
pub struct OursProducer(pub Arc<dyn Backend>);

#[async_trait]
impl Producer for OursProducer {
    async fn send(&self, batch: &[Envelope]) -> anyhow::Result<()> {
        futures::future::try_join_all(batch.iter().map(|envelope| self.0.publish(envelope)))
            .await?;
        Ok(())
    }
}

/// A subscription stream; each delivery is acked.
pub struct OursConsumer {
    pub deliveries: Deliveries,
    pub prefetch: usize,
}

#[async_trait]
impl Consumer for OursConsumer {
    async fn receive(&mut self, arrivals: &mut Vec<Arrival>) -> anyhow::Result<()> {
        let mut taken = Vec::new();
        let mut next = self.deliveries.next().await;
        loop {
            match next {
                Some(Ok(delivery)) => {
                    let envelope = delivery.envelope();
                    arrivals.push(Arrival {
                        id: envelope.id.as_uuid().as_u128(),
                        bytes: envelope.body.len(),
                        at: Instant::now(),
                    });
                    taken.push(delivery.ack());
                }
                Some(Err(error)) => bail!("the subscription reported: {error}"),
                None => bail!("the subscription ended"),
            }
            if taken.len() >= self.prefetch {
                break;
            }
            match self.deliveries.next().now_or_never() {
                Some(item) => next = item,
                None => break,
            }
        }
        futures::future::try_join_all(taken).await?;
        Ok(())
    }
}
