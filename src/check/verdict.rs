//! Verdicts: what a route's reader makes of one writer schema, and what the registry's
//! compatibility levels say about a subject's history.
//!
//! Owns: turning a compiled plan's resolution report into `ok` / `lossy` / `incompatible`, and
//! checking the seven Confluent compatibility levels over an ordered list of versions. Pure:
//! the caller fetched and parsed every schema. Must not: fetch, print, or decide exit codes.

use serde::Serialize;

use crate::resolution::{Change, ChangeKind};
use crate::schema::{CompileError, CompiledPlan, ParsedSchema, ReaderSchema};
use crate::wire::MessageIndexes;

/// What the route's consumer gets from records written with one writer schema.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Every record resolves and nothing the writer wrote is lost.
    Ok,
    /// Records resolve, but the reader does not see everything the writer wrote.
    Lossy { losses: Vec<Loss> },
    /// Records are dead-lettered: all of them (`conditional` false: the schemas do not
    /// resolve), or those holding a value the reader cannot take (`conditional` true).
    Incompatible {
        reason: String,
        conditional: bool,
        losses: Vec<Loss>,
    },
}

impl Verdict {
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Lossy { .. } => "lossy",
            Verdict::Incompatible { .. } => "incompatible",
        }
    }
}

/// One way a reader loses writer data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Loss {
    pub path: String,
    /// `dropped`, `narrowed`, `enum_symbol`, ...
    pub change: &'static str,
    /// A dropped field: the writer may leave it out (it has a default or is nullable; Protobuf:
    /// not `required`), so producers that do not fill it lose nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
    /// What happens, in words (`symbol REFUNDED becomes PENDING (the reader's default)`).
    pub detail: String,
}

/// The verdict for a compiled plan (or the error compiling it).
pub fn verdict(plan: Result<&CompiledPlan, &CompileError>) -> Verdict {
    let plan = match plan {
        Ok(p) => p,
        Err(e) => {
            return Verdict::Incompatible {
                reason: e.reason.clone(),
                conditional: false,
                losses: Vec::new(),
            };
        }
    };
    let mut losses = Vec::new();
    let mut failing = Vec::new();
    for c in plan.changes() {
        if !c.kind.may_lose_data() {
            continue;
        }
        match &c.kind {
            ChangeKind::EnumSymbol { symbol, to: None } => failing.push(format!(
                "{}: enum symbol {symbol} is not in the reader's enum, which has no default",
                shown(c)
            )),
            ChangeKind::UnionBranch {
                writer, to: None, ..
            } => failing.push(format!(
                "{}: the reader has no union branch for the writer's {writer}",
                shown(c)
            )),
            _ => losses.push(loss(c)),
        }
    }
    if !failing.is_empty() {
        return Verdict::Incompatible {
            reason: format!(
                "records holding these are dead-lettered: {}",
                failing.join("; ")
            ),
            conditional: true,
            losses,
        };
    }
    if losses.is_empty() {
        Verdict::Ok
    } else {
        Verdict::Lossy { losses }
    }
}

fn shown(c: &Change) -> &str {
    if c.path.is_empty() { "(root)" } else { &c.path }
}

fn loss(c: &Change) -> Loss {
    let (optional, detail) = match &c.kind {
        ChangeKind::Dropped { optional, .. } => (
            Some(*optional),
            if *optional {
                "dropped (optional in the writer)".to_string()
            } else {
                "dropped (the writer always fills it)".to_string()
            },
        ),
        ChangeKind::Narrowed { from, to } => (None, format!("narrowed from {from} to {to}")),
        ChangeKind::EnumSymbol {
            symbol,
            to: Some(to),
        } => (
            None,
            format!("enum symbol {symbol} becomes {to} (the reader's default)"),
        ),
        ChangeKind::UnknownEnumValue { symbol, number } => (
            None,
            format!("enum value {symbol} ({number}) reaches the reader as a bare number"),
        ),
        other => (None, other.name().replace('_', " ")),
    };
    Loss {
        path: shown(c).to_string(),
        change: c.kind.name(),
        optional,
        detail,
    }
}

/// A Confluent compatibility level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Level {
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

impl Level {
    pub const ALL: [Level; 6] = [
        Level::Backward,
        Level::BackwardTransitive,
        Level::Forward,
        Level::ForwardTransitive,
        Level::Full,
        Level::FullTransitive,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Level::Backward => "BACKWARD",
            Level::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Level::Forward => "FORWARD",
            Level::ForwardTransitive => "FORWARD_TRANSITIVE",
            Level::Full => "FULL",
            Level::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    fn backward(self) -> bool {
        !matches!(self, Level::Forward | Level::ForwardTransitive)
    }

    fn forward(self) -> bool {
        !matches!(self, Level::Backward | Level::BackwardTransitive)
    }

    fn transitive(self) -> bool {
        matches!(
            self,
            Level::BackwardTransitive | Level::ForwardTransitive | Level::FullTransitive
        )
    }
}

/// Whether a subject's history satisfies one level, and if not the first pair that breaks it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LevelCheck {
    pub level: Level,
    pub holds: bool,
    /// The first break: `version 3 cannot read version 2: <why>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken: Option<String>,
    /// The version that introduced the break (the newer of the pair).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken_by: Option<u32>,
}

/// Checks every level over `versions` (ascending), each registered as a writer and readable as
/// a reader. `reads(reader, writer)` is the same resolution the gateway runs, so "compatible"
/// here means "the reader's code can read the writer's records", nothing weaker.
pub fn levels<S>(
    versions: &[(u32, S)],
    mut reads: impl FnMut(&S, &S) -> Result<(), String>,
) -> Vec<LevelCheck> {
    // Results per ordered pair, computed once: (newer index, older index) both ways.
    let n = versions.len();
    let mut backward = vec![vec![None; n]; n]; // [new][old]: new reads old
    let mut forward = vec![vec![None; n]; n]; // [new][old]: old reads new
    for new in 1..n {
        for old in 0..new {
            backward[new][old] = Some(reads(&versions[new].1, &versions[old].1));
            forward[new][old] = Some(reads(&versions[old].1, &versions[new].1));
        }
    }
    Level::ALL
        .iter()
        .map(|&level| {
            let mut broken = None;
            'pairs: for new in 1..n {
                let olds: Vec<usize> = if level.transitive() {
                    (0..new).collect()
                } else {
                    vec![new - 1]
                };
                for old in olds {
                    let (vn, vo) = (versions[new].0, versions[old].0);
                    if level.backward() {
                        if let Some(Err(e)) = &backward[new][old] {
                            broken =
                                Some((vn, format!("version {vn} cannot read version {vo}: {e}")));
                            break 'pairs;
                        }
                    }
                    if level.forward() {
                        if let Some(Err(e)) = &forward[new][old] {
                            broken =
                                Some((vn, format!("version {vo} cannot read version {vn}: {e}")));
                            break 'pairs;
                        }
                    }
                }
            }
            LevelCheck {
                level,
                holds: broken.is_none(),
                broken_by: broken.as_ref().map(|b| b.0),
                broken: broken.map(|b| b.1),
            }
        })
        .collect()
}

/// Whether `reader` (as a route part reads it) reads `writer` (the message with the reader's
/// name for Protobuf, else the first): compiles, and no record can fail.
pub fn reads(
    writer: &ParsedSchema,
    indexes: &MessageIndexes,
    reader: &ReaderSchema,
) -> Result<(), String> {
    match verdict(CompiledPlan::compile(writer, indexes, reader).as_ref()) {
        Verdict::Incompatible { reason, .. } => Err(reason),
        Verdict::Ok | Verdict::Lossy { .. } => Ok(()),
    }
}
