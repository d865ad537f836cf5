//! The effective configuration as text for people: the start-up log line and
//! `validate-config --print`, with every secret redacted.
//!
//! Owns: which values are secret when shown (librdkafka properties whose names say password,
//! secret, token, key or credentials; a URL's user-info; registry credentials, shown only as
//! where they are read from). Must not: read a secret.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::{
    Config, KafkaCluster, PartConfig, ReaderSource, RegistryAuth, RegistrySource, RouteConfig,
};

const REDACTED: &str = "***";

/// Name fragments of librdkafka properties whose values are secrets (or may embed one:
/// `sasl.jaas.config`, `sasl.oauthbearer.config`).
const SECRET_PROPERTY_PARTS: &[&str] = &[
    "password",
    "secret",
    "token",
    "key",
    "credential",
    "jaas",
    "oauthbearer.config",
];

/// Whether a librdkafka property's value must not be shown.
pub fn is_secret_property(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PROPERTY_PARTS.iter().any(|p| name.contains(p))
}

/// `https://user:pass@host/` → `https://***@host/`.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://{REDACTED}{}", &rest[at..]),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}

impl Config {
    /// One line per section and per route, secrets redacted.
    pub fn summary(&self) -> Vec<String> {
        let mut lines = vec![format!("source: {}", cluster(&self.source))];
        lines.push(match &self.target {
            Some(t) => format!("target: {}", cluster(t)),
            None => "target: the source cluster (sidecar)".into(),
        });
        lines.push(format!("group_id: {}", self.group_id));
        if let Some(id) = &self.group_instance_id {
            lines.push(format!("group_instance_id: {id} (static membership)"));
        }
        let r = &self.registry;
        let mut reg = registry_line("registry", r);
        let _ = write!(
            reg,
            " cache_size={} not_found_ttl_ms={} backoff_ms={}..{} reader_refresh_ms={}",
            r.cache_size,
            r.not_found_ttl_ms,
            r.initial_backoff_ms,
            r.max_backoff_ms,
            r.reader_refresh_ms
        );
        lines.push(reg);
        lines.push(match &self.target_registry {
            Some(t) => {
                let mut line = registry_line("target_registry", &t.registry);
                let _ = write!(line, " register={}", t.register);
                line
            }
            None => "target_registry: none (output framed with the registry's ids)".into(),
        });
        let p = &self.pipeline;
        let mut pl = format!(
            "pipeline: delivery={} max_in_flight={} max_in_flight_bytes={} commit_interval_ms={} shutdown_timeout_ms={}",
            match p.delivery {
                super::DeliveryMode::AtLeastOnce => "at_least_once",
                super::DeliveryMode::ExactlyOnce => "exactly_once",
            },
            p.max_in_flight,
            p.max_in_flight_bytes,
            p.commit_interval_ms,
            p.shutdown_timeout_ms
        );
        if p.delivery == super::DeliveryMode::ExactlyOnce {
            let _ = write!(
                pl,
                " transaction_ms={} transaction_max_records={} transactional_id={}",
                p.transaction_ms,
                p.transaction_max_records,
                self.transactional_id()
            );
        }
        lines.push(pl);
        lines.push(match self.telemetry.listen {
            Some(addr) => format!("telemetry: listen {addr}"),
            None => "telemetry: off".into(),
        });
        lines.extend(self.routes.iter().map(route));
        lines
    }
}

/// `label: urls | static_dir`, credentials only as where they are read from, and the timeout.
fn registry_line(label: &str, r: &super::RegistryConfig) -> String {
    let mut reg = match &r.source {
        RegistrySource::Urls(urls) => {
            let urls: Vec<String> = urls.iter().map(|u| redact_url(u)).collect();
            format!("{label}: {}", urls.join(", "))
        }
        RegistrySource::StaticDir(dir) => format!("{label}: static_dir {}", dir.display()),
    };
    match &r.auth {
        Some(RegistryAuth::Basic { username, password }) => {
            let _ = write!(
                reg,
                " auth=basic user {username} password from {}",
                password.describe()
            );
        }
        Some(RegistryAuth::Bearer { token }) => {
            let _ = write!(reg, " auth=bearer token from {}", token.describe());
        }
        None => {}
    }
    let _ = write!(reg, " timeout_ms={}", r.timeout_ms);
    reg
}

fn cluster(c: &KafkaCluster) -> String {
    let mut s = c.bootstrap_servers.clone();
    if !c.librdkafka.is_empty() {
        let _ = write!(s, " librdkafka {{{}}}", properties(&c.librdkafka));
    }
    s
}

fn properties(map: &BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(k, v)| {
            let v = if is_secret_property(k) { REDACTED } else { v };
            format!("{k}={v}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn route(r: &RouteConfig) -> String {
    let from = match &r.source.topic_regex {
        Some(re) => format!("topic_regex {re}"),
        None => format!("topics {}", r.source.topics.join(", ")),
    };
    let to = match &r.archive {
        None => format!(
            "{} (partitioning {})",
            r.target,
            format!("{:?}", r.partitioning).to_lowercase()
        ),
        Some(a) => {
            let store = match &a.store {
                super::ArchiveStore::Local { dir } => format!("file://{}", dir.display()),
                super::ArchiveStore::S3 {
                    bucket,
                    prefix,
                    endpoint,
                    ..
                } => format!(
                    "s3://{bucket}/{prefix} (endpoint {})",
                    endpoint.as_deref().map_or("aws".into(), redact_url)
                ),
            };
            let layout = match a.format {
                super::ArchiveFormat::Avro => format!("format avro codec {:?}", a.codec),
                super::ArchiveFormat::Parquet => format!(
                    "format parquet compression {} dictionary {:?} statistics {} \
                     row_group_bytes {} encoding_threads {}",
                    match (a.compression, a.compression_level) {
                        (super::ArchiveCompression::Zstd, Some(level)) => {
                            format!("zstd level {level}")
                        }
                        (other, _) => format!("{other:?}"),
                    },
                    a.dictionary,
                    // As the config spells it.
                    match a.statistics {
                        super::ArchiveStatistics::Page => "page",
                        super::ArchiveStatistics::RowGroup => "row_group",
                        super::ArchiveStatistics::None => "none",
                    },
                    a.row_group_bytes,
                    a.encoding_threads
                ),
            }
            .to_lowercase();
            format!(
                "archive {store} {layout} roll records {} bytes {} interval_ms {}",
                a.roll.records, a.roll.bytes, a.roll.interval_ms
            )
        }
    };
    format!(
        "route {}: {from} → {to}; key {}; value {}",
        r.name,
        part(&r.key),
        part(&r.value)
    )
}

fn part(p: &PartConfig) -> String {
    let Some(reader) = &p.reader else {
        return "passthrough".into();
    };
    let from = match &reader.source {
        ReaderSource::Registry { subject, version } => {
            format!("subject {subject} version {version}")
        }
        ReaderSource::Metadata { subject, metadata } => {
            let pairs: Vec<String> = metadata.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("subject {subject} latest with metadata {}", pairs.join(","))
        }
        ReaderSource::File { path, id } => format!("file {} id {id}", path.display()),
        ReaderSource::FileBySubject { path, subject } => {
            format!("file {} looked up under subject {subject}", path.display())
        }
    };
    let mut s = format!(
        "{:?} reader {from} output {:?} on_error {:?} on_lossy {:?}",
        p.format, p.output, p.on_error, p.on_lossy
    )
    .to_lowercase();
    if let Some(dlq) = &p.dlq {
        let _ = write!(s, " dlq {dlq}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_properties_and_url_credentials_are_redacted() {
        for secret in [
            "sasl.password",
            "ssl.key.password",
            "ssl.key.pem",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.config",
        ] {
            assert!(is_secret_property(secret), "{secret}");
        }
        for plain in ["sasl.username", "security.protocol", "linger.ms"] {
            assert!(!is_secret_property(plain), "{plain}");
        }
        assert_eq!(
            redact_url("https://u:p%40ss@reg.example:8081/base"),
            "https://***@reg.example:8081/base"
        );
        assert_eq!(redact_url("http://reg:8081"), "http://reg:8081");
    }
}
