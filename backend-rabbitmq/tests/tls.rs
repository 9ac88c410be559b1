//! `amqps://`: a real TLS round trip against a RabbitMQ node this test
//! starts with a certificate from its own CA; without trusting that CA the
//! connection is refused with a typed error.

mod support;

use archiver_core::conformance::server::spare_port;
use archiver_core::conformance::tls::{Certificates, assert_untrusted_refused, round_trip};
use backend_rabbitmq::{RabbitBackend, RabbitConfig};
use support::{RabbitHarness, RabbitNode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_round_trip_with_a_private_ca() {
    let certs = Certificates::new();
    let tls_port = spare_port();
    let node = RabbitNode::start(&format!(
        "listeners.ssl.default = {tls_port}\nssl_options.cacertfile = {}\nssl_options.certfile = {}\nssl_options.keyfile = {}\nssl_options.verify = verify_none\nssl_options.fail_if_no_peer_cert = false\n",
        certs.file("ca.pem"),
        certs.file("server.pem"),
        certs.file("server.key")
    ));
    node.wait_listening(tls_port);
    let url = format!("amqps://guest:guest@127.0.0.1:{tls_port}/%2f");

    assert_untrusted_refused(RabbitBackend::connect(RabbitConfig::new(&url)).await);
    round_trip(&RabbitHarness::on(
        RabbitConfig::new(&url).tls_ca_file(certs.ca()),
    ))
    .await;
}
