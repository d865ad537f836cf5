//! `schemabridge transcode`: Avro object container files, each written with its own writer
//! schema, rewritten into ONE file with a reader schema (Avro container or Parquet, through the
//! output seam), each datum resolved by the gateway's compiled plan. It is how a pile of old
//! archives is normalised to the latest schema.
//!
//! Owns: reading the inputs in order (one plan per distinct writer schema), the all-or-nothing
//! output (a temporary file beside the output, renamed into place only once every input was
//! read and the file finished) and the per-input statistics. Must not: parse the container
//! format itself (`container` does), lay out the output (`output`'s formats do), or resolve
//! schemas (`avro` does).

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::ArchiveError;
use super::container::{Codec, read_block, read_header, temp_path};
use super::output::{self, FileFormat, ReaderSchema, RecordFile};
use crate::avro::{self, Schema};

/// What `transcode` did with one input file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputStats {
    pub path: PathBuf,
    pub records: u64,
    pub blocks: u64,
    /// The input's codec (`null`, `deflate`).
    pub codec: String,
    /// The writer schema's full name (`com.example.orders.OrderPlaced`) and whether writer and
    /// reader have the same canonical form (the records are copied after validation).
    pub writer: String,
    pub identity: bool,
    /// Writer fields the reader schema does not have.
    pub dropped_fields: Vec<String>,
    /// Records in which at least one dropped field held data.
    pub lossy_records: u64,
}

/// What a `transcode` did: one entry per input, in the order they were read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TranscodeStats {
    pub inputs: Vec<InputStats>,
}

impl TranscodeStats {
    pub fn records(&self) -> u64 {
        self.inputs.iter().map(|i| i.records).sum()
    }
}

/// The codec of the inputs' first block header, for a default output codec: `deflate` when
/// the inputs do not agree.
pub fn common_codec(inputs: &[PathBuf]) -> Result<super::AvroCodec, ArchiveError> {
    let mut common = None;
    for input in inputs {
        let mut src = BufReader::new(File::open(input).map_err(io(input))?);
        let codec = read_header(&mut src, input)?.codec;
        match common {
            None => common = Some(codec),
            Some(c) if c == codec => {}
            Some(_) => return Ok(Codec::Deflate),
        }
    }
    Ok(common.unwrap_or(Codec::Deflate))
}

/// Rewrites every record of `inputs` (in order) into `output`, written as `format` with
/// `reader`'s schema. On any error `output` is not created (an existing file there is left
/// untouched) and no temporary file is left behind.
pub fn transcode_files(
    inputs: &[PathBuf],
    reader: &Arc<ReaderSchema>,
    reader_origin: &str,
    format: FileFormat,
    output: &Path,
) -> Result<TranscodeStats, ArchiveError> {
    let tmp = temp_path(output);
    let result = (|| {
        let sink = File::create(&tmp).map_err(io(&tmp))?;
        let mut file = output::open(format, reader, sink)?;
        let mut plans: HashMap<String, (Arc<avro::Plan>, String)> = HashMap::new();
        let mut stats = TranscodeStats::default();
        for input in inputs {
            let one = copy_file(input, reader, reader_origin, &mut plans, file.as_mut())?;
            stats.inputs.push(one);
        }
        file.finish()?;
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

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + use<> {
    let path = path.to_path_buf();
    move |source| ArchiveError::Io { path, source }
}

/// Every record of one input, resolved and appended to `file`.
fn copy_file(
    input: &Path,
    reader: &ReaderSchema,
    reader_origin: &str,
    plans: &mut HashMap<String, (Arc<avro::Plan>, String)>,
    file: &mut dyn RecordFile,
) -> Result<InputStats, ArchiveError> {
    let mut src = BufReader::new(File::open(input).map_err(io(input))?);
    let header = read_header(&mut src, input)?;
    let (plan, writer_name) = match plans.get(&header.schema) {
        Some(known) => known.clone(),
        None => {
            let writer = Schema::parse_str(&header.schema).map_err(|e| ArchiveError::Schema {
                path: input.to_path_buf(),
                why: e.to_string(),
            })?;
            let plan = avro::compile(&writer, reader.schema()).map_err(|source| {
                ArchiveError::Unresolvable {
                    input: input.to_path_buf(),
                    reader: reader_origin.to_string(),
                    source: Box::new(source),
                }
            })?;
            let name = writer
                .name()
                .map(|n| n.fullname(None))
                .unwrap_or_else(|| "(unnamed)".into());
            let known = (Arc::new(plan), name);
            plans.insert(header.schema.clone(), known.clone());
            known
        }
    };
    let mut stats = InputStats {
        path: input.to_path_buf(),
        codec: header.codec.name().to_string(),
        writer: writer_name,
        identity: plan.is_identity(),
        dropped_fields: plan.dropped_fields().to_vec(),
        ..InputStats::default()
    };
    let mut datum = Vec::new();
    while let Some((count, data)) = read_block(&mut src, &header, input)? {
        let mut rest = &data[..];
        for _ in 0..count {
            datum.clear();
            let (used, loss) =
                plan.transcode_prefix(rest, &mut datum)
                    .map_err(|source| ArchiveError::Datum {
                        path: input.to_path_buf(),
                        record: stats.records,
                        block: stats.blocks,
                        source: Box::new(source),
                    })?;
            if loss.is_lossy() {
                stats.lossy_records += 1;
            }
            file.append(&datum).map_err(|e| match e {
                ArchiveError::Rejected { why } => ArchiveError::Output {
                    why: format!(
                        "{}: record {} (block {}) cannot be written: {why}",
                        input.display(),
                        stats.records,
                        stats.blocks
                    ),
                },
                other => other,
            })?;
            rest = &rest[used..];
            stats.records += 1;
        }
        if !rest.is_empty() {
            return Err(super::container::format_err(
                input,
                format!(
                    "block {} has {} bytes after its {count} records",
                    stats.blocks,
                    rest.len()
                ),
            ));
        }
        stats.blocks += 1;
    }
    Ok(stats)
}

/// Every datum of a container file, writer-encoded, with the writer schema text (for benches).
pub fn read_datums(input: &Path) -> Result<(String, Vec<Vec<u8>>), ArchiveError> {
    let mut src = BufReader::new(File::open(input).map_err(io(input))?);
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
