//! A registry outage seen from a consumer's thread (the gateway's and the archive's): while a
//! lookup waits for the registry, the assigned partitions are paused and the consumer is still
//! polled, so the member stays in its group and serves rebalances; afterwards, partitions whose
//! prefetched messages arrived meanwhile are rewound to them, and fetching resumes.
//!
//! Owns: pausing, polling, rewinding and resuming for an outage, and reporting it (registry
//! metrics, readiness). Must not: process a message, or decide what an outage is (the caller
//! calls `keepalive` while its lookup blocks: `block_on`'s `idle`).

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::{Message, TopicPartitionList};

use crate::telemetry::events::RegistryEvents;
use crate::telemetry::health::Health;

/// How long each keepalive poll may wait for an event. Not zero: with a zero timeout the
/// archive's waiting consumer was never handed the group's rebalance events (a member joining
/// meanwhile got every partition: `tests/archive_topic.rs` (d) fails so).
const KEEPALIVE_POLL: Duration = Duration::from_millis(100);

/// A registry outage in progress: the assigned partitions are paused and the consumer keeps
/// being polled, so the member stays in its group (`max.poll.interval.ms`) and serves
/// rebalances. A message that was already fetched and arrives anyway is not processed: its
/// partition is rewound to it when the outage ends. librdkafka purges a partition's prefetched
/// messages when it is paused and resumes it from the application's position (its maintainers
/// in confluentinc/librdkafka#2052 and confluent-kafka-go#260), so with librdkafka the rewind
/// list stays empty and is a defence; no test makes a message arrive while paused.
///
/// A rebalance during the outage (the caller's `generation`, its count of revocations, moves):
/// a revoked partition's position is set anew by its next assignment (its committed offset), so
/// the rewinds noted for it are forgotten (all of them under the eager protocol, where every
/// partition is revoked; under the cooperative one, those of partitions no longer assigned), and
/// what is assigned now is paused in turn.
#[derive(Default)]
pub struct Outage {
    paused: Option<TopicPartitionList>,
    since: Option<Instant>,
    /// The caller's generation when the rewinds were last checked.
    generation: u64,
    /// Per partition, the first offset polled and not processed during the outage.
    rewind: Vec<(String, i32, i64)>,
}

impl Outage {
    /// Called while a registry lookup blocks (every second): reports the outage the first
    /// time, pauses the assignment, and polls the consumer (serving rebalances and the group's
    /// heartbeats), noting where to rewind each partition that delivered a message anyway.
    /// `generation`: the caller's count of revocations.
    pub fn keepalive<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        registry: &RegistryEvents,
        health: &Health,
        generation: &dyn Fn() -> u64,
    ) {
        if self.since.is_none() {
            tracing::warn!("schema registry unavailable: partitions paused until it answers");
            self.since = Some(Instant::now());
            self.generation = generation();
            registry.outages.increment(1);
            registry.available.set(0.0);
            health.registry_outage(true);
        }
        self.after_revocations(consumer, generation());
        self.pause(consumer);
        health.heartbeat();
        // Until nothing arrives, or a second at most (a partition that would not pause must not
        // keep the caller from its lookup).
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until {
            let polled = consumer.poll(KEEPALIVE_POLL);
            // A rebalance runs inside `poll` (which then returns nothing): what it revoked is
            // forgotten, and what it assigned paused, before noting more.
            if self.after_revocations(consumer, generation()) {
                self.pause(consumer);
            }
            let Some(polled) = polled else {
                break;
            };
            if let Ok(m) = polled {
                let (t, p) = (m.topic(), m.partition());
                if !self.rewind.iter().any(|(rt, rp, _)| rt == t && *rp == p) {
                    self.rewind.push((t.to_string(), p, m.offset()));
                }
            }
        }
    }

    /// Pauses the current assignment unless it is paused already.
    fn pause<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) {
        if self.paused.is_some() {
            return;
        }
        match consumer.assignment() {
            Ok(a) => {
                if let Err(e) = consumer.pause(&a) {
                    tracing::warn!(error = %e, "cannot pause partitions during the registry outage");
                }
                self.paused = Some(a);
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the assignment"),
        }
    }

    /// Forgets the rewinds of partitions revoked since the last check (see [`Outage`]) and
    /// resumes what was paused: the caller pauses the assignment as it is now. `true` when
    /// there were revocations.
    fn after_revocations<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        now: u64,
    ) -> bool {
        if now == self.generation {
            return false;
        }
        self.generation = now;
        match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => {
                let assigned = consumer.assignment().ok();
                self.rewind.retain(|(t, p, _)| {
                    assigned
                        .as_ref()
                        .is_some_and(|a| a.find_partition(t, *p).is_some())
                });
            }
            _ => self.rewind.clear(),
        }
        // Resume what was paused and is still assigned; the caller pauses what is now.
        if let Some(paused) = self.paused.take() {
            let _ = consumer.resume(&paused);
        }
        true
    }

    /// Resumes after an outage: rewinds partitions whose messages were polled and not
    /// processed, then resumes fetching. `generation`: the caller's count of revocations.
    pub fn end<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        registry: &RegistryEvents,
        health: &Health,
        generation: u64,
    ) {
        let Some(since) = self.since.take() else {
            return;
        };
        self.after_revocations(consumer, generation);
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
        if let Some(paused) = self.paused.take()
            && let Err(e) = consumer.resume(&paused)
        {
            tracing::warn!(error = %e, "cannot resume partitions after the registry outage");
        }
        let paused_for = since.elapsed();
        registry.paused_seconds.increment(paused_for.as_secs());
        registry.available.set(1.0);
        health.registry_outage(false);
        tracing::info!(paused_for = ?paused_for, "schema registry answered again: partitions resumed");
    }
}
