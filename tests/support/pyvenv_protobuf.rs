//! A Python virtualenv for oracle tests: `target/test-venv`, created on first use, with the
//! packages a test asks for installed from PyPI by pip.
//!
//! Stand-in until `tests/support/python.rs` exists (written separately); the two should merge.
//! Owns: finding `python3`, creating the venv, installing packages, and a cross-process lock so
//! parallel test processes (nextest) do not install into the same venv at once.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Returns the venv's python with every `(pip requirement, module to import)` importable.
/// Panics with what to install when `python3` or pip is missing.
pub fn python_with(packages: &[(&str, &str)]) -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"));
    let venv = target.join("test-venv");
    let python = venv.join("bin").join("python");
    let _lock = DirLock::acquire(&target.join("test-venv.lock"));

    if !python.exists() {
        let system = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let status = Command::new(&system)
            .args(["-m", "venv"])
            .arg(&venv)
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => panic!(
                "`{system} -m venv {}` failed ({s}): install the venv module (Debian/Ubuntu: \
                 apt-get install python3-venv)",
                venv.display()
            ),
            Err(e) => panic!(
                "`{system}` not found ({e}): these tests use Python 3 as an independent oracle; \
                 install python3 and python3-venv (Debian/Ubuntu: apt-get install python3 \
                 python3-venv), or set PYTHON to a Python 3 interpreter"
            ),
        }
    }

    let missing: Vec<&str> = packages
        .iter()
        .filter(|(_, module)| {
            !Command::new(&python)
                .args(["-c", &format!("import {module}")])
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(|(req, _)| *req)
        .collect();
    if !missing.is_empty() {
        let status = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(&missing)
            .status()
            .expect("run pip in the test venv");
        assert!(
            status.success(),
            "pip install {missing:?} into {} failed: these tests need network access to PyPI \
             once (or pre-install the packages into that venv)",
            venv.display()
        );
    }
    python
}

/// A directory used as a lock (`create_dir` is atomic). A lock older than ten minutes is taken
/// to be left over from a killed process.
struct DirLock(PathBuf);

impl DirLock {
    fn acquire(path: &Path) -> DirLock {
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
