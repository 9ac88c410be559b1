//! Grants on a real hub: three principals (public lists only, one private
//! list, everything) each receive exactly what their grant allows, byte
//! for byte, and nothing else, on their queues and on the live tail; asking
//! for more is `Forbidden`. Then a raw pyzmq peer (`tests/grants.py`)
//! logged in as each restricted principal reads its own list (and nothing
//! before it that it may not read), gets the specific refusal for every
//! attempt beyond its grant while the other's queues stay as they were,
//! and tails only public lists or not at all. The first test runs over
//! ZAP PLAIN and over CURVE.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use archiver_core::conformance::fixtures::{
    BOARD, PUBLIC_LISTS, TEAM, event, list, member_joined, name, next_delivery, small_mail,
};
use archiver_core::conformance::interop::python_with;
use archiver_core::{
    BackendError, Connection, Deliveries, Envelope, EnvelopeId, Grant, Kind, ListChange,
    MailingList, MemberRole, Operator, Publisher, Replay, Selection, Subscriber, Subscription,
};
use backend_zeromq::{
    ClientConfig, Credentials, CurveKeyPair, QueueStatus, ZmqClient, ZmqHub, full_access,
};
use futures::StreamExt;

/// How long a test waits for each envelope.
const WAIT: Duration = Duration::from_secs(20);

/// The three principals: `public-archive` (every public list),
/// `team-archive` (the private list `team` only), `ops` (everything,
/// operator); the first two may also use the shared name `mirror`.
fn principals() -> Vec<(Credentials, Grant)> {
    vec![
        (
            Credentials::new("public-archive", "pw-public"),
            Grant::new("public-archive")
                .subscriber(name("public-archive"))
                .subscriber(name("mirror"))
                .lists("#".parse().unwrap()),
        ),
        (
            Credentials::new("team-archive", "pw-team"),
            Grant::new("team-archive")
                .subscriber(name("team-archive"))
                .subscriber(name("mirror"))
                .lists(TEAM.parse().unwrap())
                .private_lists(true),
        ),
        (Credentials::new("ops", "pw-ops"), full_access("ops")),
    ]
}

/// How the principals log in: the grant checks are the same over both.
#[derive(Clone, Copy)]
enum Mechanism {
    /// ZAP PLAIN, each principal's user and password.
    Plain,
    /// CURVE: a key pair for the hub, one per principal.
    Curve,
}

/// The CURVE key pairs: the hub's, then each principal's by user name.
fn curve_keys() -> &'static (CurveKeyPair, Vec<(String, CurveKeyPair)>) {
    static KEYS: std::sync::OnceLock<(CurveKeyPair, Vec<(String, CurveKeyPair)>)> =
        std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let pairs = principals()
            .into_iter()
            .map(|(c, _)| (c.user, CurveKeyPair::generate().unwrap()))
            .collect();
        (CurveKeyPair::generate().unwrap(), pairs)
    })
}

fn key_of(user: &str) -> &'static CurveKeyPair {
    &curve_keys().1.iter().find(|(u, _)| u == user).unwrap().1
}

fn hub(dir: &std::path::Path, mechanism: Mechanism) -> ZmqHub {
    let mut config = support::hub_config(dir);
    if let Mechanism::Curve = mechanism {
        config = config.curve(curve_keys().0.clone());
    }
    for (credentials, grant) in principals() {
        config = match mechanism {
            Mechanism::Plain => config.allow(credentials, grant),
            Mechanism::Curve => config.allow_key(key_of(&credentials.user).public, grant),
        };
    }
    ZmqHub::bind(config).unwrap()
}

fn client(hub: &ZmqHub, user: &str, mechanism: Mechanism) -> ZmqClient {
    let (credentials, _) = principals()
        .into_iter()
        .find(|(c, _)| c.user == user)
        .unwrap();
    let config = ClientConfig::new(hub.endpoint())
        .tail(hub.tail_endpoint().unwrap())
        .connect_timeout(Duration::from_secs(10));
    ZmqClient::connect(match mechanism {
        Mechanism::Plain => config.credentials(credentials),
        Mechanism::Curve => config.curve(curve_keys().0.public, key_of(user).clone()),
    })
    .unwrap()
}

/// Publishes two mails, a roster-free event and a membership event (a
/// member's address) of each list, interleaved, and returns them in
/// publish order.
async fn publish_all(hub: &ZmqHub) -> Vec<Envelope> {
    let lists: Vec<MailingList> = PUBLIC_LISTS
        .iter()
        .chain(&[TEAM, BOARD])
        .map(|id| list(id))
        .collect();
    let mut published = Vec::new();
    for round in 0..4 {
        for list in &lists {
            let envelope = match round {
                1 => event(list, ListChange::ListDeleted),
                2 => event(
                    list,
                    ListChange::MembershipAdded {
                        address: "ann@example.org".into(),
                        role: MemberRole::Member,
                        display_name: Some("Ann Example".into()),
                    },
                ),
                _ => small_mail(list, "grants.example.org"),
            };
            hub.publish(&envelope).await.unwrap();
            published.push(envelope);
        }
    }
    published
}

fn is_public(envelope: &Envelope) -> bool {
    PUBLIC_LISTS.contains(&envelope.list_id.as_str())
}

/// Whether it is one of the membership events [`publish_all`] sends.
fn is_roster(envelope: &Envelope) -> bool {
    envelope.kind == Kind::Event && envelope.body.windows(15).any(|w| w == b"ann@example.org")
}

/// What public-archive and the tail may see: public lists, no rosters.
fn for_public(envelope: &Envelope) -> bool {
    is_public(envelope) && !is_roster(envelope)
}

/// Acks deliveries until `expected.len()` have come, and returns them in
/// order; the journal is delivered in order, so anything else selected
/// would come before the last one expected.
async fn receive(deliveries: &mut Deliveries, expected: &[Envelope]) -> Vec<Envelope> {
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let delivery = next_delivery(deliveries).await;
        got.push(delivery.envelope().clone());
        delivery.ack().await.unwrap();
    }
    got
}

/// Checks that `who` got exactly `expected`, naming first anything it got
/// that it should not have.
fn assert_exactly(who: &str, got: &[Envelope], expected: &[Envelope]) {
    if let Some(extra) = got.iter().find(|e| !expected.contains(e)) {
        panic!(
            "{who} received a {} of {} ({:?}, {:?}) it is not granted",
            extra.kind.as_str(),
            extra.list_id,
            extra.archive_policy,
            extra.event_type
        );
    }
    assert_eq!(got, expected, "{who}: byte for byte, in order");
}

fn forbidden<T>(result: Result<T, BackendError>, naming: &str) {
    match result {
        Err(BackendError::Forbidden(why)) => {
            assert!(why.contains(naming), "{why:?} should name {naming:?}")
        }
        Err(other) => panic!("expected Forbidden naming {naming:?}, got {other:?}"),
        Ok(_) => panic!("expected Forbidden naming {naming:?}, got Ok"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_principal_receives_exactly_what_its_grant_allows() {
    each_principal_receives_exactly_what_its_grant_allows_over(Mechanism::Plain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_principal_receives_exactly_what_its_grant_allows_over_curve() {
    each_principal_receives_exactly_what_its_grant_allows_over(Mechanism::Curve).await;
}

async fn each_principal_receives_exactly_what_its_grant_allows_over(mechanism: Mechanism) {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path(), mechanism);
    let (public, team, ops) = (
        client(&hub, "public-archive", mechanism),
        client(&hub, "team-archive", mechanism),
        client(&hub, "ops", mechanism),
    );
    let mut public_queue = public
        .subscribe(&Subscription::new(name("public-archive")))
        .await
        .unwrap();
    let mut team_queue = team
        .subscribe(
            &Subscription::new(name("team-archive"))
                .select(Selection::all().list(TEAM.parse().unwrap())),
        )
        .await
        .unwrap();
    let mut ops_queue = ops
        .subscribe(&Subscription::new(name("ops")))
        .await
        .unwrap();
    // One subscriber name, two principals: each envelope goes only to a
    // connection whose principal may receive it.
    let mut mirror_public = public
        .subscribe(&Subscription::new(name("mirror")))
        .await
        .unwrap();
    let mut mirror_ops = ops
        .subscribe(&Subscription::new(name("mirror")))
        .await
        .unwrap();
    let mut public_tail = public.tail(&Selection::all()).await.unwrap();

    let published = publish_all(&hub).await;
    let publics: Vec<Envelope> = published
        .iter()
        .filter(|e| for_public(e))
        .cloned()
        .collect();
    let teams: Vec<Envelope> = published
        .iter()
        .filter(|e| e.list_id.as_str() == TEAM && !is_roster(e))
        .cloned()
        .collect();

    let got = receive(&mut public_queue, &publics).await;
    assert_exactly("public-archive", &got, &publics);
    let got = receive(&mut team_queue, &teams).await;
    assert_exactly("team-archive", &got, &teams);
    let got = receive(&mut ops_queue, &published).await;
    assert_exactly("ops", &got, &published);
    let mut tailed = Vec::new();
    while tailed.len() < publics.len() {
        let envelope = tokio::time::timeout(WAIT, public_tail.next())
            .await
            .expect("the tail carries every public envelope")
            .unwrap()
            .unwrap();
        tailed.push(envelope);
    }
    assert_exactly("public-archive's tail", &tailed, &publics);

    let mut mirrored: Vec<EnvelopeId> = Vec::new();
    while mirrored.len() < published.len() {
        let (delivery, to_public) = tokio::time::timeout(WAIT, async {
            tokio::select! {
                Some(Ok(d)) = mirror_public.next() => (d, true),
                Some(Ok(d)) = mirror_ops.next() => (d, false),
            }
        })
        .await
        .expect("every envelope reaches one of the mirror's connections");
        assert!(
            !to_public || for_public(delivery.envelope()),
            "a {} of {} ({:?}) reached public-archive's mirror connection",
            delivery.envelope().kind.as_str(),
            delivery.envelope().list_id,
            delivery.envelope().event_type
        );
        mirrored.push(delivery.envelope().id);
        if for_public(delivery.envelope()) {
            delivery.ack().await.unwrap();
        } else {
            delivery.reject("kept as a dead letter").await.unwrap();
        }
    }
    let unique: BTreeSet<_> = mirrored.iter().collect();
    let all: BTreeSet<_> = published.iter().map(|e| &e.id).collect();
    assert_eq!(unique, all, "the mirror gets each envelope once");
    assert_eq!(mirrored.len(), published.len());
    // The mirror's dead letters are what public-archive may not read:
    // listed to ops, not to public-archive, though the name is its own too.
    let privates = published.iter().filter(|e| !for_public(e)).count();
    // The rejects travel on the mirror's connection and the listing on
    // ops's, in no set order: wait until the hub has applied them all.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = ops.dead_letters(&name("mirror")).await.unwrap().len();
        if listed == privates {
            break;
        }
        assert!(
            listed < privates && Instant::now() < deadline,
            "ops lists {listed} of the mirror's {privates} dead letters"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let shown = public.dead_letters(&name("mirror")).await.unwrap();
    assert!(
        shown.is_empty(),
        "public-archive was shown {} dead letters it may not read",
        shown.len()
    );

    // Nothing else is waiting for the restricted principals: a last
    // envelope each may receive comes next.
    let last_public = small_mail(&list(PUBLIC_LISTS[0]), "grants.example.org");
    let last_team = small_mail(&list(TEAM), "grants.example.org");
    hub.publish(&last_public).await.unwrap();
    hub.publish(&last_team).await.unwrap();
    let last_public = [last_public];
    let got = receive(&mut public_queue, &last_public).await;
    assert_exactly("public-archive", &got, &last_public);
    let last_team = [last_team];
    let got = receive(&mut team_queue, &last_team).await;
    assert_exactly("team-archive", &got, &last_team);

    // Asking for more.
    forbidden(
        public.subscribe(&Subscription::new(name("ops"))).await,
        "subscriber name \"ops\"",
    );
    forbidden(
        team.subscribe(&Subscription::new(name("team-archive")))
            .await,
        "list pattern \"#\"",
    );
    forbidden(
        team.subscribe(
            &Subscription::new(name("team-archive"))
                .select(Selection::all().list(BOARD.parse().unwrap())),
        )
        .await,
        "list pattern \"board.example.org\"",
    );
    let victim = name("team-archive");
    forbidden(
        public.dead_letters(&victim).await,
        "dead letters of subscriber \"team-archive\"",
    );
    forbidden(
        public.replay_dead_letters(&victim, Replay::All).await,
        "replay of subscriber \"team-archive\"",
    );
    forbidden(
        public.purge_dead_letters(&victim).await,
        "purge of subscriber \"team-archive\"",
    );
    forbidden(
        public.unsubscribe(&victim).await,
        "unsubscribe of subscriber \"team-archive\"",
    );
    match team.tail(&Selection::all()).await {
        Err(BackendError::Auth(why)) => assert!(why.contains("live tail"), "{why}"),
        other => panic!("team-archive may not tail: {:?}", other.err()),
    }
    assert!(ops.dead_letters(&victim).await.unwrap().is_empty());
    assert!(
        status(&hub, "team-archive").await.is_some(),
        "the refused unsubscribe left the queue"
    );

    for client in [public, team, ops] {
        client.close().await.unwrap();
    }
    hub.close().await.unwrap();
}

async fn status(hub: &ZmqHub, name: &str) -> Option<QueueStatus> {
    hub.status()
        .await
        .unwrap()
        .into_iter()
        .find(|q| q.name.as_str() == name)
}

/// What a raw peer's attempts must leave unchanged of the victim's queue.
fn victim_view(status: &QueueStatus) -> (usize, usize, usize, u64) {
    (
        status.unsettled,
        status.held,
        status.dead_letters,
        status.pinned_from,
    )
}

/// A restricted principal a raw peer logs in as, and the other restricted
/// principal, whose queues it attacks.
struct Attack {
    user: &'static str,
    password: &'static str,
    /// Its own selection, read from the beginning of the journal.
    lists: &'static [&'static str],
    /// A list of its own selection: its first delivery is a mail of it,
    /// though the journal holds mails it may not read before that one.
    own_list: &'static str,
    /// Selections beyond its grant: (the step, the pattern refused).
    refused_selections: &'static [(&'static str, &'static str)],
    /// The victim, whose subscriber name is its principal's.
    victim: &'static str,
    /// A list the victim selects and the attacker may not read.
    victim_list: &'static str,
    /// Whether its grant covers the live tail (every list, so it gets the
    /// public ones) or the tail refuses it.
    may_tail: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_peer_as_public_archive_gets_the_specific_refusal_for_each_attempt() {
    raw_peer(Attack {
        user: "public-archive",
        password: "pw-public",
        lists: &["#"],
        own_list: PUBLIC_LISTS[0],
        refused_selections: &[],
        victim: "team-archive",
        victim_list: TEAM,
        may_tail: true,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_peer_as_team_archive_gets_the_specific_refusal_for_each_attempt() {
    raw_peer(Attack {
        user: "team-archive",
        password: "pw-team",
        lists: &[TEAM],
        own_list: TEAM,
        refused_selections: &[
            ("hello selecting every list", "#"),
            ("hello selecting a private list not granted", BOARD),
        ],
        victim: "public-archive",
        victim_list: PUBLIC_LISTS[0],
        may_tail: false,
    })
    .await;
}

/// Runs `tests/grants.py` as the attacker against a hub where the victim
/// has a dead letter and a delivery held on its own queue and a delivery
/// held on the name both share, then checks each answer, the victim's
/// queues, and what the tail carried.
async fn raw_peer(attack: Attack) {
    if !python_with("zmq") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path(), Mechanism::Plain);
    let victim = client(&hub, attack.victim, Mechanism::Plain);
    let victim_list = list(attack.victim_list);
    let victim_selection = Selection::all().list(attack.victim_list.parse().unwrap());
    let mut queue = victim
        .subscribe(
            &Subscription::new(name(attack.victim))
                .select(victim_selection.clone())
                .prefetch(1),
        )
        .await
        .unwrap();
    hub.publish(&small_mail(&victim_list, "grants.example.org"))
        .await
        .unwrap();
    next_delivery(&mut queue)
        .await
        .reject("kept as a dead letter")
        .await
        .unwrap();
    let held_mail = small_mail(&victim_list, "grants.example.org");
    hub.publish(&held_mail).await.unwrap();
    let held = next_delivery(&mut queue).await;
    assert_eq!(held.envelope(), &held_mail);
    // The attacker's own list: a membership event it is not granted, then
    // its own mail.
    let own_list = list(attack.own_list);
    hub.publish(&member_joined(&own_list)).await.unwrap();
    let own = small_mail(&own_list, "grants.example.org");
    hub.publish(&own).await.unwrap();
    let mut mirror = victim
        .subscribe(
            &Subscription::new(name("mirror"))
                .select(victim_selection)
                .prefetch(1),
        )
        .await
        .unwrap();
    let shared_mail = small_mail(&victim_list, "grants.example.org");
    hub.publish(&shared_mail).await.unwrap();
    let shared_held = next_delivery(&mut mirror).await;
    assert_eq!(shared_held.envelope(), &shared_mail);

    let before = status(&hub, attack.victim).await.unwrap();
    assert_eq!(
        (before.unsettled, before.held, before.dead_letters),
        (1, 1, 1)
    );
    let shared_before = status(&hub, "mirror").await.unwrap();
    assert_eq!((shared_before.unsettled, shared_before.held), (1, 1));
    // The one unsettled envelope of each is its floor: its tag.
    let (foreign_tag, shared_tag) = (before.pinned_from, shared_before.pinned_from);

    let config = serde_json::json!({
        "endpoint": hub.endpoint(),
        "tail": hub.tail_endpoint().unwrap(),
        "user": attack.user,
        "password": attack.password,
        "name": attack.user,
        "lists": attack.lists,
        "refused_selections": attack
            .refused_selections
            .iter()
            .map(|(step, pattern)| serde_json::json!([step, [pattern]]))
            .collect::<Vec<_>>(),
        "other": attack.victim,
        "foreign_tag": foreign_tag,
        "shared": "mirror",
        "shared_tag": shared_tag,
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grants.py");
    let mut child = Command::new("python3")
        .args([script, &config.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 starts");
    let (line_sender, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let step: serde_json::Value = serde_json::from_str(&line).unwrap();
            if line_sender.send(step).is_err() {
                break;
            }
        }
    });

    // Once the attempts are over (the first tail step), the queues are
    // read; while the tail is open, mails of a private list and public
    // markers are published in turns until the script has what it needs.
    let mut steps = Vec::new();
    let mut after = None;
    let (mut markers, mut privates) = (Vec::new(), Vec::new());
    let mut turns = tokio::time::interval(Duration::from_millis(100));
    let mut tailing = false;
    loop {
        tokio::select! {
            step = lines.recv() => {
                let Some(step) = step else { break };
                let step_name = step["step"].as_str().unwrap_or_default().to_owned();
                if step_name.starts_with("tail") && after.is_none() {
                    after = Some((
                        status(&hub, attack.victim).await,
                        status(&hub, "mirror").await,
                        status(&hub, attack.user).await,
                    ));
                }
                tailing |= step_name == "tail ready";
                steps.push(step);
            }
            _ = turns.tick(), if tailing => {
                let private = small_mail(&list(BOARD), "grants.example.org");
                let marker = small_mail(&list(PUBLIC_LISTS[1]), "grants.example.org");
                hub.publish(&private).await.unwrap();
                hub.publish(&marker).await.unwrap();
                privates.push(private.id.to_string());
                markers.push(marker.id.to_string());
            }
        }
    }
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "grants.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let step = |what: &str| {
        steps
            .iter()
            .find(|s| s["step"] == what)
            .unwrap_or_else(|| panic!("no step {what:?} in {steps:?}"))
            .clone()
    };
    // What the attempts did to the victim, before what they were told.
    let (after, shared_after, attacker) = after.expect("grants.py reached the tail");
    let after = after.expect("the victim's queue is still there");
    assert_eq!(
        victim_view(&after),
        victim_view(&before),
        "the victim's queue (unsettled, held, dead letters, floor) is as it was"
    );
    assert_eq!(
        victim_view(&shared_after.unwrap()),
        victim_view(&shared_before),
        "the victim's delivery on the shared name is still its own"
    );
    let own_read = step("read its own list");
    assert_eq!(own_read["verb"], "DELIVER");
    assert_eq!(
        own_read["envelope-id"],
        own.id.to_string(),
        "its first delivery is its own mail, not one of those before it it may not read"
    );
    assert_eq!(own_read["body_hex"], hex(&own.body));
    let attacker = attacker.unwrap();
    assert_eq!(
        attacker.unsettled, 0,
        "its own ACK settled its own mail, and nothing else was left for it"
    );

    let (user, other) = (attack.user, attack.victim);
    let not_granted = |what: String| format!("{what} is not granted to \"{user}\"");
    let mut refusals = vec![(
        "hello as another name".to_owned(),
        not_granted(format!("subscriber name \"{other}\"")),
    )];
    for (what, pattern) in attack.refused_selections {
        refusals.push((
            what.to_string(),
            not_granted(format!("list pattern \"{pattern}\"")),
        ));
    }
    for (what, action) in [
        ("dead letters of another name", "dead letters"),
        ("replay of another name", "replay"),
        ("purge of another name", "purge"),
        ("unsubscribe of another name", "unsubscribe"),
    ] {
        refusals.push((
            what.to_owned(),
            not_granted(format!("{action} of subscriber \"{other}\"")),
        ));
    }
    for (whose, tag) in [
        ("another subscriber's tag", foreign_tag),
        (
            "a tag delivered to another connection of a shared name",
            shared_tag,
        ),
    ] {
        for verb in ["ACK", "NACK", "REJECT", "RELEASE"] {
            refusals.push((
                format!("{verb} of {whose}"),
                format!("{verb} of tag {tag}: not delivered to this connection"),
            ));
        }
    }
    for (what, reason) in &refusals {
        let got = step(what);
        assert_eq!(
            (got["verb"].as_str(), got["reason"].as_str()),
            (Some("FORBIDDEN"), Some(reason.as_str())),
            "{what}"
        );
    }

    let tail = step("tail");
    if attack.may_tail {
        assert_eq!(tail["event"], "HANDSHAKE_SUCCEEDED");
        for carried in tail["received"].as_array().unwrap() {
            let id = carried["envelope-id"].as_str().unwrap().to_owned();
            assert!(
                !privates.contains(&id),
                "the tail carried a private mail to {user}: {carried}"
            );
            assert!(markers.contains(&id), "{carried} is none of the markers");
        }
    } else {
        assert_eq!(
            tail["event"], "HANDSHAKE_FAILED_AUTH",
            "the tail's ZAP domain refuses a principal not granted every list"
        );
    }

    // The victim still settles its deliveries itself.
    held.ack().await.unwrap();
    shared_held.ack().await.unwrap();
    let dead = victim.dead_letters(&name(attack.victim)).await.unwrap();
    assert_eq!(dead.len(), 1, "the refused purge and replay left it");
    victim.close().await.unwrap();
    hub.close().await.unwrap();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
