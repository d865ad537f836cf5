//! The Confluent Schema Registry REST client, through `schema_registry_converter`.
//!
//! Owns: turning our registry config into `SrSettings` (its HTTP client built by `tls`), the
//! library's errors into transient/permanent ones, and counting each request by outcome. The
//! library marks only 502/503 retriable; for a gateway that must never drop a message over an
//! outage, everything except "this id/subject does not exist" or "this request is invalid"
//! (422) is transient. "Does not exist" is a 404 whose body is a
//! Confluent error with `error_code` 40401 (subject), 40402 (version) or 40403 (schema): any
//! other 404 (an ingress default backend's HTML page, a wrong base path) says nothing about the
//! schema, so it is an outage too, and so is a TLS failure (unknown issuer, refused client
//! certificate): the error text carries the whole cause chain, down to rustls' reason.
//!
//! The calls the library lacks (schema metadata, lookup by text, registration; see `rest`)
//! go through the same HTTP client settings (TLS, timeout, auth) and the same classification.

use std::time::Duration;

use schema_registry_converter::async_impl::schema_registry::{
    SrSettings, get_all_subjects, get_all_versions, get_schema_by_id,
    get_schema_by_subject_and_version,
};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{self as src, RawError, SchemaType};

use super::rest::Rest;
use super::{Format, RegisteredSchema, RegistryError, SchemaReference, tls};
use crate::config::{ConfigError, RegistryAuth, RegistryConfig, RegistrySource, SubjectVersion};
use crate::telemetry::events::RegistryRequestEvents;
use crate::wire::SchemaId;

pub struct ConfluentRegistry {
    settings: SrSettings,
    /// Our own calls (metadata, lookup, register); boxed, as `SchemaSource` holds this inline.
    rest: Box<Rest>,
    /// Registered at the first request, not here: `run` builds the client (to check the config)
    /// before it installs the metrics recorder, and a handle registered before that is a no-op.
    requests: std::sync::OnceLock<RegistryRequestEvents>,
}

impl ConfluentRegistry {
    pub fn new(cfg: &RegistryConfig) -> Result<Self, ConfigError> {
        let urls = match &cfg.source {
            RegistrySource::Urls(urls) => urls.as_slice(),
            RegistrySource::StaticDir(_) => &[],
        };
        let mut urls = urls.iter();
        let key = cfg.key;
        let all: Vec<String> = urls
            .clone()
            .map(|u| u.trim_end_matches('/').to_string())
            .collect();
        let first = urls.next().ok_or_else(|| ConfigError {
            path: format!("{key}.url"),
            message: "required".into(),
        })?;
        let mut builder = SrSettings::new_builder(first.trim_end_matches('/').to_string());
        for url in urls {
            builder.add_url(url.trim_end_matches('/').to_string());
        }
        builder.set_timeout(Duration::from_millis(cfg.timeout_ms));
        let rekey = |e: ConfigError| ConfigError {
            path: crate::config::rekey_registry_path(&e.path, key),
            message: e.message,
        };
        let auth = match &cfg.auth {
            Some(RegistryAuth::Basic { username, password }) => {
                let password = password.read(&format!("{key}.auth.basic"))?;
                builder.set_basic_authorization(username, Some(password.expose()));
                super::rest::Auth::Basic(username.clone(), password)
            }
            Some(RegistryAuth::Bearer { token }) => {
                let token = token.read(&format!("{key}.auth.bearer"))?;
                builder.set_token_authorization(token.expose());
                super::rest::Auth::Bearer(token)
            }
            None => super::rest::Auth::None,
        };
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let client = tls::client_builder(cfg.tls.as_ref()).map_err(rekey)?;
        let settings = builder.build_with(client).map_err(|e| ConfigError {
            path: key.into(),
            message: format!("cannot build the registry HTTP client: {}", e.error),
        })?;
        let rest_client = tls::client_builder(cfg.tls.as_ref())
            .map_err(rekey)?
            .timeout(timeout)
            .build()
            .map_err(|e| ConfigError {
                path: key.into(),
                message: format!("cannot build the registry HTTP client: {e}"),
            })?;
        Ok(ConfluentRegistry {
            settings,
            rest: Box::new(Rest::new(all, rest_client, auth)),
            requests: std::sync::OnceLock::new(),
        })
    }

    /// Counts one request by how it ended.
    fn count<T>(&self, result: Result<T, RegistryError>) -> Result<T, RegistryError> {
        let requests = self.requests.get_or_init(RegistryRequestEvents::new);
        let counter = match &result {
            Ok(_) => &requests.ok,
            Err(RegistryError::NotFound(_)) => &requests.not_found,
            Err(RegistryError::Transient(_)) => &requests.transient_error,
            Err(RegistryError::Invalid(_)) => &requests.permanent_error,
        };
        counter.increment(1);
        result
    }

    pub async fn by_id(&self, id: SchemaId) -> Result<RegisteredSchema, RegistryError> {
        let what = format!("schema id {id}");
        let result = get_schema_by_id(id, &self.settings)
            .await
            .map_err(|e| classify(&what, e))
            .and_then(|s| convert(&what, s));
        self.count(result)
    }

    pub async fn by_subject(
        &self,
        subject: &str,
        version: SubjectVersion,
    ) -> Result<RegisteredSchema, RegistryError> {
        let what = format!("subject {subject} version {version}");
        let v = match version {
            SubjectVersion::Latest => None,
            SubjectVersion::Number(n) => Some(n),
        };
        let result = get_schema_by_subject_and_version(&self.settings, subject, v)
            .await
            .map_err(|e| classify(&what, e))
            .and_then(|s| convert(&what, s));
        self.count(result)
    }

    pub async fn by_metadata(
        &self,
        subject: &str,
        metadata: &std::collections::BTreeMap<String, String>,
    ) -> Result<RegisteredSchema, RegistryError> {
        let result = self.rest.by_metadata(subject, metadata).await;
        self.count(result)
    }

    pub async fn lookup(
        &self,
        subject: &str,
        kind: Format,
        text: &str,
        references: &[SchemaReference],
    ) -> Result<RegisteredSchema, RegistryError> {
        let result = self.rest.lookup(subject, kind, text, references).await;
        self.count(result)
    }

    pub async fn register(
        &self,
        subject: &str,
        kind: Format,
        text: &str,
        references: &[SchemaReference],
    ) -> Result<SchemaId, RegistryError> {
        let result = self.rest.register(subject, kind, text, references).await;
        self.count(result)
    }
}

impl ConfluentRegistry {
    /// Every subject the registry has.
    pub async fn subjects(&self) -> Result<Vec<String>, RegistryError> {
        let result = get_all_subjects(&self.settings)
            .await
            .map_err(|e| classify("the subject list", e));
        self.count(result)
    }

    /// The versions registered under `subject`, ascending.
    pub async fn versions(&self, subject: &str) -> Result<Vec<u32>, RegistryError> {
        let what = format!("versions of subject {subject}");
        let result = get_all_versions(&self.settings, subject.to_string())
            .await
            .map(|mut v| {
                v.sort_unstable();
                v
            })
            .map_err(|e| classify(&what, e));
        self.count(result)
    }

    /// The compatibility level that applies to `subject` (its own, else the registry's global
    /// one): `GET /config/{subject}?defaultToGlobal=true`.
    pub async fn compatibility(&self, subject: &str) -> Result<String, RegistryError> {
        let what = format!("compatibility level of subject {subject}");
        let result = self.rest.compatibility(subject, &what).await;
        self.count(result)
    }
}

fn classify(what: &str, e: SRCError) -> RegistryError {
    let status = http_status(&e.error);
    let detail = cause_chain(&e);
    match status {
        Some(404) if is_not_found_code(confluent_error_code(&e)) => {
            RegistryError::NotFound(format!("{what} not found in the registry ({detail})"))
        }
        Some(404) => RegistryError::Transient(format!(
            "{what}: HTTP 404 without a schema registry error body (a proxy or a wrong registry URL?): {detail}"
        )),
        Some(422) => {
            RegistryError::Invalid(format!("{what}: registry rejected the request ({detail})"))
        }
        _ => RegistryError::Transient(format!("{what}: {detail}")),
    }
}

/// The library's message and every cause under it (reqwest's "error sending request" says
/// nothing; the reason, e.g. rustls' "invalid peer certificate: UnknownIssuer", is a few
/// sources down). A cause whose text its parent already shows is skipped.
fn cause_chain(e: &SRCError) -> String {
    let mut detail = e.error.clone();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !detail.ends_with(&text) {
            detail.push_str(": ");
            detail.push_str(&text);
        }
        source = cause.source();
    }
    detail
}

/// The `error_code` of the registry's JSON error body, when the response had one. The library
/// keeps the parsed body as the error's source; a body it could not parse becomes code 0.
fn confluent_error_code(e: &SRCError) -> Option<u32> {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<RawError>())
        .map(|raw| raw.error_code)
        .filter(|code| *code != 0)
}

/// Confluent's "subject not found" (40401), "version not found" (40402), "schema not found"
/// (40403): the only answers that make an id or subject/version a property of the message.
fn is_not_found_code(code: Option<u32>) -> bool {
    matches!(code, Some(40401..=40403))
}

/// The library reports HTTP failures as "... failed with status 404 Not Found".
fn http_status(error: &str) -> Option<u16> {
    let rest = error.split("status ").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn convert(what: &str, s: src::RegisteredSchema) -> Result<RegisteredSchema, RegistryError> {
    let kind = match &s.schema_type {
        SchemaType::Avro => Format::Avro,
        SchemaType::Protobuf => Format::Protobuf,
        other => {
            return Err(RegistryError::Invalid(format!(
                "{what} is of type {other:?}, which schemabridge does not support"
            )));
        }
    };
    Ok(RegisteredSchema {
        id: s.id,
        kind,
        text: s.schema,
        references: s
            .references
            .into_iter()
            .map(|r| SchemaReference {
                name: r.name,
                subject: r.subject,
                version: r.version,
            })
            .collect(),
        subject: s.subject,
        version: s.version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_read_from_the_library_error() {
        assert_eq!(
            http_status("HTTP request to schema registry failed with status 404 Not Found"),
            Some(404)
        );
        assert_eq!(http_status("error sending request"), None);
    }

    fn http_error(status: &str, body: Option<&str>) -> SRCError {
        let error = format!("HTTP request to schema registry failed with status {status}");
        match body {
            Some(json) => {
                let raw: RawError = serde_json::from_str(json).expect("error body");
                SRCError::non_retryable_with_cause(raw, &error)
            }
            None => SRCError::non_retryable_without_cause(&error),
        }
    }

    #[test]
    fn only_a_confluent_not_found_body_makes_a_404_permanent() {
        for code in [40401, 40402, 40403] {
            let body = format!(r#"{{"error_code":{code},"message":"Schema 7 not found"}}"#);
            let e = classify("schema id 7", http_error("404 Not Found", Some(&body)));
            assert!(matches!(e, RegistryError::NotFound(_)), "{code}: {e:?}");
        }
        // What the library makes of an HTML page (an ingress default backend): code 0.
        let html = r#"{"error_code":0,"message":"couldn't parse schema registry error json"}"#;
        let cases = [
            http_error("404 Not Found", Some(html)),
            http_error("404 Not Found", None),
            // Confluent's own answer for an unknown REST path: not about the schema.
            http_error(
                "404 Not Found",
                Some(r#"{"error_code":404,"message":"HTTP 404 Not Found"}"#),
            ),
            http_error("500 Internal Server Error", Some(html)),
        ];
        for e in cases {
            let shown = e.to_string();
            let e = classify("schema id 7", e);
            assert!(e.is_transient(), "{shown} -> {e:?}");
            assert!(e.to_string().contains("schema id 7"), "{e}");
        }
        let e = classify(
            "schema id 7",
            http_error(
                "422 Unprocessable Entity",
                Some(r#"{"error_code":42201,"message":"Invalid schema"}"#),
            ),
        );
        assert!(matches!(e, RegistryError::Invalid(_)), "{e:?}");
    }
}
