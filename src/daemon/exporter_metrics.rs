//! Per-exporter metric samples: datagrams, decode errors by kind, templates,
//! last seen, and the export-delay histogram that sizes `engine.lateness`.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::collect::stats::{DelayHistogram, ExporterStats, DELAY_BOUNDS_MS};

use super::metrics::{Buckets, Kind, Sample, Value};

/// Samples of every exporter, sorted by address so scrapes are stable.
pub fn samples(by_exporter: &HashMap<IpAddr, ExporterStats>) -> Vec<Sample> {
    let mut exporters: Vec<_> = by_exporter.iter().collect();
    exporters.sort_by_key(|(ip, _)| **ip);
    let mut out = Vec::with_capacity(exporters.len() * 6);
    for (ip, e) in exporters {
        let label = || vec![("exporter", ip.to_string())];
        out.push(Sample::counter(
            "flowy_exporter_datagrams_total",
            "datagrams decoded, by exporter (sum: received minus refused)",
            label(),
            e.datagrams,
        ));
        // Only kinds that occurred: seven zero series per exporter would
        // multiply the series of a large fleet for nothing.
        for (kind, n) in e.errors.by_kind().into_iter().filter(|(_, n)| *n > 0) {
            let mut labels = label();
            labels.push(("kind", kind.to_string()));
            out.push(Sample::counter(
                "flowy_decode_errors_total",
                "malformed datagrams or sets, by exporter and kind",
                labels,
                n,
            ));
        }
        out.push(Sample::gauge(
            "flowy_exporter_templates",
            "v9/IPFIX templates cached for the exporter's streams",
            label(),
            e.templates,
        ));
        out.push(Sample::gauge_f64(
            "flowy_exporter_last_seen_timestamp_seconds",
            "receive time of the exporter's last datagram, seconds since the epoch",
            label(),
            e.last_seen_ms as f64 / 1000.0,
        ));
        out.push(delay_sample(label(), &e.delay));
        out.push(Sample::counter(
            "flowy_export_delay_negative_total",
            "records whose end time was after their receive time (exporter clock ahead), not in flowy_export_delay_seconds",
            label(),
            e.delay.negative,
        ));
    }
    out
}

fn delay_sample(labels: Vec<(&'static str, String)>, h: &DelayHistogram) -> Sample {
    let mut buckets: Vec<(f64, u64)> = DELAY_BOUNDS_MS
        .iter()
        .zip(&h.buckets)
        .map(|(b, n)| (*b as f64 / 1000.0, *n))
        .collect();
    buckets.push((f64::INFINITY, h.buckets[DELAY_BOUNDS_MS.len()]));
    Sample {
        name: "flowy_export_delay_seconds",
        help:
            "export delay per record: receive time minus the record's end time (etime), by exporter",
        kind: Kind::Histogram,
        labels,
        value: Value::Histogram(Buckets {
            sum: h.sum_ms as f64 / 1000.0,
            count: h.count(),
            buckets,
        }),
    }
}
