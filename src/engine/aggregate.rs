//! Running aggregates of an open group (SPEC §2.4). Absent values are
//! skipped; `plain` takes the first contributing member's value as is.

use std::cmp::Ordering;

use crate::query::plan::{AggFunc, AggregatePlan};
use crate::value::{sort_dedup, Value, ValueSet, F64};

/// The accumulator of one aggregate slot.
#[derive(Clone, Debug)]
pub enum AggState {
    SumUint(u64),
    SumFloat(f64),
    Count(u64),
    Min(Option<Value>),
    Max(Option<Value>),
    Avg {
        sum: f64,
        n: u64,
    },
    /// Members seen so far, unsorted and possibly repeated (see [`union_add`]).
    Union(Vec<Value>),
    BitOr(Option<u64>),
    BitAnd(Option<u64>),
    First(Option<Value>),
    Last(Option<Value>),
    /// `None` until the first contributing member; then its value (maybe absent).
    Plain(Option<Option<Value>>),
}

impl AggState {
    pub fn new(func: AggFunc) -> Self {
        match func {
            AggFunc::Sum => AggState::SumUint(0),
            AggFunc::Count => AggState::Count(0),
            AggFunc::Min => AggState::Min(None),
            AggFunc::Max => AggState::Max(None),
            AggFunc::Avg => AggState::Avg { sum: 0.0, n: 0 },
            AggFunc::Union => AggState::Union(Vec::new()),
            AggFunc::BitOr => AggState::BitOr(None),
            AggFunc::BitAnd => AggState::BitAnd(None),
            AggFunc::First => AggState::First(None),
            AggFunc::Last => AggState::Last(None),
            AggFunc::Plain => AggState::Plain(None),
        }
    }

    /// Fold one member's value of the aggregated field in.
    pub fn update(&mut self, v: Option<Value>) {
        if let AggState::Plain(slot) = self {
            if slot.is_none() {
                *slot = Some(v);
            }
            return;
        }
        let Some(v) = v else { return };
        match self {
            AggState::SumUint(s) => match v {
                Value::Uint(u) => *s = s.saturating_add(u),
                other => {
                    if let Some(f) = other.as_number() {
                        *self = AggState::SumFloat(*s as f64 + f);
                    }
                }
            },
            AggState::SumFloat(s) => *s += v.as_number().unwrap_or(0.0),
            AggState::Count(n) => *n += 1,
            AggState::Min(m) => keep_if(m, v, Ordering::Less),
            AggState::Max(m) => keep_if(m, v, Ordering::Greater),
            AggState::Avg { sum, n } => {
                if let Some(f) = v.as_number() {
                    *sum += f;
                    *n += 1;
                }
            }
            AggState::Union(acc) => match v {
                Value::Set(s) => s.iter().for_each(|m| union_add(acc, m.clone())),
                other => union_add(acc, other),
            },
            AggState::BitOr(acc) => {
                if let Some(u) = v.as_u64() {
                    *acc = Some(acc.map_or(u, |a| a | u));
                }
            }
            AggState::BitAnd(acc) => {
                if let Some(u) = v.as_u64() {
                    *acc = Some(acc.map_or(u, |a| a & u));
                }
            }
            AggState::First(slot) => {
                if slot.is_none() {
                    *slot = Some(v);
                }
            }
            AggState::Last(slot) => *slot = Some(v),
            AggState::Plain(_) => {}
        }
    }

    /// Like [`AggState::value`], but moves a `union` set out.
    pub fn into_value(self) -> Option<Value> {
        match self {
            AggState::Union(acc) => Some(Value::Set(ValueSet::from_vec(acc))),
            other => other.value(),
        }
    }

    /// The aggregate's value for the closed group.
    pub fn value(&self) -> Option<Value> {
        match self {
            AggState::SumUint(s) => Some(Value::Uint(*s)),
            AggState::SumFloat(s) => Some(Value::Float(F64(*s))),
            AggState::Count(n) => Some(Value::Uint(*n)),
            AggState::Min(v) | AggState::Max(v) | AggState::First(v) | AggState::Last(v) => {
                v.clone()
            }
            AggState::Avg { sum, n } => (*n > 0).then(|| Value::Float(F64(*sum / *n as f64))),
            AggState::Union(acc) => Some(Value::Set(ValueSet::from_vec(acc.clone()))),
            AggState::BitOr(v) | AggState::BitAnd(v) => v.map(Value::Uint),
            AggState::Plain(v) => v.clone().flatten(),
        }
    }
}

/// Add a member to a `union` accumulator. Members are only pushed (a
/// `BTreeSet` insert allocated and chased pointers per record); the set is
/// sorted once when the group closes. A repeat of the last member (a chain
/// of flows on one port) is skipped, and a full buffer is sorted and
/// deduplicated before it grows, so groups with few distinct members stay
/// small. Growing whenever that leaves it over half full keeps the
/// compactions amortised O(log n) per member.
fn union_add(acc: &mut Vec<Value>, v: Value) {
    if acc.last() == Some(&v) {
        return;
    }
    const COMPACT_FROM: usize = 16;
    if acc.len() == acc.capacity() && acc.len() >= COMPACT_FROM {
        sort_dedup(acc);
        if acc.len() > acc.capacity() / 2 {
            acc.reserve(acc.capacity());
        }
    }
    acc.push(v);
}

/// Replace `slot` with `v` when `v` orders `want` against it. Incomparable
/// values (IPv4 vs IPv6) fall back to the structural order so the result
/// does not depend on arrival order.
fn keep_if(slot: &mut Option<Value>, v: Value, want: Ordering) {
    let replace = match slot {
        None => true,
        Some(cur) => v.compare(cur).unwrap_or_else(|| v.cmp(cur)) == want,
    };
    if replace {
        *slot = Some(v);
    }
}

/// The aggregates of one open group.
#[derive(Clone, Debug)]
pub struct Aggregates {
    states: Vec<AggState>,
}

impl Aggregates {
    pub fn new(plans: &[AggregatePlan]) -> Self {
        Aggregates {
            states: plans.iter().map(|a| AggState::new(a.func)).collect(),
        }
    }

    /// Fold a member in. `via(i)` tells whether the record joined through
    /// module `i` (module-qualified aggregates only count those records).
    pub fn update(
        &mut self,
        plans: &[AggregatePlan],
        rec: &crate::record::Record,
        via: impl Fn(usize) -> bool,
    ) {
        for (state, plan) in self.states.iter_mut().zip(plans) {
            if plan.module.is_none_or(&via) {
                state.update(rec.get(plan.field));
            }
        }
    }

    pub fn values(&self) -> impl Iterator<Item = Option<Value>> + '_ {
        self.states.iter().map(AggState::value)
    }

    /// The final values, moving accumulated sets out instead of copying;
    /// leaves the accumulators empty, their memory kept for [`Aggregates::reset`].
    pub fn drain_values(&mut self) -> impl Iterator<Item = Option<Value>> + '_ {
        self.states.drain(..).map(AggState::into_value)
    }

    /// Start over for a new group, reusing the accumulators' memory.
    pub fn reset(&mut self, plans: &[AggregatePlan]) {
        self.states.clear();
        self.states
            .extend(plans.iter().map(|a| AggState::new(a.func)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn union_of(vals: impl IntoIterator<Item = u64>) -> Option<Value> {
        let mut st = AggState::new(AggFunc::Union);
        for u in vals {
            st.update(Some(Value::Uint(u)));
        }
        assert_eq!(st.value(), st.clone().into_value());
        st.into_value()
    }

    #[test]
    fn union_matches_a_sorted_dedup_of_the_members() {
        let inputs: Vec<Vec<u64>> = vec![
            vec![],
            vec![3, 1, 3, 3, 2],
            (0..100).map(|i| i % 7).collect(),
            (0..1000).rev().collect(),
            (0..500).map(|i| (i * 7919) % 31).collect(),
        ];
        for vals in inputs {
            let want: ValueSet = vals.iter().map(|&u| Value::Uint(u)).collect();
            assert_eq!(union_of(vals.clone()), Some(Value::Set(want)), "{vals:?}");
        }
    }

    #[test]
    fn union_stays_small_with_few_distinct_members() {
        let mut acc = Vec::new();
        for i in 0..10_000u64 {
            union_add(&mut acc, Value::Uint(i % 20));
        }
        assert!(acc.capacity() <= 64, "{}", acc.capacity());
    }

    #[test]
    fn union_flattens_set_members() {
        let mut st = AggState::new(AggFunc::Union);
        st.update(Some(Value::Set(
            [5, 1].map(Value::Uint).into_iter().collect(),
        )));
        st.update(Some(Value::Uint(3)));
        st.update(None);
        let want: ValueSet = [1, 3, 5].map(Value::Uint).into_iter().collect();
        assert_eq!(st.into_value(), Some(Value::Set(want)));
    }

    /// A reset accumulator set starts from scratch in the old memory.
    #[test]
    fn drained_aggregates_reset_for_a_new_group() {
        let plans = [AggregatePlan {
            name: "n".into(),
            func: AggFunc::Count,
            field: crate::record::Field::Bytes,
            module: None,
        }];
        let rec = crate::record::Record::from(crate::record::RecordFields {
            bytes: Some(10),
            ..Default::default()
        });
        let mut aggs = Aggregates::new(&plans);
        aggs.update(&plans, &rec, |_| true);
        aggs.update(&plans, &rec, |_| true);
        assert_eq!(
            aggs.drain_values().collect::<Vec<_>>(),
            [Some(Value::Uint(2))]
        );
        assert_eq!(aggs.values().count(), 0);
        aggs.reset(&plans);
        aggs.update(&plans, &rec, |_| true);
        assert_eq!(
            aggs.drain_values().collect::<Vec<_>>(),
            [Some(Value::Uint(1))]
        );
    }
}
