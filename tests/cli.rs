//! The command line as a user meets it: `validate-config` and `demo`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_schemabridge"))
}

fn example_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/schemabridge.yaml")
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("schemabridge.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().expect("run schemabridge");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

#[test]
fn the_shipped_example_config_is_valid() {
    let (out, stdout, stderr) = run(bin().arg("validate-config").arg(example_config()));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("valid (1 route)"), "{stdout}");
}

#[test]
fn a_typo_in_a_key_exits_non_zero_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(example_config()).unwrap().replace(
        "reader: { subject: orders-value",
        "reader: { subjct: orders-value",
    );
    let path = write_config(dir.path(), &text);
    let (out, _, stderr) = run(bin().arg("validate-config").arg(&path));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("routes[0].value.reader: unknown field `subjct`"),
        "{stderr}"
    );
}

#[test]
fn a_missing_required_key_exits_non_zero_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(example_config())
        .unwrap()
        .replace("group_id: schemabridge-orders\n", "");
    let path = write_config(dir.path(), &text);
    let (out, _, stderr) = run(bin().arg("validate-config").arg(&path));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("missing field `group_id`"), "{stderr}");
}

#[test]
fn run_with_a_bad_config_exits_non_zero_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(example_config())
        .unwrap()
        .replace("on_error: dlq", "on_error: retry");
    let path = write_config(dir.path(), &text);
    let (out, _, stderr) = run(bin().args(["run", "--config"]).arg(&path));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("routes[0].value.on_error: unknown variant `retry`"),
        "{stderr}"
    );
}

#[test]
fn demo_shows_v2_records_arriving_as_v1() {
    let (out, stdout, stderr) = run(bin().args(["demo", "--messages", "200"]));
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    // 200 messages: every tenth from a v1 producer, plus one unframed message.
    assert!(
        stdout.contains("delivered       180  written with schema id 2 (v2) → read as id 1 (v1)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("delivered        20  written with schema id 1 (v1) → read as id 1 (v1)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("dead-letter       1  key not-avro: magic byte is 0x7b"),
        "{stdout}"
    );
    // Plus 50 Protobuf messages on their own route.
    assert!(
        stdout.contains("(both routes) consumed 251 · forwarded 250 · dead-lettered 1 · skipped 0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("delivered        50  written with schema id 14 (v2) → read as id 13 (v1)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("preserved        50  a v1 consumer that decodes and re-encodes"),
        "{stdout}"
    );
    // A sample pair shows the alias at work.
    assert!(stdout.contains("\"total_cents\":"), "{stdout}");
    assert!(stdout.contains("\"amount_cents\":"), "{stdout}");
}

/// `${VAR}` interpolation as a user meets it through `validate-config`: a set variable, an unset
/// one with a default, the `$${` escape, and an unset one without a default (named with its
/// key), each checked on what the command prints.
#[test]
fn config_values_interpolate_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(example_config())
        .unwrap()
        .replace(
            "bootstrap_servers: kafka-0.kafka:9092,kafka-1.kafka:9092",
            "bootstrap_servers: ${SB_TEST_BROKERS}",
        )
        .replace(
            "max_in_flight: 10000",
            "max_in_flight: ${SB_TEST_UNSET_MAX:20000}",
        )
        .replace("name: orders\n", "name: \"$${literally}\"\n");
    let path = write_config(dir.path(), &text);

    // Set, defaulted (and a number where a number is wanted) and escaped: valid.
    let (out, stdout, stderr) = run(bin()
        .arg("validate-config")
        .arg(&path)
        .env("SB_TEST_BROKERS", "broker-a:9092")
        .env_remove("SB_TEST_UNSET_MAX"));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("valid (1 route)"), "{stdout}");
    // The effective values, as the start-up summary of `validate-config --print` shows them.
    let (out, stdout, stderr) = run(bin()
        .args(["validate-config", "--print"])
        .arg(&path)
        .env("SB_TEST_BROKERS", "broker-a:9092")
        .env_remove("SB_TEST_UNSET_MAX"));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("source: broker-a:9092"), "{stdout}");
    assert!(stdout.contains("max_in_flight=20000"), "{stdout}");
    assert!(stdout.contains("route ${literally}:"), "{stdout}");

    // Unset without a default: exit 1 naming the key and the variable.
    let (out, _, stderr) = run(bin()
        .arg("validate-config")
        .arg(&path)
        .env_remove("SB_TEST_BROKERS"));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .contains("source.bootstrap_servers: environment variable SB_TEST_BROKERS is not set"),
        "{stderr}"
    );
}

/// Several mistakes in one file are all reported, each with its key.
#[test]
fn every_config_error_is_reported_not_just_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(example_config())
        .unwrap()
        .replace("cache_size: 1000", "cache_sise: 1000")
        .replace("commit_interval_ms: 5000", "commit_interval_ms: soon")
        .replace(
            "reader: { subject: orders-value",
            "reader: { subjct: orders-value",
        );
    let path = write_config(dir.path(), &text);
    let (out, _, stderr) = run(bin().arg("validate-config").arg(&path));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for expected in [
        "registry: unknown field `cache_sise`",
        "pipeline.commit_interval_ms: invalid type: string \"soon\", expected u64",
        "routes[0].value.reader: unknown field `subjct`",
    ] {
        assert!(stderr.contains(expected), "{expected} in:\n{stderr}");
    }
}

/// Values that `run` cannot work with are refused by `validate-config`, each named by its key:
/// out-of-range bounds (u64::MAX used to panic or retry forever), an unparseable registry URL,
/// empty and illegal topic names, an unset secret variable, a missing schema file and an
/// invalid librdkafka value.
#[test]
fn validate_config_refuses_what_run_would_fail_on() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(example_config())
        .unwrap()
        .replace(
            "url: http://schema-registry:8081",
            "url: \"http://schema registry:80a\"",
        )
        .replace("timeout_ms: 10000", "timeout_ms: 0")
        .replace(
            "max_backoff_ms: 30000",
            "max_backoff_ms: 18446744073709551615",
        )
        .replace(
            "max_in_flight: 10000",
            "max_in_flight: 18446744073709551615",
        )
        .replace("target: orders.v1", "target: \"orders v1!\"")
        .replace("dlq: orders.dlq", "dlq: \"\"");
    let path = write_config(dir.path(), &text);
    let (out, _, stderr) = run(bin().arg("validate-config").arg(&path));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for expected in [
        "registry.url: not a URL",
        "registry.timeout_ms: must be at least 1",
        "registry.max_backoff_ms: must be at most 3600000",
        "pipeline.max_in_flight: must be at most 1000000",
        "routes[0].target: `orders v1!` is not a legal Kafka topic name",
        "routes[0].value.dlq: must not be empty",
    ] {
        assert!(stderr.contains(expected), "{expected} in:\n{stderr}");
    }

    // Parsed fine, but not runnable on this machine.
    let text = std::fs::read_to_string(example_config())
        .unwrap()
        .replace(
            "session.timeout.ms: \"45000\"",
            "session.timeout.ms: \"soon-ish\"",
        )
        .replace(
            "url: http://schema-registry:8081",
            "url: http://schema-registry:8081\n  auth: { basic: { username: u, password_env: SB_TEST_UNSET_PASSWORD } }",
        )
        .replace(
            "reader: { subject: orders-value, version: 1 }",
            "reader: { schema_file: missing.avsc, id: 3 }",
        );
    let path = write_config(dir.path(), &text);
    let (out, _, stderr) = run(bin()
        .arg("validate-config")
        .arg(&path)
        .env_remove("SB_TEST_UNSET_PASSWORD"));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for expected in [
        "registry.auth.basic.password_env: environment variable SB_TEST_UNSET_PASSWORD is not set",
        "routes[0].value.reader.schema_file: cannot read",
        "source.librdkafka.session.timeout.ms: Invalid value",
    ] {
        assert!(stderr.contains(expected), "{expected} in:\n{stderr}");
    }
    assert!(!stderr.contains("soon-ish"), "{stderr}");
}
