//! The chaos suite's list server: archives chaos mails `--from`..`--count`
//! through a [`QueueArchiver`] with a spool, `--concurrency` at a time, and
//! prints `ok <i> <outcome>` on stdout for each `archive_message` that
//! returned `Ok` (the test's record of what must not be lost). It connects
//! lazily, so it starts and spools while the broker is down. At the end it
//! waits for the spool to drain and prints `done <depth left>`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use archiver_tests::{chaos_list, chaos_mail, corpus, parse};
use clap::Parser;
use mq_archiver::{
    ArchiveUrls, Archiver, Config, LazyPublisher, Outcome, QueueArchiver, SpoolOptions, admin,
};

#[derive(Parser)]
struct Args {
    /// The backend's URL (mq-archiver's schemes).
    #[arg(long)]
    url: String,
    #[arg(long)]
    prefix: String,
    /// The spool's directory (kept across restarts).
    #[arg(long)]
    spool: std::path::PathBuf,
    /// Mails numbered below this are archived.
    #[arg(long)]
    count: usize,
    /// The first mail number (after a restart, where the last run stopped).
    #[arg(long, default_value_t = 0)]
    from: usize,
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Mails per second at most (0: as fast as it goes).
    #[arg(long, default_value_t = 0)]
    rate: u64,
}

#[tokio::main]
async fn main() {
    admin::init_logging();
    let args = Args::parse();
    let corpus = Arc::new(corpus("chaos-list-server").expect("the corpus"));
    let config = Arc::new(
        Config::parse(&args.url, [("prefix", &args.prefix)]).expect("a valid URL and prefix"),
    );
    let capabilities = config
        .publisher_capabilities()
        .expect("a complete configuration");
    let publisher = LazyPublisher::new(capabilities, move || {
        let config = config.clone();
        async move { Ok(config.connect_publisher().await?) }
    });
    let mut spool = SpoolOptions::new(&args.spool);
    spool.backoff = mq_archiver::Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    let archiver = Arc::new(
        QueueArchiver::new(
            "chaos",
            publisher,
            ArchiveUrls::new("https://archive.example.org/{list_id}/").expect("valid URL"),
        )
        .with_spool(spool)
        .expect("the spool opens"),
    );
    let next = Arc::new(AtomicUsize::new(args.from));
    let started = Instant::now();
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (archiver, corpus, next) = (archiver.clone(), corpus.clone(), next.clone());
            let (count, from, rate) = (args.count, args.from, args.rate);
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= count {
                        return;
                    }
                    if let Some(offset) = ((i - from) as u64 * 1_000_000).checked_div(rate) {
                        tokio::time::sleep_until((started + Duration::from_micros(offset)).into())
                            .await;
                    }
                    let raw = chaos_mail(&corpus, i);
                    let list = chaos_list(&parse(raw.clone()));
                    loop {
                        match archiver.archive_message(&list, raw.clone()).await {
                            Ok(receipt) => {
                                let outcome = match receipt.outcome {
                                    Outcome::Published => "published",
                                    Outcome::Spooled => "spooled",
                                    Outcome::Skipped(_) => "skipped",
                                };
                                println!("ok {i} {outcome}");
                                break;
                            }
                            Err(error) => {
                                eprintln!("mail {i} not archived, retrying: {error}");
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker");
    }
    let left = archiver
        .shutdown(Duration::from_secs(300))
        .await
        .expect("a spool");
    println!("done {} {:?}", left.depth, left);
    std::process::exit(if left.depth == 0 { 0 } else { 1 });
}
