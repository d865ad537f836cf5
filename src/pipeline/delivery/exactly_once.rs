//! Exactly-once delivery: records, dead letters and the consumed offsets committed in one Kafka
//! transaction per batch (KIP-447: offsets sent with the consumer's group metadata).
//!
//! Owns: the transactional producer, the open transaction (begun on the first record or skip of
//! a batch, committed after `transaction_ms` or `transaction_max_records` or
//! `max_in_flight_bytes`, and before partitions are revoked or the gateway stops), the plain
//! group copy of the committed offsets (see `commit`: the only copy on brokers whose
//! TxnOffsetCommit stores nothing, such as librdkafka's mock cluster), and recovery:
//! on an abortable error the transaction is aborted and the consumer rewound to the first offset
//! of the batch on each partition, so the batch is consumed and produced again; on fencing the
//! gateway stops with an error that says so. A read_committed consumer of the targets sees every
//! source record once. Must not: decide what to send, or block the async runtime.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};

use super::offsets::{Position, Slots};
use super::{
    Ack, DeliveryError, OutRecord, Revocation, SendError, SinkProducer, partitions, produce, tpl,
};
use crate::telemetry::events::DeliveryEvents;

pub struct ExactlyOnce {
    producer: SinkProducer,
    transactional_id: String,
    pub(super) slots: Slots,
    open: Option<Instant>,
    records: usize,
    bytes: usize,
    every: Duration,
    max_records: usize,
    max_bytes: usize,
    max_message_bytes: usize,
    /// How long one transaction operation may block.
    op_timeout: Duration,
    acks: Vec<Ack>,
    /// A record of the open transaction was not delivered: it must abort.
    abortable: Option<KafkaError>,
    events: DeliveryEvents,
}

pub struct Limits {
    pub transaction_every: Duration,
    pub transaction_max_records: usize,
    pub max_in_flight_bytes: usize,
    pub max_message_bytes: usize,
    pub op_timeout: Duration,
}

/// Transaction errors after which this producer can do nothing more.
fn is_fenced(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::Fenced
                | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
        )
    )
}

fn requires_abort(e: &KafkaError) -> bool {
    match e {
        KafkaError::Transaction(t) => t.txn_requires_abort(),
        _ => false,
    }
}

fn retriable(e: &KafkaError) -> bool {
    match e {
        KafkaError::Transaction(t) => t.is_retriable(),
        _ => false,
    }
}

fn fatal(e: &KafkaError) -> bool {
    match e {
        KafkaError::Transaction(t) => t.is_fatal(),
        _ => false,
    }
}

impl ExactlyOnce {
    /// Initialises transactions for `transactional_id`: fences any older instance with the same
    /// id and aborts the transaction it left open.
    pub fn new(
        producer: SinkProducer,
        transactional_id: String,
        limits: Limits,
    ) -> Result<Self, DeliveryError> {
        if let Err(source) = producer.init_transactions(limits.op_timeout) {
            return Err(if is_fenced(&source) {
                DeliveryError::Fenced {
                    transactional_id,
                    source: Box::new(source),
                }
            } else {
                DeliveryError::Transaction {
                    what: "initialisation",
                    source: Box::new(source),
                }
            });
        }
        tracing::info!(transactional_id = %transactional_id, "transactions initialised");
        Ok(ExactlyOnce {
            producer,
            transactional_id,
            slots: Slots::default(),
            open: None,
            records: 0,
            bytes: 0,
            every: limits.transaction_every,
            max_records: limits.transaction_max_records,
            max_bytes: limits.max_in_flight_bytes,
            max_message_bytes: limits.max_message_bytes,
            op_timeout: limits.op_timeout,
            acks: Vec::with_capacity(1024),
            abortable: None,
            events: DeliveryEvents::new(),
        })
    }

    fn ensure_open(&mut self) -> Result<(), DeliveryError> {
        if self.open.is_none() {
            self.producer
                .begin_transaction()
                .map_err(|source| self.classify("begin", source))?;
            self.open = Some(Instant::now());
        }
        Ok(())
    }

    fn classify(&self, what: &'static str, source: KafkaError) -> DeliveryError {
        if is_fenced(&source) || fatal(&source) {
            DeliveryError::Fenced {
                transactional_id: self.transactional_id.clone(),
                source: Box::new(source),
            }
        } else {
            DeliveryError::Transaction {
                what,
                source: Box::new(source),
            }
        }
    }

    pub fn send(&mut self, from: Position, record: OutRecord<'_>) -> Result<(), SendError> {
        self.ensure_open()?;
        let bytes = record.size();
        match produce(&self.producer, record, from.pack(), self.max_message_bytes) {
            Ok(()) => {}
            // The transaction is in an error state (a record of it failed): it can take no more
            // records. It is aborted at the next service (`has_capacity` says so at once) and
            // the batch, this message included, is consumed again; fencing shows up there.
            Err(SendError::Fatal(DeliveryError::Enqueue { source, .. }))
                if matches!(
                    source.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::State | RDKafkaErrorCode::Fenced)
                ) =>
            {
                if self.abortable.is_none() {
                    tracing::warn!(error = %source, "the open transaction can take no more records; aborting it");
                    self.abortable = Some(*source);
                }
            }
            Err(e) => return Err(e),
        }
        self.slots
            .consumed(from, 0, true)
            .map_err(DeliveryError::from)?;
        self.records += 1;
        self.bytes += bytes;
        Ok(())
    }

    pub fn skip(&mut self, from: Position) -> Result<(), DeliveryError> {
        self.ensure_open()?;
        self.slots.consumed(from, 0, true)?;
        self.records += 1;
        Ok(())
    }

    /// Room for another record in the open transaction; when there is none, `service` commits.
    pub fn has_capacity(&self) -> bool {
        self.records < self.max_records && self.bytes < self.max_bytes && self.abortable.is_none()
    }

    pub fn wait(&mut self, timeout: Duration) -> Result<(), DeliveryError> {
        self.producer.poll(timeout);
        self.apply_acks();
        Ok(())
    }

    fn apply_acks(&mut self) {
        self.producer.context().drain(&mut self.acks);
        for ack in self.acks.drain(..) {
            if let Some((topic, e)) = ack.error
                && self.abortable.is_none()
            {
                self.events.produce_errors.increment(1);
                tracing::warn!(topic = %topic, error = %e, "a record of the open transaction was not delivered; aborting it");
                self.abortable = Some(e);
            }
        }
    }

    pub fn service<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), DeliveryError> {
        self.wait(Duration::ZERO)?;
        self.events.in_flight(self.records, self.bytes);
        if let Some(opened) = self.open
            && (opened.elapsed() >= self.every || !self.has_capacity() || self.abortable.is_some())
        {
            self.commit(consumer, Instant::now() + self.op_timeout, false)?;
        }
        Ok(())
    }

    /// Commits the open transaction now, if there is one.
    pub fn commit_now<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), DeliveryError> {
        self.wait(Duration::ZERO)?;
        self.commit(consumer, Instant::now() + self.op_timeout, false)
    }

    /// Commits the open transaction with the consumed offsets; on an abortable failure aborts it
    /// and rewinds the consumer to the start of the batch. `handover`: the partitions are about
    /// to go to another member (revoke, shutdown): the group copy is left to the handover (see
    /// [`ExactlyOnce::commit_group_copy`]).
    ///
    /// The group copy: a committed transaction holds its offsets already (KIP-447), and
    /// committing the same offsets through the group as well changes nothing on Kafka; it keeps
    /// progress on brokers whose TxnOffsetCommit does not store offsets (librdkafka's mock
    /// cluster, where it is the only copy). After each transaction it is asynchronous (a failure
    /// is logged and counted by the source's commit callback).
    fn commit<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        deadline: Instant,
        handover: bool,
    ) -> Result<(), DeliveryError> {
        if self.open.is_none() {
            return Ok(());
        }
        let started = Instant::now();
        let offsets = self.slots.in_transaction();
        let result = self.try_commit(consumer, &offsets, deadline);
        match result {
            Ok(()) => {
                self.events
                    .transaction_seconds
                    .record(started.elapsed().as_secs_f64());
                if !offsets.is_empty() && !handover {
                    let _ = consumer.commit(&tpl(&offsets), rdkafka::consumer::CommitMode::Async);
                }
                self.slots.mark_all_done();
                self.reset();
                Ok(())
            }
            Err(e) if is_fenced(&e) || fatal(&e) => {
                self.events.transaction_failures.increment(1);
                Err(self.classify("commit", e))
            }
            Err(e) => {
                self.events.transaction_failures.increment(1);
                tracing::warn!(error = %e, "transaction failed; aborting it and consuming the batch again");
                self.abort(consumer)
            }
        }
    }

    /// The group copy at a revoke, committed synchronously so the next owner does not fetch the
    /// offsets before it lands: every partition this member owns, open transaction or not, so it
    /// also repairs an asynchronous copy that failed (a group that is rebalancing refuses plain
    /// offset commits on some brokers). At shutdown `finish` hands the same copy to the final
    /// commit.
    fn commit_group_copy<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) {
        let owned = self.slots.all_committable();
        if owned.is_empty() {
            return;
        }
        if let Err(e) = consumer.commit(&tpl(&owned), rdkafka::consumer::CommitMode::Sync) {
            self.events.commit_failures.increment(1);
            tracing::warn!(error = %e, "the group copy of the committed offsets failed at a revoke (the transactions hold them on Kafka)");
        }
    }

    fn try_commit<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        offsets: &[(String, i32, i64)],
        deadline: Instant,
    ) -> Result<(), KafkaError> {
        if let Some(e) = self.abortable.take() {
            return Err(e);
        }
        let left = || {
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1))
        };
        if !offsets.is_empty() {
            let Some(cgm) = consumer.group_metadata() else {
                return Err(KafkaError::MetadataFetch(RDKafkaErrorCode::InvalidGroupId));
            };
            loop {
                match self
                    .producer
                    .send_offsets_to_transaction(&tpl(offsets), &cgm, left())
                {
                    Ok(()) => break,
                    Err(e) if retriable(&e) && Instant::now() < deadline => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        loop {
            match self.producer.commit_transaction(left()) {
                Ok(()) => return Ok(()),
                Err(e) if retriable(&e) && Instant::now() < deadline => continue,
                Err(e) => {
                    self.apply_acks();
                    return Err(e);
                }
            }
        }
    }

    fn reset(&mut self) {
        self.open = None;
        self.records = 0;
        self.bytes = 0;
    }

    /// Aborts the open transaction and rewinds every partition consumed in it.
    fn abort<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), DeliveryError> {
        // abort_transaction waits for every outstanding record's delivery report, and those
        // are served only by polling this producer: drop what is queued or in flight (they
        // belong to the transaction being aborted) and serve their reports first.
        self.producer
            .purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
        let drained_by = Instant::now() + self.op_timeout;
        while self.producer.in_flight_count() > 0 && Instant::now() < drained_by {
            self.producer.poll(Duration::from_millis(10));
        }
        if let Err(e) = self.producer.abort_transaction(self.op_timeout) {
            if is_fenced(&e) || fatal(&e) || !requires_abort(&e) && !retriable(&e) {
                return Err(self.classify("abort", e));
            }
            // Retriable: once more.
            self.producer
                .abort_transaction(self.op_timeout)
                .map_err(|e| self.classify("abort", e))?;
        }
        // Reports for the aborted records: purged, not to be held against the next transaction.
        self.producer.poll(Duration::ZERO);
        self.producer.context().drain(&mut self.acks);
        self.acks.clear();
        self.abortable = None;
        self.reset();
        for (topic, partition, offset) in self.slots.rewind() {
            if let Err(e) =
                consumer.seek(&topic, partition, Offset::Offset(offset), self.op_timeout)
            {
                tracing::warn!(topic = %topic, partition, offset, error = %e, "cannot rewind after an aborted transaction");
            }
        }
        Ok(())
    }

    /// Commits the open transaction before the partitions go (or aborts it if they were lost).
    pub fn revoking<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        revoked: &TopicPartitionList,
        how: Revocation,
        deadline: Instant,
    ) -> Result<(), DeliveryError> {
        let result = match how {
            Revocation::Orderly => self
                .commit(consumer, deadline, true)
                .map(|()| self.commit_group_copy(consumer)),
            Revocation::Lost if self.open.is_some() => self.abort(consumer),
            Revocation::Lost => Ok(()),
        };
        let revoked = partitions(revoked);
        self.slots
            .revoke(revoked.iter().map(|(t, p)| (t.as_str(), *p)));
        result
    }

    /// Shutdown: commits the open transaction (aborts it if that fails) and returns the group
    /// copy of every owned partition's offsets for the caller's final commit (which runs on a
    /// thread bounded by the shutdown timeout: with the brokers down a commit can block).
    pub fn finish<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        deadline: Instant,
    ) -> Result<Vec<(String, i32, i64)>, DeliveryError> {
        self.commit(consumer, deadline, true)?;
        Ok(self.slots.all_committable())
    }
}
