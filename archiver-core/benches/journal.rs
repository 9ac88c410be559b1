//! How fast the journal takes envelopes with a sync before every `Ok`:
//! 100,000 corpus mails (cycled, each its own envelope) appended by 16
//! concurrent publishers, group commit doing the rest. Prints mails/s.
//!
//! `cargo bench -p archiver-core --bench journal [-- COUNT [PUBLISHERS]]`
//! The journal is written under `$ARCHIVER_BENCH_DIR` (default: the
//! workspace's `target/`), so it measures that disk, not a tmpfs.

use std::sync::Arc;
use std::time::Instant;

use archiver_core::conformance::faults::corpus_envelopes;
use archiver_core::journal::{Journal, JournalOptions};
use archiver_core::wire;
use bytes::Bytes;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let count: usize = args.next().map_or(100_000, |a| a.parse().expect("COUNT"));
    let publishers: usize = args.next().map_or(16, |a| a.parse().expect("PUBLISHERS"));
    let Some(envelopes) = corpus_envelopes(576) else {
        eprintln!("journal bench: no corpus, nothing measured");
        return;
    };
    let records: Arc<Vec<Bytes>> =
        Arc::new(envelopes.iter().map(|e| wire::to_bytes(e).into()).collect());
    let base = std::env::var_os("ARCHIVER_BENCH_DIR").map_or_else(
        || std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")),
        Into::into,
    );
    std::fs::create_dir_all(&base).expect("bench dir");
    let dir = tempfile::tempdir_in(&base).expect("bench dir");
    let journal = Journal::open(dir.path(), JournalOptions::default()).expect("journal opens");

    let started = Instant::now();
    let tasks: Vec<_> = (0..publishers)
        .map(|p| {
            let journal = journal.clone();
            let records = records.clone();
            tokio::spawn(async move {
                let mut bytes = 0;
                for i in (p..count).step_by(publishers) {
                    let record = records[i % records.len()].clone();
                    bytes += record.len();
                    journal.append(record).await.expect("append");
                }
                bytes
            })
        })
        .collect();
    let mut bytes = 0;
    for task in tasks {
        bytes += task.await.expect("publisher");
    }
    let took = started.elapsed().as_secs_f64();
    assert_eq!(journal.next_seq(), count as u64);
    println!(
        "journal: {count} corpus mails, {publishers} publishers, sync before Ok: \
         {:.2} s, {:.0} mails/s, {:.0} MB/s (in {})",
        took,
        count as f64 / took,
        bytes as f64 / took / 1e6,
        base.display()
    );
    journal.close().await.expect("close");
}
