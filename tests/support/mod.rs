//! Shared test support: real components started by the tests themselves.
//!
//! - `registry`: a Confluent-REST-compatible schema registry double over HTTP.
//! - `kafka`: librdkafka's in-process mock cluster (real Kafka protocol on loopback), with
//!   helpers to produce, consume everything, read committed offsets and run the gateway.
//! - `process`: the real `schemabridge` binary as a child process (log file, SIGKILL/SIGTERM).
#![allow(dead_code)]

pub mod kafka;
pub mod process;
pub mod registry;
