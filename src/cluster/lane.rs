//! Lanes: which subjects a record is published to and which subjects a
//! query reads. Collectors and workers derive them from the same query
//! files, so they agree on the subjects without talking to each other.

use std::fmt;
use std::sync::Arc;

use crate::engine::filter::eval_rule;
use crate::query::partition::{KeySpec, PartitionKey};
use crate::query::plan::{FilterPlan, Plan};
use crate::record::Record;

/// Subjects of record batches start with this.
pub const RECORDS: &str = "flowy.records";

/// The record stream a query reads.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Records partitioned by a key's hash.
    Keyed(KeySpec),
    /// Every match is one record: records spread over partitions by id.
    Any,
    /// No key: one subject, one worker.
    Global,
}

impl Lane {
    pub fn of(plan: &Plan) -> Lane {
        match plan.partition_key() {
            PartitionKey::Keyed(k) => Lane::Keyed(k),
            PartitionKey::Any => Lane::Any,
            PartitionKey::Global(_) => Lane::Global,
        }
    }

    /// The subject token naming the lane (also part of consumer names).
    pub fn token(&self) -> String {
        match self {
            Lane::Keyed(k) => format!("k-{}", k.name()),
            Lane::Any => "any".into(),
            Lane::Global => "global".into(),
        }
    }

    pub fn is_partitioned(&self) -> bool {
        !matches!(self, Lane::Global)
    }

    /// The partition of `rec` in this lane (0 for the global lane).
    pub fn partition(&self, rec: &Record, partitions: u32) -> u32 {
        match self {
            Lane::Keyed(k) => k.partition(rec, partitions),
            // rec_ids are unique and dense: an even spread.
            Lane::Any => (rec.rec_id() % u64::from(partitions.max(1))) as u32,
            Lane::Global => 0,
        }
    }

    /// The subject of partition `p` of this lane.
    pub fn subject(&self, p: u32) -> String {
        match self {
            Lane::Global => format!("{RECORDS}.global"),
            _ => format!("{RECORDS}.{}.{p}", self.token()),
        }
    }

    /// The durable consumer of partition `p` of this lane.
    pub fn consumer(&self, p: u32) -> String {
        match self {
            Lane::Global => "flowy-global".into(),
            _ => format!("flowy-{}-{p}", self.token()),
        }
    }
}

impl fmt::Display for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lane::Keyed(k) => write!(f, "key {k}"),
            Lane::Any => f.write_str("any partition"),
            Lane::Global => f.write_str("global"),
        }
    }
}

/// The distinct lanes of a query set, in first-use order.
pub fn lanes<'a>(plans: impl IntoIterator<Item = &'a Plan>) -> Vec<Lane> {
    let mut out: Vec<Lane> = Vec::new();
    for p in plans {
        let lane = Lane::of(p);
        if !out.contains(&lane) {
            out.push(lane);
        }
    }
    out
}

/// A lane as a collector publishes it: only the records some branch of
/// the lane's queries can accept. The rest would be filtered out by every
/// worker, after crossing the bus; time still reaches the workers through
/// each batch's mark.
#[derive(Clone, Debug)]
pub struct Route {
    pub lane: Lane,
    /// The distinct filters of the lane's branches; `None` when a branch
    /// has none (it reads every record).
    filters: Option<Vec<Arc<FilterPlan>>>,
}

impl Route {
    /// Whether `rec` goes on this lane.
    #[inline]
    pub fn carries(&self, rec: &Record) -> bool {
        match &self.filters {
            None => true,
            Some(fs) => fs.iter().any(|f| eval_rule(&f.rule, rec)),
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.filters {
            None => write!(f, "{} (every record)", self.lane),
            Some(fs) => write!(
                f,
                "{} (records passing {} filter{})",
                self.lane,
                fs.len(),
                if fs.len() == 1 { "" } else { "s" }
            ),
        }
    }
}

/// The lanes of a query set with the filters that decide what each
/// carries, in first-use order.
pub fn routes<'a>(plans: impl IntoIterator<Item = &'a Plan>) -> Vec<Route> {
    let mut out: Vec<Route> = Vec::new();
    for p in plans {
        let lane = Lane::of(p);
        let i = match out.iter().position(|r| r.lane == lane) {
            Some(i) => i,
            None => {
                out.push(Route {
                    lane,
                    filters: Some(Vec::new()),
                });
                out.len() - 1
            }
        };
        let route = &mut out[i];
        for b in &p.branches {
            match (&b.filter, &mut route.filters) {
                (None, filters) => *filters = None,
                (Some(f), Some(fs)) => {
                    if !fs.iter().any(|g| g.rule == f.rule) {
                        fs.push(f.clone());
                    }
                }
                (Some(_), None) => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::compile_source;
    use crate::record::RecordFields;

    fn plan(name: &str, src: &str) -> Plan {
        compile_source(name, "q.flowy", src).expect("compiles")
    }

    fn rec(prot: u8, dstport: u16) -> Record {
        Record::from(RecordFields {
            prot: Some(prot),
            dstport: Some(dstport),
            ..RecordFields::default()
        })
    }

    const ONE: &str =
        "splitter S {}\nfilter f {\n    prot = 17\n    dstport = 53\n}\n\"input\" -> S\nS branch A -> f\n";
    const OTHER: &str =
        "splitter S {}\nfilter g {\n    dstport = 80\n}\n\"input\" -> S\nS branch A -> g\n";
    /// No filter, no key: one group of everything per window.
    const ALL: &str = "splitter S {}\ngrouper all {\n    module m {\n    }\n    aggregate count(rec_id) as n\n}\n\"input\" -> S\nS branch A -> all\n";

    #[test]
    fn a_lane_carries_what_any_of_its_filters_accepts() {
        let plans = [plan("a", ONE), plan("b", OTHER), plan("c", ONE)];
        let rs = routes(plans.iter());
        assert_eq!(rs.len(), 1, "all three are single-record queries: one lane");
        assert_eq!(
            rs[0].to_string(),
            "any partition (records passing 2 filters)"
        );
        assert!(rs[0].carries(&rec(17, 53)));
        assert!(rs[0].carries(&rec(6, 80)));
        assert!(!rs[0].carries(&rec(6, 53)));
        assert!(!rs[0].carries(&Record::default()));
    }

    #[test]
    fn a_branch_without_a_filter_makes_the_lane_carry_everything() {
        let plans = [plan("a", ONE), plan("all", ALL)];
        let rs = routes(plans.iter());
        assert_eq!(rs.len(), 2);
        assert!(!rs[0].carries(&Record::default()));
        assert!(rs[1].carries(&Record::default()));
        assert_eq!(rs[1].to_string(), "global (every record)");
    }
}
