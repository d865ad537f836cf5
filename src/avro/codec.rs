//! Avro binary primitives: a bounds-checked input cursor and the output writers.
//!
//! Owns: zig-zag varints, lengths, fixed-size reads, and the errors they raise. Must not touch:
//! schemas or plans; no I/O, no allocation except on the error path. Every read is checked
//! against the cursor's end, so hostile input yields an error, never a panic.

use super::error::{Location, TranscodeError};

/// Boxed so that the hot path's `Result<T, Fail>` stays two words.
pub(crate) type Fail = Box<TranscodeError>;
pub(crate) type R<T> = Result<T, Fail>;

/// A read position inside the writer-encoded input: `rest` is the input from the position up to
/// offset `end`, which may be less than the input's length when the executor replays one
/// field's span (reordered records). Reads only look at `rest`, so each check is one length
/// comparison.
///
/// `Copy`, and every method is inlined with its slow paths in free functions that take values,
/// so the executor can keep a cursor in registers for a whole program frame.
#[derive(Clone, Copy)]
pub(crate) struct Cursor<'i> {
    pub end: usize,
    pub rest: &'i [u8],
}

pub(crate) fn at(offset: usize) -> Location {
    Location {
        path: String::new(),
        offset,
    }
}

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VarintFail {
    Truncated,
    Malformed,
}

/// Decodes a varint of two or more bytes (or a truncated / malformed one) at the start of
/// `rest`: the zig-zag-decoded value and the bytes it took.
#[inline(never)]
fn varint_slow(rest: &[u8]) -> Result<(i64, usize), VarintFail> {
    let mut value: u64 = 0;
    for (i, &byte) in rest.iter().take(10).enumerate() {
        // The 10th byte may only contribute the top bit of a 64-bit value (and must end it).
        if i == 9 && byte > 1 {
            break;
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((unzigzag(value), i + 1));
        }
    }
    if rest.len() < 10 && rest.iter().all(|b| b & 0x80 != 0) {
        Err(VarintFail::Truncated)
    } else {
        Err(VarintFail::Malformed)
    }
}

/// Reads one zig-zag varint `long` from the start of `buf` and advances `buf` past it: the one
/// varint reader for everything outside the executor's cursor (container-file headers, the
/// Confluent message indexes, the JSON renderer). Same limits as the cursor: at most ten bytes.
#[inline]
pub(crate) fn read_long(buf: &mut &[u8]) -> Result<i64, VarintFail> {
    if let Some((&b, tail)) = buf.split_first()
        && b < 0x80
    {
        *buf = tail;
        return Ok(unzigzag(u64::from(b)));
    }
    let (value, used) = varint_slow(buf)?;
    *buf = buf.get(used..).unwrap_or(&[]);
    Ok(value)
}

#[cold]
#[inline(never)]
fn varint_error(fail: VarintFail, pos: usize) -> Fail {
    let at = at(pos);
    Box::new(match fail {
        VarintFail::Truncated => TranscodeError::Truncated { at, needed: 1 },
        VarintFail::Malformed => TranscodeError::MalformedVarint { at },
    })
}

#[cold]
#[inline(never)]
fn truncated(pos: usize, needed: usize) -> Fail {
    Box::new(TranscodeError::Truncated {
        at: at(pos),
        needed,
    })
}

#[cold]
#[inline(never)]
fn int_out_of_range(pos: usize, value: i64) -> Fail {
    Box::new(TranscodeError::IntOutOfRange { at: at(pos), value })
}

#[cold]
#[inline(never)]
fn hostile_length(pos: usize, what: &'static str, value: i64, remaining: usize) -> Fail {
    Box::new(TranscodeError::HostileLength {
        at: at(pos),
        what,
        value,
        remaining,
    })
}

#[cold]
#[inline(never)]
fn bad_bool(pos: usize, value: Option<u8>) -> Fail {
    match value {
        Some(value) => Box::new(TranscodeError::InvalidBoolean { at: at(pos), value }),
        None => truncated(pos, 1),
    }
}

impl<'i> Cursor<'i> {
    pub fn new(buf: &'i [u8]) -> Self {
        Cursor {
            end: buf.len(),
            rest: buf,
        }
    }

    /// Offset of the read position in `buf`.
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub fn pos(&self) -> usize {
        self.end - self.rest.len()
    }

    /// Restricts reading to `input[start..end]` (a replayed span of the whole input).
    pub fn set_span(&mut self, input: &'i [u8], start: usize, end: usize) {
        self.rest = input.get(start..end).unwrap_or(&[]);
        self.end = start + self.rest.len();
    }

    #[cfg_attr(not(debug_assertions), inline(always))]
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Moves the position `n` bytes on; `n` must be at most `rest.len()` (callers check).
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn advance(&mut self, n: usize) {
        self.rest = self.rest.get(n..).unwrap_or(&[]);
    }

    /// Reads a zig-zag varint (Avro `long`). One-byte values (most lengths, counts, indexes and
    /// small numbers) take the inlined fast path.
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub fn read_long(&mut self) -> R<i64> {
        match self.rest.split_first() {
            Some((&b, tail)) if b < 0x80 => {
                self.rest = tail;
                Ok(unzigzag(u64::from(b)))
            }
            _ => match varint_slow(self.rest) {
                Ok((v, n)) => {
                    self.advance(n);
                    Ok(v)
                }
                Err(f) => Err(varint_error(f, self.pos())),
            },
        }
    }

    /// Reads an Avro `int`: a varint that must fit 32 bits.
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub fn read_int(&mut self) -> R<i32> {
        let start = self.pos();
        let v = self.read_long()?;
        i32::try_from(v).map_err(|_| int_out_of_range(start, v))
    }

    /// Takes exactly `n` bytes.
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub fn take(&mut self, n: usize) -> R<&'i [u8]> {
        match self.rest.split_at_checked(n) {
            Some((s, tail)) => {
                self.rest = tail;
                Ok(s)
            }
            None => Err(truncated(self.pos(), n - self.rest.len().min(n))),
        }
    }

    /// Takes exactly `N` bytes as an array.
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub fn take_array<const N: usize>(&mut self) -> R<[u8; N]> {
        match self.rest.split_first_chunk::<N>() {
            Some((a, tail)) => {
                self.rest = tail;
                Ok(*a)
            }
            None => Err(truncated(self.pos(), N - self.remaining().min(N))),
        }
    }

    /// Reads a length prefix (bytes, string) and checks it against what is left, so a hostile
    /// length can never make anyone allocate or wait for it.
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub fn read_len(&mut self, what: &'static str) -> R<usize> {
        let start = self.pos();
        let len = self.read_long()?;
        match usize::try_from(len) {
            Ok(n) if n <= self.remaining() => Ok(n),
            _ => Err(hostile_length(start, what, len, self.remaining())),
        }
    }

    /// Reads a bytes/string value (length + payload).
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub fn read_bytes(&mut self) -> R<&'i [u8]> {
        let n = self.read_len("length")?;
        self.take(n)
    }

    /// The next 8 bytes as a little-endian word, if that many are left before `end`.
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn word(&self) -> Option<u64> {
        self.rest.first_chunk::<8>().map(|w| u64::from_le_bytes(*w))
    }

    /// Skips a `long`. Varints of up to 8 bytes with 8 bytes of input left take a branch-free
    /// path (the end is the first byte without its top bit); anything else the full reader.
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub fn skip_long(&mut self) -> R<()> {
        if let Some(w) = self.word() {
            let stops = !w & 0x8080_8080_8080_8080;
            if stops != 0 {
                self.advance((stops.trailing_zeros() as usize >> 3) + 1);
                return Ok(());
            }
        }
        self.read_long().map(drop)
    }

    /// Skips an `int`: a varint of up to 4 bytes always fits 32 bits; longer ones (and short
    /// input) go through [`Cursor::read_int`], which checks the range.
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub fn skip_int(&mut self) -> R<()> {
        if let Some(w) = self.word() {
            let stops = !w & 0x8080_8080;
            if stops != 0 {
                self.advance((stops.trailing_zeros() as usize >> 3) + 1);
                return Ok(());
            }
        }
        self.read_int().map(drop)
    }

    /// Skips a length-prefixed value (bytes, string).
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub fn skip_var(&mut self) -> R<()> {
        if let Some(&b) = self.rest.first()
            && b & 0x81 == 0
            && let Some(tail) = self.rest.get(1 + (b >> 1) as usize..)
        {
            // One-byte, non-negative length.
            self.rest = tail;
            return Ok(());
        }
        self.read_bytes().map(drop)
    }

    /// Skips exactly `n` bytes.
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub fn skip_n(&mut self, n: usize) -> R<()> {
        match self.rest.get(n..) {
            Some(tail) => {
                self.rest = tail;
                Ok(())
            }
            None => Err(truncated(self.pos(), n - self.remaining())),
        }
    }

    /// Skips a boolean, which must be 0 or 1.
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub fn skip_bool(&mut self) -> R<()> {
        match self.rest.split_first() {
            Some((&b, tail)) if b <= 1 => {
                self.rest = tail;
                Ok(())
            }
            other => Err(bad_bool(self.pos(), other.map(|(b, _)| *b))),
        }
    }

    /// Reads an enum or union index: `Ok(i)` below `count`, else `Err(the index read)`.
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub fn read_index(&mut self, count: u32) -> R<Result<u32, i64>> {
        let i = self.read_long()?;
        Ok(match u32::try_from(i) {
            Ok(i) if i < count => Ok(i),
            _ => Err(i),
        })
    }

    /// The bytes read since `rest` was `mark` (an earlier `rest` of this cursor).
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub fn since(&self, mark: &'i [u8]) -> &'i [u8] {
        let used = mark.len().saturating_sub(self.rest.len());
        mark.get(..used).unwrap_or(&[])
    }
}

#[cfg_attr(not(debug_assertions), inline(always))]
fn unzigzag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

/// Appends a zig-zag varint.
#[inline]
pub(crate) fn write_long(out: &mut Vec<u8>, v: i64) {
    let mut n = ((v << 1) ^ (v >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Appends a length-prefixed byte string.
#[inline]
pub(crate) fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_long(out, b.len() as i64);
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trip_and_limits() {
        for v in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            300,
            i32::MAX as i64,
            i64::MAX,
            i64::MIN,
        ] {
            let mut out = Vec::new();
            write_long(&mut out, v);
            let mut c = Cursor::new(&out);
            assert_eq!(c.read_long().map_err(|e| e.to_string()), Ok(v));
            assert_eq!(c.remaining(), 0);
            // The free reader (one-byte fast path, then the slow one) takes exactly the
            // varint and leaves what follows.
            out.push(0x7f);
            let mut rest = &out[..];
            assert_eq!(read_long(&mut rest), Ok(v));
            assert_eq!(rest, [0x7f]);
        }
        assert_eq!(read_long(&mut &[0x80u8][..]), Err(VarintFail::Truncated));
        assert_eq!(
            read_long(&mut &[0xffu8; 11][..]),
            Err(VarintFail::Malformed)
        );
        assert_eq!(read_long(&mut &[][..]), Err(VarintFail::Truncated));
        // 11 continuation bytes: malformed, not a panic or an endless loop.
        let bad = [0xffu8; 11];
        assert!(matches!(
            *Cursor::new(&bad).read_long().unwrap_err(),
            TranscodeError::MalformedVarint { .. }
        ));
        // 10th byte carrying more than one bit overflows 64 bits.
        let mut over = [0xffu8; 10];
        over[9] = 0x02;
        assert!(matches!(
            *Cursor::new(&over).read_long().unwrap_err(),
            TranscodeError::MalformedVarint { .. }
        ));
        // Truncated in the middle of a varint.
        assert!(matches!(
            *Cursor::new(&[0x80]).read_long().unwrap_err(),
            TranscodeError::Truncated { .. }
        ));
        // Int range.
        let mut out = Vec::new();
        write_long(&mut out, i64::from(i32::MAX) + 1);
        assert!(matches!(
            *Cursor::new(&out).read_int().unwrap_err(),
            TranscodeError::IntOutOfRange { .. }
        ));
    }

    #[test]
    fn hostile_length_is_rejected_before_reading() {
        let mut out = Vec::new();
        write_long(&mut out, 1 << 40);
        out.extend_from_slice(b"abc");
        let err = Cursor::new(&out).read_bytes().unwrap_err();
        assert!(matches!(*err, TranscodeError::HostileLength { value, .. } if value == 1 << 40));
        let mut neg = Vec::new();
        write_long(&mut neg, -5);
        assert!(matches!(
            *Cursor::new(&neg).read_bytes().unwrap_err(),
            TranscodeError::HostileLength { value: -5, .. }
        ));
    }
}
