//! An archive server in another language: `tests/interop.py`, with only
//! pyzmq, says hello to the hub, reads the hub's capabilities from its
//! WELCOME, receives a mail and an event the hub published, acks them and
//! says goodbye. What it prints must be exactly
//! the wire fields and body the Rust side sent, and the hub's queue must
//! end drained.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use archiver_core::conformance::interop::{INTEROP_ADDRESS, python_with};
use archiver_core::{
    ArchivedMail, Connection, Envelope, ListChange, ListEvent, ListId, MailLimits, MailingList,
    MemberRole, Publisher, wire,
};
use backend_zeromq::ZmqHub;
use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout_at};

/// The durable subscriber the script consumes as.
const SUBSCRIBER: &str = "python-archive";

/// Longer than the script's own 30 s, so its error message comes first.
const DEADLINE: Duration = Duration::from_secs(40);

/// A mail with CRLF line ends and 8-bit bytes (Latin-1, and one that is
/// valid in no charset) in its body, to arrive byte for byte.
const RAW_MAIL: &[u8] = b"Message-ID: <zmq-interop@example.org>\r\n\
From: Ann Example <ann@example.org>\r\n\
Subject: from Rust to Python\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
Caf\xe9 cr\xe8me, na\xefve \xff\r\n\
From the start of a line\r\n\
>From a quoted one\r\n";

/// The script's process, killed if the test ends before it does.
struct Script {
    child: Child,
    stderr: Option<JoinHandle<String>>,
}

impl Script {
    /// Starts the script; its stdout comes line by line on the receiver,
    /// which closes when the script closes its stdout.
    fn spawn(endpoint: &str, count: usize) -> (Self, mpsc::UnboundedReceiver<String>) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop.py");
        let mut child = Command::new("python3")
            .args([script, endpoint, SUBSCRIBER, &count.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (lines, receiver) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let script = Self {
            child,
            stderr: Some(stderr),
        };
        (script, receiver)
    }

    /// Kills the script and fails the test with what it said on stderr.
    fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let stderr = self
            .stderr
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default();
        panic!("{what}; interop.py's stderr:\n{stderr}");
    }

    /// The next line of stdout; `None` once the script closed it.
    async fn line(
        &mut self,
        lines: &mut mpsc::UnboundedReceiver<String>,
        deadline: Instant,
        waiting_for: &str,
    ) -> Option<String> {
        match timeout_at(deadline, lines.recv()).await {
            Ok(line) => line,
            Err(_) => self.fail(&format!(
                "no {waiting_for} from interop.py before the deadline"
            )),
        }
    }

    /// Waits for the script to exit (its stdout is closed, so it is on
    /// its way out).
    async fn exit(&mut self, deadline: Instant) -> ExitStatus {
        loop {
            if let Some(status) = self.child.try_wait().expect("the script's status") {
                return status;
            }
            if Instant::now() >= deadline {
                self.fail("interop.py did not exit before the deadline");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks what the script printed for one delivery against the envelope.
fn check_delivery(seen: &Value, envelope: &Envelope) {
    let fields = wire::to_fields(envelope);
    let names: Vec<&str> = fields.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        seen["field_names"],
        serde_json::json!(names),
        "the fields arrive in wire order"
    );
    let expected: serde_json::Map<String, Value> = fields
        .iter()
        .map(|(name, value)| ((*name).to_owned(), Value::from(value.as_str())))
        .collect();
    assert_eq!(seen["fields"], Value::Object(expected), "every wire field");
    assert_eq!(seen["attempt"], 1, "first attempt");
    assert!(seen["tag"].is_u64(), "a decimal tag: {}", seen["tag"]);
    assert_eq!(seen["body_len"], envelope.body.len());
    assert_eq!(
        seen["body_hex"],
        hex(&envelope.body),
        "the body, byte for byte"
    );
    let sha256 = seen["body_sha256"].as_str().expect("a SHA-256");
    assert!(
        sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()),
        "a SHA-256 in hex: {sha256}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_consumes_from_the_hub_with_pyzmq_only() {
    if !python_with("zmq") {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let hub = ZmqHub::bind(support::hub_config(dir.path())).expect("hub binds on loopback");
    let deadline = Instant::now() + DEADLINE;

    let (mut script, mut lines) = Script::spawn(hub.endpoint(), 2);
    let welcomed = match script.line(&mut lines, deadline, "`ready`").await {
        Some(line) => match line
            .strip_prefix("ready ")
            .map(serde_json::from_str::<Value>)
        {
            Some(Ok(capabilities)) => capabilities,
            _ => script.fail(&format!("expected `ready` and capabilities, got {line:?}")),
        },
        None => script.fail("interop.py ended before it was ready"),
    };
    let timeout = hub.config().timeout + Duration::from_secs(1);
    assert_eq!(
        welcomed,
        serde_json::json!({
            "per_list_order": true,
            "replay_from_start": true,
            "native_dead_letter": true,
            "abandoned_redelivery_ms": timeout.as_millis() as u64,
        }),
        "the capabilities Python read from the WELCOME"
    );

    let list = ListId::new("interop.lists.example.org").expect("valid list id");
    let mail = ArchivedMail::parse(Bytes::from_static(RAW_MAIL), &MailLimits::default())
        .expect("the mail parses");
    let change = ListChange::MembershipAdded {
        address: "ann@example.org".into(),
        role: MemberRole::Moderator,
        display_name: Some("Ann Example".into()),
    };
    let list = MailingList::public(list)
        .with_address(INTEROP_ADDRESS)
        .expect("valid address");
    let event = ListEvent::now(list.list_id.clone(), change).by("admin@example.org");
    let sent = [Envelope::mail(&mail, &list), Envelope::event(&event, &list)];
    for envelope in &sent {
        hub.publish(envelope).await.expect("published");
    }

    let mut seen = Vec::new();
    while let Some(line) = script.line(&mut lines, deadline, "delivery").await {
        match serde_json::from_str::<Value>(&line) {
            Ok(delivery) => seen.push(delivery),
            Err(error) => script.fail(&format!("interop.py printed {line:?}: {error}")),
        }
    }
    let status = script.exit(deadline).await;
    if !status.success() {
        script.fail(&format!("interop.py exited with {status}"));
    }

    assert_eq!(seen.len(), sent.len(), "one line per delivery: {seen:#?}");
    for envelope in &sent {
        let id = envelope.id.to_string();
        let delivery = seen
            .iter()
            .find(|d| d["fields"]["envelope-id"] == id.as_str())
            .unwrap_or_else(|| panic!("envelope {id} ({:?}) reached Python", envelope.kind));
        check_delivery(delivery, envelope);
        assert_eq!(delivery["fields"]["list-address"], INTEROP_ADDRESS);
    }
    assert_ne!(seen[0]["tag"], seen[1]["tag"], "each delivery has its tag");

    // Acks and the goodbye reach the hub asynchronously.
    loop {
        let queues = hub.status().await.expect("hub status");
        let queue = queues
            .iter()
            .find(|q| q.name.as_str() == SUBSCRIBER)
            .expect("the script's hello created its queue");
        if queue.is_drained() && queue.connections == 0 {
            assert_eq!(queue.dead_letters, 0, "nothing dead-lettered: {queue:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the queue is not drained and left before the deadline: {queue:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    hub.close().await.expect("hub closes");
}
