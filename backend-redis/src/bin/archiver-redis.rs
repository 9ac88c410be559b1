//! Operator's tool for the Redis backend: consume a subscription (printing
//! what arrives), list and replay dead letters, trim now.
//!
//! ```text
//! archiver-redis --url redis://127.0.0.1:6379 dead-letters --name hyperkitty
//! archiver-redis replay --name hyperkitty --id 0193...   # or --all
//! archiver-redis consume --name debug --list '*.lists.example.org'
//! ```
//!
//! The URL can also come from `ARCHIVER_REDIS_URL`, so no password needs to
//! be on the command line. Output never contains mail bodies.

use std::time::Duration;

use archiver_core::{
    Backend, DeadLetters, EnvelopeId, Kind, ListPattern, Replay, Selection, Subscriber,
    SubscriberName, Subscription,
};
use backend_redis::{RedisBackend, RedisConfig};
use clap::{Parser, Subcommand};
use futures::StreamExt;

#[derive(Parser)]
#[command(about = "Operate the Redis backend of the mailing-list archiver")]
struct Cli {
    /// Redis URL; default $ARCHIVER_REDIS_URL, else redis://127.0.0.1:6379.
    #[arg(long, global = true)]
    url: Option<String>,
    /// Key prefix of the deployment.
    #[arg(long, global = true, default_value = "archiver")]
    prefix: String,
    /// Seconds an unsettled delivery waits before another consumer takes it.
    #[arg(long, global = true, default_value_t = 60)]
    claim_idle: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Consume a durable subscription, printing `delivered <envelope-id>
    /// <attempt> <list-id> <message-id-hash>` per delivery.
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
        /// Hold deliveries without acknowledging them (to inspect, or to test
        /// redelivery).
        #[arg(long)]
        no_ack: bool,
    },
    /// List a subscriber's dead letters.
    DeadLetters {
        #[arg(long)]
        name: SubscriberName,
    },
    /// Put dead letters back into the subscriber's queue.
    Replay {
        #[arg(long)]
        name: SubscriberName,
        /// Envelope ids to replay (repeatable).
        #[arg(long = "id", required_unless_present = "all")]
        ids: Vec<EnvelopeId>,
        /// Replay all of them.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Trim what every subscriber has acknowledged, now.
    Trim,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let config = match cli.url {
        Some(url) => RedisConfig::new(url),
        None => RedisConfig::from_env(),
    }
    .prefix(cli.prefix)
    .claim_idle(Duration::from_secs(cli.claim_idle));
    let backend = RedisBackend::connect(config).await?;
    match cli.command {
        Command::Consume {
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
        Command::DeadLetters { name } => {
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
        Command::Replay { name, ids, all } => {
            let which = if all { Replay::All } else { Replay::Only(ids) };
            println!(
                "replayed {}",
                backend.replay_dead_letters(&name, which).await?
            );
        }
        Command::Trim => println!("trimmed {}", backend.trim().await?),
    }
    backend.close().await?;
    Ok(())
}
