//! An entry's list id must be that of the stream it came from: a forged
//! XADD into a public list's stream claiming a private list is never
//! delivered as the private list's mail, but dead-lettered as malformed.

mod support;

use std::time::Duration;

use archiver_core::conformance::Harness;
use archiver_core::{
    ArchivePolicy, ArchivedMail, DeadLetters, Envelope, ListId, MailLimits, MailingList, Publisher,
    Subscriber, SubscriberName, Subscription,
};
use futures::StreamExt;
use support::RedisHarness;

fn mail(list: MailingList) -> Envelope {
    let raw = bytes::Bytes::from(format!(
        "Message-ID: <{}@provenance.example.org>\r\n\r\nx\r\n",
        uuid::Uuid::now_v7()
    ));
    Envelope::mail(
        &ArchivedMail::parse(raw, &MailLimits::default()).unwrap(),
        &list,
    )
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
    let first = mail(public.clone());
    backend.publish(&first).await.unwrap();

    // Someone allowed to write the public list's stream adds an entry that
    // claims to be mail of the private list.
    let forged = mail(private);
    let stream = format!("{}:stream:mail:public.example.org", harness.config.prefix);
    let mut xadd = redis::cmd("XADD");
    xadd.arg(&stream).arg("*");
    for (field, value) in archiver_core::wire::to_fields(&forged) {
        xadd.arg(field).arg(value);
    }
    xadd.arg("body").arg(forged.body.as_ref());
    let mut conn = redis::Client::open(harness.config.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: String = xadd.query_async(&mut conn).await.unwrap();
    let last = mail(public);
    backend.publish(&last).await.unwrap();

    let mut delivered = Vec::new();
    while !delivered.contains(&last.id) {
        let item = tokio::time::timeout(Duration::from_secs(10), deliveries.next())
            .await
            .expect("the genuine mails arrive")
            .unwrap();
        if let Ok(delivery) = item {
            delivered.push(delivery.envelope().id);
            delivery.ack().await.unwrap();
        }
    }
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
