//! CPU time per record of the collector's decoder over whole captures: the
//! daemon load bench's synthetic v5 and v9 captures against a real
//! exporter's v9 capture (issue 11: softflowd's stream took half the
//! synthetic rate). Thread CPU time, not wall clock, so that it holds on a
//! shared machine; each case is decoded `PASSES` times by a fresh decoder
//! and the fastest pass is reported.
//!
//! Run: `cargo bench --bench decode_capture`. Knobs:
//! - `FLOWY_LOAD_PCAP` the real capture (default
//!   `target/bench-data/cluster-softflowd-600000-v1/exports.pcap`, made by
//!   benches/cluster.sh); skipped when absent
//! - `FLOWY_DECODE_RECORDS` records per case (default 3M; the real capture
//!   is looped and time-shifted as in daemon_load)
//! - `FLOWY_DECODE_CASES` which cases, any of `v5,v9,real` (default all)
//! - `FLOWY_DECODE_SLOW=0` skip the passes without the fast path (for profiles)
//!
//! Besides the totals it splits the real capture's cost between datagrams
//! that carry templates / options templates and data-only ones, and reports
//! data sets per datagram (per-set costs show there).

#[allow(dead_code)]
mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use flowy::collect::{Decoder, DecoderConfig};
use flowy::record::Record;

use support::capture;
use support::exporter_capture::ExporterCapture;

const PASSES: usize = 3;
/// Datagrams decoded into one record buffer before it is cleared, about a
/// daemon batch (1024 records).
const BATCH_DATAGRAMS: usize = 32;

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

struct Case {
    name: String,
    grams: Vec<Vec<u8>>,
    records: u64,
}

/// Set ids of a v9 datagram.
fn set_ids(g: &[u8]) -> Vec<u16> {
    let be16 = |at: usize| g.get(at..at + 2).map(|s| u16::from_be_bytes([s[0], s[1]]));
    let (mut at, mut ids) = (20, Vec::new());
    while let (Some(id), Some(len)) = (be16(at), be16(at + 2)) {
        if len < 4 {
            break;
        }
        ids.push(id);
        at += usize::from(len);
    }
    ids
}

struct Pass {
    cpu: Duration,
    decoded: u64,
    /// CPU time and records of datagrams with template/options sets.
    with_templates: (Duration, u64, usize),
    /// … of data-only datagrams.
    data_only: (Duration, u64, usize),
}

fn pass(case: &Case, fast: bool, split: bool) -> Pass {
    let from = SocketAddr::from(([192, 0, 2, 1], 2055));
    let mut d = Decoder::new(DecoderConfig::default());
    d.set_fast_path(fast);
    let mut out: Vec<Record> = Vec::with_capacity(2048);
    let mut p = Pass {
        cpu: Duration::ZERO,
        decoded: 0,
        with_templates: (Duration::ZERO, 0, 0),
        data_only: (Duration::ZERO, 0, 0),
    };
    let t0 = thread_cpu();
    for chunk in case.grams.chunks(BATCH_DATAGRAMS) {
        for g in chunk {
            if split {
                let templates = set_ids(g).iter().any(|&id| id < 256);
                let (before, t) = (out.len(), thread_cpu());
                d.decode(g, from, 0, &mut out);
                let spent = thread_cpu() - t;
                let class = if templates {
                    &mut p.with_templates
                } else {
                    &mut p.data_only
                };
                class.0 += spent;
                class.1 += (out.len() - before) as u64;
                class.2 += 1;
            } else {
                d.decode(g, from, 0, &mut out);
            }
        }
        p.decoded += out.len() as u64;
        out.clear();
    }
    p.cpu = thread_cpu() - t0;
    p
}

fn per(d: Duration, n: u64) -> f64 {
    d.as_nanos() as f64 / n.max(1) as f64
}

fn report(case: &Case, slow: bool) {
    let sets: usize = case.grams.iter().map(|g| set_ids(g).len()).sum();
    println!(
        "{}: {} datagrams, {} records ({:.1}/datagram), {:.2} sets/datagram",
        case.name,
        case.grams.len(),
        case.records,
        case.records as f64 / case.grams.len() as f64,
        sets as f64 / case.grams.len() as f64
    );
    for fast in [true, false] {
        if !fast && !slow {
            continue;
        }
        let best = (0..PASSES)
            .map(|_| pass(case, fast, false))
            .min_by_key(|p| p.cpu)
            .expect("PASSES > 0");
        let check = if best.decoded == case.records {
            String::new()
        } else {
            format!("  [decoded {} of {}]", best.decoded, case.records)
        };
        println!(
            "  fast path {:<3}: {:>7.1} ns/record  {:>8.0} ns/datagram  {:>5.2} M records/s per core{check}",
            if fast { "on" } else { "off" },
            per(best.cpu, best.decoded),
            per(best.cpu, case.grams.len() as u64),
            best.decoded as f64 / best.cpu.as_secs_f64() / 1e6,
        );
    }
    let split = (0..PASSES)
        .map(|_| pass(case, true, true))
        .min_by_key(|p| p.cpu)
        .expect("PASSES > 0");
    for (what, (cpu, recs, grams)) in [
        ("with template/options sets", split.with_templates),
        ("data sets only", split.data_only),
    ] {
        if grams == 0 {
            continue;
        }
        println!(
            "  {what:<27}: {grams:>7} datagrams {recs:>9} records  {:>7.1} ns/record  {:>8.0} ns/datagram  {:>5.1} % of CPU",
            per(cpu, recs),
            per(cpu, grams as u64),
            100.0 * cpu.as_secs_f64() / (split.with_templates.0 + split.data_only.0).as_secs_f64()
        );
    }
}

/// Elements flowy keeps as extras in softflowd's templates.
const SOFTFLOWD_EXTRAS: [u16; 3] = [60, 61, 136];

/// `g` with the extras of its (v9) templates renamed to an element id
/// flowy does not list: the records then carry no extras, and the
/// difference in decode cost is what keeping them costs.
fn unlist_extras(g: &[u8]) -> Vec<u8> {
    let mut g = g.to_vec();
    let be16 = |b: &[u8], at: usize| b.get(at..at + 2).map(|s| u16::from_be_bytes([s[0], s[1]]));
    let mut at = 20;
    while let (Some(id), Some(len)) = (be16(&g, at), be16(&g, at + 2)) {
        let len = usize::from(len);
        if len < 4 {
            break;
        }
        if id == 0 {
            let (mut t, end) = (at + 4, (at + len).min(g.len()));
            while let (Some(_), Some(n)) = (be16(&g, t), be16(&g, t + 2)) {
                for f in 0..usize::from(n) {
                    let p = t + 4 + 4 * f;
                    if be16(&g, p).is_some_and(|ty| SOFTFLOWD_EXTRAS.contains(&ty)) {
                        g[p..p + 2].copy_from_slice(&4000u16.to_be_bytes());
                    }
                }
                t += 4 + 4 * usize::from(n);
                if t + 4 > end {
                    break;
                }
            }
        }
        at += len;
    }
    g
}

/// The loops as the daemon sees them: no sequence gap or reset, no decode
/// error, and every loop's flows after the previous loop's.
fn check_loops(grams: &[Vec<u8>], per_loop: usize) {
    let from = SocketAddr::from(([192, 0, 2, 1], 2055));
    let mut d = Decoder::new(DecoderConfig::default());
    let mut out: Vec<Record> = Vec::new();
    let mut spans = Vec::new();
    for chunk in grams.chunks(per_loop.max(1)) {
        out.clear();
        for g in chunk {
            d.decode(g, from, 0, &mut out);
        }
        let lo = out.iter().map(|r| r.stime()).min().unwrap_or(0);
        let hi = out.iter().map(|r| r.etime()).max().unwrap_or(0);
        spans.push((lo, hi));
    }
    let ordered = spans.windows(2).all(|w| w[0].1 < w[1].0);
    let st = d.stats();
    println!(
        "loops: {} of {} datagrams; flow times {}..{} ms; each loop after the last: {}; \
         sequence gaps {}, resets {}, decode errors {}",
        spans.len(),
        per_loop,
        spans.first().map_or(0, |s| s.0),
        spans.last().map_or(0, |s| s.1),
        if ordered { "yes" } else { "NO" },
        st.sequence_gaps.values().sum::<u64>(),
        st.sequence_resets,
        st.errors.total()
    );
}

fn synthetic(format: &str, records: usize) -> Case {
    let flows = support::flows::generate(records, 1_795_420_800_000, 600_000, 0x5eed, 50);
    let exports = match format {
        "v9" => capture::v9_exports(&flows),
        _ => capture::v5_exports(&flows),
    };
    let grams: Vec<Vec<u8>> = exports.into_iter().map(|e| e.payload).collect();
    let records = grams.iter().map(|g| capture::header_count(g)).sum();
    Case {
        name: format!("synthetic {format}"),
        grams,
        records,
    }
}

fn run() -> anyhow::Result<()> {
    let records = match std::env::var("FLOWY_DECODE_RECORDS") {
        Ok(r) => {
            r.trim_end_matches(['M', 'm'])
                .parse::<f64>()
                .context("FLOWY_DECODE_RECORDS (millions, e.g. 3M)")?
                * 1e6
        }
        Err(_) => 3e6,
    } as u64;
    let pcap = std::env::var_os("FLOWY_LOAD_PCAP")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/bench-data/cluster-softflowd-600000-v1/exports.pcap")
        });
    let cases = std::env::var("FLOWY_DECODE_CASES").unwrap_or_else(|_| "v5,v9,real".into());
    let want = |c: &str| cases.split(',').any(|w| w.trim() == c);
    let slow = std::env::var("FLOWY_DECODE_SLOW").map_or(true, |v| v != "0");
    for format in ["v5", "v9"] {
        if want(format) {
            report(&synthetic(format, records as usize), slow);
        }
    }
    if !want("real") {
        return Ok(());
    }
    if !pcap.exists() {
        println!(
            "{}: absent (make it with benches/cluster.sh); real capture skipped",
            pcap.display()
        );
        return Ok(());
    }
    let cap = ExporterCapture::read(&pcap)?;
    println!(
        "{}: {} datagrams, {} flow records, {} templates, {} options records, {} datagrams with templates; loops {} s apart",
        pcap.display(),
        cap.grams.len(),
        cap.total_records(),
        cap.templates,
        cap.options_records,
        cap.template_datagrams,
        cap.span_ms / 1000
    );
    let (grams, counts) = cap.looped(records);
    check_loops(&grams, cap.grams.len());
    let total = counts.iter().sum();
    report(
        &Case {
            name: "real exporter, extras unlisted (what the IANA extras cost)".into(),
            records: total,
            grams: grams.iter().map(|g| unlist_extras(g)).collect(),
        },
        slow,
    );
    report(
        &Case {
            name: "real exporter (looped)".into(),
            records: counts.iter().sum(),
            grams,
        },
        slow,
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        println!("decode_capture: run it with `cargo bench --bench decode_capture`");
        return Ok(());
    }
    // The allocator as `flowy serve` sets it up: records allocate.
    flowy::memory::tune_allocator();
    run()
}
