//! Export sequence numbers → missing-export accounting.
//!
//! What a sequence number counts differs by protocol: v5 counts flows (the
//! next header's `flow_sequence` is this one's plus `count`), v9 counts export
//! packets (+1 per packet), IPFIX counts data records (+ records in this
//! message). The caller passes how far this message advances the counter.

/// A jump forward larger than this is an exporter restart, not loss.
const MAX_PLAUSIBLE_GAP: u32 = 1 << 20;

/// Outcome of one observation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqEvent {
    /// First message of the stream, or the expected number.
    InOrder,
    /// This many units (flows, packets or records) were lost.
    Gap(u64),
    /// A restart, a duplicate or a reordered message: counting resynchronises.
    Reset,
}

/// The counter of one exporter stream (exporter + engine / source id / domain).
#[derive(Clone, Copy, Debug, Default)]
pub struct SequenceTracker {
    expected: Option<u32>,
}

impl SequenceTracker {
    /// Observe a message with sequence `seq`; `advance` is how much it moves
    /// the counter, or `None` when that is unknown (data held for a missing
    /// template), in which case the next message only resynchronises.
    pub fn observe(&mut self, seq: u32, advance: Option<u32>) -> SeqEvent {
        let event = match self.expected {
            None => SeqEvent::InOrder,
            Some(exp) if exp == seq => SeqEvent::InOrder,
            Some(exp) => {
                // Wrapping distance: the counter is 32-bit and wraps.
                let ahead = seq.wrapping_sub(exp);
                if ahead <= MAX_PLAUSIBLE_GAP {
                    SeqEvent::Gap(u64::from(ahead))
                } else {
                    SeqEvent::Reset
                }
            }
        };
        self.expected = advance.map(|a| seq.wrapping_add(a));
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_gaps_wraps_and_resets() {
        let mut t = SequenceTracker::default();
        assert_eq!(t.observe(100, Some(30)), SeqEvent::InOrder);
        assert_eq!(t.observe(130, Some(30)), SeqEvent::InOrder);
        assert_eq!(t.observe(190, Some(30)), SeqEvent::Gap(30));
        assert_eq!(t.observe(5, Some(1)), SeqEvent::Reset);
        assert_eq!(t.observe(6, Some(1)), SeqEvent::InOrder);
        let mut w = SequenceTracker::default();
        w.observe(u32::MAX - 1, Some(3));
        assert_eq!(w.observe(1, Some(1)), SeqEvent::InOrder);
        let mut u = SequenceTracker::default();
        u.observe(10, None);
        assert_eq!(u.observe(500, Some(1)), SeqEvent::InOrder);
    }
}
