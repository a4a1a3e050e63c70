//! NetFlow v5 export datagrams for a flow list, and a pcap capture of them.

use std::net::SocketAddrV4;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use pcap_file::pcap::{PcapPacket, PcapWriter};

use super::flows::Flow;

/// Flows per v5 datagram: the protocol's maximum, what routers send under load.
pub const V5_FLOWS: usize = 30;
/// Exporters expire a flow and ship it about a second later.
const EXPORT_DELAY_MS: i64 = 1_000;

/// An export datagram and the capture time it was sent at.
pub struct Export {
    pub at_ms: i64,
    pub payload: Vec<u8>,
}

fn v5_datagram(boot_ms: i64, export_ms: i64, seq: u32, flows: &[Flow]) -> Vec<u8> {
    let uptime = |t: i64| u32::try_from(t - boot_ms).unwrap_or(0);
    let mut d = Vec::with_capacity(24 + 48 * flows.len());
    d.extend_from_slice(&5u16.to_be_bytes());
    d.extend_from_slice(&(flows.len() as u16).to_be_bytes());
    d.extend_from_slice(&uptime(export_ms).to_be_bytes());
    d.extend_from_slice(&((export_ms / 1000) as u32).to_be_bytes());
    d.extend_from_slice(&(((export_ms % 1000) * 1_000_000) as u32).to_be_bytes());
    d.extend_from_slice(&seq.to_be_bytes());
    d.extend_from_slice(&[0, 0, 0, 0]); // engine type/id, sampling
    for f in flows {
        d.extend_from_slice(&f.src.octets());
        d.extend_from_slice(&f.dst.octets());
        d.extend_from_slice(&[0, 0, 0, 0]); // nexthop
        d.extend_from_slice(&1u16.to_be_bytes()); // input ifindex
        d.extend_from_slice(&2u16.to_be_bytes()); // output ifindex
        d.extend_from_slice(&f.packets.to_be_bytes());
        d.extend_from_slice(&f.bytes.to_be_bytes());
        d.extend_from_slice(&uptime(f.stime).to_be_bytes());
        d.extend_from_slice(&uptime(f.etime).to_be_bytes());
        d.extend_from_slice(&f.sport.to_be_bytes());
        d.extend_from_slice(&f.dport.to_be_bytes());
        d.extend_from_slice(&[0, f.tcp_flags, f.prot, 0]);
        d.extend_from_slice(&[0, 0, 0, 0]); // src_as, dst_as
        d.extend_from_slice(&[24, 24, 0, 0]); // masks, pad
    }
    d
}

/// v5 datagrams of 30 flows each, in end-time order, with the flow
/// sequence number counting every flow exported before the datagram.
pub fn v5_exports(flows: &[Flow]) -> Vec<Export> {
    let boot_ms = flows.iter().map(|f| f.stime).min().unwrap_or(0) - 3_600_000;
    let mut seq: u32 = 0;
    flows
        .chunks(V5_FLOWS)
        .map(|chunk| {
            let last_end = chunk.iter().map(|f| f.etime).max().unwrap_or(boot_ms);
            let at_ms = last_end + EXPORT_DELAY_MS;
            let payload = v5_datagram(boot_ms, at_ms, seq, chunk);
            seq = seq.wrapping_add(chunk.len() as u32);
            Export { at_ms, payload }
        })
        .collect()
}

/// v9 template 256: 5-tuple, flags, counters, uptime times, interfaces.
const V9_FIELDS: [(u16, u16); 12] = [
    (8, 4),  // IPV4_SRC_ADDR
    (12, 4), // IPV4_DST_ADDR
    (7, 2),  // L4_SRC_PORT
    (11, 2), // L4_DST_PORT
    (4, 1),  // PROTOCOL
    (6, 1),  // TCP_FLAGS
    (1, 4),  // IN_BYTES
    (2, 4),  // IN_PKTS
    (22, 4), // FIRST_SWITCHED
    (21, 4), // LAST_SWITCHED
    (10, 2), // INPUT_SNMP
    (14, 2), // OUTPUT_SNMP
];
const V9_RECORD_LEN: usize = 34;
const V9_TEMPLATE_ID: u16 = 256;
/// A template-only datagram leads and then follows every this many data
/// datagrams, as exporters refresh templates periodically.
const V9_TEMPLATE_EVERY: usize = 64;

fn v9_header(count: u16, uptime: u32, export_ms: i64, seq: u32) -> Vec<u8> {
    let mut d = Vec::with_capacity(1100);
    d.extend_from_slice(&9u16.to_be_bytes());
    d.extend_from_slice(&count.to_be_bytes());
    d.extend_from_slice(&uptime.to_be_bytes());
    d.extend_from_slice(&((export_ms / 1000) as u32).to_be_bytes());
    d.extend_from_slice(&seq.to_be_bytes());
    d.extend_from_slice(&0u32.to_be_bytes()); // source id
    d
}

fn v9_template(boot_ms: i64, export_ms: i64, seq: u32) -> Vec<u8> {
    let uptime = u32::try_from(export_ms - boot_ms).unwrap_or(0);
    let mut d = v9_header(1, uptime, export_ms, seq);
    d.extend_from_slice(&0u16.to_be_bytes());
    d.extend_from_slice(&((8 + 4 * V9_FIELDS.len()) as u16).to_be_bytes());
    d.extend_from_slice(&V9_TEMPLATE_ID.to_be_bytes());
    d.extend_from_slice(&(V9_FIELDS.len() as u16).to_be_bytes());
    for (ty, len) in V9_FIELDS {
        d.extend_from_slice(&ty.to_be_bytes());
        d.extend_from_slice(&len.to_be_bytes());
    }
    d
}

fn v9_data(boot_ms: i64, export_ms: i64, seq: u32, flows: &[Flow]) -> Vec<u8> {
    let uptime = |t: i64| u32::try_from(t - boot_ms).unwrap_or(0);
    let mut d = v9_header(flows.len() as u16, uptime(export_ms), export_ms, seq);
    d.extend_from_slice(&V9_TEMPLATE_ID.to_be_bytes());
    d.extend_from_slice(&((4 + V9_RECORD_LEN * flows.len()) as u16).to_be_bytes());
    for f in flows {
        d.extend_from_slice(&f.src.octets());
        d.extend_from_slice(&f.dst.octets());
        d.extend_from_slice(&f.sport.to_be_bytes());
        d.extend_from_slice(&f.dport.to_be_bytes());
        d.extend_from_slice(&[f.prot, f.tcp_flags]);
        d.extend_from_slice(&f.bytes.to_be_bytes());
        d.extend_from_slice(&f.packets.to_be_bytes());
        d.extend_from_slice(&uptime(f.stime).to_be_bytes());
        d.extend_from_slice(&uptime(f.etime).to_be_bytes());
        d.extend_from_slice(&1u16.to_be_bytes());
        d.extend_from_slice(&2u16.to_be_bytes());
    }
    // 30 records of 34 bytes end on a 4-byte boundary; shorter tails get padded.
    while !d.len().is_multiple_of(4) {
        d.push(0);
    }
    d
}

/// NetFlow v9 datagrams of 30 flows each (plus template datagrams), the
/// package sequence counting every datagram. The header carries whole
/// seconds, so export times are whole seconds too.
pub fn v9_exports(flows: &[Flow]) -> Vec<Export> {
    let boot_ms = flows.iter().map(|f| f.stime).min().unwrap_or(0) - 3_600_000;
    let mut seq: u32 = 0;
    let mut out = Vec::with_capacity(flows.len() / V5_FLOWS + 8);
    for (i, chunk) in flows.chunks(V5_FLOWS).enumerate() {
        let last_end = chunk.iter().map(|f| f.etime).max().unwrap_or(boot_ms);
        let at = last_end + EXPORT_DELAY_MS;
        let at_ms = at - at.rem_euclid(1000) + 1000;
        if i % V9_TEMPLATE_EVERY == 0 {
            let payload = v9_template(boot_ms, at_ms, seq);
            out.push(Export { at_ms, payload });
            seq = seq.wrapping_add(1);
        }
        let payload = v9_data(boot_ms, at_ms, seq, chunk);
        out.push(Export { at_ms, payload });
        seq = seq.wrapping_add(1);
    }
    out
}

/// Ethernet + IPv4 + UDP around `payload` (UDP checksum 0: optional in v4).
fn udp_frame(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00];
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&((20 + udp_len) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0x40, 0, 64, 17, 0, 0]);
    ip.extend_from_slice(&src.ip().octets());
    ip.extend_from_slice(&dst.ip().octets());
    let sum = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&src.port().to_be_bytes());
    f.extend_from_slice(&dst.port().to_be_bytes());
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

/// Write the exports as a pcap capture from `exporter` to `collector`.
pub fn write_pcap(
    path: &Path,
    exporter: SocketAddrV4,
    collector: SocketAddrV4,
    exports: &[Export],
) -> anyhow::Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut w =
        PcapWriter::new(std::io::BufWriter::with_capacity(1 << 20, file)).context("pcap header")?;
    for e in exports {
        let frame = udp_frame(exporter, collector, &e.payload);
        let ts = Duration::from_millis(u64::try_from(e.at_ms).unwrap_or(0));
        w.write_packet(&PcapPacket::new(ts, frame.len() as u32, &frame))
            .context("write pcap packet")?;
    }
    Ok(())
}

/// Flow data records in a v5 or v9 datagram (v9: in data flowsets of the
/// bench's template; template records are not flows).
pub fn header_count(payload: &[u8]) -> u64 {
    let be16 = |at: usize| {
        payload
            .get(at..at + 2)
            .map_or(0, |c| usize::from(u16::from_be_bytes([c[0], c[1]])))
    };
    match be16(0) {
        5 => be16(2) as u64,
        9 => {
            let (mut at, mut n) = (20, 0);
            while at + 4 <= payload.len() {
                let (id, len) = (be16(at), be16(at + 2));
                if len < 4 {
                    break;
                }
                if id == usize::from(V9_TEMPLATE_ID) {
                    n += (len - 4) / V9_RECORD_LEN;
                }
                at += len;
            }
            n as u64
        }
        _ => 0,
    }
}
