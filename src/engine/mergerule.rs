//! Evaluation of merger rules (SPEC §2.5) over a partial binding of
//! branches to groups.

use std::borrow::Cow;
use std::sync::Arc;

use crate::engine::allen;
use crate::engine::filter::{compare_values, delta_holds, prefix_test};
use crate::engine::Group;
use crate::query::plan::{FieldRule, MergeOperand, MergeRule};
use crate::value::Value;

/// Groups bound so far, indexed by branch (`None` = unbound).
pub type Binding<'a> = [Option<&'a Arc<Group>>];

/// Evaluate a rule; anything reading an unbound branch or an absent field
/// compares false.
pub fn eval(rule: &MergeRule, b: &Binding<'_>) -> bool {
    match rule {
        MergeRule::Allen(a) => match (bound(b, a.x), bound(b, a.y)) {
            (Some(x), Some(y)) => {
                allen::holds(a.op, (x.stime, x.etime), (y.stime, y.etime), a.delta)
            }
            _ => false,
        },
        MergeRule::Field(f) => eval_field(f, b),
        MergeRule::And(rs) => rs.iter().all(|r| eval(r, b)),
        MergeRule::Or(rs) => rs.iter().any(|r| eval(r, b)),
        MergeRule::Not(r) => !eval(r, b),
    }
}

fn bound<'a>(b: &Binding<'a>, branch: usize) -> Option<&'a Arc<Group>> {
    b.get(branch).copied().flatten()
}

/// An operand's value, borrowed where it is stored: rules run per join
/// candidate, and cloning a set operand touches its shared reference count.
fn operand<'a>(op: &'a MergeOperand, b: &Binding<'a>) -> Option<Cow<'a, Value>> {
    match op {
        MergeOperand::Field { branch, field } => bound(b, *branch)?.get_ref(*field),
        MergeOperand::Lit(v) => Some(Cow::Borrowed(v)),
        MergeOperand::Set(s) => Some(Cow::Owned(Value::Set(s.clone()))),
        MergeOperand::Prefix(_) => None,
    }
}

fn eval_field(f: &FieldRule, b: &Binding<'_>) -> bool {
    let Some(lhs) = operand(&f.lhs, b) else {
        return false;
    };
    if let MergeOperand::Prefix(p) = &f.rhs {
        return prefix_test(f.op, &lhs, p);
    }
    let Some(rhs) = operand(&f.rhs, b) else {
        return false;
    };
    match f.delta {
        Some(d) => delta_holds(f.op, &lhs, &rhs, d),
        None => compare_values(f.op, &lhs, &rhs),
    }
}

/// Branches a rule reads, in first-mention order, without repeats.
pub fn branches_of(rule: &MergeRule, out: &mut Vec<usize>) {
    let mut add = |x: usize| {
        if !out.contains(&x) {
            out.push(x);
        }
    };
    match rule {
        MergeRule::Allen(a) => {
            add(a.x);
            add(a.y);
        }
        MergeRule::Field(f) => {
            for op in [&f.lhs, &f.rhs] {
                if let MergeOperand::Field { branch, .. } = op {
                    add(*branch);
                }
            }
        }
        MergeRule::And(rs) | MergeRule::Or(rs) => rs.iter().for_each(|r| branches_of(r, out)),
        MergeRule::Not(r) => branches_of(r, out),
    }
}

/// The top-level conjuncts of a module's rule lines (nested `And`s flattened).
pub fn conjuncts(rules: &[MergeRule]) -> Vec<MergeRule> {
    let mut out = Vec::new();
    for r in rules {
        flatten(r, &mut out);
    }
    out
}

fn flatten(r: &MergeRule, out: &mut Vec<MergeRule>) {
    match r {
        MergeRule::And(rs) => rs.iter().for_each(|x| flatten(x, out)),
        other => out.push(other.clone()),
    }
}
