//! `schemabridge transcode` on real container files, run as the binary a user runs: files that
//! fastavro (an independent implementation) wrote, read back with fastavro and compared with
//! fastavro's own resolution of the input; and the failures, which must name the field and
//! leave neither the output nor a temporary file behind.

use crate::support::python;
use crate::support::registry;

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
    py_in(&python::fastavro_python(), code, args)
}

/// Runs a Python snippet in a venv with fastavro and pyarrow; returns its stdout.
fn py_pyarrow(code: &str, args: &[&Path]) -> String {
    let python = python::python_with(&[
        (python::FASTAVRO, "fastavro"),
        ("pyarrow==26.0.1", "pyarrow"),
    ]);
    py_in(&python, code, args)
}

fn py_in(python: &Path, code: &str, args: &[&Path]) -> String {
    let out = Command::new(python)
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

/// A string that is not UTF-8 decodes (the plan copies strings as they are), but no reader of
/// the output could read it: both formats refuse the record, naming it and the field, and
/// write nothing.
#[test]
fn a_string_that_is_not_utf8_fails_naming_record_and_field_in_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = inputs(dir.path());
    let mut bytes = std::fs::read(&input).unwrap();
    let at = first_block_data(&bytes);
    assert_eq!(&bytes[at + 1..at + 5], b"ord-", "order_id's first bytes");
    bytes[at + 1] = 0xff;
    let bad = dir.path().join("not-utf8.avro");
    std::fs::write(&bad, bytes).unwrap();
    for out_name in ["out.avro", "out.parquet"] {
        let output = dir.path().join(out_name);
        let before = files_in(dir.path());
        let (out, _, stderr) = transcode(&repo("proto/orders/order_v1.avsc"), &bad, &output);
        assert!(!out.status.success(), "{out_name}: must fail");
        assert!(
            stderr.contains(&format!(
                "{}: record 0 (block 0) cannot be written: order_id: a string that is not UTF-8",
                bad.display()
            )),
            "{out_name}: {stderr}"
        );
        assert!(!output.exists(), "{out_name}");
        assert_eq!(
            files_in(dir.path()),
            before,
            "{out_name}: no file left behind"
        );
    }
}

/// Runs the binary with `args`, asserts that it succeeded, and returns its stdout.
fn schemabridge_ok(args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_schemabridge"))
        .args(args)
        .output()
        .expect("run schemabridge");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The top-level field names of a schema file, comma-separated, in order.
fn field_names(schema: &str) -> String {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo(schema)).unwrap()).unwrap();
    let fields = schema["fields"].as_array().expect("a record schema");
    let names: Vec<&str> = fields.iter().map(|f| f["name"].as_str().unwrap()).collect();
    names.join(",")
}

/// `gen_orders.py N SEED path` (OrderPlaced v2, null codec).
fn v2_file(path: &Path, records: u32, seed: u32) {
    let out = Command::new(python::fastavro_python())
        .arg(repo("tests/support/gen_orders.py"))
        .args([records.to_string(), seed.to_string()])
        .arg(path)
        .output()
        .expect("run gen_orders.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Reads `output` with fastavro and compares its records, in order, with fastavro's resolution
/// of each input (argv[3:]) to the reader schema in argv[1]; prints `count codec fields`.
const COMPARE_MANY: &str = "import sys, json, fastavro\n\
reader = fastavro.parse_schema(json.load(open(sys.argv[1])))\n\
want = []\n\
for p in sys.argv[3:]:\n\
\x20   want += list(fastavro.reader(open(p, 'rb'), reader_schema=reader))\n\
r = fastavro.reader(open(sys.argv[2], 'rb'))\n\
got = list(r)\n\
assert len(got) == len(want), (len(got), len(want))\n\
for i, (g, w) in enumerate(zip(got, want)):\n\
\x20   assert g == w, (i, g, w)\n\
print(len(got), r.codec, ','.join(f['name'] for f in r.writer_schema['fields']))\n";

/// Three archives written with two writer schemas (v2 by gen_orders.py, v1 by fastavro's own
/// resolution, with another codec), named by a pattern, become one v1 file whose records are,
/// in file order, exactly what fastavro's resolution of each input gives.
#[test]
fn many_archives_with_their_own_writers_become_one_normalised_file() {
    let dir = tempfile::tempdir().unwrap();
    let archives = dir.path().join("archives");
    std::fs::create_dir(&archives).unwrap();
    let (a, b, c) = (
        archives.join("2026-01.avro"),
        archives.join("2026-02.avro"),
        archives.join("2026-03.avro"),
    );
    v2_file(&a, 300, 11);
    v2_file(&c, 120, 13);
    let v1 = repo("proto/orders/order_v1.avsc");
    let v2_tmp = dir.path().join("b-v2.avro");
    v2_file(&v2_tmp, 200, 12);
    // The middle archive was written by a v1 producer: fastavro resolves and writes it.
    py(
        "import sys, json, fastavro\n\
         reader = fastavro.parse_schema(json.load(open(sys.argv[3])))\n\
         recs = list(fastavro.reader(open(sys.argv[1], 'rb'), reader_schema=reader))\n\
         with open(sys.argv[2], 'wb') as f:\n\
         \x20   fastavro.writer(f, reader, recs, codec='deflate', sync_interval=2000)\n",
        &[&v2_tmp, &b, &v1],
    );
    std::fs::remove_file(&v2_tmp).unwrap();

    let output = dir.path().join("normalised.avro");
    let pattern = format!("{}/*.avro", archives.display());
    let stdout = schemabridge_ok(&[
        "transcode".as_ref(),
        "--reader-schema".as_ref(),
        v1.as_os_str(),
        "-o".as_ref(),
        output.as_os_str(),
        pattern.as_ref(),
    ]);
    // One line per input, in name order, and the v1 archive is recognised as such.
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(lines[0].contains("2026-01.avro: 300 records"), "{stdout}");
    assert!(lines[0].contains("items[].gift_wrap"), "{stdout}");
    assert!(lines[1].contains("2026-02.avro: 200 records"), "{stdout}");
    assert!(lines[1].contains("(deflate codec)"), "{stdout}");
    assert!(lines[1].contains("already the reader schema"), "{stdout}");
    assert!(lines[2].contains("2026-03.avro: 120 records"), "{stdout}");
    assert!(lines[3].contains("620 records from 3 files"), "{stdout}");

    let summary = py(COMPARE_MANY, &[&v1, &output, &a, &b, &c]);
    // The inputs' codecs differ, so the output takes deflate.
    assert_eq!(
        summary.trim(),
        format!("620 deflate {}", field_names("proto/orders/order_v1.avsc"))
    );

    // A pattern that matches nothing, and several inputs without --output, are usage errors.
    for (args, why) in [
        (
            vec![
                "-o".into(),
                dir.path().join("never.avro").display().to_string(),
                format!("{}/*.nothing", archives.display()),
            ],
            "no file matches this pattern",
        ),
        (
            vec![
                a.display().to_string(),
                b.display().to_string(),
                "out.avro".into(),
            ],
            "give the output file with --output",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_schemabridge"))
            .args(["transcode", "--reader-schema"])
            .arg(&v1)
            .args(&args)
            .output()
            .expect("run schemabridge");
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(why), "{stderr}");
    }
}

/// The reader schema selected in a registry as a route selects it: `latest`, or a version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reader_schema_comes_from_a_registry_subject_at_a_version() {
    let registry = registry::RegistryDouble::start().await;
    let text = |p: &str| std::fs::read_to_string(repo(p)).unwrap();
    // Version 1 is v2, version 2 (latest) is v1: a consumer that pinned either.
    registry.register_avro("orders-archive-value", &text("proto/orders/order_v2.avsc"));
    registry.register_avro("orders-archive-value", &text("proto/orders/order_v1.avsc"));
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.avro");
    v2_file(&input, 150, 21);
    for (version, reader) in [
        ("latest", "proto/orders/order_v1.avsc"),
        ("1", "proto/orders/order_v2.avsc"),
    ] {
        let output = dir.path().join(format!("out-{version}.avro"));
        let stdout = schemabridge_ok(&[
            "transcode".as_ref(),
            "--registry".as_ref(),
            registry.url.as_ref(),
            "--reader-subject".as_ref(),
            "orders-archive-value".as_ref(),
            "--reader-version".as_ref(),
            version.as_ref(),
            "-o".as_ref(),
            output.as_os_str(),
            input.as_os_str(),
        ]);
        assert!(
            stdout.contains(&format!(
                "registry subject orders-archive-value version {version}"
            )),
            "{stdout}"
        );
        let summary = py(COMPARE_MANY, &[&repo(reader), &output, &input]);
        assert_eq!(summary.trim(), format!("150 null {}", field_names(reader)));
    }
}

/// `--to parquet` (from the `.parquet` extension): a v2 and a v1 archive into one Parquet file
/// that pyarrow reads with every row fastavro's resolution gives, in order, and the reader's
/// top-level fields as its columns.
#[test]
fn archives_become_one_parquet_file_that_pyarrow_reads_as_fastavro_resolves_them() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = repo("proto/orders/order_v1.avsc");
    let (a, b) = (dir.path().join("a.avro"), dir.path().join("b.avro"));
    v2_file(&a, 250, 31);
    let tmp = dir.path().join("tmp-v2.avro");
    v2_file(&tmp, 150, 32);
    py(
        "import sys, json, fastavro\n\
         reader = fastavro.parse_schema(json.load(open(sys.argv[3])))\n\
         recs = list(fastavro.reader(open(sys.argv[1], 'rb'), reader_schema=reader))\n\
         with open(sys.argv[2], 'wb') as f:\n\
         \x20   fastavro.writer(f, reader, recs)\n",
        &[&tmp, &b, &v1],
    );
    let output = dir.path().join("orders.parquet");
    let stdout = schemabridge_ok(&[
        "transcode".as_ref(),
        "--reader-schema".as_ref(),
        v1.as_os_str(),
        "-o".as_ref(),
        output.as_os_str(),
        a.as_os_str(),
        b.as_os_str(),
    ]);
    assert!(
        stdout.contains("400 records from 2 files written as Parquet (zstd level 1)"),
        "{stdout}"
    );
    let check = py_pyarrow(
        "import sys, json, fastavro, pyarrow.parquet as pq\n\
         reader = fastavro.parse_schema(json.load(open(sys.argv[1])))\n\
         want = []\n\
         for p in sys.argv[3:]:\n\
         \x20   want += list(fastavro.reader(open(p, 'rb'), reader_schema=reader))\n\
         t = pq.read_table(sys.argv[2])\n\
         rows = t.to_pylist()\n\
         assert len(rows) == len(want), (len(rows), len(want))\n\
         for i, (g, w) in enumerate(zip(rows, want)):\n\
         \x20   for k in ('order_id', 'customer_id', 'amount_cents', 'quantity', 'currency', 'source', 'discount', 'tags'):\n\
         \x20       assert g[k] == w[k], (i, k, g[k], w[k])\n\
         \x20   assert g['status'] == w['status'], (i, g['status'], w['status'])\n\
         \x20   assert g['shipping'] == w['shipping'], (i, g['shipping'], w['shipping'])\n\
         \x20   assert sorted(g['attributes']) == sorted(w['attributes'].items()), i\n\
         \x20   assert int(g['placed_at'].timestamp() * 1000) == int(w['placed_at'].timestamp() * 1000), i\n\
         print(len(rows), ','.join(t.schema.names))\n",
        &[&v1, &output, &a, &b],
    );
    assert_eq!(
        check.trim(),
        format!("400 {}", field_names("proto/orders/order_v1.avsc"))
    );
}

/// The Parquet writer options a route has (`compression_level`, `dictionary`, `statistics`,
/// `encoding_threads`) are `transcode` flags too, and reach the file: pyarrow finds zstd on every column chunk, no
/// dictionary page and no min/max statistics (with the defaults order_id and status would have
/// both), and the rows fastavro's resolution gives.
#[test]
fn parquet_writer_flags_reach_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = repo("proto/orders/order_v1.avsc");
    let input = dir.path().join("orders.avro");
    v2_file(&input, 300, 41);
    let output = dir.path().join("orders.parquet");
    let stdout = schemabridge_ok(&[
        "transcode".as_ref(),
        "--reader-schema".as_ref(),
        v1.as_os_str(),
        "--compression-level".as_ref(),
        "9".as_ref(),
        "--dictionary".as_ref(),
        "none".as_ref(),
        "--statistics".as_ref(),
        "none".as_ref(),
        "--encoding-threads".as_ref(),
        "1".as_ref(),
        input.as_os_str(),
        output.as_os_str(),
    ]);
    assert!(
        stdout.contains("300 records from 1 file written as Parquet (zstd level 9)"),
        "{stdout}"
    );
    let check = py_pyarrow(
        "import sys, json, fastavro, pyarrow.parquet as pq\n\
         reader = fastavro.parse_schema(json.load(open(sys.argv[1])))\n\
         want = [r['order_id'] for r in fastavro.reader(open(sys.argv[3], 'rb'), reader_schema=reader)]\n\
         m = pq.read_metadata(sys.argv[2])\n\
         chunks = [m.row_group(g).column(c) for g in range(m.num_row_groups) for c in range(m.num_columns)]\n\
         assert pq.read_table(sys.argv[2]).column('order_id').to_pylist() == want\n\
         print(len(want), sorted({c.compression for c in chunks}),\n\
         \x20     any(c.has_dictionary_page for c in chunks),\n\
         \x20     any(c.is_stats_set and c.statistics.has_min_max for c in chunks))\n",
        &[&v1, &output, &input],
    );
    assert_eq!(check.trim(), "300 ['ZSTD'] False False");
}

/// A Parquet flag with Avro output, or a zstd level with another compression, is a usage
/// error naming the flag, before any input is read: nothing is written.
#[test]
fn parquet_flags_with_avro_output_fail_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = repo("proto/orders/order_v1.avsc");
    let input = dir.path().join("orders.avro");
    v2_file(&input, 10, 42);
    for (args, out, flag) in [
        (&["--dictionary", "none"][..], "out.avro", "--dictionary"),
        (
            &["--statistics", "row-group"][..],
            "out.avro",
            "--statistics",
        ),
        (
            &["--compression-level", "3"][..],
            "out.avro",
            "--compression-level",
        ),
        (
            &["--encoding-threads", "0"][..],
            "out.avro",
            "--encoding-threads",
        ),
        (
            &["--compression", "snappy", "--compression-level", "3"][..],
            "out.parquet",
            "--compression-level",
        ),
    ] {
        let output = dir.path().join(out);
        let run = Command::new(env!("CARGO_BIN_EXE_schemabridge"))
            .arg("transcode")
            .arg("--reader-schema")
            .arg(&v1)
            .args(args)
            .arg(&input)
            .arg(&output)
            .output()
            .expect("run schemabridge");
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
        assert!(!output.exists(), "{args:?} wrote {}", output.display());
    }
}
