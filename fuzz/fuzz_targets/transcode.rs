//! Fuzz target: arbitrary bytes through the executor of a few fixed plans (byte 0 picks the
//! plan). The checks live in `src/cases.rs`, shared with `tests/avro_fuzz_smoke.rs`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use schemabridge_fuzz::cases::{Targets, run, targets};

static TARGETS: OnceLock<Targets> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    run(TARGETS.get_or_init(targets), data);
});
