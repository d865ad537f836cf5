//! `schemabridge explain`: a field-by-field account of what reading writer data with a reader
//! schema does, and optionally one sample record before and after.
//!
//! Owns: loading the two schemas explain compares (through `schema::arg`: files, with Protobuf
//! imports found on an include path, or a schema registry, parsed with their references as for
//! the gateway), running the engine's plan compiler on
//! them, turning its resolution report
//! (`crate::resolution`) and a sample record into an [`Explanation`], and rendering that as a
//! table or JSON. Must not touch: the engines' rules (the report is theirs), the gateway's
//! caches, Kafka. Loading ([`load`]) is the only I/O; [`explain`] and [`render_table`] are pure.

use std::path::PathBuf;
use std::sync::Arc;

use apache_avro::schema::{InnerDecimalSchema, Name, ResolvedSchema, UuidSchema};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use serde::Serialize;
use serde_json::Value as Json;
use thiserror::Error;

use crate::avro;
use crate::config::Output;
use crate::protobuf::{self, UnknownFields};
use crate::registry::SchemaSource;
use crate::resolution::{Change, ChangeKind};
use crate::schema::arg;
pub use crate::schema::arg::SchemaArg;
use crate::schema::{CompiledPlan, FailureKind, ParsedSchema, ReaderSchema};
use crate::wire::MessageIndexes;

/// What `explain` is asked.
#[derive(Debug, Clone)]
pub struct Request {
    pub writer: SchemaArg,
    pub reader: SchemaArg,
    /// Protobuf: fully-qualified message names; the schema's first message when absent.
    pub writer_message: Option<String>,
    pub reader_message: Option<String>,
    /// Base URL of a Confluent-compatible registry (for [`SchemaArg::Id`] / `Subject`).
    pub registry: Option<String>,
    /// Protobuf files: directories imports are looked up in (default: the schema file's
    /// directory and its ancestors).
    pub proto_paths: Vec<PathBuf>,
    pub unknown_fields: UnknownFields,
}

/// Why `explain` could not answer. Each names the schema side or the field path.
#[derive(Debug, Error)]
pub enum ExplainError {
    #[error("{side} schema: {message}")]
    Load { side: &'static str, message: String },
    #[error("the writer schema cannot be read with the reader schema: {0}")]
    Incompatible(String),
    #[error("writer is {writer}, reader is {reader}: both must be Avro or both Protobuf")]
    MixedFormats {
        writer: &'static str,
        reader: &'static str,
    },
    #[error("sample record: {0}")]
    Sample(String),
}

/// One side, loaded and parsed.
pub struct Side {
    /// Where it came from (`proto/orders/order_v2.avsc`, `registry schema id 3`).
    pub origin: String,
    pub schema: Arc<ParsedSchema>,
    /// Protobuf: the message explained.
    pub message: Option<MessageDescriptor>,
}

impl Side {
    fn format(&self) -> &'static str {
        match *self.schema {
            ParsedSchema::Avro(_) => "avro",
            ParsedSchema::Protobuf { .. } => "protobuf",
        }
    }

    fn name(&self) -> String {
        match (&*self.schema, &self.message) {
            (_, Some(m)) => m.full_name().to_owned(),
            (ParsedSchema::Avro(s), None) => s
                .name()
                .map_or_else(|| "(unnamed)".to_owned(), |n| n.fullname(None)),
            (ParsedSchema::Protobuf { .. }, None) => String::new(),
        }
    }
}

/// The account `explain` prints.
#[derive(Debug, Serialize)]
pub struct Explanation {
    /// `avro` or `protobuf`.
    pub format: &'static str,
    /// `origin (full name)` of each side.
    pub writer: String,
    pub reader: String,
    /// Same schema (Avro: same canonical form; Protobuf: same structure): bytes pass unchanged.
    pub identical: bool,
    /// Protobuf: `preserve` or `drop` (what happens to dropped fields' bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown_fields: Option<&'static str>,
    pub changes: Vec<Entry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample: Option<Sample>,
}

/// One report entry; with a sample, dropped fields say whether they held data in it.
#[derive(Debug, Serialize)]
pub struct Entry {
    #[serde(flatten)]
    pub change: Change,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_data: Option<bool>,
}

/// The sample record before (as the writer wrote it) and after (as the reader reads it).
#[derive(Debug, Serialize)]
pub struct Sample {
    /// Avro: Avro's JSON encoding; Protobuf: canonical JSON.
    pub before: Json,
    pub after: Json,
    /// Paths of dropped writer fields that held something other than their default.
    pub lost: Vec<String>,
}

/// Loads both sides (files or registry). The only I/O of `explain`.
pub async fn load(req: &Request) -> Result<(Side, Side), ExplainError> {
    let source = match &req.registry {
        Some(url) => Some(arg::registry_at(url).map_err(|message| ExplainError::Load {
            side: "registry",
            message,
        })?),
        None => None,
    };
    let writer = load_side(
        "writer",
        &req.writer,
        &req.writer_message,
        req,
        source.as_ref(),
    )
    .await?;
    let reader = load_side(
        "reader",
        &req.reader,
        &req.reader_message,
        req,
        source.as_ref(),
    )
    .await?;
    Ok((writer, reader))
}

async fn load_side(
    side: &'static str,
    arg: &SchemaArg,
    message: &Option<String>,
    req: &Request,
    registry: Option<&Arc<SchemaSource>>,
) -> Result<Side, ExplainError> {
    let err = |message: String| ExplainError::Load { side, message };
    let (origin, schema) = arg::load(arg, registry, &req.proto_paths)
        .await
        .map_err(err)?;
    side_of(origin, schema, message.as_deref()).map_err(err)
}

/// A loaded schema as one side of the comparison (Protobuf: the message it names, or its first).
fn side_of(origin: String, schema: ParsedSchema, message: Option<&str>) -> Result<Side, String> {
    let message = match &schema {
        ParsedSchema::Protobuf { pool, main } => {
            Some(proto_message(pool, main, message).map_err(|e| format!("{origin}: {e}"))?)
        }
        ParsedSchema::Avro(_) => None,
    };
    Ok(Side {
        origin,
        schema: Arc::new(schema),
        message,
    })
}

fn proto_message(
    pool: &DescriptorPool,
    main: &str,
    name: Option<&str>,
) -> Result<MessageDescriptor, String> {
    match name {
        Some(n) => pool
            .get_message_by_name(n)
            .ok_or_else(|| format!("no message {n} in the schema")),
        None => protobuf::message_for_indexes(pool, main, &MessageIndexes::first())
            .map_err(|e| e.to_string()),
    }
}

/// The account of reading `writer` data with `reader` (pure): the plan's report and, with a
/// sample record, the record before and after and which dropped fields held data in it.
pub fn explain(
    writer: &Side,
    reader: &Side,
    unknown: UnknownFields,
    sample: Option<&Json>,
) -> Result<Explanation, ExplainError> {
    // The gateway's own compile step: the reader as a route part would hold it.
    let reader_schema = ReaderSchema {
        id: 0,
        schema: reader.schema.clone(),
        origin: reader.origin.clone(),
        message: reader
            .message
            .as_ref()
            .map(|m| (m.clone(), protobuf::indexes_for_message(m))),
        output: Output::Framed,
        unknown_fields: unknown,
    };
    let indexes = writer
        .message
        .as_ref()
        .map_or_else(MessageIndexes::first, protobuf::indexes_for_message);
    let plan =
        CompiledPlan::compile(&writer.schema, &indexes, &reader_schema).map_err(|e| {
            match e.kind {
                FailureKind::InvalidSchema => ExplainError::MixedFormats {
                    writer: writer.format(),
                    reader: reader.format(),
                },
                _ => ExplainError::Incompatible(e.reason),
            }
        })?;
    let (identical, sample, unknown_fields) = match (&plan, &*writer.schema, &*reader.schema) {
        (CompiledPlan::Avro { plan, .. }, ParsedSchema::Avro(w), ParsedSchema::Avro(r)) => {
            let sample = sample.map(|s| avro_sample(plan, w, r, s)).transpose()?;
            (plan.is_identity(), sample, None)
        }
        (CompiledPlan::Protobuf { plan, .. }, _, _) => {
            let (Some(wm), Some(rm)) = (&writer.message, &reader.message) else {
                return Err(ExplainError::Load {
                    side: "writer or reader",
                    message: "no Protobuf message selected".into(),
                });
            };
            let sample = sample.map(|s| proto_sample(plan, wm, rm, s)).transpose()?;
            let policy = match unknown {
                UnknownFields::Preserve => "preserve",
                UnknownFields::Drop => "drop",
            };
            (plan.is_identity(), sample, Some(policy))
        }
        _ => {
            return Err(ExplainError::MixedFormats {
                writer: writer.format(),
                reader: reader.format(),
            });
        }
    };
    let changes = plan.changes().to_vec();
    let changes = changes
        .into_iter()
        .map(|change| {
            let held_data = match (&change.kind, &sample) {
                (ChangeKind::Dropped { .. }, Some(s)) => Some(s.lost.contains(&change.path)),
                _ => None,
            };
            Entry { change, held_data }
        })
        .collect();
    Ok(Explanation {
        format: writer.format(),
        writer: format!("{} ({})", writer.origin, writer.name()),
        reader: format!("{} ({})", reader.origin, reader.name()),
        identical,
        unknown_fields,
        changes,
        sample,
    })
}

fn avro_sample(
    plan: &avro::Plan,
    w: &avro::Schema,
    r: &avro::Schema,
    record: &Json,
) -> Result<Sample, ExplainError> {
    let bytes = avro_json::encode(w, record)
        .map_err(|e| ExplainError::Sample(format!("not a record of the writer schema: {e}")))?;
    let before = avro::json::to_json(w, &bytes).map_err(ExplainError::Sample)?;
    let mut out = Vec::new();
    let loss = plan
        .transcode(&bytes, &mut out)
        .map_err(|e| ExplainError::Sample(format!("cannot be read with the reader schema: {e}")))?;
    let after = avro::json::to_json(r, &out).map_err(ExplainError::Sample)?;
    let lost = loss
        .fields()
        .filter_map(|i| plan.dropped_fields().get(i).cloned())
        .collect();
    Ok(Sample {
        before,
        after,
        lost,
    })
}

fn proto_sample(
    plan: &protobuf::Plan,
    w: &MessageDescriptor,
    r: &MessageDescriptor,
    record: &Json,
) -> Result<Sample, ExplainError> {
    let msg = DynamicMessage::deserialize(w.clone(), record.clone()).map_err(|e| {
        ExplainError::Sample(format!("not a {} in canonical JSON: {e}", w.full_name()))
    })?;
    let bytes = msg.encode_to_vec();
    let before = protobuf::to_json(w, &bytes).map_err(|e| ExplainError::Sample(e.to_string()))?;
    let mut out = Vec::new();
    let loss = plan
        .transcode(&bytes, &mut out)
        .map_err(|e| ExplainError::Sample(format!("cannot be read as {}: {e}", r.full_name())))?;
    let lost = loss
        .sites()
        .filter(|s| s.kind() == protobuf::LossKind::Dropped)
        .map(|s| s.path().to_owned())
        .collect();
    let after = protobuf::to_json(r, &out).map_err(|e| ExplainError::Sample(e.to_string()))?;
    Ok(Sample {
        before,
        after,
        lost,
    })
}

/// The explanation as a table for a terminal: every entry, one line each, then the sample.
pub fn render_table(e: &Explanation) -> String {
    let mut out = String::new();
    out.push_str(&format!("writer  {}\nreader  {}\n", e.writer, e.reader));
    if e.identical {
        out.push_str("identical schemas: the bytes pass through unchanged\n");
    }
    if let Some(policy) = e.unknown_fields {
        out.push_str(&format!("unknown fields: {policy}\n"));
    }
    let rows: Vec<(String, &str, String)> = e
        .changes
        .iter()
        .map(|entry| {
            let path = if entry.change.path.is_empty() {
                "(root)".to_owned()
            } else {
                entry.change.path.clone()
            };
            (path, entry.change.kind.name(), detail(entry))
        })
        .collect();
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(4);
    let kind_width = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(6);
    out.push_str(&format!(
        "\n{:width$}  {:kind_width$}  DETAIL\n",
        "PATH", "CHANGE"
    ));
    for (path, kind, detail) in rows {
        out.push_str(format!("{path:width$}  {kind:kind_width$}  {detail}").trim_end());
        out.push('\n');
    }
    let differences = e
        .changes
        .iter()
        .filter(|c| c.change.kind.is_difference())
        .count();
    out.push_str(&format!(
        "\n{} entries, {differences} differences\n",
        e.changes.len()
    ));
    if let Some(s) = &e.sample {
        out.push_str(&format!("\nbefore (writer): {}\n", s.before));
        out.push_str(&format!("after (reader):  {}\n", s.after));
        if s.lost.is_empty() {
            out.push_str("no dropped field held data\n");
        } else {
            out.push_str(&format!(
                "dropped fields that held data: {}\n",
                s.lost.join(", ")
            ));
        }
    }
    out
}

fn detail(entry: &Entry) -> String {
    match &entry.change.kind {
        ChangeKind::Kept => String::new(),
        ChangeKind::Renamed { from } => format!("read from writer field {from}"),
        ChangeKind::Promoted { from, to } => format!("{from} -> {to}"),
        ChangeKind::Narrowed { from, to } => {
            format!("{from} -> {to} (a value may read differently)")
        }
        ChangeKind::Defaulted { value } => format!("writer lacks it: reader default {value}"),
        ChangeKind::Dropped {
            optional,
            preserved,
        } => {
            let mut d = if *optional {
                "optional in the writer".to_owned()
            } else {
                "required in the writer".to_owned()
            };
            if *preserved {
                d.push_str(", bytes kept as an unknown field");
            }
            match entry.held_data {
                Some(true) => d.push_str("; HELD DATA in the sample"),
                Some(false) => d.push_str("; empty in the sample"),
                None => {}
            }
            d
        }
        ChangeKind::EnumSymbol { symbol, to } => match to {
            Some(default) => format!("{symbol} -> {default} (reader default)"),
            None => format!("{symbol}: not in the reader enum, a record holding it fails"),
        },
        ChangeKind::UnknownEnumValue { symbol, number } => {
            format!("{symbol} = {number}: not in the reader enum, passed on as the number")
        }
        ChangeKind::UnionBranch {
            writer,
            writer_index,
            to,
            to_index,
        } => {
            let from = match writer_index {
                Some(i) => format!("branch {i} ({writer})"),
                None => format!("{writer} (not a union)"),
            };
            let into = match (to, to_index) {
                (Some(t), Some(i)) => format!("branch {i} ({t})"),
                (Some(t), None) => format!("{t} (not a union)"),
                (None, _) => "nothing: a record using it fails".to_owned(),
            };
            format!("{from} -> {into}")
        }
    }
}

/// Avro's JSON encoding (unions as `{"type": value}`, bytes and fixed as strings of code points
/// 0-255), as fastavro and avro-tools write it, into Avro binary.
mod avro_json {
    use std::collections::HashMap;

    use super::*;

    pub fn encode(schema: &avro::Schema, value: &Json) -> Result<Vec<u8>, String> {
        let resolved = ResolvedSchema::try_from(schema).map_err(|e| e.to_string())?;
        let names = resolved.get_names();
        let mut out = Vec::new();
        Encoder { names }.value(schema, value, "", &mut out, 0)?;
        Ok(out)
    }

    struct Encoder<'a, 's> {
        names: &'a HashMap<Name, &'s avro::Schema>,
    }

    fn join(path: &str, name: &str) -> String {
        if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    }

    fn bytes_of(v: &Json, at: &str) -> Result<Vec<u8>, String> {
        let s = v
            .as_str()
            .ok_or_else(|| format!("{at}: expected a string of bytes, got {v}"))?;
        s.chars()
            .map(|c| u8::try_from(u32::from(c)).map_err(|_| format!("{at}: {c:?} is not a byte")))
            .collect()
    }

    fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
        avro::write_long(out, b.len() as i64);
        out.extend_from_slice(b);
    }

    /// The name a union branch has in Avro's JSON encoding.
    fn branch_names(s: &avro::Schema) -> Vec<String> {
        use avro::Schema as S;
        let named = |n: &Name| vec![n.fullname(None), n.name().to_owned()];
        match s {
            S::Null => vec!["null".into()],
            S::Boolean => vec!["boolean".into()],
            S::Int | S::Date | S::TimeMillis => vec!["int".into()],
            S::Long
            | S::TimeMicros
            | S::TimestampMillis
            | S::TimestampMicros
            | S::TimestampNanos
            | S::LocalTimestampMillis
            | S::LocalTimestampMicros
            | S::LocalTimestampNanos => vec!["long".into()],
            S::Float => vec!["float".into()],
            S::Double => vec!["double".into()],
            S::Bytes | S::BigDecimal | S::Uuid(UuidSchema::Bytes) => vec!["bytes".into()],
            S::String | S::Uuid(UuidSchema::String) => vec!["string".into()],
            S::Decimal(d) => match &d.inner {
                InnerDecimalSchema::Bytes => vec!["bytes".into()],
                InnerDecimalSchema::Fixed(f) => named(&f.name),
            },
            S::Uuid(UuidSchema::Fixed(f)) | S::Duration(f) | S::Fixed(f) => named(&f.name),
            S::Enum(e) => named(&e.name),
            S::Record(r) => named(&r.name),
            S::Array(_) => vec!["array".into()],
            S::Map(_) => vec!["map".into()],
            S::Union(_) => Vec::new(),
            S::Ref { name } => named(name),
        }
    }

    impl Encoder<'_, '_> {
        fn value(
            &self,
            schema: &avro::Schema,
            v: &Json,
            at: &str,
            out: &mut Vec<u8>,
            depth: u32,
        ) -> Result<(), String> {
            use avro::Schema as S;
            if depth > avro::MAX_DEPTH {
                return Err(format!("{at}: nested deeper than {}", avro::MAX_DEPTH));
            }
            let expected = |what: &str| format!("{at}: expected {what}, got {v}");
            match schema {
                S::Null => v.is_null().then_some(()).ok_or_else(|| expected("null")),
                S::Boolean => {
                    out.push(u8::from(v.as_bool().ok_or_else(|| expected("a boolean"))?));
                    Ok(())
                }
                S::Int | S::Date | S::TimeMillis => {
                    let n = v
                        .as_i64()
                        .and_then(|n| i32::try_from(n).ok())
                        .ok_or_else(|| expected("an int"))?;
                    avro::write_long(out, i64::from(n));
                    Ok(())
                }
                S::Long
                | S::TimeMicros
                | S::TimestampMillis
                | S::TimestampMicros
                | S::TimestampNanos
                | S::LocalTimestampMillis
                | S::LocalTimestampMicros
                | S::LocalTimestampNanos => {
                    avro::write_long(out, v.as_i64().ok_or_else(|| expected("a long"))?);
                    Ok(())
                }
                S::Float => {
                    let x = v.as_f64().ok_or_else(|| expected("a float"))?;
                    out.extend_from_slice(&(x as f32).to_le_bytes());
                    Ok(())
                }
                S::Double => {
                    let x = v.as_f64().ok_or_else(|| expected("a double"))?;
                    out.extend_from_slice(&x.to_le_bytes());
                    Ok(())
                }
                S::Bytes | S::BigDecimal | S::Uuid(UuidSchema::Bytes) => {
                    write_bytes(out, &bytes_of(v, at)?);
                    Ok(())
                }
                S::String | S::Uuid(UuidSchema::String) => {
                    write_bytes(
                        out,
                        v.as_str().ok_or_else(|| expected("a string"))?.as_bytes(),
                    );
                    Ok(())
                }
                S::Decimal(d) => match &d.inner {
                    InnerDecimalSchema::Bytes => {
                        write_bytes(out, &bytes_of(v, at)?);
                        Ok(())
                    }
                    InnerDecimalSchema::Fixed(f) => self.fixed(f.size, v, at, out),
                },
                S::Uuid(UuidSchema::Fixed(f)) | S::Duration(f) | S::Fixed(f) => {
                    self.fixed(f.size, v, at, out)
                }
                S::Enum(e) => {
                    let s = v.as_str().ok_or_else(|| expected("an enum symbol"))?;
                    let i = e
                        .symbols
                        .iter()
                        .position(|x| x == s)
                        .ok_or_else(|| format!("{at}: {s:?} is not a symbol of {}", e.name))?;
                    avro::write_long(out, i as i64);
                    Ok(())
                }
                S::Array(a) => {
                    let items = v.as_array().ok_or_else(|| expected("an array"))?;
                    if !items.is_empty() {
                        avro::write_long(out, items.len() as i64);
                        for (i, item) in items.iter().enumerate() {
                            self.value(&a.items, item, &format!("{at}[{i}]"), out, depth + 1)?;
                        }
                    }
                    out.push(0);
                    Ok(())
                }
                S::Map(m) => {
                    let entries = v.as_object().ok_or_else(|| expected("an object"))?;
                    if !entries.is_empty() {
                        avro::write_long(out, entries.len() as i64);
                        for (k, item) in entries {
                            write_bytes(out, k.as_bytes());
                            self.value(&m.types, item, &format!("{at}{{{k}}}"), out, depth + 1)?;
                        }
                    }
                    out.push(0);
                    Ok(())
                }
                S::Union(u) => {
                    let (branch, inner) = match v {
                        Json::Null => ("null".to_owned(), v),
                        Json::Object(o) if o.len() == 1 => match o.iter().next() {
                            Some((k, inner)) => (k.clone(), inner),
                            None => return Err(expected("a union value")),
                        },
                        _ => return Err(expected(r#"null or {"type": value} for a union"#)),
                    };
                    let (i, s) = u
                        .variants()
                        .iter()
                        .enumerate()
                        .find(|(_, s)| branch_names(s).contains(&branch))
                        .ok_or_else(|| format!("{at}: the union has no branch {branch:?}"))?;
                    avro::write_long(out, i as i64);
                    self.value(s, inner, at, out, depth + 1)
                }
                S::Record(r) => {
                    let obj = v.as_object().ok_or_else(|| expected("an object"))?;
                    for f in &r.fields {
                        let fpath = join(at, &f.name);
                        match (obj.get(&f.name), &f.default) {
                            (Some(x), _) => self.value(&f.schema, x, &fpath, out, depth + 1)?,
                            (None, Some(d)) => {
                                // A default is a value of a union's first branch, unwrapped.
                                let (s, d) = match &f.schema {
                                    S::Union(u) => match u.variants().first() {
                                        Some(first) => {
                                            avro::write_long(out, 0);
                                            (first, d)
                                        }
                                        None => return Err(format!("{fpath}: empty union")),
                                    },
                                    s => (s, d),
                                };
                                self.value(s, d, &fpath, out, depth + 1)?
                            }
                            (None, None) => return Err(format!("{fpath}: missing")),
                        }
                    }
                    if let Some(extra) =
                        obj.keys().find(|k| !r.fields.iter().any(|f| f.name == **k))
                    {
                        return Err(format!(
                            "{}: not a field of {}",
                            join(at, extra),
                            r.name.fullname(None)
                        ));
                    }
                    Ok(())
                }
                S::Ref { name } => match self.names.get(name) {
                    Some(def) => self.value(def, v, at, out, depth),
                    None => Err(format!("{at}: undefined type {}", name.fullname(None))),
                },
            }
        }

        fn fixed(&self, size: usize, v: &Json, at: &str, out: &mut Vec<u8>) -> Result<(), String> {
            let b = bytes_of(v, at)?;
            if b.len() != size {
                return Err(format!(
                    "{at}: {} bytes, the fixed type has {size}",
                    b.len()
                ));
            }
            out.extend_from_slice(&b);
            Ok(())
        }
    }
}
