//! Avro object container files: `schemabridge transcode` rewrites one written with any writer
//! schema into one written with a reader schema, through the same compiled plan the gateway
//! uses. It is how an archive is normalised to the latest schema.
//!
//! Owns: the container format (header, metadata, blocks, sync markers, null/deflate codecs) and
//! the all-or-nothing output (a temporary file renamed into place only on success). Must not:
//! resolve schemas itself (`avro` does).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::avro::{self, Schema, write_long};

const MAGIC: &[u8; 4] = b"Obj\x01";
/// A block larger than this is refused as hostile rather than allocated.
const MAX_BLOCK_BYTES: u64 = 1 << 30;

#[derive(Debug, Error)]
pub enum ArchiveError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not an Avro object container file ({why})", path.display())]
    Format { path: PathBuf, why: String },
    #[error("{}: codec `{codec}` is not supported (null and deflate are)", path.display())]
    Codec { path: PathBuf, codec: String },
    #[error("{}: schema: {why}", path.display())]
    Schema { path: PathBuf, why: String },
    /// (The engine's errors are boxed to keep `Result<_, ArchiveError>` small.)
    #[error("the writer schema of {} cannot be read as {}: {source}", input.display(), reader.display())]
    Unresolvable {
        input: PathBuf,
        reader: PathBuf,
        source: Box<avro::PlanError>,
    },
    #[error("{}: record {record} (block {block}): {source}", path.display())]
    Datum {
        path: PathBuf,
        record: u64,
        block: u64,
        source: Box<avro::TranscodeError>,
    },
}

/// What a `transcode` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TranscodeStats {
    pub records: u64,
    pub blocks: u64,
    pub codec: String,
    /// Writer fields the reader schema does not have.
    pub dropped_fields: Vec<String>,
    /// Records in which at least one dropped field held data.
    pub lossy_records: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Null,
    Deflate,
}

impl Codec {
    fn name(self) -> &'static str {
        match self {
            Codec::Null => "null",
            Codec::Deflate => "deflate",
        }
    }
}

/// Rewrites `input` into `output` with `reader_schema_path`'s schema. On any error, `output` is
/// not created (an existing file there is left untouched).
pub fn transcode_file(
    input: &Path,
    reader_schema_path: &Path,
    output: &Path,
) -> Result<TranscodeStats, ArchiveError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ArchiveError::Io { path, source }
    };
    let reader_text =
        std::fs::read_to_string(reader_schema_path).map_err(io(reader_schema_path))?;
    let reader = Schema::parse_str(&reader_text).map_err(|e| ArchiveError::Schema {
        path: reader_schema_path.to_path_buf(),
        why: e.to_string(),
    })?;

    let mut src = BufReader::new(File::open(input).map_err(io(input))?);
    let header = read_header(&mut src, input)?;
    let writer = Schema::parse_str(&header.schema).map_err(|e| ArchiveError::Schema {
        path: input.to_path_buf(),
        why: e.to_string(),
    })?;
    let plan = avro::compile(&writer, &reader).map_err(|source| ArchiveError::Unresolvable {
        input: input.to_path_buf(),
        reader: reader_schema_path.to_path_buf(),
        source: Box::new(source),
    })?;

    let tmp = temp_path(output);
    let result = (|| {
        let file = File::create(&tmp).map_err(io(&tmp))?;
        let mut dst = BufWriter::new(file);
        let sync = new_sync_marker();
        write_header(&mut dst, reader_text.trim(), header.codec, &sync).map_err(io(&tmp))?;
        let stats = copy_blocks(&mut src, &mut dst, &header, &plan, &sync, input, &tmp)?;
        let file = dst.into_inner().map_err(|e| ArchiveError::Io {
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io(&tmp))?;
        Ok(stats)
    })();
    match result {
        Ok(stats) => {
            std::fs::rename(&tmp, output).map_err(io(output))?;
            Ok(stats)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Every datum of a container file, writer-encoded, with the writer schema text (for benches).
pub fn read_datums(input: &Path) -> Result<(String, Vec<Vec<u8>>), ArchiveError> {
    let mut src = BufReader::new(File::open(input).map_err(|source| ArchiveError::Io {
        path: input.to_path_buf(),
        source,
    })?);
    let header = read_header(&mut src, input)?;
    let writer = Schema::parse_str(&header.schema).map_err(|e| ArchiveError::Schema {
        path: input.to_path_buf(),
        why: e.to_string(),
    })?;
    // The identity plan finds datum boundaries without decoding values.
    let plan = avro::compile(&writer, &writer).map_err(|e| ArchiveError::Schema {
        path: input.to_path_buf(),
        why: e.to_string(),
    })?;
    let mut datums = Vec::new();
    let mut block_no = 0;
    let mut record = 0;
    let mut scratch = Vec::new();
    while let Some((count, data)) = read_block(&mut src, &header, input)? {
        let mut rest = &data[..];
        for _ in 0..count {
            scratch.clear();
            let (used, _) = plan
                .transcode_prefix(rest, &mut scratch)
                .map_err(|source| ArchiveError::Datum {
                    path: input.to_path_buf(),
                    record,
                    block: block_no,
                    source: Box::new(source),
                })?;
            datums.push(rest[..used].to_vec());
            rest = &rest[used..];
            record += 1;
        }
        block_no += 1;
    }
    Ok((header.schema, datums))
}

struct Header {
    schema: String,
    codec: Codec,
    sync: [u8; 16],
}

fn format_err(path: &Path, why: impl Into<String>) -> ArchiveError {
    ArchiveError::Format {
        path: path.to_path_buf(),
        why: why.into(),
    }
}

fn read_header(src: &mut impl Read, path: &Path) -> Result<Header, ArchiveError> {
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
fn read_block(
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

fn copy_blocks(
    src: &mut impl Read,
    dst: &mut impl Write,
    header: &Header,
    plan: &avro::Plan,
    sync: &[u8; 16],
    input: &Path,
    tmp: &Path,
) -> Result<TranscodeStats, ArchiveError> {
    let mut stats = TranscodeStats {
        codec: header.codec.name().to_string(),
        dropped_fields: plan.dropped_fields().to_vec(),
        ..TranscodeStats::default()
    };
    let mut out = Vec::new();
    while let Some((count, data)) = read_block(src, header, input)? {
        out.clear();
        let mut rest = &data[..];
        for _ in 0..count {
            let (used, loss) =
                plan.transcode_prefix(rest, &mut out)
                    .map_err(|source| ArchiveError::Datum {
                        path: input.to_path_buf(),
                        record: stats.records,
                        block: stats.blocks,
                        source: Box::new(source),
                    })?;
            if loss.is_lossy() {
                stats.lossy_records += 1;
            }
            rest = &rest[used..];
            stats.records += 1;
        }
        if !rest.is_empty() {
            return Err(format_err(
                input,
                format!(
                    "block {} has {} bytes after its {count} records",
                    stats.blocks,
                    rest.len()
                ),
            ));
        }
        let body = match header.codec {
            Codec::Null => std::borrow::Cow::Borrowed(&out[..]),
            Codec::Deflate => {
                std::borrow::Cow::Owned(miniz_oxide::deflate::compress_to_vec(&out, 6))
            }
        };
        let io = |source| ArchiveError::Io {
            path: tmp.to_path_buf(),
            source,
        };
        let mut head = Vec::with_capacity(20);
        write_long(&mut head, count as i64);
        write_long(&mut head, body.len() as i64);
        dst.write_all(&head).map_err(io)?;
        dst.write_all(&body).map_err(io)?;
        dst.write_all(sync).map_err(io)?;
        stats.blocks += 1;
    }
    Ok(stats)
}

fn write_header(
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

fn temp_path(output: &Path) -> PathBuf {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    output.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

fn new_sync_marker() -> [u8; 16] {
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
