//! What the RabbitMQ tests share: a harness on the broker of
//! `ARCHIVER_AMQP_URL` (default guest@127.0.0.1:5672) under a unique prefix.

#![allow(dead_code)]

use std::sync::Mutex;

use archiver_core::conformance::Harness;
use async_trait::async_trait;
use backend_rabbitmq::{RabbitBackend, RabbitConfig};

/// One scenario's namespace: a fresh exchange and queue prefix. Every
/// client it opens is remembered so clean-up deletes what they declared.
pub struct RabbitHarness {
    pub config: RabbitConfig,
    clients: Mutex<Vec<RabbitBackend>>,
}

impl RabbitHarness {
    pub fn new() -> Self {
        Self::on(RabbitConfig::from_env())
    }

    pub fn on(config: RabbitConfig) -> Self {
        Self {
            config: config.prefix(format!("archiver-test-{}", uuid::Uuid::now_v7().simple())),
            clients: Mutex::default(),
        }
    }
}

#[async_trait]
impl Harness for RabbitHarness {
    type Backend = RabbitBackend;

    async fn connect(&self) -> RabbitBackend {
        let client = RabbitBackend::connect(self.config.clone())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "RabbitMQ must be running at {} (scripts/test starts it): {e}",
                    self.config.redacted_url()
                )
            });
        self.clients.lock().unwrap().push(client.clone());
        client
    }

    async fn cleanup(&self) {
        let clients = std::mem::take(&mut *self.clients.lock().unwrap());
        for client in clients {
            client
                .purge()
                .await
                .expect("purge what the scenario declared");
        }
    }
}
