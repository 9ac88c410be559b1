//! `hyperkitty-bridge`: feeds a HyperKitty from a durable subscription.
//! The broker comes from `ARCHIVER_URL` and `ARCHIVER_*` options (as every
//! archive server of `mq-archiver`), HyperKitty's key from
//! `HYPERKITTY_API_KEY`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use hyperkitty_bridge::{ApiKey, BridgeConfig, HyperKittyBridge};
use mq_archiver::{ListAddress, ListId, Subscription, shutdown_signal};

/// Feeds HyperKitty from its own durable queue.
#[derive(Parser)]
#[command(name = "hyperkitty-bridge")]
struct Args {
    /// HyperKitty's root URL, e.g. https://lists.example.org/hyperkitty/
    #[arg(long)]
    base_url: url::Url,
    /// The durable subscriber name (its queue on the broker).
    #[arg(long, default_value = "hyperkitty")]
    subscriber: String,
    /// LIST_ID=ADDRESS for lists whose mails carry no list address (repeatable).
    #[arg(long = "list-address", value_name = "LIST_ID=ADDRESS")]
    list_addresses: Vec<String>,
    /// Most POSTs at once (1 for HyperKitty on sqlite).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Seconds one request may take.
    #[arg(long, default_value_t = 30)]
    request_timeout: u64,
    /// Deliveries the broker hands over unsettled.
    #[arg(long, default_value_t = 16)]
    prefetch: u16,
    /// Attempts before a mail HyperKitty keeps failing on is dead-lettered.
    #[arg(long, default_value_t = 5)]
    max_attempts: u32,
    /// PEM CA file to trust for HyperKitty instead of the system's roots.
    #[arg(long)]
    ca_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    mq_archiver::admin::init_logging();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hyperkitty-bridge: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let key = std::env::var("HYPERKITTY_API_KEY")
        .map_err(|_| "HYPERKITTY_API_KEY is not set (HyperKitty's MAILMAN_ARCHIVER_KEY)")?;
    let mut config = BridgeConfig::new(args.base_url, ApiKey::new(key))
        .concurrency(args.concurrency)
        .request_timeout(Duration::from_secs(args.request_timeout))
        .list_addresses(parse_list_addresses(&args.list_addresses)?);
    if let Some(ca_file) = args.ca_file {
        config = config.ca_file(ca_file);
    }
    let bridge = HyperKittyBridge::new(config)?;
    let client = mq_archiver::Config::from_env()?
        .connect_subscriber()
        .await?;
    let subscription = Subscription::new(args.subscriber.parse()?)
        .prefetch(args.prefetch)
        .max_attempts(args.max_attempts);
    let stats = bridge
        .run(&client, &subscription, shutdown_signal())
        .await?;
    tracing::info!(?stats, "stopped");
    Ok(())
}

fn parse_list_addresses(pairs: &[String]) -> Result<HashMap<ListId, ListAddress>, String> {
    pairs
        .iter()
        .map(|pair| {
            let (id, address) = pair
                .split_once('=')
                .ok_or_else(|| format!("--list-address {pair:?}: expected LIST_ID=ADDRESS"))?;
            let id = ListId::new(id).map_err(|e| format!("--list-address {pair:?}: {e}"))?;
            // HyperKitty wants the posting address (a list id gives a 500).
            let address = mq_archiver::ListAddress::new(address)
                .map_err(|e| format!("--list-address {pair:?}: {e}"))?;
            Ok((id, address))
        })
        .collect()
}
