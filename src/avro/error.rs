//! Error types of the Avro resolution engine.
//!
//! Owns: `PlanError` (a writer × reader pair that cannot be resolved, found at compile time) and
//! `TranscodeError` (one datum that cannot be transcoded). Must not touch: anything outside the
//! `avro` module; no I/O. Every message names the field path (`Record.field.sub`, `items[]` for
//! array items, `attrs{}` for map values) so that the pipeline can put `to_string()` straight into
//! a Kafka header and a person can act on it.

use std::fmt;

/// A writer × reader pair that cannot be resolved. Found once, at [`super::compile`] time.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// The writer's type can never be read as the reader's type (no promotion applies).
    #[error("{path}: writer type {writer} cannot be read as reader type {reader}")]
    TypeMismatch {
        path: String,
        writer: String,
        reader: String,
    },
    /// Two named types (record, enum, fixed) whose names do not match, even through aliases.
    #[error(
        "{path}: writer {kind} {writer} does not match reader {kind} {reader} (names differ and no reader alias matches)"
    )]
    NameMismatch {
        path: String,
        kind: &'static str,
        writer: String,
        reader: String,
    },
    /// Fixed types of different sizes.
    #[error("{path}: writer fixed {name} has size {writer}, reader fixed has size {reader}")]
    FixedSizeMismatch {
        path: String,
        name: String,
        writer: usize,
        reader: usize,
    },
    /// A reader field without a default that the writer does not have (under its name or aliases).
    #[error(
        "{path}: reader field has no default and the writer has no field named {field:?}{aliases}"
    )]
    MissingField {
        path: String,
        field: String,
        /// Pre-rendered ", nor any of its aliases [..]" (empty when the field has no aliases).
        aliases: String,
    },
    /// A default value (field default or enum default) that does not fit its type.
    #[error("{path}: invalid default value: {reason}")]
    InvalidDefault { path: String, reason: String },
    /// The schema itself is unusable (e.g. a reference to an undefined name).
    #[error("{path}: invalid schema: {reason}")]
    InvalidSchema { path: String, reason: String },
    /// The pair expands into more plan nodes than [`super::MAX_PLAN_NODES`].
    #[error("{path}: schema pair too large to compile (more than {limit} plan nodes)")]
    TooLarge { path: String, limit: usize },
}

/// Where in the datum a transcode error happened: the reader-side field path and the byte offset
/// into the writer-encoded input.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// Dotted field path, e.g. `OrderPlaced.items[].sku`.
    pub path: String,
    /// Byte offset into the writer-encoded input where the failing value starts.
    pub offset: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (byte {})", self.path, self.offset)
    }
}

/// One datum that cannot be transcoded. Never a panic: every malformed or hostile input ends here.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum TranscodeError {
    #[error("{at}: input truncated: {needed} more byte(s) needed")]
    Truncated { at: Location, needed: usize },
    #[error("{at}: {extra} trailing byte(s) after the datum")]
    TrailingBytes { at: Location, extra: usize },
    #[error("{at}: malformed varint (more than 10 bytes or overflowing 64 bits)")]
    MalformedVarint { at: Location },
    #[error("{at}: int value {value} is out of the 32-bit range")]
    IntOutOfRange { at: Location, value: i64 },
    #[error("{at}: {what} {value} is invalid or exceeds the {remaining} byte(s) left in the input")]
    HostileLength {
        at: Location,
        what: &'static str,
        value: i64,
        remaining: usize,
    },
    #[error("{at}: more than {limit} zero-byte array items in one datum")]
    TooManyItems { at: Location, limit: u64 },
    #[error("{at}: nesting deeper than {limit} levels")]
    TooDeep { at: Location, limit: u32 },
    #[error("{at}: enum index {index} is out of range for {count} writer symbols")]
    BadEnumIndex {
        at: Location,
        index: i64,
        count: usize,
    },
    #[error("{at}: writer enum symbol {symbol:?} is not in the reader enum, which has no default")]
    UnknownEnumSymbol { at: Location, symbol: String },
    #[error("{at}: union index {index} is out of range for {count} writer branches")]
    BadUnionIndex {
        at: Location,
        index: i64,
        count: usize,
    },
    #[error("{at}: writer union branch {index} ({writer_type}) cannot be read: {reason}")]
    UnresolvableBranch {
        at: Location,
        index: usize,
        writer_type: String,
        reason: String,
    },
    #[error("{at}: boolean byte {value:#04x} is neither 0 nor 1")]
    InvalidBoolean { at: Location, value: u8 },
    #[error("{at}: bytes are not valid UTF-8, so they cannot be read as a string")]
    InvalidUtf8 { at: Location },
    #[error("{at}: a block's byte size disagrees with the items it holds")]
    InconsistentBlock { at: Location },
}

impl TranscodeError {
    /// The location of the failure.
    pub fn location(&self) -> &Location {
        match self {
            Self::Truncated { at, .. }
            | Self::TrailingBytes { at, .. }
            | Self::MalformedVarint { at }
            | Self::IntOutOfRange { at, .. }
            | Self::HostileLength { at, .. }
            | Self::TooManyItems { at, .. }
            | Self::TooDeep { at, .. }
            | Self::BadEnumIndex { at, .. }
            | Self::UnknownEnumSymbol { at, .. }
            | Self::BadUnionIndex { at, .. }
            | Self::UnresolvableBranch { at, .. }
            | Self::InvalidBoolean { at, .. }
            | Self::InvalidUtf8 { at }
            | Self::InconsistentBlock { at } => at,
        }
    }

    fn location_mut(&mut self) -> &mut Location {
        match self {
            Self::Truncated { at, .. }
            | Self::TrailingBytes { at, .. }
            | Self::MalformedVarint { at }
            | Self::IntOutOfRange { at, .. }
            | Self::HostileLength { at, .. }
            | Self::TooManyItems { at, .. }
            | Self::TooDeep { at, .. }
            | Self::BadEnumIndex { at, .. }
            | Self::UnknownEnumSymbol { at, .. }
            | Self::BadUnionIndex { at, .. }
            | Self::UnresolvableBranch { at, .. }
            | Self::InvalidBoolean { at, .. }
            | Self::InvalidUtf8 { at }
            | Self::InconsistentBlock { at } => at,
        }
    }

    /// Prepends one path segment while the error propagates up the plan: a `.` separates it from
    /// a following field name, nothing from a following `[]` (array item) or `{}` (map value).
    /// Only runs on the error path, so the allocation does not matter.
    pub(crate) fn prepend(&mut self, segment: &str) {
        let path = &mut self.location_mut().path;
        if path.is_empty() || path.starts_with('[') || path.starts_with('{') {
            path.insert_str(0, segment);
        } else {
            path.insert(0, '.');
            path.insert_str(0, segment);
        }
    }
}
