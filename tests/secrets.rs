//! Secrets stay secret: a SASL password and registry credentials given through the environment,
//! `${VAR}` interpolation and mounted files never appear in a log line (JSON, `RUST_LOG=debug`),
//! an error, a metric label or `--help`, while the gateway runs against a registry and a broker
//! that both fail.

use crate::support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use support::logs::{LoggedProcess, json_lines};

const KAFKA_SECRET: &str = "KafkaPw-7q3Zx91";
const REGISTRY_SECRET: &str = "RegistryPw-5mK2v08";
const FILE_SECRET: &str = "FileKeyPw-3nB8c44";
const SECRETS: [&str; 3] = [KAFKA_SECRET, REGISTRY_SECRET, FILE_SECRET];

/// A port nothing listens on.
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// `GET path` over HTTP/1.0: the body, or `None` when nothing answers yet.
fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(
            !text.contains(secret),
            "{what} contains the secret {secret}:\n{text}"
        );
    }
}

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("SB_SECRET_KAFKA", KAFKA_SECRET),
        ("SB_SECRET_REGISTRY", REGISTRY_SECRET),
        ("RUST_LOG", "debug"),
        ("SCHEMABRIDGE_LOG_FORMAT", "json"),
    ]
}

/// A config with the SASL password from `${SB_SECRET_KAFKA}`, a key password from
/// `${file:...}`, registry basic auth from `auth` and the value reader from `reader`.
fn config(dir: &Path, reader: &str, auth: &str, listen: SocketAddr, extra: &str) -> String {
    let key_password = dir.join("key-password");
    std::fs::write(&key_password, format!("{FILE_SECRET}\n")).unwrap();
    format!(
        r#"source:
  bootstrap_servers: 127.0.0.1:{broker}
  librdkafka:
    security.protocol: SASL_PLAINTEXT
    sasl.mechanisms: PLAIN
    sasl.username: schemabridge
    sasl.password: ${{SB_SECRET_KAFKA}}
    ssl.key.password: ${{file:{key_password}}}
    reconnect.backoff.ms: 50
{extra}group_id: secrets
registry:
  url: http://127.0.0.1:{registry}
  auth: {{ basic: {{ username: schemabridge, {auth} }} }}
  initial_backoff_ms: 50
  max_backoff_ms: 200
  timeout_ms: 500
telemetry:
  listen: {listen}
routes:
  - name: orders
    source: {{ topics: [orders] }}
    target: orders-v1
    value:
      format: avro
      reader: {reader}
      dlq: orders-dlq
"#,
        broker = dead_port(),
        registry = dead_port(),
        key_password = key_password.display(),
    )
}

/// Runs `schemabridge run` until its log shows `until` and `/metrics` answers, then stops it;
/// returns (stderr, stdout, metrics body).
async fn run_until(
    dir: &Path,
    name: &str,
    yaml: &str,
    listen: SocketAddr,
    until: &str,
) -> (String, String, String) {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    let path = path.display().to_string();
    let mut gw = LoggedProcess::start(dir, name, &["run", "--config", &path], &env());
    let deadline = Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        if gw.log().contains(until)
            && let Some(body) = get(listen, "/metrics")
        {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "no `{until}` in the log within 60 s:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    gw.terminate(Duration::from_secs(40)).await;
    let stdout = std::fs::read_to_string(&gw.stdout).unwrap_or_default();
    (gw.log(), stdout, metrics)
}

fn free_addr() -> SocketAddr {
    format!("127.0.0.1:{}", dead_port()).parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_logs_errors_metrics_or_help() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();

    // 1. The registry is down: start-up waits on the reader schema, retrying, with the registry
    //    password from a mounted file.
    let pw_file = dir.join("registry-password");
    std::fs::write(&pw_file, format!("{REGISTRY_SECRET}\n")).unwrap();
    let listen = free_addr();
    let yaml = config(
        dir,
        "{ subject: orders-value, version: 1 }",
        &format!("password_file: {}", pw_file.display()),
        listen,
        "",
    );
    let (log, stdout, metrics) = run_until(
        dir,
        "registry-down",
        &yaml,
        listen,
        "lookup failed; pausing and retrying",
    )
    .await;
    let lines = json_lines(&log);
    assert!(
        lines.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.contains("effective configuration"))),
        "no effective-configuration line:\n{log}"
    );
    assert!(log.contains("sasl.password=***"), "{log}");
    assert!(log.contains("password from file"), "{log}");
    for (what, text) in [("log", &log), ("stdout", &stdout), ("metrics", &metrics)] {
        assert_no_secret(what, text);
    }

    // 2. The broker is down: the reader comes from a file so the Kafka clients start, and
    //    librdkafka keeps failing to connect; the registry password comes from the environment.
    let local_schema = dir.join("order_v1.avsc");
    std::fs::write(
        &local_schema,
        r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"string"}]}"#,
    )
    .unwrap();
    let listen = free_addr();
    let yaml = config(
        dir,
        &format!("{{ schema_file: {}, id: 1 }}", local_schema.display()),
        "password_env: SB_SECRET_REGISTRY",
        listen,
        "",
    );
    let (log, stdout, metrics) =
        run_until(dir, "broker-down", &yaml, listen, "reader schema").await;
    json_lines(&log);
    for (what, text) in [("log", &log), ("stdout", &stdout), ("metrics", &metrics)] {
        assert_no_secret(what, text);
    }

    // 3. A misspelt librdkafka key holding a secret: refused by name, its value never shown,
    //    by `validate-config` and by `run`.
    let yaml = config(
        dir,
        "{ subject: orders-value, version: 1 }",
        "password_env: SB_SECRET_REGISTRY",
        free_addr(),
        "    sasl.pasword: ${SB_SECRET_KAFKA}\n",
    );
    let path = dir.join("typo.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let path = path.display().to_string();
    for (name, args) in [
        ("typo-validate", vec!["validate-config", "--print", &path]),
        ("typo-run", vec!["run", "--config", &path]),
    ] {
        let mut p = LoggedProcess::start(dir, name, &args, &env());
        let status = p.wait(Duration::from_secs(30)).await;
        assert_eq!(status.code(), Some(1), "{name}: {}", p.log());
        let out = format!(
            "{}{}",
            p.log(),
            std::fs::read_to_string(&p.stdout).unwrap_or_default()
        );
        assert!(
            out.contains(
                "source.librdkafka.sasl.pasword: `sasl.pasword` is not a librdkafka property"
            ),
            "{name}: {out}"
        );
        assert_no_secret(name, &out);
    }

    // 4. `--help` of every command, with the secrets (and a config path) in the environment.
    for args in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["validate-config", "--help"],
        vec!["demo", "--help"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_schemabridge"))
            .args(&args)
            .envs(env())
            .env("SCHEMABRIDGE_CONFIG", &path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage"), "{args:?}: {text}");
        assert_no_secret(&format!("{args:?}"), &text);
    }
}
