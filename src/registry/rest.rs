//! The Confluent REST calls `schema_registry_converter` does not make: the newest version with
//! given schema metadata (`GET /subjects/{subject}/metadata?key=..&value=..`), a lookup by
//! schema text (`POST /subjects/{subject}`), registration (`POST /subjects/{subject}/versions`)
//! and a subject's compatibility level (`GET /config/{subject}`).
//!
//! Owns: building those requests (the subject percent-encoded as one path segment), trying the
//! configured URLs in order while a registry is unavailable, and classifying answers exactly as
//! `confluent` does: a 404 is "does not exist" only with a Confluent error body (40401, 40402,
//! 40403), 409/422 are permanent refusals, anything else (other 404s, 5xx, auth refused, timeout,
//! a body that is not the registry's JSON) is an outage. Must not: parse schemas, or log or
//! return a credential.

use std::collections::BTreeMap;

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde::Deserialize;

use super::{Format, RegisteredSchema, RegistryError, SchemaReference};
use crate::config::Secret;
use crate::wire::SchemaId;

const MEDIA_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Registry credentials, as the HTTP client sends them.
pub enum Auth {
    None,
    Basic(String, Secret),
    Bearer(Secret),
}

pub struct Rest {
    /// Base URLs without a trailing `/`, tried in order.
    urls: Vec<String>,
    client: reqwest::Client,
    auth: Auth,
}

/// A schema body as Confluent returns it (`GET /subjects/{s}/versions/{v}`, `/metadata`,
/// `POST /subjects/{s}`); unknown fields (`metadata`, `ruleSet`, `guid`...) are ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaBody {
    subject: Option<String>,
    version: Option<u32>,
    id: SchemaId,
    schema_type: Option<String>,
    schema: String,
    #[serde(default)]
    references: Vec<SchemaReference>,
}

#[derive(Deserialize)]
struct IdBody {
    id: SchemaId,
}

#[derive(Deserialize)]
struct ErrorBody {
    error_code: u32,
    message: Option<String>,
}

enum Method<'a> {
    Get,
    Post(&'a str),
}

impl Rest {
    pub fn new(urls: Vec<String>, client: reqwest::Client, auth: Auth) -> Self {
        Rest { urls, client, auth }
    }

    pub async fn by_metadata(
        &self,
        subject: &str,
        metadata: &BTreeMap<String, String>,
    ) -> Result<RegisteredSchema, RegistryError> {
        let pairs: Vec<String> = metadata.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let what = format!("subject {subject} latest with metadata {}", pairs.join(","));
        let query: Vec<(&str, &str)> = metadata
            .iter()
            .flat_map(|(k, v)| [("key", k.as_str()), ("value", v.as_str())])
            .collect();
        let body = self
            .call(
                &what,
                &["subjects", subject, "metadata"],
                &query,
                Method::Get,
            )
            .await?;
        schema(&what, &body)
    }

    pub async fn lookup(
        &self,
        subject: &str,
        kind: Format,
        text: &str,
        references: &[SchemaReference],
    ) -> Result<RegisteredSchema, RegistryError> {
        let what = format!("lookup of a schema under subject {subject}");
        let request = request_body(kind, text, references);
        let body = self
            .call(
                &what,
                &["subjects", subject],
                &[("deleted", "false")],
                Method::Post(&request),
            )
            .await?;
        schema(&what, &body)
    }

    pub async fn register(
        &self,
        subject: &str,
        kind: Format,
        text: &str,
        references: &[SchemaReference],
    ) -> Result<SchemaId, RegistryError> {
        let what = format!("registration of a schema under subject {subject}");
        let request = request_body(kind, text, references);
        let body = self
            .call(
                &what,
                &["subjects", subject, "versions"],
                &[],
                Method::Post(&request),
            )
            .await?;
        serde_json::from_slice::<IdBody>(&body)
            .map(|b| b.id)
            .map_err(|e| {
                RegistryError::Transient(format!(
                    "{what}: the answer is not a schema registry's id body: {e}"
                ))
            })
    }

    /// The compatibility level that applies to `subject`: its own, else the registry's global
    /// one (`GET /config/{subject}?defaultToGlobal=true`).
    pub async fn compatibility(&self, subject: &str, what: &str) -> Result<String, RegistryError> {
        let body = self
            .call(
                what,
                &["config", subject],
                &[("defaultToGlobal", "true")],
                Method::Get,
            )
            .await?;
        let level = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|b| {
                b.get("compatibilityLevel")
                    .or_else(|| b.get("compatibility"))
                    .and_then(|v| v.as_str().map(str::to_string))
            });
        level.ok_or_else(|| {
            RegistryError::Transient(format!(
                "{what}: the answer is not a schema registry's config body"
            ))
        })
    }

    /// One request, to each URL in turn while the registry there is unavailable; the body of
    /// the first successful answer.
    async fn call(
        &self,
        what: &str,
        path: &[&str],
        query: &[(&str, &str)],
        method: Method<'_>,
    ) -> Result<Vec<u8>, RegistryError> {
        let mut last = RegistryError::Transient(format!("{what}: no registry URL"));
        for base in &self.urls {
            let mut url = match url::Url::parse(base) {
                Ok(u) => u,
                Err(e) => {
                    last = RegistryError::Invalid(format!("{what}: bad registry URL: {e}"));
                    continue;
                }
            };
            match url.path_segments_mut() {
                Ok(mut segments) => {
                    segments.pop_if_empty().extend(path);
                }
                Err(()) => {
                    last = RegistryError::Invalid(format!("{what}: bad registry URL"));
                    continue;
                }
            }
            if !query.is_empty() {
                url.query_pairs_mut().extend_pairs(query);
            }
            let builder = match method {
                Method::Get => self.client.get(url),
                Method::Post(body) => self
                    .client
                    .post(url)
                    .header(CONTENT_TYPE, MEDIA_TYPE)
                    .body(body.to_string()),
            }
            .header(ACCEPT, MEDIA_TYPE);
            let builder = match &self.auth {
                Auth::None => builder,
                Auth::Basic(user, password) => builder.basic_auth(user, Some(password.expose())),
                Auth::Bearer(token) => builder.bearer_auth(token.expose()),
            };
            match answer(what, builder.send().await).await {
                Ok(body) => return Ok(body),
                Err(e) if e.is_transient() => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }
}

/// The body of a successful answer, or the classified failure.
async fn answer(
    what: &str,
    sent: Result<reqwest::Response, reqwest::Error>,
) -> Result<Vec<u8>, RegistryError> {
    let response = sent.map_err(|e| RegistryError::Transient(format!("{what}: {}", chain(&e))))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| RegistryError::Transient(format!("{what}: {}", chain(&e))))?;
    if status.is_success() {
        return Ok(body.to_vec());
    }
    let error = serde_json::from_slice::<ErrorBody>(&body).ok();
    let detail = match &error {
        Some(e) => format!(
            "HTTP {status}, error_code {}: {}",
            e.error_code,
            e.message.as_deref().unwrap_or("")
        ),
        None => format!("HTTP {status} without a schema registry error body"),
    };
    let code = error.map(|e| e.error_code);
    Err(match status.as_u16() {
        404 if matches!(code, Some(40401..=40403)) => {
            RegistryError::NotFound(format!("{what}: not found in the registry ({detail})"))
        }
        404 => RegistryError::Transient(format!(
            "{what}: {detail} (a proxy or a wrong registry URL?)"
        )),
        409 | 422 => RegistryError::Invalid(format!("{what}: registry refused it ({detail})")),
        _ => RegistryError::Transient(format!("{what}: {detail}")),
    })
}

/// An error and its causes (reqwest's own text rarely says why).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !text.ends_with(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
        source = cause.source();
    }
    text
}

fn request_body(kind: Format, text: &str, references: &[SchemaReference]) -> String {
    let mut body = serde_json::Map::new();
    body.insert("schema".into(), text.into());
    body.insert(
        "schemaType".into(),
        match kind {
            Format::Avro => "AVRO",
            Format::Protobuf => "PROTOBUF",
        }
        .into(),
    );
    if !references.is_empty() {
        body.insert(
            "references".into(),
            serde_json::to_value(references).unwrap_or_default(),
        );
    }
    serde_json::Value::Object(body).to_string()
}

fn schema(what: &str, body: &[u8]) -> Result<RegisteredSchema, RegistryError> {
    let b: SchemaBody = serde_json::from_slice(body).map_err(|e| {
        RegistryError::Transient(format!(
            "{what}: the answer is not a schema registry's schema body: {e}"
        ))
    })?;
    let kind = Format::from_registry(b.schema_type.as_deref())
        .map_err(|m| RegistryError::Invalid(format!("{what}: {m}")))?;
    Ok(RegisteredSchema {
        id: b.id,
        kind,
        text: b.schema,
        references: b.references,
        subject: b.subject,
        version: b.version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lookup_body_is_confluents_and_references_only_when_present() {
        let body = request_body(Format::Avro, "\"string\"", &[]);
        assert_eq!(body, r#"{"schema":"\"string\"","schemaType":"AVRO"}"#);
        let refs = [SchemaReference {
            name: "m.proto".into(),
            subject: "m".into(),
            version: 2,
        }];
        let body: serde_json::Value =
            serde_json::from_str(&request_body(Format::Protobuf, "x", &refs)).unwrap();
        assert_eq!(
            body["references"],
            serde_json::json!([{"name": "m.proto", "subject": "m", "version": 2}])
        );
    }
}
