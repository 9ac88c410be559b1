//! `mq-archiver-admin keygen`: ZeroMQ's CURVE key files, written once,
//! never overwritten, the secret one readable by its owner only.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

const TOOL: &str = env!("CARGO_BIN_EXE_mq-archiver-admin");

#[test]
fn keygen_writes_a_pair_once() {
    let dir = tempfile::tempdir().unwrap();
    let name = dir.path().join("hub");
    // A URL of another backend in the environment (for the connecting
    // commands) does not stop an offline command.
    let first = Command::new(TOOL)
        .env("ARCHIVER_URL", "redis://127.0.0.1:1")
        .arg("keygen")
        .arg(&name)
        .output()
        .unwrap();
    assert!(first.status.success(), "{first:?}");
    let secret = dir.path().join("hub.key");
    let public = dir.path().join("hub.pub");
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the secret file is the owner's only");
    let public_before = std::fs::read(&public).unwrap();
    let secret_before = std::fs::read(&secret).unwrap();
    // The key files are what the backend reads.
    mq_archiver::zeromq::CurveKeyPair::read_file(&secret).unwrap();
    mq_archiver::zeromq::CurveKey::read_file(&public).unwrap();
    let stdout = String::from_utf8(first.stdout).unwrap();
    assert!(
        !stdout.contains(std::str::from_utf8(&public_before).unwrap().trim()),
        "no key printed"
    );

    let again = Command::new(TOOL)
        .arg("keygen")
        .arg(&name)
        .output()
        .unwrap();
    assert!(!again.status.success(), "refuses to overwrite");
    assert_eq!(std::fs::read(&public).unwrap(), public_before);
    assert_eq!(std::fs::read(&secret).unwrap(), secret_before);
}

/// The shared commands on a ZeroMQ URL: the tool connects to a hub (bound
/// here, anonymous on `ipc://`) as an archive server's client and lists,
/// replays, purges and retires what an archive server left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_commands_work_on_a_zeromq_hub() {
    use archiver_core::conformance::fixtures::{next_delivery, small_mail};
    use mq_archiver::{
        Connection, ListId, MailingList, Operator, Publisher, Subscriber, SubscriberName,
        Subscription,
    };

    let dir = tempfile::tempdir().unwrap();
    let url = format!("ipc://{}", dir.path().join("hub.sock").display());
    let hub_dir = dir.path().join("hub");
    let hub = mq_archiver::connect_publisher(
        &url,
        [
            ("hub-dir", hub_dir.to_str().unwrap()),
            ("anonymous", "true"),
        ],
    )
    .await
    .unwrap();
    let archive = mq_archiver::connect_subscriber(&url, mq_archiver::NO_OPTIONS)
        .await
        .unwrap();
    let name = SubscriberName::new("web").unwrap();
    let mut deliveries = archive
        .subscribe(&Subscription::new(name.clone()))
        .await
        .unwrap();
    let list = MailingList::public(ListId::new("tool.lists.example.org").unwrap());
    let mut ids = Vec::new();
    for _ in 0..2 {
        let envelope = small_mail(&list, "tool.example.org");
        hub.publish(&envelope).await.unwrap();
        ids.push(envelope.id.to_string());
    }
    for _ in 0..2 {
        next_delivery(&mut deliveries)
            .await
            .reject("the tool's test")
            .await
            .unwrap();
    }
    // A settlement is sent, not awaited: poll until the hub holds both
    // (with the consumer still open).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while archive.dead_letters(&name).await.unwrap().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "the hub buried both");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    drop(deliveries);

    let tool = |args: &[&str]| {
        let output = Command::new(TOOL)
            .args(["--url", &url])
            .args(args)
            .output()
            .unwrap();
        let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
        if output.status.success() {
            Ok(text(output.stdout))
        } else {
            Err(text(output.stderr))
        }
    };
    let listed = tokio::task::block_in_place(|| tool(&["dead-letters", "--name", "web"]));
    let replayed =
        tokio::task::block_in_place(|| tool(&["replay", "--name", "web", "--id", &ids[0]]));
    // The replayed one is delivered again.
    let mut again = archive
        .subscribe(&Subscription::new(name.clone()))
        .await
        .unwrap();
    let redelivered = next_delivery(&mut again).await;
    let redelivered_id = redelivered.envelope().id.to_string();
    redelivered.ack().await.unwrap();
    drop(again);
    let purged =
        tokio::task::block_in_place(|| tool(&["purge-dead-letters", "--name", "web", "--yes"]));
    let trim = tokio::task::block_in_place(|| tool(&["trim"]));
    let retired = tokio::task::block_in_place(|| tool(&["unsubscribe", "--name", "web", "--yes"]));
    let left = archive.dead_letters(&name).await;
    archive.close().await.unwrap();
    hub.close().await.unwrap();

    let listed = listed.unwrap();
    let shown: Vec<&str> = listed
        .lines()
        .map(|line| line.split(' ').next().unwrap())
        .collect();
    assert_eq!(shown, ids, "each dead letter once, oldest first: {listed}");
    assert_eq!(replayed.unwrap(), "replayed 1\n");
    assert_eq!(purged.unwrap(), "purged 1\n", "the one not replayed");
    assert!(
        trim.as_ref()
            .is_err_and(|e| e.contains("trim is a command of Redis")),
        "{trim:?}"
    );
    assert_eq!(retired.unwrap(), "unsubscribed web\n");
    assert_eq!(redelivered_id, ids[0], "the replayed dead letter came back");
    assert_eq!(
        left.unwrap().len(),
        0,
        "nothing left after purge and unsubscribe"
    );
}
