//! An archive server that keeps a JSON index of each list's threads and
//! list events.
//!
//! Every mail and event is appended as one JSON line to `<root>/<list-id>.jsonl`
//! before it is acknowledged; [`ThreadIndex::write_threads`] turns those into
//! `<root>/<list-id>.threads.json`, the mails grouped into threads by
//! In-Reply-To and References. Reopening the index reads the journals back,
//! so redelivered mails are recognised after a restart too.

use std::collections::{HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use mq_archiver::async_trait;
use mq_archiver::{ArchivedMail, Delivery, Handler, HandlerError, Kind, ListEvent, MailLimits};
use serde::{Deserialize, Serialize};

/// One line of a list's journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
enum Record {
    Mail(MailEntry),
    Event {
        envelope_id: String,
        event: ListEvent,
    },
}

/// What the index keeps of a mail.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MailEntry {
    /// Mailman's Message-ID-Hash: the permalink key.
    pub message_id_hash: String,
    /// The Message-ID, without brackets.
    pub message_id: String,
    /// Decoded subject.
    pub subject: Option<String>,
    /// Sender address.
    pub from: Option<String>,
    /// Date header.
    pub date: Option<DateTime<Utc>>,
    /// Message-ID it replies to.
    pub in_reply_to: Option<String>,
    /// References, oldest first.
    pub references: Vec<String>,
}

/// A thread: a root mail and every mail that replies to it, by date.
#[derive(Debug, Clone, Serialize)]
pub struct Thread {
    /// Subject of the root mail.
    pub subject: Option<String>,
    /// Mails of the thread, the root first, then by date.
    pub messages: Vec<MailEntry>,
}

#[derive(Default)]
struct ListIndex {
    seen: HashSet<String>,
    mails: Vec<MailEntry>,
    events: Vec<ListEvent>,
}

/// The thread index; cheap to share between runner tasks.
pub struct ThreadIndex {
    root: PathBuf,
    sync: bool,
    lists: Arc<Mutex<HashMap<String, ListIndex>>>,
}

impl ThreadIndex {
    /// Opens (or creates) an index under `root`, reading back its journals.
    /// With `sync`, each journal line is fsynced before the ack.
    pub fn open(root: impl Into<PathBuf>, sync: bool) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        let mut lists = HashMap::new();
        for entry in fs::read_dir(&root)? {
            let path = entry?.path();
            let Some(list_id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".jsonl"))
            else {
                continue;
            };
            lists.insert(list_id.to_owned(), read_journal(&path)?);
        }
        Ok(Self {
            root,
            sync,
            lists: Arc::new(Mutex::new(lists)),
        })
    }

    /// Mails indexed so far, over all lists.
    pub fn mail_count(&self) -> usize {
        self.lock().values().map(|l| l.mails.len()).sum()
    }

    /// Events indexed so far, over all lists.
    pub fn event_count(&self) -> usize {
        self.lock().values().map(|l| l.events.len()).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ListIndex>> {
        self.lists.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `<list-id>.threads.json` for every list; returns how many
    /// threads were written.
    pub fn write_threads(&self) -> io::Result<usize> {
        let mut total = 0;
        for (list_id, index) in self.lock().iter() {
            let threads = threads(&index.mails);
            total += threads.len();
            let document = serde_json::json!({
                "list_id": list_id,
                "threads": threads,
                "events": index.events,
            });
            let path = self.root.join(format!("{list_id}.threads.json"));
            fs::write(path, serde_json::to_vec_pretty(&document)?)?;
        }
        Ok(total)
    }
}

/// Reads a journal back. A torn last line (crash mid-write) is skipped, and
/// the file is ended with a newline so later appends stay well formed; the
/// torn record's mail was never acked, so it is delivered again.
fn read_journal(path: &Path) -> io::Result<ListIndex> {
    let bytes = fs::read(path)?;
    let mut index = ListIndex::default();
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<Record>(line) {
            Ok(record) => {
                index.apply(record);
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "skipping an unreadable journal line")
            }
        }
    }
    if bytes.last().is_some_and(|b| *b != b'\n') {
        OpenOptions::new()
            .append(true)
            .open(path)?
            .write_all(b"\n")?;
    }
    Ok(index)
}

impl ListIndex {
    /// Adds a record; false when it was already there (a redelivery).
    fn apply(&mut self, record: Record) -> bool {
        match record {
            Record::Mail(entry) => {
                let new = self.seen.insert(entry.message_id_hash.clone());
                if new {
                    self.mails.push(entry);
                }
                new
            }
            Record::Event { envelope_id, event } => {
                let new = self.seen.insert(envelope_id);
                if new {
                    self.events.push(event);
                }
                new
            }
        }
    }
}

/// Groups mails into threads: a mail's parent is its In-Reply-To, else its
/// last Reference, when that mail is in the list; loops are cut.
fn threads(mails: &[MailEntry]) -> Vec<Thread> {
    let by_id: HashMap<&str, usize> = mails
        .iter()
        .enumerate()
        .map(|(i, m)| (m.message_id.as_str(), i))
        .collect();
    let parent = |i: usize| {
        let mail = &mails[i];
        mail.in_reply_to
            .iter()
            .chain(mail.references.iter().rev())
            .find_map(|id| by_id.get(id.as_str()).copied())
            .filter(|p| *p != i)
    };
    let mut groups: HashMap<usize, Vec<usize>> = HashMap::new();
    for i in 0..mails.len() {
        let mut path = vec![i];
        let mut root = i;
        while let Some(p) = parent(root) {
            if let Some(start) = path.iter().position(|&seen| seen == p) {
                // A reply loop: every member of the cycle agrees on its lowest.
                root = *path[start..].iter().min().expect("a cycle has members");
                break;
            }
            path.push(p);
            root = p;
        }
        groups.entry(root).or_default().push(i);
    }
    let mut threads: Vec<(usize, Thread)> = groups
        .into_iter()
        .map(|(root, mut members)| {
            members.sort_by_key(|&i| (i != root, mails[i].date, i));
            let messages = members.into_iter().map(|i| mails[i].clone()).collect();
            (
                root,
                Thread {
                    subject: mails[root].subject.clone(),
                    messages,
                },
            )
        })
        .collect();
    threads.sort_by_key(|(root, _)| (mails[*root].date, *root));
    threads.into_iter().map(|(_, thread)| thread).collect()
}

#[async_trait]
impl Handler for ThreadIndex {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let envelope = delivery.envelope();
        let record = match envelope.kind {
            Kind::Mail => {
                let unlimited = MailLimits {
                    max_bytes: usize::MAX,
                };
                let mail = ArchivedMail::parse(envelope.body.clone(), &unlimited)
                    .map_err(HandlerError::permanent)?;
                let meta = mail.meta();
                Record::Mail(MailEntry {
                    message_id_hash: meta.message_id_hash.clone(),
                    message_id: meta.message_id.clone(),
                    subject: meta.subject.clone(),
                    from: meta.from_address.clone(),
                    date: meta.date,
                    in_reply_to: meta.in_reply_to.clone(),
                    references: meta.references.clone(),
                })
            }
            Kind::Event => Record::Event {
                envelope_id: envelope.id.to_string(),
                event: ListEvent::from_json(&envelope.body).map_err(HandlerError::permanent)?,
            },
        };
        let (lists, sync) = (Arc::clone(&self.lists), self.sync);
        let path = self.root.join(format!("{}.jsonl", envelope.list_id));
        let list_id = envelope.list_id.to_string();
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            let mut lists = lists.lock().unwrap_or_else(|p| p.into_inner());
            let index = lists.entry(list_id).or_default();
            let mut line = serde_json::to_vec(&record)?;
            if !index.apply(record) {
                return Ok(());
            }
            line.push(b'\n');
            let mut journal = OpenOptions::new().create(true).append(true).open(&path)?;
            journal.write_all(&line)?;
            if sync {
                journal.sync_data()?;
            }
            Ok(())
        })
        .await
        .map_err(HandlerError::retryable)?
        .map_err(|e| HandlerError::retryable(format!("writing the thread index failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, in_reply_to: Option<&str>, references: &[&str], minute: i64) -> MailEntry {
        MailEntry {
            message_id_hash: id.to_uppercase(),
            message_id: id.to_owned(),
            subject: Some(format!("subject {id}")),
            from: None,
            date: DateTime::from_timestamp(minute * 60, 0),
            in_reply_to: in_reply_to.map(str::to_owned),
            references: references.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn groups_replies_and_survives_loops() {
        let mails = vec![
            entry("root", None, &[], 0),
            entry("reply", Some("root"), &["root"], 2),
            entry("deep", None, &["root", "reply"], 3),
            entry("orphan", Some("unknown"), &[], 1),
            entry("loop-a", Some("loop-b"), &[], 4),
            entry("loop-b", Some("loop-a"), &[], 5),
            entry("into-loop", Some("loop-b"), &[], 6),
        ];
        let threads = threads(&mails);
        let ids: Vec<Vec<&str>> = threads
            .iter()
            .map(|t| t.messages.iter().map(|m| m.message_id.as_str()).collect())
            .collect();
        assert_eq!(ids.len(), 3);
        assert!(ids.contains(&vec!["root", "reply", "deep"]));
        assert!(ids.contains(&vec!["orphan"]));
        assert!(ids.contains(&vec!["loop-a", "loop-b", "into-loop"]));
        assert_eq!(ids.iter().map(Vec::len).sum::<usize>(), 7);
    }
}
