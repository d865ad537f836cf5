//! Turns one framed key or value into its reader-schema form.
//!
//! Owns: the writer-schema cache (parsed, by id), the plan cache ((writer id, reader id) →
//! compiled plan), the reader schemas each route part resolved at start-up, and the
//! classification of every failure into what the pipeline must do with it. Must not: touch
//! Kafka, or parse bytes itself (wire/avro/protobuf do).

use std::collections::HashMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::avro;
use crate::config::{Format, PartConfig, ReaderConfig};
use crate::registry::{
    Backoff, LookupError, RegisteredSchema, RegistryError, SchemaKind, SchemaSource,
    retry_transient,
};
use crate::wire::{self, SchemaId};

/// A schema parsed once and shared by every plan that uses it.
#[derive(Debug)]
pub enum ParsedSchema {
    Avro(avro::Schema),
}

/// The schema a route part's consumer reads, resolved at start-up.
#[derive(Debug, Clone)]
pub struct ReaderSchema {
    pub id: SchemaId,
    pub schema: Arc<ParsedSchema>,
    /// Where it came from, for logs and errors (`subject orders-value version 1`).
    pub origin: String,
}

/// Why a part could not be resolved. Each kind is a `schemabridge.error.kind` header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartFailure {
    pub kind: FailureKind,
    pub message: String,
    pub writer_id: Option<SchemaId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Not Confluent-framed (short, wrong magic byte, bad message indexes).
    Framing,
    /// The registry has no schema with the message's id.
    UnknownSchema,
    /// The writer schema is not usable (bad text, unsupported type, wrong format for the route).
    InvalidSchema,
    /// Writer and reader schemas cannot be resolved against each other.
    Unresolvable,
    /// The bytes do not decode with the writer schema, or hold a value the reader cannot take.
    Datum,
    /// The reader would not see fields that held data, and the route's `on_lossy` forbids it.
    Lossy,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Framing => "framing",
            FailureKind::UnknownSchema => "unknown-schema",
            FailureKind::InvalidSchema => "invalid-schema",
            FailureKind::Unresolvable => "unresolvable",
            FailureKind::Datum => "datum",
            FailureKind::Lossy => "lossy",
        }
    }
}

/// The result of resolving one part that did not fail.
#[derive(Debug, Default)]
pub struct Resolved {
    pub writer_id: Option<SchemaId>,
    /// Dropped writer fields that held data in this message (names from the plan).
    pub lossy_fields: Vec<Arc<str>>,
}

/// Resolution either fails for this message, or the lookup was interrupted by shutdown.
#[derive(Debug)]
pub enum ResolveError {
    Failed(PartFailure),
    Cancelled,
}

type PlanResult = Result<Arc<CompiledPlan>, PartFailure>;

/// A compiled plan plus the names of the fields it drops, shared for metrics labels.
#[derive(Debug)]
pub struct CompiledPlan {
    plan: avro::Plan,
    dropped: Vec<Arc<str>>,
}

/// Caches and the schema source; owned by the pipeline task (no locks on the hot path).
pub struct Resolver {
    source: Arc<SchemaSource>,
    backoff: Backoff,
    shutdown: CancellationToken,
    capacity: usize,
    writers: HashMap<SchemaId, Arc<ParsedSchema>>,
    plans: HashMap<(SchemaId, SchemaId), PlanResult>,
}

impl Resolver {
    pub fn new(
        source: Arc<SchemaSource>,
        backoff: Backoff,
        capacity: usize,
        shutdown: CancellationToken,
    ) -> Self {
        Resolver {
            source,
            backoff,
            shutdown,
            capacity,
            writers: HashMap::new(),
            plans: HashMap::new(),
        }
    }

    /// Fetches and parses a route part's reader schema, retrying while the registry is down.
    /// `at` names the config key (`routes[0].value.reader`) for errors.
    pub async fn reader(
        &self,
        at: &str,
        part: &PartConfig,
    ) -> Result<Option<ReaderSchema>, ResolveError> {
        let Some(reader) = &part.reader else {
            return Ok(None);
        };
        let fail = |message: String| {
            ResolveError::Failed(PartFailure {
                kind: FailureKind::InvalidSchema,
                message: format!("{at}: {message}"),
                writer_id: None,
            })
        };
        let (registered, origin) = match reader {
            ReaderConfig {
                schema_file: Some(file),
                id: Some(id),
                ..
            } => {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| fail(format!("cannot read {}: {e}", file.display())))?;
                let kind = match part.format {
                    Format::Avro => SchemaKind::Avro,
                    Format::Passthrough => return Ok(None),
                };
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
            ReaderConfig {
                subject: Some(subject),
                version,
                ..
            } => {
                let what = format!("reader schema {subject} version {version}");
                let source = &self.source;
                let s = retry_transient(&what, self.backoff, &self.shutdown, || {
                    source.by_subject(subject, *version)
                })
                .await
                .map_err(|e| match e {
                    LookupError::Cancelled => ResolveError::Cancelled,
                    LookupError::Registry(e) => fail(e.to_string()),
                })?;
                let origin = format!(
                    "subject {subject} version {}",
                    s.version.map_or_else(|| version.to_string(), |v| v.to_string())
                );
                (s, origin)
            }
            _ => return Err(fail("needs `subject` or `schema_file` with `id`".into())),
        };
        let schema = parse(&registered, part.format).map_err(|m| fail(m.message))?;
        Ok(Some(ReaderSchema {
            id: registered.id,
            schema: Arc::new(schema),
            origin,
        }))
    }

    /// Resolves one framed `input` to `reader`, appending the framed result to `out`.
    pub async fn resolve(
        &mut self,
        input: &[u8],
        reader: &ReaderSchema,
        out: &mut Vec<u8>,
    ) -> Result<Resolved, ResolveError> {
        let framed = wire::parse(input).map_err(|e| {
            ResolveError::Failed(PartFailure {
                kind: FailureKind::Framing,
                message: e.to_string(),
                writer_id: None,
            })
        })?;
        let writer_id = framed.schema_id;
        let with_id = |kind, message: String| {
            ResolveError::Failed(PartFailure {
                kind,
                message,
                writer_id: Some(writer_id),
            })
        };
        let plan = self.plan(writer_id, reader).await?;
        let start = out.len();
        if plan.plan.is_identity() {
            wire::reframe(input, reader.id, out);
            return Ok(Resolved {
                writer_id: Some(writer_id),
                lossy_fields: Vec::new(),
            });
        }
        wire::write_header(reader.id, out);
        match plan.plan.transcode(framed.payload, out) {
            Ok(loss) => {
                let lossy_fields = if loss.is_lossy() {
                    loss.fields()
                        .filter_map(|i| plan.dropped.get(i).cloned())
                        .collect()
                } else {
                    Vec::new()
                };
                Ok(Resolved {
                    writer_id: Some(writer_id),
                    lossy_fields,
                })
            }
            Err(e) => {
                out.truncate(start);
                Err(with_id(
                    FailureKind::Datum,
                    format!("writer schema id {writer_id}: {e}"),
                ))
            }
        }
    }

    /// The dropped-field names of the plan for this pair, if compiled.
    async fn plan(
        &mut self,
        writer_id: SchemaId,
        reader: &ReaderSchema,
    ) -> Result<Arc<CompiledPlan>, ResolveError> {
        if let Some(p) = self.plans.get(&(writer_id, reader.id)) {
            return p.clone().map_err(ResolveError::Failed);
        }
        let writer = self.writer(writer_id).await?;
        let compiled = match (&*writer, &*reader.schema) {
            (ParsedSchema::Avro(w), ParsedSchema::Avro(r)) => avro::compile(w, r)
                .map(|plan| {
                    let dropped = plan
                        .dropped_fields()
                        .iter()
                        .map(|f| Arc::<str>::from(f.as_str()))
                        .collect();
                    Arc::new(CompiledPlan { plan, dropped })
                })
                .map_err(|e| PartFailure {
                    kind: FailureKind::Unresolvable,
                    message: format!(
                        "writer schema id {writer_id} cannot be read as reader schema id {} ({}): {e}",
                        reader.id, reader.origin
                    ),
                    writer_id: Some(writer_id),
                }),
        };
        if let Err(f) = &compiled {
            tracing::warn!(writer_id, reader_id = reader.id, error = %f.message, "schemas do not resolve; messages with this writer schema go to the error policy");
        }
        if self.plans.len() >= self.capacity {
            self.plans.clear();
        }
        self.plans.insert((writer_id, reader.id), compiled.clone());
        compiled.map_err(ResolveError::Failed)
    }

    async fn writer(&mut self, id: SchemaId) -> Result<Arc<ParsedSchema>, ResolveError> {
        if let Some(s) = self.writers.get(&id) {
            return Ok(s.clone());
        }
        let source = &self.source;
        let what = format!("writer schema id {id}");
        let registered = retry_transient(&what, self.backoff, &self.shutdown, || source.by_id(id))
            .await
            .map_err(|e| match e {
                LookupError::Cancelled => ResolveError::Cancelled,
                LookupError::Registry(e) => ResolveError::Failed(PartFailure {
                    kind: match e {
                        RegistryError::NotFound(_) => FailureKind::UnknownSchema,
                        _ => FailureKind::InvalidSchema,
                    },
                    message: e.to_string(),
                    writer_id: Some(id),
                }),
            })?;
        let format = match registered.kind {
            SchemaKind::Avro => Format::Avro,
            SchemaKind::Protobuf => {
                return Err(ResolveError::Failed(PartFailure {
                    kind: FailureKind::InvalidSchema,
                    message: format!("writer schema id {id} is Protobuf, but this route reads Avro"),
                    writer_id: Some(id),
                }));
            }
        };
        let parsed = Arc::new(parse(&registered, format).map_err(|mut f| {
            f.writer_id = Some(id);
            ResolveError::Failed(f)
        })?);
        if self.writers.len() >= self.capacity {
            self.writers.clear();
        }
        self.writers.insert(id, parsed.clone());
        Ok(parsed)
    }
}

fn parse(s: &RegisteredSchema, format: Format) -> Result<ParsedSchema, PartFailure> {
    let invalid = |message: String| PartFailure {
        kind: FailureKind::InvalidSchema,
        message,
        writer_id: Some(s.id),
    };
    match (format, s.kind) {
        (Format::Avro, SchemaKind::Avro) => {
            if !s.references.is_empty() {
                return Err(invalid(format!(
                    "schema id {}: Avro schema references are not supported yet",
                    s.id
                )));
            }
            avro::Schema::parse_str(&s.text)
                .map(ParsedSchema::Avro)
                .map_err(|e| invalid(format!("schema id {} is not valid Avro: {e}", s.id)))
        }
        (format, kind) => Err(invalid(format!(
            "schema id {} is {kind:?}, but the route part is {format:?}",
            s.id
        ))),
    }
}
