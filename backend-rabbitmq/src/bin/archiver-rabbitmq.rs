//! Operator's tool for the RabbitMQ backend: consume a subscription
//! (printing what arrives), list, replay and purge dead letters, retire a
//! subscriber.
//!
//! ```text
//! archiver-rabbitmq --url amqp://archiver@rabbit.example.org/lists dead-letters --name hyperkitty
//! archiver-rabbitmq replay --name hyperkitty --all
//! archiver-rabbitmq purge-dead-letters --name hyperkitty --yes
//! archiver-rabbitmq unsubscribe --name old-archive --yes
//! archiver-rabbitmq permissions --vhost lists --list-server mailman
//! archiver-rabbitmq permissions --vhost lists --grant public-archive.json
//! ```
//!
//! `permissions` connects to nothing: it prints the `rabbitmqctl` lines
//! that make the list server's user, or an archive server's user from its
//! grant (the JSON of `archiver_core::Grant`), the password left to the
//! shell as `"$PASSWORD"`, piped to `add_user` (on no command line).
//!
//! The URL can also come from `ARCHIVER_AMQP_URL`, so no password needs to
//! be on the command line. Output never contains mail bodies.

use archiver_core::admin::AdminCommand;
use archiver_core::{Connection, Grant};
use backend_rabbitmq::{QueueType, RabbitBackend, RabbitConfig, permissions};
use clap::{Parser, Subcommand};

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
    command: Command,
}

/// What the tool does.
#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Admin(AdminCommand),
    /// Print the rabbitmqctl lines of a least-privilege broker user (no
    /// connection is made).
    Permissions {
        /// The vhost of the deployment.
        #[arg(long)]
        vhost: String,
        /// The list server's user name.
        #[arg(long, required_unless_present = "grant", conflicts_with = "grant")]
        list_server: Option<String>,
        /// An archive server's grant, a JSON file (its principal is the
        /// user name).
        #[arg(long)]
        grant: Option<std::path::PathBuf>,
    },
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    archiver_core::admin::init_logging();
    let cli = Cli::parse();
    let command = match cli.command {
        Command::Permissions {
            vhost,
            list_server,
            grant,
        } => {
            let setup = match (list_server, grant) {
                (Some(user), _) => permissions::list_server(&cli.prefix, &vhost, &user),
                (None, Some(path)) => {
                    let grant = Grant::read_file(&path)?;
                    permissions::archive_server(&cli.prefix, &vhost, &grant)
                }
                (None, None) => return Err("give --list-server or --grant".into()),
            };
            print!("{setup}");
            return Ok(());
        }
        Command::Admin(command) => command,
    };
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
    command.run(&backend).await?;
    backend.close().await?;
    Ok(())
}
