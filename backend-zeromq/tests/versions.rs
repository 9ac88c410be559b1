//! Protocol versions and what WELCOME carries: a hub and an archive server
//! of different protocol versions refuse each other with a reason that
//! names both versions (on the hub's side, DENIED; on the client's, a
//! typed error from `subscribe`), and the client reports the capabilities
//! the hub's WELCOME gave, not its own guess.

mod support;

use std::time::Duration;

use archiver_core::{BackendError, Connection, Subscriber, Subscription};
use backend_zeromq::protocol::{self, command};
use backend_zeromq::{ClientConfig, DEFAULT_TIMEOUT, ZmqClient, ZmqHub};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_of_protocol_2_is_denied_naming_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let hub = ZmqHub::bind(support::hub_config(dir.path())).unwrap();
    let endpoint = hub.endpoint().to_owned();
    let denied = tokio::task::spawn_blocking(move || {
        let context = zmq::Context::new();
        let old_client = context.socket(zmq::DEALER).unwrap();
        old_client.set_linger(0).unwrap();
        old_client.connect(&endpoint).unwrap();
        // What a client of protocol 2 says (no field it sends has changed;
        // it would misread a DELIVER of protocol 3).
        let hello = br#"{"version":2,"name":"web","lists":[],"kind":null,"prefetch":8,"max_attempts":5,"start":"new"}"#;
        old_client
            .send_multipart([command::HELLO, &hello[..]], 0)
            .unwrap();
        support::recv_raw(&old_client, "the answer to an old hello")
    })
    .await
    .unwrap();
    assert_eq!(denied[0], command::DENIED);
    assert_eq!(
        String::from_utf8_lossy(&denied[1]),
        format!(
            "protocol version 2 is not supported (this hub speaks {})",
            protocol::PROTOCOL_VERSION
        )
    );
    assert!(
        hub.status().await.unwrap().is_empty(),
        "a denied hello creates no queue"
    );
    hub.close().await.unwrap();
}

/// A hub of protocol 2 answers this client's hello as it did (its
/// `Hello::validate` text), and the client's `subscribe` fails with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_of_protocol_2_refuses_this_client_with_a_typed_error() {
    let context = zmq::Context::new();
    let old_hub = context.socket(zmq::ROUTER).unwrap();
    old_hub.set_linger(0).unwrap();
    old_hub.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = old_hub.get_last_endpoint().unwrap().unwrap();
    let hub = std::thread::spawn(move || {
        let hello = support::recv_raw(&old_hub, "hello");
        assert_eq!(hello[1], command::HELLO);
        let said: serde_json::Value = serde_json::from_slice(&hello[2]).unwrap();
        let version = said["version"].as_u64().unwrap();
        let reason = format!("protocol version {version} is not supported (this hub speaks 2)");
        old_hub
            .send_multipart(
                [
                    hello[0].clone(),
                    command::DENIED.to_vec(),
                    reason.into_bytes(),
                ],
                0,
            )
            .unwrap();
        version
    });
    let client = ZmqClient::connect(ClientConfig::new(endpoint)).unwrap();
    let refused = client
        .subscribe(&Subscription::new("web".parse().unwrap()))
        .await;
    let sent = tokio::task::spawn_blocking(move || hub.join().unwrap())
        .await
        .unwrap();
    assert_eq!(sent, u64::from(protocol::PROTOCOL_VERSION));
    match refused {
        Err(BackendError::InvalidSubscription(reason)) => assert!(
            reason.contains("protocol version 3 is not supported (this hub speaks 2)"),
            "{reason}"
        ),
        Err(other) => panic!("expected InvalidSubscription, got {other:?}"),
        Ok(_) => panic!("a hub of protocol 2 must refuse this client"),
    }
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_reports_the_capabilities_the_hub_welcomed_it_with() {
    let dir = tempfile::tempdir().unwrap();
    let timeout = Duration::from_secs(3);
    let hub = ZmqHub::bind(
        support::hub_config(dir.path()).heartbeat(Duration::from_millis(500), timeout),
    )
    .unwrap();
    let client = support::client_of(&hub);
    let before = client.subscriber_capabilities();
    assert_eq!(
        before.abandoned_redelivery,
        DEFAULT_TIMEOUT + Duration::from_secs(1),
        "before any WELCOME: a hub of default settings"
    );
    let _deliveries = client
        .subscribe(&Subscription::new("web".parse().unwrap()))
        .await
        .unwrap();
    let after = client.subscriber_capabilities();
    assert_eq!(
        after.abandoned_redelivery,
        timeout + Duration::from_secs(1),
        "after the WELCOME: this hub's timeout"
    );
    assert!(after.per_list_order && after.replay_from_start && after.native_dead_letter);
    client.close().await.unwrap();
    hub.close().await.unwrap();
}
