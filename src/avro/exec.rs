//! The executor: walks writer bytes once, running the plan's lowered op program, and appends
//! reader bytes.
//!
//! Owns: the hot path. One loop per program frame dispatches flat ops (see `lower.rs`); a new
//! frame is entered only for array/map items, union branches, shared or recursive records and
//! reordered fields, and every frame counts against [`MAX_DEPTH`], so hostile nesting is an
//! error, not a stack overflow. No intermediate value tree and no allocation per datum beyond
//! `out` growing (the reordering span table is a thread-local `Vec` reused across calls, taken
//! only by plans with reordered records; `Lossiness` allocates only when a dropped field with
//! index >= 64 is lossy). Must not touch: schemas or resolution rules (decided in `compile.rs`
//! and `lower.rs`); no I/O, never awaits, never panics on input: every length, count, index and
//! nesting level from the input is checked before it is used.
//!
//! [`validate`] runs the writer root's skip program alone: the same validating skips a copy
//! does, with nothing written, for a datum forwarded byte for byte (identical schemas).
//!
//! Errors are built only on the failure path: the op or run item that fails returns a boxed
//! error, and each frame on the way up prepends the path of what it was running.

use std::cell::RefCell;

use super::codec::{Cursor, R, at, write_bytes, write_long};
use super::compile::{Consts, EnumTarget};
use super::error::TranscodeError;
use super::lower::{
    Act, BranchOp, NO_BASELINE, NO_INDEX, Op, Prim, ProgId, Program, ReSource, SkipItem, Target,
};
use super::schema::{Ty, TyId};
use super::{Lossiness, MAX_DEPTH, MAX_ZERO_SIZE_ITEMS, Plan};

thread_local! {
    /// Byte spans of writer fields for reordered records, stacked for nested ones.
    /// Kept per thread so `Plan::transcode` can take `&self` and still not allocate per datum.
    static SPANS: RefCell<Vec<(usize, usize)>> = const { RefCell::new(Vec::new()) };
}

#[inline]
fn run_root(
    plan: &Plan,
    input: &[u8],
    out: &mut Vec<u8>,
    spans: &mut Vec<(usize, usize)>,
) -> R<(usize, Lossiness)> {
    let mut ex = Exec {
        plan,
        input,
        prog: &plan.prog,
        cur: Cursor::new(input),
        depth: 0,
        zero_items: 0,
        lossy: Lossiness::default(),
        spans,
    };
    ex.exec(plan.prog.root, out)?;
    Ok((ex.cur.pos(), ex.lossy))
}

/// Transcodes the datum at the start of `input` (more may follow, as in a container block);
/// returns the bytes it used.
#[inline]
pub(crate) fn transcode_prefix(
    plan: &Plan,
    input: &[u8],
    out: &mut Vec<u8>,
) -> R<(usize, Lossiness)> {
    if !plan.prog.needs_spans {
        return run_root(plan, input, out, &mut Vec::new());
    }
    SPANS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut spans) => {
            spans.clear();
            run_root(plan, input, out, &mut spans)
        }
        Err(_) => run_root(plan, input, out, &mut Vec::new()),
    })
}

/// Transcodes one datum that must fill `input` exactly.
#[inline]
pub(crate) fn transcode(plan: &Plan, input: &[u8], out: &mut Vec<u8>) -> R<Lossiness> {
    let (used, lossy) = transcode_prefix(plan, input, out)?;
    if used != input.len() {
        return Err(Box::new(TranscodeError::TrailingBytes {
            at: at(used),
            extra: input.len().saturating_sub(used),
        }));
    }
    Ok(lossy)
}

/// Checks that `input` is exactly one datum of the plan's writer schema, by the validating skip
/// pass a copy makes (lengths, int range, enum and union indexes, booleans, blocks, nesting);
/// nothing is written and nothing allocated.
#[inline]
pub(crate) fn validate(plan: &Plan, input: &[u8]) -> R<()> {
    // Skip programs write nothing: `sink` and `spans` stay empty and never allocate.
    let mut sink = Vec::new();
    let mut ex = Exec {
        plan,
        input,
        prog: &plan.prog,
        cur: Cursor::new(input),
        depth: 0,
        zero_items: 0,
        lossy: Lossiness::default(),
        spans: &mut Vec::new(),
    };
    ex.exec(plan.prog.validate, &mut sink)?;
    debug_assert!(sink.is_empty(), "a skip program wrote output");
    let used = ex.cur.pos();
    if used != input.len() {
        return Err(Box::new(TranscodeError::TrailingBytes {
            at: at(used),
            extra: input.len().saturating_sub(used),
        }));
    }
    Ok(())
}

struct Exec<'p, 'i, 's> {
    plan: &'p Plan,
    input: &'i [u8],
    prog: &'p Program,
    /// The input position between frames; a running frame keeps its own copy in a local.
    cur: Cursor<'i>,
    /// Program frames currently entered.
    depth: u32,
    /// Items of zero-byte writer types seen so far in this datum (see `check_count`).
    zero_items: u64,
    lossy: Lossiness,
    spans: &'s mut Vec<(usize, usize)>,
}

#[cold]
#[inline(never)]
fn prepend(mut e: Box<TranscodeError>, segment: &str) -> Box<TranscodeError> {
    e.prepend(segment);
    e
}

impl<'p, 'i> Exec<'p, 'i, '_> {
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn consts(&self, c: Consts) -> &'p [u8] {
        let plan: &'p Plan = self.plan;
        plan.consts
            .get(c.start as usize..(c.start as usize).saturating_add(c.len as usize))
            .unwrap_or(&[])
    }

    fn seg_name(&self, seg: Option<&u32>) -> &'p str {
        let p: &'p Program = self.prog;
        seg.and_then(|&s| p.seg_names.get(s as usize))
            .map_or("", |s| &**s)
    }

    /// Adds the path of the op at `pc` to an error leaving its frame.
    #[cold]
    #[inline(never)]
    fn blame(&self, pc: usize, mut e: Box<TranscodeError>) -> Box<TranscodeError> {
        match self.prog.ops.get(pc) {
            Some(Op::Array { .. })
            | Some(Op::Loop { map: false, .. })
            | Some(Op::Next { map: false, .. }) => e.prepend("[]"),
            Some(Op::Map(_))
            | Some(Op::Loop { map: true, .. })
            | Some(Op::Next { map: true, .. }) => e.prepend("{}"),
            _ => {}
        }
        let seg = self.seg_name(self.prog.segs.get(pc));
        if !seg.is_empty() {
            e.prepend(seg);
        }
        e
    }

    /// Adds the path of a run item (`seq` or `drops` entry) to an error.
    #[cold]
    #[inline(never)]
    fn blame_item(
        &self,
        item: SkipItem,
        seg: Option<&u32>,
        mut e: Box<TranscodeError>,
    ) -> Box<TranscodeError> {
        match item {
            SkipItem::Array { .. } | SkipItem::PrimArray(_) => e.prepend("[]"),
            SkipItem::Map { .. } | SkipItem::PrimMap(_) => e.prepend("{}"),
            _ => {}
        }
        let seg = self.seg_name(seg);
        if !seg.is_empty() {
            e.prepend(seg);
        }
        e
    }

    #[cold]
    #[inline(never)]
    fn too_deep(&self) -> Box<TranscodeError> {
        Box::new(TranscodeError::TooDeep {
            at: at(self.cur.pos()),
            limit: MAX_DEPTH,
        })
    }

    /// Runs a program from a frame whose cursor is `cur` (a local): hands the position over
    /// and takes it back.
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn call(&mut self, cur: &mut Cursor<'i>, prog: ProgId, out: &mut Vec<u8>) -> R<()> {
        self.cur = *cur;
        let r = self.exec(prog, out);
        *cur = self.cur;
        r
    }

    /// Skips one run item, validating what a copy would pass on (int range, enum and union
    /// indexes, booleans, lengths), so that a `Copy` emits valid Avro.
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn skip_item(&mut self, cur: &mut Cursor<'i>, item: SkipItem, out: &mut Vec<u8>) -> R<()> {
        match item {
            SkipItem::Null => Ok(()),
            SkipItem::Bool => cur.skip_bool(),
            SkipItem::Int => cur.skip_int(),
            SkipItem::Long => cur.skip_long(),
            SkipItem::Bytes(n) => cur.skip_n(n as usize),
            SkipItem::Var => cur.skip_var(),
            SkipItem::Enum(n) => skip_enum(cur, n),
            SkipItem::Union { first, count } => match union_target(cur, self.prog, first, count)? {
                Target::Prim(p) => skip_prim(cur, p),
                Target::Call(prog) => self.call(cur, prog, out),
            },
            SkipItem::PrimArray(p) => self.skip_prim_blocks(cur, p, false),
            SkipItem::PrimMap(p) => self.skip_prim_blocks(cur, p, true),
            SkipItem::Array { item, zero } => {
                let t = self.target(item);
                self.cur = *cur;
                let r = self.skip_blocks(t, zero, false, out);
                *cur = self.cur;
                r
            }
            SkipItem::Map { value } => {
                let t = self.target(value);
                self.cur = *cur;
                let r = self.skip_blocks(t, false, true, out);
                *cur = self.cur;
                r
            }
            SkipItem::Call(prog) => self.call(cur, prog, out),
        }
    }

    #[cfg_attr(not(debug_assertions), inline(always))]
    fn target(&self, i: u32) -> Target {
        self.prog
            .targets
            .get(i as usize)
            .copied()
            .unwrap_or(Target::Prim(Prim::Null))
    }

    /// Runs program `id` in a new frame: the one place that recurses.
    ///
    /// The cursor lives in a local for the whole frame (registers, not memory); it is written
    /// back to `self.cur` only around the ops that call out.
    fn exec(&mut self, id: ProgId, out: &mut Vec<u8>) -> R<()> {
        if self.depth >= MAX_DEPTH {
            return Err(self.too_deep());
        }
        let p: &'p Program = self.prog;
        let consts: &'p [u8] = &self.plan.consts;
        // Program ids and op operands come from the lowering, never from input; a miss would be
        // a lowering bug and ends the frame rather than panicking.
        let Some(&entry) = p.entries.get(id as usize) else {
            return Ok(());
        };
        self.depth += 1;
        let mut pc = entry as usize;
        let mut cur = self.cur;
        // Items left in the current block of this frame's inline loop (loops do not nest
        // inline, see `lower.rs`).
        let mut left: u64 = 0;
        // The bytes left at that block's end, if it gave its byte size (else `usize::MAX`).
        let mut block_end = usize::MAX;
        macro_rules! tri {
            ($e:expr) => {
                if let Err(e) = $e {
                    return Err(self.blame(pc, e));
                }
            };
        }
        macro_rules! sync {
            ($e:expr) => {{
                self.cur = cur;
                let r = $e;
                cur = self.cur;
                tri!(r)
            }};
        }
        while let Some(&op) = p.ops.get(pc) {
            match op {
                Op::Ret => break,
                Op::Run { first, count } => {
                    let (first, count) = (first as usize, count as usize);
                    let items = p.seq.get(first..first + count).unwrap_or(&[]);
                    // Start of the bytes copied through and not yet appended.
                    let mut span = cur.rest;
                    for item in items {
                        match item.act {
                            Act::Copy => {
                                if let Err(e) = self.skip_item(&mut cur, item.skip, out) {
                                    let k = first + index_in(items, item);
                                    return Err(self.blame_item(item.skip, p.seq_segs.get(k), e));
                                }
                            }
                            Act::Drop {
                                base_start,
                                base_len,
                                index,
                            } => {
                                append(out, span, span.len().saturating_sub(cur.rest.len()));
                                let mark = cur.rest;
                                if let Err(e) = self.skip_item(&mut cur, item.skip, out) {
                                    let k = first + index_in(items, item);
                                    return Err(self.blame_item(item.skip, p.seq_segs.get(k), e));
                                }
                                if !same(consts, base_start, base_len, cur.since(mark)) {
                                    self.lossy.set(index as usize);
                                }
                                span = cur.rest;
                            }
                            Act::Emit(c) => {
                                append(out, span, span.len().saturating_sub(cur.rest.len()));
                                let bytes = self.consts(c);
                                append(out, bytes, bytes.len());
                                span = cur.rest;
                            }
                        }
                    }
                    append(out, span, span.len().saturating_sub(cur.rest.len()));
                }
                Op::Skip { first, count } => {
                    let (first, count) = (first as usize, count as usize);
                    let items = p.seq.get(first..first + count).unwrap_or(&[]);
                    for item in items {
                        if let Err(e) = self.skip_item(&mut cur, item.skip, out) {
                            let k = first + index_in(items, item);
                            return Err(self.blame_item(item.skip, p.seq_segs.get(k), e));
                        }
                    }
                }
                Op::IntToFloat => match cur.read_int() {
                    Ok(v) => out.extend_from_slice(&(v as f32).to_le_bytes()),
                    Err(e) => return Err(self.blame(pc, e)),
                },
                Op::IntToDouble => match cur.read_int() {
                    Ok(v) => out.extend_from_slice(&f64::from(v).to_le_bytes()),
                    Err(e) => return Err(self.blame(pc, e)),
                },
                Op::LongToFloat => match cur.read_long() {
                    Ok(v) => out.extend_from_slice(&(v as f32).to_le_bytes()),
                    Err(e) => return Err(self.blame(pc, e)),
                },
                Op::LongToDouble => match cur.read_long() {
                    Ok(v) => out.extend_from_slice(&(v as f64).to_le_bytes()),
                    Err(e) => return Err(self.blame(pc, e)),
                },
                Op::FloatToDouble => match cur.take_array::<4>() {
                    Ok(b) => out.extend_from_slice(&f64::from(f32::from_le_bytes(b)).to_le_bytes()),
                    Err(e) => return Err(self.blame(pc, e)),
                },
                Op::BytesToString => tri!(bytes_to_string(&mut cur, out)),
                Op::Enum {
                    first,
                    count,
                    writer,
                } => {
                    let start = cur.pos();
                    match cur.read_index(count) {
                        Ok(Ok(i)) => match p.enum_targets.get(first as usize + i as usize) {
                            Some(EnumTarget::Symbol(j)) => write_long(out, i64::from(*j)),
                            Some(EnumTarget::Default(j)) => {
                                write_long(out, i64::from(*j));
                                self.lossy.enum_default = true;
                            }
                            Some(EnumTarget::Missing) | None => {
                                let e = self.unknown_symbol(start, writer, i);
                                return Err(self.blame(pc, e));
                            }
                        },
                        Ok(Err(index)) => {
                            return Err(self.blame(pc, bad_enum(start, index, count)));
                        }
                        Err(e) => return Err(self.blame(pc, e)),
                    }
                }
                Op::Loop { end, map, zero } => {
                    match self.block(&mut cur, zero, out) {
                        Ok((0, _)) => {
                            pc = end as usize;
                            continue;
                        }
                        Ok((n, e)) => (left, block_end) = (n, e),
                        Err(e) => return Err(self.blame(pc, e)),
                    }
                    if map {
                        tri!(copy_key(&mut cur, out));
                    }
                }
                Op::Next { start, map, zero } => {
                    left = left.saturating_sub(1);
                    if left == 0 {
                        if block_end != usize::MAX && block_end != cur.remaining() {
                            let e =
                                Box::new(TranscodeError::InconsistentBlock { at: at(cur.pos()) });
                            return Err(self.blame(pc, e));
                        }
                        match self.block(&mut cur, zero, out) {
                            Ok((0, _)) => {
                                pc += 1;
                                continue;
                            }
                            Ok((n, e)) => (left, block_end) = (n, e),
                            Err(e) => return Err(self.blame(pc, e)),
                        }
                    }
                    if map {
                        tri!(copy_key(&mut cur, out));
                    }
                    pc = start as usize;
                    continue;
                }
                Op::Array { item, zero } => sync!(self.blocks(item, zero, false, out)),
                Op::Map(value) => sync!(self.blocks(value, false, true, out)),
                Op::Union { first, count } => sync!(self.union(first, count, out)),
                Op::WriteIndex(i) => write_long(out, i64::from(i)),
                Op::Call(prog) => sync!(self.exec(prog, out)),
                Op::Reordered(i) => sync!(self.reordered(i, out)),
            }
            pc += 1;
        }
        self.cur = cur;
        self.depth -= 1;
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn unknown_symbol(&self, start: usize, writer: TyId, i: u32) -> Box<TranscodeError> {
        let plan: &'p Plan = self.plan;
        let symbol = match plan.writer.get(writer) {
            Ty::Enum { symbols, .. } => symbols.get(i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        };
        Box::new(TranscodeError::UnknownEnumSymbol {
            at: at(start),
            symbol,
        })
    }

    fn union(&mut self, first: u32, count: u32, out: &mut Vec<u8>) -> R<()> {
        let start = self.cur.pos();
        let i = match self.cur.read_index(count)? {
            Ok(i) => i,
            Err(index) => return Err(bad_union(start, index, count)),
        };
        let p: &'p Program = self.prog;
        match p.branches.get(first as usize + i as usize) {
            Some(&BranchOp::To { index, prog }) => {
                if index != NO_INDEX {
                    write_long(out, i64::from(index));
                }
                self.exec(prog, out)
            }
            Some(&BranchOp::Fail(f)) => {
                let (writer_type, reason) = p
                    .fails
                    .get(f as usize)
                    .map(|(w, r)| (w.to_string(), r.to_string()))
                    .unwrap_or_default();
                Err(Box::new(TranscodeError::UnresolvableBranch {
                    at: at(start),
                    index: i as usize,
                    writer_type,
                    reason,
                }))
            }
            None => Ok(()),
        }
    }

    /// Bounds a block's item count before looping over it. Items that take at least one byte
    /// cannot outnumber the bytes left. Items that take zero bytes (null, fixed(0), records of
    /// those) are bounded by a per-datum cap instead, or `[null] x 2^60` would spin forever.
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn check_count(&mut self, cur: &Cursor, count: u64, zero_size: bool, start: usize) -> R<()> {
        if zero_size {
            self.zero_items = self.zero_items.saturating_add(count);
            if self.zero_items > MAX_ZERO_SIZE_ITEMS {
                return Err(Box::new(TranscodeError::TooManyItems {
                    at: at(start),
                    limit: MAX_ZERO_SIZE_ITEMS,
                }));
            }
        } else if count > cur.remaining() as u64 {
            return Err(Box::new(TranscodeError::HostileLength {
                at: at(start),
                what: "block count",
                value: i64::try_from(count).unwrap_or(i64::MAX),
                remaining: cur.remaining(),
            }));
        }
        Ok(())
    }

    /// Starts a block of an inline loop: reads and checks its header and writes the reader's
    /// (the same count, no byte size; `0` for the end marker). Returns the item count and, for a
    /// block that gave its byte size, the bytes that must be left at its end (else `usize::MAX`).
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn block(
        &mut self,
        cur: &mut Cursor<'i>,
        zero_size: bool,
        out: &mut Vec<u8>,
    ) -> R<(u64, usize)> {
        let start = cur.pos();
        let (count, size) = block_header(cur)?;
        if count == 0 {
            out.push(0);
            return Ok((0, usize::MAX));
        }
        self.check_count(cur, count, zero_size, start)?;
        write_long(out, count as i64);
        // `read_len` checked the size against the bytes left.
        let end = size.map_or(usize::MAX, |size| cur.remaining().saturating_sub(size));
        Ok((count, end))
    }

    /// Resolves array or map blocks. Output is re-blocked with the input's counts but without
    /// byte sizes (item sizes can change), which is valid Avro.
    fn blocks(&mut self, item: ProgId, zero_size: bool, map: bool, out: &mut Vec<u8>) -> R<()> {
        loop {
            let mut cur = self.cur;
            let start = cur.pos();
            let (count, size) = block_header(&mut cur)?;
            if count == 0 {
                self.cur = cur;
                out.push(0);
                return Ok(());
            }
            self.check_count(&cur, count, zero_size, start)?;
            write_long(out, count as i64);
            let before = cur.remaining();
            for _ in 0..count {
                if map {
                    let key = cur.read_bytes()?;
                    write_bytes(out, key);
                }
                self.call(&mut cur, item, out)?;
            }
            check_block_size(size, before - cur.remaining(), start)?;
            self.cur = cur;
        }
    }

    /// Skips the blocks of an array or map of primitives in this frame.
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn skip_prim_blocks(&mut self, cur: &mut Cursor<'i>, p: Prim, map: bool) -> R<()> {
        let zero_size = matches!(p, Prim::Null | Prim::Bytes(0)) && !map;
        loop {
            let start = cur.pos();
            let (count, size) = block_header(cur)?;
            if count == 0 {
                return Ok(());
            }
            self.check_count(cur, count, zero_size, start)?;
            let before = cur.remaining();
            for _ in 0..count {
                if map {
                    cur.skip_var()?;
                }
                skip_prim(cur, p)?;
            }
            check_block_size(size, before - cur.remaining(), start)?;
        }
    }

    /// Skips array or map blocks, jumping over blocks whose byte size the writer gave.
    fn skip_blocks(
        &mut self,
        item: Target,
        zero_size: bool,
        map: bool,
        out: &mut Vec<u8>,
    ) -> R<()> {
        let mut cur = self.cur;
        loop {
            let start = cur.pos();
            let (count, size) = block_header(&mut cur)?;
            if count == 0 {
                self.cur = cur;
                return Ok(());
            }
            // A block's byte size would let us jump over it, but its items would then go out
            // unchecked: they are skipped (validated) like any others, and must fill the size.
            self.check_count(&cur, count, zero_size, start)?;
            let before = cur.remaining();
            match item {
                // Strings and bytes (the common array and map items) get their own loops.
                Target::Prim(Prim::Var) if map => {
                    for _ in 0..count {
                        cur.skip_var()?;
                        cur.skip_var()?;
                    }
                }
                Target::Prim(Prim::Var) => {
                    for _ in 0..count {
                        cur.skip_var()?;
                    }
                }
                Target::Prim(p) => {
                    for _ in 0..count {
                        if map {
                            cur.skip_var()?;
                        }
                        skip_prim(&mut cur, p)?;
                    }
                }
                Target::Call(prog) => {
                    for _ in 0..count {
                        if map {
                            cur.skip_var()?;
                        }
                        self.call(&mut cur, prog, out)?;
                    }
                }
            }
            check_block_size(size, before - cur.remaining(), start)?;
        }
    }

    /// A record whose reader order differs from the writer's: skip every writer field, noting
    /// its span, then replay the spans in reader order.
    fn reordered(&mut self, i: u32, out: &mut Vec<u8>) -> R<()> {
        let p: &'p Program = self.prog;
        let Some(rec) = p.reorders.get(i as usize) else {
            return Ok(());
        };
        let base = self.spans.len();
        for &slot in rec.slots.iter() {
            let start = self.cur.pos();
            self.exec(slot, out)?;
            self.spans.push((start, self.cur.pos()));
        }
        let resume = self.cur;
        for src in rec.sources.iter() {
            match src {
                ReSource::Default(c) => out.extend_from_slice(self.consts(*c)),
                ReSource::Writer { slot, prog, field } => {
                    let Some(&(s, e)) = self.spans.get(base + *slot as usize) else {
                        continue;
                    };
                    self.cur.set_span(self.input, s, e);
                    if let Err(err) = self.exec(*prog, out) {
                        return Err(prepend(err, field));
                    }
                    if self.cur.pos() != e {
                        // Skipping used a block byte size that the items disagree with.
                        let err = Box::new(TranscodeError::InconsistentBlock { at: at(s) });
                        return Err(prepend(err, field));
                    }
                }
            }
        }
        self.cur = resume;
        self.spans.truncate(base);
        Ok(())
    }
}

/// Appends `from[..len]`. Short spans (most copy runs) are copied as one fixed 64-byte block
/// and trimmed, which compiles to a few vector moves instead of a `memcpy` call.
#[cfg_attr(not(debug_assertions), inline(always))]
fn append(out: &mut Vec<u8>, from: &[u8], len: usize) {
    if len == 0 {
        return;
    }
    if len <= 64
        && let Some(block) = from.first_chunk::<64>()
    {
        let n = out.len();
        out.extend_from_slice(block);
        out.truncate(n + len);
    } else {
        out.extend_from_slice(from.get(..len).unwrap_or(&[]));
    }
}

/// The index of `item` in `items` (it is an element of it), for error paths.
#[cold]
fn index_in<T>(items: &[T], item: &T) -> usize {
    let size = std::mem::size_of::<T>().max(1);
    (item as *const T as usize).saturating_sub(items.as_ptr() as usize) / size
}

/// Copies a map key.
#[cfg_attr(not(debug_assertions), inline(always))]
fn copy_key(cur: &mut Cursor, out: &mut Vec<u8>) -> R<()> {
    let key = cur.read_bytes()?;
    write_bytes(out, key);
    Ok(())
}

/// A block that gave its byte size must be exactly that long.
#[cfg_attr(not(debug_assertions), inline(always))]
fn check_block_size(size: Option<usize>, used: usize, start: usize) -> R<()> {
    match size {
        Some(size) if size != used => Err(Box::new(TranscodeError::InconsistentBlock {
            at: at(start),
        })),
        _ => Ok(()),
    }
}

/// Reads one block header: the item count (negative counts are followed by a byte size),
/// returning `(count, byte_size)`; count 0 ends the array or map.
#[cfg_attr(not(debug_assertions), inline(always))]
fn block_header(cur: &mut Cursor) -> R<(u64, Option<usize>)> {
    let count = cur.read_long()?;
    if count >= 0 {
        return Ok((count as u64, None));
    }
    let size = cur.read_len("block byte size")?;
    // `unsigned_abs` is defined for i64::MIN too: a hostile count becomes a huge one, which
    // `check_count` then rejects.
    Ok((count.unsigned_abs(), Some(size)))
}

/// Does `got` equal the baseline `consts[start..][..len]`? Never for [`NO_BASELINE`].
#[cfg_attr(not(debug_assertions), inline(always))]
fn same(consts: &[u8], start: u32, len: u32, got: &[u8]) -> bool {
    if len == NO_BASELINE || len as usize != got.len() {
        return false;
    }
    let base = consts
        .get(start as usize..(start as usize).saturating_add(len as usize))
        .unwrap_or(&[]);
    // Most baselines are one byte (null branch, empty string, false, zero): no memcmp call.
    match got.len() {
        0 => true,
        1 => base.first() == got.first(),
        _ => base == got,
    }
}

#[cold]
#[inline(never)]
fn bad_union(start: usize, index: i64, count: u32) -> Box<TranscodeError> {
    Box::new(TranscodeError::BadUnionIndex {
        at: at(start),
        index,
        count: count as usize,
    })
}

#[cold]
#[inline(never)]
fn bad_enum(start: usize, index: i64, count: u32) -> Box<TranscodeError> {
    Box::new(TranscodeError::BadEnumIndex {
        at: at(start),
        index,
        count: count as usize,
    })
}

#[cfg_attr(not(debug_assertions), inline(always))]
fn skip_enum(cur: &mut Cursor, count: u32) -> R<()> {
    let start = cur.pos();
    match cur.read_index(count)? {
        Ok(_) => Ok(()),
        Err(index) => Err(bad_enum(start, index, count)),
    }
}

#[cfg_attr(not(debug_assertions), inline(always))]
fn skip_prim(cur: &mut Cursor, p: Prim) -> R<()> {
    match p {
        Prim::Null => Ok(()),
        Prim::Bool => cur.skip_bool(),
        Prim::Int => cur.skip_int(),
        Prim::Long => cur.skip_long(),
        Prim::Bytes(n) => cur.skip_n(n as usize),
        Prim::Var => cur.skip_var(),
        Prim::Enum(n) => skip_enum(cur, n),
    }
}

/// Reads a writer union index and returns how to skip that branch.
#[cfg_attr(not(debug_assertions), inline(always))]
fn union_target(cur: &mut Cursor, p: &Program, first: u32, count: u32) -> R<Target> {
    let start = cur.pos();
    match cur.read_index(count)? {
        Ok(i) => Ok(p
            .targets
            .get(first as usize + i as usize)
            .copied()
            .unwrap_or(Target::Prim(Prim::Null))),
        Err(index) => Err(bad_union(start, index, count)),
    }
}

#[cfg_attr(not(debug_assertions), inline(always))]
fn bytes_to_string(cur: &mut Cursor, out: &mut Vec<u8>) -> R<()> {
    let start = cur.pos();
    let b = cur.read_bytes()?;
    if std::str::from_utf8(b).is_err() {
        return Err(Box::new(TranscodeError::InvalidUtf8 { at: at(start) }));
    }
    write_bytes(out, b);
    Ok(())
}
