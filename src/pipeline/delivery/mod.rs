//! The delivery seam: how produced records and consumed offsets are tied together.
//!
//! Owns: the producer, the per-partition offset bookkeeping (`offsets`), backpressure (records
//! and bytes in flight), committing (consumer offsets, or Kafka transactions), and what happens
//! to in-flight work when partitions are revoked. Two modes behind one type, [`Delivery`]:
//! [`at_least_once`] (idempotent producer; an offset is committed only after every message before
//! it on its partition was acknowledged) and [`exactly_once`] (records, dead letters and offsets
//! in one transaction per batch, KIP-447). The pipeline calls the same methods for both:
//! `send` (a forwarded record or a dead letter), `skip`, `service` (acks, periodic commit),
//! `revoking`/`assigned` (rebalance), `finish` (shutdown). Must not: decide what to send or parse
//! bytes (the pipeline does), or block the async runtime (it runs on the pipeline thread).
//!
//! Delivery reports reach [`SinkContext`] while the producer is polled on the pipeline thread,
//! carrying the source position packed into the opaque, so there is no future, channel slot or
//! allocation per message.

pub mod at_least_once;
pub mod exactly_once;
pub mod offsets;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, ProducerContext};
use rdkafka::{ClientContext, TopicPartitionList};
use thiserror::Error;

pub use at_least_once::AtLeastOnce;
pub use exactly_once::ExactlyOnce;
pub use offsets::{Position, SlotError, Slots};

/// One record to produce. Borrowed: librdkafka copies the bytes when it enqueues.
pub struct OutRecord<'a> {
    pub topic: &'a str,
    pub partition: Option<i32>,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Option<OwnedHeaders>,
    pub timestamp: Option<i64>,
}

impl OutRecord<'_> {
    /// Bytes counted against `pipeline.max_in_flight_bytes`.
    pub fn size(&self) -> usize {
        self.key.map_or(0, <[u8]>::len) + self.value.map_or(0, <[u8]>::len)
    }
}

#[derive(Debug, Error)]
pub enum DeliveryError {
    #[error("cannot enqueue a record for topic {topic}: {source}")]
    Enqueue {
        topic: String,
        source: Box<KafkaError>,
    },
    #[error("delivery to {topic} failed for source {from_topic}[{partition}]@{offset}: {source}")]
    Failed {
        topic: String,
        from_topic: String,
        partition: i32,
        offset: i64,
        source: Box<KafkaError>,
    },
    #[error(
        "fenced: another instance with transactional id `{transactional_id}` took over ({source}); \
         if two replicas share one id, give each its own `pipeline.transactional_id`"
    )]
    Fenced {
        transactional_id: String,
        source: Box<KafkaError>,
    },
    #[error("transaction {what} failed: {source}")]
    Transaction {
        what: &'static str,
        source: Box<KafkaError>,
    },
    #[error("{0}")]
    Offsets(#[from] SlotError),
    #[error("the consumer has no group metadata (is group_id set?)")]
    NoGroupMetadata,
}

/// Why a record was not enqueued.
#[derive(Debug, Error)]
pub enum SendError {
    /// Larger than the producer's `message.max.bytes`: a property of the message, handled by the
    /// route's error policy.
    #[error(
        "the record is {bytes} bytes, more than the producer's message.max.bytes ({limit}); raise it under target.librdkafka if the target topic accepts it"
    )]
    TooLarge { bytes: usize, limit: usize },
    #[error(transparent)]
    Fatal(#[from] DeliveryError),
}

/// One delivery report.
pub struct Ack {
    pub opaque: usize,
    /// The target topic and the error, when the record was not delivered.
    pub error: Option<(String, KafkaError)>,
}

/// Producer context: collects delivery reports for the delivery mode to apply.
#[derive(Default)]
pub struct SinkContext {
    acks: Mutex<Vec<Ack>>,
}

impl SinkContext {
    /// Moves the collected reports into `into` (which the caller reuses: no allocation once warm).
    fn drain(&self, into: &mut Vec<Ack>) {
        let mut acks = self.acks.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::swap(&mut *acks, into);
    }
}

impl ClientContext for SinkContext {
    /// Producer statistics are not used (in sidecar mode the producer shares the source's
    /// `librdkafka` map, so `statistics.interval.ms` set for consumer lag reaches it too; the
    /// default would log every report).
    fn stats_raw(&self, _statistics: &[u8]) {}
}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let error = match result {
            Ok(_) => None,
            Err((e, m)) => Some((m.topic().to_string(), e.clone())),
        };
        self.acks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Ack { opaque, error });
    }
}

pub type SinkProducer = BaseProducer<SinkContext>;

/// Enqueues `record` with `opaque`, waiting (and serving delivery reports) while the producer's
/// queue is full.
fn produce(
    producer: &SinkProducer,
    record: OutRecord<'_>,
    opaque: usize,
    max_message_bytes: usize,
) -> Result<(), SendError> {
    let mut r: BaseRecord<'_, [u8], [u8], usize> = BaseRecord::with_opaque_to(record.topic, opaque);
    if let Some(p) = record.partition {
        r = r.partition(p);
    }
    if let Some(k) = record.key {
        r = r.key(k);
    }
    if let Some(v) = record.value {
        r = r.payload(v);
    }
    if let Some(h) = record.headers {
        r = r.headers(h);
    }
    if let Some(ts) = record.timestamp {
        r = r.timestamp(ts);
    }
    loop {
        match producer.send(r) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                producer.poll(Duration::from_millis(5));
                r = back;
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), back)) => {
                let bytes = back.key.map_or(0, <[u8]>::len) + back.payload.map_or(0, <[u8]>::len);
                return Err(SendError::TooLarge {
                    bytes,
                    limit: max_message_bytes,
                });
            }
            Err((source, back)) => {
                return Err(SendError::Fatal(DeliveryError::Enqueue {
                    topic: back.topic.to_string(),
                    source: Box::new(source),
                }));
            }
        }
    }
}

pub(super) fn tpl(offsets: &[(String, i32, i64)]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::with_capacity(offsets.len());
    for (topic, partition, offset) in offsets {
        // Every entry is a valid offset; add_partition_offset only fails on invalid ones.
        let _ = tpl.add_partition_offset(topic, *partition, rdkafka::Offset::Offset(*offset));
    }
    tpl
}

/// (topic, partition) of every entry (rebalances only: allocates).
fn partitions(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

/// What a delivery mode is asked to do with the partitions being revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// An orderly rebalance: finish the work for them and commit it before they go.
    Orderly,
    /// The assignment was lost (session timed out): their commits would fail; abandon.
    Lost,
}

/// The delivery mode a gateway runs with.
pub enum Delivery {
    AtLeastOnce(AtLeastOnce),
    ExactlyOnce(ExactlyOnce),
}

macro_rules! each {
    ($self:expr, $d:ident => $e:expr) => {
        match $self {
            Delivery::AtLeastOnce($d) => $e,
            Delivery::ExactlyOnce($d) => $e,
        }
    };
}

impl Delivery {
    /// The offset bookkeeping (slot lookup for a consumed message).
    pub fn slots(&self) -> &Slots {
        each!(self, d => &d.slots)
    }

    /// Produces `record` for the message at `from`.
    pub fn send(&mut self, from: Position, record: OutRecord<'_>) -> Result<(), SendError> {
        each!(self, d => d.send(from, record))
    }

    /// Marks the message at `from` dealt with, producing nothing.
    pub fn skip(&mut self, from: Position) -> Result<(), DeliveryError> {
        each!(self, d => d.skip(from))
    }

    /// Applies delivery reports; commits when it is time (interval or transaction size).
    pub fn service<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), DeliveryError> {
        each!(self, d => d.service(consumer))
    }

    /// While consumption is paused (registry outage): commits what is done so far, including an
    /// open transaction.
    pub fn flush_during_pause<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), DeliveryError> {
        match self {
            Delivery::AtLeastOnce(d) => d.service(consumer),
            Delivery::ExactlyOnce(d) => d.commit_now(consumer),
        }
    }

    /// Whether another message may be consumed now (in-flight records and bytes under their
    /// bounds).
    pub fn has_capacity(&self) -> bool {
        each!(self, d => d.has_capacity())
    }

    /// Waits up to `timeout` for delivery reports and applies them.
    pub fn wait(&mut self, timeout: Duration) -> Result<(), DeliveryError> {
        each!(self, d => d.wait(timeout))
    }

    pub fn assigned(&mut self, tpl: &TopicPartitionList) -> Result<(), DeliveryError> {
        let slots = each!(self, d => &mut d.slots);
        let parts = partitions(tpl);
        slots
            .assign(parts.iter().map(|(t, p)| (t.as_str(), *p)))
            .map_err(DeliveryError::from)
    }

    /// Finishes (or abandons) the work for revoked partitions before the revoke completes.
    pub fn revoking<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        tpl: &TopicPartitionList,
        how: Revocation,
        deadline: Instant,
    ) -> Result<(), DeliveryError> {
        each!(self, d => d.revoking(consumer, tpl, how, deadline))
    }

    /// Shutdown: waits for in-flight records (until `deadline`); exactly-once commits its open
    /// transaction. Returns the offsets for the final commit (at-least-once: those not committed
    /// yet; exactly-once: the group copy of every owned partition's), or the first failure.
    pub fn finish<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        deadline: Instant,
    ) -> Result<Vec<(String, i32, i64)>, DeliveryError> {
        each!(self, d => d.finish(consumer, deadline))
    }
}
