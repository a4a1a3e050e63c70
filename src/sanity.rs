//! Time sanity (SPEC §4.5): a record whose times no real exporter can mean
//! is *implausible*. It is dropped before any query sees it and counted per
//! exporter and reason, so one spoofed datagram cannot move the watermark
//! into the future or write a time that is not RFC 3339.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::collect::stats::OVERFLOW_IP;
use crate::collect::times::OVERFLOW;
use crate::record::{Record, Time};

/// 1990-01-01T00:00:00Z: no NetFlow exporter predates it.
pub const NOT_BEFORE_MS: Time = 631_152_000_000;

/// 9999-12-31T23:59:59.999Z: the last time RFC 3339 can write.
const LAST_WRITABLE_MS: Time = 253_402_300_799_999;

/// Distinct (exporter, reason) pairs counted; beyond it counts go to the
/// unspecified address, so spoofed sources cannot grow the map.
const MAX_KEYS: usize = 4096;

/// Why a record is implausible (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Implausible {
    /// Starts or ends more than `max_future` ahead of the host clock.
    Future,
    /// Starts or ends before 1990 (or, in files, outside what RFC 3339 writes).
    Past,
    /// Ends before it starts.
    Reversed,
    /// Its time overflowed while it was computed.
    Overflow,
}

impl Implausible {
    pub const ALL: [Implausible; 4] = [
        Implausible::Future,
        Implausible::Past,
        Implausible::Reversed,
        Implausible::Overflow,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Implausible::Future => "future",
            Implausible::Past => "past",
            Implausible::Reversed => "reversed",
            Implausible::Overflow => "overflow",
        }
    }
}

/// The plausible range of flow times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeSanity {
    /// ms ahead of the host clock still plausible; `None` for files, whose
    /// records are the operator's own and only need to be writable.
    max_future: Option<i64>,
}

impl TimeSanity {
    /// The daemon's check (SPEC §4.5): `collector.max_future` ahead of the
    /// host clock, not before 1990.
    pub fn live(max_future_ms: i64) -> Self {
        TimeSanity {
            max_future: Some(max_future_ms.max(0)),
        }
    }

    /// The check for files: times must be computable and writable.
    pub fn files() -> Self {
        TimeSanity { max_future: None }
    }

    pub fn check(&self, stime: Time, etime: Time, now_ms: Time) -> Result<(), Implausible> {
        if stime == OVERFLOW || etime == OVERFLOW {
            return Err(Implausible::Overflow);
        }
        let (earliest, latest) = match self.max_future {
            Some(ahead) => (NOT_BEFORE_MS, now_ms.saturating_add(ahead)),
            None => (0, LAST_WRITABLE_MS),
        };
        if stime > latest || etime > latest {
            return Err(if self.max_future.is_some() {
                Implausible::Future
            } else {
                Implausible::Overflow
            });
        }
        if stime < earliest || etime < earliest {
            return Err(Implausible::Past);
        }
        if etime < stime {
            return Err(Implausible::Reversed);
        }
        Ok(())
    }

    /// Drop the implausible records of `records`, counting each.
    pub fn retain(&self, records: &mut Vec<Record>, now_ms: Time, counts: &mut ImplausibleCounts) {
        records.retain(|r| match self.check(r.stime(), r.etime(), now_ms) {
            Ok(()) => true,
            Err(why) => {
                counts.count(r.exporter(), why);
                false
            }
        });
    }
}

/// Implausible records by (exporter, reason).
#[derive(Clone, Debug, Default)]
pub struct ImplausibleCounts {
    by_key: HashMap<(IpAddr, Implausible), u64>,
    total: u64,
}

impl ImplausibleCounts {
    pub fn count(&mut self, exporter: Option<IpAddr>, why: Implausible) {
        self.total += 1;
        let ip = exporter.unwrap_or(OVERFLOW_IP);
        crate::collect::stats::bump(&mut self.by_key, (ip, why), 1, MAX_KEYS, (OVERFLOW_IP, why));
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// Drop the counts of an exporter that was aged out (`total` keeps them).
    pub fn forget(&mut self, exporter: IpAddr) {
        self.by_key.retain(|(ip, _), _| *ip != exporter);
    }

    /// Counts by reason over all exporters.
    pub fn by_reason(&self) -> [(Implausible, u64); 4] {
        Implausible::ALL.map(|why| {
            let n = self
                .by_key
                .iter()
                .filter(|((_, w), _)| *w == why)
                .map(|(_, n)| n)
                .sum();
            (why, n)
        })
    }

    /// Every (exporter, reason, count), sorted.
    pub fn entries(&self) -> Vec<(IpAddr, Implausible, u64)> {
        let mut v: Vec<_> = self
            .by_key
            .iter()
            .map(|((ip, why), n)| (*ip, *why, *n))
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Time = 1_764_900_000_000; // 2025-12-05

    #[test]
    fn live_reasons() {
        let s = TimeSanity::live(600_000);
        assert_eq!(s.check(NOW - 5_000, NOW, NOW), Ok(()));
        assert_eq!(s.check(NOW, NOW + 600_000, NOW), Ok(()));
        assert_eq!(s.check(NOW, NOW + 600_001, NOW), Err(Implausible::Future));
        // The datagram: unix_secs = 4 000 000 000 (year 2096).
        let y2096 = 3_999_999_939_000;
        assert_eq!(s.check(y2096, y2096, NOW), Err(Implausible::Future));
        assert_eq!(s.check(NOT_BEFORE_MS - 1, NOW, NOW), Err(Implausible::Past));
        assert_eq!(s.check(NOW, NOW - 1, NOW), Err(Implausible::Reversed));
        assert_eq!(s.check(OVERFLOW, NOW, NOW), Err(Implausible::Overflow));
        assert_eq!(s.check(NOW, i64::MAX, NOW), Err(Implausible::Future));
    }

    #[test]
    fn files_only_need_writable_times() {
        let s = TimeSanity::files();
        assert_eq!(s.check(0, 1_000, NOW), Ok(()));
        assert_eq!(s.check(NOW + 86_400_000, NOW + 86_400_000, NOW), Ok(()));
        assert_eq!(s.check(-1, 0, NOW), Err(Implausible::Past));
        assert_eq!(s.check(0, i64::MAX, NOW), Err(Implausible::Overflow));
        assert_eq!(s.check(5, 4, NOW), Err(Implausible::Reversed));
    }

    #[test]
    fn counts_are_bounded_by_exporter() {
        let mut c = ImplausibleCounts::default();
        for i in 0..10_000u32 {
            c.count(Some(IpAddr::from(i.to_be_bytes())), Implausible::Future);
        }
        c.count(None, Implausible::Overflow);
        assert_eq!(c.total(), 10_001);
        assert!(c.entries().len() <= MAX_KEYS + 2);
        let reasons = c.by_reason();
        assert_eq!(reasons[0], (Implausible::Future, 10_000));
        assert_eq!(reasons[3], (Implausible::Overflow, 1));
    }
}
