//! Ingest: socket tasks read datagrams, one decode thread turns them into
//! records and stamps each with the global arrival counter (`rec_id`).
//!
//! Decoding runs on a dedicated OS thread so that a burst of large
//! templates never stalls the runtime that serves sockets and metrics, and a
//! single decoder keeps template state and `rec_id` order in one place.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::collect::{DecodeStats, Decoder, DecoderConfig};
use crate::record::Record;
use crate::sanity::{ImplausibleCounts, TimeSanity};
use crate::value::Prefix;

use super::health::Beat;
use super::metrics::{add, Kind, Metrics, Sample};

/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;
/// Records per batch handed to the dispatcher: big enough to amortise the
/// per-branch channel sends, small enough to keep latency low.
const BATCH_RECORDS: usize = 1024;
/// How often an idle decode thread sweeps expired held data.
const IDLE_SWEEP: Duration = Duration::from_secs(1);
/// How often the decoder's counters are copied into the metrics.
const STATS_EVERY: Duration = Duration::from_millis(250);
/// Least time between two publications: building the per-exporter samples
/// costs O(exporters), too much to repeat for every datagram of a trickle.
const PUBLISH_MIN: Duration = Duration::from_millis(50);

pub struct Datagram {
    pub data: Vec<u8>,
    pub from: SocketAddr,
    pub at_ms: i64,
}

/// Records in arrival order, `rec_id` already assigned.
pub type Batch = Vec<Arc<Record>>;

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Read datagrams until `stop` flips, even while the decoder's queue is
/// full; never gives up on a socket error (ICMP errors and the like surface
/// as recv errors on some systems).
pub async fn receive(
    sock: UdpSocket,
    tx: mpsc::Sender<Datagram>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
    allow: Arc<[Prefix]>,
    beat: Beat,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let got = tokio::select! {
            biased;
            _ = stop.changed() => break,
            got = sock.recv_from(&mut buf) => got,
        };
        match got {
            Ok((n, from)) => {
                add(&metrics.datagrams_received, 1);
                add(&metrics.bytes_received, n as u64);
                if !allowed(&allow, from) {
                    add(&metrics.datagrams_refused, 1);
                    continue;
                }
                let d = Datagram {
                    data: buf[..n].to_vec(),
                    from,
                    at_ms: now_ms(),
                };
                beat.busy();
                let sent = tokio::select! {
                    biased;
                    _ = stop.changed() => break,
                    sent = tx.send(d) => sent,
                };
                beat.idle();
                if sent.is_err() {
                    break;
                }
            }
            Err(e) => {
                add(&metrics.receive_errors, 1);
                tracing::debug!(error = %e, "recv_from failed");
            }
        }
    }
}

/// `collector.allow` (SPEC §4.5): empty allows every source. An IPv4
/// exporter seen on a dual-stack socket (`::ffff:a.b.c.d`) is matched as the
/// IPv4 address it is.
fn allowed(allow: &[Prefix], from: SocketAddr) -> bool {
    let ip = from.ip().to_canonical();
    allow.is_empty() || allow.iter().any(|p| p.contains(&ip))
}

/// Start the decode thread. It ends when every socket task has dropped its
/// sender and the queue is drained, saving templates on the way out.
pub fn spawn_decoder(
    cfg: DecoderConfig,
    sanity: TimeSanity,
    rx: mpsc::Receiver<Datagram>,
    out: mpsc::Sender<Batch>,
    metrics: Arc<Metrics>,
    beat: Beat,
) -> std::io::Result<JoinHandle<()>> {
    let runtime = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name("flowy-decode".into())
        .spawn(move || decode_loop(Decoder::new(cfg), sanity, rx, out, metrics, beat, runtime))
}

fn decode_loop(
    mut decoder: Decoder,
    sanity: TimeSanity,
    mut rx: mpsc::Receiver<Datagram>,
    out: mpsc::Sender<Batch>,
    metrics: Arc<Metrics>,
    beat: Beat,
    runtime: tokio::runtime::Handle,
) {
    let panic_on_first = super::panic::requested("decode");
    let mut next_id: u64 = 0;
    let mut records: Vec<Record> = Vec::new();
    let mut implausible = ImplausibleCounts::default();
    // Scrapes see every decoder series (at 0) from the start.
    publish(&mut decoder, &mut implausible, &metrics);
    // The last publication after a datagram (idle ones do not count: the
    // first datagram after a quiet spell is always published at once).
    let mut last_publish: Option<Instant> = None;
    // Decoded since the last publication (published within `PUBLISH_MIN`).
    let mut unpublished = false;
    loop {
        // Wake up now and then while no datagram comes, so that held data
        // expires even when every exporter falls silent.
        // The timer is made inside `block_on`, where the runtime's clock is.
        let wait = if unpublished { PUBLISH_MIN } else { IDLE_SWEEP };
        let next = runtime.block_on(async { tokio::time::timeout(wait, rx.recv()).await });
        let first = match next {
            Ok(Some(d)) => d,
            Ok(None) => break,
            Err(_) => {
                decoder.expire_held(now_ms());
                publish(&mut decoder, &mut implausible, &metrics);
                unpublished = false;
                continue;
            }
        };
        beat.busy();
        if panic_on_first {
            panic!("FLOWY_DEBUG_PANIC=decode: deliberate panic in the decode thread");
        }
        decoder.decode(&first.data, first.from, first.at_ms, &mut records);
        // Drain what is already queued into the same batch.
        while records.len() < BATCH_RECORDS {
            match rx.try_recv() {
                Ok(d) => decoder.decode(&d.data, d.from, d.at_ms, &mut records),
                Err(_) => break,
            }
        }
        // Before rec_id: an implausible record never reaches a query.
        sanity.retain(&mut records, now_ms(), &mut implausible);
        let batch: Batch = records
            .drain(..)
            .map(|mut r| {
                r.set_rec_id(next_id);
                next_id += 1;
                Arc::new(r)
            })
            .collect();
        add(&metrics.records_received, batch.len() as u64);
        // Publish when about to idle (so scrapes see the last datagram, at
        // most `PUBLISH_MIN` late) or periodically under load.
        let since = last_publish.map_or(Duration::MAX, |t| t.elapsed());
        if (rx.is_empty() && since >= PUBLISH_MIN) || since >= STATS_EVERY {
            publish(&mut decoder, &mut implausible, &metrics);
            (last_publish, unpublished) = (Some(Instant::now()), false);
        } else {
            unpublished = true;
        }
        if !batch.is_empty() && out.blocking_send(batch).is_err() {
            tracing::error!("dispatcher gone; decoder stops");
            break;
        }
        beat.idle();
    }
    publish(&mut decoder, &mut implausible, &metrics);
    if let Err(e) = decoder.save_templates() {
        tracing::warn!(error = %e, "cannot save templates");
    }
}

/// Copy the decoder's counters into the metrics; exporters the decoder
/// aged out leave the implausible counts too.
fn publish(decoder: &mut Decoder, implausible: &mut ImplausibleCounts, metrics: &Metrics) {
    for ip in decoder.take_aged() {
        implausible.forget(ip);
    }
    decoder.refresh_templates();
    metrics.publish_collector(collector_samples(decoder.stats(), implausible));
}

/// The decoder's counters and the implausible records as metric samples.
fn collector_samples(s: &DecodeStats, implausible: &ImplausibleCounts) -> Vec<Sample> {
    let mut out = decoder_samples(s);
    let entries = implausible.entries();
    // Every reason is exposed (at 0) before the first implausible record.
    if entries.is_empty() {
        out.extend(crate::sanity::Implausible::ALL.map(|why| implausible_sample(None, why, 0)));
    }
    out.extend(
        entries
            .into_iter()
            .map(|(ip, why, n)| implausible_sample(Some(ip), why, n)),
    );
    out
}

fn implausible_sample(
    exporter: Option<std::net::IpAddr>,
    why: crate::sanity::Implausible,
    n: u64,
) -> Sample {
    let mut labels = Vec::new();
    if let Some(ip) = exporter {
        labels.push(("exporter", ip.to_string()));
    }
    labels.push(("reason", why.label().to_string()));
    Sample::int(
        "flowy_records_implausible_total",
        "records dropped before any query because their times are implausible, by exporter and reason",
        Kind::Counter,
        labels,
        n,
    )
}

/// The decoder's counters as metric samples.
pub fn decoder_samples(s: &DecodeStats) -> Vec<Sample> {
    use Kind::*;
    let ev = &s.evictions;
    let mut out: Vec<Sample> = [
        ("max_state", ev.max_state),
        ("max_exporters", ev.max_exporters),
        ("per_source", ev.per_source),
    ]
    .into_iter()
    .map(|(reason, v)| {
        Sample::int(
            "flowy_decoder_evictions_total",
            "exporter streams dropped to keep a decoder limit, by limit",
            Counter,
            vec![("reason", reason.to_string())],
            v,
        )
    })
    .collect();
    let mut records: Vec<_> = s.records.iter().collect();
    records.sort();
    out.extend(records.into_iter().map(|((ip, version), n)| {
        Sample::int(
            "flowy_records_decoded_total",
            "flow records decoded, by exporter and export version",
            Counter,
            vec![
                ("exporter", ip.to_string()),
                ("version", version.to_string()),
            ],
            *n,
        )
    }));
    let mut gaps: Vec<_> = s.sequence_gaps.iter().collect();
    gaps.sort();
    out.extend(gaps.into_iter().map(|(ip, n)| {
        Sample::int(
            "flowy_sequence_gaps_total",
            "flows/packets/records missing by sequence number, by exporter",
            Counter,
            vec![("exporter", ip.to_string())],
            *n,
        )
    }));
    out.extend(super::exporter_metrics::samples(&s.by_exporter));
    let plain = [
        (
            "flowy_options_records_total",
            "options data records seen",
            Counter,
            s.options_records,
        ),
        (
            "flowy_template_misses_total",
            "template lookups that missed",
            Counter,
            s.template_misses,
        ),
        (
            "flowy_pending_held_total",
            "data sets held awaiting their template",
            Counter,
            s.pending_held,
        ),
        (
            "flowy_pending_replayed_total",
            "held data sets decoded once the template came",
            Counter,
            s.pending_replayed,
        ),
        (
            "flowy_pending_dropped_total",
            "held data sets dropped",
            Counter,
            s.pending_dropped,
        ),
        (
            "flowy_pending_expired_total",
            "held data sets dropped after decoder.pending_ttl",
            Counter,
            s.pending_expired,
        ),
        (
            "flowy_decoder_state_bytes",
            "bytes of templates, layouts and held data (accounted upper bound)",
            Gauge,
            s.state_bytes,
        ),
        (
            "flowy_sequence_resets_total",
            "sequence restarts, duplicates, reorderings",
            Counter,
            s.sequence_resets,
        ),
        (
            "flowy_decoder_streams",
            "exporter streams (address + source id / observation domain) with decoder state",
            Gauge,
            s.exporters,
        ),
        (
            "flowy_exporters_aged_out_total",
            "exporters forgotten after collector.exporter_idle without a datagram",
            Counter,
            s.exporters_aged_out,
        ),
        (
            "flowy_template_store_errors_total",
            "template store read/write failures",
            Counter,
            s.template_store_errors,
        ),
    ];
    out.extend(
        plain
            .into_iter()
            .map(|(n, h, k, v)| Sample::int(n, h, k, Vec::new(), v)),
    );
    out
}
