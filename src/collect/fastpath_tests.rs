//! The data-set fast path against the netflow_parser slow path: same
//! records, same stats, same template lifecycle.

use std::net::SocketAddr;

use proptest::prelude::*;

use super::layout::VARLEN;
use super::{Decoder, DecoderConfig};
use crate::record::Record;

const FROM: ([u8; 4], u16) = ([192, 0, 2, 7], 2055);

fn be16(v: u16) -> [u8; 2] {
    v.to_be_bytes()
}

/// A template field: type (without the enterprise bit), length, enterprise.
#[derive(Clone, Copy, Debug)]
struct F {
    ty: u16,
    len: u16,
    ent: Option<u32>,
}

fn f(ty: u16, len: u16) -> F {
    F { ty, len, ent: None }
}

fn set(id: u16, body: &[u8]) -> Vec<u8> {
    let mut b = be16(id).to_vec();
    b.extend(be16((body.len() + 4) as u16));
    b.extend(body);
    b
}

fn field_spec(b: &mut Vec<u8>, x: &F) {
    match x.ent {
        Some(e) => {
            b.extend(be16(x.ty | 0x8000));
            b.extend(be16(x.len));
            b.extend(e.to_be_bytes());
        }
        None => {
            b.extend(be16(x.ty));
            b.extend(be16(x.len));
        }
    }
}

/// Template record (v9 set 0 / IPFIX set 2).
fn template(id: u16, fields: &[F]) -> Vec<u8> {
    let mut b = be16(id).to_vec();
    b.extend(be16(fields.len() as u16));
    fields.iter().for_each(|x| field_spec(&mut b, x));
    b
}

/// Options template record: v9 (set 1) counts scope/option bytes, IPFIX
/// (set 3) counts fields.
fn options_template(version: u16, id: u16, scope: &[F], opts: &[F]) -> Vec<u8> {
    let mut b = be16(id).to_vec();
    if version == 9 {
        b.extend(be16(4 * scope.len() as u16));
        b.extend(be16(4 * opts.len() as u16));
    } else {
        b.extend(be16((scope.len() + opts.len()) as u16));
        b.extend(be16(scope.len() as u16));
    }
    scope.iter().chain(opts).for_each(|x| field_spec(&mut b, x));
    b
}

fn message(version: u16, seq: u32, sets: &[Vec<u8>], trailing: usize) -> Vec<u8> {
    let mut b = be16(version).to_vec();
    let body: Vec<u8> = sets.concat();
    if version == 9 {
        b.extend(be16(sets.len() as u16));
        b.extend(100_000u32.to_be_bytes());
        b.extend(1_700_000_000u32.to_be_bytes());
        b.extend(seq.to_be_bytes());
        b.extend(0u32.to_be_bytes());
    } else {
        b.extend(be16((16 + body.len() + trailing) as u16));
        b.extend(1_700_000_000u32.to_be_bytes());
        b.extend(seq.to_be_bytes());
        b.extend(0u32.to_be_bytes());
    }
    b.extend(body);
    b.extend(std::iter::repeat_n(0u8, trailing));
    b
}

/// One value for a field: fixed lengths take `len` bytes; variable lengths
/// get the RFC 7011 length prefix.
fn value(x: &F, seed: &mut u64, varlen_len: usize) -> Vec<u8> {
    let n = if x.len == VARLEN {
        varlen_len
    } else {
        usize::from(x.len)
    };
    let mut v = Vec::new();
    if x.len == VARLEN {
        if n < 255 {
            v.push(n as u8);
        } else {
            v.push(255);
            v.extend(be16(n as u16));
        }
    }
    for _ in 0..n {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        v.push(*seed as u8);
    }
    v
}

fn records(fields: &[F], n: usize, seed: u64, varlen_len: usize) -> Vec<u8> {
    let mut seed = seed | 1;
    let mut b = Vec::new();
    for _ in 0..n {
        for x in fields {
            b.extend(value(x, &mut seed, varlen_len));
        }
    }
    b
}

/// Decoders with and without the fast path, fed the same datagrams.
struct Pair {
    fast: Decoder,
    slow: Decoder,
}

impl Pair {
    fn new(cfg: DecoderConfig) -> Self {
        let mut slow = Decoder::new(cfg.clone());
        slow.set_fast_path(false);
        Self {
            fast: Decoder::new(cfg),
            slow,
        }
    }

    /// Decode with both; assert identical records and stats; return them.
    fn feed(&mut self, dg: &[u8]) -> Vec<Record> {
        self.feed_from(dg, SocketAddr::from(FROM))
    }

    fn feed_from(&mut self, dg: &[u8], from: SocketAddr) -> Vec<Record> {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        self.fast.decode(dg, from, 0, &mut a);
        self.slow.decode(dg, from, 0, &mut b);
        assert_eq!(a, b, "records differ for datagram {dg:02x?}");
        assert_eq!(self.fast.stats(), self.slow.stats(), "stats differ");
        a
    }

    fn fast_messages(&self) -> u64 {
        self.fast.fast_messages
    }

    fn split_messages(&self) -> u64 {
        self.fast.split_messages
    }
}

/// Element ids flowy maps (canonical, time, ICMP, sampling) plus a few it
/// keeps as extras (MAC, VLAN, interface name, forwarding status, flow end
/// reason, fragment flags, application id) and one it ignores.
const IDS: &[u16] = &[
    1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 21, 22, 27, 28, 32, 34, 50, 62, 85, 86,
    139, 150, 151, 152, 153, 154, 155, 156, 157, 158, 159, 160, 161, 162, 176, 177, 178, 179, 305,
    56, 58, 82, 89, 95, 136, 197, 4000,
];
const ENTERPRISES: &[u32] = &[9, 6871, 29305, 12345];

/// Natural length of an element, for most draws.
fn natural(ty: u16) -> u16 {
    match ty {
        8 | 12 | 15 => 4,
        27 | 28 | 62 => 16,
        150 | 151 => 4,
        152..=157 | 160 => 8,
        56 => 6,
        82 => 16,
        4 | 5 | 6 | 9 | 13 | 89 | 136 | 176..=179 | 197 => 1,
        _ => 4,
    }
}

/// (pool index, length choice, enterprise choice) → field.
fn draw_field(version: u16, (i, lc, ec): (usize, u8, u8)) -> F {
    let ty = IDS[i % IDS.len()];
    let len = match lc % 12 {
        0..=4 => natural(ty),
        5 => 3,
        6 => 5,
        7 => 6,
        8 => 7,
        9 => 2,
        10 if version == 10 => VARLEN,
        10 => 0,
        _ => 1 + u16::from(lc / 12) % 16,
    };
    let ent = (version == 10 && ec % 5 == 0).then(|| ENTERPRISES[usize::from(ec / 5) % 4]);
    let len = if version == 10 && len == 0 { 1 } else { len };
    F { ty, len, ent }
}

#[derive(Debug, Clone)]
struct Case {
    version: u16,
    apply_sampling: bool,
    t1: Vec<(usize, u8, u8)>,
    t2: Vec<(usize, u8, u8)>,
    with_options: bool,
    sampling_len: u16,
    /// Per data message: (sets as (which template 0/1/2, records, padding, seed)).
    messages: Vec<Vec<(u8, usize, usize, u64)>>,
    varlen_len: usize,
    trailing: usize,
    seq_jump: u32,
    /// The template message also carries the first data message's sets.
    data_with_templates: bool,
}

fn case() -> impl Strategy<Value = Case> {
    let field = (0usize..1000, any::<u8>(), any::<u8>());
    let data_set = (0u8..3, 0usize..7, 0usize..8, any::<u64>());
    (
        prop_oneof![Just(9u16), Just(10u16)],
        any::<bool>(),
        proptest::collection::vec(field.clone(), 1..16),
        proptest::collection::vec(field, 1..8),
        any::<bool>(),
        1u16..5,
        proptest::collection::vec(proptest::collection::vec(data_set, 1..4), 1..5),
        prop_oneof![0usize..20, Just(0), 250usize..300],
        prop_oneof![Just(0usize), Just(0), Just(0), 1usize..4],
        prop_oneof![Just(0u32), Just(0), 1u32..5],
        any::<bool>(),
    )
        .prop_map(
            |(
                version,
                apply_sampling,
                t1,
                t2,
                with_options,
                sampling_len,
                messages,
                v,
                t,
                j,
                d,
            )| {
                Case {
                    version,
                    apply_sampling,
                    t1,
                    t2,
                    with_options,
                    sampling_len,
                    messages,
                    varlen_len: v,
                    trailing: t,
                    seq_jump: j,
                    data_with_templates: d,
                }
            },
        )
}

fn run_case(c: &Case) {
    let v = c.version;
    let t1: Vec<F> = c.t1.iter().map(|x| draw_field(v, *x)).collect();
    let t2: Vec<F> = c.t2.iter().map(|x| draw_field(v, *x)).collect();
    let scope = [f(if v == 9 { 1 } else { 149 }, 4)];
    let opts = [f(34, c.sampling_len), f(160, 8)];
    let cfg = DecoderConfig {
        apply_sampling: c.apply_sampling,
        ..DecoderConfig::default()
    };
    let mut p = Pair::new(cfg);
    let (tset, oset) = if v == 9 { (0, 1) } else { (2, 3) };
    let mut tpl = vec![set(
        tset,
        &[template(256, &t1), template(257, &t2)].concat(),
    )];
    if c.with_options {
        tpl.push(set(oset, &options_template(v, 258, &scope, &opts)));
    }
    let mut seq = 1u32;
    if !c.data_with_templates {
        p.feed(&message(v, seq, &tpl, 0));
    }
    for (k, m) in c.messages.iter().enumerate() {
        seq = seq.wrapping_add(1 + c.seq_jump);
        let mut sets: Vec<Vec<u8>> = m
            .iter()
            .map(|&(which, n, pad, seed)| {
                let (id, fields): (u16, Vec<F>) = match which {
                    0 => (256, t1.clone()),
                    1 => (257, t2.clone()),
                    _ if c.with_options => (258, scope.iter().chain(&opts).copied().collect()),
                    _ => (256, t1.clone()),
                };
                let mut body = records(&fields, n.max(1), seed, c.varlen_len);
                body.extend(std::iter::repeat_n(0u8, pad));
                set(id, &body)
            })
            .collect();
        if k == 0 && c.data_with_templates {
            sets = tpl.iter().cloned().chain(sets).collect();
        }
        // Trailing bytes only in the last message: v9 rejects them, IPFIX skips them.
        let trailing = if k + 1 == c.messages.len() {
            c.trailing
        } else {
            0
        };
        p.feed(&message(v, seq, &sets, trailing));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn fast_path_matches_slow_path(c in case()) {
        run_case(&c);
    }
}

/// A typical template: the fast path is taken and agrees with the slow one.
#[test]
fn typical_template_takes_fast_path() {
    for v in [9u16, 10] {
        let fields = [
            f(8, 4),
            f(12, 4),
            f(7, 2),
            f(11, 2),
            f(4, 1),
            f(6, if v == 9 { 1 } else { 2 }),
            f(1, 4),
            f(2, 4),
            f(22, 4),
            f(21, 4),
        ];
        let mut p = Pair::new(DecoderConfig::default());
        let tset = if v == 9 { 0 } else { 2 };
        p.feed(&message(v, 1, &[set(tset, &template(300, &fields))], 0));
        let data = set(300, &records(&fields, 20, 42, 0));
        let recs = p.feed(&message(v, 2, &[data.clone(), data], 0));
        assert_eq!(recs.len(), 40);
        assert_eq!(p.fast_messages(), 1, "v{v}");
    }
}

#[test]
fn redefinition_with_same_id_changes_layout() {
    for v in [9u16, 10] {
        let tset = if v == 9 { 0 } else { 2 };
        let mut p = Pair::new(DecoderConfig::default());
        let a = [f(7, 2), f(11, 2), f(4, 1)];
        let b = [f(11, 2), f(7, 4), f(4, 1), f(1, 8)];
        p.feed(&message(v, 1, &[set(tset, &template(256, &a))], 0));
        let r = p.feed(&message(v, 2, &[set(256, &[0, 1, 0, 2, 17])], 0));
        assert_eq!((r[0].srcport(), r[0].dstport()), (Some(1), Some(2)));
        p.feed(&message(v, 3, &[set(tset, &template(256, &b))], 0));
        let body = [0, 9, 0, 0, 0, 5, 6, 0, 0, 0, 0, 0, 0, 0, 100];
        let r = p.feed(&message(v, 4, &[set(256, &body)], 0));
        assert_eq!(r.len(), 1);
        assert_eq!(
            (r[0].srcport(), r[0].dstport(), r[0].bytes()),
            (Some(5), Some(9), Some(100))
        );
        assert_eq!(
            p.fast_messages(),
            2,
            "v{v}: both data messages on the fast path"
        );
    }
}

#[test]
fn ipfix_withdrawal_drops_the_layout() {
    let fields = [f(7, 2), f(11, 2)];
    let mut p = Pair::new(DecoderConfig::default());
    p.feed(&message(10, 1, &[set(2, &template(256, &fields))], 0));
    assert_eq!(
        p.feed(&message(10, 2, &[set(256, &[0, 1, 0, 2])], 0)).len(),
        1
    );
    assert_eq!(p.fast_messages(), 1);
    // Withdrawal: template id + field count 0.
    p.feed(&message(10, 3, &[set(2, &[1, 0, 0, 0])], 0));
    let r = p.feed(&message(10, 3, &[set(256, &[0, 1, 0, 2])], 0));
    assert!(r.is_empty());
    assert_eq!(p.fast_messages(), 1, "withdrawn template not decoded");
    assert_eq!(p.fast.stats().errors.no_template, 1);
    // Withdraw-all (set id 2 as template id) as well.
    p.feed(&message(10, 3, &[set(2, &template(256, &fields))], 0));
    p.feed(&message(10, 3, &[set(2, &[0, 2, 0, 0])], 0));
    assert!(p
        .feed(&message(10, 3, &[set(256, &[0, 1, 0, 2])], 0))
        .is_empty());
    assert_eq!(p.fast_messages(), 1);
}

/// Exporters keep 64 templates; the 65th evicts the least recently used.
#[test]
fn evicted_template_is_not_decoded_by_a_stale_layout() {
    for v in [9u16, 10] {
        let tset = if v == 9 { 0 } else { 2 };
        let fields = [f(7, 2), f(11, 2)];
        let mut p = Pair::new(DecoderConfig::default());
        let all: Vec<u8> = (256..320).flat_map(|id| template(id, &fields)).collect();
        p.feed(&message(v, 1, &[set(tset, &all)], 0));
        // 256 is the oldest; using it through the fast path must refresh it
        // in the parser's LRU exactly as a slow-path lookup would.
        assert_eq!(
            p.feed(&message(v, 2, &[set(256, &[0, 1, 0, 2])], 0)).len(),
            1
        );
        assert_eq!(p.fast_messages(), 1);
        p.feed(&message(v, 3, &[set(tset, &template(320, &fields))], 0));
        // 257 was evicted, 256 was not.
        assert!(p
            .feed(&message(v, 4, &[set(257, &[0, 1, 0, 2])], 0))
            .is_empty());
        assert_eq!(
            p.feed(&message(v, 5, &[set(256, &[0, 1, 0, 2])], 0)).len(),
            1
        );
        assert_eq!(p.fast_messages(), 2, "v{v}");
        // Evict 256 too (it is now the least recently used after 258..320 are read).
        let rest: Vec<Vec<u8>> = (258..=320).map(|id| set(id, &[0, 1, 0, 2])).collect();
        for chunk in rest.chunks(16) {
            p.feed(&message(v, 6, chunk, 0));
        }
        p.feed(&message(v, 7, &[set(tset, &template(321, &fields))], 0));
        assert!(p
            .feed(&message(v, 8, &[set(256, &[0, 1, 0, 2])], 0))
            .is_empty());
    }
}

#[test]
fn evicted_exporter_takes_its_layouts_along() {
    let cfg = DecoderConfig {
        max_exporters: 1,
        ..DecoderConfig::default()
    };
    let fields = [f(7, 2), f(11, 2)];
    let a = SocketAddr::from(([192, 0, 2, 1], 2055));
    let b = SocketAddr::from(([192, 0, 2, 2], 2055));
    let mut p = Pair::new(cfg);
    let tpl = message(9, 1, &[set(0, &template(256, &fields))], 0);
    let data = message(9, 2, &[set(256, &[0, 1, 0, 2])], 0);
    p.feed_from(&tpl, a);
    assert_eq!(p.feed_from(&data, a).len(), 1);
    p.feed_from(&tpl, b);
    assert!(p.feed_from(&data, a).is_empty());
    assert_eq!(p.fast_messages(), 1);
}

/// More decoded values than the parser allows per message: the parser
/// refuses the message, so the fast path must not decode it.
#[test]
fn output_budget_goes_to_the_parser() {
    let mut fields = vec![f(4, 1)];
    fields.extend(std::iter::repeat_n(f(7, 0), 200));
    let mut p = Pair::new(DecoderConfig::default());
    p.feed(&message(9, 1, &[set(0, &template(256, &fields))], 0));
    let sets: Vec<Vec<u8>> = (0..2).map(|_| set(256, &[6u8; 1000])).collect();
    p.feed(&message(9, 2, &sets, 0));
    assert_eq!(p.fast_messages(), 0);
}

/// Options data in a fast-path message updates sampling and the clock.
#[test]
fn options_data_on_the_fast_path() {
    for v in [9u16, 10] {
        let (tset, oset) = if v == 9 { (0, 1) } else { (2, 3) };
        let scope = [f(if v == 9 { 1 } else { 149 }, 4)];
        let opts = [f(34, 2)];
        let fields = [f(1, 4), f(2, 4)];
        let cfg = DecoderConfig {
            apply_sampling: true,
            ..DecoderConfig::default()
        };
        let mut p = Pair::new(cfg);
        p.feed(&message(
            v,
            1,
            &[
                set(tset, &template(256, &fields)),
                set(oset, &options_template(v, 257, &scope, &opts)),
            ],
            0,
        ));
        let data = set(256, &[0, 0, 0, 10, 0, 0, 0, 1]);
        let options = set(257, &[0, 0, 0, 1, 0, 100]);
        let r = p.feed(&message(v, 2, &[data, options], 0));
        assert_eq!((r[0].bytes(), r[0].sampling()), (Some(1000), Some(100)));
        assert_eq!(p.fast.stats().options_records, 1);
        assert_eq!(p.fast_messages(), 1);
    }
}

/// Templates restored from the template store decode (slow path) and the
/// fast path resumes once the exporter re-announces them.
#[test]
fn restored_templates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("templates.bin");
    let cfg = DecoderConfig {
        template_store: Some(path.clone()),
        ..DecoderConfig::default()
    };
    let fields = [f(7, 2), f(11, 2)];
    let tpl = message(10, 1, &[set(2, &template(256, &fields))], 0);
    let data = message(10, 2, &[set(256, &[0, 1, 0, 2])], 0);
    {
        let mut d = Decoder::new(cfg.clone());
        let mut out = Vec::new();
        d.decode(&tpl, SocketAddr::from(FROM), 0, &mut out);
        d.save_templates().expect("save");
    }
    let mut p = Pair::new(cfg);
    assert_eq!(p.feed(&data).len(), 1);
    assert_eq!(p.feed(&data).len(), 1);
    assert_eq!(p.fast_messages(), 0);
    p.feed(&tpl);
    assert_eq!(p.feed(&data).len(), 1);
    assert_eq!(p.fast_messages(), 1);
}

/// softflowd's template datagrams: two data templates and an options
/// template lead, options data and data sets of both templates alternate
/// behind them (v9, and the same in IPFIX). The templates go to the
/// parser, the data takes the fast path, and records, stats and the
/// sequence agree with the slow path.
#[test]
fn templates_leading_data_split_off() {
    let t1 = [
        f(8, 4),
        f(12, 4),
        f(22, 4),
        f(21, 4),
        f(1, 4),
        f(2, 4),
        f(10, 4),
        f(14, 4),
        f(61, 1),
        f(136, 1),
        f(7, 2),
        f(11, 2),
        f(4, 1),
        f(6, 1),
        f(60, 1),
        f(5, 1),
    ];
    let mut t2 = t1.to_vec();
    t2.splice(10..12, [f(32, 2)]);
    for v in [9u16, 10] {
        let (tset, oset) = if v == 9 { (0, 1) } else { (2, 3) };
        let scope = [f(if v == 9 { 1 } else { 149 }, 4)];
        let opts = [f(34, 4), f(35, 1)];
        let templates = [
            set(tset, &[template(1024, &t1), template(1025, &t2)].concat()),
            set(oset, &options_template(v, 256, &scope, &opts)),
        ];
        let data = |seed: u64| {
            vec![
                set(256, &[0, 0, 0, 1, 0, 0, 0, 1, 2, 0]),
                set(1024, &records(&t1, 5, seed, 0)),
                set(1025, &records(&t2, 2, seed + 1, 0)),
                set(1024, &records(&t1, 3, seed + 2, 0)),
            ]
        };
        let mut p = Pair::new(DecoderConfig::default());
        // IPFIX sequence numbers count data records, options records included.
        let mut seq = 1u32;
        for k in 1..=6u32 {
            let mut sets = data(u64::from(k));
            if k % 3 == 1 {
                sets.splice(0..0, templates.iter().cloned());
            }
            let recs = p.feed(&message(v, seq, &sets, 0));
            assert_eq!(recs.len(), 10, "v{v} datagram {k}");
            seq += if v == 9 { 1 } else { 11 };
        }
        assert_eq!((p.split_messages(), p.fast_messages()), (2, 4), "v{v}");
        let stats = p.fast.stats();
        assert!(
            stats.sequence_gaps.is_empty(),
            "v{v}: {:?}",
            stats.sequence_gaps
        );
        assert_eq!(
            (stats.sequence_resets, stats.options_records),
            (0, 6),
            "v{v}"
        );
    }
}

/// Template sets after a data set, or data of a template nobody defined:
/// no split, the parser takes the whole message as before.
#[test]
fn templates_behind_data_or_unknown_data_stay_whole() {
    let fields = [f(7, 2), f(11, 2)];
    let tpl = set(0, &template(300, &fields));
    let data = set(300, &[0, 1, 0, 2]);
    let unknown = set(301, &[0, 1, 0, 2]);
    let mut p = Pair::new(DecoderConfig::default());
    assert_eq!(
        p.feed(&message(9, 1, std::slice::from_ref(&tpl), 0)).len(),
        0
    );
    assert_eq!(
        p.feed(&message(9, 2, &[data.clone(), tpl.clone()], 0))
            .len(),
        1
    );
    assert_eq!(p.split_messages(), 0);
    // Split, but the data set's template is unknown: the data goes to the
    // parser (held), still one sequence observation.
    p.feed(&message(9, 3, &[tpl, unknown, data], 0));
    assert_eq!(p.split_messages(), 0);
    assert!(p.fast.stats().sequence_gaps.is_empty());
    assert_eq!(p.fast.stats().sequence_resets, 0);
}
