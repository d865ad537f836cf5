//! At-least-once delivery: produce, wait for the broker's ack, then store the source offset.
//!
//! Owns: the producer, the in-flight queue and the only code that stores consumer offsets. Every
//! consumed message ends here exactly once, as a forwarded record, a dead letter or a skip, in
//! consumption order; offsets are stored in that same order, each only after its own ack (and,
//! because the queue is FIFO, after the acks of everything consumed before it). So a committed
//! offset never passes a message that was not delivered. Must not: decide what to send (the
//! pipeline does) or parse bytes.
//!
//! An exactly-once variant belongs beside this one: same `submit` calls, with the producer in a
//! transaction and `send_offsets_to_transaction` in place of `store_offset`.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Where a consumed message came from: the offset to store once it is dealt with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePosition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// One record to produce. Borrowed: librdkafka copies the bytes when it enqueues.
pub struct OutRecord<'a> {
    pub topic: &'a str,
    pub partition: Option<i32>,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Option<OwnedHeaders>,
    pub timestamp: Option<i64>,
}

#[derive(Debug, Error)]
pub enum DeliveryError {
    #[error("cannot enqueue a record for topic {topic}: {source}")]
    Enqueue { topic: String, source: KafkaError },
    #[error(
        "delivery to {topic} failed for source {}[{}]@{}: {source}",
        from.topic, from.partition, from.offset
    )]
    Failed {
        topic: String,
        from: SourcePosition,
        source: KafkaError,
    },
    #[error("the delivery task stopped")]
    Stopped,
}

struct Pending {
    from: SourcePosition,
    /// `None` for a skipped message: nothing to wait for.
    ack: Option<(String, DeliveryFuture)>,
}

pub struct AtLeastOnce {
    producer: FutureProducer,
    consumer: Arc<StreamConsumer>,
    queue: mpsc::Sender<Pending>,
    acker: JoinHandle<Result<(), DeliveryError>>,
}

impl AtLeastOnce {
    /// `fatal` is cancelled when a delivery fails, so the pipeline stops consuming.
    pub fn new(
        producer: FutureProducer,
        consumer: Arc<StreamConsumer>,
        max_in_flight: usize,
        fatal: CancellationToken,
    ) -> Self {
        let (queue, rx) = mpsc::channel(max_in_flight);
        let acker = tokio::spawn(ack_in_order(rx, consumer.clone(), fatal));
        AtLeastOnce {
            producer,
            consumer,
            queue,
            acker,
        }
    }

    /// Produces `record` for the message at `from`; its offset is stored after the ack.
    pub async fn send(
        &self,
        from: SourcePosition,
        record: OutRecord<'_>,
    ) -> Result<(), DeliveryError> {
        let topic = record.topic.to_string();
        let mut fr: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(record.topic);
        if let Some(p) = record.partition {
            fr = fr.partition(p);
        }
        if let Some(k) = record.key {
            fr = fr.key(k);
        }
        if let Some(v) = record.value {
            fr = fr.payload(v);
        }
        if let Some(h) = record.headers {
            fr = fr.headers(h);
        }
        if let Some(ts) = record.timestamp {
            fr = fr.timestamp(ts);
        }
        let future = loop {
            match self.producer.send_result(fr) {
                Ok(f) => break f,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    fr = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((source, _)) => return Err(DeliveryError::Enqueue { topic, source }),
            }
        };
        self.enqueue(Pending {
            from,
            ack: Some((topic, future)),
        })
        .await
    }

    /// Marks the message at `from` as dealt with without producing anything.
    pub async fn skip(&self, from: SourcePosition) -> Result<(), DeliveryError> {
        self.enqueue(Pending { from, ack: None }).await
    }

    async fn enqueue(&self, p: Pending) -> Result<(), DeliveryError> {
        self.queue.send(p).await.map_err(|_| DeliveryError::Stopped)
    }

    /// Waits for every in-flight record, stores their offsets and commits synchronously.
    /// Returns the first delivery failure, if any (offsets stop before it).
    pub async fn finish(self, timeout: Duration) -> Result<(), DeliveryError> {
        let AtLeastOnce {
            producer,
            consumer,
            queue,
            acker,
        } = self;
        drop(queue);
        let flushed = tokio::task::spawn_blocking(move || {
            use rdkafka::producer::Producer;
            producer.flush(timeout)
        })
        .await;
        if let Ok(Err(e)) = flushed {
            tracing::warn!(error = %e, "producer flush did not complete; unacknowledged messages will be consumed again");
        }
        let acked = acker.await.unwrap_or(Err(DeliveryError::Stopped));
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => tracing::info!("offsets committed"),
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                tracing::warn!(error = %e, "final offset commit failed; the last messages will be consumed again")
            }
        }
        acked
    }
}

/// Awaits acks in consumption order and stores each offset after its ack. Stops storing at the
/// first failed delivery: everything after it will be consumed again (at-least-once).
async fn ack_in_order(
    mut rx: mpsc::Receiver<Pending>,
    consumer: Arc<StreamConsumer>,
    fatal: CancellationToken,
) -> Result<(), DeliveryError> {
    while let Some(p) = rx.recv().await {
        if let Some((topic, ack)) = p.ack {
            let result = match ack.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((source, _))) => Err(source),
                Err(_) => Err(KafkaError::Canceled),
            };
            if let Err(source) = result {
                metrics::counter!("schemabridge_delivery_failures_total").increment(1);
                fatal.cancel();
                return Err(DeliveryError::Failed {
                    topic,
                    from: p.from,
                    source,
                });
            }
        }
        // store_offset stores `offset + 1`, the next message to consume.
        if let Err(e) = consumer.store_offset(&p.from.topic, p.from.partition, p.from.offset) {
            // The partition was revoked while the record was in flight; its new owner
            // consumes it again from the last commit.
            tracing::debug!(topic = %p.from.topic, partition = p.from.partition, offset = p.from.offset, error = %e, "offset not stored");
        }
    }
    Ok(())
}
