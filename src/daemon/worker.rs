//! `flowy serve` as a cluster worker (SPEC §5): no sockets; a task per
//! (lane, partition) consuming from NATS JetStream, the output and the
//! metrics endpoint as in the standalone daemon.

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;

use crate::cluster::lane::{self, Lane};
use crate::cluster::nats::NatsBus;
use crate::cluster::worker::{start_partitions, PartitionSpec, Shared};
use crate::query::plan::Plan;

use super::config::{ClusterSettings, Settings};
use super::health::Health;
use super::metrics::{add, Metrics};
use super::output::Output;
use super::signals::{Event, Signals};
use super::{engine_config, forward_signals, notify, reload, shutdown, start_metrics, Outcome};

/// Messages a consumer may have delivered and not acknowledged: the
/// records a partition holds while their groups are open.
const MAX_PENDING: usize = 100_000;

pub async fn serve(settings: Settings) -> anyhow::Result<Outcome> {
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

    let plans: Vec<Arc<Plan>> = queries.into_iter().map(|q| q.plan).collect();
    let specs = partition_specs(&settings, &plans);
    add(&metrics.queries_running, plans.len() as u64);
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Shared {
        bus,
        output: out_tx.clone(),
        metrics: metrics.clone(),
        written: Arc::new(written_ids(&settings.output.path)),
    };
    let tasks = start_partitions(&shared, specs, &health, &stop_rx, MAX_PENDING)
        .await
        .context("cannot start the partition consumers")?;
    let metrics_task = match settings.metrics_listen {
        Some(addr) => Some(start_metrics(addr, &metrics).await?),
        None => None,
    };
    let timeout = Arc::new(AtomicU64::new(settings.daemon.shutdown_timeout as u64));
    let mut events = forward_signals(signals, timeout, metrics.clone());

    notify::ready();
    tracing::info!(partitions = tasks.len(), "flowy ready: cluster worker");
    while let Some(Event::Reload) = events.recv().await {
        // Only the output is reopened (logrotate); the query set of a
        // worker is fixed for its lifetime in this version.
        tracing::warn!(
            "SIGHUP on a worker reopens the output only; restart the worker to change queries"
        );
        output.reload(&settings.output);
    }
    notify::stopping();
    tracing::info!("shutting down: emitting open state and acknowledging");
    let _ = stop_tx.send(true);
    for t in tasks {
        if let Err(e) = t.await {
            tracing::error!(error = %e, "partition task failed");
        }
    }
    drop(shared);
    drop(out_tx);
    let _ = tokio::task::spawn_blocking(move || threads.formatter.join()).await;
    let _ = threads.written.await;
    if let Some(t) = metrics_task {
        t.abort();
    }
    match shutdown::report(&metrics, false) {
        Some(outcome) => Ok(outcome),
        None => std::future::pending().await,
    }
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

/// Every (lane, partition) this worker holds, with the queries of the lane.
fn partition_specs(settings: &Settings, plans: &[Arc<Plan>]) -> Vec<PartitionSpec> {
    let c: &ClusterSettings = &settings.cluster;
    let (lo, hi) = c.worker_partitions.unwrap_or((0, c.partitions - 1));
    let mut specs = Vec::new();
    for l in lane::lanes(plans.iter().map(|p| p.as_ref())) {
        let lane_plans: Vec<Arc<Plan>> =
            plans.iter().filter(|p| Lane::of(p) == l).cloned().collect();
        let held: Vec<u32> = match l {
            Lane::Global if lo == 0 => vec![0],
            Lane::Global => Vec::new(),
            _ => (lo..=hi).collect(),
        };
        for p in held {
            specs.push(PartitionSpec {
                lane: l.clone(),
                partition: p,
                plans: lane_plans.clone(),
                engine: engine_config(&settings.engine),
                lateness: settings.engine.lateness,
                idle_advance: settings.engine.idle_advance,
                late: settings.engine.late,
            });
        }
    }
    specs
}
