//! Operator's tool for the Redis backend: consume a subscription (printing
//! what arrives), list, replay and purge dead letters, retire a
//! subscriber, trim now, print the ACL users of a deployment.
//!
//! ```text
//! archiver-redis --url redis://127.0.0.1:6379 dead-letters --name hyperkitty
//! archiver-redis replay --name hyperkitty --id 0193...   # or --all
//! archiver-redis purge-dead-letters --name hyperkitty --yes
//! archiver-redis unsubscribe --name old-archive --yes
//! archiver-redis consume --name debug --list '*.lists.example.org'
//! archiver-redis acl-lines --grant web-archive.json | redis-cli   # an archive server's ACL user
//! archiver-redis acl-lines --list-server lists                    # the list server's
//! ```
//!
//! The URL can also come from `ARCHIVER_REDIS_URL`, so no password needs to
//! be on the command line. Output never contains mail bodies.

use std::path::PathBuf;
use std::time::Duration;

use archiver_core::admin::AdminCommand;
use archiver_core::{Connection, Grant};
use backend_redis::{RedisBackend, RedisConfig, acl_setuser_lines, list_server_acl_lines};
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
    /// Print the `ACL SETUSER` lines of a Redis user, without connecting:
    /// an archive server's from its grant (`archiver_core::Grant` as JSON),
    /// or the list server's. They set no password: add one with
    /// `ACL SETUSER <user> >password`.
    AclLines {
        /// A JSON file holding the archive server's grant.
        #[arg(
            long,
            required_unless_present = "list_server",
            conflicts_with = "list_server"
        )]
        grant: Option<PathBuf>,
        /// The list server's Redis user name.
        #[arg(long)]
        list_server: Option<String>,
    },
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    archiver_core::admin::init_logging();
    let cli = Cli::parse();
    if let Command::AclLines { grant, list_server } = &cli.command {
        let lines = match (grant, list_server) {
            (Some(path), _) => {
                let grant: Grant = serde_json::from_str(&std::fs::read_to_string(path)?)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                acl_setuser_lines(&cli.prefix, &grant)
            }
            (None, Some(user)) => list_server_acl_lines(&cli.prefix, user),
            (None, None) => unreachable!("clap requires --grant or --list-server"),
        };
        // Said as it is written, so an operator reads the pattern refused.
        let lines = lines.unwrap_or_else(|refused| {
            eprintln!("error: {refused}");
            std::process::exit(2)
        });
        for line in lines {
            println!("{line}");
        }
        return Ok(());
    }
    let config = cli
        .url
        .map_or_else(RedisConfig::from_env, RedisConfig::new)
        .prefix(cli.prefix)
        .claim_idle(Duration::from_secs(cli.claim_idle));
    let backend = RedisBackend::connect(config).await?;
    match cli.command {
        Command::Admin(command) => command.run(&backend).await?,
        Command::Trim => println!("trimmed {}", backend.trim().await?),
        Command::AclLines { .. } => unreachable!("handled before connecting"),
    }
    backend.close().await?;
    Ok(())
}
