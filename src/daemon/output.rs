//! The output (SPEC §3.3, §4.5): mergers hand matches to a formatter
//! thread, which turns them into lines and queues them (bounded in bytes,
//! see [`super::outqueue`]); a writer thread writes each queued chunk whole
//! and counts what it could not write.
//!
//! Formatting and writing block, so both run on their own OS threads
//! rather than on the runtime that serves the sockets; and they are two
//! threads so that a sink that blocks never stops the formatter from
//! applying the queue's policy (drop or wait).
//!
//! There is one such sink for `[output]` and one for each query with an
//! output of its own (`[queries.NAME.output]`); [`OutputTx`] routes each
//! query's matches to its sink by the query's name.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{mpsc, oneshot};

use crate::engine::Match;
use crate::output::rotate::{system_clock, RotatingSink, Target};
use crate::output::{MatchFormatter, OutputFormat, WriteFailure, WRITE_CHUNK};
use crate::query::plan::Plan;

use super::config::{Format, OutputSettings, Settings, WhenFull};
use super::health::{Beat, Health};
use super::metrics::Metrics;
use super::outqueue::{Chunk, Counters, Item, Pushed, Queue};

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

/// One sink's channel, and its counters.
#[derive(Clone)]
struct SinkTx {
    tx: mpsc::Sender<OutMsg>,
    counters: Counters,
}

/// Which sink takes each query's matches.
struct Routes {
    default: SinkTx,
    /// Queries with a sink of their own, by name.
    own: HashMap<String, SinkTx>,
}

/// What the mergers hold: every match handed over is counted, so the
/// matches that never reach the sink can be told at the end. A sink ends
/// once no route and no clone of this leads to it.
#[derive(Clone)]
pub struct OutputTx {
    routes: Arc<RwLock<Routes>>,
}

impl OutputTx {
    fn routes(&self) -> std::sync::RwLockReadGuard<'_, Routes> {
        self.routes.read().unwrap_or_else(|p| p.into_inner())
    }

    fn route(&self, query: &str) -> SinkTx {
        let r = self.routes();
        r.own.get(query).unwrap_or(&r.default).clone()
    }

    /// Hand `matches` to the query's sink; false when the output is gone.
    pub async fn send(&self, plan: Arc<Plan>, matches: Vec<Match>) -> bool {
        let sink = self.route(&plan.name);
        sink.counters.handed(matches.len() as u64);
        sink.tx
            .send(OutMsg::Matches { plan, matches })
            .await
            .is_ok()
    }

    /// Wait until every match handed over so far, to any sink, has been
    /// written (or failed and been counted); false when an output is gone.
    pub async fn written(&self) -> bool {
        let sinks: Vec<SinkTx> = {
            let r = self.routes();
            std::iter::once(&r.default)
                .chain(r.own.values())
                .cloned()
                .collect()
        };
        let mut waits = Vec::with_capacity(sinks.len());
        for sink in sinks {
            let (tx, rx) = oneshot::channel();
            if sink.tx.send(OutMsg::Barrier(tx)).await.is_err() {
                return false;
            }
            waits.push(rx);
        }
        for rx in waits {
            if rx.await.is_err() {
                return false;
            }
        }
        true
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

/// The daemon's side of one running sink: what a reload changes.
pub struct Output {
    queue: Arc<Queue>,
    style: Arc<Mutex<Style>>,
    settings: OutputSettings,
}

/// What shutdown waits for.
pub struct OutputThreads {
    pub formatter: JoinHandle<()>,
    /// Fires when the writer has written (or failed) everything.
    pub written: oneshot::Receiver<()>,
}

impl Output {
    /// Open the sink and start the formatter and writer threads; the
    /// formatter ends when the returned sender and its clones are gone,
    /// the writer after it.
    fn start(
        s: &OutputSettings,
        capacity: usize,
        counters: Counters,
        beats: (Beat, Beat),
    ) -> std::io::Result<(Output, mpsc::Sender<OutMsg>, OutputThreads)> {
        let sink = RotatingSink::open(&s.target(), system_clock())?;
        let queue = Arc::new(Queue::new(
            s.buffer,
            s.when_full == WhenFull::Drop,
            counters.clone(),
        ));
        let style = Arc::new(Mutex::new(style(s)));
        let (tx, rx) = mpsc::channel(capacity);
        let (done_tx, done_rx) = oneshot::channel();
        let (format_beat, write_beat) = beats;
        let writer = Writer {
            sink,
            label: s.label().to_string(),
            queue: queue.clone(),
            counters,
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
        let out = Output {
            queue,
            style,
            settings: s.clone(),
        };
        Ok((out, tx, threads))
    }

    /// Apply what a reload changed: format, records, policy, and reopen the
    /// path (every SIGHUP, for logrotate). Never waits on the sink. The
    /// queue's size is fixed: a changed `buffer` waits for a restart.
    fn reload(&mut self, s: &OutputSettings) {
        *self.style.lock().unwrap_or_else(|p| p.into_inner()) = style(s);
        self.queue.set_drop_when_full(s.when_full == WhenFull::Drop);
        self.queue.push_control(Item::Reopen(s.target()));
        self.settings = s.clone();
    }
}

/// Every sink of the daemon: `[output]` and the queries' own.
pub struct Outputs {
    routes: Arc<RwLock<Routes>>,
    default: Output,
    own: BTreeMap<String, Output>,
    /// Of every sink started, removed ones included: shutdown waits for all.
    threads: Vec<OutputThreads>,
    capacity: usize,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// Routes a reload removed while the query they serve was being retired:
/// the retired instance writes its last matches to its own sink, and the
/// route goes once it has finished (see [`Outputs::drop_routes`]).
pub struct Lingering {
    routes: Arc<RwLock<Routes>>,
    names: Vec<(String, SinkTx)>,
}

impl Lingering {
    /// Remove the routes, unless a later reload replaced them.
    pub fn drop_routes(self) {
        let mut r = self.routes.write().unwrap_or_else(|p| p.into_inner());
        for (name, sink) in self.names {
            if r.own
                .get(&name)
                .is_some_and(|s| s.tx.same_channel(&sink.tx))
            {
                r.own.remove(&name);
            }
        }
    }
}

impl Outputs {
    /// Open every sink the settings name; an error names the key.
    pub fn start(
        s: &Settings,
        capacity: usize,
        metrics: &Arc<Metrics>,
        health: &Arc<Health>,
    ) -> anyhow::Result<(Outputs, OutputTx)> {
        let counters = Counters::new(metrics.clone(), s.output.label());
        let beats = (
            health.register("output formatter"),
            health.register("output writer"),
        );
        let (default, tx, threads) = Output::start(&s.output, capacity, counters.clone(), beats)
            .with_context(|| format!("cannot open output {} (output.path)", s.output.path))?;
        let routes = Routes {
            default: SinkTx { tx, counters },
            own: HashMap::new(),
        };
        let mut outputs = Outputs {
            routes: Arc::new(RwLock::new(routes)),
            default,
            own: BTreeMap::new(),
            threads: vec![threads],
            capacity,
            metrics: metrics.clone(),
            health: health.clone(),
        };
        let mut started = Vec::new();
        for (name, o) in &s.query_outputs {
            started.push(outputs.start_own(name, o)?);
        }
        outputs.install(started);
        let tx = OutputTx {
            routes: outputs.routes.clone(),
        };
        Ok((outputs, tx))
    }

    fn start_own(
        &mut self,
        name: &str,
        o: &OutputSettings,
    ) -> anyhow::Result<(String, Output, SinkTx)> {
        let label = o.label();
        let counters = Counters::new(self.metrics.clone(), label);
        let beats = (
            self.health.register(format!("output formatter {label}")),
            self.health.register(format!("output writer {label}")),
        );
        let (out, tx, threads) = Output::start(o, self.capacity, counters.clone(), beats)
            .with_context(|| {
                format!("cannot open output {} (queries.{name}.output.path)", o.path)
            })?;
        // Kept before the route exists: a sink whose siblings failed to
        // open ends (its sender dropped) and is still waited for.
        self.threads.push(threads);
        Ok((name.to_string(), out, SinkTx { tx, counters }))
    }

    fn install(&mut self, started: Vec<(String, Output, SinkTx)>) {
        let mut r = self.routes.write().unwrap_or_else(|p| p.into_inner());
        for (name, out, sink) in started {
            tracing::info!(query = %name, sink = out.settings.label(), "query output");
            r.own.insert(name.clone(), sink);
            self.own.insert(name, out);
        }
    }

    /// SIGHUP: start the sinks the settings add (all or none: one that
    /// cannot be opened rejects the reload before anything changed), route
    /// queries whose output was removed to `[output]`, and apply the
    /// rest and reopen every file. A removed route of a query in
    /// `retiring` stays until that query has finished.
    pub fn apply(&mut self, s: &Settings, retiring: &HashSet<String>) -> anyhow::Result<Lingering> {
        let mut started = Vec::new();
        for (name, o) in &s.query_outputs {
            if !self.own.contains_key(name) {
                started.push(self.start_own(name, o)?);
            }
        }
        let removed: Vec<String> = self
            .own
            .keys()
            .filter(|n| !s.query_outputs.contains_key(*n))
            .cloned()
            .collect();
        let mut lingering = Vec::new();
        {
            let mut r = self.routes.write().unwrap_or_else(|p| p.into_inner());
            for name in removed {
                self.own.remove(&name);
                tracing::info!(query = %name, "query output removed: its matches go to [output]");
                match r.own.remove(&name) {
                    Some(sink) if retiring.contains(&name) => {
                        r.own.insert(name.clone(), sink.clone());
                        lingering.push((name, sink));
                    }
                    _ => {}
                }
            }
        }
        let fresh: HashSet<String> = started.iter().map(|(n, _, _)| n.clone()).collect();
        self.install(started);
        self.default.reload(&s.output);
        for (name, out) in &mut self.own {
            if fresh.contains(name) {
                continue;
            }
            if let Some(o) = s.query_outputs.get(name) {
                if o.buffer != out.settings.buffer {
                    tracing::warn!(
                        "queries.{name}.output.buffer changed: a reload cannot apply it; it takes effect at the next restart"
                    );
                }
                out.reload(o);
            }
        }
        Ok(Lingering {
            routes: self.routes.clone(),
            names: lingering,
        })
    }

    /// Reopen every sink as it is (a SIGHUP whose reload was rejected).
    pub fn reopen(&mut self) {
        let s = self.default.settings.clone();
        self.default.reload(&s);
        for out in self.own.values_mut() {
            let s = out.settings.clone();
            out.reload(&s);
        }
    }

    /// Once every [`OutputTx`] is gone: wait until every sink has written
    /// (or failed) all it was handed.
    pub async fn finish(self) {
        let Outputs {
            routes, threads, ..
        } = self;
        drop(routes);
        for t in threads {
            let joined = tokio::task::spawn_blocking(move || t.formatter.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::error!("output thread failed");
            }
            let _ = t.written.await;
        }
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
    sink: RotatingSink,
    /// The sink's name in logs (its path or template, or "stdout").
    label: String,
    queue: Arc<Queue>,
    counters: Counters,
    losses: LossReport,
    beat: Beat,
}

impl Writer {
    fn run(mut self, done: oneshot::Sender<()>) {
        while let Some(item) = self.queue.pop() {
            match item {
                Item::Lines(chunk) => self.write(chunk),
                Item::Reopen(target) => self.reopen(&target),
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
            Ok(()) => self.counters.written(n),
            Err(WriteFailure { written, error }) => {
                let written = written as u64;
                let lost = n - written;
                self.counters.written(written);
                self.counters.failed(lost);
                self.losses.lost(
                    lost,
                    &format!("output write failed: {error} (sink {})", self.label),
                );
            }
        }
    }

    fn reopen(&mut self, target: &Target) {
        match self.sink.reopen(target) {
            Ok(()) => {
                self.label = if target.path == "-" {
                    "stdout".into()
                } else {
                    target.path.clone()
                };
                tracing::info!(path = %self.sink.path(), "output reopened");
            }
            Err(e) => {
                tracing::error!(path = %target.path, error = %e, "cannot reopen output; keeping the old one")
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
