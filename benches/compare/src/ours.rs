//! Ours: the library's clients on Redis, RabbitMQ or a ZeroMQ hub, reached
//! through the `mq-archiver` facade's URL and used as a list server and an
//! archive server use it (concurrent `publish` calls; a subscription stream
//! whose deliveries are acked).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, bail};
use async_trait::async_trait;
use futures::{FutureExt, StreamExt};
use mq_archiver::{
    BackendKind, Config, Connection, Deliveries, Envelope, Publisher, PublisherClient, Subscriber,
    SubscriberClient, Subscription,
};

use crate::system::{Arrival, Consumer, Producer, System};

/// Ours on one backend.
pub struct Ours {
    /// The facade URL (for ZeroMQ, where the hub binds: any free port).
    url: String,
    /// Where ZeroMQ hubs keep their journals, one directory per scenario.
    hub_dirs: PathBuf,
    prefetch: u16,
    /// The deployment of the scenario under way.
    deployment: Mutex<Option<Arc<Deployment>>>,
    runs: AtomicUsize,
}

/// One scenario's deployment: its own prefix (or hub), and every client
/// made of it, to purge at the end.
struct Deployment {
    /// The first list-server client (for ZeroMQ: the hub, which every
    /// producer shares, as a list server is one process).
    publisher: PublisherClient,
    /// How more list-server clients connect (Redis, RabbitMQ).
    publishers: Config,
    /// How archive-server clients connect.
    subscribers: Config,
    publisher_clients: Mutex<Vec<PublisherClient>>,
    subscriber_clients: Mutex<Vec<SubscriberClient>>,
}

impl Deployment {
    fn keep_publisher(&self, client: &PublisherClient) {
        self.publisher_clients
            .lock()
            .expect("not poisoned")
            .push(client.clone());
    }

    fn keep_subscriber(&self, client: &SubscriberClient) {
        self.subscriber_clients
            .lock()
            .expect("not poisoned")
            .push(client.clone());
    }
}

impl Ours {
    /// Ours at `url`; ZeroMQ hubs keep their journals under `hub_dirs`.
    pub fn new(url: &str, hub_dirs: PathBuf, prefetch: u16) -> Self {
        Self {
            url: url.to_owned(),
            hub_dirs,
            prefetch,
            deployment: Mutex::default(),
            runs: AtomicUsize::new(0),
        }
    }

    fn deployment(&self) -> anyhow::Result<Arc<Deployment>> {
        self.deployment
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
        let mut options = vec![("prefix", format!("bench{run}"))];
        if Config::parse(&self.url, mq_archiver::NO_OPTIONS)?.backend() == BackendKind::Zeromq {
            let dir = self.hub_dirs.join(format!("hub-{run}"));
            options.push(("hub-dir", dir.display().to_string()));
            options.push(("anonymous", "true".into()));
        }
        let publishers = Config::parse(&self.url, options.clone())?;
        let client = publishers.connect_publisher().await?;
        let subscriber_url = client
            .hub_handle()
            .map_or(self.url.clone(), |hub| hub.endpoint().to_owned());
        options.retain(|(key, _)| *key != "hub-dir");
        let deployment = Deployment {
            publisher: client.clone(),
            publishers,
            subscribers: Config::parse(&subscriber_url, options)?,
            publisher_clients: Mutex::default(),
            subscriber_clients: Mutex::default(),
        };
        deployment.keep_publisher(&client);
        let subscriber = deployment.subscribers.connect_subscriber().await?;
        deployment.keep_subscriber(&subscriber);
        for index in 0..subscribers {
            // The stream is dropped at once: the durable queue stays.
            drop(
                subscriber
                    .subscribe(&subscription(index, self.prefetch))
                    .await?,
            );
        }
        *self.deployment.lock().expect("not poisoned") = Some(Arc::new(deployment));
        Ok(())
    }

    async fn producer(&self) -> anyhow::Result<Box<dyn Producer>> {
        let deployment = self.deployment()?;
        let client = if deployment.publisher.hub_handle().is_some() {
            deployment.publisher.clone()
        } else {
            let client = deployment.publishers.connect_publisher().await?;
            deployment.keep_publisher(&client);
            client
        };
        Ok(Box::new(OursProducer(client)))
    }

    async fn consumer(&self, subscriber: usize) -> anyhow::Result<Box<dyn Consumer>> {
        let deployment = self.deployment()?;
        let client = deployment.subscribers.connect_subscriber().await?;
        deployment.keep_subscriber(&client);
        let deliveries = client
            .subscribe(&subscription(subscriber, self.prefetch))
            .await?;
        Ok(Box::new(OursConsumer {
            deliveries,
            prefetch: usize::from(self.prefetch),
        }))
    }

    async fn cleanup(&self) -> anyhow::Result<()> {
        let deployment = self.deployment.lock().expect("not poisoned").take();
        if let Some(deployment) = deployment {
            // Archive servers first, the list server (a ZeroMQ hub) last.
            let subscribers =
                std::mem::take(&mut *deployment.subscriber_clients.lock().expect("not poisoned"));
            for client in subscribers {
                client.purge().await?;
                client.close().await?;
            }
            let publishers =
                std::mem::take(&mut *deployment.publisher_clients.lock().expect("not poisoned"));
            for client in publishers {
                client.purge().await?;
                client.close().await?;
            }
        }
        Ok(())
    }
}

/// Concurrent `publish` calls, one per mail of the batch.
pub struct OursProducer(pub PublisherClient);

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
