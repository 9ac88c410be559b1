//! The Rust half of the interop tests, where a client in another language
//! (a Python script per backend) reads a mail and an event the library
//! published, following only `docs/wire-format.md`, and publishes a mail
//! back. The script prints one JSON object:
//! `{"mail": {"envelope_id", "message_id_hash", "list_address", "body_sha256"},
//!   "event": {"envelope_id", "list_address", "archive_policy", "event_type", "json"},
//!   "published": {"envelope_id", "body_sha256"}}`,
//! where the script publishes a version 1.0 envelope (no `list-address`).

use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::archiver::{ArchiveUrls, Archiver, QueueArchiver, Receipt};
use crate::backend::{Deliveries, Publisher};
use crate::envelope::EnvelopeId;
use crate::event::{ListChange, ListEvent, MemberRole};
use crate::list::{ListId, MailingList};
use crate::mail::message_id::message_id_hash;

/// The list the interop tests use.
pub fn interop_list() -> ListId {
    ListId::new("interop.lists.example.org").expect("valid list id")
}

/// The posting address of [`interop_list`], which the Rust side's
/// envelopes carry (`list-address`, wire format 1.1).
pub const INTEROP_ADDRESS: &str = "interop@lists.example.org";

/// [`interop_list`] with its posting address.
fn interop_mailing_list() -> MailingList {
    MailingList::public(interop_list())
        .with_address(INTEROP_ADDRESS)
        .expect("valid address")
}

/// The body the scripts publish: they send exactly these bytes.
pub const PYTHON_BODY: &[u8] = b"Message-ID: <python-interop@example.org>\r\nSubject: from Python\r\n\r\nFrom Python, with love.\r\n";

/// What the Rust side published for the script to read.
pub struct Sent {
    mail: Bytes,
    receipt: Receipt,
    event: ListEvent,
    event_id: EnvelopeId,
}

/// Publishes one mail (with lines an mbox would quote) and one event.
pub async fn publish_for_the_script<P: Publisher>(publisher: P) -> Sent {
    let archiver = QueueArchiver::new(
        "interop",
        publisher,
        ArchiveUrls::new("https://archive.example.org/").expect("valid URL"),
    );
    let mail = Bytes::from_static(b"Message-ID: <rust-interop@example.org>\r\nSubject: from Rust\r\n\r\nFrom the start of a line\r\n>From a quoted one\r\n");
    let receipt = archiver
        .archive_message(&interop_mailing_list(), mail.clone())
        .await
        .expect("mail published");
    let change = ListChange::MembershipAdded {
        address: "ann@example.org".into(),
        role: MemberRole::Owner,
        display_name: None,
    };
    let event = ListEvent::now(interop_list(), change).by("admin@example.org");
    let event_id = archiver
        .archive_event(&interop_mailing_list(), &event)
        .await
        .expect("event published")
        .envelope_id
        .expect("an event of a public list is published");
    Sent {
        mail,
        receipt,
        event,
        event_id,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks what the script read, then receives the mail it published among
/// the next three deliveries (the two Rust ones and the script's).
pub async fn check_the_script(seen: &serde_json::Value, sent: &Sent, deliveries: &mut Deliveries) {
    assert_eq!(
        seen["mail"]["envelope_id"],
        sent.receipt.envelope_id.expect("published").to_string()
    );
    assert_eq!(
        seen["mail"]["message_id_hash"],
        sent.receipt.message_id_hash
    );
    assert_eq!(
        seen["mail"]["body_sha256"],
        hex(&Sha256::digest(&sent.mail))
    );
    assert_eq!(seen["mail"]["list_address"], INTEROP_ADDRESS);
    assert_eq!(seen["event"]["envelope_id"], sent.event_id.to_string());
    assert_eq!(seen["event"]["list_address"], INTEROP_ADDRESS);
    assert_eq!(seen["event"]["archive_policy"], "public");
    assert_eq!(seen["event"]["event_type"], "membership_added");
    assert_eq!(
        ListEvent::from_json(seen["event"]["json"].to_string().as_bytes()).expect("event JSON"),
        sent.event
    );

    let python_id = seen["published"]["envelope_id"]
        .as_str()
        .expect("the script published")
        .to_owned();
    let mut from_python = None;
    for _ in 0..3 {
        let delivery = tokio::time::timeout(std::time::Duration::from_secs(30), deliveries.next())
            .await
            .expect("deliveries before the deadline")
            .expect("stream goes on")
            .expect("a delivery");
        if delivery.envelope().id.to_string() == python_id {
            from_python = Some(delivery.envelope().clone());
        }
        delivery.ack().await.expect("ack");
    }
    let envelope = from_python.expect("the mail the script published arrives");
    assert_eq!(&envelope.body[..], PYTHON_BODY);
    assert_eq!(
        seen["published"]["body_sha256"],
        hex(&Sha256::digest(&envelope.body))
    );
    assert_eq!(
        envelope.message_id_hash.as_deref(),
        Some(message_id_hash("<python-interop@example.org>").as_str())
    );
    assert_eq!(envelope.list_id, interop_list());
    assert_eq!(
        envelope.list_address, None,
        "a 1.0 envelope has no list address"
    );
}

/// True when python3 can import `module`; otherwise says SKIPPED, or fails
/// when `ARCHIVER_REQUIRE_PYTHON` is set (CI sets it).
pub fn python_with(module: &str) -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("ARCHIVER_REQUIRE_PYTHON").is_none(),
            "python3 with {module} is required (pip install {module})"
        );
        eprintln!("SKIPPED python interop: python3 with {module} not found (pip install {module})");
    }
    ok
}
