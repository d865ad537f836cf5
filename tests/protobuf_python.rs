//! Differential test of the Protobuf engine against Google's Python protobuf runtime.
//!
//! Python writes messages from the v2 descriptor (and the v1 one, for the other direction);
//! schemabridge transcodes them; Python parses the result with the reader descriptor and must
//! get exactly what its own reader parse of the ORIGINAL bytes gives (under Preserve, unknown
//! fields included; under Drop, with the original's unknown fields discarded), and a reader that
//! re-encodes must give the writer its message back exactly when no value was reported
//! narrowed (an int64 too big for the reader's int32). Descriptors reach
//! Python as FileDescriptorSets built here by protox from the registry-style texts, so no
//! `protoc` is needed. Needs python3 (with venv) and PyPI access once, for `protobuf`.

use crate::support::python as pyvenv;

use std::path::{Path, PathBuf};
use std::process::Command;

use schemabridge::protobuf::{LossKind, UnknownFields, build_pool, compile, message_for_indexes};
use schemabridge::wire::MessageIndexes;

const MESSAGES_PER_DIRECTION: usize = 400;

fn proto_text(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("proto")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The pool for `orders/<file>` built as the pipeline builds it (text + references), and its
/// FileDescriptorSet written to `dir`.
fn schema(dir: &Path, file: &str) -> (prost_reflect::MessageDescriptor, PathBuf) {
    let refs = vec![
        (
            "orders/money.proto".to_owned(),
            proto_text("orders/money.proto"),
        ),
        (
            "orders/common.proto".to_owned(),
            proto_text("orders/common.proto"),
        ),
    ];
    let name = format!("orders/{file}");
    let pool = build_pool(&name, &proto_text(&name), &refs).expect("build pool");
    let msg = message_for_indexes(&pool, &name, &MessageIndexes::first()).expect("message [0]");
    let fds = dir.join(file.replace(".proto", ".fds"));
    std::fs::write(&fds, pool.encode_to_vec()).expect("write descriptor set");
    (msg, fds)
}

fn oracle() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/protobuf_oracle.py")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex from the oracle"))
        .collect()
}

fn python_generate(python: &Path, fds: &Path, message: &str, seed: u64) -> Vec<Vec<u8>> {
    let out = Command::new(python)
        .arg(oracle())
        .arg("gen")
        .arg(fds)
        .arg(message)
        .arg(MESSAGES_PER_DIRECTION.to_string())
        .arg(seed.to_string())
        .output()
        .expect("run the oracle");
    assert!(
        out.status.success(),
        "oracle gen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8 from the oracle")
        .lines()
        .map(unhex)
        .collect()
}

fn cross_check(writer_file: &str, reader_file: &str, seed: u64) {
    let python = pyvenv::python_with(&[("protobuf>=4.25", "google.protobuf")]);
    let dir = tempfile::tempdir().expect("tempdir");
    let (writer, writer_fds) = schema(dir.path(), writer_file);
    let (reader, reader_fds) = schema(dir.path(), reader_file);
    let originals = python_generate(&python, &writer_fds, writer.full_name(), seed);
    assert_eq!(originals.len(), MESSAGES_PER_DIRECTION);

    let mut items = Vec::new();
    let mut lossy = 0;
    for (mode, name) in [
        (UnknownFields::Preserve, "preserve"),
        (UnknownFields::Drop, "drop"),
    ] {
        let plan = compile(&writer, &reader, mode).expect("compile");
        for original in &originals {
            let mut out = Vec::new();
            let loss = plan
                .transcode(original, &mut out)
                .unwrap_or_else(|e| panic!("transcode {}: {e}", hex(original)));
            lossy += usize::from(loss.is_lossy());
            let narrowed = loss.sites().any(|s| s.kind() == LossKind::Narrowed);
            items.push(serde_json::json!({
                "mode": name, "original": hex(original), "transcoded": hex(&out),
                "narrowed": narrowed,
            }));
        }
    }
    assert!(
        lossy > 0,
        "the generated messages never exercised a dropped field"
    );

    let cases = serde_json::json!({
        "writer": [writer_fds, writer.full_name()],
        "reader": [reader_fds, reader.full_name()],
        "items": items,
    });
    let cases_path = dir.path().join("cases.json");
    std::fs::write(&cases_path, cases.to_string()).expect("write cases");
    let out = Command::new(&python)
        .arg(oracle())
        .arg("check")
        .arg(&cases_path)
        .output()
        .expect("run the oracle");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{writer_file} → {reader_file}: Python disagrees: {report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&report).expect("oracle report");
    assert_eq!(report["checked"], 2 * MESSAGES_PER_DIRECTION);
    assert_eq!(report["failed"], 0);
}

#[test]
fn protobuf_python_v2_written_read_as_v1() {
    cross_check("order_v2.proto", "order_v1.proto", 2);
}

#[test]
fn protobuf_python_v1_written_read_as_v2() {
    cross_check("order_v1.proto", "order_v2.proto", 1);
}
