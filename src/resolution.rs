//! The resolution report: what a compiled writer → reader plan does to each field, in one type
//! shared by both engines.
//!
//! Owns: [`Change`] and [`ChangeKind`], the vocabulary of that report (kept, renamed, promoted,
//! defaulted, dropped, enum symbols, union branches) and its JSON shape. Must not touch: the
//! engines' rules (each engine fills the report while it compiles a plan: `avro::Plan::changes`,
//! `protobuf::Plan::changes`), bytes, I/O. The report is built once per plan, at compile time;
//! nothing here runs per message.
//!
//! Paths are the dotted form each engine's `dropped_fields()` uses (`shipping.geo`,
//! `items[].gift_wrap` for Avro array items, `attrs{}` for map values; Protobuf: `items.gift_wrap`).
//! One path may carry several entries (a renamed field whose type is also promoted; a union with
//! several branches remapped); a field with no other entry at its path is [`ChangeKind::Kept`].
//! Entries come depth-first: a record's writer fields in writer order (with what happened
//! inside each), then the reader-only fields it defaults.

use serde::Serialize;

/// What happens to one place in the schema when writer data is read with the reader schema.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// Dotted field path from the root (empty for the root value itself).
    pub path: String,
    /// What happens there. In JSON its fields sit beside `path`, tagged by `"change"`.
    #[serde(flatten)]
    pub kind: ChangeKind,
}

/// The kinds of [`Change`]. In JSON: `{"path": "quantity", "change": "promoted", "from": "int",
/// "to": "long"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum ChangeKind {
    /// The reader field reads the writer field of the same name (Protobuf: number and name) and
    /// the same type. For a record / message field, what happens inside it is listed under its
    /// own paths.
    Kept,
    /// The reader field reads a writer field of another name: Avro through a reader alias,
    /// Protobuf by field number. `from` is the writer field's name.
    Renamed { from: String },
    /// The value changes type without losing information: Avro's promotions (int → long,
    /// float → double, string ↔ bytes, ...); Protobuf's compatible widenings (int32 → int64,
    /// enum ↔ int32, singular → repeated, message ↔ bytes, ...).
    Promoted { from: String, to: String },
    /// Protobuf only: a wire-compatible type change the reader may read differently (int64 →
    /// int32 keeps the low 32 bits, a negative number read as unsigned, a repeated field read
    /// as singular keeps the last element). Reported per message as a narrowed loss.
    Narrowed { from: String, to: String },
    /// A reader field the writer does not have: the reader's default is used (Protobuf: the
    /// field's default value, what a reader sees for an absent field).
    Defaulted { value: serde_json::Value },
    /// A writer field the reader does not have. `optional`: Avro, the writer field has a default
    /// or is a union with `null`; Protobuf, it is not `required`. `preserved`: its bytes are
    /// still passed on as an unknown field (Protobuf with `unknown_fields: preserve`); always
    /// false for Avro.
    Dropped { optional: bool, preserved: bool },
    /// A writer enum symbol the reader enum lacks: `Some(reader default)`, or `None` when a
    /// datum holding it fails (Avro).
    EnumSymbol { symbol: String, to: Option<String> },
    /// Protobuf only: a writer enum value the reader's enum does not declare. Enums are open: the
    /// number is passed on, and a reader sees a bare number.
    UnknownEnumValue { symbol: String, number: i32 },
    /// A writer union branch that does not land on the same reader branch (Avro): a different
    /// reader branch index, a reader that is not a union (`to_index` None), a writer that is not a
    /// union (`writer_index` None), or no reader branch at all (`to` None: a datum using it
    /// fails). Types are described as in plan errors (`string`, `record Geo`).
    UnionBranch {
        writer: String,
        writer_index: Option<u32>,
        to: Option<String>,
        to_index: Option<u32>,
    },
}

impl ChangeKind {
    /// Anything but [`ChangeKind::Kept`]: a difference a user should see.
    pub fn is_difference(&self) -> bool {
        !matches!(self, ChangeKind::Kept)
    }

    /// Some datum may lose information or fail because of this change (what `check` calls
    /// lossy): a dropped field that is not preserved, a narrowing, an enum symbol or union
    /// branch that maps to a default or fails. Renames, promotions and defaults are not.
    pub fn may_lose_data(&self) -> bool {
        match self {
            ChangeKind::Dropped { preserved, .. } => !preserved,
            ChangeKind::Narrowed { .. }
            | ChangeKind::EnumSymbol { .. }
            | ChangeKind::UnknownEnumValue { .. } => true,
            ChangeKind::UnionBranch { to, .. } => to.is_none(),
            ChangeKind::Kept
            | ChangeKind::Renamed { .. }
            | ChangeKind::Promoted { .. }
            | ChangeKind::Defaulted { .. } => false,
        }
    }

    /// The tag used in JSON and tables: `kept`, `renamed`, `promoted`, ...
    pub fn name(&self) -> &'static str {
        match self {
            ChangeKind::Kept => "kept",
            ChangeKind::Renamed { .. } => "renamed",
            ChangeKind::Promoted { .. } => "promoted",
            ChangeKind::Narrowed { .. } => "narrowed",
            ChangeKind::Defaulted { .. } => "defaulted",
            ChangeKind::Dropped { .. } => "dropped",
            ChangeKind::EnumSymbol { .. } => "enum_symbol",
            ChangeKind::UnknownEnumValue { .. } => "unknown_enum_value",
            ChangeKind::UnionBranch { .. } => "union_branch",
        }
    }
}

impl Change {
    pub fn new(path: impl Into<String>, kind: ChangeKind) -> Self {
        Change {
            path: path.into(),
            kind,
        }
    }
}
