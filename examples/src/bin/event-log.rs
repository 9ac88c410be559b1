//! `event-log`: an archive server that appends every list event it is
//! granted to a JSON-lines file, one line per event, synced before the
//! event is acknowledged. For watching what a list server publishes (the
//! real-Mailman tests run it to check the plugin's events), and as the
//! smallest archive server to copy.
//!
//! ```sh
//! event-log --url redis://127.0.0.1:6379 --option prefix=mailman --out events.jsonl
//! ```
//!
//! It prints `ready` once its durable subscription exists (what is
//! published from then on reaches it) and runs until SIGTERM or SIGINT,
//! finishing the event at hand. One event at a time, so the file keeps the
//! order the subscription delivers. A line:
//! `{"envelope_id":"…","list_id":"…","archive_policy":"public","event_type":"membership_added","event":{…}}`.
//! Event bodies hold member addresses: the file is as private as the
//! grant of the user it connects as.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use clap::Parser;
use mq_archiver::{
    Config, Connection, Delivery, Handler, HandlerError, Kind, Runner, Selection, Subscription,
    async_trait,
};
use tokio::signal::unix::{SignalKind, signal};

/// Appends each list event to a JSON-lines file.
#[derive(Parser)]
#[command(about = "Appends every list event of a subscription to a JSON-lines file")]
struct Args {
    /// The backend's URL (`redis://`, `amqp://`, `tcp://`, ...).
    #[arg(long)]
    url: String,
    /// A facade option `KEY=VALUE` (e.g. `prefix=mailman`, `user=...`); repeatable.
    #[arg(long = "option", value_name = "KEY=VALUE")]
    options: Vec<String>,
    /// The durable subscriber's name.
    #[arg(long, default_value = "event-log")]
    subscriber: String,
    /// The file the events are appended to.
    #[arg(long)]
    out: PathBuf,
}

/// Writes one line per event and syncs it before the ack.
struct EventLog {
    file: Mutex<File>,
}

#[async_trait]
impl Handler for EventLog {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let envelope = delivery.envelope();
        let event: serde_json::Value = serde_json::from_slice(&envelope.body)
            .map_err(|e| HandlerError::permanent(format!("event body is not JSON: {e}")))?;
        let line = serde_json::json!({
            "envelope_id": envelope.id.to_string(),
            "list_id": envelope.list_id.as_str(),
            "archive_policy": envelope.archive_policy.map(|p| p.as_str()),
            "event_type": envelope.event_type,
            "event": event,
        });
        let mut file = self.file.lock().expect("the file lock is never poisoned");
        writeln!(file, "{line}")
            .and_then(|()| file.sync_data())
            .map_err(|e| HandlerError::retryable(format!("cannot write the event log: {e}")))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    mq_archiver::admin::init_logging();
    let args = Args::parse();
    let options = args
        .options
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .ok_or_else(|| format!("--option {pair:?} is not KEY=VALUE"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let client = Config::parse(&args.url, options)?
        .connect_subscriber()
        .await?;
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.out)?;
    let subscription =
        Subscription::new(args.subscriber.parse()?).select(Selection::all().only(Kind::Event));
    let mut terminate = signal(SignalKind::terminate())?;
    let running = Runner::new(client.clone(), subscription)
        .concurrency(1)
        .spawn(
            EventLog {
                file: Mutex::new(file),
            },
            async move {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            },
        )
        .await?;
    println!("ready");
    let stats = running.join().await?;
    eprintln!(
        "event-log: acked {}, retried {}, rejected {}",
        stats.acked, stats.retried, stats.rejected
    );
    client.close().await?;
    Ok(())
}
