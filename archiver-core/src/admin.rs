//! The operator's commands every backend's tool offers (feature `admin`):
//! consume a subscription to watch it, list, replay and purge dead letters,
//! retire a subscriber. The operator's tool (crate `mq-archiver-admin`)
//! adds how to connect (a URL) and each backend's commands of its own.
//!
//! Output names envelopes by id, list and Message-ID-Hash; never a body.

use clap::Subcommand;
use futures::StreamExt;

use crate::backend::{Operator, Replay, Subscriber, SubscriberName, Subscription};
use crate::envelope::{EnvelopeId, Kind};
use crate::selection::{ListPattern, Selection};

/// Crates whose `trace` level dumps what crosses the wire: lapin prints
/// every AMQP frame it handles (each message body as a decimal byte list,
/// `Body(1, [77, 101, ...])`), and the protocol, TLS and client crates
/// below it print buffers. Our binaries show these crates at `debug` at
/// most, whatever `RUST_LOG` says, so turning on trace to chase a problem
/// never writes mail bodies or credentials into a log.
pub const FRAME_DUMPING_TARGETS: [&str; 9] = [
    "lapin",
    "amq_protocol",
    "redis",
    "rustls",
    "tokio_rustls",
    "zmq",
    "hyper",
    "h2",
    "reqwest",
];

/// Logs to stderr at the level `RUST_LOG` says (warnings by default), so
/// stdout stays for the command's output; [`FRAME_DUMPING_TARGETS`] are
/// capped at `debug`.
pub fn init_logging() {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let requested =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let capped = tracing_subscriber::filter::filter_fn(|metadata| {
        shown(metadata.target(), *metadata.level())
    });
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(requested)
                .with_filter(capped),
        )
        .init();
}

/// False for `trace` events of a [`FRAME_DUMPING_TARGETS`] crate (or one of
/// its modules or sibling crates such as `amq_protocol_types`).
fn shown(target: &str, level: tracing::Level) -> bool {
    level <= tracing::Level::DEBUG
        || !FRAME_DUMPING_TARGETS
            .iter()
            .any(|name| target.starts_with(name))
}

/// Commands on any backend.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Consume a durable subscription, printing `delivered <envelope-id>
    /// <attempt> <list-id> <message-id-hash>` per delivery (`ready` first).
    Consume {
        /// Subscriber name.
        #[arg(long)]
        name: SubscriberName,
        /// List id or pattern to select (repeatable); default every list.
        #[arg(long = "list")]
        lists: Vec<ListPattern>,
        /// Only this kind.
        #[arg(long, value_parser = ["mail", "event"])]
        kind: Option<String>,
        /// In-flight bound.
        #[arg(long, default_value_t = 64)]
        prefetch: u16,
        /// Hold deliveries without acknowledging them (to inspect them, or
        /// to test redelivery).
        #[arg(long)]
        no_ack: bool,
    },
    /// List a subscriber's dead letters.
    DeadLetters {
        /// Subscriber name.
        #[arg(long)]
        name: SubscriberName,
    },
    /// Put dead letters back into the subscriber's queue.
    Replay {
        /// Subscriber name.
        #[arg(long)]
        name: SubscriberName,
        /// Envelope ids to replay (repeatable).
        #[arg(long = "id", required_unless_present = "all")]
        ids: Vec<EnvelopeId>,
        /// Replay all of them.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Delete all of a subscriber's dead letters (they cannot be replayed
    /// afterwards); its queue stays.
    PurgeDeadLetters {
        /// Subscriber name.
        #[arg(long)]
        name: SubscriberName,
        /// Confirms the deletion (without it nothing is deleted).
        #[arg(long, required = true)]
        yes: bool,
    },
    /// Retire a subscriber: delete its queue, what it still holds and its
    /// dead letters (an archive server that comes back under this name
    /// starts afresh).
    Unsubscribe {
        /// Subscriber name.
        #[arg(long)]
        name: SubscriberName,
        /// Confirms the deletion (without it nothing is deleted).
        #[arg(long, required = true)]
        yes: bool,
    },
}

impl AdminCommand {
    /// Runs the command on `backend`, writing to stdout. It takes any
    /// client of the archive server's and operator's roles (not only a
    /// [`Backend`](crate::Backend) of every role), so a ZeroMQ archive
    /// server's client, which cannot publish, is operated too.
    pub async fn run<B: Subscriber + Operator + ?Sized>(
        self,
        backend: &B,
    ) -> Result<(), Box<dyn std::error::Error>> {
        match self {
            Self::Consume {
                name,
                lists,
                kind,
                prefetch,
                no_ack,
            } => {
                let mut selection = lists.into_iter().fold(Selection::all(), Selection::list);
                if let Some(kind) = kind {
                    selection = selection.only(kind.parse::<Kind>()?);
                }
                let subscription = Subscription::new(name).select(selection).prefetch(prefetch);
                let mut deliveries = backend.subscribe(&subscription).await?;
                println!("ready");
                let mut held = Vec::new();
                while let Some(item) = deliveries.next().await {
                    match item {
                        Ok(delivery) => {
                            let envelope = delivery.envelope();
                            println!(
                                "delivered {} {} {} {}",
                                envelope.id,
                                delivery.attempt(),
                                envelope.list_id,
                                envelope.message_id_hash.as_deref().unwrap_or("-")
                            );
                            if no_ack {
                                held.push(delivery);
                            } else {
                                delivery.ack().await?;
                            }
                        }
                        Err(error) => eprintln!("error {error}"),
                    }
                }
            }
            Self::DeadLetters { name } => {
                for letter in backend.dead_letters(&name).await? {
                    println!(
                        "{} {} attempts={} dead_at={} reason={:?}",
                        letter.envelope.id,
                        letter.envelope.list_id,
                        letter.attempts,
                        letter.dead_at.to_rfc3339(),
                        letter.reason
                    );
                }
            }
            Self::Replay { name, ids, all } => {
                let which = if all { Replay::All } else { Replay::Only(ids) };
                println!(
                    "replayed {}",
                    backend.replay_dead_letters(&name, which).await?
                );
            }
            Self::PurgeDeadLetters { name, yes: _ } => {
                println!("purged {}", backend.purge_dead_letters(&name).await?);
            }
            Self::Unsubscribe { name, yes: _ } => {
                backend.unsubscribe(&name).await?;
                println!("unsubscribed {name}");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn frame_dumping_crates_stop_at_debug_and_ours_do_not() {
        for target in [
            "lapin::channels",
            "amq_protocol_types::types",
            "redis",
            "rustls::conn",
        ] {
            assert!(!shown(target, Level::TRACE), "{target} at trace");
            assert!(shown(target, Level::DEBUG), "{target} at debug");
        }
        for target in [
            "backend_rabbitmq::link",
            "backend_redis",
            "archiver_core::spool",
        ] {
            assert!(shown(target, Level::TRACE), "{target} at trace");
        }
    }
}
