//! Python for oracle tests: one venv, `target/test-venv`, created on first use, with the packages
//! each test asks for installed from PyPI by pip.
//!
//! Owns: finding `python3` (or `$PYTHON`), creating the venv, installing packages, and the
//! cross-process lock that makes this safe when several test processes start at once (nextest
//! runs every test in its own process). Must not touch anything outside `target/`. A missing
//! python3 is a test FAILURE that says what to install, never a silent skip.
//!
//! Lock protocol (shared with `tests/support/pyvenv_protobuf.rs`, which this file supersedes):
//! the directory `target/test-venv.lock`, made with `create_dir` (atomic); one older than ten
//! minutes is taken to be left over from a killed process. Everything below runs under it, so
//! no two processes ever create the venv or run pip at the same time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The fastavro release the Avro oracle was checked against.
pub const FASTAVRO: &str = "fastavro==1.13.1";

/// A python that can `import fastavro`.
pub fn fastavro_python() -> PathBuf {
    python_with(&[(FASTAVRO, "fastavro")])
}

/// Returns the venv's python with every `(pip requirement, module to import)` importable.
/// Panics with what to install when python3, its venv module, or PyPI is missing.
pub fn python_with(packages: &[(&str, &str)]) -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"));
    let venv = target.join("test-venv");
    let python = venv.join("bin").join("python");
    let _lock = DirLock::acquire(&target.join("test-venv.lock"));

    // A venv whose creation was killed half-way has bin/python but no pip: start it over.
    if python.exists() && !succeeds(Command::new(&python).args(["-m", "pip", "--version"])) {
        let _ = std::fs::remove_dir_all(&venv);
    }
    if !python.exists() {
        create_venv(&venv);
    }

    let missing: Vec<&str> = packages
        .iter()
        .filter(|(_, module)| {
            !succeeds(Command::new(&python).args(["-c", &format!("import {module}")]))
        })
        .map(|(req, _)| *req)
        .collect();
    if !missing.is_empty() {
        let out = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                // The venv is the cache: a second copy of every wheel in ~/.cache/pip is only
                // disk, which CI has little of.
                "--no-cache-dir",
            ])
            .args(&missing)
            .output()
            .unwrap_or_else(|e| panic!("cannot run pip in {}: {e}", venv.display()));
        assert!(
            out.status.success(),
            "pip install {missing:?} into {} failed: these tests need network access to PyPI \
             once (or pre-install the packages into that venv):\n{}",
            venv.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    python
}

fn create_venv(venv: &Path) {
    let system = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    match Command::new(&system)
        .arg("-m")
        .arg("venv")
        .arg(venv)
        .output()
    {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "`{system} -m venv {}` failed ({}): install the venv module (Debian/Ubuntu: \
             apt-get install python3-venv)\n{}",
            venv.display(),
            o.status,
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!(
            "`{system}` not found ({e}): these tests use Python 3 with fastavro as an independent \
             oracle; install python3 and python3-venv (Debian/Ubuntu: apt-get install python3 \
             python3-venv), or set PYTHON to a Python 3 interpreter"
        ),
    }
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.output().is_ok_and(|o| o.status.success())
}

/// A directory used as a lock (`create_dir` is atomic). A lock older than ten minutes is taken
/// to be left over from a killed process.
struct DirLock(PathBuf);

impl DirLock {
    fn acquire(path: &Path) -> DirLock {
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let start = Instant::now();
        loop {
            match std::fs::create_dir(path) {
                Ok(()) => return DirLock(path.to_path_buf()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = std::fs::metadata(path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > Duration::from_secs(600));
                    if stale {
                        let _ = std::fs::remove_dir(path);
                        continue;
                    }
                    assert!(
                        start.elapsed() < Duration::from_secs(900),
                        "waited 15 minutes for {}",
                        path.display()
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("create {}: {e}", path.display()),
            }
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}
