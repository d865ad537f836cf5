//! The `schemabridge` binary with its stderr (its logs) in a file of its own, for tests that
//! read the logs: the format the binary picks for a file, and the lines it writes.
//!
//! Owns: starting `schemabridge ARGS...` with stdout and stderr each redirected to a file (never
//! a terminal, never an inherited pipe) and `RUST_LOG`/`SCHEMABRIDGE_LOG_FORMAT` removed from
//! its environment unless the test sets them; stopping it by pid (SIGTERM + wait, or SIGKILL +
//! wait on drop, also on panic); parsing its stderr as JSON lines. Must not: speak Kafka or the
//! registry's API.

use std::fs::File;

use super::process::Supervised;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

/// A `schemabridge` process whose stdout and stderr go to `dir/NAME.stdout` and
/// `dir/NAME.stderr`. Killed (and reaped) on drop.
pub struct LoggedProcess {
    process: Supervised,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl LoggedProcess {
    /// Starts `schemabridge args...` with `env` set on top of the test's environment minus the
    /// log settings.
    pub fn start(dir: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> LoggedProcess {
        let stdout = dir.join(format!("{name}.stdout"));
        let stderr = dir.join(format!("{name}.stderr"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_schemabridge"));
        cmd.args(args)
            .env_remove("RUST_LOG")
            .env_remove("SCHEMABRIDGE_LOG_FORMAT")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("stdout file"))
            .stderr(File::create(&stderr).expect("stderr file"));
        let child = cmd.spawn().expect("start schemabridge");
        LoggedProcess {
            process: Supervised::new(child),
            stdout,
            stderr,
        }
    }

    /// SIGTERM, then waits up to `timeout` for it to exit (panics, after a SIGKILL, if not).
    pub async fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let stderr = self.stderr.clone();
        let log = || std::fs::read_to_string(&stderr).unwrap_or_default();
        self.process.terminate(timeout, log).await
    }

    /// Waits up to `timeout` for it to exit by itself (panics, after a SIGKILL, if not).
    pub async fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let stderr = self.stderr.clone();
        let log = || std::fs::read_to_string(&stderr).unwrap_or_default();
        self.process.wait(timeout, log).await
    }

    /// Its stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

/// Every line of `log` as a JSON object; panics naming the first line that is not one.
pub fn json_lines(log: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    log.lines()
        .map(|line| match serde_json::from_str(line) {
            Ok(serde_json::Value::Object(o)) => o,
            other => panic!("not a JSON object line ({other:?}): {line:?}\nlog:\n{log}"),
        })
        .collect()
}
