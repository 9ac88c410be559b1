//! Certificates for backends' TLS tests: a private CA and a server
//! certificate for 127.0.0.1, made with the openssl command.

use std::path::Path;
use std::process::Command;

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
