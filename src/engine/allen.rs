//! Allen's interval relations as SPEC §2.5 defines them: closed intervals
//! in ms, a delta relaxing endpoint equalities and bounding the gap of
//! before/after, every relation evaluated literally.

use crate::query::plan::AllenOp;

/// Does `X op Y (delta d)` hold for X = [xs, xe], Y = [ys, ye]?
///
/// `d` is `None` without a delta clause: before/after then put no bound on
/// the gap, and every other relation uses D = 0. `Some(0)` on before/after
/// bounds a gap that must be positive, so it never holds.
pub fn holds(op: AllenOp, x: (i64, i64), y: (i64, i64), d: Option<u64>) -> bool {
    let (xs, xe) = (i128::from(x.0), i128::from(x.1));
    let (ys, ye) = (i128::from(y.0), i128::from(y.1));
    let gap_ok = |gap: i128| d.is_none_or(|d| gap <= i128::from(d));
    let d = i128::from(d.unwrap_or(0));
    let near = |a: i128, b: i128| (a - b).abs() <= d;
    match op {
        AllenOp::Before => xe < ys && gap_ok(ys - xe),
        AllenOp::After => ye < xs && gap_ok(xs - ye),
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
/// (the range may admit more; callers re-check the relation). The range is
/// empty (`lo > hi`) when nothing can match, e.g. before/after with
/// `Some(0)`. `max_dur` bounds `ye − ys` over the candidates (for `di`).
pub fn candidate_range(
    op: AllenOp,
    z: (i64, i64),
    d: Option<u64>,
    max_dur: i64,
) -> (Endpoint, i64, i64) {
    // Wide arithmetic, clamped at the end: clamping a bound to the i64
    // range never excludes an i64 endpoint.
    let (zs, ze) = (i128::from(z.0), i128::from(z.1));
    let min = i128::from(i64::MIN);
    let max = i128::from(i64::MAX);
    let gap = d.map(i128::from);
    let d = i128::from(d.unwrap_or(0));
    let (which, lo, hi) = match op {
        // ye < zs, and zs − ye ≤ gap with a delta.
        AllenOp::Before => (Endpoint::End, gap.map_or(min, |g| zs - g), zs - 1),
        // ys > ze, and ys − ze ≤ gap with a delta.
        AllenOp::After => (Endpoint::Start, ze + 1, gap.map_or(max, |g| ze + g)),
        AllenOp::Meets => (Endpoint::End, zs - d, zs + d),
        AllenOp::MetBy => (Endpoint::Start, ze - d, ze + d),
        // ys < zs < ye < ze
        AllenOp::Overlaps => (Endpoint::End, zs + 1, ze - 1),
        // zs < ys < ze < ye
        AllenOp::OverlappedBy => (Endpoint::Start, zs + 1, ze - 1),
        AllenOp::Starts | AllenOp::StartedBy | AllenOp::Equals => (Endpoint::Start, zs - d, zs + d),
        // zs < ys, ye < ze
        AllenOp::During => (Endpoint::Start, zs + 1, ze - 1),
        // ys < zs and ye > ze, with ye ≤ ys + max_dur
        AllenOp::Contains => {
            let max_dur = i128::from(max_dur.max(0));
            (Endpoint::Start, ze - max_dur + 1, zs - 1)
        }
        AllenOp::Finishes | AllenOp::FinishedBy => (Endpoint::End, ze - d, ze + d),
    };
    let clamp = |v: i128| i64::try_from(v.clamp(min, max)).unwrap_or(i64::MAX);
    (which, clamp(lo), clamp(hi))
}
