//! One durable subscriber's queue on the hub: a position in the journal and
//! the envelopes it holds unsettled (ready, delayed, in flight).
//!
//! Everything below the queue's floor is settled (acked, dead-lettered, or
//! not selected); the floor is saved as the subscriber's journal cursor, so
//! a restarted hub resumes there and the journal drops what every
//! subscriber has passed. Acks may come in any order: a settled envelope
//! above the floor is simply no longer in any of the sets.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use archiver_core::journal::{Journal, JournalError};
use archiver_core::{SubscriberName, attempt_limit_reached};
use chrono::{DateTime, Utc};

use super::record::{self, HubRecord};
use super::registry::Registered;

/// A connection's routing id on the hub's ROUTER socket.
pub type ConnId = Vec<u8>;

/// Records read from the journal at a time when a queue runs dry.
const SCAN_RECORDS: usize = 64;
const SCAN_BYTES: usize = 4 << 20;

/// An envelope to deliver.
pub struct Ready {
    pub seq: u64,
    /// Deliveries so far (the next one is attempt `deliveries + 1`).
    pub deliveries: u32,
    /// Kept when just read from the journal (its envelope undecoded, a
    /// slice of what the journal read); read again otherwise.
    pub record: Option<HubRecord>,
}

/// An envelope that is to go to the dead letters.
pub struct Doomed {
    pub seq: u64,
    pub attempts: u32,
    pub reason: String,
}

/// What settling a delivery did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Settled {
    /// The delivery's tag.
    pub seq: u64,
    /// The connection that held it, whose credit comes back.
    pub held_by: Option<ConnId>,
    /// The delivery's size, which comes back to that connection's byte
    /// credit.
    pub bytes: usize,
}

/// A delivery in flight: who holds it, its attempt, its size, and since
/// when (for the ack deadline).
struct Held {
    conn: ConnId,
    attempts: u32,
    bytes: usize,
    since: Instant,
}

impl Held {
    fn settled(&self, seq: u64) -> Settled {
        Settled {
            seq,
            held_by: Some(self.conn.clone()),
            bytes: self.bytes,
        }
    }
}

/// One subscriber's queue.
pub struct Queue {
    pub name: SubscriberName,
    pub registered: Registered,
    /// The next journal sequence to examine.
    next: u64,
    ready: VecDeque<Ready>,
    delayed: BTreeSet<(Instant, u64)>,
    delayed_deliveries: HashMap<u64, u32>,
    inflight: HashMap<u64, Held>,
    /// Every sequence in `ready`, `delayed` or `inflight`.
    unsettled: BTreeSet<u64>,
    /// The floor last saved as the journal cursor.
    saved_floor: u64,
    /// Connections consuming this queue, served in turn.
    pub consumers: Vec<ConnId>,
    turn: usize,
    /// When the floor last moved (or the hub opened the queue): how long
    /// this queue has held the journal where it is.
    pub floor_moved_at: DateTime<Utc>,
}

impl Queue {
    /// A queue whose cursor stands at `floor`.
    pub fn new(name: SubscriberName, registered: Registered, floor: u64) -> Self {
        Self {
            name,
            registered,
            next: floor,
            ready: VecDeque::new(),
            delayed: BTreeSet::new(),
            delayed_deliveries: HashMap::new(),
            inflight: HashMap::new(),
            unsettled: BTreeSet::new(),
            saved_floor: floor,
            consumers: Vec::new(),
            turn: 0,
            floor_moved_at: Utc::now(),
        }
    }

    /// The journal cursor name of a subscriber.
    pub fn cursor_name(name: &SubscriberName) -> String {
        format!("subscriber.{name}")
    }

    /// Everything below this is settled.
    pub fn floor(&self) -> u64 {
        self.unsettled.first().copied().unwrap_or(self.next)
    }

    /// Saves the floor as the journal cursor if it moved.
    pub fn save_floor(&mut self, journal: &Journal) -> Result<(), JournalError> {
        let floor = self.floor();
        if floor != self.saved_floor {
            journal.set_cursor(&Self::cursor_name(&self.name), floor)?;
            self.saved_floor = floor;
            self.floor_moved_at = Utc::now();
        }
        Ok(())
    }

    /// Envelopes held unsettled, and journal records not yet examined.
    pub fn backlog(&self, journal: &Journal) -> (usize, u64) {
        (
            self.unsettled.len(),
            journal.next_seq().saturating_sub(self.next),
        )
    }

    /// Deliveries in flight on its connections.
    pub fn held(&self) -> usize {
        self.inflight.len()
    }

    /// When the next delayed envelope is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.delayed.first().map(|(due, _)| *due)
    }

    /// The next consumer (in turn) with credit left, per `credit`.
    pub fn pick_consumer(&mut self, mut credit: impl FnMut(&ConnId) -> bool) -> Option<ConnId> {
        let n = self.consumers.len();
        for i in 0..n {
            let index = (self.turn + i) % n;
            if credit(&self.consumers[index]) {
                self.turn = (index + 1) % n;
                return Some(self.consumers[index].clone());
            }
        }
        None
    }

    /// The next envelope to deliver: due redeliveries first, then what is
    /// ready, then the journal's next selected records.
    pub fn next_ready(&mut self, journal: &Journal, now: Instant) -> Option<Ready> {
        while let Some(&(due, seq)) = self.delayed.first() {
            if due > now {
                break;
            }
            self.delayed.pop_first();
            let deliveries = self.delayed_deliveries.remove(&seq).unwrap_or(0);
            self.ready.push_back(Ready {
                seq,
                deliveries,
                record: None,
            });
        }
        if self.ready.is_empty() {
            self.scan(journal);
        }
        self.ready.pop_front()
    }

    /// Reads on from `next` until something is selected or the journal's
    /// end is reached.
    fn scan(&mut self, journal: &Journal) {
        if self.registered.selection.is_err() {
            // Receives nothing, and keeps its place for when a hello
            // replaces the selection.
            return;
        }
        while self.ready.is_empty() && self.next < journal.next_seq() {
            let records = match journal.read(self.next, SCAN_RECORDS, SCAN_BYTES) {
                Ok(records) if !records.is_empty() => records,
                Ok(_) => return,
                Err(error) => {
                    tracing::error!(subscriber = %self.name, %error, "cannot read the journal; will retry");
                    return;
                }
            };
            for r in records {
                self.next = r.seq + 1;
                let hub_record = match record::read(r.payload) {
                    Ok(hub_record) => hub_record,
                    Err(error) => {
                        tracing::error!(seq = r.seq, %error, "unreadable journal record skipped");
                        continue;
                    }
                };
                let for_us = hub_record
                    .only_for
                    .as_ref()
                    .is_none_or(|only| *only == self.name);
                if for_us && self.registered.selects(&hub_record.header) {
                    self.unsettled.insert(r.seq);
                    self.ready.push_back(Ready {
                        seq: r.seq,
                        deliveries: 0,
                        record: Some(hub_record),
                    });
                }
            }
        }
    }

    /// Records a delivery of `bytes` as in flight on `conn` from `now`;
    /// returns its attempt.
    pub fn delivered(
        &mut self,
        seq: u64,
        deliveries: u32,
        conn: ConnId,
        bytes: usize,
        now: Instant,
    ) -> u32 {
        let attempt = deliveries + 1;
        self.inflight.insert(
            seq,
            Held {
                conn,
                attempts: attempt,
                bytes,
                since: now,
            },
        );
        attempt
    }

    /// Puts back a delivery that could not be sent (its attempt not used).
    pub fn unsent(&mut self, ready: Ready) {
        self.inflight.remove(&ready.seq);
        self.ready.push_front(ready);
    }

    /// Whether `seq` is in flight on `conn`: a connection settles only
    /// what was delivered to it.
    pub fn holds(&self, seq: u64, conn: &ConnId) -> bool {
        self.inflight
            .get(&seq)
            .is_some_and(|held| held.conn == *conn)
    }

    /// Done with `seq`: acked by the connection that holds it (the caller
    /// checked [`Self::holds`]), or passed over undelivered (its
    /// subscriber's principals are not granted it).
    pub fn ack(&mut self, seq: u64) -> Settled {
        if !self.unsettled.remove(&seq) {
            return Settled::default();
        }
        if let Some(held) = self.inflight.remove(&seq) {
            return held.settled(seq);
        }
        self.ready.retain(|r| r.seq != seq);
        if self.delayed_deliveries.remove(&seq).is_some() {
            self.delayed.retain(|(_, s)| *s != seq);
        }
        Settled::default()
    }

    /// Takes `seq` back from `conn` if that connection holds it; `None` for
    /// a stale settlement (the delivery went elsewhere since).
    fn take_back(&mut self, seq: u64, conn: &ConnId) -> Option<(Settled, u32)> {
        match self.inflight.get(&seq) {
            Some(held) if held.conn == *conn => self
                .inflight
                .remove(&seq)
                .map(|held| (held.settled(seq), held.attempts)),
            _ => None,
        }
    }

    /// Failed for now: again after `delay`, or to the dead letters at the
    /// attempt limit.
    pub fn nack(
        &mut self,
        seq: u64,
        conn: &ConnId,
        delay: Duration,
        how: &str,
        now: Instant,
    ) -> (Settled, Option<Doomed>) {
        let Some((settled, attempts)) = self.take_back(seq, conn) else {
            return (Settled::default(), None);
        };
        if let Some(reason) = attempt_limit_reached(how, attempts, self.registered.max_attempts) {
            return (settled, Some(self.doom(seq, attempts, reason)));
        }
        if delay.is_zero() {
            self.ready.push_back(Ready {
                seq,
                deliveries: attempts,
                record: None,
            });
        } else {
            self.delayed.insert((now + delay, seq));
            self.delayed_deliveries.insert(seq, attempts);
        }
        (settled, None)
    }

    /// Dropped unsettled by its consumer: back to the front, attempt counted.
    pub fn release(&mut self, seq: u64, conn: &ConnId) -> (Settled, Option<Doomed>) {
        let Some((settled, attempts)) = self.take_back(seq, conn) else {
            return (Settled::default(), None);
        };
        (settled, self.requeue_front(seq, attempts, "abandoned"))
    }

    /// Cannot ever succeed: to the dead letters.
    pub fn reject(&mut self, seq: u64, conn: &ConnId, reason: String) -> (Settled, Option<Doomed>) {
        let Some((settled, attempts)) = self.take_back(seq, conn) else {
            return (Settled::default(), None);
        };
        (settled, Some(self.doom(seq, attempts, reason)))
    }

    /// A connection is gone: what it held goes back to the front of the
    /// queue in order, each attempt counted, or to the dead letters at the
    /// attempt limit.
    pub fn abandon(&mut self, conn: &ConnId) -> Vec<Doomed> {
        self.consumers.retain(|c| c != conn);
        self.take_back_all(|held| held.conn == *conn, "abandoned").1
    }

    /// Deliveries held unsettled for `deadline` or longer go back to the
    /// front of the queue, each counted as an attempt (so a mail that hangs
    /// every consumer reaches the dead letters); returns the holders'
    /// credit and what reached the attempt limit.
    pub fn expire(&mut self, now: Instant, deadline: Duration) -> (Vec<Settled>, Vec<Doomed>) {
        self.take_back_all(
            |held| now.saturating_duration_since(held.since) >= deadline,
            "not settled within the ack deadline",
        )
    }

    /// Takes back every delivery `which` picks, in order, to the front of
    /// the queue.
    fn take_back_all(
        &mut self,
        which: impl Fn(&Held) -> bool,
        how: &str,
    ) -> (Vec<Settled>, Vec<Doomed>) {
        let mut taken: Vec<u64> = self
            .inflight
            .iter()
            .filter(|(_, held)| which(held))
            .map(|(seq, _)| *seq)
            .collect();
        taken.sort_unstable();
        let mut settled = Vec::new();
        let mut doomed = Vec::new();
        for seq in taken.into_iter().rev() {
            let held = self.inflight.remove(&seq).expect("listed above");
            settled.push(held.settled(seq));
            doomed.extend(self.requeue_front(seq, held.attempts, how));
        }
        (settled, doomed)
    }

    fn requeue_front(&mut self, seq: u64, attempts: u32, how: &str) -> Option<Doomed> {
        if let Some(reason) = attempt_limit_reached(how, attempts, self.registered.max_attempts) {
            return Some(self.doom(seq, attempts, reason));
        }
        self.ready.push_front(Ready {
            seq,
            deliveries: attempts,
            record: None,
        });
        None
    }

    /// Takes `seq` out of the queue for the dead letters. If keeping the
    /// dead letter fails, the caller gives it back with [`Self::retry_later`].
    fn doom(&mut self, seq: u64, attempts: u32, reason: String) -> Doomed {
        self.unsettled.remove(&seq);
        Doomed {
            seq,
            attempts,
            reason,
        }
    }

    /// A dead letter that could not be kept: back into the queue after a
    /// while, so nothing is lost.
    pub fn retry_later(&mut self, doomed: Doomed, now: Instant) {
        self.unsettled.insert(doomed.seq);
        self.delayed
            .insert((now + Duration::from_secs(5), doomed.seq));
        self.delayed_deliveries
            .insert(doomed.seq, doomed.attempts.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use archiver_core::journal::JournalOptions;
    use archiver_core::{Envelope, ListChange, ListEvent, ListId, MailingList, Selection};

    fn queue(max_attempts: u32) -> Queue {
        Queue::new(
            "web".parse().unwrap(),
            Registered {
                selection: Ok(Selection::all()),
                max_attempts,
            },
            0,
        )
    }

    async fn journal_with(count: usize) -> (tempfile::TempDir, Journal) {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path(), JournalOptions::default()).unwrap();
        let list = ListId::new("a.example.org").unwrap();
        for _ in 0..count {
            let envelope = Envelope::event(
                &ListEvent::now(list.clone(), ListChange::ListDeleted),
                &MailingList::public(list.clone()),
            );
            journal
                .append(record::published(&envelope).0)
                .await
                .unwrap();
        }
        (dir, journal)
    }

    #[tokio::test]
    async fn out_of_order_acks_move_the_floor_only_past_settled_records() {
        let (_dir, journal) = journal_with(3).await;
        let mut q = queue(5);
        let now = Instant::now();
        let conn = b"c".to_vec();
        let taken: Vec<Ready> = (0..3)
            .map(|_| q.next_ready(&journal, now).unwrap())
            .collect();
        for r in &taken {
            q.delivered(r.seq, r.deliveries, conn.clone(), 1, now);
        }
        assert!(q.next_ready(&journal, now).is_none());
        assert_eq!(q.floor(), 0);
        assert_eq!(q.ack(2).held_by, Some(conn.clone()));
        assert_eq!(q.floor(), 0, "seq 0 and 1 still unsettled");
        q.ack(0);
        assert_eq!(q.floor(), 1);
        q.ack(1);
        assert_eq!(q.floor(), 3);
        assert_eq!(q.ack(1), Settled::default(), "a second ack is a no-op");
    }

    #[tokio::test]
    async fn abandoned_and_nacked_deliveries_count_attempts_up_to_the_limit() {
        let (_dir, journal) = journal_with(2).await;
        let mut q = queue(2);
        let now = Instant::now();
        let (a, b) = (b"a".to_vec(), b"b".to_vec());
        let first = q.next_ready(&journal, now).unwrap();
        assert_eq!(
            q.delivered(first.seq, first.deliveries, a.clone(), 1, now),
            1
        );
        let second = q.next_ready(&journal, now).unwrap();
        q.delivered(second.seq, second.deliveries, a.clone(), 1, now);
        assert!(q.abandon(&a).is_empty());
        let again = q.next_ready(&journal, now).unwrap();
        assert_eq!(
            (again.seq, again.deliveries),
            (0, 1),
            "back in order, at the front"
        );
        assert_eq!(
            q.delivered(again.seq, again.deliveries, b.clone(), 1, now),
            2
        );
        assert_eq!(
            q.nack(0, &a, Duration::ZERO, "nacked", now).0,
            Settled::default(),
            "stale"
        );
        let (settled, doomed) = q.nack(0, &b, Duration::ZERO, "nacked", now);
        assert_eq!(settled.held_by, Some(b.clone()));
        let doomed = doomed.expect("attempt limit of 2 reached");
        assert_eq!((doomed.seq, doomed.attempts), (0, 2));
        assert_eq!(q.floor(), 1);
    }

    #[tokio::test]
    async fn delayed_nacks_wait_and_late_acks_cancel_redelivery() {
        let (_dir, journal) = journal_with(1).await;
        let mut q = queue(5);
        let now = Instant::now();
        let conn = b"c".to_vec();
        let r = q.next_ready(&journal, now).unwrap();
        q.delivered(r.seq, r.deliveries, conn.clone(), 1, now);
        q.nack(0, &conn, Duration::from_secs(1), "nacked", now);
        assert!(q.next_ready(&journal, now).is_none());
        assert_eq!(q.next_due(), Some(now + Duration::from_secs(1)));
        q.ack(0);
        assert!(
            q.next_ready(&journal, now + Duration::from_secs(2))
                .is_none()
        );
        assert_eq!(q.floor(), 1);
    }

    #[tokio::test]
    async fn deliveries_past_the_ack_deadline_come_back_as_attempts() {
        let (_dir, journal) = journal_with(1).await;
        let mut q = queue(2);
        let now = Instant::now();
        let deadline = Duration::from_secs(60);
        let conn = b"c".to_vec();
        let r = q.next_ready(&journal, now).unwrap();
        q.delivered(r.seq, r.deliveries, conn.clone(), 10, now);
        let (settled, doomed) = q.expire(now + deadline / 2, deadline);
        assert!(settled.is_empty() && doomed.is_empty(), "not due yet");
        let (settled, doomed) = q.expire(now + deadline, deadline);
        assert_eq!(settled[0].bytes, 10);
        assert!(doomed.is_empty());
        let again = q.next_ready(&journal, now).unwrap();
        assert_eq!(again.deliveries, 1, "the expiry counted as an attempt");
        q.delivered(again.seq, again.deliveries, conn.clone(), 10, now);
        let (_, doomed) = q.expire(now + deadline, deadline);
        assert_eq!(doomed[0].attempts, 2, "the attempt limit reached");
        assert!(
            doomed[0].reason.contains("ack deadline"),
            "{}",
            doomed[0].reason
        );
        assert_eq!(q.floor(), 1);
    }
}
