//! Operator's tool for the RabbitMQ backend: consume a subscription
//! (printing what arrives), list, replay and purge dead letters, retire a
//! subscriber.
//!
//! ```text
//! archiver-rabbitmq --url amqp://archiver@rabbit.example.org/lists dead-letters --name hyperkitty
//! archiver-rabbitmq replay --name hyperkitty --all
//! archiver-rabbitmq purge-dead-letters --name hyperkitty --yes
//! archiver-rabbitmq unsubscribe --name old-archive --yes
//! ```
//!
//! The URL can also come from `ARCHIVER_AMQP_URL`, so no password needs to
//! be on the command line. Output never contains mail bodies.

use archiver_core::Connection;
use archiver_core::admin::AdminCommand;
use backend_rabbitmq::{QueueType, RabbitBackend, RabbitConfig};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Operate the RabbitMQ backend of the mailing-list archiver")]
struct Cli {
    /// AMQP URL; default $ARCHIVER_AMQP_URL, else amqp://guest:guest@127.0.0.1:5672/%2f.
    #[arg(long, global = true)]
    url: Option<String>,
    /// Exchange name and queue prefix of the deployment.
    #[arg(long, global = true, default_value = "archiver")]
    prefix: archiver_core::Prefix,
    /// Declare new subscriber queues as classic instead of quorum queues.
    #[arg(long, global = true)]
    classic: bool,
    #[command(subcommand)]
    command: AdminCommand,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    archiver_core::admin::init_logging();
    let cli = Cli::parse();
    let queue_type = if cli.classic {
        QueueType::Classic
    } else {
        QueueType::Quorum
    };
    let config = cli
        .url
        .map_or_else(RabbitConfig::from_env, RabbitConfig::new)
        .prefix(cli.prefix)
        .queue_type(queue_type);
    let backend = RabbitBackend::connect(config).await?;
    cli.command.run(&backend).await?;
    backend.close().await?;
    Ok(())
}
