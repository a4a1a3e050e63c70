//! The event-time watermark (SPEC §3.2). The engine never reads the wall
//! clock: callers pass `now_ms`, so tests and batch runs are deterministic.

/// `W = max stime seen − lateness`, advanced further by idle wall time.
#[derive(Clone, Debug)]
pub struct Watermark {
    lateness: Option<i64>,
    /// The daemon's W never passes the wall clock: `max stime` counts each
    /// record's `stime` at most as its arrival time (SPEC §4.5), so no
    /// record, plausible or not, can move W into the future.
    wall_clock_bound: bool,
    idle_advance: i64,
    max_stime: Option<i64>,
    last_arrival_ms: i64,
    /// Last value handed out: W never moves backwards, even when a record
    /// arrives after an idle advance.
    floor: Option<i64>,
}

impl Watermark {
    /// `lateness = None` means infinite: W never exists (batch mode).
    pub fn new(lateness: Option<i64>, idle_advance: i64) -> Self {
        Watermark {
            lateness,
            wall_clock_bound: false,
            idle_advance: idle_advance.max(0),
            max_stime: None,
            last_arrival_ms: 0,
            floor: None,
        }
    }

    /// `W = min(max stime seen, now) − lateness`: for the daemon, whose
    /// `now_ms` is the wall clock.
    pub fn bounded_by_wall_clock(mut self) -> Self {
        self.wall_clock_bound = true;
        self
    }

    /// Give a watermark created with infinite lateness its lateness (a
    /// batch run whose first pass measured the disorder while records were
    /// already admitted): W appears at once if a record was seen.
    pub fn set_lateness(&mut self, lateness: i64) {
        self.lateness = Some(lateness);
        self.raise(self.base());
    }

    /// A record with this `stime` arrived at wall time `now_ms`.
    pub fn observe(&mut self, stime: i64, now_ms: i64) {
        let stime = if self.wall_clock_bound {
            stime.min(now_ms)
        } else {
            stime
        };
        self.max_stime = Some(self.max_stime.map_or(stime, |m| m.max(stime)));
        self.last_arrival_ms = now_ms;
        self.raise(self.base());
    }

    /// The current W including the idle advance at wall time `now_ms`.
    pub fn tick(&mut self, now_ms: i64) -> Option<i64> {
        let idle = now_ms.saturating_sub(self.last_arrival_ms);
        let extra = idle.saturating_sub(self.idle_advance).max(0);
        let w = self.base().map(|b| b.saturating_add(extra));
        self.raise(w);
        self.floor
    }

    /// The last computed W (no idle advance applied).
    pub fn current(&self) -> Option<i64> {
        self.floor
    }

    fn base(&self) -> Option<i64> {
        let lateness = self.lateness?;
        self.max_stime.map(|m| m.saturating_sub(lateness))
    }

    fn raise(&mut self, w: Option<i64>) {
        if let Some(w) = w {
            self.floor = Some(self.floor.map_or(w, |f| f.max(w)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Watermark;

    #[test]
    fn a_record_from_the_future_moves_w_no_further_than_the_wall_clock() {
        let now = 1_764_900_000_000;
        let mut w = Watermark::new(Some(1_000), 10_000).bounded_by_wall_clock();
        w.observe(now - 5_000, now);
        w.observe(3_999_999_939_000, now);
        assert_eq!(w.current(), Some(now - 1_000));
        // Later records still move it, up to their own arrival time.
        w.observe(now + 1_500, now + 2_000);
        assert_eq!(w.current(), Some(now + 500));
        // Idle advance cannot outrun the wall clock either.
        assert!(w.tick(now + 60_000).is_some_and(|x| x <= now + 60_000));
        // Unbounded (batch): W follows the records.
        let mut b = Watermark::new(Some(1_000), 10_000);
        b.observe(3_999_999_939_000, now);
        assert_eq!(b.current(), Some(3_999_999_938_000));
    }
}
