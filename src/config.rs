//! The YAML configuration: serde types, defaults, and validation.
//!
//! Owns: what a config file may say and what it means. Every error names the path of the key it
//! came from (`routes[1].value.reader.subject: ...`), so a user can fix it without reading code.
//! Must not: connect to anything. Translation into rdkafka `ClientConfig`s lives here too, so a
//! collision between our settings and a user's raw librdkafka option is caught in one place.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use rdkafka::ClientConfig;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use thiserror::Error;

/// A config problem, with the path of the key that caused it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// Dotted path of the key, e.g. `routes[0].value.reader.subject`; `.` for the document root.
    pub path: String,
    pub message: String,
}

/// All problems found in one config file (validation reports every one, not just the first).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The cluster schemabridge consumes from.
    pub source: KafkaCluster,
    /// The cluster it produces to; the source cluster when absent (sidecar mode).
    #[serde(default)]
    pub target: Option<KafkaCluster>,
    /// Consumer group id. Run more replicas with the same id to scale out.
    pub group_id: String,
    pub registry: RegistryConfig,
    #[serde(default)]
    pub pipeline: PipelineConfig,
    pub routes: Vec<RouteConfig>,
    /// The telemetry listener (`/metrics`, `/healthz`, `/readyz`); off when absent.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
}

/// `telemetry:`: where `schemabridge run` serves metrics and health probes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `IP:port` to listen on, e.g. `0.0.0.0:9464`; no listener when absent.
    #[serde(default)]
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaCluster {
    #[serde(alias = "bootstrap.servers")]
    pub bootstrap_servers: String,
    /// Raw librdkafka properties passed through verbatim (security, compression, tuning).
    #[serde(default)]
    pub librdkafka: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Base URL of a Confluent-compatible schema registry. Exactly one of `url`/`urls`/`static_dir`.
    #[serde(default)]
    pub url: Option<String>,
    /// Several registry URLs, tried in order.
    #[serde(default)]
    pub urls: Vec<String>,
    /// Offline source: a directory holding `schemas.yaml` and the schema files it lists.
    #[serde(default)]
    pub static_dir: Option<PathBuf>,
    #[serde(default)]
    pub auth: Option<RegistryAuth>,
    #[serde(default = "defaults::registry_timeout_ms")]
    pub timeout_ms: u64,
    /// How many parsed schemas to keep in memory.
    #[serde(default = "defaults::cache_size")]
    pub cache_size: usize,
    /// First retry delay after a transient registry error; doubles up to `max_backoff_ms`.
    #[serde(default = "defaults::initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    #[serde(default = "defaults::max_backoff_ms")]
    pub max_backoff_ms: u64,
}

/// Registry credentials: `basic` or `bearer`, each read from an environment variable or a file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryAuth {
    #[serde(default)]
    pub basic: Option<BasicAuth>,
    #[serde(default)]
    pub bearer: Option<BearerAuth>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// File holding the password (trailing newline trimmed).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BearerAuth {
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

/// Reads a secret from exactly one of an environment variable or a file; `key` names the config
/// key for the error.
pub fn read_secret(
    key: &str,
    env: Option<&str>,
    file: Option<&Path>,
) -> Result<String, ConfigError> {
    let fail = |message: String| ConfigError {
        path: key.to_string(),
        message,
    };
    match (env, file) {
        (Some(name), None) => {
            std::env::var(name).map_err(|_| fail(format!("environment variable {name} is not set")))
        }
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
            .map_err(|e| fail(format!("cannot read {}: {e}", path.display()))),
        _ => Err(fail("set exactly one of the `_env` or `_file` keys".into())),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// How often stored offsets are committed.
    #[serde(default = "defaults::commit_interval_ms")]
    pub commit_interval_ms: u64,
    /// Messages produced but not yet acknowledged before consumption waits.
    #[serde(default = "defaults::max_in_flight")]
    pub max_in_flight: usize,
    /// How long shutdown waits for outstanding deliveries.
    #[serde(default = "defaults::shutdown_timeout_ms")]
    pub shutdown_timeout_ms: u64,
    /// At-least-once (idempotent producer, offsets committed after acks) or exactly-once
    /// (Kafka transactions, offsets committed inside them).
    #[serde(default)]
    pub delivery: DeliveryMode,
    /// Bytes (keys + values + headers) produced but not yet acknowledged before consumption
    /// pauses.
    #[serde(default = "defaults::max_in_flight_bytes")]
    pub max_in_flight_bytes: usize,
    /// Exactly-once: a transaction is committed at least this often...
    #[serde(default = "defaults::transaction_ms")]
    pub transaction_ms: u64,
    /// ...or after this many consumed records, whichever comes first.
    #[serde(default = "defaults::transaction_max_records")]
    pub transaction_max_records: usize,
    /// Exactly-once: the producer's `transactional.id`. Default `schemabridge-{group_id}-{host}`
    /// (host: `$HOSTNAME`, the pod name in Kubernetes), so a restarted replica fences its zombie
    /// and two replicas on different hosts never fence each other.
    #[serde(default)]
    pub transactional_id: Option<String>,
}

/// How consumed offsets and produced records are tied together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    /// Offsets are committed after the records for them are acknowledged; a crash re-delivers
    /// what was produced since the last commit.
    #[default]
    AtLeastOnce,
    /// Records and offsets are committed in one Kafka transaction; read_committed consumers see
    /// every record once.
    ExactlyOnce,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            commit_interval_ms: defaults::commit_interval_ms(),
            max_in_flight: defaults::max_in_flight(),
            shutdown_timeout_ms: defaults::shutdown_timeout_ms(),
            delivery: DeliveryMode::default(),
            max_in_flight_bytes: defaults::max_in_flight_bytes(),
            transaction_ms: defaults::transaction_ms(),
            transaction_max_records: defaults::transaction_max_records(),
            transactional_id: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub name: String,
    pub source: SourceTopics,
    /// Topic the resolved messages are produced to.
    pub target: String,
    #[serde(default)]
    pub partitioning: Partitioning,
    #[serde(default = "PartConfig::passthrough")]
    pub key: PartConfig,
    pub value: PartConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceTopics {
    #[serde(default)]
    pub topics: Vec<String>,
    /// A regular expression matched against whole topic names.
    #[serde(default)]
    pub topic_regex: Option<String>,
}

/// Which target partition a message goes to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Partitioning {
    /// Same partition number when source and target have the same partition count, else by key.
    #[default]
    Auto,
    /// Always the source partition number (the target must have at least as many partitions).
    Same,
    /// By key hash (murmur2, as the Java client), whatever the partition counts.
    Key,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartConfig {
    pub format: Format,
    /// The schema the downstream consumer reads. Required unless `format: passthrough`.
    #[serde(default)]
    pub reader: Option<ReaderConfig>,
    #[serde(default)]
    pub on_error: ErrorPolicy,
    /// Dead-letter topic; required when `on_error: dlq`.
    #[serde(default)]
    pub dlq: Option<String>,
    /// What to do when the reader would not see a field that held data.
    #[serde(default)]
    pub on_lossy: LossyPolicy,
    /// Protobuf only: keep the bytes of fields the reader does not know (`preserve`, default),
    /// so a reader that re-encodes does not lose them, or strip them (`drop`).
    #[serde(default)]
    pub unknown_fields: Option<UnknownFieldsPolicy>,
    /// `framed` (default): Confluent-framed reader encoding. `json`: the reader-resolved value
    /// as JSON (Avro JSON encoding / protobuf canonical JSON), for consumers without a registry.
    #[serde(default)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownFieldsPolicy {
    #[default]
    Preserve,
    Drop,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    #[default]
    Framed,
    Json,
}

impl PartConfig {
    fn passthrough() -> Self {
        PartConfig {
            format: Format::Passthrough,
            reader: None,
            on_error: ErrorPolicy::Dlq,
            dlq: None,
            on_lossy: LossyPolicy::Allow,
            unknown_fields: None,
            output: Output::Framed,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Avro,
    Protobuf,
    /// Bytes are forwarded unchanged.
    Passthrough,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorPolicy {
    /// Send the original message, with headers naming the error, to the DLQ topic.
    #[default]
    Dlq,
    /// Drop it (counted) and go on.
    Skip,
    /// Stop the gateway without committing past it.
    Halt,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossyPolicy {
    #[default]
    Allow,
    Dlq,
    Halt,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReaderConfig {
    /// Registry subject of the reader schema.
    #[serde(default)]
    pub subject: Option<String>,
    /// `latest` (default) or a version number.
    #[serde(default)]
    pub version: SubjectVersion,
    /// The reader schema from a file instead of the registry; needs `id`.
    #[serde(default)]
    pub schema_file: Option<PathBuf>,
    /// Registry id to frame messages with when the schema comes from `schema_file`.
    #[serde(default)]
    pub id: Option<u32>,
    /// Protobuf only: the fully-qualified reader message (`orders.v1.OrderPlaced`); the
    /// schema's first message when absent.
    #[serde(default)]
    pub message: Option<String>,
}

/// A subject version: a number or `latest`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SubjectVersion {
    #[default]
    Latest,
    Number(u32),
}

impl fmt::Display for SubjectVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubjectVersion::Latest => f.write_str("latest"),
            SubjectVersion::Number(n) => write!(f, "{n}"),
        }
    }
}

impl<'de> Deserialize<'de> for SubjectVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SubjectVersion;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a positive version number or \"latest\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SubjectVersion, E> {
                match u32::try_from(v) {
                    Ok(n) if n > 0 => Ok(SubjectVersion::Number(n)),
                    _ => Err(E::invalid_value(de::Unexpected::Unsigned(v), &self)),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SubjectVersion, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::invalid_value(de::Unexpected::Signed(v), &self)),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SubjectVersion, E> {
                if v == "latest" {
                    Ok(SubjectVersion::Latest)
                } else if let Ok(n) = v.parse::<u64>() {
                    self.visit_u64(n)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(v), &self))
                }
            }
        }
        d.deserialize_any(V)
    }
}

mod defaults {
    pub const fn registry_timeout_ms() -> u64 {
        10_000
    }
    pub const fn cache_size() -> usize {
        1_000
    }
    pub const fn initial_backoff_ms() -> u64 {
        100
    }
    pub const fn max_backoff_ms() -> u64 {
        30_000
    }
    pub const fn commit_interval_ms() -> u64 {
        5_000
    }
    pub const fn max_in_flight() -> usize {
        10_000
    }
    pub const fn shutdown_timeout_ms() -> u64 {
        30_000
    }
    pub const fn max_in_flight_bytes() -> usize {
        16 * 1024 * 1024
    }
    pub const fn transaction_ms() -> u64 {
        250
    }
    pub const fn transaction_max_records() -> usize {
        10_000
    }
}

/// librdkafka properties schemabridge sets itself because correctness depends on them; a user
/// setting one of them in a `librdkafka` map is an error, not a silent override.
const OWNED_CONSUMER_KEYS: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.offset.store",
    "enable.auto.commit",
    "auto.commit.interval.ms",
    "isolation.level",
];
const OWNED_PRODUCER_KEYS: &[&str] = &[
    "bootstrap.servers",
    "enable.idempotence",
    "acks",
    "transactional.id",
];

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                path: ".".into(),
                message: format!("cannot read config file {}: {e}", path.display()),
            }])
        })?;
        let mut config = Config::parse(&text)?;
        config.resolve_relative_paths(path.parent().unwrap_or(Path::new(".")));
        Ok(config)
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
        let de = serde_yaml::Deserializer::from_str(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            // serde_yaml prefixes its message with the path of the mapping it was reading
            // (`routes[0].value.reader: unknown field ...`) and appends " at line L column C";
            // use its path where it gives one (it names the mapping holding an unknown key),
            // else the path serde_path_to_error tracked.
            let inner = e.inner().to_string();
            let tracked = e.path().to_string();
            let (path, message) = match inner.split_once(": ") {
                Some((prefix, rest)) if !prefix.contains(' ') && tracked.starts_with(prefix) => {
                    (prefix.to_string(), rest.to_string())
                }
                _ => (tracked, inner),
            };
            ConfigErrors(vec![ConfigError { path, message }])
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Files named in the config are relative to the config file's directory.
    fn resolve_relative_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(dir) = self.registry.static_dir.as_mut() {
            fix(dir);
        }
        for route in &mut self.routes {
            for part in [&mut route.key, &mut route.value] {
                if let Some(file) = part.reader.as_mut().and_then(|r| r.schema_file.as_mut()) {
                    fix(file);
                }
            }
        }
    }

    /// Semantic checks serde cannot express. Reports every problem found.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errs = Vec::new();
        let mut err = |path: String, message: &str| {
            errs.push(ConfigError {
                path,
                message: message.to_string(),
            })
        };
        if self.source.bootstrap_servers.trim().is_empty() {
            err("source.bootstrap_servers".into(), "must not be empty");
        }
        check_owned_keys("source.librdkafka", &self.source.librdkafka, &mut err);
        if let Some(t) = &self.target {
            if t.bootstrap_servers.trim().is_empty() {
                err("target.bootstrap_servers".into(), "must not be empty");
            }
            check_owned_keys("target.librdkafka", &t.librdkafka, &mut err);
        }
        if self.group_id.trim().is_empty() {
            err("group_id".into(), "must not be empty");
        }
        let r = &self.registry;
        let sources = usize::from(r.url.is_some())
            + usize::from(!r.urls.is_empty())
            + usize::from(r.static_dir.is_some());
        if sources != 1 {
            err(
                "registry".into(),
                "set exactly one of `url`, `urls` or `static_dir`",
            );
        }
        for (i, url) in r.url.iter().chain(&r.urls).enumerate() {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                let key = if r.url.is_some() {
                    "registry.url".to_string()
                } else {
                    format!("registry.urls[{i}]")
                };
                err(key, "must start with http:// or https://");
            }
        }
        if let Some(auth) = &r.auth {
            let exactly_one = |env: bool, file: bool| env != file;
            match (&auth.basic, &auth.bearer) {
                (Some(b), None) => {
                    if !exactly_one(b.password_env.is_some(), b.password_file.is_some()) {
                        err(
                            "registry.auth.basic".into(),
                            "set exactly one of `password_env` or `password_file`",
                        );
                    }
                }
                (None, Some(b)) => {
                    if !exactly_one(b.token_env.is_some(), b.token_file.is_some()) {
                        err(
                            "registry.auth.bearer".into(),
                            "set exactly one of `token_env` or `token_file`",
                        );
                    }
                }
                _ => err(
                    "registry.auth".into(),
                    "set exactly one of `basic` or `bearer`",
                ),
            }
        }
        if r.cache_size == 0 {
            err("registry.cache_size".into(), "must be at least 1");
        }
        if r.initial_backoff_ms == 0 || r.initial_backoff_ms > r.max_backoff_ms {
            err(
                "registry.initial_backoff_ms".into(),
                "must be at least 1 and not above registry.max_backoff_ms",
            );
        }
        let p = &self.pipeline;
        for (key, value) in [
            ("pipeline.max_in_flight", p.max_in_flight as u64),
            ("pipeline.max_in_flight_bytes", p.max_in_flight_bytes as u64),
            ("pipeline.transaction_ms", p.transaction_ms),
            (
                "pipeline.transaction_max_records",
                p.transaction_max_records as u64,
            ),
            ("pipeline.commit_interval_ms", p.commit_interval_ms),
        ] {
            if value == 0 {
                err(key.into(), "must be at least 1");
            }
        }
        if p.transactional_id
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            err("pipeline.transactional_id".into(), "must not be empty");
        }
        if self.routes.is_empty() {
            err("routes".into(), "at least one route is required");
        }
        let mut names = std::collections::HashSet::new();
        for (i, route) in self.routes.iter().enumerate() {
            let at = |k: &str| format!("routes[{i}].{k}");
            if route.name.trim().is_empty() {
                err(at("name"), "must not be empty");
            } else if !names.insert(route.name.as_str()) {
                err(
                    at("name"),
                    &format!("duplicate route name `{}`", route.name),
                );
            }
            let src = &route.source;
            if src.topics.is_empty() == src.topic_regex.is_none() {
                err(at("source"), "set exactly one of `topics` or `topic_regex`");
            }
            if let Some(re) = &src.topic_regex
                && let Err(e) = regex::Regex::new(re)
            {
                err(at("source.topic_regex"), &format!("invalid regex: {e}"));
            }
            if route.target.trim().is_empty() {
                err(at("target"), "must not be empty");
            }
            if src.topics.iter().any(|t| t == &route.target) && self.target.is_none() {
                err(
                    at("target"),
                    "is also a source topic on the same cluster: messages would loop",
                );
            }
            for (part_name, part) in [("key", &route.key), ("value", &route.value)] {
                let at = |k: &str| format!("routes[{i}].{part_name}.{k}");
                match (part.format, &part.reader) {
                    (Format::Passthrough, Some(_)) => err(
                        at("reader"),
                        "not used with `format: passthrough`; remove it",
                    ),
                    (Format::Passthrough, None) => {}
                    (_, None) => err(at("reader"), "required for this format"),
                    (_, Some(reader)) => match (&reader.subject, &reader.schema_file) {
                        (Some(_), Some(_)) => err(
                            at("reader"),
                            "set either `subject` (+ `version`) or `schema_file` (+ `id`), not both",
                        ),
                        (None, None) => err(
                            at("reader.subject"),
                            "required (or `schema_file` with `id`)",
                        ),
                        (Some(s), None) => {
                            if s.trim().is_empty() {
                                err(at("reader.subject"), "must not be empty");
                            }
                            if reader.id.is_some() {
                                err(at("reader.id"), "only used with `schema_file`");
                            }
                        }
                        (None, Some(_)) => {
                            if reader.id.is_none() {
                                err(
                                    at("reader.id"),
                                    "required with `schema_file`: the registry id to frame messages with",
                                );
                            }
                        }
                    },
                }
                if part.format != Format::Protobuf {
                    if part.unknown_fields.is_some() {
                        err(at("unknown_fields"), "only used with `format: protobuf`");
                    }
                    if part.reader.as_ref().is_some_and(|r| r.message.is_some()) {
                        err(at("reader.message"), "only used with `format: protobuf`");
                    }
                }
                if part.format == Format::Passthrough && part.output != Output::Framed {
                    err(
                        at("output"),
                        "`json` needs a schema: not used with `format: passthrough`",
                    );
                }
                let needs_dlq =
                    part.on_error == ErrorPolicy::Dlq || part.on_lossy == LossyPolicy::Dlq;
                if part.format != Format::Passthrough && needs_dlq && part.dlq.is_none() {
                    err(
                        at("dlq"),
                        "required when `on_error` or `on_lossy` is `dlq` (the default for on_error)",
                    );
                }
                if let Some(dlq) = &part.dlq
                    && (dlq == &route.target || src.topics.contains(dlq))
                {
                    err(
                        at("dlq"),
                        "must differ from the route's source and target topics",
                    );
                }
            }
        }
        check_route_overlaps(&self.routes, self.target.is_none(), &mut err);
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errs))
        }
    }

    /// The cluster messages are produced to.
    pub fn target_cluster(&self) -> &KafkaCluster {
        self.target.as_ref().unwrap_or(&self.source)
    }

    /// rdkafka consumer settings. Offsets are committed explicitly by the delivery mode (never
    /// automatically), and only committed records of upstream transactions are read.
    pub fn consumer_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in &self.source.librdkafka {
            c.set(k, v);
        }
        c.set("bootstrap.servers", &self.source.bootstrap_servers)
            .set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "false");
        if !self.source.librdkafka.contains_key("auto.offset.reset") {
            c.set("auto.offset.reset", "earliest");
        }
        c
    }

    /// rdkafka producer settings: idempotent (per-partition order survives retries), acks=all,
    /// Java-compatible key partitioner; transactional under `delivery: exactly_once`.
    pub fn producer_config(&self) -> ClientConfig {
        let cluster = self.target_cluster();
        let mut c = ClientConfig::new();
        for (k, v) in &cluster.librdkafka {
            c.set(k, v);
        }
        c.set("bootstrap.servers", &cluster.bootstrap_servers)
            .set("enable.idempotence", "true")
            .set("acks", "all");
        if self.pipeline.delivery == DeliveryMode::ExactlyOnce {
            c.set("transactional.id", self.transactional_id());
        }
        if !cluster.librdkafka.contains_key("partitioner") {
            c.set("partitioner", "murmur2_random");
        }
        // schemabridge does not create topics (a typo'd target must not become a new topic).
        if !cluster.librdkafka.contains_key("allow.auto.create.topics") {
            c.set("allow.auto.create.topics", "false");
        }
        if !cluster.librdkafka.contains_key("linger.ms") {
            c.set("linger.ms", "5");
        }
        c
    }

    /// The producer's `message.max.bytes` (librdkafka's default when not set).
    pub fn max_message_bytes(&self) -> usize {
        self.target_cluster()
            .librdkafka
            .get("message.max.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000)
    }

    /// The exactly-once producer's `transactional.id`: `pipeline.transactional_id`, or
    /// `schemabridge-{group_id}-{host}` with the host from `$HOSTNAME` (the pod name in
    /// Kubernetes) or the system's host name: stable across restarts of one replica (so the
    /// restarted one fences its zombie) and distinct between replicas on different hosts.
    pub fn transactional_id(&self) -> String {
        if let Some(id) = &self.pipeline.transactional_id {
            return id.clone();
        }
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.trim().is_empty())
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
                    .filter(|h| !h.is_empty())
            })
            .unwrap_or_else(|| "local".to_string());
        format!("schemabridge-{}-{host}", self.group_id)
    }
}

/// Cross-route checks. A source topic two routes claim is refused (the first route in order
/// would take every message and the other would silently see none), and so is, when source and
/// target are one cluster, a target or DLQ topic that some route consumes: the gateway would
/// consume its own output (A→B plus B→A multiplies messages without end; a regex matching its
/// own target loops on its own). Regex against regex is only compared as text: whether two
/// patterns can match one name is not decidable here, and the literal/target checks catch the
/// configs seen in practice.
fn check_route_overlaps(
    routes: &[RouteConfig],
    same_cluster: bool,
    err: &mut impl FnMut(String, &str),
) {
    // Whole-name matchers, as the pipeline builds them (invalid ones are reported above).
    let regexes: Vec<Option<regex::Regex>> = routes
        .iter()
        .map(|r| {
            r.source
                .topic_regex
                .as_ref()
                .and_then(|re| regex::Regex::new(&format!("^(?:{re})$")).ok())
        })
        .collect();
    let label = |k: usize| routes.get(k).map_or("", |r| r.name.as_str());
    // The key path of the source entry of route `k` that consumes `topic`, if any.
    let consumer_of = |k: usize, topic: &str| -> Option<String> {
        let route = routes.get(k)?;
        if let Some(j) = route.source.topics.iter().position(|t| t == topic) {
            return Some(format!("routes[{k}].source.topics[{j}]"));
        }
        match regexes.get(k) {
            Some(Some(re)) if re.is_match(topic) => Some(format!("routes[{k}].source.topic_regex")),
            _ => None,
        }
    };
    for (i, route) in routes.iter().enumerate() {
        for (j, topic) in route.source.topics.iter().enumerate() {
            for k in 0..routes.len() {
                if k == i {
                    continue;
                }
                let Some(other) = consumer_of(k, topic) else {
                    continue;
                };
                if k < i {
                    err(
                        format!("routes[{i}].source.topics[{j}]"),
                        &format!(
                            "topic {topic} is already routed by {other} ({}); a topic can have one route only",
                            label(k)
                        ),
                    );
                } else if other.ends_with("topic_regex") {
                    // A later literal route is reported when the loop reaches it.
                    err(
                        format!("routes[{i}].source.topics[{j}]"),
                        &format!(
                            "topic {topic} is also matched by {other} ({}), which would never receive it; a topic can have one route only",
                            label(k)
                        ),
                    );
                }
            }
        }
        if let Some(re) = &route.source.topic_regex
            && let Some(k) = routes
                .iter()
                .take(i)
                .position(|r| r.source.topic_regex.as_ref() == Some(re))
        {
            err(
                format!("routes[{i}].source.topic_regex"),
                &format!(
                    "same pattern as routes[{k}].source.topic_regex ({}); a topic can have one route only",
                    label(k)
                ),
            );
        }
        if !same_cluster {
            continue;
        }
        let mut outputs = vec![("target".to_string(), &route.target)];
        for (part_name, part) in [("key", &route.key), ("value", &route.value)] {
            if let Some(dlq) = &part.dlq {
                outputs.push((format!("{part_name}.dlq"), dlq));
            }
        }
        for (key, topic) in outputs {
            for k in 0..routes.len() {
                // A route's own literal source as its target or DLQ is reported above.
                if k == i
                    && routes
                        .get(k)
                        .is_some_and(|r| r.source.topics.contains(topic))
                {
                    continue;
                }
                if let Some(other) = consumer_of(k, topic) {
                    err(
                        format!("routes[{i}].{key}"),
                        &format!(
                            "topic {topic} is consumed by {other} ({}) on the same cluster: the gateway would consume its own output and messages would loop",
                            label(k)
                        ),
                    );
                }
            }
        }
    }
}

fn check_owned_keys(at: &str, map: &BTreeMap<String, String>, err: &mut impl FnMut(String, &str)) {
    for key in map.keys() {
        let owned = if at.starts_with("source") {
            OWNED_CONSUMER_KEYS.contains(&key.as_str())
        } else {
            OWNED_PRODUCER_KEYS.contains(&key.as_str())
        };
        if owned {
            err(
                format!("{at}.{key}"),
                "is set by schemabridge (its delivery guarantees depend on it); remove it",
            );
        }
    }
    // The same cluster settings are used for the producer in sidecar mode.
    if at.starts_with("source") {
        for key in map.keys() {
            if OWNED_PRODUCER_KEYS.contains(&key.as_str())
                && !OWNED_CONSUMER_KEYS.contains(&key.as_str())
            {
                err(
                    format!("{at}.{key}"),
                    "is set by schemabridge (its delivery guarantees depend on it); remove it",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
source:
  bootstrap_servers: localhost:9092
group_id: bridge
registry:
  url: http://localhost:8081
routes:
  - name: orders
    source: { topics: [orders] }
    target: orders-v1
    value:
      format: avro
      reader: { subject: orders-value, version: 1 }
      dlq: orders-dlq
"#;

    fn errors(text: &str) -> Vec<String> {
        match Config::parse(text) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn good_config_parses_with_defaults() {
        let c = Config::parse(GOOD).unwrap();
        assert_eq!(c.routes[0].value.format, Format::Avro);
        assert_eq!(c.routes[0].key.format, Format::Passthrough);
        assert_eq!(c.routes[0].value.on_error, ErrorPolicy::Dlq);
        assert_eq!(
            c.routes[0].value.reader.as_ref().unwrap().version,
            SubjectVersion::Number(1)
        );
        assert_eq!(c.registry.timeout_ms, 10_000);
        assert_eq!(c.target_cluster().bootstrap_servers, "localhost:9092");
        let cc = c.consumer_config();
        assert_eq!(cc.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.producer_config().get("enable.idempotence"), Some("true"));
    }

    #[test]
    fn delivery_settings_drive_the_client_configs_and_zero_bounds_are_refused() {
        let eos = GOOD.replace(
            "routes:",
            "pipeline:\n  delivery: exactly_once\n  transactional_id: bridge-0\nroutes:",
        );
        let c = Config::parse(&eos).unwrap();
        assert_eq!(
            c.producer_config().get("transactional.id"),
            Some("bridge-0")
        );
        assert_eq!(
            c.consumer_config().get("isolation.level"),
            Some("read_committed")
        );
        assert_eq!(c.consumer_config().get("enable.auto.commit"), Some("false"));
        let alo = Config::parse(GOOD).unwrap();
        assert_eq!(alo.producer_config().get("transactional.id"), None);

        let zeros = GOOD.replace(
            "routes:",
            "pipeline:\n  max_in_flight_bytes: 0\n  transaction_ms: 0\n  transactional_id: \" \"\nroutes:",
        );
        let errs = errors(&zeros);
        assert_eq!(
            errs,
            [
                "pipeline.max_in_flight_bytes: must be at least 1",
                "pipeline.transaction_ms: must be at least 1",
                "pipeline.transactional_id: must not be empty",
            ]
        );
        let owned = GOOD.replace(
            "  bootstrap_servers: localhost:9092\n",
            "  bootstrap_servers: localhost:9092\n  librdkafka: { isolation.level: read_uncommitted }\n",
        );
        assert!(
            errors(&owned)[0].starts_with("source.librdkafka"),
            "{:?}",
            errors(&owned)
        );
    }

    #[test]
    fn typo_key_names_its_path() {
        let text = GOOD.replace("reader: { subject:", "reader: { subjet:");
        let errs = errors(&text);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("routes[0].value.reader: unknown field `subjet`"),
            "{errs:?}"
        );
    }

    #[test]
    fn missing_required_key_names_it() {
        let text = GOOD.replace("group_id: bridge\n", "");
        let errs = errors(&text);
        assert!(errs[0].contains("missing field `group_id`"), "{errs:?}");
        let text = GOOD.replace("    target: orders-v1\n", "");
        let errs = errors(&text);
        assert!(
            errs[0].starts_with("routes[0]: missing field `target`"),
            "{errs:?}"
        );
    }

    #[test]
    fn bad_values_name_their_keys() {
        let text = GOOD.replace("version: 1", "version: newest");
        assert!(errors(&text)[0].starts_with("routes[0].value.reader.version: invalid value"));
        let text = GOOD.replace("format: avro", "format: thrift");
        assert!(errors(&text)[0].starts_with("routes[0].value.format: unknown variant `thrift`"));
        let text = GOOD.replace("      dlq: orders-dlq\n", "");
        assert_eq!(
            errors(&text),
            vec![
                "routes[0].value.dlq: required when `on_error` or `on_lossy` is `dlq` (the default for on_error)"
            ]
        );
    }

    #[test]
    fn semantic_errors_are_all_reported() {
        let text = GOOD
            .replace("url: http://localhost:8081", "url: localhost:8081")
            .replace("target: orders-v1", "target: orders")
            .replace(
                "source:\n  bootstrap_servers: localhost:9092",
                "source:\n  bootstrap_servers: localhost:9092\n  librdkafka: { enable.auto.offset.store: 'true' }",
            );
        let errs = errors(&text);
        assert_eq!(
            errs,
            vec![
                "source.librdkafka.enable.auto.offset.store: is set by schemabridge (its delivery guarantees depend on it); remove it",
                "registry.url: must start with http:// or https://",
                "routes[0].target: is also a source topic on the same cluster: messages would loop",
            ]
        );
    }

    #[test]
    fn protobuf_only_keys_are_refused_elsewhere() {
        let text = GOOD.replace(
            "      dlq: orders-dlq\n",
            "      dlq: orders-dlq\n      unknown_fields: drop\n",
        );
        assert_eq!(
            errors(&text),
            vec!["routes[0].value.unknown_fields: only used with `format: protobuf`"]
        );
        let text = text.replace("format: avro", "format: protobuf");
        let c = Config::parse(&text).unwrap();
        assert_eq!(
            c.routes[0].value.unknown_fields,
            Some(UnknownFieldsPolicy::Drop)
        );
        assert_eq!(
            c.producer_config().get("allow.auto.create.topics"),
            Some("false")
        );
    }

    #[test]
    fn schema_file_reader_needs_an_id() {
        let text = GOOD.replace(
            "reader: { subject: orders-value, version: 1 }",
            "reader: { schema_file: v1.avsc }",
        );
        assert_eq!(
            errors(&text),
            vec![
                "routes[0].value.reader.id: required with `schema_file`: the registry id to frame messages with"
            ]
        );
    }

    /// `GOOD` plus a second route (`extra`, one YAML list item).
    fn with_route(extra: &str) -> String {
        format!("{GOOD}{extra}")
    }

    #[test]
    fn a_second_route_on_an_already_routed_topic_is_refused_naming_both() {
        let text = with_route(
            "  - name: orders-again\n    source: { topics: [payments, orders] }\n    target: orders-v2\n    value: { format: passthrough }\n",
        );
        assert_eq!(
            errors(&text),
            vec![
                "routes[1].source.topics[1]: topic orders is already routed by routes[0].source.topics[0] (orders); a topic can have one route only"
            ]
        );
    }

    #[test]
    fn a_literal_topic_matched_by_another_routes_regex_is_refused_either_way_round() {
        let later_regex = with_route(
            "  - name: all-orders\n    source: { topic_regex: \"orders|payments\" }\n    target: archive\n    value: { format: passthrough }\n",
        );
        assert_eq!(
            errors(&later_regex),
            vec![
                "routes[0].source.topics[0]: topic orders is also matched by routes[1].source.topic_regex (all-orders), which would never receive it; a topic can have one route only"
            ]
        );
        let earlier_regex = GOOD
            .replace(
                "source: { topics: [orders] }",
                "source: { topic_regex: \"orders|payments\" }",
            )
            .replace("target: orders-v1", "target: archive")
            + "  - name: orders-literal\n    source: { topics: [orders] }\n    target: out\n    value: { format: passthrough }\n";
        assert_eq!(
            errors(&earlier_regex),
            vec![
                "routes[1].source.topics[0]: topic orders is already routed by routes[0].source.topic_regex (orders); a topic can have one route only"
            ]
        );
        let same_pattern =
            earlier_regex.replace("topics: [orders] }", "topic_regex: \"orders|payments\" }");
        assert_eq!(
            errors(&same_pattern),
            vec![
                "routes[1].source.topic_regex: same pattern as routes[0].source.topic_regex (orders); a topic can have one route only"
            ]
        );
    }

    #[test]
    fn routes_feeding_each_other_on_one_cluster_are_a_loop() {
        let text = with_route(
            "  - name: back\n    source: { topics: [orders-v1] }\n    target: orders\n    value: { format: passthrough }\n",
        );
        assert_eq!(
            errors(&text),
            vec![
                "routes[0].target: topic orders-v1 is consumed by routes[1].source.topics[0] (back) on the same cluster: the gateway would consume its own output and messages would loop",
                "routes[1].target: topic orders is consumed by routes[0].source.topics[0] (orders) on the same cluster: the gateway would consume its own output and messages would loop",
            ]
        );
        // Bridge mode: the targets are on another cluster, nothing loops.
        let bridged = text.replace(
            "group_id: bridge",
            "target: { bootstrap_servers: other:9092 }\ngroup_id: bridge",
        );
        Config::parse(&bridged).unwrap();
    }

    #[test]
    fn a_target_or_dlq_matched_by_a_source_regex_is_a_loop() {
        let own = GOOD.replace(
            "source: { topics: [orders] }",
            "source: { topic_regex: \"orders.*\" }",
        );
        assert_eq!(
            errors(&own),
            vec![
                "routes[0].target: topic orders-v1 is consumed by routes[0].source.topic_regex (orders) on the same cluster: the gateway would consume its own output and messages would loop",
                "routes[0].value.dlq: topic orders-dlq is consumed by routes[0].source.topic_regex (orders) on the same cluster: the gateway would consume its own output and messages would loop",
            ]
        );
        let other = with_route(
            "  - name: v1-mirror\n    source: { topic_regex: \".*-v1\" }\n    target: mirror\n    value: { format: passthrough }\n",
        );
        assert_eq!(
            errors(&other),
            vec![
                "routes[0].target: topic orders-v1 is consumed by routes[1].source.topic_regex (v1-mirror) on the same cluster: the gateway would consume its own output and messages would loop"
            ]
        );
        let bridged = own.replace(
            "group_id: bridge",
            "target: { bootstrap_servers: other:9092 }\ngroup_id: bridge",
        );
        Config::parse(&bridged).unwrap();
    }
}
