//! Where schemas come from: a Confluent-compatible registry over HTTP, or a static directory.
//!
//! Owns: fetching schema text by id, by subject/version and by subject + schema metadata,
//! looking a schema up by its text under a subject and registering one (bridge mode's target
//! registry), a subject's versions and compatibility level (`check`), and classifying failures as transient (retry; never drop a message over it) or
//! permanent (the id or subject does not exist). Must not: parse schemas (see `schema`), or
//! know about Kafka.

mod confluent;
mod rest;
mod static_dir;
pub mod tls;

use std::collections::BTreeMap;
use std::time::Duration;

use thiserror::Error;
use tokio_util::sync::CancellationToken;

pub use confluent::ConfluentRegistry;
pub use static_dir::{StaticDir, StaticEntry};

use crate::config::{RegistryConfig, RegistrySource, SubjectVersion};
use crate::wire::SchemaId;

pub use crate::config::Format;

impl Format {
    /// The registry's `schemaType` value (absent means AVRO).
    pub fn from_registry(s: Option<&str>) -> Result<Self, String> {
        match s {
            None | Some("AVRO") => Ok(Format::Avro),
            Some("PROTOBUF") => Ok(Format::Protobuf),
            Some(other) => Err(format!("schema type {other} is not supported")),
        }
    }
}

/// A schema another schema imports (Protobuf import name / Avro named type).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaReference {
    pub name: String,
    pub subject: String,
    pub version: u32,
}

/// A schema as the registry stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredSchema {
    pub id: SchemaId,
    pub kind: Format,
    pub text: String,
    pub references: Vec<SchemaReference>,
    pub subject: Option<String>,
    pub version: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RegistryError {
    /// The registry could not answer now (down, 5xx, timeout, auth refused): retry, never drop.
    #[error("schema registry unavailable: {0}")]
    Transient(String),
    /// The registry answered that the schema id or subject/version does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The registry answered with something unusable (unsupported type, bad schema file).
    #[error("{0}")]
    Invalid(String),
}

impl RegistryError {
    pub fn is_transient(&self) -> bool {
        matches!(self, RegistryError::Transient(_))
    }
}

/// One of the schema sources a config can name.
pub enum SchemaSource {
    Confluent(ConfluentRegistry),
    Static(StaticDir),
}

impl SchemaSource {
    pub fn from_config(cfg: &RegistryConfig) -> Result<Self, crate::config::ConfigError> {
        match &cfg.source {
            RegistrySource::StaticDir(dir) => {
                Ok(SchemaSource::Static(StaticDir::load(dir).map_err(|e| {
                    crate::config::ConfigError {
                        path: format!("{}.static_dir", cfg.key),
                        message: e,
                    }
                })?))
            }
            RegistrySource::Urls(_) => Ok(SchemaSource::Confluent(ConfluentRegistry::new(cfg)?)),
        }
    }

    /// The schema with this id (a writer schema).
    pub async fn by_id(&self, id: SchemaId) -> Result<RegisteredSchema, RegistryError> {
        match self {
            SchemaSource::Confluent(c) => c.by_id(id).await,
            SchemaSource::Static(s) => s.by_id(id),
        }
    }

    /// The schema registered under `subject` at `version` (a reader schema or a reference).
    pub async fn by_subject(
        &self,
        subject: &str,
        version: SubjectVersion,
    ) -> Result<RegisteredSchema, RegistryError> {
        match self {
            SchemaSource::Confluent(c) => c.by_subject(subject, version).await,
            SchemaSource::Static(s) => s.by_subject(subject, version),
        }
    }
}

impl SchemaSource {
    /// The newest version of `subject` whose schema metadata (`metadata.properties`) holds
    /// every key/value of `metadata` (Confluent's `GET /subjects/{subject}/metadata`).
    pub async fn by_metadata(
        &self,
        subject: &str,
        metadata: &BTreeMap<String, String>,
    ) -> Result<RegisteredSchema, RegistryError> {
        match self {
            SchemaSource::Confluent(c) => c.by_metadata(subject, metadata).await,
            SchemaSource::Static(_) => Err(RegistryError::Invalid(format!(
                "subject {subject}: a static schema directory has no schema metadata"
            ))),
        }
    }

    /// The schema registered under `subject` with this text (Confluent's
    /// `POST /subjects/{subject}`); `NotFound` when the subject does not hold it.
    pub async fn lookup(
        &self,
        subject: &str,
        kind: Format,
        text: &str,
        references: &[SchemaReference],
    ) -> Result<RegisteredSchema, RegistryError> {
        match self {
            SchemaSource::Confluent(c) => c.lookup(subject, kind, text, references).await,
            SchemaSource::Static(s) => s.lookup(subject, kind, text),
        }
    }

    /// Registers `text` under `subject` (Confluent's `POST /subjects/{subject}/versions`; the
    /// registry answers with the existing id when it has it already); returns its id.
    pub async fn register(
        &self,
        subject: &str,
        kind: Format,
        text: &str,
        references: &[SchemaReference],
    ) -> Result<SchemaId, RegistryError> {
        match self {
            SchemaSource::Confluent(c) => c.register(subject, kind, text, references).await,
            SchemaSource::Static(_) => Err(RegistryError::Invalid(format!(
                "subject {subject}: a static schema directory cannot register schemas"
            ))),
        }
    }
}

/// A subject's history, for `check`: what is registered, and what the registry enforces.
impl SchemaSource {
    /// Every subject.
    pub async fn subjects(&self) -> Result<Vec<String>, RegistryError> {
        match self {
            SchemaSource::Confluent(c) => c.subjects().await,
            SchemaSource::Static(s) => Ok(s.subjects()),
        }
    }

    /// The versions registered under `subject`, ascending (`NotFound` for an unknown subject).
    pub async fn versions(&self, subject: &str) -> Result<Vec<u32>, RegistryError> {
        match self {
            SchemaSource::Confluent(c) => c.versions(subject).await,
            SchemaSource::Static(s) => s.versions(subject),
        }
    }

    /// The compatibility level the registry enforces for `subject` (`BACKWARD`, `FULL_TRANSITIVE`,
    /// `NONE`, ...); `None` for a static directory, which enforces nothing.
    pub async fn compatibility(&self, subject: &str) -> Result<Option<String>, RegistryError> {
        match self {
            SchemaSource::Confluent(c) => c.compatibility(subject).await.map(Some),
            SchemaSource::Static(_) => Ok(None),
        }
    }
}

/// Exponential backoff for transient registry failures.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    pub fn from_config(cfg: &RegistryConfig) -> Self {
        Backoff {
            initial: Duration::from_millis(cfg.initial_backoff_ms),
            max: Duration::from_millis(cfg.max_backoff_ms),
        }
    }
}

/// Why a retried lookup gave up.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LookupError {
    #[error(transparent)]
    Registry(RegistryError),
    /// Shutdown was requested while a lookup was in flight or the registry was unavailable.
    #[error("shutdown requested while waiting for the schema registry")]
    Cancelled,
}

/// Runs `call` until it succeeds or fails permanently, sleeping with exponential backoff after
/// each transient failure. Only `shutdown` stops the retries: a registry outage pauses the
/// pipeline, it never makes it drop or skip a message. Every call races `shutdown` too, so a
/// request the registry never answers (up to `registry.timeout_ms`) does not hold up shutdown:
/// the request is dropped and `Cancelled` returned at once.
pub async fn retry_transient<T, F, Fut>(
    what: &str,
    backoff: Backoff,
    shutdown: &CancellationToken,
    mut call: F,
) -> Result<T, LookupError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, RegistryError>>,
{
    let mut delay = backoff.initial;
    let mut attempt: u32 = 0;
    loop {
        let result = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Err(LookupError::Cancelled),
            r = call() => r,
        };
        match result {
            Ok(v) => {
                if attempt > 0 {
                    tracing::info!(what, attempts = attempt + 1, "schema registry recovered");
                }
                return Ok(v);
            }
            Err(e) if e.is_transient() => {
                attempt += 1;
                metrics::counter!(crate::telemetry::events::REGISTRY_RETRIES).increment(1);
                tracing::warn!(what, attempt, error = %e, retry_in = ?delay, "schema registry lookup failed; pausing and retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Err(LookupError::Cancelled),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(backoff.max);
            }
            Err(e) => return Err(LookupError::Registry(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::*;

    const BACKOFF: Backoff = Backoff {
        initial: Duration::from_millis(1),
        max: Duration::from_millis(2),
    };

    #[tokio::test]
    async fn shutdown_interrupts_a_request_that_never_answers() {
        let shutdown = CancellationToken::new();
        let calls = AtomicU32::new(0);
        let cancel = shutdown.clone();
        tokio::spawn(async move { cancel.cancel() });
        let lookup = retry_transient("schema id 1", BACKOFF, &shutdown, || {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<Result<(), RegistryError>>()
        });
        // A bound for correctness (without the race the lookup never returns), not a speed test.
        let result = tokio::time::timeout(Duration::from_secs(10), lookup)
            .await
            .expect("shutdown ends the pending lookup");
        assert_eq!(result, Err(LookupError::Cancelled));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the request was in flight");
    }

    #[tokio::test]
    async fn transient_failures_are_retried_and_permanent_ones_returned() {
        let shutdown = CancellationToken::new();
        let calls = AtomicU32::new(0);
        let result: Result<(), LookupError> =
            retry_transient("schema id 1", BACKOFF, &shutdown, || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    match n {
                        0 | 1 => Err(RegistryError::Transient("down".into())),
                        _ => Err(RegistryError::NotFound("schema id 1 not found".into())),
                    }
                }
            })
            .await;
        assert_eq!(
            result,
            Err(LookupError::Registry(RegistryError::NotFound(
                "schema id 1 not found".into()
            )))
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
