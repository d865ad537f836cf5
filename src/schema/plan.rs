//! Parsed schemas, the reader a route part resolved, and compiled plans applied to bytes.
//!
//! Owns: applying a compiled plan to one message body, synchronously (a cache hit never
//! touches async code): the reader's framing, the skip pass for identical Avro schemas, the
//! lossy-field report and the JSON output. Must not: fetch schemas or parse the Confluent
//! framing of the input (the caller hands over the body).

use std::sync::Arc;

use prost_reflect::{DescriptorPool, MessageDescriptor};

use super::{FailureKind, PartFailure};
use crate::avro;
use crate::config::Output;
use crate::protobuf;
use crate::resolution::Change;
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

impl CompiledPlan {
    /// What the plan does to each field (kept, renamed, promoted, defaulted, dropped, ...),
    /// recorded when it was compiled.
    pub fn changes(&self) -> &[Change] {
        match self {
            CompiledPlan::Avro { plan, .. } => plan.changes(),
            CompiledPlan::Protobuf { plan, .. } => plan.changes(),
        }
    }

    /// Resolves one message body written with `writer_id` to `reader`, appending the result
    /// (framed, or JSON) to `out` and the dropped writer fields that held data to `lossy`.
    /// `input` is the whole framed message (reframed as is when the schemas are identical);
    /// `scratch` holds the reader bytes before JSON rendering.
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &self,
        writer_id: SchemaId,
        input: &[u8],
        body: &[u8],
        reader: &ReaderSchema,
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
        lossy: &mut Vec<Arc<str>>,
    ) -> Result<(), PartFailure> {
        let datum = |e: String| PartFailure {
            kind: FailureKind::Datum,
            message: format!("writer schema id {writer_id}: {e}"),
            writer_id: Some(writer_id),
        };
        let json = reader.output == Output::Json;
        let start = out.len();
        match self {
            CompiledPlan::Avro { plan, .. } if plan.is_identity() && !json => {
                // Same schema: the bytes go out as they are, once the skip pass found exactly
                // one well-formed datum (a truncated or padded one is a dead letter).
                plan.validate(body).map_err(|e| datum(e.to_string()))?;
                wire::reframe(input, reader.id, out);
            }
            CompiledPlan::Avro { plan, dropped } => {
                let dst = if json {
                    scratch.clear();
                    &mut *scratch
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
                    scratch.clear();
                    &mut *scratch
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
                (ParsedSchema::Avro(schema), _) => avro::json::to_json(schema, scratch),
                (ParsedSchema::Protobuf { .. }, Some((msg, _))) => {
                    protobuf::to_json(msg, scratch).map_err(|e| e.to_string())
                }
                (ParsedSchema::Protobuf { .. }, None) => Err("no reader message".to_string()),
            }
            .map_err(|e| datum(format!("cannot render as JSON: {e}")))?;
            serde_json::to_writer(&mut *out, &value)
                .map_err(|e| datum(format!("cannot render as JSON: {e}")))?;
        }
        Ok(())
    }
}

/// Why a writer and a reader do not make a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    /// `Unresolvable` (the schemas do not resolve), `Framing` (no such writer message) or
    /// `InvalidSchema` (one is Avro, the other Protobuf).
    pub kind: FailureKind,
    /// The engine's reason, naming the field path where there is one.
    pub reason: String,
}

impl CompileError {
    /// The whole message, for `writer` (`writer schema id 7`, `file new.avsc`) and `reader`.
    pub fn message(&self, writer: &str, reader: &ReaderSchema) -> String {
        match self.kind {
            FailureKind::Unresolvable => format!(
                "{writer} cannot be read as reader schema id {} ({}): {}",
                reader.id, reader.origin, self.reason
            ),
            FailureKind::InvalidSchema => format!("{writer} {}", self.reason),
            _ => format!("{writer}: {}", self.reason),
        }
    }
}

impl CompiledPlan {
    /// Compiles the resolution of `writer` (its message at `indexes`, for Protobuf) into
    /// `reader`. Pure: the caller fetched and parsed both schemas.
    pub fn compile(
        writer: &ParsedSchema,
        indexes: &MessageIndexes,
        reader: &ReaderSchema,
    ) -> Result<CompiledPlan, CompileError> {
        let unresolvable = |reason: String| CompileError {
            kind: FailureKind::Unresolvable,
            reason,
        };
        match (writer, &*reader.schema, &reader.message) {
            (ParsedSchema::Avro(w), ParsedSchema::Avro(r), _) => avro::compile(w, r)
                .map(|plan| {
                    let dropped = plan
                        .dropped_fields()
                        .iter()
                        .map(|f| Arc::<str>::from(f.as_str()))
                        .collect();
                    CompiledPlan::Avro {
                        plan: Box::new(plan),
                        dropped,
                    }
                })
                .map_err(|e| unresolvable(e.to_string())),
            (
                ParsedSchema::Protobuf { pool, main },
                ParsedSchema::Protobuf { .. },
                Some((r, _)),
            ) => {
                let w = protobuf::message_for_indexes(pool, main, indexes).map_err(|e| {
                    CompileError {
                        kind: FailureKind::Framing,
                        reason: e.to_string(),
                    }
                })?;
                protobuf::compile(&w, r, reader.unknown_fields)
                    .map(|plan| CompiledPlan::Protobuf {
                        plan,
                        writer: w.full_name().to_string(),
                    })
                    .map_err(|e| unresolvable(e.to_string()))
            }
            (w, _, _) => Err(CompileError {
                kind: FailureKind::InvalidSchema,
                reason: format!(
                    "is {}, but the route reads {}",
                    kind_name(w),
                    kind_name(&reader.schema)
                ),
            }),
        }
    }
}

fn kind_name(s: &ParsedSchema) -> &'static str {
    match s {
        ParsedSchema::Avro(_) => "Avro",
        ParsedSchema::Protobuf { .. } => "Protobuf",
    }
}
