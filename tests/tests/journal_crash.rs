//! The journal survives `kill -9` mid-append: a child process appends from
//! 16 tasks and reports each `Ok`; it is killed twice, restarted on the same
//! directory in between, and every acknowledged record must read back
//! intact, with consecutive sequences, after each kill.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use archiver_tests::appender_record;
use mq_archiver::journal::{Journal, JournalOptions};

/// Acknowledged appends: sequence → record number.
type Acked = Arc<Mutex<BTreeMap<u64, u64>>>;

fn run_until_killed(dir: &std::path::Path, first: u64, acked: &Acked, wanted: usize) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_journal-appender"))
        .arg(dir)
        .arg(first.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader_acked = acked.clone();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let (seq, n) = line.split_once(' ').unwrap();
            reader_acked
                .lock()
                .unwrap()
                .insert(seq.parse().unwrap(), n.parse().unwrap());
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < wanted {
        assert!(Instant::now() < deadline, "the appender stalled");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL, mid-append
    child.wait().unwrap();
    reader.join().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn every_acknowledged_append_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let acked: Acked = Arc::default();
    for (round, wanted) in [(0u64, 5_000), (1, 10_000)] {
        run_until_killed(dir.path(), round * 1_000_000, &acked, wanted);
        let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
        let records = journal.read(0, usize::MAX, usize::MAX).unwrap();
        let acked = acked.lock().unwrap().clone();
        let found: BTreeMap<u64, &[u8]> = records.iter().map(|r| (r.seq, &r.payload[..])).collect();
        for (seq, n) in acked.iter() {
            assert_eq!(
                found.get(seq).copied(),
                Some(&appender_record(*n)[..]),
                "round {round}: acknowledged record {n} at sequence {seq}"
            );
        }
        assert!(
            records.windows(2).all(|w| w[1].seq == w[0].seq + 1),
            "sequences are consecutive"
        );
        println!(
            "journal crash round {round}: {} acknowledged, {} in the journal after kill -9 (the rest were in flight)",
            acked.len(),
            records.len()
        );
        journal.close().await.unwrap();
    }
}
