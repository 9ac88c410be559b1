//! `amqps://`: a real TLS round trip against a RabbitMQ node this test
//! starts with a certificate from its own CA; without trusting that CA the
//! connection is refused with a typed error.

mod support;

use archiver_core::conformance::faults::small_mail;
use archiver_core::conformance::server::spare_port;
use archiver_core::conformance::tls::{assert_untrusted_refused, make_certificates};
use archiver_core::{ListId, Publisher, Subscriber, Subscription};
use backend_rabbitmq::{RabbitBackend, RabbitConfig};
use futures::StreamExt;
use support::{RabbitHarness, RabbitNode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_round_trip_with_a_private_ca() {
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    let _ = std::process::Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(certs.path())
        .status();
    let file = |name: &str| certs.path().join(name).display().to_string();
    let tls_port = spare_port();
    let node = RabbitNode::start(&format!(
        "listeners.ssl.default = {tls_port}\nssl_options.cacertfile = {}\nssl_options.certfile = {}\nssl_options.keyfile = {}\nssl_options.verify = verify_none\nssl_options.fail_if_no_peer_cert = false\n",
        file("ca.pem"),
        file("server.pem"),
        file("server.key")
    ));
    node.wait_listening(tls_port);
    let url = format!("amqps://guest:guest@127.0.0.1:{tls_port}/%2f");

    assert_untrusted_refused(RabbitBackend::connect(RabbitConfig::new(&url)).await);

    let harness =
        RabbitHarness::on(RabbitConfig::new(&url).tls_ca_file(certs.path().join("ca.pem")));
    let client = harness.connect().await;
    let mut deliveries = client
        .subscribe(&Subscription::new("tls".parse().unwrap()))
        .await
        .unwrap();
    let envelope = small_mail(&ListId::new("tls.lists.example.org").unwrap(), 0);
    client.publish(&envelope).await.unwrap();
    let delivery = tokio::time::timeout(std::time::Duration::from_secs(30), deliveries.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(delivery.envelope(), &envelope);
    delivery.ack().await.unwrap();
}
