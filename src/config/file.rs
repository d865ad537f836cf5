//! The config file format: serde shapes and their defaults.
//!
//! Owns: what each key may hold and what it defaults to, with `deny_unknown_fields` everywhere
//! so a misspelt key is an error. Must not: check relations between keys (`validate`) or know
//! librdkafka property names (`kafka`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The cluster schemabridge consumes from.
    pub source: KafkaCluster,
    /// The cluster it produces to; the source cluster when absent (sidecar mode).
    #[serde(default)]
    pub target: Option<KafkaCluster>,
    /// Consumer group id. Run more replicas with the same id to scale out.
    pub group_id: String,
    /// Static membership (`group.instance.id`): a stable id per replica, e.g. the pod name.
    #[serde(default)]
    pub group_instance_id: Option<String>,
    pub registry: RegistryFile,
    /// Bridge mode between two registries: reader schemas are looked up (optionally registered)
    /// in this registry and output is framed with its ids; writer schemas still come from
    /// `registry`.
    #[serde(default)]
    pub target_registry: Option<TargetRegistryFile>,
    #[serde(default)]
    pub pipeline: PipelineConfig,
    pub routes: Vec<RouteFile>,
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
    #[serde(default, deserialize_with = "librdkafka_properties")]
    pub librdkafka: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryFile {
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
    pub auth: Option<RegistryAuthFile>,
    #[serde(default)]
    pub tls: Option<crate::registry::tls::RegistryTls>,
    #[serde(default = "defaults::registry_timeout_ms")]
    pub timeout_ms: u64,
    /// How many parsed schemas to keep in memory.
    #[serde(default = "defaults::cache_size")]
    pub cache_size: usize,
    /// How long an id the registry says does not exist is believed before asking again.
    #[serde(default = "defaults::not_found_ttl_ms")]
    pub not_found_ttl_ms: u64,
    /// First retry delay after a transient registry error; doubles up to `max_backoff_ms`.
    #[serde(default = "defaults::initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    #[serde(default = "defaults::max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// How often readers that can change (`version: latest`, `metadata`) are selected again.
    #[serde(default = "defaults::reader_refresh_ms")]
    pub reader_refresh_ms: u64,
}

/// `target_registry:`: the registry of the target cluster (bridge mode). The same connection
/// keys as `registry`, plus `register`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetRegistryFile {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub urls: Vec<String>,
    #[serde(default)]
    pub static_dir: Option<PathBuf>,
    #[serde(default)]
    pub auth: Option<RegistryAuthFile>,
    #[serde(default)]
    pub tls: Option<crate::registry::tls::RegistryTls>,
    #[serde(default = "defaults::registry_timeout_ms")]
    pub timeout_ms: u64,
    /// Register a reader schema the target registry does not have (off: a start-up error).
    #[serde(default)]
    pub register: bool,
}

impl TargetRegistryFile {
    /// The connection part as a `registry:` block (the keys `registry` has and this lacks take
    /// their defaults), for the checks both share.
    pub(super) fn as_registry(&self) -> RegistryFile {
        RegistryFile {
            url: self.url.clone(),
            urls: self.urls.clone(),
            static_dir: self.static_dir.clone(),
            auth: self.auth.clone(),
            tls: self.tls.clone(),
            timeout_ms: self.timeout_ms,
            cache_size: defaults::cache_size(),
            not_found_ttl_ms: defaults::not_found_ttl_ms(),
            initial_backoff_ms: defaults::initial_backoff_ms(),
            max_backoff_ms: defaults::max_backoff_ms(),
            reader_refresh_ms: defaults::reader_refresh_ms(),
        }
    }
}

/// Registry credentials: `basic` or `bearer`, each read from an environment variable or a file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryAuthFile {
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
pub struct RouteFile {
    pub name: String,
    pub source: SourceTopics,
    /// Topic the resolved messages are produced to (`schemabridge run`). Exactly one of
    /// `target` or `archive`.
    #[serde(default)]
    pub target: Option<String>,
    /// Instead of `target`: write the resolved values to files (`schemabridge archive`).
    #[serde(default)]
    pub archive: Option<ArchiveFile>,
    #[serde(default)]
    pub partitioning: Partitioning,
    #[serde(default = "PartFile::passthrough")]
    pub key: PartFile,
    pub value: PartFile,
}

/// `routes[].archive:`: where and how `schemabridge archive` writes a route's records.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveFile {
    /// `file:///absolute/dir` or `s3://bucket/optional/prefix`.
    pub url: String,
    #[serde(default)]
    pub format: ArchiveFormat,
    /// Avro container block codec (`format: avro`): `deflate` (default) or `null`. `None`:
    /// not written (an explicit `codec: null` is `Some(Null)`).
    #[serde(default, deserialize_with = "present_codec")]
    pub codec: Option<ArchiveCodec>,
    /// Parquet column compression (`format: parquet`): `zstd` (default), `snappy` or `none`.
    #[serde(default)]
    pub compression: Option<ArchiveCompression>,
    /// Parquet: zstd's level, 1 to 22 (`compression: zstd`; default 1, Arrow's).
    #[serde(default)]
    pub compression_level: Option<i32>,
    /// Parquet: a row group is closed once its encoded size reaches this many bytes.
    #[serde(default = "defaults::row_group_bytes")]
    pub row_group_bytes: u64,
    /// Parquet: which columns are dictionary-encoded: `auto` (default: strings, enums and
    /// bytes, except strings and bytes mostly distinct in a file's first batch), `text`
    /// (strings, enums, bytes), `all` or `none`.
    #[serde(default)]
    pub dictionary: Option<ArchiveDictionary>,
    /// Parquet: min/max statistics: `page` (default: per row group and per page), `row_group`
    /// or `none`.
    #[serde(default)]
    pub statistics: Option<ArchiveStatistics>,
    /// Parquet: threads that encode each open file's batches, 0 to 2 (default 2: one encodes
    /// a batch while the archive thread builds the next, with a helper sharing its columns,
    /// and the archive thread joins in once the next batch is built; 1: no helper; 0: the
    /// archive thread encodes each batch itself).
    #[serde(default)]
    pub encoding_threads: Option<u8>,
    #[serde(default)]
    pub roll: RollFile,
    /// Multipart upload part size; files larger than one part are uploaded in parts (S3 needs
    /// at least 5 MiB for every part but the last).
    #[serde(default = "defaults::part_bytes")]
    pub part_bytes: u64,
    /// Where files are written while open (unlinked at once: nothing is left after a crash);
    /// the system temporary directory when absent.
    #[serde(default)]
    pub spool_dir: Option<PathBuf>,
    /// S3 connection settings (only with an `s3://` url).
    #[serde(default)]
    pub s3: Option<S3File>,
}

/// The file format of an archive route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArchiveFormat {
    /// Avro object container files.
    #[default]
    Avro,
    /// Parquet files.
    Parquet,
}

/// An Avro container's block codec.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ArchiveCodec {
    #[default]
    Deflate,
    Null,
}

/// `deflate` or `null`; YAML reads an unquoted `codec: null` as no value at all, which here
/// means the codec named `null` (not the default).
impl<'de> Deserialize<'de> for ArchiveCodec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Option::<String>::deserialize(d)?.as_deref() {
            None | Some("null") => Ok(ArchiveCodec::Null),
            Some("deflate") => Ok(ArchiveCodec::Deflate),
            Some(other) => Err(serde::de::Error::unknown_variant(
                other,
                &["deflate", "null"],
            )),
        }
    }
}

/// A `codec` key that is present, whatever it holds (`null` included: see [`ArchiveCodec`]).
fn present_codec<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<ArchiveCodec>, D::Error> {
    ArchiveCodec::deserialize(d).map(Some)
}

/// A Parquet file's column compression.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArchiveCompression {
    /// zstd, at `compression_level` (default 1).
    #[default]
    Zstd,
    Snappy,
    None,
}

/// Which Parquet columns are dictionary-encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArchiveDictionary {
    /// Strings, enums and bytes, except strings and bytes mostly distinct in a file's first
    /// batch.
    #[default]
    Auto,
    /// Strings, enums and bytes.
    Text,
    All,
    None,
}

/// How much min/max statistics a Parquet file carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArchiveStatistics {
    /// Per row group and per page (a page index).
    #[default]
    Page,
    RowGroup,
    None,
}

/// When an open file is finished and a new one started (whichever comes first). A file also
/// ends when the record date (`dt=`) of its partition changes.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollFile {
    #[serde(default = "defaults::roll_records")]
    pub records: u64,
    #[serde(default = "defaults::roll_bytes")]
    pub bytes: u64,
    #[serde(default = "defaults::roll_interval_ms")]
    pub interval_ms: u64,
}

impl Default for RollFile {
    fn default() -> Self {
        RollFile {
            records: defaults::roll_records(),
            bytes: defaults::roll_bytes(),
            interval_ms: defaults::roll_interval_ms(),
        }
    }
}

/// `archive.s3`: an S3-compatible endpoint. Credentials from environment variables or files
/// (as the registry's secrets); when neither is set, the AWS SDK environment (`AWS_*`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3File {
    /// Endpoint URL for S3-compatible stores (MinIO, moto); AWS when absent.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    /// Allow an `http://` endpoint.
    #[serde(default)]
    pub allow_http: bool,
    #[serde(default)]
    pub access_key_id_env: Option<String>,
    #[serde(default)]
    pub access_key_id_file: Option<PathBuf>,
    #[serde(default)]
    pub secret_access_key_env: Option<String>,
    #[serde(default)]
    pub secret_access_key_file: Option<PathBuf>,
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
pub struct PartFile {
    /// `None`: passthrough.
    #[serde(deserialize_with = "part_format")]
    pub format: Option<Format>,
    /// The schema the downstream consumer reads. Required unless `format: passthrough`.
    #[serde(default)]
    pub reader: Option<ReaderFile>,
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
    pub unknown_fields: Option<crate::protobuf::UnknownFields>,
    /// `framed` (default): Confluent-framed reader encoding. `json`: the reader-resolved value
    /// as JSON (Avro JSON encoding / protobuf canonical JSON), for consumers without a registry.
    #[serde(default)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    #[default]
    Framed,
    Json,
}

impl PartFile {
    fn passthrough() -> Self {
        PartFile {
            format: None,
            reader: None,
            on_error: ErrorPolicy::Dlq,
            dlq: None,
            on_lossy: LossyPolicy::Allow,
            unknown_fields: None,
            output: Output::Framed,
        }
    }
}

/// A schema language: what a route part's messages are written in, and what a registered
/// schema is. The one enum that names the two engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Avro,
    Protobuf,
}

/// A part's `format:` key: `avro`, `protobuf`, or `passthrough` (`None`: bytes are forwarded
/// unchanged).
fn part_format<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Format>, D::Error> {
    match String::deserialize(d)?.as_str() {
        "avro" => Ok(Some(Format::Avro)),
        "protobuf" => Ok(Some(Format::Protobuf)),
        "passthrough" => Ok(None),
        other => Err(serde::de::Error::unknown_variant(
            other,
            &["avro", "protobuf", "passthrough"],
        )),
    }
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
pub struct ReaderFile {
    /// Registry subject of the reader schema.
    #[serde(default)]
    pub subject: Option<String>,
    /// `latest` (default) or a version number.
    #[serde(default)]
    pub version: Option<SubjectVersion>,
    /// Instead of `version`: the newest version of `subject` whose schema metadata
    /// (`metadata.properties`) holds every one of these key/values (Confluent's
    /// `use.latest.with.metadata`).
    #[serde(default, deserialize_with = "optional_text_map")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// The reader schema from a file instead of the registry; needs `id`.
    #[serde(default)]
    pub schema_file: Option<PathBuf>,
    /// Registry id to frame messages with when the schema comes from `schema_file` (with
    /// `target_registry`, `subject` instead: the id is the one the target registry has for it).
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

/// librdkafka properties: every value is text to librdkafka, but YAML numbers and booleans
/// (`linger.ms: 5`, `enable.ssl.certificate.verification: false`) are taken as written.
fn librdkafka_properties<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    struct Property(String);
    impl<'de> Deserialize<'de> for Property {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Property;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a string, number or boolean")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Property, E> {
                    Ok(Property(v.to_string()))
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<Property, E> {
                    Ok(Property(v.to_string()))
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<Property, E> {
                    Ok(Property(v.to_string()))
                }
                fn visit_f64<E: de::Error>(self, v: f64) -> Result<Property, E> {
                    Ok(Property(v.to_string()))
                }
                fn visit_bool<E: de::Error>(self, v: bool) -> Result<Property, E> {
                    Ok(Property(v.to_string()))
                }
            }
            d.deserialize_any(V)
        }
    }
    let map = BTreeMap::<String, Property>::deserialize(d)?;
    Ok(map.into_iter().map(|(k, v)| (k, v.0)).collect())
}

/// A map of text values that may be written as YAML numbers or booleans (`major: 1`).
fn optional_text_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    librdkafka_properties(d).map(Some)
}

impl ConfigFile {
    /// Files named in the config are relative to the config file's directory.
    pub(super) fn resolve_relative_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(dir) = self.registry.static_dir.as_mut() {
            fix(dir);
        }
        if let Some(auth) = self.registry.auth.as_mut() {
            let files = [
                auth.basic.as_mut().and_then(|b| b.password_file.as_mut()),
                auth.bearer.as_mut().and_then(|b| b.token_file.as_mut()),
            ];
            files.into_iter().flatten().for_each(fix);
        }
        if let Some(tls) = self.registry.tls.as_mut() {
            tls.resolve_relative_paths(base);
        }
        if let Some(target) = self.target_registry.as_mut() {
            if let Some(dir) = target.static_dir.as_mut() {
                fix(dir);
            }
            if let Some(auth) = target.auth.as_mut() {
                let files = [
                    auth.basic.as_mut().and_then(|b| b.password_file.as_mut()),
                    auth.bearer.as_mut().and_then(|b| b.token_file.as_mut()),
                ];
                files.into_iter().flatten().for_each(fix);
            }
            if let Some(tls) = target.tls.as_mut() {
                tls.resolve_relative_paths(base);
            }
        }
        for route in &mut self.routes {
            if let Some(archive) = route.archive.as_mut() {
                archive.spool_dir.iter_mut().for_each(fix);
                if let Some(s3) = archive.s3.as_mut() {
                    s3.access_key_id_file.iter_mut().for_each(fix);
                    s3.secret_access_key_file.iter_mut().for_each(fix);
                }
            }
            for part in [&mut route.key, &mut route.value] {
                if let Some(file) = part.reader.as_mut().and_then(|r| r.schema_file.as_mut()) {
                    fix(file);
                }
            }
        }
    }
}

pub(super) mod defaults {
    pub const fn roll_records() -> u64 {
        1_000_000
    }
    pub const fn roll_bytes() -> u64 {
        128 << 20
    }
    pub const fn roll_interval_ms() -> u64 {
        300_000
    }
    pub const fn row_group_bytes() -> u64 {
        128 << 20
    }
    pub const fn part_bytes() -> u64 {
        8 << 20
    }
    pub const fn registry_timeout_ms() -> u64 {
        10_000
    }
    pub const fn not_found_ttl_ms() -> u64 {
        60_000
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
    pub const fn reader_refresh_ms() -> u64 {
        300_000
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
