//! One branch: filter → reorder buffer → grouper → groupfilter (SPEC §3.2).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use smallvec::SmallVec;

use crate::engine::budget::{pending_cost, Eviction, StateBudget};
use crate::engine::config::EngineConfig;
use crate::engine::filter::eval_rule;
use crate::engine::grouper::Grouper;
use crate::engine::Group;
use crate::query::plan::{FilterPlan, GroupFilterPlan, Plan};
use crate::record::Record;

/// For each branch, the earlier branch whose very filter it runs, if any
/// (branches naming one filter share it: ipv6-failure's three login
/// branches). Found once when the engine is built, so a record's verdicts
/// evaluate each shared filter once.
pub(crate) struct FilterSharing(Vec<Option<usize>>);

impl FilterSharing {
    pub(crate) fn new(branches: &[BranchEngine]) -> Self {
        let earlier = |i: usize, b: &BranchEngine| {
            branches
                .get(..i)
                .and_then(|bs| bs.iter().position(|e| b.same_filter(e)))
        };
        FilterSharing(
            branches
                .iter()
                .enumerate()
                .map(|(i, b)| earlier(i, b))
                .collect(),
        )
    }

    /// Each branch's filter verdict on `rec`.
    pub(crate) fn verdicts(&self, branches: &[BranchEngine], rec: &Record) -> SmallVec<[bool; 4]> {
        let mut out: SmallVec<[bool; 4]> = SmallVec::with_capacity(branches.len());
        for (b, shared) in branches.iter().zip(&self.0) {
            let verdict = match shared.and_then(|j| out.get(j)) {
                Some(v) => *v,
                None => b.accepts(rec),
            };
            out.push(verdict);
        }
        out
    }
}

/// Counters of one branch (SPEC §4.4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BranchStats {
    pub records_in: u64,
    /// Records that passed the filter.
    pub records_filtered: u64,
    pub groups_open: u64,
    pub groups_closed: u64,
    pub groups_passed: u64,
    /// Groups closed before their time because `max_open_groups` was hit.
    pub closed_early: u64,
    /// Records released before W passed them because `max_reorder` was hit.
    pub reorder_overflow: u64,
    /// Filter-passed records that arrived behind W and were processed out
    /// of order (late records dropped by admission never get here).
    pub late: u64,
    /// Open groups closed and buffered records released early because
    /// `engine.max_state` was reached.
    pub state_evictions: u64,
    /// Bytes of this branch's state (open groups, reorder buffer).
    pub state_bytes: u64,
}

/// A buffered record with its (stime, rec_id) order key copied out, so
/// ordering never dereferences the record.
struct Pending {
    key: (i64, u64),
    rec: Arc<Record>,
}

impl Pending {
    fn new(rec: &Arc<Record>) -> Self {
        Pending {
            key: (rec.stime(), rec.rec_id()),
            rec: rec.clone(),
        }
    }
}
/// Bucket width of the calendar in ms. Records arrive nearly in stime
/// order, so W passes a few buckets per advance; a bucket is small enough
/// to sort cheaply when W reaches it, and wide enough that a long lateness
/// needs only a few thousand of them.
const BUCKET_MS: i64 = 32;

/// One calendar bucket. Records are appended in arrival order and sorted
/// only when they are about to leave; from then on the bucket is kept in
/// descending order so the earliest record pops off the end.
#[derive(Default)]
struct Bucket {
    recs: Vec<Pending>,
    sorted: bool,
}

impl Bucket {
    fn push(&mut self, p: Pending) {
        if self.sorted {
            // Before equal keys: they arrived earlier, so they pop first.
            let at = self.recs.partition_point(|q| q.key > p.key);
            self.recs.insert(at, p);
        } else {
            self.recs.push(p);
        }
    }

    fn sort(&mut self) {
        if !self.sorted {
            // Stable, then reversed: equal keys pop in arrival order.
            self.recs.sort_by_key(|p| p.key);
            self.recs.reverse();
            self.sorted = true;
        }
    }

    /// Empty the bucket in ascending order; its storage stays for reuse.
    fn drain_sorted(&mut self) -> std::vec::Drain<'_, Pending> {
        if self.sorted {
            self.recs.reverse();
        } else {
            self.recs.sort_by_key(|p| p.key);
        }
        self.sorted = false;
        self.recs.drain(..)
    }
}

/// Most buckets the ring spans (about 35 minutes of stime); records
/// further from the others go to `Calendar::far` instead of forcing that
/// many empty buckets into the ring.
#[cfg(not(test))]
const RING_MAX: usize = 1 << 16;
/// Small enough that the unit tests' stimes keep crossing the ring's edges.
#[cfg(test)]
const RING_MAX: usize = 8;

/// Emptied bucket storage kept for reuse, and the largest one worth keeping.
const SPARE_MAX: usize = 256;
const SPARE_CAPACITY_MAX: usize = 4096;

/// Records bucketed by stime: pushing is an append to a bucket found by
/// index arithmetic, and W passing a whole bucket releases it with one
/// sort instead of a heap walk per record.
#[derive(Default)]
struct Calendar {
    /// Bucket index of `ring[0]`.
    first: i64,
    /// Consecutive buckets; the first one is never empty.
    ring: VecDeque<Bucket>,
    /// Buckets outside the ring's span (a clock jump, a bogus stime); no
    /// index is both here and in the ring's span, and none is empty.
    far: BTreeMap<i64, Bucket>,
    len: usize,
    spare: Vec<Vec<Pending>>,
}

impl Calendar {
    fn push(&mut self, p: Pending) {
        let at = p.key.0.div_euclid(BUCKET_MS);
        self.len += 1;
        match self.ring_slot(at) {
            Some(bucket) => bucket.push(p),
            None => self.far.entry(at).or_default().push(p),
        }
    }

    /// The ring's bucket `at`, growing the ring to reach it unless the ring
    /// would then span more than `RING_MAX` buckets.
    fn ring_slot(&mut self, at: i64) -> Option<&mut Bucket> {
        if self.ring.is_empty() {
            self.first = at;
        }
        let end = self.first + self.ring.len() as i64;
        if at < self.first {
            let grow = usize::try_from(self.first - at).ok()?;
            if grow + self.ring.len() > RING_MAX {
                return None;
            }
            for _ in 0..grow {
                self.ring.push_front(new_bucket(&mut self.spare));
            }
            self.first = at;
            self.adopt_far(at, at + grow as i64);
        } else if at >= end {
            let len = usize::try_from(at - self.first).ok()? + 1;
            if len > RING_MAX {
                return None;
            }
            let spare = &mut self.spare;
            self.ring.resize_with(len, || new_bucket(spare));
            self.adopt_far(end, at + 1);
        }
        let i = usize::try_from(at - self.first).ok()?;
        self.ring.get_mut(i)
    }

    /// The ring now spans `lo..hi`: move far buckets there into it.
    fn adopt_far(&mut self, lo: i64, hi: i64) {
        if self.far.is_empty() {
            return;
        }
        let keys: Vec<i64> = self.far.range(lo..hi).map(|(k, _)| *k).collect();
        for k in keys {
            let (Some(bucket), Ok(i)) = (self.far.remove(&k), usize::try_from(k - self.first))
            else {
                continue;
            };
            if let Some(slot) = self.ring.get_mut(i) {
                let empty = std::mem::replace(slot, bucket);
                recycle(&mut self.spare, empty.recs);
            }
        }
    }

    /// The earliest non-empty bucket and its index.
    fn earliest(&mut self) -> Option<(i64, &mut Bucket)> {
        let far_first = self.far.first_key_value().map(|(k, _)| *k);
        match (self.ring.is_empty(), far_first) {
            (false, far) if far.is_none_or(|k| k > self.first) => {
                let first = self.first;
                self.ring.front_mut().map(|b| (first, b))
            }
            _ => self.far.iter_mut().next().map(|(k, b)| (*k, b)),
        }
    }

    /// Drop emptied buckets from the front of the ring and of `far`.
    fn tidy(&mut self) {
        while self.ring.front().is_some_and(|b| b.recs.is_empty()) {
            if let Some(bucket) = self.ring.pop_front() {
                recycle(&mut self.spare, bucket.recs);
            }
            self.first += 1;
        }
        if self.ring.is_empty() {
            self.first = 0;
        }
        self.far
            .first_entry()
            .filter(|e| e.get().recs.is_empty())
            .map(|e| e.remove());
    }

    /// Remove and return the earliest record.
    fn pop(&mut self) -> Option<Arc<Record>> {
        let (_, bucket) = self.earliest()?;
        bucket.sort();
        let p = bucket.recs.pop();
        self.len -= usize::from(p.is_some());
        self.tidy();
        p.map(|p| p.rec)
    }

    /// Append to `out`, in order, the records with stime below `w` from the
    /// earliest bucket; false when it has none (then no later bucket has any).
    fn take_run_before(&mut self, w: i64, out: &mut Vec<Arc<Record>>) -> bool {
        let Some((at, bucket)) = self.earliest() else {
            return false;
        };
        let start = at * BUCKET_MS;
        if start >= w {
            return false;
        }
        let before = out.len();
        if w.saturating_sub(start) >= BUCKET_MS {
            out.extend(bucket.drain_sorted().map(|p| p.rec));
        } else {
            bucket.sort();
            while let Some(p) = bucket.recs.pop_if(|p| p.key.0 < w) {
                out.push(p.rec);
            }
        }
        self.len -= out.len() - before;
        self.tidy();
        out.len() > before
    }

    /// Everything in ascending order; the calendar is left empty.
    fn take_sorted(&mut self) -> Vec<Pending> {
        let mut recs = Vec::with_capacity(self.len);
        while let Some((_, bucket)) = self.earliest() {
            recs.extend(bucket.drain_sorted());
            self.tidy();
        }
        self.len = 0;
        recs
    }
}

fn new_bucket(spare: &mut Vec<Vec<Pending>>) -> Bucket {
    Bucket {
        recs: spare.pop().unwrap_or_default(),
        sorted: false,
    }
}

fn recycle(spare: &mut Vec<Vec<Pending>>, mut recs: Vec<Pending>) {
    if spare.len() < SPARE_MAX && recs.capacity() <= SPARE_CAPACITY_MAX {
        recs.clear();
        spare.push(recs);
    }
}

/// The reorder buffer. Records pile up in a plain Vec until something
/// must come out before the end (W passed a buffered record, or the buffer
/// overflowed); only then is the pile moved into the calendar. A batch run
/// never pays for bucketing: `finish` sorts the pile once.
struct Reorder {
    pile: Vec<Pending>,
    /// Smallest stime in `pile`.
    pile_min: i64,
    calendar: Calendar,
}

impl Reorder {
    fn new() -> Self {
        Reorder {
            pile: Vec::new(),
            pile_min: i64::MAX,
            calendar: Calendar::default(),
        }
    }

    fn len(&self) -> usize {
        self.pile.len() + self.calendar.len
    }

    fn push(&mut self, p: Pending) {
        if self.calendar.len == 0 {
            self.pile_min = self.pile_min.min(p.key.0);
            self.pile.push(p);
        } else {
            self.calendar.push(p);
        }
    }

    fn spill(&mut self) {
        if !self.pile.is_empty() {
            let pile = std::mem::take(&mut self.pile);
            pile.into_iter().for_each(|p| self.calendar.push(p));
            self.pile_min = i64::MAX;
        }
    }

    /// Remove and return the earliest record.
    fn pop(&mut self) -> Option<Arc<Record>> {
        self.spill();
        self.calendar.pop()
    }

    /// Append to `out`, in order, a run of the earliest records with stime
    /// below `w`; false when there are none.
    fn take_run_before(&mut self, w: i64, out: &mut Vec<Arc<Record>>) -> bool {
        if self.calendar.len == 0 && self.pile_min >= w {
            return false;
        }
        self.spill();
        self.calendar.take_run_before(w, out)
    }

    /// Everything, in (stime, rec_id) order; the buffer is left empty.
    fn take_sorted(&mut self) -> Vec<Pending> {
        if self.calendar.len > 0 {
            self.spill();
            return self.calendar.take_sorted();
        }
        let mut recs = std::mem::take(&mut self.pile);
        self.pile_min = i64::MAX;
        // Stable, so equal keys (duplicate rec_ids) keep arrival order.
        if !recs.is_sorted_by_key(|p| p.key) {
            recs.sort_by_key(|p| p.key);
        }
        recs
    }
}

/// How many records `release_sorted` reads at once.
const BATCH: usize = 16;

/// Load the parts of a record the grouper reads first.
#[inline]
fn touch(r: &Record) {
    std::hint::black_box((r.bytes(), r.stime(), r.srcip(), r.dstip()));
}

pub struct BranchEngine {
    filter: Option<Arc<FilterPlan>>,
    groupfilter: Option<Arc<GroupFilterPlan>>,
    reorder: Reorder,
    /// Scratch for the records one advance releases (kept for its capacity).
    run: Vec<Arc<Record>>,
    grouper: Grouper,
    max_reorder: usize,
    /// Records released early because `engine.max_state` was reached.
    reorder_evicted: u64,
    stats: BranchStats,
    valid: bool,
    /// `Some` once [`BranchEngine::track_closed_spans`] was called.
    closed_spans: Option<Vec<(i64, i64)>>,
}

/// Budget charge of a record in the reorder buffer.
fn buffered_cost(rec: &Record) -> usize {
    pending_cost(rec, std::mem::size_of::<Pending>())
}

impl BranchEngine {
    /// State for branch `branch` of `plan`, with a budget of its own of
    /// `cfg.max_state` bytes. An out-of-range index yields a branch that
    /// passes nothing (the compiler never produces one).
    pub fn new(plan: &Arc<Plan>, branch: usize, cfg: &EngineConfig) -> Self {
        Self::with_budget(plan, branch, cfg, StateBudget::new(cfg.max_state))
    }

    /// Like [`BranchEngine::new`], charging its state to a shared budget.
    pub fn with_budget(
        plan: &Arc<Plan>,
        branch: usize,
        cfg: &EngineConfig,
        budget: Arc<StateBudget>,
    ) -> Self {
        let bp = plan.branches.get(branch);
        BranchEngine {
            filter: bp.and_then(|b| b.filter.clone()),
            groupfilter: bp.and_then(|b| b.groupfilter.clone()),
            reorder: Reorder::new(),
            run: Vec::new(),
            grouper: Grouper::new(
                bp.and_then(|b| b.grouper.clone()),
                branch,
                cfg.window,
                cfg.max_open_groups,
                budget,
            ),
            max_reorder: cfg.max_reorder.max(1),
            reorder_evicted: 0,
            stats: BranchStats::default(),
            valid: bp.is_some(),
            closed_spans: None,
        }
    }

    /// Filter the record; keep it in the reorder buffer if it passes.
    pub fn push(&mut self, rec: &Arc<Record>, watermark: Option<i64>) {
        if self.accepts(rec) {
            self.push_accepted(rec, watermark);
        } else {
            self.count_rejected();
        }
    }

    /// Would the filter let `rec` in? Lets a caller that owns the record
    /// skip wrapping it in an `Arc` when no branch wants it.
    pub(crate) fn accepts(&self, rec: &Record) -> bool {
        self.valid && self.filter.as_ref().is_none_or(|f| eval_rule(&f.rule, rec))
    }

    /// Does this branch run the very filter `other` runs (the same plan,
    /// as branches naming one filter share it)? Then its verdict on a
    /// record is `other`'s.
    fn same_filter(&self, other: &BranchEngine) -> bool {
        self.valid
            && other.valid
            && match (&self.filter, &other.filter) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
    }

    /// A record the filter has let in (see [`BranchEngine::accepts`]).
    pub(crate) fn push_accepted(&mut self, rec: &Arc<Record>, watermark: Option<i64>) {
        self.stats.records_in += 1;
        self.stats.records_filtered += 1;
        if watermark.is_some_and(|w| rec.stime() < w) {
            // Admission already applied the late policy: a late record that
            // got here is processed, out of order.
            self.stats.late += 1;
            self.grouper.offer(rec.clone());
            return;
        }
        if !self.make_room(buffered_cost(rec)) {
            // Nothing of this branch is left to evict: the record goes on
            // to the grouper at once instead of waiting for W.
            self.evict_reorder(rec.clone());
            return;
        }
        self.reorder.push(Pending::new(rec));
        if self.reorder.len() > self.max_reorder {
            if let Some(r) = self.reorder.pop() {
                self.stats.reorder_overflow += 1;
                self.grouper.credit(buffered_cost(&r));
                self.release(r);
            }
        }
    }

    /// Charge `n` bytes: the grouper closes its oldest open groups first;
    /// with none left, the oldest buffered records go to it early.
    fn make_room(&mut self, n: usize) -> bool {
        loop {
            if self.grouper.make_room(n) {
                return true;
            }
            let Some(r) = self.reorder.pop() else {
                return false;
            };
            self.grouper.credit(buffered_cost(&r));
            self.evict_reorder(r);
        }
    }

    /// Release a record before W passed it, for the budget.
    fn evict_reorder(&mut self, rec: Arc<Record>) {
        self.reorder_evicted += 1;
        self.grouper.evicted(Eviction::Reorder, 1);
        self.release(rec);
    }

    /// Groups closed since the last drain (by a limit, while records were
    /// pushed) that pass the groupfilter: they need not wait for W to move.
    pub fn take_closed(&mut self, out: &mut Vec<Arc<Group>>) {
        // Called after every push: usually there is nothing to take.
        if self.grouper.has_closed() {
            self.drain(out);
        }
    }

    /// `n` records the filter rejected.
    pub(crate) fn count_rejected_n(&mut self, n: u64) {
        self.stats.records_in += n;
    }

    /// A record the filter rejected: only counted.
    pub(crate) fn count_rejected(&mut self) {
        self.stats.records_in += 1;
    }

    fn release(&mut self, rec: Arc<Record>) {
        // Groups that cannot take this record cannot take any later one.
        self.grouper.close_before(rec.stime());
        self.grouper.offer(rec);
    }

    /// W advanced to `w`: release records with `stime < w`, close groups
    /// that can no longer grow, append those passing the groupfilter.
    pub fn advance(&mut self, w: i64, out: &mut Vec<Arc<Group>>) {
        let mut run = std::mem::take(&mut self.run);
        while self.reorder.take_run_before(w, &mut run) {
            self.release_sorted(run.drain(..));
        }
        self.run = run;
        self.grouper.close_before(w);
        self.drain(out);
    }

    /// End of input: release everything and close every group.
    pub fn finish(&mut self, out: &mut Vec<Arc<Group>>) {
        let recs = self.reorder.take_sorted();
        self.release_sorted(recs.into_iter().map(|p| p.rec));
        self.grouper.close_all();
        self.drain(out);
    }

    /// Release records in order. Sorted records lie scattered over the
    /// heap, so the grouper would stall on a cache miss for each one;
    /// reading a batch of them first lets those misses overlap.
    fn release_sorted(&mut self, mut recs: impl Iterator<Item = Arc<Record>>) {
        let mut batch: Vec<Arc<Record>> = Vec::with_capacity(BATCH);
        loop {
            batch.extend(recs.by_ref().take(BATCH));
            if batch.is_empty() {
                return;
            }
            batch.iter().for_each(|r| touch(r));
            let bytes: usize = batch.iter().map(|r| buffered_cost(r)).sum();
            self.grouper.credit(bytes);
            for r in batch.drain(..) {
                self.release(r);
            }
        }
    }

    fn drain(&mut self, out: &mut Vec<Arc<Group>>) {
        let gf = self.groupfilter.clone();
        for g in self.grouper.drain_closed() {
            if let Some(spans) = &mut self.closed_spans {
                let last = g.members.iter().map(|r| r.stime()).max().unwrap_or(g.stime);
                spans.push((g.stime, last));
            }
            if gf.as_ref().is_none_or(|f| eval_rule(&f.rule, &g)) {
                self.stats.groups_passed += 1;
                out.push(Arc::new(g));
            }
        }
    }

    pub fn stats(&self) -> BranchStats {
        let g = self.grouper.stats();
        BranchStats {
            groups_open: self.grouper.open_count() as u64,
            groups_closed: g.groups_closed,
            closed_early: g.closed_early,
            state_evictions: g.closed_by_budget + self.reorder_evicted,
            state_bytes: self.grouper.state_bytes() as u64,
            ..self.stats
        }
    }

    /// No group this branch closes from now on starts before this (given
    /// W was advanced to `w`): the oldest open group, or records not yet
    /// released, which lie at or after `w`. Late records are the exception
    /// (they are inexact by definition).
    pub fn group_frontier(&self, w: i64) -> i64 {
        self.grouper.oldest_open_stime().map_or(w, |s| s.min(w))
    }

    /// From now on, note the span (first and last member start) of every
    /// group the grouper closes, passed or not: a cluster worker must not
    /// cut its replay point through one.
    pub fn track_closed_spans(&mut self) {
        self.closed_spans.get_or_insert_with(Vec::new);
    }

    /// Spans noted since the last call.
    pub fn take_closed_spans(&mut self, out: &mut Vec<(i64, i64)>) {
        if let Some(spans) = &mut self.closed_spans {
            out.append(spans);
        }
    }

    /// Records waiting in the reorder buffer.
    pub fn buffered(&self) -> usize {
        self.reorder.len()
    }

    /// Bytes this branch has charged to its budget.
    pub fn state_bytes(&self) -> usize {
        self.grouper.state_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RecordFields;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[derive(Clone, Debug)]
    enum Op {
        Push { stime: i64, rec_id: u64 },
        Advance(i64),
    }

    /// Mostly small forward steps (nearly sorted input), some disorder
    /// around bucket edges, rare far jumps either way, duplicate keys.
    fn op() -> impl Strategy<Value = Op> {
        let stime = prop_oneof![
            8 => -200i64..400,
            1 => Just(i64::MIN / 2),
            1 => (1i64 << 40)..(1i64 << 40) + 100,
        ];
        prop_oneof![
            4 => (stime, 0u64..6).prop_map(|(stime, rec_id)| Op::Push { stime, rec_id }),
            1 => (-300i64..500).prop_map(Op::Advance),
        ]
    }

    /// The specification: a set ordered by (stime, rec_id, arrival).
    #[derive(Default)]
    struct Model {
        set: BTreeSet<(i64, u64, u64)>,
    }

    impl Model {
        fn pop(&mut self) -> Option<u64> {
            self.set.pop_first().map(|k| k.2)
        }
    }

    fn seq(r: &Arc<Record>) -> u64 {
        r.bytes().unwrap_or(u64::MAX)
    }

    /// Both buffers run `ops` the way `BranchEngine` drives its buffer;
    /// returns the release sequences (arrival numbers).
    fn run(ops: &[Op], max: usize) -> (Vec<u64>, Vec<u64>) {
        let (mut got, mut want) = (Vec::new(), Vec::new());
        let (mut r, mut m) = (Reorder::new(), Model::default());
        let mut run = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let i = i as u64;
            match *op {
                Op::Push { stime, rec_id } => {
                    let rec = Arc::new(Record::from(RecordFields {
                        rec_id,
                        stime,
                        bytes: Some(i),
                        ..RecordFields::default()
                    }));
                    r.push(Pending::new(&rec));
                    m.set.insert((stime, rec_id, i));
                    if r.len() > max {
                        got.extend(r.pop().map(|r| seq(&r)));
                        want.extend(m.pop());
                    }
                }
                Op::Advance(w) => {
                    while r.take_run_before(w, &mut run) {
                        got.extend(run.drain(..).map(|r| seq(&r)));
                    }
                    while m.set.first().is_some_and(|k| k.0 < w) {
                        want.extend(m.pop());
                    }
                }
            }
            assert_eq!(r.len(), m.set.len());
        }
        got.extend(r.take_sorted().iter().map(|p| seq(&p.rec)));
        want.extend(std::iter::from_fn(|| m.pop()));
        (got, want)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn reorder_releases_like_a_sorted_set(
            ops in proptest::collection::vec(op(), 0..200),
            max in prop_oneof![1usize..8, Just(usize::MAX)],
        ) {
            let (got, want) = run(&ops, max);
            prop_assert_eq!(got, want);
        }
    }
}
