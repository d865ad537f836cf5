//! Lowering: turns the plan's node graph into a flat op program that the executor runs in a loop.
//!
//! Owns: the op set, the layout of programs in one `Vec<Op>`, and the choices that make the hot
//! path short: adjacent copied values share one output copy (`Mark`, validating skips, `Flush`),
//! a record used in one place is inlined into its parent's program, primitive array items and
//! union branches are skipped in place, and a program is only called (a new executor frame)
//! for array/map items, union branches, records used in several places (recursion, shared
//! mode) and reordered records. Must not touch: resolution rules (decided in `compile.rs`),
//! bytes (that is `exec.rs`); no I/O.
//!
//! Every op carries the field path relative to its program (`segs`), so an error raised deep in
//! a program gets its path from the op that failed plus the ops of the calling frames.

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

/// A resolved union branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BranchOp {
    /// Write `index` (unless it is [`NO_INDEX`]) and run `prog`.
    To { index: u32, prog: ProgId },
    /// This writer branch cannot be read: `Program::fails[i]` says why.
    Fail(u32),
}

pub(crate) const NO_INDEX: u32 = u32::MAX;
/// `LossCheck::base_len` when no baseline could be encoded: any value is lossy.
pub(crate) const NO_BASELINE: u32 = u32::MAX;

/// One executor instruction. 16 bytes; tables live in [`Program`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// End of a program.
    Ret,
    /// Remember the input position (start of a copy run or of a dropped field).
    Mark,
    /// Append the input bytes since the mark.
    Flush,
    /// `Flush` then `Mark`: a copy run directly followed by a dropped field.
    FlushMark,
    // Validating skips (no output).
    SkipBool,
    SkipInt,
    SkipLong,
    SkipBytes(u32),
    SkipVar,
    SkipEnum(u32),
    /// `targets[first + writer index]`, `count` branches.
    SkipUnion {
        first: u32,
        count: u32,
    },
    SkipArray {
        item: Target,
        zero: bool,
    },
    SkipMap(Target),
    SkipCall(ProgId),
    /// Compare the bytes since the mark with `consts[base_start..][..base_len]`; if they differ,
    /// dropped field `index` lost data.
    LossCheck {
        base_start: u32,
        base_len: u32,
        index: u32,
    },
    /// Emit pre-encoded bytes.
    Default(Consts),
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
    Array {
        item: ProgId,
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
    pub seg_names: Vec<Box<str>>,
    /// Program id → index of its first op.
    pub entries: Vec<u32>,
    pub root: ProgId,
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
    Slot(TyId, u32),
}

struct Lower<'a> {
    nodes: &'a [Node],
    w: &'a Types,
    refs: Vec<u32>,
    inlining: Vec<bool>,
    p: Program,
    seg_ids: HashMap<Box<str>, u32>,
    node_progs: HashMap<NodeId, ProgId>,
    skip_progs: HashMap<TyId, ProgId>,
    queue: Vec<(ProgId, Job)>,
    /// Slot programs' dropped-field info, by job index.
    slot_drops: Vec<(Option<Dropped>, Box<str>)>,
    /// A copy run is open (a `Mark` was emitted and no `Flush` yet).
    open: bool,
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
        slot_drops: Vec::new(),
        open: false,
    };
    l.p.seg_names.push("".into());
    l.seg_ids.insert("".into(), 0);
    l.p.root = l.node_prog(root);
    while let Some((id, job)) = l.queue.pop() {
        let start = l.p.ops.len() as u32;
        if let Some(e) = l.p.entries.get_mut(id as usize) {
            *e = start;
        }
        l.open = false;
        match job {
            Job::Node(n) => l.node_body(n, "")?,
            Job::Skip(ty) => l.skip_body(ty)?,
            Job::Slot(ty, i) => {
                let (dropped, field) = l.slot_drops.get(i as usize).cloned().unwrap_or_default();
                match dropped {
                    Some(d) => l.drop_field(&d, &field)?,
                    None => l.skip(ty, &field)?,
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

    fn push(&mut self, op: Op, path: &str) {
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

    /// Starts a copy run unless one is open.
    fn open(&mut self) {
        if !self.open {
            if self.p.ops.last() == Some(&Op::Flush) {
                // Nothing happened since the last run ended: extend it instead.
                self.p.ops.pop();
                self.p.segs.pop();
            } else {
                self.push(Op::Mark, "");
            }
            self.open = true;
        }
    }

    /// Ends the copy run, if one is open.
    fn close(&mut self) {
        if self.open {
            self.push(Op::Flush, "");
            self.open = false;
        }
    }

    fn target(&mut self, ty: TyId) -> Result<Target, PlanError> {
        Ok(match prim(self.w.get(ty))? {
            Some(p) => Target::Prim(p),
            None => Target::Call(self.skip_prog(ty)),
        })
    }

    /// Emits the validating skip of one writer value (no output).
    fn skip(&mut self, ty: TyId, path: &str) -> Result<(), PlanError> {
        let w = self.w;
        if let Some(p) = prim(w.get(ty))? {
            let op = match p {
                Prim::Null => return Ok(()),
                Prim::Bool => Op::SkipBool,
                Prim::Int => Op::SkipInt,
                Prim::Long => Op::SkipLong,
                Prim::Bytes(n) => Op::SkipBytes(n),
                Prim::Var => Op::SkipVar,
                Prim::Enum(n) => Op::SkipEnum(n),
            };
            self.push(op, path);
            return Ok(());
        }
        let op = match w.get(ty) {
            Ty::Union(branches) => {
                let first = self.p.targets.len() as u32;
                let ts = branches
                    .iter()
                    .map(|&b| self.target(b))
                    .collect::<Result<Vec<_>, _>>()?;
                self.p.targets.extend(ts);
                Op::SkipUnion {
                    first,
                    count: branches.len() as u32,
                }
            }
            Ty::Array(item) => Op::SkipArray {
                item: self.target(*item)?,
                zero: w.zero_size.get(*item as usize).copied().unwrap_or(false),
            },
            Ty::Map(value) => Op::SkipMap(self.target(*value)?),
            _ => Op::SkipCall(self.skip_prog(ty)),
        };
        self.push(op, path);
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
        if self.open {
            self.push(Op::FlushMark, "");
            self.open = false;
        } else {
            self.push(Op::Mark, "");
        }
        self.skip(d.ty, path)?;
        let (base_start, base_len) = d.baseline.map_or((0, NO_BASELINE), |c| (c.start, c.len));
        self.push(
            Op::LossCheck {
                base_start,
                base_len,
                index: d.index,
            },
            path,
        );
        Ok(())
    }

    /// Emits node `n` in place (`path`: its path relative to the current program).
    fn node(&mut self, n: NodeId, path: &str) -> Result<(), PlanError> {
        let inline = matches!(self.nodes.get(n as usize), Some(Node::Record(_)))
            && self.refs.get(n as usize) == Some(&1)
            && !self.inlining.get(n as usize).copied().unwrap_or(true);
        if matches!(self.nodes.get(n as usize), Some(Node::Record(_))) && !inline {
            self.close();
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
        if let Node::Copy(ty) = node {
            self.open();
            return self.skip(*ty, path);
        }
        self.close();
        let op = match node {
            Node::Copy(_) => return Ok(()),
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

    fn record(&mut self, layout: &Layout, path: &str) -> Result<(), PlanError> {
        match layout {
            Layout::InOrder(steps) => {
                for step in steps.iter() {
                    match step {
                        Step::Read { node, field } => self.node(*node, &join(path, field))?,
                        Step::Skip(d) => self.drop_field(d, &join(path, &d.field))?,
                        Step::Default(c) => {
                            self.close();
                            self.push(Op::Default(*c), "");
                        }
                    }
                }
            }
            Layout::Reordered { writer, reader } => {
                self.close();
                let mut slots = Vec::with_capacity(writer.len());
                for s in writer.iter() {
                    let i = self.slot_drops.len() as u32;
                    self.slot_drops.push((s.dropped.clone(), s.field.clone()));
                    slots.push(self.new_prog(Job::Slot(s.ty, i)));
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
