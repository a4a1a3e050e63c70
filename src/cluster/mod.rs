//! The flowy cluster on NATS JetStream (SPEC §5): collectors publish
//! decoded records to partition subjects, workers consume partitions and
//! run the queries on each with its own watermark.
//!
//! ```text
//! collector: UDP ─► decode ─► Publisher ─► flowy.records.<lane>.<partition>
//! worker:    durable consumer per (lane, partition) ─► Admission + QueryDrivers ─► output
//! ```
//! A *lane* is what a query reads: the records of one partition key, of
//! any partition (queries whose matches are single records), or the one
//! global stream. The bus sits behind [`bus`]; [`nats`] implements it.

pub mod bus;
pub mod codec;
pub mod collector;
pub mod lane;
pub mod nats;
pub mod worker;
