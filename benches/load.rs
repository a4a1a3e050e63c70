//! Load bench for `flowy serve`: replays a generated capture of NetFlow v5
//! exports into the release daemon at increasing rates and reports, per
//! rate, datagrams sent vs received and records received vs processed (from
//! /metrics); the highest rate without loss is the result. When nfdump's
//! `nfcapd` is installed, the same replays go to it (flows stored vs sent)
//! and the ratio of the two zero-loss rates is reported.
//!
//! `cargo bench --bench load` (FLOWY_LOAD_DATAGRAMS sets the capture size).

#[path = "../tests/daemon_support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::daemon::{sum_metric, Daemon};
use support::netflow::{http_session, now_ms, v5, Flow};
use support::packets::write_export_pcap;

/// Capture timestamps are this far apart: speed 1 = 10 000 datagrams/s.
const BASE_RATE: f64 = 10_000.0;
const FLOWS_PER_DATAGRAM: usize = 30;
/// Nominal send rates in datagrams/s; 0 = as fast as the sender can.
const RATES: &[u32] = &[5_000, 10_000, 20_000, 40_000, 80_000, 0];

fn flows_for(i: usize, base: i64) -> Vec<Flow> {
    let t = base + i as i64 * 5;
    let mut flows = Vec::with_capacity(FLOWS_PER_DATAGRAM);
    for k in 0..FLOWS_PER_DATAGRAM / 2 {
        let n = i * FLOWS_PER_DATAGRAM + k;
        let client = format!("10.{}.{}.{}", n % 7, (n / 7) % 250, n % 250 + 1);
        let server = format!("198.51.100.{}", n % 20 + 1);
        flows.extend(http_session(
            &client,
            30_000 + (n % 30_000) as u16,
            &server,
            t,
        ));
    }
    flows
}

fn capture(path: &Path, datagrams: usize) {
    let base = now_ms() - 120_000;
    let grams: Vec<(i64, Vec<u8>)> = (0..datagrams)
        .map(|i| {
            let flows = flows_for(i, base);
            // 10 datagrams per ms at speed 1.
            let at = base + (i as f64 * 1_000.0 / BASE_RATE) as i64;
            (
                at,
                v5(
                    base + i as i64 * 5 + 3_000,
                    (i * FLOWS_PER_DATAGRAM) as u32,
                    &flows,
                ),
            )
        })
        .collect();
    let exporter: SocketAddr = "127.0.0.1:9995".parse().expect("literal");
    let collector: SocketAddr = "127.0.0.1:2055".parse().expect("literal");
    write_export_pcap(path, exporter, collector, &grams);
}

fn replay(pcap: &Path, to: SocketAddr, rate: u32) -> (u64, f64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let start = Instant::now();
    let speed = (rate > 0).then(|| f64::from(rate) / BASE_RATE);
    let sent = rt
        .block_on(flowy::collect::replay(pcap, to, speed))
        .expect("replay");
    (sent, start.elapsed().as_secs_f64())
}

struct Outcome {
    rate: u32,
    achieved: f64,
    /// Records processed per second, from the first datagram sent until
    /// the last record was processed.
    throughput: f64,
    sent: u64,
    received: u64,
    records_rx: u64,
    records_processed: u64,
}

impl Outcome {
    fn lossless(&self, records: u64) -> bool {
        self.received == self.sent
            && self.records_rx == records
            && self.records_processed == records
    }
}

fn run_flowy(dir: &Path, pcap: &Path, rate: u32) -> Outcome {
    let queries = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/queries/*.flowy");
    let out = dir.join(format!("flowy-{rate}.jsonl"));
    let d = Daemon::start(
        dir,
        &["--output", out.to_str().expect("utf-8")],
        &[
            ("FLOWY__QUERIES__PATHS", queries.to_str().expect("utf-8")),
            ("FLOWY__COLLECTOR__RECV_BUFFER", "8MiB"),
            ("FLOWY__LOG__LEVEL", "warn,flowy::daemon=info"),
        ],
    );
    let start = Instant::now();
    let (sent, secs) = replay(pcap, d.udp, rate);
    // Settle: nothing new for a second and everything received processed.
    let (mut last, mut last_change) = (-1.0, Instant::now());
    let mut done_at = start.elapsed();
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let m = d.scrape();
        let rx = sum_metric(&m, "flowy_records_received_total", "");
        let processed = sum_metric(&m, "flowy_records_processed_total", "");
        if rx != last {
            last = rx;
            last_change = Instant::now();
        }
        if processed == rx && rx > 0.0 && last_change.elapsed() < Duration::from_millis(60) {
            done_at = start.elapsed();
        }
        if last_change.elapsed() > Duration::from_secs(1) && processed == rx {
            break;
        }
    }
    let m = d.scrape();
    let get = |n: &str| sum_metric(&m, n, "") as u64;
    Outcome {
        rate,
        achieved: sent as f64 / secs,
        throughput: get("flowy_records_processed_total") as f64 / done_at.as_secs_f64(),
        sent,
        received: get("flowy_datagrams_received_total"),
        records_rx: get("flowy_records_received_total"),
        records_processed: get("flowy_records_processed_total"),
    }
}

fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}

/// nfcapd on the same replay: flows it stored vs records sent.
fn run_nfcapd(dir: &Path, pcap: &Path, rate: u32) -> Option<(f64, u64)> {
    let flows_dir = dir.join(format!("nfcapd-{rate}"));
    std::fs::create_dir_all(&flows_dir).ok()?;
    let port = free_udp_port();
    let mut child = Command::new("nfcapd")
        .args([
            "-b",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-B",
            "8388608",
            "-w",
        ])
        .arg(&flows_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_millis(500));
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().ok()?;
    let (sent, secs) = replay(pcap, to, rate);
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: kill(2) on our own child; nfcapd flushes its file on SIGTERM.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let out = Command::new("nfdump")
        .arg("-R")
        .arg(&flows_dir)
        .arg("-I")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let flows = text
        .lines()
        .find_map(|l| l.strip_prefix("Flows:"))
        .and_then(|v| v.trim().parse::<u64>().ok())?;
    Some((sent as f64 / secs, flows))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let datagrams: usize = std::env::var("FLOWY_LOAD_DATAGRAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let records = (datagrams * FLOWS_PER_DATAGRAM) as u64;
    let dir = tempfile::tempdir().expect("tempdir");
    let pcap = dir.path().join("load.pcap");
    capture(&pcap, datagrams);
    println!("load: {datagrams} v5 datagrams, {records} records, 3 example queries");
    println!(
        "{:>10} {:>10} {:>8} {:>8} {:>10} {:>10} {:>12}  lossless",
        "nominal", "sent dg/s", "sent", "received", "records rx", "processed", "records/s"
    );
    let mut flowy_best = 0.0f64;
    for &rate in RATES {
        let o = run_flowy(dir.path(), &pcap, rate);
        let ok = o.lossless(records);
        let nominal = if o.rate == 0 {
            "max".to_string()
        } else {
            o.rate.to_string()
        };
        println!(
            "{:>10} {:>10.0} {:>8} {:>8} {:>10} {:>10} {:>12.0}  {}",
            nominal,
            o.achieved,
            o.sent,
            o.received,
            o.records_rx,
            o.records_processed,
            o.throughput,
            ok
        );
        if !ok {
            break;
        }
        flowy_best = flowy_best.max(o.achieved);
    }
    println!(
        "flowy: highest lossless send rate {flowy_best:.0} datagrams/s ({:.0} records/s)",
        flowy_best * FLOWS_PER_DATAGRAM as f64
    );

    if Command::new("nfcapd").arg("-V").output().is_err() {
        println!("nfcapd not installed: no comparison");
        return;
    }
    let mut nf_best = 0.0f64;
    for &rate in RATES {
        let Some((achieved, flows)) = run_nfcapd(dir.path(), &pcap, rate) else {
            println!("nfcapd run failed at {rate}");
            break;
        };
        let ok = flows == records;
        println!("nfcapd nominal {rate:>6} sent {achieved:>8.0} dg/s  flows stored {flows:>8}  lossless {ok}");
        if !ok {
            break;
        }
        nf_best = nf_best.max(achieved);
    }
    println!("nfcapd: highest lossless send rate {nf_best:.0} datagrams/s");
    if nf_best > 0.0 {
        println!(
            "ratio flowy/nfcapd (highest lossless send rate): {:.2}",
            flowy_best / nf_best
        );
    }
}
