//! Benchmarks behind `schemabridge bench`, each printing a table.
//!
//! - `transcode` (re-exported here): the compiled Avro plan against apache-avro's value path,
//!   and the random-record generator it, the criterion bench and `pipeline` use.
//! - [`archive`]: reference records normalised and written to Parquet, against apache-avro's
//!   values plus Arrow builders.
//! - [`pipeline`]: the gateway end to end on a Kafka broker, against a minimal rdkafka copy
//!   loop on the same input.
//!
//! Owns: measuring and reporting. Must not: be used by the gateway.

pub mod archive;
pub mod pipeline;
mod transcode;

pub use transcode::*;
