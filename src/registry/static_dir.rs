//! A static schema source: schemas on disk (or embedded) with the ids they have in a registry.
//!
//! For `schemabridge demo`, offline use and air-gapped bridges. A directory holds `schemas.yaml`:
//!
//! ```yaml
//! schemas:
//!   - { id: 1, subject: orders-value, version: 1, file: order_v1.avsc }
//!   - { id: 2, subject: orders-value, version: 2, file: order_v2.avsc }
//!   - { id: 7, subject: money, version: 1, file: money.proto, type: protobuf }
//! ```

use std::path::Path;

use serde::Deserialize;

use super::{Format, RegisteredSchema, RegistryError, SchemaReference};
use crate::config::SubjectVersion;
use crate::wire::SchemaId;

pub struct StaticDir {
    schemas: Vec<RegisteredSchema>,
}

/// One schema of a static source, as listed in `schemas.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticEntry {
    pub id: SchemaId,
    pub subject: String,
    pub version: u32,
    pub file: String,
    #[serde(default, rename = "type")]
    pub schema_type: Option<String>,
    #[serde(default)]
    pub references: Vec<SchemaReference>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    schemas: Vec<StaticEntry>,
}

impl StaticDir {
    /// Loads `dir/schemas.yaml` and every file it lists.
    pub fn load(dir: &Path) -> Result<Self, String> {
        let manifest_path = dir.join("schemas.yaml");
        let text = std::fs::read_to_string(&manifest_path)
            .map_err(|e| format!("cannot read {}: {e}", manifest_path.display()))?;
        let manifest: Manifest =
            serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(&text))
                .map_err(|e| format!("{}: {}: {}", manifest_path.display(), e.path(), e.inner()))?;
        let mut entries = Vec::new();
        for entry in manifest.schemas {
            let path = dir.join(&entry.file);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            entries.push((entry, text));
        }
        Self::from_entries(entries)
    }

    /// Builds a source from entries and their schema text (the demo embeds its schemas).
    pub fn from_entries(entries: Vec<(StaticEntry, String)>) -> Result<Self, String> {
        let mut schemas: Vec<RegisteredSchema> = Vec::new();
        for (e, text) in entries {
            let kind = Format::from_registry(e.schema_type.as_deref().map(|t| match t {
                "avro" => "AVRO",
                "protobuf" => "PROTOBUF",
                other => other,
            }))
            .map_err(|m| format!("schema id {}: {m}", e.id))?;
            if schemas.iter().any(|s| s.id == e.id) {
                return Err(format!("schema id {} is listed twice", e.id));
            }
            schemas.push(RegisteredSchema {
                id: e.id,
                kind,
                text,
                references: e.references,
                subject: Some(e.subject),
                version: Some(e.version),
            });
        }
        Ok(StaticDir { schemas })
    }

    pub fn by_id(&self, id: SchemaId) -> Result<RegisteredSchema, RegistryError> {
        self.schemas
            .iter()
            .find(|s| s.id == id)
            .cloned()
            .ok_or_else(|| {
                RegistryError::NotFound(format!(
                    "schema id {id} not found in the static schema directory"
                ))
            })
    }

    /// Every subject in the directory, sorted.
    pub fn subjects(&self) -> Vec<String> {
        let mut subjects: Vec<String> = self
            .schemas
            .iter()
            .filter_map(|s| s.subject.clone())
            .collect();
        subjects.sort_unstable();
        subjects.dedup();
        subjects
    }

    /// The versions of `subject`, ascending.
    pub fn versions(&self, subject: &str) -> Result<Vec<u32>, RegistryError> {
        let mut versions: Vec<u32> = self
            .schemas
            .iter()
            .filter(|s| s.subject.as_deref() == Some(subject))
            .filter_map(|s| s.version)
            .collect();
        if versions.is_empty() {
            return Err(RegistryError::NotFound(format!(
                "subject {subject} not found in the static schema directory"
            )));
        }
        versions.sort_unstable();
        Ok(versions)
    }

    pub fn by_subject(
        &self,
        subject: &str,
        version: SubjectVersion,
    ) -> Result<RegisteredSchema, RegistryError> {
        let mut candidates = self
            .schemas
            .iter()
            .filter(|s| s.subject.as_deref() == Some(subject));
        let found = match version {
            SubjectVersion::Number(n) => candidates.find(|s| s.version == Some(n)),
            SubjectVersion::Latest => candidates.max_by_key(|s| s.version),
        };
        found.cloned().ok_or_else(|| {
            RegistryError::NotFound(format!(
                "subject {subject} version {version} not found in the static schema directory"
            ))
        })
    }
}

impl StaticDir {
    /// The schema listed under `subject` whose text is `text` (as written, or the same JSON
    /// for Avro: key order and whitespace aside).
    pub fn lookup(
        &self,
        subject: &str,
        kind: Format,
        text: &str,
    ) -> Result<RegisteredSchema, RegistryError> {
        let json = |t: &str| serde_json::from_str::<serde_json::Value>(t).ok();
        let wanted = (kind == Format::Avro).then(|| json(text)).flatten();
        self.schemas
            .iter()
            .filter(|s| s.subject.as_deref() == Some(subject) && s.kind == kind)
            .find(|s| {
                s.text.trim() == text.trim()
                    || wanted
                        .as_ref()
                        .is_some_and(|w| json(&s.text).as_ref() == Some(w))
            })
            .cloned()
            .ok_or_else(|| {
                RegistryError::NotFound(format!(
                    "subject {subject} of the static schema directory does not list this schema"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_a_manifest_and_answers_by_id_and_subject() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("schemas.yaml"),
            "schemas:\n  - { id: 7, subject: s, version: 1, file: a.avsc }\n  - { id: 9, subject: s, version: 2, file: b.proto, type: protobuf,\n      references: [{ name: m.proto, subject: m, version: 1 }] }\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("a.avsc"), "\"string\"").unwrap();
        std::fs::write(dir.path().join("b.proto"), "syntax = \"proto3\";").unwrap();
        let src = StaticDir::load(dir.path()).unwrap();
        let a = src.by_id(7).unwrap();
        assert_eq!((a.kind, a.text.as_str()), (Format::Avro, "\"string\""));
        let latest = src.by_subject("s", SubjectVersion::Latest).unwrap();
        assert_eq!((latest.id, latest.kind), (9, Format::Protobuf));
        assert_eq!(latest.references[0].subject, "m");
        assert_eq!(
            src.by_subject("s", SubjectVersion::Number(1)).unwrap().id,
            7
        );
        assert!(matches!(src.by_id(8), Err(RegistryError::NotFound(_))));
        assert!(matches!(
            src.by_subject("s", SubjectVersion::Number(3)),
            Err(RegistryError::NotFound(_))
        ));
    }

    #[test]
    fn a_bad_manifest_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("schemas.yaml"),
            "schemas:\n  - { id: 7, subject: s, versoin: 1, file: a.avsc }\n",
        )
        .unwrap();
        let err = StaticDir::load(dir.path()).err().unwrap();
        assert!(err.contains("schemas[0]: unknown field `versoin`"), "{err}");
    }
}
