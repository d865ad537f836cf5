//! The executor: walks writer bytes once, following a compiled plan, and appends reader bytes.
//!
//! Owns: the hot path. No intermediate value tree and no allocation per datum beyond `out`
//! growing (the reordering span table is a thread-local `Vec` reused across calls; `Lossiness`
//! allocates only when a dropped field with index >= 64 is lossy). Must not touch: schemas or
//! resolution rules (decided in `compile.rs`); no I/O, never awaits, never panics on input:
//! every length, count, index and nesting level from the input is checked before it is used.

use std::cell::RefCell;

use super::codec::{Cursor, R, at, write_bytes, write_long};
use super::compile::{
    Branch, Consts, Dropped, EnumTarget, Layout, Node, NodeId, RecordPlan, Source, Step,
};
use super::error::TranscodeError;
use super::schema::{Ty, TyId};
use super::{Lossiness, MAX_DEPTH, MAX_ZERO_SIZE_ITEMS, Plan};

thread_local! {
    /// Byte spans of writer fields for `Layout::Reordered` records, stacked for nested ones.
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
        cur: Cursor::new(input),
        depth: 0,
        zero_items: 0,
        lossy: Lossiness::default(),
        spans,
    };
    ex.run(plan.root, out)?;
    Ok((ex.cur.pos, ex.lossy))
}

/// Transcodes the datum at the start of `input` (more may follow, as in a container block);
/// returns the bytes it used.
pub(crate) fn transcode_prefix(
    plan: &Plan,
    input: &[u8],
    out: &mut Vec<u8>,
) -> R<(usize, Lossiness)> {
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
    cur: Cursor<'i>,
    depth: u32,
    /// Items of zero-byte writer types seen so far in this datum (see `check_count`).
    zero_items: u64,
    lossy: Lossiness,
    spans: &'s mut Vec<(usize, usize)>,
}

/// Adds a field name (or `[]` / `{}`) to an error on its way up.
fn within(segment: &str) -> impl FnOnce(Box<TranscodeError>) -> Box<TranscodeError> + '_ {
    move |mut e| {
        e.prepend(segment);
        e
    }
}

impl<'p> Exec<'p, '_, '_> {
    #[inline]
    fn enter(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Box::new(TranscodeError::TooDeep {
                at: at(self.cur.pos),
                limit: MAX_DEPTH,
            }));
        }
        Ok(())
    }

    #[inline]
    fn consts(&self, c: Consts) -> &'p [u8] {
        let plan: &'p Plan = self.plan;
        plan.consts
            .get(c.start as usize..(c.start + c.len) as usize)
            .unwrap_or(&[])
    }

    fn run(&mut self, id: NodeId, out: &mut Vec<u8>) -> R<()> {
        let plan: &'p Plan = self.plan;
        // Node ids come from the compiler, never from input; a miss would be a compiler bug.
        let Some(node) = plan.nodes.get(id as usize) else {
            return Ok(());
        };
        match node {
            Node::Copy(ty) => {
                let start = self.cur.pos;
                self.skip(*ty)?;
                out.extend_from_slice(self.cur.since(start));
            }
            Node::IntToFloat => {
                let v = self.cur.read_int()?;
                out.extend_from_slice(&(v as f32).to_le_bytes());
            }
            Node::IntToDouble => {
                let v = self.cur.read_int()?;
                out.extend_from_slice(&f64::from(v).to_le_bytes());
            }
            Node::LongToFloat => {
                let v = self.cur.read_long()?;
                out.extend_from_slice(&(v as f32).to_le_bytes());
            }
            Node::LongToDouble => {
                let v = self.cur.read_long()?;
                out.extend_from_slice(&(v as f64).to_le_bytes());
            }
            Node::FloatToDouble => {
                let v = f32::from_le_bytes(self.cur.take_array::<4>()?);
                out.extend_from_slice(&f64::from(v).to_le_bytes());
            }
            Node::BytesToString => {
                let start = self.cur.pos;
                let b = self.cur.read_bytes()?;
                if std::str::from_utf8(b).is_err() {
                    return Err(Box::new(TranscodeError::InvalidUtf8 { at: at(start) }));
                }
                write_bytes(out, b);
            }
            Node::Enum { writer, targets } => {
                let start = self.cur.pos;
                let i = self.cur.read_long()?;
                let target = usize::try_from(i).ok().and_then(|i| targets.get(i));
                match target {
                    Some(EnumTarget::Symbol(j)) => write_long(out, i64::from(*j)),
                    Some(EnumTarget::Default(j)) => {
                        write_long(out, i64::from(*j));
                        self.lossy.enum_default = true;
                    }
                    Some(EnumTarget::Missing) => {
                        let symbol = match plan.writer.get(*writer) {
                            Ty::Enum { symbols, .. } => usize::try_from(i)
                                .ok()
                                .and_then(|i| symbols.get(i))
                                .cloned()
                                .unwrap_or_default(),
                            _ => String::new(),
                        };
                        return Err(Box::new(TranscodeError::UnknownEnumSymbol {
                            at: at(start),
                            symbol,
                        }));
                    }
                    None => {
                        return Err(Box::new(TranscodeError::BadEnumIndex {
                            at: at(start),
                            index: i,
                            count: targets.len(),
                        }));
                    }
                }
            }
            Node::Array { item, zero_size } => {
                self.enter()?;
                self.blocks(*item, *zero_size, false, out)
                    .map_err(within("[]"))?;
                self.depth -= 1;
            }
            Node::Map(value) => {
                self.enter()?;
                self.blocks(*value, false, true, out)
                    .map_err(within("{}"))?;
                self.depth -= 1;
            }
            Node::Record(rec) => {
                self.enter()?;
                self.record(rec, out)?;
                self.depth -= 1;
            }
            Node::UnionToUnion(branches) | Node::UnionToOne(branches) => {
                self.enter()?;
                let start = self.cur.pos;
                let i = self.cur.read_long()?;
                match usize::try_from(i).ok().and_then(|i| branches.get(i)) {
                    Some(Branch::To { index, node: inner }) => {
                        if matches!(node, Node::UnionToUnion(_)) {
                            write_long(out, i64::from(*index));
                        }
                        self.run(*inner, out)?;
                    }
                    Some(Branch::Fail {
                        writer_type,
                        reason,
                    }) => {
                        return Err(Box::new(TranscodeError::UnresolvableBranch {
                            at: at(start),
                            index: i as usize,
                            writer_type: writer_type.to_string(),
                            reason: reason.to_string(),
                        }));
                    }
                    None => {
                        return Err(Box::new(TranscodeError::BadUnionIndex {
                            at: at(start),
                            index: i,
                            count: branches.len(),
                        }));
                    }
                }
                self.depth -= 1;
            }
            Node::OneToUnion { index, node } => {
                write_long(out, i64::from(*index));
                self.run(*node, out)?;
            }
        }
        Ok(())
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
    fn blocks(&mut self, item: NodeId, zero_size: bool, map: bool, out: &mut Vec<u8>) -> R<()> {
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
                self.run(item, out)?;
            }
        }
    }

    fn record(&mut self, rec: &'p RecordPlan, out: &mut Vec<u8>) -> R<()> {
        match &rec.layout {
            Layout::InOrder(steps) => {
                for step in steps.iter() {
                    match step {
                        Step::Read { node, field } => {
                            self.run(*node, out).map_err(within(field))?;
                        }
                        Step::Skip(d) => self.drop_field(d)?,
                        Step::Default(c) => out.extend_from_slice(self.consts(*c)),
                    }
                }
            }
            Layout::Reordered { writer, reader } => {
                let base = self.spans.len();
                for slot in writer.iter() {
                    let start = self.cur.pos;
                    match &slot.dropped {
                        Some(d) => self.drop_field(d)?,
                        None => self.skip(slot.ty).map_err(within(&slot.field))?,
                    }
                    self.spans.push((start, self.cur.pos));
                }
                let (resume, end) = (self.cur.pos, self.cur.end);
                for src in reader.iter() {
                    match src {
                        Source::Default(c) => out.extend_from_slice(self.consts(*c)),
                        Source::Writer { slot, node, field } => {
                            let Some(&(s, e)) = self.spans.get(base + *slot as usize) else {
                                continue;
                            };
                            self.cur.pos = s;
                            self.cur.end = e;
                            self.run(*node, out).map_err(within(field))?;
                            if self.cur.pos != e {
                                // Skipping used a block byte size that the items disagree with.
                                let mut err =
                                    Box::new(TranscodeError::InconsistentBlock { at: at(s) });
                                err.prepend(field);
                                return Err(err);
                            }
                        }
                    }
                }
                self.cur.pos = resume;
                self.cur.end = end;
                self.spans.truncate(base);
            }
        }
        Ok(())
    }

    /// Skips a dropped writer field and notes whether it held something other than its baseline.
    #[inline]
    fn drop_field(&mut self, d: &Dropped) -> R<()> {
        let start = self.cur.pos;
        self.skip(d.ty).map_err(within(&d.field))?;
        let lossless = d
            .baseline
            .is_some_and(|c| self.consts(c) == self.cur.since(start));
        if !lossless {
            self.lossy.set(d.index as usize);
        }
        Ok(())
    }

    /// Skips one value of writer type `ty`, validating what a copy would pass on (int range,
    /// enum and union indexes, booleans, lengths), so that `Node::Copy` emits valid Avro.
    fn skip(&mut self, ty: TyId) -> R<()> {
        let plan: &'p Plan = self.plan;
        match plan.writer.get(ty) {
            Ty::Null => {}
            Ty::Boolean => {
                let start = self.cur.pos;
                let [b] = self.cur.take_array::<1>()?;
                if b > 1 {
                    return Err(Box::new(TranscodeError::InvalidBoolean {
                        at: at(start),
                        value: b,
                    }));
                }
            }
            Ty::Int => {
                self.cur.read_int()?;
            }
            Ty::Long => {
                self.cur.read_long()?;
            }
            Ty::Float => {
                self.cur.take(4)?;
            }
            Ty::Double => {
                self.cur.take(8)?;
            }
            Ty::Bytes | Ty::String => {
                self.cur.read_bytes()?;
            }
            Ty::Fixed { size, .. } => {
                self.cur.take(*size)?;
            }
            Ty::Enum { symbols, .. } => {
                let start = self.cur.pos;
                let i = self.cur.read_long()?;
                if usize::try_from(i).map_or(true, |i| i >= symbols.len()) {
                    return Err(Box::new(TranscodeError::BadEnumIndex {
                        at: at(start),
                        index: i,
                        count: symbols.len(),
                    }));
                }
            }
            Ty::Array(item) => {
                self.enter()?;
                let zero = plan
                    .writer
                    .zero_size
                    .get(*item as usize)
                    .copied()
                    .unwrap_or(false);
                self.skip_blocks(*item, zero, false).map_err(within("[]"))?;
                self.depth -= 1;
            }
            Ty::Map(value) => {
                self.enter()?;
                self.skip_blocks(*value, false, true)
                    .map_err(within("{}"))?;
                self.depth -= 1;
            }
            Ty::Union(branches) => {
                self.enter()?;
                let start = self.cur.pos;
                let i = self.cur.read_long()?;
                match usize::try_from(i).ok().and_then(|i| branches.get(i)) {
                    Some(b) => self.skip(*b)?,
                    None => {
                        return Err(Box::new(TranscodeError::BadUnionIndex {
                            at: at(start),
                            index: i,
                            count: branches.len(),
                        }));
                    }
                }
                self.depth -= 1;
            }
            Ty::Record { fields, .. } => {
                self.enter()?;
                for f in fields {
                    self.skip(f.ty).map_err(within(&f.name))?;
                }
                self.depth -= 1;
            }
        }
        Ok(())
    }

    fn skip_blocks(&mut self, item: TyId, zero_size: bool, map: bool) -> R<()> {
        loop {
            let start = self.cur.pos;
            let (count, size) = self.block_header()?;
            if count == 0 {
                return Ok(());
            }
            if let Some(size) = size {
                // The writer told us how long the block is: jump over it (what the byte size
                // is for). `read_len` already checked it against the bytes left.
                self.cur.take(size)?;
                continue;
            }
            self.check_count(count, zero_size, start)?;
            for _ in 0..count {
                if map {
                    self.cur.read_bytes()?;
                }
                self.skip(item)?;
            }
        }
    }
}
