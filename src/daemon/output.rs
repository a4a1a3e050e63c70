//! The output (SPEC §3.3, §4.5): mergers hand matches to a formatter
//! thread, which turns them into lines and queues them (bounded in bytes,
//! see [`super::outqueue`]); a writer thread writes each queued chunk whole
//! and counts what it could not write.
//!
//! Formatting and writing block, so both run on their own OS threads
//! rather than on the runtime that serves the sockets; and they are two
//! threads so that a sink that blocks never stops the formatter from
//! applying the queue's policy (drop or wait).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::engine::Match;
use crate::output::{LineSink, MatchFormatter, OutputFormat, WriteFailure, WRITE_CHUNK};
use crate::query::plan::Plan;

use super::config::{Format, OutputSettings, WhenFull};
use super::health::Beat;
use super::metrics::{add, Metrics};
use super::outqueue::{Chunk, Item, Pushed, Queue};

pub enum OutMsg {
    Matches {
        plan: Arc<Plan>,
        matches: Vec<Match>,
    },
    /// Fires once everything handed over before it has been written (or
    /// has failed): a cluster worker lets the bus forget records only
    /// after their matches are on disk.
    Barrier(oneshot::Sender<()>),
}

/// What the mergers hold: every match handed over is counted, so the
/// matches that never reach the sink can be told at the end.
#[derive(Clone)]
pub struct OutputTx {
    tx: mpsc::Sender<OutMsg>,
    metrics: Arc<Metrics>,
}

impl OutputTx {
    /// Hand `matches` to the formatter; false when the output is gone.
    pub async fn send(&self, plan: Arc<Plan>, matches: Vec<Match>) -> bool {
        add(&self.metrics.output_matches, matches.len() as u64);
        self.tx
            .send(OutMsg::Matches { plan, matches })
            .await
            .is_ok()
    }

    /// Wait until every match handed over so far has been written (or
    /// failed and been counted); false when the output is gone.
    pub async fn written(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(OutMsg::Barrier(tx)).await.is_err() {
            return false;
        }
        rx.await.is_ok()
    }
}

/// Format settings a reload may change while queries keep running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Style {
    format: OutputFormat,
    records: bool,
    max_records: usize,
}

fn style(s: &OutputSettings) -> Style {
    let format = match s.format {
        Format::Json => OutputFormat::Json,
        Format::Text => OutputFormat::Text,
        Format::Csv => OutputFormat::Csv,
    };
    Style {
        format,
        records: s.records,
        max_records: s.max_records,
    }
}

/// The daemon's side of the running output: what a reload changes.
pub struct Output {
    queue: Arc<Queue>,
    style: Arc<Mutex<Style>>,
}

/// What shutdown waits for.
pub struct OutputThreads {
    pub formatter: JoinHandle<()>,
    /// Fires when the writer has written (or failed) everything.
    pub written: oneshot::Receiver<()>,
}

impl Output {
    /// Open the sink and start the formatter and writer threads; the
    /// formatter ends when every [`OutputTx`] is gone, the writer after it.
    pub fn start(
        s: &OutputSettings,
        capacity: usize,
        metrics: Arc<Metrics>,
        beats: (Beat, Beat),
    ) -> std::io::Result<(Output, OutputTx, OutputThreads)> {
        let sink = LineSink::open(&s.path)?;
        let queue = Arc::new(Queue::new(
            s.buffer,
            s.when_full == WhenFull::Drop,
            metrics.clone(),
        ));
        let style = Arc::new(Mutex::new(style(s)));
        let (tx, rx) = mpsc::channel(capacity);
        let (done_tx, done_rx) = oneshot::channel();
        let (format_beat, write_beat) = beats;
        let writer = Writer {
            sink,
            queue: queue.clone(),
            metrics: metrics.clone(),
            losses: LossReport::default(),
            beat: write_beat,
        };
        std::thread::Builder::new()
            .name("flowy-write".into())
            .spawn(move || writer.run(done_tx))?;
        let f = Formatter {
            queue: queue.clone(),
            style: style.clone(),
            formatters: HashMap::new(),
            chunk: Chunk::default(),
            // The queue's bound holds but for one match larger than it.
            chunk_limit: WRITE_CHUNK.min(s.buffer.max(1)),
            beat: format_beat,
        };
        let formatter = std::thread::Builder::new()
            .name("flowy-output".into())
            .spawn(move || f.run(rx))?;
        let threads = OutputThreads {
            formatter,
            written: done_rx,
        };
        Ok((Output { queue, style }, OutputTx { tx, metrics }, threads))
    }

    /// Apply what a reload changed: format, records, policy, and reopen the
    /// path (every SIGHUP, for logrotate). Never waits on the sink.
    pub fn reload(&self, s: &OutputSettings) {
        *self.style.lock().unwrap_or_else(|p| p.into_inner()) = style(s);
        self.queue.set_drop_when_full(s.when_full == WhenFull::Drop);
        self.queue.push_control(Item::Reopen(s.path.clone()));
    }
}

struct Formatter {
    queue: Arc<Queue>,
    style: Arc<Mutex<Style>>,
    /// Per query name, so a restarted query goes on numbering.
    formatters: HashMap<String, MatchFormatter>,
    chunk: Chunk,
    chunk_limit: usize,
    beat: Beat,
}

impl Formatter {
    /// Matches are queued as soon as the channel is empty: what is already
    /// waiting joins the same chunk, nothing waits for more.
    fn run(mut self, mut rx: mpsc::Receiver<OutMsg>) {
        while let Some(msg) = rx.blocking_recv() {
            self.beat.busy();
            self.format(msg);
            while self.chunk.buf.len() < self.chunk_limit {
                match rx.try_recv() {
                    Ok(msg) => self.format(msg),
                    Err(_) => break,
                }
            }
            self.flush();
            self.beat.idle();
        }
        self.flush();
        self.queue.close();
    }

    fn format(&mut self, msg: OutMsg) {
        let (plan, matches) = match msg {
            OutMsg::Matches { plan, matches } => (plan, matches),
            OutMsg::Barrier(done) => {
                self.flush();
                self.queue.push_control(Item::Barrier(done));
                return;
            }
        };
        let style = *self.style.lock().unwrap_or_else(|p| p.into_inner());
        let plan = &plan;
        let f = self
            .formatters
            .entry(plan.name.clone())
            .or_insert_with(|| MatchFormatter::new(plan.name.clone(), style.format, style.records));
        f.set_format(style.format, style.records);
        f.set_max_records(style.max_records);
        let header = style.format.header();
        if header != self.chunk.header && !self.chunk.ends.is_empty() {
            let chunk = std::mem::take(&mut self.chunk);
            push(&self.queue, chunk);
        }
        for m in &matches {
            self.chunk.header = header;
            f.append(plan, m, &mut self.chunk.buf);
            self.chunk.ends.push(self.chunk.buf.len());
            if self.chunk.buf.len() >= self.chunk_limit {
                let chunk = std::mem::take(&mut self.chunk);
                push(&self.queue, chunk);
            }
        }
    }

    fn flush(&mut self) {
        if !self.chunk.ends.is_empty() {
            push(&self.queue, std::mem::take(&mut self.chunk));
        }
    }
}

/// Dropped matches are counted by the queue; the log says so, rate-limited.
fn push(queue: &Queue, chunk: Chunk) {
    if let Pushed::Dropped(n) = queue.push(chunk) {
        static DROPS: Mutex<LossReport> = Mutex::new(LossReport::new());
        DROPS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .lost(n, "output queue full (output.when_full = \"drop\")");
    }
}

struct Writer {
    sink: LineSink,
    queue: Arc<Queue>,
    metrics: Arc<Metrics>,
    losses: LossReport,
    beat: Beat,
}

impl Writer {
    fn run(mut self, done: oneshot::Sender<()>) {
        while let Some(item) = self.queue.pop() {
            match item {
                Item::Lines(chunk) => self.write(chunk),
                Item::Reopen(path) => self.reopen(&path),
                Item::Barrier(done) => {
                    let _ = done.send(());
                }
            }
        }
        let _ = done.send(());
    }

    fn write(&mut self, chunk: Chunk) {
        self.beat.busy();
        let result = self.sink.write_lines(chunk.header, &chunk.buf, &chunk.ends);
        self.beat.idle();
        self.queue.release(chunk.buf.len());
        let n = chunk.matches();
        match result {
            Ok(()) => add(&self.metrics.output_lines, n),
            Err(WriteFailure { written, error }) => {
                let written = written as u64;
                let lost = n - written;
                add(&self.metrics.output_lines, written);
                add(&self.metrics.output_write_errors, lost);
                add(&self.metrics.output_not_written, lost);
                self.losses
                    .lost(lost, &format!("output write failed: {error}"));
            }
        }
    }

    fn reopen(&mut self, path: &str) {
        match self.sink.reopen(path) {
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

/// Losses are logged at once the first time, then at most every
/// `LOSS_LOG_EVERY` with the count since the last line, so a full disk
/// does not flood the journal yet every lost match is told.
struct LossReport {
    last: Option<Instant>,
    unreported: u64,
    total: u64,
}

const LOSS_LOG_EVERY: Duration = Duration::from_secs(10);

impl Default for LossReport {
    fn default() -> Self {
        LossReport::new()
    }
}

impl LossReport {
    const fn new() -> Self {
        LossReport {
            last: None,
            unreported: 0,
            total: 0,
        }
    }

    fn lost(&mut self, n: u64, why: &str) {
        self.unreported += n;
        self.total += n;
        if self.last.is_some_and(|t| t.elapsed() < LOSS_LOG_EVERY) {
            return;
        }
        tracing::error!(
            "{why}: {} matches not written ({} in all so far)",
            self.unreported,
            self.total
        );
        self.unreported = 0;
        self.last = Some(Instant::now());
    }
}
