//! What every contender (ours on each backend, each raw client, omniqueue)
//! offers the scenarios: durable subscribers to create, producers that
//! return once the broker has the mails, and consumers that ack what they
//! received.

use std::time::Instant;

use async_trait::async_trait;
use mq_archiver::Envelope;

/// One received mail: which one, how big, and when it arrived (before its
/// ack), for end-to-end latency.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// The envelope id, as a number.
    pub id: u128,
    /// Body bytes.
    pub bytes: usize,
    /// When the consumer had it decoded.
    pub at: Instant,
}

/// Publishes with durability confirmed.
#[async_trait]
pub trait Producer: Send + Sync {
    /// Publishes `batch` and returns once the broker (or hub) confirmed
    /// every mail in it. Batches are how a hand-written client pipelines;
    /// ours are the concurrent `publish` calls a list server makes.
    async fn send(&self, batch: &[Envelope]) -> anyhow::Result<()>;
}

/// Receives and acks.
#[async_trait]
pub trait Consumer: Send {
    /// Waits for at least one mail, takes what else is ready (up to the
    /// prefetch), pushes each onto `arrivals` as it is decoded, and acks them
    /// all before returning.
    async fn receive(&mut self, arrivals: &mut Vec<Arrival>) -> anyhow::Result<()>;
}

/// A contender on one broker.
#[async_trait]
pub trait System: Send + Sync {
    /// Why it cannot have several durable subscribers, if it cannot.
    fn no_fan_out(&self) -> Option<&'static str> {
        None
    }

    /// Creates `subscribers` durable subscribers (queues, groups), empty,
    /// named `0..subscribers`, so what is published next reaches each.
    async fn prepare(&self, subscribers: usize) -> anyhow::Result<()>;

    /// A producer (its own connection).
    async fn producer(&self) -> anyhow::Result<Box<dyn Producer>>;

    /// A consumer of subscriber `subscriber` (its own connection); several
    /// consumers of one subscriber compete.
    async fn consumer(&self, subscriber: usize) -> anyhow::Result<Box<dyn Consumer>>;

    /// Deletes what [`prepare`](Self::prepare) made, and what is in it.
    async fn cleanup(&self) -> anyhow::Result<()>;
}

/// The envelope id of a `wire::to_bytes` payload, read from its second
/// line without parsing the rest (the payload raw zmq and omniqueue carry).
pub fn id_of_payload(payload: &[u8]) -> anyhow::Result<u128> {
    const FIELD: &[u8] = b"\nenvelope-id: ";
    let start = payload
        .windows(FIELD.len())
        .position(|w| w == FIELD)
        .ok_or_else(|| anyhow::anyhow!("payload has no envelope-id"))?
        + FIELD.len();
    let text = payload
        .get(start..start + 36)
        .ok_or_else(|| anyhow::anyhow!("payload's envelope-id is cut short"))?;
    id_of_text(std::str::from_utf8(text)?)
}

/// An envelope id given as text (a header, a stream field).
pub fn id_of_text(text: &str) -> anyhow::Result<u128> {
    Ok(uuid::Uuid::parse_str(text)?.as_u128())
}

/// Bytes of the body of a `wire::to_bytes` payload.
pub fn body_len_of_payload(payload: &[u8]) -> usize {
    payload
        .windows(2)
        .position(|w| w == b"\n\n")
        .map_or(payload.len(), |end| payload.len() - end - 2)
}
