//! Avro object container files, the format: header (magic, metadata, sync marker), blocks of
//! datums with their count and size, null and deflate codecs.
//!
//! Owns: reading a container's header and blocks, and writing them; [`ContainerFile`] is the
//! Avro format behind the output seam, which checks each datum's strings before taking it (the
//! compiled plan copies strings without re-validating them, and a reader of the file would
//! refuse one that is not UTF-8, or a uuid string that is not a UUID). Must not: resolve schemas
//! (`avro` does) or decide what goes into a file (the callers do); no I/O beyond the reader or
//! writer it is handed.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::ArchiveError;
use super::output::{ReaderSchema, RecordFile};
use super::shape::{Logical, NodeId, Shape, ShapeError, Visitor, not_a_uuid, not_utf8, parse_uuid};
use crate::avro::write_long;

const MAGIC: &[u8; 4] = b"Obj\x01";
/// A block larger than this is refused as hostile rather than allocated.
const MAX_BLOCK_BYTES: u64 = 1 << 30;

/// A container file's block codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AvroCodec {
    Null,
    Deflate,
}

pub(crate) use AvroCodec as Codec;

impl AvroCodec {
    pub fn name(self) -> &'static str {
        match self {
            Codec::Null => "null",
            Codec::Deflate => "deflate",
        }
    }
}

/// A block is written once it holds this many bytes of datums (before compression).
const BLOCK_BYTES: usize = 64 * 1024;

/// An Avro object container file being written (the [`RecordFile`] for `FileFormat::Avro`):
/// datums are gathered into blocks of about [`BLOCK_BYTES`], each compressed with the file's
/// codec and followed by the sync marker.
pub(crate) struct ContainerFile {
    /// The reader schema, walked to check each datum's strings.
    shape: Arc<Shape>,
    out: BufWriter<File>,
    codec: Codec,
    sync: [u8; 16],
    block: Vec<u8>,
    block_records: u64,
    records: u64,
    /// Bytes written to `out` so far (header and finished blocks).
    written: u64,
    /// Reused for the block header and the compressed body.
    scratch: Vec<u8>,
}

impl ContainerFile {
    /// Writes the header (schema JSON and codec in the metadata, a fresh sync marker) to `sink`.
    pub(crate) fn create(
        reader: &ReaderSchema,
        codec: Codec,
        sink: File,
    ) -> Result<Self, ArchiveError> {
        let schema = reader.text();
        let sync = new_sync_marker();
        let mut header = Vec::with_capacity(schema.len() + 64);
        write_header(&mut header, schema, codec, &sync).map_err(output_err)?;
        let mut out = BufWriter::with_capacity(BLOCK_BYTES, sink);
        out.write_all(&header).map_err(output_err)?;
        Ok(ContainerFile {
            shape: Arc::clone(reader.shape()),
            out,
            codec,
            sync,
            block: Vec::with_capacity(BLOCK_BYTES + 1024),
            block_records: 0,
            records: 0,
            written: header.len() as u64,
            scratch: Vec::new(),
        })
    }

    fn write_block(&mut self) -> Result<(), ArchiveError> {
        if self.block_records == 0 {
            return Ok(());
        }
        let body: &[u8] = match self.codec {
            Codec::Null => &self.block,
            Codec::Deflate => {
                self.scratch = miniz_oxide::deflate::compress_to_vec(&self.block, 6);
                &self.scratch
            }
        };
        let mut head = Vec::with_capacity(20);
        write_long(&mut head, self.block_records as i64);
        write_long(&mut head, body.len() as i64);
        self.out.write_all(&head).map_err(output_err)?;
        self.out.write_all(body).map_err(output_err)?;
        self.out.write_all(&self.sync).map_err(output_err)?;
        self.written += (head.len() + body.len() + self.sync.len()) as u64;
        self.block.clear();
        self.block_records = 0;
        Ok(())
    }
}

/// The check a datum passes before it goes into a container file: every string (map keys
/// included) is UTF-8, and every uuid string is a UUID.
struct Strings<'s> {
    shape: &'s Shape,
}

impl Visitor for Strings<'_> {
    fn string(&mut self, id: NodeId, v: &str) -> Result<(), ShapeError> {
        match self.shape.node(id) {
            Some(n) if n.logical == Logical::Uuid && parse_uuid(v).is_none() => {
                Err(ShapeError::Value {
                    node: self.shape.path(id),
                    why: not_a_uuid(v),
                })
            }
            _ => Ok(()),
        }
    }
    fn invalid_utf8(&mut self, id: NodeId, key: bool, _at: usize) -> Result<(), ShapeError> {
        Err(ShapeError::Value {
            node: self.shape.path(id),
            why: not_utf8(key),
        })
    }
}

impl RecordFile for ContainerFile {
    fn append(&mut self, datum: &[u8]) -> Result<(), ArchiveError> {
        let shape = &*self.shape;
        shape
            .walk(datum, &mut Strings { shape })
            .map_err(|e| ArchiveError::Rejected { why: e.to_string() })?;
        self.block.extend_from_slice(datum);
        self.block_records += 1;
        self.records += 1;
        if self.block.len() >= BLOCK_BYTES {
            self.write_block()?;
        }
        Ok(())
    }

    fn records(&self) -> u64 {
        self.records
    }

    fn bytes(&self) -> u64 {
        self.written + self.block.len() as u64
    }

    fn finish(mut self: Box<Self>) -> Result<File, ArchiveError> {
        self.write_block()?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| output_err(e.into_error()))?;
        file.sync_all().map_err(output_err)?;
        Ok(file)
    }
}

fn output_err(e: std::io::Error) -> ArchiveError {
    ArchiveError::Output {
        why: format!("writing an Avro container file: {e}"),
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

#[cfg(test)]
mod tests {
    use std::io::{Seek, SeekFrom};

    use super::*;
    use crate::archive::output::{self, FileFormat, ReaderSchema};
    use crate::avro::Schema;

    /// Datums written through the output seam come back, in order and intact, from the reader
    /// half of this module, across several blocks and with both codecs.
    #[test]
    fn container_file_round_trips_datums_across_blocks() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"R","fields":[{"name":"s","type":"string"}]}"#,
        )
        .expect("schema");
        let schema = ReaderSchema::new(schema).expect("reader schema");
        let datums: Vec<Vec<u8>> = (0..5_000)
            .map(|i| {
                let s = format!("record number {i} {}", "x".repeat(i % 50));
                let mut d = Vec::new();
                write_long(&mut d, s.len() as i64);
                d.extend_from_slice(s.as_bytes());
                d
            })
            .collect();
        for codec in [AvroCodec::Null, AvroCodec::Deflate] {
            let sink = tempfile::tempfile().expect("temp file");
            let mut file = output::open(FileFormat::Avro { codec }, &schema, sink).expect("open");
            for d in &datums {
                file.append(d).expect("append");
            }
            assert_eq!(file.records(), datums.len() as u64);
            let mut done = file.finish().expect("finish");
            done.seek(SeekFrom::Start(0)).expect("seek");
            let path = Path::new("round-trip");
            let mut src = std::io::BufReader::new(done);
            let header = read_header(&mut src, path).expect("header");
            assert_eq!(header.codec, codec);
            assert_eq!(header.schema, schema.text());
            let mut read = Vec::new();
            let mut blocks = 0;
            while let Some((count, data)) = read_block(&mut src, &header, path).expect("block") {
                let mut rest = &data[..];
                for _ in 0..count {
                    let len = crate::avro::read_long(&mut rest).expect("len") as usize;
                    let mut d = Vec::new();
                    write_long(&mut d, len as i64);
                    d.extend_from_slice(&rest[..len]);
                    rest = &rest[len..];
                    read.push(d);
                }
                assert!(rest.is_empty(), "block bytes after its records");
                blocks += 1;
            }
            assert!(blocks > 1, "expected several blocks, got {blocks}");
            assert_eq!(read, datums, "codec {}", codec.name());
        }
    }
}
