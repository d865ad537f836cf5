//! The reader-bytes visitor: the reader schema compiled once into an arena of [`ShapeNode`]s
//! (addressed by [`NodeId`]), and [`Shape::walk`], which decodes one reader-encoded datum and
//! calls a [`Visitor`] with the node id of every value it meets. Output formats (the columnar
//! builders, and any other renderer) are written against the visitor, so none of them re-reads
//! the schema its own way.
//!
//! Owns: the shape (logical types kept: date, time-millis/micros, timestamp-*, local-timestamp-*,
//! decimal on bytes or fixed, uuid, duration), named-type lookup, the bounds-checked walk, and
//! what every output format says about a value it refuses (its path from the root, and why).
//! Must not: resolve writer data (the input is already in the reader's encoding), allocate per
//! datum (only a refusal's message does), do I/O, or panic on any input. Varints are read by
//! `crate::avro::read_long`, the crate's one varint reader.
//!
//! A named type used in several places gets a node per place (each place is its own column);
//! a named type used inside itself (a recursive type) is a cycle back to its ancestor node, and
//! [`Shape::is_recursive`] says so (columnar formats cannot lay such a type out).

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::schema::{InnerDecimalSchema, Name, UuidSchema};
use thiserror::Error;

use crate::avro::read_long;

/// Index of a node in [`Shape::nodes`].
pub type NodeId = u32;

/// Most nodes a shape may have (a schema that reuses one named type in many places is
/// expanded once per place).
pub const MAX_SHAPE_NODES: usize = 100_000;
/// Nesting limit of one datum (recursive types), as in `crate::avro::MAX_DEPTH`.
pub const MAX_DEPTH: u32 = 256;
/// Array/map items allowed in one datum beyond the datum's byte length (zero-byte items).
pub const MAX_ZERO_SIZE_ITEMS: u64 = 1 << 20;

/// Logical type annotations the walk passes on (through the node) to the visitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logical {
    None,
    Date,
    TimeMillis,
    TimeMicros,
    TimestampMillis,
    TimestampMicros,
    TimestampNanos,
    LocalTimestampMillis,
    LocalTimestampMicros,
    LocalTimestampNanos,
    Decimal {
        precision: usize,
        scale: usize,
    },
    /// On a string (canonical text form) or on a fixed(16) / 16 bytes.
    Uuid,
    /// fixed(12): months, days, milliseconds.
    Duration,
}

/// The Avro type of a node (what its bytes look like).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Fixed { size: usize },
    Enum { symbols: Vec<String> },
    Array { items: NodeId },
    Map { values: NodeId },
    Union { branches: Vec<NodeId> },
    Record { fields: Vec<(String, NodeId)> },
}

#[derive(Debug, Clone)]
pub struct ShapeNode {
    pub kind: Kind,
    pub logical: Logical,
    /// Full name of a named type (record, enum, fixed), else the Avro type name.
    pub name: String,
}

/// Why a datum could not be walked (or a visitor refused a value).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ShapeError {
    #[error("truncated at byte {at}")]
    Truncated { at: usize },
    #[error("malformed varint at byte {at}")]
    Varint { at: usize },
    #[error("bad length {len} at byte {at}")]
    Length { len: i64, at: usize },
    #[error("union branch {index} out of range at byte {at}")]
    Union { index: i64, at: usize },
    #[error("enum index {index} out of range at byte {at}")]
    Enum { index: i64, at: usize },
    #[error("boolean byte {byte} at byte {at}")]
    Boolean { byte: u8, at: usize },
    #[error("int {value} out of range at byte {at}")]
    Int { value: i64, at: usize },
    #[error("string is not UTF-8 at byte {at}")]
    Utf8 { at: usize },
    #[error("nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("too many zero-size array or map items")]
    TooManyItems,
    #[error("{extra} bytes after the datum")]
    Trailing { extra: usize },
    /// The visitor could not take a value (the node's name says where).
    #[error("{node}: {why}")]
    Value { node: String, why: String },
    /// Compiling the shape.
    #[error("schema: {0}")]
    Schema(String),
}

/// What a walk reports. Every method gets the node of the value; defaults do nothing.
/// Order: a record is `record_start`, its fields in order, `record_end`; a union is
/// `union_branch` then the branch's value; an array is `array_start`, its items, `array_end`
/// with the item count; a map likewise, each value preceded by `map_key`.
#[allow(unused_variables)]
pub trait Visitor {
    fn null(&mut self, node: NodeId) -> Result<(), ShapeError> {
        Ok(())
    }
    fn boolean(&mut self, node: NodeId, v: bool) -> Result<(), ShapeError> {
        Ok(())
    }
    fn int(&mut self, node: NodeId, v: i32) -> Result<(), ShapeError> {
        Ok(())
    }
    fn long(&mut self, node: NodeId, v: i64) -> Result<(), ShapeError> {
        Ok(())
    }
    fn float(&mut self, node: NodeId, v: f32) -> Result<(), ShapeError> {
        Ok(())
    }
    fn double(&mut self, node: NodeId, v: f64) -> Result<(), ShapeError> {
        Ok(())
    }
    fn bytes(&mut self, node: NodeId, v: &[u8]) -> Result<(), ShapeError> {
        Ok(())
    }
    fn string(&mut self, node: NodeId, v: &str) -> Result<(), ShapeError> {
        Ok(())
    }
    /// A string (`key`: a map key) at byte `at` whose bytes are not UTF-8, in place of
    /// `string` (or `map_key`). The default stops the walk with [`ShapeError::Utf8`]; a visitor
    /// that returns `Ok` has the walk go on with the next value.
    fn invalid_utf8(&mut self, node: NodeId, key: bool, at: usize) -> Result<(), ShapeError> {
        Err(ShapeError::Utf8 { at })
    }
    fn fixed(&mut self, node: NodeId, v: &[u8]) -> Result<(), ShapeError> {
        Ok(())
    }
    fn enumeration(&mut self, node: NodeId, index: u32) -> Result<(), ShapeError> {
        Ok(())
    }
    fn union_branch(&mut self, node: NodeId, branch: u32) -> Result<(), ShapeError> {
        Ok(())
    }
    fn record_start(&mut self, node: NodeId) -> Result<(), ShapeError> {
        Ok(())
    }
    fn record_end(&mut self, node: NodeId) -> Result<(), ShapeError> {
        Ok(())
    }
    fn array_start(&mut self, node: NodeId) -> Result<(), ShapeError> {
        Ok(())
    }
    fn array_end(&mut self, node: NodeId, items: u64) -> Result<(), ShapeError> {
        Ok(())
    }
    fn map_start(&mut self, node: NodeId) -> Result<(), ShapeError> {
        Ok(())
    }
    fn map_key(&mut self, node: NodeId, key: &str) -> Result<(), ShapeError> {
        Ok(())
    }
    fn map_end(&mut self, node: NodeId, entries: u64) -> Result<(), ShapeError> {
        Ok(())
    }
}

/// The reader schema as an arena of nodes; immutable, `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Shape {
    nodes: Vec<ShapeNode>,
    root: NodeId,
    recursive: Option<String>,
}

impl Shape {
    /// Compiles `schema` (self-contained: every named type defined in it).
    pub fn compile(schema: &Schema) -> Result<Shape, ShapeError> {
        let mut names = HashMap::new();
        collect(schema, None, &mut names);
        let mut c = Compiler {
            names,
            nodes: Vec::new(),
            stack: Vec::new(),
            recursive: None,
        };
        let root = c.node(schema, None)?;
        Ok(Shape {
            nodes: c.nodes,
            root,
            recursive: c.recursive,
        })
    }

    pub fn root(&self) -> NodeId {
        self.root
    }

    pub fn nodes(&self) -> &[ShapeNode] {
        &self.nodes
    }

    pub fn node(&self, id: NodeId) -> Option<&ShapeNode> {
        self.nodes.get(id as usize)
    }

    /// Where node `id` is in a datum, for messages: field names from the root record joined
    /// by `.`, `[]` for an array's items, `{}` for a map's values, a union's branches by their
    /// type name in `<>` unless the union is `["null", T]` (`shipping.city`, `items[].sku`,
    /// `attributes{}`); the node's type name where it is not under the root.
    pub fn path(&self, id: NodeId) -> String {
        let mut seen = vec![false; self.nodes.len()];
        let mut at = Vec::new();
        if id == self.root || self.find(self.root, id, &mut seen, &mut at) {
            let mut path = String::new();
            for step in at.iter().rev() {
                path.push_str(step);
            }
            let path = path.strip_prefix('.').unwrap_or(&path).to_string();
            if !path.is_empty() {
                return path;
            }
        }
        self.node(id)
            .map_or_else(|| format!("node {id}"), |n| n.name.clone())
    }

    /// Depth-first search for `target` under `from`; on the way back, `at` gets each step
    /// (innermost first).
    fn find(&self, from: NodeId, target: NodeId, seen: &mut [bool], at: &mut Vec<String>) -> bool {
        match seen.get_mut(from as usize) {
            Some(s) if !*s => *s = true,
            _ => return false,
        }
        let Some(node) = self.node(from) else {
            return false;
        };
        let kids: Vec<(NodeId, String)> = match &node.kind {
            Kind::Record { fields } => fields.iter().map(|(n, f)| (*f, format!(".{n}"))).collect(),
            Kind::Array { items } => vec![(*items, "[]".into())],
            Kind::Map { values } => vec![(*values, "{}".into())],
            Kind::Union { branches } => {
                let nullable = branches.len() == 2
                    && branches
                        .iter()
                        .any(|b| matches!(self.node(*b).map(|n| &n.kind), Some(Kind::Null)));
                branches
                    .iter()
                    .map(|b| {
                        let step = match self.node(*b) {
                            Some(n) if !nullable => format!("<{}>", n.name),
                            _ => String::new(),
                        };
                        (*b, step)
                    })
                    .collect()
            }
            _ => Vec::new(),
        };
        for (kid, step) in kids {
            if kid == target || self.find(kid, target, seen, at) {
                at.push(step);
                return true;
            }
        }
        false
    }

    /// The name of the first named type found used inside itself, if any.
    pub fn is_recursive(&self) -> Option<&str> {
        self.recursive.as_deref()
    }

    /// Walks one reader-encoded datum (exactly one: trailing bytes are an error).
    pub fn walk(&self, datum: &[u8], visitor: &mut impl Visitor) -> Result<(), ShapeError> {
        let mut w = Walk {
            shape: self,
            buf: datum,
            pos: 0,
            depth: 0,
            budget: datum.len() as u64 + MAX_ZERO_SIZE_ITEMS,
        };
        w.value(self.root, visitor)?;
        if w.pos != datum.len() {
            return Err(ShapeError::Trailing {
                extra: datum.len() - w.pos,
            });
        }
        Ok(())
    }
}

/// A UUID's canonical text form (8-4-4-4-12 hex digits) as its 16 bytes.
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 || b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
        return None;
    }
    let mut out = [0u8; 16];
    let mut hex = b.iter().filter(|c| **c != b'-');
    for o in &mut out {
        let hi = (*hex.next()? as char).to_digit(16)?;
        let lo = (*hex.next()? as char).to_digit(16)?;
        *o = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Why a string (`key`: a map key) that is not UTF-8 is refused, in the same words by every
/// output format.
pub fn not_utf8(key: bool) -> String {
    let what = if key { "a map key" } else { "a string" };
    format!("{what} that is not UTF-8")
}

/// Why a uuid string that is not a UUID is refused.
pub fn not_a_uuid(v: &str) -> String {
    format!("{v:?} is not a UUID")
}

fn collect<'s>(schema: &'s Schema, ns: Option<&str>, names: &mut HashMap<String, &'s Schema>) {
    match schema {
        Schema::Record(r) => {
            names.insert(r.name.fullname(ns), schema);
            let inner = r.name.namespace().or(ns);
            for f in &r.fields {
                collect(&f.schema, inner, names);
            }
        }
        Schema::Enum(e) => {
            names.insert(e.name.fullname(ns), schema);
        }
        Schema::Fixed(f) | Schema::Duration(f) | Schema::Uuid(UuidSchema::Fixed(f)) => {
            names.insert(f.name.fullname(ns), schema);
        }
        Schema::Decimal(d) => {
            if let InnerDecimalSchema::Fixed(f) = &d.inner {
                names.insert(f.name.fullname(ns), schema);
            }
        }
        Schema::Array(a) => collect(&a.items, ns, names),
        Schema::Map(m) => collect(&m.types, ns, names),
        Schema::Union(u) => u.variants().iter().for_each(|v| collect(v, ns, names)),
        _ => {}
    }
}

struct Compiler<'s> {
    names: HashMap<String, &'s Schema>,
    nodes: Vec<ShapeNode>,
    /// Named records being compiled (full name, node), for recursion.
    stack: Vec<(String, NodeId)>,
    recursive: Option<String>,
}

impl<'s> Compiler<'s> {
    fn push(&mut self, kind: Kind, logical: Logical, name: String) -> Result<NodeId, ShapeError> {
        if self.nodes.len() >= MAX_SHAPE_NODES {
            return Err(ShapeError::Schema(format!(
                "more than {MAX_SHAPE_NODES} nodes (a named type reused in too many places)"
            )));
        }
        self.nodes.push(ShapeNode {
            kind,
            logical,
            name,
        });
        Ok((self.nodes.len() - 1) as NodeId)
    }

    fn full(name: &Name, ns: Option<&str>) -> String {
        name.fullname(ns)
    }

    fn node(&mut self, schema: &'s Schema, ns: Option<&str>) -> Result<NodeId, ShapeError> {
        let prim = |k: Kind, l: Logical, n: &str| (k, l, n.to_string());
        let (kind, logical, name) = match schema {
            Schema::Null => prim(Kind::Null, Logical::None, "null"),
            Schema::Boolean => prim(Kind::Boolean, Logical::None, "boolean"),
            Schema::Int => prim(Kind::Int, Logical::None, "int"),
            Schema::Long => prim(Kind::Long, Logical::None, "long"),
            Schema::Float => prim(Kind::Float, Logical::None, "float"),
            Schema::Double => prim(Kind::Double, Logical::None, "double"),
            Schema::Bytes | Schema::BigDecimal => prim(Kind::Bytes, Logical::None, "bytes"),
            Schema::String => prim(Kind::String, Logical::None, "string"),
            Schema::Date => prim(Kind::Int, Logical::Date, "int"),
            Schema::TimeMillis => prim(Kind::Int, Logical::TimeMillis, "int"),
            Schema::TimeMicros => prim(Kind::Long, Logical::TimeMicros, "long"),
            Schema::TimestampMillis => prim(Kind::Long, Logical::TimestampMillis, "long"),
            Schema::TimestampMicros => prim(Kind::Long, Logical::TimestampMicros, "long"),
            Schema::TimestampNanos => prim(Kind::Long, Logical::TimestampNanos, "long"),
            Schema::LocalTimestampMillis => prim(Kind::Long, Logical::LocalTimestampMillis, "long"),
            Schema::LocalTimestampMicros => prim(Kind::Long, Logical::LocalTimestampMicros, "long"),
            Schema::LocalTimestampNanos => prim(Kind::Long, Logical::LocalTimestampNanos, "long"),
            Schema::Uuid(UuidSchema::String) => prim(Kind::String, Logical::Uuid, "string"),
            Schema::Uuid(UuidSchema::Bytes) => prim(Kind::Bytes, Logical::Uuid, "bytes"),
            Schema::Uuid(UuidSchema::Fixed(f)) => (
                Kind::Fixed { size: f.size },
                if f.size == 16 {
                    Logical::Uuid
                } else {
                    Logical::None
                },
                Self::full(&f.name, ns),
            ),
            Schema::Decimal(d) => {
                let logical = Logical::Decimal {
                    precision: d.precision,
                    scale: d.scale,
                };
                match &d.inner {
                    InnerDecimalSchema::Bytes => prim(Kind::Bytes, logical, "bytes"),
                    InnerDecimalSchema::Fixed(f) => (
                        Kind::Fixed { size: f.size },
                        logical,
                        Self::full(&f.name, ns),
                    ),
                }
            }
            Schema::Duration(f) => (
                Kind::Fixed { size: f.size },
                Logical::Duration,
                Self::full(&f.name, ns),
            ),
            Schema::Fixed(f) => (
                Kind::Fixed { size: f.size },
                Logical::None,
                Self::full(&f.name, ns),
            ),
            Schema::Enum(e) => (
                Kind::Enum {
                    symbols: e.symbols.clone(),
                },
                Logical::None,
                Self::full(&e.name, ns),
            ),
            Schema::Array(a) => {
                let id = self.push(Kind::Null, Logical::None, "array".into())?;
                let items = self.node(&a.items, ns)?;
                self.set(id, Kind::Array { items });
                return Ok(id);
            }
            Schema::Map(m) => {
                let id = self.push(Kind::Null, Logical::None, "map".into())?;
                let values = self.node(&m.types, ns)?;
                self.set(id, Kind::Map { values });
                return Ok(id);
            }
            Schema::Union(u) => {
                let id = self.push(Kind::Null, Logical::None, "union".into())?;
                let mut branches = Vec::with_capacity(u.variants().len());
                for v in u.variants() {
                    branches.push(self.node(v, ns)?);
                }
                self.set(id, Kind::Union { branches });
                return Ok(id);
            }
            Schema::Record(r) => {
                let full = Self::full(&r.name, ns);
                let id = self.push(Kind::Null, Logical::None, full.clone())?;
                self.stack.push((full, id));
                let inner = r.name.namespace().or(ns);
                let mut fields = Vec::with_capacity(r.fields.len());
                for f in &r.fields {
                    fields.push((f.name.clone(), self.node(&f.schema, inner)?));
                }
                self.stack.pop();
                self.set(id, Kind::Record { fields });
                return Ok(id);
            }
            Schema::Ref { name } => {
                let full = Self::full(name, ns);
                if let Some((_, id)) = self.stack.iter().rev().find(|(n, _)| *n == full) {
                    self.recursive.get_or_insert_with(|| full.clone());
                    return Ok(*id);
                }
                let target = self
                    .names
                    .get(&full)
                    .copied()
                    .ok_or_else(|| ShapeError::Schema(format!("unknown named type {full}")))?;
                // A named type's own namespace applies inside it.
                let target_ns = full.rsplit_once('.').map(|(space, _)| space.to_string());
                return self.node(target, target_ns.as_deref());
            }
        };
        self.push(kind, logical, name)
    }

    fn set(&mut self, id: NodeId, kind: Kind) {
        if let Some(n) = self.nodes.get_mut(id as usize) {
            n.kind = kind;
        }
    }
}

struct Walk<'s, 'b> {
    shape: &'s Shape,
    buf: &'b [u8],
    pos: usize,
    depth: u32,
    /// Array/map items this datum may still hold.
    budget: u64,
}

impl<'b> Walk<'_, 'b> {
    #[inline]
    fn take(&mut self, n: usize) -> Result<&'b [u8], ShapeError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        let end = end.ok_or(ShapeError::Truncated { at: self.pos })?;
        let s = self.buf.get(self.pos..end).unwrap_or(&[]);
        self.pos = end;
        Ok(s)
    }

    #[inline]
    fn long(&mut self) -> Result<i64, ShapeError> {
        let at = self.pos;
        let mut rest = self.buf.get(at..).unwrap_or(&[]);
        let before = rest.len();
        let v = read_long(&mut rest).map_err(|_| {
            if before < 10 && rest.iter().all(|b| b & 0x80 != 0) {
                ShapeError::Truncated { at }
            } else {
                ShapeError::Varint { at }
            }
        })?;
        self.pos += before - rest.len();
        Ok(v)
    }

    #[inline]
    fn len(&mut self) -> Result<usize, ShapeError> {
        let at = self.pos;
        let n = self.long()?;
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= self.buf.len() - self.pos)
            .ok_or(ShapeError::Length { len: n, at })
    }

    /// A string's text, or `Err(at)` where its bytes (skipped) are not UTF-8.
    #[inline]
    fn str(&mut self) -> Result<Result<&'b str, usize>, ShapeError> {
        let n = self.len()?;
        let at = self.pos;
        Ok(std::str::from_utf8(self.take(n)?).map_err(|_| at))
    }

    /// Next block's item count; `None` at the terminating zero.
    fn block(&mut self) -> Result<Option<u64>, ShapeError> {
        let n = self.long()?;
        if n == 0 {
            return Ok(None);
        }
        if n < 0 {
            self.long()?; // the block's byte size
        }
        let n = n.unsigned_abs();
        if n > self.budget {
            return Err(ShapeError::TooManyItems);
        }
        self.budget -= n;
        Ok(Some(n))
    }

    fn value(&mut self, id: NodeId, v: &mut impl Visitor) -> Result<(), ShapeError> {
        let shape = self.shape;
        let Some(node) = shape.nodes.get(id as usize) else {
            return Err(ShapeError::Schema(format!("no node {id}")));
        };
        match &node.kind {
            Kind::Null => v.null(id),
            Kind::Boolean => {
                let at = self.pos;
                match self.take(1)?.first().copied().unwrap_or(0) {
                    0 => v.boolean(id, false),
                    1 => v.boolean(id, true),
                    byte => Err(ShapeError::Boolean { byte, at }),
                }
            }
            Kind::Int => {
                let at = self.pos;
                let x = self.long()?;
                let x = i32::try_from(x).map_err(|_| ShapeError::Int { value: x, at })?;
                v.int(id, x)
            }
            Kind::Long => {
                let x = self.long()?;
                v.long(id, x)
            }
            Kind::Float => {
                let b = self.take(4)?;
                let mut a = [0u8; 4];
                a.copy_from_slice(b);
                v.float(id, f32::from_le_bytes(a))
            }
            Kind::Double => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                v.double(id, f64::from_le_bytes(a))
            }
            Kind::Bytes => {
                let n = self.len()?;
                let b = self.take(n)?;
                v.bytes(id, b)
            }
            Kind::String => match self.str()? {
                Ok(s) => v.string(id, s),
                Err(at) => v.invalid_utf8(id, false, at),
            },
            Kind::Fixed { size } => {
                let b = self.take(*size)?;
                v.fixed(id, b)
            }
            Kind::Enum { symbols } => {
                let at = self.pos;
                let i = self.long()?;
                match u32::try_from(i) {
                    Ok(x) if (x as usize) < symbols.len() => v.enumeration(id, x),
                    _ => Err(ShapeError::Enum { index: i, at }),
                }
            }
            Kind::Union { branches } => {
                let at = self.pos;
                let i = self.long()?;
                let b = usize::try_from(i)
                    .ok()
                    .and_then(|x| branches.get(x))
                    .copied()
                    .ok_or(ShapeError::Union { index: i, at })?;
                v.union_branch(id, i as u32)?;
                self.nested(b, v)
            }
            Kind::Record { fields } => {
                v.record_start(id)?;
                for (_, f) in fields {
                    self.nested(*f, v)?;
                }
                v.record_end(id)
            }
            Kind::Array { items } => {
                v.array_start(id)?;
                let mut count = 0u64;
                while let Some(n) = self.block()? {
                    for _ in 0..n {
                        self.nested(*items, v)?;
                    }
                    count += n;
                }
                v.array_end(id, count)
            }
            Kind::Map { values } => {
                v.map_start(id)?;
                let mut count = 0u64;
                while let Some(n) = self.block()? {
                    for _ in 0..n {
                        match self.str()? {
                            Ok(k) => v.map_key(id, k)?,
                            Err(at) => v.invalid_utf8(id, true, at)?,
                        }
                        self.nested(*values, v)?;
                    }
                    count += n;
                }
                v.map_end(id, count)
            }
        }
    }

    #[inline]
    fn nested(&mut self, id: NodeId, v: &mut impl Visitor) -> Result<(), ShapeError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ShapeError::TooDeep);
        }
        let r = self.value(id, v);
        self.depth -= 1;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records every call as text, to check the walk order.
    #[derive(Default)]
    struct Trace(Vec<String>);

    impl Visitor for Trace {
        fn null(&mut self, n: NodeId) -> Result<(), ShapeError> {
            self.0.push(format!("{n}:null"));
            Ok(())
        }
        fn long(&mut self, n: NodeId, v: i64) -> Result<(), ShapeError> {
            self.0.push(format!("{n}:long {v}"));
            Ok(())
        }
        fn int(&mut self, n: NodeId, v: i32) -> Result<(), ShapeError> {
            self.0.push(format!("{n}:int {v}"));
            Ok(())
        }
        fn string(&mut self, n: NodeId, v: &str) -> Result<(), ShapeError> {
            self.0.push(format!("{n}:str {v}"));
            Ok(())
        }
        fn union_branch(&mut self, n: NodeId, b: u32) -> Result<(), ShapeError> {
            self.0.push(format!("{n}:branch {b}"));
            Ok(())
        }
        fn map_key(&mut self, n: NodeId, k: &str) -> Result<(), ShapeError> {
            self.0.push(format!("{n}:key {k}"));
            Ok(())
        }
        fn array_end(&mut self, n: NodeId, items: u64) -> Result<(), ShapeError> {
            self.0.push(format!("{n}:array_end {items}"));
            Ok(())
        }
        fn map_end(&mut self, n: NodeId, items: u64) -> Result<(), ShapeError> {
            self.0.push(format!("{n}:map_end {items}"));
            Ok(())
        }
        fn enumeration(&mut self, n: NodeId, i: u32) -> Result<(), ShapeError> {
            self.0.push(format!("{n}:enum {i}"));
            Ok(())
        }
    }

    fn schema() -> Schema {
        Schema::parse_str(
            r#"{"type":"record","name":"R","namespace":"n","fields":[
                {"name":"a","type":["null","string"]},
                {"name":"d","type":{"type":"enum","name":"E","symbols":["X","Y"]}},
                {"name":"e","type":{"type":"array","items":"long"}},
                {"name":"f","type":{"type":"map","values":"int"}},
                {"name":"g","type":"E"},
                {"name":"t","type":{"type":"long","logicalType":"timestamp-micros"}}]}"#,
        )
        .unwrap()
    }

    const DATUM: &[u8] = &[
        0x02, 0x04, b'h', b'i', // a: "hi"
        0x02, // d: Y
        0x05, 0x06, 0x02, 0x04, 0x06, 0x00, // e: [1, 2, 3] in a negative-count block
        0x02, 0x02, b'k', 0x0e, 0x00, // f: {k: 7}
        0x00, // g: X
        0x02, // t: 1
    ];

    #[test]
    fn walks_in_schema_order_with_node_ids() {
        let shape = Shape::compile(&schema()).unwrap();
        assert!(shape.is_recursive().is_none());
        let mut t = Trace::default();
        shape.walk(DATUM, &mut t).unwrap();
        assert_eq!(t.0.len(), 12, "{:?}", t.0);
        assert_eq!(t.0[0], "1:branch 1");
        assert_eq!(t.0[1], "3:str hi");
        assert!(t.0.contains(&"6:long 2".to_string()), "{:?}", t.0);
        assert!(t.0.contains(&"5:array_end 3".to_string()), "{:?}", t.0);
        assert!(t.0.contains(&"7:key k".to_string()), "{:?}", t.0);
        // The second use of the named enum has its own node.
        let enums: Vec<_> = t.0.iter().filter(|s| s.contains(":enum")).collect();
        assert_eq!(enums.len(), 2);
        assert_ne!(enums[0].split(':').next(), enums[1].split(':').next());
        let last = shape
            .nodes()
            .iter()
            .rfind(|n| n.kind == Kind::Long)
            .unwrap();
        assert_eq!(last.logical, Logical::TimestampMicros);
    }

    #[test]
    fn hostile_bytes_are_errors_never_panics() {
        let shape = Shape::compile(&schema()).unwrap();
        for cut in 0..DATUM.len() {
            let r = shape.walk(&DATUM[..cut], &mut Trace::default());
            assert!(r.is_err(), "truncated at {cut} accepted");
        }
        let mut bad_union = DATUM.to_vec();
        bad_union[0] = 0x06; // branch 3 of 2
        assert!(matches!(
            shape.walk(&bad_union, &mut Trace::default()),
            Err(ShapeError::Union { index: 3, at: 0 })
        ));
        let mut bad_enum = DATUM.to_vec();
        bad_enum[4] = 0x04;
        assert!(matches!(
            shape.walk(&bad_enum, &mut Trace::default()),
            Err(ShapeError::Enum { .. })
        ));
        let mut long_tail = DATUM.to_vec();
        long_tail.push(0);
        assert_eq!(
            shape.walk(&long_tail, &mut Trace::default()),
            Err(ShapeError::Trailing { extra: 1 })
        );
        let mut bad_len = DATUM.to_vec();
        bad_len[1] = 0x7e; // string length 63
        assert!(shape.walk(&bad_len, &mut Trace::default()).is_err());
        let mut huge_block = DATUM.to_vec();
        huge_block.splice(5..7, [0xfe, 0xff, 0xff, 0xff, 0x0f]); // a huge item count
        assert!(shape.walk(&huge_block, &mut Trace::default()).is_err());
        // Deterministic noise: never a panic.
        let mut x = 0x1234_5678_u64;
        for _ in 0..2000 {
            let mut d = DATUM.to_vec();
            for _ in 0..3 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let i = (x >> 33) as usize % d.len();
                d[i] = (x >> 17) as u8;
            }
            let _ = shape.walk(&d, &mut Trace::default());
        }
    }

    #[test]
    fn recursive_types_are_cycles_and_deep_input_is_an_error() {
        let s = Schema::parse_str(
            r#"{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},
               {"name":"next","type":["null","Node"]}]}"#,
        )
        .unwrap();
        let shape = Shape::compile(&s).unwrap();
        assert_eq!(shape.is_recursive(), Some("Node"));
        let mut deep = Vec::new();
        for _ in 0..1000 {
            deep.extend([0x02, 0x02]); // v: 1, next: Node
        }
        deep.extend([0x02, 0x00]);
        assert_eq!(
            shape.walk(&deep, &mut Trace::default()),
            Err(ShapeError::TooDeep)
        );
        assert!(shape.walk(&[0x02, 0x00], &mut Trace::default()).is_ok());
    }

    /// Paths name a value by its fields, `[]`, `{}` and (in unions other than `["null", T]`)
    /// the branch type; the root and a recursive record's repeat are found too.
    #[test]
    fn paths_name_values_from_the_root() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"R","fields":[
                {"name":"a","type":["null","string"]},
                {"name":"b","type":["int",{"type":"array","items":{"type":"map","values":"string"}}]},
                {"name":"next","type":["null","R"]}
            ]}"#,
        )
        .unwrap();
        let shape = Shape::compile(&schema).unwrap();
        let paths: Vec<String> = (0..shape.nodes().len() as NodeId)
            .map(|id| shape.path(id))
            .collect();
        for want in ["R", "a", "b<int>", "b<array>[]{}", "next"] {
            assert!(paths.iter().any(|p| p == want), "{want} in {paths:?}");
        }
        assert_eq!(shape.path(shape.root()), "R");
        assert_eq!(shape.path(NodeId::MAX), format!("node {}", NodeId::MAX));
    }
}
