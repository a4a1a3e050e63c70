mod decode_support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use decode_support::*;
use flowy::collect::{Decoder, TemplateScope};

/// Template 256: src/dst v4, ports, proto, bytes, pkts, FIRST/LAST_SWITCHED.
fn tpl256() -> Vec<u8> {
    set(
        0,
        &template(
            256,
            &[
                (8, 4),
                (12, 4),
                (7, 2),
                (11, 2),
                (4, 1),
                (1, 4),
                (2, 4),
                (22, 4),
                (21, 4),
            ],
        ),
    )
}

fn data256(first: u32, last: u32, bytes: u32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend([10, 0, 0, 1, 10, 0, 0, 2]);
    b.extend(be16(1234));
    b.extend(be16(53));
    b.push(17);
    b.extend(be32(bytes));
    b.extend(be32(3));
    b.extend(be32(first));
    b.extend(be32(last));
    set(256, &b)
}

#[test]
fn v9_template_and_data_with_times() {
    let mut d = Decoder::new(cfg(TemplateScope::Address));
    let dg = v9(
        100_000,
        1_700_000_000,
        0,
        1,
        2,
        &[tpl256(), data256(40_000, 99_000, 500)],
    );
    let recs = decode(&mut d, &dg, "192.0.2.9:3000");
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!(r.stime(), 1_700_000_000_000 - 60_000);
    assert_eq!(r.etime(), 1_700_000_000_000 - 1_000);
    assert_eq!(r.srcip(), Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
    assert_eq!(
        (r.srcport(), r.dstport(), r.prot()),
        (Some(1234), Some(53), Some(17))
    );
    assert_eq!((r.bytes(), r.packets()), (Some(500), Some(3)));
    // Cached template: data alone decodes.
    let again = decode(
        &mut d,
        &v9(100_500, 1_700_000_000, 1, 1, 1, &[data256(1, 2, 7)]),
        "192.0.2.9:3000",
    );
    assert_eq!(again.len(), 1);
    assert_eq!(d.stats().sequence_gaps.len(), 0);
    assert!(d.stats().template_cache_size >= 1);
}

#[test]
fn v9_uptime_wrap() {
    let mut d = Decoder::new(cfg(TemplateScope::Address));
    let dg = v9(
        2_000,
        1_800_000_000,
        0,
        1,
        2,
        &[tpl256(), data256(u32::MAX - 999, 1_000, 1)],
    );
    let r = &decode(&mut d, &dg, "192.0.2.9:3000")[0];
    assert_eq!(r.stime(), 1_800_000_000_000 - 3_000);
    assert_eq!(r.etime(), 1_800_000_000_000 - 1_000);
}

#[test]
fn v9_ipv6_and_icmp() {
    let mut d = Decoder::new(cfg(TemplateScope::Address));
    let t = set(
        0,
        &template(300, &[(27, 16), (28, 16), (4, 1), (32, 2), (1, 8), (2, 8)]),
    );
    let mut b = Vec::new();
    b.extend(Ipv6Addr::LOCALHOST.octets());
    b.extend(
        "2001:db8::1"
            .parse::<Ipv6Addr>()
            .map(|a| a.octets())
            .unwrap_or_default(),
    );
    b.push(58);
    b.extend([128, 0]);
    b.extend(100u64.to_be_bytes());
    b.extend(1u64.to_be_bytes());
    let r = &decode(
        &mut d,
        &v9(10, 20, 0, 0, 2, &[t, set(300, &b)]),
        "[2001:db8::9]:2055",
    )[0];
    assert_eq!(r.srcip(), Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    assert_eq!((r.srcport(), r.dstport()), (Some(0), Some(128 * 256)));
    assert_eq!(r.bytes(), Some(100));
}

#[test]
fn v9_options_template_sets_sampling_not_records() {
    let mut d = Decoder::new(flowy::collect::DecoderConfig {
        apply_sampling: true,
        ..cfg(TemplateScope::Address)
    });
    // Options template 400: scope System(1)/4 bytes; option SAMPLING_INTERVAL(34)/4.
    let mut ot = Vec::new();
    ot.extend(be16(400));
    ot.extend(be16(4));
    ot.extend(be16(4));
    ot.extend([0, 1, 0, 4, 0, 34, 0, 4]);
    let mut od = Vec::new();
    od.extend(be32(0));
    od.extend(be32(10));
    let dg = v9(
        100_000,
        1_700_000_000,
        0,
        1,
        2,
        &[set(1, &ot), set(400, &od)],
    );
    assert!(decode(&mut d, &dg, "192.0.2.9:3000").is_empty());
    assert_eq!(d.stats().options_records, 1);
    let dg = v9(
        100_000,
        1_700_000_000,
        1,
        1,
        2,
        &[tpl256(), data256(1, 2, 50)],
    );
    let r = &decode(&mut d, &dg, "192.0.2.9:3000")[0];
    assert_eq!(
        (r.bytes(), r.packets(), r.sampling()),
        (Some(500), Some(30), Some(10))
    );
}

#[test]
fn v9_data_before_template_is_held_then_decoded() {
    let mut d = Decoder::new(cfg(TemplateScope::Address));
    let early = v9(
        100_000,
        1_700_000_000,
        0,
        1,
        1,
        &[data256(40_000, 99_000, 77)],
    );
    assert!(decode(&mut d, &early, "192.0.2.9:3000").is_empty());
    assert_eq!(d.stats().errors.no_template, 1);
    assert_eq!(d.stats().pending_held, 1);
    // The template comes 5 s later; uptime and wall clock advanced together.
    let tpl = v9(105_000, 1_700_000_005, 1, 1, 1, &[tpl256()]);
    let recs = decode(&mut d, &tpl, "192.0.2.9:3000");
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].bytes(), Some(77));
    assert_eq!(recs[0].stime(), 1_700_000_000_000 - 60_000);
    assert_eq!(d.stats().pending_replayed, 1);
}

#[test]
fn v9_same_template_id_from_two_exporters() {
    for scope in [TemplateScope::Address, TemplateScope::AddressPort] {
        let mut d = Decoder::new(cfg(scope));
        // Exporter B uses id 256 for a different layout (just ports).
        let tb = set(0, &template(256, &[(7, 2), (11, 2)]));
        let mut db = Vec::new();
        db.extend(be16(1));
        db.extend(be16(2));
        decode(&mut d, &v9(1, 1, 0, 0, 1, &[tpl256()]), "192.0.2.1:5000");
        decode(&mut d, &v9(1, 1, 0, 0, 1, &[tb]), "192.0.2.2:5000");
        let a = decode(
            &mut d,
            &v9(1, 1, 1, 0, 1, &[data256(1, 1, 9)]),
            "192.0.2.1:5000",
        );
        let b = decode(
            &mut d,
            &v9(1, 1, 1, 0, 1, &[set(256, &db)]),
            "192.0.2.2:5000",
        );
        assert_eq!(a[0].bytes(), Some(9));
        assert_eq!(
            (b[0].srcport(), b[0].dstport(), b[0].bytes()),
            (Some(1), Some(2), None)
        );
        // Same address, other port: shares templates only under Address scope.
        let c = decode(
            &mut d,
            &v9(1, 1, 2, 0, 1, &[data256(1, 1, 9)]),
            "192.0.2.1:5001",
        );
        assert_eq!(c.len(), usize::from(scope == TemplateScope::Address));
    }
}

#[test]
fn v9_sequence_counts_packets() {
    let mut d = Decoder::new(cfg(TemplateScope::Address));
    decode(&mut d, &v9(1, 1, 10, 0, 1, &[tpl256()]), "192.0.2.1:5000");
    decode(
        &mut d,
        &v9(1, 1, 11, 0, 1, &[data256(1, 1, 9)]),
        "192.0.2.1:5000",
    );
    decode(
        &mut d,
        &v9(1, 1, 15, 0, 1, &[data256(1, 1, 9)]),
        "192.0.2.1:5000",
    );
    let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(d.stats().sequence_gaps.get(&ip), Some(&3));
}

#[test]
fn v9_data_set_before_template_set_in_one_packet() {
    let mut d = Decoder::new(cfg(TemplateScope::Address));
    let dg = v9(
        100_000,
        1_700_000_000,
        0,
        1,
        2,
        &[data256(40_000, 99_000, 5), tpl256()],
    );
    let recs = decode(&mut d, &dg, "192.0.2.9:3000");
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].bytes(), Some(5));
    assert_eq!(d.stats().pending_replayed, 1);
}

#[test]
fn v9_absolute_millisecond_times_and_extras() {
    let mut d = Decoder::new(cfg(TemplateScope::Address));
    // flowStart/EndMilliseconds (152/153), vlanId (58), an unknown type 4000.
    let t = set(
        0,
        &template(260, &[(8, 4), (152, 8), (153, 8), (58, 2), (4000, 3)]),
    );
    let mut b = vec![10, 0, 0, 9];
    b.extend(1_699_999_000_123u64.to_be_bytes());
    b.extend(1_699_999_001_456u64.to_be_bytes());
    b.extend(be16(12));
    b.extend([1, 2, 3]);
    let recs = decode(
        &mut d,
        &v9(5, 1_700_000_000, 0, 0, 2, &[t, set(260, &b)]),
        "192.0.2.9:1",
    );
    assert_eq!(recs.len(), 1);
    assert_eq!(
        (recs[0].stime(), recs[0].etime()),
        (1_699_999_000_123, 1_699_999_001_456)
    );
    assert_eq!(recs[0].extra(), vec![(58, flowy::value::Value::Uint(12))]);
}
