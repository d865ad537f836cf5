//! Protobuf writer → reader transcoding on the wire bytes.
//!
//! Owns: building descriptor pools from registry schemas, `.proto` text or base64
//! `FileDescriptorProto` (protox, no `protoc`; see [`build_pool`]), mapping
//! Confluent message-index paths to messages and back, compiling a writer × reader pair into a
//! [`Plan`], and executing that plan bytes → bytes with the unknown-field policy
//! ([`UnknownFields`]). Must not: do I/O, await, log per message, touch the Confluent header
//! (that is [`crate::wire`]) or decide what a lossy message means (that is the pipeline's
//! policy; this module only reports [`Lossiness`]).
//!
//! Where to start: [`build_pool`] → [`message_for_indexes`] for both schemas → [`compile`] once per
//! (writer id, reader id) ([`Plan::changes`] says what it does to each field) →
//! [`Plan::transcode`] per message → [`indexes_for_message`] and
//! [`crate::wire::write_message_indexes`] to frame the result.
//!
//! The transcoder walks the writer bytes once, matching fields by number as any protobuf parser
//! would. Rules (protobuf's documented compatibility rules, "Updating A Message Type"):
//!
//! - A field the writer declares and the reader does not is copied through unchanged under
//!   [`UnknownFields::Preserve`] (a reader keeps it as an unknown field and re-encodes it) and
//!   removed under [`UnknownFields::Drop`], at any depth. Either way it is a lossy site: it is
//!   listed in [`Plan::dropped_fields`] and reported per message in [`Lossiness`] when present
//!   with a non-default value. Field numbers the writer schema itself does not declare are
//!   treated the same way (copied or removed) and counted in [`Lossiness::undeclared_fields`].
//! - `int32`, `uint32`, `int64`, `uint64`, `bool` and enums share the varint encoding and are
//!   compatible; the varint is copied unchanged and the reader's parser applies C++ cast
//!   semantics (an `int64` read as `int32` keeps the low 32 bits). The transcoder does not
//!   rewrite such a value; it reports the field as [`LossKind::Narrowed`] in that message's
//!   [`Lossiness`] whenever the value the reader will see differs from the value the writer
//!   wrote. `sint32`/`sint64`, `fixed32`/`sfixed32` and `fixed64`/`sfixed64` likewise.
//! - `string` ↔ `bytes` are compatible; when the reader field is a `string` (in a proto3 file,
//!   or fed from a `bytes` field) the value must be valid UTF-8 or the message fails with
//!   [`TranscodeError::InvalidUtf8`]. An embedded message is compatible with `bytes` both ways;
//!   the value is copied as it is (bytes read as a message are not validated here).
//! - Enums are open: values the reader enum does not declare are kept and reported as
//!   [`LossKind::UnknownEnumValue`].
//! - `repeated` ↔ singular: a singular writer field is read by a repeated reader as a one-element
//!   list; a repeated `string`/`bytes`/message writer field read as singular keeps the last
//!   element (messages merge), reported as [`LossKind::RepeatedIntoSingular`] when a message
//!   carries more than one. Repeated numeric → singular is a [`PlanError`]. Packed and unpacked
//!   encodings are copied as they are: every conforming parser accepts both.
//! - Maps are repeated entry messages (key = 1, value = 2) and oneof members are plain fields on
//!   the wire, so neither needs special handling.
//! - Anything a reader cannot parse (a different wire type, `sint` vs `int`, `float` vs
//!   `fixed32`, `string` vs message, group vs length-delimited) is a [`PlanError`] naming the
//!   field.
//! - Writer and reader with the same structure (field numbers, types, cardinality, enum values,
//!   recursively) are an identity: [`Plan::is_identity`] is true and the bytes are copied. The
//!   same holds for any nested message pair inside a plan (copied without being walked), so
//!   under `Drop` field numbers that neither schema declares are removed only from messages
//!   that needed walking.
//!
//! Hostile input (truncated varints or lengths, bad tags, unbalanced groups, nesting deeper than
//! [`MAX_DEPTH`]) is a [`TranscodeError`]; nothing here panics on input.

mod compile;
mod exec;
mod schema;

#[cfg(test)]
mod tests;

use prost_reflect::{DynamicMessage, MessageDescriptor};
use thiserror::Error;

pub use compile::{LossKind, LossSite, Plan, compile};
pub use schema::{build_pool, indexes_for_message, message_for_indexes};

/// Nested messages (and groups) deeper than this fail with [`TranscodeError::TooDeep`].
/// Matches the default recursion limit of the reference protobuf parsers.
pub const MAX_DEPTH: u32 = 100;

/// What to do with writer fields the reader does not declare (a route part's
/// `unknown_fields: preserve | drop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownFields {
    /// Copy their bytes through unchanged (the reader parses them as unknown fields and keeps
    /// them when it re-encodes).
    #[default]
    Preserve,
    /// Remove them, recursively inside nested, repeated and map values.
    Drop,
}

/// What one transcoded message lost or could not carry faithfully. Borrowed from its [`Plan`];
/// allocation-free unless the message is lossy.
#[derive(Debug, Clone)]
pub struct Lossiness<'p> {
    sites: &'p [LossSite],
    hit: Vec<u32>,
    undeclared: u32,
}

impl<'p> Lossiness<'p> {
    pub(crate) fn new(sites: &'p [LossSite]) -> Self {
        Lossiness {
            sites,
            hit: Vec::new(),
            undeclared: 0,
        }
    }

    #[inline]
    pub(crate) fn hit(&mut self, site: u32) {
        if !self.hit.contains(&site) {
            self.hit.push(site);
        }
    }

    #[inline]
    pub(crate) fn undeclared(&mut self) {
        self.undeclared = self.undeclared.saturating_add(1);
    }

    /// True when any lossy site was present in this message, or it carried fields the writer
    /// schema does not declare.
    pub fn is_lossy(&self) -> bool {
        !self.hit.is_empty() || self.undeclared > 0
    }

    /// Writer field paths (e.g. `email`, `shipping.geo`) that were lossy in this message, in the
    /// order first met.
    pub fn fields(&self) -> impl Iterator<Item = &'p str> + '_ {
        self.sites().map(|s| s.path())
    }

    /// The lossy sites met in this message, with what kind of loss each is.
    pub fn sites(&self) -> impl Iterator<Item = &'p LossSite> + '_ {
        let sites = self.sites;
        self.hit.iter().filter_map(move |&i| sites.get(i as usize))
    }

    /// How many field occurrences carried a number the writer schema does not declare (copied
    /// under [`UnknownFields::Preserve`], removed under [`UnknownFields::Drop`]).
    pub fn undeclared_fields(&self) -> u32 {
        self.undeclared
    }
}

/// Building a descriptor pool or finding a message in it failed.
#[derive(Debug, Error)]
pub enum SchemaError {
    #[error("protobuf schema {file}: {message}")]
    Compile { file: String, message: String },
    #[error("protobuf schema {file}: not found in the descriptor pool built for it")]
    FileNotFound { file: String },
    #[error(
        "protobuf schema {file}: message index path {indexes:?} has no message at position {position} (level {level} has {available} messages)"
    )]
    NoSuchMessage {
        file: String,
        indexes: Vec<i32>,
        level: usize,
        position: i32,
        available: usize,
    },
}

/// A writer × reader pair the reader cannot parse.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PlanError {
    #[error(
        "{message}.{field} (field {number}): writer type {writer} cannot be read as reader type {reader}{reason}"
    )]
    Incompatible {
        /// Reader message full name.
        message: String,
        /// Reader field name.
        field: String,
        number: u32,
        writer: String,
        reader: String,
        /// Empty, or `": why"`.
        reason: String,
    },
    #[error(
        "{message}.{field} (field {number}) is required by the reader, but writer message {writer_message} has no field {number}"
    )]
    MissingRequired {
        message: String,
        field: String,
        number: u32,
        writer_message: String,
    },
}

/// One message's bytes could not be transcoded. Offsets count from the start of the payload
/// after the message indexes.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TranscodeError {
    #[error("{at}: input ends inside a value (byte offset {offset})")]
    Truncated { at: String, offset: usize },
    #[error("{at}: malformed varint (byte offset {offset})")]
    MalformedVarint { at: String, offset: usize },
    #[error(
        "{at}: invalid tag {tag:#x} (field number {number}, wire type {wire_type}) at byte offset {offset}"
    )]
    InvalidTag {
        at: String,
        offset: usize,
        tag: u64,
        number: u64,
        wire_type: u8,
    },
    #[error(
        "{field}: wire type {found} where the writer schema says {expected} (byte offset {offset})"
    )]
    WireTypeMismatch {
        field: String,
        expected: &'static str,
        found: &'static str,
        offset: usize,
    },
    #[error("{field}: not valid UTF-8, and the reader field is a string (byte offset {offset})")]
    InvalidUtf8 { field: String, offset: usize },
    #[error("{at}: nested messages deeper than {limit} (byte offset {offset})")]
    TooDeep {
        at: String,
        limit: u32,
        offset: usize,
    },
    #[error(
        "{at}: end-group tag for field {number} does not close an open group (byte offset {offset})"
    )]
    UnexpectedEndGroup {
        at: String,
        number: u32,
        offset: usize,
    },
    #[error("{at}: group for field {number} is not closed before the end of its message")]
    UnterminatedGroup { at: String, number: u32 },
    #[error("{message}: cannot render as JSON: {reason}")]
    Json { message: String, reason: String },
}

/// Renders reader-encoded bytes (no framing) as protobuf canonical JSON (proto3 JSON mapping:
/// lowerCamelCase names, default values omitted, well-known types in their special forms,
/// enums by name or by number when unknown). Not on the hot path: it decodes into a
/// `DynamicMessage`.
pub fn to_json(
    reader: &MessageDescriptor,
    reader_bytes: &[u8],
) -> Result<serde_json::Value, TranscodeError> {
    let json_err = |reason: String| TranscodeError::Json {
        message: reader.full_name().to_owned(),
        reason,
    };
    let msg = DynamicMessage::decode(reader.clone(), reader_bytes)
        .map_err(|e| json_err(e.to_string()))?;
    serde_json::to_value(&msg).map_err(|e| json_err(e.to_string()))
}
