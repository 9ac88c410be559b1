//! Operator's tool for the Redis backend: consume a subscription (printing
//! what arrives), list, replay and purge dead letters, retire a
//! subscriber, trim now.
//!
//! ```text
//! archiver-redis --url redis://127.0.0.1:6379 dead-letters --name hyperkitty
//! archiver-redis replay --name hyperkitty --id 0193...   # or --all
//! archiver-redis purge-dead-letters --name hyperkitty --yes
//! archiver-redis unsubscribe --name old-archive --yes
//! archiver-redis consume --name debug --list '*.lists.example.org'
//! ```
//!
//! The URL can also come from `ARCHIVER_REDIS_URL`, so no password needs to
//! be on the command line. Output never contains mail bodies.

use std::time::Duration;

use archiver_core::Connection;
use archiver_core::admin::AdminCommand;
use backend_redis::{RedisBackend, RedisConfig};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Operate the Redis backend of the mailing-list archiver")]
struct Cli {
    /// Redis URL; default $ARCHIVER_REDIS_URL, else redis://127.0.0.1:6379.
    #[arg(long, global = true)]
    url: Option<String>,
    /// Key prefix of the deployment.
    #[arg(long, global = true, default_value = "archiver")]
    prefix: archiver_core::Prefix,
    /// Seconds an unsettled delivery waits before another consumer takes it.
    #[arg(long, global = true, default_value_t = 60)]
    claim_idle: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Admin(AdminCommand),
    /// Trim what every subscriber has acknowledged, now.
    Trim,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    archiver_core::admin::init_logging();
    let cli = Cli::parse();
    let config = cli
        .url
        .map_or_else(RedisConfig::from_env, RedisConfig::new)
        .prefix(cli.prefix)
        .claim_idle(Duration::from_secs(cli.claim_idle));
    let backend = RedisBackend::connect(config).await?;
    match cli.command {
        Command::Admin(command) => command.run(&backend).await?,
        Command::Trim => println!("trimmed {}", backend.trim().await?),
    }
    backend.close().await?;
    Ok(())
}
