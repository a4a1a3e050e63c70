//! Join plans for the merger: starting from some bound branches, bind the
//! remaining branches of a module one at a time through an index, checking
//! each rule as soon as all its branches are bound. No nested loops over
//! whole stores unless the module gives nothing to index on.

use std::collections::VecDeque;

use std::sync::Arc;

use smallvec::SmallVec;

use crate::engine::allen::{self, candidate_range, Endpoint};
use crate::engine::filter::key_value;
use crate::engine::index::{BranchStore, HashKey, TimeRange};
use crate::engine::mergerule::{self, branches_of, conjuncts};
use crate::engine::Group;
use crate::query::plan::{AllenOp, CmpOp, GroupField, MergeModule, MergeOperand, MergeRule};

/// A group per branch (by plan branch), `None` while unbound. Inline for
/// the usual few branches: a probe allocates nothing.
pub type Binding<'a> = SmallVec<[Option<&'a Arc<Group>>; 4]>;

/// Called with each complete binding; returns false to stop the search.
pub type Visitor<'a, 'f> = dyn FnMut(&[Option<&'a Arc<Group>>]) -> bool + 'f;

/// `candidate op other (delta)` with `other` bound: one Allen relation,
/// normalised so that the candidate is its left operand.
type TimePart = (AllenOp, usize, Option<u64>);

/// How a step finds candidate groups for its branch.
#[derive(Clone, Debug, Default)]
struct Access {
    /// Hash index of the branch's store and the already-bound
    /// (branch, field)s whose values form the probe key.
    hash: Option<(usize, Vec<(usize, GroupField)>)>,
    /// Allen relations any match satisfies one of (one part: a conjunct; several:
    /// an `OR`). Candidates come from the union of their time ranges, each
    /// visited once (in the first range holding it). Empty: no time bound.
    time: Vec<TimePart>,
}

#[derive(Clone, Debug)]
struct Step {
    branch: usize,
    access: Access,
    /// Conjuncts whose branches are all bound once this step binds.
    checks: Vec<usize>,
}

/// A precomputed join order for one module and one set of initially bound
/// branches.
#[derive(Clone, Debug)]
pub struct JoinPlan {
    conj: Vec<MergeRule>,
    initial_checks: Vec<usize>,
    steps: Vec<Step>,
}

impl JoinPlan {
    /// Plan the completion of `module` given `initial` bound branches,
    /// registering the hash indexes it needs in `stores` (by branch).
    pub fn new(module: &MergeModule, initial: &[usize], stores: &mut [BranchStore]) -> Self {
        let conj = conjuncts(&module.rules);
        let conj_branches: Vec<Vec<usize>> = conj
            .iter()
            .map(|r| {
                let mut v = Vec::new();
                branches_of(r, &mut v);
                v
            })
            .collect();
        let order = bfs_order(&module.branches, initial, &conj_branches);
        let mut bound: Vec<usize> = initial.to_vec();
        let mut steps = Vec::with_capacity(order.len());
        for &y in &order {
            let access = choose_access(y, &bound, &conj, stores);
            steps.push(Step {
                branch: y,
                access,
                checks: Vec::new(),
            });
            bound.push(y);
        }
        let mut initial_checks = Vec::new();
        for (i, bs) in conj_branches.iter().enumerate() {
            // The stage at which every branch of the conjunct is bound; a
            // branch outside the module is never bound, so such a rule is
            // checked last (and reads as absent).
            let stage = bs
                .iter()
                .map(|b| {
                    if initial.contains(b) {
                        0
                    } else {
                        order
                            .iter()
                            .position(|x| x == b)
                            .map_or(order.len(), |p| p + 1)
                    }
                })
                .max()
                .unwrap_or(0);
            match stage.checked_sub(1) {
                None => initial_checks.push(i),
                Some(s) => match steps.get_mut(s) {
                    Some(step) => step.checks.push(i),
                    None => initial_checks.push(i),
                },
            }
        }
        JoinPlan {
            conj,
            initial_checks,
            steps,
        }
    }

    /// Enumerate every completion of `binding` (initial branches bound) over
    /// the stores; `f` returns false to stop. Returns false when stopped.
    pub fn search<'a>(
        &self,
        stores: &'a [BranchStore],
        binding: &mut Binding<'a>,
        f: &mut Visitor<'a, '_>,
    ) -> bool {
        if binding.len() < stores.len() {
            binding.resize(stores.len(), None);
        }
        if !self
            .initial_checks
            .iter()
            .all(|&i| mergerule::eval(&self.conj[i], binding))
        {
            return true;
        }
        self.visit(0, stores, binding, f)
    }

    /// Is there at least one completion?
    pub fn exists<'a>(&self, stores: &'a [BranchStore], binding: &mut Binding<'a>) -> bool {
        !self.search(stores, binding, &mut |_| false)
    }

    fn visit<'a>(
        &self,
        k: usize,
        stores: &'a [BranchStore],
        binding: &mut Binding<'a>,
        f: &mut Visitor<'a, '_>,
    ) -> bool {
        let Some(step) = self.steps.get(k) else {
            return f(binding);
        };
        let Some(store) = stores.get(step.branch) else {
            return true;
        };
        let mut go = |g: &'a Arc<Group>, binding: &mut Binding<'a>| -> bool {
            binding[step.branch] = Some(g);
            let keep = !step
                .checks
                .iter()
                .all(|&i| mergerule::eval(&self.conj[i], binding))
                || self.visit(k + 1, stores, binding, f);
            binding[step.branch] = None;
            keep
        };
        let mut ranges: SmallVec<[TimeRange; 4]> = SmallVec::new();
        for (op, other, delta) in &step.access.time {
            let Some(z) = binding.get(*other).copied().flatten() else {
                return true;
            };
            let z = (z.stime, z.etime);
            ranges.push(candidate_range(*op, z, *delta, store.max_duration()));
        }
        // The key's bucket is looked up once, then walked per range.
        let keyed = match &step.access.hash {
            Some((index, probes)) => match probe_key(probes, binding) {
                Some(k) => Some(store.keyed(*index, &k)),
                None => return true,
            },
            None => None,
        };
        if ranges.is_empty() {
            let all = match &keyed {
                Some(kb) => Either::Left(kb.range(None)),
                None => Either::Right(store.all()),
            };
            for g in all {
                if !go(g, binding) {
                    return false;
                }
            }
            return true;
        }
        for (i, range) in ranges.iter().enumerate() {
            let cands = match &keyed {
                Some(kb) => Either::Left(kb.range(Some(*range))),
                None => Either::Right(store.time_range(*range)),
            };
            for g in cands {
                if !in_any(&ranges[..i], g) && !go(g, binding) {
                    return false;
                }
            }
        }
        true
    }
}

/// One of two candidate iterators, without boxing.
enum Either<L, R> {
    Left(L),
    Right(R),
}

impl<T, L: Iterator<Item = T>, R: Iterator<Item = T>> Iterator for Either<L, R> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        match self {
            Either::Left(l) => l.next(),
            Either::Right(r) => r.next(),
        }
    }
}

/// Is the group's start or end inside one of the ranges?
fn in_any(ranges: &[TimeRange], g: &Group) -> bool {
    ranges.iter().any(|(which, lo, hi)| {
        let v = match which {
            Endpoint::Start => g.stime,
            Endpoint::End => g.etime,
        };
        *lo <= v && v <= *hi
    })
}

/// A plain loop: collecting an iterator of options into a `SmallVec` cost
/// a tenth of the merger's time (the same holds for `key_of` in the index).
fn probe_key(probes: &[(usize, GroupField)], binding: &[Option<&Arc<Group>>]) -> Option<HashKey> {
    let mut key = HashKey::new();
    for (b, f) in probes {
        let g = binding.get(*b).copied().flatten()?;
        key.push(key_value(g.get(*f)?));
    }
    Some(key)
}

/// Unbound branches of the module in breadth-first order over the graph
/// whose edges are rules mentioning two branches; disconnected branches
/// come last, in declared order.
fn bfs_order(branches: &[usize], initial: &[usize], conj_branches: &[Vec<usize>]) -> Vec<usize> {
    let mut remaining: Vec<usize> = branches
        .iter()
        .copied()
        .filter(|b| !initial.contains(b))
        .collect();
    let mut queue: VecDeque<usize> = initial.iter().copied().collect();
    let mut order = Vec::new();
    while !remaining.is_empty() {
        let Some(b) = queue.pop_front() else {
            let next = remaining.remove(0);
            order.push(next);
            queue.push_back(next);
            continue;
        };
        let (adjacent, rest): (Vec<usize>, Vec<usize>) = remaining.iter().partition(|r| {
            conj_branches
                .iter()
                .any(|bs| bs.contains(&b) && bs.contains(r))
        });
        remaining = rest;
        for a in adjacent {
            order.push(a);
            queue.push_back(a);
        }
    }
    order
}

/// Pick the access path for binding `y` next, given `bound` branches: a
/// hash index on the equality conjuncts with bound branches (if any),
/// narrowed by the best Allen conjunct's time range (if any).
fn choose_access(
    y: usize,
    bound: &[usize],
    conj: &[MergeRule],
    stores: &mut [BranchStore],
) -> Access {
    let mut fields = Vec::new();
    let mut probes = Vec::new();
    for r in conj {
        if let Some((fy, other)) = equality_key(r, y, bound) {
            fields.push(fy);
            probes.push(other);
        }
    }
    let hash = match stores.get_mut(y) {
        Some(store) if !fields.is_empty() => Some((store.hash_index(&fields), probes)),
        _ => None,
    };
    Access {
        hash,
        time: time_parts(y, bound, conj),
    }
}

/// The Allen conjunct(s) that bound `y`'s time best: a relation bounding it
/// on both sides, else an `OR` of relations, else a plain before/after
/// (bounded on one side only).
fn time_parts(y: usize, bound: &[usize], conj: &[MergeRule]) -> Vec<TimePart> {
    let mut one_sided = None;
    for r in conj {
        let Some(part) = allen_part(r, y, bound) else {
            continue;
        };
        let (op, _, delta) = part;
        if delta.is_none() && matches!(op, AllenOp::Before | AllenOp::After) {
            one_sided.get_or_insert(part);
            continue;
        }
        return vec![part];
    }
    if let Some(u) = conj.iter().find_map(|r| union_parts(r, y, bound)) {
        return u;
    }
    one_sided.into_iter().collect()
}

/// An `OR` conjunct each of whose alternatives relates `y` to a bound
/// branch by an Allen relation (itself or as a top-level part of an `AND`).
fn union_parts(r: &MergeRule, y: usize, bound: &[usize]) -> Option<Vec<TimePart>> {
    let MergeRule::Or(alts) = r else { return None };
    let parts = alts
        .iter()
        .map(|alt| match alt {
            MergeRule::And(rs) => rs.iter().find_map(|x| allen_part(x, y, bound)),
            other => allen_part(other, y, bound),
        })
        .collect::<Option<Vec<TimePart>>>()?;
    (!parts.is_empty()).then_some(parts)
}

/// An Allen rule between `y` and a bound branch, normalised so that `y` is
/// the left operand.
fn allen_part(r: &MergeRule, y: usize, bound: &[usize]) -> Option<TimePart> {
    let MergeRule::Allen(a) = r else { return None };
    if a.x == y && a.y != y && bound.contains(&a.y) {
        return Some((a.op, a.y, a.delta));
    }
    if a.y == y && a.x != y && bound.contains(&a.x) {
        return Some((allen::inverse(a.op), a.x, a.delta));
    }
    None
}

/// `Y.f = Z.g` (no delta) with Z bound: (Y's field, (Z, Z's field)).
fn equality_key(
    r: &MergeRule,
    y: usize,
    bound: &[usize],
) -> Option<(GroupField, (usize, GroupField))> {
    let MergeRule::Field(f) = r else { return None };
    if f.op != CmpOp::Eq || f.delta.is_some() {
        return None;
    }
    let (
        MergeOperand::Field {
            branch: b1,
            field: f1,
        },
        MergeOperand::Field {
            branch: b2,
            field: f2,
        },
    ) = (&f.lhs, &f.rhs)
    else {
        return None;
    };
    if *b1 == y && *b2 != y && bound.contains(b2) {
        Some((*f1, (*b2, *f2)))
    } else if *b2 == y && *b1 != y && bound.contains(b1) {
        Some((*f2, (*b1, *f1)))
    } else {
        None
    }
}
