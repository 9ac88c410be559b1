//! Archive servers as Redis ACL users made by `acl_setuser_lines`, on a
//! Redis this test starts: three archive servers (public lists only, one
//! private list, everything) and a list server, each created from the
//! generated lines. Each receives exactly its grant, byte-identical. Then
//! a raw redis-py client logged in as each archive server, after a granted
//! read, tries what its grant does not allow: Redis refuses each with
//! NOPERM and the victims' group state, records, dead letters and streams
//! are unchanged. Last, the documented residual of shared streams (Redis
//! ACLs never restrict consumer-group names) is measured: what a principal
//! reads and acks through another's group on a stream both are granted,
//! that other never receives.
//!
//! `ARCHIVER_ACL_SHARED_USER=1` gives every user the default user's
//! permissions (`~* &* +@all`) on top of its generated lines, to show the
//! test fails without the restriction.

mod forge;
mod support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use archiver_core::conformance::fixtures::{
    BOARD, PUBLIC_LISTS, event, list, member_joined, next_delivery, small_mail,
};
use archiver_core::conformance::interop::python_with;
use archiver_core::{
    BackendError, Connection, Deliveries, Envelope, EnvelopeId, Grant, ListChange, MailingList,
    Operator, Publisher, Replay, Selection, Subscriber, SubscriberName, Subscription,
};
use backend_redis::{RedisBackend, RedisConfig, acl_setuser_lines, list_server_acl_lines};
use futures::StreamExt;
use support::{RedisHarness, RedisServer};

const PUBLIC: &str = PUBLIC_LISTS[0];
const SECRET: &str = "secret.example.org";
const LIST_SERVER: &str = "list-server";

/// `PUBLIC` is public, `BOARD` and `SECRET` are private.
fn lists() -> [MailingList; 3] {
    [list(PUBLIC), list(BOARD), list(SECRET)]
}

/// The three archive servers: grant, and what each subscribes to (one
/// granted exact lists selects them by id).
fn archive_servers() -> Vec<(Grant, Selection)> {
    let grant = |json: &str| serde_json::from_str::<Grant>(json).unwrap();
    vec![
        (
            grant(
                r##"{"principal":"public-archive","subscribers":["public-archive"],"lists":["#"]}"##,
            ),
            Selection::all(),
        ),
        (
            grant(
                r#"{"principal":"board-archive","subscribers":["board-archive"],"lists":["board.example.org"],"private_lists":true}"#,
            ),
            Selection::all().list(BOARD.parse().unwrap()),
        ),
        (
            grant(
                r##"{"principal":"full-archive","subscribers":["full-archive"],"lists":["#"],"private_lists":true,"membership_events":true}"##,
            ),
            Selection::all(),
        ),
    ]
}

fn password(user: &str) -> String {
    format!("pw-{user}-not-a-secret")
}

/// Two mails, a list event and a membership event of each list.
fn envelopes() -> Vec<Envelope> {
    let mut all = Vec::new();
    for list in lists() {
        all.push(small_mail(&list, "acl.example.org"));
        all.push(small_mail(&list, "acl.example.org"));
        let created = ListChange::ListCreated {
            posting_address: None,
        };
        all.push(event(&list, created));
        all.push(member_joined(&list));
    }
    all
}

struct Deployment {
    server: RedisServer,
    harness: RedisHarness,
    admin: redis::aio::MultiplexedConnection,
}

impl Deployment {
    /// A Redis this test starts (no user but the default yet), a harness
    /// of a fresh prefix on it, and an admin connection.
    async fn start() -> Self {
        let server = RedisServer::start(false, &[]);
        let harness = RedisHarness::on(RedisConfig::new(server.url()));
        let admin = redis::Client::open(server.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        Self {
            server,
            harness,
            admin,
        }
    }

    /// The client configuration of a Redis user.
    fn config_as(&self, user: &str) -> RedisConfig {
        let mut config = self.harness.config.clone();
        config.url = format!(
            "redis://{user}:{}@127.0.0.1:{}",
            password(user),
            self.server.port
        );
        config
    }

    async fn connect_as(&self, user: &str) -> RedisBackend {
        RedisBackend::connect(self.config_as(user))
            .await
            .unwrap_or_else(|e| panic!("{user} connects: {e}"))
    }

    /// Runs generated `ACL SETUSER` lines as the admin, then sets the
    /// user's password.
    async fn create_user(&mut self, user: &str, lines: Vec<String>) {
        for line in lines {
            let args: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(args[..3], ["ACL", "SETUSER", user], "{line}");
            let _: () = redis::cmd("ACL")
                .arg(&args[1..])
                .query_async(&mut self.admin)
                .await
                .unwrap_or_else(|e| panic!("{line}: {e}"));
        }
        let mut grants = vec![format!(">{}", password(user))];
        if std::env::var_os("ARCHIVER_ACL_SHARED_USER").is_some() {
            grants.extend(["~*", "&*", "+@all"].map(String::from));
        }
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg(user)
            .arg(grants)
            .query_async(&mut self.admin)
            .await
            .unwrap();
    }

    fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.harness.config.prefix)
    }

    /// Every stream key of the deployment.
    async fn stream_keys(&mut self) -> Vec<String> {
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg(self.key("stream:*"))
            .query_async(&mut self.admin)
            .await
            .unwrap();
        keys.sort();
        keys
    }

    /// What an attack could change: every stream's length and groups
    /// (pending, last delivered, entries read), every subscriber's record,
    /// dead letters, replay stream and delayed retries.
    async fn snapshot(&mut self) -> BTreeMap<String, String> {
        let mut state = BTreeMap::new();
        for key in self.stream_keys().await {
            let length: usize = redis::cmd("XLEN")
                .arg(&key)
                .query_async(&mut self.admin)
                .await
                .unwrap();
            let groups: redis::Value = redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(&key)
                .query_async(&mut self.admin)
                .await
                .unwrap();
            state.insert(key, format!("{length} {groups:?}"));
        }
        for (grant, _) in archive_servers() {
            let name = grant.principal();
            let own: (Option<String>, usize, usize, usize) = redis::pipe()
                .cmd("GET")
                .arg(self.key(&format!("sub:{name}")))
                .cmd("XLEN")
                .arg(self.key(&format!("dead:{name}")))
                .cmd("XLEN")
                .arg(self.key(&format!("replay:{name}")))
                .cmd("ZCARD")
                .arg(self.key(&format!("delayed:{name}")))
                .query_async(&mut self.admin)
                .await
                .unwrap();
            state.insert(name.to_owned(), format!("{own:?}"));
        }
        state
    }

    /// The id of a stream's last entry.
    async fn last_id(&mut self, key: &str) -> String {
        let last: Vec<(String, redis::Value)> = redis::cmd("XREVRANGE")
            .arg(key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.admin)
            .await
            .unwrap();
        last[0].0.clone()
    }

    /// The names of the groups on a stream.
    async fn groups(&mut self, key: &str) -> Vec<String> {
        let groups: Vec<BTreeMap<String, redis::Value>> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(key)
            .query_async(&mut self.admin)
            .await
            .unwrap();
        groups
            .iter()
            .map(|g| redis::from_redis_value(g["name"].clone()).unwrap())
            .collect()
    }
}

/// Acks deliveries until `count` arrived; returns them.
async fn receive(deliveries: &mut Deliveries, count: usize) -> Vec<Envelope> {
    let mut received = Vec::new();
    while received.len() < count {
        let delivery = next_delivery(deliveries).await;
        received.push(delivery.envelope().clone());
        delivery.ack().await.unwrap();
    }
    received
}

/// Acks deliveries until every one of `markers` arrived; returns the ids.
async fn receive_until(deliveries: &mut Deliveries, markers: &[EnvelopeId]) -> Vec<EnvelopeId> {
    let mut received = Vec::new();
    while !markers.iter().all(|m| received.contains(m)) {
        let delivery = next_delivery(deliveries).await;
        received.push(delivery.envelope().id);
        delivery.ack().await.unwrap();
    }
    received
}

/// One attempt of the raw client, and the outcome the grant requires.
struct Attempt {
    user: String,
    what: &'static str,
    command: Vec<String>,
    expected: &'static str,
}

fn attempt(user: &str, what: &'static str, command: &[&str], expected: &'static str) -> Attempt {
    Attempt {
        user: user.to_owned(),
        what,
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        expected,
    }
}

/// Runs the attempts with redis-py; returns each outcome, in order.
fn raw_client(port: u16, attempts: &[Attempt]) -> Vec<String> {
    let input: Vec<serde_json::Value> = attempts
        .iter()
        .map(|a| {
            serde_json::json!({
                "user": a.user, "password": password(&a.user), "attempt": a.what, "command": a.command,
            })
        })
        .collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/acl.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    serde_json::to_writer(child.stdin.take().unwrap(), &input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "acl.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    results
        .iter()
        .map(|r| r["outcome"].as_str().unwrap().to_owned())
        .collect()
}

/// Prints the user × attempt × outcome table and checks every outcome.
fn check(attempts: &[Attempt], outcomes: &[String]) {
    println!("| user | attempt | outcome | required |\n|---|---|---|---|");
    for (a, outcome) in attempts.iter().zip(outcomes) {
        println!(
            "| {} | {} `{}` | {outcome} | {} |",
            a.user,
            a.what,
            a.command.join(" "),
            a.expected
        );
    }
    let wrong: Vec<String> = attempts
        .iter()
        .zip(outcomes)
        .filter(|(a, outcome)| a.expected != outcome.as_str())
        .map(|(a, outcome)| format!("{} {}: {outcome}, not {}", a.user, a.what, a.expected))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_servers_as_acl_users_get_exactly_their_grant() {
    if !python_with("redis") {
        return;
    }
    let mut deployment = Deployment::start().await;
    let prefix = deployment.harness.config.prefix.clone();
    // The users are made from the generated lines (the operator's tool,
    // `mq-archiver-admin acl-lines`, prints exactly these: its own tests
    // check it).
    let lines = list_server_acl_lines(&prefix, LIST_SERVER).unwrap();
    deployment.create_user(LIST_SERVER, lines).await;
    for (grant, _) in archive_servers() {
        let lines = acl_setuser_lines(&prefix, &grant).unwrap();
        deployment.create_user(grant.principal(), lines).await;
    }

    // Each archive server subscribes as its own user, then the list server
    // publishes every list's mail and events.
    let mut subscribers = Vec::new();
    for (grant, selection) in archive_servers() {
        let backend = deployment.connect_as(grant.principal()).await;
        let name = SubscriberName::new(grant.principal()).unwrap();
        let deliveries = backend
            .subscribe(&Subscription::new(name).select(selection.clone()))
            .await
            .unwrap();
        subscribers.push((grant, selection, backend, deliveries));
    }
    // public-archive also tails every list: it sees what it may read only.
    let mut tail = subscribers[0].2.tail(&Selection::all()).await.unwrap();
    let list_server = deployment.connect_as(LIST_SERVER).await;
    let published = envelopes();
    for envelope in &published {
        list_server.publish(envelope).await.unwrap();
    }
    for (grant, selection, _, deliveries) in &mut subscribers {
        let mut expected: Vec<Envelope> = published
            .iter()
            .filter(|e| grant.may_receive(e) && selection.matches(e))
            .cloned()
            .collect();
        let mut received = receive(deliveries, expected.len()).await;
        expected.sort_by_key(|e| e.id);
        received.sort_by_key(|e| e.id);
        assert!(!expected.is_empty());
        assert_eq!(
            received,
            expected,
            "{} receives its grant, byte-identical",
            grant.principal()
        );
    }
    let mut expected: Vec<EnvelopeId> = published
        .iter()
        .filter(|e| subscribers[0].0.may_receive(e))
        .map(|e| e.id)
        .collect();
    let mut tailed = Vec::new();
    while tailed.len() < expected.len() {
        let envelope = tokio::time::timeout(std::time::Duration::from_secs(10), tail.next())
            .await
            .expect("the tail shows the public mail")
            .expect("the tail goes on")
            .unwrap();
        tailed.push(envelope.id);
    }
    drop(tail);
    expected.sort();
    tailed.sort();
    assert_eq!(
        tailed, expected,
        "public-archive's tail shows its grant only"
    );
    // Nothing else: their groups are only on the streams they are granted.
    for key in deployment.stream_keys().await {
        let groups = deployment.groups(&key).await;
        for (grant, _, _, _) in &subscribers {
            let granted = (key.contains(":public:") || grant.allows_private_lists())
                && (!key.contains(":members:") || grant.allows_membership_events())
                && (grant.list_patterns().iter().any(|p| p.as_str() == "#")
                    || key.ends_with(&format!("{{{BOARD}}}")));
            let has = groups.iter().any(|g| g == grant.principal());
            assert!(
                !has || granted,
                "{} has a group on {key}",
                grant.principal()
            );
        }
    }

    // full-archive dead-letters one private mail; public-archive may not
    // list its dead letters: Forbidden, naming the key.
    let poison = small_mail(&lists()[2], "acl.example.org");
    list_server.publish(&poison).await.unwrap();
    let delivery = next_delivery(&mut subscribers[2].3).await;
    assert_eq!(delivery.envelope().id, poison.id);
    delivery.reject("poison, for the test").await.unwrap();
    let full = SubscriberName::new("full-archive").unwrap();
    assert_eq!(subscribers[2].2.dead_letters(&full).await.unwrap().len(), 1);
    // Its own dead letters it may replay (and it rejects the mail again).
    let replayed = subscribers[2]
        .2
        .replay_dead_letters(&full, Replay::All)
        .await
        .unwrap();
    assert_eq!(replayed, 1);
    let delivery = next_delivery(&mut subscribers[2].3).await;
    assert_eq!(delivery.envelope(), &poison);
    delivery.reject("poison again").await.unwrap();
    assert_eq!(subscribers[2].2.dead_letters(&full).await.unwrap().len(), 1);
    let refused = subscribers[0].2.dead_letters(&full).await.unwrap_err();
    assert!(
        matches!(&refused, BackendError::Forbidden(m) if m.contains(":dead:full-archive")),
        "{refused:?}"
    );

    // Trimming and unsubscribing are the list server's.
    for refused in [
        subscribers[0].2.trim().await.map(drop),
        subscribers[2].2.unsubscribe(&full).await,
    ] {
        assert!(
            matches!(refused, Err(BackendError::Forbidden(_))),
            "{refused:?}"
        );
    }
    assert_eq!(
        list_server.trim().await.unwrap(),
        0,
        "nothing is older than the minimum age yet"
    );

    // The archive servers stop: nothing of theirs moves but by an attack.
    for (_, _, backend, deliveries) in subscribers.drain(..) {
        drop(deliveries);
        backend.close().await.unwrap();
    }
    let stream =
        |class: &str, list: &str| deployment.key(&format!("stream:{class}:mail:{{{list}}}"));
    let (public_stream, board_stream, secret_stream) = (
        stream("public", PUBLIC),
        stream("private", BOARD),
        stream("private", SECRET),
    );
    let secret_id = deployment.last_id(&secret_stream).await;
    let public_id = deployment.last_id(&public_stream).await;
    let board_id = deployment.last_id(&board_stream).await;
    let consumer = deployment.harness.config.consumer_name.clone();
    // Per attacker: a victim, a stream it is not granted, one it shares.
    let plans = [
        (
            "public-archive",
            "full-archive",
            Some((&secret_stream, &secret_id)),
            (&public_stream, &public_id),
        ),
        (
            "board-archive",
            "full-archive",
            Some((&secret_stream, &secret_id)),
            (&board_stream, &board_id),
        ),
        (
            "full-archive",
            "public-archive",
            None,
            (&public_stream, &public_id),
        ),
    ];
    let mut attempts = Vec::new();
    for (user, victim, not_granted, (shared, shared_id)) in plans {
        let victims_dead = deployment.key(&format!("dead:{victim}"));
        attempts.push(attempt(
            user,
            "granted read",
            &["XREVRANGE", shared, "+", "-", "COUNT", "1"],
            "OK",
        ));
        if let Some((other, other_id)) = not_granted {
            attempts.push(attempt(
                user,
                "XREADGROUP on a stream not granted",
                &[
                    "XREADGROUP",
                    "GROUP",
                    user,
                    "raw",
                    "COUNT",
                    "1",
                    "STREAMS",
                    other,
                    "0",
                ],
                "NOPERM",
            ));
            attempts.push(attempt(
                user,
                "XRANGE on a stream not granted",
                &["XRANGE", other, "-", "+"],
                "NOPERM",
            ));
            attempts.push(attempt(
                user,
                "XREADGROUP with another's group on a stream not granted",
                &["XREADGROUP", "GROUP", victim, "raw", "STREAMS", other, ">"],
                "NOPERM",
            ));
            attempts.push(attempt(
                user,
                "XACK of another group's entry",
                &["XACK", other, victim, other_id],
                "NOPERM",
            ));
            attempts.push(attempt(
                user,
                "XCLAIM of another group's entry",
                &["XCLAIM", other, victim, "raw", "0", other_id],
                "NOPERM",
            ));
        }
        if user == "public-archive" {
            let private_set = deployment.key("lists:private:mail");
            attempts.push(attempt(
                user,
                "SMEMBERS of the private lists",
                &["SMEMBERS", &private_set],
                "NOPERM",
            ));
        }
        attempts.extend([
            attempt(
                user,
                "XAUTOCLAIM of another group's entries",
                &["XAUTOCLAIM", shared, victim, "raw", "0", "0"],
                "NOPERM",
            ),
            attempt(
                user,
                "XGROUP SETID of another's group",
                &["XGROUP", "SETID", shared, victim, "0"],
                "NOPERM",
            ),
            attempt(
                user,
                "XGROUP DESTROY of another's group",
                &["XGROUP", "DESTROY", shared, victim],
                "NOPERM",
            ),
            attempt(
                user,
                "XGROUP DELCONSUMER in another's group",
                &["XGROUP", "DELCONSUMER", shared, victim, &consumer],
                "NOPERM",
            ),
            attempt(
                user,
                "XADD to a list stream",
                &["XADD", shared, "*", "kind", "mail"],
                "NOPERM",
            ),
            attempt(
                user,
                "XTRIM of a list stream",
                &["XTRIM", shared, "MAXLEN", "0"],
                "NOPERM",
            ),
            attempt(
                user,
                "XDEL from a list stream",
                &["XDEL", shared, shared_id],
                "NOPERM",
            ),
            attempt(
                user,
                "HSET on the (old) registry",
                &["HSET", &deployment.key("subscribers"), victim, "{}"],
                "NOPERM",
            ),
            attempt(
                user,
                "SET of another's record",
                &["SET", &deployment.key(&format!("sub:{victim}")), "{}"],
                "NOPERM",
            ),
            attempt(
                user,
                "XRANGE of another's dead letters",
                &["XRANGE", &victims_dead, "-", "+"],
                "NOPERM",
            ),
            attempt(
                user,
                "DEL of another's dead letters",
                &["DEL", &victims_dead],
                "NOPERM",
            ),
            attempt(
                user,
                "a script trimming a list stream",
                &[
                    "EVAL",
                    "return redis.call('XTRIM', KEYS[1], 'MAXLEN', 0)",
                    "1",
                    shared,
                ],
                "NOPERM",
            ),
            attempt(user, "KEYS", &["KEYS", "*"], "NOPERM"),
            attempt(
                user,
                "CONFIG GET",
                &["CONFIG", "GET", "requirepass"],
                "NOPERM",
            ),
        ]);
    }
    let before = deployment.snapshot().await;
    let outcomes = raw_client(deployment.server.port, &attempts);
    let after = deployment.snapshot().await;
    check(&attempts, &outcomes);
    assert_eq!(after, before, "a refused attempt changed a victim's state");

    // The residual: on a stream two principals are granted, one reads
    // through the other's group and acks; the other never gets that entry.
    let probe_public = small_mail(&lists()[0], "acl.example.org");
    let probe_board = small_mail(&lists()[1], "acl.example.org");
    list_server.publish(&probe_public).await.unwrap();
    list_server.publish(&probe_board).await.unwrap();
    let probe_public_id = deployment.last_id(&public_stream).await;
    let probe_board_id = deployment.last_id(&board_stream).await;
    let residual = [
        (
            "full-archive",
            "public-archive",
            &public_stream,
            &probe_public_id,
        ),
        (
            "public-archive",
            "full-archive",
            &public_stream,
            &probe_public_id,
        ),
        (
            "board-archive",
            "full-archive",
            &board_stream,
            &probe_board_id,
        ),
    ];
    let mut attempts = Vec::new();
    for (user, victim, shared, id) in residual {
        attempts.push(attempt(
            user,
            "residual: XREADGROUP through another's group on a shared stream",
            &[
                "XREADGROUP",
                "GROUP",
                victim,
                "raw",
                "COUNT",
                "10",
                "STREAMS",
                shared,
                ">",
            ],
            "OK",
        ));
        attempts.push(attempt(
            user,
            "residual: XACK there of what it read",
            &["XACK", shared, victim, id],
            "OK",
        ));
    }
    let outcomes = raw_client(deployment.server.port, &attempts);
    check(&attempts, &outcomes);
    // Measured: the victims come back and receive the markers, not the
    // probes the attackers acked in their groups.
    let marker_public = small_mail(&lists()[0], "acl.example.org");
    let marker_board = small_mail(&lists()[1], "acl.example.org");
    for (victim, markers, probes) in [
        (
            "public-archive",
            vec![marker_public.id],
            vec![("public probe", probe_public.id)],
        ),
        (
            "full-archive",
            vec![marker_public.id, marker_board.id],
            vec![
                ("public probe", probe_public.id),
                ("board probe", probe_board.id),
            ],
        ),
    ] {
        let backend = deployment.connect_as(victim).await;
        let mut deliveries = backend
            .subscribe(&Subscription::new(SubscriberName::new(victim).unwrap()))
            .await
            .unwrap();
        if victim == "public-archive" {
            list_server.publish(&marker_public).await.unwrap();
            list_server.publish(&marker_board).await.unwrap();
        }
        let mut received = receive_until(&mut deliveries, &markers).await;
        let lost: Vec<&str> = probes
            .iter()
            .filter(|(_, id)| !received.contains(id))
            .map(|(what, _)| *what)
            .collect();
        println!("residual: {victim} received {received:?} after the attacks; never got {lost:?}");
        received.sort();
        let mut markers = markers;
        markers.sort();
        assert_eq!(
            received, markers,
            "{victim} lost the probes acked in its group"
        );
        drop(deliveries);
        backend.close().await.unwrap();
    }
    // Two more residuals of shared streams: XCLAIM's LASTID moves another
    // group's position ahead (it then skips every entry up to there), and
    // a group made under another's name at `$` on a stream that other has
    // not found yet makes it start there.
    let future = "9999999999999-0";
    let new_stream = deployment.key("stream:public:mail:{new.example.org}");
    let attempts = [
        attempt(
            "public-archive",
            "residual: XCLAIM LASTID moving another's group ahead",
            &[
                "XCLAIM",
                &public_stream,
                "full-archive",
                "raw",
                "0",
                &probe_public_id,
                "LASTID",
                future,
            ],
            "OK",
        ),
        attempt(
            "public-archive",
            "residual: XGROUP CREATE of another's group at $ on a new stream",
            &[
                "XGROUP",
                "CREATE",
                &new_stream,
                "full-archive",
                "$",
                "MKSTREAM",
            ],
            "OK",
        ),
    ];
    let outcomes = raw_client(deployment.server.port, &attempts);
    check(&attempts, &outcomes);
    let groups: Vec<BTreeMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(&public_stream)
        .query_async(&mut deployment.admin)
        .await
        .unwrap();
    let moved: String = groups
        .iter()
        .find(|g| redis::from_redis_value::<String>(g["name"].clone()).unwrap() == "full-archive")
        .map(|g| redis::from_redis_value(g["last-delivered-id"].clone()).unwrap())
        .unwrap();
    println!(
        "residual: full-archive's group on {public_stream} now at {moved}: it skips every entry before"
    );
    assert_eq!(moved, future);
    assert!(
        deployment
            .groups(&new_stream)
            .await
            .contains(&"full-archive".to_owned())
    );
    list_server.close().await.unwrap();

    // Retention waits for no subscriber Redis refuses a stream:
    // public-archive selects every list, but only full-archive may read
    // the secret list and the membership streams, and it acked them all.
    let trimmer = RedisBackend::connect(
        deployment
            .config_as(LIST_SERVER)
            .retention_min_age(std::time::Duration::ZERO),
    )
    .await
    .unwrap();
    assert!(trimmer.trim().await.unwrap() > 0);
    for key in deployment.stream_keys().await {
        if key.contains(":private:") && key.contains(SECRET) || key.contains(":members:") {
            let length: u64 = redis::cmd("XLEN")
                .arg(&key)
                .query_async(&mut deployment.admin)
                .await
                .unwrap();
            assert_eq!(length, 0, "{key} is trimmed once its readers acked");
        }
    }
    trimmer.close().await.unwrap();

    // A subscription whose every selected stream Redis refuses is
    // Forbidden at subscribe, naming the list, not silently empty.
    let board = deployment.connect_as("board-archive").await;
    let refused = board
        .subscribe(
            &Subscription::new(SubscriberName::new("board-archive").unwrap())
                .select(Selection::all().list(SECRET.parse().unwrap())),
        )
        .await
        .map(drop)
        .unwrap_err();
    assert!(
        matches!(&refused, BackendError::Forbidden(m) if m.contains(SECRET)),
        "{refused:?}"
    );
    board.close().await.unwrap();
}

/// A Redis user whose grant is widened while its archive server runs
/// reads the newly granted streams within a retention interval: a refusal
/// is tried again, not kept for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_widened_grant_is_read_without_a_restart() {
    let mut deployment = Deployment::start().await;
    let prefix = deployment.harness.config.prefix.clone();
    let grant = |private: bool| {
        serde_json::from_str::<Grant>(&format!(
            r##"{{"principal":"widened","subscribers":["widened"],"lists":["#"],"private_lists":{private}}}"##
        ))
        .unwrap()
    };
    deployment
        .create_user(
            LIST_SERVER,
            list_server_acl_lines(&prefix, LIST_SERVER).unwrap(),
        )
        .await;
    deployment
        .create_user(
            "widened",
            acl_setuser_lines(&prefix, &grant(false)).unwrap(),
        )
        .await;
    let list_server = deployment.connect_as(LIST_SERVER).await;
    let backend = deployment.connect_as("widened").await;
    let mut deliveries = backend
        .subscribe(&Subscription::new(SubscriberName::new("widened").unwrap()))
        .await
        .unwrap();
    let public = small_mail(&lists()[0], "widened.example.org");
    list_server.publish(&public).await.unwrap();
    assert_eq!(receive(&mut deliveries, 1).await, [public]);
    deployment
        .create_user("widened", acl_setuser_lines(&prefix, &grant(true)).unwrap())
        .await;
    let secret = small_mail(&lists()[2], "widened.example.org");
    list_server.publish(&secret).await.unwrap();
    assert_eq!(
        receive(&mut deliveries, 1).await,
        [secret],
        "the private list granted later is read"
    );
    drop(deliveries);
    backend.close().await.unwrap();
    list_server.close().await.unwrap();
}
