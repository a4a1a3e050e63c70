//! Daemon metrics (SPEC §4.4) and their Prometheus exposition.
//!
//! Hot-path counters are atomics bumped by the task that owns the event;
//! components with their own stats structs (decoder, engines) publish
//! snapshots here, so a scrape never waits on the pipeline. At scrape time
//! every value is read into a [`Sample`] and the `prometheus-client` crate
//! writes the text format (a custom `Collector`: the atomics stay the
//! storage, so counting costs one relaxed add).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::engine::{Eviction, StateBudget};

/// Watermark gauge value before the first record.
const NO_WATERMARK: i64 = i64::MIN;

/// The `Content-Type` of the exposition (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A histogram's state: per-bucket (not cumulative) counts by upper bound.
#[derive(Clone, Debug, PartialEq)]
pub struct Buckets {
    pub sum: f64,
    pub count: u64,
    pub buckets: Vec<(f64, u64)>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(u64),
    Float(f64),
    Histogram(Buckets),
}

impl Value {
    /// The value as a number (a histogram's count).
    pub fn as_f64(&self) -> f64 {
        match self {
            Value::Int(v) => *v as f64,
            Value::Float(v) => *v,
            Value::Histogram(h) => h.count as f64,
        }
    }
}

/// One labelled sample. `name` is the full series name (`…_total` for
/// counters, as Prometheus shows it).
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub labels: Vec<(&'static str, String)>,
    pub value: Value,
}

impl Sample {
    /// An integer sample of any kind.
    pub fn int(
        name: &'static str,
        help: &'static str,
        kind: Kind,
        labels: Vec<(&'static str, String)>,
        value: u64,
    ) -> Sample {
        Sample {
            name,
            help,
            kind,
            labels,
            value: Value::Int(value),
        }
    }

    pub fn counter(
        name: &'static str,
        help: &'static str,
        labels: Vec<(&'static str, String)>,
        value: u64,
    ) -> Sample {
        Sample::int(name, help, Kind::Counter, labels, value)
    }

    pub fn gauge(
        name: &'static str,
        help: &'static str,
        labels: Vec<(&'static str, String)>,
        value: u64,
    ) -> Sample {
        Sample::int(name, help, Kind::Gauge, labels, value)
    }

    /// A gauge in a base unit that needs a fraction (seconds).
    pub fn gauge_f64(
        name: &'static str,
        help: &'static str,
        labels: Vec<(&'static str, String)>,
        value: f64,
    ) -> Sample {
        Sample {
            name,
            help,
            kind: Kind::Gauge,
            labels,
            value: Value::Float(value),
        }
    }
}

/// Counters of one (query, branch) task, copied from the engine's stats.
#[derive(Debug, Default)]
pub struct BranchMetrics {
    pub records_in: AtomicU64,
    pub records_passed: AtomicU64,
    pub groups_open: AtomicU64,
    pub groups_closed: AtomicU64,
    pub groups_passed: AtomicU64,
    pub closed_early: AtomicU64,
    pub late: AtomicU64,
}

/// Counters of one query's merger task.
#[derive(Debug, Default)]
pub struct MergerMetrics {
    pub stored_groups: AtomicU64,
    pub matches: AtomicU64,
    pub closed_early: AtomicU64,
}

/// Counters of one output sink (`[output]` or a query's own), labelled
/// `sink`: its path, or "stdout". The [`Metrics`] fields of the same names
/// are the totals over every sink.
#[derive(Debug, Default)]
pub struct SinkMetrics {
    pub lines: AtomicU64,
    pub write_errors: AtomicU64,
    pub matches: AtomicU64,
    pub queue_bytes: AtomicU64,
    pub dropped: AtomicU64,
    pub not_written: AtomicU64,
}

/// What the kernel says about the sockets of one collector address.
#[derive(Debug, Default)]
pub struct SocketMetrics {
    /// Receive buffer size as `getsockopt(SO_RCVBUF)` reports it (the
    /// smallest over the address's sockets).
    pub receive_buffer: AtomicU64,
    /// Datagrams the kernel dropped, summed over the address's sockets.
    pub drops: AtomicU64,
    /// Set once the drop counter has been read: an unread counter is not
    /// shown as a 0 that nobody measured.
    pub drops_known: AtomicBool,
}

#[derive(Debug, Default)]
struct Registry {
    branches: Vec<(String, String, Arc<BranchMetrics>)>,
    mergers: Vec<(String, Arc<MergerMetrics>)>,
    collector: Vec<Sample>,
    sockets: Vec<(String, Arc<SocketMetrics>)>,
    sinks: Vec<(String, Arc<SinkMetrics>)>,
}

#[derive(Debug)]
pub struct Metrics {
    pub datagrams_received: AtomicU64,
    pub bytes_received: AtomicU64,
    pub receive_errors: AtomicU64,
    pub datagrams_refused: AtomicU64,
    pub records_received: AtomicU64,
    pub records_processed: AtomicU64,
    pub records_late: AtomicU64,
    pub records_dropped: AtomicU64,
    pub output_lines: AtomicU64,
    pub output_write_errors: AtomicU64,
    /// Matches the mergers handed to the output.
    pub output_matches: AtomicU64,
    /// Matches dropped because the queue was full (`when_full = "drop"`).
    pub output_dropped: AtomicU64,
    /// Matches lost: dropped, failed writes, or abandoned at the shutdown
    /// deadline.
    pub output_not_written: AtomicU64,
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
    pub queries_running: AtomicU64,
    /// Metrics-endpoint connections closed at once (over the connection cap).
    pub metrics_connections_refused: AtomicU64,
    /// Metrics-endpoint requests cut off at their deadline.
    pub metrics_requests_timed_out: AtomicU64,
    /// Cluster collector and worker counters (zero when standalone).
    pub cluster: ClusterMetrics,
    watermark: AtomicI64,
    /// `engine.lateness`, ms (`NO_WATERMARK`: none).
    lateness: AtomicI64,
    /// The engine state budget all queries share (`engine.max_state`);
    /// its account is the `flowy_engine_state_bytes` gauge.
    engine_state: Arc<StateBudget>,
    registry: Mutex<Registry>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            datagrams_received: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            receive_errors: AtomicU64::new(0),
            datagrams_refused: AtomicU64::new(0),
            records_received: AtomicU64::new(0),
            records_processed: AtomicU64::new(0),
            records_late: AtomicU64::new(0),
            records_dropped: AtomicU64::new(0),
            output_lines: AtomicU64::new(0),
            output_write_errors: AtomicU64::new(0),
            output_matches: AtomicU64::new(0),
            output_dropped: AtomicU64::new(0),
            output_not_written: AtomicU64::new(0),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
            queries_running: AtomicU64::new(0),
            metrics_connections_refused: AtomicU64::new(0),
            metrics_requests_timed_out: AtomicU64::new(0),
            cluster: ClusterMetrics::default(),
            watermark: AtomicI64::new(NO_WATERMARK),
            lateness: AtomicI64::new(NO_WATERMARK),
            engine_state: StateBudget::unlimited(),
            registry: Mutex::new(Registry::default()),
        }
    }
}

/// What a cluster collector or worker counts (SPEC §5).
#[derive(Debug, Default)]
pub struct ClusterMetrics {
    /// Collector: records stored on the bus (once per lane).
    pub published_records: AtomicU64,
    pub published_messages: AtomicU64,
    /// Collector: publishes tried again after a failure or timeout.
    pub publish_retries: AtomicU64,
    /// Collector: records dropped because the bus could not take them in
    /// time and the publish buffer was full.
    pub dropped_records: AtomicU64,
    /// Collector: records no lane carries (no query's filter accepts them).
    pub unrouted_records: AtomicU64,
    /// Collector: milliseconds from a message's publish to its storage
    /// acknowledgement, summed (with `published_messages`: the mean).
    pub publish_latency_ms: AtomicU64,
    /// Worker: messages consumed, acknowledged, refused as undecodable,
    /// and redeliveries of messages still held (ignored).
    pub consumed_messages: AtomicU64,
    pub consumed_records: AtomicU64,
    pub acked_messages: AtomicU64,
    pub bad_messages: AtomicU64,
    pub redeliveries_ignored: AtomicU64,
    /// Worker: messages delivered before (to a worker that crashed).
    pub redelivered_messages: AtomicU64,
    /// Worker: records of redelivered messages before the saved cut.
    pub replay_skipped: AtomicU64,
    /// Worker: matches found again after a restart and not written twice.
    pub duplicates_suppressed: AtomicU64,
    /// Worker: matches published to `flowy.matches.<query>`.
    pub published_matches: AtomicU64,
    /// Worker: partitions whose lease this worker holds.
    pub partitions_held: AtomicU64,
}

fn cluster_samples(m: &ClusterMetrics) -> Vec<Sample> {
    let c = |name, help, v: &AtomicU64| Sample::counter(name, help, Vec::new(), get(v));
    vec![
        c(
            "flowy_cluster_published_records_total",
            "collector: records stored on the bus, once per lane",
            &m.published_records,
        ),
        c(
            "flowy_cluster_published_messages_total",
            "collector: record batches stored on the bus",
            &m.published_messages,
        ),
        c(
            "flowy_cluster_publish_retries_total",
            "collector: publishes tried again after a failure",
            &m.publish_retries,
        ),
        c(
            "flowy_cluster_dropped_records_total",
            "collector: records dropped because the bus did not take them in time",
            &m.dropped_records,
        ),
        c(
            "flowy_cluster_unrouted_records_total",
            "collector: records not published because no query's filter accepts them",
            &m.unrouted_records,
        ),
        Sample {
            name: "flowy_cluster_publish_latency_seconds_total",
            help: "collector: publish-to-stored time summed over messages",
            kind: Kind::Counter,
            labels: Vec::new(),
            value: Value::Float(get(&m.publish_latency_ms) as f64 / 1000.0),
        },
        c(
            "flowy_cluster_consumed_messages_total",
            "worker: record batches taken from the bus",
            &m.consumed_messages,
        ),
        c(
            "flowy_cluster_consumed_records_total",
            "worker: records taken from the bus",
            &m.consumed_records,
        ),
        c(
            "flowy_cluster_acked_messages_total",
            "worker: record batches acknowledged (every record left the state)",
            &m.acked_messages,
        ),
        c(
            "flowy_cluster_bad_messages_total",
            "worker: messages refused as undecodable (wrong version, truncated)",
            &m.bad_messages,
        ),
        c(
            "flowy_cluster_redeliveries_ignored_total",
            "worker: redeliveries of messages whose records it still holds",
            &m.redeliveries_ignored,
        ),
        c(
            "flowy_cluster_redelivered_messages_total",
            "worker: messages left unacknowledged by an earlier worker (replayed at start) or redelivered",
            &m.redelivered_messages,
        ),
        c(
            "flowy_cluster_replay_skipped_records_total",
            "worker: redelivered records before the saved cut (their groups were finished)",
            &m.replay_skipped,
        ),
        c(
            "flowy_cluster_duplicates_suppressed_total",
            "worker: matches found again after a restart that the output already had",
            &m.duplicates_suppressed,
        ),
        c(
            "flowy_cluster_published_matches_total",
            "worker: matches published to flowy.matches.<query> (cluster.publish_matches)",
            &m.published_matches,
        ),
        Sample::gauge(
            "flowy_cluster_partitions_held",
            "worker: partitions (of every lane) this worker runs",
            Vec::new(),
            get(&m.partitions_held),
        ),
    ]
}

/// Shorthand for the relaxed increments used everywhere: these counters
/// order nothing, they are only read by scrapes.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

pub fn set(gauge: &AtomicU64, v: u64) {
    gauge.store(v, Ordering::Relaxed);
}

pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Metrics {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        // A panic elsewhere while holding the lock leaves plain data behind;
        // metrics stay readable rather than poisoning every scrape.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_watermark(&self, w: Option<i64>) {
        self.watermark
            .store(w.unwrap_or(NO_WATERMARK), Ordering::Relaxed);
    }

    /// `engine.lateness` in ms (`None`: infinite, the gauge is absent).
    pub fn set_lateness(&self, l: Option<i64>) {
        self.lateness
            .store(l.unwrap_or(NO_WATERMARK), Ordering::Relaxed);
    }

    pub fn lateness(&self) -> Option<i64> {
        let l = self.lateness.load(Ordering::Relaxed);
        (l != NO_WATERMARK).then_some(l)
    }

    pub fn watermark(&self) -> Option<i64> {
        let w = self.watermark.load(Ordering::Relaxed);
        (w != NO_WATERMARK).then_some(w)
    }

    /// The engine state budget shared by every query of the daemon.
    pub fn engine_state(&self) -> &Arc<StateBudget> {
        &self.engine_state
    }

    pub fn register_branch(&self, query: &str, branch: &str) -> Arc<BranchMetrics> {
        let m = Arc::new(BranchMetrics::default());
        self.registry()
            .branches
            .push((query.to_string(), branch.to_string(), m.clone()));
        m
    }

    pub fn register_merger(&self, query: &str) -> Arc<MergerMetrics> {
        let m = Arc::new(MergerMetrics::default());
        self.registry().mergers.push((query.to_string(), m.clone()));
        m
    }

    /// Forget a finished query's task metrics (by identity, so a restarted
    /// query of the same name keeps its fresh counters).
    pub fn unregister(&self, branches: &[Arc<BranchMetrics>], merger: &Arc<MergerMetrics>) {
        let mut reg = self.registry();
        reg.branches
            .retain(|(_, _, m)| !branches.iter().any(|b| Arc::ptr_eq(b, m)));
        reg.mergers.retain(|(_, m)| !Arc::ptr_eq(m, merger));
    }

    /// Metrics of a collector address, labelled `socket` (`udp://ADDR`).
    pub fn register_socket(&self, socket: &str) -> Arc<SocketMetrics> {
        let m = Arc::new(SocketMetrics::default());
        self.registry()
            .sockets
            .push((socket.to_string(), m.clone()));
        m
    }

    /// The counters of the output sink labelled `sink`; a sink of the same
    /// label (a reload that removed and added it again) counts on.
    pub fn register_sink(&self, sink: &str) -> Arc<SinkMetrics> {
        let mut reg = self.registry();
        if let Some((_, m)) = reg.sinks.iter().find(|(l, _)| l == sink) {
            return m.clone();
        }
        let m = Arc::new(SinkMetrics::default());
        reg.sinks.push((sink.to_string(), m.clone()));
        m
    }

    /// Every output sink's counters.
    pub fn sinks(&self) -> Vec<Arc<SinkMetrics>> {
        self.registry()
            .sinks
            .iter()
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// Replace the collector's (decoder's) labelled samples.
    pub fn publish_collector(&self, samples: Vec<Sample>) {
        self.registry().collector = samples;
    }

    /// Every sample, in a stable order.
    pub fn samples(&self) -> Vec<Sample> {
        let mut out = self.global_samples();
        let reg = self.registry();
        out.extend(reg.collector.iter().cloned());
        out.extend(socket_samples(&reg.sockets));
        out.extend(sink_samples(&reg.sinks));
        for (q, b, m) in &reg.branches {
            out.extend(branch_samples(q, b, m));
        }
        for (q, m) in &reg.mergers {
            out.extend(merger_samples(q, m));
        }
        out
    }

    fn global_samples(&self) -> Vec<Sample> {
        use Kind::*;
        let c = |name, help, kind, v: &AtomicU64| Sample {
            name,
            help,
            kind,
            labels: Vec::new(),
            value: Value::Int(get(v)),
        };
        let mut out = vec![
            c(
                "flowy_datagrams_received_total",
                "UDP datagrams read from the sockets",
                Counter,
                &self.datagrams_received,
            ),
            c(
                "flowy_received_bytes_total",
                "UDP payload bytes read from the sockets",
                Counter,
                &self.bytes_received,
            ),
            c(
                "flowy_receive_errors_total",
                "errors reading from the sockets",
                Counter,
                &self.receive_errors,
            ),
            c(
                "flowy_datagrams_refused_total",
                "datagrams from sources outside collector.allow, dropped before decoding",
                Counter,
                &self.datagrams_refused,
            ),
            c(
                "flowy_records_received_total",
                "flow records decoded (rec_id assigned)",
                Counter,
                &self.records_received,
            ),
            c(
                "flowy_records_processed_total",
                "records handed to every running branch (or dropped by policy)",
                Counter,
                &self.records_processed,
            ),
            c(
                "flowy_records_late_total",
                "records whose stime was below the watermark on arrival",
                Counter,
                &self.records_late,
            ),
            c(
                "flowy_records_dropped_total",
                "late records discarded because engine.late = drop",
                Counter,
                &self.records_dropped,
            ),
            c(
                "flowy_reloads_total",
                "successful SIGHUP reloads",
                Counter,
                &self.reloads,
            ),
            c(
                "flowy_reload_failures_total",
                "SIGHUP reloads rejected (running set kept)",
                Counter,
                &self.reload_failures,
            ),
            c(
                "flowy_queries_running",
                "queries being evaluated",
                Gauge,
                &self.queries_running,
            ),
            c(
                "flowy_metrics_connections_refused_total",
                "metrics-endpoint connections closed at once: over the connection cap",
                Counter,
                &self.metrics_connections_refused,
            ),
            c(
                "flowy_metrics_requests_timed_out_total",
                "metrics-endpoint requests cut off at their deadline",
                Counter,
                &self.metrics_requests_timed_out,
            ),
        ];
        out.extend(cluster_samples(&self.cluster));
        out.extend(super::process::samples());
        out.extend(engine_state_samples(&self.engine_state));
        if let Some(w) = self.watermark() {
            out.push(Sample::gauge_f64(
                "flowy_watermark_seconds",
                "current watermark W, seconds since the epoch",
                Vec::new(),
                w as f64 / 1000.0,
            ));
        }
        if let Some(l) = self.lateness() {
            out.push(Sample::gauge_f64(
                "flowy_engine_lateness_seconds",
                "engine.lateness: how far behind the latest stime the watermark runs",
                Vec::new(),
                l as f64 / 1000.0,
            ));
        }
        out
    }

    /// The Prometheus text exposition of every sample.
    pub fn render(&self) -> String {
        render(self.samples())
    }
}

fn engine_state_samples(b: &StateBudget) -> Vec<Sample> {
    let gauge = |name, help, value: usize| Sample::gauge(name, help, Vec::new(), value as u64);
    let mut out = vec![
        gauge(
            "flowy_engine_state_bytes",
            "bytes of engine state (open groups, reorder buffers, stored groups, held tuples) of all queries",
            b.used(),
        ),
        gauge(
            "flowy_engine_state_max_bytes",
            "engine.max_state, the bound of flowy_engine_state_bytes",
            b.max(),
        ),
    ];
    out.extend(Eviction::ALL.iter().map(|k| {
        Sample::counter(
            "flowy_engine_state_evictions_total",
            "engine state given up early because engine.max_state was reached",
            vec![("kind", k.label().to_string())],
            b.evictions(*k),
        )
    }));
    out
}

fn socket_samples(sockets: &[(String, Arc<SocketMetrics>)]) -> Vec<Sample> {
    let mut out: Vec<Sample> = sockets
        .iter()
        .map(|(label, m)| {
            Sample::gauge(
                "flowy_socket_receive_buffer_bytes",
                "receive buffer the kernel granted (SO_RCVBUF read back; Linux reports twice the usable size)",
                vec![("socket", label.clone())],
                get(&m.receive_buffer),
            )
        })
        .collect();
    out.extend(
        sockets
            .iter()
            .filter(|(_, m)| m.drops_known.load(Ordering::Relaxed))
            .map(|(label, m)| {
                Sample::counter(
                    "flowy_socket_drops_total",
                    "datagrams the kernel dropped because flowy did not read them in time (receive buffer full)",
                    vec![("socket", label.clone())],
                    get(&m.drops),
                )
            }),
    );
    out
}

fn sink_samples(sinks: &[(String, Arc<SinkMetrics>)]) -> Vec<Sample> {
    use Kind::*;
    type Family = (
        &'static str,
        &'static str,
        Kind,
        fn(&SinkMetrics) -> &AtomicU64,
    );
    const FAMILIES: [Family; 6] = [
        (
            "flowy_output_lines_total",
            "matches written to the output",
            Counter,
            |m| &m.lines,
        ),
        (
            "flowy_output_write_errors_total",
            "matches lost to failed output writes",
            Counter,
            |m| &m.write_errors,
        ),
        (
            "flowy_output_matches_total",
            "matches handed to the output by the mergers",
            Counter,
            |m| &m.matches,
        ),
        (
            "flowy_output_queue_bytes",
            "bytes of formatted matches queued for the output or being written",
            Gauge,
            |m| &m.queue_bytes,
        ),
        (
            "flowy_output_dropped_total",
            "matches dropped because the output queue was full (output.when_full = drop)",
            Counter,
            |m| &m.dropped,
        ),
        (
            "flowy_output_not_written_total",
            "matches lost: dropped, failed writes, or still queued at the shutdown deadline",
            Counter,
            |m| &m.not_written,
        ),
    ];
    let mut out = Vec::new();
    for (name, help, kind, field) in FAMILIES {
        out.extend(sinks.iter().map(|(label, m)| {
            Sample::int(
                name,
                help,
                kind,
                vec![("sink", label.clone())],
                get(field(m)),
            )
        }));
    }
    out
}

fn branch_samples(query: &str, branch: &str, m: &BranchMetrics) -> Vec<Sample> {
    use Kind::*;
    let labels = vec![("query", query.to_string()), ("branch", branch.to_string())];
    let s = |name, help, kind, v: &AtomicU64| Sample {
        name,
        help,
        kind,
        labels: labels.clone(),
        value: Value::Int(get(v)),
    };
    vec![
        s(
            "flowy_branch_records_total",
            "records offered to the branch filter",
            Counter,
            &m.records_in,
        ),
        s(
            "flowy_branch_records_passed_total",
            "records that passed the branch filter",
            Counter,
            &m.records_passed,
        ),
        s(
            "flowy_branch_groups_open",
            "groups open in the branch grouper",
            Gauge,
            &m.groups_open,
        ),
        s(
            "flowy_branch_groups_closed_total",
            "groups closed by the branch grouper",
            Counter,
            &m.groups_closed,
        ),
        s(
            "flowy_branch_groups_passed_total",
            "closed groups that passed the group filter",
            Counter,
            &m.groups_passed,
        ),
        s(
            "flowy_branch_closed_early_total",
            "groups or records released early by a limit",
            Counter,
            &m.closed_early,
        ),
        s(
            "flowy_branch_records_late_total",
            "late records seen by the branch",
            Counter,
            &m.late,
        ),
    ]
}

fn merger_samples(query: &str, m: &MergerMetrics) -> Vec<Sample> {
    use Kind::*;
    let labels = vec![("query", query.to_string())];
    let s = |name, help, kind, v: &AtomicU64| Sample {
        name,
        help,
        kind,
        labels: labels.clone(),
        value: Value::Int(get(v)),
    };
    vec![
        s(
            "flowy_merger_stored_groups",
            "groups stored in the merger",
            Gauge,
            &m.stored_groups,
        ),
        s(
            "flowy_merger_matches_total",
            "matches emitted by the merger",
            Counter,
            &m.matches,
        ),
        s(
            "flowy_merger_closed_early_total",
            "stored groups dropped early by a limit",
            Counter,
            &m.closed_early,
        ),
    ]
}

/// The samples of one scrape, handed to `prometheus-client` as a custom
/// collector.
#[derive(Debug)]
struct Scrape(Vec<Sample>);

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        // One HELP/TYPE per family: samples of one name are grouped, in
        // first-seen order (a stable sort by that order, not a scan per name:
        // a large fleet has tens of thousands of samples).
        let mut order: HashMap<&'static str, usize> = HashMap::new();
        for s in &self.0 {
            let next = order.len();
            order.entry(s.name).or_insert(next);
        }
        let mut sorted: Vec<&Sample> = self.0.iter().collect();
        sorted.sort_by_key(|s| order.get(s.name).copied());
        for family in sorted.chunk_by(|a, b| a.name == b.name) {
            let Some(first) = family.first() else {
                continue;
            };
            let (base, metric_type) = match first.kind {
                // The encoder appends `_total` to counters itself.
                Kind::Counter => (
                    first.name.strip_suffix("_total").unwrap_or(first.name),
                    MetricType::Counter,
                ),
                Kind::Gauge => (first.name, MetricType::Gauge),
                Kind::Histogram => (first.name, MetricType::Histogram),
            };
            let mut metric = encoder.encode_descriptor(base, first.help, None, metric_type)?;
            for s in family {
                if s.labels.is_empty() {
                    encode_value(&s.value, s.kind, &mut metric)?;
                } else {
                    let mut labelled = metric.encode_family(&s.labels)?;
                    encode_value(&s.value, s.kind, &mut labelled)?;
                }
            }
        }
        Ok(())
    }
}

fn encode_value(value: &Value, kind: Kind, m: &mut MetricEncoder) -> std::fmt::Result {
    match (value, kind) {
        (Value::Int(v), Kind::Counter) => m.encode_counter::<NoLabelSet, _, u64>(v, None),
        (Value::Float(v), Kind::Counter) => m.encode_counter::<NoLabelSet, _, f64>(v, None),
        (Value::Int(v), _) => m.encode_gauge(v),
        (Value::Float(v), _) => m.encode_gauge(v),
        (Value::Histogram(h), _) => {
            m.encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)
        }
    }
}

/// Prometheus text format (0.0.4) of `samples`.
pub fn render(samples: Vec<Sample>) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(Scrape(samples)));
    let mut out = String::new();
    // Writing into a String cannot fail; a collector error would leave a
    // partial exposition, which Prometheus rejects as a failed scrape.
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
        tracing::error!(error = %e, "metrics exposition failed");
    }
    out
}

/// Parse a Prometheus text exposition into (series, value) pairs, where the
/// series is the name with its label block as written (for tests and the
/// load bench).
pub fn parse_text(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_help_type_and_labels_once_per_name() {
        let m = Metrics::default();
        add(&m.datagrams_received, 3);
        let b = m.register_branch("http", "A\"x");
        set(&b.groups_open, 7);
        let b2 = m.register_branch("http", "B");
        add(&b2.records_in, 2);
        let text = m.render();
        assert!(text.contains(
            "# TYPE flowy_datagrams_received_total counter\nflowy_datagrams_received_total 3\n"
        ));
        assert!(text.contains("flowy_branch_groups_open{query=\"http\",branch=\"A\\\"x\"} 7\n"));
        assert_eq!(
            text.matches("# TYPE flowy_branch_groups_open gauge")
                .count(),
            1
        );
        let parsed = parse_text(&text);
        assert!(parsed.contains(&(
            "flowy_branch_records_total{query=\"http\",branch=\"B\"}".to_string(),
            2.0
        )));
    }

    #[test]
    fn unregister_removes_only_that_task() {
        let m = Metrics::default();
        let old = m.register_branch("q", "A");
        let old_merger = m.register_merger("q");
        let new = m.register_branch("q", "A");
        add(&new.records_in, 5);
        m.unregister(&[old], &old_merger);
        let text = m.render();
        assert!(text.contains("flowy_branch_records_total{query=\"q\",branch=\"A\"} 5"));
        assert_eq!(text.matches("flowy_branch_records_total{").count(), 1);
        assert!(!text.contains("flowy_merger_matches_total{"));
    }

    #[test]
    fn socket_drops_appear_once_read() {
        let m = Metrics::default();
        let s = m.register_socket("udp://127.0.0.1:2055");
        set(&s.receive_buffer, 8192);
        let text = m.render();
        assert!(text.contains(
            "# TYPE flowy_socket_receive_buffer_bytes gauge\nflowy_socket_receive_buffer_bytes{socket=\"udp://127.0.0.1:2055\"} 8192\n"
        ));
        assert!(!text.contains("flowy_socket_drops_total"));
        set(&s.drops, 12);
        s.drops_known.store(true, Ordering::Relaxed);
        assert!(m.render().contains(
            "# TYPE flowy_socket_drops_total counter\nflowy_socket_drops_total{socket=\"udp://127.0.0.1:2055\"} 12\n"
        ));
    }

    #[test]
    fn watermark_appears_once_known() {
        let m = Metrics::default();
        assert!(!m.render().contains("flowy_watermark_seconds "));
        m.set_watermark(Some(1_700_000_000_250));
        assert!(m.render().contains(
            "# TYPE flowy_watermark_seconds gauge\nflowy_watermark_seconds 1700000000.25\n"
        ));
    }

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let h = Sample {
            name: "flowy_export_delay_seconds",
            help: "h",
            kind: Kind::Histogram,
            labels: vec![("exporter", "10.0.0.1".into())],
            value: Value::Histogram(Buckets {
                sum: 3.5,
                count: 3,
                buckets: vec![(0.1, 1), (1.0, 0), (5.0, 2)],
            }),
        };
        let text = render(vec![h]);
        for line in [
            "# TYPE flowy_export_delay_seconds histogram\n",
            "flowy_export_delay_seconds_bucket{exporter=\"10.0.0.1\",le=\"0.1\"} 1\n",
            "flowy_export_delay_seconds_bucket{exporter=\"10.0.0.1\",le=\"1\"} 1\n",
            "flowy_export_delay_seconds_bucket{exporter=\"10.0.0.1\",le=\"5\"} 3\n",
            "flowy_export_delay_seconds_bucket{exporter=\"10.0.0.1\",le=\"+Inf\"} 3\n",
            "flowy_export_delay_seconds_sum{exporter=\"10.0.0.1\"} 3.5\n",
            "flowy_export_delay_seconds_count{exporter=\"10.0.0.1\"} 3\n",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn lateness_gauge_in_seconds() {
        let m = Metrics::default();
        assert!(!m.render().contains("flowy_engine_lateness_seconds"));
        m.set_lateness(Some(90_000));
        assert!(m
            .render()
            .contains("\nflowy_engine_lateness_seconds 90.0\n"));
    }
}
