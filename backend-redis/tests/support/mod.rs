//! What the Redis tests share: a harness on the Redis of
//! `ARCHIVER_REDIS_URL` (default 127.0.0.1:6379) under a unique key prefix.

#![allow(dead_code)]

use std::time::Duration;

use archiver_core::conformance::Harness;
use async_trait::async_trait;
use backend_redis::{RedisBackend, RedisConfig};

/// One scenario's namespace: a fresh key prefix, short timers.
pub struct RedisHarness {
    pub config: RedisConfig,
}

impl RedisHarness {
    pub fn new() -> Self {
        Self::on(RedisConfig::from_env())
    }

    /// A harness on another server (a test's own instance).
    pub fn on(config: RedisConfig) -> Self {
        Self {
            config: config
                .prefix(format!("archiver-test:{}", uuid::Uuid::now_v7().simple()))
                .claim_idle(Duration::from_secs(2))
                .poll_interval(Duration::from_millis(50))
                .retention_interval(Duration::from_millis(500)),
        }
    }
}

#[async_trait]
impl Harness for RedisHarness {
    type Backend = RedisBackend;

    async fn connect(&self) -> RedisBackend {
        RedisBackend::connect(self.config.clone())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "Redis must be running at {} (scripts/test starts it): {e}",
                    self.config.redacted_url()
                )
            })
    }

    async fn cleanup(&self) {
        self.connect()
            .await
            .purge()
            .await
            .expect("purge the scenario's keys");
    }
}
