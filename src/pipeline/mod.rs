//! The gateway: consume → resolve → produce → store offset, for every route.
//!
//! Owns: the consume loop, routing a topic to its route, applying a route's error and lossy
//! policies, building dead letters, and shutdown. Delivery guarantees live in `delivery`, schema
//! work in `resolve`; this module never parses bytes.
//!
//! Order: one task consumes and hands records to the producer in consumption order; the
//! producer is idempotent, so per-partition order survives retries.

mod delivery;
mod resolve;
mod routes;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::FutureProducer;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

pub use delivery::{DeliveryError, SourcePosition};
pub use resolve::FailureKind;

use crate::config::{Config, ConfigError, ErrorPolicy, LossyPolicy};
use crate::registry::{Backoff, SchemaSource};
use delivery::{AtLeastOnce, OutRecord};
use resolve::{PartFailure, ResolveError, Resolver};
use routes::{Part, PartRuntime, Route, RouteTable};

/// Dead-letter header names. The original headers are kept; these are added.
pub mod dlq_headers {
    pub const ERROR: &str = "schemabridge.error";
    pub const KIND: &str = "schemabridge.error.kind";
    pub const ROUTE: &str = "schemabridge.route";
    pub const PART: &str = "schemabridge.part";
    pub const TOPIC: &str = "schemabridge.source.topic";
    pub const PARTITION: &str = "schemabridge.source.partition";
    pub const OFFSET: &str = "schemabridge.source.offset";
    pub const WRITER_ID: &str = "schemabridge.writer.schema.id";
}

#[derive(Debug, Error)]
pub enum GatewayError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("cannot create the Kafka {what}: {source}")]
    Client {
        what: &'static str,
        source: Box<KafkaError>,
    },
    #[error("start-up: {0}")]
    Startup(String),
    #[error(
        "halted by route {route} ({part}) at {}[{}]@{}: {reason}; offsets are committed only up to the message before it",
        at.topic, at.partition, at.offset
    )]
    Halted {
        route: String,
        part: &'static str,
        at: SourcePosition,
        reason: String,
    },
    #[error(transparent)]
    Delivery(Box<DeliveryError>),
}

impl From<DeliveryError> for GatewayError {
    fn from(e: DeliveryError) -> Self {
        GatewayError::Delivery(Box::new(e))
    }
}

/// What one run did; the same figures go to the metrics facade as they happen.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub consumed: u64,
    pub forwarded: u64,
    pub dead_lettered: u64,
    pub skipped: u64,
    /// Messages per value writer schema id (`None`: passthrough, tombstone or unframed).
    pub by_writer: BTreeMap<Option<u32>, u64>,
    /// Per dropped writer field (`orders: value.email`: route, part, field path), messages in which it held data the reader
    /// does not see (whatever the route's `on_lossy`).
    pub lossy_fields: BTreeMap<String, u64>,
}

pub struct Gateway {
    config: Config,
    source: Arc<SchemaSource>,
}

/// What the loop does after one message.
enum Flow {
    Continue,
    Stop,
}

impl Gateway {
    /// A gateway that reads schemas from the source the config names.
    pub fn new(config: Config) -> Result<Self, GatewayError> {
        let source = SchemaSource::from_config(&config.registry)?;
        Ok(Self::with_schema_source(config, source))
    }

    /// A gateway with an explicit schema source (the demo embeds its schemas).
    pub fn with_schema_source(config: Config, source: SchemaSource) -> Self {
        Gateway {
            config,
            source: Arc::new(source),
        }
    }

    /// Runs until `shutdown` is cancelled (then drains, commits and returns the summary), a
    /// route halts, or a delivery fails.
    pub async fn run(self, shutdown: CancellationToken) -> Result<RunSummary, GatewayError> {
        let cfg = &self.config;
        let stop = shutdown.child_token();
        let consumer: Arc<StreamConsumer> = Arc::new(cfg.consumer_config().create().map_err(
            |source| GatewayError::Client {
                what: "consumer",
                source: Box::new(source),
            },
        )?);
        let producer: FutureProducer =
            cfg.producer_config()
                .create()
                .map_err(|source| GatewayError::Client {
                    what: "producer",
                    source: Box::new(source),
                })?;

        let mut resolver = Resolver::new(
            self.source.clone(),
            Backoff::from_config(&cfg.registry),
            cfg.registry.cache_size,
            stop.clone(),
        );
        let Some(mut routes) = RouteTable::build(cfg, &resolver).await? else {
            return Ok(RunSummary::default()); // shutdown while waiting for the registry
        };
        routes.check_targets(&producer).await?;
        let subscription = routes.subscription();
        let topics: Vec<&str> = subscription.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|source| GatewayError::Client {
                what: "subscription",
                source: Box::new(source),
            })?;
        tracing::info!(topics = ?subscription, group = %cfg.group_id, "consuming");

        let delivery = AtLeastOnce::new(
            producer,
            consumer.clone(),
            cfg.pipeline.max_in_flight,
            stop.clone(),
        );
        let mut worker = Worker {
            resolver: &mut resolver,
            delivery: &delivery,
            consumer: &consumer,
            summary: RunSummary::default(),
            key_buf: Vec::with_capacity(256),
            value_buf: Vec::with_capacity(4096),
        };
        let mut halted = None;
        loop {
            let msg = tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                m = consumer.recv() => m,
            };
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "consumer error");
                    continue;
                }
            };
            match worker.handle(&mut routes, &msg).await {
                Ok(Flow::Continue) => {}
                Ok(Flow::Stop) => break,
                Err(e @ GatewayError::Halted { .. }) => {
                    halted = Some(e);
                    break;
                }
                Err(e) => {
                    halted = Some(e);
                    break;
                }
            }
        }
        let mut summary = std::mem::take(&mut worker.summary);
        summary.lossy_fields = routes.lossy_summary();
        drop(worker);
        tracing::info!(
            ?summary,
            "stopping: draining in-flight messages and committing"
        );
        let finished = delivery
            .finish(Duration::from_millis(cfg.pipeline.shutdown_timeout_ms))
            .await;
        if let Some(e) = halted {
            return Err(e);
        }
        finished?;
        Ok(summary)
    }
}

/// The per-message work, with the buffers it reuses.
struct Worker<'a> {
    resolver: &'a mut Resolver,
    delivery: &'a AtLeastOnce,
    consumer: &'a StreamConsumer,
    summary: RunSummary,
    key_buf: Vec<u8>,
    value_buf: Vec<u8>,
}

impl Worker<'_> {
    async fn handle(
        &mut self,
        routes: &mut RouteTable,
        msg: &BorrowedMessage<'_>,
    ) -> Result<Flow, GatewayError> {
        self.summary.consumed += 1;
        let from = SourcePosition {
            topic: msg.topic().to_string(),
            partition: msg.partition(),
            offset: msg.offset(),
        };
        let Some(route) = routes.route_for(msg.topic(), self.consumer).await else {
            tracing::warn!(topic = %from.topic, "no route for topic; message skipped");
            self.summary.skipped += 1;
            self.delivery.skip(from).await?;
            return Ok(Flow::Continue);
        };

        // Resolve key then value; the first failure decides the message's fate.
        let mut writer_id = None;
        let mut failure: Option<(Part, PartFailure)> = None;
        for part in [Part::Key, Part::Value] {
            let (input, buf) = match part {
                Part::Key => (msg.key(), &mut self.key_buf),
                Part::Value => (msg.payload(), &mut self.value_buf),
            };
            buf.clear();
            match resolve_part(self.resolver, route, part, input, buf).await {
                Ok(id) => {
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

        if let Some((part, f)) = failure {
            return self.fail(route, part, f, msg, from).await;
        }

        let key = output(route.part(Part::Key), msg.key(), &self.key_buf);
        let value = output(route.part(Part::Value), msg.payload(), &self.value_buf);
        let record = OutRecord {
            topic: &route.target,
            partition: route.target_partition(msg.topic(), msg.partition()),
            key,
            value,
            headers: msg.headers().map(copy_headers),
            timestamp: msg.timestamp().to_millis(),
        };
        self.delivery.send(from, record).await?;
        route.metrics.forwarded.increment(1);
        self.summary.forwarded += 1;
        *self.summary.by_writer.entry(writer_id).or_default() += 1;
        Ok(Flow::Continue)
    }

    /// Applies the failing part's policy: dead-letter, skip or halt.
    async fn fail(
        &mut self,
        route: &Route,
        part: Part,
        f: PartFailure,
        msg: &BorrowedMessage<'_>,
        from: SourcePosition,
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
        tracing::warn!(
            route = %route.name, part = part.as_str(), topic = %from.topic, partition = from.partition,
            offset = from.offset, kind = f.kind.as_str(), writer_id = ?f.writer_id, error = %f.message,
            policy = ?policy, "message cannot be resolved"
        );
        metrics::counter!("schemabridge_failures_total", "route" => route.name.clone(), "kind" => f.kind.as_str())
            .increment(1);
        match (policy, &rt.config.dlq) {
            (ErrorPolicy::Dlq, Some(dlq)) => {
                let headers = dead_letter_headers(msg, &route.name, part, &f, &from);
                let record = OutRecord {
                    topic: dlq,
                    partition: None,
                    key: msg.key(),
                    value: msg.payload(),
                    headers: Some(headers),
                    timestamp: msg.timestamp().to_millis(),
                };
                self.delivery.send(from, record).await?;
                route.metrics.dead_lettered.increment(1);
                self.summary.dead_lettered += 1;
                Ok(Flow::Continue)
            }
            (ErrorPolicy::Skip, _) => {
                self.delivery.skip(from).await?;
                route.metrics.skipped.increment(1);
                self.summary.skipped += 1;
                Ok(Flow::Continue)
            }
            // Halt, or a DLQ policy without a DLQ topic (config validation prevents it).
            _ => Err(GatewayError::Halted {
                route: route.name.clone(),
                part: part.as_str(),
                at: from,
                reason: format!("{}: {}", f.kind.as_str(), f.message),
            }),
        }
    }
}

/// Resolves one part into `buf`; returns the writer schema id. Passthrough and null leave
/// `buf` empty (the original bytes are forwarded).
async fn resolve_part(
    resolver: &mut Resolver,
    route: &Route,
    part: Part,
    input: Option<&[u8]>,
    buf: &mut Vec<u8>,
) -> Result<Option<u32>, ResolveError> {
    let rt = route.part(part);
    let (Some(input), Some(reader)) = (input, &rt.reader) else {
        return Ok(None);
    };
    let resolved = resolver.resolve(input, reader, buf).await?;
    if !resolved.lossy_fields.is_empty() {
        for field in &resolved.lossy_fields {
            rt.record_lossy(field);
        }
        if rt.config.on_lossy != LossyPolicy::Allow {
            let names: Vec<&str> = resolved.lossy_fields.iter().map(|f| &**f).collect();
            return Err(ResolveError::Failed(PartFailure {
                kind: FailureKind::Lossy,
                message: format!(
                    "the reader ({}) would not see fields that hold data: {}",
                    reader.origin,
                    names.join(", ")
                ),
                writer_id: resolved.writer_id,
            }));
        }
    }
    Ok(resolved.writer_id)
}

/// The bytes to forward for a part: the resolved buffer, or the original when passed through.
fn output<'a>(rt: &PartRuntime, original: Option<&'a [u8]>, buf: &'a [u8]) -> Option<&'a [u8]> {
    match (original, &rt.reader) {
        (Some(_), Some(_)) => Some(buf),
        (original, _) => original,
    }
}

fn copy_headers<H: Headers>(headers: &H) -> OwnedHeaders {
    let mut out = OwnedHeaders::new_with_capacity(headers.count());
    for h in headers.iter() {
        out = out.insert(Header {
            key: h.key,
            value: h.value,
        });
    }
    out
}

fn dead_letter_headers(
    msg: &BorrowedMessage<'_>,
    route: &str,
    part: Part,
    f: &PartFailure,
    from: &SourcePosition,
) -> OwnedHeaders {
    let mut h = msg.headers().map(copy_headers).unwrap_or_default();
    let partition = from.partition.to_string();
    let offset = from.offset.to_string();
    let writer = f.writer_id.map(|id| id.to_string());
    let ours: [(&str, Option<&str>); 8] = [
        (dlq_headers::ERROR, Some(&f.message)),
        (dlq_headers::KIND, Some(f.kind.as_str())),
        (dlq_headers::ROUTE, Some(route)),
        (dlq_headers::PART, Some(part.as_str())),
        (dlq_headers::TOPIC, Some(&from.topic)),
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
