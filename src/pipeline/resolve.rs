//! Turns one framed key or value into its reader-schema form.
//!
//! Owns: the writer-schema cache (parsed, by id), the plan cache ((writer id, reader id) →
//! compiled plan), the reader schemas each route part resolved at start-up, and the
//! classification of every failure into what the pipeline must do with it. Must not: touch
//! Kafka, or parse bytes itself (wire/avro/protobuf do).

use std::collections::HashMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use prost_reflect::{DescriptorPool, MessageDescriptor};

use crate::avro;
use crate::config::{
    Format, Output, PartConfig, ReaderSource, SubjectVersion, UnknownFieldsPolicy,
};
use crate::protobuf;
use crate::registry::{
    Backoff, LookupError, RegisteredSchema, RegistryError, SchemaKind, SchemaReference,
    SchemaSource, retry_transient,
};
use crate::wire::{self, MessageIndexes, SchemaId};

/// A schema parsed once and shared by every plan that uses it.
#[derive(Debug)]
pub enum ParsedSchema {
    Avro(avro::Schema),
    /// A descriptor pool built from the schema's .proto text and its references; `main` is the
    /// file name the schema's own text has in the pool.
    Protobuf {
        pool: DescriptorPool,
        main: String,
    },
}

/// The schema a route part's consumer reads, resolved at start-up, with the part's options.
#[derive(Debug, Clone)]
pub struct ReaderSchema {
    pub id: SchemaId,
    pub schema: Arc<ParsedSchema>,
    /// Where it came from, for logs and errors (`subject orders-value version 1`).
    pub origin: String,
    /// Protobuf: the reader message and its Confluent index path.
    pub message: Option<(MessageDescriptor, MessageIndexes)>,
    pub output: Output,
    pub unknown_fields: protobuf::UnknownFields,
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
    /// The record to produce is larger than the producer's `message.max.bytes`.
    TooLarge,
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
            FailureKind::TooLarge => "too-large",
        }
    }
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
pub enum CompiledPlan {
    Avro {
        plan: Box<avro::Plan>,
        dropped: Vec<Arc<str>>,
    },
    Protobuf {
        plan: protobuf::Plan,
        /// The writer message's fully-qualified name, for errors.
        writer: String,
    },
}

/// Plans are per (writer id, writer message index path, reader id, unknown-field policy).
type PlanKey = (SchemaId, MessageIndexes, SchemaId, protobuf::UnknownFields);

/// Caches and the schema source; owned by the pipeline task (no locks on the hot path).
pub struct Resolver {
    source: Arc<SchemaSource>,
    backoff: Backoff,
    shutdown: CancellationToken,
    capacity: usize,
    writers: HashMap<SchemaId, Arc<ParsedSchema>>,
    plans: HashMap<PlanKey, PlanResult>,
    /// Reader bytes before JSON rendering.
    scratch: Vec<u8>,
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
            scratch: Vec::new(),
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
        let kind = match part.format {
            Format::Avro => SchemaKind::Avro,
            Format::Protobuf => SchemaKind::Protobuf,
            Format::Passthrough => return Ok(None),
        };
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
            ReaderSource::Registry { subject, version } => {
                let s = self
                    .fetch(
                        &format!("reader schema {subject} version {version}"),
                        || self.source.by_subject(subject, *version),
                    )
                    .await
                    .map_err(|e| match e {
                        ResolveError::Failed(f) => fail(f.message),
                        e => e,
                    })?;
                let origin = format!(
                    "subject {subject} version {}",
                    s.version
                        .map_or_else(|| version.to_string(), |v| v.to_string())
                );
                (s, origin)
            }
        };
        if registered.kind != kind {
            return Err(fail(format!(
                "{origin} is {:?}, but the route part's format is {:?}",
                registered.kind, part.format
            )));
        }
        let schema = self.load(&registered).await.map_err(|e| match e {
            ResolveError::Failed(f) => fail(f.message),
            e => e,
        })?;
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
            unknown_fields: match part.unknown_fields.unwrap_or_default() {
                UnknownFieldsPolicy::Preserve => protobuf::UnknownFields::Preserve,
                UnknownFieldsPolicy::Drop => protobuf::UnknownFields::Drop,
            },
        }))
    }

    /// Resolves one framed `input` to `reader`, appending the result (framed, or JSON) to `out`
    /// and the dropped writer fields that held data to `lossy`; returns the writer schema id.
    pub async fn resolve(
        &mut self,
        input: &[u8],
        reader: &ReaderSchema,
        out: &mut Vec<u8>,
        lossy: &mut Vec<Arc<str>>,
    ) -> Result<Option<SchemaId>, ResolveError> {
        let framing = |e: wire::FramingError, writer_id| {
            ResolveError::Failed(PartFailure {
                kind: FailureKind::Framing,
                message: e.to_string(),
                writer_id,
            })
        };
        let framed = wire::parse(input).map_err(|e| framing(e, None))?;
        let writer_id = framed.schema_id;
        let (indexes, body) = match &*reader.schema {
            ParsedSchema::Avro(_) => (MessageIndexes::default(), framed.payload),
            ParsedSchema::Protobuf { .. } => wire::parse_message_indexes(framed.payload)
                .map_err(|e| framing(e, Some(writer_id)))?,
        };
        let plan = self.plan(writer_id, indexes, reader).await?;
        let datum = |e: String| {
            ResolveError::Failed(PartFailure {
                kind: FailureKind::Datum,
                message: format!("writer schema id {writer_id}: {e}"),
                writer_id: Some(writer_id),
            })
        };
        let json = reader.output == Output::Json;
        let start = out.len();
        match &*plan {
            CompiledPlan::Avro { plan, .. } if plan.is_identity() && !json => {
                // Same schema: the bytes go out as they are, once the skip pass found exactly
                // one well-formed datum (a truncated or padded one is a dead letter).
                plan.validate(body).map_err(|e| datum(e.to_string()))?;
                wire::reframe(input, reader.id, out);
            }
            CompiledPlan::Avro { plan, dropped } => {
                let dst = if json {
                    self.scratch.clear();
                    &mut self.scratch
                } else {
                    wire::write_header(reader.id, out);
                    &mut *out
                };
                let loss = plan.transcode(body, dst).map_err(|e| {
                    out.truncate(start);
                    datum(e.to_string())
                })?;
                lossy.extend(loss.fields().filter_map(|i| dropped.get(i).cloned()));
            }
            CompiledPlan::Protobuf { plan, writer } => {
                let dst = if json {
                    self.scratch.clear();
                    &mut self.scratch
                } else {
                    wire::write_header(reader.id, out);
                    if let Some((_, idx)) = &reader.message {
                        wire::write_message_indexes(idx, out);
                    }
                    &mut *out
                };
                let loss = plan.transcode(body, dst).map_err(|e| {
                    out.truncate(start);
                    datum(format!("{writer}: {e}"))
                })?;
                if loss.is_lossy() {
                    lossy.extend(loss.fields().map(Arc::<str>::from));
                }
            }
        }
        if json {
            let value = match (&*reader.schema, &reader.message) {
                (ParsedSchema::Avro(schema), _) => avro::json::to_json(schema, &self.scratch),
                (ParsedSchema::Protobuf { .. }, Some((msg, _))) => {
                    protobuf::to_json(msg, &self.scratch).map_err(|e| e.to_string())
                }
                (ParsedSchema::Protobuf { .. }, None) => Err("no reader message".to_string()),
            }
            .map_err(|e| datum(format!("cannot render as JSON: {e}")))?;
            serde_json::to_writer(&mut *out, &value)
                .map_err(|e| datum(format!("cannot render as JSON: {e}")))?;
        }
        Ok(Some(writer_id))
    }

    /// The compiled plan for this writer (and message) and reader, compiled on first use.
    async fn plan(
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
        let unresolvable = |e: String| PartFailure {
            kind: FailureKind::Unresolvable,
            message: format!(
                "writer schema id {writer_id} cannot be read as reader schema id {} ({}): {e}",
                reader.id, reader.origin
            ),
            writer_id: Some(writer_id),
        };
        let compiled = match (&*writer, &*reader.schema, &reader.message) {
            (ParsedSchema::Avro(w), ParsedSchema::Avro(r), _) => avro::compile(w, r)
                .map(|plan| {
                    let dropped = plan
                        .dropped_fields()
                        .iter()
                        .map(|f| Arc::<str>::from(f.as_str()))
                        .collect();
                    Arc::new(CompiledPlan::Avro {
                        plan: Box::new(plan),
                        dropped,
                    })
                })
                .map_err(|e| unresolvable(e.to_string())),
            (
                ParsedSchema::Protobuf { pool, main },
                ParsedSchema::Protobuf { .. },
                Some((r, _)),
            ) => protobuf::message_for_indexes(pool, main, &key.1)
                .map_err(|e| PartFailure {
                    kind: FailureKind::Framing,
                    message: format!("writer schema id {writer_id}: {e}"),
                    writer_id: Some(writer_id),
                })
                .and_then(|w| {
                    protobuf::compile(&w, r, reader.unknown_fields)
                        .map(|plan| {
                            Arc::new(CompiledPlan::Protobuf {
                                plan,
                                writer: w.full_name().to_string(),
                            })
                        })
                        .map_err(|e| unresolvable(e.to_string()))
                }),
            (w, _, _) => Err(PartFailure {
                kind: FailureKind::InvalidSchema,
                message: format!(
                    "writer schema id {writer_id} is {}, but the route reads {}",
                    kind_name(w),
                    kind_name(&reader.schema)
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
        self.plans.insert(key, compiled.clone());
        compiled.map_err(ResolveError::Failed)
    }

    async fn writer(&mut self, id: SchemaId) -> Result<Arc<ParsedSchema>, ResolveError> {
        if let Some(s) = self.writers.get(&id) {
            return Ok(s.clone());
        }
        let registered = self
            .fetch(&format!("writer schema id {id}"), || self.source.by_id(id))
            .await
            .map_err(|e| match e {
                ResolveError::Failed(mut f) => {
                    f.writer_id = Some(id);
                    ResolveError::Failed(f)
                }
                e => e,
            })?;
        let parsed = Arc::new(self.load(&registered).await.map_err(|e| match e {
            ResolveError::Failed(mut f) => {
                f.writer_id = Some(id);
                ResolveError::Failed(f)
            }
            e => e,
        })?);
        if self.writers.len() >= self.capacity {
            self.writers.clear();
        }
        self.writers.insert(id, parsed.clone());
        Ok(parsed)
    }

    /// One registry call, retried while the registry is unavailable.
    async fn fetch<F, Fut>(&self, what: &str, call: F) -> Result<RegisteredSchema, ResolveError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<RegisteredSchema, RegistryError>>,
    {
        retry_transient(what, self.backoff, &self.shutdown, call)
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

    /// Parses a registered schema; for Protobuf, fetches its references (recursively, each once).
    async fn load(&self, s: &RegisteredSchema) -> Result<ParsedSchema, ResolveError> {
        let invalid = |message: String| {
            ResolveError::Failed(PartFailure {
                kind: FailureKind::InvalidSchema,
                message,
                writer_id: Some(s.id),
            })
        };
        match s.kind {
            SchemaKind::Avro => {
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
            SchemaKind::Protobuf => {
                let mut refs: Vec<(String, String)> = Vec::new();
                let mut todo: Vec<SchemaReference> = s.references.clone();
                while let Some(r) = todo.pop() {
                    if refs.iter().any(|(name, _)| *name == r.name) {
                        continue;
                    }
                    let what = format!(
                        "reference {} (subject {} version {}) of schema id {}",
                        r.name, r.subject, r.version, s.id
                    );
                    let fetched = self
                        .fetch(&what, || {
                            self.source
                                .by_subject(&r.subject, SubjectVersion::Number(r.version))
                        })
                        .await
                        .map_err(|e| match e {
                            ResolveError::Failed(f) => invalid(format!("{what}: {}", f.message)),
                            e => e,
                        })?;
                    todo.extend(fetched.references);
                    refs.push((r.name, fetched.text));
                }
                let main = format!("schemabridge/schema-{}.proto", s.id);
                protobuf::build_pool(&main, &s.text, &refs)
                    .map(|pool| ParsedSchema::Protobuf { pool, main })
                    .map_err(|e| invalid(format!("schema id {}: {e}", s.id)))
            }
        }
    }
}

fn kind_name(s: &ParsedSchema) -> &'static str {
    match s {
        ParsedSchema::Avro(_) => "Avro",
        ParsedSchema::Protobuf { .. } => "Protobuf",
    }
}
