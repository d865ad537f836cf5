//! The pipeline thread: the consume loop and the consumer's rebalance callbacks.
//!
//! Owns: the consumer, the order of events on the pipeline thread (poll a message → worker →
//! delivery; service delivery reports and commits every few messages or when idle), pausing
//! the assigned partitions while the delivery mode has no capacity (target slow or down) and
//! resuming them after, settling routes for partitions as they are assigned, and shutdown within
//! `shutdown_timeout_ms`. Rebalance callbacks run inside `poll` on this same thread and hand
//! revoked partitions to the delivery mode before the revoke completes. Reports to telemetry
//! what only this thread knows: assignments, consumer lag (librdkafka statistics), and its
//! heartbeat (at service points, not per message); a registry outage is `outage`'s, called from
//! here. Must not: decide what happens to a message (worker) or how offsets are committed
//! (delivery).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::producer::Producer;
use rdkafka::{Message, TopicPartitionList};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use super::delivery::{
    AtLeastOnce, Delivery, DeliveryError, ExactlyOnce, Position, Revocation, SinkContext,
    SinkProducer, at_least_once, exactly_once,
};
use super::outage::Outage;
use super::resolve::Resolver;
use super::routes::RouteTable;
use super::worker::{Flow, Io, Worker};
use super::{GatewayError, RunSummary};
use crate::config::{Config, DeliveryMode};
use crate::telemetry::events::{RegistryEvents, SourceEvents};
use crate::telemetry::health::{self, Health};

/// Delivery reports and commits are serviced after this many messages (and whenever idle).
const SERVICE_EVERY: u32 = 256;
/// How long one poll waits when no message is ready.
const POLL: Duration = Duration::from_millis(50);
/// How long the delivery mode may stay without capacity before the partitions are paused.
const PAUSE_AFTER: Duration = Duration::from_millis(500);
/// How long a transaction operation may block.
const TXN_OP_TIMEOUT: Duration = Duration::from_secs(30);
/// librdkafka statistics (consumer lag per partition) unless `source.librdkafka` sets
/// `statistics.interval.ms`.
const STATISTICS_INTERVAL_MS: &str = "5000";

type Shared = Arc<Mutex<Delivery>>;

fn lock(d: &Shared) -> MutexGuard<'_, Delivery> {
    d.lock().unwrap_or_else(|p| p.into_inner())
}

/// Consumer context: rebalance and commit callbacks, run inside `poll` on the pipeline thread.
pub struct SourceContext {
    delivery: Shared,
    /// Partitions assigned since the loop last looked, for it to settle their routes.
    assigned: Mutex<Vec<(String, i32)>>,
    /// A delivery failure inside a callback; the loop stops on it.
    failure: Mutex<Option<DeliveryError>>,
    /// Revocations seen (a registry outage forgets the rewinds of partitions revoked meanwhile).
    /// Whether a message in hand may still be sent is its own partition's business
    /// (`Slots::current`), not this count's: under the cooperative protocol a revocation leaves
    /// most partitions where they are.
    generation: AtomicU64,
    /// How long a revoke may wait for in-flight records.
    revoke_timeout: Duration,
    /// Metric handles: commits, pauses, assignment, consumer lag.
    events: SourceEvents,
    /// Registry outage handles.
    registry: RegistryEvents,
    /// Liveness and readiness (telemetry).
    health: Arc<Health>,
}

impl SourceContext {
    fn fail(&self, e: DeliveryError) {
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        f.get_or_insert(e);
    }

    fn take_failure(&self) -> Option<DeliveryError> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    fn take_assigned(&self) -> Vec<(String, i32)> {
        std::mem::take(&mut *self.assigned.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// (topic, partition, consumer lag) of every partition whose lag librdkafka knows.
pub fn consumer_lags(statistics: &rdkafka::Statistics) -> Vec<(&str, i32, i64)> {
    let mut lags = Vec::new();
    for (topic, t) in &statistics.topics {
        for p in t.partitions.values() {
            // Partition -1 is librdkafka's internal one; a lag of -1 is unknown (not consumed
            // here, or nothing committed yet).
            if p.partition >= 0 && p.consumer_lag >= 0 {
                lags.push((topic.as_str(), p.partition, p.consumer_lag));
            }
        }
    }
    lags
}

/// Statistics (for the consumer lag) every `STATISTICS_INTERVAL_MS`, unless `source.librdkafka`
/// sets `statistics.interval.ms`.
pub fn with_statistics(cfg: &Config, consumer_config: &mut rdkafka::ClientConfig) {
    if !cfg.source.librdkafka.contains_key("statistics.interval.ms") {
        consumer_config.set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
    }
}

impl ClientContext for SourceContext {
    /// librdkafka statistics (every `statistics.interval.ms`, served inside `poll` on the
    /// pipeline thread): consumer lag per assigned partition.
    fn stats(&self, statistics: rdkafka::Statistics) {
        self.events.consumer_lag(&consumer_lags(&statistics));
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let how = if consumer.assignment_lost() {
                Revocation::Lost
            } else {
                Revocation::Orderly
            };
            tracing::info!(
                partitions = tpl.count(),
                ?how,
                "partitions revoked: finishing their in-flight work"
            );
            self.generation.fetch_add(1, Ordering::AcqRel);
            let deadline = Instant::now() + self.revoke_timeout;
            if let Err(e) = lock(&self.delivery).revoking(consumer, tpl, how, deadline) {
                self.fail(e);
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions assigned");
                let now = consumer.assignment().map_or(tpl.count(), |a| a.count());
                self.events.assigned_partitions.set(now as f64);
                self.health.assigned(now);
                if let Err(e) = lock(&self.delivery).assigned(tpl) {
                    self.fail(e);
                }
                let mut a = self.assigned.lock().unwrap_or_else(|p| p.into_inner());
                a.extend(
                    tpl.elements()
                        .iter()
                        .map(|e| (e.topic().to_string(), e.partition())),
                );
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
            Rebalance::Revoke(_) => {
                let now = consumer.assignment().map_or(0, |a| a.count());
                self.events.assigned_partitions.set(now as f64);
                self.health.revoked(now);
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            self.events.commit_failures.increment(1);
            tracing::warn!(error = %e, "offset commit failed; the next one covers it");
        }
    }
}

type Source = BaseConsumer<SourceContext>;

fn client_error(
    cfg: &Config,
    what: &'static str,
) -> impl FnOnce(rdkafka::error::KafkaError) -> GatewayError {
    move |e| GatewayError::Client {
        what,
        message: crate::config::kafka_error_text(&e, cfg),
    }
}

/// A failed call on a running client (its errors carry no configuration values).
fn call_error(what: &'static str) -> impl FnOnce(rdkafka::error::KafkaError) -> GatewayError {
    move |e| GatewayError::Client {
        what,
        message: e.to_string(),
    }
}

/// Runs the pipeline on the calling (dedicated) thread until shutdown, a halt or a fatal error.
pub fn run(
    cfg: Config,
    mut routes: RouteTable,
    resolver: Resolver,
    runtime: Handle,
    stop: CancellationToken,
) -> Result<RunSummary, GatewayError> {
    let _runtime = runtime.enter();
    let producer: SinkProducer = cfg
        .producer_config()
        .create_with_context(SinkContext::default())
        .map_err(client_error(&cfg, "producer"))?;
    let probe: BaseConsumer = cfg
        .consumer_config()
        .create()
        .map_err(client_error(&cfg, "consumer"))?;
    routes.check_targets(producer.client(), probe.client())?;
    drop(probe);
    super::routes::warn_size_limits(
        cfg.consumer_config(),
        cfg.producer_config(),
        &routes,
        cfg.max_message_bytes(),
    );

    let p = &cfg.pipeline;
    let delivery = match p.delivery {
        DeliveryMode::AtLeastOnce => Delivery::AtLeastOnce(AtLeastOnce::new(
            producer,
            at_least_once::Limits {
                max_in_flight: p.max_in_flight,
                max_in_flight_bytes: p.max_in_flight_bytes,
                max_message_bytes: cfg.max_message_bytes(),
                commit_every: Duration::from_millis(p.commit_interval_ms),
            },
        )),
        DeliveryMode::ExactlyOnce => Delivery::ExactlyOnce(ExactlyOnce::new(
            producer,
            cfg.transactional_id(),
            exactly_once::Limits {
                transaction_every: Duration::from_millis(p.transaction_ms),
                transaction_max_records: p.transaction_max_records,
                max_in_flight_bytes: p.max_in_flight_bytes,
                max_message_bytes: cfg.max_message_bytes(),
                op_timeout: TXN_OP_TIMEOUT,
            },
        )?),
    };
    let delivery: Shared = Arc::new(Mutex::new(delivery));
    let shutdown_timeout = Duration::from_millis(p.shutdown_timeout_ms);
    let context = SourceContext {
        delivery: delivery.clone(),
        assigned: Mutex::new(Vec::new()),
        failure: Mutex::new(None),
        generation: AtomicU64::new(0),
        revoke_timeout: shutdown_timeout,
        events: SourceEvents::new(),
        registry: RegistryEvents::new(),
        health: health::shared(),
    };
    let mut consumer_config = cfg.consumer_config();
    with_statistics(&cfg, &mut consumer_config);
    let consumer: Source = consumer_config
        .create_with_context(context)
        .map_err(client_error(&cfg, "consumer"))?;
    let subscription = routes.subscription();
    let topics: Vec<&str> = subscription.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(client_error(&cfg, "subscription"))?;
    tracing::info!(topics = ?subscription, group = %cfg.group_id, delivery = ?p.delivery, "consuming");
    let health = consumer.context().health.clone();
    health.pipeline_started(shutdown_timeout);

    let mut worker = Worker::new(resolver, runtime.clone());
    let ended = consume(&consumer, &delivery, &mut routes, &mut worker, &stop);
    match &ended {
        Ok(()) => health.stopping(),
        Err(e) => health.fatal(e.to_string()),
    }

    let mut summary = std::mem::take(&mut worker.summary);
    summary.lossy_fields = routes.lossy_summary();
    tracing::info!(
        ?summary,
        "stopping: draining in-flight messages and committing"
    );
    let deadline = Instant::now() + shutdown_timeout;
    let finished = lock(&delivery).finish(&consumer, deadline);
    let last = finished.as_ref().map(Vec::clone).unwrap_or_default();
    close(consumer, delivery, last, deadline);
    ended?;
    finished.inspect_err(|e| health.fatal(e.to_string()))?;
    Ok(summary)
}

/// The consume loop. Returns when `stop` is cancelled, or with the error that ended it.
fn consume(
    consumer: &Source,
    delivery: &Shared,
    routes: &mut RouteTable,
    worker: &mut Worker,
    stop: &CancellationToken,
) -> Result<(), GatewayError> {
    // Per slot (see delivery::offsets): route index and whether partition numbers carry over.
    let mut slot_routes: Vec<Option<(usize, bool)>> = Vec::new();
    let mut since_service = 0u32;
    let mut paused: Option<TopicPartitionList> = None;
    let mut full_since: Option<Instant> = None;
    let mut errors = ErrorLog::default();
    let mut outage = Outage::default();
    while !stop.is_cancelled() {
        if let Some(e) = consumer.context().take_failure() {
            return Err(e.into());
        }
        let assigned = consumer.context().take_assigned();
        if !assigned.is_empty() {
            let d = lock(delivery);
            for (topic, partition) in assigned {
                let Some(slot) = d.slots().lookup(&topic, partition) else {
                    continue;
                };
                let settled = routes.settle(&topic, consumer.client())?;
                let i = slot as usize;
                if slot_routes.len() <= i {
                    slot_routes.resize(i + 1, None);
                }
                slot_routes[i] = settled;
            }
        }
        {
            let mut d = lock(delivery);
            if since_service >= SERVICE_EVERY || !d.has_capacity() {
                d.service(consumer)?;
                since_service = 0;
                consumer.context().health.heartbeat();
            }
            if !d.has_capacity() {
                // Wait for acks without consuming; pause the partitions only if the target stays
                // full (pausing drops librdkafka's prefetched messages, so it is not done for a
                // short wait), and keep polling while paused so the member stays in its group.
                let full_since = *full_since.get_or_insert_with(Instant::now);
                if paused.is_none() && full_since.elapsed() >= PAUSE_AFTER {
                    let assignment = consumer.assignment().map_err(call_error("assignment"))?;
                    consumer.pause(&assignment).map_err(call_error("pause"))?;
                    tracing::info!("target has no capacity: partitions paused");
                    consumer.context().events.backpressure_pauses.increment(1);
                    paused = Some(assignment);
                }
                d.wait(Duration::from_millis(1))?;
                if paused.is_none() {
                    continue;
                }
            } else {
                full_since = None;
                if let Some(assignment) = paused.take() {
                    consumer.resume(&assignment).map_err(call_error("resume"))?;
                    tracing::info!("target has capacity again: partitions resumed");
                }
            }
        }
        let timeout = if paused.is_some() {
            Duration::ZERO
        } else {
            POLL
        };
        match consumer.poll(timeout) {
            None => since_service = SERVICE_EVERY,
            Some(Err(e)) => errors.log(&e),
            Some(Ok(msg)) => {
                since_service += 1;
                let (pos, settled, epoch) = {
                    let d = lock(delivery);
                    // Not assigned (revoked since it was fetched): its new owner consumes it.
                    let Some(slot) = d.slots().lookup(msg.topic(), msg.partition()) else {
                        continue;
                    };
                    let pos = Position {
                        slot,
                        offset: msg.offset(),
                    };
                    (
                        pos,
                        slot_routes.get(slot as usize).copied().flatten(),
                        d.slots().epoch(slot),
                    )
                };
                let Some((route, same)) = settled else {
                    tracing::warn!(topic = msg.topic(), "no route for topic; message skipped");
                    worker.summary.skipped += 1;
                    lock(delivery).skip(pos)?;
                    continue;
                };
                let mut io = MessageIo {
                    consumer,
                    delivery,
                    slot: pos.slot,
                    epoch,
                    outage: &mut outage,
                };
                let flow = worker.handle(routes.get(route), same, pos, &msg, &mut io)?;
                drop(msg);
                let cx = consumer.context();
                outage.end(
                    consumer,
                    &cx.registry,
                    &cx.health,
                    cx.generation.load(Ordering::Acquire),
                );
                if let Flow::Stop = flow {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// The pipeline thread's side of one message (see `worker::Io`).
struct MessageIo<'a> {
    consumer: &'a Source,
    delivery: &'a Shared,
    /// The message's partition's slot and its epoch when the message was polled.
    slot: u16,
    epoch: u64,
    outage: &'a mut Outage,
}

impl Io for MessageIo<'_> {
    fn delivery(&mut self) -> Option<MutexGuard<'_, Delivery>> {
        let d = lock(self.delivery);
        d.slots().current(self.slot, self.epoch).then_some(d)
    }

    fn idle(&mut self) {
        let cx = self.consumer.context();
        self.outage
            .keepalive(self.consumer, &cx.registry, &cx.health, &|| {
                cx.generation.load(Ordering::Acquire)
            });
        // What was done before the outage is committed (an open transaction would otherwise
        // stay open, holding back read_committed readers, until the registry answers).
        if let Err(e) = lock(self.delivery).flush_during_pause(self.consumer) {
            self.consumer.context().fail(e);
        }
    }
}

/// Consumer errors are logged at most once a second, with how many were suppressed.
#[derive(Default)]
struct ErrorLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl ErrorLog {
    fn log(&mut self, e: &rdkafka::error::KafkaError) {
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(error = %e, suppressed = self.suppressed, "consumer error");
        self.last = Some(Instant::now());
        self.suppressed = 0;
    }
}

/// Commits `offsets` synchronously, then closes the consumer (leaving the group) and the
/// producer, on a helper thread, waiting for it until `deadline` (plus a little): with the brokers
/// down, a commit or a close can block far longer than the shutdown timeout allows. What was not
/// committed is consumed again (at-least-once holds); under exactly-once these are the group copy
/// of offsets the transactions hold on Kafka.
fn close(consumer: Source, delivery: Shared, offsets: Vec<(String, i32, i64)>, deadline: Instant) {
    let (tx, rx) = std::sync::mpsc::channel();
    let closer = std::thread::Builder::new()
        .name("schemabridge-close".into())
        .spawn(move || {
            if !offsets.is_empty() {
                match consumer.commit(&super::delivery::tpl(&offsets), CommitMode::Sync) {
                    Ok(()) => tracing::info!("offsets committed"),
                    Err(e) => tracing::warn!(error = %e, "final offset commit failed; at least once, the last messages will be consumed again (exactly once on Kafka, the transactions hold the offsets)"),
                }
            }
            drop(consumer);
            drop(delivery);
            let _ = tx.send(());
        });
    if closer.is_err() {
        return;
    }
    let wait = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
    if rx.recv_timeout(wait).is_err() {
        tracing::warn!(
            "the final commit or closing the Kafka clients did not finish within the shutdown timeout; exiting without waiting for them"
        );
    }
}
