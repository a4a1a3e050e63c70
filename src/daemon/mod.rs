//! The daemon (`flowy serve`): configuration, pipeline tasks, signals,
//! metrics.
//!
//! ```text
//! socket tasks ─► decode thread ─► dispatcher ─► query tasks ─► formatter ─► writer
//!  (per socket)    (rec_id, one)    (admission,   (QueryDriver,  (lines, per sink: [output]
//!                                    fan-out)      per query)     and each query's own)
//! ```
//! Every hop is a bounded channel: a slow stage slows the one before it and,
//! at the end, the kernel socket buffer absorbs the burst. Nothing that has
//! been read from a socket is dropped inside the daemon; only the output
//! queue (bounded in bytes) may drop matches, when told to
//! (`output.when_full = "drop"`), and every match not written is counted
//! and reported at the end.

pub mod config;
pub mod dispatch;
mod exporter_metrics;
pub mod health;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod notify;
pub mod output;
pub mod outqueue;
pub mod panic;
pub mod pipeline;
pub mod process;
pub mod reload;
pub mod shutdown;
pub mod signals;
pub mod sockets;
pub mod worker;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{mpsc, oneshot, watch};

use crate::cli::ServeArgs;
use crate::cluster::collector::{Publisher, PublisherConfig};
use crate::cluster::lane::{self, Route};
use crate::cluster::nats::NatsBus;
use crate::collect::{bind_udp, DecoderConfig, TemplateScope};
use crate::engine::driver::Admission;
use crate::engine::{EngineConfig, Watermark};
use crate::sanity::TimeSanity;

use config::{Overrides, Role, Scope, Settings};
use dispatch::{Control, Dispatcher};
use health::Health;
use metrics::{add, get, set, Metrics};
use output::{OutputTx, Outputs};
use pipeline::RunningQuery;
use reload::{Compiled, LoadError};
use shutdown::Handles;
pub use shutdown::Outcome;
use signals::{Event, Signals};

/// How often systemd's STATUS= line is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// Build the runtime and run the daemon until SIGTERM/SIGINT.
pub fn run(args: ServeArgs) -> anyhow::Result<Outcome> {
    panic::install();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("flowy")
        .build()
        .context("cannot start the tokio runtime")?;
    let outcome = rt.block_on(serve(args));
    // Nothing is left to wait for; do not let a stray blocking task hold
    // the exit.
    rt.shutdown_timeout(Duration::from_secs(1));
    outcome
}

fn overrides(args: ServeArgs) -> Overrides {
    Overrides {
        config: args.config,
        listen: args.listen,
        query: args.query,
        output: args.output,
        partitions: args.partitions,
    }
}

/// `flowy serve --check-config`: the configuration and every query as the
/// daemon would load them, without binding a socket or opening a file. The
/// summary names what would run.
pub fn check_config(args: ServeArgs) -> anyhow::Result<String> {
    let settings = config::load(&overrides(args))?;
    let (queries, fallback) = reload::load(&settings)?;
    let names: Vec<&str> = queries.iter().map(|q| q.plan.name.as_str()).collect();
    let listen: Vec<String> = settings
        .collector
        .listen
        .iter()
        .map(ToString::to_string)
        .collect();
    let queries_part = format!(
        "{} quer{} ({}{})",
        names.len(),
        if names.len() == 1 { "y" } else { "ies" },
        names.join(", "),
        if fallback { "; built-in examples" } else { "" },
    );
    let c = &settings.cluster;
    let lanes = || {
        lane::lanes(queries.iter().map(|q| q.plan.as_ref()))
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    };
    Ok(match c.role {
        Role::Standalone => format!(
            "configuration ok: {queries_part}, listening on {}, output {}; sinks: {}",
            listen.join(", "),
            describe_sink(&settings.output),
            sinks_summary(&settings, &names),
        ),
        Role::Collector => format!(
            "configuration ok: cluster collector {} on {}: {queries_part}, listening on {}, publishing lanes: {}",
            c.collector_id,
            c.nats,
            listen.join(", "),
            lane::routes(queries.iter().map(|q| q.plan.as_ref()))
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        ),
        Role::Worker => {
            let (lo, hi) = c.worker_partitions.unwrap_or((0, c.partitions - 1));
            format!(
                "configuration ok: cluster worker on {}, partitions {lo}-{hi} of {}: {queries_part}, lanes: {}, output {}; sinks: {}",
                c.nats,
                c.partitions,
                lanes(),
                describe_sink(&settings.output),
                sinks_summary(&settings, &names),
            )
        }
    })
}

/// Each query and the sink its matches go to.
fn sinks_summary(settings: &Settings, names: &[&str]) -> String {
    let each: Vec<String> = names
        .iter()
        .map(|n| {
            let o = settings.query_outputs.get(*n).unwrap_or(&settings.output);
            format!("{n} → {}", describe_sink(o))
        })
        .collect();
    each.join(", ")
}

/// `PATH`, `stdout`, or `TEMPLATE (every 5m)`.
fn describe_sink(o: &config::OutputSettings) -> String {
    let Some(ms) = o.rotate else {
        return o.label().to_string();
    };
    let every = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
    ]
    .iter()
    .find(|(unit, _)| ms % unit == 0)
    .map_or(format!("{ms}ms"), |(unit, name)| {
        format!("{}{name}", ms / unit)
    });
    format!("{} (every {every})", o.label())
}

/// Run the daemon until SIGTERM/SIGINT and tell whether every match was
/// written.
pub async fn serve(args: ServeArgs) -> anyhow::Result<Outcome> {
    let overrides = overrides(args);
    let settings = config::load(&overrides)?;
    init_logging(&settings.log_level);
    if settings.cluster.role == Role::Worker {
        return worker::serve(settings, overrides).await;
    }
    let daemon = Daemon::start(settings, overrides).await?;
    daemon.run().await
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A subscriber may already be installed (tests, embedding); keep it.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Did the daemon fail to start because a query does not compile?
pub fn is_compile_error(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<LoadError>(), Some(LoadError::Compile(_)))
}

pub fn engine_config(s: &config::EngineSettings) -> EngineConfig {
    EngineConfig {
        lateness: s.lateness,
        window: s.window,
        horizon: s.horizon,
        late: s.late,
        max_open_groups: s.max_open_groups,
        max_stored_groups: s.max_stored_groups,
        max_reorder: s.max_reorder,
        max_state: s.max_state,
    }
}

pub fn decoder_config(s: &config::CollectorSettings, d: &config::DecoderSettings) -> DecoderConfig {
    DecoderConfig {
        template_scope: match s.template_scope {
            Scope::Address => TemplateScope::Address,
            Scope::AddressPort => TemplateScope::AddressPort,
        },
        apply_sampling: s.apply_sampling,
        max_pending: s.max_pending,
        max_exporters: s.max_exporters,
        max_state: d.max_state,
        pending_ttl_ms: d.pending_ttl,
        template_store: s.template_store.clone(),
        exporter_idle_ms: s.exporter_idle.unwrap_or(0),
        ..DecoderConfig::default()
    }
}

/// The running daemon: its settings, query set and the channels the
/// control loop needs.
struct Daemon {
    settings: Settings,
    overrides: Overrides,
    running: Vec<RunningQuery>,
    output_tx: OutputTx,
    outputs: Outputs,
    control: mpsc::Sender<Control>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    events: mpsc::UnboundedReceiver<Event>,
    /// ms; a reload may change it before SIGTERM reads it.
    shutdown_timeout: Arc<AtomicU64>,
    handles: Handles,
    /// Collector role: the lanes the publisher routes records to; a
    /// reload replaces them instead of swapping running queries.
    lanes: Option<watch::Sender<Arc<Vec<Route>>>>,
}

impl Daemon {
    async fn start(settings: Settings, overrides: Overrides) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::default());
        metrics.set_lateness(settings.engine.lateness);
        let health = Arc::new(Health::default());
        let (queries, fallback) = reload::load(&settings)?;
        if fallback {
            tracing::info!(
                pattern = config::DEFAULT_QUERY_GLOB,
                "no query files match; running the built-in example queries"
            );
        }
        // Signals first: a SIGHUP right after READY must not kill us.
        let signals = Signals::install().context("cannot install signal handlers")?;
        let cap = settings.engine.channel_capacity;

        let (outputs, out_tx) = Outputs::start(&settings, cap, &metrics, &health)?;

        let collector = settings.cluster.role == Role::Collector;
        let lane_set = Arc::new(lane::routes(queries.iter().map(|c| c.plan.as_ref())));
        let engine_cfg = engine_config(&settings.engine);
        let running: Vec<RunningQuery> = if collector {
            Vec::new()
        } else {
            queries
                .into_iter()
                .map(|c| start_query(c, &engine_cfg, cap, &out_tx, &metrics, &health))
                .collect()
        };
        add(&metrics.queries_running, running.len() as u64);
        for q in &running {
            tracing::info!(query = %q.name, "query running");
        }

        let (batch_tx, batch_rx) = mpsc::channel(cap);
        let (ctl_tx, ctl_rx) = mpsc::channel(4);
        let watermark = Watermark::new(settings.engine.lateness, settings.engine.idle_advance)
            .bounded_by_wall_clock();
        let routes = running.iter().map(|q| q.route.clone()).collect();
        let dispatcher = Dispatcher::new(
            routes,
            Admission::new(watermark, settings.engine.late),
            metrics.clone(),
            health.register("dispatcher"),
        );
        let (dispatcher, lanes) = if collector {
            let (lanes_tx, lanes_rx) = watch::channel(lane_set);
            let publisher = start_publisher(&settings.cluster, lanes_rx, &metrics).await?;
            (tokio::spawn(publisher.run(batch_rx)), Some(lanes_tx))
        } else {
            (tokio::spawn(dispatcher.run(batch_rx, ctl_rx)), None)
        };

        let c = &settings.collector;
        let (dg_tx, dg_rx) = mpsc::channel(c.queue);
        let decoder = ingest::spawn_decoder(
            decoder_config(c, &settings.decoder),
            TimeSanity::live(c.max_future),
            dg_rx,
            batch_tx,
            metrics.clone(),
            health.register("decoder"),
        )
        .context("cannot start the decode thread")?;

        let (stop_tx, stop_rx) = watch::channel(false);
        let receivers = start_receivers(c, &dg_tx, &stop_rx, &metrics, &health)?;
        drop(dg_tx);
        let metrics_task = match settings.metrics_listen {
            Some(addr) => Some(start_metrics(addr, &metrics).await?),
            None => None,
        };

        let shutdown_timeout = Arc::new(AtomicU64::new(settings.daemon.shutdown_timeout as u64));
        let events = forward_signals(signals, shutdown_timeout.clone(), metrics.clone());
        let watchdog_task = start_watchdog(health.clone());

        Ok(Daemon {
            settings,
            overrides,
            running,
            output_tx: out_tx,
            outputs,
            control: ctl_tx,
            metrics,
            health,
            events,
            shutdown_timeout,
            handles: Handles {
                stop: stop_tx,
                receivers,
                decoder,
                dispatcher,
                metrics_task,
                watchdog_task,
            },
            lanes,
        })
    }

    async fn run(mut self) -> anyhow::Result<Outcome> {
        notify::ready();
        tracing::info!("flowy ready");
        let mut status = tokio::time::interval(STATUS_EVERY);
        loop {
            tokio::select! {
                ev = self.events.recv() => match ev {
                    Some(Event::Reload) => self.reload().await,
                    Some(Event::Shutdown) | None => break,
                },
                _ = status.tick() => notify::status(&status_line(&self.metrics)),
            }
        }
        notify::stopping();
        tracing::info!("shutting down: draining received records");
        let Daemon {
            running,
            output_tx,
            outputs,
            control,
            metrics,
            handles,
            ..
        } = self;
        handles
            .drain(running, output_tx, outputs, control, &metrics)
            .await;
        match shutdown::report(&metrics, false) {
            Some(outcome) => Ok(outcome),
            // The deadline thread reported first and is ending the process.
            None => std::future::pending().await,
        }
    }

    async fn reload(&mut self) {
        notify::reloading();
        tracing::info!("SIGHUP: reloading configuration and queries");
        match self.try_reload().await {
            Ok(()) => add(&self.metrics.reloads, 1),
            Err(e) => {
                add(&self.metrics.reload_failures, 1);
                tracing::error!("reload rejected, the running queries stay in force:\n{e:#}");
                // Every SIGHUP reopens the outputs (logrotate), also one
                // whose reload was rejected; an accepted one did already.
                self.outputs.reopen();
            }
        }
        notify::ready();
    }

    async fn try_reload(&mut self) -> anyhow::Result<()> {
        let settings = config::load(&self.overrides)?;
        let (compiled, fallback) = reload::load(&settings)?;
        if fallback {
            tracing::info!("no query files match; running the built-in example queries");
        }
        if let Some(lanes) = &self.lanes {
            let set = lane::routes(compiled.iter().map(|c| c.plan.as_ref()));
            for l in &set {
                tracing::info!(lane = %l, "publishing lane");
            }
            let n = set.len();
            lanes.send_replace(Arc::new(set));
            self.outputs.apply(&settings, &Default::default())?;
            reload::warn_unapplied(&self.settings, &settings, 0);
            self.settings = settings;
            tracing::info!(lanes = n, "reload complete");
            return Ok(());
        }
        let running: Vec<(&str, &str)> = self
            .running
            .iter()
            .map(|q| (q.name.as_str(), q.source.as_str()))
            .collect();
        let new: Vec<(&str, &str)> = compiled
            .iter()
            .map(|c| (c.text.name.as_str(), c.text.source.as_str()))
            .collect();
        let diff = reload::diff(&running, &new);
        let retiring: std::collections::HashSet<String> = diff
            .retire
            .iter()
            .filter_map(|&i| self.running.get(i).map(|q| q.name.clone()))
            .collect();
        // Sinks first: one that cannot be opened rejects the reload
        // before any query changed.
        let lingering = self.outputs.apply(&settings, &retiring)?;

        let engine_cfg = engine_config(&settings.engine);
        let cap = settings.engine.channel_capacity;
        let mut compiled: Vec<Option<Compiled>> = compiled.into_iter().map(Some).collect();
        let started: Vec<RunningQuery> = diff
            .start
            .iter()
            .filter_map(|&j| compiled.get_mut(j).and_then(Option::take))
            .map(|c| {
                start_query(
                    c,
                    &engine_cfg,
                    cap,
                    &self.output_tx,
                    &self.metrics,
                    &self.health,
                )
            })
            .collect();
        let (kept, retired): (Vec<_>, Vec<_>) = std::mem::take(&mut self.running)
            .into_iter()
            .enumerate()
            .partition(|(i, _)| diff.keep.contains(i));
        let mut next: Vec<RunningQuery> = kept.into_iter().map(|(_, q)| q).collect();
        reload::warn_unapplied(&self.settings, &settings, next.len());
        let retired: Vec<RunningQuery> = retired.into_iter().map(|(_, q)| q).collect();
        for q in &retired {
            tracing::info!(query = %q.name, "query finished (removed or changed)");
        }
        for q in &started {
            tracing::info!(query = %q.name, "query started");
        }
        next.extend(started);

        let (done_tx, done_rx) = oneshot::channel();
        let swap = Control::Swap {
            routes: next.iter().map(|q| q.route.clone()).collect(),
            retire: retired.iter().map(|q| q.route.clone()).collect(),
            done: done_tx,
        };
        self.running = next;
        set(&self.metrics.queries_running, self.running.len() as u64);
        if self.control.send(swap).await.is_ok() {
            let _ = done_rx.await;
        }
        // Retired queries drain and flush in the background, into the
        // sinks they had.
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            for q in retired {
                q.join(&metrics).await;
            }
            lingering.drop_routes();
        });
        self.shutdown_timeout
            .store(settings.daemon.shutdown_timeout as u64, Ordering::Relaxed);
        self.settings = settings;
        tracing::info!(queries = self.running.len(), "reload complete");
        Ok(())
    }
}

/// Bind every configured address and start a receive task per socket.
fn start_receivers(
    c: &config::CollectorSettings,
    tx: &mpsc::Sender<ingest::Datagram>,
    stop: &watch::Receiver<bool>,
    metrics: &Arc<Metrics>,
    health: &Health,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut receivers = Vec::new();
    let mut watch = sockets::SocketWatch::default();
    let allow: Arc<[crate::value::Prefix]> = c.allow.clone().into();
    for addr in &c.listen {
        let socks = bind_udp(*addr, c.sockets, c.recv_buffer).map_err(|e| {
            let held = if e.kind() == std::io::ErrorKind::AddrInUse {
                " — another process (another flowy?) holds this address"
            } else {
                ""
            };
            anyhow::anyhow!("cannot bind UDP {addr} (collector.listen): {e}{held}")
        })?;
        if let Some(first) = socks.first() {
            let local = first.local_addr().context("socket address")?;
            watch.add(metrics, &format!("udp://{local}"), &socks);
        }
        for s in socks {
            let local = s.local_addr().context("socket address")?;
            tracing::info!("collector listening on udp://{local}");
            let beat = health.register(format!("receiver udp://{local}"));
            let task = ingest::receive(
                s,
                tx.clone(),
                metrics.clone(),
                stop.clone(),
                allow.clone(),
                beat,
            );
            receivers.push(tokio::spawn(task));
        }
    }
    // Ends with the receivers, when `stop` flips.
    receivers.push(watch.start(stop.clone()));
    Ok(receivers)
}

/// The collector role's publisher, connected and with its first ids.
async fn start_publisher(
    c: &config::ClusterSettings,
    lanes: watch::Receiver<Arc<Vec<Route>>>,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Publisher<NatsBus>> {
    for l in lanes.borrow().iter() {
        tracing::info!(lane = %l, "publishing lane");
    }
    let bus = NatsBus::connect(&c.nats, &c.stream)
        .await
        .context("cluster.role = collector needs the NATS server (cluster.nats)")?;
    let cfg = PublisherConfig {
        collector: c.collector_id,
        partitions: c.partitions,
        batch: c.batch,
        max_inflight: c.max_inflight,
    };
    Ok(Publisher::new(bus, cfg, lanes, metrics.clone()).await?)
}

pub(crate) async fn start_metrics(
    addr: std::net::SocketAddr,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let l = http::bind(addr)
        .await
        .with_context(|| format!("cannot bind metrics {addr} (metrics.listen)"))?;
    let local = l.local_addr().context("metrics address")?;
    tracing::info!("metrics on http://{local}/metrics");
    Ok(tokio::spawn(http::serve(l, metrics.clone())))
}

fn start_query(
    c: Compiled,
    cfg: &EngineConfig,
    cap: usize,
    output: &OutputTx,
    metrics: &Metrics,
    health: &Health,
) -> RunningQuery {
    RunningQuery::start(
        c.plan,
        c.text.source,
        cfg,
        cap,
        output.clone(),
        metrics,
        health,
    )
}

/// Signals are read by a task of their own, so that SIGTERM arms the
/// shutdown deadline even while the control loop is busy (a reload waiting
/// on a stalled pipeline).
pub(crate) fn forward_signals(
    mut signals: Signals,
    timeout_ms: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
) -> mpsc::UnboundedReceiver<Event> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut armed = false;
        loop {
            let ev = signals.next().await;
            if ev == Event::Shutdown && !armed {
                armed = true;
                let timeout = Duration::from_millis(timeout_ms.load(Ordering::Relaxed));
                shutdown::arm_deadline(timeout, metrics.clone());
            }
            if tx.send(ev).is_err() {
                break;
            }
        }
    });
    rx
}

/// How often a stalled stage is logged while WATCHDOG=1 is withheld.
const STALL_LOG_EVERY: Duration = Duration::from_secs(10);

/// With `WatchdogSec=`, send WATCHDOG=1 every half interval while no stage
/// has been stuck on one item for that long.
pub(crate) fn start_watchdog(health: Arc<Health>) -> Option<tokio::task::JoinHandle<()>> {
    let interval = notify::watchdog_interval()?;
    let every = (interval / 2).max(Duration::from_millis(10));
    tracing::info!("systemd watchdog every {every:?}");
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        let mut logged: Option<Instant> = None;
        loop {
            tick.tick().await;
            let stuck = health.stuck(every);
            if stuck.is_empty() {
                notify::watchdog();
                continue;
            }
            if logged.is_none_or(|t| t.elapsed() >= STALL_LOG_EVERY) {
                let list: Vec<String> = stuck
                    .iter()
                    .map(|(name, d)| format!("{name} ({:.1}s)", d.as_secs_f64()))
                    .collect();
                tracing::error!(
                    "pipeline stalled, withholding WATCHDOG=1: {}",
                    list.join(", ")
                );
                logged = Some(Instant::now());
            }
        }
    }))
}

pub(crate) fn status_line(m: &Metrics) -> String {
    format!(
        "datagrams {} records {} processed {} late {} matches {} queries {}",
        get(&m.datagrams_received),
        get(&m.records_received),
        get(&m.records_processed),
        get(&m.records_late),
        get(&m.output_lines),
        get(&m.queries_running),
    )
}
