//! Backends' TLS tests: a private CA and a server certificate for
//! 127.0.0.1 (made with the openssl command), and the round trip each
//! backend runs over TLS against a broker of its own
//! ([`server`](super::server)) that presents them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use futures::StreamExt;

use super::Harness;
use super::faults::small_mail;
use crate::backend::{Publisher, Subscriber, Subscription};
use crate::list::ListId;

/// A private CA and a server certificate in a temporary directory of their
/// own, readable by a broker that runs as another user (Debian's RabbitMQ).
pub struct Certificates {
    dir: tempfile::TempDir,
}

impl Certificates {
    /// Makes them (see [`make_certificates`]).
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        make_certificates(dir.path());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let readable = |path: &Path, mode| {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                    .expect("certificates made readable")
            };
            readable(dir.path(), 0o755);
            for entry in std::fs::read_dir(dir.path()).expect("certificate directory") {
                readable(&entry.expect("certificate file").path(), 0o644);
            }
        }
        Self { dir }
    }

    /// The file `name` (`ca.pem`, `server.pem`, `server.key`), as a
    /// broker's configuration wants it.
    pub fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// The CA a client must trust.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

impl Default for Certificates {
    fn default() -> Self {
        Self::new()
    }
}

/// A mail published over TLS reaches a subscriber over TLS, byte for byte,
/// and is acked; `harness` connects through a TLS URL trusting
/// [`Certificates::ca`].
pub async fn round_trip<H: Harness>(harness: &H) {
    let subscriber = harness.subscriber().await;
    let mut deliveries = subscriber
        .subscribe(&Subscription::new("tls".parse().expect("valid name")))
        .await
        .expect("subscribe over TLS");
    let envelope = small_mail(&ListId::new("tls.lists.example.org").expect("valid"), 0);
    harness
        .publisher()
        .await
        .publish(&envelope)
        .await
        .expect("publish over TLS");
    let delivery = tokio::time::timeout(Duration::from_secs(30), deliveries.next())
        .await
        .expect("delivered within 30 s")
        .expect("stream goes on")
        .expect("a delivery");
    assert_eq!(delivery.envelope(), &envelope);
    delivery.ack().await.expect("ack over TLS");
}

/// Writes `ca.pem`, `ca.key`, `server.pem` and `server.key` into `dir`.
pub fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl runs (scripts/test installs it)");
        assert!(status.success(), "openssl {args:?}");
    };
    let days = ["-days", "2"];
    openssl(
        &[
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=archiver test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ][..],
            &days,
        ]
        .concat(),
    );
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("write san.ext");
    openssl(
        &[
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-extfile",
                "san.ext",
                "-out",
                "server.pem",
            ][..],
            &days,
        ]
        .concat(),
    );
}

/// A connection to a server whose certificate comes from a CA the client
/// does not trust must fail with a typed error, never succeed.
pub fn assert_untrusted_refused<B>(connected: Result<B, crate::backend::BackendError>) {
    use crate::backend::BackendError;
    match connected {
        Err(BackendError::Unavailable(_) | BackendError::Broker(_)) => {}
        Err(other) => {
            panic!("an untrusted certificate must give Unavailable or Broker, got {other:?}")
        }
        Ok(_) => panic!("a certificate from an unknown CA must not be accepted"),
    }
}
