//! Load bench for `flowy serve` (issue 3): replay a large capture of NetFlow
//! v5 exports into the running daemon at increasing rates and find the
//! highest rate with zero loss (sent == received == processed, from its
//! metrics); replay the same datagrams at the same rates into Debian's
//! `nfcapd` and compare.
//!
//! Run: `cargo bench --bench daemon_load` (cargo builds the `flowy` binary
//! for the bench and passes its path as CARGO_BIN_EXE_flowy). Knobs, all
//! optional, as environment variables:
//! - `FLOWY_LOAD_RATES`   records/s steps, e.g. `500k,1M,2M` (default 250k…4M)
//! - `FLOWY_LOAD_RECORDS` capture size in records (default 12M: a step at
//!   4M records/s still lasts 3 s; shorter bursts fit in the socket buffers
//!   and hide loss)
//! - `FLOWY_LOAD_STEP_SECS` seconds of sending per step (default 3; capped by the capture)
//! - `FLOWY_LOAD_QUERIES` query glob for `flowy` (default: `config/queries/*.flowy`,
//!   the example queries and the detection library)
//! - `FLOWY_LOAD_COLLECTORS` any of `flowy` (the queries above), `flowy-ingest`
//!   (one query no record passes: receive, decode, dispatch and filter only)
//!   and `nfcapd` (default all three)
//! - `FLOWY_LOAD_OUTPUT_RECORDS` `false` writes match lines without their
//!   flow records (default `true`, as the embedded configuration does)
//! - `FLOWY_LOAD_HTTP_PERCENT` share of the generator's draws that start an
//!   HTTP session rather than one noise flow (default 50: nine flows in ten
//!   are HTTP and one record in six ends up in a match)
//! - `FLOWY_LOAD_FORMAT` `v5` (default) or `v9` (template datagram every 64)
//! - `FLOWY_LOAD_KEEP` keep the temp dir (capture, outputs) and print its path
//! - `FLOWY_BIN` another flowy binary to test
//!
//! Not part of `cargo test`: without cargo bench's `--bench` argument the
//! main returns at once.

mod support;

use std::net::SocketAddrV4;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use support::capture::{self, header_count};
use support::flowy_proc::{self, Flowy};
use support::kernel;
use support::nfcapd::{self, Nfcapd};
use support::sender;

/// Both collectors get the same socket buffer (the kernel doubles it and
/// caps the request at net.core.rmem_max).
const RECV_BUFFER: u64 = 32 << 20;
/// Flow time the capture covers: long enough that windows close and the
/// merger works while the load runs.
const SPAN_MS: i64 = 600_000;
const T0_MS: i64 = 1_795_420_800_000; // 2026-11-23T08:00:00Z
/// A collector is not tried at higher rates after this many lossy steps.
const MAX_LOSSY_STEPS: usize = 2;
/// Longest wait for a collector to work off its backlog after a step.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);
/// The query of the `flowy-ingest` runs.
const INGEST_ONLY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/benches/support/ingest-only.flowy"
);
/// A collector whose backlog outlives the step by more than this is only
/// buffering, not keeping up (flowy's queues hold millions of records).
const KEPT_UP: Duration = Duration::from_secs(1);

struct Settings {
    rates: Vec<u64>,
    records: usize,
    step_secs: f64,
    queries: String,
    collectors: Vec<String>,
    keep: bool,
    format: String,
    output_records: bool,
    http_percent: u64,
}

fn parse_count(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1e3),
        'm' | 'M' => (&s[..s.len() - 1], 1e6),
        _ => (s, 1.0),
    };
    num.parse::<f64>().ok().map(|n| (n * mult) as u64)
}

impl Settings {
    fn from_env() -> anyhow::Result<Settings> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let rates = var("FLOWY_LOAD_RATES")
            .unwrap_or_else(|| "100k,200k,500k,1M,2M,3M,4M".into())
            .split(',')
            .map(|r| parse_count(r).with_context(|| format!("FLOWY_LOAD_RATES: bad rate {r:?}")))
            .collect::<anyhow::Result<Vec<u64>>>()?;
        let records = match var("FLOWY_LOAD_RECORDS") {
            Some(r) => parse_count(&r).context("FLOWY_LOAD_RECORDS")? as usize,
            None => 12_000_000,
        };
        let step_secs = match var("FLOWY_LOAD_STEP_SECS") {
            Some(s) => s.parse().context("FLOWY_LOAD_STEP_SECS")?,
            None => 3.0,
        };
        let queries = var("FLOWY_LOAD_QUERIES")
            .unwrap_or_else(|| format!("{}/config/queries/*.flowy", env!("CARGO_MANIFEST_DIR")));
        let collectors = var("FLOWY_LOAD_COLLECTORS")
            .unwrap_or_else(|| "flowy,flowy-ingest,nfcapd".into())
            .split(',')
            .map(|c| c.trim().to_string())
            .collect();
        Ok(Settings {
            rates,
            records,
            step_secs,
            queries,
            collectors,
            keep: var("FLOWY_LOAD_KEEP").is_some(),
            http_percent: match var("FLOWY_LOAD_HTTP_PERCENT") {
                Some(p) => p.parse().context("FLOWY_LOAD_HTTP_PERCENT")?,
                None => 50,
            },
            output_records: match var("FLOWY_LOAD_OUTPUT_RECORDS").as_deref() {
                None | Some("true") => true,
                Some("false") => false,
                Some(other) => {
                    anyhow::bail!("FLOWY_LOAD_OUTPUT_RECORDS: {other:?} is not true or false")
                }
            },
            format: match var("FLOWY_LOAD_FORMAT").as_deref() {
                None | Some("v5") => "v5".into(),
                Some("v9") => "v9".into(),
                Some(other) => anyhow::bail!("FLOWY_LOAD_FORMAT: {other:?} is not v5 or v9"),
            },
        })
    }
}

/// One rate step of one collector, in records unless named otherwise.
struct Row {
    collector: &'static str,
    target: u64,
    achieved: f64,
    sent: u64,
    received: u64,
    processed: u64,
    kernel_drops: u64,
    drain: Duration,
    note: String,
}

impl Row {
    fn loss(&self) -> u64 {
        self.sent.saturating_sub(self.processed)
    }

    fn lossless(&self) -> bool {
        self.sent == self.received && self.received == self.processed
    }

    /// Lossless and the backlog worked off within `KEPT_UP` of the last
    /// datagram: the collector kept pace instead of buffering the step.
    fn sustained(&self) -> bool {
        self.lossless() && self.drain <= KEPT_UP
    }
}

fn print_header() {
    println!(
        "{:<12} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7}  note",
        "coll", "target/s", "sent/s", "sent", "received", "processed", "loss", "k.drops", "drain"
    );
}

fn print_row(r: &Row) {
    // On 2 cores the sender competes with the collector for CPU: a step it
    // could not pace is judged by what it did send.
    let short = if r.achieved < 0.95 * r.target as f64 {
        " [sender short of target]"
    } else {
        ""
    };
    println!(
        "{:<12} {:>10} {:>10.0} {:>9} {:>9} {:>9} {:>9} {:>7} {:>6.2}s  {}{short}",
        r.collector,
        r.target,
        r.achieved,
        r.sent,
        r.received,
        r.processed,
        r.loss(),
        r.kernel_drops,
        r.drain.as_secs_f64(),
        r.note
    );
}

/// The datagrams of one step: the capture's first `rate × step` records.
fn step_grams(grams: &[Vec<u8>], rate: u64, step_secs: f64) -> Vec<&[u8]> {
    let want = (rate as f64 * step_secs) as u64;
    let mut records = 0u64;
    grams
        .iter()
        .take_while(|g| {
            let more = records < want;
            records += header_count(g);
            more
        })
        .map(Vec::as_slice)
        .collect()
}

fn flowy_step(
    collector: &'static str,
    queries: &str,
    dir: &Path,
    grams: &[&[u8]],
    rate: u64,
    output_records: bool,
) -> anyhow::Result<Row> {
    // Each step writes its own output, so its size is this step's.
    let output = dir.join(flowy_proc::OUTPUT);
    let _ = std::fs::remove_file(&output);
    let daemon = Flowy::start(dir, queries, RECV_BUFFER, output_records)?;
    let sent: u64 = grams.iter().map(|g| header_count(g)).sum();
    let report = sender::send_paced(daemon.udp, grams, rate as f64 / 30.0)?;
    let sent_at = Instant::now();
    let port = daemon.udp.port();
    let mut last = (u64::MAX, u64::MAX);
    let samples = loop {
        let m = daemon.scrape()?;
        let received = flowy_proc::total(&m, "flowy_records_received_total");
        let processed = flowy_proc::total(&m, "flowy_records_processed_total");
        let in_branches = flowy_proc::min(&m, "flowy_branch_records_total").unwrap_or(processed);
        let queued = kernel::udp_socket(port).map_or(0, |k| k.rx_queue);
        let settled = queued == 0
            && last == (received, processed)
            && processed == received
            && in_branches == received;
        if settled || sent_at.elapsed() > DRAIN_LIMIT {
            break m;
        }
        last = (received, processed);
        std::thread::sleep(POLL);
    };
    // The last poll only confirmed nothing moved: drain ended one poll earlier.
    let drain = sent_at.elapsed().saturating_sub(POLL);
    let kernel_drops = kernel::udp_socket(port).map_or(0, |k| k.drops);
    let errors = flowy_proc::total(&samples, "flowy_decode_errors_total");
    let gaps = flowy_proc::total(&samples, "flowy_sequence_gaps_total");
    let lines = flowy_proc::total(&samples, "flowy_output_lines_total");
    let busy = (report.elapsed + drain).as_secs_f64();
    let mut row = Row {
        collector,
        target: rate,
        achieved: sent as f64 / report.elapsed.as_secs_f64(),
        sent,
        received: flowy_proc::total(&samples, "flowy_records_received_total"),
        processed: flowy_proc::total(&samples, "flowy_records_processed_total"),
        kernel_drops,
        drain,
        note: format!(
            "dgrams {}/{} seq.gaps {gaps} dec.err {errors} matches {lines} eff {:.0}/s{}",
            flowy_proc::total(&samples, "flowy_datagrams_received_total"),
            report.datagrams,
            flowy_proc::total(&samples, "flowy_records_processed_total") as f64 / busy,
            if report.errors > 0 {
                format!(" send.err {}", report.errors)
            } else {
                String::new()
            }
        ),
    };
    daemon.stop()?;
    // Match output is work too: with JSON records it can be hundreds of MB/s.
    let written = std::fs::metadata(&output).map_or(0, |m| m.len());
    row.note.push_str(&format!(
        " out {:.0} MB ({:.0} MB/s)",
        written as f64 / 1e6,
        written as f64 / 1e6 / busy
    ));
    Ok(row)
}

fn nfcapd_step(dir: &Path, grams: &[&[u8]], rate: u64) -> anyhow::Result<Row> {
    let nf = Nfcapd::start(dir, RECV_BUFFER)?;
    let sent: u64 = grams.iter().map(|g| header_count(g)).sum();
    let to = SocketAddrV4::new([127, 0, 0, 1].into(), nf.port);
    let report = sender::send_paced(to.into(), grams, rate as f64 / 30.0)?;
    let sent_at = Instant::now();
    let mut calm = 0;
    while calm < 3 && sent_at.elapsed() < DRAIN_LIMIT {
        let queued = kernel::udp_socket(nf.port).map_or(0, |k| k.rx_queue);
        calm = if queued == 0 { calm + 1 } else { 0 };
        std::thread::sleep(POLL);
    }
    let drain = sent_at.elapsed().saturating_sub(POLL * 3);
    let kernel_drops = kernel::udp_socket(nf.port).map_or(0, |k| k.drops);
    let intake = nf.stop()?;
    Ok(Row {
        collector: "nfcapd",
        target: rate,
        achieved: sent as f64 / report.elapsed.as_secs_f64(),
        sent,
        received: intake.flows,
        processed: intake.flows,
        kernel_drops,
        drain,
        note: format!(
            "seq.errors {} eff {:.0}/s",
            intake.sequence_errors,
            intake.flows as f64 / (report.elapsed + drain).as_secs_f64()
        ),
    })
}

/// Generate the capture, write it as pcap, read it back the way
/// `flowy replay` does; the UDP payloads to send.
fn prepare_capture(s: &Settings, dir: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let t = Instant::now();
    let flows = support::flows::generate(s.records, T0_MS, SPAN_MS, 0x5eed, s.http_percent);
    let exports = match s.format.as_str() {
        "v9" => capture::v9_exports(&flows),
        _ => capture::v5_exports(&flows),
    };
    let path = dir.join(format!("load-{}.pcap", s.format));
    let exporter = SocketAddrV4::new([192, 0, 2, 1].into(), 40_000);
    let collector = SocketAddrV4::new([192, 0, 2, 254].into(), 2055);
    capture::write_pcap(&path, exporter, collector, &exports)?;
    drop(exports);
    let grams: Vec<Vec<u8>> = flowy::input::pcap::datagrams(&path)?
        .into_iter()
        .map(|d| d.payload)
        .collect();
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "capture: {} ({} MB): {} NetFlow {} datagrams, {} records, {} s of flow time, \
         {}% HTTP draws; built in {:.1} s",
        path.display(),
        size >> 20,
        grams.len(),
        s.format,
        grams.iter().map(|g| header_count(g)).sum::<u64>(),
        SPAN_MS / 1000,
        s.http_percent,
        t.elapsed().as_secs_f64()
    );
    Ok(grams)
}

/// Which steps count as passed.
type Criterion = fn(&Row) -> bool;

fn highest(rows: &[Row], collector: &str, ok: Criterion) -> Option<u64> {
    rows.iter()
        .filter(|r| r.collector == collector && ok(r))
        .map(|r| r.achieved as u64)
        .max()
}

fn run(s: &Settings) -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new().prefix("flowy-load-").tempdir()?;
    let dir = tmp.path();
    println!(
        "flowy: {}\nflowy queries: {}\nflowy-ingest queries: {INGEST_ONLY}\nnet.core.rmem_max: {} bytes; SO_RCVBUF requested: {RECV_BUFFER} bytes",
        flowy_proc::binary().display(),
        s.queries,
        kernel::rmem_max().map_or("unknown".into(), |v| v.to_string())
    );
    let grams = prepare_capture(s, dir)?;
    let use_nfcapd = s.collectors.iter().any(|c| c == "nfcapd");
    if use_nfcapd && !nfcapd::available() {
        println!("nfcapd: not installed (apt-get install nfdump); only flowy is measured");
    }
    let mut want = vec![];
    for c in ["flowy", "flowy-ingest"] {
        if s.collectors.iter().any(|w| w == c) {
            want.push(c);
        }
    }
    if use_nfcapd && nfcapd::available() {
        want.push("nfcapd");
    }
    let mut rows: Vec<Row> = Vec::new();
    let mut lossy = vec![0usize; want.len()];
    print_header();
    for (step, &rate) in s.rates.iter().enumerate() {
        let step_grams = step_grams(&grams, rate, s.step_secs);
        for (i, &c) in want.iter().enumerate() {
            if lossy[i] >= MAX_LOSSY_STEPS {
                continue;
            }
            let sub = dir.join(format!("{c}-{step}"));
            std::fs::create_dir_all(&sub)?;
            let row = match c {
                "flowy" => flowy_step(c, &s.queries, &sub, &step_grams, rate, s.output_records),
                "flowy-ingest" => {
                    flowy_step(c, INGEST_ONLY, &sub, &step_grams, rate, s.output_records)
                }
                _ => nfcapd_step(&sub, &step_grams, rate),
            }
            .with_context(|| format!("{c} at {rate} records/s"))?;
            print_row(&row);
            lossy[i] = if row.sustained() { 0 } else { lossy[i] + 1 };
            rows.push(row);
        }
    }
    summarize(&rows);
    if s.keep {
        println!("kept: {}", tmp.keep().display());
    }
    Ok(())
}

fn summarize(rows: &[Row]) {
    let show = |v: Option<u64>| v.map_or("none".to_string(), |v| format!("{v}"));
    let kinds: [(&str, Criterion); 2] = [
        ("zero loss", Row::lossless),
        ("zero loss and kept up (drain <= 1 s)", Row::sustained),
    ];
    for (what, ok) in kinds {
        let n = highest(rows, "nfcapd", ok);
        let mut line = format!(
            "highest achieved rate (records/s), {what}: nfcapd {}",
            show(n)
        );
        for c in ["flowy", "flowy-ingest"] {
            let f = highest(rows, c, ok);
            line += &format!("; {c} {}", show(f));
            if let (Some(f), Some(n)) = (f, n) {
                line += &format!(" (x{:.2} nfcapd)", f as f64 / n as f64);
            }
        }
        println!("{line}");
    }
}

fn main() -> anyhow::Result<()> {
    // `cargo test --benches` runs bench targets without `--bench`: skip.
    if !std::env::args().any(|a| a == "--bench") {
        println!("daemon_load: load bench; run it with `cargo bench --bench daemon_load`");
        return Ok(());
    }
    run(&Settings::from_env()?)
}
