//! The bytes → bytes executor for a compiled [`Plan`], and [`Plan::transcode`] over it.
//!
//! Owns: walking writer-encoded bytes once, field by field, and appending the reader encoding.
//! Must not: allocate per field (the only allocations are `out` growing and a [`Lossiness`]
//! entry when something is lost), panic or loop on hostile input, or consult descriptors.

use super::compile::{
    FieldPlan, Node, Op, Plan, WT_EGROUP, WT_I32, WT_I64, WT_LEN, WT_SGROUP, WT_VARINT,
};
use super::{Lossiness, MAX_DEPTH, TranscodeError, UnknownFields};

impl Plan {
    /// Transcodes one message: `input` is the writer-encoded payload AFTER the message indexes;
    /// the reader-encoded bytes (no framing) are appended to `out`. On error `out` is left as
    /// it was.
    pub fn transcode<'p>(
        &'p self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Lossiness<'p>, TranscodeError> {
        if self.identity {
            out.extend_from_slice(input);
            return Ok(Lossiness::new(&self.sites));
        }
        run(self, input, out)
    }
}

/// The largest field number protobuf allows.
const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

fn run<'p>(
    plan: &'p Plan,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<Lossiness<'p>, TranscodeError> {
    let restore = out.len();
    out.reserve(input.len());
    let mut exec = Exec {
        plan,
        base: input.as_ptr() as usize,
        preserve: plan.unknown == UnknownFields::Preserve,
        loss: Lossiness::new(&plan.sites),
    };
    let mut pos = 0;
    match exec.message(plan.root, input, &mut pos, None, out, 0) {
        Ok(()) => Ok(exec.loss),
        Err(e) => {
            out.truncate(restore);
            Err(e)
        }
    }
}

enum VarintError {
    Truncated,
    Malformed,
}

#[inline]
fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, VarintError> {
    let mut value = 0u64;
    for i in 0..10 {
        let Some(&b) = buf.get(*pos + i) else {
            return Err(VarintError::Truncated);
        };
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            *pos += i + 1;
            return Ok(value);
        }
    }
    Err(VarintError::Malformed)
}

#[inline]
fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

#[inline]
fn encode_varint(mut v: u64, buf: &mut [u8; 10]) -> usize {
    let mut i = 0;
    while v >= 0x80 && i < 9 {
        buf[i] = (v as u8) | 0x80;
        v >>= 7;
        i += 1;
    }
    buf[i] = v as u8;
    i + 1
}

fn zigzag32(v: u32) -> i64 {
    i64::from(((v >> 1) as i32) ^ -((v & 1) as i32))
}

fn zigzag64(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn wire_type_name(wt: u8) -> &'static str {
    match wt {
        WT_VARINT => "varint",
        WT_I64 => "64-bit",
        WT_LEN => "length-delimited",
        WT_SGROUP => "start-group",
        WT_EGROUP => "end-group",
        WT_I32 => "32-bit",
        _ => "invalid",
    }
}

fn mask_name(mask: u8) -> &'static str {
    const V: u8 = 1 << WT_VARINT;
    const F64: u8 = 1 << WT_I64;
    const L: u8 = 1 << WT_LEN;
    const G: u8 = 1 << WT_SGROUP;
    const F32: u8 = 1 << WT_I32;
    match mask {
        V => "varint",
        F64 => "64-bit",
        L => "length-delimited",
        G => "start-group",
        F32 => "32-bit",
        m if m == V | L => "varint (or packed)",
        m if m == F64 | L => "64-bit (or packed)",
        m if m == F32 | L => "32-bit (or packed)",
        _ => "another wire type",
    }
}

struct Exec<'p> {
    plan: &'p Plan,
    /// Address of the input's first byte, for error offsets (every slice walked is inside it).
    base: usize,
    preserve: bool,
    loss: Lossiness<'p>,
}

impl<'p> Exec<'p> {
    fn offset(&self, buf: &[u8], pos: usize) -> usize {
        (buf.as_ptr() as usize).wrapping_sub(self.base) + pos
    }

    fn varint(&self, buf: &[u8], pos: &mut usize, at: &str) -> Result<u64, TranscodeError> {
        let start = *pos;
        read_varint(buf, pos).map_err(|e| match e {
            VarintError::Truncated => TranscodeError::Truncated {
                at: at.to_owned(),
                offset: self.offset(buf, start),
            },
            VarintError::Malformed => TranscodeError::MalformedVarint {
                at: at.to_owned(),
                offset: self.offset(buf, start),
            },
        })
    }

    /// Reads a length-delimited value; returns the payload's range in `buf`.
    fn len_value(
        &self,
        buf: &[u8],
        pos: &mut usize,
        at: &str,
    ) -> Result<(usize, usize), TranscodeError> {
        let start = *pos;
        let len = self.varint(buf, pos, at)?;
        let begin = *pos;
        match usize::try_from(len)
            .ok()
            .and_then(|l| begin.checked_add(l))
            .filter(|&end| end <= buf.len())
        {
            Some(end) => {
                *pos = end;
                Ok((begin, end))
            }
            None => Err(TranscodeError::Truncated {
                at: at.to_owned(),
                offset: self.offset(buf, start),
            }),
        }
    }

    fn fixed(
        &self,
        buf: &[u8],
        pos: &mut usize,
        width: usize,
        at: &str,
    ) -> Result<(), TranscodeError> {
        match pos.checked_add(width).filter(|&end| end <= buf.len()) {
            Some(end) => {
                *pos = end;
                Ok(())
            }
            None => Err(TranscodeError::Truncated {
                at: at.to_owned(),
                offset: self.offset(buf, *pos),
            }),
        }
    }

    /// Reads a tag; returns (field number, wire type). Rejects number 0, numbers past the
    /// protobuf maximum and wire types 6 and 7.
    fn tag(&self, buf: &[u8], pos: &mut usize, at: &str) -> Result<(u32, u8), TranscodeError> {
        let start = *pos;
        let tag = self.varint(buf, pos, at)?;
        let wt = (tag & 7) as u8;
        let number = tag >> 3;
        if number == 0 || number > MAX_FIELD_NUMBER || wt > WT_I32 {
            return Err(TranscodeError::InvalidTag {
                at: at.to_owned(),
                offset: self.offset(buf, start),
                tag,
                number,
                wire_type: wt,
            });
        }
        Ok((number as u32, wt))
    }

    /// Skips one value of wire type `wt` (groups included, up to the nesting limit).
    fn skip_value(
        &self,
        buf: &[u8],
        pos: &mut usize,
        wt: u8,
        number: u32,
        depth: u32,
        at: &str,
    ) -> Result<(), TranscodeError> {
        match wt {
            WT_VARINT => self.varint(buf, pos, at).map(|_| ()),
            WT_I64 => self.fixed(buf, pos, 8, at),
            WT_LEN => self.len_value(buf, pos, at).map(|_| ()),
            WT_I32 => self.fixed(buf, pos, 4, at),
            WT_SGROUP => {
                if depth >= MAX_DEPTH {
                    return Err(TranscodeError::TooDeep {
                        at: at.to_owned(),
                        limit: MAX_DEPTH,
                        offset: self.offset(buf, *pos),
                    });
                }
                while *pos < buf.len() {
                    let start = *pos;
                    let (inner, inner_wt) = self.tag(buf, pos, at)?;
                    if inner_wt == WT_EGROUP {
                        if inner == number {
                            return Ok(());
                        }
                        return Err(TranscodeError::UnexpectedEndGroup {
                            at: at.to_owned(),
                            number: inner,
                            offset: self.offset(buf, start),
                        });
                    }
                    self.skip_value(buf, pos, inner_wt, inner, depth + 1, at)?;
                }
                Err(TranscodeError::UnterminatedGroup {
                    at: at.to_owned(),
                    number,
                })
            }
            _ => Err(TranscodeError::UnexpectedEndGroup {
                at: at.to_owned(),
                number,
                offset: self.offset(buf, *pos),
            }),
        }
    }

    /// Transcodes the fields in `buf[*pos..]` with `node` until the end of `buf` or, for a
    /// group, its end-group tag.
    fn message(
        &mut self,
        node_idx: u32,
        buf: &[u8],
        pos: &mut usize,
        group: Option<u32>,
        out: &mut Vec<u8>,
        depth: u32,
    ) -> Result<(), TranscodeError> {
        let plan: &'p Plan = self.plan;
        let node: &'p Node = &plan.nodes[node_idx as usize];
        let at: &str = &node.name;
        let mut seen: u64 = 0;
        while *pos < buf.len() {
            let start = *pos;
            let (number, wt) = self.tag(buf, pos, at)?;
            if wt == WT_EGROUP {
                if group == Some(number) {
                    return Ok(());
                }
                return Err(TranscodeError::UnexpectedEndGroup {
                    at: at.to_owned(),
                    number,
                    offset: self.offset(buf, start),
                });
            }
            let Some(field) = node.lookup(number) else {
                self.skip_value(buf, pos, wt, number, depth, at)?;
                self.loss.undeclared();
                if self.preserve {
                    out.extend_from_slice(&buf[start..*pos]);
                }
                continue;
            };
            if field.wire_mask & (1 << wt) == 0 {
                return Err(TranscodeError::WireTypeMismatch {
                    field: field.label.to_string(),
                    expected: mask_name(field.wire_mask),
                    found: wire_type_name(wt),
                    offset: self.offset(buf, start),
                });
            }
            if let Some(merge) = field.merge {
                match merge.bit {
                    Some(bit) => {
                        let bit = 1u64 << bit;
                        if seen & bit != 0 {
                            self.loss.hit(merge.site);
                        }
                        seen |= bit;
                    }
                    None => self.loss.hit(merge.site),
                }
            }
            self.field(field, buf, start, pos, wt, number, out, depth)?;
        }
        if let Some(number) = group {
            return Err(TranscodeError::UnterminatedGroup {
                at: at.to_owned(),
                number,
            });
        }
        Ok(())
    }

    /// Handles one occurrence of a declared field whose tag (at `start`) has been read.
    #[allow(clippy::too_many_arguments)]
    fn field(
        &mut self,
        field: &'p FieldPlan,
        buf: &[u8],
        start: usize,
        pos: &mut usize,
        wt: u8,
        number: u32,
        out: &mut Vec<u8>,
        depth: u32,
    ) -> Result<(), TranscodeError> {
        let at: &str = &field.label;
        let value_start = *pos;
        match &field.op {
            Op::Drop { site, always } => {
                self.skip_value(buf, pos, wt, number, depth, at)?;
                if *always || !is_zero(&buf[value_start..*pos], wt) {
                    self.loss.hit(*site);
                }
                if self.preserve {
                    out.extend_from_slice(&buf[start..*pos]);
                }
            }
            Op::Copy => {
                self.skip_value(buf, pos, wt, number, depth, at)?;
                out.extend_from_slice(&buf[start..*pos]);
            }
            Op::Utf8 => {
                let (s, e) = self.len_value(buf, pos, at)?;
                if std::str::from_utf8(&buf[s..e]).is_err() {
                    return Err(TranscodeError::InvalidUtf8 {
                        field: at.to_owned(),
                        offset: self.offset(buf, s),
                    });
                }
                out.extend_from_slice(&buf[start..*pos]);
            }
            Op::Varint { .. } | Op::Zigzag { .. } | Op::FixedSign { .. } => {
                if wt == WT_LEN {
                    let (s, e) = self.len_value(buf, pos, at)?;
                    self.check_packed(&field.op, &buf[s..e], at)?;
                } else {
                    self.skip_value(buf, pos, wt, number, depth, at)?;
                    self.check_value(&field.op, &buf[value_start..*pos]);
                }
                out.extend_from_slice(&buf[start..*pos]);
            }
            Op::Message { node } => {
                if depth + 1 >= MAX_DEPTH {
                    return Err(TranscodeError::TooDeep {
                        at: at.to_owned(),
                        limit: MAX_DEPTH,
                        offset: self.offset(buf, start),
                    });
                }
                out.extend_from_slice(&buf[start..value_start]);
                if wt == WT_SGROUP {
                    self.message(*node, buf, pos, Some(number), out, depth + 1)?;
                    let mut tag = [0u8; 10];
                    let n =
                        encode_varint((u64::from(number) << 3) | u64::from(WT_EGROUP), &mut tag);
                    out.extend_from_slice(&tag[..n]);
                } else {
                    let (s, e) = self.len_value(buf, pos, at)?;
                    let sub = &buf[s..e];
                    let len_at = out.len();
                    let reserved = varint_len(sub.len() as u64);
                    out.resize(len_at + reserved, 0);
                    let body_at = out.len();
                    let mut sub_pos = 0;
                    self.message(*node, sub, &mut sub_pos, None, out, depth + 1)?;
                    let body_len = out.len() - body_at;
                    let mut len = [0u8; 10];
                    let n = encode_varint(body_len as u64, &mut len);
                    if n == reserved {
                        out[len_at..body_at].copy_from_slice(&len[..n]);
                    } else {
                        out.splice(len_at..body_at, len[..n].iter().copied());
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks one non-packed scalar value (`value` is its encoding after the tag).
    fn check_value(&mut self, op: &Op, value: &[u8]) {
        match op {
            Op::FixedSign { site, .. } => {
                if value.last().is_some_and(|b| b & 0x80 != 0) {
                    self.loss.hit(*site);
                }
            }
            _ => {
                let mut p = 0;
                if let Ok(raw) = read_varint(value, &mut p) {
                    self.check_varint(op, raw);
                }
            }
        }
    }

    /// Checks every element of a packed payload.
    fn check_packed(&mut self, op: &Op, payload: &[u8], at: &str) -> Result<(), TranscodeError> {
        if let Op::FixedSign { site, wide } = op {
            let width = if *wide { 8 } else { 4 };
            if payload.len() % width != 0 {
                return Err(TranscodeError::Truncated {
                    at: at.to_owned(),
                    offset: self.offset(payload, payload.len() - payload.len() % width),
                });
            }
            if payload
                .chunks_exact(width)
                .any(|c| c.last().is_some_and(|b| b & 0x80 != 0))
            {
                self.loss.hit(*site);
            }
            return Ok(());
        }
        let mut p = 0;
        while p < payload.len() {
            let raw = self.varint(payload, &mut p, at)?;
            self.check_varint(op, raw);
        }
        Ok(())
    }

    #[inline]
    fn check_varint(&mut self, op: &Op, raw: u64) {
        match op {
            Op::Varint {
                writer,
                reader,
                narrow_site,
                enum_values,
            } => {
                let rv = reader.value(raw);
                if let Some(site) = narrow_site
                    && writer.value(raw) != rv
                {
                    self.loss.hit(*site);
                } else if let Some((values, site)) = enum_values
                    && values.binary_search(&(rv as i32)).is_err()
                {
                    self.loss.hit(*site);
                }
            }
            Op::Zigzag {
                writer64,
                reader64,
                site,
            } => {
                let wv = if *writer64 {
                    zigzag64(raw)
                } else {
                    zigzag32(raw as u32)
                };
                let rv = if *reader64 {
                    zigzag64(raw)
                } else {
                    zigzag32(raw as u32)
                };
                if wv != rv {
                    self.loss.hit(*site);
                }
            }
            _ => {}
        }
    }
}

/// Whether a value (its encoding after the tag) is the type's default: 0, empty, all-zero bits.
fn is_zero(value: &[u8], wt: u8) -> bool {
    match wt {
        WT_VARINT => value.iter().all(|b| b & 0x7f == 0),
        WT_I64 | WT_I32 => value.iter().all(|&b| b == 0),
        WT_LEN => value.len() == 1,
        _ => false,
    }
}
