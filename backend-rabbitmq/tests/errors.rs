//! Wrong URL, unreachable broker, refused credentials, unknown vhost, and
//! messages nobody selects: each a typed error, never showing a password.

mod support;

use archiver_core::conformance::Harness;
use archiver_core::conformance::errors::{self, Endpoints};
use archiver_core::{
    ArchivedMail, BackendError, Envelope, ListId, MailLimits, MailingList, Publisher, Subscriber,
    Subscription,
};
use async_trait::async_trait;
use backend_rabbitmq::{RabbitBackend, RabbitConfig};
use futures::StreamExt;
use lapin::options::BasicGetOptions;

/// RabbitMQ's URL forms (user guest, vhost /) for the shared error
/// scenarios.
struct Rabbit;

#[async_trait]
impl Endpoints for Rabbit {
    async fn connect(&self, url: &str) -> Result<(), BackendError> {
        RabbitBackend::connect(RabbitConfig::new(url))
            .await
            .map(drop)
    }

    fn url(&self, port: u16, password: &str) -> String {
        format!("amqp://guest:{password}@127.0.0.1:{port}/%2f")
    }

    fn foreign_url(&self, password: &str) -> String {
        format!("redis://guest:{password}@127.0.0.1:5672/%2f")
    }
}

fn mail(list: &str) -> Envelope {
    let raw = bytes::Bytes::from(format!(
        "Message-ID: <{}@errors.example.org>\r\n\r\nx\r\n",
        uuid::Uuid::now_v7()
    ));
    let list = ListId::new(list).unwrap();
    Envelope::mail(
        &ArchivedMail::parse(raw, &MailLimits::default()).unwrap(),
        &MailingList::public(list),
    )
}

#[tokio::test]
async fn wrong_url_scheme_is_invalid_url() {
    errors::wrong_scheme_is_invalid_url(&Rabbit).await;
}

#[tokio::test]
async fn unreachable_broker_is_unavailable() {
    errors::unreachable_is_unavailable(&Rabbit).await;
}

/// On the broker of `scripts/test` (guest/guest on 5672).
#[tokio::test]
async fn wrong_password_is_auth() {
    errors::wrong_password_is_auth(&Rabbit, 5672, "guest").await;
}

/// `amqp:user:password@host` (the `//` forgotten) is refused as a URL
/// before lapin sees it: lapin's own error would quote it, password and all.
#[tokio::test]
async fn a_url_without_its_slashes_is_invalid_and_hides_the_password() {
    let error = Rabbit
        .connect("amqp:guest:hunter2@127.0.0.1:5672/%2f")
        .await
        .unwrap_err();
    let shown = format!("{error} {error:?}");
    assert!(matches!(error, BackendError::InvalidUrl(_)), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[tokio::test]
async fn lapin_errors_stay_the_source() {
    errors::client_error_is_the_source::<lapin::Error>(&Rabbit, 5672).await;
}

#[tokio::test]
async fn unknown_vhost_is_auth() {
    let error = Rabbit
        .connect("amqp://guest:guest@127.0.0.1:5672/no-such-vhost")
        .await
        .unwrap_err();
    assert!(matches!(error, BackendError::Auth(_)), "{error:?}");
}

#[tokio::test]
async fn unrouted_mail_is_kept_or_refused_as_configured() {
    // Kept (default): in <prefix>.unrouted, where an operator finds it.
    let harness = support::RabbitHarness::new();
    let kept = harness.connect().await;
    let envelope = mail("nobody.lists.example.org");
    kept.publish(&envelope)
        .await
        .expect("kept in the unrouted queue");
    let connection =
        lapin::Connection::connect(&harness.config.url, lapin::ConnectionProperties::default())
            .await
            .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let unrouted = format!("{}.unrouted", harness.config.prefix);
    let message = channel
        .basic_get(unrouted.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the mail is in the unrouted queue");
    assert_eq!(message.delivery.data, envelope.body.to_vec());
    harness.cleanup().await;

    // Refused: a publish no queue takes is an error that retrying cannot
    // cure, so a spool sets it aside instead of retrying it forever.
    let harness = support::RabbitHarness::on(RabbitConfig::from_env().keep_unrouted(false));
    let strict = harness.connect().await;
    let error = strict
        .publish(&mail("nobody.lists.example.org"))
        .await
        .unwrap_err();
    assert!(matches!(error, BackendError::Unroutable(_)), "{error:?}");
    assert!(
        !error.is_transient(),
        "an unroutable publish is permanent: {error:?}"
    );
    harness.cleanup().await;
    let _ = connection.close(200, "done".into()).await;
}

#[tokio::test]
async fn a_new_selection_replaces_the_old_bindings() {
    let harness = support::RabbitHarness::on(RabbitConfig::from_env().keep_unrouted(false));
    let client = harness.connect().await;
    let name = "moving".parse().unwrap();
    let first = Subscription::new(name)
        .select(archiver_core::Selection::all().list("a.lists.example.org".parse().unwrap()));
    drop(client.subscribe(&first).await.unwrap());
    let second = first
        .clone()
        .select(archiver_core::Selection::all().list("b.lists.example.org".parse().unwrap()));
    let mut deliveries = client.subscribe(&second).await.unwrap();
    let error = client
        .publish(&mail("a.lists.example.org"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, BackendError::Unroutable(_)),
        "list a is no longer bound: {error:?}"
    );
    let envelope = mail("b.lists.example.org");
    client.publish(&envelope).await.unwrap();
    let delivery = deliveries.next().await.unwrap().unwrap();
    assert_eq!(delivery.envelope(), &envelope);
    delivery.ack().await.unwrap();
    harness.cleanup().await;
}
