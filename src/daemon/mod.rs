//! The daemon (`flowy serve`): configuration, pipeline tasks, signals,
//! metrics.
//!
//! ```text
//! socket tasks ─► decode thread ─► dispatcher ─► branch tasks ─► merger task ─► output thread
//!  (per socket)    (rec_id, one)    (W, fan-out)  (per query×branch) (per query)   (one sink)
//! ```
//! Every hop is a bounded channel: a slow stage slows the one before it and,
//! at the end, the kernel socket buffer absorbs the burst. Nothing that has
//! been read from a socket is dropped inside the daemon.

pub mod config;
pub mod dispatch;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod notify;
pub mod output;
pub mod pipeline;
pub mod reload;
pub mod shutdown;
pub mod signals;

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, oneshot, watch};

use crate::cli::ServeArgs;
use crate::collect::{bind_udp, DecoderConfig, TemplateScope};
use crate::engine::{EngineConfig, LatePolicy, Watermark};

use config::{Late, Overrides, Scope, Settings};
use dispatch::{Control, Dispatcher};
use metrics::{add, get, set, Metrics};
use output::{OutMsg, Output};
use pipeline::RunningQuery;
use reload::{Compiled, LoadError};
use shutdown::Handles;
use signals::{Event, Signals};

/// How often systemd's STATUS= line is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// Build the runtime and run the daemon until SIGTERM/SIGINT.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("flowy")
        .build()
        .context("cannot start the tokio runtime")?;
    rt.block_on(serve(args))
}

/// Run the daemon until SIGTERM/SIGINT; `Ok` after an orderly shutdown.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        config: args.config,
        listen: args.listen,
        query: args.query,
        output: args.output,
    };
    let settings = config::load(&overrides)?;
    init_logging(&settings.log_level);
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

pub fn engine_config(s: &config::EngineSettings) -> EngineConfig {
    EngineConfig {
        lateness: s.lateness,
        window: s.window,
        horizon: s.horizon,
        late: match s.late {
            Late::Process => LatePolicy::Process,
            Late::Drop => LatePolicy::Drop,
        },
        max_open_groups: s.max_open_groups,
        max_stored_groups: s.max_stored_groups,
        max_reorder: s.max_reorder,
        max_state: s.max_state,
    }
}

pub fn decoder_config(s: &config::CollectorSettings) -> DecoderConfig {
    DecoderConfig {
        template_scope: match s.template_scope {
            Scope::Address => TemplateScope::Address,
            Scope::AddressPort => TemplateScope::AddressPort,
        },
        apply_sampling: s.apply_sampling,
        max_pending: s.max_pending,
        max_exporters: s.max_exporters,
        template_store: s.template_store.clone(),
    }
}

/// The running daemon: its settings, query set and the channels the
/// control loop needs.
struct Daemon {
    settings: Settings,
    overrides: Overrides,
    running: Vec<RunningQuery>,
    output: mpsc::Sender<OutMsg>,
    control: mpsc::Sender<Control>,
    metrics: Arc<Metrics>,
    signals: Signals,
    handles: Handles,
}

impl Daemon {
    async fn start(settings: Settings, overrides: Overrides) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::default());
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

        let (out_tx, out_rx) = mpsc::channel(cap);
        let out = &settings.output;
        let output = Output::open(&out.path, out.format, out.records, metrics.clone())
            .with_context(|| format!("cannot open output {} (output.path)", out.path))?
            .spawn(out_rx)
            .context("cannot start the output thread")?;

        let engine_cfg = engine_config(&settings.engine);
        let running: Vec<RunningQuery> = queries
            .into_iter()
            .map(|c| start_query(c, &engine_cfg, cap, &out_tx, &metrics))
            .collect();
        add(&metrics.queries_running, running.len() as u64);
        for q in &running {
            tracing::info!(query = %q.name, "query running");
        }

        let (batch_tx, batch_rx) = mpsc::channel(cap);
        let (ctl_tx, ctl_rx) = mpsc::channel(4);
        let watermark = Watermark::new(settings.engine.lateness, settings.engine.idle_advance);
        let routes = running.iter().map(|q| q.route.clone()).collect();
        let dispatcher = Dispatcher::new(routes, watermark, settings.engine.late, metrics.clone());
        let dispatcher = tokio::spawn(dispatcher.run(batch_rx, ctl_rx));

        let c = &settings.collector;
        let (dg_tx, dg_rx) = mpsc::channel(c.queue);
        let decoder = ingest::spawn_decoder(decoder_config(c), dg_rx, batch_tx, metrics.clone())
            .context("cannot start the decode thread")?;

        let (stop_tx, stop_rx) = watch::channel(false);
        let receivers = start_receivers(c, &dg_tx, &stop_rx, &metrics)?;
        drop(dg_tx);
        let metrics_task = match settings.metrics_listen {
            Some(addr) => Some(start_metrics(addr, &metrics).await?),
            None => None,
        };

        Ok(Daemon {
            settings,
            overrides,
            running,
            output: out_tx,
            control: ctl_tx,
            metrics,
            signals,
            handles: Handles {
                stop: stop_tx,
                receivers,
                decoder,
                dispatcher,
                output,
                metrics_task,
            },
        })
    }

    async fn run(mut self) -> anyhow::Result<()> {
        notify::ready();
        tracing::info!("flowy ready");
        let mut status = tokio::time::interval(STATUS_EVERY);
        loop {
            tokio::select! {
                ev = self.signals.next() => match ev {
                    Event::Reload => self.reload().await,
                    Event::Shutdown => break,
                },
                _ = status.tick() => notify::status(&status_line(&self.metrics)),
            }
        }
        notify::stopping();
        tracing::info!("shutting down: draining received records");
        let Daemon {
            running,
            output,
            control,
            metrics,
            handles,
            ..
        } = self;
        handles.drain(running, output, control, &metrics).await;
        tracing::info!("shutdown complete: {}", status_line(&metrics));
        Ok(())
    }

    async fn reload(&mut self) {
        notify::reloading();
        tracing::info!("SIGHUP: reloading configuration and queries");
        match self.try_reload().await {
            Ok(()) => add(&self.metrics.reloads, 1),
            Err(e) => {
                add(&self.metrics.reload_failures, 1);
                tracing::error!("reload rejected, the running queries stay in force:\n{e}");
            }
        }
        notify::ready();
    }

    async fn try_reload(&mut self) -> Result<(), LoadError> {
        let settings = config::load(&self.overrides)?;
        let (compiled, fallback) = reload::load(&settings)?;
        if fallback {
            tracing::info!("no query files match; running the built-in example queries");
        }
        warn_static_changes(&self.settings, &settings);
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

        let engine_cfg = engine_config(&settings.engine);
        let cap = settings.engine.channel_capacity;
        let mut compiled: Vec<Option<Compiled>> = compiled.into_iter().map(Some).collect();
        let started: Vec<RunningQuery> = diff
            .start
            .iter()
            .filter_map(|&j| compiled.get_mut(j).and_then(Option::take))
            .map(|c| start_query(c, &engine_cfg, cap, &self.output, &self.metrics))
            .collect();
        let (kept, retired): (Vec<_>, Vec<_>) = std::mem::take(&mut self.running)
            .into_iter()
            .enumerate()
            .partition(|(i, _)| diff.keep.contains(i));
        let mut next: Vec<RunningQuery> = kept.into_iter().map(|(_, q)| q).collect();
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
        // Retired queries drain and flush in the background.
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            for q in retired {
                q.join(&metrics).await;
            }
        });
        let _ = self
            .output
            .send(OutMsg::Reopen(settings.output.path.clone()))
            .await;
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
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut receivers = Vec::new();
    for addr in &c.listen {
        let socks = bind_udp(*addr, c.sockets, c.recv_buffer)
            .with_context(|| format!("cannot bind UDP {addr} (collector.listen)"))?;
        for s in socks {
            let local = s.local_addr().context("socket address")?;
            tracing::info!("collector listening on udp://{local}");
            let task = ingest::receive(s, tx.clone(), metrics.clone(), stop.clone());
            receivers.push(tokio::spawn(task));
        }
    }
    Ok(receivers)
}

async fn start_metrics(
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
    output: &mpsc::Sender<OutMsg>,
    metrics: &Metrics,
) -> RunningQuery {
    RunningQuery::start(c.plan, c.text.source, cfg, cap, output.clone(), metrics)
}

/// Sockets, metrics listener and decoder settings are bound at start; a
/// reload cannot change them, so say so rather than silently ignore.
fn warn_static_changes(old: &Settings, new: &Settings) {
    if old.collector != new.collector {
        tracing::warn!("[collector] changes take effect at the next restart");
    }
    if old.metrics_listen != new.metrics_listen {
        tracing::warn!("metrics.listen changes take effect at the next restart");
    }
}

fn status_line(m: &Metrics) -> String {
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
