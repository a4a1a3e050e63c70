//! Hostile and broken datagrams: each is counted by kind, none panics.
mod decode_support;

use decode_support::*;
use flowy::collect::{Decoder, DecoderConfig, TemplateScope};

const SRC: &str = "203.0.113.5:9995";

fn fresh() -> Decoder {
    Decoder::new(cfg(TemplateScope::Address))
}

#[test]
fn truncated_headers() {
    let mut d = fresh();
    for dg in [
        vec![0u8],
        vec![0, 5, 0, 1, 0, 0],
        vec![0, 9, 0, 1, 0, 0, 0, 0],
        vec![0, 10, 0, 16],
    ] {
        assert!(decode(&mut d, &dg, SRC).is_empty());
    }
    assert_eq!(d.stats().errors.truncated, 4);
    assert_eq!(d.stats().datagrams, 4);
}

#[test]
fn unknown_versions() {
    let mut d = fresh();
    for v in [0u16, 1, 6, 7, 8, 11, 0xffff] {
        let mut dg = be16(v).to_vec();
        dg.extend([0; 30]);
        decode(&mut d, &dg, SRC);
    }
    assert_eq!(d.stats().errors.bad_version, 7);
}

#[test]
fn lying_lengths_and_counts() {
    let mut d = fresh();
    // v5 header claims 10 records but carries none.
    let mut v5 = v5(1, 1, 0, 0, 0, &[]);
    v5[3] = 10;
    decode(&mut d, &v5, SRC);
    assert_eq!(d.stats().errors.truncated, 1);
    // v5 count beyond the protocol maximum of 30.
    v5[3] = 200;
    decode(&mut d, &v5, SRC);
    // IPFIX message length larger than the datagram.
    let mut m = ipfix(1, 0, 0, &[set(256, &[0; 8])]);
    m[3] = 200;
    decode(&mut d, &m, SRC);
    // IPFIX message length shorter than its header.
    m[2] = 0;
    m[3] = 8;
    decode(&mut d, &m, SRC);
    // Set length past the end of the message, and a zero set length.
    let mut s = ipfix(1, 0, 0, &[set(256, &[0; 8])]);
    s[19] = 100;
    decode(&mut d, &s, SRC);
    let mut z = v9(1, 1, 0, 0, 1, &[set(300, &[0; 8])]);
    z[22] = 0;
    z[23] = 0;
    decode(&mut d, &z, SRC);
    let e = &d.stats().errors;
    assert_eq!((e.truncated, e.bad_length), (2, 4), "{e:?}");
}

#[test]
fn template_with_65535_fields_is_rejected() {
    let mut d = fresh();
    for version in [9u16, 10] {
        let mut body = Vec::new();
        body.extend(be16(256));
        body.extend(be16(u16::MAX));
        body.extend([0, 8, 0, 4, 0, 12, 0, 4]);
        let dg = if version == 9 {
            v9(1, 1, 0, 0, 1, &[set(0, &body)])
        } else {
            ipfix(1, 0, 0, &[set(2, &body)])
        };
        decode(&mut d, &dg, SRC);
    }
    assert_eq!(d.stats().errors.too_many_fields, 2);
    assert_eq!(d.stats().template_cache_size, 0);
}

#[test]
fn zero_length_fields_and_empty_templates() {
    let mut d = fresh();
    // Template whose only field is zero bytes long, then data for it.
    let t = set(2, &template(256, &[(8, 0)]));
    let dg = ipfix(1, 0, 0, &[t, set(256, &[0; 64])]);
    decode(&mut d, &dg, SRC);
    let t9 = set(0, &template(256, &[(8, 0), (12, 0)]));
    let n = decode(&mut d, &v9(1, 1, 0, 0, 2, &[t9, set(256, &[0; 32])]), SRC);
    assert!(n.is_empty());
    assert_eq!(d.stats().errors.template, 2, "{:?}", d.stats());
    assert_eq!(d.stats().errors.total(), 2, "{:?}", d.stats());
}

#[test]
fn data_without_template_is_counted() {
    let mut d = Decoder::new(DecoderConfig {
        max_pending: 0,
        ..cfg(TemplateScope::Address)
    });
    decode(&mut d, &ipfix(1, 0, 0, &[set(999, &[0; 16])]), SRC);
    assert_eq!(d.stats().errors.no_template, 1);
}

#[test]
fn pending_is_bounded() {
    let mut d = Decoder::new(DecoderConfig {
        max_pending: 4,
        ..cfg(TemplateScope::Address)
    });
    for i in 0..20 {
        decode(&mut d, &ipfix(1, i, 0, &[set(999, &[0; 16])]), SRC);
    }
    let s = d.stats();
    // Everything held beyond the bound was dropped (and counted).
    assert_eq!(s.errors.no_template, 20, "{s:?}");
    assert!(
        s.pending_held.saturating_sub(s.pending_dropped) <= 4,
        "{s:?}"
    );
    assert!(s.pending_dropped >= 16, "{s:?}");
}

#[test]
fn exporters_are_bounded() {
    let mut d = Decoder::new(DecoderConfig {
        max_exporters: 8,
        ..cfg(TemplateScope::AddressPort)
    });
    let t = set(2, &template(256, &[(8, 4)]));
    for port in 0..50u16 {
        decode(
            &mut d,
            &ipfix(1, 0, 0, std::slice::from_ref(&t)),
            &format!("10.9.9.9:{}", 1000 + port),
        );
    }
    assert_eq!(d.stats().exporters, 8);
    assert_eq!(d.stats().exporters_evicted, 42);
    assert_eq!(d.stats().template_cache_size, 8);
}

/// Deterministic xorshift so failures reproduce.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn random_bytes_never_panic() {
    let mut d = fresh();
    let mut st = 0x9e37_79b9_7f4a_7c15u64;
    let mut out = Vec::new();
    for i in 0..5_000 {
        let len = (xorshift(&mut st) % 400) as usize;
        let mut dg: Vec<u8> = (0..len).map(|_| xorshift(&mut st) as u8).collect();
        // Steer most datagrams into a real version so the parsers are exercised.
        if dg.len() >= 4 {
            let v = [5u16, 9, 10, 10][i % 4];
            dg[0..2].copy_from_slice(&v.to_be_bytes());
            if v == 10 {
                let n = dg.len() as u16;
                dg[2..4].copy_from_slice(&n.to_be_bytes());
            }
        }
        d.decode(&dg, from(&format!("10.0.{}.1:2055", i % 7)), 0, &mut out);
    }
    let s = d.stats();
    assert_eq!(s.datagrams, 5_000);
    assert!(s.errors.total() > 0);
}

#[test]
fn mutated_valid_datagrams_never_panic() {
    let mut d = fresh();
    let t = set(
        2,
        &template(256, &[(8, 4), (12, 4), (1, 8), (82, 0xffff), (152, 8)]),
    );
    let mut body = vec![1, 2, 3, 4, 5, 6, 7, 8];
    body.extend(9u64.to_be_bytes());
    body.extend([3, b'a', b'b', b'c']);
    body.extend(1u64.to_be_bytes());
    let valid = ipfix(1, 0, 0, &[t, set(256, &body)]);
    let mut st = 42u64;
    let mut out = Vec::new();
    for _ in 0..3_000 {
        let mut dg = valid.clone();
        for _ in 0..3 {
            let at = (xorshift(&mut st) as usize) % dg.len();
            dg[at] = xorshift(&mut st) as u8;
        }
        d.decode(&dg, from(SRC), 0, &mut out);
    }
    assert_eq!(d.stats().datagrams, 3_000);
}
