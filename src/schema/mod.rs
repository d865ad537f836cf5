//! Schemas and plans: the public layer between the registry and everything that resolves
//! records (the gateway's pipeline, `check` and `explain`; the archive writer next).
//!
//! Owns: reader selection for a route part (`readers`: registry subject + version, newest
//! version matching schema metadata, or a file; in the target registry in bridge mode), writer
//! schemas by id (fetched, references resolved, parsed once), compiled plans per (writer,
//! writer message, reader, unknown-field policy), the caches holding them, and retries while
//! the registry is unavailable; and schema files (`files`: Avro, or `.proto` with its imports)
//! for the commands that take one. Asking "what does writer W look like to reader R?" is async
//! ([`Schemas::plan`]: it may fetch); applying the answer ([`CompiledPlan::apply`]) is not.
//! Must not: touch Kafka, or parse the Confluent framing of a message (the caller does).

pub mod arg;
mod cache;
mod error;
mod files;
mod plan;
mod readers;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use cache::Cache;
pub use error::{FailureKind, PartFailure, ResolveError};
pub use files::parse_file;
pub use plan::{CompileError, CompiledPlan, ParsedSchema, ReaderSchema};
pub use readers::{Readers, RefreshError, TargetRegistry};

use crate::avro;
use crate::config::{PartConfig, SubjectVersion};
use crate::protobuf;
use crate::registry::{
    Backoff, Format, LookupError, RegisteredSchema, RegistryError, SchemaReference, SchemaSource,
    retry_transient,
};
use crate::wire::{MessageIndexes, SchemaId};

type PlanResult = Result<Arc<CompiledPlan>, PartFailure>;

/// Plans are per (writer id, writer message index path, reader id, unknown-field policy).
type PlanKey = (SchemaId, MessageIndexes, SchemaId, protobuf::UnknownFields);

/// How much the caches keep, and for how long a "no such schema id" answer is believed.
#[derive(Debug, Clone, Copy)]
pub struct CachePolicy {
    /// Entries per cache (writer schemas; plans), least recently used evicted first.
    pub capacity: usize,
    /// An id the registry said does not exist is not asked for again for this long (its
    /// messages fail as `unknown-schema` meanwhile without a registry request each).
    pub not_found_ttl: Duration,
}

/// The schema source and the caches; owned by one user (the pipeline thread: no locks).
pub struct Schemas {
    source: Arc<SchemaSource>,
    backoff: Backoff,
    shutdown: CancellationToken,
    policy: CachePolicy,
    /// Parsed writer schemas by id, and (with a TTL) ids the registry does not have.
    writers: Cache<SchemaId, Result<Arc<ParsedSchema>, PartFailure>>,
    plans: Cache<PlanKey, PlanResult>,
    /// Writer schemas asked of the registry so far (the writer cache's misses).
    lookups: u64,
}

impl Schemas {
    pub fn new(
        source: Arc<SchemaSource>,
        backoff: Backoff,
        policy: CachePolicy,
        shutdown: CancellationToken,
    ) -> Self {
        Schemas {
            source,
            backoff,
            shutdown,
            policy,
            writers: Cache::new(policy.capacity),
            plans: Cache::new(policy.capacity),
            lookups: 0,
        }
    }

    /// How many writer schemas this layer has asked the registry for so far. A caller that
    /// compares it before and after a [`Schemas::plan`] knows whether that answer came from the
    /// caches or waited for the registry, however fast the registry answered.
    pub fn registry_lookups(&self) -> u64 {
        self.lookups
    }

    /// Fetches and parses a route part's reader schema, retrying while the registry is down.
    /// `at` names the config key (`routes[0].value.reader`) for errors. Readers come from the
    /// source registry; see [`Schemas::readers`] for bridge mode.
    pub async fn reader(
        &self,
        at: &str,
        part: &PartConfig,
    ) -> Result<Option<ReaderSchema>, ResolveError> {
        self.readers(None).reader(at, part).await
    }

    /// Reader selection over this layer's registry, or (bridge mode) `target`'s: a handle
    /// that any task may hold (the pipeline's start-up, the periodic refresh).
    pub fn readers(&self, target: Option<TargetRegistry>) -> Readers {
        Readers {
            source: self.source.clone(),
            target,
            backoff: self.backoff,
            shutdown: self.shutdown.clone(),
        }
    }

    /// The compiled plan for this writer (and message) and reader, compiled on first use.
    pub async fn plan(
        &mut self,
        writer_id: SchemaId,
        indexes: MessageIndexes,
        reader: &ReaderSchema,
    ) -> Result<Arc<CompiledPlan>, ResolveError> {
        let key = (writer_id, indexes, reader.id, reader.unknown_fields);
        if let Some(p) = self.plans.get(&key) {
            return p.clone().map_err(ResolveError::Failed);
        }
        let writer = self.writer(writer_id).await?;
        let compiled = CompiledPlan::compile(&writer, &key.1, reader)
            .map(Arc::new)
            .map_err(|e| PartFailure {
                kind: e.kind,
                message: e.message(&format!("writer schema id {writer_id}"), reader),
                writer_id: Some(writer_id),
            });
        if let Err(f) = &compiled {
            tracing::warn!(writer_id, reader_id = reader.id, error = %f.message, "schemas do not resolve; messages with this writer schema go to the error policy");
        }
        self.plans.insert(key, compiled.clone(), None);
        compiled.map_err(ResolveError::Failed)
    }

    /// The writer schema with this id, parsed with its references (cached; a 404 is cached for
    /// `not_found_ttl`).
    pub async fn writer(&mut self, id: SchemaId) -> Result<Arc<ParsedSchema>, ResolveError> {
        if let Some(s) = self.writers.get(&id) {
            return s.clone().map_err(ResolveError::Failed);
        }
        self.lookups += 1;
        let with_id = |e: ResolveError| match e {
            ResolveError::Failed(mut f) => {
                f.writer_id = Some(id);
                ResolveError::Failed(f)
            }
            e => e,
        };
        let registered = match self
            .fetch(&format!("writer schema id {id}"), || self.source.by_id(id))
            .await
            .map_err(with_id)
        {
            Ok(r) => r,
            Err(ResolveError::Failed(f)) if f.kind == FailureKind::UnknownSchema => {
                let ttl = (self.policy.not_found_ttl, Instant::now());
                self.writers.insert(id, Err(f.clone()), Some(ttl));
                return Err(ResolveError::Failed(f));
            }
            Err(e) => return Err(e),
        };
        let parsed = Arc::new(self.load(&registered).await.map_err(with_id)?);
        self.writers.insert(id, Ok(parsed.clone()), None);
        Ok(parsed)
    }

    /// One registry call, retried while the registry is unavailable.
    async fn fetch<F, Fut>(&self, what: &str, call: F) -> Result<RegisteredSchema, ResolveError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<RegisteredSchema, RegistryError>>,
    {
        fetch(self.backoff, &self.shutdown, what, call).await
    }

    /// Parses a registered schema, with its references fetched (recursively, each once).
    pub async fn load(&self, s: &RegisteredSchema) -> Result<ParsedSchema, ResolveError> {
        load(&self.source, self.backoff, &self.shutdown, s).await
    }
}

/// One registry call, retried while the registry is unavailable.
async fn fetch<T, F, Fut>(
    backoff: Backoff,
    shutdown: &CancellationToken,
    what: &str,
    call: F,
) -> Result<T, ResolveError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, RegistryError>>,
{
    retry_transient(what, backoff, shutdown, call)
        .await
        .map_err(|e| match e {
            LookupError::Cancelled => ResolveError::Cancelled,
            LookupError::Registry(e) => ResolveError::Failed(PartFailure {
                kind: match e {
                    RegistryError::NotFound(_) => FailureKind::UnknownSchema,
                    _ => FailureKind::InvalidSchema,
                },
                message: e.to_string(),
                writer_id: None,
            }),
        })
}

/// Parses a registered schema, with its references fetched from `source` (recursively, each
/// once).
async fn load(
    source: &SchemaSource,
    backoff: Backoff,
    shutdown: &CancellationToken,
    s: &RegisteredSchema,
) -> Result<ParsedSchema, ResolveError> {
    let invalid = |message: String| {
        ResolveError::Failed(PartFailure {
            kind: FailureKind::InvalidSchema,
            message,
            writer_id: Some(s.id),
        })
    };
    let refs = references(source, backoff, shutdown, s).await?;
    match s.kind {
        Format::Avro => {
            let text = if refs.is_empty() {
                s.text.clone()
            } else {
                let texts: Vec<String> = refs.into_iter().map(|(_, text)| text).collect();
                avro::inline_references(&s.text, &texts)
                    .map_err(|e| invalid(format!("schema id {}: {e}", s.id)))?
            };
            avro::Schema::parse_str(&text)
                .map(ParsedSchema::Avro)
                .map_err(|e| invalid(format!("schema id {} is not valid Avro: {e}", s.id)))
        }
        Format::Protobuf => {
            let main = format!("schemabridge/schema-{}.proto", s.id);
            protobuf::build_pool(&main, &s.text, &refs)
                .map(|pool| ParsedSchema::Protobuf { pool, main })
                .map_err(|e| invalid(format!("schema id {}: {e}", s.id)))
        }
    }
}

/// The (name, text) of every schema `s` references, directly or through another reference,
/// each fetched once, in the order they were reached.
async fn references(
    source: &SchemaSource,
    backoff: Backoff,
    shutdown: &CancellationToken,
    s: &RegisteredSchema,
) -> Result<Vec<(String, String)>, ResolveError> {
    let mut refs: Vec<(String, String)> = Vec::new();
    let mut todo: Vec<SchemaReference> = s.references.iter().rev().cloned().collect();
    while let Some(r) = todo.pop() {
        if refs.iter().any(|(name, _)| *name == r.name) {
            continue;
        }
        let what = format!(
            "reference {} (subject {} version {}) of schema id {}",
            r.name, r.subject, r.version, s.id
        );
        let fetched: RegisteredSchema = fetch(backoff, shutdown, &what, || {
            source.by_subject(&r.subject, SubjectVersion::Number(r.version))
        })
        .await
        .map_err(|e| match e {
            ResolveError::Failed(f) => ResolveError::Failed(PartFailure {
                kind: FailureKind::InvalidSchema,
                message: format!("{what}: {}", f.message),
                writer_id: Some(s.id),
            }),
            e => e,
        })?;
        todo.extend(fetched.references.into_iter().rev());
        refs.push((r.name, fetched.text));
    }
    Ok(refs)
}
