//! An S3 API for tests: `moto_server` (moto, from PyPI, installed into target/test-venv by
//! `python`), a separate process on a free loopback port, with output to a log file, stopped by
//! pid (SIGKILL and wait) on drop.
//!
//! Owns: starting moto, waiting until it answers, creating a bucket (with boto3, which moto
//! installs). Must not: know what the tests store there.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::process::Supervised;
use crate::support::python::python_with;

/// The moto release these tests were written against.
pub const MOTO: &str = "moto[server]==5.2.5";

/// Access key id and secret moto accepts (any pair works).
pub const KEY_ID: &str = "testing";
pub const SECRET: &str = "testing";

pub struct Moto {
    _process: Supervised,
    pub endpoint: String,
    pub log: PathBuf,
    python: PathBuf,
}

impl Moto {
    /// Starts `moto_server` logging to `dir/moto.log`; multipart parts may be as small as
    /// `min_part_bytes` (S3 itself needs 5 MiB), so tests exercise multipart uploads with small
    /// files.
    pub fn start(dir: &Path, min_part_bytes: u64) -> Moto {
        let python = python_with(&[(MOTO, "moto.server")]);
        let bin = python.with_file_name("moto_server");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let log = dir.join("moto.log");
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("S3_UPLOAD_PART_MIN_SIZE", min_part_bytes.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let process = Supervised::new(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto did not listen on {port}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Moto {
            _process: process,
            endpoint: format!("http://127.0.0.1:{port}"),
            log,
            python,
        }
    }

    /// Creates `bucket` (boto3, as a user's tooling would).
    pub fn create_bucket(&self, bucket: &str) {
        let out = Command::new(&self.python)
            .arg("-c")
            .arg(
                "import sys, boto3\n\
                 s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1',\n\
                 \x20   aws_access_key_id=sys.argv[3], aws_secret_access_key=sys.argv[4])\n\
                 s3.create_bucket(Bucket=sys.argv[2])\n",
            )
            .args([&self.endpoint, bucket, KEY_ID, SECRET])
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "create bucket {bucket}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
