//! `schemabridge bench archive`: records written with several writer schemas (the reference
//! pair: v2 and v1 mixed), normalised to one reader schema and written to Parquet, by
//! schemabridge (compiled plan, reader-bytes visitor, Arrow builders, Parquet) and by the path a
//! user would otherwise write in Rust (apache-avro `from_avro_datum` with the reader schema into
//! `Value`s, then Arrow builders), with the same Arrow schema, Parquet writer options and batch
//! writer (`archive::parquet::BatchWriter`, which encodes each batch on two threads of its own
//! while the next is built, the building thread joining in once it is done), in one run:
//! records/s by the wall clock and CPU time per record (every thread); and each engine by stage
//! (decoding, Arrow builders, Parquet writer). The reference schemas get the reference records
//! (`crate::demo::orders`), any other schema random ones.
//!
//! Owns: timing, the value-path baseline, which records each writer gets, and the table. Must
//! not: be used by the gateway.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apache_avro::Schema;
use apache_avro::types::Value;
use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Float32Builder, Float64Builder, Int32Builder, Int64Builder,
    StringBuilder, StringDictionaryBuilder,
};
use arrow_array::types::{
    Date32Type, Int32Type, TimestampMicrosecondType, TimestampMillisecondType,
};
use arrow_array::{
    Array, ArrayRef, DictionaryArray, ListArray, MapArray, PrimitiveArray, RecordBatch, StructArray,
};
use arrow_buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, SchemaRef, TimeUnit};

use super::transcode::apply_reader_aliases;
use crate::archive::columnar::Columns;
use crate::archive::output::{self, FileFormat, ReaderSchema};
use crate::archive::parquet::BatchWriter;
use crate::archive::{ParquetCompression, ParquetOptions};
use crate::avro::{self, Plan};

/// One engine's figures.
#[derive(Debug, Clone)]
pub struct ArchiveEngine {
    pub engine: String,
    pub records_per_sec: f64,
    pub mb_per_sec: f64,
    /// Size of the Parquet file it wrote.
    pub file_bytes: u64,
    /// CPU time per record in the fastest round, all threads together (the Parquet encoding
    /// threads included); None where the process's CPU time cannot be read.
    pub cpu_ns_per_record: Option<f64>,
}

/// The outcome of `bench archive`.
#[derive(Debug, Clone)]
pub struct ArchiveBench {
    pub records: usize,
    pub input_bytes: usize,
    pub writers: usize,
    pub engines: Vec<ArchiveEngine>,
    pub rounds: usize,
    /// Both engines' batches hold the same values (map entry order and dictionary order aside).
    pub equal_values: bool,
    /// Each engine's time per record by stage, in nanoseconds (schemabridge first): decoding
    /// and resolving alone (the compiled plan; `from_avro_datum`), with the Arrow builders
    /// (batches taken), and the whole path with the Parquet writer.
    pub stages_ns: [[f64; 3]; 2],
    /// Each round's ratio (schemabridge's pass against the apache-avro pass that follows it),
    /// in round order: how much the machine moved the figure during the run.
    pub round_ratios: Vec<f64>,
    /// The Parquet writer's encoding threads per file (both engines).
    pub encoding_threads: u8,
    pub ratio: f64,
}

impl ArchiveBench {
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} records from {} writer schemas, {:.1} bytes/record on average (writer encoding), \
             to Parquet\n",
            self.records,
            self.writers,
            self.input_bytes as f64 / self.records.max(1) as f64
        );
        let _ = writeln!(
            s,
            "{:<44} {:>12} {:>8} {:>12} {:>14}",
            "engine", "records/s", "MB/s", "file bytes", "CPU ns/record"
        );
        let cpu = |e: &ArchiveEngine| {
            e.cpu_ns_per_record
                .map_or("n/a".into(), |ns| format!("{ns:.0}"))
        };
        for e in &self.engines {
            let _ = writeln!(
                s,
                "{:<44} {:>12.0} {:>8.1} {:>12} {:>14}",
                e.engine,
                e.records_per_sec,
                e.mb_per_sec,
                e.file_bytes,
                cpu(e)
            );
        }
        let encoding = match self.encoding_threads {
            0 => "on the same thread",
            1 => {
                "on a thread of its own while the next is built,\n the building thread taking \
                 columns too once it is done"
            }
            _ => {
                "on two threads of its own while the next is built,\n the building thread \
                 taking columns too once it is done"
            }
        };
        let _ = writeln!(
            s,
            "(fastest of {} interleaved rounds per engine; MB/s of writer-encoded input;\n \
             both engines build batches on one thread and hand them to the same Parquet batch\n \
             writer, which encodes each {encoding}:\n \
             records/s is by the wall clock, CPU ns/record counts every thread)\n",
            self.rounds
        );
        let _ = writeln!(
            s,
            "{:<44} {:>14} {:>14} {:>14}",
            "wall ns per record", "decode+resolve", "Arrow builders", "Parquet writer"
        );
        // Stages are timed in separate loops: a difference below the run-to-run noise can come
        // out negative, and shows as ~0. The writer's figure is what it adds to the wall time
        // (its thread overlaps the next batch's builders), not its CPU time.
        let ns = |x: f64| {
            if x < 0.0 {
                "~0".to_string()
            } else {
                format!("{x:.0}")
            }
        };
        for (e, [decode, columns, whole]) in self.engines.iter().zip(self.stages_ns) {
            let name = e.engine.split(',').next().unwrap_or_default();
            let _ = writeln!(
                s,
                "{name:<44} {:>14} {:>14} {:>14}",
                ns(decode),
                ns(columns - decode),
                ns(whole - columns)
            );
        }
        let to_arrow = |[_, columns, _]: [f64; 3]| columns;
        let _ = writeln!(
            s,
            "to Arrow batches only (no Parquet writer): ratio {:.1}\n",
            to_arrow(self.stages_ns[1]) / to_arrow(self.stages_ns[0])
        );
        if let [Some(ours), Some(theirs)] =
            [&self.engines[0], &self.engines[1]].map(|e| e.cpu_ns_per_record)
        {
            let _ = writeln!(
                s,
                "CPU time per record (apache-avro's over schemabridge's): ratio {:.1}",
                theirs / ours
            );
        }
        if !self.round_ratios.is_empty() {
            let rounds = self.round_ratios.iter().copied();
            let (low, high) = (
                rounds.clone().fold(f64::INFINITY, f64::min),
                rounds.fold(0.0, f64::max),
            );
            let _ = writeln!(
                s,
                "ratio per round (each round times schemabridge, then apache-avro): {:.1} to {:.1}",
                low, high
            );
        }
        let _ = writeln!(
            s,
            "same values in both engines' Arrow batches: {}",
            if self.equal_values { "yes" } else { "NO" }
        );
        let _ = write!(s, "ratio: {:.1}", self.ratio);
        s
    }
}

const ROUNDS: usize = 5;
/// Rows per Arrow batch handed to the Parquet writer by the value path (as `ParquetFile` does).
const BATCH_ROWS: usize = 8192;

/// Times both engines over `datums` (each `(writer index, writer-encoded bytes)`).
pub fn archive(
    writers: &[Schema],
    reader_json: &str,
    datums: &[(usize, Vec<u8>)],
    options: ParquetOptions,
    min_time: Duration,
) -> Result<ArchiveBench, String> {
    let reader = Schema::parse_str(reader_json).map_err(|e| format!("reader schema: {e}"))?;
    let plans: Vec<Plan> = writers
        .iter()
        .map(|w| avro::compile(w, &reader).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    // apache-avro cannot resolve reader aliases: writers other than the reader itself are read
    // with the aliased fields renamed (see `apply_reader_aliases`); fields are taken by position.
    let aliased = apply_reader_aliases(reader_json)?;
    let aliased = Schema::parse_str(&aliased).map_err(|e| format!("reader schema: {e}"))?;
    let value_readers: Vec<Schema> = writers
        .iter()
        .map(|w| {
            if w.canonical_form() == reader.canonical_form() {
                reader.clone()
            } else {
                aliased.clone()
            }
        })
        .collect();
    let schema = ReaderSchema::new(reader.clone()).map_err(|e| e.to_string())?;
    let arrow_schema = Arc::clone(
        Columns::new(Arc::clone(schema.shape()))
            .map_err(|e| e.to_string())?
            .schema(),
    );
    let input_bytes: usize = datums.iter().map(|(_, d)| d.len()).sum();

    // One directory per run, also between runs in one process.
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "schemabridge-bench-archive-{}-{run}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let _cleanup = RemoveDir(dir.clone());
    let ours_path = dir.join("schemabridge.parquet");
    let theirs_path = dir.join("apache-avro.parquet");

    let equal_values = compare(
        &plans,
        writers,
        &value_readers,
        &schema,
        &arrow_schema,
        datums,
    )?;

    let round_time = min_time / ROUNDS as u32;
    // Each engine's fastest round: (wall seconds, CPU seconds) per pass.
    let (mut ours, mut theirs) = ((f64::INFINITY, None), (f64::INFINITY, None));
    let fastest = |best: &mut (f64, Option<f64>), round: (f64, Option<f64>)| {
        if round.0 < best.0 {
            *best = round;
        }
        round.0
    };
    let mut round_ratios = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let ours_round = timed(round_time, || {
            schemabridge_path(&plans, &schema, options, datums, &ours_path)
        })?;
        let ours_secs = fastest(&mut ours, ours_round);
        let theirs_round = timed(round_time, || {
            value_path(
                writers,
                &value_readers,
                &arrow_schema,
                &schema,
                options,
                datums,
                &theirs_path,
            )
        })?;
        round_ratios.push(fastest(&mut theirs, theirs_round) / ours_secs);
    }
    // Where each engine's time goes: the same loops stopped after decoding, then after the
    // builders.
    let mut stages = [[f64::INFINITY; 2]; 2];
    for _ in 0..ROUNDS {
        let timed = [
            time(round_time, || plan_stage(&plans, datums))?,
            time(round_time, || columns_stage(&plans, &schema, datums))?,
            time(round_time, || {
                value_stage(writers, &value_readers, datums, None)
            })?,
            time(round_time, || {
                value_stage(writers, &value_readers, datums, Some(&arrow_schema))
            })?,
        ];
        for (i, secs) in timed.into_iter().enumerate() {
            let stage = &mut stages[i / 2][i % 2];
            *stage = stage.min(secs);
        }
    }
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let n = datums.len().max(1) as f64;
    let engine = |name: &str, (secs, cpu): (f64, Option<f64>), path: &Path| ArchiveEngine {
        engine: name.to_string(),
        records_per_sec: n / secs,
        mb_per_sec: input_bytes as f64 / secs / 1e6,
        file_bytes: size(path),
        cpu_ns_per_record: cpu.map(|cpu| cpu / n * 1e9),
    };
    let compression = match options.compression {
        ParquetCompression::Zstd(l) => format!("zstd({l})"),
        ParquetCompression::Snappy => "snappy".into(),
        ParquetCompression::None => "uncompressed".into(),
    };
    let o = engine(
        &format!("schemabridge plan+visitor, Parquet {compression}"),
        ours,
        &ours_path,
    );
    let t = engine(
        &format!("apache-avro 0.22 values+Arrow, Parquet {compression}"),
        theirs,
        &theirs_path,
    );
    Ok(ArchiveBench {
        records: datums.len(),
        input_bytes,
        writers: writers.len(),
        ratio: o.records_per_sec / t.records_per_sec,
        engines: vec![o, t],
        rounds: ROUNDS,
        equal_values,
        stages_ns: [
            [stages[0][0], stages[0][1], ours.0],
            [stages[1][0], stages[1][1], theirs.0],
        ]
        .map(|engine| engine.map(|secs| secs / n * 1e9)),
        round_ratios,
        encoding_threads: options.encoding_threads.min(2),
    })
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `f` (one whole pass) until `min_time` has passed; returns seconds per pass.
fn time(min_time: Duration, f: impl FnMut() -> Result<(), String>) -> Result<f64, String> {
    Ok(timed(min_time, f)?.0)
}

/// As [`time`], with the process's CPU seconds per pass too (all threads; None where
/// unreadable).
fn timed(
    min_time: Duration,
    mut f: impl FnMut() -> Result<(), String>,
) -> Result<(f64, Option<f64>), String> {
    let (start, cpu_start) = (Instant::now(), cpu_time());
    let mut passes = 0u32;
    loop {
        f()?;
        passes += 1;
        if start.elapsed() >= min_time {
            break;
        }
    }
    let passes = f64::from(passes);
    let cpu = cpu_start.zip(cpu_time()).map(|(a, b)| (b - a) / passes);
    Ok((start.elapsed().as_secs_f64() / passes, cpu))
}

/// CPU seconds this process has used so far, all its threads together (exited ones included),
/// from `/proc/self/stat` (user plus system time, in Linux's fixed 1/100 s ticks); None where
/// there is no such file.
fn cpu_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    cpu_seconds(&stat)
}

/// User plus system seconds from the text of `/proc/PID/stat` (fields 14 and 15, counted after
/// the command name, which is in parentheses and may itself hold spaces or parentheses).
fn cpu_seconds(stat: &str) -> Option<f64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    // Field 3 (the state) comes first, so utime (field 14) is the 12th.
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

fn schemabridge_path(
    plans: &[Plan],
    schema: &Arc<ReaderSchema>,
    options: ParquetOptions,
    datums: &[(usize, Vec<u8>)],
    path: &Path,
) -> Result<(), String> {
    let sink = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut file =
        output::open(FileFormat::Parquet(options), schema, sink).map_err(|e| e.to_string())?;
    resolved(plans, datums, |datum| {
        file.append(datum).map_err(|e| e.to_string())
    })?;
    file.finish().map_err(|e| e.to_string())?;
    Ok(())
}

/// Each datum through its writer's plan, the reader-encoded result handed to `each`.
fn resolved(
    plans: &[Plan],
    datums: &[(usize, Vec<u8>)],
    mut each: impl FnMut(&[u8]) -> Result<(), String>,
) -> Result<(), String> {
    let mut buf = Vec::with_capacity(1024);
    for (w, d) in datums {
        buf.clear();
        let plan = plans.get(*w).ok_or("no plan")?;
        plan.transcode(d, &mut buf).map_err(|e| e.to_string())?;
        each(&buf)?;
    }
    Ok(())
}

/// The plan alone over every datum.
fn plan_stage(plans: &[Plan], datums: &[(usize, Vec<u8>)]) -> Result<(), String> {
    resolved(plans, datums, |datum| {
        std::hint::black_box(datum);
        Ok(())
    })
}

/// The plan and the Arrow builders, batches taken as `ParquetFile` takes them (every
/// `BATCH_ROWS`), then dropped.
fn columns_stage(
    plans: &[Plan],
    schema: &Arc<ReaderSchema>,
    datums: &[(usize, Vec<u8>)],
) -> Result<(), String> {
    let mut columns = Columns::new(Arc::clone(schema.shape())).map_err(|e| e.to_string())?;
    resolved(plans, datums, |datum| {
        columns.append(datum).map_err(|e| e.to_string())?;
        if columns.rows() >= BATCH_ROWS {
            std::hint::black_box(columns.take_batch().map_err(|e| e.to_string())?);
        }
        Ok(())
    })?;
    std::hint::black_box(columns.take_batch().map_err(|e| e.to_string())?);
    Ok(())
}

/// The value path without the Parquet writer: `Value`s resolved per batch and, with a schema,
/// built into Arrow batches, then dropped.
fn value_stage(
    writers: &[Schema],
    readers: &[Schema],
    datums: &[(usize, Vec<u8>)],
    arrow_schema: Option<&SchemaRef>,
) -> Result<(), String> {
    for chunk in datums.chunks(BATCH_ROWS) {
        let values = resolve_chunk(writers, readers, chunk)?;
        if let Some(schema) = arrow_schema {
            std::hint::black_box(values_to_batch(schema, &values)?);
        }
        std::hint::black_box(values);
    }
    Ok(())
}

/// One batch of the value path: each datum resolved by apache-avro with its writer's reader.
fn resolve_chunk(
    writers: &[Schema],
    readers: &[Schema],
    chunk: &[(usize, Vec<u8>)],
) -> Result<Vec<Value>, String> {
    chunk
        .iter()
        .map(|(w, d)| {
            let (writer, reader) = writers.get(*w).zip(readers.get(*w)).ok_or("no writer")?;
            resolve(writer, reader, d)
        })
        .collect()
}

#[allow(deprecated)] // apache-avro 0.22's builder API does the same; this is its reference path
fn resolve(writer: &Schema, reader: &Schema, mut d: &[u8]) -> Result<Value, String> {
    apache_avro::from_avro_datum(writer, &mut d, Some(reader))
        .map_err(|e| format!("apache-avro cannot resolve: {e}"))
}

fn value_path(
    writers: &[Schema],
    readers: &[Schema],
    arrow_schema: &SchemaRef,
    schema: &Arc<ReaderSchema>,
    options: ParquetOptions,
    datums: &[(usize, Vec<u8>)],
    path: &Path,
) -> Result<(), String> {
    let sink = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut writer = BatchWriter::new(schema, Arc::clone(arrow_schema), options, sink)
        .map_err(|e| e.to_string())?;
    for chunk in datums.chunks(BATCH_ROWS) {
        let values = resolve_chunk(writers, readers, chunk)?;
        let batch = values_to_batch(arrow_schema, &values)?;
        writer.write(batch, 0).map_err(|e| e.to_string())?;
    }
    writer.finish().map_err(|e| e.to_string())?;
    Ok(())
}

/// Both engines' batches for all datums, compared column by column (map columns by their
/// entries as sets, dictionary columns by their strings).
fn compare(
    plans: &[Plan],
    writers: &[Schema],
    value_readers: &[Schema],
    schema: &Arc<ReaderSchema>,
    arrow_schema: &SchemaRef,
    datums: &[(usize, Vec<u8>)],
) -> Result<bool, String> {
    let mut columns = Columns::new(Arc::clone(schema.shape())).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut values = Vec::with_capacity(datums.len());
    for (w, d) in datums {
        buf.clear();
        let plan = plans.get(*w).ok_or("no plan")?;
        plan.transcode(d, &mut buf).map_err(|e| e.to_string())?;
        columns.append(&buf).map_err(|e| e.to_string())?;
        let (writer, reader) = writers
            .get(*w)
            .zip(value_readers.get(*w))
            .ok_or("no writer")?;
        values.push(resolve(writer, reader, d)?);
    }
    let ours = columns.take_batch().map_err(|e| e.to_string())?;
    let theirs = values_to_batch(arrow_schema, &values)?;
    let mut equal = true;
    for ((a, b), f) in ours
        .columns()
        .iter()
        .zip(theirs.columns())
        .zip(arrow_schema.fields())
    {
        if !same(a.as_ref(), b.as_ref()) {
            eprintln!(
                "bench archive: column {} differs between the engines",
                f.name()
            );
            equal = false;
        }
    }
    Ok(equal)
}

/// Equal values; map entries compared as sorted lists, dictionaries by their strings.
fn same(a: &dyn Array, b: &dyn Array) -> bool {
    if a.len() != b.len() || a.data_type() != b.data_type() {
        return false;
    }
    match a.data_type() {
        DataType::Map(..) => {
            let (Some(a), Some(b)) = (
                a.as_any().downcast_ref::<MapArray>(),
                b.as_any().downcast_ref::<MapArray>(),
            ) else {
                return false;
            };
            (0..a.len()).all(|i| same_entries(&a.value(i), &b.value(i)))
        }
        DataType::Dictionary(..) => strings(a) == strings(b),
        DataType::Struct(_) => {
            let (Some(a), Some(b)) = (
                a.as_any().downcast_ref::<StructArray>(),
                b.as_any().downcast_ref::<StructArray>(),
            ) else {
                return false;
            };
            a.nulls() == b.nulls()
                && a.columns()
                    .iter()
                    .zip(b.columns())
                    .all(|(x, y)| same(x.as_ref(), y.as_ref()))
        }
        _ => a.to_data() == b.to_data(),
    }
}

/// Two maps' entries are the same multiset.
fn same_entries(a: &StructArray, b: &StructArray) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut used = vec![false; b.len()];
    (0..a.len()).all(|i| {
        let x = a.slice(i, 1).to_data();
        let found = (0..b.len()).find(|j| !used[*j] && b.slice(*j, 1).to_data() == x);
        found.map(|j| used[j] = true).is_some()
    })
}

fn strings(a: &dyn Array) -> Vec<Option<String>> {
    let Some(d) = a.as_any().downcast_ref::<DictionaryArray<Int32Type>>() else {
        return Vec::new();
    };
    let Some(values) = d
        .values()
        .as_any()
        .downcast_ref::<arrow_array::StringArray>()
    else {
        return Vec::new();
    };
    d.keys()
        .iter()
        .map(|k| k.map(|k| values.value(k as usize).to_string()))
        .collect()
}

/// The value path's second half: `Value` records into one Arrow batch of `schema`.
fn values_to_batch(schema: &SchemaRef, values: &[Value]) -> Result<RecordBatch, String> {
    let refs: Vec<&Value> = values.iter().collect();
    let fields = schema.fields().clone();
    let arr = build(&DataType::Struct(fields), &refs)?;
    let s = arr
        .as_any()
        .downcast_ref::<StructArray>()
        .ok_or("root is not a struct")?;
    RecordBatch::try_new(Arc::clone(schema), s.columns().to_vec()).map_err(|e| e.to_string())
}

/// Unwraps a union value to its branch value.
fn plain(v: &Value) -> &Value {
    match v {
        Value::Union(_, inner) => plain(inner),
        other => other,
    }
}

fn nulls_of(values: &[&Value]) -> Option<NullBuffer> {
    if values.iter().any(|v| matches!(plain(v), Value::Null)) {
        Some(NullBuffer::from_iter(
            values.iter().map(|v| !matches!(plain(v), Value::Null)),
        ))
    } else {
        None
    }
}

/// Builds one column of type `dt` from `values` (one per row, `Null` for a null row).
fn build(dt: &DataType, values: &[&Value]) -> Result<ArrayRef, String> {
    let bad = |v: &Value| format!("value {v:?} for a {dt} column");
    macro_rules! prim {
        ($builder:expr, $($pat:pat => $e:expr),+) => {{
            let mut b = $builder;
            for v in values {
                match plain(v) {
                    Value::Null => b.append_null(),
                    $($pat => b.append_value($e),)+
                    other => return Err(bad(other)),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    Ok(match dt {
        DataType::Boolean => prim!(BooleanBuilder::new(), Value::Boolean(x) => *x),
        DataType::Int32 => prim!(Int32Builder::new(), Value::Int(x) => *x),
        DataType::Int64 => prim!(Int64Builder::new(), Value::Long(x) => *x),
        DataType::Float32 => prim!(Float32Builder::new(), Value::Float(x) => *x),
        DataType::Float64 => prim!(Float64Builder::new(), Value::Double(x) => *x),
        DataType::Utf8 => prim!(StringBuilder::new(), Value::String(x) => x),
        DataType::Binary => prim!(BinaryBuilder::new(), Value::Bytes(x) => x),
        DataType::Date32 => {
            let a: PrimitiveArray<Date32Type> = prim!(Int32Builder::new(), Value::Date(x) => *x)
                .to_data()
                .into_builder()
                .data_type(DataType::Date32)
                .build()
                .map_err(|e| e.to_string())?
                .into();
            Arc::new(a)
        }
        DataType::Timestamp(TimeUnit::Millisecond, tz) => {
            let mut b = arrow_array::builder::TimestampMillisecondBuilder::new();
            for v in values {
                match plain(v) {
                    Value::Null => b.append_null(),
                    Value::TimestampMillis(x) | Value::LocalTimestampMillis(x) => {
                        b.append_value(*x)
                    }
                    other => return Err(bad(other)),
                }
            }
            let a: PrimitiveArray<TimestampMillisecondType> = b.finish();
            Arc::new(a.with_timezone_opt(tz.clone()))
        }
        DataType::Timestamp(TimeUnit::Microsecond, tz) => {
            let mut b = arrow_array::builder::TimestampMicrosecondBuilder::new();
            for v in values {
                match plain(v) {
                    Value::Null => b.append_null(),
                    Value::TimestampMicros(x) | Value::LocalTimestampMicros(x) => {
                        b.append_value(*x)
                    }
                    other => return Err(bad(other)),
                }
            }
            let a: PrimitiveArray<TimestampMicrosecondType> = b.finish();
            Arc::new(a.with_timezone_opt(tz.clone()))
        }
        DataType::Dictionary(..) => {
            let mut b = StringDictionaryBuilder::<Int32Type>::new();
            for v in values {
                match plain(v) {
                    Value::Null => b.append_null(),
                    Value::Enum(_, s) => {
                        b.append(s).map_err(|e| e.to_string())?;
                    }
                    other => return Err(bad(other)),
                }
            }
            Arc::new(b.finish())
        }
        DataType::Struct(fields) => {
            let nulls = nulls_of(values);
            let mut columns = Vec::with_capacity(fields.len());
            for (i, f) in fields.iter().enumerate() {
                let child: Vec<&Value> = values
                    .iter()
                    .map(|v| match plain(v) {
                        Value::Record(fs) => fs.get(i).map_or(&Value::Null, |(_, x)| x),
                        _ => &Value::Null,
                    })
                    .collect();
                columns.push(build(f.data_type(), &child)?);
            }
            Arc::new(
                StructArray::try_new(fields.clone(), columns, nulls).map_err(|e| e.to_string())?,
            )
        }
        DataType::List(item) => {
            let nulls = nulls_of(values);
            let mut offsets = Vec::with_capacity(values.len() + 1);
            offsets.push(0i32);
            let mut items: Vec<&Value> = Vec::new();
            for v in values {
                if let Value::Array(xs) = plain(v) {
                    items.extend(xs.iter());
                }
                offsets.push(items.len() as i32);
            }
            let child = build(item.data_type(), &items)?;
            Arc::new(
                ListArray::try_new(
                    Arc::clone(item),
                    OffsetBuffer::new(ScalarBuffer::from(offsets)),
                    child,
                    nulls,
                )
                .map_err(|e| e.to_string())?,
            )
        }
        DataType::Map(entries, sorted) => {
            let DataType::Struct(kv) = entries.data_type() else {
                return Err("map entries are not a struct".into());
            };
            let value_type = kv.get(1).ok_or("map without values")?.data_type();
            let nulls = nulls_of(values);
            let mut offsets = vec![0i32];
            let mut keys = StringBuilder::new();
            let mut vals: Vec<&Value> = Vec::new();
            for v in values {
                if let Value::Map(m) = plain(v) {
                    for (k, x) in m {
                        keys.append_value(k);
                        vals.push(x);
                    }
                }
                offsets.push(vals.len() as i32);
            }
            let keys: ArrayRef = Arc::new(keys.finish());
            let vals = build(value_type, &vals)?;
            let entries_array = StructArray::try_new(kv.clone(), vec![keys, vals], None)
                .map_err(|e| e.to_string())?;
            Arc::new(
                MapArray::try_new(
                    Arc::clone(entries),
                    OffsetBuffer::new(ScalarBuffer::from(offsets)),
                    entries_array,
                    nulls,
                    *sorted,
                )
                .map_err(|e| e.to_string())?,
            )
        }
        other => return Err(format!("the value path does not build {other} columns")),
    })
}

/// The command line of `bench archive`.
#[derive(Debug, Clone)]
pub struct ArchiveArgs {
    /// Writer schemas; none means the reference pair (OrderPlaced v2 and v1).
    pub writer_schemas: Vec<PathBuf>,
    /// The reader schema; none means the reference reader (OrderPlaced v1).
    pub reader_schema: Option<PathBuf>,
    pub records: usize,
    pub seconds: f64,
    /// zstd, zstd:LEVEL, snappy or none.
    pub compression: String,
    pub row_group_bytes: u64,
    /// Which columns are dictionary-encoded (both engines).
    pub dictionary: crate::archive::ParquetDictionary,
    /// Min/max statistics written (both engines).
    pub statistics: crate::archive::ParquetStatistics,
    /// The Parquet writer's encoding threads per file, 0 to 2 (both engines).
    pub encoding_threads: u8,
}

/// The reference pair, as `proto/orders/` (and `../shared/bench/`) hold it.
const REFERENCE_V1: &str = include_str!("../../proto/orders/order_v1.avsc");
const REFERENCE_V2: &str = include_str!("../../proto/orders/order_v2.avsc");

/// Runs `bench archive` and returns its table.
pub fn run(args: &ArchiveArgs) -> Result<String, String> {
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let parse = |text: &str, origin: &str| {
        Schema::parse_str(text).map_err(|e| format!("{origin}: not an Avro schema: {e}"))
    };
    let writers = if args.writer_schemas.is_empty() {
        vec![
            parse(REFERENCE_V2, "order_v2.avsc")?,
            parse(REFERENCE_V1, "order_v1.avsc")?,
        ]
    } else {
        args.writer_schemas
            .iter()
            .map(|p| parse(&read(p)?, &p.display().to_string()))
            .collect::<Result<Vec<_>, _>>()?
    };
    let reader = match &args.reader_schema {
        Some(p) => read(p)?,
        None => REFERENCE_V1.to_string(),
    };
    let compression = parse_compression(&args.compression)?;
    if args.records == 0 || writers.is_empty() {
        return Err("no records to time".into());
    }
    let (datums, sources) = mixed_datums(&writers, args.records, 42)?;
    let options = ParquetOptions {
        compression,
        row_group_bytes: args.row_group_bytes.max(1),
        dictionary: args.dictionary,
        statistics: args.statistics,
        encoding_threads: args.encoding_threads,
    };
    let b = archive(
        &writers,
        &reader,
        &datums,
        options,
        Duration::from_secs_f64(args.seconds.max(0.0)),
    )?;
    Ok(format!("records: {}\n{}", sources.join("; "), b.table()))
}

/// `zstd`, `zstd:LEVEL`, `snappy` or `none`.
pub fn parse_compression(s: &str) -> Result<ParquetCompression, String> {
    match s {
        "zstd" => Ok(ParquetCompression::default()),
        "snappy" => Ok(ParquetCompression::Snappy),
        "none" => Ok(ParquetCompression::None),
        other => match other.strip_prefix("zstd:").map(str::parse::<i32>) {
            Some(Ok(level)) => Ok(ParquetCompression::Zstd(level)),
            _ => Err(format!(
                "compression {other:?}: expected zstd, zstd:LEVEL, snappy or none"
            )),
        },
    }
}

/// A writer-encoded record and the index of its writer schema.
pub type Datum = (usize, Vec<u8>);

/// `records` records, writer `i % writers.len()` for record `i`, each tagged with its writer's
/// index, and for each writer where its records came from. A writer that is one of the
/// reference OrderPlaced schemas gets the reference records (the demo's generator, the
/// distributions of `../shared/bench/gen_orders.py`: few distinct cities, currencies and
/// statuses, increasing timestamps); any other writer gets the bench's random records
/// (`random_datums`: every string distinct).
pub fn mixed_datums(
    writers: &[Schema],
    records: usize,
    seed: u64,
) -> Result<(Vec<Datum>, Vec<String>), String> {
    let n = writers.len().max(1);
    let per_writer = records.div_ceil(n);
    let mut sources = Vec::with_capacity(n);
    let mut per: Vec<std::vec::IntoIter<Vec<u8>>> = Vec::with_capacity(n);
    for (i, w) in writers.iter().enumerate() {
        let seed = seed + i as u64;
        let (datums, source) = match reference_records(w, per_writer, seed)? {
            Some(datums) => (datums, "reference OrderPlaced"),
            None => (
                super::transcode::random_datums(w, per_writer, seed)?,
                "random",
            ),
        };
        let name = w
            .name()
            .map_or_else(|| "(unnamed)".into(), |n| n.fullname(None));
        sources.push(format!("writer {} ({name}): {source}", i + 1));
        per.push(datums.into_iter());
    }
    let mut out = Vec::with_capacity(records);
    for i in 0..records {
        let w = i % n;
        if let Some(d) = per.get_mut(w).and_then(Iterator::next) {
            out.push((w, d));
        }
    }
    Ok((out, sources))
}

/// `count` reference records encoded with `writer`, if it is OrderPlaced v2 or v1 (by
/// canonical form); None for any other schema.
#[allow(deprecated)] // apache-avro 0.22's writer builder does the same; setup only, not timed
fn reference_records(
    writer: &Schema,
    count: usize,
    seed: u64,
) -> Result<Option<Vec<Vec<u8>>>, String> {
    use crate::demo::orders::{order_v1, order_v2};
    let canonical = |text: &str| Schema::parse_str(text).map(|s| s.canonical_form());
    let form = writer.canonical_form();
    let generate: fn(usize, &mut super::Rng) -> Value =
        if canonical(REFERENCE_V2).is_ok_and(|c| c == form) {
            order_v2
        } else if canonical(REFERENCE_V1).is_ok_and(|c| c == form) {
            order_v1
        } else {
            return Ok(None);
        };
    let mut rng = super::Rng(seed);
    (0..count)
        .map(|i| {
            apache_avro::to_avro_datum(writer, generate(i, &mut rng))
                .map_err(|e| format!("reference record {i}: {e}"))
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER_V1: &str = REFERENCE_V1;
    const ORDER_V2: &str = REFERENCE_V2;

    #[test]
    fn both_engines_write_the_same_values() {
        let writers = vec![
            Schema::parse_str(ORDER_V2).unwrap(),
            Schema::parse_str(ORDER_V1).unwrap(),
        ];
        let (datums, sources) = mixed_datums(&writers, 400, 3).unwrap();
        assert!(
            sources
                .iter()
                .all(|s| s.ends_with(": reference OrderPlaced")),
            "{sources:?}"
        );
        let b = archive(
            &writers,
            ORDER_V1,
            &datums,
            ParquetOptions::default(),
            Duration::ZERO,
        )
        .unwrap();
        assert!(b.equal_values, "{}", b.table());
        assert!(b.table().lines().last().unwrap().starts_with("ratio: "));
        assert!(
            b.table()
                .contains("to Arrow batches only (no Parquet writer): ratio "),
            "{}",
            b.table()
        );
        // Every stage of both engines was timed (figures are not asserted: timing is noise).
        for [decode, columns, whole] in b.stages_ns {
            assert!(0.0 < decode && decode.is_finite(), "{:?}", b.stages_ns);
            assert!(
                columns.is_finite() && whole.is_finite(),
                "{:?}",
                b.stages_ns
            );
        }
        assert!(b.engines.iter().all(|e| e.file_bytes > 0));
        assert_eq!(b.round_ratios.len(), ROUNDS);
        assert!(
            b.round_ratios.iter().all(|r| *r > 0.0 && r.is_finite()),
            "{:?}",
            b.round_ratios
        );
        assert!(b.table().contains("ratio per round ("), "{}", b.table());
        assert!(
            b.engines.iter().all(|e| e
                .cpu_ns_per_record
                .is_some_and(|ns| ns.is_finite() && ns >= 0.0)),
            "{:?}",
            b.engines
        );
        assert!(
            b.table()
                .contains("CPU time per record (apache-avro's over schemabridge's): ratio "),
            "{}",
            b.table()
        );
    }

    #[test]
    fn cpu_seconds_are_user_plus_system_ticks_after_the_command_name() {
        // A command name with a space and a parenthesis, as `/proc/PID/stat` can show one.
        let stat = "4242 (a (b) c) R 1 4242 4242 0 -1 4194304 120 0 0 0 1234 56 0 0 20 0 3 0";
        assert_eq!(cpu_seconds(stat), Some(12.9));
        assert_eq!(cpu_seconds("4242 (x) R 1 2"), None);
        let own = cpu_time().expect("this process's CPU time");
        assert!(own >= 0.0, "{own}");
    }

    #[test]
    fn other_writers_get_random_records() {
        let writer = Schema::parse_str(
            r#"{"type":"record","name":"Reading","fields":[
                {"name":"sensor","type":"string"},{"name":"value","type":"double"}]}"#,
        )
        .unwrap();
        let (datums, sources) = mixed_datums(std::slice::from_ref(&writer), 50, 1).unwrap();
        assert_eq!(sources, vec!["writer 1 (Reading): random".to_string()]);
        assert_eq!(datums.len(), 50);
        let b = archive(
            &[writer],
            r#"{"type":"record","name":"Reading","fields":[{"name":"value","type":"double"}]}"#,
            &datums,
            ParquetOptions::default(),
            Duration::ZERO,
        )
        .unwrap();
        assert!(b.equal_values, "{}", b.table());
    }
}
