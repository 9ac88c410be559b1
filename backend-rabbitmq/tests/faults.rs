//! Fault tests with real processes: the broker closes this deployment's
//! connections (rabbitmqctl close_connection, by their names) while 10,000
//! mails are published. (A consumer process killed -9 while it holds
//! deliveries is the operator's tool's test: mq-archiver-admin/tests.)

mod support;

use std::process::Command;

use archiver_core::conformance::Harness;
use archiver_core::conformance::faults::{
    Publishing, corpus_envelopes, publishes_survive_two_faults,
};
use support::RabbitHarness;

fn rabbitmqctl(args: &[&str]) -> String {
    let output = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs (scripts/test installs RabbitMQ)");
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Closes every connection of this deployment, as a broker-side failure
/// would; returns how many.
fn close_connections(prefix: &str) -> usize {
    let listing = rabbitmqctl(&[
        "list_connections",
        "-q",
        "--no-table-headers",
        "pid",
        "client_properties",
    ]);
    let pids: Vec<&str> = listing
        .lines()
        .filter(|l| l.contains(prefix))
        .filter_map(|l| l.split('\t').next())
        .collect();
    for pid in &pids {
        rabbitmqctl(&[
            "close_connection",
            pid,
            "fault test: connection closed by the broker",
        ]);
    }
    pids.len()
}

/// Messages (ready and unacknowledged) in a queue, from the broker.
fn messages_in(queue: &str) -> u64 {
    rabbitmqctl(&[
        "list_queues",
        "-q",
        "--no-table-headers",
        "name",
        "messages",
    ])
    .lines()
    .find_map(|l| l.strip_prefix(queue)?.trim().parse().ok())
    .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_publishes_survive_connections_closed_twice() {
    let Some(envelopes) = corpus_envelopes(10_000) else {
        return;
    };
    let harness = RabbitHarness::new();
    let prefix = harness.config.prefix.clone();
    let queue = format!("{prefix}.q.archive");
    let mut closed = Vec::new();
    let close = async |_: &Publishing| {
        let prefix = prefix.clone();
        closed.push(
            tokio::task::spawn_blocking(move || close_connections(&prefix))
                .await
                .unwrap(),
        );
    };
    let left = async || {
        let queue = queue.clone();
        tokio::task::spawn_blocking(move || messages_in(&queue))
            .await
            .unwrap()
    };
    let run = publishes_survive_two_faults(&harness, envelopes, close, left).await;
    println!("rabbitmq connections closed twice | connections closed {closed:?}");
    assert!(
        closed.iter().all(|n| *n >= 1),
        "each round closed this deployment's connections: {closed:?}"
    );
    assert!(
        run.stream_errors >= 1,
        "the consumer saw its connection go and came back"
    );
    harness.cleanup().await;
}
