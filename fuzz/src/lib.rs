//! The Avro engine (`src/avro/`) and the random-record generator (`src/bench/transcode.rs`), compiled by
//! path into the fuzz crate so that fuzzing does not build the gateway's Kafka stack, plus the
//! fuzz target's body in `cases`.

#[allow(dead_code, unused_imports)]
#[path = "../../src/avro/mod.rs"]
pub mod avro;

#[allow(dead_code)]
#[path = "../../src/bench/transcode.rs"]
pub mod bench;

pub mod cases;
