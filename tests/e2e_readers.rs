//! The file readers on the real nfql traces (checked against the numbers of
//! `shared/formats/flow-tools.md`, which come from an independent reader).

use std::net::IpAddr;

use flowy::input::{self, InputFormat};

mod support;

use support::trace;

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

#[test]
fn trace_2009_matches_the_format_doc() {
    let recs = input::read_file(&trace("trace-2009.ftz"), None).unwrap();
    assert_eq!(recs.len(), 556);
    let expected = [
        (
            "192.168.0.200",
            "224.0.0.22",
            2,
            56,
            1,
            1_260_226_734_835,
            1_260_226_734_835,
        ),
        (
            "192.168.0.135",
            "224.0.0.251",
            2,
            32,
            1,
            1_260_226_738_422,
            1_260_226_738_422,
        ),
        (
            "192.168.0.135",
            "239.255.255.251",
            2,
            64,
            2,
            1_260_226_680_389,
            1_260_226_734_819,
        ),
    ];
    for (i, (src, dst, prot, bytes, pkts, st, et)) in expected.into_iter().enumerate() {
        let r = &recs[i];
        assert_eq!(r.rec_id(), i as u64);
        assert_eq!((r.srcip(), r.dstip()), (ip(src), ip(dst)), "record {i}");
        assert_eq!((r.srcport(), r.dstport()), (Some(0), Some(0)), "record {i}");
        assert_eq!(
            (r.prot(), r.bytes(), r.packets()),
            (Some(prot), Some(bytes), Some(pkts))
        );
        assert_eq!((r.stime(), r.etime()), (st, et), "record {i}");
        assert_eq!(r.tcp_flags(), Some(0));
        assert_eq!(r.exporter(), ip("127.0.0.1"));
    }
    assert!(recs.iter().enumerate().all(|(i, r)| r.rec_id() == i as u64));
}

#[test]
fn trace_2012_has_every_record() {
    let path = trace("trace-2012.ftz");
    let recs = input::read_file(&path, Some(InputFormat::FlowTools)).unwrap();
    assert_eq!(recs.len(), 276_449);
    assert!(recs.iter().all(|r| r.etime() >= r.stime()));
    assert_eq!(recs.last().map(|r| r.rec_id()), Some(276_448));
}

#[test]
fn two_files_continue_rec_ids() {
    let a = trace("trace-2009.ftz");
    let recs = input::read_files(&[&a, &a], None).unwrap();
    assert_eq!(recs.len(), 1112);
    assert_eq!(recs[556].rec_id(), 556);
    assert_eq!(recs[556].stime(), recs[0].stime());
}
