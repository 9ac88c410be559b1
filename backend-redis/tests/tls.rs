//! `rediss://`: a real TLS round trip against a redis-server this test
//! starts with a certificate from its own CA; without trusting that CA the
//! connection is refused with a typed error.

mod support;

use archiver_core::conformance::server::spare_port;
use archiver_core::conformance::tls::{Certificates, assert_untrusted_refused, round_trip};
use backend_redis::{RedisBackend, RedisConfig};
use support::{RedisHarness, RedisServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_round_trip_with_a_private_ca() {
    let certs = Certificates::new();
    let tls_port = spare_port();
    let _server = RedisServer::start(
        false,
        &[
            "--tls-port",
            &tls_port.to_string(),
            "--tls-cert-file",
            &certs.file("server.pem"),
            "--tls-key-file",
            &certs.file("server.key"),
            "--tls-ca-cert-file",
            &certs.file("ca.pem"),
            "--tls-auth-clients",
            "no",
        ],
    );
    let url = format!("rediss://127.0.0.1:{tls_port}");

    assert_untrusted_refused(RedisBackend::connect(RedisConfig::new(&url)).await);
    round_trip(&RedisHarness::on(
        RedisConfig::new(&url).tls_ca_file(certs.ca()),
    ))
    .await;
}
