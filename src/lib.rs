//! schemabridge: a Kafka schema gateway.
//!
//! Producers and consumers of a topic upgrade their schemas at different times. schemabridge
//! consumes a topic, reads each message's Confluent framing, fetches the writer schema from a
//! schema registry, resolves the message to the reader schema its consumer expects, frames it
//! with the reader schema's id and republishes it: in partition order, at least once, and
//! without silently losing data.
//!
//! Where to start reading: [`pipeline::Gateway`] runs the job; [`config::Config`] is what a
//! user writes; [`schema`] answers "what does writer W look like to reader R?"; [`avro`] and
//! [`protobuf`] are the resolution engines; [`wire`] the framing.
pub mod archive;
pub mod avro;
pub mod bench;
pub mod check;
pub mod config;
pub mod demo;
pub mod explain;
pub mod pipeline;
pub mod protobuf;
pub mod registry;
pub mod resolution;
pub mod schema;
pub mod telemetry;
pub mod wire;
