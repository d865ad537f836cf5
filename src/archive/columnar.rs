//! Reader-encoded datums into Arrow columns: one builder per [`Shape`] node, indexed by node id,
//! fed by the shape's [`Visitor`] walk (no per-record value tree, O(1) dispatch per value), cut
//! into [`RecordBatch`]es.
//!
//! Owns: the Avro → Arrow type mapping and the builders. Must not: write files (`parquet` does),
//! resolve writer data, or parse the schema a second way (everything comes from the shape).
//!
//! Mapping: record → Struct (the root record is the batch), array → List, map → Map (Utf8 keys),
//! `["null", T]` / `[T, "null"]` → nullable T, any other union → a Struct with one nullable
//! field per non-null branch (named after the branch type; exactly one is set, or the struct is
//! null when the null branch is taken) since Parquet has no union type, enum →
//! Dictionary(Int32, Utf8), date → Date32, time-millis → Time32(ms), time-micros → Time64(us),
//! timestamp-millis/micros/nanos → Timestamp(ms|us|ns, "UTC"), local-timestamp-* → Timestamp
//! without a time zone, decimal → Decimal128(p, s) (Decimal256 when p > 38), uuid →
//! FixedSizeBinary(16) with the `arrow.uuid` extension, duration and other fixed →
//! FixedSizeBinary, bytes → Binary, string → Utf8, null → Null.
//!
//! A datum holding a value its column cannot (a string that is not UTF-8, a uuid string that is
//! not a UUID, uuid bytes not 16 long, a decimal with more digits than its precision) is rejected
//! ([`AppendError::Rejected`]): the walk goes on with a placeholder in that column, so every
//! builder stays one row longer, and [`Columns::take_batch`] leaves the datum's row out. The
//! columns take the next datum as if it had not been offered. A datum that is not valid reader
//! encoding at all (a bug upstream: datums come from the compiled plan) leaves the builders
//! inconsistent, so the columns refuse further use ([`AppendError::Broken`]).

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, BinaryBuilder, BooleanBuilder, Decimal128Builder, Decimal256Builder,
    FixedSizeBinaryBuilder, Float32Builder, Float64Builder, GenericByteBuilder, Int32Builder,
    Int64Builder, StringBuilder,
};
use arrow_array::types::{ByteArrayType, Decimal128Type, Decimal256Type, DecimalType};
use arrow_array::types::{
    Date32Type, Int32Type, Time32MillisecondType, Time64MicrosecondType, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType,
};
use arrow_array::{
    Array, ArrayRef, BooleanArray, DictionaryArray, Int32Array, Int64Array, ListArray, MapArray,
    NullArray, RecordBatch, StringArray, StructArray,
};
use arrow_buffer::{NullBufferBuilder, OffsetBuffer, ScalarBuffer, i256};
use arrow_schema::{DataType, Field, Fields, Schema as ArrowSchema, SchemaRef, TimeUnit};
use thiserror::Error;

use super::shape::{
    Kind, Logical, NodeId, Shape, ShapeError, Visitor, not_a_uuid, not_utf8, parse_uuid,
};

/// What a node's values become.
#[derive(Debug)]
enum Col {
    /// No column: the null branch of a union (the union's column records it).
    None,
    /// A record field of type null.
    Null(usize),
    /// `["null", T]`: T's column is nullable; the null branch appends a null there.
    Nullable {
        inner: NodeId,
        null_branch: u32,
    },
    /// Any other union: a struct of nullable branch fields (`branches[i]` None for null).
    Union {
        nulls: NullBufferBuilder,
        branches: Vec<Option<NodeId>>,
    },
    Bool(BooleanBuilder),
    I32(Int32Builder, Logical),
    I64(Int64Builder, Logical),
    F32(Float32Builder),
    F64(Float64Builder),
    Binary(BinaryBuilder),
    Utf8(StringBuilder),
    Fixed(FixedSizeBinaryBuilder),
    /// uuid as text, stored as its 16 bytes.
    UuidText(FixedSizeBinaryBuilder),
    /// With its precision (values wider are rejected).
    Dec128(Decimal128Builder, u8),
    Dec256(Decimal256Builder, u8),
    Enum(Int32Builder),
    Struct {
        nulls: NullBufferBuilder,
        fields: Vec<NodeId>,
    },
    List {
        offsets: Vec<i32>,
        nulls: NullBufferBuilder,
        items: NodeId,
    },
    Map {
        offsets: Vec<i32>,
        nulls: NullBufferBuilder,
        keys: StringBuilder,
        values: NodeId,
    },
}

/// Why [`Columns::append`] did not take a datum.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum AppendError {
    /// The datum holds a value its column cannot (the first such value says which): it is left
    /// out of the batch, and the columns take the next datum.
    #[error("{0}")]
    Rejected(ShapeError),
    /// The datum is not valid reader encoding, or an earlier one was not: the columns take
    /// nothing more.
    #[error("{0}")]
    Broken(ShapeError),
}

/// Columns being built for one file, cut into batches with [`Columns::take_batch`].
#[derive(Debug)]
pub struct Columns {
    shape: Arc<Shape>,
    cols: Vec<Col>,
    /// Each node's Arrow field (as a child of its parent), by node id.
    fields: Vec<Option<Arc<Field>>>,
    schema: SchemaRef,
    /// Rows in the builders since the last batch (rejected ones included).
    rows: usize,
    /// The rows (since the last batch) of rejected datums, to leave out of the batch.
    rejected: Vec<usize>,
    /// Reader-encoded bytes taken since the last batch (a proxy for the builders' size).
    pending_bytes: usize,
    broken: Option<String>,
}

const UUID_EXTENSION: &str = "arrow.uuid";

impl Columns {
    /// Builders for `shape`, whose root must be a non-recursive record.
    pub fn new(shape: Arc<Shape>) -> Result<Columns, ShapeError> {
        if let Some(name) = shape.is_recursive() {
            return Err(ShapeError::Schema(format!(
                "the recursive type {name} cannot be laid out as columns (write Avro instead)"
            )));
        }
        let root = shape.root();
        let Some(Kind::Record { .. }) = shape.node(root).map(|n| &n.kind) else {
            return Err(ShapeError::Schema(
                "a columnar file needs a record at the top of the schema".into(),
            ));
        };
        let n = shape.nodes().len();
        let mut b = Build {
            shape: &shape,
            cols: (0..n).map(|_| Col::None).collect(),
            fields: vec![None; n],
        };
        b.node(root, "root", false)?;
        let schema = match b.fields.get(root as usize).cloned().flatten() {
            Some(f) => match f.data_type() {
                DataType::Struct(fields) => Arc::new(ArrowSchema::new(fields.clone())),
                _ => return Err(ShapeError::Schema("root is not a struct".into())),
            },
            None => return Err(ShapeError::Schema("root has no column".into())),
        };
        let (cols, fields) = (b.cols, b.fields);
        Ok(Columns {
            shape,
            cols,
            fields,
            schema,
            rows: 0,
            rejected: Vec::new(),
            pending_bytes: 0,
            broken: None,
        })
    }

    /// The Arrow schema of every batch.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Rows in the builders since the last batch (those of rejected datums included).
    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Appends one reader-encoded datum as a row (see [`AppendError`] for what an error
    /// leaves behind).
    pub fn append(&mut self, datum: &[u8]) -> Result<(), AppendError> {
        if let Some(why) = &self.broken {
            return Err(AppendError::Broken(ShapeError::Value {
                node: "columns".into(),
                why: why.clone(),
            }));
        }
        let mut append = Append {
            shape: &self.shape,
            cols: &mut self.cols,
            rejected: None,
        };
        if let Err(e) = self.shape.walk(datum, &mut append) {
            self.broken = Some(format!("an earlier datum failed half-way ({e})"));
            return Err(AppendError::Broken(e));
        }
        let rejected = append.rejected.take();
        self.rows += 1;
        if let Some(why) = rejected {
            self.rejected.push(self.rows - 1);
            return Err(AppendError::Rejected(why));
        }
        self.pending_bytes += datum.len();
        Ok(())
    }

    /// The rows taken since the last batch (not those of rejected datums), as one batch,
    /// which may have no rows; the builders start over.
    pub fn take_batch(&mut self) -> Result<RecordBatch, ShapeError> {
        let root = self.shape.root();
        let rows = std::mem::take(&mut self.rows);
        self.pending_bytes = 0;
        let arr = self.finish(root)?;
        let columns = match arr.as_any().downcast_ref::<StructArray>() {
            Some(s) => s.columns().to_vec(),
            None => return Err(ShapeError::Schema("root is not a struct".into())),
        };
        let batch = RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            columns,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .map_err(|e| arrow_err("batch", e))?;
        if self.rejected.is_empty() {
            return Ok(batch);
        }
        let mut keep = vec![true; rows];
        for r in self.rejected.drain(..) {
            if let Some(k) = keep.get_mut(r) {
                *k = false;
            }
        }
        arrow_select::filter::filter_record_batch(&batch, &BooleanArray::from(keep))
            .map_err(|e| arrow_err("batch", e))
    }

    fn field_type(&self, id: NodeId) -> Result<DataType, ShapeError> {
        self.fields
            .get(id as usize)
            .and_then(|f| f.as_ref())
            .map(|f| f.data_type().clone())
            .ok_or_else(|| ShapeError::Schema(format!("node {id} has no column")))
    }

    fn field(&self, id: NodeId) -> Result<Arc<Field>, ShapeError> {
        self.fields
            .get(id as usize)
            .and_then(|f| f.clone())
            .ok_or_else(|| ShapeError::Schema(format!("node {id} has no column")))
    }

    /// Finishes node `id`'s column (and its children's) into an array.
    fn finish(&mut self, id: NodeId) -> Result<ArrayRef, ShapeError> {
        let dt = self.field_type(id)?;
        let Some(col) = self.cols.get_mut(id as usize) else {
            return Err(ShapeError::Schema(format!("no node {id}")));
        };
        let arr: ArrayRef = match col {
            Col::None => return Err(ShapeError::Schema(format!("node {id} has no column"))),
            Col::Null(n) => Arc::new(NullArray::new(std::mem::take(n))),
            Col::Nullable { inner, .. } => {
                let inner = *inner;
                return self.finish(inner);
            }
            Col::Bool(b) => Arc::new(renew(b, b.len(), BooleanBuilder::with_capacity).finish()),
            Col::I32(b, l) => {
                let a: Int32Array = renew(b, b.len(), Int32Builder::with_capacity).finish();
                match l {
                    Logical::Date => Arc::new(a.reinterpret_cast::<Date32Type>()),
                    Logical::TimeMillis => Arc::new(a.reinterpret_cast::<Time32MillisecondType>()),
                    _ => Arc::new(a),
                }
            }
            Col::I64(b, l) => {
                let a: Int64Array = renew(b, b.len(), Int64Builder::with_capacity).finish();
                let tz = matches!(
                    l,
                    Logical::TimestampMillis | Logical::TimestampMicros | Logical::TimestampNanos
                );
                match l {
                    Logical::TimeMicros => Arc::new(a.reinterpret_cast::<Time64MicrosecondType>()),
                    Logical::TimestampMillis | Logical::LocalTimestampMillis => {
                        let t = a.reinterpret_cast::<TimestampMillisecondType>();
                        Arc::new(if tz { t.with_timezone("UTC") } else { t })
                    }
                    Logical::TimestampMicros | Logical::LocalTimestampMicros => {
                        let t = a.reinterpret_cast::<TimestampMicrosecondType>();
                        Arc::new(if tz { t.with_timezone("UTC") } else { t })
                    }
                    Logical::TimestampNanos | Logical::LocalTimestampNanos => {
                        let t = a.reinterpret_cast::<TimestampNanosecondType>();
                        Arc::new(if tz { t.with_timezone("UTC") } else { t })
                    }
                    _ => Arc::new(a),
                }
            }
            Col::F32(b) => Arc::new(renew(b, b.len(), Float32Builder::with_capacity).finish()),
            Col::F64(b) => Arc::new(renew(b, b.len(), Float64Builder::with_capacity).finish()),
            Col::Binary(b) => Arc::new(renew_bytes(b).finish()),
            Col::Utf8(b) => Arc::new(renew_bytes(b).finish()),
            Col::Fixed(b) | Col::UuidText(b) => Arc::new(b.finish()),
            Col::Dec128(b, _) => Arc::new(match dt {
                DataType::Decimal128(p, s) => b
                    .finish()
                    .with_precision_and_scale(p, s)
                    .map_err(|e| arrow_err("decimal", e))?,
                _ => b.finish(),
            }),
            Col::Dec256(b, _) => Arc::new(match dt {
                DataType::Decimal256(p, s) => b
                    .finish()
                    .with_precision_and_scale(p, s)
                    .map_err(|e| arrow_err("decimal", e))?,
                _ => b.finish(),
            }),
            Col::Enum(keys) => {
                let keys = renew(keys, keys.len(), Int32Builder::with_capacity).finish();
                let symbols = match self.shape.node(id).map(|n| &n.kind) {
                    Some(Kind::Enum { symbols }) => StringArray::from_iter_values(symbols),
                    _ => return Err(ShapeError::Schema(format!("node {id} is not an enum"))),
                };
                Arc::new(
                    DictionaryArray::<Int32Type>::try_new(keys, Arc::new(symbols))
                        .map_err(|e| arrow_err("enum", e))?,
                )
            }
            Col::Struct { nulls, fields } => {
                let nulls = nulls.finish();
                let kids = fields.clone();
                let DataType::Struct(struct_fields) = dt else {
                    return Err(ShapeError::Schema(format!("node {id} is not a struct")));
                };
                let mut arrays = Vec::with_capacity(kids.len());
                for k in kids {
                    arrays.push(self.finish(k)?);
                }
                let len = nulls.as_ref().map(|n| n.len());
                match len {
                    Some(len) if arrays.is_empty() => {
                        Arc::new(StructArray::new_empty_fields(len, nulls))
                    }
                    _ => Arc::new(
                        StructArray::try_new(struct_fields, arrays, nulls)
                            .map_err(|e| arrow_err("struct", e))?,
                    ),
                }
            }
            Col::Union { nulls, branches } => {
                let nulls = nulls.finish();
                let kids: Vec<NodeId> = branches.iter().flatten().copied().collect();
                let DataType::Struct(struct_fields) = dt else {
                    return Err(ShapeError::Schema(format!("node {id} is not a struct")));
                };
                let mut arrays = Vec::with_capacity(kids.len());
                for k in kids {
                    arrays.push(self.finish(k)?);
                }
                Arc::new(
                    StructArray::try_new(struct_fields, arrays, nulls)
                        .map_err(|e| arrow_err("union", e))?,
                )
            }
            Col::List {
                offsets,
                nulls,
                items,
            } => {
                let offsets = OffsetBuffer::new(ScalarBuffer::from(renew_offsets(offsets)));
                let nulls = nulls.finish();
                let items = *items;
                let item_field = self.field(items)?;
                let values = self.finish(items)?;
                Arc::new(
                    ListArray::try_new(item_field, offsets, values, nulls)
                        .map_err(|e| arrow_err("list", e))?,
                )
            }
            Col::Map {
                offsets,
                nulls,
                keys,
                values,
            } => {
                let offsets = OffsetBuffer::new(ScalarBuffer::from(renew_offsets(offsets)));
                let nulls = nulls.finish();
                let keys: ArrayRef = Arc::new(renew_bytes(keys).finish());
                let values = *values;
                let DataType::Map(entries_field, _) = dt else {
                    return Err(ShapeError::Schema(format!("node {id} is not a map")));
                };
                let DataType::Struct(entry_fields) = entries_field.data_type().clone() else {
                    return Err(ShapeError::Schema(format!("node {id}: bad map entries")));
                };
                let vals = self.finish(values)?;
                let entries = StructArray::try_new(entry_fields, vec![keys, vals], None)
                    .map_err(|e| arrow_err("map entries", e))?;
                Arc::new(
                    MapArray::try_new(entries_field, offsets, entries, nulls, false)
                        .map_err(|e| arrow_err("map", e))?,
                )
            }
        };
        Ok(arr)
    }
}

/// The visitor one datum is appended with: the shape (for names) and the builders, borrowed
/// apart from the `Columns` that own them (no per-record reference counting).
struct Append<'a> {
    shape: &'a Shape,
    cols: &'a mut [Col],
    /// The first value of the datum its column could not take (a placeholder went in instead).
    rejected: Option<ShapeError>,
}

impl Append<'_> {
    /// Appends a null at node `id` (and a placeholder null in every child column under it, so
    /// that struct children keep their parent's length).
    fn null_deep(&mut self, id: NodeId) -> Result<(), ShapeError> {
        let Some(col) = self.cols.get_mut(id as usize) else {
            return Ok(());
        };
        match col {
            Col::None => {}
            Col::Null(n) => *n += 1,
            Col::Nullable { inner, .. } => {
                let inner = *inner;
                self.null_deep(inner)?;
            }
            Col::Union { nulls, branches } => {
                nulls.append_null();
                for i in 0..branches.len() {
                    if let Some(Col::Union { branches, .. }) = self.cols.get(id as usize)
                        && let Some(Some(b)) = branches.get(i).copied()
                    {
                        self.null_deep(b)?;
                    }
                }
            }
            Col::Struct { nulls, fields } => {
                nulls.append_null();
                for i in 0..fields.len() {
                    if let Some(Col::Struct { fields, .. }) = self.cols.get(id as usize)
                        && let Some(f) = fields.get(i).copied()
                    {
                        self.null_deep(f)?;
                    }
                }
            }
            Col::List { offsets, nulls, .. } | Col::Map { offsets, nulls, .. } => {
                let last = offsets.last().copied().unwrap_or(0);
                offsets.push(last);
                nulls.append_null();
            }
            Col::Bool(b) => b.append_null(),
            Col::I32(b, _) | Col::Enum(b) => b.append_null(),
            Col::I64(b, _) => b.append_null(),
            Col::F32(b) => b.append_null(),
            Col::F64(b) => b.append_null(),
            Col::Binary(b) => b.append_null(),
            Col::Utf8(b) => b.append_null(),
            Col::Fixed(b) | Col::UuidText(b) => b.append_null(),
            Col::Dec128(b, _) => b.append_null(),
            Col::Dec256(b, _) => b.append_null(),
        }
        Ok(())
    }

    /// Notes that the datum is rejected (the first reason is kept); the caller appends a
    /// placeholder so that the walk can go on.
    #[cold]
    fn reject(&mut self, id: NodeId, why: String) {
        if self.rejected.is_none() {
            self.rejected = Some(ShapeError::Value {
                node: self.shape.path(id),
                why,
            });
        }
    }

    /// The width of node `id`'s fixed-size column (a fixed's size; uuid bytes: 16).
    fn fixed_width(&self, id: NodeId) -> usize {
        match self.shape.node(id).map(|n| &n.kind) {
            Some(Kind::Fixed { size }) => *size,
            _ => 16,
        }
    }

    fn mismatch(&self, id: NodeId, what: &str) -> ShapeError {
        ShapeError::Value {
            node: self.node_name(id),
            why: format!("a {what} value where the column holds something else"),
        }
    }

    fn node_name(&self, id: NodeId) -> String {
        self.shape
            .node(id)
            .map_or_else(|| format!("node {id}"), |n| n.name.clone())
    }

    #[inline]
    fn col(&mut self, id: NodeId) -> Result<&mut Col, ShapeError> {
        match self.cols.get_mut(id as usize) {
            Some(c) => Ok(c),
            None => Err(ShapeError::Schema(format!("no node {id}"))),
        }
    }
}

/// Puts an empty builder with room for `len` values in `b`'s place and returns `b` (to be
/// finished): the next batch is likely as big, so its builders do not regrow from nothing.
fn renew<B>(b: &mut B, len: usize, with_capacity: impl FnOnce(usize) -> B) -> B {
    std::mem::replace(b, with_capacity(len))
}

/// `renew` for string and binary builders: room for as many values and as many bytes.
fn renew_bytes<T: ByteArrayType>(b: &mut GenericByteBuilder<T>) -> GenericByteBuilder<T> {
    let bytes = b.values_slice().len();
    renew(b, b.len(), |n| GenericByteBuilder::with_capacity(n, bytes))
}

/// A batch's offsets, leaving a fresh `[0]` with room for as many.
fn renew_offsets(offsets: &mut Vec<i32>) -> Vec<i32> {
    let mut fresh = Vec::with_capacity(offsets.len());
    fresh.push(0);
    std::mem::replace(offsets, fresh)
}

fn arrow_err(what: &str, e: arrow_schema::ArrowError) -> ShapeError {
    ShapeError::Value {
        node: what.into(),
        why: e.to_string(),
    }
}

fn push_offset(offsets: &mut Vec<i32>, n: u64) -> Result<(), ShapeError> {
    let last = offsets.last().copied().unwrap_or(0);
    let next = i64::from(last) + n as i64;
    let next = i32::try_from(next).map_err(|_| ShapeError::Value {
        node: "list".into(),
        why: "more than 2^31 items in one batch".into(),
    })?;
    offsets.push(next);
    Ok(())
}

/// Why a decimal (`unscaled`: its unscaled value where it fits the Arrow type at all; `bytes`:
/// its Avro bytes) is refused by a column of `precision` digits.
#[cold]
fn too_many_digits(unscaled: Option<String>, bytes: &[u8], precision: u8) -> String {
    match unscaled {
        Some(x) => format!("the unscaled decimal {x} has more than {precision} digits"),
        None => format!(
            "a {}-byte decimal has more than {precision} digits",
            bytes.len()
        ),
    }
}

/// Big-endian two's complement (Avro's decimal bytes) as an i128, if it fits.
pub(crate) fn be_i128(b: &[u8]) -> Option<i128> {
    if b.len() > 16 {
        // Wider, but still fits when the extra bytes are only sign extension.
        let (head, tail) = b.split_at(b.len() - 16);
        let sign = if tail.first().is_some_and(|x| x & 0x80 != 0) {
            0xff
        } else {
            0
        };
        if head.iter().any(|x| *x != sign) {
            return None;
        }
        return be_i128(tail);
    }
    let fill = if b.first().is_some_and(|x| x & 0x80 != 0) {
        0xff
    } else {
        0
    };
    let mut a = [fill; 16];
    a[16 - b.len()..].copy_from_slice(b);
    Some(i128::from_be_bytes(a))
}

fn be_i256(b: &[u8]) -> Option<i256> {
    if b.len() > 32 {
        let (head, tail) = b.split_at(b.len() - 32);
        let sign = if tail.first().is_some_and(|x| x & 0x80 != 0) {
            0xff
        } else {
            0
        };
        if head.iter().any(|x| *x != sign) {
            return None;
        }
        return be_i256(tail);
    }
    let fill = if b.first().is_some_and(|x| x & 0x80 != 0) {
        0xff
    } else {
        0
    };
    let mut a = [fill; 32];
    a[32 - b.len()..].copy_from_slice(b);
    Some(i256::from_be_bytes(a))
}

impl Visitor for Append<'_> {
    #[inline]
    fn null(&mut self, id: NodeId) -> Result<(), ShapeError> {
        if let Col::Null(n) = self.col(id)? {
            *n += 1;
        }
        Ok(())
    }
    #[inline]
    fn boolean(&mut self, id: NodeId, v: bool) -> Result<(), ShapeError> {
        match self.col(id)? {
            Col::Bool(b) => {
                b.append_value(v);
                Ok(())
            }
            _ => Err(self.mismatch(id, "boolean")),
        }
    }
    #[inline]
    fn int(&mut self, id: NodeId, v: i32) -> Result<(), ShapeError> {
        match self.col(id)? {
            Col::I32(b, _) => {
                b.append_value(v);
                Ok(())
            }
            _ => Err(self.mismatch(id, "int")),
        }
    }
    #[inline]
    fn long(&mut self, id: NodeId, v: i64) -> Result<(), ShapeError> {
        match self.col(id)? {
            Col::I64(b, _) => {
                b.append_value(v);
                Ok(())
            }
            _ => Err(self.mismatch(id, "long")),
        }
    }
    #[inline]
    fn float(&mut self, id: NodeId, v: f32) -> Result<(), ShapeError> {
        match self.col(id)? {
            Col::F32(b) => {
                b.append_value(v);
                Ok(())
            }
            _ => Err(self.mismatch(id, "float")),
        }
    }
    #[inline]
    fn double(&mut self, id: NodeId, v: f64) -> Result<(), ShapeError> {
        match self.col(id)? {
            Col::F64(b) => {
                b.append_value(v);
                Ok(())
            }
            _ => Err(self.mismatch(id, "double")),
        }
    }
    #[inline]
    fn bytes(&mut self, id: NodeId, v: &[u8]) -> Result<(), ShapeError> {
        match self.col(id)? {
            Col::Binary(b) => {
                b.append_value(v);
                Ok(())
            }
            Col::Fixed(b) => {
                if b.append_value(v).is_err() {
                    let width = self.fixed_width(id);
                    if let Col::Fixed(b) = self.col(id)? {
                        b.append_value(vec![0; width])
                            .map_err(|e| arrow_err("fixed-size bytes", e))?;
                    }
                    self.reject(
                        id,
                        format!("{} bytes where the column holds {width}", v.len()),
                    );
                }
                Ok(())
            }
            Col::Dec128(b, p) => {
                let (p, x) = (*p, be_i128(v));
                let fits = x.filter(|x| Decimal128Type::is_valid_decimal_precision(*x, p));
                b.append_value(fits.unwrap_or(0));
                if fits.is_none() {
                    self.reject(id, too_many_digits(x.map(|x| x.to_string()), v, p));
                }
                Ok(())
            }
            Col::Dec256(b, p) => {
                let (p, x) = (*p, be_i256(v));
                let fits = x.filter(|x| Decimal256Type::is_valid_decimal_precision(*x, p));
                b.append_value(fits.unwrap_or(i256::ZERO));
                if fits.is_none() {
                    self.reject(id, too_many_digits(x.map(|x| x.to_string()), v, p));
                }
                Ok(())
            }
            _ => Err(self.mismatch(id, "bytes")),
        }
    }
    #[inline]
    fn string(&mut self, id: NodeId, v: &str) -> Result<(), ShapeError> {
        match self.col(id)? {
            Col::Utf8(b) => {
                b.append_value(v);
                Ok(())
            }
            Col::UuidText(b) => {
                let u = parse_uuid(v);
                b.append_value(u.unwrap_or_default())
                    .map_err(|e| arrow_err("uuid", e))?;
                if u.is_none() {
                    self.reject(id, not_a_uuid(v));
                }
                Ok(())
            }
            _ => Err(self.mismatch(id, "string")),
        }
    }
    #[cold]
    fn invalid_utf8(&mut self, id: NodeId, key: bool, _at: usize) -> Result<(), ShapeError> {
        match (self.col(id)?, key) {
            (Col::Map { keys, .. }, true) => keys.append_value(""),
            (Col::Utf8(b), false) => b.append_value(""),
            (Col::UuidText(b), false) => b
                .append_value([0u8; 16])
                .map_err(|e| arrow_err("uuid", e))?,
            _ => return Err(self.mismatch(id, "string")),
        }
        self.reject(id, not_utf8(key));
        Ok(())
    }
    #[inline]
    fn fixed(&mut self, id: NodeId, v: &[u8]) -> Result<(), ShapeError> {
        self.bytes(id, v)
    }
    #[inline]
    fn enumeration(&mut self, id: NodeId, index: u32) -> Result<(), ShapeError> {
        match self.col(id)? {
            Col::Enum(b) => {
                b.append_value(index as i32);
                Ok(())
            }
            _ => Err(self.mismatch(id, "enum")),
        }
    }
    #[inline]
    fn union_branch(&mut self, id: NodeId, branch: u32) -> Result<(), ShapeError> {
        match self.col(id)? {
            Col::Nullable { inner, null_branch } => {
                if branch == *null_branch {
                    let inner = *inner;
                    self.null_deep(inner)?;
                }
                Ok(())
            }
            Col::Union { nulls, branches } => {
                let taken = branches.get(branch as usize).copied().flatten();
                if taken.is_some() {
                    nulls.append_non_null();
                } else {
                    nulls.append_null();
                }
                for i in 0..branches.len() {
                    if i == branch as usize && taken.is_some() {
                        continue;
                    }
                    if let Some(Col::Union { branches, .. }) = self.cols.get(id as usize)
                        && let Some(Some(b)) = branches.get(i).copied()
                    {
                        self.null_deep(b)?;
                    }
                }
                Ok(())
            }
            _ => Err(self.mismatch(id, "union")),
        }
    }
    #[inline]
    fn record_start(&mut self, id: NodeId) -> Result<(), ShapeError> {
        if let Col::Struct { nulls, .. } = self.col(id)? {
            nulls.append_non_null();
        }
        Ok(())
    }
    #[inline]
    fn array_end(&mut self, id: NodeId, items: u64) -> Result<(), ShapeError> {
        match self.col(id)? {
            Col::List { offsets, nulls, .. } => {
                nulls.append_non_null();
                push_offset(offsets, items)
            }
            _ => Err(self.mismatch(id, "array")),
        }
    }
    #[inline]
    fn map_key(&mut self, id: NodeId, key: &str) -> Result<(), ShapeError> {
        match self.col(id)? {
            Col::Map { keys, .. } => {
                keys.append_value(key);
                Ok(())
            }
            _ => Err(self.mismatch(id, "map")),
        }
    }
    #[inline]
    fn map_end(&mut self, id: NodeId, entries: u64) -> Result<(), ShapeError> {
        match self.col(id)? {
            Col::Map { offsets, nulls, .. } => {
                nulls.append_non_null();
                push_offset(offsets, entries)
            }
            _ => Err(self.mismatch(id, "map")),
        }
    }
}

/// Builds the columns and fields, node by node from the root.
struct Build<'s> {
    shape: &'s Shape,
    cols: Vec<Col>,
    fields: Vec<Option<Arc<Field>>>,
}

impl Build<'_> {
    /// Makes node `id`'s column and returns its field named `name`.
    fn node(&mut self, id: NodeId, name: &str, nullable: bool) -> Result<Field, ShapeError> {
        let shape = self.shape;
        let node = shape
            .node(id)
            .ok_or_else(|| ShapeError::Schema(format!("no node {id}")))?;
        let mut meta = HashMap::new();
        let (col, dt, nullable) = match (&node.kind, node.logical) {
            (Kind::Null, _) => (Col::Null(0), DataType::Null, true),
            (Kind::Boolean, _) => (
                Col::Bool(BooleanBuilder::new()),
                DataType::Boolean,
                nullable,
            ),
            (Kind::Int, l) => (
                Col::I32(Int32Builder::new(), l),
                match l {
                    Logical::Date => DataType::Date32,
                    Logical::TimeMillis => DataType::Time32(TimeUnit::Millisecond),
                    _ => DataType::Int32,
                },
                nullable,
            ),
            (Kind::Long, l) => {
                let utc = Some(Arc::from("UTC"));
                let dt = match l {
                    Logical::TimeMicros => DataType::Time64(TimeUnit::Microsecond),
                    Logical::TimestampMillis => DataType::Timestamp(TimeUnit::Millisecond, utc),
                    Logical::TimestampMicros => DataType::Timestamp(TimeUnit::Microsecond, utc),
                    Logical::TimestampNanos => DataType::Timestamp(TimeUnit::Nanosecond, utc),
                    Logical::LocalTimestampMillis => {
                        DataType::Timestamp(TimeUnit::Millisecond, None)
                    }
                    Logical::LocalTimestampMicros => {
                        DataType::Timestamp(TimeUnit::Microsecond, None)
                    }
                    Logical::LocalTimestampNanos => DataType::Timestamp(TimeUnit::Nanosecond, None),
                    _ => DataType::Int64,
                };
                (Col::I64(Int64Builder::new(), l), dt, nullable)
            }
            (Kind::Float, _) => (Col::F32(Float32Builder::new()), DataType::Float32, nullable),
            (Kind::Double, _) => (Col::F64(Float64Builder::new()), DataType::Float64, nullable),
            (Kind::Bytes | Kind::Fixed { .. }, Logical::Decimal { precision, scale }) => {
                let bad = || ShapeError::Schema(format!("{}: decimal out of range", node.name));
                let s = i8::try_from(scale).map_err(|_| bad())?;
                if precision > 38 {
                    let p = u8::try_from(precision)
                        .ok()
                        .filter(|p| *p <= 76)
                        .ok_or_else(bad)?;
                    (
                        Col::Dec256(Decimal256Builder::new(), p),
                        DataType::Decimal256(p, s),
                        nullable,
                    )
                } else {
                    let p = precision as u8;
                    (
                        Col::Dec128(Decimal128Builder::new(), p),
                        DataType::Decimal128(p, s),
                        nullable,
                    )
                }
            }
            (Kind::Bytes | Kind::Fixed { .. }, Logical::Uuid) => {
                meta.insert("ARROW:extension:name".to_string(), UUID_EXTENSION.into());
                meta.insert("ARROW:extension:metadata".to_string(), String::new());
                (
                    Col::Fixed(FixedSizeBinaryBuilder::new(16)),
                    DataType::FixedSizeBinary(16),
                    nullable,
                )
            }
            (Kind::String, Logical::Uuid) => {
                meta.insert("ARROW:extension:name".to_string(), UUID_EXTENSION.into());
                meta.insert("ARROW:extension:metadata".to_string(), String::new());
                (
                    Col::UuidText(FixedSizeBinaryBuilder::new(16)),
                    DataType::FixedSizeBinary(16),
                    nullable,
                )
            }
            (Kind::Bytes, _) => (
                Col::Binary(BinaryBuilder::new()),
                DataType::Binary,
                nullable,
            ),
            (Kind::String, _) => (Col::Utf8(StringBuilder::new()), DataType::Utf8, nullable),
            (Kind::Fixed { size }, _) => {
                let n = i32::try_from(*size)
                    .map_err(|_| ShapeError::Schema(format!("{}: fixed too large", node.name)))?;
                (
                    Col::Fixed(FixedSizeBinaryBuilder::new(n)),
                    DataType::FixedSizeBinary(n),
                    nullable,
                )
            }
            (Kind::Enum { .. }, _) => (
                Col::Enum(Int32Builder::new()),
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                nullable,
            ),
            (Kind::Record { fields }, _) => {
                let mut fs = Vec::with_capacity(fields.len());
                for (fname, f) in fields {
                    fs.push(self.node(*f, fname, false)?);
                }
                let ids = fields.iter().map(|(_, f)| *f).collect();
                (
                    Col::Struct {
                        nulls: NullBufferBuilder::new(0),
                        fields: ids,
                    },
                    DataType::Struct(Fields::from(fs)),
                    nullable,
                )
            }
            (Kind::Array { items }, _) => {
                let item = self.node(*items, "item", false)?;
                (
                    Col::List {
                        offsets: vec![0],
                        nulls: NullBufferBuilder::new(0),
                        items: *items,
                    },
                    DataType::List(Arc::new(item)),
                    nullable,
                )
            }
            (Kind::Map { values }, _) => {
                let value = self.node(*values, "value", false)?;
                let entries = Field::new(
                    "key_value",
                    DataType::Struct(Fields::from(vec![
                        Field::new("key", DataType::Utf8, false),
                        value,
                    ])),
                    false,
                );
                (
                    Col::Map {
                        offsets: vec![0],
                        nulls: NullBufferBuilder::new(0),
                        keys: StringBuilder::new(),
                        values: *values,
                    },
                    DataType::Map(Arc::new(entries), false),
                    nullable,
                )
            }
            (Kind::Union { branches }, _) => {
                let is_null = |b: &NodeId| shape.node(*b).is_some_and(|n| n.kind == Kind::Null);
                let nulls: Vec<usize> = (0..branches.len())
                    .filter(|i| branches.get(*i).is_some_and(is_null))
                    .collect();
                if branches.len() == 2 && nulls.len() == 1 {
                    let null_branch = nulls[0];
                    let inner = branches[1 - null_branch];
                    let f = self.node(inner, name, true)?;
                    self.cols[id as usize] = Col::Nullable {
                        inner,
                        null_branch: null_branch as u32,
                    };
                    let f = Arc::new(f);
                    self.fields[id as usize] = Some(Arc::clone(&f));
                    return Ok(f.as_ref().clone());
                }
                let mut fs = Vec::new();
                let mut ids = Vec::with_capacity(branches.len());
                for b in branches {
                    if is_null(b) {
                        ids.push(None);
                        continue;
                    }
                    let bname = shape.node(*b).map(|n| n.name.clone()).unwrap_or_default();
                    fs.push(self.node(*b, &bname, true)?);
                    ids.push(Some(*b));
                }
                if fs.is_empty() {
                    return Err(ShapeError::Schema(format!(
                        "{name}: a union of only null has no column"
                    )));
                }
                (
                    Col::Union {
                        nulls: NullBufferBuilder::new(0),
                        branches: ids,
                    },
                    DataType::Struct(Fields::from(fs)),
                    nullable || !nulls.is_empty(),
                )
            }
        };
        let field = Field::new(name, dt, nullable).with_metadata(meta);
        self.cols[id as usize] = col;
        self.fields[id as usize] = Some(Arc::new(field.clone()));
        Ok(field)
    }
}
