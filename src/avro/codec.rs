//! Avro binary primitives: a bounds-checked input cursor and the output writers.
//!
//! Owns: zig-zag varints, lengths, fixed-size reads, and the errors they raise. Must not touch:
//! schemas or plans; no I/O, no allocation except on the error path. Every read is checked
//! against the cursor's end, so hostile input yields an error, never a panic.

use super::error::{Location, TranscodeError};

/// Boxed so that the hot path's `Result<T, Fail>` stays two words.
pub(crate) type Fail = Box<TranscodeError>;
pub(crate) type R<T> = Result<T, Fail>;

/// A read position inside the writer-encoded input. `end` may be less than `buf.len()` when the
/// executor replays one field's span (reordered records).
pub(crate) struct Cursor<'i> {
    pub buf: &'i [u8],
    pub pos: usize,
    pub end: usize,
}

pub(crate) fn at(offset: usize) -> Location {
    Location {
        path: String::new(),
        offset,
    }
}

impl<'i> Cursor<'i> {
    pub fn new(buf: &'i [u8]) -> Self {
        Cursor {
            buf,
            pos: 0,
            end: buf.len(),
        }
    }

    #[inline]
    pub fn remaining(&self) -> usize {
        self.end.saturating_sub(self.pos)
    }

    /// Reads a zig-zag varint (Avro `long`). One-byte values (most lengths, counts, indexes and
    /// small numbers) take the inlined fast path.
    #[inline]
    pub fn read_long(&mut self) -> R<i64> {
        let rest = self.buf.get(self.pos..self.end).unwrap_or(&[]);
        match rest.first() {
            Some(&b) if b < 0x80 => {
                self.pos += 1;
                Ok(unzigzag(u64::from(b)))
            }
            _ => self.read_long_multi(rest),
        }
    }

    #[inline(never)]
    fn read_long_multi(&mut self, rest: &[u8]) -> R<i64> {
        let mut value: u64 = 0;
        for (i, &byte) in rest.iter().take(10).enumerate() {
            // The 10th byte may only contribute the top bit of a 64-bit value (and must end it).
            if i == 9 && byte > 1 {
                break;
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.pos += i + 1;
                return Ok(unzigzag(value));
            }
        }
        let at = at(self.pos);
        Err(Box::new(
            if rest.len() < 10 && rest.iter().all(|b| b & 0x80 != 0) {
                TranscodeError::Truncated { at, needed: 1 }
            } else {
                TranscodeError::MalformedVarint { at }
            },
        ))
    }

    /// Reads an Avro `int`: a varint that must fit 32 bits.
    #[inline]
    pub fn read_int(&mut self) -> R<i32> {
        let start = self.pos;
        let v = self.read_long()?;
        i32::try_from(v).map_err(|_| {
            Box::new(TranscodeError::IntOutOfRange {
                at: at(start),
                value: v,
            })
        })
    }

    /// Takes exactly `n` bytes.
    #[inline]
    pub fn take(&mut self, n: usize) -> R<&'i [u8]> {
        let start = self.pos;
        let end = start.checked_add(n).filter(|&e| e <= self.end);
        match end.and_then(|e| self.buf.get(start..e).map(|s| (e, s))) {
            Some((e, s)) => {
                self.pos = e;
                Ok(s)
            }
            None => Err(Box::new(TranscodeError::Truncated {
                at: at(start),
                needed: n - self.remaining().min(n),
            })),
        }
    }

    /// Takes exactly `N` bytes as an array.
    #[inline]
    pub fn take_array<const N: usize>(&mut self) -> R<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// Reads a length prefix (bytes, string) and checks it against what is left, so a hostile
    /// length can never make anyone allocate or wait for it.
    #[inline]
    pub fn read_len(&mut self, what: &'static str) -> R<usize> {
        let start = self.pos;
        let len = self.read_long()?;
        match usize::try_from(len) {
            Ok(n) if n <= self.remaining() => Ok(n),
            _ => Err(Box::new(TranscodeError::HostileLength {
                at: at(start),
                what,
                value: len,
                remaining: self.remaining(),
            })),
        }
    }

    /// Reads a bytes/string value (length + payload).
    #[inline]
    pub fn read_bytes(&mut self) -> R<&'i [u8]> {
        let n = self.read_len("length")?;
        self.take(n)
    }

    /// The input left before `end`, at least 8 bytes of it as a word (little endian).
    #[inline(always)]
    fn word(&self) -> Option<u64> {
        let rest = self.buf.get(self.pos..self.end)?;
        rest.first_chunk::<8>().map(|w| u64::from_le_bytes(*w))
    }

    /// Skips a `long`. Varints of up to 8 bytes with 8 bytes of input left take a branch-free
    /// path (the end is the first byte without its top bit); anything else the full reader.
    #[inline(always)]
    pub fn skip_long(&mut self) -> R<()> {
        if let Some(w) = self.word() {
            let stops = !w & 0x8080_8080_8080_8080;
            if stops != 0 {
                self.pos += (stops.trailing_zeros() as usize >> 3) + 1;
                return Ok(());
            }
        }
        self.read_long().map(drop)
    }

    /// Skips an `int`: a varint of up to 4 bytes always fits 32 bits; longer ones (and short
    /// input) go through [`Cursor::read_int`], which checks the range.
    #[inline(always)]
    pub fn skip_int(&mut self) -> R<()> {
        if let Some(w) = self.word() {
            let stops = !w & 0x8080_8080;
            if stops != 0 {
                self.pos += (stops.trailing_zeros() as usize >> 3) + 1;
                return Ok(());
            }
        }
        self.read_int().map(drop)
    }

    /// Skips a length-prefixed value (bytes, string).
    #[inline(always)]
    pub fn skip_var(&mut self) -> R<()> {
        if self.pos < self.end
            && let Some(&b) = self.buf.get(self.pos)
            && b & 0x81 == 0
        {
            // One-byte, non-negative length.
            let end = self.pos + 1 + (b >> 1) as usize;
            if end <= self.end {
                self.pos = end;
                return Ok(());
            }
        }
        self.read_bytes().map(drop)
    }

    /// Skips exactly `n` bytes.
    #[inline(always)]
    pub fn skip_n(&mut self, n: usize) -> R<()> {
        if n <= self.remaining() {
            self.pos += n;
            return Ok(());
        }
        self.take(n).map(drop)
    }

    /// Skips a boolean, which must be 0 or 1.
    #[inline(always)]
    pub fn skip_bool(&mut self) -> R<()> {
        if self.pos < self.end
            && let Some(&b) = self.buf.get(self.pos)
            && b <= 1
        {
            self.pos += 1;
            return Ok(());
        }
        self.bad_bool()
    }

    #[cold]
    #[inline(never)]
    fn bad_bool(&mut self) -> R<()> {
        let start = self.pos;
        let [b] = self.take_array::<1>()?;
        Err(Box::new(TranscodeError::InvalidBoolean {
            at: at(start),
            value: b,
        }))
    }

    /// Reads an enum or union index below `count`; errors name the offending index.
    #[inline(always)]
    pub fn read_index(&mut self, count: u32) -> R<Result<u32, i64>> {
        let i = self.read_long()?;
        Ok(match u32::try_from(i) {
            Ok(i) if i < count => Ok(i),
            _ => Err(i),
        })
    }

    /// Bytes between `start` and the current position (both within the input by construction).
    #[inline]
    pub fn since(&self, start: usize) -> &'i [u8] {
        self.buf.get(start..self.pos).unwrap_or(&[])
    }
}

#[inline]
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
        }
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
