//! `rediss://`: a real TLS round trip against a redis-server this test
//! starts with a certificate from its own CA; without trusting that CA the
//! connection is refused with a typed error.

mod support;

use archiver_core::conformance::server::spare_port;
use archiver_core::conformance::tls::{assert_untrusted_refused, make_certificates};
use archiver_core::{
    ArchivedMail, Envelope, ListId, MailLimits, MailingList, Publisher, Subscriber, Subscription,
};
use backend_redis::{RedisBackend, RedisConfig};
use futures::StreamExt;
use support::{RedisHarness, RedisServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_round_trip_with_a_private_ca() {
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    let file = |name: &str| certs.path().join(name).display().to_string();
    let tls_port = spare_port();
    let _server = RedisServer::start(
        false,
        &[
            "--tls-port",
            &tls_port.to_string(),
            "--tls-cert-file",
            &file("server.pem"),
            "--tls-key-file",
            &file("server.key"),
            "--tls-ca-cert-file",
            &file("ca.pem"),
            "--tls-auth-clients",
            "no",
        ],
    );
    let url = format!("rediss://127.0.0.1:{tls_port}");

    assert_untrusted_refused(RedisBackend::connect(RedisConfig::new(&url)).await);

    let harness = RedisHarness::on(RedisConfig::new(&url).tls_ca_file(certs.path().join("ca.pem")));
    let client = harness.connect().await;
    let mut deliveries = client
        .subscribe(&Subscription::new("tls".parse().unwrap()))
        .await
        .unwrap();
    let raw = bytes::Bytes::from_static(b"Message-ID: <tls@example.org>\r\n\r\nover TLS\r\n");
    let list = ListId::new("tls.lists.example.org").unwrap();
    let envelope = Envelope::mail(
        &ArchivedMail::parse(raw, &MailLimits::default()).unwrap(),
        &MailingList::public(list),
    );
    client.publish(&envelope).await.unwrap();
    let delivery = tokio::time::timeout(std::time::Duration::from_secs(30), deliveries.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(delivery.envelope(), &envelope);
    delivery.ack().await.unwrap();
}
