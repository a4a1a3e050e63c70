//! The grouper (SPEC §2.4, §3.2): records arrive in `stime` order and join
//! the oldest open group that all rules of some module admit.
//!
//! Open groups are indexed per module by the values of the module's
//! delta-less `=` rules. Those rules always read the group's first member,
//! so a group's key never changes; a record probes with its own values and
//! only the groups in that bucket (oldest first) are checked further.
//! Modules without such rules scan the open groups oldest first.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use smallvec::SmallVec;

use crate::engine::aggregate::Aggregates;
use crate::engine::fasthash::FastMap;
use crate::engine::filter::{compare_values, delta_holds, key_value};
use crate::engine::Group;
use crate::query::plan::{CmpOp, GroupRule, GrouperPlan, ModulePlan, Reference};
use crate::record::{Field, Record};
use crate::value::Value;

type Key = (i64, SmallVec<[Value; 2]>);

/// Does `rule` admit `rec` into a group whose first/last members are given?
#[inline]
pub fn rule_holds(rule: &GroupRule, first: &Record, last: &Record, rec: &Record) -> bool {
    let reference = match rule.delta {
        Some(d) if d.reference == Reference::Last => last,
        _ => first,
    };
    let (Some(x), Some(y)) = (reference.get(rule.left), rec.get(rule.right)) else {
        return false;
    };
    match rule.delta {
        Some(d) => delta_holds(rule.op, &x, &y, d.amount),
        None => compare_values(rule.op, &x, &y),
    }
}

fn module_holds(m: &ModulePlan, first: &Record, last: &Record, rec: &Record) -> bool {
    m.rules.iter().all(|r| rule_holds(r, first, last, rec))
}

/// Indexes of a module's delta-less `=` rules (the hash-key rules).
fn key_rules(m: &ModulePlan) -> Vec<usize> {
    m.rules
        .iter()
        .enumerate()
        .filter(|(_, r)| r.op == CmpOp::Eq && r.delta.is_none())
        .map(|(i, _)| i)
        .collect()
}

/// The latest `stime` a future record may have and still satisfy `rule`
/// against this group; `None` when the rule bounds `stime` from above not
/// at all. `i64::MIN` when the rule can never hold.
fn stime_upper_bound(rule: &GroupRule, first: &Record, last: &Record) -> Option<i64> {
    if rule.right != Field::Stime {
        return None;
    }
    let reference = match rule.delta {
        Some(d) if d.reference == Reference::Last => last,
        _ => first,
    };
    let Some(x) = reference.get(rule.left) else {
        return Some(i64::MIN);
    };
    let x = i64::try_from(x.as_u64()?).unwrap_or(i64::MAX);
    let d = rule
        .delta
        .map_or(0, |d| i64::try_from(d.amount).unwrap_or(i64::MAX));
    match (rule.op, rule.delta.is_some()) {
        (CmpOp::Gt, false) => Some(x.saturating_sub(1)),
        (CmpOp::Ge | CmpOp::Eq, false) => Some(x),
        (CmpOp::Lt, true) => Some(x.saturating_add(d).saturating_sub(1)),
        (CmpOp::Le | CmpOp::Eq, true) => Some(x.saturating_add(d)),
        _ => None,
    }
}

struct OpenGroup {
    window: i64,
    stime: i64,
    etime: i64,
    members: Vec<Arc<Record>>,
    keys: Vec<Option<Value>>,
    aggs: Aggregates,
    /// Per module: the index key this group is filed under (if any).
    index_keys: Vec<Option<Key>>,
    /// Entry in `Grouper::closing`.
    close_at: Option<i64>,
}

impl OpenGroup {
    fn first(&self) -> &Record {
        &self.members[0]
    }
    fn last(&self) -> &Record {
        &self.members[self.members.len() - 1]
    }
}

struct ModuleIndex {
    key_rules: Vec<usize>,
    map: FastMap<Key, VecDeque<u64>>,
}

/// Counters of one grouper.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrouperStats {
    pub groups_closed: u64,
    /// Closed before their time because `max_open_groups` was reached.
    pub closed_early: u64,
}

/// One branch's grouper state.
pub struct Grouper {
    plan: Option<Arc<GrouperPlan>>,
    branch: usize,
    window: Option<i64>,
    max_open: usize,
    next_id: u64,
    /// Open groups by id (per-record lookups hash, no tree walk)…
    open: FastMap<u64, OpenGroup>,
    /// …and their ids in creation order, for oldest-first scans and closes.
    /// Ids of closed groups are dropped lazily (from the front, and by
    /// compaction), so closing a group costs no search here.
    open_ids: VecDeque<u64>,
    modules: Vec<ModuleIndex>,
    /// (C, id): the group can take no record with `stime > C`. Entries are
    /// never removed in place: an entry whose C is no longer the group's
    /// `close_at` (or whose group is closed) is skipped when it surfaces.
    closing: BinaryHeap<Reverse<(i64, u64)>>,
    qualified: bool,
    closed: Vec<Group>,
    stats: GrouperStats,
}

impl Grouper {
    pub fn new(
        plan: Option<Arc<GrouperPlan>>,
        branch: usize,
        window: Option<i64>,
        max_open: usize,
    ) -> Self {
        let modules = plan.as_ref().map_or_else(Vec::new, |p| {
            p.modules
                .iter()
                .map(|m| ModuleIndex {
                    key_rules: key_rules(m),
                    map: FastMap::default(),
                })
                .collect()
        });
        let qualified = plan
            .as_ref()
            .is_some_and(|p| p.aggregates.iter().any(|a| a.module.is_some()));
        Grouper {
            plan,
            branch,
            window: window.filter(|w| *w > 0),
            max_open: max_open.max(1),
            next_id: 0,
            open: FastMap::default(),
            open_ids: VecDeque::new(),
            modules,
            closing: BinaryHeap::new(),
            qualified,
            closed: Vec::new(),
            stats: GrouperStats::default(),
        }
    }

    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    pub fn stats(&self) -> GrouperStats {
        self.stats
    }

    /// Closed groups since the last call, in closing order.
    pub fn drain_closed(&mut self) -> std::vec::Drain<'_, Group> {
        self.closed.drain(..)
    }

    fn window_of(&self, t: i64) -> i64 {
        self.window.map_or(0, |w| t.div_euclid(w))
    }

    /// Offer a record (in `stime` order, except late ones).
    pub fn offer(&mut self, rec: Arc<Record>) {
        let Some(plan) = self.plan.clone().filter(|p| !p.modules.is_empty()) else {
            let id = self.create(rec);
            self.close(id);
            return;
        };
        let window = self.window_of(rec.stime);
        match self.find_group(&plan, window, &rec) {
            Some(id) => self.join(&plan, id, rec),
            None => {
                self.create(rec);
                self.enforce_limit();
            }
        }
    }

    /// The oldest open group some module admits `rec` into.
    fn find_group(&self, plan: &GrouperPlan, window: i64, rec: &Record) -> Option<u64> {
        let mut best: Option<u64> = None;
        for (module, index) in plan.modules.iter().zip(&self.modules) {
            let admits = |id: &u64| {
                self.open.get(id).is_some_and(|g| {
                    g.window == window && module_holds(module, g.first(), g.last(), rec)
                })
            };
            let found = if index.key_rules.is_empty() {
                self.open_ids
                    .iter()
                    .take_while(|id| best.is_none_or(|b| **id < b))
                    .find(|id| admits(id))
                    .copied()
            } else {
                probe_key(module, &index.key_rules, window, rec)
                    .and_then(|k| index.map.get(&k))
                    .and_then(|ids| {
                        ids.iter()
                            .take_while(|id| best.is_none_or(|b| **id < b))
                            .find(|id| admits(id))
                            .copied()
                    })
            };
            if found.is_some() {
                best = found;
            }
        }
        best
    }

    fn join(&mut self, plan: &GrouperPlan, id: u64, rec: Arc<Record>) {
        let Some(g) = self.open.get_mut(&id) else {
            return;
        };
        // Which modules admit the record must be judged against the group as
        // it was before the record joined (rdelta reads the last member).
        let via: Vec<bool> = if self.qualified {
            plan.modules
                .iter()
                .map(|m| module_holds(m, g.first(), g.last(), &rec))
                .collect()
        } else {
            Vec::new()
        };
        g.stime = g.stime.min(rec.stime);
        g.etime = g.etime.max(rec.etime);
        g.aggs.update(&plan.aggregates, &rec, |i| {
            via.get(i).copied().unwrap_or(false)
        });
        g.members.push(rec);
        self.reschedule(id);
    }

    /// Open a new group with `rec` as its first member. The founding record
    /// counts for every module's qualified aggregates: it joined through no
    /// module, and every module's rules are relative to it.
    fn create(&mut self, rec: Arc<Record>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let window = self.window_of(rec.stime);
        let (keys, mut aggs) = match &self.plan {
            Some(p) => (
                // Room for the aggregates too: `close` appends them here.
                {
                    let mut keys = Vec::with_capacity(p.keys.len() + p.aggregates.len());
                    keys.extend(p.keys.iter().map(|f| rec.get(*f)));
                    keys
                },
                Aggregates::new(&p.aggregates),
            ),
            None => (Vec::new(), Aggregates::new(&[])),
        };
        if let Some(p) = &self.plan {
            aggs.update(&p.aggregates, &rec, |_| true);
        }
        let mut index_keys = Vec::with_capacity(self.modules.len());
        if let Some(p) = &self.plan {
            for (module, index) in p.modules.iter().zip(self.modules.iter_mut()) {
                let key = if index.key_rules.is_empty() {
                    None
                } else {
                    group_key(module, &index.key_rules, window, &rec)
                };
                if let Some(k) = &key {
                    index.map.entry(k.clone()).or_default().push_back(id);
                }
                index_keys.push(key);
            }
        }
        let group = OpenGroup {
            window,
            stime: rec.stime,
            etime: rec.etime,
            members: vec![rec],
            keys,
            aggs,
            index_keys,
            close_at: None,
        };
        self.open.insert(id, group);
        self.open_ids.push_back(id);
        self.reschedule(id);
        id
    }

    /// Recompute when group `id` can close (window end or early close).
    fn reschedule(&mut self, id: u64) {
        let Some(g) = self.open.get(&id) else { return };
        let window_end = self.window.map(|w| {
            g.window
                .saturating_add(1)
                .saturating_mul(w)
                .saturating_sub(1)
        });
        let early = self.plan.as_ref().and_then(|p| early_bound(p, g));
        let c = match (window_end, early) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if g.close_at == c {
            return;
        }
        if let Some(c) = c {
            self.closing.push(Reverse((c, id)));
        }
        if let Some(g) = self.open.get_mut(&id) {
            g.close_at = c;
        }
        self.compact_closing();
    }

    /// Drop ids of closed groups from the front of `open_ids`, and keep
    /// the rest from outgrowing the open groups.
    fn forget_closed_ids(&mut self) {
        while self
            .open_ids
            .front()
            .is_some_and(|id| !self.open.contains_key(id))
        {
            self.open_ids.pop_front();
        }
        if self.open_ids.len() > 2 * self.open.len() + 1024 {
            let open = &self.open;
            self.open_ids.retain(|id| open.contains_key(id));
        }
    }

    /// Keep stale schedule entries from outgrowing the open groups.
    fn compact_closing(&mut self) {
        if self.closing.len() <= 2 * self.open.len() + 1024 {
            return;
        }
        let open = &self.open;
        self.closing
            .retain(|Reverse((c, id))| open.get(id).is_some_and(|g| g.close_at == Some(*c)));
    }

    fn enforce_limit(&mut self) {
        while self.open.len() > self.max_open {
            let Some(&id) = self.open_ids.front() else {
                break;
            };
            self.stats.closed_early += 1;
            self.close(id);
        }
    }

    /// Close every group that no record with `stime >= t` can join.
    pub fn close_before(&mut self, t: i64) {
        while let Some(&Reverse((c, id))) = self.closing.peek() {
            if c >= t {
                break;
            }
            self.closing.pop();
            if self.open.get(&id).is_some_and(|g| g.close_at == Some(c)) {
                self.close(id);
            }
        }
    }

    /// Close every open group, oldest first.
    pub fn close_all(&mut self) {
        while let Some(&id) = self.open_ids.front() {
            self.close(id);
        }
    }

    fn close(&mut self, id: u64) {
        let Some(g) = self.open.remove(&id) else {
            return;
        };
        self.forget_closed_ids();
        for (index, key) in self.modules.iter_mut().zip(&g.index_keys) {
            let Some(key) = key else { continue };
            if let Some(ids) = index.map.get_mut(key) {
                if let Some(pos) = ids.iter().position(|x| *x == id) {
                    ids.remove(pos);
                }
                if ids.is_empty() {
                    index.map.remove(key);
                }
            }
        }
        let mut values = g.keys;
        values.extend(g.aggs.into_values());
        self.stats.groups_closed += 1;
        self.closed.push(Group {
            branch: self.branch,
            id,
            stime: g.stime,
            etime: g.etime,
            members: g.members,
            values,
        });
    }
}

/// The key a group is filed under for a module: its first member's
/// left-hand values. `None` when one is absent (the module can never admit
/// anything into the group then).
fn group_key(m: &ModulePlan, rules: &[usize], window: i64, first: &Record) -> Option<Key> {
    let mut vals = SmallVec::new();
    for &i in rules {
        vals.push(key_value(first.get(m.rules.get(i)?.left)?));
    }
    Some((window, vals))
}

/// The key a record probes with: its right-hand values.
fn probe_key(m: &ModulePlan, rules: &[usize], window: i64, rec: &Record) -> Option<Key> {
    let mut vals = SmallVec::new();
    for &i in rules {
        vals.push(key_value(rec.get(m.rules.get(i)?.right)?));
    }
    Some((window, vals))
}

/// Early close (SPEC §3.2): the group can take no record with a later
/// `stime` than this when every module has a rule bounding `r.stime` from
/// above. `None` when some module is unbounded.
fn early_bound(plan: &GrouperPlan, g: &OpenGroup) -> Option<i64> {
    let mut bound = i64::MIN;
    for m in &plan.modules {
        let module_bound = m
            .rules
            .iter()
            .filter_map(|r| stime_upper_bound(r, g.first(), g.last()))
            .min()?;
        bound = bound.max(module_bound);
    }
    Some(bound)
}
