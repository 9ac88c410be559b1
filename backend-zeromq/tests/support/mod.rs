//! What the ZeroMQ tests share: a hub of their own on loopback TCP, in a
//! temporary directory.

#![allow(dead_code)] // each test binary uses part of this

use archiver_core::conformance::Harness;
use async_trait::async_trait;
use backend_zeromq::{HubConfig, ZmqClient, ZmqHub};

/// One hub per scenario, on `tcp://127.0.0.1` with ports the system picks;
/// every `connect` is a new client over TCP, as an archive server in
/// another process would be (it also publishes through the hub, as the
/// list server does).
pub struct ZmqHarness {
    pub hub: ZmqHub,
    _dir: tempfile::TempDir,
}

impl ZmqHarness {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let hub = ZmqHub::bind(hub_config(dir.path())).expect("hub binds on loopback");
        Self { hub, _dir: dir }
    }
}

/// A hub on loopback with a live tail and the default settings.
pub fn hub_config(dir: &std::path::Path) -> HubConfig {
    HubConfig::new("tcp://127.0.0.1:*", dir).tail("tcp://127.0.0.1:*")
}

#[async_trait]
impl Harness for ZmqHarness {
    type Backend = ZmqClient;

    async fn connect(&self) -> ZmqClient {
        self.hub.client()
    }
}
