//! The journal's promises, each checked on a real directory.

use std::io::Write;

use super::*;

fn small_segments() -> JournalOptions {
    JournalOptions {
        segment_size: 4096,
        ..JournalOptions::default()
    }
}

fn payload(i: u64) -> Vec<u8> {
    format!("record {i} ")
        .repeat(1 + (i % 50) as usize)
        .into_bytes()
}

async fn fill(journal: &Journal, count: u64) {
    for i in 0..count {
        assert_eq!(journal.append(payload(i)).await.unwrap(), i);
    }
}

fn read_all(journal: &Journal) -> Vec<Record> {
    journal.read(0, usize::MAX, usize::MAX).unwrap()
}

fn assert_records(records: &[Record], range: std::ops::Range<u64>) {
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, range.collect::<Vec<_>>());
    for record in records {
        assert_eq!(record.payload, payload(record.seq), "record {}", record.seq);
    }
}

#[tokio::test]
async fn concurrent_appends_get_consecutive_sequences_and_read_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), small_segments()).unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let journal = journal.clone();
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..50 {
                    let body = format!("{t}:{i}");
                    seqs.push((journal.append(body.clone()).await.unwrap(), body));
                }
                seqs
            })
        })
        .collect();
    let mut appended = Vec::new();
    for task in tasks {
        appended.extend(task.await.unwrap());
    }
    appended.sort();
    let records = read_all(&journal);
    assert_eq!(records.len(), 800);
    assert_eq!(journal.next_seq(), 800);
    for (record, (seq, body)) in records.iter().zip(&appended) {
        assert_eq!((record.seq, &record.payload[..]), (*seq, body.as_bytes()));
    }
    assert!(
        segment::list(dir.path()).unwrap().len() > 1,
        "small segments roll over"
    );
}

#[tokio::test]
async fn reopening_keeps_records_cursors_and_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), small_segments()).unwrap();
    fill(&journal, 200).await;
    journal.set_cursor("drain", 120).unwrap();
    journal.close().await.unwrap();

    let journal = Journal::open(dir.path(), small_segments()).unwrap();
    assert_eq!(journal.cursor("drain"), Some(120));
    assert_eq!(journal.next_seq(), 200);
    let kept = read_all(&journal);
    assert!(journal.first_seq() <= 120 && journal.first_seq() > 0);
    assert_records(&kept, journal.first_seq()..200);
    assert_eq!(journal.append(payload(200)).await.unwrap(), 200);
}

#[tokio::test]
async fn segments_every_cursor_passed_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), small_segments()).unwrap();
    fill(&journal, 300).await;
    let before = segment::list(dir.path()).unwrap().len();
    journal.set_cursor("b", 10).unwrap();
    journal.set_cursor("a", 300).unwrap();
    assert_eq!(
        segment::list(dir.path()).unwrap().len(),
        before,
        "b holds them"
    );
    journal.set_cursor("b", 300).unwrap();
    assert_eq!(
        segment::list(dir.path()).unwrap().len(),
        1,
        "only the last stays"
    );
    assert!(
        read_all(&journal)
            .iter()
            .all(|r| r.seq >= journal.first_seq())
    );
    journal.remove_cursor("a").unwrap();
    assert_eq!(journal.cursor("a"), None);
}

#[tokio::test]
async fn a_torn_tail_is_cut_off_and_everything_acknowledged_stays() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), small_segments()).unwrap();
    fill(&journal, 100).await;
    journal.close().await.unwrap();
    let (_, last) = segment::list(dir.path()).unwrap().pop().unwrap();
    let intact = std::fs::read(&last).unwrap();

    // Every way the next record's write can be cut short, and garbage.
    let mut next = Vec::new();
    record::encode(&mut next, 100, record::now_ms(), &payload(100));
    let mut tails: Vec<Vec<u8>> = (1..next.len()).map(|n| next[..n].to_vec()).collect();
    tails.push(vec![0; 100]);
    tails.push(vec![0xff; 3]);
    let mut wrong_seq = Vec::new();
    record::encode(&mut wrong_seq, 7, record::now_ms(), b"stale");
    tails.push(wrong_seq);
    let mut flipped = next.clone();
    flipped[30] ^= 1;
    tails.push(flipped);
    for tail in tails {
        std::fs::write(&last, [&intact[..], &tail[..]].concat()).unwrap();
        let journal = Journal::open(dir.path(), small_segments()).unwrap();
        assert_records(&read_all(&journal), journal.first_seq()..100);
        assert_eq!(std::fs::metadata(&last).unwrap().len(), intact.len() as u64);
        assert_eq!(journal.append(payload(100)).await.unwrap(), 100);
        journal.close().await.unwrap();
        std::fs::write(&last, &intact).unwrap();
    }
}

#[tokio::test]
async fn damage_before_the_tail_is_reported_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), small_segments()).unwrap();
    fill(&journal, 100).await;
    journal.close().await.unwrap();
    let (_, first) = segment::list(dir.path()).unwrap().remove(0);
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[HEADER_OF_SECOND_RECORD + 3] ^= 0x10;
    std::fs::write(&first, bytes).unwrap();
    match Journal::open(dir.path(), small_segments()) {
        Err(JournalError::Corrupt { path, .. }) => assert_eq!(path, first),
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(_) => panic!("expected Corrupt, the journal opened"),
    }
}

/// Header (24) plus `payload(0)` (9 bytes): where record 1 starts.
const HEADER_OF_SECOND_RECORD: usize = 24 + 9;

#[tokio::test]
async fn a_second_opener_is_refused_until_the_first_closes() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    assert!(matches!(
        Journal::open(dir.path(), JournalOptions::default()),
        Err(JournalError::Locked(_))
    ));
    journal.close().await.unwrap();
    Journal::open(dir.path(), JournalOptions::default()).unwrap();
}

#[tokio::test]
async fn oversize_records_are_refused_and_large_ones_get_their_own_segment() {
    let dir = tempfile::tempdir().unwrap();
    let options = JournalOptions {
        segment_size: 1024,
        max_record: 10_000,
        ..JournalOptions::default()
    };
    let journal = Journal::open(dir.path(), options).unwrap();
    assert!(matches!(
        journal.append(vec![1u8; 10_001]).await,
        Err(JournalError::TooLarge {
            size: 10_001,
            limit: 10_000
        })
    ));
    journal.append(vec![1u8; 10]).await.unwrap();
    journal.append(vec![2u8; 5000]).await.unwrap();
    journal.append(vec![3u8; 10]).await.unwrap();
    let records = read_all(&journal);
    assert_eq!(
        records.iter().map(|r| r.payload.len()).collect::<Vec<_>>(),
        [10, 5000, 10]
    );
    assert_eq!(segment::list(dir.path()).unwrap().len(), 3);
}

#[tokio::test]
async fn within_policy_acknowledges_before_the_sync_and_syncs_soon_after() {
    let dir = tempfile::tempdir().unwrap();
    let options = JournalOptions {
        sync: SyncPolicy::Within(Duration::from_millis(20)),
        ..JournalOptions::default()
    };
    let journal = Journal::open(dir.path(), options.clone()).unwrap();
    fill(&journal, 50).await;
    journal.sync().await.unwrap();
    journal.close().await.unwrap();
    let journal = Journal::open(dir.path(), options).unwrap();
    assert_records(&read_all(&journal), 0..50);
}

#[tokio::test]
async fn reads_stop_at_the_byte_budget_but_return_at_least_one_record() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    fill(&journal, 10).await;
    assert_eq!(journal.read(0, 100, 1).unwrap().len(), 1);
    assert_eq!(journal.read(3, 4, usize::MAX).unwrap().len(), 4);
    assert!(journal.read(10, 4, usize::MAX).unwrap().is_empty());
    let waiting = journal.clone();
    let waiter = tokio::spawn(async move { waiting.wait_for(10).await });
    journal.append(payload(10)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
    let appended = journal.appended_at(10).unwrap().unwrap();
    assert!(appended.elapsed().unwrap() < Duration::from_secs(60));
}

#[test]
fn unrelated_files_in_the_directory_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::File::create(dir.path().join("README"))
        .unwrap()
        .write_all(b"notes")
        .unwrap();
    assert!(segment::list(dir.path()).unwrap().is_empty());
}
