//! The telemetry listener: the Prometheus recorder, and an HTTP server for `/metrics`,
//! `/healthz` and `/readyz` on `telemetry.listen`.
//!
//! Owns: installing the process's metrics recorder (once: the `metrics` facade has one global
//! recorder), histogram buckets, and the HTTP endpoints. Runs on the async runtime; answering
//! is a render of atomics, never a wait on the pipeline thread. Must not: change pipeline
//! state (it only reads [`Health`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use thiserror::Error;
use tokio::net::TcpListener;

use super::events;
use super::health::Health;

#[derive(Debug, Error)]
pub enum TelemetryError {
    #[error("cannot install the metrics recorder: {0}")]
    Recorder(String),
    #[error("telemetry.listen: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Latency buckets (seconds): transcoding is microseconds, commits and uploads are milliseconds
/// to seconds.
const TRANSCODE_BUCKETS: &[f64] = &[
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.1,
];
const COMMIT_BUCKETS: &[f64] = &[
    0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Installs the Prometheus recorder as the process's metrics recorder and describes every
/// metric. Call before the gateway is built (handles registered earlier are no-ops).
pub fn install_recorder() -> Result<PrometheusHandle, TelemetryError> {
    let err = |e: metrics_exporter_prometheus::BuildError| TelemetryError::Recorder(e.to_string());
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(events::TRANSCODE_SECONDS.into()),
            TRANSCODE_BUCKETS,
        )
        .map_err(err)?
        .set_buckets_for_metric(Matcher::Full(events::COMMIT_SECONDS.into()), COMMIT_BUCKETS)
        .map_err(err)?
        .set_buckets_for_metric(
            Matcher::Full(events::TRANSACTION_SECONDS.into()),
            COMMIT_BUCKETS,
        )
        .map_err(err)?
        .set_buckets_for_metric(
            Matcher::Full(events::ARCHIVE_UPLOAD_SECONDS.into()),
            COMMIT_BUCKETS,
        )
        .map_err(err)?
        .install_recorder()
        .map_err(err)?;
    events::describe();
    Ok(handle)
}

/// A bound telemetry listener, not yet serving.
pub struct Telemetry {
    listener: TcpListener,
    handle: PrometheusHandle,
    health: Arc<Health>,
}

impl Telemetry {
    /// Binds `addr` (so a port in use fails start-up, naming the key).
    pub async fn bind(
        addr: SocketAddr,
        handle: PrometheusHandle,
        health: Arc<Health>,
    ) -> Result<Self, TelemetryError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| TelemetryError::Bind { addr, source })?;
        Ok(Telemetry {
            listener,
            handle,
            health,
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until the process exits (so `/readyz` keeps answering "stopping" during a drain).
    /// Also runs the recorder's upkeep (histogram maintenance) every 5 s.
    pub async fn serve(self) {
        let upkeep = self.handle.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                every.tick().await;
                upkeep.run_upkeep();
            }
        });
        let ready = metrics::gauge!(events::READY);
        let state = Arc::new(Served {
            handle: self.handle,
            health: self.health,
            ready,
        });
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .with_state(state);
        if let Err(e) = axum::serve(self.listener, app).await {
            tracing::error!(error = %e, "the telemetry listener stopped");
        }
    }
}

struct Served {
    handle: PrometheusHandle,
    health: Arc<Health>,
    ready: metrics::Gauge,
}

async fn metrics(State(s): State<Arc<Served>>) -> Response {
    s.ready.set(if s.health.readiness().is_ok() {
        1.0
    } else {
        0.0
    });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.handle.render(),
    )
        .into_response()
}

fn answer(result: Result<String, String>) -> Response {
    match result {
        Ok(line) => (StatusCode::OK, format!("{line}\n")).into_response(),
        Err(line) => (StatusCode::SERVICE_UNAVAILABLE, format!("{line}\n")).into_response(),
    }
}

async fn healthz(State(s): State<Arc<Served>>) -> Response {
    answer(s.health.liveness())
}

async fn readyz(State(s): State<Arc<Served>>) -> Response {
    let result = s.health.readiness();
    s.ready.set(if result.is_ok() { 1.0 } else { 0.0 });
    answer(result)
}
