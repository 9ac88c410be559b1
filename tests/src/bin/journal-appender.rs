//! Appends to a journal until killed, for the crash test
//! (`tests/journal_crash.rs`): 16 tasks append [`appender_record`]s and
//! print `<sequence> <record number>` for each append that returned `Ok`.
//!
//! [`appender_record`]: archiver_tests::appender_record

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use archiver_tests::appender_record;
use mq_archiver::journal::{Journal, JournalOptions};

#[tokio::main]
async fn main() {
    let dir = std::env::args().nth(1).expect("journal directory");
    let first: u64 = std::env::args()
        .nth(2)
        .map_or(0, |n| n.parse().expect("first record number"));
    let journal = Journal::open(&dir, JournalOptions::default()).expect("journal opens");
    let next = Arc::new(AtomicU64::new(first));
    for _ in 0..16 {
        let (journal, next) = (journal.clone(), next.clone());
        tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                let seq = journal.append(appender_record(n)).await.expect("append");
                println!("{seq} {n}");
            }
        });
    }
    // Appends until killed.
    std::future::pending::<()>().await;
}
