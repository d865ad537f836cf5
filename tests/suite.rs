//! The integration tests, as one test binary with one module per file in `tests/`.
//!
//! Every test links the whole crate (arrow, parquet, object_store, rdkafka with librdkafka):
//! about 60 MB per binary even with line tables only. One binary per file made a cold
//! `cargo test` link ~30 of them, which cost minutes of CI time and over 2 GB of disk (a CI run
//! once died of a full disk while linking them). So `Cargo.toml` sets `autotests = false` and this
//! is the only `[[test]]` target. Tests are named by their file: `cargo test --test suite
//! delivery::` runs `tests/delivery.rs`, `cargo nextest run -E 'test(/^faults::/)'` the faults.
//!
//! Nothing here shares in-process state between modules: the product's global state (the metrics
//! recorder, the log subscriber) is installed only by the `schemabridge` binary, which the tests
//! run as a child process; in-process gateways use their own clusters, topics and registries.
//! Real components and how they start: `support` (its header lists them).

mod support;

mod archive_parquet;
mod archive_topic;
mod avro_fastavro;
mod avro_fuzz_smoke;
mod avro_proptest;
mod avro_references;
mod avro_transcode_file;
mod backpressure;
mod bench_pipeline;
mod bridge_registry;
mod check;
mod cli;
mod delivery;
mod deploy;
mod explain;
mod faults;
mod gateway;
mod hostile_inputs;
mod logs;
mod protobuf_descriptor;
mod protobuf_python;
mod protobuf_routes;
mod reader_metadata;
mod registry_tls;
mod secrets;
mod static_membership;
mod tansu;
mod telemetry;
