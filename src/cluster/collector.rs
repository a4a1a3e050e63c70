//! The collector's last stage: instead of running queries, give each
//! decoded record its cluster `rec_id` and publish it, in batches, to the
//! subject of its partition in every lane the running queries read —
//! unless no branch of the lane's queries would accept it (their filters
//! run here, once, instead of on every worker after the bus).
//!
//! Each batch carries the *mark*: the latest record start the collector
//! has seen, published or not. Workers move their watermark to it, so a
//! partition that the filters leave quiet still closes its groups as the
//! standalone daemon would; a partition that got nothing for
//! [`MARK_EVERY`] while time moved gets a batch with the mark alone.
//!
//! Publishing is pipelined (`max_inflight` batches awaiting storage) and
//! retried with the same message id, so a retry is stored once. When the
//! bus cannot take a batch in [`FULL_WAIT`] while the pipeline is full,
//! the batch is dropped and counted rather than stalling the UDP path
//! for every exporter.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};

use super::bus::{BusError, RecordBus};
use super::codec;
use super::lane::{Lane, Route};
use crate::daemon::ingest::{now_ms, Batch};
use crate::daemon::metrics::{add, Metrics};
use crate::record::Record;

/// Longest wait for a free publish slot before a batch is dropped.
pub const FULL_WAIT: Duration = Duration::from_secs(2);
/// Partly filled batches are published at least this often.
const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// A partition without records hears of the collector's time this often.
pub const MARK_EVERY: Duration = Duration::from_millis(250);
/// Sequence numbers reserved at a time (a restart skips the rest).
const ID_BLOCK: u64 = 1 << 24;
/// Backoff of a failing publish.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

pub struct PublisherConfig {
    pub collector: u16,
    pub partitions: u32,
    pub batch: usize,
    pub max_inflight: usize,
}

type Inflight = Pin<Box<dyn Future<Output = ()> + Send>>;

pub struct Publisher<B: RecordBus> {
    bus: B,
    cfg: PublisherConfig,
    lanes: watch::Receiver<Arc<Vec<Route>>>,
    /// The lane set `pending` was routed by.
    lanes_now: Arc<Vec<Route>>,
    metrics: Arc<Metrics>,
    /// Records waiting for their batch, slot `lane index × partitions +
    /// partition`. Every lane's slot holds the same shared record: no
    /// copy per lane, no hashing per record.
    pending: Vec<Vec<Arc<Record>>>,
    /// Per slot: the mark it last carried and when.
    marked: Vec<(Option<i64>, Instant)>,
    /// The latest record start seen.
    mark: Option<i64>,
    inflight: FuturesUnordered<Inflight>,
    next_seq: u64,
    reserved_end: u64,
}

impl<B: RecordBus> Publisher<B> {
    /// A publisher with its first block of ids reserved.
    pub async fn new(
        bus: B,
        cfg: PublisherConfig,
        mut lanes: watch::Receiver<Arc<Vec<Route>>>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, BusError> {
        let first = bus.reserve_ids(cfg.collector, ID_BLOCK).await?;
        let lanes_now = lanes.borrow_and_update().clone();
        Ok(Publisher {
            bus,
            cfg,
            lanes,
            lanes_now,
            metrics,
            pending: Vec::new(),
            marked: Vec::new(),
            mark: None,
            inflight: FuturesUnordered::new(),
            next_seq: first,
            reserved_end: first.saturating_add(ID_BLOCK),
        })
    }

    /// Publish until the record stream ends, then flush and wait for
    /// every batch to be stored.
    pub async fn run(mut self, mut records: mpsc::Receiver<Batch>) {
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                batch = records.recv() => match batch {
                    Some(batch) => self.take(batch).await,
                    None => break,
                },
                _ = flush.tick() => self.flush_all().await,
                Some(()) = self.inflight.next(), if !self.inflight.is_empty() => {}
            }
        }
        self.flush_all().await;
        while self.inflight.next().await.is_some() {}
    }

    async fn take(&mut self, batch: Batch) {
        if self.lanes.has_changed().unwrap_or(false) {
            // The lane set changed (reload): what is pending was routed by
            // the old one and goes out as it is.
            self.flush_all().await;
            self.lanes_now = self.lanes.borrow_and_update().clone();
        }
        let lanes = self.lanes_now.clone();
        let parts = self.slots_per_lane();
        if self.pending.len() < lanes.len() * parts {
            self.pending.resize_with(lanes.len() * parts, Vec::new);
            self.marked
                .resize(lanes.len() * parts, (None, Instant::now()));
        }
        for mut rec in batch {
            self.mark = Some(self.mark.map_or(rec.stime(), |m| m.max(rec.stime())));
            let Some(id) = self.next_id().await else {
                add(&self.metrics.cluster.dropped_records, 1);
                continue;
            };
            // The decoder hands over the only reference: the id is set in
            // place, without copying the record.
            Arc::make_mut(&mut rec).set_rec_id(id);
            let mut routed = false;
            for (i, route) in lanes.iter().enumerate() {
                if !route.carries(&rec) {
                    continue;
                }
                routed = true;
                let p = route.lane.partition(&rec, self.cfg.partitions);
                // `partition` is below `partitions` (at least 1).
                let slot_at = i * parts + p as usize;
                let slot = &mut self.pending[slot_at];
                slot.push(Arc::clone(&rec));
                if slot.len() >= self.cfg.batch {
                    let recs = std::mem::replace(slot, Vec::with_capacity(self.cfg.batch));
                    self.publish(&route.lane, slot_at, recs).await;
                }
            }
            if !routed {
                add(&self.metrics.cluster.unrouted_records, 1);
            }
        }
    }

    fn slots_per_lane(&self) -> usize {
        self.cfg.partitions.max(1) as usize
    }

    /// The next cluster rec_id; `None` when no more ids can be reserved
    /// (the bus is unreachable at the moment a block runs out).
    async fn next_id(&mut self) -> Option<u64> {
        if self.next_seq >= self.reserved_end {
            match self.bus.reserve_ids(self.cfg.collector, ID_BLOCK).await {
                Ok(first) => {
                    self.next_seq = first;
                    self.reserved_end = first.saturating_add(ID_BLOCK);
                }
                Err(e) => {
                    tracing::warn!("cannot reserve record ids: {e}");
                    return None;
                }
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        Some(codec::cluster_rec_id(self.cfg.collector, seq))
    }

    async fn flush_all(&mut self) {
        let lanes = self.lanes_now.clone();
        let parts = self.slots_per_lane();
        for slot in 0..self.pending.len() {
            let Some(route) = lanes.get(slot / parts) else {
                continue;
            };
            if !self.pending[slot].is_empty() || self.mark_due(slot) {
                let recs = std::mem::take(&mut self.pending[slot]);
                self.publish(&route.lane, slot, recs).await;
            }
        }
    }

    /// Whether the quiet `slot` should hear that time moved.
    fn mark_due(&self, slot: usize) -> bool {
        self.marked
            .get(slot)
            .is_some_and(|&(last, at)| self.mark > last && at.elapsed() >= MARK_EVERY)
    }

    async fn publish(&mut self, lane: &Lane, slot: usize, recs: Vec<Arc<Record>>) {
        // Below `partitions`, which is a u32.
        let p = (slot % self.slots_per_lane()) as u32;
        if self.inflight.len() >= self.cfg.max_inflight && !self.wait_for_slot().await {
            add(&self.metrics.cluster.dropped_records, recs.len() as u64);
            return;
        }
        if let Some(m) = self.marked.get_mut(slot) {
            *m = (self.mark, Instant::now());
        }
        // Encoded into its own buffer, which becomes the payload as it is.
        let mut buf = Vec::new();
        codec::encode_marked_batch(
            self.cfg.collector,
            now_ms(),
            self.mark,
            recs.iter().map(Arc::as_ref),
            &mut buf,
        );
        let payload = Bytes::from(buf);
        let subject = lane.subject(p);
        // Deterministic: a retry of this batch carries the same id (a
        // batch of the mark alone is named by the mark).
        let id = match recs.first() {
            Some(r) => format!("{}-{}", subject, r.rec_id()),
            None => format!(
                "{}-m{}-{}",
                subject,
                self.cfg.collector,
                self.mark.unwrap_or(i64::MIN)
            ),
        };
        let n = recs.len() as u64;
        let fut = publish_retrying(
            self.bus.clone(),
            subject,
            id,
            payload,
            self.metrics.clone(),
            n,
        );
        self.inflight.push(Box::pin(fut));
    }

    /// Wait until a publish completes; false when none did in time.
    async fn wait_for_slot(&mut self) -> bool {
        let deadline = tokio::time::sleep(FULL_WAIT);
        tokio::pin!(deadline);
        while self.inflight.len() >= self.cfg.max_inflight {
            tokio::select! {
                _ = &mut deadline => return false,
                _ = self.inflight.next() => {}
            }
        }
        true
    }
}

async fn publish_retrying<B: RecordBus>(
    bus: B,
    subject: String,
    id: String,
    payload: Bytes,
    metrics: Arc<Metrics>,
    records: u64,
) {
    let mut delay = RETRY_FIRST;
    let mut failures = 0u32;
    loop {
        let start = Instant::now();
        match bus
            .publish(subject.clone(), id.clone(), payload.clone())
            .await
        {
            Ok(()) => {
                let m = &metrics.cluster;
                add(&m.published_messages, 1);
                add(&m.published_records, records);
                add(&m.publish_latency_ms, start.elapsed().as_millis() as u64);
                if failures > 0 {
                    tracing::info!(%subject, failures, "publish succeeded after retries");
                }
                return;
            }
            Err(e) => {
                add(&metrics.cluster.publish_retries, 1);
                failures += 1;
                // The first failure and then every tenth: a bus outage
                // must show in the log without flooding it.
                if failures == 1 || failures.is_multiple_of(10) {
                    tracing::warn!(failures, "{e}; retrying");
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RETRY_MAX);
            }
        }
    }
}
