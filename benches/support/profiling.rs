//! The `main` both criterion benches share: criterion, or with `SCHEMABRIDGE_PROFILE_PASSES=N`
//! set, only the bench's profile pass run N times (for a profiler or an instruction counter).

use criterion::Criterion;

pub fn main(benches: fn(), profile: fn(usize)) {
    match std::env::var("SCHEMABRIDGE_PROFILE_PASSES") {
        Ok(n) => profile(n.parse().expect("SCHEMABRIDGE_PROFILE_PASSES is a number")),
        Err(_) => {
            benches();
            Criterion::default().configure_from_args().final_summary();
        }
    }
}
