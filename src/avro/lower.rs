//! Lowering: turns the plan's node graph into a flat op program that the executor runs in a loop.
//!
//! Owns: the op set, the layout of programs in one `Vec<Op>`, and the choices that make the hot
//! path short:
//! - adjacent values whose bytes pass through unchanged, dropped fields and reader defaults
//!   become one `Run` (copied values are validate-skipped and appended as one span, across field
//!   and inlined-record boundaries); a record's skip program is one `Skip` run;
//! - a record used in one place is inlined into its parent's program;
//! - primitive array items and union branches are skipped in place;
//! - a program is only *called* (a new executor frame) for array/map items, union branches,
//!   records used in several places (recursion, shared mode) and reordered records;
//! - every plan also gets the skip program of the whole writer root (`Program::validate`), for
//!   checking a datum that is forwarded as it is (identical schemas) without writing anything.
//!
//! Must not touch: resolution rules (decided in `compile.rs`), bytes (that is `exec.rs`); no I/O.
//!
//! Every op and run item carries its field path relative to its program (`segs`, `seq_segs`),
//! so an error raised deep in a program gets its path from the item that failed
//! plus the ops of the calling frames.

use std::collections::HashMap;

use super::compile::{Branch, Consts, Dropped, EnumTarget, Layout, Node, NodeId, Source, Step};
use super::error::PlanError;
use super::schema::{Ty, TyId, Types};

/// A program id: index into [`Program::entries`].
pub(crate) type ProgId = u32;

/// One value the executor can skip in place, without calling a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prim {
    Null,
    Bool,
    Int,
    Long,
    /// Fixed-size bytes: float (4), double (8), fixed(n).
    Bytes(u32),
    /// Length-prefixed bytes or string.
    Var,
    /// An enum index below this symbol count.
    Enum(u32),
}

/// How to skip an array item or union branch: in place, or by calling a skip program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Prim(Prim),
    Call(ProgId),
}

/// One value skipped (validated, not written) inside a [`Op::Run`] or [`Op::Skip`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SkipItem {
    Null,
    Bool,
    Int,
    Long,
    /// Fixed-size bytes: float (4), double (8), fixed(n).
    Bytes(u32),
    /// Length-prefixed bytes or string.
    Var,
    /// An enum index below this symbol count.
    Enum(u32),
    /// `targets[first + writer index]`, `count` branches.
    Union {
        first: u32,
        count: u32,
    },
    /// An array or map of primitives, skipped in place.
    PrimArray(Prim),
    PrimMap(Prim),
    /// Items skipped as `targets[item]`; `zero`: they encode to zero bytes.
    Array {
        item: u32,
        zero: bool,
    },
    /// Values skipped as `targets[value]`.
    Map {
        value: u32,
    },
    /// A record skipped by its skip program.
    Call(ProgId),
}

impl From<Prim> for SkipItem {
    fn from(p: Prim) -> Self {
        match p {
            Prim::Null => SkipItem::Null,
            Prim::Bool => SkipItem::Bool,
            Prim::Int => SkipItem::Int,
            Prim::Long => SkipItem::Long,
            Prim::Bytes(n) => SkipItem::Bytes(n),
            Prim::Var => SkipItem::Var,
            Prim::Enum(n) => SkipItem::Enum(n),
        }
    }
}

/// One item of a [`Op::Run`]: a writer value to skip, and what to do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunItem {
    pub skip: SkipItem,
    pub act: Act,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Act {
    /// The value's bytes are the reader's: part of the span the run appends.
    Copy,
    /// A dropped writer field: compare its bytes with the baseline that means "nothing was
    /// lost" (`consts[base_start..][..base_len]`; [`NO_BASELINE`]: any value is lossy) and
    /// note dropped field `index` if they differ.
    Drop {
        base_start: u32,
        base_len: u32,
        index: u32,
    },
    /// Emit a pre-encoded reader default (the item skips nothing).
    Emit(Consts),
}

/// `Act::Drop::base_len` when no baseline could be encoded: any value is lossy.
pub(crate) const NO_BASELINE: u32 = u32::MAX;
/// `BranchOp::To::index` of a union-to-non-union branch: write no index.
pub(crate) const NO_INDEX: u32 = u32::MAX;

/// A resolved union branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BranchOp {
    /// Write `index` (unless it is [`NO_INDEX`]) and run `prog`.
    To { index: u32, prog: ProgId },
    /// This writer branch cannot be read: `Program::fails[i]` says why.
    Fail(u32),
}

/// One executor instruction (16 bytes; runs and tables live in [`Program`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// End of a program.
    Ret,
    /// Run the items `seq[first..][..count]`: copied spans, dropped fields, defaults.
    Run {
        first: u32,
        count: u32,
    },
    /// Skip `seq[first..][..count]` (all `Act::Copy`), writing nothing.
    Skip {
        first: u32,
        count: u32,
    },
    IntToFloat,
    IntToDouble,
    LongToFloat,
    LongToDouble,
    FloatToDouble,
    BytesToString,
    /// `enum_targets[first + writer index]`; `writer` for the symbol in error messages.
    Enum {
        first: u32,
        count: u32,
        writer: TyId,
    },
    /// Resolve each item with program `item` (arrays nested in an inline loop's body).
    Array {
        item: ProgId,
        zero: bool,
    },
    /// Start of an inline array (`map: false`) or map loop: read a block header; for an empty
    /// block write the end marker and jump to `end`, else run the body that follows for each
    /// item (a map item starts with its key). `zero`: items encode to zero bytes.
    Loop {
        end: u32,
        map: bool,
        zero: bool,
    },
    /// End of an inline loop's body: back to `start` for the next item, reading the next block
    /// header when the block is done; falls through after the last one.
    Next {
        start: u32,
        map: bool,
        zero: bool,
    },
    Map(ProgId),
    /// `branches[first + writer index]`.
    Union {
        first: u32,
        count: u32,
    },
    /// Writer non-union read as a reader union: write the branch index, go on with the value.
    WriteIndex(u32),
    Call(ProgId),
    /// A record whose reader order differs from the writer's: `reorders[i]`.
    Reordered(u32),
}

/// A record whose fields the reader wants in another order (see `compile::Layout::Reordered`).
#[derive(Debug, Clone)]
pub(crate) struct Reorder {
    /// One skip program per writer field (dropped fields include their loss check).
    pub slots: Box<[ProgId]>,
    pub sources: Box<[ReSource]>,
}

#[derive(Debug, Clone)]
pub(crate) enum ReSource {
    Default(Consts),
    Writer {
        slot: u32,
        prog: ProgId,
        field: Box<str>,
    },
}

/// The lowered plan.
#[derive(Debug, Clone, Default)]
pub(crate) struct Program {
    pub ops: Vec<Op>,
    /// Per op: index into `seg_names` of its path relative to its program (0 = none).
    pub segs: Vec<u32>,
    /// Items of `Run` and `Skip` ops, and their paths (as `segs`).
    pub seq: Vec<RunItem>,
    pub seq_segs: Vec<u32>,
    pub seg_names: Vec<Box<str>>,
    /// Program id → index of its first op.
    pub entries: Vec<u32>,
    pub root: ProgId,
    /// Skips the writer root as one item, writing nothing (see `exec::validate`). Shaped like an
    /// identity plan's root (one copied item), so both accept the same datums with the same
    /// errors and nesting count.
    pub validate: ProgId,
    pub targets: Vec<Target>,
    pub branches: Vec<BranchOp>,
    pub enum_targets: Vec<EnumTarget>,
    /// Unresolvable writer branches: (writer type, reason).
    pub fails: Vec<(Box<str>, Box<str>)>,
    pub reorders: Vec<Reorder>,
    /// Some record is reordered: the executor needs its span table.
    pub needs_spans: bool,
}

#[derive(Clone, Copy)]
enum Job {
    Node(NodeId),
    Skip(TyId),
    /// The whole writer root skipped as one item, as an identity plan's root copies it.
    Validate(TyId),
    /// A reordered record's writer field: `Lower::slots[i]`.
    Slot(u32),
}

struct Lower<'a> {
    nodes: &'a [Node],
    w: &'a Types,
    /// How many places refer to each node (the root counts as one).
    refs: Vec<u32>,
    /// Records being inlined right now (a guard against inlining a cycle).
    inlining: Vec<bool>,
    p: Program,
    seg_ids: HashMap<Box<str>, u32>,
    node_progs: HashMap<NodeId, ProgId>,
    skip_progs: HashMap<TyId, ProgId>,
    queue: Vec<(ProgId, Job)>,
    /// Writer fields of reordered records: (type, dropped-field info, field name).
    slots: Vec<(TyId, Option<Dropped>, Box<str>)>,
    /// The run being built (items, paths): it becomes one op when anything else comes.
    run: Vec<(RunItem, u32)>,
    /// Emitting an inline loop's body (loops do not nest inline: the executor keeps one item
    /// counter per frame).
    in_loop: bool,
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Lowers `nodes` (rooted at `root`) into a program.
pub(crate) fn lower(nodes: &[Node], root: NodeId, w: &Types) -> Result<Program, PlanError> {
    let mut refs = vec![0u32; nodes.len()];
    let mut bump = |id: NodeId| {
        if let Some(r) = refs.get_mut(id as usize) {
            *r = r.saturating_add(1);
        }
    };
    bump(root);
    for node in nodes {
        match node {
            Node::Array { item: n, .. } | Node::Map(n) | Node::OneToUnion { node: n, .. } => {
                bump(*n)
            }
            Node::UnionToUnion(bs) | Node::UnionToOne(bs) => {
                for b in bs.iter() {
                    if let Branch::To { node, .. } = b {
                        bump(*node);
                    }
                }
            }
            Node::Record(rec) => match &rec.layout {
                Layout::InOrder(steps) => {
                    for s in steps.iter() {
                        if let Step::Read { node, .. } = s {
                            bump(*node);
                        }
                    }
                }
                Layout::Reordered { reader, .. } => {
                    for s in reader.iter() {
                        if let Source::Writer { node, .. } = s {
                            bump(*node);
                        }
                    }
                }
            },
            _ => {}
        }
    }
    let mut l = Lower {
        nodes,
        w,
        refs,
        inlining: vec![false; nodes.len()],
        p: Program::default(),
        seg_ids: HashMap::new(),
        node_progs: HashMap::new(),
        skip_progs: HashMap::new(),
        queue: Vec::new(),
        slots: Vec::new(),
        run: Vec::new(),
        in_loop: false,
    };
    l.p.seg_names.push("".into());
    l.seg_ids.insert("".into(), 0);
    l.p.root = l.node_prog(root);
    l.p.validate = l.new_prog(Job::Validate(w.root));
    while let Some((id, job)) = l.queue.pop() {
        let start = l.p.ops.len() as u32;
        if let Some(e) = l.p.entries.get_mut(id as usize) {
            *e = start;
        }
        match job {
            Job::Node(n) => {
                l.in_loop = false;
                l.node_body(n, "")?
            }
            Job::Skip(ty) => {
                l.skip_body(ty)?;
                l.close_as_skip();
            }
            Job::Validate(ty) => {
                l.skip(ty, "")?;
                l.close_as_skip();
            }
            Job::Slot(i) => {
                let (ty, dropped, field) = l
                    .slots
                    .get(i as usize)
                    .cloned()
                    .unwrap_or_else(|| (0, None, Box::from("")));
                match dropped {
                    Some(d) => l.drop_field(&d, &field)?,
                    None => {
                        l.skip(ty, &field)?;
                        l.close_as_skip();
                    }
                }
            }
        }
        l.close();
        l.push(Op::Ret, "");
    }
    Ok(l.p)
}

/// What a writer type is when it can be skipped in place.
fn prim(ty: &Ty) -> Result<Option<Prim>, PlanError> {
    let small = |n: usize| {
        u32::try_from(n).map_err(|_| PlanError::InvalidSchema {
            path: String::new(),
            reason: format!("size {n} too large"),
        })
    };
    Ok(Some(match ty {
        Ty::Null => Prim::Null,
        Ty::Boolean => Prim::Bool,
        Ty::Int => Prim::Int,
        Ty::Long => Prim::Long,
        Ty::Float => Prim::Bytes(4),
        Ty::Double => Prim::Bytes(8),
        Ty::Bytes | Ty::String => Prim::Var,
        Ty::Fixed { size, .. } => Prim::Bytes(small(*size)?),
        Ty::Enum { symbols, .. } => Prim::Enum(small(symbols.len())?),
        _ => return Ok(None),
    }))
}

impl Lower<'_> {
    fn seg(&mut self, path: &str) -> u32 {
        if let Some(&i) = self.seg_ids.get(path) {
            return i;
        }
        let i = self.p.seg_names.len() as u32;
        self.p.seg_names.push(path.into());
        self.seg_ids.insert(path.into(), i);
        i
    }

    /// Appends an op, ending the open run first.
    fn push(&mut self, op: Op, path: &str) {
        self.close();
        let s = self.seg(path);
        self.p.ops.push(op);
        self.p.segs.push(s);
    }

    fn new_prog(&mut self, job: Job) -> ProgId {
        let id = self.p.entries.len() as ProgId;
        self.p.entries.push(0);
        self.queue.push((id, job));
        id
    }

    fn node_prog(&mut self, n: NodeId) -> ProgId {
        if let Some(&id) = self.node_progs.get(&n) {
            return id;
        }
        let id = self.new_prog(Job::Node(n));
        self.node_progs.insert(n, id);
        id
    }

    fn skip_prog(&mut self, ty: TyId) -> ProgId {
        if let Some(&id) = self.skip_progs.get(&ty) {
            return id;
        }
        let id = self.new_prog(Job::Skip(ty));
        self.skip_progs.insert(ty, id);
        id
    }

    /// Emits the open run as its op.
    fn close(&mut self) {
        if self.run.is_empty() {
            return;
        }
        let first = self.p.seq.len() as u32;
        let count = self.run.len() as u32;
        for (item, seg) in self.run.drain(..) {
            self.p.seq.push(item);
            self.p.seq_segs.push(seg);
        }
        self.p.ops.push(Op::Run { first, count });
        self.p.segs.push(0);
    }

    /// Emits the open copy run as a `Skip` (a skip program writes nothing).
    fn close_as_skip(&mut self) {
        self.close();
        if let Some(Op::Run { first, count }) = self.p.ops.last().copied()
            && let Some(last) = self.p.ops.last_mut()
        {
            *last = Op::Skip { first, count };
        }
    }

    fn target(&mut self, ty: TyId) -> Result<Target, PlanError> {
        Ok(match prim(self.w.get(ty))? {
            Some(p) => Target::Prim(p),
            None => Target::Call(self.skip_prog(ty)),
        })
    }

    fn add_target(&mut self, ty: TyId) -> Result<u32, PlanError> {
        let t = self.target(ty)?;
        self.p.targets.push(t);
        Ok(self.p.targets.len() as u32 - 1)
    }

    /// How to skip one writer value in a run.
    fn skip_item(&mut self, ty: TyId) -> Result<SkipItem, PlanError> {
        let w = self.w;
        if let Some(p) = prim(w.get(ty))? {
            return Ok(p.into());
        }
        Ok(match w.get(ty) {
            Ty::Union(branches) => {
                let ts = branches
                    .iter()
                    .map(|&b| self.target(b))
                    .collect::<Result<Vec<_>, _>>()?;
                let first = self.p.targets.len() as u32;
                self.p.targets.extend(ts);
                SkipItem::Union {
                    first,
                    count: branches.len() as u32,
                }
            }
            Ty::Array(item) => match self.target(*item)? {
                Target::Prim(p) => SkipItem::PrimArray(p),
                Target::Call(_) => SkipItem::Array {
                    item: self.add_target(*item)?,
                    zero: w.zero_size.get(*item as usize).copied().unwrap_or(false),
                },
            },
            Ty::Map(value) => match self.target(*value)? {
                Target::Prim(p) => SkipItem::PrimMap(p),
                Target::Call(_) => SkipItem::Map {
                    value: self.add_target(*value)?,
                },
            },
            _ => SkipItem::Call(self.skip_prog(ty)),
        })
    }

    /// Adds the validating skip of one writer value to the copy run (opening one if needed).
    fn skip(&mut self, ty: TyId, path: &str) -> Result<(), PlanError> {
        if matches!(self.w.get(ty), Ty::Null) {
            return Ok(()); // zero bytes: nothing to skip, nothing to copy
        }
        let skip = self.skip_item(ty)?;
        let seg = self.seg(path);
        self.run.push((
            RunItem {
                skip,
                act: Act::Copy,
            },
            seg,
        ));
        Ok(())
    }

    /// Body of a skip program: a record's fields in place, anything else as one skip.
    fn skip_body(&mut self, ty: TyId) -> Result<(), PlanError> {
        let w = self.w;
        match w.get(ty) {
            Ty::Record { fields, .. } => {
                for f in fields {
                    self.skip(f.ty, &f.name)?;
                }
                Ok(())
            }
            _ => self.skip(ty, ""),
        }
    }

    fn drop_field(&mut self, d: &Dropped, path: &str) -> Result<(), PlanError> {
        let (base_start, base_len) = d.baseline.map_or((0, NO_BASELINE), |c| (c.start, c.len));
        let item = RunItem {
            skip: self.skip_item(d.ty)?,
            act: Act::Drop {
                base_start,
                base_len,
                index: d.index,
            },
        };
        let seg = self.seg(path);
        self.run.push((item, seg));
        Ok(())
    }

    /// Emits node `n` in place (`path`: its path relative to the current program).
    fn node(&mut self, n: NodeId, path: &str) -> Result<(), PlanError> {
        let is_record = matches!(self.nodes.get(n as usize), Some(Node::Record(_)));
        let inline = self.refs.get(n as usize) == Some(&1)
            && !self.inlining.get(n as usize).copied().unwrap_or(true);
        if is_record && !inline {
            let prog = self.node_prog(n);
            self.push(Op::Call(prog), path);
            return Ok(());
        }
        self.node_body(n, path)
    }

    fn node_body(&mut self, n: NodeId, path: &str) -> Result<(), PlanError> {
        let nodes = self.nodes;
        let Some(node) = nodes.get(n as usize) else {
            return Ok(());
        };
        let op = match node {
            Node::Copy(ty) => return self.skip(*ty, path),
            Node::IntToFloat => Op::IntToFloat,
            Node::IntToDouble => Op::IntToDouble,
            Node::LongToFloat => Op::LongToFloat,
            Node::LongToDouble => Op::LongToDouble,
            Node::FloatToDouble => Op::FloatToDouble,
            Node::BytesToString => Op::BytesToString,
            Node::Enum { writer, targets } => {
                let first = self.p.enum_targets.len() as u32;
                self.p.enum_targets.extend(targets.iter().copied());
                Op::Enum {
                    first,
                    count: targets.len() as u32,
                    writer: *writer,
                }
            }
            Node::Array { item, zero_size } if !self.in_loop => {
                return self.inline_loop(*item, *zero_size, false, path);
            }
            Node::Map(value) if !self.in_loop => {
                return self.inline_loop(*value, false, true, path);
            }
            Node::Array { item, zero_size } => Op::Array {
                item: self.node_prog(*item),
                zero: *zero_size,
            },
            Node::Map(value) => Op::Map(self.node_prog(*value)),
            Node::UnionToUnion(bs) | Node::UnionToOne(bs) => {
                let to_union = matches!(node, Node::UnionToUnion(_));
                let mut table = Vec::with_capacity(bs.len());
                for b in bs.iter() {
                    table.push(match b {
                        Branch::To { index, node } => BranchOp::To {
                            index: if to_union { *index } else { NO_INDEX },
                            prog: self.node_prog(*node),
                        },
                        Branch::Fail {
                            writer_type,
                            reason,
                        } => {
                            self.p.fails.push((writer_type.clone(), reason.clone()));
                            BranchOp::Fail(self.p.fails.len() as u32 - 1)
                        }
                    });
                }
                let first = self.p.branches.len() as u32;
                self.p.branches.extend(table);
                Op::Union {
                    first,
                    count: bs.len() as u32,
                }
            }
            Node::OneToUnion { index, node } => {
                self.push(Op::WriteIndex(*index), path);
                return self.node(*node, path);
            }
            Node::Record(rec) => {
                if let Some(flag) = self.inlining.get_mut(n as usize) {
                    *flag = true;
                }
                let res = self.record(&rec.layout, path);
                if let Some(flag) = self.inlining.get_mut(n as usize) {
                    *flag = false;
                }
                return res;
            }
        };
        self.push(op, path);
        Ok(())
    }

    /// An array or map whose items run in this frame: `Loop`, the item's ops, `Next`.
    fn inline_loop(
        &mut self,
        item: NodeId,
        zero: bool,
        map: bool,
        path: &str,
    ) -> Result<(), PlanError> {
        self.close();
        let at = self.p.ops.len();
        self.push(Op::Loop { end: 0, map, zero }, path);
        self.in_loop = true;
        let body = format!("{path}{}", if map { "{}" } else { "[]" });
        let res = self.node(item, &body);
        self.in_loop = false;
        res?;
        self.push(
            Op::Next {
                start: at as u32 + 1,
                map,
                zero,
            },
            path,
        );
        let end = self.p.ops.len() as u32;
        if let Some(Op::Loop { end: e, .. }) = self.p.ops.get_mut(at) {
            *e = end;
        }
        Ok(())
    }

    fn record(&mut self, layout: &Layout, path: &str) -> Result<(), PlanError> {
        match layout {
            Layout::InOrder(steps) => {
                for step in steps.iter() {
                    match step {
                        Step::Read { node, field } => self.node(*node, &join(path, field))?,
                        Step::Skip(d) => self.drop_field(d, &join(path, &d.field))?,
                        Step::Default(c) => self.run.push((
                            RunItem {
                                skip: SkipItem::Null,
                                act: Act::Emit(*c),
                            },
                            0,
                        )),
                    }
                }
            }
            Layout::Reordered { writer, reader } => {
                let mut slots = Vec::with_capacity(writer.len());
                for s in writer.iter() {
                    let i = self.slots.len() as u32;
                    self.slots.push((s.ty, s.dropped.clone(), s.field.clone()));
                    slots.push(self.new_prog(Job::Slot(i)));
                }
                let sources = reader
                    .iter()
                    .map(|s| match s {
                        Source::Default(c) => ReSource::Default(*c),
                        Source::Writer { slot, node, field } => ReSource::Writer {
                            slot: *slot,
                            prog: self.node_prog(*node),
                            field: field.clone(),
                        },
                    })
                    .collect();
                self.p.reorders.push(Reorder {
                    slots: slots.into(),
                    sources,
                });
                self.p.needs_spans = true;
                let i = self.p.reorders.len() as u32 - 1;
                self.push(Op::Reordered(i), path);
            }
        }
        Ok(())
    }
}
