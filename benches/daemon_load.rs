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
//!   (one query no record passes: receive, decode, dispatch and filter only),
//!   `flowy-pass` (the pass-through query: every record a JSON match line)
//!   and `nfcapd` (default `flowy,flowy-ingest,nfcapd`)
//! - `FLOWY_LOAD_OUTPUT_RECORDS` `false` writes match lines without their
//!   flow records (default `true`, as the embedded configuration does)
//! - `FLOWY_LOAD_HTTP_PERCENT` share of the generator's draws that start an
//!   HTTP session rather than one noise flow (default 50: nine flows in ten
//!   are HTTP and one record in six ends up in a match)
//! - `FLOWY_LOAD_FORMAT` `v5` (default) or `v9` (template datagram every 64)
//! - `FLOWY_LOAD_PCAP` replay this capture of a real exporter's NetFlow v9
//!   export instead of generating one (e.g. softflowd's, made by
//!   benches/cluster.sh): looped to `FLOWY_LOAD_RECORDS`, each loop moved
//!   forward in time and sequence as from one long-running exporter, its
//!   templates and options exactly where the exporter put them
//! - `FLOWY_LOAD_KEEP` keep the temp dir (capture, outputs) and print its path
//! - `FLOWY_BIN` another flowy binary to test
//!
//! Not part of `cargo test`: without cargo bench's `--bench` argument the
//! main returns at once.

mod support;

use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use support::capture::{self, header_count};
use support::exporter_capture::ExporterCapture;
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
/// The query of the `flowy-pass` runs.
const PASS_THROUGH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/benches/support/pass-through.flowy"
);
/// The flowy variants: collector name and query glob (`None`: FLOWY_LOAD_QUERIES).
const FLOWY_KINDS: [(&str, Option<&str>); 3] = [
    ("flowy", None),
    ("flowy-ingest", Some(INGEST_ONLY)),
    ("flowy-pass", Some(PASS_THROUGH)),
];
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
    pcap: Option<PathBuf>,
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
            pcap: var("FLOWY_LOAD_PCAP").map(PathBuf::from),
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

/// Datagrams to send and the flow records in each.
struct Capture {
    grams: Vec<Vec<u8>>,
    records: Vec<u64>,
}

/// The datagrams of one step (the capture's first `rate × step` records)
/// and the records they hold.
fn step_grams(cap: &Capture, rate: u64, step_secs: f64) -> (Vec<&[u8]>, u64) {
    let want = (rate as f64 * step_secs) as u64;
    let (mut sent, mut grams) = (0u64, Vec::new());
    for (g, &n) in cap.grams.iter().zip(&cap.records) {
        if sent >= want {
            break;
        }
        sent += n;
        grams.push(g.as_slice());
    }
    (grams, sent)
}

/// Datagrams per second that carry `rate` records per second.
fn datagram_rate(grams: &[&[u8]], sent: u64, rate: u64) -> f64 {
    rate as f64 * grams.len() as f64 / sent.max(1) as f64
}

/// Collector CPU time per processed record, for the note column: unlike the
/// highest lossless rate it hardly depends on what else the machine runs.
fn cpu_note(cpu: Option<Duration>, processed: u64) -> String {
    cpu.map_or(String::new(), |c| {
        format!(
            " cpu {:.2} s = {:.0} ns/rec",
            c.as_secs_f64(),
            c.as_nanos() as f64 / processed.max(1) as f64
        )
    })
}

fn flowy_step(
    collector: &'static str,
    queries: &str,
    dir: &Path,
    (grams, sent): (&[&[u8]], u64),
    rate: u64,
    output_records: bool,
) -> anyhow::Result<Row> {
    // Each step writes its own output, so its size is this step's.
    let output = dir.join(flowy_proc::OUTPUT);
    let _ = std::fs::remove_file(&output);
    let daemon = Flowy::start(dir, queries, RECV_BUFFER, output_records)?;
    let per_sec = datagram_rate(grams, sent, rate);
    let report = sender::send_paced(daemon.udp, grams, per_sec)?;
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
    let processed = row.processed;
    row.note.push_str(&cpu_note(daemon.cpu(), processed));
    if let Some(d) = daemon.decode_cpu() {
        let per = d.as_nanos() as f64 / processed.max(1) as f64;
        row.note.push_str(&format!(" (decode thread {per:.0})"));
    }
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

fn nfcapd_step(dir: &Path, (grams, sent): (&[&[u8]], u64), rate: u64) -> anyhow::Result<Row> {
    let nf = Nfcapd::start(dir, RECV_BUFFER)?;
    let to = SocketAddrV4::new([127, 0, 0, 1].into(), nf.port);
    let report = sender::send_paced(to.into(), grams, datagram_rate(grams, sent, rate))?;
    let sent_at = Instant::now();
    let mut calm = 0;
    while calm < 3 && sent_at.elapsed() < DRAIN_LIMIT {
        let queued = kernel::udp_socket(nf.port).map_or(0, |k| k.rx_queue);
        calm = if queued == 0 { calm + 1 } else { 0 };
        std::thread::sleep(POLL);
    }
    let drain = sent_at.elapsed().saturating_sub(POLL * 3);
    let kernel_drops = kernel::udp_socket(nf.port).map_or(0, |k| k.drops);
    let cpu = nf.cpu();
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
            "seq.errors {} eff {:.0}/s{}",
            intake.sequence_errors,
            intake.flows as f64 / (report.elapsed + drain).as_secs_f64(),
            cpu_note(cpu, intake.flows)
        ),
    })
}

/// A real exporter's capture, looped to `FLOWY_LOAD_RECORDS`.
fn replay_capture(s: &Settings, path: &Path) -> anyhow::Result<Capture> {
    let t = Instant::now();
    let cap = ExporterCapture::read(path)?;
    let (grams, records) = cap.looped(s.records as u64);
    let total: u64 = records.iter().sum();
    println!(
        "capture: {} (real exporter, NetFlow v9): {} datagrams, {} flow records \
         ({:.1}/datagram), {} templates, {} options records, {} datagrams with \
         templates; looped {}x to {} datagrams, {} records, loops {} s of flow \
         time apart; prepared in {:.1} s",
        path.display(),
        cap.grams.len(),
        cap.total_records(),
        cap.total_records() as f64 / cap.grams.len().max(1) as f64,
        cap.templates,
        cap.options_records,
        cap.template_datagrams,
        grams.len() / cap.grams.len().max(1),
        grams.len(),
        total,
        cap.span_ms / 1000,
        t.elapsed().as_secs_f64()
    );
    Ok(Capture { grams, records })
}

/// Generate the capture, write it as pcap, read it back the way
/// `flowy replay` does; the UDP payloads to send.
fn prepare_capture(s: &Settings, dir: &Path) -> anyhow::Result<Capture> {
    if let Some(path) = &s.pcap {
        return replay_capture(s, path);
    }
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
    let records = grams.iter().map(|g| header_count(g)).collect();
    Ok(Capture { grams, records })
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
        "flowy: {}\nflowy queries: {}\nflowy-ingest queries: {INGEST_ONLY}\nflowy-pass queries: {PASS_THROUGH}\nnet.core.rmem_max: {} bytes; SO_RCVBUF requested: {RECV_BUFFER} bytes",
        flowy_proc::binary().display(),
        s.queries,
        kernel::rmem_max().map_or("unknown".into(), |v| v.to_string())
    );
    let cap = prepare_capture(s, dir)?;
    let use_nfcapd = s.collectors.iter().any(|c| c == "nfcapd");
    if use_nfcapd && !nfcapd::available() {
        println!("nfcapd: not installed (apt-get install nfdump); only flowy is measured");
    }
    let mut want = vec![];
    for (c, _) in FLOWY_KINDS {
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
        let (grams, sent) = step_grams(&cap, rate, s.step_secs);
        let grams = (grams.as_slice(), sent);
        for (i, &c) in want.iter().enumerate() {
            if lossy[i] >= MAX_LOSSY_STEPS {
                continue;
            }
            let sub = dir.join(format!("{c}-{step}"));
            std::fs::create_dir_all(&sub)?;
            let query = FLOWY_KINDS
                .iter()
                .find(|(k, _)| *k == c)
                .map(|(_, q)| q.unwrap_or(&s.queries));
            let row = match query {
                Some(q) => flowy_step(c, q, &sub, grams, rate, s.output_records),
                None => nfcapd_step(&sub, grams, rate),
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
        for (c, _) in FLOWY_KINDS {
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
