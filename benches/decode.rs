//! Datagram → record throughput of the collector's decoder (templates cached),
//! and the cost of template churn against data of the same size (SPEC §4.5
//! "Bounded work per byte": churn should cost at most 10× data per byte).
//! Run: `cargo bench --bench decode`; criterion reports elements/s = records/s
//! for the record cases and bytes/s for the `*_64k` cases.

use std::net::SocketAddr;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use flowy::collect::{Decoder, DecoderConfig};

const FROM: ([u8; 4], u16) = ([192, 0, 2, 1], 2055);

fn be16(v: u16) -> [u8; 2] {
    v.to_be_bytes()
}

fn v5(n: u16) -> Vec<u8> {
    let mut b = vec![0, 5];
    b.extend(be16(n));
    b.extend(100_000u32.to_be_bytes());
    b.extend(1_700_000_000u32.to_be_bytes());
    b.extend([0; 12]);
    for i in 0..n {
        b.extend([
            10,
            0,
            (i >> 8) as u8,
            i as u8,
            10,
            1,
            0,
            1,
            10,
            0,
            0,
            254,
            0,
            1,
            0,
            2,
        ]);
        b.extend(3u32.to_be_bytes());
        b.extend(1500u32.to_be_bytes());
        b.extend(40_000u32.to_be_bytes());
        b.extend(99_000u32.to_be_bytes());
        b.extend(be16(40_000 + i));
        b.extend(be16(443));
        b.extend([0, 0x1b, 6, 0, 0, 1, 0, 2, 24, 24, 0, 0]);
    }
    b
}

/// 5-tuple, counters, flags, interfaces, start/end: a typical template.
const FIELDS: [(u16, u16); 11] = [
    (8, 4),
    (12, 4),
    (7, 2),
    (11, 2),
    (4, 1),
    (6, 1),
    (1, 4),
    (2, 4),
    (10, 2),
    (14, 2),
    (0, 8),
];

fn record(i: u16) -> Vec<u8> {
    let mut r = vec![10, 0, (i >> 8) as u8, i as u8, 10, 1, 0, 1];
    r.extend(be16(40_000 + i));
    r.extend(be16(443));
    r.extend([6, 0x1b]);
    r.extend(1500u32.to_be_bytes());
    r.extend(3u32.to_be_bytes());
    r.extend(be16(1));
    r.extend(be16(2));
    r
}

fn set(id: u16, body: Vec<u8>) -> Vec<u8> {
    let mut s = be16(id).to_vec();
    s.extend(be16((body.len() + 4) as u16));
    s.extend(body);
    s
}

fn template_body(time: [(u16, u16); 2]) -> Vec<u8> {
    let mut t = be16(256).to_vec();
    t.extend(be16(FIELDS.len() as u16 + 1));
    for (ty, len) in FIELDS[..10].iter().chain(time.iter()) {
        t.extend(be16(*ty));
        t.extend(be16(*len));
    }
    t
}

fn v9(n: u16, with_template: bool) -> Vec<u8> {
    let mut b = vec![0, 9];
    b.extend(be16(n));
    b.extend(100_000u32.to_be_bytes());
    b.extend(1_700_000_000u32.to_be_bytes());
    b.extend([0; 8]);
    if with_template {
        b.extend(set(0, template_body([(22, 4), (21, 4)])));
    }
    let mut data = Vec::new();
    for i in 0..n {
        data.extend(record(i));
        data.extend(40_000u32.to_be_bytes());
        data.extend(99_000u32.to_be_bytes());
    }
    b.extend(set(256, data));
    b
}

fn ipfix(n: u16, with_template: bool) -> Vec<u8> {
    let mut sets = Vec::new();
    if with_template {
        sets.extend(set(2, template_body([(152, 8), (153, 8)])));
    }
    let mut data = Vec::new();
    for i in 0..n {
        data.extend(record(i));
        data.extend(1_699_999_990_000u64.to_be_bytes());
        data.extend(1_699_999_995_000u64.to_be_bytes());
    }
    sets.extend(set(256, data));
    let mut b = vec![0, 10];
    b.extend(be16((16 + sets.len()) as u16));
    b.extend(1_700_000_000u32.to_be_bytes());
    b.extend([0; 8]);
    b.extend(sets);
    b
}

fn run(c: &mut Criterion, name: &str, warm: Option<Vec<u8>>, dg: Vec<u8>, records: u64) {
    let mut d = Decoder::new(DecoderConfig::default());
    let from = SocketAddr::from(FROM);
    let mut out = Vec::with_capacity(64);
    if let Some(w) = warm {
        d.decode(&w, from, 0, &mut out);
    }
    out.clear();
    d.decode(&dg, from, 0, &mut out);
    assert_eq!(
        out.len() as u64,
        records,
        "{name}: benchmark datagram must decode"
    );
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(records));
    g.bench_function(name, |b| {
        b.iter(|| {
            out.clear();
            d.decode(black_box(&dg), from, 0, &mut out);
            black_box(out.len())
        })
    });
    g.finish();
}

/// An IPFIX message redefining templates 256..319 (63 of them), each of 256
/// one-byte fields the parser normalises (protocolIdentifier,
/// mplsTopLabelExp); the last field's type is `last`, so alternating it
/// redefines every template.
fn ipfix_churn(last: u16) -> Vec<u8> {
    let mut body = Vec::new();
    for t in 0..63u16 {
        body.extend(be16(256 + t));
        body.extend(be16(256));
        for i in 0..256u16 {
            let ty = match i {
                255 => last,
                _ if i % 2 == 0 => 4,
                _ => 203,
            };
            body.extend(be16(ty));
            body.extend(be16(1));
        }
    }
    let sets = set(2, body);
    let mut b = vec![0, 10];
    b.extend(be16((16 + sets.len()) as u16));
    b.extend(1_700_000_000u32.to_be_bytes());
    b.extend([0; 8]);
    b.extend(sets);
    b
}

/// IPFIX data for template 256 (see `ipfix`) in sets of at most 1000
/// records, about `size` bytes in all.
fn ipfix_data_sized(size: usize) -> (Vec<u8>, u64) {
    let rec = ipfix(1, false).len() - 16 - 4;
    let total = (size - 16) / rec;
    let mut sets = Vec::new();
    let mut left = total;
    while left > 0 {
        let n = left.min(1000);
        let mut data = Vec::new();
        for i in 0..n {
            data.extend(record(i as u16));
            data.extend(1_699_999_990_000u64.to_be_bytes());
            data.extend(1_699_999_995_000u64.to_be_bytes());
        }
        sets.extend(set(256, data));
        left -= n;
    }
    let mut b = vec![0, 10];
    b.extend(be16((16 + sets.len()) as u16));
    b.extend(1_700_000_000u32.to_be_bytes());
    b.extend([0; 8]);
    b.extend(sets);
    (b, total as u64)
}

/// Template churn against data of the same size, both in bytes/s.
fn churn(c: &mut Criterion) {
    let from = SocketAddr::from(FROM);
    let churn = [ipfix_churn(4), ipfix_churn(203)];
    let (data, records) = ipfix_data_sized(churn[0].len());
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Bytes(churn[0].len() as u64));
    let mut d = Decoder::new(DecoderConfig::default());
    let mut out = Vec::new();
    d.decode(&ipfix(1, true), from, 0, &mut out);
    out.clear();
    d.decode(&data, from, 0, &mut out);
    assert_eq!(out.len() as u64, records, "data datagram must decode");
    g.bench_function("ipfix_data_64k", |b| {
        b.iter(|| {
            out.clear();
            d.decode(black_box(&data), from, 0, &mut out);
            black_box(out.len())
        })
    });
    let mut d = Decoder::new(DecoderConfig::default());
    let mut turn = 0;
    g.bench_function("ipfix_template_churn_64k", |b| {
        b.iter(|| {
            turn ^= 1;
            d.decode(black_box(&churn[turn]), from, 0, &mut out);
        })
    });
    assert_eq!(d.stats().errors.total(), 0, "churn must decode");
    assert_eq!(d.stats().template_cache_size, 63);
    g.finish();
}

fn benches(c: &mut Criterion) {
    run(c, "v5_30_records", None, v5(30), 30);
    run(c, "v9_30_records", Some(v9(1, true)), v9(30, false), 30);
    run(
        c,
        "ipfix_30_records",
        Some(ipfix(1, true)),
        ipfix(30, false),
        30,
    );
    churn(c);
}

criterion_group!(decode, benches);
criterion_main!(decode);
