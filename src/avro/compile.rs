//! Plan compilation: walks writer × reader once and records, per value, what the executor does.
//!
//! Owns: the Avro 1.11 "Schema Resolution" rules (field matching by name then alias, defaults,
//! promotions, enum and union remapping, named-type matching), the plan node arena, the list of
//! dropped writer fields with their lossiness baselines, the resolution report (one
//! `resolution::Change` per field, enum symbol and union branch; rolled back with a failed
//! union branch like the dropped fields), and the copy-collapse pass. Must not
//! touch: input bytes (that is `exec.rs`); no I/O. Runs once per (writer id, reader id) pair.
//!
//! Recursive types: a record pair that is still being compiled further up the stack is looked up
//! in `in_progress` and its node id reused, so a linked list compiles to a node that points at
//! itself. Other pairs are compiled afresh at each use so that every dropped field gets the exact
//! path it was reached by (`shipping.geo` vs `billing.geo`). A schema that reuses types
//! exponentially (a DAG) would blow that up: past `MAX_PLAN_NODES` the compiler starts over in
//! `shared` mode, where each record pair is compiled once and its dropped fields keep the path
//! of their first use.

use std::collections::HashMap;

use super::MAX_PLAN_NODES;
use super::default::{encode_default, encode_zero};
use super::error::PlanError;
use super::schema::{FieldDef, Ty, TyId, Types};
use crate::resolution::{Change, ChangeKind};

pub(crate) type NodeId = u32;

/// A byte range inside `Plan::consts`: pre-encoded defaults and lossiness baselines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Consts {
    pub start: u32,
    pub len: u32,
}

/// What the executor does with one writer value.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// Writer and reader encodings coincide: skip the writer value and copy its bytes.
    Copy(TyId),
    IntToFloat,
    IntToDouble,
    LongToFloat,
    LongToDouble,
    FloatToDouble,
    /// Checked: the bytes must be UTF-8 to be a valid reader string.
    BytesToString,
    /// `targets[writer index]`; `writer` is the writer enum (for the symbol in error messages).
    Enum {
        writer: TyId,
        targets: Box<[EnumTarget]>,
    },
    /// `zero_size`: the writer item encodes to zero bytes (needs the item cap, see exec).
    Array {
        item: NodeId,
        zero_size: bool,
    },
    Map(NodeId),
    Record(Box<RecordPlan>),
    /// Writer union to reader union, indexed by writer branch.
    UnionToUnion(Box<[Branch]>),
    /// Writer union to a reader non-union, indexed by writer branch (`Branch::To::index` unused).
    UnionToOne(Box<[Branch]>),
    /// Writer non-union to reader union: write the branch index, then the value.
    OneToUnion {
        index: u32,
        node: NodeId,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EnumTarget {
    /// The reader has the symbol, at this index.
    Symbol(u32),
    /// The reader lacks the symbol and uses its enum default, at this index.
    Default(u32),
    /// The reader lacks the symbol and has no default: error if it occurs.
    Missing,
}

#[derive(Debug, Clone)]
pub(crate) enum Branch {
    To {
        index: u32,
        node: NodeId,
    },
    /// This writer branch cannot be read; an error only if a datum uses it.
    Fail {
        writer_type: Box<str>,
        reason: Box<str>,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct RecordPlan {
    pub layout: Layout,
}

/// How a record's fields are executed.
///
/// `InOrder`: the reader's fields that come from the writer appear in writer order, so one pass
/// over the writer fields, with reader defaults interleaved, writes the reader order directly.
///
/// `Reordered`: the reader wants writer fields in another order. The executor first skips every
/// writer field, recording each one's byte span in a scratch table (a thread-local `Vec` reused
/// across datums, so no allocation per record once warm), then replays the spans in reader order.
#[derive(Debug, Clone)]
pub(crate) enum Layout {
    InOrder(Box<[Step]>),
    Reordered {
        writer: Box<[WriterSlot]>,
        reader: Box<[Source]>,
    },
}

#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// Resolve the next writer field into the reader field `field`.
    Read { node: NodeId, field: Box<str> },
    /// Skip the next writer field (dropped by the reader).
    Skip(Dropped),
    /// Emit a reader default (no input consumed).
    Default(Consts),
}

/// A writer field the reader never sees.
#[derive(Debug, Clone)]
pub(crate) struct Dropped {
    pub ty: TyId,
    /// Index into `Plan::dropped`.
    pub index: u32,
    /// Encoding of the writer default (or zero value): other bytes mean data was lost.
    /// `None` when no baseline could be encoded: any value counts as lossy.
    pub baseline: Option<Consts>,
    pub field: Box<str>,
}

#[derive(Debug, Clone)]
pub(crate) struct WriterSlot {
    pub ty: TyId,
    pub dropped: Option<Dropped>,
    pub field: Box<str>,
}

#[derive(Debug, Clone)]
pub(crate) enum Source {
    Writer {
        slot: u32,
        node: NodeId,
        field: Box<str>,
    },
    Default(Consts),
}

/// Output of compilation, moved into `Plan`.
pub(crate) struct Compiled {
    pub nodes: Vec<Node>,
    pub root: NodeId,
    pub consts: Vec<u8>,
    pub dropped: Vec<String>,
    pub changes: Vec<Change>,
}

pub(crate) struct Compiler<'a> {
    w: &'a Types,
    r: &'a Types,
    nodes: Vec<Node>,
    /// Writer type of each node, for the copy-collapse pass.
    node_writer: Vec<TyId>,
    consts: Vec<u8>,
    dropped: Vec<String>,
    /// The resolution report (`Plan::changes`), paths relative to the root like `dropped`.
    changes: Vec<Change>,
    in_progress: HashMap<(TyId, TyId), NodeId>,
    /// Shared mode: finished record pairs, reused at every later use.
    shared: Option<HashMap<(TyId, TyId), NodeId>>,
    /// Prefix of every path (the reader root's name); stripped from dropped-field paths.
    root_label: &'a str,
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

impl<'a> Compiler<'a> {
    pub fn new(w: &'a Types, r: &'a Types, root_label: &'a str) -> Self {
        Compiler {
            w,
            r,
            nodes: Vec::new(),
            node_writer: Vec::new(),
            consts: Vec::new(),
            dropped: Vec::new(),
            changes: Vec::new(),
            in_progress: HashMap::new(),
            shared: None,
            root_label,
        }
    }

    pub fn run(mut self) -> Result<Compiled, PlanError> {
        let root = match self.resolve(self.w.root, self.r.root, self.root_label) {
            Err(PlanError::TooLarge { .. }) => {
                let mut again = Compiler::new(self.w, self.r, self.root_label);
                again.shared = Some(HashMap::new());
                self = again;
                self.resolve(self.w.root, self.r.root, self.root_label)?
            }
            other => other?,
        };
        self.collapse_copies();
        Ok(Compiled {
            nodes: self.nodes,
            root,
            consts: self.consts,
            dropped: self.dropped,
            changes: self.changes,
        })
    }

    /// `path` without the reader root's name: the form `dropped_fields()` and the report use.
    fn rel(&self, path: &str) -> String {
        path.strip_prefix(self.root_label)
            .map(|s| s.trim_start_matches('.'))
            .unwrap_or(path)
            .to_string()
    }

    fn report(&mut self, path: &str, kind: ChangeKind) {
        let path = self.rel(path);
        self.changes.push(Change { path, kind });
    }

    /// Like [`Compiler::report`], but placed at `at` (before what a subtree reported since).
    fn report_at(&mut self, at: usize, path: &str, kind: ChangeKind) {
        let path = self.rel(path);
        let at = at.min(self.changes.len());
        self.changes.insert(at, Change { path, kind });
    }

    fn describe_w(&self, t: TyId) -> String {
        self.w.get(t).describe()
    }

    fn describe_r(&self, t: TyId) -> String {
        self.r.get(t).describe()
    }

    fn add_const(&mut self, bytes: &[u8]) -> Consts {
        let start = self.consts.len() as u32;
        self.consts.extend_from_slice(bytes);
        Consts {
            start,
            len: bytes.len() as u32,
        }
    }

    fn push(&mut self, node: Node, writer: TyId, path: &str) -> Result<NodeId, PlanError> {
        if self.nodes.len() >= MAX_PLAN_NODES {
            return Err(PlanError::TooLarge {
                path: path.to_string(),
                limit: MAX_PLAN_NODES,
            });
        }
        self.nodes.push(node);
        self.node_writer.push(writer);
        Ok((self.nodes.len() - 1) as NodeId)
    }

    fn set(&mut self, id: NodeId, node: Node) {
        if let Some(slot) = self.nodes.get_mut(id as usize) {
            *slot = node;
        }
    }

    fn mismatch(&self, w: TyId, r: TyId, path: &str) -> PlanError {
        PlanError::TypeMismatch {
            path: path.to_string(),
            writer: self.w.get(w).describe(),
            reader: self.r.get(r).describe(),
        }
    }

    /// Compiles a subtree and undoes everything it added if it fails, so that a union branch
    /// that cannot be resolved (a runtime error, not a plan error) leaves no stray dropped fields.
    fn attempt(&mut self, w: TyId, r: TyId, path: &str) -> Result<NodeId, PlanError> {
        let (n, d, c) = (self.nodes.len(), self.dropped.len(), self.changes.len());
        let res = self.resolve(w, r, path);
        if res.is_err() {
            self.nodes.truncate(n);
            self.node_writer.truncate(n);
            self.dropped.truncate(d);
            self.changes.truncate(c);
        }
        res
    }

    fn resolve(&mut self, w: TyId, r: TyId, path: &str) -> Result<NodeId, PlanError> {
        use Ty::*;
        let (wt, rt) = (self.w.get(w), self.r.get(r));
        let node = match (wt, rt) {
            (Union(wb), Union(rb)) => {
                let mut branches = Vec::with_capacity(wb.len());
                for (wi, &b) in wb.iter().enumerate() {
                    let at = self.changes.len();
                    let branch = match self.best_branch(b, rb) {
                        Some(j) => match self.attempt(b, rb[j], path) {
                            Ok(node) => Branch::To {
                                index: j as u32,
                                node,
                            },
                            Err(e) => self.fail(b, e.to_string()),
                        },
                        None => self.fail(b, "the reader union has no branch for it".into()),
                    };
                    let to = match &branch {
                        Branch::To { index, .. } if *index as usize == wi => None,
                        Branch::To { index, .. } => Some(Some(*index)),
                        Branch::Fail { .. } => Some(None),
                    };
                    if let Some(to_index) = to {
                        let kind = ChangeKind::UnionBranch {
                            writer: self.describe_w(b),
                            writer_index: Some(wi as u32),
                            to: to_index
                                .and_then(|j| rb.get(j as usize))
                                .map(|&t| self.describe_r(t)),
                            to_index,
                        };
                        self.report_at(at, path, kind);
                    }
                    branches.push(branch);
                }
                Node::UnionToUnion(branches.into())
            }
            (Union(wb), _) => {
                let mut branches = Vec::with_capacity(wb.len());
                for (wi, &b) in wb.iter().enumerate() {
                    let at = self.changes.len();
                    let branch = match self.attempt(b, r, path) {
                        Ok(node) => Branch::To { index: 0, node },
                        Err(e) => self.fail(b, e.to_string()),
                    };
                    let kind = ChangeKind::UnionBranch {
                        writer: self.describe_w(b),
                        writer_index: Some(wi as u32),
                        to: matches!(branch, Branch::To { .. }).then(|| self.describe_r(r)),
                        to_index: None,
                    };
                    self.report_at(at, path, kind);
                    branches.push(branch);
                }
                Node::UnionToOne(branches.into())
            }
            (_, Union(rb)) => match self.best_branch(w, rb) {
                Some(j) => {
                    let kind = ChangeKind::UnionBranch {
                        writer: self.describe_w(w),
                        writer_index: None,
                        to: Some(self.describe_r(rb[j])),
                        to_index: Some(j as u32),
                    };
                    self.report(path, kind);
                    Node::OneToUnion {
                        index: j as u32,
                        node: self.resolve(w, rb[j], path)?,
                    }
                }
                None => return Err(self.mismatch(w, r, path)),
            },
            (Null, Null) | (Boolean, Boolean) | (Int, Int) | (Long, Long) => Node::Copy(w),
            (Float, Float) | (Double, Double) | (Bytes, Bytes) | (String, String) => Node::Copy(w),
            (Int, Long | Float | Double) | (Long, Float | Double) | (Float, Double) => {
                let kind = ChangeKind::Promoted {
                    from: wt.describe(),
                    to: rt.describe(),
                };
                self.report(path, kind);
                match (wt, rt) {
                    (Int, Float) => Node::IntToFloat,
                    (Int, Double) => Node::IntToDouble,
                    (Long, Float) => Node::LongToFloat,
                    (Long, Double) => Node::LongToDouble,
                    (Float, Double) => Node::FloatToDouble,
                    // Int → long: the same varint encoding on both sides, a plain copy.
                    _ => Node::Copy(w),
                }
            }
            (String, Bytes) | (Bytes, String) => {
                let kind = ChangeKind::Promoted {
                    from: wt.describe(),
                    to: rt.describe(),
                };
                self.report(path, kind);
                match wt {
                    // Checked: the bytes must be UTF-8 to be a valid reader string.
                    Bytes => Node::BytesToString,
                    // Same length-prefixed encoding: a plain copy.
                    _ => Node::Copy(w),
                }
            }
            (
                Fixed {
                    named: wn,
                    size: ws,
                },
                Fixed {
                    named: rn,
                    size: rs,
                },
            ) => {
                if !rn.accepts(wn) {
                    return Err(self.name_mismatch("fixed", w, r, path));
                }
                if ws != rs {
                    return Err(PlanError::FixedSizeMismatch {
                        path: path.to_string(),
                        name: rn.name.clone(),
                        writer: *ws,
                        reader: *rs,
                    });
                }
                Node::Copy(w)
            }
            (
                Enum {
                    named: wn,
                    symbols: ws,
                    ..
                },
                Enum {
                    named: rn,
                    symbols: rs,
                    default: rd,
                },
            ) => {
                if !rn.accepts(wn) {
                    return Err(self.name_mismatch("enum", w, r, path));
                }
                let default = match rd {
                    None => None,
                    Some(d) => match rs.iter().position(|s| s == d) {
                        Some(i) => Some(i as u32),
                        None => {
                            return Err(PlanError::InvalidDefault {
                                path: path.to_string(),
                                reason: format!(
                                    "enum default {d:?} is not a symbol of reader enum {}",
                                    rn.name
                                ),
                            });
                        }
                    },
                };
                let targets = ws
                    .iter()
                    .map(|s| match rs.iter().position(|x| x == s) {
                        Some(i) => EnumTarget::Symbol(i as u32),
                        None => default.map_or(EnumTarget::Missing, EnumTarget::Default),
                    })
                    .collect();
                let missing: Vec<ChangeKind> = ws
                    .iter()
                    .filter(|s| !rs.contains(s))
                    .map(|s| ChangeKind::EnumSymbol {
                        symbol: s.clone(),
                        to: rd.clone(),
                    })
                    .collect();
                for kind in missing {
                    self.report(path, kind);
                }
                Node::Enum { writer: w, targets }
            }
            (Array(wi), Array(ri)) => {
                let (wi, ri) = (*wi, *ri);
                let zero_size = self.w.zero_size.get(wi as usize).copied().unwrap_or(false);
                let item = self.resolve(wi, ri, &format!("{path}[]"))?;
                Node::Array { item, zero_size }
            }
            (Map(wv), Map(rv)) => {
                let (wv, rv) = (*wv, *rv);
                Node::Map(self.resolve(wv, rv, &format!("{path}{{}}"))?)
            }
            (
                Record {
                    named: wn,
                    fields: wf,
                },
                Record {
                    named: rn,
                    fields: rf,
                },
            ) => {
                if !rn.accepts(wn) {
                    return Err(self.name_mismatch("record", w, r, path));
                }
                if let Some(&id) = self.in_progress.get(&(w, r)) {
                    return Ok(id);
                }
                if let Some(&id) = self.shared.as_ref().and_then(|m| m.get(&(w, r))) {
                    return Ok(id);
                }
                // Reserve the node first: fields that recurse into this pair point at it.
                let id = self.push(Node::Copy(w), w, path)?;
                self.in_progress.insert((w, r), id);
                let res = self.record(wf, rf, path);
                self.in_progress.remove(&(w, r));
                let plan = res?;
                self.set(id, Node::Record(Box::new(plan)));
                if let Some(m) = self.shared.as_mut() {
                    m.insert((w, r), id);
                }
                return Ok(id);
            }
            _ => return Err(self.mismatch(w, r, path)),
        };
        self.push(node, w, path)
    }

    fn fail(&self, writer_branch: TyId, reason: String) -> Branch {
        Branch::Fail {
            writer_type: self.w.get(writer_branch).describe().into(),
            reason: reason.into(),
        }
    }

    fn name_mismatch(&self, kind: &'static str, w: TyId, r: TyId, path: &str) -> PlanError {
        let name = |t: &Ty| t.named().map(|n| n.full.clone()).unwrap_or_default();
        PlanError::NameMismatch {
            path: path.to_string(),
            kind,
            writer: name(self.w.get(w)),
            reader: name(self.r.get(r)),
        }
    }

    /// The reader union branch a writer (non-union) type resolves to: the first branch of the
    /// same type (same name for named types) if any, else the first one reachable by promotion.
    /// This is Java's order; the spec's "first branch that matches" and fastavro would pick a
    /// promotion that comes earlier in the union (e.g. `long` before `int` for an int writer).
    fn best_branch(&self, w: TyId, reader_branches: &[TyId]) -> Option<usize> {
        use Ty::*;
        let wt = self.w.get(w);
        let exact = reader_branches
            .iter()
            .position(|&b| match (wt, self.r.get(b)) {
                (Null, Null) | (Boolean, Boolean) | (Int, Int) | (Long, Long) => true,
                (Float, Float) | (Double, Double) | (Bytes, Bytes) | (String, String) => true,
                (Array(_), Array(_)) | (Map(_), Map(_)) => true,
                (Fixed { named: wn, .. }, Fixed { named: rn, .. })
                | (Enum { named: wn, .. }, Enum { named: rn, .. })
                | (Record { named: wn, .. }, Record { named: rn, .. }) => rn.accepts(wn),
                _ => false,
            });
        exact.or_else(|| {
            reader_branches.iter().position(|&b| {
                matches!(
                    (wt, self.r.get(b)),
                    (Int, Long | Float | Double)
                        | (Long, Float | Double)
                        | (Float, Double)
                        | (String, Bytes)
                        | (Bytes, String)
                )
            })
        })
    }

    fn record(
        &mut self,
        wf: &'a [FieldDef],
        rf: &'a [FieldDef],
        path: &str,
    ) -> Result<RecordPlan, PlanError> {
        // Pass 1: exact names. Pass 2: reader aliases, among writer fields still free. Exact
        // names win over aliases, as in Java and fastavro (apache-avro's parser already rejects
        // an alias equal to another field's name; this keeps the rule independent of that).
        let mut source: Vec<Option<usize>> = vec![None; rf.len()];
        let mut taken = vec![false; wf.len()];
        for (ri, f) in rf.iter().enumerate() {
            if let Some(wi) = wf.iter().position(|x| x.name == f.name) {
                source[ri] = Some(wi);
                taken[wi] = true;
            }
        }
        for (ri, f) in rf.iter().enumerate() {
            if source[ri].is_some() {
                continue;
            }
            let found = f
                .aliases
                .iter()
                .find_map(|a| (0..wf.len()).find(|&wi| !taken[wi] && wf[wi].name == *a));
            if let Some(wi) = found {
                source[ri] = Some(wi);
                taken[wi] = true;
            }
        }

        // Reader fields the writer lacks: a default, or the plan fails here.
        enum Src {
            Writer(usize, NodeId),
            Default(Consts),
        }
        let mut defaults: Vec<Option<Consts>> = vec![None; rf.len()];
        // Reported after the writer fields (the report lists writer order, then reader-only).
        let mut defaulted: Vec<Change> = Vec::new();
        for (ri, f) in rf.iter().enumerate() {
            if source[ri].is_some() {
                continue;
            }
            let fpath = join(path, &f.name);
            let Some(default) = &f.default else {
                return Err(PlanError::MissingField {
                    path: fpath,
                    field: f.name.clone(),
                    aliases: if f.aliases.is_empty() {
                        String::new()
                    } else {
                        format!(" nor any of its aliases {:?}", f.aliases)
                    },
                });
            };
            let mut buf = Vec::new();
            encode_default(self.r, f.ty, default, &mut buf).map_err(|reason| {
                PlanError::InvalidDefault {
                    path: fpath.clone(),
                    reason,
                }
            })?;
            defaults[ri] = Some(self.add_const(&buf));
            defaulted.push(Change {
                path: self.rel(&fpath),
                kind: ChangeKind::Defaulted {
                    value: default.clone(),
                },
            });
        }

        // Writer fields in writer order (so `dropped_fields` lists them depth-first in writer
        // order): resolve the ones the reader reads, record the others as dropped, with the
        // bytes that mean "nothing was lost".
        let mut reader_of: Vec<Option<usize>> = vec![None; wf.len()];
        for (ri, s) in source.iter().enumerate() {
            if let Some(wi) = s {
                reader_of[*wi] = Some(ri);
            }
        }
        let mut nodes: Vec<Option<NodeId>> = vec![None; rf.len()];
        let mut dropped: Vec<Option<Dropped>> = vec![None; wf.len()];
        for (wi, f) in wf.iter().enumerate() {
            if let Some(ri) = reader_of[wi] {
                let fpath = join(path, &rf[ri].name);
                let at = self.changes.len();
                nodes[ri] = Some(self.resolve(f.ty, rf[ri].ty, &fpath)?);
                if f.name != rf[ri].name {
                    let from = f.name.clone();
                    self.report_at(at, &fpath, ChangeKind::Renamed { from });
                } else {
                    // Kept unless the type itself changed here (a promotion, enum symbols,
                    // union branches: entries at this very path).
                    let rel = self.rel(&fpath);
                    if !self.changes[at..].iter().any(|c| c.path == rel) {
                        self.report_at(at, &fpath, ChangeKind::Kept);
                    }
                }
                continue;
            }
            let full = join(path, &f.name);
            let rel = self.rel(&full);
            let mut buf = Vec::new();
            let from_default = f
                .default
                .as_ref()
                .is_some_and(|d| encode_default(self.w, f.ty, d, &mut buf).is_ok());
            if !from_default {
                buf.clear();
            }
            let baseline = (from_default || encode_zero(self.w, f.ty, &mut buf).is_ok())
                .then(|| self.add_const(&buf));
            dropped[wi] = Some(Dropped {
                ty: f.ty,
                index: self.dropped.len() as u32,
                baseline,
                field: f.name.as_str().into(),
            });
            let optional = f.default.is_some()
                || matches!(self.w.get(f.ty), Ty::Union(b) if b.iter().any(|&t| matches!(self.w.get(t), Ty::Null)));
            self.changes.push(Change {
                path: rel.clone(),
                kind: ChangeKind::Dropped {
                    optional,
                    preserved: false,
                },
            });
            self.dropped.push(rel);
        }
        self.changes.extend(defaulted);
        let srcs: Vec<Src> = (0..rf.len())
            .filter_map(|ri| match (source[ri], nodes[ri], defaults[ri]) {
                (Some(wi), Some(node), _) => Some(Src::Writer(wi, node)),
                (None, _, Some(c)) => Some(Src::Default(c)),
                _ => None, // unreachable: every reader field has a node or a default by now
            })
            .collect();

        let order: Vec<usize> = srcs
            .iter()
            .filter_map(|s| match s {
                Src::Writer(wi, _) => Some(*wi),
                Src::Default(_) => None,
            })
            .collect();
        let in_order = order.windows(2).all(|p| p[0] < p[1]);

        let layout = if in_order {
            let mut steps = Vec::with_capacity(wf.len() + rf.len());
            let mut next_writer = 0;
            for (ri, src) in srcs.into_iter().enumerate() {
                match src {
                    Src::Default(c) => steps.push(Step::Default(c)),
                    Src::Writer(wi, node) => {
                        for d in dropped.iter_mut().take(wi).skip(next_writer) {
                            steps.extend(d.take().map(Step::Skip));
                        }
                        next_writer = wi + 1;
                        steps.push(Step::Read {
                            node,
                            field: rf[ri].name.as_str().into(),
                        });
                    }
                }
            }
            for d in dropped.iter_mut().skip(next_writer) {
                steps.extend(d.take().map(Step::Skip));
            }
            Layout::InOrder(steps.into())
        } else {
            let mut writer = Vec::with_capacity(wf.len());
            for (f, d) in wf.iter().zip(dropped) {
                writer.push(WriterSlot {
                    ty: f.ty,
                    dropped: d,
                    field: f.name.as_str().into(),
                });
            }
            let reader = srcs
                .into_iter()
                .enumerate()
                .map(|(ri, s)| match s {
                    Src::Default(c) => Source::Default(c),
                    Src::Writer(wi, node) => Source::Writer {
                        slot: wi as u32,
                        node,
                        field: rf[ri].name.as_str().into(),
                    },
                })
                .collect();
            Layout::Reordered {
                writer: writer.into(),
                reader,
            }
        };
        Ok(RecordPlan { layout })
    }

    /// Replaces every node whose output bytes always equal its input bytes by `Copy`, so the
    /// executor skips-and-memcpys whole subtrees (the identity plan becomes one `Copy`).
    ///
    /// Greatest fixed point: assume every node copies, then knock out nodes that transform
    /// something or have a child that does, until nothing changes. Starting from "yes" is what
    /// lets a recursive record that maps onto itself unchanged collapse too.
    fn collapse_copies(&mut self) {
        let mut copy = vec![true; self.nodes.len()];
        let is = |copy: &[bool], id: NodeId| copy.get(id as usize).copied().unwrap_or(false);
        loop {
            let mut changed = false;
            for i in 0..self.nodes.len() {
                if !copy[i] {
                    continue;
                }
                let ok = match &self.nodes[i] {
                    Node::Copy(_) => true,
                    Node::Enum { targets, .. } => targets
                        .iter()
                        .enumerate()
                        .all(|(wi, t)| *t == EnumTarget::Symbol(wi as u32)),
                    Node::Array { item, .. } => is(&copy, *item),
                    Node::Map(v) => is(&copy, *v),
                    Node::UnionToUnion(branches) => {
                        branches.iter().enumerate().all(|(wi, b)| {
                            matches!(b, Branch::To { index, node } if *index == wi as u32 && is(&copy, *node))
                        })
                    }
                    Node::Record(rec) => match &rec.layout {
                        Layout::InOrder(steps) => steps
                            .iter()
                            .all(|s| matches!(s, Step::Read { node, .. } if is(&copy, *node))),
                        Layout::Reordered { .. } => false,
                    },
                    _ => false,
                };
                if !ok {
                    copy[i] = false;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if copy[i] {
                *node = Node::Copy(self.node_writer[i]);
            }
        }
    }
}
