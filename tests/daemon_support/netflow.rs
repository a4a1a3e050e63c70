//! Hand-built NetFlow v5 and v9 datagrams.

use std::net::Ipv4Addr;

/// One flow, with absolute times in ms since the epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct Flow {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub prot: u8,
    pub bytes: u32,
    pub packets: u32,
    pub stime: i64,
    pub etime: i64,
    pub tcp_flags: u8,
}

impl Flow {
    pub fn tcp(
        src: &str,
        sport: u16,
        dst: &str,
        dport: u16,
        bytes: u32,
        stime: i64,
        etime: i64,
    ) -> Flow {
        Flow {
            src: src.parse().expect("literal address"),
            dst: dst.parse().expect("literal address"),
            sport,
            dport,
            prot: 6,
            bytes,
            packets: bytes / 500 + 1,
            stime,
            etime,
            tcp_flags: 0x1b,
        }
    }
}

/// Exporter uptime at export: large enough that every test flow starts
/// after boot (FIRST/LAST are uptime offsets).
const UPTIME_MS: i64 = 1_000_000_000;

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn uptime_offset(export_ms: i64, t: i64) -> u32 {
    (t - (export_ms - UPTIME_MS)) as u32
}

/// A v5 datagram exported at `export_ms` (at most 30 flows).
pub fn v5(export_ms: i64, seq: u32, flows: &[Flow]) -> Vec<u8> {
    let mut d = Vec::with_capacity(24 + 48 * flows.len());
    d.extend_from_slice(&5u16.to_be_bytes());
    d.extend_from_slice(&(flows.len() as u16).to_be_bytes());
    d.extend_from_slice(&(UPTIME_MS as u32).to_be_bytes());
    d.extend_from_slice(&((export_ms / 1000) as u32).to_be_bytes());
    d.extend_from_slice(&(((export_ms % 1000) * 1_000_000) as u32).to_be_bytes());
    d.extend_from_slice(&seq.to_be_bytes());
    d.extend_from_slice(&[0, 0, 0, 0]);
    for f in flows {
        d.extend_from_slice(&f.src.octets());
        d.extend_from_slice(&f.dst.octets());
        d.extend_from_slice(&[0, 0, 0, 0]); // nexthop
        d.extend_from_slice(&1u16.to_be_bytes()); // input
        d.extend_from_slice(&2u16.to_be_bytes()); // output
        d.extend_from_slice(&f.packets.to_be_bytes());
        d.extend_from_slice(&f.bytes.to_be_bytes());
        d.extend_from_slice(&uptime_offset(export_ms, f.stime).to_be_bytes());
        d.extend_from_slice(&uptime_offset(export_ms, f.etime).to_be_bytes());
        d.extend_from_slice(&f.sport.to_be_bytes());
        d.extend_from_slice(&f.dport.to_be_bytes());
        d.extend_from_slice(&[0, f.tcp_flags, f.prot, 0]);
        d.extend_from_slice(&[0, 0, 0, 0]); // src_as, dst_as
        d.extend_from_slice(&[24, 24, 0, 0]); // masks, pad
    }
    d
}

/// v9 template 256: the fields `v9_data` writes, in order.
pub const V9_FIELDS: &[(u16, u16)] = &[
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
];

/// A v9 template flowset (set id 0) with one template.
pub fn v9_template_set(template_id: u16, fields: &[(u16, u16)]) -> Vec<u8> {
    let len = 4 + 4 + 4 * fields.len();
    let mut s = Vec::with_capacity(len);
    s.extend_from_slice(&0u16.to_be_bytes());
    s.extend_from_slice(&(len.min(u16::MAX as usize) as u16).to_be_bytes());
    s.extend_from_slice(&template_id.to_be_bytes());
    s.extend_from_slice(&(fields.len().min(u16::MAX as usize) as u16).to_be_bytes());
    for (ty, l) in fields {
        s.extend_from_slice(&ty.to_be_bytes());
        s.extend_from_slice(&l.to_be_bytes());
    }
    s
}

/// A v9 data flowset for template 256 (`V9_FIELDS`).
pub fn v9_data_set(export_ms: i64, flows: &[Flow]) -> Vec<u8> {
    // The v9 header carries whole seconds only: offsets must be relative
    // to the time the collector will reconstruct.
    let export_ms = export_ms - export_ms.rem_euclid(1000);
    let mut body = Vec::new();
    for f in flows {
        body.extend_from_slice(&f.src.octets());
        body.extend_from_slice(&f.dst.octets());
        body.extend_from_slice(&f.sport.to_be_bytes());
        body.extend_from_slice(&f.dport.to_be_bytes());
        body.push(f.prot);
        body.push(f.tcp_flags);
        body.extend_from_slice(&f.bytes.to_be_bytes());
        body.extend_from_slice(&f.packets.to_be_bytes());
        body.extend_from_slice(&uptime_offset(export_ms, f.stime).to_be_bytes());
        body.extend_from_slice(&uptime_offset(export_ms, f.etime).to_be_bytes());
    }
    while body.len() % 4 != 0 {
        body.push(0);
    }
    let mut s = Vec::with_capacity(4 + body.len());
    s.extend_from_slice(&256u16.to_be_bytes());
    s.extend_from_slice(&((4 + body.len()) as u16).to_be_bytes());
    s.extend_from_slice(&body);
    s
}

/// A v9 datagram from raw flowsets; `count` is the header's record count.
pub fn v9(export_ms: i64, seq: u32, source_id: u32, count: u16, sets: &[Vec<u8>]) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(&9u16.to_be_bytes());
    d.extend_from_slice(&count.to_be_bytes());
    d.extend_from_slice(&(UPTIME_MS as u32).to_be_bytes());
    d.extend_from_slice(&((export_ms / 1000) as u32).to_be_bytes());
    d.extend_from_slice(&seq.to_be_bytes());
    d.extend_from_slice(&source_id.to_be_bytes());
    for s in sets {
        d.extend_from_slice(s);
    }
    d
}

/// A v9 datagram carrying the template and the flows.
pub fn v9_with_template(export_ms: i64, seq: u32, flows: &[Flow]) -> Vec<u8> {
    let sets = [
        v9_template_set(256, V9_FIELDS),
        v9_data_set(export_ms, flows),
    ];
    v9(export_ms, seq, 1, 1 + flows.len() as u16, &sets)
}

/// An HTTP download as the example query expects it: the client's request
/// flow and the server's larger response flow, overlapping (`B oi A`).
pub fn http_session(client: &str, cport: u16, server: &str, t0: i64) -> [Flow; 2] {
    [
        Flow::tcp(client, cport, server, 80, 612, t0, t0 + 2_000),
        Flow::tcp(server, 80, client, cport, 18_340, t0 + 100, t0 + 2_500),
    ]
}
