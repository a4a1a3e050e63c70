//! Byte builders for hand-made export datagrams (shared by the decode tests).
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};

use flowy::collect::{Decoder, DecoderConfig, TemplateScope};
use flowy::record::Record;

pub fn be16(v: u16) -> [u8; 2] {
    v.to_be_bytes()
}
pub fn be32(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

pub struct V5Flow {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub prot: u8,
    pub pkts: u32,
    pub octets: u32,
    pub first: u32,
    pub last: u32,
}

pub fn v5(
    uptime: u32,
    secs: u32,
    nsecs: u32,
    seq: u32,
    sampling: u16,
    flows: &[V5Flow],
) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(be16(5));
    b.extend(be16(flows.len() as u16));
    b.extend(be32(uptime));
    b.extend(be32(secs));
    b.extend(be32(nsecs));
    b.extend(be32(seq));
    b.extend([0, 0]);
    b.extend(be16(sampling));
    for f in flows {
        b.extend(f.src.octets());
        b.extend(f.dst.octets());
        b.extend([10, 0, 0, 254]);
        b.extend(be16(3));
        b.extend(be16(4));
        b.extend(be32(f.pkts));
        b.extend(be32(f.octets));
        b.extend(be32(f.first));
        b.extend(be32(f.last));
        b.extend(be16(f.sport));
        b.extend(be16(f.dport));
        b.extend([0, 0x1b, f.prot, 0]);
        b.extend(be16(65001));
        b.extend(be16(65002));
        b.extend([24, 16, 0, 0]);
    }
    b
}

/// A set (v9 flowset or IPFIX set): id, length, body padded to 4 bytes.
pub fn set(id: u16, body: &[u8]) -> Vec<u8> {
    let mut body = body.to_vec();
    while !body.len().is_multiple_of(4) {
        body.push(0);
    }
    let mut b = Vec::new();
    b.extend(be16(id));
    b.extend(be16((body.len() + 4) as u16));
    b.extend(body);
    b
}

/// Template record: id, field count, (type, length) pairs.
pub fn template(id: u16, fields: &[(u16, u16)]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(be16(id));
    b.extend(be16(fields.len() as u16));
    for (t, l) in fields {
        b.extend(be16(*t));
        b.extend(be16(*l));
    }
    b
}

pub fn v9(
    uptime: u32,
    secs: u32,
    seq: u32,
    source_id: u32,
    count: u16,
    sets: &[Vec<u8>],
) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(be16(9));
    b.extend(be16(count));
    b.extend(be32(uptime));
    b.extend(be32(secs));
    b.extend(be32(seq));
    b.extend(be32(source_id));
    for s in sets {
        b.extend(s);
    }
    b
}

pub fn ipfix(export: u32, seq: u32, domain: u32, sets: &[Vec<u8>]) -> Vec<u8> {
    let len: usize = 16 + sets.iter().map(Vec::len).sum::<usize>();
    let mut b = Vec::new();
    b.extend(be16(10));
    b.extend(be16(len as u16));
    b.extend(be32(export));
    b.extend(be32(seq));
    b.extend(be32(domain));
    for s in sets {
        b.extend(s);
    }
    b
}

pub fn cfg(scope: TemplateScope) -> DecoderConfig {
    DecoderConfig {
        template_scope: scope,
        ..DecoderConfig::default()
    }
}

pub fn from(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 9)))
}

pub fn decode(d: &mut Decoder, dg: &[u8], src: &str) -> Vec<Record> {
    let mut out = Vec::new();
    d.decode(dg, from(src), 0, &mut out);
    out
}

/// NTP timestamp for epoch ms.
pub fn ntp(ms: u64) -> u64 {
    let secs = ms / 1000 + 2_208_988_800;
    let frac = ((ms % 1000) << 32) / 1000;
    (secs << 32) | (frac + 1)
}
