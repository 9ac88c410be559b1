//! An entry's list id must be that of the stream it came from: a forged
//! XADD into a public list's stream claiming a private list is never
//! delivered as the private list's mail, but dead-lettered as malformed.

mod forge;
mod support;

use archiver_core::conformance::Harness;
use archiver_core::conformance::fixtures::{ack_until, small_mail};
use archiver_core::{
    ArchivePolicy, Envelope, ListId, MailingList, Operator, Publisher, Subscriber, SubscriberName,
    Subscription,
};
use support::RedisHarness;

fn mail(list: &MailingList) -> Envelope {
    small_mail(list, "provenance.example.org")
}

#[tokio::test]
async fn a_forged_list_id_is_dead_lettered_not_delivered() {
    let harness = RedisHarness::new();
    let backend = harness.connect().await;
    let public = MailingList::public(ListId::new("public.example.org").unwrap());
    let private = MailingList {
        archive_policy: ArchivePolicy::Private,
        ..MailingList::public(ListId::new("private.example.org").unwrap())
    };
    let name = SubscriberName::new("archive").unwrap();
    let mut deliveries = backend
        .subscribe(&Subscription::new(name.clone()))
        .await
        .unwrap();
    let first = mail(&public);
    backend.publish(&first).await.unwrap();

    // Someone allowed to write the public list's stream adds an entry that
    // claims to be mail of the private list.
    let forged = mail(&private);
    let stream = forge::public_mail_stream(&harness, "public.example.org");
    let _: String = forge::xadd_envelope(&stream, &forged)
        .query_async(&mut forge::connection(&harness).await)
        .await
        .unwrap();
    let last = mail(&public);
    backend.publish(&last).await.unwrap();

    let delivered = ack_until(&mut deliveries, last.id).await;
    let dead = backend.dead_letters(&name).await.unwrap();
    drop(deliveries);
    harness.cleanup().await;
    assert_eq!(
        delivered,
        [first.id, last.id],
        "the forged entry was delivered"
    );
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].envelope.id, forged.id);
    assert!(
        dead[0].reason.starts_with("malformed"),
        "{}",
        dead[0].reason
    );
}
