//! Confluent wire framing: the 5-byte header (magic byte `0`, big-endian schema id) and, for
//! Protobuf, the message-index list that follows it.
//!
//! Owns: parsing and writing those bytes. Must not: look anything up, allocate per message
//! (writers append to a caller's buffer), or panic on any input.

use thiserror::Error;

/// The only magic byte Confluent has defined.
pub const MAGIC: u8 = 0;
/// Magic byte plus the 4-byte schema id.
pub const HEADER_LEN: usize = 5;
/// More message indexes than any sane .proto nesting; a guard against hostile counts.
const MAX_MESSAGE_INDEXES: usize = 64;

/// A registry schema id as carried in the framing.
pub type SchemaId = u32;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FramingError {
    #[error("message is {len} bytes, shorter than the 5-byte Confluent header")]
    TooShort { len: usize },
    #[error("magic byte is {found:#04x}, expected 0x00 (not Confluent-framed)")]
    BadMagic { found: u8 },
    #[error("protobuf message-index list is truncated or its varint is malformed")]
    BadIndexVarint,
    #[error(
        "protobuf message-index list has {count} entries (negative or over {MAX_MESSAGE_INDEXES})"
    )]
    BadIndexCount { count: i64 },
    #[error("protobuf message index {index} is negative")]
    NegativeIndex { index: i64 },
}

/// A parsed Confluent header: the writer schema id and the payload after the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framed<'a> {
    pub schema_id: SchemaId,
    pub payload: &'a [u8],
}

/// Splits `bytes` into schema id and payload.
pub fn parse(bytes: &[u8]) -> Result<Framed<'_>, FramingError> {
    if bytes.len() < HEADER_LEN {
        return Err(FramingError::TooShort { len: bytes.len() });
    }
    if bytes[0] != MAGIC {
        return Err(FramingError::BadMagic { found: bytes[0] });
    }
    let schema_id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    Ok(Framed {
        schema_id,
        payload: &bytes[HEADER_LEN..],
    })
}

/// Appends the 5-byte header for `schema_id` to `out`.
pub fn write_header(schema_id: SchemaId, out: &mut Vec<u8>) {
    out.push(MAGIC);
    out.extend_from_slice(&schema_id.to_be_bytes());
}

/// Returns `bytes` with its schema id replaced, for a writer and reader with the same canonical
/// form. The caller has already parsed `bytes`.
pub fn reframe(bytes: &[u8], schema_id: SchemaId, out: &mut Vec<u8>) {
    write_header(schema_id, out);
    out.extend_from_slice(bytes.get(HEADER_LEN..).unwrap_or_default());
}

/// The Protobuf message-index path (which message in the .proto file, by position, nested).
/// `[0]` is the first top-level message; Confluent writes it as the single byte `0`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct MessageIndexes(pub Vec<i32>);

impl MessageIndexes {
    pub fn first() -> Self {
        MessageIndexes(vec![0])
    }
}

/// Parses the message-index list at the start of a Protobuf payload; returns it and the rest.
pub fn parse_message_indexes(payload: &[u8]) -> Result<(MessageIndexes, &[u8]), FramingError> {
    let mut rest = payload;
    let count = read_zigzag(&mut rest)?;
    if count == 0 {
        return Ok((MessageIndexes::first(), rest));
    }
    if !(0..=MAX_MESSAGE_INDEXES as i64).contains(&count) {
        return Err(FramingError::BadIndexCount { count });
    }
    let mut indexes = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let index = read_zigzag(&mut rest)?;
        if index < 0 || index > i64::from(i32::MAX) {
            return Err(FramingError::NegativeIndex { index });
        }
        indexes.push(index as i32);
    }
    Ok((MessageIndexes(indexes), rest))
}

/// Appends the message-index list, using the single-`0` shorthand for `[0]`.
pub fn write_message_indexes(indexes: &MessageIndexes, out: &mut Vec<u8>) {
    if indexes.0.is_empty() || indexes.0 == [0] {
        out.push(0);
        return;
    }
    write_zigzag(indexes.0.len() as i64, out);
    for &i in &indexes.0 {
        write_zigzag(i64::from(i), out);
    }
}

/// The message indexes are zig-zag varints, the same encoding as an Avro `long`.
fn read_zigzag(buf: &mut &[u8]) -> Result<i64, FramingError> {
    crate::avro::read_long(buf).map_err(|_| FramingError::BadIndexVarint)
}

fn write_zigzag(n: i64, out: &mut Vec<u8>) {
    crate::avro::write_long(out, n);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_header_and_payload() {
        let bytes = [0, 0, 0, 1, 2, 0xAA, 0xBB];
        let framed = parse(&bytes).unwrap();
        assert_eq!(framed.schema_id, 258);
        assert_eq!(framed.payload, &[0xAA, 0xBB]);
    }

    #[test]
    fn short_and_wrong_magic_are_typed_errors() {
        assert_eq!(parse(&[0, 0, 1]), Err(FramingError::TooShort { len: 3 }));
        assert_eq!(parse(&[]), Err(FramingError::TooShort { len: 0 }));
        assert_eq!(
            parse(&[1, 0, 0, 0, 1]),
            Err(FramingError::BadMagic { found: 1 })
        );
    }

    #[test]
    fn header_round_trips() {
        let mut out = Vec::new();
        write_header(0xDEAD_BEEF, &mut out);
        out.push(7);
        let framed = parse(&out).unwrap();
        assert_eq!(framed.schema_id, 0xDEAD_BEEF);
        assert_eq!(framed.payload, &[7]);
        let mut re = Vec::new();
        reframe(&out, 9, &mut re);
        assert_eq!(re, [0, 0, 0, 0, 9, 7]);
    }

    #[test]
    fn message_indexes_round_trip_and_shorthand() {
        let (idx, rest) = parse_message_indexes(&[0, 0x42]).unwrap();
        assert_eq!(idx, MessageIndexes(vec![0]));
        assert_eq!(rest, &[0x42]);

        for path in [vec![0], vec![1], vec![2, 0, 5], vec![300]] {
            let mut out = Vec::new();
            write_message_indexes(&MessageIndexes(path.clone()), &mut out);
            out.push(0x99);
            let (idx, rest) = parse_message_indexes(&out).unwrap();
            assert_eq!(idx.0, path);
            assert_eq!(rest, &[0x99]);
        }
        let mut out = Vec::new();
        write_message_indexes(&MessageIndexes(vec![0]), &mut out);
        assert_eq!(out, [0]);
    }

    #[test]
    fn malformed_message_indexes_are_typed_errors() {
        assert_eq!(
            parse_message_indexes(&[]),
            Err(FramingError::BadIndexVarint)
        );
        // count 2 but only one index
        assert_eq!(
            parse_message_indexes(&[4, 2]),
            Err(FramingError::BadIndexVarint)
        );
        // negative count (-1 zigzag = 1)
        assert_eq!(
            parse_message_indexes(&[1]),
            Err(FramingError::BadIndexCount { count: -1 })
        );
        // unterminated varint
        assert_eq!(
            parse_message_indexes(&[0xff; 11]),
            Err(FramingError::BadIndexVarint)
        );
        // negative index
        assert_eq!(
            parse_message_indexes(&[2, 3]),
            Err(FramingError::NegativeIndex { index: -2 })
        );
    }
}
