//! Straightforward reference computations of query meanings (filter, greedy
//! time-chained grouping, pairwise merge), written independently of the
//! engine so the end-to-end tests can check its answers.
#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::net::IpAddr;

use flowy::record::Record;

/// A group as the reference computes it.
#[derive(Clone, Debug)]
pub struct RefGroup {
    pub stime: i64,
    pub etime: i64,
    /// Indexes into the record slice, in joining order.
    pub members: Vec<usize>,
}

impl RefGroup {
    pub fn sum(&self, recs: &[Record], f: impl Fn(&Record) -> u64) -> u64 {
        self.members.iter().map(|&i| f(&recs[i])).sum()
    }

    pub fn bit_or(&self, recs: &[Record], f: impl Fn(&Record) -> u64) -> u64 {
        self.members.iter().fold(0, |acc, &i| acc | f(&recs[i]))
    }

    pub fn union<T: Ord>(&self, recs: &[Record], f: impl Fn(&Record) -> T) -> BTreeSet<T> {
        self.members.iter().map(|&i| f(&recs[i])).collect()
    }

    pub fn first<'r>(&self, recs: &'r [Record]) -> &'r Record {
        &recs[self.members[0]]
    }
}

/// Record indexes in the order groupers see them: `stime`, then `rec_id`.
pub fn offer_order(recs: &[Record], pass: impl Fn(&Record) -> bool) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..recs.len()).filter(|&i| pass(&recs[i])).collect();
    idx.sort_by_key(|&i| (recs[i].stime(), recs[i].rec_id()));
    idx
}

/// Greedy grouping for a module `k = k` (for the key fields) plus
/// `etime < stime rdelta gap`: a record joins the oldest group with its key
/// whose last-added member ended less than `gap` ms before it starts.
pub fn group_chained<K: Hash + Eq>(
    recs: &[Record],
    pass: impl Fn(&Record) -> bool,
    key: impl Fn(&Record) -> K,
    gap: i64,
) -> Vec<RefGroup> {
    let mut groups: Vec<RefGroup> = Vec::new();
    let mut by_key: HashMap<K, Vec<usize>> = HashMap::new();
    for i in offer_order(recs, pass) {
        let r = &recs[i];
        let candidates = by_key.entry(key(r)).or_default();
        let joinable = candidates.iter().copied().find(|&g| {
            let last = &recs[*groups[g].members.last().unwrap_or(&i)];
            r.stime() - last.etime() < gap
        });
        match joinable {
            Some(g) => {
                let grp = &mut groups[g];
                grp.members.push(i);
                grp.stime = grp.stime.min(r.stime());
                grp.etime = grp.etime.max(r.etime());
            }
            None => {
                candidates.push(groups.len());
                groups.push(RefGroup {
                    stime: r.stime(),
                    etime: r.etime(),
                    members: vec![i],
                });
            }
        }
    }
    groups
}

/// Grouping by key only (a module `k = k`): one group per distinct key.
pub fn group_by_key<K: Hash + Eq>(
    recs: &[Record],
    pass: impl Fn(&Record) -> bool,
    key: impl Fn(&Record) -> K,
) -> Vec<RefGroup> {
    group_chained(recs, pass, key, i64::MAX)
}

/// A group as it appears in a match, for comparing answers: branch name,
/// interval, member count and the first member's addresses.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupSig {
    pub branch: String,
    pub stime: i64,
    pub etime: i64,
    pub count: usize,
    pub srcip: Option<IpAddr>,
    pub dstip: Option<IpAddr>,
}

impl GroupSig {
    pub fn of(branch: &str, g: &RefGroup, recs: &[Record]) -> Self {
        let first = g.first(recs);
        GroupSig {
            branch: branch.to_string(),
            stime: g.stime,
            etime: g.etime,
            count: g.members.len(),
            srcip: first.srcip(),
            dstip: first.dstip(),
        }
    }
}

/// The HTTP-download query (`config/queries/http-download.flowy`) computed
/// the plain way: TCP requests to port 80 (branch A) and TCP responses from
/// port 80 (branch B), each grouped per (srcip, dstip) into chains whose next
/// flow starts less than a second after the previous one ended, groups kept
/// when their byte sum is positive; a match pairs B with A when they connect
/// the same two hosts in opposite directions, A's source ports equal B's
/// destination ports, and B is overlapped-by, during, finishes or equals A.
pub fn http_download(recs: &[Record]) -> Vec<Vec<GroupSig>> {
    let key = |r: &Record| (r.srcip(), r.dstip());
    let bytes = |g: &RefGroup| g.sum(recs, |r| r.bytes().unwrap_or(0));
    let tcp = |r: &Record| r.prot() == Some(6);
    let a: Vec<RefGroup> = group_chained(recs, |r| tcp(r) && r.dstport() == Some(80), key, 1000)
        .into_iter()
        .filter(|g| bytes(g) > 0)
        .collect();
    let b: Vec<RefGroup> = group_chained(recs, |r| tcp(r) && r.srcport() == Some(80), key, 1000)
        .into_iter()
        .filter(|g| bytes(g) > 0)
        .collect();
    let mut a_by_hosts: HashMap<(Option<IpAddr>, Option<IpAddr>), Vec<&RefGroup>> = HashMap::new();
    for g in &a {
        let f = g.first(recs);
        a_by_hosts
            .entry((f.srcip(), f.dstip()))
            .or_default()
            .push(g);
    }
    let mut matches = Vec::new();
    for gb in &b {
        let fb = gb.first(recs);
        let Some(cands) = a_by_hosts.get(&(fb.dstip(), fb.srcip())) else {
            continue;
        };
        let b_ports = gb.union(recs, |r| r.dstport());
        for ga in cands {
            // X = B, Y = A in the relation table of SPEC §2.5.
            let (xs, xe, ys, ye) = (gb.stime, gb.etime, ga.stime, ga.etime);
            let overlapped_by = ys < xs && xs < ye && ye < xe;
            let during = ys < xs && xe < ye;
            let finishes = xe == ye && xs > ys;
            let equals = xs == ys && xe == ye;
            if (overlapped_by || during || finishes || equals)
                && ga.union(recs, |r| r.srcport()) == b_ports
            {
                matches.push(vec![
                    GroupSig::of("B", gb, recs),
                    GroupSig::of("A", ga, recs),
                ]);
            }
        }
    }
    matches.sort();
    matches
}
