//! `mq-archiver-admin` on a Redis URL, against the Redis of
//! `ARCHIVER_REDIS_URL` (default 127.0.0.1:6379) under a unique key prefix:
//! the shared commands (dead letters, purge, unsubscribe, consume) and
//! Redis's own (`trim`, `acl-lines`).

#[path = "../../backend-redis/tests/forge/mod.rs"]
mod forge;
#[path = "../../backend-redis/tests/support/mod.rs"]
mod support;

use std::process::Command;

use archiver_core::conformance::Harness;
use archiver_core::conformance::faults::killed_child_consumer;
use archiver_core::conformance::fixtures::small_mail;
use archiver_core::{
    Envelope, Grant, ListId, MailingList, Operator, Prefix, Subscriber, SubscriberName,
    Subscription,
};
use backend_redis::{acl_setuser_lines, list_server_acl_lines};
use support::RedisHarness;

const TOOL: &str = env!("CARGO_BIN_EXE_mq-archiver-admin");

fn mail(list: &ListId) -> Envelope {
    small_mail(&MailingList::public(list.clone()), "dead.example.org")
}

/// Runs the tool with these arguments, no URL in its environment: its
/// stdout, or its stderr as the error when it fails.
fn run(args: &[&str]) -> Result<String, String> {
    let output = Command::new(TOOL)
        .env_remove("ARCHIVER_URL")
        .env_remove("ARCHIVER_REDIS_URL")
        .env_remove("ARCHIVER_AMQP_URL")
        .args(args)
        .output()
        .unwrap();
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    if output.status.success() {
        Ok(text(output.stdout))
    } else {
        Err(text(output.stderr))
    }
}

/// Runs the tool on the harness's deployment.
async fn operator_tool(harness: &RedisHarness, args: &[&str]) -> Result<String, String> {
    let mut all: Vec<String> = vec![
        "--url".into(),
        harness.config.url.clone(),
        "--prefix".into(),
        harness.config.prefix.to_string(),
    ];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    tokio::task::spawn_blocking(move || run(&all.iter().map(String::as_str).collect::<Vec<_>>()))
        .await
        .unwrap()
}

/// The operator's tool lists a subscriber's dead letters, purges them only
/// when told `--yes`, and retires the subscriber.
#[tokio::test]
async fn the_operator_tool_lists_purges_and_unsubscribes() {
    let harness = RedisHarness::new();
    let backend = harness.connect().await;
    let name = SubscriberName::new("operated").unwrap();
    let list = ListId::new("operated.example.org").unwrap();
    drop(
        backend
            .subscribe(&Subscription::new(name.clone()))
            .await
            .unwrap(),
    );
    let dead = format!("{}:dead:operated", harness.config.prefix);
    let mut conn = forge::connection(&harness).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let envelope = mail(&list);
        let _: String = forge::xadd_envelope(&dead, &envelope)
            .query_async(&mut conn)
            .await
            .unwrap();
        ids.push(envelope.id.to_string());
    }
    let listed = operator_tool(&harness, &["dead-letters", "--name", "operated"]).await;
    let unconfirmed = operator_tool(&harness, &["purge-dead-letters", "--name", "operated"]).await;
    let kept = backend.dead_letters(&name).await.unwrap().len();
    let purged = operator_tool(
        &harness,
        &["purge-dead-letters", "--name", "operated", "--yes"],
    )
    .await;
    let left = backend.dead_letters(&name).await.unwrap().len();
    let trimmed = operator_tool(&harness, &["trim"]).await;
    let retired = operator_tool(&harness, &["unsubscribe", "--name", "operated", "--yes"]).await;
    let registered_after: bool = redis::cmd("EXISTS")
        .arg(format!("{}:sub:operated", harness.config.prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    harness.cleanup().await;

    let listed = listed.unwrap();
    let shown: Vec<&str> = listed
        .lines()
        .map(|line| line.split(' ').next().unwrap())
        .collect();
    assert_eq!(shown, ids, "each dead letter once, oldest first: {listed}");
    assert!(
        unconfirmed.as_ref().is_err_and(|e| e.contains("--yes")),
        "{unconfirmed:?}"
    );
    assert_eq!(kept, 2, "nothing deleted without --yes");
    assert_eq!(purged.unwrap(), "purged 2\n");
    assert_eq!(left, 0);
    assert_eq!(trimmed.unwrap(), "trimmed 0\n", "nothing was published");
    assert_eq!(retired.unwrap(), "unsubscribed operated\n");
    assert!(!registered_after, "the subscriber's registration is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_held_by_a_killed_consumer_process_go_to_another_instance() {
    let harness = RedisHarness::new();
    let name = "child-consumer";
    let mut child = Command::new(TOOL);
    child
        .args([
            "--url",
            &harness.config.url,
            "--prefix",
            &harness.config.prefix,
            "-o",
            "claim-idle=2s",
        ])
        .args(["consume", "--name", name, "--prefetch", "5", "--no-ack"]);
    let report = killed_child_consumer(&harness, child, name).await;
    println!("redis consumer kill -9 | {report}");
    harness.cleanup().await;
}

/// `acl-lines` prints exactly what `acl_setuser_lines` and
/// `list_server_acl_lines` give (the Redis ACL test makes its users from
/// those), connecting to nothing.
#[test]
fn acl_lines_are_the_functions_lines() {
    let prefix = Prefix::new("deploy-7").unwrap();
    let printed = run(&[
        "--prefix",
        "deploy-7",
        "acl-lines",
        "--list-server",
        "lists",
    ])
    .unwrap();
    let expected = list_server_acl_lines(&prefix, "lists").unwrap();
    assert_eq!(printed.lines().collect::<Vec<_>>(), expected);

    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("web.json");
    let json = r#"{"principal":"web","subscribers":["web"],"lists":["announce.example.org"]}"#;
    std::fs::write(&file, json).unwrap();
    let grant: Grant = serde_json::from_str(json).unwrap();
    let printed = run(&[
        "--prefix",
        "deploy-7",
        "acl-lines",
        "--grant",
        file.to_str().unwrap(),
    ])
    .unwrap();
    let expected = acl_setuser_lines(&prefix, &grant).unwrap();
    assert!(!expected.is_empty());
    assert_eq!(printed.lines().collect::<Vec<_>>(), expected);
}

/// A grant whose list pattern has a wildcard inside a label has no ACL:
/// the tool says so and prints nothing.
#[test]
fn the_tool_refuses_a_pattern_with_a_wildcard_inside() {
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("grant.json");
    std::fs::write(
        &file,
        r#"{"principal":"web","subscribers":["web"],"lists":["*.lists.example.org"]}"#,
    )
    .unwrap();
    let refused = run(&["acl-lines", "--grant", file.to_str().unwrap()]).unwrap_err();
    assert!(
        refused.contains("list pattern \"*.lists.example.org\" has no Redis ACL key pattern"),
        "{refused}"
    );
}

/// Redis's own commands are refused for another backend's URL, before
/// anything is contacted.
#[test]
fn redis_commands_are_refused_for_another_backend() {
    let trim = run(&["--url", "amqp://127.0.0.1:1/%2f", "trim"]).unwrap_err();
    assert!(trim.contains("trim is a command of Redis"), "{trim}");
    let acl = run(&[
        "--url",
        "tcp://127.0.0.1:1",
        "acl-lines",
        "--list-server",
        "lists",
    ])
    .unwrap_err();
    assert!(acl.contains("acl-lines is a command of Redis"), "{acl}");
    let no_url = run(&["dead-letters", "--name", "x"]).unwrap_err();
    assert!(
        no_url.contains("give --url or set ARCHIVER_URL"),
        "{no_url}"
    );
}
