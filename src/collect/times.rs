//! Flow times → epoch milliseconds (SPEC §1.1). Pure functions with
//! overflow-checked arithmetic: a computation that overflows yields
//! [`OVERFLOW`], which the time-sanity check (`crate::sanity`) turns into an
//! implausible record (reason `overflow`) before any query sees it.

/// The result of a time computation that overflowed (a 64-bit
/// FIRST_SWITCHED, an absurd `systemInitTimeMilliseconds`). No exporter can
/// mean it: it lies 292 million years before the epoch.
pub const OVERFLOW: i64 = i64::MIN;

/// Seconds between the NTP era 0 (1900-01-01) and the Unix epoch.
pub const NTP_UNIX_OFFSET_S: i64 = 2_208_988_800;

/// One full turn of a 32-bit millisecond uptime counter (~49.7 days).
const UPTIME_WRAP: i64 = 1 << 32;

/// Export time of a v5 header in epoch ms.
pub fn v5_export_ms(unix_secs: u32, unix_nsecs: u32) -> i64 {
    i64::from(unix_secs) * 1000 + i64::from(unix_nsecs) / 1_000_000
}

/// An uptime stamp (`First`/`Last`, FIRST/LAST_SWITCHED) made absolute with the
/// header's export time and uptime: `export − (sysUptime − t)`.
///
/// The uptime counter is 32-bit: a stamp greater than the header's uptime was
/// taken before the counter wrapped, so it lies 2³² ms further back.
pub fn uptime_to_ms(export_ms: i64, sys_uptime: u32, t: u32) -> i64 {
    let mut stamp = i64::from(t);
    if t > sys_uptime {
        stamp -= UPTIME_WRAP;
    }
    sub(export_ms, i64::from(sys_uptime) - stamp)
}

/// An NTP-format 64-bit timestamp (dateTimeMicroseconds/Nanoseconds) in epoch ms.
pub fn ntp_to_ms(seconds: u32, fraction: u32) -> i64 {
    let frac_ms = (u64::from(fraction) * 1000) >> 32;
    (i64::from(seconds) - NTP_UNIX_OFFSET_S) * 1000 + frac_ms as i64
}

/// The same from the 8 wire bytes (seconds, fraction).
pub fn ntp_raw_to_ms(raw: u64) -> i64 {
    ntp_to_ms((raw >> 32) as u32, raw as u32)
}

/// flowStart/EndSysUpTime with systemInitTimeMilliseconds.
pub fn sysuptime_to_ms(system_init_ms: u64, uptime_ms: u64) -> i64 {
    system_init_ms
        .checked_add(uptime_ms)
        .map_or(OVERFLOW, u64_to_ms)
}

/// flowStart/EndDeltaMicroseconds: microseconds before the message's export time.
pub fn delta_us_to_ms(export_ms: i64, delta_us: u64) -> i64 {
    sub(export_ms, u64_to_ms(delta_us / 1000))
}

/// Seconds → ms; `OVERFLOW` when it does not fit.
pub fn secs_to_ms(s: u64) -> i64 {
    i64::try_from(s)
        .ok()
        .and_then(|s| s.checked_mul(1000))
        .unwrap_or(OVERFLOW)
}

/// An unsigned wire value as ms; `OVERFLOW` beyond `i64::MAX`.
pub fn u64_to_ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(OVERFLOW)
}

/// `a − b`, `OVERFLOW` when either is `OVERFLOW` or the result does not fit.
fn sub(a: i64, b: i64) -> i64 {
    if a == OVERFLOW || b == OVERFLOW {
        return OVERFLOW;
    }
    a.checked_sub(b).unwrap_or(OVERFLOW)
}

/// `a + b`, likewise.
fn add(a: i64, b: i64) -> i64 {
    if a == OVERFLOW || b == OVERFLOW {
        return OVERFLOW;
    }
    a.checked_add(b).unwrap_or(OVERFLOW)
}

/// Every time element an IPFIX or v9 record may carry; `resolve` picks the
/// most precise absolute start and end it can derive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeFields {
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    /// flowStart/EndSysUpTime (v9 FIRST/LAST_SWITCHED), ms of uptime.
    pub start_uptime: Option<u64>,
    pub end_uptime: Option<u64>,
    pub system_init_ms: Option<u64>,
    pub start_delta_us: Option<u64>,
    pub end_delta_us: Option<u64>,
    pub duration_ms: Option<u64>,
}

/// What the message header says about time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderClock {
    /// Export time in epoch ms.
    pub export_ms: i64,
    /// v5/v9 header uptime; IPFIX has none.
    pub sys_uptime: Option<u32>,
}

impl TimeFields {
    /// (stime, etime) in epoch ms. Missing times fall back to the export time;
    /// a duration fills whichever end is missing.
    pub fn resolve(&self, clock: HeaderClock) -> (i64, i64) {
        let start = self
            .start_ms
            .or_else(|| self.uptime_stamp(self.start_uptime, clock));
        let start = start.or_else(|| {
            self.start_delta_us
                .map(|d| delta_us_to_ms(clock.export_ms, d))
        });
        let end = self
            .end_ms
            .or_else(|| self.uptime_stamp(self.end_uptime, clock));
        let end = end.or_else(|| {
            self.end_delta_us
                .map(|d| delta_us_to_ms(clock.export_ms, d))
        });
        let dur = self.duration_ms.map(u64_to_ms);
        match (start, end, dur) {
            (Some(s), Some(e), _) => (s, e),
            (Some(s), None, Some(d)) => (s, add(s, d)),
            (None, Some(e), Some(d)) => (sub(e, d), e),
            // OVERFLOW is the smallest i64: keep it rather than let max()
            // replace it with the export time.
            (Some(s), None, None) if s == OVERFLOW => (s, s),
            (Some(s), None, None) => (s, s.max(clock.export_ms)),
            (None, Some(e), None) => (e.min(clock.export_ms), e),
            (None, None, Some(d)) => (sub(clock.export_ms, d), clock.export_ms),
            (None, None, None) => (clock.export_ms, clock.export_ms),
        }
    }

    fn uptime_stamp(&self, stamp: Option<u64>, clock: HeaderClock) -> Option<i64> {
        let stamp = stamp?;
        if let Some(init) = self.system_init_ms {
            return Some(sysuptime_to_ms(init, stamp));
        }
        let up = clock.sys_uptime?;
        // Uptime stamps are 32-bit on the wire in v9; wider ones cannot wrap.
        match u32::try_from(stamp) {
            Ok(t) => Some(uptime_to_ms(clock.export_ms, up, t)),
            Err(_) => Some(sub(clock.export_ms, sub(i64::from(up), u64_to_ms(stamp)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_64_bit_uptime_stamp_gives_overflow_not_a_panic() {
        // Found by the collector fuzz target (fuzz/regressions/collector).
        let clock = HeaderClock {
            export_ms: 1_700_000_000_000,
            sys_uptime: Some(1000),
        };
        let t = TimeFields {
            start_uptime: Some(u64::MAX),
            end_uptime: Some(1u64 << 33),
            ..TimeFields::default()
        };
        let (s, e) = t.resolve(clock);
        // Not a time: the sanity check drops it (reason `overflow`).
        assert_eq!(s, OVERFLOW);
        assert_eq!(e, 1_700_000_000_000 - 1000 + (1i64 << 33));
    }

    #[test]
    fn v5_worked_example() {
        // Header: unix_secs 1_700_000_000, nsecs 250_000_000, uptime 100_000 ms.
        // First = 40_000 → 60 s before export; Last = 99_000 → 1 s before.
        let export = v5_export_ms(1_700_000_000, 250_000_000);
        assert_eq!(export, 1_700_000_000_250);
        assert_eq!(uptime_to_ms(export, 100_000, 40_000), 1_699_999_940_250);
        assert_eq!(uptime_to_ms(export, 100_000, 99_000), 1_699_999_999_250);
    }

    #[test]
    fn uptime_wrap() {
        // The uptime wrapped 1000 ms ago; the flow started 500 ms before the wrap.
        let export = 2_000_000_000_000;
        let first = u32::MAX - 499; // 2³² − 500
        assert_eq!(uptime_to_ms(export, 1000, first), export - 1500);
        // Not wrapped: equal stamps mean "now".
        assert_eq!(uptime_to_ms(export, 1000, 1000), export);
    }

    #[test]
    fn ntp_times() {
        // 2009-01-01T00:00:00Z = 1_230_768_000 Unix; half a second of fraction.
        let secs = (1_230_768_000 + NTP_UNIX_OFFSET_S) as u32;
        assert_eq!(ntp_to_ms(secs, 1 << 31), 1_230_768_000_500);
        let raw = (u64::from(secs) << 32) | (1 << 30);
        assert_eq!(ntp_raw_to_ms(raw), 1_230_768_000_250);
    }

    #[test]
    fn sysuptime_and_delta() {
        assert_eq!(sysuptime_to_ms(1_600_000_000_000, 5_000), 1_600_000_005_000);
        assert_eq!(
            delta_us_to_ms(1_600_000_010_000, 2_500_000),
            1_600_000_007_500
        );
        assert_eq!(secs_to_ms(1_600_000_000), 1_600_000_000_000);
    }

    #[test]
    fn overflowing_computations_give_overflow_never_a_wrapped_time() {
        let v9 = HeaderClock {
            export_ms: 1_700_000_000_000,
            sys_uptime: Some(50_000),
        };
        // A v9 FIRST_SWITCHED of length 8 (the spoofed datagram).
        let t = TimeFields {
            start_uptime: Some(u64::MAX),
            end_uptime: Some(40_000),
            ..Default::default()
        };
        assert_eq!(t.resolve(v9).0, OVERFLOW);
        assert_eq!(secs_to_ms(u64::MAX), OVERFLOW);
        assert_eq!(secs_to_ms(u64::MAX / 1000 + 1), OVERFLOW);
        assert_eq!(sysuptime_to_ms(u64::MAX, 1), OVERFLOW);
        assert_eq!(u64_to_ms(1 << 63), OVERFLOW);
        // A start near i64::MAX plus a duration; an overflowed start alone.
        let t = TimeFields {
            start_ms: Some(i64::MAX - 5),
            duration_ms: Some(10),
            ..Default::default()
        };
        assert_eq!(t.resolve(v9), (i64::MAX - 5, OVERFLOW));
        let t = TimeFields {
            start_ms: Some(OVERFLOW),
            ..Default::default()
        };
        assert_eq!(t.resolve(v9), (OVERFLOW, OVERFLOW));
        let t = TimeFields {
            duration_ms: Some(u64::MAX),
            ..Default::default()
        };
        assert_eq!(t.resolve(v9).0, OVERFLOW);
    }

    #[test]
    fn resolve_duration_and_fallbacks() {
        let clock = HeaderClock {
            export_ms: 10_000,
            sys_uptime: None,
        };
        let t = TimeFields {
            start_ms: Some(1_000),
            duration_ms: Some(250),
            ..Default::default()
        };
        assert_eq!(t.resolve(clock), (1_000, 1_250));
        let t = TimeFields {
            end_ms: Some(2_000),
            duration_ms: Some(500),
            ..Default::default()
        };
        assert_eq!(t.resolve(clock), (1_500, 2_000));
        assert_eq!(TimeFields::default().resolve(clock), (10_000, 10_000));
    }

    #[test]
    fn resolve_v9_uptime_and_system_init() {
        let v9 = HeaderClock {
            export_ms: 1_000_000,
            sys_uptime: Some(50_000),
        };
        let t = TimeFields {
            start_uptime: Some(10_000),
            end_uptime: Some(40_000),
            ..Default::default()
        };
        assert_eq!(t.resolve(v9), (960_000, 990_000));
        let with_init = TimeFields {
            system_init_ms: Some(500_000),
            ..t
        };
        assert_eq!(with_init.resolve(v9), (510_000, 540_000));
    }
}
