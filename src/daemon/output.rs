//! The output thread: one sink shared by every query (each line names its
//! query), written and flushed as matches arrive, reopened on SIGHUP.
//!
//! File writes block, so they run on their own OS thread rather than on the
//! runtime that serves the sockets.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::mpsc;

use crate::engine::Match;
use crate::output::{open_output, MatchWriter, OutputFormat};
use crate::query::plan::Plan;

use super::config::Format;
use super::metrics::{add, Metrics};

pub enum OutMsg {
    Matches {
        plan: Arc<Plan>,
        matches: Vec<Match>,
    },
    /// Reopen the output path (logrotate moved the file away).
    Reopen(String),
}

/// A sink every query's writer shares; reopening swaps the inner writer
/// for all of them at once.
#[derive(Clone)]
struct SharedSink(Arc<Mutex<Box<dyn Write + Send>>>);

impl SharedSink {
    fn swap(&self, new: Box<dyn Write + Send>) {
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let _ = guard.flush();
        *guard = new;
    }
}

impl Write for SharedSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).flush()
    }
}

pub struct Output {
    sink: SharedSink,
    format: OutputFormat,
    records: bool,
    writers: HashMap<String, MatchWriter>,
    metrics: Arc<Metrics>,
}

/// Errors are logged for the first few and then only counted, so a full
/// disk does not flood the journal.
const LOGGED_ERRORS: u64 = 10;

impl Output {
    pub fn open(
        path: &str,
        format: Format,
        records: bool,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self> {
        let format = match format {
            Format::Json => OutputFormat::Json,
            Format::Text => OutputFormat::Text,
        };
        Ok(Output {
            sink: SharedSink(Arc::new(Mutex::new(open_output(path)?))),
            format,
            records,
            writers: HashMap::new(),
            metrics,
        })
    }

    pub fn spawn(self, rx: mpsc::Receiver<OutMsg>) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("flowy-output".into())
            .spawn(move || self.run(rx))
    }

    fn run(mut self, mut rx: mpsc::Receiver<OutMsg>) {
        while let Some(msg) = rx.blocking_recv() {
            match msg {
                OutMsg::Matches { plan, matches } => {
                    for m in &matches {
                        self.write(&plan, m);
                    }
                }
                OutMsg::Reopen(path) => match open_output(&path) {
                    Ok(sink) => {
                        self.sink.swap(sink);
                        tracing::info!(path = %path, "output reopened");
                    }
                    Err(e) => {
                        tracing::error!(path = %path, error = %e, "cannot reopen output; keeping the old one")
                    }
                },
            }
        }
        let _ = self.sink.flush();
    }

    fn write(&mut self, plan: &Plan, m: &Match) {
        let writer = self.writers.entry(plan.name.clone()).or_insert_with(|| {
            MatchWriter::new(
                plan.name.clone(),
                self.format,
                self.records,
                Box::new(self.sink.clone()),
            )
        });
        match writer.write(plan, m) {
            Ok(()) => add(&self.metrics.output_lines, 1),
            Err(e) => {
                add(&self.metrics.output_write_errors, 1);
                if super::metrics::get(&self.metrics.output_write_errors) <= LOGGED_ERRORS {
                    tracing::error!(query = %plan.name, error = %e, "output write failed");
                }
            }
        }
    }
}
