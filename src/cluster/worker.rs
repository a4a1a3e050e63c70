//! The worker role: one task per (lane, partition) it holds, each a
//! durable consumer feeding its own [`Admission`] (a watermark per
//! partition) and the [`QueryDriver`]s of the queries reading that lane —
//! the same driver the standalone daemon and `flowy query` run.
//!
//! **Acknowledgement and replay.** Once a second the task computes a
//! *cut*: a start time below which no record is held by any driver
//! ([`QueryDriver::held_from`]) and through which no closed group reaches
//! (no group has members on both sides). It waits until the output has
//! written every match so far, saves the cut on the bus, and acknowledges
//! every message whose records all start before it. After a crash the
//! partition's consumer redelivers the rest; records of a redelivered
//! message that start before the saved cut belonged to groups that were
//! finished before the crash and are skipped, the others rebuild the
//! state, and matches already in the output file (read back at start, by
//! `match_id`) are not written again. A redelivery of a message the task
//! still holds (JetStream's ack wait ran out) is recognised by its stream
//! position and ignored.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::bus::{Delivery, RecordBus, RecordConsumer};
use super::codec;
use super::lane::Lane;
use super::nats::MATCHES_SUBJECT;
use crate::daemon::health::Beat;
use crate::daemon::ingest::now_ms;
use crate::daemon::metrics::{add, Metrics};
use crate::daemon::output::OutputTx;
use crate::engine::driver::{Admission, QueryDriver};
use crate::engine::{EngineConfig, LatePolicy, Match, Watermark};
use crate::output::MatchFormatter;
use crate::output::OutputFormat;
use crate::query::plan::Plan;
use crate::record::Record;

/// How often W is re-evaluated against the wall clock (idle advance).
const TICK: Duration = Duration::from_secs(1);
/// Undecodable messages logged in full before only counting them.
const BAD_LOGGED: u64 = 10;

/// What one partition task needs to know.
pub struct PartitionSpec {
    pub lane: Lane,
    pub partition: u32,
    pub plans: Vec<Arc<Plan>>,
    pub engine: EngineConfig,
    pub lateness: Option<i64>,
    pub idle_advance: i64,
    pub late: LatePolicy,
}

struct Held<M> {
    msg: M,
    /// Latest record start in the message.
    max_stime: i64,
}

pub struct PartitionTask<B: RecordBus> {
    name: String,
    /// Where the cut is saved: `cut.<consumer>`.
    state_name: String,
    bus: B,
    /// Saved replay cut; records of redelivered messages starting before
    /// it are skipped.
    cut: i64,
    /// (first, last member start) of closed groups that may still reach
    /// across a future cut.
    spans: Vec<(i64, i64)>,
    /// Match ids already in the output (read back at start).
    written: Arc<HashSet<u64>>,
    publish_matches: bool,
    /// Messages waiting when the consumer started, and deliveries so far.
    backlog: u64,
    delivered: u64,
    queries: Vec<(Arc<Plan>, QueryDriver)>,
    admission: Admission,
    held: VecDeque<Held<<B::Consumer as RecordConsumer>::Msg>>,
    positions: HashSet<u64>,
    output: OutputTx,
    metrics: Arc<Metrics>,
    beat: Beat,
    bad_seen: u64,
}

type Msg<B> = <<B as RecordBus>::Consumer as RecordConsumer>::Msg;

/// What every partition task of a worker shares.
#[derive(Clone)]
pub struct Shared<B> {
    pub bus: B,
    pub output: OutputTx,
    pub metrics: Arc<Metrics>,
    /// Match ids already in the output file.
    pub written: Arc<HashSet<u64>>,
    /// Also publish matches to `flowy.matches.<query>`.
    pub publish_matches: bool,
}

impl<B: RecordBus> PartitionTask<B> {
    pub fn new(spec: PartitionSpec, shared: Shared<B>, cut: i64, beat: Beat) -> Self {
        let Shared {
            bus,
            output,
            metrics,
            written,
            publish_matches,
        } = shared;
        let budget = metrics.engine_state().clone();
        budget.set_max(spec.engine.max_state);
        let queries = spec
            .plans
            .iter()
            .map(|p| {
                let mut d = QueryDriver::new(p.clone(), &spec.engine, budget.clone());
                d.track_closed_spans();
                (p.clone(), d)
            })
            .collect();
        let watermark = Watermark::new(spec.lateness, spec.idle_advance).bounded_by_wall_clock();
        PartitionTask {
            name: format!("{} partition {}", spec.lane, spec.partition),
            state_name: cut_name(&spec.lane, spec.partition),
            bus,
            cut,
            spans: Vec::new(),
            written,
            publish_matches,
            backlog: 0,
            delivered: 0,
            queries,
            admission: Admission::new(watermark, spec.late),
            held: VecDeque::new(),
            positions: HashSet::new(),
            output,
            metrics,
            beat,
            bad_seen: 0,
        }
    }

    /// Consume until `stop` turns true or the consumer ends, then emit
    /// what the open state gives and acknowledge everything (SPEC §5: a
    /// drained partition resumes elsewhere from the next message).
    pub async fn run(mut self, mut consumer: B::Consumer, mut stop: watch::Receiver<bool>) {
        self.backlog = consumer.backlog();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                item = consumer.next() => match item {
                    Some(Ok(msg)) => {
                        self.beat.busy();
                        self.on_message(msg).await;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(partition = %self.name, "{e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    self.beat.busy();
                    self.on_tick().await;
                }
            }
            self.beat.idle();
        }
        self.finish().await;
    }

    async fn on_message(&mut self, msg: Msg<B>) {
        // The consumer's backlog comes first: what a crashed predecessor
        // left unacknowledged.
        let replayed = msg.redelivered() || self.delivered < self.backlog;
        self.delivered += 1;
        if self.positions.contains(&msg.position()) {
            add(&self.metrics.cluster.redeliveries_ignored, 1);
            return;
        }
        add(&self.metrics.cluster.consumed_messages, 1);
        let (mark, recs) = match codec::decode_batch(msg.payload()) {
            Ok((h, recs)) => (h.mark_ms, recs),
            Err(e) => {
                add(&self.metrics.cluster.bad_messages, 1);
                self.bad_seen += 1;
                if self.bad_seen <= BAD_LOGGED {
                    tracing::warn!(partition = %self.name, position = msg.position(),
                        "undecodable record batch skipped: {e}");
                }
                if let Err(e) = msg.reject().await {
                    tracing::warn!(partition = %self.name, "{e}");
                }
                return;
            }
        };
        add(&self.metrics.cluster.consumed_records, recs.len() as u64);
        let mut recs = recs;
        if replayed {
            add(&self.metrics.cluster.redelivered_messages, 1);
            let before = recs.len();
            recs.retain(|r| r.stime() >= self.cut);
            add(
                &self.metrics.cluster.replay_skipped,
                (before - recs.len()) as u64,
            );
        }
        let max_stime = recs.iter().map(|r| r.stime()).max().unwrap_or(i64::MIN);
        let mut batch: Vec<Arc<Record>> = recs.into_iter().map(Arc::new).collect();
        let now = now_ms();
        if let Some(mark) = mark {
            // Time from records the collector did not send here (filtered
            // out or on other partitions): W moves as if they had come.
            self.admission.observe_mark(mark, now);
        }
        let step = self.admission.admit(&mut batch, now);
        for i in 0..self.queries.len() {
            let mut out = Vec::new();
            self.queries[i].1.step_shared(&batch, step, &mut out);
            let plan = self.queries[i].0.clone();
            self.emit(&plan, out).await;
        }
        self.positions.insert(msg.position());
        self.held.push_back(Held { msg, max_stime });
    }

    async fn on_tick(&mut self) {
        if let Some(w) = self.admission.tick(now_ms()) {
            for i in 0..self.queries.len() {
                let mut out = Vec::new();
                self.queries[i].1.advance(w, &mut out);
                let plan = self.queries[i].0.clone();
                self.emit(&plan, out).await;
            }
        }
        self.ack_released().await;
    }

    /// Move the cut as far as the state allows and acknowledge every held
    /// message wholly before it, once the output has written what those
    /// records gave.
    async fn ack_released(&mut self) {
        let Some(cut) = self.next_cut() else {
            return;
        };
        if !self.held.iter().any(|h| h.max_stime < cut) {
            return;
        }
        if !self.output.written().await {
            return;
        }
        if cut > self.cut {
            if let Err(e) = self.bus.save_state(self.state_name.clone(), cut).await {
                // Without the cut saved, acknowledging would lose records
                // a replay needs: keep them until the bus takes it.
                tracing::warn!(partition = %self.name, "cannot save the replay cut: {e}");
                return;
            }
            self.cut = cut;
        }
        let mut keep = VecDeque::with_capacity(self.held.len());
        for h in std::mem::take(&mut self.held) {
            if h.max_stime < self.cut {
                self.ack(h.msg).await;
            } else {
                keep.push_back(h);
            }
        }
        self.held = keep;
    }

    /// The latest start time no held record reaches below and no closed
    /// group spans; `None` while anything may be held.
    fn next_cut(&mut self) -> Option<i64> {
        let mut held_from = i64::MAX;
        for (_, d) in &mut self.queries {
            held_from = held_from.min(d.held_from()?);
            d.take_closed_spans(&mut self.spans);
        }
        let cut = safe_cut(held_from, &self.spans);
        // Spans ending before the cut cannot reach across a later one.
        self.spans.retain(|&(_, last)| last >= cut);
        Some(cut.max(self.cut))
    }

    async fn ack(&mut self, msg: Msg<B>) {
        self.positions.remove(&msg.position());
        match msg.ack().await {
            Ok(()) => add(&self.metrics.cluster.acked_messages, 1),
            // Not fatal: JetStream redelivers it after the ack wait; the
            // redelivery is then processed as new (its records are no
            // longer held) and its groups may be reported again with the
            // same match ids.
            Err(e) => tracing::warn!(partition = %self.name, "{e}"),
        }
    }

    async fn finish(&mut self) {
        for i in 0..self.queries.len() {
            let mut out = Vec::new();
            self.queries[i].1.finish(&mut out);
            let plan = self.queries[i].0.clone();
            self.emit(&plan, out).await;
        }
        // Everything is emitted: the partition resumes from the next
        // message, wherever it is claimed.
        if self.output.written().await {
            for h in std::mem::take(&mut self.held) {
                self.ack(h.msg).await;
            }
        }
    }

    /// Hand matches to the output, but not those it already has (written
    /// before a crash and found again by the replay).
    async fn emit(&self, plan: &Arc<Plan>, mut matches: Vec<Match>) {
        if !self.written.is_empty() {
            let before = matches.len();
            matches.retain(|m| !self.written.contains(&m.id(&plan.name)));
            add(
                &self.metrics.cluster.duplicates_suppressed,
                (before - matches.len()) as u64,
            );
        }
        if matches.is_empty() {
            return;
        }
        if self.publish_matches {
            self.publish(plan, &matches).await;
        }
        self.output.send(plan.clone(), matches).await;
    }

    /// Each match's JSON line to `flowy.matches.<query>`, its `match_id`
    /// the message id: stored once however often a replay finds it. Waits
    /// for each to be stored, so that acknowledging the records after it
    /// cannot lose the match.
    async fn publish(&self, plan: &Arc<Plan>, matches: &[Match]) {
        let subject = format!("{MATCHES_SUBJECT}.{}", subject_token(&plan.name));
        let mut f = MatchFormatter::new(plan.name.clone(), OutputFormat::Json, true);
        let mut line = Vec::new();
        for m in matches {
            line.clear();
            f.append(plan, m, &mut line);
            let id = format!("{:016x}", m.id(&plan.name));
            let payload = bytes::Bytes::copy_from_slice(line.trim_ascii_end());
            let mut delay = Duration::from_millis(100);
            while let Err(e) = self
                .bus
                .publish(subject.clone(), id.clone(), payload.clone())
                .await
            {
                add(&self.metrics.cluster.publish_retries, 1);
                tracing::warn!(partition = %self.name, "{e}; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            add(&self.metrics.cluster.published_matches, 1);
        }
    }
}

/// A query name as a subject token: NATS subjects split on '.', and
/// '*', '>' and spaces are not allowed in a token.
fn subject_token(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The highest cut at or below `held_from` that no closed group spans:
/// a group with members on both sides of the cut would be rebuilt from
/// its later members alone by a replay.
pub fn safe_cut(held_from: i64, spans: &[(i64, i64)]) -> i64 {
    let mut cut = held_from;
    loop {
        let lower = spans
            .iter()
            .filter(|&&(first, last)| first < cut && last >= cut)
            .map(|&(first, _)| first)
            .min();
        match lower {
            Some(first) => cut = first,
            None => return cut,
        }
    }
}

/// The state name of a partition's saved cut.
fn cut_name(lane: &Lane, partition: u32) -> String {
    format!("cut.{}", lane.consumer(partition))
}

/// Start the consumer and the task of one (lane, partition), resuming
/// from its saved cut; `stop` ends it with a drain.
pub async fn start_partition<B: RecordBus>(
    shared: &Shared<B>,
    spec: PartitionSpec,
    health: &crate::daemon::health::Health,
    stop: watch::Receiver<bool>,
    max_pending: usize,
) -> Result<tokio::task::JoinHandle<()>, super::bus::BusError> {
    let (lane, p) = (spec.lane.clone(), spec.partition);
    let cut = shared
        .bus
        .load_state(cut_name(&lane, p))
        .await?
        .unwrap_or(i64::MIN);
    let consumer = shared
        .bus
        .consume(lane.subject(p), lane.consumer(p), max_pending)
        .await?;
    tracing::info!(lane = %lane, partition = p, "consuming");
    let beat = health.register(format!("{lane} partition {p}"));
    let task = PartitionTask::new(spec, shared.clone(), cut, beat);
    Ok(tokio::spawn(task.run(consumer, stop)))
}

#[cfg(test)]
mod tests {
    use super::safe_cut;

    #[test]
    fn the_cut_never_splits_a_closed_group() {
        assert_eq!(safe_cut(100, &[]), 100);
        // A group from 40 to 120 spans 100: the cut moves to 40; one from
        // 30 to 50 then spans 40: on to 30.
        assert_eq!(safe_cut(100, &[(40, 120), (30, 50), (10, 20)]), 30);
        // Groups wholly before or after the cut do not move it.
        assert_eq!(safe_cut(100, &[(10, 99), (100, 150)]), 100);
    }
}
