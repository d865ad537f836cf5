//! Reader selection for a route part: which schema its consumer reads, and the id to frame with.
//!
//! Owns: resolving a part's `reader` config to a parsed [`ReaderSchema`]: a registry subject at
//! a version (or `latest`), the newest version whose schema metadata matches
//! (`GET /subjects/{s}/metadata`), or a file; in bridge mode (`target_registry`) all of them in
//! the target registry (a file looked up by its text under a subject), registering the schema
//! there when it is absent and `register` is on. Re-selection for the periodic refresh is one
//! attempt without retries ([`Readers::refresh`]): the caller keeps its current reader on any
//! failure. Must not: touch Kafka, or cache plans (the plan cache is keyed by reader id).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::plan::{ParsedSchema, ReaderSchema};
use super::{FailureKind, PartFailure, ResolveError, fetch, load};
use crate::config::{Format, PartConfig, ReaderSource};
use crate::protobuf;
use crate::registry::{Backoff, RegisteredSchema, RegistryError, SchemaSource};
use crate::wire::{MessageIndexes, SchemaId};

/// Bridge mode: the registry reader schemas are selected in, whose ids frame the output.
#[derive(Clone)]
pub struct TargetRegistry {
    pub source: Arc<SchemaSource>,
    /// Register a reader schema it does not have (`target_registry.register`).
    pub register: bool,
    /// How errors name it: `the target registry (target_registry: http://...)`.
    pub name: String,
}

impl TargetRegistry {
    /// The target registry a config names (`target_registry`), if any: its client built (not
    /// contacted) and its name for errors, URLs redacted.
    pub fn from_config(
        cfg: &crate::config::TargetRegistryConfig,
    ) -> Result<Self, crate::config::ConfigError> {
        use crate::config::{RegistrySource, redact_url};
        Ok(TargetRegistry {
            source: Arc::new(SchemaSource::from_config(&cfg.registry)?),
            register: cfg.register,
            name: match &cfg.registry.source {
                RegistrySource::Urls(urls) => {
                    let urls: Vec<String> = urls.iter().map(|u| redact_url(u)).collect();
                    format!("the target registry (target_registry: {})", urls.join(", "))
                }
                RegistrySource::StaticDir(dir) => format!(
                    "the target registry (target_registry.static_dir {})",
                    dir.display()
                ),
            },
        })
    }
}

/// Reader selection; cheap to clone, used from any task.
#[derive(Clone)]
pub struct Readers {
    pub(super) source: Arc<SchemaSource>,
    pub(super) target: Option<TargetRegistry>,
    pub(super) backoff: Backoff,
    pub(super) shutdown: CancellationToken,
}

/// Why a refresh did not produce a reader (the current one stays).
#[derive(Debug)]
pub enum RefreshError {
    /// Shutdown was requested.
    Cancelled,
    /// The registry could not answer now: try again soon.
    Unavailable(String),
    /// The registry answered, but not with a usable reader (subject or match gone, a schema
    /// that does not parse, the wrong type): try again at the next refresh.
    Failed(String),
}

/// How a selection talks to registries: retrying while unavailable (start-up), or once.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Attempts {
    UntilAnswered,
    Once,
}

/// A registry reader's schema as `source` has it: by version or by metadata.
async fn by_subject(
    source: &SchemaSource,
    reader: &ReaderSource,
) -> Result<RegisteredSchema, RegistryError> {
    match reader {
        ReaderSource::Metadata { subject, metadata } => source.by_metadata(subject, metadata).await,
        ReaderSource::Registry { subject, version } => source.by_subject(subject, *version).await,
        _ => Err(RegistryError::Invalid("not a registry reader".into())),
    }
}

/// A selection failure, before it becomes a [`ResolveError`] or a [`RefreshError`].
enum Failure {
    Cancelled,
    Failed { message: String, transient: bool },
}

impl From<ResolveError> for Failure {
    fn from(e: ResolveError) -> Self {
        match e {
            ResolveError::Cancelled => Failure::Cancelled,
            ResolveError::Failed(f) => Failure::Failed {
                message: f.message,
                transient: false,
            },
        }
    }
}

impl Readers {
    /// The registry backoff (for a caller's own retry pacing).
    pub fn backoff(&self) -> Backoff {
        self.backoff
    }

    /// Cancelled at shutdown.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// The part's reader schema (`None` for passthrough), retrying while a registry is
    /// unavailable. `at` names the config key (`routes[0].value.reader`) in errors.
    pub async fn reader(
        &self,
        at: &str,
        part: &PartConfig,
    ) -> Result<Option<ReaderSchema>, ResolveError> {
        self.select(at, part, Attempts::UntilAnswered, None)
            .await
            .map_err(|e| match e {
                Failure::Cancelled => ResolveError::Cancelled,
                Failure::Failed { message, .. } => ResolveError::Failed(PartFailure {
                    kind: FailureKind::InvalidSchema,
                    message: format!("{at}: {message}"),
                    writer_id: None,
                }),
            })
    }

    /// Selects the part's reader again, each registry asked once: `Ok(None)` when it is still
    /// the schema with id `current` (nothing is parsed then), or a new reader.
    pub async fn refresh(
        &self,
        at: &str,
        part: &PartConfig,
        current: SchemaId,
    ) -> Result<Option<ReaderSchema>, RefreshError> {
        self.select(at, part, Attempts::Once, Some(current))
            .await
            .map_err(|e| match e {
                Failure::Cancelled => RefreshError::Cancelled,
                Failure::Failed {
                    message,
                    transient: true,
                } => RefreshError::Unavailable(format!("{at}: {message}")),
                Failure::Failed { message, .. } => RefreshError::Failed(format!("{at}: {message}")),
            })
    }

    /// Where reader subjects are looked up, and how errors name it.
    fn home(&self) -> (&SchemaSource, &str) {
        match &self.target {
            Some(t) => (&t.source, t.name.as_str()),
            None => (&self.source, "the registry"),
        }
    }

    /// One registry call: retried while unavailable, or made once.
    async fn ask<T, F, Fut>(&self, attempts: Attempts, what: &str, call: F) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, RegistryError>>,
    {
        match attempts {
            Attempts::UntilAnswered => fetch(self.backoff, &self.shutdown, what, call)
                .await
                .map_err(|e| match e {
                    ResolveError::Cancelled => Failure::Cancelled,
                    ResolveError::Failed(f) => Failure::Failed {
                        message: f.message,
                        transient: false,
                    },
                }),
            Attempts::Once => {
                let mut call = call;
                let result = tokio::select! {
                    biased;
                    _ = self.shutdown.cancelled() => return Err(Failure::Cancelled),
                    r = call() => r,
                };
                result.map_err(|e| Failure::Failed {
                    transient: e.is_transient(),
                    message: e.to_string(),
                })
            }
        }
    }

    /// Like [`Self::ask`], but "does not exist" is `Ok(None)`.
    async fn ask_found<T, F, Fut>(
        &self,
        attempts: Attempts,
        what: &str,
        call: F,
    ) -> Result<Option<T>, Failure>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, RegistryError>>,
    {
        let mut call = call;
        let wrapped = || {
            let fut = call();
            async move {
                match fut.await {
                    Ok(v) => Ok(Some(v)),
                    Err(RegistryError::NotFound(_)) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        };
        self.ask(attempts, what, wrapped).await
    }

    async fn select(
        &self,
        _at: &str,
        part: &PartConfig,
        attempts: Attempts,
        unchanged: Option<SchemaId>,
    ) -> Result<Option<ReaderSchema>, Failure> {
        let Some(reader) = &part.reader else {
            return Ok(None);
        };
        let fail = |message: String| Failure::Failed {
            message,
            transient: false,
        };
        let Some(kind) = part.format else {
            return Ok(None);
        };
        let (home, home_name) = self.home();
        let (registered, origin) = match &reader.source {
            ReaderSource::File { path: file, id } => {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| fail(format!("cannot read {}: {e}", file.display())))?;
                let schema = RegisteredSchema {
                    id: *id,
                    kind,
                    text,
                    references: Vec::new(),
                    subject: None,
                    version: None,
                };
                (schema, format!("file {}", file.display()))
            }
            ReaderSource::FileBySubject {
                path: file,
                subject,
            } => {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| fail(format!("cannot read {}: {e}", file.display())))?;
                let what = format!(
                    "schema file {} under subject {subject} in {home_name}",
                    file.display()
                );
                let found = self
                    .ask_found(attempts, &what, || home.lookup(subject, kind, &text, &[]))
                    .await?;
                let id = match found {
                    Some(s) => s.id,
                    None => {
                        self.register(attempts, subject, kind, &text, &[], &what)
                            .await?
                    }
                };
                let schema = RegisteredSchema {
                    id,
                    kind,
                    text,
                    references: Vec::new(),
                    subject: Some(subject.clone()),
                    version: None,
                };
                (
                    schema,
                    format!("file {} (subject {subject})", file.display()),
                )
            }
            ReaderSource::Registry { subject, .. } | ReaderSource::Metadata { subject, .. } => {
                let what = match &reader.source {
                    ReaderSource::Metadata { metadata, .. } => {
                        let pairs: Vec<String> =
                            metadata.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        format!("subject {subject} latest with metadata {}", pairs.join(","))
                    }
                    ReaderSource::Registry { version, .. } => {
                        format!("subject {subject} version {version}")
                    }
                    _ => String::new(),
                };
                let by = |source| by_subject(source, &reader.source);
                let in_home = format!("{what} in {home_name}");
                let schema = match self.ask_found(attempts, &in_home, || by(home)).await? {
                    Some(s) => s,
                    None if self.target.is_none() => {
                        return Err(fail(format!("{in_home}: not found")));
                    }
                    None => {
                        // Bridge mode: copy it from the source registry, if allowed.
                        let from_source = format!("{what} in the source registry");
                        if !self.target.as_ref().is_some_and(|t| t.register) {
                            return Err(fail(format!(
                                "{in_home}: not found; register it there, or set `target_registry.register: true` to copy it from the source registry"
                            )));
                        }
                        let s = self
                            .ask_found(attempts, &from_source, || by(&self.source))
                            .await?
                            .ok_or_else(|| {
                                fail(format!(
                                    "{in_home}: not found, and not in the source registry either ({from_source}) to register it from"
                                ))
                            })?;
                        let id = self
                            .register(attempts, subject, s.kind, &s.text, &s.references, &in_home)
                            .await?;
                        RegisteredSchema {
                            id,
                            subject: Some(subject.clone()),
                            version: None,
                            ..s
                        }
                    }
                };
                let origin = match (&reader.source, schema.version) {
                    (ReaderSource::Metadata { .. }, Some(v)) => format!("{what} (version {v})"),
                    (_, Some(v)) => format!("subject {subject} version {v}"),
                    _ => what,
                };
                (schema, origin)
            }
        };
        if unchanged == Some(registered.id) {
            return Ok(None);
        }
        if registered.kind != kind {
            return Err(fail(format!(
                "{origin} is {:?}, but the route part's format is {:?}",
                registered.kind, part.format
            )));
        }
        let schema = load(home, self.backoff, &self.shutdown, &registered).await?;
        let message = match &schema {
            ParsedSchema::Protobuf { pool, main } => {
                let msg = match &reader.message {
                    Some(name) => pool
                        .get_message_by_name(name)
                        .ok_or_else(|| fail(format!("message {name} is not in {origin}")))?,
                    None => protobuf::message_for_indexes(pool, main, &MessageIndexes::first())
                        .map_err(|e| fail(e.to_string()))?,
                };
                let indexes = protobuf::indexes_for_message(&msg);
                Some((msg, indexes))
            }
            ParsedSchema::Avro(_) => None,
        };
        Ok(Some(ReaderSchema {
            id: registered.id,
            schema: Arc::new(schema),
            origin,
            message,
            output: part.output,
            unknown_fields: part.unknown_fields.unwrap_or_default(),
        }))
    }

    /// Bridge mode: registers a reader schema the target registry lacks, when allowed.
    async fn register(
        &self,
        attempts: Attempts,
        subject: &str,
        kind: Format,
        text: &str,
        references: &[crate::registry::SchemaReference],
        what: &str,
    ) -> Result<SchemaId, Failure> {
        let fail = |message: String| Failure::Failed {
            message,
            transient: false,
        };
        let Some(target) = self.target.as_ref().filter(|t| t.register) else {
            return Err(fail(format!(
                "{what}: not registered there; register it, or set `target_registry.register: true`"
            )));
        };
        let id = self
            .ask(attempts, &format!("registering {what}"), || {
                target.source.register(subject, kind, text, references)
            })
            .await?;
        tracing::info!(subject, id, registry = %target.name, "reader schema registered in the target registry");
        Ok(id)
    }
}
