//! Logs and metrics set-up.
//!
//! Owns: the tracing subscriber. Every counter in the crate goes through the `metrics` facade
//! (names `schemabridge_*`), so an exporter installed here (Prometheus, planned) sees all of
//! them without touching the pipeline.
//!
//! Counters emitted today:
//! - `schemabridge_messages_total{route, outcome=forwarded|dead_lettered|skipped}`
//! - `schemabridge_failures_total{route, kind}`: kinds as in the DLQ `schemabridge.error.kind` header
//! - `schemabridge_dropped_fields_total{route, part, field}`: a dropped writer field held data
//! - `schemabridge_registry_retries_total`, `schemabridge_delivery_failures_total`

use tracing_subscriber::EnvFilter;

/// Log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Installs the global subscriber; `RUST_LOG` overrides `default_level`.
pub fn init_tracing(default_level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default_level},rdkafka=warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
