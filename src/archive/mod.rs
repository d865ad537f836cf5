//! Archives: Avro object container files in and out, normalised to one reader schema.
//!
//! Owns: the container format (`container`), the output seam every archive file is written
//! through (`output`: one reader schema compiled once for output, a [`RecordFile`] per file,
//! whatever the format), and `schemabridge transcode` (`transcode`), which rewrites a container
//! file through the gateway's compiled plan; the reader-bytes visitor every format is fed by
//! (`shape`), and Parquet output (`parquet`, with the Arrow builders in `columnar`);
//! `schemabridge archive` (`topic`), which writes a route's topics to rolling files in a local
//! directory or S3 (`store`), exactly once. Must not: resolve schemas itself (`avro` does).

pub mod columnar;
mod container;
pub mod output;
pub mod parquet;
pub mod shape;
pub mod store;
pub mod topic;
mod transcode;

use std::path::PathBuf;

use thiserror::Error;

pub use self::parquet::{
    ParquetCompression, ParquetDictionary, ParquetOptions, ParquetStatistics, ZSTD_LEVEL,
};
use crate::avro;
pub use container::AvroCodec;
pub use output::{FileFormat, ReaderSchema, RecordFile};
pub use transcode::{InputStats, TranscodeStats, common_codec, read_datums, transcode_files};

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
    /// Writing an output file (its sink or its format).
    #[error("{why}")]
    Output { why: String },
    /// A datum holding a value the output cannot (a string that is not UTF-8, a uuid string
    /// that is not a UUID; in Parquet also uuid bytes not 16 long or a decimal with more digits
    /// than its precision): none of it went into the file, which takes the next datum.
    #[error("{why}")]
    Rejected { why: String },
    #[error("{}: schema: {why}", path.display())]
    Schema { path: PathBuf, why: String },
    /// (The engine's errors are boxed to keep `Result<_, ArchiveError>` small.)
    #[error("the writer schema of {} cannot be read as {reader}: {source}", input.display())]
    Unresolvable {
        input: PathBuf,
        /// Where the reader schema came from (a file, a registry subject and version).
        reader: String,
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
