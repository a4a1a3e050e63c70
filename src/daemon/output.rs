//! The output thread: one sink shared by every query (each line names its
//! query), written and flushed as matches arrive, reopened on SIGHUP.
//!
//! File writes block, so they run on their own OS thread rather than on the
//! runtime that serves the sockets.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::mpsc;

use crate::engine::Match;
use crate::output::{open_output, MatchFormatter, OutputFormat, WRITE_CHUNK};
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

pub struct Output {
    sink: Box<dyn Write + Send>,
    format: OutputFormat,
    records: bool,
    formatters: HashMap<String, MatchFormatter>,
    /// Lines formatted but not yet written, and how many they are.
    pending: Vec<u8>,
    pending_lines: u64,
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
            sink: open_output(path)?,
            format,
            records,
            formatters: HashMap::new(),
            pending: Vec::with_capacity(WRITE_CHUNK),
            pending_lines: 0,
            metrics,
        })
    }

    pub fn spawn(self, rx: mpsc::Receiver<OutMsg>) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("flowy-output".into())
            .spawn(move || self.run(rx))
    }

    /// Matches are written and flushed as soon as the queue is empty: what
    /// is already waiting joins the same write, nothing waits for more.
    fn run(mut self, mut rx: mpsc::Receiver<OutMsg>) {
        while let Some(msg) = rx.blocking_recv() {
            self.handle(msg);
            while self.pending.len() < WRITE_CHUNK {
                match rx.try_recv() {
                    Ok(msg) => self.handle(msg),
                    Err(_) => break,
                }
            }
            self.write_pending();
        }
        self.write_pending();
    }

    fn handle(&mut self, msg: OutMsg) {
        match msg {
            OutMsg::Matches { plan, matches } => {
                // Out of the map while writing, which needs all of `self`.
                let mut f = self.formatters.remove(&plan.name).unwrap_or_else(|| {
                    MatchFormatter::new(plan.name.clone(), self.format, self.records)
                });
                for m in &matches {
                    f.append(&plan, m, &mut self.pending);
                    self.pending_lines += 1;
                    if self.pending.len() >= WRITE_CHUNK {
                        self.write_pending();
                    }
                }
                self.formatters.insert(plan.name.clone(), f);
            }
            OutMsg::Reopen(path) => {
                self.write_pending();
                match open_output(&path) {
                    Ok(sink) => {
                        self.sink = sink;
                        tracing::info!(path = %path, "output reopened");
                    }
                    Err(e) => {
                        tracing::error!(path = %path, error = %e, "cannot reopen output; keeping the old one")
                    }
                }
            }
        }
    }

    fn write_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let written = self
            .sink
            .write_all(&self.pending)
            .and_then(|()| self.sink.flush());
        match written {
            Ok(()) => add(&self.metrics.output_lines, self.pending_lines),
            Err(e) => {
                add(&self.metrics.output_write_errors, self.pending_lines);
                if super::metrics::get(&self.metrics.output_write_errors) <= LOGGED_ERRORS {
                    tracing::error!(lines = self.pending_lines, error = %e, "output write failed");
                }
            }
        }
        self.pending.clear();
        self.pending_lines = 0;
        // A single huge match must not pin its buffer for good; ordinary
        // ones keep it, so its pages are not faulted in again every time.
        if self.pending.capacity() > 16 * WRITE_CHUNK {
            self.pending.shrink_to(WRITE_CHUNK);
        }
    }
}
