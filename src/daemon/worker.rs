//! `flowy serve` as a cluster worker (SPEC §5): no sockets; a task per
//! (lane, partition) consuming from NATS JetStream, the output and the
//! metrics endpoint as in the standalone daemon.

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;

use crate::cluster::lane::Lane;
use crate::cluster::nats::NatsBus;
use crate::cluster::worker::{start_partitions, PartitionSpec, Shared};
use crate::query::plan::Plan;

use super::config::{self, ClusterSettings, Overrides, Settings};
use super::health::Health;
use super::metrics::{add, set, Metrics};
use super::output::Output;
use super::reload::Compiled;
use super::signals::{Event, Signals};
use super::{
    engine_config, forward_signals, notify, reload, shutdown, start_metrics, start_watchdog,
    Outcome,
};

/// Messages a consumer may have delivered and not acknowledged: the
/// records a partition holds while their groups are open.
const MAX_PENDING: usize = 100_000;

/// The partition tasks of one lane, and the queries they run.
struct LaneRun {
    lane: Lane,
    /// (name, source) of the lane's queries: a reload keeps the lane's
    /// tasks iff this is unchanged.
    queries: Vec<(String, String)>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl LaneRun {
    /// Let the tasks emit their open state and acknowledge, and wait.
    async fn drain(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            if let Err(e) = t.await {
                tracing::error!(lane = %self.lane, error = %e, "partition task failed");
            }
        }
    }
}

struct Worker {
    settings: Settings,
    overrides: Overrides,
    shared: Shared<NatsBus>,
    health: Arc<Health>,
    running: Vec<LaneRun>,
}

pub async fn serve(settings: Settings, overrides: Overrides) -> anyhow::Result<Outcome> {
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    let (queries, _) = reload::load(&settings)?;
    let signals = Signals::install().context("cannot install signal handlers")?;
    let beats = (
        health.register("output formatter"),
        health.register("output writer"),
    );
    let cap = settings.engine.channel_capacity;
    let (output, out_tx, threads) = Output::start(&settings.output, cap, metrics.clone(), beats)
        .with_context(|| format!("cannot open output {} (output.path)", settings.output.path))?;
    let c = &settings.cluster;
    let bus = NatsBus::connect(&c.nats, &c.stream)
        .await
        .context("cluster.role = worker needs the NATS server (cluster.nats)")?;
    let shared = Shared {
        bus,
        output: out_tx,
        metrics: metrics.clone(),
        written: Arc::new(written_ids(&settings.output.path)),
    };
    let mut worker = Worker {
        settings,
        overrides,
        shared,
        health,
        running: Vec::new(),
    };
    for (lane, qs) in by_lane(queries) {
        let run = worker.start_lane(lane, qs).await?;
        worker.running.push(run);
    }
    set(&metrics.queries_running, worker.query_count());
    let metrics_task = match worker.settings.metrics_listen {
        Some(addr) => Some(start_metrics(addr, &metrics).await?),
        None => None,
    };
    let timeout = Arc::new(AtomicU64::new(
        worker.settings.daemon.shutdown_timeout as u64,
    ));
    let mut events = forward_signals(signals, timeout.clone(), metrics.clone());
    let watchdog_task = start_watchdog(worker.health.clone());

    notify::ready();
    let partitions: usize = worker.running.iter().map(|r| r.tasks.len()).sum();
    tracing::info!(partitions, "flowy ready: cluster worker");
    while let Some(Event::Reload) = events.recv().await {
        notify::reloading();
        match worker.reload().await {
            Ok(()) => add(&metrics.reloads, 1),
            Err(e) => {
                add(&metrics.reload_failures, 1);
                tracing::error!("reload rejected, the running queries stay in force:\n{e:#}");
            }
        }
        // Every SIGHUP reopens the output (logrotate).
        output.reload(&worker.settings.output);
        timeout.store(
            worker.settings.daemon.shutdown_timeout as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        notify::ready();
    }
    notify::stopping();
    tracing::info!("shutting down: emitting open state and acknowledging");
    for run in std::mem::take(&mut worker.running) {
        run.drain().await;
    }
    drop(worker);
    let _ = tokio::task::spawn_blocking(move || threads.formatter.join()).await;
    let _ = threads.written.await;
    for t in [metrics_task, watchdog_task].into_iter().flatten() {
        t.abort();
    }
    match shutdown::report(&metrics, false) {
        Some(outcome) => Ok(outcome),
        None => std::future::pending().await,
    }
}

impl Worker {
    async fn start_lane(&self, lane: Lane, queries: Vec<Compiled>) -> anyhow::Result<LaneRun> {
        let plans: Vec<Arc<Plan>> = queries.iter().map(|q| q.plan.clone()).collect();
        let specs = lane_specs(&self.settings, &lane, &plans);
        let (stop, stop_rx) = watch::channel(false);
        let tasks = start_partitions(&self.shared, specs, &self.health, &stop_rx, MAX_PENDING)
            .await
            .with_context(|| format!("cannot start the consumers of {lane}"))?;
        for q in &queries {
            tracing::info!(query = %q.text.name, lane = %lane, "query running");
        }
        Ok(LaneRun {
            lane,
            queries: sources(&queries),
            stop,
            tasks,
        })
    }

    /// SIGHUP: lanes whose queries are unchanged keep running; the others
    /// drain (emit their open state, acknowledge) and start again with
    /// the new queries, resuming from their partitions' next messages.
    async fn reload(&mut self) -> anyhow::Result<()> {
        let settings = config::load(&self.overrides)?;
        let (compiled, _) = reload::load(&settings)?;
        let next = by_lane(compiled);
        let (kept, retired): (Vec<LaneRun>, Vec<LaneRun>) = std::mem::take(&mut self.running)
            .into_iter()
            .partition(|r| {
                next.iter()
                    .any(|(l, qs)| *l == r.lane && sources(qs) == r.queries)
            });
        reload::warn_unapplied(&self.settings, &settings, kept.len());
        self.settings = settings;
        for r in retired {
            tracing::info!(lane = %r.lane, "lane's queries changed or removed: draining");
            r.drain().await;
        }
        self.running = kept;
        for (lane, qs) in next {
            if self.running.iter().any(|r| r.lane == lane) {
                continue;
            }
            let run = self.start_lane(lane, qs).await?;
            self.running.push(run);
        }
        set(&self.shared.metrics.queries_running, self.query_count());
        tracing::info!(lanes = self.running.len(), "reload complete");
        Ok(())
    }

    fn query_count(&self) -> u64 {
        self.running.iter().map(|r| r.queries.len() as u64).sum()
    }
}

fn sources(qs: &[Compiled]) -> Vec<(String, String)> {
    qs.iter()
        .map(|q| (q.text.name.clone(), q.text.source.clone()))
        .collect()
}

/// Queries grouped by the lane they read, lanes in first-use order.
fn by_lane(queries: Vec<Compiled>) -> Vec<(Lane, Vec<Compiled>)> {
    let mut out: Vec<(Lane, Vec<Compiled>)> = Vec::new();
    for q in queries {
        let lane = Lane::of(&q.plan);
        match out.iter_mut().find(|(l, _)| *l == lane) {
            Some((_, qs)) => qs.push(q),
            None => out.push((lane, vec![q])),
        }
    }
    out
}

/// How much of the output file's end is read back at start for the ids
/// of matches already written: a replay after a crash finds again only
/// matches of records not yet acknowledged, which the last few seconds of
/// output hold.
const READ_BACK: u64 = 64 << 20;

/// The `match_id`s in the last [`READ_BACK`] bytes of the output file
/// (none for stdout or a file that does not exist yet).
fn written_ids(path: &str) -> HashSet<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut ids = HashSet::new();
    if path == "-" {
        return ids;
    }
    let Ok(mut f) = std::fs::File::open(path) else {
        return ids;
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut text = Vec::new();
    if f.seek(SeekFrom::Start(len.saturating_sub(READ_BACK)))
        .is_err()
        || f.read_to_end(&mut text).is_err()
    {
        tracing::warn!(
            path,
            "cannot read the output back; matches found again after a restart may be written twice"
        );
        return ids;
    }
    const KEY: &[u8] = b"\"match_id\":\"";
    let mut rest = &text[..];
    while let Some(at) = find(rest, KEY) {
        rest = &rest[at + KEY.len()..];
        if let Some(id) = rest
            .get(..16)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u64::from_str_radix(h, 16).ok())
        {
            ids.insert(id);
        }
    }
    if !ids.is_empty() {
        tracing::info!(
            path,
            matches = ids.len(),
            "output read back: these matches will not be written again"
        );
    }
    ids
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The partitions of `lane` this worker holds, each running `plans`. A
/// global lane runs on the worker holding partition 0.
fn lane_specs(settings: &Settings, lane: &Lane, plans: &[Arc<Plan>]) -> Vec<PartitionSpec> {
    let c: &ClusterSettings = &settings.cluster;
    let (lo, hi) = c.worker_partitions.unwrap_or((0, c.partitions - 1));
    let held: Vec<u32> = match lane {
        Lane::Global if lo == 0 => vec![0],
        Lane::Global => Vec::new(),
        _ => (lo..=hi).collect(),
    };
    held.into_iter()
        .map(|p| PartitionSpec {
            lane: lane.clone(),
            partition: p,
            plans: plans.to_vec(),
            engine: engine_config(&settings.engine),
            lateness: settings.engine.lateness,
            idle_advance: settings.engine.idle_advance,
            late: settings.engine.late,
        })
        .collect()
}
