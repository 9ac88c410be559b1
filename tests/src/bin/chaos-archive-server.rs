//! The chaos suite's archive server: a durable subscriber `--name` storing
//! every mail in a Maildir under `--root` (see
//! [`MaildirArchive`]). It
//! prints `ready` once subscribed, then `stored <hash> <attempt>` or
//! `dup <hash> <attempt>` per mail handled, and retries connecting while the
//! broker is down. While `<root>/HOLD` exists it prints `holding <hash>` and
//! holds each delivery unacked, for the test to kill it so.

use std::sync::Arc;
use std::time::Duration;

use archiver_examples::maildir::MaildirArchive;
use clap::Parser;
use mq_archiver::{
    Config, Delivery, Handler, HandlerError, Kind, Runner, SubscriberName, Subscription, admin,
    async_trait, shutdown_signal,
};

#[derive(Parser)]
struct Args {
    /// The backend's URL (mq-archiver's schemes).
    #[arg(long)]
    url: String,
    #[arg(long)]
    prefix: String,
    #[arg(long)]
    name: String,
    #[arg(long)]
    root: std::path::PathBuf,
}

/// While a file of this name is in the root, deliveries are held, never
/// acked: the test kills the process holding them.
const HOLD: &str = "HOLD";

/// The Maildir archive, reporting each mail on stdout.
struct Reporting {
    root: std::path::PathBuf,
    maildir: MaildirArchive,
}

#[async_trait]
impl Handler for Reporting {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let envelope = delivery.envelope();
        let (Kind::Mail, Some(hash)) = (envelope.kind, envelope.message_id_hash.as_deref()) else {
            return self.maildir.handle(delivery).await;
        };
        if self.root.join(HOLD).exists() {
            // The test is about to kill this process while it holds
            // unacked deliveries: never store or ack this one.
            println!("holding {hash}");
            std::future::pending::<()>().await;
        }
        let path = MaildirArchive::path_of(&self.root, envelope.list_id.as_str(), hash);
        let seen = path.exists();
        self.maildir.handle(delivery).await?;
        let what = if seen { "dup" } else { "stored" };
        println!("{what} {hash} {}", delivery.attempt());
        Ok(())
    }
}

#[tokio::main]
async fn main() {
    admin::init_logging();
    let args = Args::parse();
    let config =
        Config::parse(&args.url, [("prefix", &args.prefix)]).expect("a valid URL and prefix");
    // Process kills do not lose the page cache; the suite does not cut power.
    let handler = Arc::new(Reporting {
        root: args.root.clone(),
        maildir: MaildirArchive::new(&args.root, false),
    });
    let subscription =
        Subscription::new(SubscriberName::new(&args.name).expect("valid name")).prefetch(32);
    let running = loop {
        let attempt = async {
            let client = config.connect_subscriber().await?;
            Runner::new(client, subscription.clone())
                .concurrency(8)
                .spawn(handler.clone(), shutdown_signal())
                .await
        };
        match attempt.await {
            Ok(running) => break running,
            Err(error) => {
                eprintln!("{}: broker not there yet: {error}", args.name);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    println!("ready");
    let stats = running.join().await;
    eprintln!("{}: stopped: {stats:?}", args.name);
}
