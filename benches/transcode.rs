//! Criterion bench: the reference pair (OrderPlaced v2 → v1) through the compiled plan and
//! through apache-avro's value path, on the same generated records.
//! Run: `cargo bench --bench transcode`.
//!
//! Profiling: with `SCHEMABRIDGE_PROFILE_PASSES=N` set, the binary skips criterion and runs the
//! compiled plan N times over the records, nothing else, so an instruction counter sees only the
//! executor: `SCHEMABRIDGE_PROFILE_PASSES=10 valgrind --tool=callgrind target/release/deps/transcode-*`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group};

#[path = "support/profiling.rs"]
mod profiling;
use schemabridge::avro::{self, Schema};
use schemabridge::bench::{apply_reader_aliases, random_datums};

const ORDER_V1: &str = include_str!("../proto/orders/order_v1.avsc");
const ORDER_V2: &str = include_str!("../proto/orders/order_v2.avsc");

fn reference_pair(c: &mut Criterion) {
    let writer = Schema::parse_str(ORDER_V2).expect("v2");
    let reader = Schema::parse_str(ORDER_V1).expect("v1");
    let datums = random_datums(&writer, 1_000, 42).expect("records");
    let bytes: usize = datums.iter().map(Vec::len).sum();
    let plan = avro::compile(&writer, &reader).expect("plan");

    let mut group = c.benchmark_group("order_v2_to_v1");
    group.throughput(Throughput::Elements(datums.len() as u64));
    let mut out = Vec::with_capacity(1024);
    group.bench_function("compiled_plan", |b| {
        b.iter(|| {
            for d in &datums {
                out.clear();
                black_box(plan.transcode(black_box(d), &mut out).expect("transcode"));
            }
        })
    });
    let value_reader =
        Schema::parse_str(&apply_reader_aliases(ORDER_V1).expect("aliases")).expect("reader");
    group.bench_function("apache_avro_value_path", |b| {
        b.iter(|| {
            for d in &datums {
                #[allow(deprecated)]
                let v = apache_avro::from_avro_datum(&writer, &mut &d[..], Some(&value_reader))
                    .expect("resolve");
                #[allow(deprecated)]
                black_box(apache_avro::to_avro_datum(&value_reader, v).expect("encode"));
            }
        })
    });
    group.finish();
    eprintln!("{} records, {bytes} bytes", datums.len());
}

/// The executor alone, `passes` times over the generated records (see the module docs).
fn profile(passes: usize) {
    let writer = Schema::parse_str(ORDER_V2).expect("v2");
    let reader = Schema::parse_str(ORDER_V1).expect("v1");
    let datums = random_datums(&writer, 1_000, 42).expect("records");
    let plan = avro::compile(&writer, &reader).expect("plan");
    let mut out = Vec::with_capacity(1024);
    let mut bytes = 0;
    for _ in 0..passes {
        for d in &datums {
            out.clear();
            black_box(plan.transcode(black_box(d), &mut out).expect("transcode"));
            bytes += out.len();
        }
    }
    eprintln!("{} records, {bytes} bytes out", passes * datums.len());
}

criterion_group!(benches, reference_pair);

fn main() {
    profiling::main(benches, profile);
}
