//! The messages list server and archive servers exchange, as ZeroMQ frames:
//! encoding, and decoding that refuses anything malformed with a reason
//! instead of panicking. `docs/wire-format.md` ("ZeroMQ") is the reference
//! for clients in other languages.
//!
//! Every message starts with a command frame (upper-case ASCII); the frames
//! after it depend on the command. An envelope travels as one frame in the
//! wire format's one-byte-string form (`archiver_core::wire::to_bytes`:
//! its fields as `name: value` lines, an empty line, the body untouched),
//! in DELIVER, on the live tail and in DEAD-LETTERS alike: the hub keeps
//! it so in its journal and sends it without decoding it.

use std::time::Duration;

use archiver_core::wire::{self, WireError};
use archiver_core::{
    DeadLetter, Envelope, Kind, ListId, ListPattern, Selection, StartPosition,
    SubscriberCapabilities, SubscriberName,
};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The protocol version a hello carries; a hub refuses any other with
/// DENIED naming both versions, so an archive server and a hub of
/// different versions get a clear error instead of misreading each other.
/// Version 2: WELCOME carries the hub's capabilities. Version 3: DELIVER
/// and the tail carry the envelope as one frame in the one-byte-string
/// form, as DEAD-LETTERS does.
pub const PROTOCOL_VERSION: u32 = 3;

/// Largest frame a hub accepts from an archive server: commands are
/// small, so anything bigger is garbage (libzmq drops the peer). libzmq
/// applies it per frame, hence the two limits below for whole messages.
pub const MAX_COMMAND_BYTES: i64 = 64 * 1024;

/// Most frames of one message a hub reads: an ACK of a whole prefetch
/// (65,535 tags) and its command. A longer message is refused, its further
/// frames dropped as they are read.
pub const MAX_MESSAGE_FRAMES: usize = u16::MAX as usize + 2;

/// Most bytes of one message a hub copies out of libzmq (an ACK of 65,535
/// tags is about 1.3 MB); past it, frames are dropped unread and the
/// message is refused.
pub const MAX_MESSAGE_BYTES: usize = 2 * 1024 * 1024;

/// Command names, the first frame of every message.
pub mod command {
    /// Archive server → hub: who it is and what it wants (JSON).
    pub const HELLO: &[u8] = b"HELLO";
    /// Hub → archive server: the hello was accepted (JSON settings).
    pub const WELCOME: &[u8] = b"WELCOME";
    /// Hub → archive server: the hello was refused (reason).
    pub const DENIED: &[u8] = b"DENIED";
    /// Hub → archive server: one delivery.
    pub const DELIVER: &[u8] = b"DELIVER";
    /// Archive server → hub: deliveries done (one tag per frame).
    pub const ACK: &[u8] = b"ACK";
    /// Archive server → hub: deliver again after a delay (tag, delay ms).
    pub const NACK: &[u8] = b"NACK";
    /// Archive server → hub: dead-letter it (tag, reason).
    pub const REJECT: &[u8] = b"REJECT";
    /// Archive server → hub: dropped unsettled; deliver again at once (tag).
    pub const RELEASE: &[u8] = b"RELEASE";
    /// Either way: still alive.
    pub const PING: &[u8] = b"PING";
    /// Archive server → hub: this connection is leaving; redeliver what it
    /// holds now.
    pub const BYE: &[u8] = b"BYE";
    /// Hub → archive server: the hub does not know this connection (it
    /// restarted): say hello again.
    pub const UNKNOWN: &[u8] = b"UNKNOWN";
    /// Hub → archive server: the subscription was deleted; stop.
    pub const GONE: &[u8] = b"GONE";
    /// Hub → peer: the previous message was malformed (reason).
    pub const ERROR: &[u8] = b"ERROR";
    /// Hub → peer: the previous message asked for what the peer's
    /// principal is not granted (a reason naming it); nothing was done.
    pub const FORBIDDEN: &[u8] = b"FORBIDDEN";
    /// Request: list a subscriber's dead letters (name).
    pub const DEAD_LETTERS: &[u8] = b"DEAD-LETTERS";
    /// Request: replay dead letters (name, then `all` or envelope ids).
    pub const REPLAY: &[u8] = b"REPLAY";
    /// Reply to REPLAY: how many (decimal).
    pub const REPLAYED: &[u8] = b"REPLAYED";
    /// Request: delete a subscriber's dead letters (name).
    pub const PURGE: &[u8] = b"PURGE";
    /// Reply to PURGE: how many (decimal).
    pub const PURGED: &[u8] = b"PURGED";
    /// Request: delete a subscriber's queue and dead letters (name).
    pub const UNSUBSCRIBE: &[u8] = b"UNSUBSCRIBE";
    /// Reply to UNSUBSCRIBE.
    pub const UNSUBSCRIBED: &[u8] = b"UNSUBSCRIBED";
}

/// Topic prefix of the tail's control messages (never a list id, which
/// starts with a letter or digit): a tail subscribes to `\x01hello/<token>`
/// and waits for the hub to answer on it, so it knows it is attached.
pub const TAIL_HELLO_PREFIX: &[u8] = b"\x01hello/";

/// What an archive server asks for in its hello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Must be [`PROTOCOL_VERSION`].
    pub version: u32,
    /// The durable subscriber's name.
    pub name: String,
    /// List ids or patterns; empty for every list.
    #[serde(default)]
    pub lists: Vec<String>,
    /// `mail`, `event`, or absent for both.
    #[serde(default)]
    pub kind: Option<String>,
    /// Most deliveries this connection holds unsettled (its credit).
    pub prefetch: u16,
    /// Deliveries of one envelope before it is dead-lettered.
    pub max_attempts: u32,
    /// `new` or `beginning`, for a queue created by this hello.
    #[serde(default = "Hello::default_start")]
    pub start: String,
}

/// A hello, checked.
#[derive(Debug, Clone)]
pub struct ValidHello {
    pub name: SubscriberName,
    pub selection: Selection,
    pub prefetch: u16,
    pub max_attempts: u32,
    pub start: StartPosition,
}

impl Hello {
    fn default_start() -> String {
        "new".into()
    }

    /// The hello for a subscription.
    pub fn for_subscription(subscription: &archiver_core::Subscription) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            name: subscription.name.to_string(),
            lists: subscription.selection.pattern_texts(),
            kind: subscription
                .selection
                .only_kind()
                .map(|kind| kind.as_str().to_owned()),
            prefetch: subscription.prefetch,
            max_attempts: subscription.max_attempts,
            start: match subscription.start {
                StartPosition::New => "new".into(),
                StartPosition::Beginning => "beginning".into(),
            },
        }
    }

    /// Checks every field; the error says which is wrong.
    pub fn validate(self) -> Result<ValidHello, String> {
        if self.version != PROTOCOL_VERSION {
            return Err(format!(
                "protocol version {} is not supported (this hub speaks {PROTOCOL_VERSION})",
                self.version
            ));
        }
        let name = SubscriberName::new(&self.name).map_err(|e| e.to_string())?;
        let kind = self.kind.as_deref().map(str::parse::<Kind>).transpose()?;
        let selection = Selection::from_texts(&self.lists, kind).map_err(|e| e.to_string())?;
        if self.prefetch == 0 || self.max_attempts == 0 {
            return Err("prefetch and max_attempts must be at least 1".into());
        }
        let start = match self.start.as_str() {
            "new" => StartPosition::New,
            "beginning" => StartPosition::Beginning,
            other => return Err(format!("start {other:?} is neither new nor beginning")),
        };
        Ok(ValidHello {
            name,
            selection,
            prefetch: self.prefetch,
            max_attempts: self.max_attempts,
            start,
        })
    }
}

/// A dead letter's metadata, as JSON: the first frame of each dead letter
/// in a DEAD-LETTERS reply, and the first line of a hub's dead-letter
/// file. The envelope travels beside it in the one-byte-string form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterMeta {
    /// How many times it was delivered.
    pub attempts: u32,
    /// Why it was dead-lettered.
    pub reason: String,
    /// When.
    pub dead_at: chrono::DateTime<chrono::Utc>,
}

impl DeadLetterMeta {
    /// The metadata of a dead letter.
    pub fn of(letter: &DeadLetter) -> Self {
        Self {
            attempts: letter.attempts,
            reason: letter.reason.clone(),
            dead_at: letter.dead_at,
        }
    }

    /// The dead letter of this metadata and its envelope.
    pub fn into_letter(self, envelope: Envelope) -> DeadLetter {
        DeadLetter {
            envelope,
            attempts: self.attempts,
            reason: self.reason,
            dead_at: self.dead_at,
        }
    }
}

/// What a hub tells an accepted archive server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// How often each side sends something (a PING when idle).
    pub heartbeat_ms: u64,
    /// Silence after which either side treats the other as gone.
    pub timeout_ms: u64,
    /// What the hub guarantees its subscribers: it alone knows (its
    /// settings decide some), so it says rather than the client guessing.
    pub capabilities: WireCapabilities,
}

/// A hub's [`SubscriberCapabilities`] as WELCOME carries them (durations
/// in milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireCapabilities {
    /// [`SubscriberCapabilities::per_list_order`].
    pub per_list_order: bool,
    /// [`SubscriberCapabilities::replay_from_start`].
    pub replay_from_start: bool,
    /// [`SubscriberCapabilities::native_dead_letter`].
    pub native_dead_letter: bool,
    /// [`SubscriberCapabilities::abandoned_redelivery`], in milliseconds.
    pub abandoned_redelivery_ms: u64,
}

impl WireCapabilities {
    /// A hub's capabilities, `timeout` being how long it waits before it
    /// drops a silent connection (and so redelivers what it held).
    pub fn of_hub(timeout: Duration) -> Self {
        Self {
            per_list_order: true,
            replay_from_start: true,
            native_dead_letter: true,
            // The housekeeping tick may notice the silence up to a second
            // after the timeout.
            abandoned_redelivery_ms: (timeout + Duration::from_secs(1)).as_millis() as u64,
        }
    }

    /// As the core's type.
    pub fn to_capabilities(self) -> SubscriberCapabilities {
        SubscriberCapabilities {
            per_list_order: self.per_list_order,
            replay_from_start: self.replay_from_start,
            native_dead_letter: self.native_dead_letter,
            abandoned_redelivery: Duration::from_millis(self.abandoned_redelivery_ms),
        }
    }
}

impl Welcome {
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// Reads an envelope frame (DELIVER's last, the tail's second); the body
/// shares the frame's memory.
pub fn parse_envelope(frame: Vec<u8>) -> Result<Envelope, WireError> {
    wire::from_bytes(Bytes::from(frame))
}

/// A delivery tag: the envelope's place in the hub's journal, as decimal.
pub fn tag(seq: u64) -> Vec<u8> {
    seq.to_string().into_bytes()
}

/// Reads a decimal number frame.
pub fn number<T: std::str::FromStr>(frame: &[u8], what: &str) -> Result<T, String> {
    std::str::from_utf8(frame)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{what} is not a decimal number"))
}

/// The tail's topic of an envelope of `kind` on `list`: `<list-id>/<kind>`,
/// so a tail of one list subscribes to the prefix `<list-id>/`.
pub fn tail_topic(kind: Kind, list: &ListId) -> Vec<u8> {
    format!("{list}/{}", kind.as_str()).into_bytes()
}

/// The prefixes a tail subscribes to for a selection: one per exact list
/// (with the kind when only one is selected), or everything when a pattern
/// needs matching on this side.
pub fn tail_prefixes(selection: &Selection) -> Vec<Vec<u8>> {
    let lists = selection.lists();
    if lists.is_empty() || !lists.iter().all(ListPattern::is_exact) {
        return vec![Vec::new()];
    }
    let kinds = selection.kinds();
    lists
        .iter()
        .map(|list| {
            if kinds.len() == 1 {
                format!("{}/{}", list.as_str(), kinds[0].as_str())
            } else {
                format!("{}/", list.as_str())
            }
            .into_bytes()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use archiver_core::{ListChange, ListEvent, ListId, MailingList, Subscription};

    fn event() -> Envelope {
        let list = MailingList::public(ListId::new("dev.lists.example.org").unwrap());
        Envelope::event(
            &ListEvent::now(list.list_id.clone(), ListChange::ListDeleted),
            &list,
        )
    }

    #[test]
    fn envelope_frames_are_the_one_byte_string_form() {
        let envelope = event();
        let frame = wire::to_bytes(&envelope);
        assert!(frame.starts_with(b"format-version: 1.2\n"));
        assert_eq!(parse_envelope(frame).unwrap(), envelope);
        assert!(parse_envelope(b"format-version: 1.2".to_vec()).is_err());
        assert!(parse_envelope(Vec::new()).is_err());
    }

    #[test]
    fn hellos_are_validated() {
        let sub = Subscription::new("web".parse().unwrap()).select(
            Selection::all()
                .list("*.example.org".parse().unwrap())
                .only(Kind::Mail),
        );
        let hello = Hello::for_subscription(&sub);
        let valid = hello.clone().validate().unwrap();
        assert_eq!(valid.selection, sub.selection);
        assert_eq!(valid.name, sub.name);
        for broken in [
            Hello {
                version: 1,
                ..hello.clone()
            },
            Hello {
                name: "a b".into(),
                ..hello.clone()
            },
            Hello {
                lists: vec!["no/slash".into()],
                ..hello.clone()
            },
            Hello {
                kind: Some("post".into()),
                ..hello.clone()
            },
            Hello {
                prefetch: 0,
                ..hello.clone()
            },
            Hello {
                start: "end".into(),
                ..hello.clone()
            },
        ] {
            assert!(broken.validate().is_err());
        }
    }

    #[test]
    fn tail_prefixes_follow_the_selection() {
        assert_eq!(tail_prefixes(&Selection::all()), vec![Vec::<u8>::new()]);
        let one = Selection::all().list("dev.example.org".parse().unwrap());
        assert_eq!(tail_prefixes(&one), vec![b"dev.example.org/".to_vec()]);
        let mails = one.clone().only(Kind::Mail);
        assert_eq!(
            tail_prefixes(&mails),
            vec![b"dev.example.org/mail".to_vec()]
        );
        let pattern = Selection::all().list("*.example.org".parse().unwrap());
        assert_eq!(tail_prefixes(&pattern), vec![Vec::<u8>::new()]);
        let event = event();
        assert_eq!(
            tail_topic(event.kind, &event.list_id),
            b"dev.lists.example.org/event"
        );
    }
}
