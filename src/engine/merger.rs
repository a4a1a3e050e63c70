//! The merger and ungrouper (SPEC §2.5, §3.2): joins closed groups of the
//! branches into tuples of the export module, removes tuples another module
//! extends (set difference), and turns tuples into matches.
//!
//! Each arriving group probes the stores of the other branches and is
//! stored afterwards, so every tuple is found exactly once: when its last
//! group arrives.
//!
//! Emission order (deterministic for a given group arrival order): tuples
//! of an export module without difference modules are emitted at once, in
//! the order the join enumerates them. Tuples that must be checked against
//! difference modules are held and emitted in (deadline, formation) order
//! when W passes their deadline, or in formation order at `finish`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use crate::engine::budget::{group_cost, Eviction, StateAccount, StateBudget};
use crate::engine::config::EngineConfig;
use crate::engine::fasthash::FastMap;
use crate::engine::index::{BranchStore, Filing};
use crate::engine::join::{Binding, JoinPlan};
use crate::engine::reach::module_reach;
use crate::engine::{Group, Match};
use crate::query::plan::{MergerPlan, Plan};

/// Counters of the merger (SPEC §4.4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MergerStats {
    pub stored_groups: u64,
    pub matches: u64,
    /// Stored groups dropped early because `max_stored_groups` was hit.
    pub closed_early: u64,
    /// Tuples currently held for the set-difference decision.
    pub held_tuples: u64,
    /// Tuples removed because a difference module extended them.
    pub extended: u64,
    /// Stored groups dropped and held tuples decided early because
    /// `engine.max_state` was reached.
    pub state_evictions: u64,
    /// Bytes of the merger's state (stored groups, held tuples).
    pub state_bytes: u64,
}

/// Budget charge of a stored group: the group, and its entries in the
/// store's indexes, the arrival queue and the extension marks.
fn stored_cost(g: &Group) -> usize {
    group_cost(g) + 256
}

/// Budget charge of a held tuple: its entries and, as an upper bound for
/// groups that leave the stores before the tuple is decided, its groups.
fn held_cost(t: &[Arc<Group>]) -> usize {
    let groups: usize = t.iter().map(|g| group_cost(g)).sum();
    std::mem::size_of::<Vec<Arc<Group>>>() + std::mem::size_of_val(t) + 128 + groups
}

/// A held tuple and its budget charge.
type Held = (Vec<Arc<Group>>, usize);

/// A module whose tuples are subtracted from the export module's.
struct DiffModule {
    /// Branches it shares with the export module.
    shared: Vec<usize>,
    plan: JoinPlan,
}

struct Joiner {
    /// Export module branches, in declared order.
    export_branches: Vec<usize>,
    /// Per plan branch: how to complete an export tuple from a group there.
    export_plans: Vec<Option<JoinPlan>>,
    diffs: Vec<DiffModule>,
    stores: Vec<BranchStore>,
    stored: Vec<bool>,
    /// Arrival order of stored groups as (seq in its store, branch), for
    /// the global limit. Entries of groups already expired are skipped
    /// lazily.
    order: VecDeque<(u64, usize)>,
    stored_count: usize,
    /// Tuples awaiting the difference decision, by (deadline, formation),
    /// with what they were charged (released as charged).
    held: BTreeMap<(i64, u64), Held>,
    /// Formation numbers of the held tuples.
    pending: BTreeSet<u64>,
    next_held: u64,
    /// Per branch: true when only difference modules use it (the branch
    /// supplies extensions, never export tuples).
    extension_only: Vec<bool>,
    /// (branch, seq) → `next_held` when the group was stored: an extension
    /// group is kept until every tuple formed before it arrived has been
    /// decided, so a held tuple sees every extension that arrived before
    /// its deadline.
    marks: FastMap<(usize, u64), u64>,
    /// Per branch: no more groups will come (see `branch_finished`).
    finished: Vec<bool>,
    /// The merger's share of the state budget: stored groups, held tuples.
    account: StateAccount,
    /// Per branch: how far after a stored group's `etime` a group that can
    /// join it may start (see `reach.rs`); all `None` when there are
    /// difference modules, whose extensions only the horizon bounds.
    reach: Vec<Option<i64>>,
}

pub struct MergerEngine {
    joiner: Option<Joiner>,
    horizon: Option<i64>,
    max_stored: usize,
    stats: MergerStats,
}

impl MergerEngine {
    /// A merger with a budget of its own of `cfg.max_state` bytes.
    pub fn new(plan: &Arc<Plan>, cfg: &EngineConfig) -> Self {
        Self::with_budget(plan, cfg, StateBudget::new(cfg.max_state))
    }

    /// Like [`MergerEngine::new`], charging its state to a shared budget.
    pub fn with_budget(plan: &Arc<Plan>, cfg: &EngineConfig, budget: Arc<StateBudget>) -> Self {
        MergerEngine {
            joiner: plan
                .merger
                .as_ref()
                .map(|m| Joiner::new(m, plan.branches.len(), StateAccount::new(budget))),
            horizon: cfg.horizon,
            max_stored: cfg.max_stored_groups.max(1),
            stats: MergerStats::default(),
        }
    }

    /// A closed, groupfilter-passed group; append completed matches.
    pub fn push_group(&mut self, g: Arc<Group>, out: &mut Vec<Match>) {
        let Some(j) = &mut self.joiner else {
            self.emit(vec![g], out);
            return;
        };
        let b = g.branch;
        if !j.stored.get(b).copied().unwrap_or(false) {
            return;
        }
        let filing = j.prepare(&g);
        let tuples = j.complete(&g);
        let has_diffs = !j.diffs.is_empty();
        for t in tuples {
            if !has_diffs {
                self.emit(t, out);
                continue;
            }
            let Some(j) = &mut self.joiner else { return };
            // Extensions already stored rule the tuple out now; later ones
            // are looked for at the deadline.
            if j.extended(&t) {
                self.stats.extended += 1;
                continue;
            }
            let latest = t.iter().map(|g| g.etime).max().unwrap_or(i64::MIN);
            let deadline = self.horizon.map_or(i64::MAX, |h| latest.saturating_add(h));
            let cost = held_cost(&t);
            if self.make_room(cost, out) {
                if let Some(j) = &mut self.joiner {
                    j.hold(deadline, t, cost);
                }
            } else {
                self.count_evictions(Eviction::HeldTuple, 1);
                self.decide(t, out);
            }
        }
        self.limit_held(out);
        if !self.joiner.as_ref().is_some_and(|j| j.may_join_later(b)) {
            return;
        }
        let cost = stored_cost(&g);
        if !self.make_room(cost, out) {
            // The budget is held elsewhere: this group is the one not kept.
            self.count_evictions(Eviction::StoredGroup, 1);
            return;
        }
        if let Some(j) = &mut self.joiner {
            let dropped = j.store(g, filing, cost, self.max_stored);
            self.stats.closed_early += dropped;
        }
    }

    /// Charge `n` bytes, dropping the oldest stored groups and then
    /// deciding the earliest held tuples while the budget cannot cover
    /// them; false when nothing of the merger is left to give up.
    fn make_room(&mut self, n: usize, out: &mut Vec<Match>) -> bool {
        loop {
            let Some(j) = &mut self.joiner else {
                return false;
            };
            if j.account.try_charge(n) {
                return true;
            }
            if j.drop_oldest_stored() {
                self.count_evictions(Eviction::StoredGroup, 1);
                continue;
            }
            let Some(t) = j.take_held(|_| true, 1).pop() else {
                return false;
            };
            self.count_evictions(Eviction::HeldTuple, 1);
            self.decide(t, out);
        }
    }

    fn count_evictions(&mut self, kind: Eviction, n: u64) {
        self.stats.state_evictions += n;
        if let Some(j) = &self.joiner {
            j.account.evicted(kind, n);
        }
    }

    /// Branch `b` will send no more groups (end of input).
    pub fn branch_finished(&mut self, b: usize) {
        if let Some(slot) = self.joiner.as_mut().and_then(|j| j.finished.get_mut(b)) {
            *slot = true;
        }
    }

    /// Held tuples count against `max_stored_groups` too: beyond it the
    /// earliest-deadline tuples are decided now (counted as closed early).
    fn limit_held(&mut self, out: &mut Vec<Match>) {
        let max = self.max_stored;
        let Some(j) = &mut self.joiner else { return };
        let excess = j.held.len().saturating_sub(max);
        let due = j.take_held(|_| true, excess);
        self.stats.closed_early += due.len() as u64;
        for t in due {
            self.decide(t, out);
        }
    }

    /// W advanced: emit held tuples whose deadline passed and that nothing
    /// extends, then drop stored groups older than the horizon.
    pub fn advance(&mut self, w: i64, out: &mut Vec<Match>) {
        let Some(h) = self.horizon else { return };
        let Some(j) = &mut self.joiner else { return };
        let due = j.take_held(|deadline| deadline < w, usize::MAX);
        for t in due {
            self.decide(t, out);
        }
        if let Some(j) = &mut self.joiner {
            j.expire(|etime| etime.saturating_add(h) < w);
        }
    }

    /// No group that can still arrive starts before `frontier`: drop the
    /// stored groups the relations say no such group can join.
    pub fn expire_unreachable(&mut self, frontier: i64) {
        let Some(j) = &mut self.joiner else { return };
        if j.reach.iter().all(Option::is_none) {
            return;
        }
        let reach = j.reach.clone();
        j.expire_by_branch(|b, etime| {
            reach
                .get(b)
                .copied()
                .flatten()
                .is_some_and(|r| etime.saturating_add(r) < frontier)
        });
    }

    /// End of input: decide every held tuple.
    pub fn finish(&mut self, out: &mut Vec<Match>) {
        let Some(j) = &mut self.joiner else { return };
        let due = j.take_held(|_| true, usize::MAX);
        for t in due {
            self.decide(t, out);
        }
    }

    fn decide(&mut self, t: Vec<Arc<Group>>, out: &mut Vec<Match>) {
        let extended = self.joiner.as_ref().is_some_and(|j| j.extended(&t));
        if extended {
            self.stats.extended += 1;
        } else {
            self.emit(t, out);
        }
    }

    fn emit(&mut self, groups: Vec<Arc<Group>>, out: &mut Vec<Match>) {
        self.stats.matches += 1;
        out.push(Match::new(groups));
    }

    /// The earliest start of any group the merger still stores (`None`:
    /// it stores none). A record that starts before it is in no stored
    /// group.
    pub fn oldest_stored_stime(&self) -> Option<i64> {
        let joiner = self.joiner.as_ref()?;
        joiner
            .stores
            .iter()
            .flat_map(|s| s.all())
            .map(|g| g.stime)
            .min()
    }

    pub fn stats(&self) -> MergerStats {
        let (stored, held, bytes) = self.joiner.as_ref().map_or((0, 0, 0), |j| {
            (
                j.stores.iter().map(|s| s.len() as u64).sum(),
                j.held.len() as u64,
                j.account.used() as u64,
            )
        });
        MergerStats {
            stored_groups: stored,
            held_tuples: held,
            state_bytes: bytes,
            ..self.stats
        }
    }
}

impl Joiner {
    fn new(m: &MergerPlan, n_branches: usize, account: StateAccount) -> Self {
        let mut stores: Vec<BranchStore> =
            (0..n_branches).map(|_| BranchStore::default()).collect();
        let mut stored = vec![false; n_branches];
        let export = m.modules.get(m.export);
        let export_branches = export.map_or_else(Vec::new, |e| e.branches.clone());
        let mut export_plans: Vec<Option<JoinPlan>> = (0..n_branches).map(|_| None).collect();
        if let Some(e) = export {
            for &b in &e.branches {
                if let Some(slot) = export_plans.get_mut(b) {
                    *slot = Some(JoinPlan::new(e, &[b], &mut stores));
                    stored[b] = true;
                }
            }
        }
        let mut diffs = Vec::new();
        for (i, m2) in m.modules.iter().enumerate() {
            if i == m.export {
                continue;
            }
            let shared: Vec<usize> = m2
                .branches
                .iter()
                .copied()
                .filter(|b| export_branches.contains(b))
                .collect();
            if shared.is_empty() {
                continue;
            }
            for &b in &m2.branches {
                if let Some(s) = stored.get_mut(b) {
                    *s = true;
                }
            }
            diffs.push(DiffModule {
                plan: JoinPlan::new(m2, &shared, &mut stores),
                shared,
            });
        }
        let reach = match export {
            Some(e) if diffs.is_empty() => module_reach(e, n_branches),
            _ => vec![None; n_branches],
        };
        let extension_only = (0..n_branches)
            .map(|b| stored[b] && !export_branches.contains(&b))
            .collect();
        Joiner {
            extension_only,
            marks: FastMap::default(),
            finished: vec![false; n_branches],
            pending: BTreeSet::new(),
            export_branches,
            export_plans,
            diffs,
            stores,
            stored,
            order: VecDeque::new(),
            stored_count: 0,
            held: BTreeMap::new(),
            next_held: 0,
            account,
            reach,
        }
    }

    /// Can a group of branch `b` still be part of a future tuple? Not once
    /// every other branch has finished and no difference module (whose
    /// checks read the stores until the end) exists.
    fn may_join_later(&self, b: usize) -> bool {
        !self.diffs.is_empty()
            || self
                .stored
                .iter()
                .zip(&self.finished)
                .enumerate()
                .any(|(x, (stored, finished))| x != b && *stored && !*finished)
    }

    /// Every export tuple `g` completes with stored groups, in the export
    /// module's branch order.
    fn complete(&self, g: &Arc<Group>) -> Vec<Vec<Arc<Group>>> {
        let Some(Some(plan)) = self.export_plans.get(g.branch) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        let mut binding: Binding = smallvec::smallvec![None; self.stores.len()];
        binding[g.branch] = Some(g);
        plan.search(&self.stores, &mut binding, &mut |b| {
            found.extend(self.tuple(b));
            true
        });
        found
    }

    /// The export tuple of a complete binding. Sized exactly: it becomes
    /// the match's `groups`, kept for every match (a collected `Option`
    /// started at four slots, twice the usual two branches).
    fn tuple(&self, b: &[Option<&Arc<Group>>]) -> Option<Vec<Arc<Group>>> {
        let mut t = Vec::with_capacity(self.export_branches.len());
        for x in &self.export_branches {
            t.push(b.get(*x).copied().flatten()?.clone());
        }
        Some(t)
    }

    /// Does some difference module extend this export tuple?
    fn extended(&self, t: &[Arc<Group>]) -> bool {
        self.diffs.iter().any(|d| {
            let mut binding: Binding = smallvec::smallvec![None; self.stores.len()];
            for &b in &d.shared {
                let pos = self.export_branches.iter().position(|x| *x == b);
                if let Some(slot) = binding.get_mut(b) {
                    *slot = pos.and_then(|p| t.get(p));
                }
            }
            d.plan.exists(&self.stores, &mut binding)
        })
    }

    fn hold(&mut self, deadline: i64, t: Vec<Arc<Group>>, cost: usize) {
        self.held.insert((deadline, self.next_held), (t, cost));
        self.pending.insert(self.next_held);
        self.next_held += 1;
    }

    /// Up to `max` held tuples in (deadline, formation) order while
    /// `due(deadline)`.
    fn take_held(&mut self, due: impl Fn(i64) -> bool, max: usize) -> Vec<Vec<Arc<Group>>> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(entry) = self.held.first_entry() else {
                break;
            };
            if !due(entry.key().0) {
                break;
            }
            self.pending.remove(&entry.key().1);
            let (t, cost) = entry.remove();
            self.account.credit(cost);
            out.push(t);
        }
        out
    }

    /// How `g` would be filed in its branch's store (see
    /// [`BranchStore::prepare`]).
    fn prepare(&self, g: &Group) -> Filing {
        self.stores
            .get(g.branch)
            .map(|s| s.prepare(g))
            .unwrap_or_default()
    }

    /// Store `g`, charged `cost`; drop the oldest stored groups beyond
    /// `max`. Returns how many were dropped early.
    fn store(&mut self, g: Arc<Group>, filing: Filing, cost: usize, max: usize) -> u64 {
        let b = g.branch;
        if let Some(s) = self.stores.get_mut(b) {
            let seq = s.insert(g, filing, cost);
            if self.extension_only.get(b).copied().unwrap_or(false) {
                self.marks.insert((b, seq), self.next_held);
            }
            self.order.push_back((seq, b));
            self.stored_count += 1;
        }
        let mut dropped = 0;
        while self.stored_count > max && self.drop_oldest_stored() {
            dropped += 1;
        }
        dropped
    }

    /// Drop the stored group that arrived first; false when none is stored.
    fn drop_oldest_stored(&mut self) -> bool {
        while let Some((seq, b)) = self.order.pop_front() {
            if self.remove_stored(b, seq) {
                return true;
            }
        }
        false
    }

    /// Remove a stored group and its bookkeeping; false if it was gone.
    fn remove_stored(&mut self, b: usize, seq: u64) -> bool {
        let Some((_, cost)) = self.stores.get_mut(b).and_then(|s| s.remove(seq)) else {
            return false;
        };
        self.account.credit(cost);
        self.stored_count -= 1;
        self.marks.remove(&(b, seq));
        true
    }

    /// Drop stored groups whose `etime` satisfies `expired`.
    fn expire(&mut self, expired: impl Fn(i64) -> bool) {
        self.expire_by_branch(|_, etime| expired(etime));
    }

    fn expire_by_branch(&mut self, expired: impl Fn(usize, i64) -> bool) {
        let oldest_pending = self.pending.first().copied();
        for b in 0..self.stores.len() {
            while let Some((etime, seq)) = self.stores.get(b).and_then(BranchStore::earliest_end) {
                if !expired(b, etime) {
                    break;
                }
                let needed = match (self.marks.get(&(b, seq)), oldest_pending) {
                    (Some(mark), Some(p)) => p < *mark,
                    _ => false,
                };
                if needed || !self.remove_stored(b, seq) {
                    break;
                }
            }
        }
        let stores = &self.stores;
        while let Some(&(seq, b)) = self.order.front() {
            if stores.get(b).is_some_and(|s| s.contains(seq)) {
                break;
            }
            self.order.pop_front();
        }
        // A long-lived group at the front must not let stale entries pile up.
        if self.order.len() > 2 * self.stored_count + 1024 {
            self.order
                .retain(|(seq, b)| stores.get(*b).is_some_and(|s| s.contains(*seq)));
        }
    }
}
