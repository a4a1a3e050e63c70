//! A synthetic but plausible flow mix: HTTP sessions (request and response
//! flows chained less than a second apart, as the example `http-download`
//! query expects) plus DNS, HTTPS, ICMP and random-port noise.

use std::net::Ipv4Addr;

/// One unidirectional flow, times in ms since the epoch.
#[derive(Clone, Copy, Debug)]
pub struct Flow {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub prot: u8,
    pub tcp_flags: u8,
    pub bytes: u32,
    pub packets: u32,
    pub stime: i64,
    pub etime: i64,
}

/// splitmix64: deterministic, dependency-free, good enough for traffic mixes.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` (`hi > lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo).max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.range(0, 100) < percent
    }
}

fn client(rng: &mut Rng) -> Ipv4Addr {
    Ipv4Addr::new(
        10,
        rng.range(0, 4) as u8,
        rng.range(0, 256) as u8,
        rng.range(1, 255) as u8,
    )
}

fn server(rng: &mut Rng) -> Ipv4Addr {
    let net = if rng.chance(50) { 100 } else { 113 };
    let first = if net == 100 { 198 } else { 203 };
    let second = if net == 100 { 51 } else { 0 };
    Ipv4Addr::new(first, second, net, rng.range(1, 255) as u8)
}

fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, bytes: u32, s: i64, e: i64) -> Flow {
    Flow {
        src,
        dst,
        sport,
        dport,
        prot: 6,
        tcp_flags: 0x1b,
        bytes,
        packets: bytes / 1400 + 1,
        stime: s,
        etime: e,
    }
}

/// An HTTP session starting at `t`: 1–4 request/response pairs on one
/// connection, each request starting < 1 s after the previous ended.
fn http_session(rng: &mut Rng, t: i64, out: &mut Vec<Flow>) {
    let (c, s) = (client(rng), server(rng));
    let port = rng.range(32_768, 61_000) as u16;
    let mut start = t;
    for _ in 0..rng.range(1, 5) {
        let req_end = start + rng.range(20, 800) as i64;
        out.push(tcp(
            c,
            port,
            s,
            80,
            rng.range(300, 1500) as u32,
            start,
            req_end,
        ));
        let res_start = start + rng.range(5, 30) as i64;
        let res_end = req_end - rng.range(0, 10) as i64;
        let bytes = rng.range(1_000, 500_000) as u32;
        out.push(tcp(
            s,
            80,
            c,
            port,
            bytes,
            res_start,
            res_end.max(res_start),
        ));
        start = req_end + rng.range(10, 900) as i64;
    }
}

fn noise(rng: &mut Rng, t: i64, out: &mut Vec<Flow>) {
    let (c, s) = (client(rng), server(rng));
    let sport = rng.range(1024, 65_535) as u16;
    let e = t + rng.range(0, 2_000) as i64;
    let f = match rng.range(0, 4) {
        0 => Flow {
            prot: 17,
            tcp_flags: 0,
            dport: 53,
            bytes: rng.range(60, 512) as u32,
            ..tcp(c, sport, s, 53, 0, t, t + rng.range(0, 50) as i64)
        },
        1 => tcp(c, sport, s, 443, rng.range(500, 2_000_000) as u32, t, e),
        2 => Flow {
            prot: 1,
            tcp_flags: 0,
            sport: 0,
            dport: 0x0800,
            ..tcp(c, 0, s, 0, 84, t, t)
        },
        _ => tcp(
            c,
            sport,
            s,
            rng.range(1, 65_535) as u16,
            rng.range(40, 50_000) as u32,
            t,
            e,
        ),
    };
    out.push(f);
}

/// About `n` flows whose start times spread evenly over `span_ms` from
/// `t0`, sorted by end time (the order an exporter expires them in).
/// `http_percent` of the draws start an HTTP session (2–8 flows), the rest
/// one noise flow each.
pub fn generate(n: usize, t0: i64, span_ms: i64, seed: u64, http_percent: u64) -> Vec<Flow> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        let t = t0 + (out.len() as i64 * span_ms) / n.max(1) as i64;
        if rng.chance(http_percent) {
            http_session(&mut rng, t, &mut out);
        } else {
            noise(&mut rng, t, &mut out);
        }
    }
    out.truncate(n);
    out.sort_by_key(|f| f.etime);
    out
}
