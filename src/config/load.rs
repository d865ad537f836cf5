//! From config text to the file format: YAML syntax, `${VAR}` interpolation, then serde, with
//! every error found reported (one per top-level section and per route, not just the first).
//!
//! Owns: turning serde's errors into [`ConfigError`]s with key paths, and letting a value that
//! was one whole `${...}` stand for a number or a boolean where the key wants one. Must not:
//! check relations between keys (`validate`).

use serde::de::DeserializeOwned;
use serde_yaml::Value;

use super::file::{
    ConfigFile, KafkaCluster, PipelineConfig, RegistryFile, TargetRegistryFile, TelemetryConfig,
};
use super::interpolate::{self, Interpolated, Lookup, Seg, node_mut, path_string};
use super::{ConfigError, ConfigErrors};

/// Parses `text` into the file format, expanding `${...}` from `lookup`.
pub(super) fn parse(text: &str, lookup: &dyn Lookup) -> Result<ConfigFile, ConfigErrors> {
    let mut root: Value = serde_yaml::from_str(text).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            path: ".".into(),
            message: format!("not valid YAML: {e}"),
        }])
    })?;
    // An unset variable is reported with whatever else is wrong (its value is left unexpanded,
    // and serde's complaint about that same key is not repeated).
    let (interpolated, mut errs) = match interpolate::interpolate(&mut root, lookup) {
        Ok(done) => (done, Vec::new()),
        Err((done, errs)) => (done, errs),
    };
    let mut ctx = Ctx {
        root,
        interpolated,
        coerced: Vec::new(),
    };
    match ctx.de::<ConfigFile>(&[]) {
        Ok(file) if errs.is_empty() => Ok(file),
        Ok(_) => Err(ConfigErrors(errs)),
        Err(first) => {
            let mut more = ctx.every_error();
            if more.is_empty() {
                more.push(first);
            }
            more.retain(|e| !errs.iter().any(|i| i.path == e.path));
            errs.extend(more);
            Err(ConfigErrors(errs))
        }
    }
}

struct Ctx {
    root: Value,
    interpolated: Interpolated,
    /// Paths already turned from a string into a number or boolean.
    coerced: Vec<String>,
}

impl Ctx {
    /// Deserializes the value at `at`. Where serde finds a string but wants something else, and
    /// that string was one whole `${...}`, it is read as the YAML scalar it spells and tried
    /// again.
    fn de<T: DeserializeOwned>(&mut self, at: &[Seg]) -> Result<T, ConfigError> {
        loop {
            let value = node_mut(&mut self.root, at).cloned().unwrap_or(Value::Null);
            let err = match serde_path_to_error::deserialize::<_, T>(value) {
                Ok(t) => return Ok(t),
                Err(e) => e,
            };
            let path = join(&path_string(at), &err.path().to_string());
            let message = err.inner().to_string();
            if message.starts_with("invalid type: string")
                && !self.coerced.contains(&path)
                && let Some(segs) = self.interpolated.get(&path).map(<[Seg]>::to_vec)
                && let Some(node) = node_mut(&mut self.root, &segs)
                && let Value::String(s) = node
                && let Ok(scalar @ (Value::Number(_) | Value::Bool(_))) =
                    serde_yaml::from_str::<Value>(s)
            {
                *node = scalar;
                self.coerced.push(path);
                continue;
            }
            return Err(unknown_field_at_its_mapping(path, message));
        }
    }

    /// Every error in the document, section by section and route by route.
    fn every_error(&mut self) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        let keys: Vec<String> = match &self.root {
            Value::Mapping(m) => m
                .keys()
                .map(|k| k.as_str().unwrap_or("?").to_string())
                .collect(),
            _ => {
                return vec![ConfigError {
                    path: ".".into(),
                    message: "expected a mapping of config keys".into(),
                }];
            }
        };
        for required in ["source", "group_id", "registry", "routes"] {
            if !keys.iter().any(|k| k == required) {
                errs.push(ConfigError {
                    path: ".".into(),
                    message: format!("missing field `{required}`"),
                });
            }
        }
        for key in keys {
            let at = [Seg::Key(key.clone())];
            let result = match key.as_str() {
                "source" | "target" => self.de::<KafkaCluster>(&at).map(drop),
                "group_id" | "group_instance_id" => self.de::<String>(&at).map(drop),
                "registry" => self.de::<RegistryFile>(&at).map(drop),
                "target_registry" => self.de::<TargetRegistryFile>(&at).map(drop),
                "pipeline" => self.de::<PipelineConfig>(&at).map(drop),
                "telemetry" => self.de::<TelemetryConfig>(&at).map(drop),
                "routes" => {
                    let n = match node_mut(&mut self.root, &at) {
                        Some(Value::Sequence(s)) => Some(s.len()),
                        _ => None,
                    };
                    match n {
                        Some(n) => {
                            for i in 0..n {
                                let at = [Seg::Key(key.clone()), Seg::Index(i)];
                                if let Err(e) = self.de::<super::file::RouteFile>(&at) {
                                    errs.push(e);
                                }
                            }
                            Ok(())
                        }
                        None => self.de::<Vec<super::file::RouteFile>>(&at).map(drop),
                    }
                }
                other => Err(ConfigError {
                    path: ".".into(),
                    message: format!(
                        "unknown field `{other}`, expected one of `source`, `target`, `group_id`, `group_instance_id`, `registry`, `target_registry`, `pipeline`, `routes`, `telemetry`"
                    ),
                }),
            };
            if let Err(e) = result {
                errs.push(e);
            }
        }
        errs
    }
}

/// `a.b` + `c[0].d` → `a.b.c[0].d`; `.` is the root on either side.
fn join(prefix: &str, rel: &str) -> String {
    match (prefix, rel) {
        (".", rel) => rel.to_string(),
        (prefix, ".") => prefix.to_string(),
        (prefix, rel) if rel.starts_with('[') => format!("{prefix}{rel}"),
        (prefix, rel) => format!("{prefix}.{rel}"),
    }
}

/// serde reports an unknown key at the path of the key itself; name the mapping holding it, where
/// the user has to look (`routes[0].value.reader: unknown field `subjet``).
fn unknown_field_at_its_mapping(path: String, message: String) -> ConfigError {
    if let Some(field) = message
        .strip_prefix("unknown field `")
        .and_then(|m| m.split('`').next())
        && let Some(parent) = path.strip_suffix(field)
    {
        let parent = parent.strip_suffix('.').unwrap_or(parent);
        return ConfigError {
            path: if parent.is_empty() {
                ".".into()
            } else {
                parent.into()
            },
            message,
        };
    }
    ConfigError { path, message }
}
