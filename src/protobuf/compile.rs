//! Compiling a writer × reader message pair into an indexed plan.
//!
//! Owns: the compatibility rules (which writer field can be read as which reader field, and
//! what has to be checked per value), the plan arena, the lossy-site table and the resolution
//! report (`Plan::changes`, the `crate::resolution` vocabulary shared with Avro). Must not: look
//! at message bytes (that is `exec.rs`, which also holds `Plan::transcode`).
//!
//! The plan is an arena of [`Node`]s, one per writer × reader message pair *per path* from the
//! root, so a lossy site can be named by its path (`shipping.geo`). Recursive types point back
//! at the ancestor node of the same pair (so a site deep in a recursion is named by its
//! shallowest path); past [`NODE_CAP`] nodes, pairs are shared across paths to bound the plan
//! size. Sub-messages whose writer and reader types are structurally identical get no node at
//! all: their bytes are copied.

use std::collections::{HashMap, HashSet};

use prost_reflect::{
    Cardinality, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor, Syntax,
};

use super::{PlanError, UnknownFields};
use crate::resolution::{Change, ChangeKind};

/// Beyond this many nodes a message pair reached by another path reuses the first node.
const NODE_CAP: usize = 4096;
/// The resolution report stops growing here (a schema reusing identical sub-messages on many
/// paths); the plan itself is unaffected.
const MAX_CHANGES: usize = 100_000;
/// Field numbers below this are looked up in a dense table; larger ones by binary search.
const DENSE_LIMIT: u32 = 256;

pub(super) const WT_VARINT: u8 = 0;
pub(super) const WT_I64: u8 = 1;
pub(super) const WT_LEN: u8 = 2;
pub(super) const WT_SGROUP: u8 = 3;
pub(super) const WT_EGROUP: u8 = 4;
pub(super) const WT_I32: u8 = 5;

/// What kind of loss a site stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LossKind {
    /// A writer field the reader does not declare (copied as an unknown field under
    /// `Preserve`, removed under `Drop`).
    Dropped,
    /// A value the reader's type reads differently (an `int64` read as `int32` truncated, a
    /// negative number read as unsigned, a `fixed32` ≥ 2³¹ read as `sfixed32`, a number other
    /// than 0/1 read as `bool`).
    Narrowed,
    /// An enum number the reader's enum does not declare (kept; a proto3 reader sees the bare
    /// number).
    UnknownEnumValue,
    /// A repeated writer field read as a singular reader field, with more than one element in
    /// the message: the reader keeps the last one (messages merge).
    RepeatedIntoSingular,
}

/// A place in the writer message where data can be lost, named by its writer field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LossSite {
    path: Box<str>,
    kind: LossKind,
}

impl LossSite {
    /// Writer field path from the root message, e.g. `shipping.geo`.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn kind(&self) -> LossKind {
        self.kind
    }
}

/// How a varint-encoded type reads a raw varint (C++ cast semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IntDomain {
    I32,
    I64,
    U32,
    U64,
    Bool,
}

impl IntDomain {
    #[inline]
    pub(super) fn value(self, raw: u64) -> i128 {
        match self {
            IntDomain::I32 => i128::from(raw as u32 as i32),
            IntDomain::I64 => i128::from(raw as i64),
            IntDomain::U32 => i128::from(raw as u32),
            IntDomain::U64 => i128::from(raw),
            IntDomain::Bool => i128::from(raw != 0),
        }
    }
}

/// What to do with one occurrence of a field the writer declares.
#[derive(Debug)]
pub(super) enum Op {
    /// The reader does not declare it. `always`: any occurrence carries information (the field
    /// has presence or is repeated); otherwise only a non-zero / non-empty value does.
    Drop { site: u32, always: bool },
    /// Copy tag and value unchanged.
    Copy,
    /// Copy, checking each varint (packed or not) for narrowing and, with `enum_values`, for
    /// numbers the reader enum does not declare.
    Varint {
        writer: IntDomain,
        reader: IntDomain,
        narrow_site: Option<u32>,
        enum_values: Option<(Box<[i32]>, u32)>,
    },
    /// Copy, checking each ZigZag varint for narrowing between sint32 and sint64.
    Zigzag {
        writer64: bool,
        reader64: bool,
        site: u32,
    },
    /// Copy, flagging values with the sign bit set (fixed ↔ sfixed of the same width; `wide`
    /// for 64-bit).
    FixedSign { site: u32, wide: bool },
    /// Validate UTF-8, then copy.
    Utf8,
    /// Transcode the embedded message (length-delimited or group) with another node.
    Message { node: u32 },
}

/// A repeated writer field read as singular: bit in the per-message seen-mask and its site.
#[derive(Debug, Clone, Copy)]
pub(super) struct Merge {
    /// `None` when the node has more than 64 such fields: every occurrence is then reported
    /// (conservatively) instead of only the second and later ones.
    pub(super) bit: Option<u8>,
    pub(super) site: u32,
}

#[derive(Debug)]
pub(super) struct FieldPlan {
    pub(super) number: u32,
    /// `orders.v2.OrderPlaced.Address.city (field 2)`, for errors.
    pub(super) label: Box<str>,
    /// Bit `1 << wire_type` for each wire type the writer's declaration allows.
    pub(super) wire_mask: u8,
    pub(super) op: Op,
    pub(super) merge: Option<Merge>,
}

#[derive(Debug)]
pub(super) struct Node {
    /// Writer message full name, for errors.
    pub(super) name: Box<str>,
    /// `fields` index + 1 by field number, for numbers below [`DENSE_LIMIT`]; 0 = undeclared.
    dense: Box<[u16]>,
    /// Sorted by number.
    fields: Vec<FieldPlan>,
}

impl Node {
    #[inline]
    pub(super) fn lookup(&self, number: u32) -> Option<&FieldPlan> {
        if let Some(&slot) = self.dense.get(number as usize) {
            return match slot {
                0 => None,
                i => self.fields.get(usize::from(i) - 1),
            };
        }
        self.fields
            .binary_search_by_key(&number, |f| f.number)
            .ok()
            .and_then(|i| self.fields.get(i))
    }
}

/// A compiled writer → reader transcoding. Cheap to share (`Arc<Plan>`); immutable.
#[derive(Debug)]
pub struct Plan {
    pub(super) nodes: Vec<Node>,
    pub(super) root: u32,
    pub(super) sites: Vec<LossSite>,
    dropped: Vec<String>,
    /// The resolution report, built at compile time (see [`Plan::changes`]).
    changes: Vec<Change>,
    pub(super) identity: bool,
    pub(super) unknown: UnknownFields,
    writer: String,
    reader: String,
}

impl Plan {
    /// Writer field paths the reader does not declare, e.g. `email`, `shipping.geo`.
    pub fn dropped_fields(&self) -> &[String] {
        &self.dropped
    }

    /// The resolution report: what reading writer messages with the reader message does to
    /// each field (kept, renamed by number, promoted or narrowed, defaulted, dropped (and
    /// whether preserved as an unknown field), enum values the reader lacks), built once at
    /// compile time. Paths are writer field paths as in [`Plan::dropped_fields`], except that a
    /// renamed or defaulted field is named by its reader name. An identity plan reports every
    /// field `Kept` (or `Renamed`). Inside a recursive message a place is reported once, at its
    /// shallowest path.
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// Every site where this plan can lose data, dropped fields included.
    pub fn loss_sites(&self) -> &[LossSite] {
        &self.sites
    }

    /// True when writer and reader are structurally identical: bytes are copied unchanged.
    pub fn is_identity(&self) -> bool {
        self.identity
    }

    pub fn unknown_fields(&self) -> UnknownFields {
        self.unknown
    }

    /// Full names of the writer and reader messages.
    pub fn message_names(&self) -> (&str, &str) {
        (&self.writer, &self.reader)
    }
}

/// Compiles the transcoding of `writer`-encoded messages into `reader`-encoded ones.
pub fn compile(
    writer: &MessageDescriptor,
    reader: &MessageDescriptor,
    unknown: UnknownFields,
) -> Result<Plan, PlanError> {
    let mut c = Compiler {
        nodes: Vec::new(),
        sites: Vec::new(),
        dropped: Vec::new(),
        changes: Vec::new(),
        unknown,
        stack: Vec::new(),
        shared: HashMap::new(),
        identical: HashMap::new(),
    };
    let root = c.node(writer, reader, "")?;
    let identity = root.is_none();
    Ok(Plan {
        nodes: c.nodes,
        root: root.unwrap_or(0),
        sites: c.sites,
        dropped: c.dropped,
        changes: c.changes,
        identity,
        unknown,
        writer: writer.full_name().to_owned(),
        reader: reader.full_name().to_owned(),
    })
}

type PairKey = (String, String);

fn pair_key(w: &MessageDescriptor, r: &MessageDescriptor) -> PairKey {
    (w.full_name().to_owned(), r.full_name().to_owned())
}

struct Compiler {
    nodes: Vec<Node>,
    sites: Vec<LossSite>,
    dropped: Vec<String>,
    changes: Vec<Change>,
    /// For the report: whether a dropped field's bytes are passed on.
    unknown: UnknownFields,
    /// Pairs being compiled (ancestors of the current one) and their nodes.
    stack: Vec<(PairKey, u32)>,
    /// First node of each pair, reused past [`NODE_CAP`].
    shared: HashMap<PairKey, u32>,
    /// Structural identity, memoized per pair.
    identical: HashMap<PairKey, bool>,
}

impl Compiler {
    /// The node for a pair at `path`, or `None` when the pair is identical (copy the bytes).
    fn node(
        &mut self,
        w: &MessageDescriptor,
        r: &MessageDescriptor,
        path: &str,
    ) -> Result<Option<u32>, PlanError> {
        let key = pair_key(w, r);
        if let Some((_, idx)) = self.stack.iter().find(|(k, _)| *k == key) {
            return Ok(Some(*idx));
        }
        if self.is_identical(w, r, &key) {
            let mut seen = self.stack.iter().map(|(k, _)| k.clone()).collect();
            self.report_identical(w, r, path, &mut seen);
            return Ok(None);
        }
        if self.nodes.len() >= NODE_CAP
            && let Some(&idx) = self.shared.get(&key)
        {
            return Ok(Some(idx));
        }
        let idx = u32::try_from(self.nodes.len()).unwrap_or(u32::MAX);
        self.nodes.push(Node {
            name: w.full_name().into(),
            dense: Box::new([]),
            fields: Vec::new(),
        });
        self.shared.entry(key.clone()).or_insert(idx);
        self.stack.push((key, idx));
        let built = self.build(w, r, path);
        self.stack.pop();
        let (dense, fields) = built?;
        if let Some(node) = self.nodes.get_mut(idx as usize) {
            node.dense = dense;
            node.fields = fields;
        }
        Ok(Some(idx))
    }

    #[allow(clippy::type_complexity)]
    fn build(
        &mut self,
        w: &MessageDescriptor,
        r: &MessageDescriptor,
        path: &str,
    ) -> Result<(Box<[u16]>, Vec<FieldPlan>), PlanError> {
        for rf in r.fields() {
            if rf.is_required() && w.get_field(rf.number()).is_none() {
                return Err(PlanError::MissingRequired {
                    message: r.full_name().to_owned(),
                    field: rf.name().to_owned(),
                    number: rf.number(),
                    writer_message: w.full_name().to_owned(),
                });
            }
        }
        let mut fields = Vec::with_capacity(w.fields().len());
        let mut merge_bits = 0u8;
        let mut wfields: Vec<FieldDescriptor> = w.fields().collect();
        wfields.sort_by_key(|f| f.number());
        for wf in wfields {
            let fpath = if path.is_empty() {
                wf.name().to_owned()
            } else {
                format!("{path}.{}", wf.name())
            };
            let label = format!("{}.{} (field {})", w.full_name(), wf.name(), wf.number());
            let wire_mask = wire_mask(&wf);
            let at = self.changes.len();
            let (op, merge) = match r.get_field(wf.number()) {
                None => {
                    let site = self.site(&fpath, LossKind::Dropped);
                    self.report(
                        &fpath,
                        ChangeKind::Dropped {
                            optional: !wf.is_required(),
                            preserved: self.unknown == UnknownFields::Preserve,
                        },
                    );
                    self.dropped.push(fpath);
                    let always = wf.supports_presence() || is_repeated(&wf);
                    (Op::Drop { site, always }, None)
                }
                Some(rf) => {
                    let merge = if is_repeated(&wf) && !is_repeated(&rf) {
                        let site = self.site(&fpath, LossKind::RepeatedIntoSingular);
                        let bit = (merge_bits < 64).then_some(merge_bits);
                        merge_bits = merge_bits.saturating_add(1);
                        Some(Merge { bit, site })
                    } else {
                        None
                    };
                    let op = self.field_op(&wf, &rf, r, &fpath)?;
                    let entries = field_changes(&wf, &rf, path, &fpath);
                    let own = |c: &Change| c.path == fpath;
                    let nested_here = self.changes[at..].iter().any(own);
                    let entries = if entries.is_empty() && !nested_here {
                        vec![Change::new(fpath.as_str(), ChangeKind::Kept)]
                    } else {
                        entries
                    };
                    self.report_all_at(at, entries);
                    (op, merge)
                }
            };
            fields.push(FieldPlan {
                number: wf.number(),
                label: label.into(),
                wire_mask,
                op,
                merge,
            });
        }
        for rf in r.fields() {
            if w.get_field(rf.number()).is_none() {
                let value = default_json(&rf);
                self.report(&join(path, rf.name()), ChangeKind::Defaulted { value });
            }
        }
        let max = fields.last().map_or(0, |f| f.number);
        let dense_len = if max < DENSE_LIMIT {
            max as usize + 1
        } else {
            0
        };
        let mut dense = vec![0u16; dense_len];
        for (i, f) in fields.iter().enumerate() {
            if let Some(slot) = dense.get_mut(f.number as usize) {
                *slot = u16::try_from(i + 1).unwrap_or(0);
            }
        }
        Ok((dense.into_boxed_slice(), fields))
    }

    fn report(&mut self, path: &str, kind: ChangeKind) {
        if self.changes.len() < MAX_CHANGES {
            self.changes.push(Change::new(path, kind));
        }
    }

    fn report_all_at(&mut self, at: usize, entries: Vec<Change>) {
        if self.changes.len() < MAX_CHANGES {
            let at = at.min(self.changes.len());
            self.changes.splice(at..at, entries);
        }
    }

    /// The report for a structurally identical pair, which the plan copies without a node:
    /// every field kept (or renamed: identity ignores names), recursively.
    fn report_identical(
        &mut self,
        w: &MessageDescriptor,
        r: &MessageDescriptor,
        path: &str,
        seen: &mut Vec<PairKey>,
    ) {
        let key = pair_key(w, r);
        if seen.contains(&key) || self.changes.len() >= MAX_CHANGES {
            return;
        }
        seen.push(key);
        let mut wfields: Vec<FieldDescriptor> = w.fields().collect();
        wfields.sort_by_key(|f| f.number());
        for wf in wfields {
            let Some(rf) = r.get_field(wf.number()) else {
                continue;
            };
            let fpath = join(path, wf.name());
            let kind = if wf.name() == rf.name() {
                ChangeKind::Kept
            } else {
                ChangeKind::Renamed {
                    from: wf.name().to_owned(),
                }
            };
            self.report(&join(path, rf.name()), kind);
            // Map entries (key, value) are not listed: the map field stands for them.
            if let (Kind::Message(wm), Kind::Message(rm)) = (wf.kind(), rf.kind())
                && !wf.is_map()
            {
                self.report_identical(&wm, &rm, &fpath, seen);
            }
        }
        seen.pop();
    }

    fn site(&mut self, path: &str, kind: LossKind) -> u32 {
        let idx = u32::try_from(self.sites.len()).unwrap_or(u32::MAX);
        self.sites.push(LossSite {
            path: path.into(),
            kind,
        });
        idx
    }

    fn field_op(
        &mut self,
        wf: &FieldDescriptor,
        rf: &FieldDescriptor,
        r_msg: &MessageDescriptor,
        fpath: &str,
    ) -> Result<Op, PlanError> {
        let incompatible = |reason: &str| PlanError::Incompatible {
            message: r_msg.full_name().to_owned(),
            field: rf.name().to_owned(),
            number: rf.number(),
            writer: describe(wf),
            reader: describe(rf),
            reason: if reason.is_empty() {
                String::new()
            } else {
                format!(": {reason}")
            },
        };
        let wfam = family(wf);
        let rfam = family(rf);
        if is_repeated(wf)
            && !is_repeated(rf)
            && !matches!(
                rfam,
                Family::Str | Family::Bytes | Family::Message(_) | Family::Group(_)
            )
        {
            return Err(incompatible(
                "a repeated number (packed by default) cannot be read as a single value",
            ));
        }
        let op = match (wfam, rfam) {
            (Family::Varint(wd, wenum), Family::Varint(rd, renum)) => {
                let enum_values = match renum {
                    Some(re) => {
                        let mut values: Vec<i32> = re.values().map(|v| v.number()).collect();
                        values.sort_unstable();
                        values.dedup();
                        let needed = match &wenum {
                            Some(we) => we
                                .values()
                                .any(|v| values.binary_search(&v.number()).is_err()),
                            None => true,
                        };
                        if needed {
                            let site = self.site(fpath, LossKind::UnknownEnumValue);
                            Some((values.into_boxed_slice(), site))
                        } else {
                            None
                        }
                    }
                    None => None,
                };
                if wd == rd && enum_values.is_none() {
                    Op::Copy
                } else {
                    let narrow_site = (wd != rd).then(|| self.site(fpath, LossKind::Narrowed));
                    Op::Varint {
                        writer: wd,
                        reader: rd,
                        narrow_site,
                        enum_values,
                    }
                }
            }
            (Family::Zigzag(w64), Family::Zigzag(r64)) => {
                if w64 == r64 {
                    Op::Copy
                } else {
                    Op::Zigzag {
                        writer64: w64,
                        reader64: r64,
                        site: self.site(fpath, LossKind::Narrowed),
                    }
                }
            }
            (Family::Varint(..), Family::Zigzag(_)) | (Family::Zigzag(_), Family::Varint(..)) => {
                return Err(incompatible(
                    "sint types use ZigZag varints, other integer types plain varints",
                ));
            }
            (Family::Fixed32(Some(a)), Family::Fixed32(Some(b))) => {
                if a == b {
                    Op::Copy
                } else {
                    Op::FixedSign {
                        site: self.site(fpath, LossKind::Narrowed),
                        wide: false,
                    }
                }
            }
            (Family::Fixed64(Some(a)), Family::Fixed64(Some(b))) => {
                if a == b {
                    Op::Copy
                } else {
                    Op::FixedSign {
                        site: self.site(fpath, LossKind::Narrowed),
                        wide: true,
                    }
                }
            }
            (Family::Fixed32(None), Family::Fixed32(None))
            | (Family::Fixed64(None), Family::Fixed64(None)) => Op::Copy,
            (Family::Fixed32(_), Family::Fixed32(_)) | (Family::Fixed64(_), Family::Fixed64(_)) => {
                return Err(incompatible(
                    "same width on the wire, but a float and an integer",
                ));
            }
            (Family::Str, Family::Str) => {
                // A proto3 reader rejects invalid UTF-8 and fails the whole message; nothing
                // on the wire enforces a writer's promise, so check. Proto2 readers do not.
                if rf.parent_file().syntax() == Syntax::Proto3 {
                    Op::Utf8
                } else {
                    Op::Copy
                }
            }
            (Family::Bytes, Family::Str) => Op::Utf8,
            (Family::Str | Family::Bytes, Family::Bytes) => Op::Copy,
            (Family::Message(_), Family::Bytes) | (Family::Bytes, Family::Message(_)) => Op::Copy,
            (Family::Message(wm), Family::Message(rm)) | (Family::Group(wm), Family::Group(rm)) => {
                match self.node(&wm, &rm, fpath)? {
                    Some(node) => Op::Message { node },
                    None => Op::Copy,
                }
            }
            (Family::Group(_), _) | (_, Family::Group(_)) => {
                return Err(incompatible(
                    "a group (start/end tags) and a length-delimited value are different encodings",
                ));
            }
            _ => return Err(incompatible("")),
        };
        Ok(op)
    }

    fn is_identical(
        &mut self,
        w: &MessageDescriptor,
        r: &MessageDescriptor,
        key: &PairKey,
    ) -> bool {
        if let Some(&known) = self.identical.get(key) {
            return known;
        }
        let result = identical(w, r, &mut HashSet::new());
        self.identical.insert(key.clone(), result);
        result
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// The field-level report entries of a writer field the reader declares (its number): renamed,
/// a type change (promoted or narrowed), enum values the reader lacks. Empty when none applies.
fn field_changes(
    wf: &FieldDescriptor,
    rf: &FieldDescriptor,
    parent: &str,
    fpath: &str,
) -> Vec<Change> {
    let mut out = Vec::new();
    if wf.name() != rf.name() {
        out.push(Change::new(
            join(parent, rf.name()),
            ChangeKind::Renamed {
                from: wf.name().to_owned(),
            },
        ));
    }
    let (wr, rr) = (is_repeated(wf), is_repeated(rf));
    let (wk, rk) = (kind_tag(wf), kind_tag(rf));
    if wr != rr || wk != rk {
        let (from, to) = (describe(wf), describe(rf));
        let narrowed = (wr && !rr) || narrows(wf, rf);
        out.push(Change::new(
            fpath,
            if narrowed {
                ChangeKind::Narrowed { from, to }
            } else {
                ChangeKind::Promoted { from, to }
            },
        ));
    }
    if let (Kind::Enum(we), Kind::Enum(re)) = (wf.kind(), rf.kind()) {
        for v in we.values() {
            if re.get_value(v.number()).is_none() {
                out.push(Change::new(
                    fpath,
                    ChangeKind::UnknownEnumValue {
                        symbol: v.name().to_owned(),
                        number: v.number(),
                    },
                ));
            }
        }
    }
    out
}

/// A field's type for "did it change": enum and message types by kind only (their contents are
/// compared value by value and field by field).
fn kind_tag(f: &FieldDescriptor) -> String {
    match f.kind() {
        Kind::Enum(_) => "enum".into(),
        Kind::Message(_) if f.is_group() => "group".into(),
        Kind::Message(_) => "message".into(),
        _ => describe_kind(f),
    }
}

/// Whether reading `wf`'s values as `rf`'s type can change a value (C++ cast semantics): a
/// narrower or differently signed integer, sign reinterpretation of fixed types. Widenings
/// (int32 → int64, uint32 → uint64 / int64, bool → any integer, sint32 → sint64, enum ↔ int32)
/// and string / bytes / message changes are not narrowing.
fn narrows(wf: &FieldDescriptor, rf: &FieldDescriptor) -> bool {
    use IntDomain::*;
    match (family(wf), family(rf)) {
        (Family::Varint(wd, _), Family::Varint(rd, _)) => {
            !matches!(
                (wd, rd),
                (I32, I64) | (U32, U64) | (U32, I64) | (Bool, _) | (I32, I32)
            ) && wd != rd
        }
        (Family::Zigzag(w64), Family::Zigzag(r64)) => w64 && !r64,
        (Family::Fixed32(a), Family::Fixed32(b)) | (Family::Fixed64(a), Family::Fixed64(b)) => {
            a != b
        }
        _ => false,
    }
}

/// The value a reader sees for a field the writer never writes, as canonical JSON would show
/// it (64-bit integers as strings, bytes as base64, enums by name).
fn default_json(f: &FieldDescriptor) -> serde_json::Value {
    use base64::Engine as _;
    use prost_reflect::Value as V;
    use serde_json::Value as J;
    if f.is_map() {
        return J::Object(serde_json::Map::new());
    }
    if is_repeated(f) {
        return J::Array(Vec::new());
    }
    match f.default_value() {
        V::Bool(b) => J::Bool(b),
        V::I32(n) => J::from(n),
        V::U32(n) => J::from(n),
        V::I64(n) => J::String(n.to_string()),
        V::U64(n) => J::String(n.to_string()),
        V::F32(x) => {
            serde_json::Number::from_f64(f64::from(x)).map_or(J::String(x.to_string()), J::Number)
        }
        V::F64(x) => serde_json::Number::from_f64(x).map_or(J::String(x.to_string()), J::Number),
        V::String(s) => J::String(s),
        V::Bytes(b) => J::String(base64::engine::general_purpose::STANDARD.encode(b)),
        V::EnumNumber(n) => match f.kind() {
            Kind::Enum(e) => e
                .get_value(n)
                .map_or(J::from(n), |v| J::String(v.name().to_owned())),
            _ => J::from(n),
        },
        // An absent message field: unset.
        V::Message(_) => J::Null,
        V::List(_) => J::Array(Vec::new()),
        V::Map(_) => J::Object(serde_json::Map::new()),
    }
}

/// The wire encoding a field's type uses, with what matters for compatibility.
enum Family {
    Varint(IntDomain, Option<EnumDescriptor>),
    /// sint32 (false) / sint64 (true).
    Zigzag(bool),
    /// `Some(signed)` for fixed32/sfixed32, `None` for float.
    Fixed32(Option<bool>),
    /// `Some(signed)` for fixed64/sfixed64, `None` for double.
    Fixed64(Option<bool>),
    Str,
    Bytes,
    Message(MessageDescriptor),
    Group(MessageDescriptor),
}

fn family(f: &FieldDescriptor) -> Family {
    match f.kind() {
        Kind::Int32 => Family::Varint(IntDomain::I32, None),
        Kind::Int64 => Family::Varint(IntDomain::I64, None),
        Kind::Uint32 => Family::Varint(IntDomain::U32, None),
        Kind::Uint64 => Family::Varint(IntDomain::U64, None),
        Kind::Bool => Family::Varint(IntDomain::Bool, None),
        Kind::Enum(e) => Family::Varint(IntDomain::I32, Some(e)),
        Kind::Sint32 => Family::Zigzag(false),
        Kind::Sint64 => Family::Zigzag(true),
        Kind::Fixed32 => Family::Fixed32(Some(false)),
        Kind::Sfixed32 => Family::Fixed32(Some(true)),
        Kind::Float => Family::Fixed32(None),
        Kind::Fixed64 => Family::Fixed64(Some(false)),
        Kind::Sfixed64 => Family::Fixed64(Some(true)),
        Kind::Double => Family::Fixed64(None),
        Kind::String => Family::Str,
        Kind::Bytes => Family::Bytes,
        Kind::Message(m) if f.is_group() => Family::Group(m),
        Kind::Message(m) => Family::Message(m),
    }
}

fn is_repeated(f: &FieldDescriptor) -> bool {
    f.cardinality() == Cardinality::Repeated
}

fn wire_mask(f: &FieldDescriptor) -> u8 {
    let base = match family(f) {
        Family::Varint(..) | Family::Zigzag(_) => WT_VARINT,
        Family::Fixed32(_) => WT_I32,
        Family::Fixed64(_) => WT_I64,
        Family::Str | Family::Bytes | Family::Message(_) => WT_LEN,
        Family::Group(_) => WT_SGROUP,
    };
    let packable = base != WT_LEN && base != WT_SGROUP;
    let mut mask = 1u8 << base;
    if packable && is_repeated(f) {
        mask |= 1 << WT_LEN;
    }
    mask
}

/// Field type as a `.proto` author would write it, for errors.
fn describe(f: &FieldDescriptor) -> String {
    let ty = match f.kind() {
        Kind::Message(m) if f.is_map() => {
            let k = describe_kind(&m.map_entry_key_field());
            let v = describe_kind(&m.map_entry_value_field());
            return format!("map<{k}, {v}>");
        }
        _ => describe_kind(f),
    };
    if is_repeated(f) {
        format!("repeated {ty}")
    } else {
        ty
    }
}

fn describe_kind(f: &FieldDescriptor) -> String {
    match f.kind() {
        Kind::Double => "double".into(),
        Kind::Float => "float".into(),
        Kind::Int32 => "int32".into(),
        Kind::Int64 => "int64".into(),
        Kind::Uint32 => "uint32".into(),
        Kind::Uint64 => "uint64".into(),
        Kind::Sint32 => "sint32".into(),
        Kind::Sint64 => "sint64".into(),
        Kind::Fixed32 => "fixed32".into(),
        Kind::Fixed64 => "fixed64".into(),
        Kind::Sfixed32 => "sfixed32".into(),
        Kind::Sfixed64 => "sfixed64".into(),
        Kind::Bool => "bool".into(),
        Kind::String => "string".into(),
        Kind::Bytes => "bytes".into(),
        Kind::Enum(e) => format!("enum {}", e.full_name()),
        Kind::Message(m) if f.is_group() => format!("group {}", m.full_name()),
        Kind::Message(m) => format!("message {}", m.full_name()),
    }
}

/// Structural identity on the wire: same field numbers, types, cardinality, encodings and enum
/// numbers, recursively. Names do not matter. Pairs already being compared count as identical
/// (coinduction), which makes recursive types terminate.
fn identical(w: &MessageDescriptor, r: &MessageDescriptor, assumed: &mut HashSet<PairKey>) -> bool {
    if !assumed.insert(pair_key(w, r)) {
        return true;
    }
    if w.fields().len() != r.fields().len() {
        return false;
    }
    for wf in w.fields() {
        let Some(rf) = r.get_field(wf.number()) else {
            return false;
        };
        if is_repeated(&wf) != is_repeated(&rf)
            || wf.is_group() != rf.is_group()
            || (rf.is_required() && !wf.is_required())
        {
            return false;
        }
        let same = match (wf.kind(), rf.kind()) {
            (Kind::Message(a), Kind::Message(b)) => identical(&a, &b, assumed),
            (Kind::Enum(a), Kind::Enum(b)) => enum_numbers(&a) == enum_numbers(&b),
            (Kind::String, Kind::String) => {
                // A proto3 reader validates UTF-8 that a proto2 writer never promised.
                rf.parent_file().syntax() != Syntax::Proto3
                    || wf.parent_file().syntax() == Syntax::Proto3
            }
            (a, b) => a == b,
        };
        if !same {
            return false;
        }
    }
    true
}

fn enum_numbers(e: &EnumDescriptor) -> Vec<i32> {
    let mut v: Vec<i32> = e.values().map(|v| v.number()).collect();
    v.sort_unstable();
    v.dedup();
    v
}
