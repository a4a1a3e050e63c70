//! [`RecordBus`] on NATS JetStream: one stream (work-queue retention: a
//! message is deleted once its partition's worker acknowledged it) over
//! `flowy.records.>`, one durable pull consumer per subject, and
//! JetStream's message-id deduplication for retried publishes.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures_util::StreamExt;

use super::bus::{BusError, Delivery, Lease, RecordBus, RecordConsumer};
use super::lane::RECORDS;

/// How long JetStream waits for an acknowledgement before redelivering.
/// A worker holds records as long as their groups are open (lateness plus
/// a window, minutes), and recognises a redelivery of a message it still
/// holds by its stream position, so this only sets how often such
/// messages are sent again, and how soon a crashed worker's messages go
/// to its successor.
const ACK_WAIT: Duration = Duration::from_secs(60);

/// The stream of small state a restart needs, one value per subject
/// (the last one kept): each collector's next free record sequence on
/// `flowy.state.ids.<collector id>`, each partition's replay cut on
/// `flowy.state.cut.<consumer>`. (A key-value bucket would do the same,
/// but its client API asks for features older servers, Debian's 2.9
/// among them, do not have.)
const STATE_STREAM: &str = "FLOWY_STATE";
/// Live workers, each a message that expires after the lease time.
const MEMBERS_STREAM: &str = "FLOWY_MEMBERS";
const MEMBERS_SUBJECT: &str = "flowy.members";
/// Matches on the bus, `flowy.matches.<query>`, each stored once per
/// `match_id` within [`MATCH_DEDUP`].
pub const MATCHES_STREAM: &str = "FLOWY_MATCHES";
pub const MATCHES_SUBJECT: &str = "flowy.matches";
const MATCH_DEDUP: Duration = Duration::from_secs(3600);
const STATE_SUBJECT: &str = "flowy.state";

#[derive(Clone)]
pub struct NatsBus {
    js: jetstream::Context,
    stream: String,
    state: stream::Stream,
}

impl NatsBus {
    /// Connect and create the record stream if it is absent.
    pub async fn connect(url: &str, stream_name: &str) -> Result<Self, BusError> {
        let client = async_nats::ConnectOptions::new()
            .name("flowy")
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| BusError::Connect {
                url: url.to_string(),
                message: e.to_string(),
            })?;
        let js = jetstream::new(client);
        js.get_or_create_stream(stream::Config {
            name: stream_name.to_string(),
            subjects: vec![format!("{RECORDS}.>")],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| BusError::Setup {
            what: format!("stream {stream_name}"),
            message: e.to_string(),
        })?;
        let state = js
            .get_or_create_stream(stream::Config {
                name: STATE_STREAM.to_string(),
                subjects: vec![format!("{STATE_SUBJECT}.>")],
                max_messages_per_subject: 1,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| BusError::Setup {
                what: format!("stream {STATE_STREAM}"),
                message: e.to_string(),
            })?;
        js.get_or_create_stream(stream::Config {
            name: MATCHES_STREAM.to_string(),
            subjects: vec![format!("{MATCHES_SUBJECT}.>")],
            duplicate_window: MATCH_DEDUP,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| BusError::Setup {
            what: format!("stream {MATCHES_STREAM}"),
            message: e.to_string(),
        })?;
        Ok(NatsBus {
            js,
            stream: stream_name.to_string(),
            state,
        })
    }

    /// The value last stored on `subject` and its stream sequence (0 when
    /// none is).
    async fn last_value(&self, subject: &str) -> Result<(Option<i64>, u64), BusError> {
        let fail = |message: String| BusError::Setup {
            what: subject.to_string(),
            message,
        };
        match self.state.get_last_raw_message_by_subject(subject).await {
            Ok(m) => {
                let text = String::from_utf8_lossy(&m.payload);
                let v = text
                    .trim()
                    .parse()
                    .map_err(|_| fail(format!("stored value {text:?} is not a number")))?;
                Ok((Some(v), m.sequence))
            }
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok((None, 0)),
            Err(e) => Err(fail(e.to_string())),
        }
    }

    /// Store `value` on `subject`; with `expect`, only if the last value
    /// stored there has that sequence (0: none).
    async fn put_value(
        &self,
        subject: &str,
        value: i64,
        expect: Option<u64>,
    ) -> Result<(), BusError> {
        match self
            .put_raw(subject, value.to_string().into(), expect)
            .await?
        {
            Some(_) => Ok(()),
            None => Err(BusError::Publish {
                subject: subject.to_string(),
                message: "changed meanwhile".into(),
            }),
        }
    }

    /// Store `payload` on `subject` (with `expect`: compare-and-set on the
    /// subject's last sequence). The new sequence, or `None` when the
    /// expectation failed.
    async fn put_raw(
        &self,
        subject: &str,
        payload: Bytes,
        expect: Option<u64>,
    ) -> Result<Option<u64>, BusError> {
        let mut headers = async_nats::HeaderMap::new();
        if let Some(seq) = expect {
            headers.insert(
                async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                seq.to_string().as_str(),
            );
        }
        let fail = |e: &dyn std::fmt::Display| BusError::Publish {
            subject: subject.to_string(),
            message: e.to_string(),
        };
        let ack = self
            .js
            .publish_with_headers(subject.to_string(), headers, payload)
            .await
            .map_err(|e| fail(&e))?;
        match ack.await {
            Ok(a) => Ok(Some(a.sequence)),
            Err(e) if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => {
                Ok(None)
            }
            Err(e) => Err(fail(&e)),
        }
    }

    /// The raw value last stored on `subject` and its sequence.
    async fn last_raw(&self, subject: &str) -> Result<Option<(Bytes, u64)>, BusError> {
        match self.state.get_last_raw_message_by_subject(subject).await {
            Ok(m) => Ok(Some((m.payload, m.sequence))),
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(BusError::Setup {
                what: subject.to_string(),
                message: e.to_string(),
            }),
        }
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }
}

impl RecordBus for NatsBus {
    type Consumer = NatsConsumer;

    fn publish(
        &self,
        subject: String,
        id: String,
        payload: Bytes,
    ) -> impl std::future::Future<Output = Result<(), BusError>> + Send + 'static {
        let js = self.js.clone();
        async move {
            let err = |e: &dyn std::fmt::Display| BusError::Publish {
                subject: subject.clone(),
                message: e.to_string(),
            };
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
            let ack = js
                .publish_with_headers(subject.clone(), headers, payload)
                .await
                .map_err(|e| err(&e))?;
            ack.await.map_err(|e| err(&e))?;
            Ok(())
        }
    }

    async fn reserve_ids(&self, collector: u16, n: u64) -> Result<u64, BusError> {
        let subject = format!("{STATE_SUBJECT}.ids.{collector}");
        let fail = |e: &dyn std::fmt::Display| BusError::Setup {
            what: format!("id reservation of collector {collector} ({subject})"),
            message: e.to_string(),
        };
        // A publish that expects the last value seen is a compare-and-set:
        // two processes racing for one id still get disjoint ranges.
        for _ in 0..16 {
            let (first, seq) = self.last_value(&subject).await.map_err(|e| fail(&e))?;
            let first = u64::try_from(first.unwrap_or(0)).unwrap_or(0);
            let next = i64::try_from(first.saturating_add(n)).unwrap_or(i64::MAX);
            if self.put_value(&subject, next, Some(seq)).await.is_ok() {
                return Ok(first);
            }
        }
        Err(fail(&"the stored reservation kept changing"))
    }

    async fn load_state(&self, name: String) -> Result<Option<i64>, BusError> {
        let subject = format!("{STATE_SUBJECT}.{name}");
        Ok(self.last_value(&subject).await?.0)
    }

    async fn save_state(&self, name: String, value: i64) -> Result<(), BusError> {
        self.put_value(&format!("{STATE_SUBJECT}.{name}"), value, None)
            .await
    }

    async fn read_lease(&self, name: String) -> Result<Lease, BusError> {
        let subject = format!("{STATE_SUBJECT}.lease.{name}");
        let Some((payload, version)) = self.last_raw(&subject).await? else {
            return Ok(Lease::default());
        };
        // "holder expires_ms"; anything else reads as an expired lease.
        let text = String::from_utf8_lossy(&payload);
        let (holder, expires) = text.rsplit_once(' ').unwrap_or(("", "0"));
        Ok(Lease {
            holder: holder.to_string(),
            expires_ms: expires.parse().unwrap_or(0),
            version,
        })
    }

    async fn write_lease(
        &self,
        name: String,
        holder: String,
        expires_ms: i64,
        version: u64,
    ) -> Result<Option<u64>, BusError> {
        let subject = format!("{STATE_SUBJECT}.lease.{name}");
        let payload = format!("{holder} {expires_ms}");
        self.put_raw(&subject, payload.into(), Some(version)).await
    }

    async fn heartbeat(&self, member: String, ttl: Duration) -> Result<u64, BusError> {
        let fail = |e: &dyn std::fmt::Display| BusError::Setup {
            what: format!("stream {MEMBERS_STREAM}"),
            message: e.to_string(),
        };
        // One message per member, kept for `ttl`: the stream's message
        // count is the number of live members.
        let mut members = self
            .js
            .get_or_create_stream(stream::Config {
                name: MEMBERS_STREAM.to_string(),
                subjects: vec![format!("{MEMBERS_SUBJECT}.>")],
                max_messages_per_subject: 1,
                max_age: ttl,
                storage: stream::StorageType::Memory,
                ..Default::default()
            })
            .await
            .map_err(|e| fail(&e))?;
        let ack = self
            .js
            .publish(format!("{MEMBERS_SUBJECT}.{member}"), Bytes::new())
            .await
            .map_err(|e| fail(&e))?;
        ack.await.map_err(|e| fail(&e))?;
        let info = members.info().await.map_err(|e| fail(&e))?;
        Ok(info.state.messages)
    }

    async fn consume(
        &self,
        subject: String,
        durable: String,
        max_pending: usize,
    ) -> Result<NatsConsumer, BusError> {
        let fail = |e: &dyn std::fmt::Display| BusError::Consume {
            consumer: durable.clone(),
            message: e.to_string(),
        };
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| fail(&e))?;
        let config = consumer::pull::Config {
            durable_name: Some(durable.clone()),
            filter_subject: subject,
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: ACK_WAIT,
            max_ack_pending: i64::try_from(max_pending).unwrap_or(i64::MAX),
            ..Default::default()
        };
        // A consumer left by a worker that crashed would hold the messages
        // it had delivered until their ack wait ran out. Re-created, it
        // delivers every message still in the stream (work-queue
        // retention: exactly the unacknowledged ones) at once.
        if let Err(e) = stream.delete_consumer(&durable).await {
            tracing::debug!(consumer = %durable, "no consumer to replace: {e}");
        }
        let consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(&durable, config)
            .await
            .map_err(|e| fail(&e))?;
        let backlog = consumer.cached_info().num_pending;
        let messages = consumer.messages().await.map_err(|e| fail(&e))?;
        Ok(NatsConsumer {
            durable,
            messages,
            backlog,
        })
    }
}

pub struct NatsConsumer {
    durable: String,
    messages: consumer::pull::Stream,
    backlog: u64,
}

impl RecordConsumer for NatsConsumer {
    type Msg = NatsDelivery;

    fn backlog(&self) -> u64 {
        self.backlog
    }

    async fn next(&mut self) -> Option<Result<NatsDelivery, BusError>> {
        let item = self.messages.next().await?;
        Some(match item {
            Ok(msg) => {
                let (position, redelivered) = msg
                    .info()
                    .map(|i| (i.stream_sequence, i.delivered > 1))
                    .unwrap_or((0, false));
                Ok(NatsDelivery {
                    msg,
                    position,
                    redelivered,
                })
            }
            Err(e) => Err(BusError::Consume {
                consumer: self.durable.clone(),
                message: e.to_string(),
            }),
        })
    }
}

pub struct NatsDelivery {
    msg: jetstream::Message,
    position: u64,
    redelivered: bool,
}

impl Delivery for NatsDelivery {
    fn payload(&self) -> &[u8] {
        &self.msg.payload
    }

    fn position(&self) -> u64 {
        self.position
    }

    fn redelivered(&self) -> bool {
        self.redelivered
    }

    async fn ack(&self) -> Result<(), BusError> {
        self.msg
            .ack()
            .await
            .map_err(|e| BusError::Ack(e.to_string()))
    }

    async fn reject(&self) -> Result<(), BusError> {
        self.msg
            .ack_with(jetstream::AckKind::Term)
            .await
            .map_err(|e| BusError::Ack(e.to_string()))
    }
}
