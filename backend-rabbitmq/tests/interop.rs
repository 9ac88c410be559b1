//! A Python client (pika) reads a mail and an event the library published,
//! following only docs/wire-format.md, and publishes a mail the Rust
//! consumer receives intact.

mod support;

use std::process::Command;

use archiver_core::conformance::Harness;
use archiver_core::{
    ArchiveUrls, Archiver, ListChange, ListEvent, ListId, MailingList, MemberRole, QueueArchiver,
    Subscriber, Subscription, message_id_hash,
};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use support::RabbitHarness;

/// True when python3 with pika is here; otherwise says SKIPPED, or fails
/// when `ARCHIVER_REQUIRE_PYTHON` is set (CI sets it).
fn python_with_pika() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import pika"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("ARCHIVER_REQUIRE_PYTHON").is_none(),
            "python3 with pika is required (pip install pika)"
        );
        eprintln!("SKIPPED python interop: python3 with pika not found (pip install pika)");
    }
    ok
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_reads_and_publishes_the_wire_format() {
    if !python_with_pika() {
        return;
    }
    let harness = RabbitHarness::new();
    let client = harness.connect().await;
    // Python's queue: declared, then left for Python to read.
    drop(
        client
            .subscribe(&Subscription::new("python-reader".parse().unwrap()))
            .await
            .unwrap(),
    );
    let mut deliveries = client
        .subscribe(&Subscription::new("rust-reader".parse().unwrap()))
        .await
        .unwrap();
    let archiver = QueueArchiver::new(
        "interop",
        harness.connect().await,
        ArchiveUrls::new("https://archive.example.org/").unwrap(),
    );
    let list_id = ListId::new("interop.lists.example.org").unwrap();
    let raw = bytes::Bytes::from_static(b"Message-ID: <rust-interop@example.org>\r\nSubject: from Rust\r\n\r\nFrom the start of a line\r\n>From a quoted one\r\n");
    let receipt = archiver
        .archive_message(&MailingList::public(list_id.clone()), raw.clone())
        .await
        .unwrap();
    let event = ListEvent::now(
        list_id.clone(),
        ListChange::MembershipAdded {
            address: "ann@example.org".into(),
            role: MemberRole::Owner,
            display_name: None,
        },
    )
    .by("admin@example.org");
    let event_id = archiver.archive_event(&event).await.unwrap();

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop.py");
    let queue = format!("{}.q.python-reader", harness.config.prefix);
    let output = Command::new("python3")
        .args([
            script,
            &harness.config.url,
            &harness.config.prefix,
            list_id.as_str(),
            &queue,
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "interop.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    assert_eq!(
        seen["mail"]["envelope_id"],
        receipt.envelope_id.unwrap().to_string()
    );
    assert_eq!(seen["mail"]["message_id_hash"], receipt.message_id_hash);
    assert_eq!(seen["mail"]["body_sha256"], hex(&Sha256::digest(&raw)));
    assert_eq!(seen["event"]["envelope_id"], event_id.to_string());
    assert_eq!(
        ListEvent::from_json(seen["event"]["json"].to_string().as_bytes()).unwrap(),
        event
    );

    let python_id = seen["published"]["envelope_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut from_python = None;
    for _ in 0..3 {
        let delivery = tokio::time::timeout(std::time::Duration::from_secs(30), deliveries.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if delivery.envelope().id.to_string() == python_id {
            from_python = Some(delivery.envelope().clone());
        }
        delivery.ack().await.unwrap();
    }
    let envelope = from_python.expect("the mail Python published arrives");
    assert_eq!(&envelope.body[..], b"Message-ID: <python-interop@example.org>\r\nSubject: from Python\r\n\r\nFrom pika, with love.\r\n");
    assert_eq!(
        hex(&Sha256::digest(&envelope.body)),
        seen["published"]["body_sha256"]
    );
    assert_eq!(
        envelope.message_id_hash.as_deref(),
        Some(message_id_hash("<python-interop@example.org>").as_str())
    );
    harness.cleanup().await;
}
