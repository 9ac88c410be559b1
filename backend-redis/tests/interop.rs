//! A Python client (redis-py) reads a mail and an event the library
//! published, following only docs/wire-format.md, and publishes a mail the
//! Rust consumer receives intact.

mod support;

use std::process::Command;

use archiver_core::conformance::Harness;
use archiver_core::conformance::interop::{
    check_the_script, interop_list, publish_for_the_script, python_with,
};
use archiver_core::{Subscriber, Subscription};
use support::RedisHarness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_reads_and_publishes_the_wire_format() {
    if !python_with("redis") {
        return;
    }
    let harness = RedisHarness::new();
    let consumer = harness.connect().await;
    let mut deliveries = consumer
        .subscribe(&Subscription::new("rust-reader".parse().unwrap()))
        .await
        .unwrap();
    let sent = publish_for_the_script(harness.connect().await).await;

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop.py");
    let output = Command::new("python3")
        .args([
            script,
            &harness.config.url,
            &harness.config.prefix,
            interop_list().as_str(),
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "interop.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    check_the_script(
        &serde_json::from_slice(&output.stdout).unwrap(),
        &sent,
        &mut deliveries,
    )
    .await;
    harness.cleanup().await;
}
