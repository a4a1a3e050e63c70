//! The cluster record-batch codec (SPEC §5, `flowy::cluster::codec`):
//! arbitrary records round-trip exactly, hostile bytes are refused without a
//! panic, the real 2009 trace encodes compactly, and the committed fuzz
//! seeds (`fuzz/corpus/cluster_batch/`) are what the current encoder writes.

mod support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use flowy::cluster::codec::{
    cluster_rec_id, decode_batch, encode_batch, encode_marked_batch, peek_header, split_rec_id,
    BatchHeader, DecodeError, HEADER_LEN, VERSION,
};
use flowy::fuzzing;
use flowy::record::{Record, RecordFields};
use flowy::value::{Value, ValueSet, F64};
use proptest::prelude::*;
use support::trace;

fn encode(collector: u16, sent_ms: i64, records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_batch(collector, sent_ms, records, &mut out);
    out
}

// ---- strategies ----

fn arb_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        any::<[u8; 16]>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
    ]
}

/// Realistic times, the extremes, and anything.
fn arb_time() -> impl Strategy<Value = i64> {
    prop_oneof![
        1_200_000_000_000i64..1_900_000_000_000,
        Just(i64::MIN),
        Just(i64::MAX),
        Just(0i64),
        any::<i64>(),
    ]
}

/// Every `Value` variant, sets nested up to three deep.
fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<u64>().prop_map(Value::Uint),
        arb_ip().prop_map(Value::Ip),
        // From bits, so NaNs with payloads, infinities and -0 occur.
        any::<u64>().prop_map(|b| Value::Float(F64(f64::from_bits(b)))),
        any::<String>().prop_map(|s| Value::Text(s.into())),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop::collection::vec(inner, 0..5).prop_map(|v| Value::Set(ValueSet::from_vec(v)))
    })
}

fn arb_record() -> impl Strategy<Value = Record> {
    let addresses = (
        proptest::option::of(arb_ip()),
        proptest::option::of(arb_ip()),
        proptest::option::of(arb_ip()),
        proptest::option::of(arb_ip()),
    );
    let small = (
        any::<Option<u16>>(),
        any::<Option<u16>>(),
        any::<Option<u8>>(),
        any::<Option<u16>>(),
        any::<Option<u8>>(),
        any::<Option<u8>>(),
        any::<Option<u8>>(),
    );
    let wide = (
        any::<Option<u64>>(),
        any::<Option<u64>>(),
        any::<Option<u32>>(),
        any::<Option<u32>>(),
        any::<Option<u32>>(),
        any::<Option<u32>>(),
        any::<Option<u32>>(),
    );
    let rest = (
        any::<u64>(),
        arb_time(),
        arb_time(),
        prop::collection::vec((any::<u16>(), arb_value()), 0..4),
    );
    (addresses, small, wide, rest).prop_map(
        |(
            (exporter, srcip, dstip, nexthop),
            (srcport, dstport, prot, tcp_flags, tos, src_mask, dst_mask),
            (bytes, packets, input, output, src_as, dst_as, sampling),
            (rec_id, stime, etime, extra),
        )| {
            Record::from(RecordFields {
                rec_id,
                exporter,
                srcip,
                dstip,
                nexthop,
                srcport,
                dstport,
                prot,
                tcp_flags,
                tos,
                bytes,
                packets,
                stime,
                etime,
                input,
                output,
                src_as,
                dst_as,
                src_mask,
                dst_mask,
                sampling,
                extra,
            })
        },
    )
}

/// A collector's batch: records with cluster ids in increasing sequence
/// (gaps: a subject's subset), an exporter shared by runs of records, or,
/// when `cluster_ids` is false, the records' own arbitrary ids.
fn arb_batch() -> impl Strategy<Value = (u16, i64, Vec<Record>)> {
    (
        any::<u16>(),
        arb_time(),
        any::<bool>(),
        0u64..(1 << 48),
        prop::collection::vec((arb_record(), 1u64..5, any::<bool>()), 0..12),
    )
        .prop_map(|(collector, sent, cluster_ids, mut seq, items)| {
            let mut prev_exporter = None;
            let records = items
                .into_iter()
                .map(|(mut r, gap, same_exporter)| {
                    if cluster_ids {
                        r.set_rec_id(cluster_rec_id(collector, seq));
                        seq += gap;
                    }
                    if same_exporter && prev_exporter.is_some() {
                        r.set_exporter(prev_exporter);
                    }
                    prev_exporter = r.exporter();
                    r
                })
                .collect();
            (collector, sent, records)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn batches_round_trip_exactly((collector, sent, records) in arb_batch()) {
        let buf = encode(collector, sent, &records);
        let (header, got) = decode_batch(&buf).expect("a batch we wrote decodes");
        prop_assert_eq!(&got, &records);
        prop_assert_eq!(header, BatchHeader {
            collector,
            first_seq: records.first().map_or(0, |r| split_rec_id(r.rec_id()).1),
            count: records.len() as u32,
            sent_ms: sent,
            mark_ms: None,
        });
        prop_assert_eq!(peek_header(&buf), Ok(header));
        // Appending to a buffer that holds something leaves it alone.
        let mut out = vec![0xee; 5];
        encode_batch(collector, sent, &records, &mut out);
        prop_assert_eq!(&out[..5], &[0xee; 5]);
        prop_assert_eq!(&out[5..], &buf[..]);
    }

    #[test]
    fn every_truncation_is_an_error((collector, sent, records) in arb_batch()) {
        let buf = encode(collector, sent, &records);
        for cut in 0..buf.len() {
            let err = decode_batch(&buf[..cut]);
            prop_assert!(err.is_err(), "cut at {} of {} accepted", cut, buf.len());
            let offset = err.unwrap_err().offset();
            prop_assert!(offset <= cut, "error at {} past the cut {}", offset, cut);
        }
    }

    #[test]
    fn a_changed_version_is_unknown(
        (collector, sent, records) in arb_batch(),
        version in any::<u8>().prop_filter("not ours", |v| *v != VERSION && *v != 1),
    ) {
        let mut buf = encode(collector, sent, &records);
        buf[0] = version;
        prop_assert_eq!(decode_batch(&buf).unwrap_err(), DecodeError::UnknownVersion(version));
        prop_assert_eq!(peek_header(&buf).unwrap_err(), DecodeError::UnknownVersion(version));
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = fuzzing::cluster_batch(&bytes);
        // With a plausible header, so the record decoder sees them too.
        let mut buf = encode(1, 0, &[]);
        buf[9] = bytes.first().map_or(1, |b| b % 8);
        buf.extend_from_slice(&bytes);
        let _ = fuzzing::cluster_batch(&buf);
    }

    #[test]
    fn corrupted_batches_are_refused_or_consistent(
        (collector, sent, records) in arb_batch(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut buf = encode(collector, sent, &records);
        for (at, byte) in flips {
            let i = at.index(buf.len());
            buf[i] = byte;
        }
        // The harness checks that an accepted batch re-encodes to the same.
        let _ = fuzzing::cluster_batch(&buf);
    }
}

// ---- the real trace ----

fn trace_2009() -> Vec<Record> {
    let records = flowy::input::read_file(&trace("trace-2009.ftz"), None).expect("the trace reads");
    assert!(records.len() > 100, "{} records", records.len());
    records
}

/// The trace as a collector would publish it: cluster ids, an exporter.
fn as_collector(collector: u16, records: &[Record]) -> Vec<Record> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            Record::from(RecordFields {
                rec_id: cluster_rec_id(collector, 1_000_000 + i as u64),
                exporter: r
                    .exporter()
                    .or(Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))),
                ..r.clone().fields()
            })
        })
        .collect()
}

#[test]
fn the_2009_trace_round_trips_in_small_bytes() {
    let records = as_collector(9, &trace_2009());
    let sent = records.iter().map(|r| r.etime()).max().unwrap_or(0) + 5_000;
    let mut total = 0usize;
    for batch in records.chunks(1000) {
        let buf = encode(9, sent, batch);
        let (_, got) = decode_batch(&buf).expect("decodes");
        assert_eq!(got, batch);
        total += buf.len();
    }
    let per_record = total as f64 / records.len() as f64;
    let in_memory = std::mem::size_of::<Record>();
    eprintln!(
        "trace-2009.ftz: {} records, {total} bytes encoded, {per_record:.1} bytes/record \
         (size_of::<Record>() = {in_memory})",
        records.len()
    );
    // A v5 record is 48 bytes on the wire from the exporter; ours must not
    // be larger, and well under the (already compact) struct.
    assert!(per_record < 48.0, "{per_record} bytes/record");
    assert!(per_record * 2.0 < in_memory as f64);
}

// ---- fuzz seeds ----

/// Records no trace has: IPv6, every extra value kind, extreme times.
fn unusual_records() -> Vec<Record> {
    let v6 = |last| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last));
    let base = Record::from(RecordFields {
        rec_id: cluster_rec_id(2, 40),
        exporter: Some(v6(1)),
        srcip: Some(v6(2)),
        dstip: Some(v6(3)),
        srcport: Some(546),
        dstport: Some(547),
        prot: Some(17),
        bytes: Some(u64::MAX),
        packets: Some(1),
        stime: 1_795_392_000_000,
        etime: 1_795_392_000_000,
        sampling: Some(1000),
        extra: vec![
            (82, Value::Text("ge-0/0/1".into())),
            (95, Value::Uint(0x0300_0000_0001)),
            (
                1,
                Value::Set(ValueSet::from_vec(vec![
                    Value::Uint(1),
                    Value::Ip(v6(4)),
                    Value::Ip(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))),
                    Value::Float(F64(2.5)),
                ])),
            ),
        ],
        ..RecordFields::default()
    });
    let extremes = Record::from(RecordFields {
        rec_id: cluster_rec_id(2, 43),
        stime: i64::MIN,
        etime: i64::MAX,
        extra: vec![(u16::MAX, Value::Float(F64(f64::NAN)))],
        ..RecordFields::default()
    });
    vec![
        base.clone(),
        extremes,
        Record::from(RecordFields {
            rec_id: cluster_rec_id(2, 44),
            ..base.fields()
        }),
    ]
}

/// Every committed seed of the `cluster_batch` fuzz target: name and bytes.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let trace = as_collector(3, &trace_2009());
    let first = &trace[..64];
    let sent = first[63].etime() + 2_000;
    let ok_first = encode(3, sent, first);
    let every_5th: Vec<&Record> = trace.iter().step_by(5).take(40).collect();
    let mut ok_subset = Vec::new();
    encode_batch(3, sent, every_5th, &mut ok_subset);
    let ok_unusual = encode(2, 1_795_392_001_000, &unusual_records());

    let mut version = ok_first.clone();
    version[0] = VERSION + 1;
    let truncated = ok_first[..ok_first.len() / 2].to_vec();
    let mut trailing = ok_unusual.clone();
    trailing.extend_from_slice(&[0, 0, 0]);
    let mut huge_count = ok_subset.clone();
    huge_count[9..13].copy_from_slice(&u32::MAX.to_le_bytes());
    // The last extra of the unusual batch's last record is a set tagged 5;
    // tag 9 is no value kind.
    let mut bad_tag = encode(2, 0, &unusual_records()[..1]);
    let set_tag = bad_tag.iter().rposition(|&b| b == 5).expect("a set tag");
    bad_tag[set_tag] = 9;
    // The previous version: no mark in the header.
    let mut ok_v1 = vec![1];
    ok_v1.extend_from_slice(&ok_first[1..21]);
    ok_v1.extend_from_slice(&ok_first[HEADER_LEN..]);
    let mut ok_marked = Vec::new();
    encode_marked_batch(3, sent, Some(sent - 1_000), &first[..8], &mut ok_marked);
    vec![
        ("ok-v1-trace-2009-first-64.bin", ok_v1),
        ("ok-marked-trace-2009-first-8.bin", ok_marked),
        ("ok-trace-2009-first-64.bin", ok_first),
        ("ok-trace-2009-every-5th.bin", ok_subset),
        ("ok-v6-extras-extreme-times.bin", ok_unusual),
        ("err-version-3.bin", version),
        ("err-truncated.bin", truncated),
        ("err-trailing.bin", trailing),
        ("err-huge-count.bin", huge_count),
        ("err-bad-tag.bin", bad_tag),
    ]
}

/// The committed seeds are what the current encoder writes, so a format
/// change cannot leave the fuzzer starting from stale batches. Rewrite them
/// with `FLOWY_WRITE_SEEDS=1 cargo test --release --test cluster_codec`.
#[test]
fn fuzz_seeds_are_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/cluster_batch");
    let write = std::env::var_os("FLOWY_WRITE_SEEDS").is_some();
    for (name, bytes) in seeds() {
        let path = dir.join(name);
        if write {
            std::fs::create_dir_all(&dir).expect("corpus directory");
            std::fs::write(&path, &bytes).expect("write seed");
        }
        let committed = std::fs::read(&path).expect("the seed is committed");
        assert!(committed == bytes, "{name} is stale: rewrite the seeds");
        let decoded = fuzzing::cluster_batch(&bytes);
        assert_eq!(
            decoded.is_ok(),
            name.starts_with("ok-"),
            "{name}: {decoded:?}"
        );
    }
}

#[test]
fn the_bad_tag_seed_fails_on_its_tag() {
    let seeds = seeds();
    let (_, bad) = seeds
        .iter()
        .find(|(n, _)| *n == "err-bad-tag.bin")
        .expect("seed");
    match decode_batch(bad) {
        Err(DecodeError::BadTag { tag: 9, offset, .. }) => assert!(offset > HEADER_LEN),
        other => panic!("{other:?}"),
    }
}
