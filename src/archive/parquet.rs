//! Parquet output: a [`RecordFile`] that feeds each reader-encoded datum through the shape's
//! walk into Arrow builders (`columnar`) and hands the batches to a [`BatchWriter`]
//! (parquet's `ArrowWriter`).
//!
//! Owns: [`ParquetOptions`] (compression, row group size in bytes, which columns are
//! dictionary-encoded, statistics level), the writer properties (chosen per file when its first
//! batch is in hand: `ParquetDictionary::Auto` looks at that batch's text columns), the
//! `avro.schema` key-value metadata (the reader schema's JSON), batching and the batch writer.
//! Must not: choose file names or storage, or lay values out itself (`columnar` maps Avro types
//! to Arrow).
//!
//! Parquet has no union type: a union other than `["null", T]` is a struct with one nullable
//! field per non-null branch, named after the branch type (`int`, `string`, a record's full
//! name); exactly one field is set per row, and the struct itself is null for the null branch.
//! Recursive record types cannot be columns: opening a Parquet file for such a schema is an
//! error (Avro container output still works for them).

use std::collections::HashSet;
use std::fs::File;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Schema as ArrowSchema, SchemaRef};
use parquet::arrow::ArrowSchemaConverter;
use parquet::arrow::arrow_writer::ArrowWriter;
use parquet::basic::{Compression, Type as PhysicalType, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use super::ArchiveError;
use super::columnar::Columns;
use super::output::{ReaderSchema, RecordFile};

/// For each leaf column of `batch`, depth first (the order of Parquet's columns: a struct's
/// fields, a list's items, a map's keys then values), whether it is a string or bytes column
/// more than half of whose values are distinct.
fn mostly_distinct_leaves(batch: &RecordBatch) -> Vec<bool> {
    fn leaves(array: &dyn Array, out: &mut Vec<bool>) {
        match array.data_type() {
            DataType::Struct(_) => {
                for c in array.as_struct().columns() {
                    leaves(c.as_ref(), out);
                }
            }
            DataType::List(_) => leaves(array.as_list::<i32>().values().as_ref(), out),
            DataType::Map(..) => {
                let map = array.as_map();
                leaves(map.keys().as_ref(), out);
                leaves(map.values().as_ref(), out);
            }
            DataType::Utf8 => out.push(mostly_distinct(
                array.as_string::<i32>().iter().flatten().map(str::as_bytes),
                array.len() - array.null_count(),
            )),
            DataType::Binary => out.push(mostly_distinct(
                array.as_binary::<i32>().iter().flatten(),
                array.len() - array.null_count(),
            )),
            _ => out.push(false),
        }
    }
    let mut out = Vec::new();
    for c in batch.columns() {
        leaves(c.as_ref(), &mut out);
    }
    out
}

/// More than half of `values` (`n` of them) are distinct (none: no). Stops as soon as the
/// answer is known: once more than half were distinct, or once the values left could not get
/// there even if each were new, so a column reads about half of its values either way.
fn mostly_distinct<'a>(values: impl Iterator<Item = &'a [u8]>, n: usize) -> bool {
    let needed = n / 2 + 1;
    let mut seen = HashSet::with_capacity(needed);
    for (i, v) in values.enumerate() {
        seen.insert(v);
        if seen.len() >= needed {
            return true;
        }
        if seen.len() + n.saturating_sub(i + 1) < needed {
            return false;
        }
    }
    false
}

/// Parquet compression codecs offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParquetCompression {
    /// zstd at this level (1-22; 1 is Arrow's default for Parquet, in arrow-rs and in Arrow
    /// C++ and so pyarrow; 3 is zstd's own).
    Zstd(i32),
    Snappy,
    None,
}

impl ParquetCompression {
    /// `zstd level 1`, `snappy`, `uncompressed`, for reports.
    pub fn describe(&self) -> String {
        match self {
            ParquetCompression::Zstd(level) => format!("zstd level {level}"),
            ParquetCompression::Snappy => "snappy".into(),
            ParquetCompression::None => "uncompressed".into(),
        }
    }
}

/// zstd's level when none is given: Arrow's. On the reference records it writes a 3% smaller
/// file than level 3, and the writer spends a fifth less time per record (`bench archive
/// --compression zstd:3` measures it).
pub const ZSTD_LEVEL: i32 = 1;

impl Default for ParquetCompression {
    fn default() -> Self {
        ParquetCompression::Zstd(ZSTD_LEVEL)
    }
}

/// How Parquet files are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParquetOptions {
    pub compression: ParquetCompression,
    /// A row group is closed once its estimated encoded size reaches this.
    pub row_group_bytes: u64,
    /// Which columns are dictionary-encoded (every value of such a column is hashed while
    /// writing).
    pub dictionary: ParquetDictionary,
    /// Min/max statistics: none, per row group (what readers prune row groups by), or also
    /// per page (a page index).
    pub statistics: ParquetStatistics,
}

/// Which columns are dictionary-encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ParquetDictionary {
    /// As `Text`, except that a string or bytes column more than half of whose values are
    /// distinct in the file's first batch (order ids, SKUs, postcodes, hashes) is written plain:
    /// there a dictionary costs hashing every value into a table that keeps growing, and with
    /// zstd over the pages the file comes out no smaller (the reference records: 4% larger).
    /// Enums are always dictionary-encoded. The choice is made once per file, from its first
    /// batch (8,192 rows or the whole file), and is the same in every row group.
    #[default]
    Auto,
    /// Strings, enums and bytes (Parquet's BYTE_ARRAY columns), where repeated values are
    /// common (cities, currencies, statuses) and a dictionary saves space and lets readers keep
    /// them as categoricals. Numbers, booleans, dates, timestamps, decimals, uuids and other
    /// fixed-size values are written plain: in event data they are mostly distinct (ids,
    /// amounts, times, hashes), so a dictionary is hashing work until the writer falls back at
    /// 1 MiB of distinct values, and zstd compresses the plain values about as well.
    Text,
    /// Every column (parquet's own default).
    All,
    None,
}

/// How much min/max statistics a Parquet file carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParquetStatistics {
    None,
    RowGroup,
    Page,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        ParquetOptions {
            compression: ParquetCompression::default(),
            row_group_bytes: 128 * 1024 * 1024,
            dictionary: ParquetDictionary::default(),
            statistics: ParquetStatistics::Page,
        }
    }
}

impl ParquetOptions {
    /// The writer properties these options mean for a file whose first batch is `first` (its
    /// schema is every batch's; the `avro.schema` metadata included). A file with no rows
    /// passes an empty batch.
    pub fn writer_properties(
        &self,
        schema_json: &str,
        first: &RecordBatch,
    ) -> Result<WriterProperties, ArchiveError> {
        let arrow: &ArrowSchema = first.schema_ref();
        let compression = match self.compression {
            ParquetCompression::Zstd(level) => {
                Compression::ZSTD(ZstdLevel::try_new(level).map_err(|e| ArchiveError::Output {
                    why: format!("parquet: zstd level {level}: {e}"),
                })?)
            }
            ParquetCompression::Snappy => Compression::SNAPPY,
            ParquetCompression::None => Compression::UNCOMPRESSED,
        };
        let bytes = usize::try_from(self.row_group_bytes.max(1)).unwrap_or(usize::MAX);
        let statistics = match self.statistics {
            ParquetStatistics::None => EnabledStatistics::None,
            ParquetStatistics::RowGroup => EnabledStatistics::Chunk,
            ParquetStatistics::Page => EnabledStatistics::Page,
        };
        let mut builder = WriterProperties::builder()
            .set_compression(compression)
            .set_dictionary_enabled(self.dictionary == ParquetDictionary::All);
        if matches!(
            self.dictionary,
            ParquetDictionary::Text | ParquetDictionary::Auto
        ) {
            let parquet = ArrowSchemaConverter::new()
                .convert(arrow)
                .map_err(parquet_err)?;
            let mut distinct = Vec::new();
            if self.dictionary == ParquetDictionary::Auto {
                distinct = mostly_distinct_leaves(first);
                if distinct.len() != parquet.num_columns() {
                    // Not the leaves the writer sees: decide nothing (as `Text`).
                    distinct.clear();
                }
            }
            for (i, column) in parquet.columns().iter().enumerate() {
                if column.physical_type() == PhysicalType::BYTE_ARRAY
                    && !distinct.get(i).copied().unwrap_or(false)
                {
                    builder = builder.set_column_dictionary_enabled(column.path().clone(), true);
                }
            }
        }
        Ok(builder
            .set_statistics_enabled(statistics)
            .set_max_row_group_row_count(None)
            .set_max_row_group_bytes(Some(bytes))
            .set_key_value_metadata(Some(vec![KeyValue::new(
                "avro.schema".to_string(),
                schema_json.to_string(),
            )]))
            .build())
    }
}

/// Rows buffered in the builders before they become a batch for the writer...
const BATCH_ROWS: usize = 8192;
/// ...or reader-encoded bytes, whichever comes first.
const BATCH_BYTES: usize = 16 * 1024 * 1024;

/// The file, until the first batch (or `finish`) opens the writer on it with the properties
/// chosen from that batch.
enum Writer {
    Waiting(File),
    Open(Box<ArrowWriter<File>>),
    /// Only while the writer is being opened (an error there leaves it so).
    Gone,
}

/// Arrow batches into one Parquet file: parquet's `ArrowWriter`, opened on the first batch with
/// the properties the options choose for it (the `avro.schema` metadata included). What
/// `ParquetFile` writes its batches with, and what `bench archive` hands its baseline's batches
/// to, so both are written the same way.
pub struct BatchWriter {
    writer: Writer,
    options: ParquetOptions,
    schema: Arc<ReaderSchema>,
    arrow_schema: SchemaRef,
    /// The writer's bytes (written, plus the open row group's estimate) as of the last batch.
    bytes: usize,
}

impl BatchWriter {
    /// A writer of batches of `arrow_schema` (the reader schema's columns) onto `sink`.
    pub fn new(
        schema: &Arc<ReaderSchema>,
        arrow_schema: SchemaRef,
        options: ParquetOptions,
        sink: File,
    ) -> BatchWriter {
        BatchWriter {
            writer: Writer::Waiting(sink),
            options,
            schema: Arc::clone(schema),
            arrow_schema,
            bytes: 0,
        }
    }

    /// Writes `batch` (the first one also opens the writer).
    pub fn write(&mut self, batch: RecordBatch) -> Result<(), ArchiveError> {
        let writer = self.writer_for(&batch)?;
        writer.write(&batch).map_err(parquet_err)?;
        self.bytes = writer.bytes_written() + writer.in_progress_size();
        Ok(())
    }

    /// Written bytes plus the open row group's estimated encoded size, as of the last batch.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Writes the footer (a file with no batches gets its writer now), flushes and syncs, and
    /// hands the file back.
    pub fn finish(mut self) -> Result<File, ArchiveError> {
        let empty = RecordBatch::new_empty(Arc::clone(&self.arrow_schema));
        self.writer_for(&empty)?;
        let Writer::Open(writer) = std::mem::replace(&mut self.writer, Writer::Gone) else {
            return Err(ArchiveError::Output {
                why: "parquet: the writer could not be opened".into(),
            });
        };
        let file = writer.into_inner().map_err(parquet_err)?;
        file.sync_all().map_err(|e| ArchiveError::Output {
            why: format!("parquet: sync: {e}"),
        })?;
        Ok(file)
    }

    /// The writer, opened on the first batch with the properties the options choose for it.
    fn writer_for(&mut self, first: &RecordBatch) -> Result<&mut ArrowWriter<File>, ArchiveError> {
        if let Writer::Waiting(_) = self.writer
            && let Writer::Waiting(sink) = std::mem::replace(&mut self.writer, Writer::Gone)
        {
            let props = self.options.writer_properties(self.schema.text(), first)?;
            let writer = ArrowWriter::try_new(sink, Arc::clone(&self.arrow_schema), Some(props))
                .map_err(parquet_err)?;
            self.writer = Writer::Open(Box::new(writer));
        }
        match &mut self.writer {
            Writer::Open(w) => Ok(w),
            _ => Err(ArchiveError::Output {
                why: "parquet: the writer could not be opened".into(),
            }),
        }
    }
}

fn parquet_err(e: parquet::errors::ParquetError) -> ArchiveError {
    ArchiveError::Output {
        why: format!("parquet: {e}"),
    }
}

/// One Parquet file being written.
pub struct ParquetFile {
    writer: BatchWriter,
    columns: Columns,
    records: u64,
}

impl ParquetFile {
    pub fn create(
        schema: &Arc<ReaderSchema>,
        options: ParquetOptions,
        sink: File,
    ) -> Result<ParquetFile, ArchiveError> {
        let columns =
            Columns::new(Arc::clone(schema.shape())).map_err(|e| ArchiveError::Output {
                why: format!("parquet: {e}"),
            })?;
        Ok(ParquetFile {
            writer: BatchWriter::new(schema, Arc::clone(columns.schema()), options, sink),
            columns,
            records: 0,
        })
    }

    fn write_batch(&mut self) -> Result<(), ArchiveError> {
        if self.columns.rows() == 0 {
            return Ok(());
        }
        let batch = self
            .columns
            .take_batch()
            .map_err(|e| ArchiveError::Output {
                why: format!("parquet: {e}"),
            })?;
        self.writer.write(batch)
    }
}

impl RecordFile for ParquetFile {
    fn append(&mut self, datum: &[u8]) -> Result<(), ArchiveError> {
        self.columns
            .append(datum)
            .map_err(|e| ArchiveError::Output {
                why: format!("parquet: record {}: {e}", self.records),
            })?;
        self.records += 1;
        if self.columns.rows() >= BATCH_ROWS || self.columns.pending_bytes() >= BATCH_BYTES {
            self.write_batch()?;
        }
        Ok(())
    }

    fn records(&self) -> u64 {
        self.records
    }

    /// Written bytes plus the open row group's estimated encoded size, as of the last batch,
    /// plus the reader-encoded size of rows not yet handed to the writer.
    fn bytes(&self) -> u64 {
        (self.writer.bytes() + self.columns.pending_bytes()) as u64
    }

    fn finish(mut self: Box<Self>) -> Result<File, ArchiveError> {
        self.write_batch()?;
        self.writer.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER_V1: &str = include_str!("../../proto/orders/order_v1.avsc");

    /// Each column of a reference reader's file whose first batch holds `records` reference
    /// orders: (dotted path, dictionary-encoded).
    // apache-avro 0.22 deprecates `to_avro_datum` for a builder API; it only encodes test data.
    #[allow(deprecated)]
    fn dictionary_columns(dictionary: ParquetDictionary, records: usize) -> Vec<(String, bool)> {
        let reader = crate::avro::Schema::parse_str(ORDER_V1).unwrap();
        let schema = ReaderSchema::new(reader.clone()).unwrap();
        let mut columns = Columns::new(Arc::clone(schema.shape())).unwrap();
        let mut rng = crate::bench::Rng(7);
        for i in 0..records {
            let order = crate::demo::orders::order_v1(i, &mut rng);
            columns
                .append(&apache_avro::to_avro_datum(&reader, order).unwrap())
                .unwrap();
        }
        let first = columns.take_batch().unwrap();
        assert_eq!(first.num_rows(), records);
        let options = ParquetOptions {
            dictionary,
            ..ParquetOptions::default()
        };
        let props = options.writer_properties(schema.text(), &first).unwrap();
        let parquet = ArrowSchemaConverter::new()
            .convert(columns.schema())
            .unwrap();
        parquet
            .columns()
            .iter()
            .map(|c| (c.path().string(), props.dictionary_enabled(c.path())))
            .collect()
    }

    /// Asserts that each leaf column of `names` (a dotted path's last parts) is
    /// dictionary-encoded or not, as `on` says.
    fn assert_dictionary(columns: &[(String, bool)], names: &[&str], on: bool) {
        for name in names {
            let enabled = columns
                .iter()
                .find(|(path, _)| path == name || path.ends_with(&format!(".{name}")))
                .map(|(_, on)| *on)
                .unwrap_or_else(|| panic!("no column {name} in {columns:?}"));
            assert_eq!(
                enabled, on,
                "{name} dictionary-encoded: {enabled}: {columns:?}"
            );
        }
    }

    const TEXT: [&str; 12] = [
        "order_id",
        "status",
        "currency",
        "line1",
        "city",
        "postcode",
        "country",
        "sku",
        "tags.list.item",
        "key",
        "value",
        "source",
    ];
    const NUMBERS: [&str; 6] = [
        "customer_id",
        "placed_at",
        "amount_cents",
        "discount",
        "qty",
        "unit_cents",
    ];

    #[test]
    fn bytes_counts_the_writer_as_of_the_last_batch_and_the_pending_rows() {
        let schema = ReaderSchema::new(
            crate::avro::Schema::parse_str(
                r#"{"type":"record","name":"R","fields":[{"name":"s","type":"string"}]}"#,
            )
            .unwrap(),
        )
        .unwrap();
        let path = std::env::temp_dir().join(format!(
            "schemabridge-parquet-bytes-{}.parquet",
            std::process::id()
        ));
        let sink = File::create(&path).unwrap();
        let mut file: Box<dyn RecordFile> =
            Box::new(ParquetFile::create(&schema, ParquetOptions::default(), sink).unwrap());
        // A reader-encoded datum: the string "row-00000" (length 9, zig-zag 18).
        let datum = |i: usize| {
            let mut d = vec![18u8];
            d.extend(format!("row-{i:05}").as_bytes());
            d
        };
        for i in 0..BATCH_ROWS - 1 {
            file.append(&datum(i)).unwrap();
        }
        assert_eq!(file.bytes(), ((BATCH_ROWS - 1) * 10) as u64, "all pending");
        file.append(&datum(BATCH_ROWS - 1)).unwrap();
        let after_batch = file.bytes();
        assert!(after_batch > 0, "the batch went to the writer");
        file.append(&datum(BATCH_ROWS)).unwrap();
        assert_eq!(file.bytes(), after_batch + 10, "one row pending on top");
        assert_eq!(file.records(), BATCH_ROWS as u64 + 1);
        file.finish().unwrap();
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn text_columns_are_dictionary_encoded_and_numbers_are_plain_with_text() {
        let columns = dictionary_columns(ParquetDictionary::Text, 2000);
        assert_dictionary(&columns, &TEXT, true);
        assert_dictionary(&columns, &NUMBERS, false);
        let all = dictionary_columns(ParquetDictionary::All, 10);
        assert!(all.iter().all(|(_, on)| *on), "{all:?}");
        let none = dictionary_columns(ParquetDictionary::None, 10);
        assert!(none.iter().all(|(_, on)| !*on), "{none:?}");
    }

    #[test]
    fn auto_writes_text_columns_plain_when_most_of_the_first_batch_is_distinct() {
        assert_eq!(ParquetDictionary::default(), ParquetDictionary::Auto);
        // 2,000 reference orders: order ids are unique, SKUs (1 to 3 an order, of 100,000),
        // postcodes (of 90,000) and street lines (of about 5,000) mostly distinct; statuses,
        // currencies, cities, countries, tags, attribute keys and values and sources repeat.
        let columns = dictionary_columns(ParquetDictionary::Auto, 2000);
        assert_dictionary(&columns, &["order_id", "sku", "postcode", "line1"], false);
        assert_dictionary(
            &columns,
            &[
                "status",
                "currency",
                "city",
                "country",
                "tags.list.item",
                "key",
                "value",
                "source",
            ],
            true,
        );
        assert_dictionary(&columns, &NUMBERS, false);
        // A file with no rows: as `Text`.
        assert_eq!(
            dictionary_columns(ParquetDictionary::Auto, 0),
            dictionary_columns(ParquetDictionary::Text, 0)
        );
    }

    #[test]
    fn auto_sees_the_leaf_columns_the_writer_sees_for_every_kind_of_column() {
        // Every Avro type and the layouts of `columnar` (nullable and other unions, nested
        // records, arrays and maps, enums, fixed, decimals, uuids, null): one entry per Parquet
        // leaf column, in Parquet's order, or `auto` would silently decide nothing.
        let schema = r#"{"type":"record","name":"R","fields":[
            {"name":"n","type":"null"},
            {"name":"b","type":"boolean"},
            {"name":"i","type":"int"},
            {"name":"d","type":{"type":"int","logicalType":"date"}},
            {"name":"l","type":"long"},
            {"name":"f","type":"float"},
            {"name":"g","type":"double"},
            {"name":"by","type":"bytes"},
            {"name":"s","type":"string"},
            {"name":"u","type":{"type":"string","logicalType":"uuid"}},
            {"name":"fx","type":{"type":"fixed","name":"F","size":4}},
            {"name":"dec","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}},
            {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}},
            {"name":"opt","type":["null","string"]},
            {"name":"choice","type":["null","int","string",
                {"type":"record","name":"C","fields":[{"name":"x","type":"string"}]}]},
            {"name":"inner","type":{"type":"record","name":"I","fields":[
                {"name":"t","type":"string"},
                {"name":"tags","type":{"type":"array","items":"string"}}]}},
            {"name":"groups","type":{"type":"array","items":{"type":"map","values":
                {"type":"record","name":"G","fields":[{"name":"k","type":"bytes"},
                {"name":"v","type":["null","long"]}]}}}},
            {"name":"m","type":{"type":"map","values":{"type":"array","items":"string"}}}
        ]}"#;
        let schema = ReaderSchema::new(crate::avro::Schema::parse_str(schema).unwrap()).unwrap();
        let columns = Columns::new(Arc::clone(schema.shape())).unwrap();
        let parquet = ArrowSchemaConverter::new()
            .convert(columns.schema())
            .unwrap();
        let leaves = mostly_distinct_leaves(&RecordBatch::new_empty(Arc::clone(columns.schema())));
        assert_eq!(
            leaves.len(),
            parquet.num_columns(),
            "{:?}",
            parquet.columns()
        );
        // 14 scalar fields, 3 union branches, 2 in `inner`, a map key and 2 in `groups`, a map
        // key and an item in `m`.
        assert_eq!(parquet.num_columns(), 24, "{:?}", parquet.columns());
    }

    #[test]
    fn mostly_distinct_means_more_than_half() {
        let b = |v: &[&'static str]| v.iter().map(|s| s.as_bytes()).collect::<Vec<_>>();
        let check = |v: &[&'static str]| mostly_distinct(b(v).into_iter(), v.len());
        assert!(!check(&[]));
        assert!(check(&["a"]));
        assert!(!check(&["a", "b", "a", "b"]));
        assert!(check(&["a", "b", "c", "a"]));
        // The early exits give the answer of counting everything: every sequence of up to 7
        // values over an alphabet of 4.
        for len in 0..=7u32 {
            for code in 0..4usize.pow(len) {
                let values: Vec<&'static str> = (0..len)
                    .map(|i| ["a", "b", "c", "d"][code / 4usize.pow(i) % 4])
                    .collect();
                let distinct = values.iter().collect::<HashSet<_>>().len();
                assert_eq!(check(&values), distinct * 2 > values.len(), "{values:?}");
            }
        }
    }
}
