//! Appends COUNT corpus mails (default 100,000) from 16 threads, each
//! waiting for its append to be durable, to one store with group commit:
//! a writer thread takes every waiting append, commits them together with
//! one sync, then answers them. Prints mails/s and appends per commit.

use std::sync::mpsc;
use std::thread;
use std::time::Instant;

const PUBLISHERS: usize = 16;

type Request = (Vec<u8>, mpsc::Sender<()>);

/// The corpus mails, split at mbox separators.
fn corpus() -> Vec<Vec<u8>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/corpus/lists.mbox"
    );
    let data = std::fs::read(path).expect("the corpus beside the project");
    let mut mails = Vec::new();
    let mut start = 0;
    for i in 1..data.len().saturating_sub(5) {
        if &data[i - 1..i + 5] == b"\nFrom " {
            mails.push(data[start..i].to_vec());
            start = i;
        }
    }
    mails.push(data[start..].to_vec());
    mails
}

/// Runs the publishers against `commit`, which makes a group durable.
fn run(
    name: &str,
    mails: &[Vec<u8>],
    count: usize,
    mut commit: impl FnMut(&[Request]) + Send + 'static,
) {
    let (requests, received) = mpsc::channel::<Request>();
    let writer = thread::spawn(move || {
        let mut commits = 0u64;
        let mut group = Vec::new();
        while let Ok(first) = received.recv() {
            group.push(first);
            group.extend(received.try_iter());
            commit(&group);
            for (_, reply) in group.drain(..) {
                let _ = reply.send(());
            }
            commits += 1;
        }
        commits
    });
    let started = Instant::now();
    let per_publisher = count / PUBLISHERS;
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let requests = requests.clone();
            let mails = mails.to_vec();
            thread::spawn(move || {
                let (reply, answer) = mpsc::channel();
                for i in 0..per_publisher {
                    let mail = mails[(p * per_publisher + i) % mails.len()].clone();
                    requests.send((mail, reply.clone())).unwrap();
                    answer.recv().unwrap();
                }
            })
        })
        .collect();
    drop(requests);
    for publisher in publishers {
        publisher.join().unwrap();
    }
    let commits = writer.join().unwrap();
    let total = per_publisher * PUBLISHERS;
    let took = started.elapsed().as_secs_f64();
    println!(
        "{name}: {total} mails in {took:.2} s = {:.0} mails/s, {:.1} appends per commit",
        total as f64 / took,
        total as f64 / commits as f64
    );
}

fn main() {
    let store = std::env::args().nth(1).expect("redb, fjall or segment");
    let count = std::env::args()
        .nth(2)
        .map_or(100_000, |n| n.parse().unwrap());
    let mails = corpus();
    let dir = tempfile_dir();
    match store.as_str() {
        "redb" => {
            const TABLE: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("records");
            let db = redb::Database::create(dir.join("journal.redb")).unwrap();
            let mut seq = 0u64;
            run("redb", &mails, count, move |group| {
                let txn = db.begin_write().unwrap();
                {
                    let mut table = txn.open_table(TABLE).unwrap();
                    for (mail, _) in group {
                        seq += 1;
                        table.insert(seq, mail.as_slice()).unwrap();
                    }
                }
                txn.commit().unwrap(); // Durability::Immediate, the default
            });
        }
        "fjall" => {
            let db = fjall::Database::builder(dir.join("fjall")).open().unwrap();
            let records = db
                .keyspace("records", fjall::KeyspaceCreateOptions::default)
                .unwrap();
            let mut seq = 0u64;
            run("fjall", &mails, count, move |group| {
                let mut batch = db.batch();
                for (mail, _) in group {
                    seq += 1;
                    batch.insert(&records, seq.to_be_bytes(), mail.as_slice());
                }
                batch.commit().unwrap();
                db.persist(fjall::PersistMode::SyncData).unwrap();
            });
        }
        "segment" => {
            use std::io::Write;
            let mut file = std::fs::File::create(dir.join("segment.log")).unwrap();
            let mut seq = 0u64;
            let mut buffer = Vec::new();
            run("segment", &mails, count, move |group| {
                buffer.clear();
                for (mail, _) in group {
                    seq += 1;
                    buffer.extend_from_slice(&(mail.len() as u32).to_le_bytes());
                    buffer.extend_from_slice(&crc32c::crc32c(mail).to_le_bytes());
                    buffer.extend_from_slice(&seq.to_le_bytes());
                    buffer.extend_from_slice(mail);
                }
                file.write_all(&buffer).unwrap();
                file.sync_data().unwrap();
            });
        }
        other => panic!("unknown store {other}: redb, fjall or segment"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A fresh directory under this program's target dir (the real disk).
fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/data"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
