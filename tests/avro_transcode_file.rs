//! `schemabridge transcode` on real container files, run as the binary a user runs: files that
//! fastavro (an independent implementation) wrote, read back with fastavro and compared with
//! fastavro's own resolution of the input; and the failures, which must name the field and
//! leave neither the output nor a temporary file behind.

#[path = "support/python.rs"]
mod python;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn transcode(reader: &Path, input: &Path, output: &Path) -> (Output, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_schemabridge"))
        .arg("transcode")
        .arg("--reader-schema")
        .arg(reader)
        .arg(input)
        .arg(output)
        .output()
        .expect("run schemabridge");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// Runs a Python snippet in the fastavro venv with `args`; returns its stdout.
fn py(code: &str, args: &[&Path]) -> String {
    let python = python::fastavro_python();
    let out = Command::new(&python)
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `gen_orders.py 2000 7 in.avro` (OrderPlaced v2, null codec), and the same records rewritten
/// with the deflate codec.
fn inputs(dir: &Path) -> (PathBuf, PathBuf) {
    let null = dir.join("in.avro");
    let deflate = dir.join("in-deflate.avro");
    let python = python::fastavro_python();
    let out = Command::new(&python)
        .arg(repo("tests/support/gen_orders.py"))
        .args(["2000", "7"])
        .arg(&null)
        .output()
        .expect("run gen_orders.py");
    assert!(
        out.status.success(),
        "gen_orders.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    py(
        "import sys, fastavro\n\
         r = fastavro.reader(open(sys.argv[1], 'rb'))\n\
         recs = list(r)\n\
         with open(sys.argv[2], 'wb') as f:\n\
         \x20   fastavro.writer(f, r.writer_schema, recs, codec='deflate', sync_interval=4000)\n",
        &[&null, &deflate],
    );
    (null, deflate)
}

/// Reads `output` with fastavro and compares every record with fastavro's resolution of
/// `input` to `reader`; prints `count codec fields-of-the-output's-schema` when they are all
/// equal.
const COMPARE: &str = "import sys, json, fastavro\n\
reader = fastavro.parse_schema(json.load(open(sys.argv[3])))\n\
want = list(fastavro.reader(open(sys.argv[1], 'rb'), reader_schema=reader))\n\
r = fastavro.reader(open(sys.argv[2], 'rb'))\n\
got = list(r)\n\
assert len(got) == len(want), (len(got), len(want))\n\
for i, (g, w) in enumerate(zip(got, want)):\n\
\x20   assert g == w, (i, g, w)\n\
print(len(got), r.codec, ','.join(f['name'] for f in r.writer_schema['fields']))\n";

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn v2_archives_transcode_to_v1_as_fastavro_resolves_them() {
    let dir = tempfile::tempdir().unwrap();
    let (null, deflate) = inputs(dir.path());
    let v1 = repo("proto/orders/order_v1.avsc");
    for (input, codec) in [(&null, "null"), (&deflate, "deflate")] {
        let output = dir.path().join(format!("out-{codec}.avro"));
        let (out, stdout, stderr) = transcode(&v1, input, &output);
        assert!(out.status.success(), "{codec}: {stderr}");
        assert!(stdout.contains("2000 records"), "{stdout}");
        assert!(stdout.contains(&format!("({codec} codec)")), "{stdout}");
        // The report names what the reader schema drops, and that the records held data there.
        assert!(
            stdout.contains("email") && stdout.contains("items[].gift_wrap"),
            "{stdout}"
        );
        let summary = py(COMPARE, &[input, &output, &v1]);
        // Written with v1: its fields (amount_cents, source), not v2's.
        assert_eq!(
            summary.trim(),
            format!(
                "2000 {codec} order_id,customer_id,placed_at,status,amount_cents,currency,\
                 quantity,discount,shipping,items,tags,attributes,source"
            )
        );
    }
    if cfg!(unix) {
        // No temporary file left next to the outputs.
        assert_eq!(
            files_in(dir.path()),
            [
                "in-deflate.avro",
                "in.avro",
                "out-deflate.avro",
                "out-null.avro"
            ]
        );
    }
}

#[test]
fn an_incompatible_reader_schema_fails_naming_the_field_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = inputs(dir.path());
    // v1 with a field that v2 lacks and that has no default.
    let text = std::fs::read_to_string(repo("proto/orders/order_v1.avsc")).unwrap();
    let bad = text.replace(
        r#"{"name": "source", "type": "string", "default": "unknown"}"#,
        r#"{"name": "source", "type": "string", "default": "unknown"},
    {"name": "warehouse", "type": "string"}"#,
    );
    assert_ne!(bad, text, "the test edits the reader schema");
    let reader = dir.path().join("bad.avsc");
    std::fs::write(&reader, bad).unwrap();
    let before = files_in(dir.path());

    let output = dir.path().join("out.avro");
    let (out, _, stderr) = transcode(&reader, &input, &output);
    assert!(!out.status.success(), "must fail");
    assert!(stderr.contains("OrderPlaced.warehouse"), "{stderr}");
    assert!(!output.exists());
    assert_eq!(
        files_in(dir.path()),
        before,
        "no temporary file left behind"
    );

    // A type change the reader cannot take fails the same way, naming the nested field.
    let text = std::fs::read_to_string(repo("proto/orders/order_v1.avsc")).unwrap();
    let bad = text.replace(
        r#"{"name": "qty", "type": "int"}"#,
        r#"{"name": "qty", "type": "string"}"#,
    );
    assert_ne!(bad, text);
    std::fs::write(&reader, bad).unwrap();
    let (out, _, stderr) = transcode(&reader, &input, &output);
    assert!(!out.status.success());
    assert!(stderr.contains("OrderPlaced.items[].qty"), "{stderr}");
    assert!(!output.exists());
    assert_eq!(files_in(dir.path()), before);
}

/// Offset of the first block's data in a container file: magic, metadata map, sync marker,
/// then the block's record count and byte size.
fn first_block_data(file: &[u8]) -> usize {
    fn varint(b: &[u8], at: &mut usize) -> i64 {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let byte = b[*at];
            *at += 1;
            v |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                return ((v >> 1) as i64) ^ -((v & 1) as i64);
            }
        }
    }
    let mut at = 4;
    loop {
        let count = varint(file, &mut at);
        if count == 0 {
            break;
        }
        if count < 0 {
            varint(file, &mut at);
        }
        for _ in 0..count.unsigned_abs() {
            let k = varint(file, &mut at) as usize;
            at += k;
            let v = varint(file, &mut at) as usize;
            at += v;
        }
    }
    at += 16;
    varint(file, &mut at);
    varint(file, &mut at);
    at
}

#[test]
fn a_corrupted_datum_fails_naming_record_and_field_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = inputs(dir.path());
    let mut bytes = std::fs::read(&input).unwrap();
    // The first record's first field is `order_id`, a string: make its length -64.
    let at = first_block_data(&bytes);
    assert_eq!(
        bytes[at],
        2 * "ord-7-00000000".len() as u8,
        "order_id's length"
    );
    bytes[at] = 0x7f;
    let corrupt = dir.path().join("corrupt.avro");
    std::fs::write(&corrupt, bytes).unwrap();

    // An existing output stays as it was.
    let output = dir.path().join("out.avro");
    std::fs::write(&output, b"previous contents").unwrap();
    let before = files_in(dir.path());
    let (out, _, stderr) = transcode(&repo("proto/orders/order_v1.avsc"), &corrupt, &output);
    assert!(!out.status.success(), "must fail");
    assert!(stderr.contains("record 0 (block 0)"), "{stderr}");
    assert!(stderr.contains("OrderPlaced.order_id"), "{stderr}");
    assert_eq!(std::fs::read(&output).unwrap(), b"previous contents");
    assert_eq!(
        files_in(dir.path()),
        before,
        "no temporary file left behind"
    );
}
