//! The grouper (SPEC §2.4, §3.2): records arrive in `stime` order and join
//! the oldest open group that all rules of some module admit.
//!
//! Open groups are indexed per module by the values of the module's
//! delta-less `=` rules. Those rules always read the group's first member,
//! so a group's key never changes; a record probes with its own values and
//! only the groups in that bucket (oldest first) are checked further.
//! Modules without such rules scan the open groups oldest first.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::engine::aggregate::Aggregates;
use crate::engine::budget::{
    member_cost, open_group_overhead, Eviction, StateAccount, StateBudget,
};
use crate::engine::filter::{compare_values, delta_holds, key_value};
use crate::engine::Group;
use crate::query::plan::{
    AggFunc, AggregatePlan, CmpOp, GroupRule, GrouperPlan, ModulePlan, Reference,
};
use crate::record::{Field, Record};
use crate::value::Value;

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

/// Where an open group lives: its id (creation order, which is what
/// "oldest" means) and its slot in the grouper's slab.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Handle {
    id: u64,
    slot: usize,
}

struct OpenGroup {
    id: u64,
    window: i64,
    stime: i64,
    etime: i64,
    members: Vec<Arc<Record>>,
    keys: Vec<Option<Value>>,
    aggs: Aggregates,
    /// Per module: the fingerprint this group is filed under (if any).
    index_keys: SmallVec<[Option<u64>; 2]>,
    /// No record with a later `stime` can join.
    close_at: Option<i64>,
    /// The C of this group's live entry in `Grouper::closing`: never later
    /// than `close_at`, so the entry surfaces in time.
    sched: Option<i64>,
    /// What this group is charged in the state budget.
    bytes: usize,
}

impl OpenGroup {
    fn first(&self) -> &Record {
        &self.members[0]
    }
    fn last(&self) -> &Record {
        &self.members[self.members.len() - 1]
    }
}

/// Open groups in reusable slots: a closed group's memory goes to the next
/// new one, and a lookup is an index, not a hash.
#[derive(Default)]
struct Slab {
    slots: Vec<Option<OpenGroup>>,
    free: Vec<usize>,
    len: usize,
}

impl Slab {
    fn get(&self, h: Handle) -> Option<&OpenGroup> {
        self.slots.get(h.slot)?.as_ref().filter(|g| g.id == h.id)
    }

    fn get_mut(&mut self, h: Handle) -> Option<&mut OpenGroup> {
        self.slots
            .get_mut(h.slot)?
            .as_mut()
            .filter(|g| g.id == h.id)
    }

    fn contains(&self, h: Handle) -> bool {
        self.get(h).is_some()
    }

    fn insert(&mut self, g: OpenGroup) -> Handle {
        let id = g.id;
        self.len += 1;
        match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(g);
                Handle { id, slot }
            }
            None => {
                self.slots.push(Some(g));
                Handle {
                    id,
                    slot: self.slots.len() - 1,
                }
            }
        }
    }

    fn remove(&mut self, h: Handle) -> Option<OpenGroup> {
        self.get(h)?;
        let g = self.slots.get_mut(h.slot)?.take()?;
        self.free.push(h.slot);
        self.len -= 1;
        Some(g)
    }
}

/// Fingerprints are already seeded hashes: the index map uses them as is.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Open groups by the fingerprint of their key values, oldest first. Equal
/// keys have equal fingerprints; a collision only adds candidates, which
/// the module's own `=` rules then reject.
type KeyIndex = HashMap<u64, SmallVec<[Handle; 2]>, BuildHasherDefault<PassThrough>>;

struct ModuleIndex {
    key_rules: Vec<usize>,
    map: KeyIndex,
}

/// Counters of one grouper.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrouperStats {
    pub groups_closed: u64,
    /// Closed before their time because `max_open_groups` was reached.
    pub closed_early: u64,
    /// Closed before their time because `engine.max_state` was reached.
    pub closed_by_budget: u64,
}

/// One branch's grouper state.
pub struct Grouper {
    plan: Option<Arc<GrouperPlan>>,
    branch: usize,
    window: Option<i64>,
    max_open: usize,
    next_id: u64,
    open: Slab,
    /// Open groups in creation order, for oldest-first scans and closes.
    /// Closed ones are dropped lazily (from the front, and by compaction),
    /// so closing a group costs no search here.
    open_ids: VecDeque<Handle>,
    modules: Vec<ModuleIndex>,
    /// Seed of the key fingerprints (per process, so keys cannot be
    /// crafted to collide).
    seed: foldhash::fast::RandomState,
    /// (C, group): the group can take no record with `stime > C`. Entries
    /// are never removed in place, and a group's `close_at` may move past
    /// its entry (every join with `rdelta` moves it): the entry is moved on
    /// when it surfaces. Entries that are not their group's `sched` are
    /// skipped.
    closing: BinaryHeap<Reverse<(i64, Handle)>>,
    qualified: bool,
    closed: Vec<Group>,
    /// Accumulators of closed groups, emptied, for new groups to reuse:
    /// saves an allocation and a free per group.
    spare_aggs: Vec<Aggregates>,
    stats: GrouperStats,
    /// This branch's share of the state budget: open groups here, and the
    /// branch's reorder buffer (charged through [`Grouper::make_room`]).
    account: StateAccount,
    /// `union` accumulators (each may grow by one value per member).
    unions: usize,
    /// Budget charge of a group before its members.
    group_overhead: usize,
}

/// Accumulators for a new group, in a closed group's memory if any.
fn fresh_aggregates(spare: &mut Vec<Aggregates>, plans: &[AggregatePlan]) -> Aggregates {
    match spare.pop() {
        Some(mut aggs) => {
            aggs.reset(plans);
            aggs
        }
        None => Aggregates::new(plans),
    }
}

/// Most emptied accumulators kept for reuse (a burst of closes beyond
/// this frees the rest).
const MAX_SPARE_AGGS: usize = 256;

impl Grouper {
    pub fn new(
        plan: Option<Arc<GrouperPlan>>,
        branch: usize,
        window: Option<i64>,
        max_open: usize,
        budget: Arc<StateBudget>,
    ) -> Self {
        let modules = plan.as_ref().map_or_else(Vec::new, |p| {
            p.modules
                .iter()
                .map(|m| ModuleIndex {
                    key_rules: key_rules(m),
                    map: KeyIndex::default(),
                })
                .collect()
        });
        let qualified = plan
            .as_ref()
            .is_some_and(|p| p.aggregates.iter().any(|a| a.module.is_some()));
        let unions = plan.as_ref().map_or(0, |p| {
            p.aggregates
                .iter()
                .filter(|a| a.func == AggFunc::Union)
                .count()
        });
        let slots = plan
            .as_ref()
            .map_or(0, |p| p.keys.len() + p.aggregates.len());
        Grouper {
            plan,
            branch,
            window: window.filter(|w| *w > 0),
            max_open: max_open.max(1),
            next_id: 0,
            open: Slab::default(),
            open_ids: VecDeque::new(),
            modules,
            seed: foldhash::fast::RandomState::default(),
            closing: BinaryHeap::new(),
            qualified,
            closed: Vec::new(),
            spare_aggs: Vec::new(),
            stats: GrouperStats::default(),
            account: StateAccount::new(budget),
            unions,
            group_overhead: open_group_overhead(std::mem::size_of::<Option<OpenGroup>>(), slots),
        }
    }

    /// Bytes this branch has charged (open groups and reorder buffer).
    pub fn state_bytes(&self) -> usize {
        self.account.used()
    }

    /// Charge `n` bytes of branch state, closing the oldest open groups
    /// early while the budget cannot cover them; false when even with no
    /// open group left it cannot.
    pub fn make_room(&mut self, n: usize) -> bool {
        loop {
            if self.account.try_charge(n) {
                return true;
            }
            let Some(h) = self.oldest_open() else {
                return false;
            };
            self.evict(h);
        }
    }

    /// `n` bytes of branch state charged through `make_room` are gone.
    pub fn credit(&mut self, n: usize) {
        self.account.credit(n);
    }

    /// Count `n` evictions of `kind` made on the grouper's behalf.
    pub fn evicted(&self, kind: Eviction, n: u64) {
        self.account.evicted(kind, n);
    }

    fn oldest_open(&mut self) -> Option<Handle> {
        self.forget_closed_ids();
        self.open_ids.front().copied()
    }

    /// Close `h` early for the budget.
    fn evict(&mut self, h: Handle) {
        self.stats.closed_by_budget += 1;
        self.account.evicted(Eviction::OpenGroup, 1);
        self.close(h);
    }

    pub fn open_count(&self) -> usize {
        self.open.len
    }

    pub fn stats(&self) -> GrouperStats {
        self.stats
    }

    /// Are there closed groups `drain_closed` has not handed out yet?
    pub fn has_closed(&self) -> bool {
        !self.closed.is_empty()
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
            // Closed at once, so never charged.
            let h = self.create(rec, 0);
            self.close(h);
            return;
        };
        // Room for the worst case (a new group) first: evictions may close
        // the very group the record would have joined.
        let member = member_cost(&rec, self.unions);
        let worst = member.saturating_add(self.group_overhead);
        if !self.make_room(worst) {
            // Nothing of this branch is left to evict: the record still
            // counts, as a group of its own closed at once.
            let h = self.create(rec, 0);
            self.evict(h);
            return;
        }
        let window = self.window_of(rec.stime());
        match self.find_group(&plan, window, &rec) {
            Some(h) => {
                self.account.credit(worst - member);
                self.join(&plan, h, rec, member);
            }
            None => {
                self.create(rec, worst);
                self.enforce_limit();
            }
        }
    }

    /// The oldest open group some module admits `rec` into.
    fn find_group(&self, plan: &GrouperPlan, window: i64, rec: &Record) -> Option<Handle> {
        let mut best: Option<Handle> = None;
        for (module, index) in plan.modules.iter().zip(&self.modules) {
            let admits = |h: &&Handle| {
                self.open.get(**h).is_some_and(|g| {
                    g.window == window && module_holds(module, g.first(), g.last(), rec)
                })
            };
            let older = |h: &&Handle| best.is_none_or(|b| h.id < b.id);
            let found = if index.key_rules.is_empty() {
                self.open_ids.iter().take_while(older).find(admits).copied()
            } else {
                fingerprint(&self.seed, module, &index.key_rules, window, rec, |r| {
                    r.right
                })
                .and_then(|k| index.map.get(&k))
                .and_then(|hs| hs.iter().take_while(older).find(admits).copied())
            };
            if found.is_some() {
                best = found;
            }
        }
        best
    }

    fn join(&mut self, plan: &GrouperPlan, h: Handle, rec: Arc<Record>, bytes: usize) {
        let Some(g) = self.open.get_mut(h) else {
            self.account.credit(bytes);
            return;
        };
        g.bytes += bytes;
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
        g.stime = g.stime.min(rec.stime());
        g.etime = g.etime.max(rec.etime());
        g.aggs.update(&plan.aggregates, &rec, |i| {
            via.get(i).copied().unwrap_or(false)
        });
        g.members.push(rec);
        self.reschedule(h);
    }

    /// Open a new group with `rec` as its first member. The founding record
    /// counts for every module's qualified aggregates: it joined through no
    /// module, and every module's rules are relative to it.
    /// `bytes` is what the caller charged for it.
    fn create(&mut self, rec: Arc<Record>, bytes: usize) -> Handle {
        let id = self.next_id;
        self.next_id += 1;
        let window = self.window_of(rec.stime());
        let (keys, mut aggs) = match &self.plan {
            Some(p) => (
                // Room for the aggregates too: `close` appends them here.
                {
                    let mut keys = Vec::with_capacity(p.keys.len() + p.aggregates.len());
                    keys.extend(p.keys.iter().map(|f| rec.get(*f)));
                    keys
                },
                fresh_aggregates(&mut self.spare_aggs, &p.aggregates),
            ),
            None => (Vec::new(), Aggregates::new(&[])),
        };
        let mut index_keys = SmallVec::new();
        if let Some(p) = &self.plan {
            aggs.update(&p.aggregates, &rec, |_| true);
            for (module, index) in p.modules.iter().zip(&self.modules) {
                index_keys.push(if index.key_rules.is_empty() {
                    None
                } else {
                    fingerprint(&self.seed, module, &index.key_rules, window, &rec, |r| {
                        r.left
                    })
                });
            }
        }
        let h = self.open.insert(OpenGroup {
            id,
            window,
            stime: rec.stime(),
            etime: rec.etime(),
            members: {
                // Groups that grow at all usually take a few members.
                let mut members = Vec::with_capacity(4);
                members.push(rec);
                members
            },
            keys,
            aggs,
            index_keys,
            close_at: None,
            sched: None,
            bytes,
        });
        if let Some(g) = self.open.get(h) {
            for (index, key) in self.modules.iter_mut().zip(&g.index_keys) {
                if let Some(k) = key {
                    index.map.entry(*k).or_default().push(h);
                }
            }
        }
        self.open_ids.push_back(h);
        self.reschedule(h);
        h
    }

    /// Recompute when group `h` can close (window end or early close).
    fn reschedule(&mut self, h: Handle) {
        let (window, plan) = (self.window, self.plan.as_deref());
        let Some(g) = self.open.get_mut(h) else {
            return;
        };
        let window_end = window.map(|w| {
            g.window
                .saturating_add(1)
                .saturating_mul(w)
                .saturating_sub(1)
        });
        let early = plan.and_then(|p| early_bound(p, g));
        g.close_at = match (window_end, early) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let Some(c) = g.close_at else { return };
        if g.sched.is_some_and(|s| s <= c) {
            return;
        }
        g.sched = Some(c);
        self.closing.push(Reverse((c, h)));
        self.compact_closing();
    }

    /// Drop handles of closed groups from the front of `open_ids`, and
    /// keep the rest from outgrowing the open groups.
    fn forget_closed_ids(&mut self) {
        while self
            .open_ids
            .front()
            .is_some_and(|h| !self.open.contains(*h))
        {
            self.open_ids.pop_front();
        }
        if self.open_ids.len() > 2 * self.open.len + 1024 {
            let open = &self.open;
            self.open_ids.retain(|h| open.contains(*h));
        }
    }

    /// Keep superseded schedule entries from outgrowing the open groups.
    fn compact_closing(&mut self) {
        if self.closing.len() <= 2 * self.open.len + 1024 {
            return;
        }
        let open = &self.open;
        self.closing
            .retain(|Reverse((c, h))| open.get(*h).is_some_and(|g| g.sched == Some(*c)));
    }

    fn enforce_limit(&mut self) {
        while self.open.len > self.max_open {
            let Some(&h) = self.open_ids.front() else {
                break;
            };
            self.stats.closed_early += 1;
            self.close(h);
        }
    }

    /// The `stime` of the oldest open group. Groups open in release order,
    /// which is `stime` order for records that were not late, so no open
    /// group but a late record's starts earlier.
    pub fn oldest_open_stime(&self) -> Option<i64> {
        self.open_ids
            .iter()
            .find_map(|h| self.open.get(*h))
            .map(|g| g.stime)
    }

    /// Close every group that no record with `stime >= t` can join, in
    /// (`close_at`, id) order.
    pub fn close_before(&mut self, t: i64) {
        while let Some(&Reverse((c, h))) = self.closing.peek() {
            if c >= t {
                break;
            }
            self.closing.pop();
            let Some(g) = self.open.get_mut(h).filter(|g| g.sched == Some(c)) else {
                continue;
            };
            match g.close_at {
                Some(a) if a == c => self.close(h),
                // Joins moved the bound on: queue the group at its real C,
                // which keeps the pops in (C, id) order.
                Some(a) => {
                    g.sched = Some(a);
                    self.closing.push(Reverse((a, h)));
                }
                None => g.sched = None,
            }
        }
    }

    /// Close every open group, oldest first.
    pub fn close_all(&mut self) {
        while let Some(&h) = self.open_ids.front() {
            self.close(h);
        }
    }

    fn close(&mut self, h: Handle) {
        let Some(g) = self.open.remove(h) else {
            return;
        };
        self.account.credit(g.bytes);
        self.forget_closed_ids();
        for (index, key) in self.modules.iter_mut().zip(&g.index_keys) {
            let Some(key) = key else { continue };
            if let Some(hs) = index.map.get_mut(key) {
                if let Some(pos) = hs.iter().position(|x| *x == h) {
                    hs.remove(pos);
                }
                if hs.is_empty() {
                    index.map.remove(key);
                }
            }
        }
        let mut values = g.keys;
        let mut aggs = g.aggs;
        values.extend(aggs.drain_values());
        if self.spare_aggs.len() < MAX_SPARE_AGGS {
            self.spare_aggs.push(aggs);
        }
        self.stats.groups_closed += 1;
        self.closed.push(Group {
            branch: self.branch,
            id: g.id,
            stime: g.stime,
            etime: g.etime,
            members: g.members,
            values,
        });
    }
}

/// A seeded hash of a record's key values for a module (`side` picks the
/// left-hand fields for a group's first member, the right-hand ones for a
/// probing record). `None` when one is absent (nothing can match then).
fn fingerprint(
    seed: &foldhash::fast::RandomState,
    m: &ModulePlan,
    rules: &[usize],
    window: i64,
    rec: &Record,
    side: impl Fn(&GroupRule) -> Field,
) -> Option<u64> {
    let mut h = seed.build_hasher();
    h.write_i64(window);
    for &i in rules {
        hash_key(&mut h, key_value(rec.get(side(m.rules.get(i)?))?));
    }
    Some(h.finish())
}

/// Like `Value::hash` (equal values hash alike), minus the generic
/// enum walk for the common numbers and addresses.
#[inline]
fn hash_key(h: &mut impl Hasher, v: Value) {
    match v {
        Value::Uint(u) => {
            h.write_u8(0);
            h.write_u64(u);
        }
        Value::Ip(IpAddr::V4(a)) => {
            h.write_u8(1);
            h.write_u32(u32::from(a));
        }
        Value::Ip(IpAddr::V6(a)) => {
            h.write_u8(2);
            h.write_u128(u128::from(a));
        }
        other => {
            h.write_u8(3);
            other.hash(h);
        }
    }
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
