//! A registry outage seen from a consumer's thread (the gateway's and the archive's): while a
//! lookup waits for the registry, the assigned partitions are paused and the consumer is still
//! polled, so the member stays in its group and serves rebalances; afterwards, partitions whose
//! prefetched messages arrived meanwhile are rewound to them, and fetching resumes.
//!
//! Owns: pausing, polling, rewinding and resuming for an outage, and reporting it (registry
//! metrics, readiness). Must not: process a message, or decide what an outage is (the caller
//! calls `keepalive` while its lookup blocks: `block_on`'s `idle`).

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{Message, TopicPartitionList};

use crate::telemetry::events::RegistryEvents;
use crate::telemetry::health::Health;

/// A registry outage in progress: the assigned partitions are paused and the consumer keeps
/// being polled, so the member stays in its group (`max.poll.interval.ms`) and serves
/// rebalances. A message that was already fetched and arrives anyway is not processed: its
/// partition is rewound to it when the outage ends.
#[derive(Default)]
pub struct Outage {
    paused: Option<TopicPartitionList>,
    since: Option<Instant>,
    /// Per partition, the first offset polled and not processed during the outage.
    rewind: Vec<(String, i32, i64)>,
}

impl Outage {
    /// Called while a registry lookup blocks (every second): pauses the assignment the first
    /// time, reports the outage, and polls the consumer (serving rebalances and the group's
    /// heartbeats), noting where to rewind each partition that delivered a message anyway.
    pub fn keepalive<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        registry: &RegistryEvents,
        health: &Health,
    ) {
        if self.paused.is_none() {
            match consumer.assignment() {
                Ok(a) => {
                    if let Err(e) = consumer.pause(&a) {
                        tracing::warn!(error = %e, "cannot pause partitions during the registry outage");
                    }
                    tracing::warn!(
                        "schema registry unavailable: partitions paused until it answers"
                    );
                    self.paused = Some(a);
                    self.since = Some(Instant::now());
                    registry.outages.increment(1);
                    registry.available.set(0.0);
                    health.registry_outage(true);
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the assignment"),
            }
        }
        health.heartbeat();
        while let Some(polled) = consumer.poll(Duration::ZERO) {
            if let Ok(m) = polled {
                let (t, p) = (m.topic(), m.partition());
                if !self.rewind.iter().any(|(rt, rp, _)| rt == t && *rp == p) {
                    self.rewind.push((t.to_string(), p, m.offset()));
                }
            }
        }
    }

    /// Resumes after an outage: rewinds partitions whose messages were polled and not
    /// processed, then resumes fetching.
    pub fn end<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        registry: &RegistryEvents,
        health: &Health,
    ) {
        let Some(paused) = self.paused.take() else {
            return;
        };
        for (topic, partition, offset) in self.rewind.drain(..) {
            if let Err(e) = consumer.seek(
                &topic,
                partition,
                rdkafka::Offset::Offset(offset),
                Duration::from_secs(10),
            ) {
                tracing::warn!(topic = %topic, partition, offset, error = %e, "cannot rewind after the registry outage");
            }
        }
        if let Err(e) = consumer.resume(&paused) {
            tracing::warn!(error = %e, "cannot resume partitions after the registry outage");
        }
        if let Some(since) = self.since.take() {
            let paused_for = since.elapsed();
            registry.paused_seconds.increment(paused_for.as_secs());
            registry.available.set(1.0);
            health.registry_outage(false);
            tracing::info!(paused_for = ?paused_for, "schema registry answered again: partitions resumed");
        }
    }
}
