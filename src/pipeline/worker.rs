//! The per-message work: route, resolve key and value, apply the route's policies, and hand
//! the record (or a dead letter, or a skip) to the delivery seam.
//!
//! Owns: what happens to one consumed message, and the buffers reused for it (no allocation per
//! message on the happy path: headers are copied by librdkafka in one call, topic names are
//! borrowed, the source position is two integers). Runs on the pipeline thread; a registry
//! lookup on a cache miss blocks this thread (never the async runtime) until it answers or
//! shutdown. Must not: parse bytes (wire/avro/protobuf do), commit offsets (delivery does).

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use tokio::runtime::Handle;

use super::delivery::{Delivery, OutRecord, Position, SendError};
use super::resolve::{FailureKind, PartFailure, ResolveError, Resolver};
use super::routes::{Part, PartRuntime, Route, kind_index};
use super::{GatewayError, RunSummary, SourcePosition, dlq_headers};
use crate::config::{ErrorPolicy, LossyPolicy};
use crate::telemetry::events::{RegistryEvents, TRANSCODE_SAMPLE_EVERY};
use crate::telemetry::logs;

/// What the loop does after one message.
pub enum Flow {
    Continue,
    Stop,
}

/// What the worker needs from the pipeline thread around one message.
pub trait Io {
    /// The delivery mode, locked for one send or skip; `None` when the message's own partition
    /// was revoked (or, exactly-once, rewound by an aborted transaction) while it was being
    /// resolved: it is dropped, and consumed again where its partition resumes.
    fn delivery(&mut self) -> Option<MutexGuard<'_, Delivery>>;
    /// Called about every second while a registry lookup blocks (an outage): keeps the
    /// consumer in its group with its partitions paused.
    fn idle(&mut self);
}

/// How often `Io::idle` runs while a registry lookup blocks.
const IDLE_EVERY: Duration = Duration::from_secs(1);

/// The per-message work, with the buffers it reuses.
pub struct Worker {
    pub resolver: Resolver,
    pub runtime: Handle,
    pub summary: RunSummary,
    key_buf: Vec<u8>,
    value_buf: Vec<u8>,
    lossy: Vec<Arc<str>>,
    /// Registry cache hit/miss handles.
    registry: RegistryEvents,
}

/// Runs `fut` to completion on this (non-runtime) thread: a cache hit completes on the first
/// poll without touching the runtime; a miss blocks this thread until the registry answers,
/// calling `idle` every `IDLE_EVERY` meanwhile.
pub fn block_on<F: Future>(runtime: &Handle, fut: F, idle: &mut dyn FnMut()) -> F::Output {
    let mut fut = pin!(fut);
    if let Poll::Ready(v) = fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        return v;
    }
    loop {
        match runtime.block_on(tokio::time::timeout(IDLE_EVERY, fut.as_mut())) {
            Ok(v) => return v,
            Err(_) => idle(),
        }
    }
}

impl Worker {
    pub fn new(resolver: Resolver, runtime: Handle) -> Self {
        Worker {
            resolver,
            runtime,
            summary: RunSummary::default(),
            key_buf: Vec::with_capacity(256),
            value_buf: Vec::with_capacity(4096),
            lossy: Vec::new(),
            registry: RegistryEvents::new(),
        }
    }

    pub fn handle(
        &mut self,
        route: &Route,
        same_partition: bool,
        pos: Position,
        msg: &BorrowedMessage<'_>,
        io: &mut dyn Io,
    ) -> Result<Flow, GatewayError> {
        self.summary.consumed += 1;
        route.metrics.events.consumed.increment(1);
        // A reader the refresh task re-selected applies from this message on, to all of it.
        route.take_up_readers();
        // Transcode latency: every TRANSCODE_SAMPLE_EVERY-th message, so the clock is not read
        // per message; recorded only when it asked the registry for nothing.
        let sampled = (self.summary.consumed % TRANSCODE_SAMPLE_EVERY == 0).then(Instant::now);
        let lookups_before = self.resolver.registry_lookups();
        // Resolve key then value; the first failure decides the message's fate.
        let mut writer_id = None;
        let mut failure: Option<(Part, PartFailure)> = None;
        for part in [Part::Key, Part::Value] {
            let (input, buf) = match part {
                Part::Key => (msg.key(), &mut self.key_buf),
                Part::Value => (msg.payload(), &mut self.value_buf),
            };
            buf.clear();
            let rt = route.part(part);
            let (Some(input), Some(reader)) = (input, rt.reader()) else {
                continue;
            };
            self.lossy.clear();
            let before = self.resolver.registry_lookups();
            let resolved = block_on(
                &self.runtime,
                self.resolver.resolve(input, &reader, buf, &mut self.lossy),
                &mut || io.idle(),
            );
            self.registry
                .resolved(self.resolver.registry_lookups() != before);
            match resolved {
                Ok(id) => {
                    if !self.lossy.is_empty()
                        && let Some(f) = lossy_failure(rt, &self.lossy, id)
                    {
                        failure = Some((part, f));
                        break;
                    }
                    if part == Part::Value {
                        writer_id = id;
                    }
                }
                Err(ResolveError::Cancelled) => return Ok(Flow::Stop),
                Err(ResolveError::Failed(f)) => {
                    failure = Some((part, f));
                    break;
                }
            }
        }
        if let Some(started) = sampled
            && self.resolver.registry_lookups() == lookups_before
            && failure.is_none()
        {
            route
                .metrics
                .events
                .transcode
                .record(started.elapsed().as_secs_f64());
        }
        let Some(mut delivery) = io.delivery() else {
            return Ok(Flow::Continue);
        };
        if let Some((part, f)) = failure {
            return self.fail(route, part, f, pos, msg, &mut delivery);
        }

        let key = output(route.part(Part::Key), msg.key(), &self.key_buf);
        let value = output(route.part(Part::Value), msg.payload(), &self.value_buf);
        let record = OutRecord {
            topic: &route.target,
            partition: same_partition.then_some(msg.partition()),
            key,
            value,
            headers: msg.headers().map(|h| h.detach()),
            timestamp: msg.timestamp().to_millis(),
        };
        match delivery.send(pos, record) {
            Ok(()) => {}
            Err(SendError::Fatal(e)) => return Err(e.into()),
            Err(e @ SendError::TooLarge { .. }) => {
                let f = PartFailure {
                    kind: FailureKind::TooLarge,
                    message: e.to_string(),
                    writer_id,
                };
                return self.fail(route, Part::Value, f, pos, msg, &mut delivery);
            }
        }
        let reader_id = route.part(Part::Value).reader().map(|r| r.id);
        route.metrics.forwarded(&route.name, writer_id, reader_id);
        self.summary.forwarded += 1;
        *self.summary.by_writer.entry(writer_id).or_default() += 1;
        Ok(Flow::Continue)
    }

    /// Applies the failing part's policy: dead-letter, skip or halt. A dead letter too large to
    /// produce is sent without its value, with a header that says so.
    fn fail(
        &mut self,
        route: &Route,
        part: Part,
        f: PartFailure,
        pos: Position,
        msg: &BorrowedMessage<'_>,
        delivery: &mut Delivery,
    ) -> Result<Flow, GatewayError> {
        let rt = route.part(part);
        let policy = if f.kind == FailureKind::Lossy {
            match rt.config.on_lossy {
                LossyPolicy::Dlq => ErrorPolicy::Dlq,
                LossyPolicy::Halt | LossyPolicy::Allow => ErrorPolicy::Halt,
            }
        } else {
            rt.config.on_error
        };
        let from = || SourcePosition {
            topic: msg.topic().to_string(),
            partition: msg.partition(),
            offset: msg.offset(),
        };
        // One line per failed message, naming it and the reason (never its bytes); dead letters
        // and skips are rate-limited process-wide (telemetry::logs), a halt is logged always.
        let log = |outcome: &str| {
            tracing::warn!(
                route = %route.name, part = part.as_str(), topic = msg.topic(), partition = msg.partition(),
                offset = msg.offset(), kind = f.kind.as_str(), writer_id = ?f.writer_id, reason = %f.message,
                "{outcome}"
            )
        };
        let kind = kind_index(f.kind);
        route.metrics.events.failures.failed(kind);
        let dlq = rt.config.dlq.as_deref().or_else(|| {
            // A too-large record on a passthrough route: use the value part's DLQ if any.
            route.part(Part::Value).config.dlq.as_deref()
        });
        match (policy, dlq) {
            (ErrorPolicy::Dlq, Some(dlq)) => {
                let from = from();
                let mut value = msg.payload();
                let mut headers = dead_letter_headers(msg, &route.name, part.as_str(), &f);
                loop {
                    let record = OutRecord {
                        topic: dlq,
                        partition: None,
                        key: msg.key(),
                        value,
                        headers: Some(headers.clone()),
                        timestamp: msg.timestamp().to_millis(),
                    };
                    match delivery.send(pos, record) {
                        Ok(()) => break,
                        Err(SendError::TooLarge { bytes, limit }) if value.is_some() => {
                            // The original does not fit either: dead-letter it without its value.
                            let note = format!(
                                "value of {} bytes left out: the record ({bytes} bytes) exceeds message.max.bytes ({limit})",
                                value.map_or(0, <[u8]>::len)
                            );
                            headers = headers.insert(Header {
                                key: dlq_headers::VALUE_OMITTED,
                                value: Some(&note),
                            });
                            value = None;
                        }
                        Err(SendError::TooLarge { .. }) => {
                            return Err(GatewayError::Halted {
                                route: route.name.clone(),
                                part: part.as_str(),
                                at: from,
                                reason: format!(
                                    "{}: {}; the dead letter does not fit into message.max.bytes either",
                                    f.kind.as_str(),
                                    f.message
                                ),
                            });
                        }
                        Err(SendError::Fatal(e)) => return Err(e.into()),
                    }
                }
                route.metrics.events.failures.dead_lettered(kind);
                self.summary.dead_lettered += 1;
                if logs::failed_message_line() {
                    log("dead letter");
                }
                Ok(Flow::Continue)
            }
            (ErrorPolicy::Skip, _) => {
                delivery.skip(pos)?;
                route.metrics.events.skipped.increment(1);
                self.summary.skipped += 1;
                if logs::failed_message_line() {
                    log("message skipped");
                }
                Ok(Flow::Continue)
            }
            // Halt, or a DLQ policy without a DLQ topic (config validation prevents it).
            _ => {
                log("message cannot be resolved: halting");
                Err(GatewayError::Halted {
                    route: route.name.clone(),
                    part: part.as_str(),
                    at: from(),
                    reason: format!("{}: {}", f.kind.as_str(), f.message),
                })
            }
        }
    }
}

/// Counts the dropped fields that held data; a failure when the part's `on_lossy` forbids it.
fn lossy_failure(
    rt: &PartRuntime,
    fields: &[Arc<str>],
    writer_id: Option<u32>,
) -> Option<PartFailure> {
    for field in fields {
        rt.record_lossy(field);
    }
    if rt.config.on_lossy == LossyPolicy::Allow {
        return None;
    }
    let names: Vec<&str> = fields.iter().map(|f| &**f).collect();
    let origin = rt.reader().map(|r| r.origin.clone()).unwrap_or_default();
    Some(PartFailure {
        kind: FailureKind::Lossy,
        message: format!(
            "the reader ({origin}) would not see fields that hold data: {}",
            names.join(", ")
        ),
        writer_id,
    })
}

/// The bytes to forward for a part: the resolved buffer, or the original when passed through.
fn output<'a>(rt: &PartRuntime, original: Option<&'a [u8]>, buf: &'a [u8]) -> Option<&'a [u8]> {
    match original {
        Some(_) if rt.has_reader() => Some(buf),
        original => original,
    }
}

/// The original headers plus the gateway's dead-letter headers (why, and where from): what a
/// dead letter carries, from `run` and from `archive` alike.
pub(crate) fn dead_letter_headers(
    msg: &BorrowedMessage<'_>,
    route: &str,
    part: &str,
    f: &PartFailure,
) -> OwnedHeaders {
    let mut h = msg.headers().map(|h| h.detach()).unwrap_or_default();
    let partition = msg.partition().to_string();
    let offset = msg.offset().to_string();
    let writer = f.writer_id.map(|id| id.to_string());
    let ours: [(&str, Option<&str>); 8] = [
        (dlq_headers::ERROR, Some(&f.message)),
        (dlq_headers::KIND, Some(f.kind.as_str())),
        (dlq_headers::ROUTE, Some(route)),
        (dlq_headers::PART, Some(part)),
        (dlq_headers::TOPIC, Some(msg.topic())),
        (dlq_headers::PARTITION, Some(&partition)),
        (dlq_headers::OFFSET, Some(&offset)),
        (dlq_headers::WRITER_ID, writer.as_deref()),
    ];
    for (key, value) in ours {
        if let Some(value) = value {
            h = h.insert(Header {
                key,
                value: Some(value),
            });
        }
    }
    h
}
