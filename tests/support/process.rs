//! Child processes for tests: the real `schemabridge` binary (for tests that kill it) and the
//! tansu broker.
//!
//! Owns: writing the gateway's config file, starting `schemabridge run --config FILE` or
//! `tansu broker` with output redirected to a log file (never an inherited pipe), and stopping
//! them by pid: SIGKILL (a crash) or SIGTERM (a clean stop), always followed by a wait. A Drop
//! guard kills and reaps each if a test panics. Must not: speak Kafka or the registry's API
//! (the config text says where they are; `kafka.rs` creates topics), or install anything (the
//! caller passes tansu's path).

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

/// A child process stopped by pid: SIGTERM and a bounded wait, or SIGKILL and reap (also on
/// drop, so a failing test leaves nothing running).
pub struct Supervised {
    child: Option<Child>,
}

impl Supervised {
    pub fn new(child: Child) -> Supervised {
        Supervised { child: Some(child) }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL, then reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then [`Supervised::wait`].
    pub async fn terminate(&mut self, timeout: Duration, log: impl Fn() -> String) -> ExitStatus {
        let pid = self.pid();
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("run kill -TERM");
        assert!(sent.success(), "kill -TERM {pid}");
        self.wait(timeout, log).await
    }

    /// Waits up to `timeout` for it to exit; panics with `log()`, after a SIGKILL, if it does
    /// not.
    pub async fn wait(&mut self, timeout: Duration, log: impl Fn() -> String) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut().expect("running");
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "schemabridge did not exit within {timeout:?}; log:\n{}",
                    log()
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
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running gateway process. Stops (SIGKILL + wait) when dropped.
pub struct GatewayProcess {
    process: Supervised,
    pub log: PathBuf,
}

impl GatewayProcess {
    /// Writes `config_yaml` to `dir/schemabridge.yaml` and starts `schemabridge run` on it,
    /// logging to `dir/run-{run}.log`.
    pub fn start(dir: &Path, run: usize, config_yaml: &str) -> GatewayProcess {
        Self::start_command("run", dir, run, config_yaml)
    }

    /// As [`GatewayProcess::start`], for another command that takes `--config` (`archive`).
    pub fn start_command(
        command: &str,
        dir: &Path,
        run: usize,
        config_yaml: &str,
    ) -> GatewayProcess {
        let config = dir.join("schemabridge.yaml");
        std::fs::write(&config, config_yaml).expect("write config");
        let log = dir.join(format!("run-{run}.log"));
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_schemabridge"))
            .arg(command)
            .arg("--config")
            .arg(&config)
            // `SCHEMABRIDGE_TEST_CHILD_LOG` (e.g. `info,librdkafka=debug` with a `debug`
            // librdkafka property) to debug a test; `info` otherwise.
            .env(
                "RUST_LOG",
                std::env::var("SCHEMABRIDGE_TEST_CHILD_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("start schemabridge {command}: {e}"));
        GatewayProcess {
            process: Supervised::new(child),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// SIGKILL, then reap it: a crash, with no chance to flush or commit.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// SIGTERM, then waits up to `timeout` for it to exit; returns its exit status (panics,
    /// after a SIGKILL, if it did not exit in time).
    pub async fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let log = self.log.clone();
        self.process.terminate(timeout, || tail(&log)).await
    }

    /// Waits up to `timeout` for it to exit by itself.
    pub async fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let log = self.log.clone();
        self.process.wait(timeout, || tail(&log)).await
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.process.running()
    }

    /// The last 60 lines of its log.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }

    /// Its whole log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The last 60 lines of a log file.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// tansu, an independent Kafka-API broker (Rust, by others), as a child process with in-memory
/// storage on a free loopback port; logs to `dir/tansu.log`. Stops (SIGKILL + wait) on drop.
/// Unlike librdkafka's mock cluster it stores offsets committed inside transactions
/// (TxnOffsetCommit) and writes transaction markers; like it, it shows aborted records to
/// read_committed readers.
pub struct TansuBroker {
    child: Option<Child>,
    pub bootstrap: String,
    pub log: PathBuf,
}

impl TansuBroker {
    /// Starts `bin` (the `tansu` binary) and waits until it accepts connections.
    pub fn start(bin: &Path, dir: &Path) -> TansuBroker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let log = dir.join("tansu.log");
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("start tansu");
        let broker = TansuBroker {
            child: Some(child),
            bootstrap: format!("127.0.0.1:{port}"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {port} within 30 s; its log:\n{}",
                tail(&broker.log)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        broker
    }
}

impl Drop for TansuBroker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
