//! The YAML configuration: what a config file may say, what it means, and the Kafka client
//! settings that follow from it.
//!
//! Owns: reading a config file into a validated [`Config`], in stages:
//! - `load`: YAML syntax, then `interpolate` (`${VAR}`, `${VAR:default}`, `${file:PATH}` in
//!   values), then serde into the shapes of `file` (the file format and its defaults), with
//!   every error reported;
//! - `validate`: the checks serde cannot express, converting each "one of these keys" group
//!   into an enum (registry urls | static dir, auth basic | bearer, reader subject | file);
//! - `preflight` (on demand, by `validate-config` and `run`): secrets and files readable, every
//!   librdkafka property accepted, the clients built without connecting;
//! - `kafka`: the librdkafka settings of each client role (so a collision between our settings
//!   and a user's raw librdkafka option is caught in one place);
//! - `secret` and `summary`: secrets that print as `***`, and the redacted effective config.
//!
//! Every error names the path of the key it came from (`routes[1].value.reader.subject: ...`),
//! so a user can fix it without reading code, and never holds a secret's or a librdkafka
//! property's value. Must not: connect to anything.

mod file;
mod interpolate;
mod kafka;
mod load;
mod preflight;
mod secret;
mod summary;
#[cfg(test)]
mod tests;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;

pub use file::{
    ArchiveCodec, ArchiveCompression, ArchiveDictionary, ArchiveFormat, ArchiveStatistics,
    DeliveryMode, ErrorPolicy, Format, KafkaCluster, LossyPolicy, Output, Partitioning,
    PipelineConfig, RollFile as Roll, SourceTopics, SubjectVersion, TelemetryConfig,
};
pub use kafka::ClientRole;
pub use preflight::{Preflight, kafka_error_text};
pub use secret::{Secret, SecretRef};
pub use summary::{is_secret_property, redact_url};
pub(crate) use validate::rekey as rekey_registry_path;

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

/// A validated configuration: what `schemabridge run` does. Built only by [`Config::load`] or
/// [`Config::parse`].
#[derive(Debug, Clone)]
pub struct Config {
    /// The cluster schemabridge consumes from.
    pub source: KafkaCluster,
    /// The cluster it produces to; the source cluster when absent (sidecar mode).
    pub target: Option<KafkaCluster>,
    /// Consumer group id.
    pub group_id: String,
    /// Static group membership: this replica's `group.instance.id` (e.g. the pod name). A
    /// restart within the session timeout gets its partitions back without a rebalance.
    pub group_instance_id: Option<String>,
    pub registry: RegistryConfig,
    /// Bridge mode between two registries (`target_registry`): reader schemas are selected in
    /// (and optionally registered with) this registry, and output is framed with its ids.
    pub target_registry: Option<TargetRegistryConfig>,
    pub pipeline: PipelineConfig,
    pub routes: Vec<RouteConfig>,
    pub telemetry: TelemetryConfig,
}

/// `registry:`: where schemas come from.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    pub source: RegistrySource,
    pub auth: Option<RegistryAuth>,
    pub timeout_ms: u64,
    /// How many parsed schemas to keep in memory.
    pub cache_size: usize,
    /// How long a "no such schema id" answer is believed before the registry is asked again.
    pub not_found_ttl_ms: u64,
    /// First retry delay after a transient registry error; doubles up to `max_backoff_ms`.
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// `registry.tls`: CA bundle and client identity for https URLs.
    pub tls: Option<crate::registry::tls::RegistryTls>,
    /// How often readers that can change (`version: latest`, `metadata`) are selected again.
    pub reader_refresh_ms: u64,
    /// The config key this block came from (`registry` or `target_registry`), for errors.
    pub key: &'static str,
}

impl RegistryConfig {
    /// A registry at `url` with every other setting at its default, for commands given only a
    /// URL (`explain --registry`).
    pub fn for_url(url: &str) -> Self {
        use file::defaults;
        RegistryConfig {
            source: RegistrySource::Urls(vec![url.to_owned()]),
            auth: None,
            timeout_ms: defaults::registry_timeout_ms(),
            cache_size: defaults::cache_size(),
            not_found_ttl_ms: defaults::not_found_ttl_ms(),
            initial_backoff_ms: defaults::initial_backoff_ms(),
            max_backoff_ms: defaults::max_backoff_ms(),
            tls: None,
            reader_refresh_ms: defaults::reader_refresh_ms(),
            key: "registry",
        }
    }
}

/// `target_registry:`: the registry whose ids the output is framed with (bridge mode).
#[derive(Debug, Clone)]
pub struct TargetRegistryConfig {
    /// Connection settings, as for `registry` (`key` is `target_registry`; the cache and
    /// backoff settings of `registry` apply to both).
    pub registry: RegistryConfig,
    /// Register a reader schema the target registry does not have, instead of failing start-up.
    pub register: bool,
}

/// A Confluent-compatible registry (`url` or `urls`, tried in order) or an offline directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrySource {
    Urls(Vec<String>),
    StaticDir(PathBuf),
}

/// Registry credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryAuth {
    Basic {
        username: String,
        password: SecretRef,
    },
    Bearer {
        token: SecretRef,
    },
}

/// One route: source topics, target topic, and how keys and values are resolved.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub name: String,
    pub source: SourceTopics,
    /// Topic the resolved messages are produced to; empty for an archive route.
    pub target: String,
    /// `schemabridge archive`: where the route's files go (instead of `target`).
    pub archive: Option<ArchiveConfig>,
    pub partitioning: Partitioning,
    pub key: PartConfig,
    pub value: PartConfig,
}

/// An archive route's output: storage, format and when files roll.
#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    pub store: ArchiveStore,
    pub format: ArchiveFormat,
    pub codec: ArchiveCodec,
    pub compression: ArchiveCompression,
    /// zstd's level (with `ArchiveCompression::Zstd`); `None`: the writer's default.
    pub compression_level: Option<i32>,
    pub row_group_bytes: u64,
    pub dictionary: ArchiveDictionary,
    pub statistics: ArchiveStatistics,
    /// Parquet encoding threads per open file, 0 to 2.
    pub encoding_threads: u8,
    pub roll: Roll,
    pub part_bytes: u64,
    pub spool_dir: Option<PathBuf>,
}

/// Where archive files are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveStore {
    /// A local directory (absolute).
    Local { dir: PathBuf },
    /// An S3-compatible bucket, files under `prefix` (no leading or trailing `/`; may be empty).
    S3 {
        bucket: String,
        prefix: String,
        endpoint: Option<String>,
        region: Option<String>,
        allow_http: bool,
        /// Access key id and secret; `None`: the `AWS_*` environment.
        credentials: Option<(SecretRef, SecretRef)>,
    },
}

/// How one part (key or value) of a route's messages is resolved.
#[derive(Debug, Clone)]
pub struct PartConfig {
    /// The schema language, or `None` for passthrough (bytes forwarded unchanged).
    pub format: Option<Format>,
    /// The schema the downstream consumer reads; `None` exactly when `format` is passthrough.
    pub reader: Option<ReaderConfig>,
    pub on_error: ErrorPolicy,
    /// Dead-letter topic; set whenever a policy is `dlq` (for a schema format).
    pub dlq: Option<String>,
    pub on_lossy: LossyPolicy,
    /// Protobuf only.
    pub unknown_fields: Option<crate::protobuf::UnknownFields>,
    pub output: Output,
}

/// The reader schema of a route part.
#[derive(Debug, Clone)]
pub struct ReaderConfig {
    pub source: ReaderSource,
    /// Protobuf only: the fully-qualified reader message; the schema's first when absent.
    pub message: Option<String>,
}

/// Where a reader schema comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReaderSource {
    /// A registry subject at a version (or `latest`).
    Registry {
        subject: String,
        version: SubjectVersion,
    },
    /// The newest version of a registry subject whose schema metadata (`metadata.properties`)
    /// holds every one of these key/values.
    Metadata {
        subject: String,
        metadata: std::collections::BTreeMap<String, String>,
    },
    /// A schema file, framed with the registry id `id`.
    File { path: PathBuf, id: u32 },
    /// Bridge mode: a schema file framed with the id the target registry has for it under
    /// `subject` (looked up by content; registered when absent and `target_registry.register`).
    FileBySubject { path: PathBuf, subject: String },
}

impl ReaderSource {
    /// Whether the reader this selects can change while the gateway runs (and is re-selected
    /// every `registry.reader_refresh_ms`).
    pub fn can_change(&self) -> bool {
        matches!(
            self,
            ReaderSource::Registry {
                version: SubjectVersion::Latest,
                ..
            } | ReaderSource::Metadata { .. }
        )
    }
}

impl Config {
    /// Reads, parses and validates a config file. Files it names are relative to its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                path: ".".into(),
                message: format!("cannot read config file {}: {e}", path.display()),
            }])
        })?;
        Config::parse_in(&text, path.parent().unwrap_or(Path::new(".")))
    }

    /// Parses and validates config text; relative file names stay relative to the working
    /// directory.
    pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
        Config::parse_in(text, Path::new(""))
    }

    fn parse_in(text: &str, base: &Path) -> Result<Config, ConfigErrors> {
        let mut file = load::parse(text, &interpolate::Environment)?;
        file.resolve_relative_paths(base);
        validate::build(file)
    }
}
