//! Decoder state under hostile input (SPEC §4.5 "Decoder state is a global
//! budget in bytes"): what templates and held data really take on the heap,
//! that the decoder's accounting is an upper bound of it, that the budget
//! holds, that held data expires, and that a sender churning observation
//! domains or templates evicts its own state, never a quiet exporter's.
//!
//! Heap use is measured by a counting allocator, per thread (the decoder is
//! single-threaded; tests run in parallel threads).

mod decode_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use decode_support::*;
use flowy::collect::{Decoder, DecoderConfig, TemplateScope};

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn add(n: isize) {
    // `try_with`: allocations while the thread is torn down are not counted.
    let _ = LIVE.try_with(|c| c.set(c.get() + n));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        add(l.size() as isize);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        add(-(l.size() as isize));
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        add(l.size() as isize);
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        add(new as isize - l.size() as isize);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.with(|c| c.get())
}

const LEGIT: &str = "198.51.100.1:4739";
const ATTACKER: &str = "203.0.113.66:4739";
/// mplsTopLabelExp: a one-byte field netflow_parser normalises.
const MPLS_EXP: u16 = 203;
/// ipClassOfService: a plain one-byte number.
const TOS: u16 = 5;

/// `n` IPFIX template records (ids from `first`) of 256 one-byte `ty` fields.
fn templates(first: u16, n: u16, ty: u16) -> Vec<u8> {
    let fields = vec![(ty, 1); 256];
    let body: Vec<u8> = (0..n).flat_map(|i| template(first + i, &fields)).collect();
    set(2, &body)
}

/// 64 templates of 256 `ty` fields in each of `streams` observation domains.
fn template_bomb(d: &mut Decoder, streams: u32, ty: u16) {
    for domain in 0..streams {
        for half in 0..2 {
            let dg = ipfix(
                1_700_000_000,
                0,
                domain,
                &[templates(256 + half * 32, 32, ty)],
            );
            decode(d, &dg, ATTACKER);
        }
    }
}

/// Heap taken by the decoder after `feed`, and its own account of it.
fn measure(cfg: DecoderConfig, feed: impl FnOnce(&mut Decoder)) -> (isize, usize, Decoder) {
    let before = live();
    let mut d = Decoder::new(cfg);
    feed(&mut d);
    (live() - before, d.state_bytes(), d)
}

#[test]
fn hostile_templates_cost_what_plain_ones_do() {
    let (plain, plain_acc, _) = measure(DecoderConfig::default(), |d| template_bomb(d, 40, TOS));
    let (hostile, hostile_acc, d) =
        measure(DecoderConfig::default(), |d| template_bomb(d, 40, MPLS_EXP));
    assert_eq!(d.stats().template_cache_size, 40 * 64, "{:?}", d.stats());
    assert_eq!(d.stats().exporters_evicted, 0);
    // Was 4.4 MB per stream more (a 256-byte table per field).
    assert!(
        hostile <= plain + plain / 4,
        "hostile {hostile} B, plain {plain} B"
    );
    // The accounting never falls short of the heap really taken.
    assert!(
        plain_acc as isize >= plain,
        "accounted {plain_acc}, heap {plain}"
    );
    assert!(
        hostile_acc as isize >= hostile,
        "accounted {hostile_acc}, heap {hostile}"
    );
    assert_eq!(d.stats().state_bytes, hostile_acc as u64);
}

#[test]
fn template_bomb_stays_within_max_state() {
    const BUDGET: usize = 8 << 20;
    let cfg = DecoderConfig {
        max_state: BUDGET,
        ..DecoderConfig::default()
    };
    let (heap, accounted, d) = measure(cfg, |d| template_bomb(d, 40, MPLS_EXP));
    assert!(accounted <= BUDGET, "accounted {accounted}");
    assert!(heap <= BUDGET as isize, "heap {heap}");
    assert!(d.stats().evictions.max_state > 0, "{:?}", d.stats());
}

#[test]
fn the_template_store_counts_in_max_state() {
    const BUDGET: usize = 8 << 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = DecoderConfig {
        max_state: BUDGET,
        template_store: Some(dir.path().join("templates.bin")),
        ..DecoderConfig::default()
    };
    let (heap, accounted, d) = measure(cfg, |d| template_bomb(d, 40, MPLS_EXP));
    assert!(accounted <= BUDGET, "accounted {accounted}");
    assert!(
        accounted as isize >= heap,
        "accounted {accounted}, heap {heap}"
    );
    assert!(d.stats().template_store_errors > 0, "{:?}", d.stats());
}

/// Data sets for templates that never come, from `streams` domains.
fn unknown_data(d: &mut Decoder, streams: u32, sets: u32, now_ms: i64) {
    let body = vec![0xab; 1200];
    for domain in 0..streams {
        for i in 0..sets {
            let id = 256 + (i % 64) as u16;
            let dg = ipfix(1_700_000_000, i, domain, &[set(id, &body)]);
            let mut out = Vec::new();
            d.decode(&dg, from(ATTACKER), now_ms, &mut out);
            assert!(out.is_empty());
            assert!(d.state_bytes() <= 4 << 20, "{}", d.state_bytes());
        }
    }
}

#[test]
fn held_data_is_one_global_budget() {
    let cfg = DecoderConfig {
        max_pending: 10_000,
        max_state: 4 << 20,
        ..DecoderConfig::default()
    };
    let (heap, accounted, d) = measure(cfg, |d| unknown_data(d, 8, 2000, 0));
    assert!(d.stats().pending_held >= 8 * 2000, "{:?}", d.stats());
    // Was ~15 MB per stream.
    assert!(heap <= 4 << 20, "heap {heap}");
    assert!(
        accounted as isize >= heap,
        "accounted {accounted}, heap {heap}"
    );
}

#[test]
fn held_data_expires_after_pending_ttl() {
    let config = DecoderConfig {
        pending_ttl_ms: 60_000,
        ..cfg(TemplateScope::Address)
    };
    let mut d = Decoder::new(config.clone());
    // What a stream with nothing held or learned is accounted.
    let mut e = Decoder::new(config);
    e.decode(&ipfix(1, 0, 1, &[]), from(ATTACKER), 0, &mut Vec::new());
    let empty = e.state_bytes();
    let fields = [(8, 4), (12, 4), (1, 4)];
    let data = set(256, &[10, 0, 0, 1, 10, 0, 0, 2, 0, 0, 1, 0]);
    let mut out = Vec::new();
    d.decode(
        &ipfix(1, 0, 7, std::slice::from_ref(&data)),
        from(LEGIT),
        0,
        &mut out,
    );
    assert!(d.state_bytes() > empty);
    // Within the TTL another exporter's datagram changes nothing.
    d.decode(&ipfix(1, 0, 1, &[]), from(ATTACKER), 59_000, &mut out);
    assert_eq!(d.stats().pending_expired, 0);
    assert!(d.state_bytes() > 2 * empty);
    d.decode(&ipfix(1, 0, 1, &[]), from(ATTACKER), 61_000, &mut out);
    assert_eq!(d.stats().pending_expired, 1, "{:?}", d.stats());
    assert_eq!(d.state_bytes(), 2 * empty);
    // The template comes too late: nothing is replayed.
    let t = set(2, &template(256, &fields));
    d.decode(&ipfix(1, 1, 7, &[t]), from(LEGIT), 62_000, &mut out);
    assert!(out.is_empty());
    assert_eq!(d.stats().pending_replayed, 0);
    // Held data younger than the TTL still is.
    d.decode(
        &ipfix(1, 2, 7, &[set(257, &data[4..])]),
        from(LEGIT),
        63_000,
        &mut out,
    );
    let t = set(2, &template(257, &fields));
    d.decode(&ipfix(1, 3, 7, &[t]), from(LEGIT), 120_000, &mut out);
    assert_eq!(out.len(), 1, "{:?}", d.stats());
}

/// The legit exporter's template and one data record for it.
fn legit_template(d: &mut Decoder) {
    let t = set(2, &template(256, &[(8, 4), (12, 4), (1, 4)]));
    decode(d, &ipfix(1_700_000_000, 0, 1, &[t]), LEGIT);
}

fn legit_data(d: &mut Decoder) -> usize {
    let data = set(256, &[10, 0, 0, 1, 10, 0, 0, 2, 0, 0, 1, 0]);
    decode(d, &ipfix(1_700_000_000, 0, 1, &[data]), LEGIT).len()
}

#[test]
fn a_flood_of_domains_evicts_the_flooder_not_a_quiet_exporter() {
    // With the per-source stream limit, and without it (then `max_exporters`
    // must pick the flooder).
    let configs = [
        DecoderConfig::default(),
        DecoderConfig {
            max_streams_per_source: usize::MAX,
            ..DecoderConfig::default()
        },
    ];
    for cfg in configs {
        let max = cfg.max_exporters as u64;
        let before = live();
        let mut d = Decoder::new(cfg);
        legit_template(&mut d);
        // 10,001 empty IPFIX headers (160 KB), distinct observation domains,
        // one source.
        for domain in 0..10_001u32 {
            decode(
                &mut d,
                &ipfix(1_700_000_000, 0, 100 + domain, &[]),
                ATTACKER,
            );
        }
        let s = d.stats();
        assert!(s.exporters_evicted > 0, "{s:?}");
        assert!(s.exporters <= max, "{s:?}");
        let heap = live() - before;
        let accounted = d.state_bytes() as isize;
        assert!(accounted >= heap, "accounted {accounted}, heap {heap}");
        // Right after the flood the template is still there.
        assert_eq!(legit_data(&mut d), 1, "{:?}", d.stats());
        assert_eq!(d.stats().pending_held, 0);
    }
}

#[test]
fn a_template_flood_over_budget_evicts_the_flooder() {
    let mut d = Decoder::new(DecoderConfig {
        max_state: 2 << 20,
        ..DecoderConfig::default()
    });
    legit_template(&mut d);
    for domain in 0..50u32 {
        let dg = ipfix(
            1_700_000_000,
            0,
            100 + domain,
            &[templates(256, 32, MPLS_EXP)],
        );
        decode(&mut d, &dg, ATTACKER);
        assert!(d.state_bytes() <= 2 << 20);
    }
    assert!(d.stats().evictions.max_state > 0, "{:?}", d.stats());
    assert_eq!(legit_data(&mut d), 1, "{:?}", d.stats());
}
