//! Parquet output: a [`RecordFile`] that feeds each reader-encoded datum through the shape's
//! walk into Arrow builders (`columnar`) and hands the batches to a [`BatchWriter`], which
//! (by default) encodes one batch on a thread of the file's own while the caller builds the
//! next. The batch's leaf columns (parquet's column writers, under the file layout of its
//! `ArrowWriter`) are taken one at a time by whichever thread is free: that thread, a helper,
//! and the caller once it has built the next batch and waits to hand it over. With fewer
//! encoding threads there is no helper, or all of the encoding is on the caller's thread.
//!
//! Owns: [`ParquetOptions`] (compression, row group size in bytes, which columns are
//! dictionary-encoded, statistics level, encoding threads), the writer properties (chosen per
//! file when its first batch is in hand: `ParquetDictionary::Auto` looks at that batch's text
//! columns), the `avro.schema` key-value metadata (the reader schema's JSON), batching, the
//! encoding threads (started with the file, stopped by `finish` or by dropping the file),
//! how they share the leaf columns, and when a row group closes. Must not: choose file names
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
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
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
    /// builds the next, with a helper taking columns of it too), 1 (no helper) or 0 (each
    /// batch is encoded on the caller's thread when it is full); more counts as 2. With 1 or
    /// 2, the caller also takes columns of the batch being encoded once it has built the next
    /// and waits to hand it over. The file's bytes are the same whichever it is.
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
/// memory stays at two batches; a caller that has built its next batch first takes columns of
/// the one being encoded rather than wait idle (and, in `finish`, of the last batch and of the
/// last row group's close). An encoding error surfaces at the next `write` or at
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
    /// The thread's work in progress, which the caller takes leaves of while it waits.
    window: Arc<Window>,
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
        let window = (options.encoding_threads > 0).then(Arc::<Window>::default);
        let lazy = Lazy {
            options,
            schema: Arc::clone(schema),
            arrow_schema,
            sink: Some(sink),
            encoder: None,
            window: window.clone(),
        };
        let Some(window) = window else {
            return Ok(BatchWriter {
                mode: Mode::Inline(Some(Box::new(lazy))),
            });
        };
        // Rendezvous: `write` returns once the thread has taken the batch, which it does only
        // when done with the one before.
        let (batches, inbox) = sync_channel::<RecordBatch>(0);
        let progress = Arc::new(Progress::default());
        let reports = Arc::clone(&progress);
        let exit = Exit(Arc::clone(&window));
        let thread = std::thread::Builder::new()
            .name("parquet-encoder".into())
            .spawn(move || {
                let _exit = exit;
                encode(lazy, &inbox, &reports)
            })
            .map_err(|e| ArchiveError::Output {
                why: format!("parquet: cannot start the encoding thread: {e}"),
            })?;
        Ok(BatchWriter {
            mode: Mode::Thread(Threaded {
                batches: Some(batches),
                thread: Some(thread),
                progress,
                window,
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
        // The thread takes this batch once done with the one before: help with that one.
        self.window.help();
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

    /// Closes the thread's inbox and waits for it, helping with the last batch and the last
    /// row group's close: the finished file, or why it stopped.
    fn stop(&mut self) -> Result<File, ArchiveError> {
        self.batches = None;
        let thread = self.thread.take().ok_or_else(gone)?;
        self.window.help_until_exit();
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
    /// The caller's view of the work in progress (None: this is the caller's thread).
    window: Option<Arc<Window>>,
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
        let window = self.window.clone();
        Encoder::open(
            &self.options,
            &self.schema,
            arrow_schema,
            sink,
            first,
            window,
        )
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
/// column) shared by every thread that encodes. Each batch, and each row group's close, is one
/// [`Work`] split by leaf: this thread takes leaves of it, and so do its helper
/// (`encoding_threads` 2) and the caller while it waits to hand over its next batch or for the
/// file to finish (through the [`Window`]). Leaves are taken costliest first (by their size in
/// the file's first batch) by whichever thread is free, so no thread idles while another has
/// a queue of its own.
/// A row group closes once its estimated encoded size reaches the options' `row_group_bytes`
/// after a batch (so it can exceed that by up to one batch), and its column chunks are
/// written in leaf order, as `ArrowWriter` writes them.
struct Encoder {
    file: SerializedFileWriter<File>,
    factory: ArrowRowGroupWriterFactory,
    arrow_schema: SchemaRef,
    /// Leaf indexes (Parquet's order), costliest first: the order their work is taken in.
    order: Arc<[usize]>,
    /// The open row group's column writers, by leaf (None: no row group is open).
    writers: Option<Writers>,
    /// None with fewer than two encoding threads.
    helper: Option<Helper>,
    /// Where the caller finds the work in progress (None: encoding on the caller's thread).
    window: Option<Arc<Window>>,
    /// Rows in the open row group (0: none is open).
    rows: usize,
    row_group_bytes: usize,
}

/// A row group's column writers, by leaf; a writer is taken out when the row group closes.
type Writers = Arc<[Mutex<Option<ArrowColumnWriter>>]>;

impl Encoder {
    fn open(
        options: &ParquetOptions,
        schema: &ReaderSchema,
        arrow_schema: SchemaRef,
        sink: File,
        first: &RecordBatch,
        window: Option<Arc<Window>>,
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
            order: costliest_first(first, leaves).into(),
            file,
            factory,
            arrow_schema,
            writers: None,
            helper,
            window,
            rows: 0,
            row_group_bytes: usize::try_from(options.row_group_bytes.max(1)).unwrap_or(usize::MAX),
        })
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), ArchiveError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let mut leaves = Vec::with_capacity(self.order.len());
        let fields = self.arrow_schema.fields().iter();
        for (field, column) in fields.zip(batch.columns()) {
            leaves.extend(compute_leaves(field, column).map_err(parquet_err)?);
        }
        if leaves.len() != self.order.len() {
            return Err(leaf_mismatch());
        }
        if self.rows == 0 {
            self.open_row_group()?;
        }
        let writers = self.writers.clone().ok_or_else(gone)?;
        self.run(Work::new(Step::Encode(leaves), writers, &self.order))?;
        self.rows += batch.num_rows();
        if self.in_progress_size() >= self.row_group_bytes {
            self.close_row_group()?;
        }
        Ok(())
    }

    /// Runs `work` with every thread that takes part: the helper and the caller are offered
    /// it, this thread takes leaves too, then waits until all are done.
    fn run(&self, work: Work) -> Result<Vec<(usize, ArrowColumnChunk)>, ArchiveError> {
        let work = Arc::new(work);
        if let Some(helper) = &self.helper {
            helper.send(Arc::clone(&work))?;
        }
        if let Some(window) = &self.window {
            window.publish(Some(Arc::clone(&work)));
        }
        work.take_leaves(false);
        let done = work.wait();
        if let Some(window) = &self.window {
            window.publish(None);
        }
        done.map_err(parquet_err)
    }

    /// The open row group's estimated encoded size.
    fn in_progress_size(&self) -> usize {
        self.writers
            .iter()
            .flat_map(|w| w.iter())
            .fold(0, |sum, w| {
                sum + lock(w)
                    .as_ref()
                    .map_or(0, ArrowColumnWriter::get_estimated_total_bytes)
            })
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
        if writers.len() != self.order.len() {
            return Err(leaf_mismatch());
        }
        self.writers = Some(writers.into_iter().map(|w| Mutex::new(Some(w))).collect());
        Ok(())
    }

    /// Closes the column writers and writes the row group, chunks in leaf order.
    fn close_row_group(&mut self) -> Result<(), ArchiveError> {
        if self.rows == 0 {
            return Ok(());
        }
        let writers = self.writers.take().ok_or_else(gone)?;
        let mut chunks = self.run(Work::new(Step::Close, writers, &self.order))?;
        chunks.sort_unstable_by_key(|(leaf, _)| *leaf);
        let mut row_group = self.file.next_row_group().map_err(parquet_err)?;
        for (_, chunk) in chunks {
            chunk
                .append_to_row_group(&mut row_group)
                .map_err(parquet_err)?;
        }
        row_group.close().map_err(parquet_err)?;
        self.rows = 0;
        Ok(())
    }

    /// The last row group, then the footer; the file.
    fn close(mut self) -> Result<File, ArchiveError> {
        self.close_row_group()?;
        self.file.into_inner().map_err(parquet_err)
    }
}

/// The leaf columns of `first`'s schema (`leaves` of them, Parquet's order), costliest first:
/// a leaf's cost being its values' bytes in `first` plus 8 per value (what every value costs
/// the encoder beyond its bytes: levels, statistics, a dictionary lookup). Taking the costly
/// ones first keeps the threads' last leaves short. Leaves that cannot be measured (an empty
/// batch, a layout `leaf_arrays` does not know) keep Parquet's order.
fn costliest_first(first: &RecordBatch, leaves: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..leaves).collect();
    let sizes = leaf_sizes(first);
    if sizes.len() == leaves && first.num_rows() > 0 {
        order.sort_by_key(|&i| std::cmp::Reverse(sizes[i]));
    }
    order
}

/// For each leaf column of `batch` (Parquet's order): its values' bytes plus 8 per value.
fn leaf_sizes(batch: &RecordBatch) -> Vec<usize> {
    leaf_arrays(batch)
        .into_iter()
        .map(|array| array.get_buffer_memory_size() + 8 * array.len())
        .collect()
}

/// One step of a row group's encoding, split by leaf column, that any number of threads take
/// leaves of ([`Work::take_leaves`]) while the encoding thread waits for all of them
/// ([`Work::wait`]). A writer gets one batch's leaf at a time and the batches in order: a
/// batch's work is over before the next one's is made.
struct Work {
    step: Step,
    writers: Writers,
    order: Arc<[usize]>,
    state: Mutex<WorkState>,
    all_done: Condvar,
}

enum Step {
    /// A batch's leaf columns, Parquet's order.
    Encode(Vec<ArrowLeafColumn>),
    /// Close the writers (the row group is complete).
    Close,
}

struct WorkState {
    /// The positions in `order` not taken yet: `head..tail`.
    head: usize,
    tail: usize,
    /// Leaves done.
    done: usize,
    /// The first error; leaves taken after it are skipped.
    error: Option<ParquetError>,
    /// Closed chunks, with their leaf.
    chunks: Vec<(usize, ArrowColumnChunk)>,
}

impl Work {
    fn new(step: Step, writers: Writers, order: &Arc<[usize]>) -> Work {
        Work {
            step,
            writers,
            order: Arc::clone(order),
            state: Mutex::new(WorkState {
                head: 0,
                tail: order.len(),
                done: 0,
                error: None,
                chunks: Vec::new(),
            }),
            all_done: Condvar::new(),
        }
    }

    /// Takes leaves one at a time until none is left: the costliest left, or, `from_back`, the
    /// cheapest (the helper's end, so that each leaf tends to stay with the same thread from
    /// one batch to the next, its writer's state in that thread's cache). A panic in a column
    /// writer is an error of the work, so that its waiter is not left waiting.
    fn take_leaves(&self, from_back: bool) {
        loop {
            let (leaf, skip) = {
                let mut state = lock(&self.state);
                if state.head >= state.tail {
                    return;
                }
                let at = if from_back {
                    state.tail -= 1;
                    state.tail
                } else {
                    state.head += 1;
                    state.head - 1
                };
                let Some(&leaf) = self.order.get(at) else {
                    return;
                };
                (leaf, state.error.is_some())
            };
            let outcome = if skip {
                Ok(None)
            } else {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.leaf(leaf)))
                    .unwrap_or_else(|_| {
                        Err(ParquetError::General(format!(
                            "the writer of leaf column {leaf} panicked"
                        )))
                    })
            };
            let mut state = lock(&self.state);
            match outcome {
                Ok(Some(chunk)) => state.chunks.push((leaf, chunk)),
                Ok(None) => {}
                Err(e) => {
                    state.error.get_or_insert(e);
                }
            }
            state.done += 1;
            if state.done == self.order.len() {
                self.all_done.notify_all();
            }
        }
    }

    /// This step for one leaf: its column written, or its writer closed into a chunk.
    fn leaf(&self, leaf: usize) -> Result<Option<ArrowColumnChunk>, ParquetError> {
        let missing = || ParquetError::General(format!("leaf column {leaf}: no writer or values"));
        let mut writer = lock(self.writers.get(leaf).ok_or_else(missing)?);
        match &self.step {
            Step::Encode(leaves) => {
                let column = leaves.get(leaf).ok_or_else(missing)?;
                writer.as_mut().ok_or_else(missing)?.write(column)?;
                Ok(None)
            }
            Step::Close => Ok(Some(writer.take().ok_or_else(missing)?.close()?)),
        }
    }

    /// Once every leaf is done: the closed chunks (none for a batch), or the first error.
    fn wait(&self) -> Result<Vec<(usize, ArrowColumnChunk)>, ParquetError> {
        let all = self.order.len();
        let mut state = self
            .all_done
            .wait_while(lock(&self.state), |s| s.done < all)
            .unwrap_or_else(PoisonError::into_inner);
        match state.error.take() {
            Some(e) => Err(e),
            None => Ok(std::mem::take(&mut state.chunks)),
        }
    }
}

/// The work the encoding thread has in progress, where the caller finds it: it takes leaves
/// of it while it waits to hand over its next batch, and until the file is finished.
#[derive(Default)]
struct Window {
    state: Mutex<Published>,
    changed: Condvar,
}

#[derive(Default)]
struct Published {
    work: Option<Arc<Work>>,
    /// Counts publications, so that the caller knows new work from work it has helped with.
    serial: u64,
    /// The encoding thread has returned (or panicked).
    exited: bool,
}

impl Window {
    fn publish(&self, work: Option<Arc<Work>>) {
        let mut state = lock(&self.state);
        state.work = work;
        state.serial += 1;
        self.changed.notify_all();
    }

    /// Takes leaves of the work in progress, if there is any.
    fn help(&self) {
        let work = lock(&self.state).work.clone();
        if let Some(work) = work {
            work.take_leaves(false);
        }
    }

    /// Takes leaves of each work as it is published, until the encoding thread returns.
    fn help_until_exit(&self) {
        let mut seen = 0;
        loop {
            let work = {
                let state = self
                    .changed
                    .wait_while(lock(&self.state), |s| {
                        !s.exited && (s.work.is_none() || s.serial == seen)
                    })
                    .unwrap_or_else(PoisonError::into_inner);
                if state.exited {
                    return;
                }
                seen = state.serial;
                state.work.clone()
            };
            if let Some(work) = work {
                work.take_leaves(false);
            }
        }
    }

    fn exit(&self) {
        lock(&self.state).exited = true;
        self.changed.notify_all();
    }
}

/// Marks the window's encoding thread as returned when dropped (also by a panic).
struct Exit(Arc<Window>);

impl Drop for Exit {
    fn drop(&mut self) {
        self.0.exit();
    }
}

/// A mutex's guard, also after a panic elsewhere (the data are plain counters and writers
/// whose errors are reported on their own).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The helper thread, which takes leaves of each work it is handed; it stops when the encoder
/// drops its end (and is waited for then).
struct Helper {
    jobs: Option<Sender<Arc<Work>>>,
    thread: Option<JoinHandle<()>>,
}

impl Helper {
    fn start() -> Result<Helper, ArchiveError> {
        let (jobs, inbox) = channel::<Arc<Work>>();
        let thread = std::thread::Builder::new()
            .name("parquet-helper".into())
            .spawn(move || inbox.into_iter().for_each(|work| work.take_leaves(true)))
            .map_err(|e| ArchiveError::Output {
                why: format!("parquet: cannot start the encoding helper thread: {e}"),
            })?;
        Ok(Helper {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    fn send(&self, work: Arc<Work>) -> Result<(), ArchiveError> {
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(work).is_ok());
        if sent { Ok(()) } else { Err(helper_gone()) }
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
    fn nested_columns_shared_between_threads_read_back_as_built_in_every_row_group() {
        // ... and the file is the same byte for byte on one encoding thread, or none.
        // The reference reader: a struct, lists of structs and of strings, a map, an enum, a
        // nullable double: 19 leaf columns, shared by the encoding thread, its helper and
        // the caller.
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
        let order = costliest_first(&first, 19);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..19).collect::<Vec<_>>(), "every leaf once");
        let sizes = leaf_sizes(&first);
        assert!(
            order.windows(2).all(|w| sizes[w[0]] >= sizes[w[1]]),
            "costliest first: {order:?} {sizes:?}"
        );
        assert_ne!(
            order, sorted,
            "the sizes differ, so the order is not Parquet's"
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

    /// The leaf columns of a batch of `rows` rows of three columns (a string, a long, a
    /// string).
    fn three_leaves(rows: i64) -> Vec<ArrowLeafColumn> {
        let text = |p: &str| {
            arrow_array::StringArray::from_iter_values((0..rows).map(|i| format!("{p}{i}")))
        };
        let batch = RecordBatch::try_new(
            three_columns(),
            vec![
                Arc::new(text("a")),
                Arc::new(arrow_array::Int64Array::from_iter_values(0..rows)),
                Arc::new(text("c")),
            ],
        )
        .unwrap();
        let mut leaves = Vec::new();
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            leaves.extend(compute_leaves(field, column).unwrap());
        }
        leaves
    }

    fn three_columns() -> SchemaRef {
        use arrow_schema::Field;
        Arc::new(ArrowSchema::new(vec![
            Field::new("a", DataType::Utf8, false),
            Field::new("b", DataType::Int64, false),
            Field::new("c", DataType::Utf8, false),
        ]))
    }

    /// The column writers of a row group of [`three_columns`].
    fn three_writers() -> Writers {
        let sink = tempfile::tempfile().unwrap();
        let (_file, factory) = ArrowWriter::try_new(sink, three_columns(), None)
            .and_then(ArrowWriter::into_serialized_writer)
            .unwrap();
        let writers = factory.create_column_writers(0).unwrap();
        writers.into_iter().map(|w| Mutex::new(Some(w))).collect()
    }

    #[test]
    fn a_work_taken_by_several_threads_at_once_does_each_leaf_once() {
        let writers = three_writers();
        let order: Arc<[usize]> = vec![2, 0, 1].into();
        // Two batches, each taken by three threads at once from both ends, one after the
        // other.
        for _ in 0..2 {
            let step = Step::Encode(three_leaves(1000));
            let work = Arc::new(Work::new(step, Arc::clone(&writers), &order));
            std::thread::scope(|s| {
                for from_back in [false, true, false] {
                    let work = Arc::clone(&work);
                    s.spawn(move || work.take_leaves(from_back));
                }
            });
            assert!(work.wait().unwrap().is_empty(), "a batch closes nothing");
        }
        let close = Work::new(Step::Close, Arc::clone(&writers), &order);
        std::thread::scope(|s| {
            s.spawn(|| close.take_leaves(true));
            close.take_leaves(false);
        });
        let mut chunks = close.wait().unwrap();
        chunks.sort_unstable_by_key(|(leaf, _)| *leaf);
        let leaves: Vec<usize> = chunks.iter().map(|(leaf, _)| *leaf).collect();
        assert_eq!(leaves, vec![0, 1, 2], "one chunk per leaf");
        for (leaf, chunk) in &chunks {
            let rows = chunk.close().rows_written;
            assert_eq!(rows, 2000, "leaf {leaf}: both batches' rows, once each");
        }
        assert!(
            writers.iter().all(|w| lock(w).is_none()),
            "closed writers are taken"
        );
    }

    #[test]
    fn an_error_in_one_leaf_is_the_works_and_its_waiter_is_not_left_waiting() {
        let mut leaves = three_leaves(10);
        // The first two leaves swapped: the string writer gets the longs and the long writer
        // the strings, so both writes fail. Taken from the back, the long writer's comes
        // first, and the string writer's leaf is skipped after it.
        leaves.swap(0, 1);
        let order: Arc<[usize]> = vec![0, 1, 2].into();
        let work = Work::new(Step::Encode(leaves), three_writers(), &order);
        work.take_leaves(true);
        let err = work.wait().unwrap_err().to_string();
        assert!(err.contains("Utf8 to I64"), "the first error: {err}");
        // Every leaf was counted, so a second take finds nothing and the wait is over.
        work.take_leaves(false);
        assert!(work.wait().is_ok(), "the error is reported once");
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
