//! The real `schemabridge` binary as a child process, for tests that kill it.
//!
//! Owns: writing a config file, starting `schemabridge run --config FILE` with its output
//! redirected to a log file (never an inherited pipe), and stopping it by pid: SIGKILL (a crash)
//! or SIGTERM (a clean stop), always followed by a wait. A Drop guard kills and reaps it if a test
//! panics. Must not: know about Kafka or the registry (the config text says where they are).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A directory for one test's config and logs, under cargo's per-target scratch directory
/// (kept after the run, so a failing test's logs can be read).
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("faults")
        .join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A running gateway process. Stops (SIGKILL + wait) when dropped.
pub struct GatewayProcess {
    child: Option<Child>,
    pub log: PathBuf,
}

impl GatewayProcess {
    /// Writes `config_yaml` to `dir/schemabridge.yaml` and starts the binary on it, logging to
    /// `dir/run-{run}.log`.
    pub fn start(dir: &Path, run: usize, config_yaml: &str) -> GatewayProcess {
        let config = dir.join("schemabridge.yaml");
        std::fs::write(&config, config_yaml).expect("write config");
        let log = dir.join(format!("run-{run}.log"));
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_schemabridge"))
            .arg("run")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("start schemabridge");
        GatewayProcess {
            child: Some(child),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL, then reap it: a crash, with no chance to flush or commit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits up to `timeout` for it to exit; returns its exit status (panics,
    /// after a SIGKILL, if it did not exit in time).
    pub async fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let pid = self.pid();
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("run kill -TERM");
        assert!(sent.success(), "kill -TERM {pid}");
        self.wait(timeout).await
    }

    /// Waits up to `timeout` for it to exit by itself.
    pub async fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "schemabridge did not exit within {timeout:?}; log:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    /// The last 60 lines of its log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
