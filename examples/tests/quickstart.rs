//! Runs the quickstart binary as a user would and checks what it archived:
//! every mail of the mbox is in its list's Maildir, byte-identical, except
//! those that opted out, and the thread index holds every archived mail.

use std::path::Path;
use std::process::Command;

use archiver_examples::maildir::MaildirArchive;
use mq_archiver::conformance::corpus_mbox;
use mq_archiver::{ArchivedMail, MailLimits, MboxReader};

/// Runs the quickstart on `mbox` (or its default sample) into `out`, with
/// extra arguments; returns stdout.
fn run_quickstart(mbox: Option<&Path>, out: &Path, extra: &[&str]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_quickstart"));
    command.arg("--out").arg(out).args(extra);
    if let Some(mbox) = mbox {
        command.arg("--mbox").arg(mbox);
    }
    let output = command.output().expect("quickstart runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "quickstart failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Runs the quickstart with `args`, which must make it fail; returns its
/// standard error.
fn failing_quickstart(args: &[&str]) -> String {
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_quickstart"))
        .args(args)
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Checks the Maildirs against the mbox; returns (archived, skipped).
fn assert_maildir_matches(mbox: &Path, out: &Path) -> (usize, usize) {
    let maildir = out.join("maildir");
    let (mut archived, mut skipped) = (0, 0);
    for raw in MboxReader::open(mbox).unwrap() {
        let raw = raw.unwrap();
        let mail = ArchivedMail::parse(raw.clone(), &MailLimits::default()).unwrap();
        let list = mail
            .meta()
            .list_id
            .as_ref()
            .map_or("quickstart.lists.example.org", |l| l.as_str());
        let path = MaildirArchive::path_of(&maildir, list, mail.message_id_hash());
        if mail.meta().opt_out.is_some() {
            assert!(
                !path.exists(),
                "{} opted out but was archived",
                mail.meta().message_id
            );
            skipped += 1;
        } else {
            let stored = std::fs::read(&path).unwrap_or_else(|e| {
                panic!(
                    "{} not archived at {}: {e}",
                    mail.meta().message_id,
                    path.display()
                )
            });
            assert!(
                stored == raw,
                "{} differs from the mbox: {} bytes stored, {} read",
                path.display(),
                stored.len(),
                raw.len()
            );
            archived += 1;
        }
    }
    let files = walk_files(&maildir)
        .into_iter()
        .filter(|p| p.parent().unwrap().ends_with("new"))
        .count();
    assert_eq!(
        files, archived,
        "the Maildirs hold exactly the archived mails"
    );
    (archived, skipped)
}

fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn quickstart_archives_the_corpus_byte_identical() {
    let Some(mbox) = corpus_mbox("quickstart_archives_the_corpus_byte_identical") else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let stdout = run_quickstart(Some(&mbox), out.path(), &[]);
    let (archived, skipped) = assert_maildir_matches(&mbox, out.path());
    assert_eq!(archived + skipped, 576);
    assert_eq!(skipped, 2, "the corpus has two X-No-Archive mails");
    assert!(
        stdout.contains(&format!("published {archived} mails")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{archived} mails and")),
        "thread index has every mail: {stdout}"
    );
    assert!(stdout.contains("dead-lettered 0"), "{stdout}");
}

#[test]
fn quickstart_sample_runs_and_reruns_idempotently() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample.mbox");
    let out = tempfile::tempdir().unwrap();
    let first = run_quickstart(None, out.path(), &[]);
    assert_eq!(assert_maildir_matches(&sample, out.path()), (8, 1));
    assert!(first.contains("8 stored, 0 already there"), "{first}");
    let second = run_quickstart(None, out.path(), &[]);
    assert!(second.contains("0 stored, 8 already there"), "{second}");
    assert_eq!(assert_maildir_matches(&sample, out.path()), (8, 1));
}

#[test]
fn quickstart_archives_the_corpus_through_redis() {
    let Some(mbox) = corpus_mbox("quickstart_archives_the_corpus_through_redis") else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let stdout = run_quickstart(
        Some(&mbox),
        out.path(),
        &["--url", "redis://127.0.0.1:6379"],
    );
    let (archived, skipped) = assert_maildir_matches(&mbox, out.path());
    assert_eq!((archived, skipped), (574, 2));
    assert!(stdout.contains("through the Redis backend"), "{stdout}");
    assert!(stdout.contains("dead-lettered 0"), "{stdout}");
}

#[test]
fn quickstart_archives_the_corpus_through_rabbitmq() {
    let Some(mbox) = corpus_mbox("quickstart_archives_the_corpus_through_rabbitmq") else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let url = "amqp://guest:guest@127.0.0.1:5672/%2f";
    let stdout = run_quickstart(Some(&mbox), out.path(), &["--url", url]);
    assert_eq!(assert_maildir_matches(&mbox, out.path()), (574, 2));
    assert!(stdout.contains("through the Rabbitmq backend"), "{stdout}");
    assert!(stdout.contains("dead-lettered 0"), "{stdout}");
}

#[test]
fn quickstart_says_what_is_wrong_with_a_bad_url() {
    let stderr = failing_quickstart(&[
        "--backend",
        "redis",
        "--url",
        "http://user:hunter2@example.org/",
    ]);
    assert!(stderr.contains("unknown scheme \"http\""), "{stderr}");
    assert!(
        !stderr.contains("hunter2"),
        "the password is never shown: {stderr}"
    );
}

/// Switching the backend is a change of URL only: the same sample arrives
/// whole through each scheme, and the summary names the backend.
#[test]
fn quickstart_switches_backend_by_url_only() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample.mbox");
    let sockets = tempfile::tempdir().unwrap();
    let ipc = format!("ipc://{}", sockets.path().join("hub.sock").display());
    for (url, backend) in [
        ("memory:", "Memory"),
        ("redis://127.0.0.1:6379", "Redis"),
        ("amqp://guest:guest@127.0.0.1:5672/%2f", "Rabbitmq"),
        ("tcp://127.0.0.1:*", "Zeromq"),
        (ipc.as_str(), "Zeromq"),
    ] {
        let out = tempfile::tempdir().unwrap();
        let stdout = run_quickstart(None, out.path(), &["--url", url]);
        assert_eq!(assert_maildir_matches(&sample, out.path()), (8, 1), "{url}");
        assert!(
            stdout.contains(&format!("through the {backend} backend")),
            "{url}: {stdout}"
        );
        assert!(stdout.contains("dead-lettered 0"), "{url}: {stdout}");
    }
}

#[test]
fn quickstart_refuses_a_shorthand_that_contradicts_the_url() {
    let stderr = failing_quickstart(&[
        "--backend",
        "rabbitmq",
        "--url",
        "redis://:hunter2@127.0.0.1:6379",
    ]);
    assert!(
        stderr.contains("--backend Rabbitmq but the URL names Redis"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}
