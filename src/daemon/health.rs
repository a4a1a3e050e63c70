//! Per-stage heartbeats for the systemd watchdog (SPEC §4.5 "Liveness").
//!
//! Each pipeline stage marks itself busy while it handles an item
//! (including the wait to hand the result on) and idle while it waits for
//! input. A stage busy for longer than the watchdog allows is stuck — a
//! blocked sink, a wedged thread — and `WATCHDOG=1` is withheld so that
//! systemd restarts the daemon. Idle stages are healthy: no traffic is not
//! an outage.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

struct Stage {
    name: String,
    /// 0 = idle; else ms since `Health::start`, plus one.
    busy_since: AtomicU64,
}

/// One stage's handle; dropping it (the stage ended) unregisters it.
#[derive(Clone)]
pub struct Beat {
    stage: Arc<Stage>,
    start: Instant,
}

impl Beat {
    pub fn busy(&self) {
        let now = self.start.elapsed().as_millis() as u64 + 1;
        self.stage.busy_since.store(now, Ordering::Relaxed);
    }

    pub fn idle(&self) {
        self.stage.busy_since.store(0, Ordering::Relaxed);
    }
}

pub struct Health {
    start: Instant,
    stages: Mutex<Vec<Weak<Stage>>>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            start: Instant::now(),
            stages: Mutex::new(Vec::new()),
        }
    }
}

impl Health {
    pub fn register(&self, name: impl Into<String>) -> Beat {
        let stage = Arc::new(Stage {
            name: name.into(),
            busy_since: AtomicU64::new(0),
        });
        let mut stages = self.stages.lock().unwrap_or_else(|p| p.into_inner());
        stages.retain(|s| s.strong_count() > 0);
        stages.push(Arc::downgrade(&stage));
        Beat {
            stage,
            start: self.start,
        }
    }

    /// Stages busy with one item for longer than `limit`, with how long.
    pub fn stuck(&self, limit: Duration) -> Vec<(String, Duration)> {
        let now = self.start.elapsed().as_millis() as u64 + 1;
        let limit = limit.as_millis() as u64;
        let stages = self.stages.lock().unwrap_or_else(|p| p.into_inner());
        stages
            .iter()
            .filter_map(Weak::upgrade)
            .filter_map(|s| {
                let since = s.busy_since.load(Ordering::Relaxed);
                let busy = now.saturating_sub(since);
                (since != 0 && busy > limit).then(|| (s.name.clone(), Duration::from_millis(busy)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_stage_busy_too_long_is_stuck() {
        let h = Health::default();
        let a = h.register("a");
        let b = h.register("b");
        a.busy();
        b.busy();
        b.idle();
        std::thread::sleep(Duration::from_millis(30));
        let stuck = h.stuck(Duration::from_millis(10));
        assert_eq!(stuck.len(), 1);
        assert_eq!(stuck[0].0, "a");
        assert!(h.stuck(Duration::from_secs(60)).is_empty());
        drop(a);
        assert!(h.stuck(Duration::from_millis(10)).is_empty());
    }
}
