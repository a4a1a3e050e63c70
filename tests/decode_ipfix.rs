mod decode_support;

use std::net::{IpAddr, Ipv4Addr};

use decode_support::*;
use flowy::collect::{Decoder, TemplateScope};
use flowy::value::Value;

const EXPORT: u32 = 1_700_000_000;
const SRC: &str = "198.51.100.1:4739";

/// Template `id` with the 5-tuple, counters and the given time elements.
fn tpl(id: u16, times: &[(u16, u16)]) -> Vec<u8> {
    let mut f = vec![
        (8, 4),
        (12, 4),
        (7, 2),
        (11, 2),
        (4, 1),
        (6, 2),
        (1, 8),
        (2, 8),
    ];
    f.extend_from_slice(times);
    set(2, &template(id, &f))
}

fn base() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend([10, 1, 1, 1, 10, 2, 2, 2]);
    b.extend(be16(443));
    b.extend(be16(50000));
    b.push(6);
    b.extend(be16(0x0112));
    b.extend(1500u64.to_be_bytes());
    b.extend(3u64.to_be_bytes());
    b
}

/// Options template set 500 (scope observationDomainId(149)/4,
/// samplingPacketInterval(305)/4) and one options record body for domain 1.
fn sampling_options(interval: u32) -> (Vec<u8>, Vec<u8>) {
    let mut ot = Vec::new();
    ot.extend(be16(500));
    ot.extend(be16(2));
    ot.extend(be16(1));
    ot.extend([0, 149, 0, 4, 1, 49, 0, 4]);
    let mut od = be32(1).to_vec();
    od.extend(be32(interval));
    (ot, od)
}

fn one(d: &mut Decoder, sets: &[Vec<u8>]) -> flowy::record::Record {
    let recs = decode(d, &ipfix(EXPORT, 0, 1, sets), SRC);
    assert_eq!(recs.len(), 1, "{:?}", d.stats());
    recs.into_iter().next().unwrap_or_default()
}

#[test]
fn ipfix_milliseconds() {
    let mut d = Decoder::new(cfg(TemplateScope::Address));
    let mut b = base();
    b.extend(1_699_999_990_123u64.to_be_bytes());
    b.extend(1_699_999_995_456u64.to_be_bytes());
    let r = one(&mut d, &[tpl(256, &[(152, 8), (153, 8)]), set(256, &b)]);
    assert_eq!(
        (r.stime(), r.etime()),
        (1_699_999_990_123, 1_699_999_995_456)
    );
    assert_eq!(r.tcp_flags(), Some(0x0112));
    assert_eq!((r.bytes(), r.packets()), (Some(1500), Some(3)));
    assert_eq!(r.srcip(), Some(IpAddr::V4(Ipv4Addr::new(10, 1, 1, 1))));
    assert_eq!(
        r.exporter(),
        Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)))
    );
}

#[test]
fn ipfix_seconds_and_duration() {
    let mut d = Decoder::new(cfg(TemplateScope::Address));
    let mut b = base();
    b.extend(be32(1_699_999_000));
    b.extend(be32(2_500));
    let r = one(&mut d, &[tpl(256, &[(150, 4), (161, 4)]), set(256, &b)]);
    assert_eq!(
        (r.stime(), r.etime()),
        (1_699_999_000_000, 1_699_999_002_500)
    );
}

#[test]
fn ipfix_ntp_micro_and_nanoseconds() {
    let mut d = Decoder::new(cfg(TemplateScope::Address));
    let mut b = base();
    b.extend(ntp(1_699_999_990_250).to_be_bytes());
    b.extend(ntp(1_699_999_991_750).to_be_bytes());
    let r = one(&mut d, &[tpl(256, &[(154, 8), (157, 8)]), set(256, &b)]);
    assert_eq!(
        (r.stime(), r.etime()),
        (1_699_999_990_250, 1_699_999_991_750)
    );
}

#[test]
fn ipfix_delta_microseconds() {
    let mut d = Decoder::new(cfg(TemplateScope::Address));
    let mut b = base();
    b.extend(be32(5_000_000));
    b.extend(be32(1_500_000));
    let r = one(&mut d, &[tpl(256, &[(158, 4), (159, 4)]), set(256, &b)]);
    let export_ms = i64::from(EXPORT) * 1000;
    assert_eq!(
        (r.stime(), r.etime()),
        (export_ms - 5_000, export_ms - 1_500)
    );
}

#[test]
fn ipfix_sysuptime_with_system_init() {
    let mut d = Decoder::new(cfg(TemplateScope::Address));
    let mut b = base();
    b.extend(1_600_000_000_000u64.to_be_bytes());
    b.extend(be32(10_000));
    b.extend(be32(12_000));
    let r = one(
        &mut d,
        &[tpl(256, &[(160, 8), (22, 4), (21, 4)]), set(256, &b)],
    );
    assert_eq!(
        (r.stime(), r.etime()),
        (1_600_000_010_000, 1_600_000_012_000)
    );
}

#[test]
fn ipfix_end_and_duration_gives_start() {
    let mut d = Decoder::new(cfg(TemplateScope::Address));
    let mut b = base();
    b.extend(1_699_999_999_000u64.to_be_bytes());
    b.extend(be32(4_000));
    let r = one(&mut d, &[tpl(256, &[(153, 8), (161, 4)]), set(256, &b)]);
    assert_eq!(
        (r.stime(), r.etime()),
        (1_699_999_995_000, 1_699_999_999_000)
    );
}

#[test]
fn ipfix_missing_times_use_export_time() {
    let mut d = Decoder::new(cfg(TemplateScope::Address));
    let r = one(&mut d, &[tpl(256, &[]), set(256, &base())]);
    assert_eq!(
        (r.stime(), r.etime()),
        (i64::from(EXPORT) * 1000, i64::from(EXPORT) * 1000)
    );
}

#[test]
fn ipfix_variable_length_and_enterprise_fields() {
    let mut d = Decoder::new(cfg(TemplateScope::Address));
    // interfaceName (82) variable length; enterprise 9999 field 1 (4 bytes); vlanId.
    let mut t = Vec::new();
    t.extend(be16(300));
    t.extend(be16(4));
    t.extend([0, 8, 0, 4]);
    t.extend([0, 82, 0xff, 0xff]);
    t.extend([0x80, 1, 0, 4]);
    t.extend(be32(9999));
    t.extend([0, 58, 0, 2]);
    let mut b = vec![192, 0, 2, 1];
    b.push(4);
    b.extend(b"eth0");
    b.extend(be32(77));
    b.extend(be16(42));
    let r = one(&mut d, &[set(2, &t), set(300, &b)]);
    assert_eq!(r.srcip(), Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))));
    assert!(
        r.extra().contains(&(82, Value::Text("eth0".into()))),
        "{:?}",
        r.extra()
    );
    assert!(r.extra().contains(&(58, Value::Uint(42))));
}

#[test]
fn ipfix_template_withdrawal() {
    let mut d = Decoder::new(cfg(TemplateScope::Address));
    one(&mut d, &[tpl(256, &[]), set(256, &base())]);
    // Withdraw template 256: id + zero field count.
    let w = set(2, &[1, 0, 0, 0]);
    decode(&mut d, &ipfix(EXPORT, 1, 1, &[w]), SRC);
    let after = decode(&mut d, &ipfix(EXPORT, 1, 1, &[set(256, &base())]), SRC);
    assert!(after.is_empty());
}

#[test]
fn ipfix_data_before_template() {
    let mut d = Decoder::new(cfg(TemplateScope::Address));
    let mut b = base();
    b.extend(1_699_999_990_000u64.to_be_bytes());
    assert!(decode(&mut d, &ipfix(EXPORT, 0, 1, &[set(256, &b)]), SRC).is_empty());
    assert_eq!(d.stats().pending_held, 1);
    let recs = decode(&mut d, &ipfix(EXPORT, 1, 1, &[tpl(256, &[(152, 8)])]), SRC);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].stime(), 1_699_999_990_000);
}

#[test]
fn ipfix_sequence_counts_records() {
    let mut d = Decoder::new(cfg(TemplateScope::Address));
    let mut two = base();
    two.extend(base());
    decode(
        &mut d,
        &ipfix(EXPORT, 100, 1, &[tpl(256, &[]), set(256, &two)]),
        SRC,
    );
    decode(&mut d, &ipfix(EXPORT, 102, 1, &[set(256, &two)]), SRC);
    decode(&mut d, &ipfix(EXPORT, 110, 1, &[set(256, &two)]), SRC);
    let ip = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
    assert_eq!(d.stats().sequence_gaps.get(&ip), Some(&6));
}

/// RFC 7011 §3.1: the sequence number counts all Data Records, and Options
/// Data Records are Data Records (§2). An exporter that mixes options into
/// its messages, as many do with their sampling and interface tables, has
/// no gap; one data record lost still shows as one. Both the fast path
/// (data sets of known templates only) and netflow_parser's path count them.
#[test]
fn ipfix_sequence_counts_options_records_too() {
    let mut d = Decoder::new(cfg(TemplateScope::Address));
    let (ot, od) = sampling_options(1);
    let mut two = base();
    two.extend(base());
    // seq 100: 2 flow + 1 options records (templates in the message: slow path).
    decode(
        &mut d,
        &ipfix(
            EXPORT,
            100,
            1,
            &[set(3, &ot), tpl(256, &[]), set(500, &od), set(256, &two)],
        ),
        SRC,
    );
    // seq 103: 1 options + 2 flow records (known templates: fast path).
    decode(
        &mut d,
        &ipfix(EXPORT, 103, 1, &[set(500, &od), set(256, &two)]),
        SRC,
    );
    // seq 106: 2 flow records; then one record is missing before seq 109.
    decode(&mut d, &ipfix(EXPORT, 106, 1, &[set(256, &two)]), SRC);
    decode(&mut d, &ipfix(EXPORT, 109, 1, &[set(256, &two)]), SRC);
    let ip = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
    assert_eq!(d.stats().options_records, 2);
    assert_eq!(
        d.stats().sequence_gaps.get(&ip),
        Some(&1),
        "{:?}",
        d.stats()
    );
}

#[test]
fn ipfix_options_sampling() {
    let mut d = Decoder::new(flowy::collect::DecoderConfig {
        apply_sampling: true,
        ..cfg(TemplateScope::Address)
    });
    let (ot, od) = sampling_options(4);
    decode(
        &mut d,
        &ipfix(EXPORT, 0, 1, &[set(3, &ot), set(500, &od)]),
        SRC,
    );
    assert_eq!(d.stats().options_records, 1);
    let r = one(&mut d, &[tpl(256, &[]), set(256, &base())]);
    assert_eq!(
        (r.bytes(), r.packets(), r.sampling()),
        (Some(6000), Some(12), Some(4))
    );
}

#[test]
fn ipfix_two_messages_in_one_datagram() {
    let mut d = Decoder::new(cfg(TemplateScope::Address));
    let mut dg = ipfix(EXPORT, 0, 1, &[tpl(256, &[]), set(256, &base())]);
    dg.extend(ipfix(EXPORT, 1, 1, &[set(256, &base())]));
    assert_eq!(decode(&mut d, &dg, SRC).len(), 2);
    assert_eq!(d.stats().datagrams, 1);
    assert_eq!(d.stats().errors.total(), 0);
}
