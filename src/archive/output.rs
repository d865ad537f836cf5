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

    /// `Avro`, `Parquet`.
    pub fn name(&self) -> &'static str {
        match self {
            FileFormat::Avro { .. } => "Avro",
            FileFormat::Parquet(_) => "Parquet",
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
    /// [`ArchiveError::Rejected`]: the datum holds a value the format's readers would refuse;
    /// the file is as it was and takes the next datum. Any other error: the file is garbage.
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
        FileFormat::Avro { codec } => Box::new(ContainerFile::create(schema, codec, sink)?),
        FileFormat::Parquet(options) => Box::new(ParquetFile::create(schema, options, sink)?),
    })
}

#[cfg(test)]
mod tests {
    use std::io::{BufReader, Seek, SeekFrom};
    use std::path::Path;

    use arrow_array::cast::AsArray;
    use arrow_array::types::Decimal128Type;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;
    use crate::archive::container::{read_block, read_header};
    use crate::archive::{AvroCodec, ParquetOptions};
    use crate::avro::write_long;

    const SCHEMA: &str = r#"{"type":"record","name":"R","fields":[
        {"name":"id","type":{"type":"string","logicalType":"uuid"}},
        {"name":"name","type":"string"},
        {"name":"tags","type":{"type":"map","values":"string"}},
        {"name":"lines","type":{"type":"array","items":{"type":"record","name":"L",
            "fields":[{"name":"sku","type":"string"}]}}},
        {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":4,"scale":2}}
    ]}"#;
    const UUID: &str = "5d7f3a4e-9c1b-4d2a-8e6f-0a1b2c3d4e5f";

    fn text(d: &mut Vec<u8>, s: &[u8]) {
        write_long(d, s.len() as i64);
        d.extend_from_slice(s);
    }

    /// One datum of `SCHEMA`: one tag, one line, the unscaled price as big-endian bytes.
    fn datum(id: &str, name: &[u8], key: &[u8], sku: &[u8], price: &[u8]) -> Vec<u8> {
        let mut d = Vec::new();
        text(&mut d, id.as_bytes());
        text(&mut d, name);
        write_long(&mut d, 1);
        text(&mut d, key);
        text(&mut d, b"v");
        write_long(&mut d, 0);
        write_long(&mut d, 1);
        text(&mut d, sku);
        write_long(&mut d, 0);
        text(&mut d, price);
        d
    }

    /// Datums either format's readers would refuse, each with why; and the good ones around
    /// them. The decimal ones only Parquet refuses (its column holds 4 digits; Avro's bytes
    /// hold any).
    fn inputs() -> Vec<(Vec<u8>, Option<&'static str>, bool)> {
        let ok = |n: &str| datum(UUID, n.as_bytes(), b"k", b"s", &[0x04, 0xd2]);
        vec![
            (ok("a"), None, false),
            (
                datum(UUID, b"b\xff", b"k", b"s", &[1]),
                Some("name: a string that is not UTF-8"),
                false,
            ),
            (ok("c"), None, false),
            (
                datum(UUID, b"d", b"\xc3", b"s", &[1]),
                Some("tags: a map key that is not UTF-8"),
                false,
            ),
            (
                datum("not-a-uuid", b"e", b"k", b"s", &[1]),
                Some("id: \"not-a-uuid\" is not a UUID"),
                false,
            ),
            (
                datum(UUID, b"f", b"k", b"\x80", &[1]),
                Some("lines[].sku: a string that is not UTF-8"),
                false,
            ),
            (
                datum(UUID, b"g", b"k", b"s", &[0x01, 0x86, 0xa0]),
                Some("price: the unscaled decimal 100000 has more than 4 digits"),
                true,
            ),
            (
                datum(UUID, b"h", b"k", b"s", &[0x7f; 17]),
                Some("price: a 17-byte decimal has more than 4 digits"),
                true,
            ),
            (ok("i"), None, false),
        ]
    }

    /// Every refused datum gets `Rejected` with the path of the value and why; the file holds
    /// exactly the others, in order, and reads back.
    #[test]
    fn both_formats_refuse_values_their_readers_would_and_keep_every_other_datum() {
        let schema = ReaderSchema::new(Schema::parse_str(SCHEMA).expect("schema")).expect("reader");
        for format in [
            FileFormat::Avro {
                codec: AvroCodec::Null,
            },
            FileFormat::Parquet(ParquetOptions::default()),
        ] {
            let parquet = matches!(format, FileFormat::Parquet(_));
            let mut file =
                open(format, &schema, tempfile::tempfile().expect("temp")).expect("open");
            let mut kept = Vec::new();
            for (d, why, parquet_only) in inputs() {
                let got = file.append(&d);
                match why.filter(|_| parquet || !parquet_only) {
                    None => {
                        got.expect("a good datum");
                        kept.push(d);
                    }
                    Some(why) => match got {
                        Err(ArchiveError::Rejected { why: got }) => {
                            assert_eq!(got, why, "{}", format.name())
                        }
                        other => panic!("{}: {why}: got {other:?}", format.name()),
                    },
                }
            }
            assert_eq!(file.records(), kept.len() as u64, "{}", format.name());
            let mut done = file.finish().expect("finish");
            done.seek(SeekFrom::Start(0)).expect("seek");
            if parquet {
                let batches: Vec<_> = ParquetRecordBatchReaderBuilder::try_new(done)
                    .expect("parquet")
                    .build()
                    .expect("reader")
                    .collect::<Result<_, _>>()
                    .expect("batches");
                let names: Vec<&str> = batches
                    .iter()
                    .flat_map(|b| b.column(1).as_string::<i32>().iter().flatten())
                    .collect();
                assert_eq!(names, ["a", "c", "i"]);
                let prices: Vec<i128> = batches
                    .iter()
                    .flat_map(|b| {
                        b.column(4)
                            .as_primitive::<Decimal128Type>()
                            .values()
                            .to_vec()
                    })
                    .collect();
                assert_eq!(prices, [1234, 1234, 1234]);
            } else {
                let path = Path::new("avro");
                let mut src = BufReader::new(done);
                let header = read_header(&mut src, path).expect("header");
                let mut data = Vec::new();
                while let Some((_, block)) = read_block(&mut src, &header, path).expect("block") {
                    data.extend_from_slice(&block);
                }
                assert_eq!(data, kept.concat());
                assert_eq!(kept.len(), 5, "a, c, g, h and i");
            }
        }
    }

    /// A Parquet batch of rejected datums only is left out; the file is still whole.
    #[test]
    fn a_parquet_file_of_rejected_datums_only_is_an_empty_file() {
        let schema = ReaderSchema::new(Schema::parse_str(SCHEMA).expect("schema")).expect("reader");
        let format = FileFormat::Parquet(ParquetOptions::default());
        let mut file = open(format, &schema, tempfile::tempfile().expect("temp")).expect("open");
        let bad = datum(UUID, b"\xff", b"k", b"s", &[1]);
        for _ in 0..3 {
            assert!(matches!(
                file.append(&bad),
                Err(ArchiveError::Rejected { .. })
            ));
        }
        assert_eq!(file.records(), 0);
        let done = file.finish().expect("finish");
        let reader = ParquetRecordBatchReaderBuilder::try_new(done).expect("parquet");
        assert_eq!(reader.metadata().file_metadata().num_rows(), 0);
    }
}
