//! A schema named on the command line (`explain`, `transcode`): a file, a registry id, or a
//! registry subject at a version (`latest` included), loaded as the gateway loads one.
//!
//! Owns: turning a [`SchemaArg`] into a [`ParsedSchema`] with a human-readable origin: files
//! through [`super::parse_file`], registered schemas (their references fetched and inlined)
//! through [`Schemas::load`], with the whole load bounded in time while the registry is down.
//! Must not: pick a Protobuf message or compile plans (the commands do), or keep anything
//! between calls.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{CachePolicy, ParsedSchema, ResolveError, Schemas, parse_file};
use crate::config::{RegistryConfig, SubjectVersion};
use crate::registry::{Backoff, Format, SchemaSource};

/// Where one schema comes from.
#[derive(Debug, Clone)]
pub enum SchemaArg {
    /// A file: `.proto` is Protobuf, anything else Avro.
    File(PathBuf),
    /// A registry schema id.
    Id(u32),
    /// A registry subject at a version.
    Subject {
        subject: String,
        version: SubjectVersion,
    },
}

/// How long loading one schema (with its references) may take while the registry is down.
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(30);

const NEEDS_REGISTRY: &str = "a registry schema needs --registry URL";

/// A registry client for a bare `--registry URL` (the config file's defaults otherwise).
pub fn registry_at(url: &str) -> Result<Arc<SchemaSource>, String> {
    let cfg = RegistryConfig::for_url(url);
    crate::registry::ConfluentRegistry::new(&cfg)
        .map(|r| Arc::new(SchemaSource::Confluent(r)))
        .map_err(|e| e.to_string())
}

/// Loads `arg`: the schema and where it came from (`proto/orders/order_v2.avsc`, `registry
/// schema id 3`, `registry subject orders-value version latest`). Protobuf files find their
/// imports in `proto_paths` (default: the file's directory and its ancestors). Errors name the
/// origin.
pub async fn load(
    arg: &SchemaArg,
    registry: Option<&Arc<SchemaSource>>,
    proto_paths: &[PathBuf],
) -> Result<(String, ParsedSchema), String> {
    let need_registry = || registry.cloned().ok_or_else(|| NEEDS_REGISTRY.to_string());
    let (origin, registered, source) = match arg {
        SchemaArg::File(path) => {
            let kind = if path.extension().is_some_and(|e| e == "proto") {
                Format::Protobuf
            } else {
                Format::Avro
            };
            let schema = parse_file(path, kind, proto_paths)?;
            return Ok((path.display().to_string(), schema));
        }
        SchemaArg::Id(id) => {
            let source = need_registry()?;
            let origin = format!("registry schema id {id}");
            let fetched = source.by_id(*id).await;
            let registered = fetched.map_err(|e| format!("{origin}: {e}"))?;
            (origin, registered, source)
        }
        SchemaArg::Subject { subject, version } => {
            let source = need_registry()?;
            let origin = format!("registry subject {subject} version {version}");
            let fetched = source.by_subject(subject, *version).await;
            let registered = fetched.map_err(|e| format!("{origin}: {e}"))?;
            (origin, registered, source)
        }
    };
    // The schema layer parses it and fetches its references (recursively), as for the gateway;
    // it retries while the registry is unavailable, so the whole load is bounded here.
    let schemas = Schemas::new(
        source,
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        },
        CachePolicy {
            capacity: 16,
            not_found_ttl: Duration::from_secs(60),
        },
        CancellationToken::new(),
    );
    let schema = tokio::time::timeout(LOAD_TIMEOUT, schemas.load(&registered))
        .await
        .map_err(|_| {
            format!(
                "{origin}: the registry did not answer within {} s",
                LOAD_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| match e {
            ResolveError::Failed(f) => format!("{origin}: {}", f.message),
            ResolveError::Cancelled => format!("{origin}: cancelled"),
        })?;
    Ok((origin, schema))
}
