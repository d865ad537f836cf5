//! The YAML configuration: what a config file may say, what it means, and the Kafka client
//! settings that follow from it.
//!
//! Owns: reading a config file into a validated [`Config`]. `file` holds the serde shapes (the
//! file format and its defaults), `validate` the checks serde cannot express, `kafka` the
//! translation into librdkafka settings for each client role (so a collision between our
//! settings and a user's raw librdkafka option is caught in one place). Every error names the
//! path of the key it came from (`routes[1].value.reader.subject: ...`), so a user can fix it
//! without reading code. Must not: connect to anything.

mod file;
mod kafka;
#[cfg(test)]
mod tests;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;

pub use file::*;

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

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                path: ".".into(),
                message: format!("cannot read config file {}: {e}", path.display()),
            }])
        })?;
        let mut config = Config::parse(&text)?;
        config.resolve_relative_paths(path.parent().unwrap_or(Path::new(".")));
        Ok(config)
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
        let de = serde_yaml::Deserializer::from_str(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            // serde_yaml prefixes its message with the path of the mapping it was reading
            // (`routes[0].value.reader: unknown field ...`) and appends " at line L column C";
            // use its path where it gives one (it names the mapping holding an unknown key),
            // else the path serde_path_to_error tracked.
            let inner = e.inner().to_string();
            let tracked = e.path().to_string();
            let (path, message) = match inner.split_once(": ") {
                Some((prefix, rest)) if !prefix.contains(' ') && tracked.starts_with(prefix) => {
                    (prefix.to_string(), rest.to_string())
                }
                _ => (tracked, inner),
            };
            ConfigErrors(vec![ConfigError { path, message }])
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Files named in the config are relative to the config file's directory.
    fn resolve_relative_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(dir) = self.registry.static_dir.as_mut() {
            fix(dir);
        }
        for route in &mut self.routes {
            for part in [&mut route.key, &mut route.value] {
                if let Some(file) = part.reader.as_mut().and_then(|r| r.schema_file.as_mut()) {
                    fix(file);
                }
            }
        }
    }
}
