//! `flowy serve` as a cluster worker (SPEC §5): no sockets; a task per
//! (lane, partition) consuming from NATS JetStream, the output and the
//! metrics endpoint as in the standalone daemon.

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

use crate::cluster::bus::RecordBus;
use crate::cluster::lane::Lane;
use crate::cluster::nats::NatsBus;
use crate::cluster::worker::{start_partition, PartitionSpec, Shared};
use crate::daemon::ingest::now_ms;
use crate::query::plan::Plan;

use super::config::{self, ClusterSettings, Overrides, Settings};
use super::health::Health;
use super::metrics::{add, set, Metrics};
use super::output::Outputs;
use super::reload::Compiled;
use super::signals::{Event, Signals};
use super::{
    engine_config, forward_signals, notify, reload, shutdown, start_metrics, start_watchdog,
    Outcome,
};

/// Messages a consumer may have delivered and not acknowledged: as many
/// batches as the engine's state budget can hold records (SPEC §5), at a
/// conservative [`HELD_RECORD_BYTES`] per record, within sane bounds.
fn max_pending(s: &Settings) -> usize {
    let records = s.engine.max_state / HELD_RECORD_BYTES;
    (records / s.cluster.batch.max(1)).clamp(1_000, 1_000_000)
}

/// Fewer bytes than a held record costs (state accounting charges more),
/// so the bound is never what stops a partition before the budget does.
const HELD_RECORD_BYTES: usize = 64;

/// One running (lane, partition).
struct PartRun {
    partition: u32,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    /// The lease's version while this worker holds the partition by lease.
    lease: Option<u64>,
}

/// The partition tasks of one lane, and the queries they run.
struct LaneRun {
    lane: Lane,
    /// (name, source) of the lane's queries: a reload keeps the lane's
    /// tasks iff this is unchanged.
    queries: Vec<(String, String)>,
    plans: Vec<Arc<Plan>>,
    parts: Vec<PartRun>,
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
    metrics.set_lateness(settings.engine.lateness);
    let health = Arc::new(Health::default());
    let (queries, _) = reload::load(&settings)?;
    let signals = Signals::install().context("cannot install signal handlers")?;
    let cap = settings.engine.channel_capacity;
    let (mut outputs, out_tx) = Outputs::start(&settings, cap, &metrics, &health)?;
    let c = &settings.cluster;
    let bus = NatsBus::connect(&c.nats, &c.stream)
        .await
        .context("cluster.role = worker needs the NATS server (cluster.nats)")?;
    let shared = Shared {
        bus,
        output: out_tx,
        metrics: metrics.clone(),
        written: Arc::new(written_ids(&settings)),
        publish_matches: c.publish_matches,
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
    worker.lease_round().await;
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
    let partitions: usize = worker.running.iter().map(|r| r.parts.len()).sum();
    tracing::info!(partitions, "flowy ready: cluster worker");
    let mut leases = tokio::time::interval(renew_every(&worker.settings));
    leases.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(Event::Reload) => {
                    notify::reloading();
                    // Retired lanes have drained when reload() returns:
                    // no query is left to write to a removed sink.
                    let applied = match worker.reload().await {
                        Ok(()) => outputs.apply(&worker.settings, &Default::default()).map(|_| ()),
                        Err(e) => Err(e),
                    };
                    match applied {
                        Ok(()) => add(&metrics.reloads, 1),
                        Err(e) => {
                            add(&metrics.reload_failures, 1);
                            tracing::error!("reload rejected, the running queries stay in force:\n{e:#}");
                            // Every SIGHUP reopens the outputs (logrotate).
                            outputs.reopen();
                        }
                    }
                    timeout.store(
                        worker.settings.daemon.shutdown_timeout as u64,
                        std::sync::atomic::Ordering::Relaxed,
                    );
                    notify::ready();
                }
                Some(Event::Shutdown) | None => break,
            },
            _ = leases.tick() => worker.lease_round().await,
        }
    }
    notify::stopping();
    tracing::info!("shutting down: emitting open state and acknowledging");
    for run in std::mem::take(&mut worker.running) {
        worker.drain_lane(run).await;
    }
    drop(worker);
    outputs.finish().await;
    for t in [metrics_task, watchdog_task].into_iter().flatten() {
        t.abort();
    }
    match shutdown::report(&metrics, false) {
        Some(outcome) => Ok(outcome),
        None => std::future::pending().await,
    }
}

/// Leases are renewed three times per lease time.
fn renew_every(s: &Settings) -> Duration {
    Duration::from_millis((s.cluster.lease / 3).max(100) as u64)
}

impl Worker {
    /// Partitions come from leases unless configured.
    fn claiming(&self) -> bool {
        self.settings.cluster.worker_partitions.is_none()
    }

    /// Every partition of `lane` (a global lane has one).
    fn lane_partitions(&self, lane: &Lane) -> Vec<u32> {
        match lane {
            Lane::Global => vec![0],
            _ => (0..self.settings.cluster.partitions).collect(),
        }
    }

    /// A lane's run: with configured partitions its tasks start now; when
    /// claiming, the next lease round starts them.
    async fn start_lane(&self, lane: Lane, queries: Vec<Compiled>) -> anyhow::Result<LaneRun> {
        let mut run = LaneRun {
            plans: queries.iter().map(|q| q.plan.clone()).collect(),
            queries: sources(&queries),
            lane,
            parts: Vec::new(),
        };
        if let Some((lo, hi)) = self.settings.cluster.worker_partitions {
            for p in self.lane_partitions(&run.lane) {
                if (lo..=hi).contains(&p) {
                    let part = self.start_part(&run, p, None).await?;
                    run.parts.push(part);
                }
            }
        }
        for q in &queries {
            tracing::info!(query = %q.text.name, lane = %run.lane, "query running");
        }
        Ok(run)
    }

    async fn start_part(
        &self,
        run: &LaneRun,
        p: u32,
        lease: Option<u64>,
    ) -> anyhow::Result<PartRun> {
        let spec = PartitionSpec {
            lane: run.lane.clone(),
            partition: p,
            plans: run.plans.clone(),
            engine: engine_config(&self.settings.engine),
            lateness: self.settings.engine.lateness,
            idle_advance: self.settings.engine.idle_advance,
            late: self.settings.engine.late,
        };
        let (stop, stop_rx) = watch::channel(false);
        let task = start_partition(
            &self.shared,
            spec,
            &self.health,
            stop_rx,
            max_pending(&self.settings),
        )
        .await
        .with_context(|| format!("cannot start the consumer of {} partition {p}", run.lane))?;
        Ok(PartRun {
            partition: p,
            stop,
            task,
            lease,
        })
    }

    /// Let a partition emit its open state and acknowledge, then give up
    /// its lease so that another worker can take it at once.
    async fn drain_part(&self, lane: &Lane, part: PartRun) {
        let _ = part.stop.send(true);
        if let Err(e) = part.task.await {
            tracing::error!(lane = %lane, partition = part.partition, error = %e, "partition task failed");
        }
        if let Some(version) = part.lease {
            let c = &self.settings.cluster;
            let name = lane.consumer(part.partition);
            let _ = self
                .shared
                .bus
                .write_lease(name, c.worker_id.clone(), 0, version)
                .await;
        }
    }

    async fn drain_lane(&self, run: LaneRun) {
        for part in run.parts {
            self.drain_part(&run.lane, part).await;
        }
    }

    /// Renew the leases held, give back partitions beyond this worker's
    /// share of the live workers', and claim free or expired ones up to it.
    async fn lease_round(&mut self) {
        if !self.claiming() {
            return;
        }
        let c = self.settings.cluster.clone();
        let ttl = Duration::from_millis(c.lease as u64);
        let members = match self.shared.bus.heartbeat(c.worker_id.clone(), ttl).await {
            Ok(n) => n.max(1),
            Err(e) => {
                tracing::warn!("cannot announce this worker: {e}");
                return;
            }
        };
        let until = now_ms() + c.lease;
        self.renew(&c, until).await;
        let total: usize = self
            .running
            .iter()
            .map(|r| self.lane_partitions(&r.lane).len())
            .sum();
        let share = total.div_ceil(members as usize);
        let mut held: usize = self.running.iter().map(|r| r.parts.len()).sum();
        while held > share {
            let Some(run) = self.running.iter_mut().rev().find(|r| !r.parts.is_empty()) else {
                break;
            };
            let lane = run.lane.clone();
            let Some(part) = run.parts.pop() else { break };
            tracing::info!(lane = %lane, partition = part.partition, members, "giving a partition back (rebalancing)");
            self.drain_part(&lane, part).await;
            held -= 1;
        }
        for i in 0..self.running.len() {
            for p in self.lane_partitions(&self.running[i].lane) {
                if held >= share {
                    break;
                }
                if self.running[i].parts.iter().any(|x| x.partition == p) {
                    continue;
                }
                if let Some(part) = self.claim(i, p, until).await {
                    self.running[i].parts.push(part);
                    held += 1;
                }
            }
        }
        set(&self.shared.metrics.cluster.partitions_held, held as u64);
    }

    async fn renew(&mut self, c: &ClusterSettings, until: i64) {
        let bus = self.shared.bus.clone();
        for run in &mut self.running {
            let mut kept = Vec::with_capacity(run.parts.len());
            for mut part in std::mem::take(&mut run.parts) {
                let Some(version) = part.lease else {
                    kept.push(part);
                    continue;
                };
                let name = run.lane.consumer(part.partition);
                match bus
                    .write_lease(name, c.worker_id.clone(), until, version)
                    .await
                {
                    Ok(Some(v)) => {
                        part.lease = Some(v);
                        kept.push(part);
                    }
                    Ok(None) => {
                        // Another worker took it (this one stalled past its
                        // lease): stop at once, without acknowledging; the
                        // new holder replays.
                        tracing::warn!(lane = %run.lane, partition = part.partition, "lease lost to another worker");
                        part.task.abort();
                    }
                    // The bus is unreachable: nobody can take the lease
                    // meanwhile; keep running and retry next round.
                    Err(e) => {
                        tracing::warn!("cannot renew a lease: {e}");
                        kept.push(part);
                    }
                }
            }
            run.parts = kept;
        }
    }

    /// Take partition `p` of lane `i` if its lease is free or expired.
    async fn claim(&self, i: usize, p: u32, until: i64) -> Option<PartRun> {
        let c = &self.settings.cluster;
        let run = &self.running[i];
        let name = run.lane.consumer(p);
        let lease = self.shared.bus.read_lease(name.clone()).await.ok()?;
        let free =
            lease.holder.is_empty() || lease.holder == c.worker_id || lease.expires_ms < now_ms();
        if !free {
            return None;
        }
        let version = self
            .shared
            .bus
            .write_lease(name, c.worker_id.clone(), until, lease.version)
            .await
            .ok()??;
        if !lease.holder.is_empty() && lease.holder != c.worker_id {
            tracing::info!(lane = %run.lane, partition = p, from = %lease.holder, "taking over an expired lease");
        }
        match self.start_part(run, p, Some(version)).await {
            Ok(part) => Some(part),
            Err(e) => {
                tracing::warn!("{e:#}");
                None
            }
        }
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
        for r in retired {
            tracing::info!(lane = %r.lane, "lane's queries changed or removed: draining");
            self.drain_lane(r).await;
        }
        self.settings = settings;
        self.running = kept;
        for (lane, qs) in next {
            if self.running.iter().any(|r| r.lane == lane) {
                continue;
            }
            let run = self.start_lane(lane, qs).await?;
            self.running.push(run);
        }
        self.lease_round().await;
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

/// The `match_id`s in the current files of every sink.
fn written_ids(s: &Settings) -> HashSet<u64> {
    let now = crate::output::now_ms();
    let mut ids = HashSet::new();
    for o in std::iter::once(&s.output).chain(s.query_outputs.values()) {
        if let Ok(path) = o.target().file_at(now) {
            ids.extend(written_ids_in(&path));
        }
    }
    ids
}

/// The `match_id`s in the last [`READ_BACK`] bytes of the output file
/// (none for stdout or a file that does not exist yet).
fn written_ids_in(path: &str) -> HashSet<u64> {
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
