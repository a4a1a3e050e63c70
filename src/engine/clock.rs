//! The event-time watermark (SPEC §3.2). The engine never reads the wall
//! clock: callers pass `now_ms`, so tests and batch runs are deterministic.

/// `W = max stime seen − lateness`, advanced further by idle wall time.
#[derive(Clone, Debug)]
pub struct Watermark {
    lateness: Option<i64>,
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
            idle_advance: idle_advance.max(0),
            max_stime: None,
            last_arrival_ms: 0,
            floor: None,
        }
    }

    /// A record with this `stime` arrived at wall time `now_ms`.
    pub fn observe(&mut self, stime: i64, now_ms: i64) {
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
