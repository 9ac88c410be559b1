//! `mq-archiver-admin keygen`: ZeroMQ's CURVE key files, written once,
//! never overwritten, the secret one readable by its owner only.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

const TOOL: &str = env!("CARGO_BIN_EXE_mq-archiver-admin");

#[test]
fn keygen_writes_a_pair_once() {
    let dir = tempfile::tempdir().unwrap();
    let name = dir.path().join("hub");
    // A URL of another backend in the environment (for the connecting
    // commands) does not stop an offline command.
    let first = Command::new(TOOL)
        .env("ARCHIVER_URL", "redis://127.0.0.1:1")
        .arg("keygen")
        .arg(&name)
        .output()
        .unwrap();
    assert!(first.status.success(), "{first:?}");
    let secret = dir.path().join("hub.key");
    let public = dir.path().join("hub.pub");
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the secret file is the owner's only");
    let public_before = std::fs::read(&public).unwrap();
    let secret_before = std::fs::read(&secret).unwrap();
    // The key files are what the backend reads.
    mq_archiver::zeromq::CurveKeyPair::read_file(&secret).unwrap();
    mq_archiver::zeromq::CurveKey::read_file(&public).unwrap();
    let stdout = String::from_utf8(first.stdout).unwrap();
    assert!(
        !stdout.contains(std::str::from_utf8(&public_before).unwrap().trim()),
        "no key printed"
    );

    let again = Command::new(TOOL)
        .arg("keygen")
        .arg(&name)
        .output()
        .unwrap();
    assert!(!again.status.success(), "refuses to overwrite");
    assert_eq!(std::fs::read(&public).unwrap(), public_before);
    assert_eq!(std::fs::read(&secret).unwrap(), secret_before);
}
