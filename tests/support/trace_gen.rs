//! A synthetic flow trace with realistic HTTP downloads and background noise,
//! for the HTTP-query benchmark and the end-to-end tests.
//!
//! Each HTTP session is a client fetching from one server over port 80: a
//! chain of request flows (each starting less than a second after the
//! previous one ended) with one response flow per request, starting just
//! after it and ending after it, with more bytes. Noise is DNS, HTTPS, SSH
//! and random UDP. Records come out in flow-end order, as exporters send
//! them, and carry their index as `rec_id`.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};

use flowy::record::{Record, RecordFields};

/// Deterministic xorshift64*: the trace must be the same on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..hi` (hi exclusive, hi > lo).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

const T0: i64 = 1_795_420_800_000; // 2026-11-23T08:00:00Z
const TCP: u8 = 6;
const UDP: u8 = 17;
const FLAGS_FULL: u16 = 0x1b; // SYN ACK PSH FIN

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn client(rng: &mut Rng, clients: u64) -> IpAddr {
    let n = rng.range(0, clients);
    v4(10, (n >> 16) as u8, (n >> 8) as u8, n as u8)
}

fn server(rng: &mut Rng) -> IpAddr {
    let n = rng.range(0, 500);
    v4(
        if n < 250 { 198 } else { 203 },
        51,
        (n >> 8) as u8 + 100,
        n as u8,
    )
}

#[allow(clippy::too_many_arguments)]
fn flow(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    prot: u8,
    bytes: u64,
    stime: i64,
    etime: i64,
    flags: u16,
) -> Record {
    Record::from(RecordFields {
        exporter: Some(v4(192, 0, 2, 1)),
        srcip: Some(src),
        dstip: Some(dst),
        nexthop: Some(v4(0, 0, 0, 0)),
        srcport: Some(sport),
        dstport: Some(dport),
        prot: Some(prot),
        tcp_flags: if prot == TCP { Some(flags) } else { Some(0) },
        tos: Some(0),
        bytes: Some(bytes),
        packets: Some(bytes / 500 + 1),
        stime,
        etime,
        input: Some(1),
        output: Some(2),
        src_as: Some(0),
        dst_as: Some(0),
        src_mask: Some(0),
        dst_mask: Some(0),
        ..RecordFields::default()
    })
}

/// One HTTP session starting at `t`; appends its flows, returns how many.
fn http_session(rng: &mut Rng, t: i64, clients: u64, out: &mut Vec<Record>) -> usize {
    let (c, s) = (client(rng, clients), server(rng));
    let requests = rng.range(1, 7);
    let mut start = t;
    for _ in 0..requests {
        let port = rng.range(1024, 65535) as u16;
        let len = rng.range(20, 3_000) as i64;
        let req_bytes = rng.range(300, 1_500);
        out.push(flow(
            c,
            s,
            port,
            80,
            TCP,
            req_bytes,
            start,
            start + len,
            FLAGS_FULL,
        ));
        let res_start = start + rng.range(1, 15) as i64;
        let res_end = start + len + rng.range(1, 40) as i64;
        let res_bytes = req_bytes + rng.range(1_000, 2_000_000);
        out.push(flow(
            s, c, 80, port, TCP, res_bytes, res_start, res_end, FLAGS_FULL,
        ));
        start += len + rng.range(0, 900) as i64;
    }
    (requests * 2) as usize
}

/// One background flow (or a DNS query/answer pair) at `t`.
fn noise(rng: &mut Rng, t: i64, clients: u64, out: &mut Vec<Record>) -> usize {
    let c = client(rng, clients);
    let len = rng.range(0, 20_000) as i64;
    let port = rng.range(1024, 65535) as u16;
    match rng.range(0, 10) {
        0..=3 => {
            let dns = v4(192, 0, 2, 53);
            out.push(flow(c, dns, port, 53, UDP, 70, t, t + 2, 0));
            out.push(flow(dns, c, 53, port, UDP, 180, t + 3, t + 5, 0));
            2
        }
        4..=6 => {
            let s = server(rng);
            let b = rng.range(500, 500_000);
            out.push(flow(c, s, port, 443, TCP, b, t, t + len, FLAGS_FULL));
            1
        }
        7 => {
            let s = server(rng);
            out.push(flow(c, s, port, 22, TCP, 4_000, t, t + len, 0x18));
            1
        }
        _ => {
            let s = server(rng);
            let dport = rng.range(1, 65535) as u16;
            out.push(flow(
                c,
                s,
                port,
                dport,
                UDP,
                rng.range(40, 1_400),
                t,
                t + len,
                0,
            ));
            1
        }
    }
}

/// About `target` records (a few more at most), half of them HTTP, over
/// `span_ms` of flow time, from `clients` client addresses.
pub fn generate(target: usize, span_ms: i64, clients: u64, seed: u64) -> Vec<Record> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(target + 16);
    // ~7 HTTP records per session, ~1.4 noise records per noise event.
    let events = target as i64 * 3 / 7;
    let step = (span_ms / events.max(1)).max(1);
    let mut t = T0;
    while out.len() < target {
        t += rng.range(0, 2 * step as u64) as i64;
        if rng.range(0, 6) == 0 {
            http_session(&mut rng, t, clients, &mut out);
        } else {
            noise(&mut rng, t, clients, &mut out);
        }
    }
    out.sort_by_key(|r| r.etime());
    for (i, r) in out.iter_mut().enumerate() {
        r.set_rec_id(i as u64);
    }
    out
}

/// How far any record's `stime` lies behind the largest `stime` before it
/// (the lateness that makes a run over `recs` exact).
pub fn disorder(recs: &[Record]) -> i64 {
    let mut max = i64::MIN;
    let mut worst = 0;
    for r in recs {
        if max != i64::MIN {
            worst = worst.max(max - r.stime());
        }
        max = max.max(r.stime());
    }
    worst
}
