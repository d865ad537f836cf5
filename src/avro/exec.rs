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
//! Errors are built only on the failure path: an op that fails returns a boxed error, and each
//! frame on the way up prepends the path of the op that was running (`Program::segs`).

use std::cell::RefCell;

use super::codec::{Cursor, R, at, write_bytes, write_long};
use super::compile::{Consts, EnumTarget};
use super::error::TranscodeError;
use super::lower::{BranchOp, NO_BASELINE, NO_INDEX, Op, Prim, ProgId, Program, ReSource, Target};
use super::schema::Ty;
use super::{Lossiness, MAX_DEPTH, MAX_ZERO_SIZE_ITEMS, Plan};

thread_local! {
    /// Byte spans of writer fields for reordered records, stacked for nested ones.
    /// Kept per thread so `Plan::transcode` can take `&self` and still not allocate per datum.
    static SPANS: RefCell<Vec<(usize, usize)>> = const { RefCell::new(Vec::new()) };
}

fn run_root(
    plan: &Plan,
    input: &[u8],
    out: &mut Vec<u8>,
    spans: &mut Vec<(usize, usize)>,
) -> R<(usize, Lossiness)> {
    let mut ex = Exec {
        plan,
        prog: &plan.prog,
        cur: Cursor::new(input),
        depth: 0,
        zero_items: 0,
        lossy: Lossiness::default(),
        spans,
    };
    ex.exec(plan.prog.root, out)?;
    Ok((ex.cur.pos, ex.lossy))
}

/// Transcodes the datum at the start of `input` (more may follow, as in a container block);
/// returns the bytes it used.
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

struct Exec<'p, 'i, 's> {
    plan: &'p Plan,
    prog: &'p Program,
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

impl<'p> Exec<'p, '_, '_> {
    #[inline]
    fn consts(&self, c: Consts) -> &'p [u8] {
        let plan: &'p Plan = self.plan;
        plan.consts
            .get(c.start as usize..(c.start as usize).saturating_add(c.len as usize))
            .unwrap_or(&[])
    }

    /// Adds the path of the op at `pc` to an error leaving its frame.
    #[cold]
    #[inline(never)]
    fn blame(&self, pc: usize, mut e: Box<TranscodeError>) -> Box<TranscodeError> {
        let p = self.prog;
        match p.ops.get(pc) {
            Some(Op::Array { .. } | Op::SkipArray { .. }) => e.prepend("[]"),
            Some(Op::Map(_) | Op::SkipMap(_)) => e.prepend("{}"),
            _ => {}
        }
        let seg = p
            .segs
            .get(pc)
            .and_then(|&s| p.seg_names.get(s as usize))
            .map_or("", |s| &**s);
        if !seg.is_empty() {
            e.prepend(seg);
        }
        e
    }

    #[cold]
    #[inline(never)]
    fn too_deep(&self) -> Box<TranscodeError> {
        Box::new(TranscodeError::TooDeep {
            at: at(self.cur.pos),
            limit: MAX_DEPTH,
        })
    }

    /// Runs program `id` in a new frame: the one place that recurses.
    fn exec(&mut self, id: ProgId, out: &mut Vec<u8>) -> R<()> {
        if self.depth >= MAX_DEPTH {
            return Err(self.too_deep());
        }
        let p: &'p Program = self.prog;
        // Program ids and op operands come from the lowering, never from input; a miss would be
        // a lowering bug and ends the frame rather than panicking.
        let Some(&entry) = p.entries.get(id as usize) else {
            return Ok(());
        };
        self.depth += 1;
        let mut pc = entry as usize;
        let mut mark = self.cur.pos;
        macro_rules! tri {
            ($e:expr) => {
                if let Err(e) = $e {
                    return Err(self.blame(pc, e));
                }
            };
        }
        while let Some(&op) = p.ops.get(pc) {
            match op {
                Op::Ret => break,
                Op::Mark => mark = self.cur.pos,
                Op::Flush => out.extend_from_slice(self.cur.since(mark)),
                Op::FlushMark => {
                    out.extend_from_slice(self.cur.since(mark));
                    mark = self.cur.pos;
                }
                Op::SkipBool => tri!(self.cur.skip_bool()),
                Op::SkipInt => tri!(self.cur.skip_int()),
                Op::SkipLong => tri!(self.cur.skip_long()),
                Op::SkipBytes(n) => tri!(self.cur.skip_n(n as usize)),
                Op::SkipVar => tri!(self.cur.skip_var()),
                Op::SkipEnum(n) => tri!(self.skip_enum(n)),
                Op::SkipUnion { first, count } => tri!(self.skip_union(first, count, out)),
                Op::SkipArray { item, zero } => tri!(self.skip_blocks(item, zero, false, out)),
                Op::SkipMap(value) => tri!(self.skip_blocks(value, false, true, out)),
                Op::SkipCall(prog) => tri!(self.exec(prog, out)),
                Op::LossCheck {
                    base_start,
                    base_len,
                    index,
                } => {
                    let lossless = base_len != NO_BASELINE
                        && self.consts(Consts {
                            start: base_start,
                            len: base_len,
                        }) == self.cur.since(mark);
                    if !lossless {
                        self.lossy.set(index as usize);
                    }
                }
                Op::Default(c) => out.extend_from_slice(self.consts(c)),
                Op::IntToFloat => match self.cur.read_int() {
                    Ok(v) => out.extend_from_slice(&(v as f32).to_le_bytes()),
                    Err(e) => return Err(self.blame(pc, e)),
                },
                Op::IntToDouble => match self.cur.read_int() {
                    Ok(v) => out.extend_from_slice(&f64::from(v).to_le_bytes()),
                    Err(e) => return Err(self.blame(pc, e)),
                },
                Op::LongToFloat => match self.cur.read_long() {
                    Ok(v) => out.extend_from_slice(&(v as f32).to_le_bytes()),
                    Err(e) => return Err(self.blame(pc, e)),
                },
                Op::LongToDouble => match self.cur.read_long() {
                    Ok(v) => out.extend_from_slice(&(v as f64).to_le_bytes()),
                    Err(e) => return Err(self.blame(pc, e)),
                },
                Op::FloatToDouble => match self.cur.take_array::<4>() {
                    Ok(b) => out.extend_from_slice(&f64::from(f32::from_le_bytes(b)).to_le_bytes()),
                    Err(e) => return Err(self.blame(pc, e)),
                },
                Op::BytesToString => tri!(self.bytes_to_string(out)),
                Op::Enum {
                    first,
                    count,
                    writer,
                } => tri!(self.enum_(first, count, writer, out)),
                Op::Array { item, zero } => tri!(self.blocks(item, zero, false, out)),
                Op::Map(value) => tri!(self.blocks(value, false, true, out)),
                Op::Union { first, count } => tri!(self.union(first, count, out)),
                Op::WriteIndex(i) => write_long(out, i64::from(i)),
                Op::Call(prog) => tri!(self.exec(prog, out)),
                Op::Reordered(i) => tri!(self.reordered(i, out)),
            }
            pc += 1;
        }
        self.depth -= 1;
        Ok(())
    }

    #[inline]
    fn skip_enum(&mut self, count: u32) -> R<()> {
        let start = self.cur.pos;
        match self.cur.read_index(count)? {
            Ok(_) => Ok(()),
            Err(index) => Err(Box::new(TranscodeError::BadEnumIndex {
                at: at(start),
                index,
                count: count as usize,
            })),
        }
    }

    #[inline]
    fn skip_prim(&mut self, p: Prim) -> R<()> {
        match p {
            Prim::Null => Ok(()),
            Prim::Bool => self.cur.skip_bool(),
            Prim::Int => self.cur.skip_int(),
            Prim::Long => self.cur.skip_long(),
            Prim::Bytes(n) => self.cur.skip_n(n as usize),
            Prim::Var => self.cur.skip_var(),
            Prim::Enum(n) => self.skip_enum(n),
        }
    }

    #[inline]
    fn skip_target(&mut self, t: Target, out: &mut Vec<u8>) -> R<()> {
        match t {
            Target::Prim(p) => self.skip_prim(p),
            Target::Call(prog) => self.exec(prog, out),
        }
    }

    fn skip_union(&mut self, first: u32, count: u32, out: &mut Vec<u8>) -> R<()> {
        let start = self.cur.pos;
        let i = match self.cur.read_index(count)? {
            Ok(i) => i,
            Err(index) => {
                return Err(Box::new(TranscodeError::BadUnionIndex {
                    at: at(start),
                    index,
                    count: count as usize,
                }));
            }
        };
        let p: &'p Program = self.prog;
        match p.targets.get(first as usize + i as usize) {
            Some(&t) => self.skip_target(t, out),
            None => Ok(()),
        }
    }

    fn bytes_to_string(&mut self, out: &mut Vec<u8>) -> R<()> {
        let start = self.cur.pos;
        let b = self.cur.read_bytes()?;
        if std::str::from_utf8(b).is_err() {
            return Err(Box::new(TranscodeError::InvalidUtf8 { at: at(start) }));
        }
        write_bytes(out, b);
        Ok(())
    }

    fn enum_(&mut self, first: u32, count: u32, writer: u32, out: &mut Vec<u8>) -> R<()> {
        let start = self.cur.pos;
        let i = match self.cur.read_index(count)? {
            Ok(i) => i,
            Err(index) => {
                return Err(Box::new(TranscodeError::BadEnumIndex {
                    at: at(start),
                    index,
                    count: count as usize,
                }));
            }
        };
        let p: &'p Program = self.prog;
        match p.enum_targets.get(first as usize + i as usize) {
            Some(EnumTarget::Symbol(j)) => write_long(out, i64::from(*j)),
            Some(EnumTarget::Default(j)) => {
                write_long(out, i64::from(*j));
                self.lossy.enum_default = true;
            }
            Some(EnumTarget::Missing) | None => {
                let plan: &'p Plan = self.plan;
                let symbol = match plan.writer.get(writer) {
                    Ty::Enum { symbols, .. } => {
                        symbols.get(i as usize).cloned().unwrap_or_default()
                    }
                    _ => String::new(),
                };
                return Err(Box::new(TranscodeError::UnknownEnumSymbol {
                    at: at(start),
                    symbol,
                }));
            }
        }
        Ok(())
    }

    fn union(&mut self, first: u32, count: u32, out: &mut Vec<u8>) -> R<()> {
        let start = self.cur.pos;
        let i = match self.cur.read_index(count)? {
            Ok(i) => i,
            Err(index) => {
                return Err(Box::new(TranscodeError::BadUnionIndex {
                    at: at(start),
                    index,
                    count: count as usize,
                }));
            }
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

    /// Reads one block header: the item count (negative counts are followed by a byte size),
    /// returning `(count, byte_size)`; count 0 ends the array or map.
    #[inline]
    fn block_header(&mut self) -> R<(u64, Option<usize>)> {
        let count = self.cur.read_long()?;
        if count >= 0 {
            return Ok((count as u64, None));
        }
        let size = self.cur.read_len("block byte size")?;
        // `unsigned_abs` is defined for i64::MIN too: a hostile count becomes a huge one,
        // which `check_count` then rejects.
        Ok((count.unsigned_abs(), Some(size)))
    }

    /// Bounds a block's item count before looping over it. Items that take at least one byte
    /// cannot outnumber the bytes left. Items that take zero bytes (null, fixed(0), records of
    /// those) are bounded by a per-datum cap instead, or `[null] x 2^60` would spin forever.
    #[inline]
    fn check_count(&mut self, count: u64, zero_size: bool, start: usize) -> R<()> {
        if zero_size {
            self.zero_items = self.zero_items.saturating_add(count);
            if self.zero_items > MAX_ZERO_SIZE_ITEMS {
                return Err(Box::new(TranscodeError::TooManyItems {
                    at: at(start),
                    limit: MAX_ZERO_SIZE_ITEMS,
                }));
            }
        } else if count > self.cur.remaining() as u64 {
            return Err(Box::new(TranscodeError::HostileLength {
                at: at(start),
                what: "block count",
                value: i64::try_from(count).unwrap_or(i64::MAX),
                remaining: self.cur.remaining(),
            }));
        }
        Ok(())
    }

    /// Resolves array or map blocks. Output is re-blocked with the input's counts but without
    /// byte sizes (item sizes can change), which is valid Avro.
    fn blocks(&mut self, item: ProgId, zero_size: bool, map: bool, out: &mut Vec<u8>) -> R<()> {
        loop {
            let start = self.cur.pos;
            let (count, _size) = self.block_header()?;
            if count == 0 {
                out.push(0);
                return Ok(());
            }
            self.check_count(count, zero_size, start)?;
            write_long(out, count as i64);
            for _ in 0..count {
                if map {
                    let key = self.cur.read_bytes()?;
                    write_bytes(out, key);
                }
                self.exec(item, out)?;
            }
        }
    }

    /// Skips array or map blocks, jumping over blocks whose byte size the writer gave.
    fn skip_blocks(&mut self, item: Target, zero_size: bool, map: bool, out: &mut Vec<u8>) -> R<()> {
        loop {
            let start = self.cur.pos;
            let (count, size) = self.block_header()?;
            if count == 0 {
                return Ok(());
            }
            if let Some(size) = size {
                // The writer told us how long the block is: jump over it (what the byte size
                // is for). `read_len` already checked it against the bytes left.
                self.cur.skip_n(size)?;
                continue;
            }
            self.check_count(count, zero_size, start)?;
            match item {
                Target::Prim(p) if !map => {
                    for _ in 0..count {
                        self.skip_prim(p)?;
                    }
                }
                _ => {
                    for _ in 0..count {
                        if map {
                            self.cur.skip_var()?;
                        }
                        self.skip_target(item, out)?;
                    }
                }
            }
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
            let start = self.cur.pos;
            self.exec(slot, out)?;
            self.spans.push((start, self.cur.pos));
        }
        let (resume, end) = (self.cur.pos, self.cur.end);
        for src in rec.sources.iter() {
            match src {
                ReSource::Default(c) => out.extend_from_slice(self.consts(*c)),
                ReSource::Writer { slot, prog, field } => {
                    let Some(&(s, e)) = self.spans.get(base + *slot as usize) else {
                        continue;
                    };
                    self.cur.pos = s;
                    self.cur.end = e;
                    if let Err(err) = self.exec(*prog, out) {
                        return Err(prepend(err, field));
                    }
                    if self.cur.pos != e {
                        // Skipping used a block byte size that the items disagree with.
                        let err = Box::new(TranscodeError::InconsistentBlock { at: at(s) });
                        return Err(prepend(err, field));
                    }
                }
            }
        }
        self.cur.pos = resume;
        self.cur.end = end;
        self.spans.truncate(base);
        Ok(())
    }
}
