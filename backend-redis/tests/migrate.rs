//! Data written in the layout of earlier versions (one stream per list and
//! kind, `<p>:streams`, the `<p>:subscribers` hash), with raw commands
//! mirroring those key names, is migrated when the list server's ACL user
//! connects, with nothing lost: a subscriber's pending and unread entries
//! come, byte-identical, its acknowledged one does not come again, its
//! dead letter (whose origin names an old stream) replays, and an entry
//! forged into an old stream is dead-lettered as malformed, not
//! delivered as the list it claims.

mod forge;
mod support;

use std::collections::HashSet;

use archiver_core::conformance::fixtures::next_delivery;
use archiver_core::conformance::fixtures::small_mail;
use archiver_core::{
    ArchivePolicy, Connection, Envelope, EnvelopeId, ListChange, ListEvent, ListId, MailingList,
    MemberRole, Operator, Publisher, Replay, Subscriber, SubscriberName, Subscription,
};
use backend_redis::{RedisBackend, RedisConfig, list_server_acl_lines};
use support::{RedisHarness, RedisServer};

const PUBLIC: &str = "old.example.org";
const PRIVATE: &str = "hidden.example.org";
const NAME: &str = "old-archive";

fn mailing_list(id: &str, archive_policy: ArchivePolicy) -> MailingList {
    MailingList {
        archive_policy,
        ..MailingList::public(ListId::new(id).unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_layout_is_migrated_with_nothing_lost() {
    let server = RedisServer::start(false, &[]);
    let harness = RedisHarness::on(RedisConfig::new(server.url()));
    let prefix = harness.config.prefix.clone();
    let key = |rest: &str| format!("{prefix}:{rest}");
    let mut admin = forge::connection(&harness).await;
    let public = mailing_list(PUBLIC, ArchivePolicy::Public);
    let private = mailing_list(PRIVATE, ArchivePolicy::Private);

    // What an earlier version wrote: the registry, the record, the streams.
    let created_ms = chrono::Utc::now().timestamp_millis() - 1000;
    let record = format!(
        r#"{{"lists":[],"kind":null,"max_attempts":5,"from_beginning":false,"created_ms":{created_ms}}}"#
    );
    let _: () = redis::pipe()
        .cmd("SADD")
        .arg(key("streams"))
        .arg(&[
            format!("mail:{PUBLIC}"),
            format!("event:{PUBLIC}"),
            format!("mail:{PRIVATE}"),
        ])
        .ignore()
        .cmd("HSET")
        .arg(key("subscribers"))
        .arg(NAME)
        .arg(&record)
        .ignore()
        .query_async(&mut admin)
        .await
        .unwrap();
    let old_public = key(&format!("stream:mail:{PUBLIC}"));
    let old_event = key(&format!("stream:event:{PUBLIC}"));
    let old_private = key(&format!("stream:mail:{PRIVATE}"));
    for stream in [&old_public, &old_event, &old_private] {
        let _: () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(stream)
            .arg(NAME)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut admin)
            .await
            .unwrap();
    }
    let public_mails: Vec<Envelope> = (0..3)
        .map(|_| small_mail(&public, "migrate.example.org"))
        .collect();
    let private_mails: Vec<Envelope> = (0..2)
        .map(|_| small_mail(&private, "migrate.example.org"))
        .collect();
    let joined = ListChange::MembershipAdded {
        address: "ann@example.org".into(),
        role: MemberRole::Member,
        display_name: None,
    };
    let event = Envelope::event(&ListEvent::now(public.list_id.clone(), joined), &public);
    // Someone who could write the old public stream forged a private mail.
    let forged = small_mail(&private, "migrate.example.org");
    let mut ids = Vec::new();
    for (stream, envelope) in public_mails
        .iter()
        .map(|e| (&old_public, e))
        .chain([(&old_public, &forged), (&old_event, &event)])
        .chain(private_mails.iter().map(|e| (&old_private, e)))
    {
        let id: String = forge::xadd_envelope(stream, envelope)
            .query_async(&mut admin)
            .await
            .unwrap();
        ids.push(id);
    }
    // The subscriber read two public mails and acked the first; the second
    // waits pending, nacked with a delay.
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(NAME)
        .arg("old-host")
        .arg("COUNT")
        .arg(2)
        .arg("STREAMS")
        .arg(&old_public)
        .arg(">")
        .query_async(&mut admin)
        .await
        .unwrap();
    let _: () = redis::pipe()
        .cmd("XACK")
        .arg(&old_public)
        .arg(NAME)
        .arg(&ids[0])
        .ignore()
        .cmd("ZADD")
        .arg(key(&format!("delayed:{NAME}")))
        .arg(chrono::Utc::now().timestamp_millis() + 3_600_000)
        .arg(format!("{old_public}\n{}", ids[1]))
        .ignore()
        .query_async(&mut admin)
        .await
        .unwrap();
    // A dead letter of a private mail, its origin the old stream's name.
    let dead_mail = small_mail(&private, "migrate.example.org");
    let _: String = forge::xadd_envelope(&key(&format!("dead:{NAME}")), &dead_mail)
        .arg("dead-reason")
        .arg("handler refused it")
        .arg("dead-attempts")
        .arg(1)
        .arg("dead-at")
        .arg("2026-01-01T00:00:00.000Z")
        .arg("origin")
        .arg(&old_private)
        .query_async(&mut admin)
        .await
        .unwrap();

    // The list server's ACL user connects: it migrates.
    for line in list_server_acl_lines(&prefix, "list-server").unwrap() {
        let args: Vec<&str> = line.split_whitespace().collect();
        let _: () = redis::cmd("ACL")
            .arg(&args[1..])
            .query_async(&mut admin)
            .await
            .unwrap();
    }
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("list-server")
        .arg(">list-server-password")
        .query_async(&mut admin)
        .await
        .unwrap();
    let mut config = harness.config.clone();
    config.url = format!(
        "redis://list-server:list-server-password@127.0.0.1:{}",
        server.port
    );
    let backend = RedisBackend::connect(config.clone()).await.unwrap();
    let left: usize = redis::cmd("EXISTS")
        .arg(&[
            &key("streams"),
            &key("subscribers"),
            &old_public,
            &old_event,
            &old_private,
        ])
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(left, 0, "the old keys are gone");
    let migrated: Option<String> = redis::cmd("GET")
        .arg(key(&format!("sub:{NAME}")))
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(migrated.as_deref(), Some(record.as_str()));
    // Connecting again finds nothing to do.
    RedisBackend::connect(config)
        .await
        .unwrap()
        .close()
        .await
        .unwrap();

    let name = SubscriberName::new(NAME).unwrap();
    let mut deliveries = backend
        .subscribe(&Subscription::new(name.clone()))
        .await
        .unwrap();
    let marker = small_mail(&public, "migrate.example.org");
    backend.publish(&marker).await.unwrap();
    let mut expected: Vec<&Envelope> = public_mails[1..]
        .iter()
        .chain([&event, &marker])
        .chain(&private_mails)
        .collect();
    let mut received = Vec::new();
    let mut refused = 0;
    // The forged entry, dead-lettered, is reported as an error item.
    while received.len() < expected.len() || refused == 0 {
        match tokio::time::timeout(
            std::time::Duration::from_secs(10),
            futures::StreamExt::next(&mut deliveries),
        )
        .await
        .expect("the migrated entries arrive")
        .expect("the stream goes on")
        {
            Ok(delivery) => {
                received.push(delivery.envelope().clone());
                delivery.ack().await.unwrap();
            }
            Err(_) => refused += 1,
        }
    }
    expected.sort_by_key(|e| e.id);
    received.sort_by_key(|e| e.id);
    assert_eq!(
        received.iter().collect::<Vec<_>>(),
        expected,
        "pending and unread entries come once, byte-identical; the acked one does not come again"
    );
    assert_eq!(refused, 1, "the forged entry is reported, not delivered");
    let dead = backend.dead_letters(&name).await.unwrap();
    let dead_ids: HashSet<EnvelopeId> = dead.iter().map(|d| d.envelope.id).collect();
    assert_eq!(
        dead_ids,
        HashSet::from([dead_mail.id, forged.id]),
        "{dead:?}"
    );
    let delayed: usize = redis::cmd("ZCARD")
        .arg(key(&format!("delayed:{NAME}")))
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(delayed, 0, "no retry names an old stream");

    assert_eq!(
        backend
            .replay_dead_letters(&name, Replay::Only(vec![dead_mail.id]))
            .await
            .unwrap(),
        1
    );
    let replayed = next_delivery(&mut deliveries).await;
    assert_eq!(
        replayed.envelope(),
        &dead_mail,
        "the old dead letter replays"
    );
    replayed.ack().await.unwrap();
    drop(deliveries);
    backend.close().await.unwrap();
}
