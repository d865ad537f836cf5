//! `schemabridge check`: before a producer ships a schema, what every consumer behind a route
//! will receive.
//!
//! Owns: collecting the writer schemas a route part can meet (every version registered under
//! its source subjects, a schema file not registered yet, the ids actually seen on the topic),
//! resolving each against the part's reader through the same schema layer and compiled plans
//! the gateway uses, and the subject's compatibility levels. Verdicts are in `verdict.rs`
//! (pure), the topic scan in `scan.rs`, the table and JSON in `render.rs`. Must not: produce,
//! commit offsets, register schemas, or decide the process exit code (the caller reads
//! [`Report::failed`]).

mod render;
mod scan;
mod verdict;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use verdict::{Level, LevelCheck, Loss, Verdict};

use crate::config::{Config, Format, PartConfig, RouteConfig, SubjectVersion};
use crate::protobuf;
use crate::registry::{Backoff, LookupError, RegistryError, SchemaSource, retry_transient};
use crate::schema::{
    CachePolicy, CompiledPlan, ParsedSchema, ReaderSchema, Readers, ResolveError, Schemas,
    TargetRegistry,
};
use crate::wire::{MessageIndexes, SchemaId};

/// What to check besides the registered history.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// A schema file not registered yet ("what happens if I ship this?"), checked against the
    /// `part` reader of every route (Avro `.avsc`, or Protobuf `.proto` with its imports next to
    /// it, by the route's format).
    pub writer_schema: Option<PathBuf>,
    /// Which part `writer_schema` is for: `value` (default) or `key`.
    pub part: Part,
    /// Also read the source topics from the beginning (without committing) and check every
    /// writer id actually seen there.
    pub scan_topic: bool,
    /// Only these routes (by name); all when empty.
    pub routes: Vec<String>,
    /// Subjects to check instead of the source topics' `<topic>-value` / `<topic>-key`
    /// (for producers using RecordNameStrategy).
    pub subjects: Vec<String>,
    /// Give up (exit 2) when the registry or the brokers do not answer for this long.
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    Key,
    #[default]
    Value,
}

impl Part {
    pub fn name(self) -> &'static str {
        match self {
            Part::Key => "key",
            Part::Value => "value",
        }
    }
}

/// Everything `check` found, in config order.
#[derive(Debug, Serialize)]
pub struct Report {
    pub parts: Vec<PartReport>,
    /// Route parts not checked (passthrough, or no reader schema), by `route.part`.
    pub skipped: Vec<String>,
}

/// One route part: its reader and every writer schema it can meet.
#[derive(Debug, Serialize)]
pub struct PartReport {
    pub route: String,
    pub part: Part,
    pub format: &'static str,
    /// Where the reader schema came from (`subject orders-value version 1`) and its id.
    pub reader: String,
    pub reader_id: SchemaId,
    pub writers: Vec<WriterReport>,
    pub subjects: Vec<SubjectReport>,
    /// Records on the source topics (with `--scan-topic`) that are not Confluent-framed: each
    /// is dead-lettered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unframed: Option<u64>,
}

/// One writer schema and what the part's reader makes of it.
#[derive(Debug, Serialize)]
pub struct WriterReport {
    /// `orders-value version 3 (id 7)`, `file order_v3.avsc`, `id 9 (seen on the topic)`.
    pub writer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<SchemaId>,
    /// Records with this writer id on the source topics (with `--scan-topic`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seen: Option<u64>,
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// A subject's history as the registry's compatibility levels see it.
#[derive(Debug, Serialize)]
pub struct SubjectReport {
    pub subject: String,
    pub versions: Vec<u32>,
    /// The level the registry enforces for the subject (`None`: a static schema directory).
    pub registry_level: Option<String>,
    pub levels: Vec<LevelCheck>,
}

impl Report {
    /// Exit 1 territory: some writer would be dead-lettered (or, `strict`, is lossy).
    pub fn failed(&self, strict: bool) -> bool {
        self.writers().any(|w| match w.verdict {
            Verdict::Incompatible { .. } => true,
            Verdict::Lossy { .. } => strict,
            Verdict::Ok => false,
        }) || self.parts.iter().any(|p| p.unframed.unwrap_or(0) > 0)
    }

    fn writers(&self) -> impl Iterator<Item = &WriterReport> {
        self.parts.iter().flat_map(|p| p.writers.iter())
    }

    /// The report as JSON, with `"result": "pass" | "fail"` as `failed` decides.
    pub fn json(&self, strict: bool) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(map) = v.as_object_mut() {
            let result = if self.failed(strict) { "fail" } else { "pass" };
            map.insert("result".into(), result.into());
            map.insert("strict".into(), strict.into());
        }
        v
    }

    /// Human-readable table.
    pub fn table(&self, strict: bool) -> String {
        render::table(self, strict)
    }
}

/// Why `check` could not produce a report (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{0}")]
    Config(String),
    #[error("gave up after {0:?}: {1}")]
    Unavailable(Duration, String),
}

/// Runs the check for every route part of `config`, giving up after `opts.timeout`.
pub async fn check(config: &Config, opts: &CheckOptions) -> Result<Report, CheckError> {
    tokio::time::timeout(opts.timeout, check_all(config, opts))
        .await
        .unwrap_or_else(|_| {
            Err(CheckError::Unavailable(
                opts.timeout,
                "the schema registry or the brokers did not answer in time".into(),
            ))
        })
}

async fn check_all(config: &Config, opts: &CheckOptions) -> Result<Report, CheckError> {
    // Retries end when `check` times out and drops this future; nothing else cancels them.
    let never = CancellationToken::new();
    let source = Arc::new(
        SchemaSource::from_config(&config.registry)
            .map_err(|e| CheckError::Config(e.to_string()))?,
    );
    let backoff = Backoff::from_config(&config.registry);
    let policy = CachePolicy {
        capacity: config.registry.cache_size,
        not_found_ttl: Duration::from_millis(config.registry.not_found_ttl_ms),
    };
    // Bridge mode: readers are the target registry's, as the gateway selects them, but `check`
    // never registers one (a reader missing there is reported, as `run` would fail on it).
    let target = match &config.target_registry {
        Some(t) => Some(TargetRegistry {
            register: false,
            ..TargetRegistry::from_config(t).map_err(|e| CheckError::Config(e.to_string()))?
        }),
        None => None,
    };
    let schemas = Schemas::new(source.clone(), backoff, policy, never.clone());
    let mut ctx = Ctx {
        readers: schemas.readers(target),
        schemas,
        source,
        backoff,
        never,
        timeout: opts.timeout,
    };
    for name in &opts.routes {
        if !config.routes.iter().any(|r| &r.name == name) {
            return Err(CheckError::Config(format!(
                "--route {name}: no route of that name in the config"
            )));
        }
    }
    let scanned = if opts.scan_topic {
        let config = config.clone();
        let routes = opts.routes.clone();
        let timeout = opts.timeout;
        tokio::task::spawn_blocking(move || scan::scan(&config, &routes, timeout))
            .await
            .map_err(|e| CheckError::Config(format!("topic scan: {e}")))?
            .map_err(|e| CheckError::Unavailable(opts.timeout, e))?
    } else {
        scan::Seen::default()
    };

    let mut report = Report {
        parts: Vec::new(),
        skipped: Vec::new(),
    };
    for (i, route) in config.routes.iter().enumerate() {
        if !opts.routes.is_empty() && !opts.routes.contains(&route.name) {
            continue;
        }
        for (part, cfg) in [(Part::Key, &route.key), (Part::Value, &route.value)] {
            let at = format!("routes[{i}].{}.reader", part.name());
            let Some(reader) = ctx.reader(&at, cfg).await? else {
                if cfg.format.is_some() || part == Part::Value {
                    report
                        .skipped
                        .push(format!("{}.{}", route.name, part.name()));
                }
                continue;
            };
            let mut pr = ctx
                .part(
                    route,
                    part,
                    cfg,
                    &reader,
                    opts,
                    scanned.ids(&route.name, part),
                )
                .await?;
            if opts.scan_topic {
                pr.unframed = Some(scanned.unframed(&route.name, part));
            }
            report.parts.push(pr);
        }
    }
    Ok(report)
}

struct Ctx {
    schemas: Schemas,
    /// Reader selection (in the target registry in bridge mode).
    readers: Readers,
    source: Arc<SchemaSource>,
    backoff: Backoff,
    /// Never cancelled: `check` bounds the whole run with a timeout instead.
    never: CancellationToken,
    timeout: Duration,
}

impl Ctx {
    fn unavailable(&self, what: String) -> CheckError {
        CheckError::Unavailable(self.timeout, what)
    }

    fn resolve_error(&self, e: ResolveError) -> CheckError {
        match e {
            ResolveError::Cancelled => {
                self.unavailable("the schema registry did not answer".into())
            }
            ResolveError::Failed(f) => CheckError::Config(f.message),
        }
    }

    async fn reader(
        &mut self,
        at: &str,
        part: &PartConfig,
    ) -> Result<Option<ReaderSchema>, CheckError> {
        self.readers
            .reader(at, part)
            .await
            .map_err(|e| self.resolve_error(e))
    }

    /// One registry call, retried while the registry is unavailable (until `check` times out).
    async fn call<T, F, Fut>(
        &self,
        what: &str,
        call: F,
    ) -> Result<Result<T, RegistryError>, CheckError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, RegistryError>>,
    {
        match retry_transient(what, self.backoff, &self.never, call).await {
            Ok(v) => Ok(Ok(v)),
            Err(LookupError::Registry(e)) => Ok(Err(e)),
            Err(LookupError::Cancelled) => {
                Err(self.unavailable(format!("{what}: the schema registry did not answer")))
            }
        }
    }

    async fn part(
        &mut self,
        route: &RouteConfig,
        part: Part,
        cfg: &PartConfig,
        reader: &ReaderSchema,
        opts: &CheckOptions,
        seen: BTreeMap<(SchemaId, MessageIndexes), u64>,
    ) -> Result<PartReport, CheckError> {
        let mut pr = PartReport {
            route: route.name.clone(),
            part,
            format: match cfg.format {
                Some(Format::Avro) => "avro",
                Some(Format::Protobuf) => "protobuf",
                None => "passthrough",
            },
            reader: reader.origin.clone(),
            reader_id: reader.id,
            writers: Vec::new(),
            subjects: Vec::new(),
            unframed: None,
        };
        for subject in self.subjects(route, part, opts).await? {
            self.subject(&subject, reader, &mut pr).await?;
        }
        if let (Some(path), true) = (&opts.writer_schema, part == opts.part) {
            let kind = cfg.format.unwrap_or(Format::Avro);
            let parsed = crate::schema::parse_file(path, kind, &[])
                .map_err(|e| CheckError::Config(format!("--writer-schema: {e}")))?;
            let indexes = writer_message(&parsed, reader);
            pr.writers.push(WriterReport {
                writer: format!("file {}", path.display()),
                subject: None,
                version: None,
                id: None,
                seen: None,
                verdict: verdict::verdict(
                    CompiledPlan::compile(&parsed, &indexes, reader).as_ref(),
                ),
            });
        }
        for ((id, indexes), count) in seen {
            if let Some(w) = pr
                .writers
                .iter_mut()
                .find(|w| w.id == Some(id) && w.seen.is_none())
            {
                w.seen = Some(count);
                continue;
            }
            let verdict = match self.schemas.writer(id).await {
                Ok(parsed) => {
                    verdict::verdict(CompiledPlan::compile(&parsed, &indexes, reader).as_ref())
                }
                Err(ResolveError::Failed(f)) => Verdict::Incompatible {
                    reason: f.message,
                    conditional: false,
                    losses: Vec::new(),
                },
                Err(ResolveError::Cancelled) => {
                    return Err(self.unavailable(format!(
                        "writer schema id {id}: the schema registry did not answer"
                    )));
                }
            };
            pr.writers.push(WriterReport {
                writer: format!("id {id} (seen on the topic)"),
                subject: None,
                version: None,
                id: Some(id),
                seen: Some(count),
                verdict,
            });
        }
        Ok(pr)
    }

    /// The subjects a route part's producers register under: `--subject`, else
    /// `<topic>-<part>` for each source topic (for a `topic_regex`, every registered subject
    /// whose topic part matches).
    async fn subjects(
        &self,
        route: &RouteConfig,
        part: Part,
        opts: &CheckOptions,
    ) -> Result<Vec<String>, CheckError> {
        if !opts.subjects.is_empty() {
            return Ok(opts.subjects.clone());
        }
        let suffix = format!("-{}", part.name());
        let mut subjects: Vec<String> = route
            .source
            .topics
            .iter()
            .map(|t| format!("{t}{suffix}"))
            .collect();
        if let Some(re) = &route.source.topic_regex {
            let re = regex::Regex::new(&format!("^(?:{re})$")).map_err(|e| {
                CheckError::Config(format!("route {}: topic_regex: {e}", route.name))
            })?;
            let all = self
                .call("the subject list", || self.source.subjects())
                .await?
                .map_err(|e| CheckError::Config(e.to_string()))?;
            subjects.extend(
                all.into_iter()
                    .filter(|s| s.strip_suffix(&suffix).is_some_and(|t| re.is_match(t))),
            );
        }
        Ok(subjects)
    }

    /// Every version of `subject` as a writer for `reader`, and the subject's levels.
    async fn subject(
        &mut self,
        subject: &str,
        reader: &ReaderSchema,
        pr: &mut PartReport,
    ) -> Result<(), CheckError> {
        let versions = match self
            .call(&format!("versions of subject {subject}"), || {
                self.source.versions(subject)
            })
            .await?
        {
            Ok(v) => v,
            Err(RegistryError::NotFound(_)) => Vec::new(),
            Err(e) => return Err(CheckError::Config(e.to_string())),
        };
        // One attempt, not retried: a registry without the config API (or that refuses it)
        // costs the report this line, not the whole check.
        let registry_level = match self.source.compatibility(subject).await {
            Ok(level) => level,
            Err(RegistryError::NotFound(_)) => None,
            Err(e) => Some(format!("unknown ({e})")),
        };
        let mut history: Vec<(u32, Arc<ParsedSchema>)> = Vec::new();
        for v in &versions {
            let what = format!("subject {subject} version {v}");
            let registered = self
                .call(&what, || {
                    self.source.by_subject(subject, SubjectVersion::Number(*v))
                })
                .await?
                .map_err(|e| CheckError::Config(e.to_string()))?;
            let writer = format!("{subject} version {v} (id {})", registered.id);
            // Parsed from the answer already in hand (references fetched), not asked for
            // again by id.
            let verdict = match self.schemas.load(&registered).await.map(Arc::new) {
                Ok(parsed) => {
                    let indexes = writer_message(&parsed, reader);
                    history.push((*v, parsed.clone()));
                    verdict::verdict(CompiledPlan::compile(&parsed, &indexes, reader).as_ref())
                }
                Err(ResolveError::Failed(f)) => Verdict::Incompatible {
                    reason: f.message,
                    conditional: false,
                    losses: Vec::new(),
                },
                Err(e) => return Err(self.resolve_error(e)),
            };
            pr.writers.push(WriterReport {
                writer,
                subject: Some(subject.to_string()),
                version: Some(*v),
                id: Some(registered.id),
                seen: None,
                verdict,
            });
        }
        let levels = verdict::levels(&history, |r, w| {
            let as_reader = as_reader(r, reader);
            verdict::reads(w, &writer_message(w, &as_reader), &as_reader)
        });
        pr.subjects.push(SubjectReport {
            subject: subject.to_string(),
            versions,
            registry_level,
            levels,
        });
        Ok(())
    }
}

/// The writer message to check: for Protobuf, the message with the reader message's full name
/// if the writer schema has one, else the schema's first message; Avro has one.
fn writer_message(writer: &ParsedSchema, reader: &ReaderSchema) -> MessageIndexes {
    match (writer, &reader.message) {
        (ParsedSchema::Protobuf { pool, main }, Some((msg, _))) => pool
            .get_message_by_name(msg.full_name())
            .filter(|m| m.parent_file().name() == main)
            .map(|m| protobuf::indexes_for_message(&m))
            .unwrap_or_else(MessageIndexes::first),
        _ => MessageIndexes::first(),
    }
}

/// `schema` in the role of a reader, with the route reader's options (for the levels).
fn as_reader(schema: &Arc<ParsedSchema>, route_reader: &ReaderSchema) -> ReaderSchema {
    let message = match &**schema {
        ParsedSchema::Protobuf { pool, main } => {
            let idx = writer_message(schema, route_reader);
            protobuf::message_for_indexes(pool, main, &idx)
                .ok()
                .map(|m| (m, idx))
        }
        ParsedSchema::Avro(_) => None,
    };
    ReaderSchema {
        schema: schema.clone(),
        message,
        ..route_reader.clone()
    }
}
