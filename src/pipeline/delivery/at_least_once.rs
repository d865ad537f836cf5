//! At-least-once delivery: an idempotent producer, and consumer offsets committed only after
//! the broker acknowledged everything produced for the messages before them.
//!
//! Owns: the at-least-once producer, the records and bytes in flight, and committing offsets
//! (asynchronously every `commit_interval_ms`, synchronously for revoked partitions). Each
//! delivery report marks its source message done in `Slots`; a partition's committable offset
//! only moves over a run of done messages, so a commit never passes a message that was not
//! delivered, whatever order the acks come in. A failed delivery is fatal: the gateway stops and
//! everything from that message on is consumed again after a restart. Must not: decide what to
//! send, or block the async runtime.

use std::time::{Duration, Instant};

use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer;

use super::offsets::{Position, Slots};
use super::{
    Ack, DeliveryError, OutRecord, Revocation, SendError, SinkProducer, partitions, produce, tpl,
};
use crate::telemetry::events::DeliveryEvents;

pub struct AtLeastOnce {
    producer: SinkProducer,
    pub(super) slots: Slots,
    in_flight: usize,
    in_flight_bytes: usize,
    max_in_flight: usize,
    max_in_flight_bytes: usize,
    max_message_bytes: usize,
    commit_every: Duration,
    last_commit: Instant,
    /// Reused buffer for delivery reports.
    acks: Vec<Ack>,
    /// The first failed delivery; the gateway stops on it.
    failed: Option<DeliveryError>,
    events: DeliveryEvents,
}

pub struct Limits {
    pub max_in_flight: usize,
    pub max_in_flight_bytes: usize,
    pub max_message_bytes: usize,
    pub commit_every: Duration,
}

impl AtLeastOnce {
    pub fn new(producer: SinkProducer, limits: Limits) -> Self {
        AtLeastOnce {
            producer,
            slots: Slots::default(),
            in_flight: 0,
            in_flight_bytes: 0,
            max_in_flight: limits.max_in_flight,
            max_in_flight_bytes: limits.max_in_flight_bytes,
            max_message_bytes: limits.max_message_bytes,
            commit_every: limits.commit_every,
            last_commit: Instant::now(),
            acks: Vec::with_capacity(1024),
            failed: None,
            events: DeliveryEvents::new(),
        }
    }

    pub fn send(&mut self, from: Position, record: OutRecord<'_>) -> Result<(), SendError> {
        let bytes = record.size();
        produce(&self.producer, record, from.pack(), self.max_message_bytes)?;
        self.slots
            .consumed(from, bytes, false)
            .map_err(DeliveryError::from)?;
        self.in_flight += 1;
        self.in_flight_bytes += bytes;
        Ok(())
    }

    pub fn skip(&mut self, from: Position) -> Result<(), DeliveryError> {
        self.slots.consumed(from, 0, true)?;
        Ok(())
    }

    pub fn has_capacity(&self) -> bool {
        self.in_flight < self.max_in_flight && self.in_flight_bytes < self.max_in_flight_bytes
    }

    pub fn service<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), DeliveryError> {
        self.wait(Duration::ZERO)?;
        self.events.in_flight(self.in_flight, self.in_flight_bytes);
        if self.last_commit.elapsed() >= self.commit_every {
            self.commit(consumer, CommitMode::Async, |_, _| true)?;
        }
        Ok(())
    }

    pub fn wait(&mut self, timeout: Duration) -> Result<(), DeliveryError> {
        self.producer.poll(timeout);
        self.apply_acks();
        match self.failed.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn apply_acks(&mut self) {
        self.producer.context().drain(&mut self.acks);
        for ack in self.acks.drain(..) {
            let pos = Position::unpack(ack.opaque);
            self.in_flight = self.in_flight.saturating_sub(1);
            match ack.error {
                None => {
                    if let Some(r) = self.slots.ack(pos) {
                        self.in_flight_bytes = self.in_flight_bytes.saturating_sub(r.bytes);
                    }
                }
                Some((topic, source)) => {
                    // Not marked done: no commit passes this message.
                    self.events.produce_errors.increment(1);
                    if self.failed.is_none() {
                        let slot = self.slots.get(pos.slot);
                        self.failed = Some(DeliveryError::Failed {
                            topic,
                            from_topic: slot.topic.clone(),
                            partition: slot.partition,
                            offset: pos.offset,
                            source: Box::new(source),
                        });
                    }
                }
            }
        }
    }

    /// Commits what moved on the partitions `filter` accepts.
    fn commit<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        mode: CommitMode,
        filter: impl FnMut(&str, i32) -> bool,
    ) -> Result<(), DeliveryError> {
        self.last_commit = Instant::now();
        let offsets = self.slots.take_committable(filter);
        if offsets.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        match consumer.commit(&tpl(&offsets), mode) {
            Ok(()) => {
                if matches!(mode, CommitMode::Sync) {
                    self.events
                        .commit_seconds
                        .record(started.elapsed().as_secs_f64());
                }
                Ok(())
            }
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
            Err(e) => {
                self.events.commit_failures.increment(1);
                tracing::warn!(error = %e, "offset commit failed; will retry");
                self.slots.uncommit(&offsets);
                Ok(())
            }
        }
    }

    /// Waits (until `deadline`) for the acks of records produced for the revoked partitions,
    /// commits them synchronously, and forgets the partitions.
    pub fn revoking<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        revoked: &TopicPartitionList,
        how: Revocation,
        deadline: Instant,
    ) -> Result<(), DeliveryError> {
        let revoked = partitions(revoked);
        if how == Revocation::Orderly {
            let pending = |slots: &Slots| {
                revoked
                    .iter()
                    .filter_map(|(t, p)| slots.lookup(t, *p))
                    .any(|s| slots.get(s).in_flight() > 0)
            };
            while pending(&self.slots) && Instant::now() < deadline {
                self.producer.poll(Duration::from_millis(10));
                self.apply_acks();
            }
            if pending(&self.slots) {
                tracing::warn!(
                    "revoked partitions still had records in flight; their new owner consumes them again"
                );
            }
            let is_revoked = |t: &str, p: i32| revoked.iter().any(|(rt, rp)| rt == t && *rp == p);
            let offsets = self.slots.take_committable(is_revoked);
            if !offsets.is_empty()
                && let Err(e) = consumer.commit(&tpl(&offsets), CommitMode::Sync)
            {
                tracing::warn!(error = %e, "commit for revoked partitions failed; their new owner consumes from the last commit");
            }
        }
        self.slots
            .revoke(revoked.iter().map(|(t, p)| (t.as_str(), *p)));
        match self.failed.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Waits for in-flight records until `deadline`; returns the offsets to commit last (the
    /// caller commits them where a broker outage cannot hold shutdown past its deadline).
    pub fn finish<C: ConsumerContext>(
        &mut self,
        _consumer: &BaseConsumer<C>,
        deadline: Instant,
    ) -> Result<Vec<(String, i32, i64)>, DeliveryError> {
        while self.in_flight > 0 && Instant::now() < deadline {
            self.producer.poll(Duration::from_millis(10));
            self.apply_acks();
        }
        if self.in_flight > 0 {
            tracing::warn!(
                in_flight = self.in_flight,
                "shutdown timeout: records still unacknowledged; they will be consumed again"
            );
        }
        let offsets = self.slots.all_committable();
        match self.failed.take() {
            Some(e) => Err(e),
            None => Ok(offsets),
        }
    }
}
