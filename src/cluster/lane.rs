//! Lanes: which subjects a record is published to and which subjects a
//! query reads. Collectors and workers derive them from the same query
//! files, so they agree on the subjects without talking to each other.

use std::fmt;

use crate::query::partition::{KeySpec, PartitionKey};
use crate::query::plan::Plan;
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
            Lane::Any => (rec.rec_id % u64::from(partitions.max(1))) as u32,
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
