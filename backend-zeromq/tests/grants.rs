//! Grants on a real hub: three principals (public lists only, one private
//! list, everything) each receive exactly what their grant allows, byte
//! for byte, and nothing else, on their queues and on the live tail; asking
//! for more is `Forbidden`. Then a raw pyzmq peer (`tests/grants.py`)
//! logged in as the restricted principal reads its own list, and gets the
//! specific refusal for every attempt beyond its grant, while the victim's
//! queue stays as it was.

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use archiver_core::conformance::fixtures::{next_delivery, small_mail};
use archiver_core::conformance::interop::python_with;
use archiver_core::{
    ArchivePolicy, BackendError, Connection, Deliveries, Envelope, EnvelopeId, Grant, Kind,
    ListChange, ListEvent, ListId, MailingList, MemberRole, Operator, Publisher, Replay, Selection,
    Subscriber, SubscriberName, Subscription,
};
use backend_zeromq::{ClientConfig, Credentials, QueueStatus, ZmqClient, ZmqHub, full_access};
use futures::StreamExt;

/// How long a test waits for each envelope.
const WAIT: Duration = Duration::from_secs(20);

const PUBLIC_LISTS: [&str; 2] = ["dev.example.org", "users.example.org"];
const TEAM: &str = "team.example.org";
const BOARD: &str = "board.example.org";

fn name(text: &str) -> SubscriberName {
    text.parse().unwrap()
}

fn list(id: &str) -> MailingList {
    let policy = if PUBLIC_LISTS.contains(&id) {
        ArchivePolicy::Public
    } else {
        ArchivePolicy::Private
    };
    MailingList {
        archive_policy: policy,
        ..MailingList::public(ListId::new(id).unwrap())
    }
}

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

fn hub(dir: &std::path::Path) -> ZmqHub {
    let mut config = support::hub_config(dir);
    for (credentials, grant) in principals() {
        config = config.allow(credentials, grant);
    }
    ZmqHub::bind(config).unwrap()
}

fn client(hub: &ZmqHub, user: &str) -> ZmqClient {
    let (credentials, _) = principals()
        .into_iter()
        .find(|(c, _)| c.user == user)
        .unwrap();
    ZmqClient::connect(
        ClientConfig::new(hub.endpoint())
            .tail(hub.tail_endpoint().unwrap())
            .credentials(credentials)
            .connect_timeout(Duration::from_secs(10)),
    )
    .unwrap()
}

/// A list event of `list`, marked with its policy and type.
fn event(list: &MailingList, change: ListChange) -> Envelope {
    Envelope::event(&ListEvent::now(list.list_id.clone(), change), list)
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
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path());
    let (public, team, ops) = (
        client(&hub, "public-archive"),
        client(&hub, "team-archive"),
        client(&hub, "ops"),
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
    assert_eq!(
        ops.dead_letters(&name("mirror")).await.unwrap().len(),
        privates
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_peer_gets_the_specific_refusal_for_each_attempt() {
    if !python_with("zmq") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path());
    // The victim: public-archive, with a dead letter and a delivery held
    // on its own queue (of one list), and a delivery held on the name it
    // shares with the attacker.
    let public = client(&hub, "public-archive");
    let dev_only = Selection::all().list(PUBLIC_LISTS[0].parse().unwrap());
    let mut queue = public
        .subscribe(
            &Subscription::new(name("public-archive"))
                .select(dev_only)
                .prefetch(1),
        )
        .await
        .unwrap();
    let dev = list(PUBLIC_LISTS[0]);
    hub.publish(&small_mail(&dev, "grants.example.org"))
        .await
        .unwrap();
    next_delivery(&mut queue)
        .await
        .reject("kept as a dead letter")
        .await
        .unwrap();
    let held_mail = small_mail(&dev, "grants.example.org");
    hub.publish(&held_mail).await.unwrap();
    let held = next_delivery(&mut queue).await;
    assert_eq!(held.envelope(), &held_mail);
    // The attacker's own mail, on its own list.
    let own = small_mail(&list(TEAM), "grants.example.org");
    hub.publish(&own).await.unwrap();
    let mut mirror = public
        .subscribe(&Subscription::new(name("mirror")).prefetch(1))
        .await
        .unwrap();
    let shared_mail = small_mail(&list(PUBLIC_LISTS[1]), "grants.example.org");
    hub.publish(&shared_mail).await.unwrap();
    let shared_held = next_delivery(&mut mirror).await;
    assert_eq!(shared_held.envelope(), &shared_mail);

    let before = status(&hub, "public-archive").await.unwrap();
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
        "user": "team-archive",
        "password": "pw-team",
        "name": "team-archive",
        "list": TEAM,
        "other": "public-archive",
        "private_list": BOARD,
        "foreign_tag": foreign_tag,
        "shared": "mirror",
        "shared_tag": shared_tag,
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grants.py");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args([script, &config.to_string()])
            .output()
            .expect("python3 starts")
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "grants.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let steps: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let step = |what: &str| {
        steps
            .iter()
            .find(|s| s["step"] == what)
            .unwrap_or_else(|| panic!("no step {what:?} in {steps:?}"))
            .clone()
    };
    // What the attempts did to the victim, before what they were told.
    let after = status(&hub, "public-archive")
        .await
        .expect("the victim's queue is still there");
    assert_eq!(
        victim_view(&after),
        victim_view(&before),
        "the victim's queue (unsettled, held, dead letters, floor) is as it was"
    );
    let shared_after = status(&hub, "mirror").await.unwrap();
    assert_eq!(
        victim_view(&shared_after),
        victim_view(&shared_before),
        "the victim's delivery on the shared name is still its own"
    );
    let own_read = step("read its own list");
    assert_eq!(own_read["verb"], "DELIVER");
    assert_eq!(own_read["envelope-id"], own.id.to_string());
    assert_eq!(own_read["body_hex"], hex(&own.body));
    for (what, reason) in [
        (
            "hello as another name",
            "subscriber name \"public-archive\" is not granted to \"team-archive\"".to_owned(),
        ),
        (
            "hello selecting every list",
            "list pattern \"#\" is not granted to \"team-archive\"".to_owned(),
        ),
        (
            "hello selecting a private list not granted",
            "list pattern \"board.example.org\" is not granted to \"team-archive\"".to_owned(),
        ),
        (
            "dead letters of another name",
            "dead letters of subscriber \"public-archive\" is not granted to \"team-archive\""
                .to_owned(),
        ),
        (
            "replay of another name",
            "replay of subscriber \"public-archive\" is not granted to \"team-archive\"".to_owned(),
        ),
        (
            "purge of another name",
            "purge of subscriber \"public-archive\" is not granted to \"team-archive\"".to_owned(),
        ),
        (
            "unsubscribe of another name",
            "unsubscribe of subscriber \"public-archive\" is not granted to \"team-archive\""
                .to_owned(),
        ),
        (
            "ACK of another subscriber's tag",
            format!("ACK of tag {foreign_tag}: not delivered to this connection"),
        ),
        (
            "NACK of another subscriber's tag",
            format!("NACK of tag {foreign_tag}: not delivered to this connection"),
        ),
        (
            "REJECT of another subscriber's tag",
            format!("REJECT of tag {foreign_tag}: not delivered to this connection"),
        ),
        (
            "RELEASE of another subscriber's tag",
            format!("RELEASE of tag {foreign_tag}: not delivered to this connection"),
        ),
        (
            "ACK of a tag delivered to another connection of a shared name",
            format!("ACK of tag {shared_tag}: not delivered to this connection"),
        ),
        (
            "NACK of a tag delivered to another connection of a shared name",
            format!("NACK of tag {shared_tag}: not delivered to this connection"),
        ),
        (
            "REJECT of a tag delivered to another connection of a shared name",
            format!("REJECT of tag {shared_tag}: not delivered to this connection"),
        ),
        (
            "RELEASE of a tag delivered to another connection of a shared name",
            format!("RELEASE of tag {shared_tag}: not delivered to this connection"),
        ),
    ] {
        let got = step(what);
        assert_eq!(
            (got["verb"].as_str(), got["reason"].as_str()),
            (Some("FORBIDDEN"), Some(reason.as_str())),
            "{what}"
        );
    }
    assert_eq!(
        step("tail")["event"],
        "HANDSHAKE_FAILED_AUTH",
        "the tail's ZAP domain refuses a principal not granted every list"
    );

    let attacker = status(&hub, "team-archive").await.unwrap();
    assert_eq!(
        (attacker.unsettled, attacker.held),
        (0, 0),
        "its own ACK settled its own delivery"
    );
    // The victim still settles its deliveries itself.
    held.ack().await.unwrap();
    shared_held.ack().await.unwrap();
    let dead = public.dead_letters(&name("public-archive")).await.unwrap();
    assert_eq!(dead.len(), 1, "the refused purge and replay left it");
    public.close().await.unwrap();
    hub.close().await.unwrap();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
