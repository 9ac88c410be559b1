//! The Markdown report: each figure, the ratios ours / raw and
//! ours / omniqueue, and each target met or missed.

use std::fmt::Write as _;
use std::time::Duration;

use crate::memory::Footprint;
use crate::scenario::{Latency, Rate};

/// A contender's result in one measurement.
#[derive(Debug, Clone)]
pub enum Outcome<T> {
    Done(T),
    /// It ran and failed: the error.
    Failed(String),
    /// It does not apply to this contender: why.
    NotApplicable(&'static str),
}

impl<T> Outcome<T> {
    pub fn from_result(result: anyhow::Result<T>) -> Self {
        result.map_or_else(|error| Self::Failed(format!("{error:#}")), Self::Done)
    }

    fn done(&self) -> Option<&T> {
        match self {
            Self::Done(value) => Some(value),
            _ => None,
        }
    }

    fn cell(&self, show: impl Fn(&T) -> String) -> String {
        match self {
            Self::Done(value) => show(value),
            Self::Failed(error) => format!("failed: {}", error.replace('|', "/")),
            Self::NotApplicable(why) => format!("n/a ({why})"),
        }
    }
}

/// What each backend's contenders must reach (printed, not enforced).
#[derive(Debug, Clone, Copy)]
pub struct Targets {
    /// Least ours / raw.
    pub raw_ratio: f64,
    /// Least ours / omniqueue, where omniqueue runs on the backend.
    pub omniqueue_ratio: Option<f64>,
    /// Most end-to-end p99 at the offered rate.
    pub p99: Duration,
}

/// Largest peak resident set, publisher or consumer.
pub const PEAK_RSS_TARGET_MIB: u64 = 64;

/// One throughput measurement on one backend.
#[derive(Debug, Clone)]
pub struct RateRow {
    pub backend: &'static str,
    pub measure: String,
    pub ours: Outcome<Rate>,
    pub raw: Outcome<Rate>,
    pub omniqueue: Outcome<Rate>,
    pub targets: Targets,
}

/// One contender's latencies on one backend.
#[derive(Debug, Clone)]
pub struct LatencyRow {
    pub backend: &'static str,
    pub contender: &'static str,
    pub latency: Outcome<Latency>,
    /// The p99 target, for ours.
    pub p99_target: Option<Duration>,
}

/// Ours' memory on one backend.
#[derive(Debug, Clone)]
pub struct MemoryRow {
    pub backend: &'static str,
    pub footprint: Outcome<Footprint>,
}

/// Everything one run measured.
#[derive(Debug, Default)]
pub struct Report {
    /// Lines about the run: command, machine, settings.
    pub preamble: Vec<String>,
    pub rates: Vec<RateRow>,
    pub latencies: Vec<LatencyRow>,
    pub memory: Vec<MemoryRow>,
}

fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn rate(rate: &Rate) -> String {
    format!(
        "{}/s ({:.1} MiB/s)",
        thousands(rate.mails_per_s()),
        rate.mib_per_s()
    )
}

fn ms(duration: Duration) -> String {
    format!("{:.2}", duration.as_secs_f64() * 1000.0)
}

fn mark(met: bool) -> &'static str {
    if met { "✓" } else { "✗" }
}

/// `ours / other`, against `target` when there is one.
fn ratio(ours: &Outcome<Rate>, other: &Outcome<Rate>, target: Option<f64>) -> String {
    match (ours.done(), other.done()) {
        (Some(ours), Some(other)) => {
            let value = ours.mails_per_s() / other.mails_per_s();
            match target {
                Some(target) => format!("{value:.2} {} (≥ {target})", mark(value >= target)),
                None => format!("{value:.2}"),
            }
        }
        _ => "-".into(),
    }
}

impl Report {
    /// The report as Markdown.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.preamble {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(
            out,
            "\n### Throughput\n\nMails per second from the first publish to the last ack \
             (fan-out: to the last publish confirmed), and the body bytes they carried.\n"
        );
        let _ = writeln!(
            out,
            "| backend | measure | ours | raw client | ours / raw | omniqueue | ours / omniqueue |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        for row in &self.rates {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                row.backend,
                row.measure,
                row.ours.cell(rate),
                row.raw.cell(rate),
                ratio(&row.ours, &row.raw, Some(row.targets.raw_ratio)),
                row.omniqueue.cell(rate),
                ratio(&row.ours, &row.omniqueue, row.targets.omniqueue_ratio),
            );
        }
        let _ = writeln!(
            out,
            "\n### Latency\n\nMilliseconds from the publish call to the consumer having the \
             mail (end to end), and of the publish call itself (until durability is \
             confirmed).\n"
        );
        let _ = writeln!(
            out,
            "| backend | contender | p50 | p95 | p99 | max | publish p50 | publish p99 | p99 target |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
        for row in &self.latencies {
            let target = match (row.p99_target, row.latency.done()) {
                (Some(target), Some(latency)) => format!(
                    "{} (≤ {} ms)",
                    mark(latency.end_to_end.at(99.0) <= target),
                    ms(target)
                ),
                _ => "-".into(),
            };
            let cells = match &row.latency {
                Outcome::Done(l) => format!(
                    "{} | {} | {} | {} | {} | {}",
                    ms(l.end_to_end.at(50.0)),
                    ms(l.end_to_end.at(95.0)),
                    ms(l.end_to_end.at(99.0)),
                    ms(l.end_to_end.max()),
                    ms(l.publish.at(50.0)),
                    ms(l.publish.at(99.0)),
                ),
                other => format!("{} | | | | |", other.cell(|_| String::new())),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {cells} | {target} |",
                row.backend, row.contender
            );
        }
        let _ = writeln!(
            out,
            "\n### Memory\n\nPeak resident set (VmHWM) of ours' list server (publisher) and \
             archive server (consumer), each a process of its own, while a backlog is \
             published and then drained.\n"
        );
        let _ = writeln!(
            out,
            "| backend | backlog | publisher peak | consumer peak | drain rate | target (≤ {PEAK_RSS_TARGET_MIB} MiB) |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for row in &self.memory {
            let cells = match &row.footprint {
                Outcome::Done(f) => {
                    let mib = |kib: u64| kib as f64 / 1024.0;
                    let met =
                        f.publisher_peak_kib.max(f.consumer_peak_kib) <= PEAK_RSS_TARGET_MIB * 1024;
                    format!(
                        "{} | {:.1} MiB | {:.1} MiB | {}/s | {}",
                        thousands(f.backlog as f64),
                        mib(f.publisher_peak_kib),
                        mib(f.consumer_peak_kib),
                        thousands(f.backlog as f64 / f.drain.as_secs_f64()),
                        mark(met)
                    )
                }
                other => format!("{} | | | |", other.cell(|_| String::new())),
            };
            let _ = writeln!(out, "| {} | {cells} |", row.backend);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
    }
}
