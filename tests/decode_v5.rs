mod decode_support;

use std::net::{IpAddr, Ipv4Addr};

use decode_support::*;
use flowy::collect::{Decoder, DecoderConfig, TemplateScope};

fn flow(first: u32, last: u32) -> V5Flow {
    V5Flow {
        src: Ipv4Addr::new(10, 0, 0, 1),
        dst: Ipv4Addr::new(192, 0, 2, 7),
        sport: 40000,
        dport: 80,
        prot: 6,
        pkts: 5,
        octets: 612,
        first,
        last,
    }
}

#[test]
fn v5_fields_and_times() {
    let mut d = Decoder::new(cfg(TemplateScope::Address));
    // export 1_700_000_000.250 s, uptime 100 s; First 40 s, Last 99 s.
    let dg = v5(
        100_000,
        1_700_000_000,
        250_000_000,
        0,
        0,
        &[flow(40_000, 99_000)],
    );
    let recs = decode(&mut d, &dg, "192.0.2.1:2055");
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!(r.stime(), 1_699_999_940_250);
    assert_eq!(r.etime(), 1_699_999_999_250);
    assert_eq!(r.exporter(), Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))));
    assert_eq!(r.srcip(), Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
    assert_eq!(
        (r.srcport(), r.dstport(), r.prot()),
        (Some(40000), Some(80), Some(6))
    );
    assert_eq!(
        (r.bytes(), r.packets(), r.tcp_flags()),
        (Some(612), Some(5), Some(0x1b))
    );
    assert_eq!(
        (r.input(), r.output(), r.src_as(), r.dst_as()),
        (Some(3), Some(4), Some(65001), Some(65002))
    );
    assert_eq!((r.src_mask(), r.dst_mask()), (Some(24), Some(16)));
    assert_eq!(r.nexthop(), Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 254))));
    assert_eq!(r.sampling(), None);
    assert_eq!(
        d.stats()
            .records
            .get(&(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 5)),
        Some(&1)
    );
}

#[test]
fn v5_uptime_wrap() {
    let mut d = Decoder::new(cfg(TemplateScope::Address));
    // Uptime wrapped 1 s ago; the flow began 0.5 s before the wrap.
    let dg = v5(1_000, 2_000_000_000, 0, 0, 0, &[flow(u32::MAX - 499, 500)]);
    let r = &decode(&mut d, &dg, "192.0.2.1:2055")[0];
    assert_eq!(r.stime(), 2_000_000_000_000 - 1_500);
    assert_eq!(r.etime(), 2_000_000_000_000 - 500);
}

#[test]
fn v5_sampling_applied() {
    let mut d = Decoder::new(DecoderConfig {
        apply_sampling: true,
        ..DecoderConfig::default()
    });
    // Top two bits are the sampling mode; the low 14 the interval.
    let dg = v5(100_000, 1_700_000_000, 0, 0, 0x4000 | 100, &[flow(1, 2)]);
    let r = &decode(&mut d, &dg, "192.0.2.1:2055")[0];
    assert_eq!(
        (r.bytes(), r.packets(), r.sampling()),
        (Some(61_200), Some(500), Some(100))
    );
}

#[test]
fn v5_sequence_gaps_count_flows() {
    let mut d = Decoder::new(cfg(TemplateScope::Address));
    let two = [flow(1, 2), flow(1, 2)];
    decode(&mut d, &v5(100, 1, 0, 0, 0, &two), "192.0.2.1:2055");
    decode(&mut d, &v5(100, 1, 0, 2, 0, &two), "192.0.2.1:2055");
    decode(&mut d, &v5(100, 1, 0, 9, 0, &two), "192.0.2.1:2055");
    let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(d.stats().sequence_gaps.get(&ip), Some(&5));
}
