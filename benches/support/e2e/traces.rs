//! The flow-tools inputs of the end-to-end bench, written once under the
//! bench data directory and reused: the HTTP-heavy trace of
//! `benches/http_query.rs` as one file and as ten consecutive files, and
//! the merger-growth groups of `benches/support/merger_fixtures.rs` as flows.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use flowy::record::{Record, RecordFields};

use super::flowtools;
use crate::trace_gen;

/// The trace of `benches/http_query.rs`: one hour from 20 000 clients.
pub const HTTP_RECORDS: usize = 1_160_000;
const HTTP_SPAN_MS: i64 = 3_600_000;
const HTTP_CLIENTS: u64 = 20_000;
const HTTP_SEED: u64 = 42;
/// Part of the file names: bump it when a generator changes.
const VERSION: u32 = 1;

fn http_trace() -> Vec<Record> {
    trace_gen::generate(HTTP_RECORDS, HTTP_SPAN_MS, HTTP_CLIENTS, HTTP_SEED)
}

/// The HTTP trace as one `.ftz` file.
pub fn http_file(root: &Path) -> anyhow::Result<PathBuf> {
    let path = root.join(format!("http-{HTTP_RECORDS}-v{VERSION}.ftz"));
    if !path.is_file() {
        std::fs::create_dir_all(root)?;
        flowtools::write(&path, &http_trace())?;
    }
    Ok(path)
}

/// `copies` consecutive copies of the HTTP trace, each shifted by the
/// trace's span, one rotated flow-tools file each, in one directory.
pub fn http_dir(root: &Path, copies: usize) -> anyhow::Result<PathBuf> {
    let dir = root.join(format!("http-{HTTP_RECORDS}x{copies}-v{VERSION}"));
    let stamp = dir.join(".complete");
    if stamp.is_file() {
        return Ok(dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let trace = http_trace();
    let first = trace.iter().map(|r| r.stime()).min().unwrap_or(0);
    let last = trace.iter().map(|r| r.etime()).max().unwrap_or(0);
    // Whole seconds, so no two copies share a rotation name's second.
    let shift = (last - first) / 1000 * 1000 + 1000;
    for k in 0..copies as i64 {
        let copy: Vec<Record> = trace
            .iter()
            .map(|r| {
                Record::from(RecordFields {
                    stime: r.stime() + k * shift,
                    etime: r.etime() + k * shift,
                    ..r.clone().fields()
                })
            })
            .collect();
        let name = flowtools::rotation_name(first + k * shift)?;
        flowtools::write(&dir.join(name), &copy)?;
    }
    std::fs::write(&stamp, "")?;
    Ok(dir)
}

/// The groups of `merger_fixtures::groups(n)` as flows: group `i` is one
/// flow of branch A (to port 1001) or B (to port 1002) alternately, 10 ms
/// apart, A lasting 60 ms and B 5–11 ms; its source address carries the
/// join key `i / 8`, so every key is shared by 4 consecutive groups of each
/// branch. In flow-end order, as an exporter ships them.
fn merger_flows(n: usize) -> Vec<Record> {
    let t0 = 1_795_420_800_000;
    let mut out: Vec<Record> = (0..n)
        .map(|i| {
            let branch = i % 2;
            let stime = t0 + i as i64 * 10;
            let dur = if branch == 0 { 60 } else { 5 + (i as i64 % 7) };
            let key = (i / 8) as u32;
            Record::from(RecordFields {
                rec_id: i as u64,
                exporter: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
                srcip: Some(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | key))),
                dstip: Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1))),
                srcport: Some(40_000),
                dstport: Some(1001 + branch as u16),
                prot: Some(17),
                bytes: Some(100),
                packets: Some(1),
                stime,
                etime: stime + dur,
                ..RecordFields::default()
            })
        })
        .collect();
    out.sort_by_key(|r| (r.etime(), r.rec_id()));
    out
}

/// The `n` merger-growth groups as one `.ftz` file.
pub fn merger_file(root: &Path, n: usize) -> anyhow::Result<PathBuf> {
    let path = root.join(format!("merger-{n}-v{VERSION}.ftz"));
    if !path.is_file() {
        std::fs::create_dir_all(root)?;
        flowtools::write(&path, &merger_flows(n))?;
    }
    Ok(path)
}
