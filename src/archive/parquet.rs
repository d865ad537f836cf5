//! Parquet output: a [`RecordFile`] that feeds each reader-encoded datum through the shape's
//! walk into Arrow builders (`columnar`) and hands the batches to a [`BatchWriter`], which
//! (by default) encodes one batch on a thread of the file's own while the caller builds the
//! next; that thread and a helper each encode about half of the batch's leaf columns (parquet's
//! column writers, under the file layout of its `ArrowWriter`). With fewer encoding threads
//! the helper's share, or all of the encoding, stays on the caller's side.
//!
//! Owns: [`ParquetOptions`] (compression, row group size in bytes, which columns are
//! dictionary-encoded, statistics level, encoding threads), the writer properties (chosen per
//! file when its first batch is in hand: `ParquetDictionary::Auto` looks at that batch's text
//! columns), the `avro.schema` key-value metadata (the reader schema's JSON), batching, the
//! encoding threads (started with the file, stopped by `finish` or by dropping the file),
//! which leaf columns each encodes, and when a row group closes. Must not: choose file names
//! or storage, or lay values out itself (`columnar` maps Avro types to Arrow).
//!
//! Parquet has no union type: a union other than `["null", T]` is a struct with one nullable
//! field per non-null branch, named after the branch type (`int`, `string`, a record's full
//! name); exactly one field is set per row, and the struct itself is null for the null branch.
//! Recursive record types cannot be columns: opening a Parquet file for such a schema is an
//! error (Avro container output still works for them).

use std::collections::HashSet;
use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::thread::JoinHandle;

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Schema as ArrowSchema, SchemaRef};
use parquet::arrow::ArrowSchemaConverter;
use parquet::arrow::arrow_writer::{
    ArrowColumnChunk, ArrowColumnWriter, ArrowLeafColumn, ArrowRowGroupWriterFactory, ArrowWriter,
    compute_leaves,
};
use parquet::basic::{Compression, Type as PhysicalType, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;

use super::ArchiveError;
use super::columnar::{AppendError, Columns};
use super::output::{ReaderSchema, RecordFile};

/// The leaf arrays of `batch`, depth first: the order of Parquet's columns (a struct's fields,
/// a list's items, a map's keys then values).
fn leaf_arrays(batch: &RecordBatch) -> Vec<&dyn Array> {
    fn leaves<'a>(array: &'a dyn Array, out: &mut Vec<&'a dyn Array>) {
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
            _ => out.push(array),
        }
    }
    let mut out = Vec::new();
    for c in batch.columns() {
        leaves(c.as_ref(), &mut out);
    }
    out
}

/// For each leaf column of `batch` (Parquet's order), whether it is a string or bytes column
/// more than half of whose values are distinct.
fn mostly_distinct_leaves(batch: &RecordBatch) -> Vec<bool> {
    leaf_arrays(batch)
        .into_iter()
        .map(|array| match array.data_type() {
            DataType::Utf8 => mostly_distinct(
                array.as_string::<i32>().iter().flatten().map(str::as_bytes),
                array.len() - array.null_count(),
            ),
            DataType::Binary => mostly_distinct(
                array.as_binary::<i32>().iter().flatten(),
                array.len() - array.null_count(),
            ),
            _ => false,
        })
        .collect()
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
    /// Threads that encode each open file's batches: 2 (one encodes a batch while the caller
    /// builds the next, with a helper encoding about half of its columns), 1 (no helper) or 0
    /// (each batch is encoded on the caller's thread when it is full); more counts as 2. The
    /// file's bytes are the same whichever it is.
    pub encoding_threads: u8,
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
            encoding_threads: 2,
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

/// Arrow batches into one Parquet file, laid out as parquet's `ArrowWriter` lays it out and
/// opened on the first batch with the properties the options choose for it (the `avro.schema`
/// metadata included). What `ParquetFile` writes its batches with, and what `bench archive`
/// hands its baseline's batches to, so both are written the same way.
///
/// With `encoding_threads` 1 or 2 the writer lives on a thread of the file's own, which
/// encodes each batch (levels, dictionaries, statistics, compression; with 2, together with a
/// helper thread, see `Encoder`) while the caller builds the next one. A batch is handed over
/// only once the previous one is encoded, so the caller runs at most one batch ahead and
/// memory stays at two batches. An encoding error surfaces at the next `write` or at
/// `finish`; a writer dropped unfinished stops its threads, without writing the footer, and
/// waits for them. With 0, `write` encodes the batch before it returns.
pub struct BatchWriter {
    mode: Mode,
}

enum Mode {
    /// Encoding on the caller's thread; None after an error.
    Inline(Option<Box<Lazy>>),
    Thread(Threaded),
}

/// A file's encoding thread, seen from the caller.
struct Threaded {
    /// The encoding thread's inbox (None once closed), and the thread.
    batches: Option<SyncSender<RecordBatch>>,
    thread: Option<JoinHandle<Result<File, ArchiveError>>>,
    /// What the thread reports after each batch it has encoded.
    progress: Arc<Progress>,
    /// Batches handed over so far, and the caller's estimate for the last one.
    sent: usize,
    in_flight: usize,
}

/// The encoding thread's progress: batches encoded, and the writer's bytes (written, plus the
/// open row group's estimate) after the last of them; and whether the file was dropped
/// unfinished (then the thread writes no footer).
#[derive(Default)]
struct Progress {
    batches: AtomicUsize,
    bytes: AtomicUsize,
    abandoned: AtomicBool,
}

impl BatchWriter {
    /// A writer of batches of `arrow_schema` (the reader schema's columns) onto `sink`, with
    /// its encoding thread started (unless `options.encoding_threads` is 0).
    pub fn new(
        schema: &Arc<ReaderSchema>,
        arrow_schema: SchemaRef,
        options: ParquetOptions,
        sink: File,
    ) -> Result<BatchWriter, ArchiveError> {
        let lazy = Lazy {
            options,
            schema: Arc::clone(schema),
            arrow_schema,
            sink: Some(sink),
            encoder: None,
        };
        if options.encoding_threads == 0 {
            return Ok(BatchWriter {
                mode: Mode::Inline(Some(Box::new(lazy))),
            });
        }
        // Rendezvous: `write` returns once the thread has taken the batch, which it does only
        // when done with the one before.
        let (batches, inbox) = sync_channel::<RecordBatch>(0);
        let progress = Arc::new(Progress::default());
        let reports = Arc::clone(&progress);
        let thread = std::thread::Builder::new()
            .name("parquet-encoder".into())
            .spawn(move || encode(lazy, &inbox, &reports))
            .map_err(|e| ArchiveError::Output {
                why: format!("parquet: cannot start the encoding thread: {e}"),
            })?;
        Ok(BatchWriter {
            mode: Mode::Thread(Threaded {
                batches: Some(batches),
                thread: Some(thread),
                progress,
                sent: 0,
                in_flight: 0,
            }),
        })
    }

    /// Hands `batch` to the encoding thread once it is done with the previous one (or, with
    /// no encoding thread, encodes it). `estimate` is what [`BatchWriter::bytes`] counts for
    /// it until it is encoded (`ParquetFile`: its reader-encoded size).
    pub fn write(&mut self, batch: RecordBatch, estimate: usize) -> Result<(), ArchiveError> {
        match &mut self.mode {
            Mode::Inline(lazy) => {
                let written = lazy.as_mut().ok_or_else(gone)?.write(&batch);
                if written.is_err() {
                    *lazy = None;
                }
                written.map(drop)
            }
            Mode::Thread(t) => t.write(batch, estimate),
        }
    }

    /// Written bytes plus the open row group's estimated encoded size, as of the last batch
    /// encoded, plus the estimate for a batch still being encoded.
    pub fn bytes(&self) -> usize {
        match &self.mode {
            Mode::Inline(lazy) => lazy.as_deref().map_or(0, Lazy::bytes),
            Mode::Thread(t) => t.bytes(),
        }
    }

    /// Waits for the batch in flight, has the footer written (a file with no batches gets its
    /// writer now), syncs, and hands the file back.
    pub fn finish(mut self) -> Result<File, ArchiveError> {
        let file = match &mut self.mode {
            Mode::Inline(lazy) => lazy.take().ok_or_else(gone)?.finish(),
            Mode::Thread(t) => t.stop(),
        }?;
        file.sync_all().map_err(|e| ArchiveError::Output {
            why: format!("parquet: sync: {e}"),
        })?;
        Ok(file)
    }
}

impl Threaded {
    fn write(&mut self, batch: RecordBatch, estimate: usize) -> Result<(), ArchiveError> {
        let sent = match &self.batches {
            Some(batches) => batches.send(batch).is_ok(),
            None => false,
        };
        if !sent {
            // The thread stopped: it returns why.
            return Err(self.stop().err().unwrap_or_else(gone));
        }
        self.sent += 1;
        self.in_flight = estimate;
        Ok(())
    }

    fn bytes(&self) -> usize {
        let encoded = self.progress.batches.load(Ordering::Acquire);
        let in_flight = if encoded < self.sent {
            self.in_flight
        } else {
            0
        };
        self.progress.bytes.load(Ordering::Acquire) + in_flight
    }

    /// Closes the thread's inbox and waits for it: the finished file, or why it stopped.
    fn stop(&mut self) -> Result<File, ArchiveError> {
        self.batches = None;
        let thread = self.thread.take().ok_or_else(gone)?;
        thread.join().map_err(|panic| ArchiveError::Output {
            why: format!(
                "parquet: the encoding thread panicked: {}",
                panic
                    .downcast_ref::<&str>()
                    .copied()
                    .or(panic.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("(no message)")
            ),
        })?
    }
}

#[cfg(test)]
impl BatchWriter {
    /// The encoding thread's progress reports (None: no encoding thread).
    fn progress(&self) -> Option<&Arc<Progress>> {
        match &self.mode {
            Mode::Inline(_) => None,
            Mode::Thread(t) => Some(&t.progress),
        }
    }

    /// Until every batch handed over is encoded.
    fn wait_encoded(&self) {
        if let Mode::Thread(t) = &self.mode {
            while t.progress.batches.load(Ordering::Acquire) < t.sent {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }
}

impl Drop for Threaded {
    /// A file dropped unfinished is garbage: its thread stops without writing the footer (or
    /// flushing the open row group), and does not outlive it.
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.progress.abandoned.store(true, Ordering::Release);
            let _ = self.stop();
        }
    }
}

/// A file's encoder before and after its first batch: what it needs to open one, then the
/// encoder. Dropped unfinished, it writes no footer.
struct Lazy {
    options: ParquetOptions,
    schema: Arc<ReaderSchema>,
    arrow_schema: SchemaRef,
    sink: Option<File>,
    encoder: Option<Encoder>,
}

impl Lazy {
    /// Encodes `batch` (opening the encoder on the first); the writer's bytes after it.
    fn write(&mut self, batch: &RecordBatch) -> Result<usize, ArchiveError> {
        if self.encoder.is_none() {
            self.encoder = Some(self.open(batch)?);
        }
        let encoder = self.encoder.as_mut().ok_or_else(gone)?;
        encoder.write(batch)?;
        Ok(encoder.bytes())
    }

    fn bytes(&self) -> usize {
        self.encoder.as_ref().map_or(0, Encoder::bytes)
    }

    fn open(&mut self, first: &RecordBatch) -> Result<Encoder, ArchiveError> {
        let sink = self.sink.take().ok_or_else(gone)?;
        let arrow_schema = Arc::clone(&self.arrow_schema);
        Encoder::open(&self.options, &self.schema, arrow_schema, sink, first)
    }

    /// The footer (a file with no batches gets its encoder now); the file, flushed.
    fn finish(mut self) -> Result<File, ArchiveError> {
        let encoder = match self.encoder.take() {
            Some(e) => e,
            None => self.open(&RecordBatch::new_empty(Arc::clone(&self.arrow_schema)))?,
        };
        encoder.close()
    }
}

/// The encoding thread: every batch from `inbox` into the file, then, once the inbox is
/// closed, the footer (unless the file was abandoned); the file, flushed.
fn encode(
    mut lazy: Lazy,
    inbox: &Receiver<RecordBatch>,
    progress: &Progress,
) -> Result<File, ArchiveError> {
    for batch in inbox {
        if progress.abandoned.load(Ordering::Acquire) {
            break;
        }
        let bytes = lazy.write(&batch)?;
        progress.bytes.store(bytes, Ordering::Release);
        progress.batches.fetch_add(1, Ordering::AcqRel);
    }
    if progress.abandoned.load(Ordering::Acquire) {
        return Err(ArchiveError::Output {
            why: "parquet: the file was dropped unfinished".into(),
        });
    }
    lazy.finish()
}

/// One file's Parquet encoding, on its encoding thread (or, with no encoding thread, the
/// caller's): what `ArrowWriter` does, with each row group's column writers (one per leaf
/// column) split between this thread and a helper when there is one (`encoding_threads` 2),
/// so that a batch's leaves are encoded by two threads at once. The split is made once per
/// file from its first batch, by the leaves' sizes there, so both halves hold about as much
/// data.
/// A row group closes once its estimated encoded size reaches the options' `row_group_bytes`
/// after a batch (so it can exceed that by up to one batch), and its column chunks are
/// written in leaf order, as `ArrowWriter` writes them.
struct Encoder {
    file: SerializedFileWriter<File>,
    factory: ArrowRowGroupWriterFactory,
    arrow_schema: SchemaRef,
    /// Per leaf column, in Parquet's order: whether the helper encodes it.
    helper_leaves: Vec<bool>,
    /// This thread's column writers in the open row group, with their leaf index.
    own: Vec<(usize, ArrowColumnWriter)>,
    /// None with fewer than two encoding threads: this thread encodes every leaf.
    helper: Option<Helper>,
    /// Rows in the open row group (0: none is open).
    rows: usize,
    /// The helper's estimated encoded size of its columns, as of the last batch.
    helper_bytes: usize,
    row_group_bytes: usize,
}

impl Encoder {
    fn open(
        options: &ParquetOptions,
        schema: &ReaderSchema,
        arrow_schema: SchemaRef,
        sink: File,
        first: &RecordBatch,
    ) -> Result<Encoder, ArchiveError> {
        let props = options.writer_properties(schema.text(), first)?;
        // `ArrowWriter` lays out the file (the Parquet schema, the Arrow schema in its
        // metadata); its lower half writes the row groups built here.
        let (file, factory) = ArrowWriter::try_new(sink, Arc::clone(&arrow_schema), Some(props))
            .and_then(ArrowWriter::into_serialized_writer)
            .map_err(parquet_err)?;
        let leaves = file.schema_descr().num_columns();
        let helper = (options.encoding_threads >= 2)
            .then(Helper::start)
            .transpose()?;
        Ok(Encoder {
            helper_leaves: match helper {
                Some(_) => split_leaves(first, leaves),
                None => vec![false; leaves],
            },
            file,
            factory,
            arrow_schema,
            own: Vec::new(),
            helper,
            rows: 0,
            helper_bytes: 0,
            row_group_bytes: usize::try_from(options.row_group_bytes.max(1)).unwrap_or(usize::MAX),
        })
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), ArchiveError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.rows == 0 {
            self.open_row_group()?;
        }
        let (mut mine, mut theirs) = (Vec::new(), Vec::new());
        let fields = self.arrow_schema.fields().iter();
        let mut helper = self.helper_leaves.iter();
        for (field, column) in fields.zip(batch.columns()) {
            for leaf in compute_leaves(field, column).map_err(parquet_err)? {
                match helper.next() {
                    Some(true) => theirs.push(leaf),
                    Some(false) => mine.push(leaf),
                    None => return Err(leaf_mismatch()),
                }
            }
        }
        if helper.next().is_some() {
            return Err(leaf_mismatch());
        }
        if let Some(helper) = &self.helper {
            helper.send(Job::Encode(theirs))?;
        }
        let mut own = self.own.iter_mut().zip(&mine);
        let encoded = own.try_for_each(|((_, writer), leaf)| writer.write(leaf));
        // The helper's answer is taken either way, so the next job finds it idle.
        if let Some(helper) = &self.helper {
            self.helper_bytes = match helper.receive()? {
                Done::Encoded(bytes) => bytes.map_err(parquet_err)?,
                Done::Closed(_) => return Err(helper_confused()),
            };
        }
        encoded.map_err(parquet_err)?;
        self.rows += batch.num_rows();
        if self.in_progress_size() >= self.row_group_bytes {
            self.close_row_group()?;
        }
        Ok(())
    }

    /// The open row group's estimated encoded size.
    fn in_progress_size(&self) -> usize {
        let own = self.own.iter().map(|(_, w)| w.get_estimated_total_bytes());
        own.sum::<usize>() + self.helper_bytes
    }

    /// Bytes written, plus the open row group's estimated encoded size.
    fn bytes(&self) -> usize {
        self.file.bytes_written() + self.in_progress_size()
    }

    fn open_row_group(&mut self) -> Result<(), ArchiveError> {
        let index = self.file.flushed_row_groups().len();
        let writers = self
            .factory
            .create_column_writers(index)
            .map_err(parquet_err)?;
        if writers.len() != self.helper_leaves.len() {
            return Err(leaf_mismatch());
        }
        let mut theirs = Vec::new();
        for (leaf, (writer, helper)) in writers.into_iter().zip(&self.helper_leaves).enumerate() {
            if *helper {
                theirs.push((leaf, writer));
            } else {
                self.own.push((leaf, writer));
            }
        }
        match &self.helper {
            Some(helper) => helper.send(Job::Writers(theirs)),
            None => Ok(()),
        }
    }

    /// Closes both halves' column writers and writes the row group, chunks in leaf order.
    fn close_row_group(&mut self) -> Result<(), ArchiveError> {
        if self.rows == 0 {
            return Ok(());
        }
        if let Some(helper) = &self.helper {
            helper.send(Job::Close)?;
        }
        let own = std::mem::take(&mut self.own).into_iter();
        let mine: Result<Vec<_>, _> = own.map(|(i, w)| w.close().map(|c| (i, c))).collect();
        let theirs = match self.helper.as_ref().map(Helper::receive).transpose()? {
            Some(Done::Closed(chunks)) => chunks.map_err(parquet_err)?,
            Some(Done::Encoded(_)) => return Err(helper_confused()),
            None => Vec::new(),
        };
        let mut chunks = mine.map_err(parquet_err)?;
        chunks.extend(theirs);
        chunks.sort_unstable_by_key(|(leaf, _)| *leaf);
        let mut row_group = self.file.next_row_group().map_err(parquet_err)?;
        for (_, chunk) in chunks {
            chunk
                .append_to_row_group(&mut row_group)
                .map_err(parquet_err)?;
        }
        row_group.close().map_err(parquet_err)?;
        self.rows = 0;
        self.helper_bytes = 0;
        Ok(())
    }

    /// The last row group, then the footer; the file.
    fn close(mut self) -> Result<File, ArchiveError> {
        self.close_row_group()?;
        self.file.into_inner().map_err(parquet_err)
    }
}

/// Per leaf column of `first`'s schema (`leaves` of them, Parquet's order): whether the helper
/// encodes it. Largest first, each leaf goes to the half with less data so far, a leaf's
/// size being its values' bytes in `first` plus 8 per value (what every value costs the
/// encoder beyond its bytes: levels, statistics, a dictionary lookup). Leaves that cannot be
/// measured (an empty batch, a layout `leaf_arrays` does not know) alternate.
fn split_leaves(first: &RecordBatch, leaves: usize) -> Vec<bool> {
    let sizes = leaf_sizes(first);
    if sizes.len() != leaves || first.num_rows() == 0 {
        return (0..leaves).map(|i| i % 2 == 1).collect();
    }
    let mut order: Vec<usize> = (0..leaves).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(sizes[i]));
    let (mut mine, mut theirs) = (0usize, 0usize);
    let mut helper = vec![false; leaves];
    for i in order {
        if theirs < mine {
            helper[i] = true;
            theirs += sizes[i];
        } else {
            mine += sizes[i];
        }
    }
    helper
}

/// For each leaf column of `batch` (Parquet's order): its values' bytes plus 8 per value.
fn leaf_sizes(batch: &RecordBatch) -> Vec<usize> {
    leaf_arrays(batch)
        .into_iter()
        .map(|array| array.get_buffer_memory_size() + 8 * array.len())
        .collect()
}

/// What the encoding thread asks of its helper.
enum Job {
    /// The helper's column writers for a new row group.
    Writers(Vec<(usize, ArrowColumnWriter)>),
    /// One batch's leaves for those writers, in their order.
    Encode(Vec<ArrowLeafColumn>),
    /// Close the writers and hand their chunks back.
    Close,
}

/// The helper's answers: its columns' estimated encoded size after a batch, or its chunks.
enum Done {
    Encoded(Result<usize, ParquetError>),
    Closed(Result<Vec<(usize, ArrowColumnChunk)>, ParquetError>),
}

/// The helper thread, which encodes its share of each batch's leaf columns; it stops when the
/// encoder drops its end (and is waited for then).
struct Helper {
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    thread: Option<JoinHandle<()>>,
}

impl Helper {
    fn start() -> Result<Helper, ArchiveError> {
        let (jobs, inbox) = channel::<Job>();
        let (answers, done) = channel::<Done>();
        let thread = std::thread::Builder::new()
            .name("parquet-helper".into())
            .spawn(move || {
                let mut writers: Vec<(usize, ArrowColumnWriter)> = Vec::new();
                for job in inbox {
                    let answer = match job {
                        Job::Writers(w) => {
                            writers = w;
                            continue;
                        }
                        Job::Encode(leaves) => Done::Encoded(
                            writers
                                .iter_mut()
                                .zip(&leaves)
                                .try_for_each(|((_, w), leaf)| w.write(leaf))
                                .map(|()| {
                                    writers
                                        .iter()
                                        .map(|(_, w)| w.get_estimated_total_bytes())
                                        .sum()
                                }),
                        ),
                        Job::Close => Done::Closed(
                            std::mem::take(&mut writers)
                                .into_iter()
                                .map(|(i, w)| w.close().map(|c| (i, c)))
                                .collect(),
                        ),
                    };
                    if answers.send(answer).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| ArchiveError::Output {
                why: format!("parquet: cannot start the encoding helper thread: {e}"),
            })?;
        Ok(Helper {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
        })
    }

    fn send(&self, job: Job) -> Result<(), ArchiveError> {
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(job).is_ok());
        if sent { Ok(()) } else { Err(helper_gone()) }
    }

    fn receive(&self) -> Result<Done, ArchiveError> {
        self.done.recv().map_err(|_| helper_gone())
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn leaf_mismatch() -> ArchiveError {
    ArchiveError::Output {
        why: "parquet: a batch's leaf columns are not the file's".into(),
    }
}

fn helper_gone() -> ArchiveError {
    ArchiveError::Output {
        why: "parquet: the encoding helper thread stopped".into(),
    }
}

fn helper_confused() -> ArchiveError {
    ArchiveError::Output {
        why: "parquet: the encoding helper answered out of turn".into(),
    }
}

fn gone() -> ArchiveError {
    ArchiveError::Output {
        why: "parquet: the writer is gone after an earlier error".into(),
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
            writer: BatchWriter::new(schema, Arc::clone(columns.schema()), options, sink)?,
            columns,
            records: 0,
        })
    }

    fn write_batch(&mut self) -> Result<(), ArchiveError> {
        if self.columns.rows() == 0 {
            return Ok(());
        }
        let estimate = self.columns.pending_bytes();
        let batch = self
            .columns
            .take_batch()
            .map_err(|e| ArchiveError::Output {
                why: format!("parquet: {e}"),
            })?;
        if batch.num_rows() == 0 {
            return Ok(()); // only rejected datums' rows
        }
        self.writer.write(batch, estimate)
    }
}

impl RecordFile for ParquetFile {
    fn append(&mut self, datum: &[u8]) -> Result<(), ArchiveError> {
        match self.columns.append(datum) {
            Ok(()) => {}
            Err(AppendError::Rejected(e)) => {
                return Err(ArchiveError::Rejected { why: e.to_string() });
            }
            Err(AppendError::Broken(e)) => {
                return Err(ArchiveError::Output {
                    why: format!("parquet: record {}: {e}", self.records),
                });
            }
        }
        self.records += 1;
        if self.columns.rows() >= BATCH_ROWS || self.columns.pending_bytes() >= BATCH_BYTES {
            self.write_batch()?;
        }
        Ok(())
    }

    fn records(&self) -> u64 {
        self.records
    }

    /// Written bytes plus the open row group's estimated encoded size, as of the last batch
    /// encoded, plus the reader-encoded size of the rows in flight and of those not yet handed
    /// to the writer.
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
        let mut file = ParquetFile::create(&schema, ParquetOptions::default(), sink).unwrap();
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
        // The batch is on the encoding thread: counted at its reader-encoded size until it is
        // encoded, then at the writer's figure.
        let handed_over = file.bytes();
        file.append(&datum(BATCH_ROWS)).unwrap();
        let in_flight = (BATCH_ROWS * 10) as u64;
        let writer = file.bytes() - 10;
        assert!(
            handed_over == in_flight || handed_over == writer,
            "{handed_over}: neither the batch's {in_flight} nor the writer's {writer}"
        );
        file.writer.wait_encoded();
        let writer = file.bytes() - 10;
        assert!(
            writer > 0 && writer != in_flight,
            "the writer's own figure: {writer}"
        );
        assert_eq!(
            file.writer
                .progress()
                .unwrap()
                .bytes
                .load(Ordering::Acquire) as u64,
            writer
        );
        assert_eq!(file.records(), BATCH_ROWS as u64 + 1);
        Box::new(file).finish().unwrap();
        let _ = std::fs::remove_file(&path);
    }

    fn strings_schema() -> Arc<ReaderSchema> {
        ReaderSchema::new(
            crate::avro::Schema::parse_str(
                r#"{"type":"record","name":"R","fields":[{"name":"s","type":"string"}]}"#,
            )
            .unwrap(),
        )
        .unwrap()
    }

    /// The reader encoding of a record of `strings_schema` (shorter than 64 bytes: its length
    /// is one zig-zag byte).
    fn string_datum(s: &str) -> Vec<u8> {
        assert!(s.len() < 64);
        let mut d = vec![(s.len() * 2) as u8];
        d.extend(s.as_bytes());
        d
    }

    /// A Parquet file of `strings_schema` with the default options at `name` in a new
    /// temporary directory (kept while the first value lives), and its path.
    fn strings_file(name: &str) -> (tempfile::TempDir, std::path::PathBuf, ParquetFile) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        let sink = File::create(&path).unwrap();
        let file = ParquetFile::create(&strings_schema(), ParquetOptions::default(), sink).unwrap();
        (dir, path, file)
    }

    /// parquet's own Arrow reader on the file at `path`.
    fn reader(
        path: &std::path::Path,
    ) -> parquet::errors::Result<parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder<File>>
    {
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            File::open(path).unwrap(),
        )
    }

    #[test]
    fn batches_encoded_on_the_thread_read_back_in_order_with_the_schema_metadata() {
        let schema = strings_schema();
        let (_dir, path, mut file) = strings_file("rows.parquet");
        // Two full batches, one partial: three hand-overs, the last at `finish`.
        let rows: Vec<String> = (0..2 * BATCH_ROWS + 1000)
            .map(|i| format!("r{i}"))
            .collect();
        for r in &rows {
            file.append(&string_datum(r)).unwrap();
        }
        Box::new(file).finish().unwrap();

        let reader = reader(&path).unwrap();
        let metadata = reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .cloned();
        let avro = metadata
            .unwrap_or_default()
            .into_iter()
            .find(|kv| kv.key == "avro.schema")
            .and_then(|kv| kv.value);
        assert_eq!(avro.as_deref(), Some(schema.text()));
        let mut read = Vec::new();
        for batch in reader.build().unwrap() {
            let batch = batch.unwrap();
            read.extend(
                batch
                    .column(0)
                    .as_string::<i32>()
                    .iter()
                    .map(|s| s.unwrap().to_string()),
            );
        }
        assert_eq!(read, rows);
    }

    /// Reads a Parquet file back with parquet's own Arrow reader, all rows in one batch; and
    /// its row groups' row counts.
    fn read_back(path: &std::path::Path) -> (RecordBatch, Vec<i64>) {
        let reader = reader(path).unwrap();
        let groups: Vec<i64> = reader
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows())
            .collect();
        let rows = groups.iter().sum::<i64>() as usize;
        let mut batches = reader.with_batch_size(rows).build().unwrap();
        let batch = batches.next().unwrap().unwrap();
        assert!(batches.next().is_none(), "one batch");
        (batch, groups)
    }

    // apache-avro 0.22 deprecates `to_avro_datum` for a builder API; it only encodes test data.
    #[test]
    #[allow(deprecated)]
    fn nested_columns_split_between_two_threads_read_back_as_built_in_every_row_group() {
        // ... and the file is the same byte for byte on one encoding thread, or none.
        // The reference reader: a struct, lists of structs and of strings, a map, an enum, a
        // nullable double: 19 leaf columns, about half encoded by each thread.
        let reader = crate::avro::Schema::parse_str(ORDER_V1).unwrap();
        let schema = ReaderSchema::new(reader.clone()).unwrap();
        let mut rng = crate::bench::Rng(11);
        let datums: Vec<Vec<u8>> = (0..2 * BATCH_ROWS + 500)
            .map(|i| {
                let order = crate::demo::orders::order_v1(i, &mut rng);
                apache_avro::to_avro_datum(&reader, order).unwrap()
            })
            .collect();
        let mut expected = Columns::new(Arc::clone(schema.shape())).unwrap();
        for d in &datums {
            expected.append(d).unwrap();
        }
        let expected = expected.take_batch().unwrap();
        let first = expected.slice(0, BATCH_ROWS);
        let split = split_leaves(&first, 19);
        assert_eq!(split.len(), 19);
        assert!(
            (6..=13).contains(&split.iter().filter(|h| **h).count()),
            "both threads get leaves: {split:?}"
        );

        let dir = tempfile::tempdir().unwrap();
        let write = |encoding_threads: u8| {
            let path = dir
                .path()
                .join(format!("orders-{encoding_threads}.parquet"));
            // A row group closes after every batch.
            let options = ParquetOptions {
                row_group_bytes: 1,
                encoding_threads,
                ..ParquetOptions::default()
            };
            let sink = File::create(&path).unwrap();
            let mut file = ParquetFile::create(&schema, options, sink).unwrap();
            for d in &datums {
                file.append(d).unwrap();
            }
            Box::new(file).finish().unwrap();
            path
        };
        let path = write(2);
        let bytes = std::fs::read(&path).unwrap();
        for threads in [1, 0] {
            let other = std::fs::read(write(threads)).unwrap();
            assert!(other == bytes, "{threads} encoding threads: another file");
        }
        let (read, groups) = read_back(&path);
        assert_eq!(groups, vec![BATCH_ROWS as i64, BATCH_ROWS as i64, 500]);
        assert_eq!(read.schema(), expected.schema());
        for (i, (got, want)) in read.columns().iter().zip(expected.columns()).enumerate() {
            assert_eq!(got.as_ref(), want.as_ref(), "column {i}");
        }
    }

    #[test]
    fn a_file_with_no_rows_is_a_valid_parquet_file_with_the_columns() {
        let (_dir, path, file) = strings_file("empty.parquet");
        Box::new(file).finish().unwrap();
        let reader = reader(&path).unwrap();
        assert_eq!(reader.metadata().file_metadata().num_rows(), 0);
        assert_eq!(reader.schema().field(0).name(), "s");
    }

    /// A batch whose column `s` is a number: not the strings file's, so encoding it fails.
    fn not_the_writers_batch() -> RecordBatch {
        let numbers = Arc::new(ArrowSchema::new(vec![arrow_schema::Field::new(
            "s",
            DataType::Int64,
            false,
        )]));
        RecordBatch::try_new(
            numbers,
            vec![Arc::new(arrow_array::Int64Array::from(vec![1, 2, 3]))],
        )
        .unwrap()
    }

    #[test]
    fn an_encoding_error_comes_back_from_the_next_write_and_then_finish_says_so() {
        let schema = strings_schema();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mismatch.parquet");
        let strings = Columns::new(Arc::clone(schema.shape())).unwrap();
        let mut writer = BatchWriter::new(
            &schema,
            Arc::clone(strings.schema()),
            ParquetOptions::default(),
            File::create(&path).unwrap(),
        )
        .unwrap();
        // A batch whose column is not the writer's: the thread fails on it.
        let bad = not_the_writers_batch();
        writer.write(bad.clone(), 0).unwrap();
        let err = writer.write(bad, 0).unwrap_err().to_string();
        assert!(err.contains("parquet"), "{err}");
        assert_gone(writer);
    }

    /// `finish` after an encoding error: the writer is gone.
    fn assert_gone(writer: BatchWriter) {
        let err = writer.finish().unwrap_err().to_string();
        assert!(
            err.contains("the writer is gone after an earlier error"),
            "{err}"
        );
    }

    #[test]
    fn without_an_encoding_thread_the_error_comes_back_from_the_write_itself() {
        let schema = strings_schema();
        let dir = tempfile::tempdir().unwrap();
        let strings = Columns::new(Arc::clone(schema.shape())).unwrap();
        let options = ParquetOptions {
            encoding_threads: 0,
            ..ParquetOptions::default()
        };
        let sink = File::create(dir.path().join("inline.parquet")).unwrap();
        let mut writer =
            BatchWriter::new(&schema, Arc::clone(strings.schema()), options, sink).unwrap();
        assert!(writer.progress().is_none(), "no encoding thread");
        let good = RecordBatch::try_new(
            Arc::clone(strings.schema()),
            vec![Arc::new(arrow_array::StringArray::from(vec!["a", "b"]))],
        )
        .unwrap();
        writer.write(good, 0).unwrap();
        assert!(writer.bytes() > 0, "encoded before `write` returned");
        let bad = not_the_writers_batch();
        let err = writer.write(bad, 0).unwrap_err().to_string();
        assert!(err.starts_with("parquet: "), "{err}");
        assert_gone(writer);
    }

    #[test]
    fn a_sink_that_cannot_be_written_fails_finish_naming_the_cause() {
        let schema = strings_schema();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("read-only.parquet");
        File::create(&path).unwrap();
        // Opened for reading only: every write to it fails.
        let mut file = ParquetFile::create(
            &schema,
            ParquetOptions::default(),
            File::open(&path).unwrap(),
        )
        .unwrap();
        for i in 0..BATCH_ROWS + 5 {
            file.append(&string_datum(&format!("r{i}"))).unwrap_or(());
        }
        let err = Box::new(file).finish().unwrap_err().to_string();
        assert!(err.starts_with("parquet: "), "{err}");
        assert!(
            std::fs::metadata(&path).unwrap().len() == 0,
            "nothing was written"
        );
    }

    #[test]
    fn a_file_dropped_unfinished_stops_its_thread_without_writing_the_footer() {
        let (_dir, path, mut file) = strings_file("dropped.parquet");
        for i in 0..BATCH_ROWS {
            file.append(&string_datum(&format!("r{i}"))).unwrap();
        }
        let progress = Arc::clone(file.writer.progress().unwrap());
        drop(file);
        // Dropping joined the thread (it may or may not have encoded the batch it was handed).
        assert!(progress.abandoned.load(Ordering::Acquire));
        assert!(progress.batches.load(Ordering::Acquire) <= 1);
        assert_eq!(
            Arc::strong_count(&progress),
            1,
            "the thread's handle is gone"
        );
        // Nothing past the leading magic, if the writer got that far: no footer, no rows.
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            bytes.is_empty() || bytes == b"PAR1",
            "{} bytes",
            bytes.len()
        );
        assert!(reader(&path).is_err());
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
