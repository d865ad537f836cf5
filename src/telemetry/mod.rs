//! Logs, metrics and health.
//!
//! Owns: the tracing subscriber (here), every metric's name and handle (`events`: the one
//! place that names them), the liveness/readiness state (`health`), and the telemetry listener
//! with the Prometheus recorder (`server`: `/metrics`, `/healthz`, `/readyz` on
//! `telemetry.listen`). The pipeline emits through `events` handles and updates `health`; it
//! never names a metric itself. Must not: touch Kafka or the registry.

pub mod events;
pub mod health;
pub mod server;

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
