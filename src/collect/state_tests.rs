//! Work bounds of template churn (SPEC §4.5 "Bounded work per byte"),
//! checked by counting the parser calls the decoder makes, not by timing.

use std::net::SocketAddr;

use super::layout::TABLE_PROBES;
use super::{Decoder, DecoderConfig};

fn be16(v: u16) -> [u8; 2] {
    v.to_be_bytes()
}

/// An IPFIX message with `templates` template records of `fields` one-byte
/// fields of types `types`, cycling; the last field's type is `last`.
fn churn(templates: u16, fields: u16, types: &[u16], last: u16) -> Vec<u8> {
    let mut body = Vec::new();
    for t in 0..templates {
        body.extend(be16(256 + t));
        body.extend(be16(fields));
        for i in 0..fields {
            let ty = if i + 1 == fields {
                last
            } else {
                types[usize::from(i) % types.len()]
            };
            body.extend(be16(ty));
            body.extend(be16(1));
        }
    }
    let mut set = be16(2).to_vec();
    set.extend(be16(body.len() as u16 + 4));
    set.extend(body);
    let mut m = be16(10).to_vec();
    m.extend(be16(16 + set.len() as u16));
    m.extend(1_700_000_000u32.to_be_bytes());
    m.extend([0; 8]);
    m.extend(set);
    m
}

/// protocolIdentifier (4) and mplsTopLabelExp (203): one-byte fields the
/// parser normalises. Redefining 63 templates of 256 of them, again and
/// again, used to build a 256-entry table per field per definition
/// (4 M parser calls a datagram); now each data type's table is built once.
#[test]
fn template_churn_is_linear_in_fields() {
    let mut d = Decoder::new(DecoderConfig::default());
    let from = SocketAddr::from(([192, 0, 2, 9], 4739));
    let mut out = Vec::new();
    let start = TABLE_PROBES.with(|c| c.get());
    for round in 0..6u16 {
        let last = if round % 2 == 0 { 4 } else { 203 };
        let dg = churn(63, 256, &[4, 203], last);
        assert!(dg.len() <= usize::from(u16::MAX));
        d.decode(&dg, from, 0, &mut out);
    }
    let probes = TABLE_PROBES.with(|c| c.get()) - start;
    // Two data types, at most one 256-entry table each, whatever the churn.
    assert!(probes <= 2 * 256, "{probes} parser calls for tables");
    assert_eq!(d.stats().errors.total(), 0, "{:?}", d.stats());
    assert_eq!(d.stats().template_cache_size, 63);
}

/// Per-exporter counters follow the datagram's source, and an exporter
/// silent for `exporter_idle_ms` loses its counters and templates.
#[test]
fn exporters_are_counted_apart_and_age_out() {
    let mut d = Decoder::new(DecoderConfig {
        exporter_idle_ms: 10_000,
        ..DecoderConfig::default()
    });
    let a = SocketAddr::from(([192, 0, 2, 1], 4739));
    let b = SocketAddr::from(([192, 0, 2, 2], 4739));
    let mut out = Vec::new();
    d.decode(&churn(3, 4, &[4], 4), a, 0, &mut out);
    d.decode(&churn(2, 4, &[4], 4), b, 5_000, &mut out);
    d.decode(&[0, 10, 0], b, 6_000, &mut out);
    d.refresh_templates();
    let s = d.stats();
    let (ea, eb) = (&s.by_exporter[&a.ip()], &s.by_exporter[&b.ip()]);
    assert_eq!((ea.datagrams, ea.templates, ea.errors.total()), (1, 3, 0));
    assert_eq!((eb.datagrams, eb.templates, eb.errors.truncated), (2, 2, 1));
    assert_eq!(eb.last_seen_ms, 6_000);

    // 10 s after a's only datagram (b was seen 4 s before): a goes.
    d.expire_held(10_000);
    assert_eq!(d.take_aged(), vec![a.ip()]);
    d.refresh_templates();
    let s = d.stats();
    assert!(!s.by_exporter.contains_key(&a.ip()));
    assert_eq!(s.by_exporter[&b.ip()].templates, 2);
    assert_eq!(
        (s.exporters_aged_out, s.template_cache_size, s.exporters),
        (1, 2, 1)
    );
    assert!(d.take_aged().is_empty());
}
