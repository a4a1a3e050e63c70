//! Running aggregates of an open group (SPEC §2.4). Absent values are
//! skipped; `plain` takes the first contributing member's value as is.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::sync::Arc;

use crate::query::plan::{AggFunc, AggregatePlan};
use crate::value::{Value, F64};

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
    Union(BTreeSet<Value>),
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
            AggFunc::Union => AggState::Union(BTreeSet::new()),
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
            AggState::Union(set) => match v {
                Value::Set(s) => set.extend(s.iter().cloned()),
                other => {
                    set.insert(other);
                }
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
            AggState::Union(set) => Some(Value::Set(Arc::new(set))),
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
            AggState::Union(set) => Some(Value::Set(Arc::new(set.clone()))),
            AggState::BitOr(v) | AggState::BitAnd(v) => v.map(Value::Uint),
            AggState::Plain(v) => v.clone().flatten(),
        }
    }
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

    /// The final values, moving accumulated sets out instead of copying.
    pub fn into_values(self) -> impl Iterator<Item = Option<Value>> {
        self.states.into_iter().map(AggState::into_value)
    }
}
