//! The gateway: consume → resolve → produce → commit, for every route.
//!
//! Owns: start-up (reader schemas, client creation, target checks), the pipeline thread and its
//! consume loop (`source`), and how a run ends (shutdown, halt, fatal delivery error). The
//! per-message work lives in `worker`, schema work in `resolve`, routes in `routes`, how
//! records and offsets are tied together (at-least-once or exactly-once) in `delivery`, and what
//! the consumer does through a registry outage in `outage` (shared with `archive`). This module
//! never parses bytes.
//!
//! Threads: the consume loop runs on its own OS thread ("schemabridge-pipeline") that owns the
//! consumer and the producer; it polls the consumer, resolves (a cached plan is applied
//! synchronously) and produces, and serves the producer's delivery reports itself, so the hot
//! path has no task switch, channel or future per message. The async runtime only serves
//! registry requests on a cache miss and waits for the thread to end.
//!
//! Order: one thread consumes and hands records to the producer in consumption order; the
//! producer is idempotent (or transactional), so per-partition order survives retries.

mod delivery;
mod outage;
mod resolve;
mod routes;
mod source;
mod worker;

pub(crate) use outage::Outage;
pub(crate) use routes::{KINDS, kind_index};
pub(crate) use source::{consumer_lags, with_statistics};
pub(crate) use worker::{block_on, dead_letter_headers};

use std::collections::BTreeMap;
use std::sync::Arc;

use thiserror::Error;
use tokio_util::sync::CancellationToken;

pub use delivery::DeliveryError;
pub use resolve::FailureKind;

use crate::config::{Config, ConfigError};
use crate::registry::{Backoff, SchemaSource};
use resolve::Resolver;
use routes::RouteTable;

/// Where a consumed message came from (for errors and dead-letter headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePosition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

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
    /// Set when the original value was left out because the record exceeded the producer's
    /// `message.max.bytes`; says how large it was.
    pub const VALUE_OMITTED: &str = "schemabridge.value.omitted";
}

#[derive(Debug, Error)]
pub enum GatewayError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// A client librdkafka would not build; the message never holds a property's value.
    #[error("cannot create the Kafka {what}: {message}")]
    Client { what: &'static str, message: String },
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
        let mut cfg = self.config;
        // Archive routes write files and are run by `schemabridge archive`, not here.
        cfg.routes.retain(|r| r.archive.is_none());
        if cfg.routes.is_empty() {
            return Err(GatewayError::Startup(
                "every route in this config is an archive route: run them with `schemabridge \
                 archive --config FILE`"
                    .into(),
            ));
        }
        let stop = shutdown.child_token();
        let resolver = Resolver::new(crate::schema::Schemas::new(
            self.source.clone(),
            Backoff::from_config(&cfg.registry),
            crate::schema::CachePolicy {
                capacity: cfg.registry.cache_size,
                not_found_ttl: std::time::Duration::from_millis(cfg.registry.not_found_ttl_ms),
            },
            stop.clone(),
        ));
        let Some(routes) = RouteTable::build(&cfg, &resolver).await? else {
            return Ok(RunSummary::default()); // shutdown while waiting for the registry
        };
        let runtime = tokio::runtime::Handle::current();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("schemabridge-pipeline".into())
            .spawn(move || {
                let result = source::run(cfg, routes, resolver, runtime, stop);
                let _ = done_tx.send(result);
            })
            .map_err(|e| GatewayError::Startup(format!("cannot start the pipeline thread: {e}")))?;
        let result = done_rx
            .await
            .unwrap_or_else(|_| Err(GatewayError::Startup("the pipeline thread panicked".into())));
        crate::telemetry::logs::report_suppressed();
        result
    }
}
