//! What can go wrong resolving one message part, as the pipeline must act on it.
//!
//! Owns: the failure kinds (each a `schemabridge.error.kind` DLQ header value) and the
//! "interrupted by shutdown" case. Must not: decide what a route does with a failure.

use crate::wire::SchemaId;

/// Why a part could not be resolved. Each kind is a `schemabridge.error.kind` header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartFailure {
    pub kind: FailureKind,
    pub message: String,
    pub writer_id: Option<SchemaId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Not Confluent-framed (short, wrong magic byte, bad message indexes).
    Framing,
    /// The registry has no schema with the message's id.
    UnknownSchema,
    /// The writer schema is not usable (bad text, unsupported type, wrong format for the route).
    InvalidSchema,
    /// Writer and reader schemas cannot be resolved against each other.
    Unresolvable,
    /// The bytes do not decode with the writer schema, or hold a value the reader cannot take.
    Datum,
    /// The reader would not see fields that held data, and the route's `on_lossy` forbids it.
    Lossy,
    /// The record to produce is larger than the producer's `message.max.bytes`.
    TooLarge,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Framing => "framing",
            FailureKind::UnknownSchema => "unknown-schema",
            FailureKind::InvalidSchema => "invalid-schema",
            FailureKind::Unresolvable => "unresolvable",
            FailureKind::Datum => "datum",
            FailureKind::Lossy => "lossy",
            FailureKind::TooLarge => "too-large",
        }
    }
}

/// Resolution either fails for this message, or the lookup was interrupted by shutdown.
#[derive(Debug)]
pub enum ResolveError {
    Failed(PartFailure),
    Cancelled,
}
