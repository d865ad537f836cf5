//! Logs, metrics and health.
//!
//! Owns: the tracing subscriber (here: text or JSON lines on stderr, ANSI colour only when
//! stderr is a terminal), the rate limit on per-message log lines (`logs`), every metric's
//! name and handle (`events`: the one place that names them), the liveness/readiness state
//! (`health`), and the telemetry listener with the Prometheus recorder (`server`: `/metrics`,
//! `/healthz`, `/readyz` on `telemetry.listen`). The pipeline and the archive emit through
//! `events` handles and update `health`; neither names a metric itself. Must not: touch Kafka or the registry, or
//! log config values or message payloads.

pub mod events;
pub mod health;
pub mod logs;
pub mod server;

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Text when stderr is a terminal, JSON otherwise (a file, a pipe, a log collector).
    #[default]
    Auto,
    /// Human-readable lines; coloured only when stderr is a terminal.
    Text,
    /// One JSON object per line, the event's fields at the top level.
    Json,
}

impl LogFormat {
    /// `Text` or `Json`: what `Auto` means when stderr is (or is not) a terminal.
    pub fn resolve(self, stderr_is_terminal: bool) -> LogFormat {
        match self {
            LogFormat::Auto if stderr_is_terminal => LogFormat::Text,
            LogFormat::Auto => LogFormat::Json,
            f => f,
        }
    }
}

/// Installs the global subscriber, logging to stderr in `format` (`Auto` resolved against
/// stderr); `RUST_LOG` overrides `default_level`. Returns the format in use (`Text` or `Json`).
pub fn init_tracing(default_level: &str, format: LogFormat) -> LogFormat {
    let terminal = std::io::stderr().is_terminal();
    let format = format.resolve(terminal);
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default_level},rdkafka=warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder
            .with_ansi(false)
            .json()
            .flatten_event(true)
            .try_init(),
        // Escape codes only for a terminal (and not with NO_COLOR set): never in a file or a
        // pipe.
        _ => builder
            .with_ansi(terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()))
            .try_init(),
    };
    format
}

#[cfg(test)]
mod tests {
    use super::LogFormat;

    #[test]
    fn auto_is_text_on_a_terminal_and_json_otherwise() {
        assert_eq!(LogFormat::Auto.resolve(true), LogFormat::Text);
        assert_eq!(LogFormat::Auto.resolve(false), LogFormat::Json);
        for terminal in [true, false] {
            assert_eq!(LogFormat::Text.resolve(terminal), LogFormat::Text);
            assert_eq!(LogFormat::Json.resolve(terminal), LogFormat::Json);
        }
    }
}
