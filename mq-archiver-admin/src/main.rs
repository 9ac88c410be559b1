//! `mq-archiver-admin`, the operator's tool of every backend: a URL picks
//! the backend as it does for `mq_archiver::connect_subscriber`, and the
//! shared commands (consume a subscription, list, replay and purge dead
//! letters, retire a subscriber) work on each. What only one backend has
//! is a command of its own, refused for another backend's URL.
//!
//! ```text
//! mq-archiver-admin --url redis://127.0.0.1:6379 dead-letters --name hyperkitty
//! mq-archiver-admin --url amqp://archiver@rabbit.example.org/lists replay --name hyperkitty --all
//! mq-archiver-admin --url tcp://hub.example.org:5555 -o curve-key=op.key -o curve-server-key=hub.pub dead-letters --name hyperkitty
//! mq-archiver-admin purge-dead-letters --name hyperkitty --yes     # URL from $ARCHIVER_URL
//! mq-archiver-admin unsubscribe --name old-archive --yes
//! mq-archiver-admin consume --name debug --list '*.lists.example.org'
//! mq-archiver-admin --url redis://127.0.0.1 trim                     # Redis
//! mq-archiver-admin acl-lines --grant web-archive.json | redis-cli   # Redis, no connection
//! mq-archiver-admin permissions --vhost lists --list-server mailman  # RabbitMQ, no connection
//! mq-archiver-admin keygen /etc/mailman/hub                          # ZeroMQ CURVE keys
//! ```
//!
//! The URL comes from `--url`, else `ARCHIVER_URL` (then, as before,
//! `ARCHIVER_REDIS_URL` and `ARCHIVER_AMQP_URL`), so no password needs to
//! be on the command line; `--option KEY=VALUE` (`-o`) passes any of the
//! facade's options (`claim-idle=2s`, `queue-type=classic`, `curve-key=...`).
//! Output never contains mail bodies.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mq_archiver::admin::AdminCommand;
use mq_archiver::{BackendKind, Config, Connection, Grant, Prefix};

/// The command line.
#[derive(Parser)]
#[command(
    name = "mq-archiver-admin",
    about = "Operate the message-queue mailing-list archiver on any backend (a URL picks it)"
)]
struct Cli {
    /// Backend URL (redis://, rediss://, redis+unix://, amqp://, amqps://,
    /// tcp://, ipc://); default $ARCHIVER_URL, else $ARCHIVER_REDIS_URL,
    /// else $ARCHIVER_AMQP_URL.
    #[arg(long, global = true)]
    url: Option<String>,
    /// Key prefix (Redis) or exchange and queue prefix (RabbitMQ) of the
    /// deployment; default `archiver`.
    #[arg(long, global = true)]
    prefix: Option<Prefix>,
    /// An option of the URL's backend, `KEY=VALUE` (repeatable): any key of
    /// `mq_archiver::OPTION_KEYS`, e.g. `claim-idle=2s` (Redis),
    /// `queue-type=classic` (RabbitMQ), `curve-key=NAME.key` (ZeroMQ).
    #[arg(long = "option", short = 'o', global = true, value_parser = key_value)]
    options: Vec<(String, String)>,
    #[command(subcommand)]
    command: Command,
}

/// What the tool does.
#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Admin(AdminCommand),
    /// Redis: trim what every subscriber has acknowledged, now.
    Trim,
    /// Redis: print the `ACL SETUSER` lines of a Redis user, without
    /// connecting: an archive server's from its grant (`archiver_core::Grant`
    /// as JSON), or the list server's. They set no password: add one with
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
    /// RabbitMQ: print the rabbitmqctl lines of a least-privilege broker
    /// user, without connecting (the password left to the shell as
    /// `"$PASSWORD"`, piped to `add_user`, on no command line).
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
        grant: Option<PathBuf>,
    },
    /// ZeroMQ: write a CURVE key pair for a hub or an archive server:
    /// `NAME.key` (the pair, mode 0600, stays here) and `NAME.pub` (its
    /// public key, for the other side). Never overwrites a file, never
    /// prints a key.
    Keygen {
        /// Path and base name of the two files.
        name: PathBuf,
    },
}

/// `KEY=VALUE` of `--option`.
fn key_value(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| "expected KEY=VALUE".to_owned())
}

/// The URL of `--url`, else of the environment.
fn url(cli: &Cli) -> Result<String, String> {
    if let Some(url) = &cli.url {
        return Ok(url.clone());
    }
    ["ARCHIVER_URL", "ARCHIVER_REDIS_URL", "ARCHIVER_AMQP_URL"]
        .iter()
        .find_map(|name| std::env::var(name).ok())
        .ok_or_else(|| "give --url or set ARCHIVER_URL".to_owned())
}

/// Refuses a `--url` of another backend for a command of one backend's
/// own. Only a URL on the command line counts: the offline commands need
/// none, so one in the environment (meant for the connecting commands)
/// does not stand in their way.
fn only_for(cli: &Cli, command: &str, backend: BackendKind) -> Result<(), String> {
    let Some(url) = &cli.url else {
        return Ok(());
    };
    let given = Config::parse(url, mq_archiver::NO_OPTIONS)
        .map_err(|e| e.to_string())?
        .backend();
    if given == backend {
        Ok(())
    } else {
        Err(format!(
            "{command} is a command of {backend}; the URL names {given}"
        ))
    }
}

/// The commands that connect nothing; `None` for the others.
fn offline(cli: &Cli) -> Option<Result<(), String>> {
    let prefix = cli.prefix.clone().unwrap_or_default();
    let read_grant = |path: &PathBuf| Grant::read_file(path);
    match &cli.command {
        Command::AclLines { grant, list_server } => Some(
            only_for(cli, "acl-lines", BackendKind::Redis).and_then(|()| {
                let lines = match (grant, list_server) {
                    (Some(path), _) => {
                        mq_archiver::redis::acl_setuser_lines(&prefix, &read_grant(path)?)
                    }
                    (None, Some(user)) => mq_archiver::redis::list_server_acl_lines(&prefix, user),
                    (None, None) => unreachable!("clap requires --grant or --list-server"),
                };
                // Said as it is written, so an operator reads the pattern
                // refused.
                for line in lines.map_err(|refused| refused.to_string())? {
                    println!("{line}");
                }
                Ok(())
            }),
        ),
        Command::Permissions {
            vhost,
            list_server,
            grant,
        } => Some(
            only_for(cli, "permissions", BackendKind::Rabbitmq).and_then(|()| {
                let setup = match (list_server, grant) {
                    (Some(user), _) => {
                        mq_archiver::rabbitmq::permissions::list_server(&prefix, vhost, user)
                    }
                    (None, Some(path)) => mq_archiver::rabbitmq::permissions::archive_server(
                        &prefix,
                        vhost,
                        &read_grant(path)?,
                    ),
                    (None, None) => unreachable!("clap requires --list-server or --grant"),
                };
                print!("{setup}");
                Ok(())
            }),
        ),
        Command::Keygen { name } => {
            Some(only_for(cli, "keygen", BackendKind::Zeromq).and_then(|()| {
                if name.to_string_lossy().starts_with('-') {
                    return Err(format!("{} is not a file name", name.display()));
                }
                let pair = mq_archiver::zeromq::CurveKeyPair::generate().map_err(key_error)?;
                let (secret, public) = pair.write_files(name).map_err(key_error)?;
                println!(
                    "wrote {} (secret: keep it here) and {} (public: hand it to the other side)",
                    secret.display(),
                    public.display()
                );
                Ok(())
            }))
        }
        Command::Admin(_) | Command::Trim => None,
    }
}

/// A key file's error as its message alone: the variant's prefix
/// ("refused by the broker", "invalid backend configuration") means
/// nothing to someone making keys.
fn key_error(error: mq_archiver::BackendError) -> String {
    match error {
        mq_archiver::BackendError::Auth(message)
        | mq_archiver::BackendError::InvalidConfig(message) => message.to_string(),
        other => other.to_string(),
    }
}

/// Connects to the URL's backend and runs a command there.
async fn online(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let url = url(&cli)?;
    let mut options = cli.options;
    if let Some(prefix) = cli.prefix {
        options.push(("prefix".into(), prefix.to_string()));
    }
    let config = Config::parse(&url, options)?;
    if matches!(cli.command, Command::Trim) && config.backend() != BackendKind::Redis {
        return Err(format!(
            "trim is a command of {}; the URL names {} (which drops what is acknowledged itself)",
            BackendKind::Redis,
            config.backend()
        )
        .into());
    }
    let client = config.connect_subscriber().await?;
    let outcome = match cli.command {
        Command::Admin(command) => command.run(&client).await,
        Command::Trim => match client.redis_handle() {
            Some(redis) => redis
                .trim()
                .await
                .map(|trimmed| println!("trimmed {trimmed}"))
                .map_err(Into::into),
            None => unreachable!("checked to be Redis above"),
        },
        _ => unreachable!("offline commands are run before connecting"),
    };
    client.close().await?;
    outcome
}

#[tokio::main]
async fn main() -> ExitCode {
    mq_archiver::admin::init_logging();
    let cli = Cli::parse();
    if let Some(outcome) = offline(&cli) {
        return match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::from(2)
            }
        };
    }
    match online(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
