//! Avro schema resolution, compiled: writer bytes in, reader bytes out.
//!
//! Owns: resolving a datum written with a *writer* schema into the encoding of a *reader* schema
//! (Avro 1.11 specification, "Schema Resolution"), reporting which writer data the reader
//! drops, and (built once, at compile time) the field-by-field resolution report
//! ([`Plan::changes`], in the [`crate::resolution`] vocabulary shared with Protobuf). Must not touch: framing (schema ids live in `wire`), schema fetching (`registry`),
//! policy (what to do with a lossy or failing datum is the pipeline's call). No I/O, never
//! awaits, never panics on input bytes.
//!
//! Start at [`compile`]: it walks writer × reader once and produces a [`Plan`]: an arena of nodes
//! addressed by index (so recursive types are index cycles, not `Rc` cycles), then lowered to a
//! flat op program. [`Plan::transcode`] runs that program over the writer bytes once per datum
//! and appends the reader encoding to `out`: copying spans through, skipping dropped fields,
//! promoting numbers, remapping enum indexes and union branches, and emitting reader defaults
//! that were pre-encoded at compile time. There is no intermediate value tree.
//! [`Plan::validate`] runs only the writer side of that walk (the validating skips), for a datum
//! that is forwarded unchanged because writer and reader are the same schema.
//!
//! Layout: `schema.rs` flattens an apache-avro `Schema` into a type arena; `compile.rs` holds the
//! resolution rules and the plan nodes; `default.rs` pre-encodes JSON defaults and zero values;
//! `lower.rs` turns the nodes into ops (copy runs, inline loops, calls); `exec.rs` is the
//! executor; `codec.rs` the bounds-checked varint/length primitives; `error.rs` the two error
//! types. `json.rs` renders reader-encoded bytes as Avro JSON.
//!
//! Speed: `schemabridge bench transcode` (and `cargo bench --bench transcode`) time the reference
//! pair against apache-avro's value path. The hot functions are `#[inline(always)]` only without
//! `debug_assertions`: a debug build keeps its executor frames small instead (the nesting limit
//! must not overflow a test thread's stack).
//!
//! Choices worth knowing:
//! - Named types match on the unqualified name, the full name, or a reader alias.
//! - A writer non-union read as a reader union takes the first reader branch of the same type,
//!   else the first reachable by promotion (Java's order; fastavro takes the first match).
//! - A writer union branch the reader cannot take is an error only when a datum uses it.
//! - Passed-through strings are not re-validated as UTF-8 (a copy stays a copy); bytes promoted
//!   to string are. Everything else a copy passes on is validated (int range, enum and union
//!   indexes, booleans, lengths, and a block's byte size against the items it holds).
//! - Lossiness compares a dropped field's bytes with the pre-encoded writer default (or zero
//!   value). A non-minimal varint or an oddly blocked empty array counts as lossy: a false
//!   positive, never a false negative.

mod codec;
mod compile;
mod default;
mod error;
mod exec;
pub mod json;
mod lower;
mod references;
mod schema;
#[cfg(test)]
mod tests;

pub use apache_avro::Schema;
/// Avro's zig-zag varint `long`, the one reader and writer for the container files, the
/// Confluent message indexes, the JSON renderer and the record generator.
pub(crate) use codec::{read_long, write_long};
pub use error::{Location, PlanError, TranscodeError};
pub use references::inline_references;

use crate::resolution::{Change, ChangeKind};
use compile::{Compiler, Node, NodeId};
use schema::Types;

/// Nesting limit of one datum, against hostile recursive input: the executor frames open at once.
/// A frame is entered for each array/map item, union branch and record that the plan does not
/// inline (recursive and shared records), so every recursion through the schema counts.
pub const MAX_DEPTH: u32 = 256;
/// Total array items whose writer encoding is zero bytes (null, fixed(0), records of those)
/// allowed in one datum. Other items are bounded by the input length itself.
pub const MAX_ZERO_SIZE_ITEMS: u64 = 1 << 20;
/// Plan size limit (a schema that reuses one type in many places is compiled once per use).
pub const MAX_PLAN_NODES: usize = 100_000;

/// A compiled writer → reader resolution. Immutable, `Send + Sync`: share it across threads.
#[derive(Debug)]
pub struct Plan {
    pub(crate) writer: Types,
    /// The resolution as compiled (before lowering): kept for `Debug` output and for tests that
    /// check its shape; the executor runs `prog`.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) nodes: Vec<Node>,
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) root: NodeId,
    /// Pre-encoded reader defaults and lossiness baselines, addressed by `compile::Consts`.
    pub(crate) consts: Vec<u8>,
    /// `nodes` lowered to the flat op program the executor runs.
    pub(crate) prog: lower::Program,
    dropped: Vec<String>,
    /// The resolution report, built at compile time (see [`Plan::changes`]).
    changes: Vec<Change>,
    identity: bool,
    /// Prefix of error paths: the reader root's name (empty for an unnamed root).
    root_label: String,
}

/// Compiles the resolution of `writer` data into `reader` data.
///
/// Fails with a [`PlanError`] naming the field path when some datum could never be resolved:
/// incompatible types, a reader field without default that the writer lacks, a bad default.
/// Problems that depend on the data (an enum symbol or union branch the reader lacks) are left
/// to [`Plan::transcode`], as the specification says.
pub fn compile(writer: &Schema, reader: &Schema) -> Result<Plan, PlanError> {
    let root_label = reader
        .name()
        .map(|n| n.name().to_string())
        .unwrap_or_default();
    let w = Types::build(writer, &root_label)?;
    let identity = writer.canonical_form() == reader.canonical_form();
    if identity {
        // Same parsing canonical form: same encoding, nothing to resolve. One validating copy.
        // The report walks the schema against itself (every field `Kept`); should that walk
        // fail (a default the identity never needs is invalid), it is one `Kept` for the root.
        let changes = match Compiler::new(&w, &w, &root_label).run() {
            Ok(c) => c.changes,
            Err(_) => vec![Change::new("", ChangeKind::Kept)],
        };
        let nodes = vec![Node::Copy(w.root)];
        return Ok(Plan {
            prog: lower_with_path(&nodes, 0, &w, &root_label)?,
            nodes,
            root: 0,
            writer: w,
            consts: Vec::new(),
            dropped: Vec::new(),
            changes,
            identity,
            root_label,
        });
    }
    let r = Types::build(reader, &root_label)?;
    let compiled = Compiler::new(&w, &r, &root_label).run()?;
    let prog = lower_with_path(&compiled.nodes, compiled.root, &w, &root_label)?;
    Ok(Plan {
        prog,
        identity,
        writer: w,
        nodes: compiled.nodes,
        root: compiled.root,
        consts: compiled.consts,
        dropped: compiled.dropped,
        changes: compiled.changes,
        root_label,
    })
}

fn lower_with_path(
    nodes: &[Node],
    root: NodeId,
    w: &Types,
    root_label: &str,
) -> Result<lower::Program, PlanError> {
    lower::lower(nodes, root, w).map_err(|e| match e {
        PlanError::InvalidSchema { reason, .. } => PlanError::InvalidSchema {
            path: root_label.to_string(),
            reason,
        },
        other => other,
    })
}

impl Plan {
    /// Writer and reader have the same parsing canonical form: bytes are unchanged, only the id
    /// is rewritten, after [`Plan::validate`]. (`transcode` still works on such a plan: it
    /// validates and copies.)
    pub fn is_identity(&self) -> bool {
        self.identity
    }

    /// Checks that `input` is exactly one well-formed datum of the writer schema (not truncated,
    /// no trailing bytes, every length, index, boolean and int in range), writing nothing and
    /// allocating nothing. For an identity plan this is what [`Plan::transcode`] checks, so a
    /// datum that passes can be forwarded as it is.
    pub fn validate(&self, input: &[u8]) -> Result<(), TranscodeError> {
        exec::validate(self, input).map_err(|e| {
            let mut e = *e;
            if !self.root_label.is_empty() {
                e.prepend(&self.root_label);
            }
            e
        })
    }

    /// Transcodes one datum: reads writer-encoded `input`, APPENDS the reader encoding to `out`.
    ///
    /// Errors if `input` has trailing bytes after the datum, is truncated, or holds a value the
    /// reader cannot take. On error `out` is left as it was.
    pub fn transcode(&self, input: &[u8], out: &mut Vec<u8>) -> Result<Lossiness, TranscodeError> {
        let mark = out.len();
        // Room for the usual output (about the input's size) and the executor's 64-byte block
        // copies, so that the hot path does not reallocate.
        out.reserve(input.len() + 64);
        exec::transcode(self, input, out).map_err(|e| {
            out.truncate(mark);
            let mut e = *e;
            if !self.root_label.is_empty() {
                e.prepend(&self.root_label);
            }
            e
        })
    }

    /// Like [`Plan::transcode`] for the datum at the start of `input`, which may hold more after
    /// it (an object container block): returns how many input bytes the datum used.
    pub fn transcode_prefix(
        &self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(usize, Lossiness), TranscodeError> {
        let mark = out.len();
        out.reserve(64);
        exec::transcode_prefix(self, input, out).map_err(|e| {
            out.truncate(mark);
            let mut e = *e;
            if !self.root_label.is_empty() {
                e.prepend(&self.root_label);
            }
            e
        })
    }

    /// Dotted paths of writer fields the reader never sees (e.g. `email`, `shipping.geo`,
    /// `items[].gift_wrap`; map values are `attrs{}`; union branches add no segment).
    ///
    /// Each distinct place in the schema gets its own entry; inside a recursive type the path is
    /// the first one the compiler reached it by.
    pub fn dropped_fields(&self) -> &[String] {
        &self.dropped
    }

    /// The resolution report: what reading writer data with the reader schema does to each
    /// field (kept, renamed through an alias, promoted, defaulted, dropped, enum symbols the
    /// reader lacks, union branches remapped), built once at compile time; paths as in
    /// [`Plan::dropped_fields`]. An identity plan reports every field `Kept`. Inside a
    /// recursive type (or a shared record, see `compile.rs`) a place is reported once, at the
    /// first path the compiler reached it by.
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }
}

/// Which dropped fields held something other than their default in one datum (indexes into
/// [`Plan::dropped_fields`]). Does not allocate unless a field with index >= 64 is lossy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lossiness {
    low: u64,
    high: Vec<u64>,
    enum_default: bool,
}

impl Lossiness {
    /// Some dropped field held a non-default value.
    pub fn is_lossy(&self) -> bool {
        self.low != 0 || self.high.iter().any(|w| *w != 0)
    }

    /// Indexes into [`Plan::dropped_fields`] of the dropped fields that held non-default values,
    /// ascending.
    pub fn fields(&self) -> impl Iterator<Item = usize> + '_ {
        std::iter::once(self.low)
            .chain(self.high.iter().copied())
            .enumerate()
            .flat_map(|(word, bits)| SetBits(bits).map(move |b| word * 64 + b))
    }

    /// A writer enum symbol that the reader lacks was replaced by the reader enum's default.
    /// Not part of [`Lossiness::is_lossy`]: the reader schema asked for it, but the value changed.
    pub fn enum_default_used(&self) -> bool {
        self.enum_default
    }

    pub(crate) fn set(&mut self, i: usize) {
        if i < 64 {
            self.low |= 1 << i;
        } else {
            let word = i / 64 - 1;
            if self.high.len() <= word {
                self.high.resize(word + 1, 0);
            }
            if let Some(w) = self.high.get_mut(word) {
                *w |= 1 << (i % 64);
            }
        }
    }
}

/// Iterates the set bit positions of a word, lowest first.
struct SetBits(u64);

impl Iterator for SetBits {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let b = self.0.trailing_zeros() as usize;
        self.0 &= self.0 - 1;
        Some(b)
    }
}
