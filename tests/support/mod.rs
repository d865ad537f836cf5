//! Shared test support: real components started by the tests themselves.
//!
//! - `registry`: a Confluent-REST-compatible schema registry double over HTTP.
//! - `kafka`: librdkafka's in-process mock cluster (real Kafka protocol on loopback), with
//!   helpers to produce, consume everything, read committed offsets and run the gateway.
#![allow(dead_code)]

pub mod kafka;
pub mod orders;
pub mod registry;
