//! A flow-tools writer (stream version 3, NetFlow v5 records, zlib), the
//! inverse of `src/input/flowtools.rs` after `shared/formats/flow-tools.md`:
//! the end-to-end bench stores its synthetic traces as the `.ftz` files a
//! user would hand to `flowy query`.

use std::io::{BufWriter, Write};
use std::net::IpAddr;
use std::path::Path;

use anyhow::{bail, Context};
use flate2::write::ZlibEncoder;
use flate2::Compression;
use flowy::record::Record;

const TLV_EX_VER: u16 = 0x02;
const TLV_CAP_START: u16 = 0x06;
const TLV_CAP_END: u16 = 0x07;
const TLV_HEADER_FLAGS: u16 = 0x08;
const TLV_FLOW_COUNT: u16 = 0x0A;
/// DONE (closed cleanly) | COMPRESS (zlib record stream).
const FLAGS: u32 = 0x01 | 0x02;
/// An exporter ships a flow about a second after it ends.
const EXPORT_DELAY_MS: i64 = 1_000;

fn tlv(h: &mut Vec<u8>, ty: u16, value: &[u8]) {
    h.extend_from_slice(&ty.to_le_bytes());
    h.extend_from_slice(&(value.len() as u16).to_le_bytes());
    h.extend_from_slice(value);
}

/// Little-endian stream-v3 header, TLVs in numeric order as flow-tools writes them.
fn header(cap_start_s: u32, cap_end_s: u32, flows: u32) -> Vec<u8> {
    let mut h = vec![0xCF, 0x10, 1, 3, 0, 0, 0, 0];
    tlv(&mut h, TLV_EX_VER, &5u16.to_le_bytes());
    tlv(&mut h, TLV_CAP_START, &cap_start_s.to_le_bytes());
    tlv(&mut h, TLV_CAP_END, &cap_end_s.to_le_bytes());
    tlv(&mut h, TLV_HEADER_FLAGS, &FLAGS.to_le_bytes());
    tlv(&mut h, TLV_FLOW_COUNT, &flows.to_le_bytes());
    while h.len() % 4 != 0 {
        h.push(0);
    }
    let len = h.len() as u32;
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h
}

fn v4(a: Option<IpAddr>) -> u32 {
    match a {
        Some(IpAddr::V4(a)) => u32::from(a),
        _ => 0,
    }
}

/// The 64-byte v5 record; times relative to an exporter booted at `boot_ms`.
fn v5_record(r: &Record, boot_ms: i64) -> anyhow::Result<[u8; 64]> {
    let rel = |t: i64| {
        u32::try_from(t - boot_ms).with_context(|| format!("time {t} out of a v5 uptime's range"))
    };
    let export_ms = r.etime() + EXPORT_DELAY_MS;
    let mut b = [0u8; 64];
    let mut put = |at: usize, v: &[u8]| b[at..at + v.len()].copy_from_slice(v);
    put(0, &((export_ms / 1000) as u32).to_le_bytes());
    put(4, &(((export_ms % 1000) * 1_000_000) as u32).to_le_bytes());
    put(8, &rel(export_ms)?.to_le_bytes());
    put(12, &v4(r.exporter()).to_le_bytes());
    put(16, &v4(r.srcip()).to_le_bytes());
    put(20, &v4(r.dstip()).to_le_bytes());
    put(24, &v4(r.nexthop()).to_le_bytes());
    put(28, &(r.input().unwrap_or(0) as u16).to_le_bytes());
    put(30, &(r.output().unwrap_or(0) as u16).to_le_bytes());
    put(32, &(r.packets().unwrap_or(0) as u32).to_le_bytes());
    put(36, &(r.bytes().unwrap_or(0) as u32).to_le_bytes());
    put(40, &rel(r.stime())?.to_le_bytes());
    put(44, &rel(r.etime())?.to_le_bytes());
    put(48, &r.srcport().unwrap_or(0).to_le_bytes());
    put(50, &r.dstport().unwrap_or(0).to_le_bytes());
    put(
        52,
        &[
            r.prot().unwrap_or(0),
            r.tos().unwrap_or(0),
            r.tcp_flags().unwrap_or(0) as u8,
            0,
            0,
            0,
            r.src_mask().unwrap_or(0),
            r.dst_mask().unwrap_or(0),
        ],
    );
    put(60, &(r.src_as().unwrap_or(0) as u16).to_le_bytes());
    put(62, &(r.dst_as().unwrap_or(0) as u16).to_le_bytes());
    Ok(b)
}

/// Write `records` (IPv4, in export order) as a compressed flow-tools file,
/// through a temporary name so that a file under `path` is always whole.
pub fn write(path: &Path, records: &[Record]) -> anyhow::Result<()> {
    let (Some(first), Some(last)) = (
        records.iter().map(|r| r.stime()).min(),
        records.iter().map(|r| r.etime()).max(),
    ) else {
        bail!("no records to write to {}", path.display());
    };
    // One exporter, booted an hour before the first flow.
    let boot_ms = first - 3_600_000;
    let tmp = path.with_extension("part");
    let file = std::fs::File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    out.write_all(&header(
        (first / 1000) as u32,
        ((last + EXPORT_DELAY_MS) / 1000) as u32,
        u32::try_from(records.len()).context("too many records for FLOW_COUNT")?,
    ))?;
    let mut z = ZlibEncoder::new(out, Compression::default());
    for r in records {
        z.write_all(&v5_record(r, boot_ms)?)?;
    }
    z.finish()?.flush()?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))?;
    Ok(())
}

/// flow-tools' rotation name for a file whose capture starts at `ms`:
/// `ft-v05.YYYY-MM-DD.HHMMSS+0000`, which `--input DIR` orders by.
pub fn rotation_name(ms: i64) -> anyhow::Result<String> {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))?;
    Ok(format!(
        "ft-v05.{:04}-{:02}-{:02}.{:02}{:02}{:02}+0000",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    ))
}
