//! `schemabridge transcode`: one Avro object container file written with any writer schema,
//! rewritten with a reader schema through the gateway's compiled plan. It is how an archive is
//! normalised to the latest schema.
//!
//! Owns: the all-or-nothing output (a temporary file renamed into place only on success) and the
//! per-file statistics. Must not: parse the container format itself (`container` does) or
//! resolve schemas (`avro` does).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use super::ArchiveError;
use super::container::{
    Codec, Header, format_err, new_sync_marker, read_block, read_header, temp_path, write_header,
};
use crate::avro::{self, Schema, write_long};

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
