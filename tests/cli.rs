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
