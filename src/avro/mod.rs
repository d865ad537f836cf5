//! Avro writer → reader resolution (placeholder; being written).
//! LEAD'S NOTE: the items below are a compile-only stub of the agreed API so the pipeline
//! builds; the helper writing this module replaces this file entirely.
pub use apache_avro::Schema;
#[derive(Debug)]
pub struct Plan;
#[derive(Debug, thiserror::Error)]
#[error("stub")]
pub struct PlanError;
#[derive(Debug, thiserror::Error)]
#[error("stub")]
pub struct TranscodeError;
pub struct Lossiness;
impl Lossiness {
    pub fn is_lossy(&self) -> bool { false }
    pub fn fields(&self) -> impl Iterator<Item = usize> + '_ { std::iter::empty() }
}
pub fn compile(_w: &Schema, _r: &Schema) -> Result<Plan, PlanError> { Err(PlanError) }
impl Plan {
    pub fn is_identity(&self) -> bool { false }
    pub fn transcode(&self, _i: &[u8], _o: &mut Vec<u8>) -> Result<Lossiness, TranscodeError> { Err(TranscodeError) }
    pub fn dropped_fields(&self) -> &[String] { &[] }
}
