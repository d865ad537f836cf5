//! Avro object container files, the format: header (magic, metadata, sync marker), blocks of
//! datums with their count and size, null and deflate codecs.
//!
//! Owns: reading a container's header and blocks, and writing them. Must not: resolve schemas
//! (`avro` does) or decide what goes into a file (the callers do); no I/O beyond the reader or
//! writer it is handed.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::ArchiveError;
use crate::avro::write_long;

const MAGIC: &[u8; 4] = b"Obj\x01";
/// A block larger than this is refused as hostile rather than allocated.
const MAX_BLOCK_BYTES: u64 = 1 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    Null,
    Deflate,
}

impl Codec {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Codec::Null => "null",
            Codec::Deflate => "deflate",
        }
    }
}

pub(crate) struct Header {
    pub schema: String,
    pub codec: Codec,
    pub sync: [u8; 16],
}

pub(crate) fn format_err(path: &Path, why: impl Into<String>) -> ArchiveError {
    ArchiveError::Format {
        path: path.to_path_buf(),
        why: why.into(),
    }
}

pub(crate) fn read_header(src: &mut impl Read, path: &Path) -> Result<Header, ArchiveError> {
    let mut magic = [0u8; 4];
    src.read_exact(&mut magic)
        .map_err(|_| format_err(path, "shorter than the 4-byte magic"))?;
    if &magic != MAGIC {
        return Err(format_err(path, "wrong magic bytes"));
    }
    let mut schema = None;
    let mut codec = Codec::Null;
    loop {
        let count = read_long(src).map_err(|_| format_err(path, "truncated metadata"))?;
        if count == 0 {
            break;
        }
        let count = if count < 0 {
            let _size = read_long(src).map_err(|_| format_err(path, "truncated metadata"))?;
            count.unsigned_abs()
        } else {
            count as u64
        };
        for _ in 0..count {
            let key = read_bytes(src, 1 << 20).map_err(|_| format_err(path, "bad metadata key"))?;
            let value =
                read_bytes(src, 64 << 20).map_err(|_| format_err(path, "bad metadata value"))?;
            match key.as_slice() {
                b"avro.schema" => {
                    schema = Some(
                        String::from_utf8(value)
                            .map_err(|_| format_err(path, "avro.schema is not UTF-8"))?,
                    )
                }
                b"avro.codec" => {
                    codec = match value.as_slice() {
                        b"null" => Codec::Null,
                        b"deflate" => Codec::Deflate,
                        other => {
                            return Err(ArchiveError::Codec {
                                path: path.to_path_buf(),
                                codec: String::from_utf8_lossy(other).into_owned(),
                            });
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let mut sync = [0u8; 16];
    src.read_exact(&mut sync)
        .map_err(|_| format_err(path, "truncated sync marker"))?;
    let schema = schema.ok_or_else(|| format_err(path, "no avro.schema in the header"))?;
    Ok(Header {
        schema,
        codec,
        sync,
    })
}

/// The next block's record count and decompressed bytes; `None` at a clean end of file.
pub(crate) fn read_block(
    src: &mut impl Read,
    header: &Header,
    path: &Path,
) -> Result<Option<(u64, Vec<u8>)>, ArchiveError> {
    let count = match read_long(src) {
        Ok(c) => c,
        Err(ReadErr::Eof) => return Ok(None),
        Err(ReadErr::Bad) => return Err(format_err(path, "malformed block header")),
    };
    let size = read_long(src).map_err(|_| format_err(path, "truncated block header"))?;
    if count < 0 || size < 0 || size as u64 > MAX_BLOCK_BYTES {
        return Err(format_err(
            path,
            format!("block with {count} records and {size} bytes"),
        ));
    }
    let mut data = Vec::new();
    src.take(size as u64)
        .read_to_end(&mut data)
        .map_err(|_| format_err(path, "truncated block"))?;
    if data.len() as u64 != size as u64 {
        return Err(format_err(path, "truncated block"));
    }
    let mut sync = [0u8; 16];
    src.read_exact(&mut sync)
        .map_err(|_| format_err(path, "truncated block sync marker"))?;
    if sync != header.sync {
        return Err(format_err(
            path,
            "block sync marker does not match the header's",
        ));
    }
    let data = match header.codec {
        Codec::Null => data,
        Codec::Deflate => {
            miniz_oxide::inflate::decompress_to_vec_with_limit(&data, MAX_BLOCK_BYTES as usize)
                .map_err(|e| format_err(path, format!("deflate block: {e:?}")))?
        }
    };
    Ok(Some((count as u64, data)))
}

pub(crate) fn write_header(
    dst: &mut impl Write,
    schema: &str,
    codec: Codec,
    sync: &[u8; 16],
) -> std::io::Result<()> {
    let mut h = Vec::with_capacity(schema.len() + 64);
    h.extend_from_slice(MAGIC);
    write_long(&mut h, 2);
    for (k, v) in [("avro.schema", schema), ("avro.codec", codec.name())] {
        write_long(&mut h, k.len() as i64);
        h.extend_from_slice(k.as_bytes());
        write_long(&mut h, v.len() as i64);
        h.extend_from_slice(v.as_bytes());
    }
    write_long(&mut h, 0);
    h.extend_from_slice(sync);
    dst.write_all(&h)
}

pub(crate) fn temp_path(output: &Path) -> PathBuf {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    output.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

pub(crate) fn new_sync_marker() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    let mut out = [0u8; 16];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let mut h = state.build_hasher();
        h.write_usize(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

enum ReadErr {
    Eof,
    Bad,
}

/// Reads the bytes of one varint from the stream (at most ten), then decodes them with the
/// crate's one varint reader.
fn read_long(src: &mut impl Read) -> Result<i64, ReadErr> {
    let mut bytes = [0u8; 10];
    let mut n = 0;
    while n < bytes.len() {
        match src.read(&mut bytes[n..=n]) {
            Ok(0) if n == 0 => return Err(ReadErr::Eof),
            Ok(0) | Err(_) => return Err(ReadErr::Bad),
            Ok(_) => {}
        }
        n += 1;
        if bytes[n - 1] & 0x80 == 0 {
            break;
        }
    }
    crate::avro::read_long(&mut &bytes[..n]).map_err(|_| ReadErr::Bad)
}

fn read_bytes(src: &mut impl Read, limit: u64) -> Result<Vec<u8>, ReadErr> {
    let len = read_long(src).map_err(|_| ReadErr::Bad)?;
    if len < 0 || len as u64 > limit {
        return Err(ReadErr::Bad);
    }
    let mut buf = vec![0u8; len as usize];
    src.read_exact(&mut buf).map_err(|_| ReadErr::Bad)?;
    Ok(buf)
}
