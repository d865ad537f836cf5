//! Criterion bench: the archive's stages on the reference records (OrderPlaced v2 and v1 mixed,
//! normalised to v1), one stage at a time, so a change to one of them shows up in its own line
//! rather than in the noise of the whole path (`schemabridge bench archive` times the whole path
//! against apache-avro's). Run: `cargo bench --bench archive`.
//!
//! - `builders`: reader-encoded datums (resolved once, outside the loop) into Arrow columns,
//!   cut into batches of 8,192 rows as `ParquetFile` cuts them.
//! - `parquet_file`: the same datums through the whole `RecordFile` (builders and Parquet
//!   writer, the archive's default options) into a file in a temporary directory.
//!
//! Profiling: with `SCHEMABRIDGE_PROFILE_PASSES=N` set, the binary skips criterion and runs only
//! the builders stage N times (the whole file with `SCHEMABRIDGE_PROFILE_STAGE=parquet_file`),
//! so a profiler or an instruction counter sees nothing else:
//! `SCHEMABRIDGE_PROFILE_PASSES=20 perf stat -e instructions:u target/release/deps/archive-*`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group};

#[path = "support/profiling.rs"]
mod profiling;
use schemabridge::archive::columnar::Columns;
use schemabridge::archive::output;
use schemabridge::archive::{FileFormat, ParquetOptions, ReaderSchema};
use schemabridge::avro::{self, Schema};
use schemabridge::bench::archive::mixed_datums;

const ORDER_V1: &str = include_str!("../proto/orders/order_v1.avsc");
const ORDER_V2: &str = include_str!("../proto/orders/order_v2.avsc");
const RECORDS: usize = 20_000;
const BATCH_ROWS: usize = 8192;

/// The reference records resolved to v1: what the archive's builders are handed.
fn reader_datums() -> (Arc<ReaderSchema>, Vec<Vec<u8>>) {
    let writers = [
        Schema::parse_str(ORDER_V2).expect("v2"),
        Schema::parse_str(ORDER_V1).expect("v1"),
    ];
    let reader = Schema::parse_str(ORDER_V1).expect("v1");
    let plans: Vec<_> = writers
        .iter()
        .map(|w| avro::compile(w, &reader).expect("plan"))
        .collect();
    let (datums, _) = mixed_datums(&writers, RECORDS, 42).expect("records");
    let resolved = datums
        .iter()
        .map(|(w, d)| {
            let mut out = Vec::with_capacity(d.len());
            plans[*w].transcode(d, &mut out).expect("transcode");
            out
        })
        .collect();
    (ReaderSchema::new(reader).expect("reader schema"), resolved)
}

fn builders(schema: &ReaderSchema, datums: &[Vec<u8>]) -> usize {
    let mut columns = Columns::new(Arc::clone(schema.shape())).expect("columns");
    let mut rows = 0;
    for d in datums {
        columns.append(black_box(d)).expect("append");
        if columns.rows() >= BATCH_ROWS {
            rows += black_box(columns.take_batch().expect("batch")).num_rows();
        }
    }
    rows + black_box(columns.take_batch().expect("batch")).num_rows()
}

/// The datums through the archive's Parquet `RecordFile` (default options) into `path`.
fn parquet_file(schema: &Arc<ReaderSchema>, datums: &[Vec<u8>], path: &std::path::Path) {
    let sink = std::fs::File::create(path).expect("file");
    let format = FileFormat::Parquet(ParquetOptions::default());
    let mut file = output::open(format, schema, sink).expect("open");
    for d in datums {
        file.append(black_box(d)).expect("append");
    }
    file.finish().expect("finish");
}

fn stages(c: &mut Criterion) {
    let (schema, datums) = reader_datums();
    let mut group = c.benchmark_group("archive_order_v1");
    group.throughput(Throughput::Elements(datums.len() as u64));
    group.bench_function("builders", |b| {
        b.iter(|| assert_eq!(builders(&schema, &datums), datums.len()))
    });
    let dir = std::env::temp_dir().join(format!("schemabridge-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let path = dir.join("archive.parquet");
    group.bench_function("parquet_file", |b| {
        b.iter(|| parquet_file(&schema, &datums, &path))
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The builders alone, `passes` times over the records (see the module docs); with
/// `SCHEMABRIDGE_PROFILE_STAGE=parquet_file`, the whole file instead.
fn profile(passes: usize) {
    let (schema, datums) = reader_datums();
    if std::env::var("SCHEMABRIDGE_PROFILE_STAGE").as_deref() == Ok("parquet_file") {
        let dir = std::env::temp_dir().join(format!("schemabridge-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let path = dir.join("archive.parquet");
        for _ in 0..passes {
            parquet_file(&schema, &datums, &path);
        }
        let _ = std::fs::remove_dir_all(&dir);
        eprintln!("{} files written", passes);
        return;
    }
    let rows: usize = (0..passes).map(|_| builders(&schema, &datums)).sum();
    eprintln!("{rows} rows built");
}

criterion_group!(benches, stages);

fn main() {
    profiling::main(benches, profile);
}
