//! Allen's interval relations as SPEC §2.5 defines them: closed intervals
//! in ms, a delta relaxing endpoint equalities and bounding the gap of
//! before/after, every relation evaluated literally.

use crate::query::plan::AllenOp;

/// Does `X op Y (delta d)` hold for X = [xs, xe], Y = [ys, ye]?
///
/// The plan stores an absent delta as 0, so for before/after a zero delta
/// means "no bound on the gap" (otherwise a plain `X < Y` could never hold).
pub fn holds(op: AllenOp, x: (i64, i64), y: (i64, i64), d: u64) -> bool {
    let (xs, xe) = (i128::from(x.0), i128::from(x.1));
    let (ys, ye) = (i128::from(y.0), i128::from(y.1));
    let d = i128::from(d);
    let near = |a: i128, b: i128| (a - b).abs() <= d;
    match op {
        AllenOp::Before => xe < ys && (d == 0 || ys - xe <= d),
        AllenOp::After => ye < xs && (d == 0 || xs - ye <= d),
        AllenOp::Meets => near(ys, xe),
        AllenOp::MetBy => near(xs, ye),
        AllenOp::Overlaps => xs < ys && ys < xe && xe < ye,
        AllenOp::OverlappedBy => ys < xs && xs < ye && ye < xe,
        AllenOp::Starts => near(xs, ys) && xe < ye,
        AllenOp::StartedBy => near(xs, ys) && xe > ye,
        AllenOp::During => ys < xs && xe < ye,
        AllenOp::Contains => xs < ys && ye < xe,
        AllenOp::Finishes => near(xe, ye) && xs > ys,
        AllenOp::FinishedBy => near(xe, ye) && xs < ys,
        AllenOp::Equals => near(xs, ys) && near(xe, ye),
    }
}

/// The relation with the operands swapped: `X op Y ⇔ Y inverse(op) X`,
/// exactly, deltas included.
pub fn inverse(op: AllenOp) -> AllenOp {
    use AllenOp::*;
    match op {
        Before => After,
        After => Before,
        Meets => MetBy,
        MetBy => Meets,
        Overlaps => OverlappedBy,
        OverlappedBy => Overlaps,
        Starts => StartedBy,
        StartedBy => Starts,
        During => Contains,
        Contains => During,
        Finishes => FinishedBy,
        FinishedBy => Finishes,
        Equals => Equals,
    }
}

/// Which endpoint of a candidate interval a range constrains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Start,
    End,
}

/// For `Y op Z` with Z = [zs, ze] known: an inclusive range that Y's start
/// or end must lie in. Every Y satisfying the relation lies in the range
/// (the range may admit more; callers re-check the relation).
/// `max_dur` bounds `ye − ys` over the candidates (for `di`).
pub fn candidate_range(op: AllenOp, z: (i64, i64), d: u64, max_dur: i64) -> (Endpoint, i64, i64) {
    let (zs, ze) = z;
    let d = i64::try_from(d).unwrap_or(i64::MAX);
    let sub = i64::saturating_sub;
    let add = i64::saturating_add;
    match op {
        AllenOp::Before if d == 0 => (Endpoint::End, i64::MIN, sub(zs, 1)),
        AllenOp::Before => (Endpoint::End, sub(zs, d), sub(zs, 1)),
        AllenOp::After if d == 0 => (Endpoint::Start, add(ze, 1), i64::MAX),
        AllenOp::After => (Endpoint::Start, add(ze, 1), add(ze, d)),
        AllenOp::Meets => (Endpoint::End, sub(zs, d), add(zs, d)),
        AllenOp::MetBy => (Endpoint::Start, sub(ze, d), add(ze, d)),
        // ys < zs < ye < ze
        AllenOp::Overlaps => (Endpoint::End, add(zs, 1), sub(ze, 1)),
        // zs < ys < ze < ye
        AllenOp::OverlappedBy => (Endpoint::Start, add(zs, 1), sub(ze, 1)),
        AllenOp::Starts | AllenOp::StartedBy | AllenOp::Equals => {
            (Endpoint::Start, sub(zs, d), add(zs, d))
        }
        // zs < ys, ye < ze
        AllenOp::During => (Endpoint::Start, add(zs, 1), sub(ze, 1)),
        // ys < zs and ye > ze, with ye ≤ ys + max_dur
        AllenOp::Contains => (Endpoint::Start, add(sub(ze, max_dur.max(0)), 1), sub(zs, 1)),
        AllenOp::Finishes | AllenOp::FinishedBy => (Endpoint::End, sub(ze, d), add(ze, d)),
    }
}
