//! `mq-archiver-admin` on an AMQP URL, against the RabbitMQ of
//! `ARCHIVER_AMQP_URL` (default guest@127.0.0.1:5672) under a unique
//! prefix: a consumer process killed -9 while it holds deliveries, and
//! RabbitMQ's own command (`permissions`).

#[path = "../../backend-rabbitmq/tests/support/mod.rs"]
mod support;

use std::process::Command;

use archiver_core::Prefix;
use archiver_core::conformance::Harness;
use archiver_core::conformance::faults::killed_child_consumer;
use backend_rabbitmq::permissions;
use support::RabbitHarness;

const TOOL: &str = env!("CARGO_BIN_EXE_mq-archiver-admin");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_held_by_a_killed_consumer_process_go_to_another_instance() {
    let harness = RabbitHarness::new();
    let name = "child-consumer";
    let mut child = Command::new(TOOL);
    child
        .args([
            "--url",
            &harness.config.url,
            "--prefix",
            &harness.config.prefix,
        ])
        .args(["consume", "--name", name, "--prefetch", "5", "--no-ack"]);
    let report = killed_child_consumer(&harness, child, name).await;
    println!("rabbitmq consumer kill -9 | {report}");
    harness.cleanup().await;
}

/// `permissions` prints exactly what `backend_rabbitmq::permissions`
/// gives, connecting to nothing; an archive server's from its grant file.
#[test]
fn permissions_are_the_functions_lines() {
    let prefix = Prefix::new("deploy-7").unwrap();
    let output = Command::new(TOOL)
        .args(["--prefix", "deploy-7", "permissions", "--vhost", "lists"])
        .args(["--list-server", "mailman"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let expected = permissions::list_server(&prefix, "lists", "mailman").to_string();
    assert_eq!(String::from_utf8(output.stdout).unwrap(), expected);

    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("public.json");
    let json = r#"{"principal":"public-archive","subscribers":["public-archive"],"lists":["*"]}"#;
    std::fs::write(&file, json).unwrap();
    let grant: archiver_core::Grant = serde_json::from_str(json).unwrap();
    let output = Command::new(TOOL)
        .args(["--prefix", "deploy-7", "permissions", "--vhost", "lists"])
        .args(["--grant", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let expected = permissions::archive_server(&prefix, "lists", &grant).to_string();
    assert!(expected.contains("public-archive"));
    assert_eq!(String::from_utf8(output.stdout).unwrap(), expected);
}
