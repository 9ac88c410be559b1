//! The journal's promises, each checked on a real directory.

use std::io::Write;

use super::*;
use record::Format;

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
    record::encode(&mut next, 100, record::now_ms(), 100, &payload(100));
    let mut tails: Vec<Vec<u8>> = (1..next.len()).map(|n| next[..n].to_vec()).collect();
    tails.push(vec![0; 100]);
    tails.push(vec![0xff; 3]);
    let mut wrong_seq = Vec::new();
    record::encode(&mut wrong_seq, 7, record::now_ms(), 7, b"stale");
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

/// Segment header (8), record header (36) plus `payload(0)` (9 bytes):
/// where record 1 starts.
const HEADER_OF_SECOND_RECORD: usize = 8 + 36 + 9;

#[tokio::test]
async fn a_second_opener_is_refused_until_the_first_closes() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    match Journal::open(dir.path(), JournalOptions::default()) {
        Err(JournalError::Locked {
            dir: locked,
            holder,
        }) => {
            assert_eq!(
                (locked.as_path(), holder),
                (dir.path(), Some(std::process::id()))
            );
        }
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("expected Locked, the journal opened"),
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("LOCK")).unwrap(),
        std::process::id().to_string()
    );
    journal.close().await.unwrap();
    Journal::open(dir.path(), JournalOptions::default()).unwrap();
}

/// A child forked while the journal is open shares its lock until it
/// execs: closing releases the lock for that child's copy too, so a
/// reopen at once is not refused as if another process held the journal
/// (CI saw that refusal when another test spawned a program then).
#[tokio::test]
async fn closing_releases_the_lock_a_forked_child_shares() {
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    // The child holds both ends (fork copies every descriptor), so it
    // never sees end of file: if this test fails before letting it go, the
    // timeout ends it instead of leaving it behind holding our output.
    theirs
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut command = std::process::Command::new("true");
    // SAFETY: between fork and exec the child only writes to and reads
    // from a socket (two system calls, async-signal-safe).
    unsafe {
        command.pre_exec(move || {
            let mut theirs = &theirs;
            theirs.write_all(b"f")?;
            theirs.read_exact(&mut [0u8; 1])
        });
    }
    // `status` returns once the child has exec'd and exited.
    let child = std::thread::spawn(move || command.status().unwrap());
    ours.read_exact(&mut [0u8; 1]).unwrap();
    // The child is forked and holds a copy of every descriptor.
    journal.close().await.unwrap();
    let reopened = Journal::open(dir.path(), JournalOptions::default());
    ours.write_all(b"g").unwrap();
    assert!(child.join().unwrap().success());
    reopened.unwrap().close().await.unwrap();
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

/// Where each record of the first segment starts, as the journal indexed it.
fn offsets(journal: &Journal) -> Vec<u64> {
    journal.shared.segments.lock().unwrap()[0].offsets.clone()
}

fn expect_corrupt(dir: &Path, options: JournalOptions, at: u64) {
    match Journal::open(dir, options) {
        Err(JournalError::Corrupt {
            offset,
            path,
            reason,
        }) => {
            assert_eq!(offset, at, "{reason}");
            assert_eq!(path, segment::list(dir).unwrap().pop().unwrap().1);
        }
        Err(other) => panic!("expected Corrupt at {at}, got {other}"),
        Ok(journal) => panic!(
            "expected Corrupt at {at}, the journal opened with {} records",
            journal.next_seq()
        ),
    }
}

#[tokio::test]
async fn a_flipped_bit_in_an_acknowledged_record_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    fill(&journal, 100).await;
    let at = offsets(&journal)[10];
    journal.close().await.unwrap();
    let (_, path) = segment::list(dir.path()).unwrap().pop().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let size = bytes.len();
    // One bit of record 10's payload.
    bytes[at as usize + Format::V2.header_len() + 2] ^= 0x04;
    std::fs::write(&path, &bytes).unwrap();
    expect_corrupt(dir.path(), JournalOptions::default(), at);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        size as u64,
        "nothing cut"
    );
}

/// Byte offsets, within a v2 record, of one byte of each header field and
/// of the payload.
const FIELDS: [(&str, usize); 7] = [
    ("length", 0),
    ("sequence", 4),
    ("time", 12),
    ("synced before", 20),
    ("header checksum", 28),
    ("payload checksum", 32),
    ("payload", 36),
];

#[tokio::test]
async fn damage_at_every_record_and_field_of_the_last_segment() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    // One append at a time: each record is its own synced group.
    fill(&journal, 20).await;
    let at = offsets(&journal);
    journal.close().await.unwrap();
    let (_, path) = segment::list(dir.path()).unwrap().pop().unwrap();
    let intact = std::fs::read(&path).unwrap();
    for k in 0..20 {
        for (field, byte) in FIELDS {
            let mut bytes = intact.clone();
            bytes[at[k] as usize + byte] ^= 0x01;
            std::fs::write(&path, &bytes).unwrap();
            if k < 19 {
                // Records synced after record k follow it: k was acknowledged.
                expect_corrupt(dir.path(), JournalOptions::default(), at[k]);
                assert_eq!(
                    std::fs::read(&path).unwrap(),
                    bytes,
                    "record {k} {field}: untouched"
                );
            } else {
                // Nothing written after the last write: a torn tail.
                let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
                assert_records(&read_all(&journal), 0..19);
                journal.close().await.unwrap();
                assert_eq!(std::fs::metadata(&path).unwrap().len(), at[k]);
            }
            std::fs::write(&path, &intact).unwrap();
        }
    }
}

/// Appends `count` records from `from` on as one group (one write, one
/// sync).
async fn append_as_one_group(
    journal: &Journal,
    from: u64,
    count: u64,
) -> Vec<Result<u64, JournalError>> {
    append_group(journal, (from..from + count).map(payload).collect()).await
}

/// Appends `payloads` as one group, by holding the writer while they are
/// sent.
async fn append_group(journal: &Journal, payloads: Vec<Vec<u8>>) -> Vec<Result<u64, JournalError>> {
    let release = journal.hold();
    let appends = futures::future::join_all(payloads.into_iter().map(|p| journal.append(p)));
    let mut appends = std::pin::pin!(appends);
    // The first poll sends every append; the writer then takes them all.
    assert!(futures::poll!(appends.as_mut()).is_pending());
    drop(release);
    appends.await
}

#[tokio::test]
async fn damage_inside_the_last_group_is_a_torn_tail_and_before_it_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    fill(&journal, 10).await;
    let group = append_as_one_group(&journal, 10, 10).await;
    assert_eq!(
        group.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
        (10..20).collect::<Vec<_>>()
    );
    let at = offsets(&journal);
    journal.close().await.unwrap();
    let (_, path) = segment::list(dir.path()).unwrap().pop().unwrap();
    let intact = std::fs::read(&path).unwrap();
    for k in 0..20 {
        let mut bytes = intact.clone();
        bytes[at[k] as usize + 40] ^= 0x80;
        std::fs::write(&path, &bytes).unwrap();
        if k < 10 {
            expect_corrupt(dir.path(), JournalOptions::default(), at[k]);
        } else {
            // Power loss may leave any page of the unsynced group out, the
            // ones after it in: the rest of the group is cut, not reported.
            let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
            assert_records(&read_all(&journal), 0..k as u64);
            journal.close().await.unwrap();
        }
        std::fs::write(&path, &intact).unwrap();
    }
}

#[tokio::test]
async fn a_v1_journal_opens_and_goes_on_in_a_v2_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut v1 = Vec::new();
    for i in 0..5 {
        record::encode_v1(&mut v1, i, record::now_ms(), &payload(i));
    }
    let path = segment::path(dir.path(), 0);
    std::fs::write(&path, &v1).unwrap();
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    assert_records(&read_all(&journal), 0..5);
    assert_eq!(journal.append(payload(5)).await.unwrap(), 5);
    journal.close().await.unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        v1,
        "a v1 segment is never appended to"
    );
    let segments = segment::list(dir.path()).unwrap();
    assert_eq!(segments.iter().map(|s| s.0).collect::<Vec<_>>(), [0, 5]);
    assert!(
        std::fs::read(&segments[1].1)
            .unwrap()
            .starts_with(record::SEGMENT_MAGIC)
    );
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    assert_records(&read_all(&journal), 0..6);
    journal.close().await.unwrap();

    // v1 cannot tell groups apart: damage followed by any valid record is
    // corruption, damage at the end a torn tail.
    std::fs::remove_file(&segments[1].1).unwrap();
    let second = 24 + payload(0).len();
    let mut damaged = v1.clone();
    damaged[second + 30] ^= 1;
    std::fs::write(&path, &damaged).unwrap();
    expect_corrupt(dir.path(), JournalOptions::default(), second as u64);
    let last = v1.len() - 24 - payload(4).len();
    let mut torn = v1.clone();
    torn[last + 30] ^= 1;
    std::fs::write(&path, &torn).unwrap();
    let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
    assert_records(&read_all(&journal), 0..4);
}

#[tokio::test]
async fn a_deleted_directory_answers_gone_and_takes_no_more_appends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let journal = Journal::open(&path, JournalOptions::default()).unwrap();
    fill(&journal, 3).await;
    std::fs::remove_dir_all(&path).unwrap();
    for i in 3..6 {
        match journal.append(payload(i)).await {
            Err(JournalError::Gone(_)) => {}
            other => panic!("append {i}: expected Gone, got {other:?}"),
        }
    }
    assert_eq!(journal.next_seq(), 3, "nothing answered Gone is readable");
}

#[tokio::test]
async fn no_space_in_a_group_that_crosses_a_segment_boundary_loses_nothing_and_recovers() {
    let mount_point = tempfile::tempdir().unwrap();
    let Some(fs) = crate::conformance::faults::Tmpfs::mount(mount_point.path(), "20m") else {
        return;
    };
    let dir = fs.path().join("journal");
    let options = JournalOptions {
        segment_size: 1 << 20,
        ..JournalOptions::default()
    };
    let big = |i: u64| vec![i as u8; 100_000];
    let journal = Journal::open(&dir, options.clone()).unwrap();
    for i in 0..9 {
        assert_eq!(journal.append(big(i)).await.unwrap(), i);
    }
    // The group's first record fits in segment 0, the next nine go to a
    // new segment, for which there is no room.
    let first = segment::path(&dir, 0);
    let before = std::fs::metadata(&first).unwrap().len();
    let ballast = fs.fill_up(512 << 10);
    let answers = append_group(&journal, (9..19).map(big).collect()).await;
    assert!(answers.iter().all(Result::is_err), "{answers:?}");
    assert_eq!(journal.next_seq(), 9);
    // Record 9 had reached segment 0 (synced) before segment 10 ran out
    // of space: it is cut again, segment 10 deleted, and a new segment
    // takes the next append.
    assert_eq!(std::fs::metadata(&first).unwrap().len(), before);
    let segments: Vec<u64> = segment::list(&dir).unwrap().iter().map(|s| s.0).collect();
    assert_eq!(segments, [0, 9]);
    std::fs::remove_file(&ballast).unwrap();

    assert_eq!(journal.append(big(100)).await.unwrap(), 9, "appends go on");
    let check = |journal: &Journal| {
        let records = read_all(journal);
        let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (0..10).collect::<Vec<_>>());
        for record in &records[..9] {
            assert_eq!(record.payload, big(record.seq));
        }
        assert_eq!(records[9].payload, big(100), "nothing refused reads back");
    };
    check(&journal);
    journal.close().await.unwrap();
    let journal = Journal::open(&dir, options).unwrap();
    check(&journal);
    journal.close().await.unwrap();
}

mod recovery_property {
    //! Recovery over arbitrary damage, on the scanner directly (in memory).

    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::super::record::{self, Format, SEGMENT_MAGIC};
    use super::super::scan::{Verdict, scan};

    /// One written record: its group, bytes and payload.
    struct Written {
        group: usize,
        start: usize,
        end: usize,
        payload: Vec<u8>,
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Every group is synced before the next is written; the last one
        /// is the write in flight, cut anywhere, maybe followed by stale
        /// bytes; then bits flip anywhere. Recovery must return only
        /// records as written, every record before the first damage, and
        /// `Corrupt` whenever a damaged record is followed by an intact one
        /// written after it was synced, never when only the write in
        /// flight is damaged.
        #[test]
        fn recovery_never_invents_a_record_and_never_drops_an_acknowledged_one(
            groups in proptest::collection::vec(
                proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..48), 1..5),
                1..7,
            ),
            cut in any::<Index>(),
            stale in proptest::collection::vec(any::<u8>(), 0..64),
            flips in proptest::collection::vec((any::<Index>(), 0u8..8), 0..3),
            first_seq in 0u64..1_000,
        ) {
            let mut bytes = SEGMENT_MAGIC.to_vec();
            let mut written = Vec::new();
            let mut seq = first_seq;
            for (group, payloads) in groups.iter().enumerate() {
                let synced = seq;
                for payload in payloads {
                    let start = bytes.len();
                    record::encode(&mut bytes, seq, 1_700_000_000_000, synced, payload);
                    written.push(Written { group, start, end: bytes.len(), payload: payload.clone() });
                    seq += 1;
                }
            }
            let in_flight = groups.len() - 1;
            let flight_start = written.iter().find(|w| w.group == in_flight).unwrap().start;
            let cut_at = flight_start + cut.index(bytes.len() - flight_start + 1);
            bytes.truncate(cut_at);
            bytes.extend_from_slice(&stale);
            let unflipped = bytes.clone();
            for (at, bit) in &flips {
                let at = at.index(bytes.len());
                bytes[at] ^= 1 << bit;
            }
            // Two flips of one bit cancel: the damage is where the bytes
            // now differ from what was written.
            let damaged_bytes: Vec<usize> =
                (0..bytes.len()).filter(|&at| bytes[at] != unflipped[at]).collect();
            let intact = |w: &Written| {
                w.end <= cut_at && !damaged_bytes.iter().any(|at| (w.start..w.end).contains(at))
            };
            let header_hit = damaged_bytes.iter().any(|at| *at < SEGMENT_MAGIC.len());

            let found = scan(&bytes, first_seq, 1 << 20);

            // Never invented: each record returned is the one written there.
            prop_assert!(found.offsets.len() <= written.len());
            for (i, offset) in found.offsets.iter().enumerate() {
                let w = &written[i];
                prop_assert_eq!(*offset as usize, w.start);
                let (header, _) = record::decode(found.format, &bytes[w.start..], 1 << 20).unwrap();
                prop_assert_eq!(header.seq, first_seq + i as u64);
                prop_assert_eq!(&bytes[w.start + Format::V2.header_len()..w.end], &w.payload[..]);
            }
            // Never dropped before the first damage.
            let first_damaged = if header_hit { 0 } else { written.iter().take_while(|w| intact(w)).count() };
            let corrupt = found.damage.as_ref().is_some_and(|d| d.verdict == Verdict::Corrupt);
            if !corrupt {
                prop_assert!(found.offsets.len() >= first_damaged);
            }
            // Corrupt exactly when an acknowledged record is shown damaged.
            if let Some(k) = written.get(first_damaged) {
                let synced_after = written[first_damaged..].iter().any(|w| w.group > k.group && intact(w));
                if synced_after {
                    prop_assert!(corrupt, "record {first_damaged} damaged, later synced records intact: {:?}", found.damage);
                }
            }
            let only_in_flight = !header_hit && damaged_bytes.iter().all(|at| *at >= flight_start);
            if only_in_flight {
                prop_assert!(!corrupt, "only the write in flight was damaged: {:?}", found.damage);
                prop_assert!(found.offsets.len() >= written.iter().filter(|w| w.group < in_flight).count());
            }
        }
    }
}
