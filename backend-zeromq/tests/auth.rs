//! ZAP PLAIN: a hub with an allowlist serves listed credentials and
//! refuses everyone else, who get a clear `Auth` error rather than silence.

mod support;

use std::time::Duration;

use archiver_core::{
    BackendError, Connection, Envelope, ListChange, ListEvent, ListId, MailingList, Operator,
    Publisher, Selection, Subscriber, Subscription,
};
use backend_zeromq::{ClientConfig, Credentials, ZmqClient, ZmqHub, full_access};
use futures::StreamExt;

fn client(hub: &ZmqHub, credentials: Option<Credentials>) -> ZmqClient {
    let mut config = ClientConfig::new(hub.endpoint())
        .tail(hub.tail_endpoint().unwrap())
        .connect_timeout(Duration::from_secs(30));
    if let Some(credentials) = credentials {
        config = config.credentials(credentials);
    }
    ZmqClient::connect(config).unwrap()
}

fn assert_auth<T>(result: Result<T, BackendError>, what: &str) {
    match result {
        Err(BackendError::Auth(message)) => {
            assert!(
                !message.contains("right"),
                "{what}: the password leaked into {message:?}"
            );
        }
        Err(other) => panic!("{what}: expected an Auth error, got {other}"),
        Ok(_) => panic!("{what}: expected an Auth error, got Ok"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_listed_credentials_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let hub = ZmqHub::bind(
        support::hub_config(dir.path()).allow(Credentials::new("web", "right"), full_access("web")),
    )
    .unwrap();
    let subscription = Subscription::new("web".parse().unwrap());

    let wrong = client(&hub, Some(Credentials::new("web", "wrong")));
    assert_auth(wrong.subscribe(&subscription).await, "wrong password");
    assert_auth(
        wrong.tail(&Selection::all()).await,
        "tail with a wrong password",
    );
    assert_auth(
        wrong.dead_letters(&subscription.name).await,
        "dead letters with a wrong password",
    );
    let stranger = client(&hub, Some(Credentials::new("stranger", "right")));
    assert_auth(stranger.subscribe(&subscription).await, "unknown user");
    let anonymous = client(&hub, None);
    assert_auth(anonymous.subscribe(&subscription).await, "no credentials");

    let allowed = client(&hub, Some(Credentials::new("web", "right")));
    let mut deliveries = allowed.subscribe(&subscription).await.unwrap();
    let mut tail = allowed.tail(&Selection::all()).await.unwrap();
    // Of a public list: the tail of a hub with credentials carries nothing else.
    let list = MailingList::public(ListId::new("auth.example.org").unwrap());
    let event = Envelope::event(
        &ListEvent::now(list.list_id.clone(), ListChange::ListDeleted),
        &list,
    );
    hub.publish(&event).await.unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(30), deliveries.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(delivery.envelope(), &event);
    delivery.ack().await.unwrap();
    let tailed = tokio::time::timeout(Duration::from_secs(30), tail.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(tailed, event);
    allowed.close().await.unwrap();
    hub.close().await.unwrap();
}
