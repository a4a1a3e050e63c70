//! Engine settings shared by the batch command and the daemon.

/// What to do with a record whose `stime` is already behind the watermark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LatePolicy {
    /// Count it and hand it to the grouper at once (out of order).
    #[default]
    Process,
    /// Count it and discard it.
    Drop,
}

impl std::str::FromStr for LatePolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "process" => Ok(LatePolicy::Process),
            "drop" => Ok(LatePolicy::Drop),
            other => Err(format!("'{other}' is not \"process\" or \"drop\"")),
        }
    }
}

/// Time and memory bounds of one engine instance (SPEC §3.2, §4.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// ms; `None` = infinite (nothing is released before `finish`).
    pub lateness: Option<i64>,
    /// Tumbling window length in ms; `None` = one unbounded window.
    pub window: Option<i64>,
    /// ms a stored group stays joinable after its `etime`; `None` = forever.
    pub horizon: Option<i64>,
    pub late: LatePolicy,
    /// Open groups per branch before the oldest is closed early.
    pub max_open_groups: usize,
    /// Groups stored by the merger before the oldest is dropped early.
    pub max_stored_groups: usize,
    /// Records buffered per branch before the oldest is released early.
    pub max_reorder: usize,
    /// Bytes of all engine state together (SPEC §3.2): open groups with
    /// their members, reorder buffers, stored groups, held tuples. The
    /// daemon shares one budget of this size among all its queries.
    pub max_state: usize,
}

impl EngineConfig {
    /// Settings for a one-shot run over files: nothing is released or
    /// dropped before the end of input, so the result is exact. That
    /// includes the state budget: a batch run is accounted but unlimited
    /// (exactness first; its memory follows the input's disorder and open
    /// state, SPEC §3.1).
    pub fn batch(window: Option<i64>) -> Self {
        EngineConfig {
            lateness: None,
            window: window.filter(|w| *w > 0),
            horizon: None,
            late: LatePolicy::Process,
            max_open_groups: usize::MAX,
            max_stored_groups: usize::MAX,
            max_reorder: usize::MAX,
            max_state: usize::MAX,
        }
    }
}

impl Default for EngineConfig {
    /// The daemon's defaults (SPEC §4.2).
    fn default() -> Self {
        EngineConfig {
            lateness: Some(60_000),
            window: Some(300_000),
            horizon: Some(300_000),
            late: LatePolicy::Process,
            max_open_groups: 1_000_000,
            max_stored_groups: 1_000_000,
            max_reorder: 1_000_000,
            max_state: 2 << 30,
        }
    }
}
