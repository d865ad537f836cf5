//! `${VAR}` interpolation in config values, as Vector and Redpanda Connect do it.
//!
//! Owns: expanding, in every string value of the parsed YAML tree, `${VAR}` (the environment
//! variable; an error when unset), `${VAR:default}` (the default when unset or empty),
//! `${file:PATH}` (a mounted file's contents, trailing newline trimmed, as Kafka Connect's
//! `FileConfigProvider`) and the escape `$${` (a literal `${`). Expansion works on the parsed
//! tree, not the text, so a value can never change the document's structure (a password holding
//! `#` or `: ` stays one string), and an error names the key it is in. Mapping keys are not
//! expanded. A value that was one whole `${...}` is recorded so that a key expecting a number or
//! a boolean can take it (`max_in_flight: ${MAX_IN_FLIGHT:10000}`). Must not: put a variable's
//! value into an error message.

use std::collections::HashMap;

use serde_yaml::Value;

use super::ConfigError;

/// One step from the document root to a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

/// The values that were one whole `${...}` expression, by key path as `serde_path_to_error`
/// prints it (`routes[0].value.reader.version`), with the way to them from the root.
#[derive(Debug, Default)]
pub(super) struct Interpolated(HashMap<String, Vec<Seg>>);

impl Interpolated {
    /// Where the whole-expression value at `path` is, if there is one.
    pub(super) fn get(&self, path: &str) -> Option<&[Seg]> {
        self.0.get(path).map(Vec::as_slice)
    }
}

/// Where a variable's value comes from (the process environment, or a test's map).
pub(super) trait Lookup {
    fn var(&self, name: &str) -> Option<String>;
    fn file(&self, path: &str) -> Result<String, String>;
}

/// The process environment and file system.
pub(super) struct Environment;

impl Lookup for Environment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
    fn file(&self, path: &str) -> Result<String, String> {
        std::fs::read_to_string(path)
            .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
            .map_err(|e| e.kind().to_string())
    }
}

/// Expands every string value under `root`; `Err` lists every problem, each naming its key
/// (the values in error are left as they were, the others expanded).
pub(super) fn interpolate(
    root: &mut Value,
    lookup: &dyn Lookup,
) -> Result<Interpolated, (Interpolated, Vec<ConfigError>)> {
    let mut done = Interpolated::default();
    let mut errors = Vec::new();
    let mut at = Vec::new();
    walk(root, &mut at, lookup, &mut done, &mut errors);
    if errors.is_empty() {
        Ok(done)
    } else {
        Err((done, errors))
    }
}

fn walk(
    v: &mut Value,
    at: &mut Vec<Seg>,
    lookup: &dyn Lookup,
    done: &mut Interpolated,
    errors: &mut Vec<ConfigError>,
) {
    match v {
        Value::String(s) if s.contains('$') => match expand(s, lookup) {
            Ok(Expanded { text, whole }) => {
                *s = text;
                if whole {
                    done.0.insert(path_string(at), at.clone());
                }
            }
            Err(message) => errors.push(ConfigError {
                path: path_string(at),
                message,
            }),
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                at.push(Seg::Index(i));
                walk(item, at, lookup, done, errors);
                at.pop();
            }
        }
        Value::Mapping(map) => {
            for (k, item) in map.iter_mut() {
                let key = match k {
                    Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other)
                        .map(|s| s.trim_end().to_string())
                        .unwrap_or_default(),
                };
                at.push(Seg::Key(key));
                walk(item, at, lookup, done, errors);
                at.pop();
            }
        }
        Value::Tagged(t) => walk(&mut t.value, at, lookup, done, errors),
        _ => {}
    }
}

/// A key path as `serde_path_to_error` prints one: `routes[0].value`, `.` for the root.
pub(super) fn path_string(at: &[Seg]) -> String {
    let mut out = String::new();
    for seg in at {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    if out.is_empty() { ".".into() } else { out }
}

/// The value at `at` under `root`.
pub(super) fn node_mut<'a>(root: &'a mut Value, at: &[Seg]) -> Option<&'a mut Value> {
    let mut v = root;
    for seg in at {
        v = match (seg, v) {
            (Seg::Key(k), Value::Mapping(m)) => m.get_mut(k.as_str())?,
            (Seg::Index(i), Value::Sequence(s)) => s.get_mut(*i)?,
            (_, Value::Tagged(t)) => return node_mut(&mut t.value, std::slice::from_ref(seg)),
            _ => return None,
        };
    }
    Some(v)
}

struct Expanded {
    text: String,
    /// The value was exactly one `${...}` expression.
    whole: bool,
}

fn expand(s: &str, lookup: &dyn Lookup) -> Result<Expanded, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut expressions = 0;
    let mut literal = false;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            literal = true;
            rest = after;
        } else if let Some(body) = tail.strip_prefix("${") {
            let end = body
                .find('}')
                .ok_or_else(|| "unterminated `${` (write `$${` for a literal `${`)".to_string())?;
            out.push_str(&resolve(&body[..end], lookup)?);
            expressions += 1;
            rest = &body[end + 1..];
        } else {
            out.push('$');
            literal = true;
            rest = &tail[1..];
        }
    }
    let whole = expressions == 1 && !literal && s.starts_with("${") && s.ends_with('}');
    out.push_str(rest);
    Ok(Expanded { text: out, whole })
}

fn resolve(expr: &str, lookup: &dyn Lookup) -> Result<String, String> {
    if let Some(path) = expr.strip_prefix("file:") {
        if path.is_empty() {
            return Err("`${file:PATH}` needs a path".into());
        }
        return lookup
            .file(path)
            .map_err(|e| format!("cannot read {path} (from `${{file:{path}}}`): {e}"));
    }
    let (name, default) = match expr.split_once(':') {
        Some((name, default)) => (name, Some(default)),
        None => (expr, None),
    };
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "`${{{name}}}` is not a variable name (letters, digits and `_`; write `$${{` for a literal `${{`)"
        ));
    }
    match (lookup.var(name), default) {
        (Some(v), Some(d)) if v.is_empty() => Ok(d.to_string()),
        (Some(v), _) => Ok(v),
        (None, Some(d)) => Ok(d.to_string()),
        (None, None) => Err(format!(
            "environment variable {name} is not set (write `${{{name}:default}}` to give a default)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Vars(&'static [(&'static str, &'static str)]);

    impl Lookup for Vars {
        fn var(&self, name: &str) -> Option<String> {
            self.0
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
        fn file(&self, path: &str) -> Result<String, String> {
            Err(format!("no file {path} here"))
        }
    }

    const VARS: Vars = Vars(&[("HOST", "kafka-0"), ("PW", "p#ss: word"), ("EMPTY", "")]);

    fn run(yaml: &str) -> Result<Value, Vec<String>> {
        let mut v: Value = serde_yaml::from_str(yaml).unwrap();
        interpolate(&mut v, &VARS)
            .map(|_| v)
            .map_err(|(_, e)| e.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn set_variables_and_defaults_expand_inside_values() {
        let v = run(
            "a: ${HOST}:9092\nb: [\"${MISSING:x}\", \"${EMPTY:dflt}\", \"${EMPTY}\"]\nc: ${PW}\n",
        )
        .unwrap();
        assert_eq!(v["a"], "kafka-0:9092");
        assert_eq!(v["b"][0], "x");
        assert_eq!(v["b"][1], "dflt");
        assert_eq!(v["b"][2], "");
        // A value with YAML syntax in it stays one string.
        assert_eq!(v["c"], "p#ss: word");
    }

    #[test]
    fn unset_without_default_names_the_key_and_the_variable_and_all_are_reported() {
        let errs = run("source:\n  librdkafka: { sasl.password: \"${KAFKA_PW}\" }\nroutes:\n  - name: ${ROUTE}\n").unwrap_err();
        assert_eq!(
            errs,
            [
                "source.librdkafka.sasl.password: environment variable KAFKA_PW is not set (write `${KAFKA_PW:default}` to give a default)",
                "routes[0].name: environment variable ROUTE is not set (write `${ROUTE:default}` to give a default)",
            ]
        );
    }

    #[test]
    fn the_escape_and_a_lone_dollar_are_literal() {
        let v = run("a: \"$${HOST} costs $5\"\nb: \"$${HOST}\"\n").unwrap();
        assert_eq!(v["a"], "${HOST} costs $5");
        assert_eq!(v["b"], "${HOST}");
        let errs = run("a: \"${HOST\"\nb: \"${9X}\"\n").unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].starts_with("a: unterminated `${`"), "{errs:?}");
        assert!(
            errs[1].starts_with("b: `${9X}` is not a variable name"),
            "{errs:?}"
        );
    }

    #[test]
    fn whole_expressions_are_recorded_by_path() {
        let mut v: Value =
            serde_yaml::from_str("p: { n: \"${N:5}\", s: \"x${HOST}\" }\nl: [\"${HOST}\"]\n")
                .unwrap();
        let done = interpolate(&mut v, &VARS).unwrap();
        assert_eq!(
            done.get("p.n"),
            Some(&[Seg::Key("p".into()), Seg::Key("n".into())][..])
        );
        assert_eq!(done.get("p.s"), None);
        assert!(done.get("l[0]").is_some());
        *node_mut(&mut v, done.get("l[0]").unwrap()).unwrap() = Value::Bool(true);
        assert_eq!(v["l"][0], Value::Bool(true));
    }

    #[test]
    fn file_references_read_the_file_and_errors_never_show_values() {
        let errs = run("a: ${file:/nope}\nb: ${PW:}\n").unwrap_err();
        assert_eq!(
            errs,
            ["a: cannot read /nope (from `${file:/nope}`): no file /nope here"]
        );
    }
}
