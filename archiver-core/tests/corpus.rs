//! The shared corpus of real list mail: the mbox reader gives back every
//! message exactly as SOURCES.tsv describes it, and every malformed file
//! either archives byte for byte or returns a typed error, never a panic.

use std::collections::BTreeMap;
use std::fs;

use archiver_core::conformance::{corpus_dir, corpus_mbox};
use archiver_core::{
    ArchiveError, ArchiveUrls, ArchivedMail, Archiver, ListId, MailLimits, MailingList, MboxReader,
    MemoryBackend, Outcome, QueueArchiver, Subscriber, Subscription,
};
use bytes::Bytes;
use futures::StreamExt;

fn corpus_present(test: &str) -> bool {
    corpus_mbox(test).is_some()
}

#[test]
fn mbox_reader_gives_back_every_message_as_sources_tsv_describes() {
    if !corpus_present("mbox_reader") {
        return;
    }
    let sources = fs::read_to_string(corpus_dir().join("SOURCES.tsv")).unwrap();
    let rows: Vec<Vec<&str>> = sources
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    let messages: Vec<Bytes> = MboxReader::open(corpus_dir().join("lists.mbox"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(messages.len(), rows.len());

    let mut from_quoted = 0;
    for (raw, row) in messages.iter().zip(&rows) {
        let (n, message_id, list_id, size) = (row[0], row[4], row[5], row[6]);
        assert_eq!(raw.len().to_string(), size, "size of message {n}");
        let mail = ArchivedMail::parse(raw.clone(), &MailLimits::default()).unwrap();
        assert_eq!(
            mail.meta().message_id,
            message_id,
            "Message-ID of message {n}"
        );
        assert_eq!(
            mail.meta().list_id,
            Some(ListId::from_header(list_id).unwrap()),
            "List-Id of message {n}"
        );
        if raw.split(|b| *b == b'\n').any(|line| {
            let unquoted = line
                .iter()
                .position(|b| *b != b'>')
                .map_or(&[][..], |i| &line[i..]);
            unquoted.starts_with(b"From ")
        }) {
            from_quoted += 1;
        }
    }
    assert_eq!(
        from_quoted, 20,
        "the corpus README says 20 messages needed From-escaping"
    );
}

#[tokio::test]
async fn malformed_mail_archives_byte_exact_or_gives_a_typed_error() {
    if !corpus_present("malformed") {
        return;
    }
    let backend = MemoryBackend::new();
    let mut deliveries = backend
        .subscribe(&Subscription::new("malformed".parse().unwrap()))
        .await
        .unwrap();
    let archiver = QueueArchiver::new(
        "malformed",
        backend.connect(),
        ArchiveUrls::new("https://archive.example.org/").unwrap(),
    );
    let list = MailingList::public(ListId::new("malformed.lists.example.org").unwrap());
    let mut files: Vec<_> = fs::read_dir(corpus_dir().join("malformed"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 50,
        "expected the malformed corpus, found {} files",
        files.len()
    );

    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for path in &files {
        let raw = Bytes::from(fs::read(path).unwrap());
        let outcome = match archiver.archive_message(&list, raw.clone()).await {
            Ok(receipt) if receipt.outcome == Outcome::Published => {
                let delivery = deliveries.next().await.unwrap().unwrap();
                assert!(
                    delivery.envelope().body == raw,
                    "{} changed on the way",
                    path.display()
                );
                assert_eq!(
                    delivery.envelope().message_id_hash.as_deref(),
                    Some(receipt.message_id_hash.as_str())
                );
                delivery.ack().await.unwrap();
                "published".to_owned()
            }
            Ok(receipt) => format!("skipped: {:?}", receipt.outcome),
            Err(ArchiveError::Mail(error)) => format!("refused: {error}"),
            Err(other) => panic!("{}: unexpected error {other}", path.display()),
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    eprintln!("malformed corpus, {} files: {outcomes:#?}", files.len());
    assert!(outcomes.get("published").copied().unwrap_or(0) > files.len() / 2);
}
