//! What `validate-config` and `run` check before connecting to anything: the parts of a config
//! that depend on the machine it runs on.
//!
//! Owns: reading the secrets and schema files the config names, and building (never connecting: without bootstrap servers)
//! the Kafka clients from the effective librdkafka settings, so a misspelt or invalid librdkafka
//! property is reported by key. Owns too the text of a librdkafka configuration error: it never
//! contains a property's value (a misspelt `sasl.pasword` must not print the password). Must
//! not: connect to a broker or a registry.

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, DeliveryResult, ProducerContext};
use rdkafka::types::RDKafkaConfRes;
use rdkafka::{ClientConfig, ClientContext};

use super::{
    ArchiveConfig, ArchiveStore, ClientRole, Config, ConfigError, ConfigErrors, ReaderSource,
    RegistryAuth, RegistryConfig, RegistrySource, SecretRef, is_secret_property,
};

/// How much of the machine a preflight looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preflight {
    /// Secrets, schema files and librdkafka properties: what `run` needs on this machine.
    Full,
    /// librdkafka properties only: for a config checked on another machine than the one it is
    /// for (CI linting a Kubernetes ConfigMap whose secrets exist only in the pod).
    Offline,
}

/// A registry block's secrets readable, its static directory present, its TLS files usable;
/// errors name the block's key (`registry` or `target_registry`).
fn check_registry(r: &RegistryConfig, errs: &mut Vec<ConfigError>) {
    let key = r.key;
    match &r.auth {
        Some(RegistryAuth::Basic { password, .. }) => {
            let field = match password {
                SecretRef::Env(_) => "auth.basic.password_env",
                SecretRef::File(_) => "auth.basic.password_file",
            };
            if let Err(e) = password.read(&format!("{key}.{field}")) {
                errs.push(e);
            }
        }
        Some(RegistryAuth::Bearer { token }) => {
            let field = match token {
                SecretRef::Env(_) => "auth.bearer.token_env",
                SecretRef::File(_) => "auth.bearer.token_file",
            };
            if let Err(e) = token.read(&format!("{key}.{field}")) {
                errs.push(e);
            }
        }
        None => {}
    }
    if let RegistrySource::StaticDir(dir) = &r.source
        && !dir.is_dir()
    {
        errs.push(ConfigError {
            path: format!("{key}.static_dir"),
            message: format!("{} is not a directory", dir.display()),
        });
    }
    errs.extend(
        r.tls
            .iter()
            .flat_map(|tls| tls.preflight())
            .map(|e| ConfigError {
                path: super::rekey_registry_path(&e.path, key),
                message: e.message,
            }),
    );
}

/// An archive route's S3 credentials readable and its spool directory present; errors name the
/// key under `at` (`routes[0].archive`).
fn check_archive(a: &ArchiveConfig, at: &str, errs: &mut Vec<ConfigError>) {
    if let ArchiveStore::S3 {
        credentials: Some((id, secret)),
        ..
    } = &a.store
    {
        for (name, secret) in [("access_key_id", id), ("secret_access_key", secret)] {
            let suffix = match secret {
                SecretRef::Env(_) => "env",
                SecretRef::File(_) => "file",
            };
            if let Err(e) = secret.read(&format!("{at}.s3.{name}_{suffix}")) {
                errs.push(e);
            }
        }
    }
    if let Some(dir) = &a.spool_dir
        && !dir.is_dir()
    {
        errs.push(ConfigError {
            path: format!("{at}.spool_dir"),
            message: format!("{} is not a directory", dir.display()),
        });
    }
}

impl Config {
    /// Checks what [`Config::parse`] cannot: that secrets and files can be read (unless
    /// `Offline`) and that librdkafka accepts every property. Reports every problem.
    pub fn preflight(&self, scope: Preflight) -> Result<(), ConfigErrors> {
        let mut errs = Vec::new();
        if scope == Preflight::Full {
            self.check_files(&mut errs);
        }
        self.check_client(ClientRole::Consumer, &mut errs);
        self.check_client(ClientRole::Producer, &mut errs);
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errs))
        }
    }

    /// Secrets readable, schema directory and files present.
    fn check_files(&self, errs: &mut Vec<ConfigError>) {
        check_registry(&self.registry, errs);
        if let Some(target) = &self.target_registry {
            check_registry(&target.registry, errs);
            // `run` builds the source registry's client before it starts (main.rs); the target
            // registry's is built here, not contacted, so `validate-config` covers it too.
            if errs.is_empty()
                && let Err(e) = crate::registry::SchemaSource::from_config(&target.registry)
            {
                errs.push(e);
            }
        }
        for (i, route) in self.routes.iter().enumerate() {
            if let Some(archive) = &route.archive {
                check_archive(archive, &format!("routes[{i}].archive"), errs);
            }
            for (name, part) in [("key", &route.key), ("value", &route.value)] {
                if let Some(
                    ReaderSource::File { path, .. } | ReaderSource::FileBySubject { path, .. },
                ) = part.reader.as_ref().map(|r| &r.source)
                    && let Err(e) = std::fs::metadata(path).and_then(|m| {
                        if m.is_file() {
                            Ok(())
                        } else {
                            Err(std::io::Error::other("not a file"))
                        }
                    })
                {
                    errs.push(ConfigError {
                        path: format!("routes[{i}].{name}.reader.schema_file"),
                        message: format!("cannot read {}: {e}", path.display()),
                    });
                }
            }
        }
    }

    /// Each user property on its own (so a problem is named by its key), then the whole client
    /// as `run` builds it (which checks properties against each other).
    fn check_client(&self, role: ClientRole, errs: &mut Vec<ConfigError>) {
        let (at, cluster) = match (role, &self.target) {
            (ClientRole::Producer, Some(target)) => ("target.librdkafka", target),
            _ => ("source.librdkafka", &self.source),
        };
        let before = errs.len();
        // In sidecar mode the producer's map is the consumer's, already checked key by key.
        let checked = role == ClientRole::Producer && self.target.is_none();
        for (key, value) in cluster.librdkafka.iter().filter(|_| !checked) {
            if let Err(e) = ClientConfig::new().set(key, value).create_native_config() {
                errs.push(ConfigError {
                    path: format!("{at}.{key}"),
                    message: kafka_error_text(&e, self),
                });
            }
        }
        let consumer_map_failed =
            checked && errs.iter().any(|e| e.path.starts_with("source.librdkafka"));
        if errs.len() > before || consumer_map_failed {
            return;
        }
        // Without bootstrap servers librdkafka builds the client but never connects.
        let mut config = self.client_config(role);
        config.remove("bootstrap.servers");
        let built = match role {
            ClientRole::Consumer => config
                .create_with_context::<_, BaseConsumer<Quiet>>(Quiet)
                .map(drop),
            ClientRole::Producer => config
                .create_with_context::<_, BaseProducer<Quiet>>(Quiet)
                .map(drop),
        };
        if let Err(e) = built {
            let what = match role {
                ClientRole::Consumer => "consumer",
                ClientRole::Producer => "producer",
            };
            errs.push(ConfigError {
                path: at.into(),
                message: format!(
                    "librdkafka refuses the {what} settings: {}",
                    kafka_error_text(&e, self)
                ),
            });
        }
    }
}

/// The preflight clients' context: they never connect, so what librdkafka would log about that
/// ("no bootstrap.servers configured") is not news.
struct Quiet;

impl ClientContext for Quiet {
    fn log(&self, _: RDKafkaLogLevel, _: &str, _: &str) {}
    fn error(&self, _: KafkaError, _: &str) {}
}

impl ConsumerContext for Quiet {}

impl ProducerContext for Quiet {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

/// A Kafka client error as text without any librdkafka property value in it: rdkafka's own
/// `Display` of a configuration error ends with the value, and librdkafka's description quotes
/// it. Every value of the config's librdkafka maps is replaced by `***` where librdkafka quotes it, and a
/// secret-named property's value (`sasl.password`) wherever it appears.
pub fn kafka_error_text(e: &KafkaError, config: &Config) -> String {
    let text = match e {
        KafkaError::ClientConfig(RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN, _, key, _) => {
            format!("`{key}` is not a librdkafka property")
        }
        KafkaError::ClientConfig(_, desc, _, _) => desc.clone(),
        KafkaError::ClientCreation(desc) => desc.clone(),
        other => other.to_string(),
    };
    let properties = config
        .source
        .librdkafka
        .iter()
        .chain(config.target.iter().flat_map(|t| t.librdkafka.iter()));
    // librdkafka quotes the values it complains about; a secret-looking property's value is
    // blanked out wherever it appears.
    properties.fold(text, |text, (k, v)| {
        let quoted = text.replace(&format!("\"{v}\""), "\"***\"");
        if is_secret_property(k) && !v.is_empty() {
            quoted.replace(v.as_str(), "***")
        } else {
            quoted
        }
    })
}
