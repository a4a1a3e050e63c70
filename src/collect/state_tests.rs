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
