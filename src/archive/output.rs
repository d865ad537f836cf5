//! The output seam: every archive file, whatever its format, is written through [`RecordFile`],
//! one datum at a time, each datum already encoded with the reader schema (the compiled plan's
//! output). `transcode` and `archive` pick a [`FileFormat`]; neither knows how a format lays
//! records out.
//!
//! Owns: [`ReaderSchema`] (the reader schema compiled once for output, shared by every file
//! written with it), [`FileFormat`] and its options, the [`RecordFile`] contract and [`open`].
//! Must not: resolve writer data (the plan did that before a datum gets here), choose file
//! names or storage (the callers do), or parse the reader schema a second way per format.

use std::fs::File;
use std::sync::Arc;

use super::ArchiveError;
use super::container::{AvroCodec, ContainerFile};
use super::parquet::{ParquetFile, ParquetOptions};
use super::shape::Shape;
use crate::avro::Schema;

/// The reader schema every datum of a file is encoded with, compiled once for output.
#[derive(Debug)]
pub struct ReaderSchema {
    schema: Schema,
    /// Self-contained JSON (named types defined inline), written into each file's metadata.
    text: String,
    /// The schema compiled for walking reader-encoded datums (every format's one view of it).
    shape: Arc<Shape>,
}

impl ReaderSchema {
    /// `schema` must be self-contained (registry references already inlined).
    pub fn new(schema: Schema) -> Result<Arc<ReaderSchema>, ArchiveError> {
        let text = serde_json::to_string(&schema).map_err(|e| ArchiveError::Output {
            why: format!("the reader schema cannot be written as JSON: {e}"),
        })?;
        let shape = Shape::compile(&schema).map_err(|e| ArchiveError::Output {
            why: format!("the reader schema cannot be compiled for output: {e}"),
        })?;
        Ok(Arc::new(ReaderSchema {
            schema,
            text,
            shape: Arc::new(shape),
        }))
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The schema compiled for walking datums (see `shape`).
    pub fn shape(&self) -> &Arc<Shape> {
        &self.shape
    }

    /// The schema as JSON, as it goes into a file's metadata.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// How archive files lay out their records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// Avro object container files (row-oriented, for general archival).
    Avro { codec: AvroCodec },
    /// Apache Parquet files (columnar, for analytics); the schema must not be recursive.
    Parquet(ParquetOptions),
}

impl FileFormat {
    /// `Avro (deflate codec)`, `Parquet (zstd level 1)`, for reports.
    pub fn describe(&self) -> String {
        match self {
            FileFormat::Avro { codec } => format!("Avro ({} codec)", codec.name()),
            FileFormat::Parquet(options) => format!("Parquet ({})", options.compression.describe()),
        }
    }

    /// The file name extension, without the dot.
    pub fn extension(&self) -> &'static str {
        match self {
            FileFormat::Avro { .. } => "avro",
            FileFormat::Parquet(_) => "parquet",
        }
    }
}

/// One output file being written. Datums go in one at a time; nothing is readable until
/// [`RecordFile::finish`] returns, and a file dropped unfinished is garbage to delete.
pub trait RecordFile: Send {
    /// Appends one datum encoded with the file's reader schema (exactly one, no trailing bytes).
    fn append(&mut self, datum: &[u8]) -> Result<(), ArchiveError>;
    /// Datums appended so far.
    fn records(&self) -> u64;
    /// Bytes the finished file would hold if finished now, roughly (what rolling by size reads).
    fn bytes(&self) -> u64;
    /// Writes what is buffered and the format's trailer, flushes and syncs, and hands the file
    /// back (positioned at its end).
    fn finish(self: Box<Self>) -> Result<File, ArchiveError>;
}

/// Starts a file of `format` on `sink` (an empty file opened for writing).
pub fn open(
    format: FileFormat,
    schema: &Arc<ReaderSchema>,
    sink: File,
) -> Result<Box<dyn RecordFile>, ArchiveError> {
    Ok(match format {
        FileFormat::Avro { codec } => Box::new(ContainerFile::create(schema.text(), codec, sink)?),
        FileFormat::Parquet(options) => Box::new(ParquetFile::create(schema, options, sink)?),
    })
}
