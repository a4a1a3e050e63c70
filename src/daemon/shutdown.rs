//! Orderly shutdown (SPEC §4.3, §4.5): stop receiving, then let every stage
//! drain into the next, upstream first, so that each record that was read
//! is processed, every group closes and every match is written — within
//! `daemon.shutdown_timeout`. The final log line tells whether any match
//! was lost, and the exit status follows it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::dispatch::Control;
use super::metrics::{add, get, Metrics};
use super::output::{OutputTx, Outputs};
use super::pipeline::RunningQuery;

pub struct Handles {
    pub stop: watch::Sender<bool>,
    pub receivers: Vec<JoinHandle<()>>,
    pub decoder: std::thread::JoinHandle<()>,
    pub dispatcher: JoinHandle<()>,
    pub metrics_task: Option<JoinHandle<()>>,
    pub watchdog_task: Option<JoinHandle<()>>,
}

/// How the daemon ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every match was written.
    Clean,
    /// Matches were lost (or the drain did not finish): exit status 1.
    MatchesLost(u64),
}

async fn join_thread(name: &str, t: std::thread::JoinHandle<()>) {
    match tokio::task::spawn_blocking(move || t.join()).await {
        Ok(Ok(())) => {}
        _ => tracing::error!("{name} thread failed"),
    }
}

impl Handles {
    /// Each step ends when the one before it has closed its channel:
    /// sockets → decoder → dispatcher (which finishes every query) →
    /// query tasks → formatter → writer, of every sink.
    pub async fn drain(
        self,
        running: Vec<RunningQuery>,
        output: OutputTx,
        outputs: Outputs,
        control: mpsc::Sender<Control>,
        metrics: &Arc<Metrics>,
    ) {
        let _ = self.stop.send(true);
        for r in self.receivers {
            let _ = r.await;
        }
        join_thread("decode", self.decoder).await;
        drop(control);
        if let Err(e) = self.dispatcher.await {
            tracing::error!(error = %e, "dispatcher failed");
        }
        for q in running {
            q.join(metrics).await;
        }
        // Queries retired by a late reload hold their own senders and end
        // on their own; the formatter ends once the last sender is gone.
        drop(output);
        outputs.finish().await;
        for t in [self.metrics_task, self.watchdog_task]
            .into_iter()
            .flatten()
        {
            t.abort();
        }
    }
}

/// Set by whichever of the orderly end and the deadline reports first.
static REPORTED: AtomicBool = AtomicBool::new(false);

/// If the daemon is still running `timeout` after SIGTERM — a sink that
/// does not take its writes, a stage that does not drain — report what was
/// not written and exit 1, whatever the other threads are doing.
pub fn arm_deadline(timeout: Duration, metrics: Arc<Metrics>) {
    let armed = std::thread::Builder::new()
        .name("flowy-deadline".into())
        .spawn(move || {
            std::thread::sleep(timeout);
            // Holding stderr (reentrant for this thread) keeps the stages
            // that are still running from logging after the final line.
            let _last_word = std::io::stderr().lock();
            if report(&metrics, true).is_some() {
                std::process::exit(1);
            }
        });
    if let Err(e) = armed {
        tracing::error!(error = %e, "cannot start the shutdown deadline thread");
    }
}

/// The final log line; `None` when the other path has already given it.
pub fn report(metrics: &Metrics, deadline_passed: bool) -> Option<Outcome> {
    if REPORTED.swap(true, Ordering::SeqCst) {
        return None;
    }
    let handed = get(&metrics.output_matches);
    let not_written = handed.saturating_sub(get(&metrics.output_lines));
    let dropped = get(&metrics.output_dropped);
    let failed = get(&metrics.output_write_errors);
    let pending = not_written.saturating_sub(dropped + failed);
    add(&metrics.output_not_written, pending);
    for sink in metrics.sinks() {
        let lost = get(&sink.dropped) + get(&sink.write_errors) + get(&sink.lines);
        add(&sink.not_written, get(&sink.matches).saturating_sub(lost));
    }
    if not_written == 0 && !deadline_passed {
        tracing::info!("shutdown complete: {}", super::status_line(metrics));
        return Some(Outcome::Clean);
    }
    let why = if deadline_passed {
        "; the drain did not finish within daemon.shutdown_timeout, matches not yet formed are not counted"
    } else {
        ""
    };
    tracing::error!(
        "shutdown: {not_written} matches not written ({dropped} dropped with the output queue full, {failed} lost to write errors, {pending} still queued at the end){why}: {}",
        super::status_line(metrics)
    );
    Some(Outcome::MatchesLost(not_written))
}
