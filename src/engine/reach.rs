//! How long a stored group stays joinable, from the merger's Allen
//! relations alone (SPEC §3.2: stored groups are dropped when `W` passes
//! `etime + horizon`, "or earlier where the relations bound it").
//!
//! The rule relied on: a stored group `g` can only join tuples formed when
//! a *later* group `h` arrives, and every relation but `>` without a delta
//! bounds `h.stime <= g.etime + reach`. So once no group that can still
//! arrive starts at or before `g.etime + reach`, `g` can be dropped without
//! changing any result. Without a time bound (no relation between two of
//! the module's branches, `>` without delta, an `OR` with an unbounded
//! side, a `NOT`) the reach is unbounded and only the horizon applies.

use crate::query::plan::{AllenOp, MergeModule, MergeRule};

/// Reach of `X op Y [delta D]` for a candidate X after a stored Y: the
/// largest `xs − ye` the relation allows (`None` = unbounded).
fn allen_reach(op: AllenOp, delta: Option<u64>) -> Option<i64> {
    let d = i64::try_from(delta.unwrap_or(0)).unwrap_or(i64::MAX);
    match op {
        // X ends before Y starts, so X starts before Y ends.
        AllenOp::Before => Some(0),
        // `ye < xs`, and `xs − ye <= D` only with a delta.
        AllenOp::After => delta.map(|_| d),
        // |ys − xe| <= D, |xs − ye| <= D, |xs − ys| <= D, |xe − ye| <= D:
        // each puts xs at most D after ye.
        AllenOp::Meets
        | AllenOp::MetBy
        | AllenOp::Starts
        | AllenOp::StartedBy
        | AllenOp::Finishes
        | AllenOp::Equals => Some(d),
        // X and Y intersect, or X starts first.
        AllenOp::Overlaps
        | AllenOp::OverlappedBy
        | AllenOp::During
        | AllenOp::Contains
        | AllenOp::FinishedBy => Some(0),
    }
}

/// Reach of a candidate in branch `h` after a stored group in branch `g`
/// under `rule`, when the rule holds.
fn rule_reach(rule: &MergeRule, h: usize, g: usize) -> Option<i64> {
    match rule {
        MergeRule::Allen(a) if a.x == h && a.y == g => allen_reach(a.op, a.delta),
        MergeRule::Allen(a) if a.x == g && a.y == h => {
            allen_reach(crate::engine::allen::inverse(a.op), a.delta)
        }
        // Every conjunct holds: the tightest bound applies.
        MergeRule::And(rules) => rules.iter().filter_map(|r| rule_reach(r, h, g)).min(),
        // Any alternative may hold: all must be bounded.
        MergeRule::Or(rules) => rules
            .iter()
            .map(|r| rule_reach(r, h, g))
            .collect::<Option<Vec<i64>>>()?
            .into_iter()
            .max(),
        MergeRule::Allen(_) | MergeRule::Field(_) | MergeRule::Not(_) => None,
    }
}

/// Per plan branch (`n` of them): how far after a stored group's `etime`
/// a group of the module's other branches can still start and join it.
/// `None` for branches outside the module or without a bound.
pub fn module_reach(module: &MergeModule, n: usize) -> Vec<Option<i64>> {
    let mut out = vec![None; n];
    for &g in &module.branches {
        let per_partner: Option<Vec<i64>> = module
            .branches
            .iter()
            .filter(|&&h| h != g)
            .map(|&h| {
                module
                    .rules
                    .iter()
                    .filter_map(|r| rule_reach(r, h, g))
                    .min()
            })
            .collect();
        if let (Some(slot), Some(reach)) = (out.get_mut(g), per_partner) {
            *slot = reach.into_iter().max();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::plan::AllenRule;

    fn allen(x: usize, op: AllenOp, y: usize, delta: Option<u64>) -> MergeRule {
        MergeRule::Allen(AllenRule { x, op, y, delta })
    }

    fn module(rules: Vec<MergeRule>) -> MergeModule {
        MergeModule {
            name: "m".into(),
            branches: vec![0, 1],
            rules,
        }
    }

    #[test]
    fn overlapping_relations_bound_both_sides() {
        // http-download: B oi A OR B d A OR B f A OR B = A.
        let m = module(vec![MergeRule::Or(vec![
            allen(1, AllenOp::OverlappedBy, 0, None),
            allen(1, AllenOp::During, 0, None),
            allen(1, AllenOp::Finishes, 0, None),
            allen(1, AllenOp::Equals, 0, Some(500)),
        ])]);
        assert_eq!(module_reach(&m, 3), vec![Some(500), Some(500), None]);
    }

    #[test]
    fn after_without_delta_is_unbounded_one_way() {
        // A > B: A starts after B ends, any time later; B before A.
        let m = module(vec![allen(0, AllenOp::After, 1, None)]);
        assert_eq!(module_reach(&m, 2), vec![Some(0), None]);
        let m = module(vec![allen(0, AllenOp::After, 1, Some(2000))]);
        assert_eq!(module_reach(&m, 2), vec![Some(0), Some(2000)]);
    }

    #[test]
    fn a_conjunct_bounds_an_unbounded_or_and_field_rules_do_not() {
        let unbounded = MergeRule::Or(vec![
            allen(0, AllenOp::After, 1, None),
            allen(0, AllenOp::Meets, 1, None),
        ]);
        let m = module(vec![unbounded.clone()]);
        assert_eq!(module_reach(&m, 2)[1], None);
        let m = module(vec![unbounded, allen(1, AllenOp::Overlaps, 0, None)]);
        assert_eq!(module_reach(&m, 2), vec![Some(0), Some(0)]);
        let m = module(vec![MergeRule::Not(Box::new(allen(
            0,
            AllenOp::Overlaps,
            1,
            None,
        )))]);
        assert_eq!(module_reach(&m, 2), vec![None, None]);
    }
}
