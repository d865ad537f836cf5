//! Secrets named by a config file: where one is read from, and a value that never prints.
//!
//! Owns: reading a secret from an environment variable or a mounted file, and [`Secret`], whose
//! `Debug` and `Display` print `***` so a secret cannot reach a log line, an error or a metric
//! label by accident. Must not: log, or put a secret's value into an error message.

use std::fmt;
use std::path::PathBuf;

use super::ConfigError;

/// Where a secret comes from: an environment variable or a file (a mounted Kubernetes Secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

impl SecretRef {
    /// Reads the secret; a file's trailing newline is trimmed. `key` names the config key for
    /// the error, which names the variable or file but never the value.
    pub fn read(&self, key: &str) -> Result<Secret, ConfigError> {
        let fail = |message: String| ConfigError {
            path: key.to_string(),
            message,
        };
        match self {
            SecretRef::Env(name) => std::env::var(name)
                .map(Secret)
                .map_err(|_| fail(format!("environment variable {name} is not set"))),
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map(|s| Secret(s.trim_end_matches(['\r', '\n']).to_string()))
                .map_err(|e| fail(format!("cannot read {}: {}", path.display(), e.kind()))),
        }
    }

    /// What a redacted summary shows: where the secret is read from.
    pub fn describe(&self) -> String {
        match self {
            SecretRef::Env(name) => format!("${name}"),
            SecretRef::File(path) => format!("file {}", path.display()),
        }
    }
}

/// A secret value. Prints as `***`; [`Secret::expose`] is the one way to the text.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints_and_errors_name_the_source_not_the_value() {
        let s = Secret::new("hunter2".into());
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "hunter2\n").unwrap();
        let got = SecretRef::File(file.clone()).read("k").unwrap();
        assert_eq!(got.expose(), "hunter2");
        let missing = SecretRef::Env("SCHEMABRIDGE_TEST_UNSET_VAR_1234".into())
            .read("registry.auth.basic.password_env")
            .unwrap_err();
        assert_eq!(
            missing.to_string(),
            "registry.auth.basic.password_env: environment variable SCHEMABRIDGE_TEST_UNSET_VAR_1234 is not set"
        );
    }
}
