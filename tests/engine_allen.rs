//! The 13 Allen relations of SPEC §2.5: closed intervals, deltas, point
//! intervals, equal endpoints; inverses and the index ranges derived from them.

use flowy::engine::allen::{candidate_range, holds, inverse, Endpoint};
use flowy::query::plan::AllenOp::{self, *};
use proptest::prelude::*;

const X: (i64, i64) = (10, 20);

fn t(op: AllenOp, y: (i64, i64)) -> bool {
    holds(op, X, y, 0)
}

fn td(op: AllenOp, y: (i64, i64), d: u64) -> bool {
    holds(op, X, y, d)
}

#[test]
fn before() {
    assert!(t(Before, (21, 30)));
    assert!(!t(Before, (20, 30)), "touching endpoints are not before");
    assert!(t(Before, (1000, 2000)), "no delta: any gap");
    assert!(td(Before, (25, 30), 5));
    assert!(!td(Before, (26, 30), 5));
    assert!(!td(Before, (20, 30), 5), "strict inequality stays strict");
}

#[test]
fn after() {
    assert!(t(After, (0, 9)));
    assert!(!t(After, (0, 10)));
    assert!(td(After, (0, 7), 3));
    assert!(!td(After, (0, 6), 3));
    assert!(!td(After, (0, 10), 3));
}

#[test]
fn meets() {
    assert!(t(Meets, (20, 30)));
    assert!(!t(Meets, (21, 30)));
    assert!(!t(Meets, (19, 30)));
    assert!(td(Meets, (21, 30), 1));
    assert!(td(Meets, (19, 30), 1));
    assert!(!td(Meets, (22, 30), 1));
}

#[test]
fn met_by() {
    assert!(t(MetBy, (0, 10)));
    assert!(!t(MetBy, (0, 9)));
    assert!(td(MetBy, (0, 8), 2));
    assert!(td(MetBy, (0, 12), 2));
    assert!(!td(MetBy, (0, 13), 2));
}

#[test]
fn overlaps() {
    assert!(t(Overlaps, (15, 25)));
    assert!(!t(Overlaps, (10, 25)), "xs < ys is strict");
    assert!(!t(Overlaps, (15, 20)), "xe < ye is strict");
    assert!(!t(Overlaps, (20, 25)), "ys < xe is strict");
    assert!(!td(Overlaps, (10, 25), 100), "delta changes nothing");
    assert!(td(Overlaps, (15, 25), 100));
}

#[test]
fn overlapped_by() {
    assert!(t(OverlappedBy, (5, 15)));
    assert!(!t(OverlappedBy, (5, 20)));
    assert!(!t(OverlappedBy, (10, 15)));
    assert!(!t(OverlappedBy, (5, 10)));
    assert!(!td(OverlappedBy, (5, 20), 100));
}

#[test]
fn starts() {
    assert!(t(Starts, (10, 30)));
    assert!(!t(Starts, (10, 20)), "same end is equals, not starts");
    assert!(!t(Starts, (11, 30)));
    assert!(td(Starts, (11, 30), 1));
    assert!(td(Starts, (9, 30), 1));
    assert!(!td(Starts, (12, 30), 1));
    assert!(!td(Starts, (11, 20), 1), "end inequality stays strict");
}

#[test]
fn started_by() {
    assert!(t(StartedBy, (10, 15)));
    assert!(!t(StartedBy, (10, 20)));
    assert!(!t(StartedBy, (11, 15)));
    assert!(td(StartedBy, (12, 15), 2));
    assert!(!td(StartedBy, (13, 15), 2));
}

#[test]
fn during() {
    assert!(t(During, (5, 25)));
    assert!(!t(During, (10, 25)));
    assert!(!t(During, (5, 20)));
    assert!(!td(During, (10, 25), 100));
}

#[test]
fn contains() {
    assert!(t(Contains, (12, 18)));
    assert!(!t(Contains, (10, 18)));
    assert!(!t(Contains, (12, 20)));
    assert!(t(Contains, (15, 15)), "a point strictly inside");
    assert!(!td(Contains, (10, 18), 100));
}

#[test]
fn finishes() {
    assert!(t(Finishes, (5, 20)));
    assert!(!t(Finishes, (10, 20)));
    assert!(!t(Finishes, (5, 21)));
    assert!(td(Finishes, (5, 21), 1));
    assert!(td(Finishes, (5, 19), 1));
    assert!(!td(Finishes, (5, 22), 1));
}

#[test]
fn finished_by() {
    assert!(t(FinishedBy, (15, 20)));
    assert!(!t(FinishedBy, (10, 20)));
    assert!(td(FinishedBy, (15, 19), 1));
    assert!(!td(FinishedBy, (15, 18), 1));
}

#[test]
fn equals() {
    assert!(t(Equals, (10, 20)));
    assert!(!t(Equals, (10, 21)));
    assert!(!t(Equals, (9, 20)));
    assert!(td(Equals, (11, 21), 1));
    assert!(td(Equals, (9, 19), 1));
    assert!(!td(Equals, (9, 22), 1));
}

#[test]
fn point_intervals_are_evaluated_literally() {
    let p = (5, 5);
    // Two equal points: equals, meets and met-by all hold.
    let all = [
        Before,
        After,
        Meets,
        MetBy,
        Overlaps,
        OverlappedBy,
        Starts,
        StartedBy,
        During,
        Contains,
        Finishes,
        FinishedBy,
        Equals,
    ];
    let holding: Vec<AllenOp> = all
        .iter()
        .copied()
        .filter(|op| holds(*op, p, p, 0))
        .collect();
    assert_eq!(holding, vec![Meets, MetBy, Equals]);
    // A point at the start of an interval: starts and meets.
    let holding: Vec<AllenOp> = all
        .iter()
        .copied()
        .filter(|op| holds(*op, p, (5, 10), 0))
        .collect();
    assert_eq!(holding, vec![Meets, Starts]);
    // A point at the end of an interval: finishes and met by.
    let holding: Vec<AllenOp> = all
        .iter()
        .copied()
        .filter(|op| holds(*op, (10, 10), (5, 10), 0))
        .collect();
    assert_eq!(holding, vec![MetBy, Finishes]);
    // A point strictly inside: during only.
    let holding: Vec<AllenOp> = all
        .iter()
        .copied()
        .filter(|op| holds(*op, (7, 7), (5, 10), 0))
        .collect();
    assert_eq!(holding, vec![During]);
    // Points one apart: before / after.
    assert!(holds(Before, (5, 5), (6, 6), 0));
    assert!(holds(After, (6, 6), (5, 5), 0));
    assert!(holds(Before, (5, 5), (6, 6), 1));
}

const ALL: [AllenOp; 13] = [
    Before,
    After,
    Meets,
    MetBy,
    Overlaps,
    OverlappedBy,
    Starts,
    StartedBy,
    During,
    Contains,
    Finishes,
    FinishedBy,
    Equals,
];

fn interval() -> impl Strategy<Value = (i64, i64)> {
    (0i64..40, 0i64..15).prop_map(|(s, d)| (s, s + d))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn inverse_swaps_operands_exactly(x in interval(), y in interval(), op in 0usize..13, d in 0u64..6) {
        let op = ALL[op];
        prop_assert_eq!(holds(op, x, y, d), holds(inverse(op), y, x, d));
        prop_assert_eq!(inverse(inverse(op)), op);
    }

    #[test]
    fn candidate_range_contains_every_match(y in interval(), z in interval(), op in 0usize..13, d in 0u64..6) {
        let op = ALL[op];
        if holds(op, y, z, d) {
            let (which, lo, hi) = candidate_range(op, z, d, 15);
            let v = match which { Endpoint::Start => y.0, Endpoint::End => y.1 };
            prop_assert!(lo <= v && v <= hi, "{:?} y={:?} z={:?} d={} range={:?}", op, y, z, d, (which, lo, hi));
        }
    }
}
