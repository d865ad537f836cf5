//! Schemas from files, for the commands that take one (`check --writer-schema`, `explain`):
//! parsed as the schema layer parses a registered schema.
//!
//! Owns: reading an Avro `.avsc` or a `.proto` file and the files it imports (found in include
//! directories, by default the file's directory and each of its ancestors, as `protoc -I`
//! would with the proto root). Must not: touch the registry or the caches.

use std::path::{Path, PathBuf};

use super::ParsedSchema;
use crate::avro;
use crate::protobuf;
use crate::registry::Format;

/// `path` parsed as a `kind` schema; a `.proto` file's imports are read from `include` (or,
/// when empty, the file's directory and its ancestors). Errors name the file.
pub fn parse_file(path: &Path, kind: Format, include: &[PathBuf]) -> Result<ParsedSchema, String> {
    let text = read(path)?;
    match kind {
        Format::Avro => avro::Schema::parse_str(&text)
            .map(ParsedSchema::Avro)
            .map_err(|e| format!("{}: not valid Avro: {e}", path.display())),
        Format::Protobuf => {
            let imports = proto_imports(path, &text, include)?;
            let main = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "schema.proto".into());
            protobuf::build_pool(&main, &text, &imports)
                .map(|pool| ParsedSchema::Protobuf { pool, main })
                .map_err(|e| format!("{}: {e}", path.display()))
        }
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The files a `.proto` file imports (recursively), as (import name, text). Well-known types
/// (`google/protobuf/...`) are built in. Each import is looked up in `include` or, when that is
/// empty, in the file's directory and then each of its ancestors.
fn proto_imports(
    file: &Path,
    text: &str,
    include: &[PathBuf],
) -> Result<Vec<(String, String)>, String> {
    let dirs: Vec<PathBuf> = if include.is_empty() {
        file.parent()
            .map(|p| p.ancestors().map(Path::to_path_buf).collect())
            .unwrap_or_default()
    } else {
        include.to_vec()
    };
    let mut found: Vec<(String, String)> = Vec::new();
    let mut todo: Vec<(String, String)> = import_names(text)
        .into_iter()
        .map(|n| (n, file.display().to_string()))
        .collect();
    while let Some((name, by)) = todo.pop() {
        if name.starts_with("google/protobuf/") || found.iter().any(|(n, _)| *n == name) {
            continue;
        }
        let path = dirs
            .iter()
            .map(|d| d.join(&name))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                format!(
                    "import {name:?} (in {by}) not found in {}",
                    dirs.iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
        let text = read(&path)?;
        todo.extend(
            import_names(&text)
                .into_iter()
                .map(|n| (n, path.display().to_string())),
        );
        found.push((name, text));
    }
    Ok(found)
}

fn import_names(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let rest = line.trim_start().strip_prefix("import")?;
            let rest = rest.trim_start();
            let rest = rest
                .strip_prefix("public")
                .or_else(|| rest.strip_prefix("weak"))
                .unwrap_or(rest)
                .trim_start();
            let rest = rest.strip_prefix('"')?;
            rest.find('"').map(|end| rest[..end].to_owned())
        })
        .collect()
}
