//! The operator's commands every backend's tool offers (feature `admin`):
//! consume a subscription to watch it, list and replay dead letters. A
//! backend's binary adds only how to connect, and commands of its own.
//!
//! Output names envelopes by id, list and Message-ID-Hash; never a body.

use clap::Subcommand;
use futures::StreamExt;

use crate::backend::{Backend, Replay, SubscriberName, Subscription};
use crate::envelope::{EnvelopeId, Kind};
use crate::selection::{ListPattern, Selection};

/// Logs to stderr at the level `RUST_LOG` says (warnings by default), so
/// stdout stays for the command's output.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
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
}

impl AdminCommand {
    /// Runs the command on `backend`, writing to stdout.
    pub async fn run(self, backend: &dyn Backend) -> Result<(), Box<dyn std::error::Error>> {
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
        }
        Ok(())
    }
}
