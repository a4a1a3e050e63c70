//! flowy's view of the bus: durable subjects that store a message once per
//! id, and durable consumers that redeliver what was not acknowledged.
//! NATS JetStream implements it ([`super::nats`]); another log (Kafka)
//! would implement the same three traits.

use std::future::Future;

use bytes::Bytes;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to {url}: {message}")]
    Connect { url: String, message: String },
    #[error("cannot set up {what}: {message}")]
    Setup { what: String, message: String },
    #[error("publish to {subject} failed: {message}")]
    Publish { subject: String, message: String },
    #[error("consumer {consumer}: {message}")]
    Consume { consumer: String, message: String },
    #[error("acknowledgement failed: {0}")]
    Ack(String),
}

/// Who holds a partition, until when. `version` changes with every write
/// (0: never written), so a write that expects it is a compare-and-set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    pub expires_ms: i64,
    pub version: u64,
}

/// Where records go.
pub trait RecordBus: Clone + Send + Sync + 'static {
    type Consumer: RecordConsumer;

    /// Store `payload` on `subject`; resolves once the bus has stored it.
    /// A retry with the same `id` (after a timeout, say) is stored once.
    fn publish(
        &self,
        subject: String,
        id: String,
        payload: Bytes,
    ) -> impl Future<Output = Result<(), BusError>> + Send + 'static;

    /// Reserve `n` record sequence numbers for collector `collector`:
    /// returns the first. Reservations survive restarts, so a restarted
    /// collector never reuses a `rec_id`.
    fn reserve_ids(
        &self,
        collector: u16,
        n: u64,
    ) -> impl Future<Output = Result<u64, BusError>> + Send;

    /// The value last saved under `name` (small state a restart needs,
    /// such as a partition's replay cut).
    fn load_state(
        &self,
        name: String,
    ) -> impl Future<Output = Result<Option<i64>, BusError>> + Send;

    fn save_state(
        &self,
        name: String,
        value: i64,
    ) -> impl Future<Output = Result<(), BusError>> + Send;

    fn read_lease(&self, name: String) -> impl Future<Output = Result<Lease, BusError>> + Send;

    /// Write `holder` until `expires_ms` if the lease is still at
    /// `version`: the new version, or `None` when someone else wrote it
    /// first.
    fn write_lease(
        &self,
        name: String,
        holder: String,
        expires_ms: i64,
        version: u64,
    ) -> impl Future<Output = Result<Option<u64>, BusError>> + Send;

    /// Announce `member` as alive for `ttl`; returns how many members are.
    fn heartbeat(
        &self,
        member: String,
        ttl: std::time::Duration,
    ) -> impl Future<Output = Result<u64, BusError>> + Send;

    /// The durable consumer `durable` of `subject`, delivering every
    /// message not yet acknowledged (also those an earlier, crashed
    /// consumer of that name had delivered) and then new ones, with at most
    /// `max_pending` messages delivered and not yet acknowledged.
    fn consume(
        &self,
        subject: String,
        durable: String,
        max_pending: usize,
    ) -> impl Future<Output = Result<Self::Consumer, BusError>> + Send;
}

/// A durable consumer's deliveries, in stream order.
pub trait RecordConsumer: Send + 'static {
    type Msg: Delivery;
    /// Messages that were waiting when the consumer started: the first
    /// this many deliveries are what an earlier worker left
    /// unacknowledged (or what arrived while none ran).
    fn backlog(&self) -> u64;
    fn next(&mut self) -> impl Future<Output = Option<Result<Self::Msg, BusError>>> + Send;
}

/// One delivered message.
pub trait Delivery: Send + Sync + 'static {
    fn payload(&self) -> &[u8];
    /// The message's position in the stream: a redelivery has the same.
    fn position(&self) -> u64;
    /// Delivered before (to this or a crashed worker).
    fn redelivered(&self) -> bool;
    /// Done with it: never deliver it again.
    fn ack(&self) -> impl Future<Output = Result<(), BusError>> + Send;
    /// It cannot be processed (undecodable): never deliver it again.
    fn reject(&self) -> impl Future<Output = Result<(), BusError>> + Send;
}
