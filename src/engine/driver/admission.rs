//! Admission: the one owner of the watermark and of the late rule
//! (SPEC §3.2). Records are admitted a batch at a time; a record is late
//! when its `stime` lies behind the W that held when its batch arrived,
//! and W moves once per batch, after it. The batch command and the daemon
//! both admit through this type, so "late" means the same in both.

use std::borrow::Borrow;

use crate::engine::clock::Watermark;
use crate::engine::config::LatePolicy;
use crate::record::Record;

/// What the stages need to run one admitted batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// W the batch arrived under: records behind it bypass the reorder
    /// buffer (they are late and, under `late = process`, go straight to
    /// the grouper).
    pub push_w: Option<i64>,
    /// W after the batch, when it moved past what was announced before.
    pub advance_to: Option<i64>,
}

/// Counts kept by [`Admission`] for metrics and the batch report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdmissionStats {
    /// Records admitted, late ones included.
    pub records: u64,
    /// Records that arrived behind W.
    pub late: u64,
    /// Late records discarded (`late = drop`).
    pub dropped: u64,
    /// The largest distance (ms) a record's `stime` lay behind the largest
    /// `stime` admitted before it: the lateness that would have made the
    /// run exact (no late record at all).
    pub max_behind: i64,
}

#[derive(Clone, Debug)]
pub struct Admission {
    watermark: Watermark,
    policy: LatePolicy,
    /// Largest `stime` admitted (not bounded by the wall clock: it only
    /// measures disorder).
    max_stime: Option<i64>,
    announced: Option<i64>,
    stats: AdmissionStats,
}

impl Admission {
    pub fn new(watermark: Watermark, policy: LatePolicy) -> Self {
        Admission {
            watermark,
            policy,
            max_stime: None,
            announced: None,
            stats: AdmissionStats::default(),
        }
    }

    /// Admit `batch`, arrived at wall time `now_ms`: late records are
    /// counted and, under `late = drop`, removed from it.
    pub fn admit<R: Borrow<Record>>(&mut self, batch: &mut Vec<R>, now_ms: i64) -> Step {
        // The W the stages were last advanced to (an explicit `raise`
        // included): behind it, a record can no longer be reordered.
        let push_w = self.announced;
        let before = batch.len();
        batch.retain(|r| self.admit_one(r.borrow().stime(), push_w, now_ms));
        self.stats.dropped += (before - batch.len()) as u64;
        Step {
            push_w,
            advance_to: self.announce(self.watermark.current()),
        }
    }

    /// Count and observe one record; false when it is to be dropped.
    fn admit_one(&mut self, stime: i64, push_w: Option<i64>, now_ms: i64) -> bool {
        self.stats.records += 1;
        if let Some(m) = self.max_stime {
            self.stats.max_behind = self.stats.max_behind.max(m.saturating_sub(stime));
        }
        self.max_stime = Some(self.max_stime.map_or(stime, |m| m.max(stime)));
        if push_w.is_some_and(|w| stime < w) {
            self.stats.late += 1;
            if self.policy == LatePolicy::Drop {
                return false;
            }
        }
        self.watermark.observe(stime, now_ms);
        true
    }

    /// A record start seen elsewhere (a cluster collector's mark): W moves
    /// with the next batch as if a record starting then had been admitted,
    /// but nothing is counted. Records of that batch are still judged by
    /// the W announced before it.
    pub fn observe_mark(&mut self, stime: i64, now_ms: i64) {
        self.watermark.observe(stime, now_ms);
    }

    /// Count records admitted while no W can exist (infinite lateness):
    /// nothing is late, only the disorder is measured.
    pub fn admit_unwatermarked(&mut self, stimes: impl IntoIterator<Item = i64>) {
        debug_assert!(self.watermark.current().is_none());
        for stime in stimes {
            self.admit_one(stime, None, 0);
        }
    }

    /// Records admitted so far with infinite lateness were not late; from
    /// the next batch on, W trails the largest `stime` by `lateness` and
    /// moves after that batch.
    pub fn set_lateness(&mut self, lateness: i64) {
        self.watermark.set_lateness(lateness);
    }

    /// W at wall time `now_ms` (idle advance): `Some(w)` when it moved past
    /// what was announced.
    pub fn tick(&mut self, now_ms: i64) -> Option<i64> {
        let w = self.watermark.tick(now_ms);
        self.announce(w)
    }

    /// An explicit move of W (a caller's own idle advance or a test).
    pub fn raise(&mut self, w: i64) -> Option<i64> {
        if self.announced.is_some_and(|a| a >= w) {
            return None;
        }
        self.announced = Some(w);
        Some(w)
    }

    fn announce(&mut self, w: Option<i64>) -> Option<i64> {
        self.raise(w?)
    }

    /// The W the stages last heard.
    pub fn current(&self) -> Option<i64> {
        self.announced
    }

    pub fn stats(&self) -> AdmissionStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RecordFields;

    fn recs(stimes: &[i64]) -> Vec<Record> {
        stimes
            .iter()
            .map(|&stime| {
                Record::from(RecordFields {
                    stime,
                    etime: stime,
                    ..RecordFields::default()
                })
            })
            .collect()
    }

    #[test]
    fn late_is_judged_against_w_at_batch_arrival() {
        let mut a = Admission::new(Watermark::new(Some(10), i64::MAX), LatePolicy::Drop);
        let mut b = recs(&[100, 50]);
        // No W yet: nothing is late, W moves to 90 after the batch.
        assert_eq!(
            a.admit(&mut b, 0),
            Step {
                push_w: None,
                advance_to: Some(90)
            }
        );
        assert_eq!(b.len(), 2);
        let mut b = recs(&[95, 89, 120]);
        let step = a.admit(&mut b, 0);
        assert_eq!(step.push_w, Some(90));
        assert_eq!(step.advance_to, Some(110));
        assert_eq!(b.iter().map(|r| r.stime()).collect::<Vec<_>>(), [95, 120]);
        let s = a.stats();
        assert_eq!((s.records, s.late, s.dropped, s.max_behind), (5, 1, 1, 50));
    }

    #[test]
    fn process_keeps_late_records_and_w_never_goes_back() {
        let mut a = Admission::new(Watermark::new(Some(0), i64::MAX), LatePolicy::Process);
        a.admit(&mut recs(&[100]), 0);
        let mut b = recs(&[10]);
        let step = a.admit(&mut b, 0);
        assert_eq!(
            (step.push_w, step.advance_to, b.len()),
            (Some(100), None, 1)
        );
        assert_eq!(a.raise(50), None);
        assert_eq!(a.raise(150), Some(150));
        assert_eq!(a.current(), Some(150));
    }

    #[test]
    fn a_mark_moves_w_with_the_next_batch_and_counts_nothing() {
        let mut a = Admission::new(Watermark::new(Some(10), i64::MAX), LatePolicy::Drop);
        a.admit(&mut recs(&[100]), 0);
        a.observe_mark(200, 0);
        // An empty batch carrying only the mark: W moves to 190.
        let step = a.admit(&mut Vec::<Record>::new(), 0);
        assert_eq!((step.push_w, step.advance_to), (Some(90), Some(190)));
        // A record of the batch after it is judged by that W.
        let mut b = recs(&[150, 195]);
        a.admit(&mut b, 0);
        assert_eq!(b.iter().map(|r| r.stime()).collect::<Vec<_>>(), [195]);
        let s = a.stats();
        assert_eq!((s.records, s.late, s.max_behind), (3, 1, 0));
    }

    #[test]
    fn infinite_lateness_never_has_a_w_but_measures_disorder() {
        let mut a = Admission::new(Watermark::new(None, i64::MAX), LatePolicy::Drop);
        let step = a.admit(&mut recs(&[100, 40, 120, 119]), 0);
        assert_eq!(step, Step::default());
        assert_eq!(a.stats().max_behind, 60);
        assert_eq!(a.stats().late, 0);
    }
}
