//! From the file format to a [`Config`]: the checks serde cannot express (exactly-one-of keys,
//! bounds, topic overlaps between routes) and the conversion of each "one of these keys" group
//! into the enum it stands for, done once here so nothing downstream matches on `Option`s.
//! Every problem is reported, not just the first.
//!
//! Must not: read files or the environment (`preflight` does), or connect to anything.

use super::file::{
    ArchiveFile, ConfigFile, PartFile, ReaderFile, RegistryAuthFile, RegistryFile, RouteFile,
    TargetRegistryFile,
};
use super::kafka::{ClientRole, check_owned_keys};
use super::{
    ArchiveCompression, ArchiveConfig, ArchiveFormat, ArchiveStore, Config, ConfigError,
    ConfigErrors, ErrorPolicy, Format, LossyPolicy, Output, PartConfig, ReaderConfig, ReaderSource,
    RegistryAuth, RegistryConfig, RegistrySource, RouteConfig, SecretRef, SourceTopics,
    SubjectVersion, TargetRegistryConfig,
};

/// Collects every problem found, each with its key path.
#[derive(Default)]
struct Problems(Vec<ConfigError>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// Checks a parsed file and converts it; `Err` lists every problem.
pub(super) fn build(f: ConfigFile) -> Result<Config, ConfigErrors> {
    let mut p = Problems::default();
    if f.source.bootstrap_servers.trim().is_empty() {
        p.add("source.bootstrap_servers", "must not be empty");
    }
    // In sidecar mode (no `target`) the source settings also configure the producer.
    let source_roles: &[ClientRole] = if f.target.is_some() {
        &[ClientRole::Consumer]
    } else {
        &[ClientRole::Consumer, ClientRole::Producer]
    };
    check_owned_keys(
        "source.librdkafka",
        &f.source.librdkafka,
        source_roles,
        &mut |k, m| p.add(k, m),
    );
    if let Some(t) = &f.target {
        if t.bootstrap_servers.trim().is_empty() {
            p.add("target.bootstrap_servers", "must not be empty");
        }
        check_owned_keys(
            "target.librdkafka",
            &t.librdkafka,
            &[ClientRole::Producer],
            &mut |k, m| p.add(k, m),
        );
    }
    if f.group_id.trim().is_empty() {
        p.add("group_id", "must not be empty");
    }
    let static_registry = f.registry.static_dir.is_some();
    let registry = registry("registry", f.registry, &mut p);
    let target_registry = f.target_registry.map(|t| target_registry(t, &mut p));
    // What a route's reader may say depends on where readers are selected.
    let readers = Readers {
        bridge: target_registry.is_some(),
        metadata: match &target_registry {
            Some(Some(t)) => !matches!(t.registry.source, RegistrySource::StaticDir(_)),
            Some(None) => true, // reported already
            None => !static_registry,
        },
    };
    let pl = &f.pipeline;
    // Upper bounds keep arithmetic and timers sane: a value above them is a typo, not a wish.
    let transaction_timeout_ms = f
        .target
        .as_ref()
        .unwrap_or(&f.source)
        .librdkafka
        .get("transaction.timeout.ms")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(60_000);
    for (key, value, max) in [
        ("pipeline.max_in_flight", pl.max_in_flight as u64, 1_000_000),
        (
            "pipeline.max_in_flight_bytes",
            pl.max_in_flight_bytes as u64,
            1 << 34,
        ),
        (
            "pipeline.transaction_ms",
            pl.transaction_ms,
            transaction_timeout_ms.saturating_sub(1).max(1),
        ),
        (
            "pipeline.transaction_max_records",
            pl.transaction_max_records as u64,
            1_000_000,
        ),
        (
            "pipeline.commit_interval_ms",
            pl.commit_interval_ms,
            HOUR_MS,
        ),
        (
            "pipeline.shutdown_timeout_ms",
            pl.shutdown_timeout_ms,
            HOUR_MS,
        ),
    ] {
        bounded(&mut p, key, value, max);
    }
    if pl
        .transactional_id
        .as_deref()
        .is_some_and(|t| t.trim().is_empty())
    {
        p.add("pipeline.transactional_id", "must not be empty");
    }
    if f.routes.is_empty() {
        p.add("routes", "at least one route is required");
    }
    let mut names = std::collections::HashSet::new();
    for (i, route) in f.routes.iter().enumerate() {
        if route.name.trim().is_empty() {
            p.add(format!("routes[{i}].name"), "must not be empty");
        } else if !names.insert(route.name.as_str()) {
            p.add(
                format!("routes[{i}].name"),
                format!("duplicate route name `{}`", route.name),
            );
        }
    }
    check_route_overlaps(&f.routes, f.target.is_none(), &mut |k, m| p.add(k, m));
    let same_cluster = f.target.is_none();
    let routes: Vec<RouteConfig> = f
        .routes
        .into_iter()
        .enumerate()
        .map(|(i, r)| route(i, r, same_cluster, readers, &mut p))
        .collect();
    match registry {
        Some(registry) if p.0.is_empty() => Ok(Config {
            target_registry: target_registry.flatten(),
            source: f.source,
            target: f.target,
            group_id: f.group_id,
            // Empty (`${POD_NAME:}` with the variable unset): dynamic membership.
            group_instance_id: f.group_instance_id.filter(|id| !id.trim().is_empty()),
            registry,
            pipeline: f.pipeline,
            routes,
            telemetry: f.telemetry,
        }),
        _ => Err(ConfigErrors(p.0)),
    }
}

/// `target_registry`: the shared checks of a registry block, and `register` against a static
/// directory (which cannot register anything).
fn target_registry(t: TargetRegistryFile, p: &mut Problems) -> Option<TargetRegistryConfig> {
    if t.register && t.static_dir.is_some() {
        p.add(
            "target_registry.register",
            "a `static_dir` cannot register schemas: use `urls`, or list the reader schemas in its schemas.yaml",
        );
    }
    let registry = registry("target_registry", t.as_registry(), p)?;
    Some(TargetRegistryConfig {
        registry,
        register: t.register,
    })
}

/// A `registry`-shaped block at `key` (`registry` or `target_registry`).
fn registry(key: &'static str, r: RegistryFile, p: &mut Problems) -> Option<RegistryConfig> {
    let at = |k: &str| format!("{key}.{k}");
    for (i, url) in r.url.iter().chain(&r.urls).enumerate() {
        let key = if r.url.is_some() {
            at("url")
        } else {
            at(&format!("urls[{i}]"))
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            p.add(key, "must start with http:// or https://");
        } else if let Err(e) = url::Url::parse(url).and_then(|u| {
            u.host_str()
                .filter(|h| !h.is_empty())
                .map(drop)
                .ok_or(url::ParseError::EmptyHost)
        }) {
            p.add(key, format!("not a URL: {e}"));
        }
    }
    let source = match (r.url, r.urls.is_empty(), r.static_dir) {
        (Some(url), true, None) => Some(RegistrySource::Urls(vec![url])),
        (None, false, None) => Some(RegistrySource::Urls(r.urls)),
        (None, true, Some(dir)) => Some(RegistrySource::StaticDir(dir)),
        _ => {
            p.add(key, "set exactly one of `url`, `urls` or `static_dir`");
            None
        }
    };
    let auth = match r.auth {
        None => Some(None),
        Some(a) => auth(key, a, p).map(Some),
    };
    for e in r.tls.iter().flat_map(|tls| tls.validate()) {
        p.add(rekey(&e.path, key), e.message);
    }
    bounded(p, &at("cache_size"), r.cache_size as u64, 1_000_000);
    bounded(p, &at("not_found_ttl_ms"), r.not_found_ttl_ms, HOUR_MS);
    bounded(p, &at("timeout_ms"), r.timeout_ms, 10 * 60_000);
    bounded(p, &at("max_backoff_ms"), r.max_backoff_ms, HOUR_MS);
    bounded(p, &at("reader_refresh_ms"), r.reader_refresh_ms, HOUR_MS);
    if r.initial_backoff_ms == 0 || r.initial_backoff_ms > r.max_backoff_ms {
        p.add(
            at("initial_backoff_ms"),
            format!("must be at least 1 and not above {key}.max_backoff_ms"),
        );
    }
    Some(RegistryConfig {
        source: source?,
        auth: auth?,
        timeout_ms: r.timeout_ms,
        cache_size: r.cache_size,
        not_found_ttl_ms: r.not_found_ttl_ms,
        initial_backoff_ms: r.initial_backoff_ms,
        max_backoff_ms: r.max_backoff_ms,
        tls: r.tls,
        reader_refresh_ms: r.reader_refresh_ms,
        key,
    })
}

/// A `registry.…` key path (as `registry::tls` names its keys) under `key` instead.
pub(crate) fn rekey(path: &str, key: &str) -> String {
    match path.strip_prefix("registry") {
        Some(rest) if rest.is_empty() || rest.starts_with('.') => format!("{key}{rest}"),
        _ => path.to_string(),
    }
}

const HOUR_MS: u64 = 3_600_000;

/// `value` must be in `1..=max`.
fn bounded(p: &mut Problems, key: &str, value: u64, max: u64) {
    if value == 0 {
        p.add(key, "must be at least 1");
    } else if value > max {
        p.add(key, format!("must be at most {max}"));
    }
}

/// Kafka's rule for topic names: 1 to 249 of `a-z A-Z 0-9 . _ -`, and not `.` or `..`.
fn check_topic(p: &mut Problems, key: String, topic: &str) {
    let legal = topic
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if topic.is_empty() {
        p.add(key, "must not be empty");
    } else if topic.len() > 249 || !legal || topic == "." || topic == ".." {
        p.add(
            key,
            format!(
                "`{topic}` is not a legal Kafka topic name (1 to 249 of a-z, A-Z, 0-9, `.`, `_`, `-`)"
            ),
        );
    }
}

/// One of `env`/`file`, as the secret it names.
fn secret_ref(env: Option<String>, file: Option<std::path::PathBuf>) -> Option<SecretRef> {
    match (env, file) {
        (Some(name), None) => Some(SecretRef::Env(name)),
        (None, Some(path)) => Some(SecretRef::File(path)),
        _ => None,
    }
}

fn auth(key: &str, a: RegistryAuthFile, p: &mut Problems) -> Option<RegistryAuth> {
    match (a.basic, a.bearer) {
        (Some(b), None) => match secret_ref(b.password_env, b.password_file) {
            Some(password) => Some(RegistryAuth::Basic {
                username: b.username,
                password,
            }),
            None => {
                p.add(
                    format!("{key}.auth.basic"),
                    "set exactly one of `password_env` or `password_file`",
                );
                None
            }
        },
        (None, Some(b)) => match secret_ref(b.token_env, b.token_file) {
            Some(token) => Some(RegistryAuth::Bearer { token }),
            None => {
                p.add(
                    format!("{key}.auth.bearer"),
                    "set exactly one of `token_env` or `token_file`",
                );
                None
            }
        },
        _ => {
            p.add(
                format!("{key}.auth"),
                "set exactly one of `basic` or `bearer`",
            );
            None
        }
    }
}

/// Where route readers are selected, as far as what a reader may say depends on it.
#[derive(Clone, Copy)]
struct Readers {
    /// `target_registry` is set: readers come from it.
    bridge: bool,
    /// That registry answers metadata queries (not a static directory).
    metadata: bool,
}

fn route(
    i: usize,
    route: RouteFile,
    same_cluster: bool,
    readers: Readers,
    p: &mut Problems,
) -> RouteConfig {
    let at = |k: &str| format!("routes[{i}].{k}");
    let src = &route.source;
    if src.topics.is_empty() == src.topic_regex.is_none() {
        p.add(at("source"), "set exactly one of `topics` or `topic_regex`");
    }
    if let Some(re) = &src.topic_regex
        && let Err(e) = regex::Regex::new(re)
    {
        p.add(at("source.topic_regex"), format!("invalid regex: {e}"));
    }
    for (j, topic) in src.topics.iter().enumerate() {
        check_topic(p, at(&format!("source.topics[{j}]")), topic);
    }
    let (target, archive) = match (route.target, route.archive) {
        (Some(target), None) => {
            check_topic(p, at("target"), &target);
            if src.topics.iter().any(|t| t == &target) && same_cluster {
                p.add(
                    at("target"),
                    "is also a source topic on the same cluster: messages would loop",
                );
            }
            (target, None)
        }
        (None, Some(a)) => (String::new(), archive(&at("archive"), a, p)),
        _ => {
            p.add(
                format!("routes[{i}]"),
                "set exactly one of `target` (a topic, for `run`) or `archive` (files, for `archive`)",
            );
            (String::new(), None)
        }
    };
    let key = part(
        &format!("routes[{i}].key"),
        route.key,
        &target,
        src,
        readers,
        p,
    );
    let value = part(
        &format!("routes[{i}].value"),
        route.value,
        &target,
        src,
        readers,
        p,
    );
    if archive.is_some() && value.format.is_none() {
        p.add(
            at("value.format"),
            "an archive route needs a schema for its values (`avro`), not `passthrough`",
        );
    }
    RouteConfig {
        name: route.name,
        source: route.source,
        target,
        archive,
        partitioning: route.partitioning,
        key,
        value,
    }
}

/// `routes[i].archive`: the storage URL (and its `s3` block), format and roll bounds.
fn archive(at: &str, a: ArchiveFile, p: &mut Problems) -> Option<ArchiveConfig> {
    let key = |k: &str| format!("{at}.{k}");
    bounded(p, &key("roll.records"), a.roll.records, 1 << 40);
    bounded(p, &key("roll.bytes"), a.roll.bytes, 1 << 40);
    bounded(
        p,
        &key("roll.interval_ms"),
        a.roll.interval_ms,
        24 * HOUR_MS,
    );
    bounded(p, &key("part_bytes"), a.part_bytes, 5 << 30);
    if a.format == ArchiveFormat::Parquet && a.codec.is_some() {
        p.add(key("codec"), "only used with `format: avro`");
    }
    if a.format == ArchiveFormat::Avro && a.compression.is_some() {
        p.add(
            key("compression"),
            "only used with `format: parquet` (Avro files take `codec`)",
        );
    }
    for (set, name) in [
        (a.dictionary.is_some(), "dictionary"),
        (a.statistics.is_some(), "statistics"),
        (a.compression_level.is_some(), "compression_level"),
        (a.encoding_threads.is_some(), "encoding_threads"),
    ] {
        if a.format == ArchiveFormat::Avro && set {
            p.add(key(name), "only used with `format: parquet`");
        }
    }
    if let Some(level) = a.compression_level
        && a.format == ArchiveFormat::Parquet
    {
        if a.compression.unwrap_or_default() != ArchiveCompression::Zstd {
            p.add(
                key("compression_level"),
                "only used with `compression: zstd`",
            );
        } else if !(1..=22).contains(&level) {
            p.add(
                key("compression_level"),
                format!("{level} is not a zstd level: 1 to 22"),
            );
        }
    }
    bounded(p, &key("row_group_bytes"), a.row_group_bytes, 1 << 40);
    if let Some(threads) = a.encoding_threads
        && threads > 2
    {
        p.add(
            key("encoding_threads"),
            format!("{threads} is not 0, 1 or 2 (threads per open file)"),
        );
    }
    let store = match url::Url::parse(&a.url) {
        Err(e) => {
            p.add(key("url"), format!("not a URL: {e}"));
            None
        }
        Ok(u) if u.scheme() == "file" => {
            if a.s3.is_some() {
                p.add(key("s3"), "only used with an `s3://` url");
            }
            match u.to_file_path() {
                Ok(dir) if u.host_str().is_none_or(str::is_empty) => {
                    Some(ArchiveStore::Local { dir })
                }
                _ => {
                    p.add(
                        key("url"),
                        "a `file://` url names an absolute local directory: `file:///data/archive`",
                    );
                    None
                }
            }
        }
        Ok(u) if u.scheme() == "s3" => {
            let bucket = u.host_str().unwrap_or_default().to_string();
            if bucket.is_empty() {
                p.add(key("url"), "names no bucket: `s3://bucket/prefix`");
            }
            let prefix = u.path().trim_matches('/').to_string();
            let s3 = a.s3.unwrap_or_default();
            let id = secret_ref(s3.access_key_id_env, s3.access_key_id_file);
            let secret = secret_ref(s3.secret_access_key_env, s3.secret_access_key_file);
            let credentials = match (id, secret) {
                (Some(id), Some(secret)) => Some((id, secret)),
                (None, None) => None,
                _ => {
                    p.add(
                        key("s3"),
                        "set the access key id (`access_key_id_env` or `access_key_id_file`) and the secret (`secret_access_key_env` or `secret_access_key_file`) together, one of each, or neither (the AWS_* environment)",
                    );
                    None
                }
            };
            if let Some(endpoint) = &s3.endpoint {
                match url::Url::parse(endpoint) {
                    Ok(e) if e.scheme() == "https" => {}
                    Ok(e) if e.scheme() == "http" && s3.allow_http => {}
                    Ok(e) if e.scheme() == "http" => p.add(
                        key("s3.endpoint"),
                        "is plain http: set `allow_http: true` to use it",
                    ),
                    Ok(_) => p.add(key("s3.endpoint"), "must start with http:// or https://"),
                    Err(e) => p.add(key("s3.endpoint"), format!("not a URL: {e}")),
                }
            }
            Some(ArchiveStore::S3 {
                bucket,
                prefix,
                endpoint: s3.endpoint,
                region: s3.region,
                allow_http: s3.allow_http,
                credentials,
            })
        }
        Ok(u) => {
            p.add(
                key("url"),
                format!(
                    "scheme `{}` is not supported: `file:///dir` or `s3://bucket/prefix`",
                    u.scheme()
                ),
            );
            None
        }
    };
    Some(ArchiveConfig {
        store: store?,
        format: a.format,
        codec: a.codec.unwrap_or_default(),
        compression: a.compression.unwrap_or_default(),
        compression_level: a.compression_level,
        row_group_bytes: a.row_group_bytes,
        dictionary: a.dictionary.unwrap_or_default(),
        statistics: a.statistics.unwrap_or_default(),
        encoding_threads: a.encoding_threads.unwrap_or(2),
        roll: a.roll,
        part_bytes: a.part_bytes,
        spool_dir: a.spool_dir,
    })
}

fn part(
    at: &str,
    part: PartFile,
    target: &str,
    source: &SourceTopics,
    readers: Readers,
    p: &mut Problems,
) -> PartConfig {
    let key = |k: &str| format!("{at}.{k}");
    let reader = match (part.format, part.reader) {
        (None, Some(_)) => {
            p.add(
                key("reader"),
                "not used with `format: passthrough`; remove it",
            );
            None
        }
        (None, None) => None,
        (_, None) => {
            p.add(key("reader"), "required for this format");
            None
        }
        (Some(format), Some(r)) => reader(at, format, r, readers, p),
    };
    if part.format != Some(Format::Protobuf) && part.unknown_fields.is_some() {
        p.add(key("unknown_fields"), "only used with `format: protobuf`");
    }
    if part.format.is_none() && part.output != Output::Framed {
        p.add(
            key("output"),
            "`json` needs a schema: not used with `format: passthrough`",
        );
    }
    let needs_dlq = part.on_error == ErrorPolicy::Dlq || part.on_lossy == LossyPolicy::Dlq;
    if part.format.is_some() && needs_dlq && part.dlq.is_none() {
        p.add(
            key("dlq"),
            "required when `on_error` or `on_lossy` is `dlq` (the default for on_error)",
        );
    }
    if let Some(dlq) = &part.dlq {
        check_topic(p, key("dlq"), dlq);
    }
    if let Some(dlq) = &part.dlq
        && (dlq == target || source.topics.contains(dlq))
    {
        p.add(
            key("dlq"),
            "must differ from the route's source and target topics",
        );
    }
    PartConfig {
        format: part.format,
        reader,
        on_error: part.on_error,
        dlq: part.dlq,
        on_lossy: part.on_lossy,
        unknown_fields: part.unknown_fields,
        output: part.output,
    }
}

fn reader(
    at: &str,
    format: Format,
    r: ReaderFile,
    readers: Readers,
    p: &mut Problems,
) -> Option<ReaderConfig> {
    let key = |k: &str| format!("{at}.reader.{k}");
    if format != Format::Protobuf && r.message.is_some() {
        p.add(key("message"), "only used with `format: protobuf`");
    }
    if let Some(subject) = &r.subject
        && subject.trim().is_empty()
    {
        p.add(key("subject"), "must not be empty");
    }
    if r.version.is_some() && r.metadata.is_some() {
        p.add(
            format!("{at}.reader"),
            "set either `version` or `metadata`, not both",
        );
    }
    if let Some(metadata) = &r.metadata {
        if metadata.is_empty() {
            p.add(
                key("metadata"),
                "name at least one key (e.g. `{ major: \"1\" }`)",
            );
        }
        if !readers.metadata {
            p.add(
                key("metadata"),
                "needs a registry with `url`/`urls`: a `static_dir` has no schema metadata",
            );
        }
    }
    let file_only = |p: &mut Problems| {
        if r.version.is_some() || r.metadata.is_some() {
            p.add(
                format!("{at}.reader"),
                "`version` and `metadata` select a registry subject's version: not used with `schema_file`",
            );
        }
    };
    let source = match (r.subject, r.schema_file) {
        (None, None) => {
            p.add(key("subject"), "required (or `schema_file` with `id`)");
            None
        }
        (Some(subject), None) => {
            if r.id.is_some() {
                p.add(key("id"), "only used with `schema_file`");
            }
            match r.metadata {
                Some(metadata) => Some(ReaderSource::Metadata { subject, metadata }),
                None => Some(ReaderSource::Registry {
                    subject,
                    version: r.version.unwrap_or(SubjectVersion::Latest),
                }),
            }
        }
        (None, Some(path)) => {
            file_only(p);
            match r.id {
                Some(id) => Some(ReaderSource::File { path, id }),
                None => {
                    p.add(
                        key("id"),
                        if readers.bridge {
                            "required with `schema_file`: the registry id to frame messages with, or `subject` to look the file up in the target registry"
                        } else {
                            "required with `schema_file`: the registry id to frame messages with"
                        },
                    );
                    None
                }
            }
        }
        (Some(subject), Some(path)) => {
            file_only(p);
            if !readers.bridge {
                p.add(
                    format!("{at}.reader"),
                    "set either `subject` (+ `version`) or `schema_file` (+ `id`), not both (`schema_file` with `subject` is for `target_registry`)",
                );
                None
            } else if r.id.is_some() {
                p.add(
                    key("id"),
                    "not used with `schema_file` + `subject`: the id is the one the target registry has for the file",
                );
                None
            } else {
                Some(ReaderSource::FileBySubject { path, subject })
            }
        }
    };
    Some(ReaderConfig {
        source: source?,
        message: r.message,
    })
}

/// Cross-route checks. A source topic two routes claim is refused (the first route in order
/// would take every message and the other would silently see none), and so is, when source and
/// target are one cluster, a target or DLQ topic that some route consumes: the gateway would
/// consume its own output (A→B plus B→A multiplies messages without end; a regex matching its
/// own target loops on its own). Regex against regex is only compared as text: whether two
/// patterns can match one name is not decidable here, and the literal/target checks catch the
/// configs seen in practice.
fn check_route_overlaps(
    routes: &[RouteFile],
    same_cluster: bool,
    err: &mut impl FnMut(String, String),
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
                        format!(
                            "topic {topic} is already routed by {other} ({}); a topic can have one route only",
                            label(k)
                        ),
                    );
                } else if other.ends_with("topic_regex") {
                    // A later literal route is reported when the loop reaches it.
                    err(
                        format!("routes[{i}].source.topics[{j}]"),
                        format!(
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
                format!(
                    "same pattern as routes[{k}].source.topic_regex ({}); a topic can have one route only",
                    label(k)
                ),
            );
        }
        if !same_cluster {
            continue;
        }
        let mut outputs: Vec<(String, &String)> = route
            .target
            .iter()
            .map(|t| ("target".to_string(), t))
            .collect();
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
                        format!(
                            "topic {topic} is consumed by {other} ({}) on the same cluster: the gateway would consume its own output and messages would loop",
                            label(k)
                        ),
                    );
                }
            }
        }
    }
}
