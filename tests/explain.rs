//! `schemabridge explain` as a user runs it: the binary on the project's reference schemas, from
//! files and from a schema registry (the registry double over HTTP).
//!
//! The expected differences are not written down here: they are parsed from the reader
//! schemas' own descriptions (order_v1.avsc's `doc`, order_v1.proto's header comment), so the
//! test checks explain against what the schema authors said, and that nothing else differs.
//! The `--sample` "after" record is compared with fastavro's resolution of the same record.

use crate::support::python;
use crate::support::registry;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use regex::Regex;
use serde_json::{Value as Json, json};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn schema_path(name: &str) -> PathBuf {
    root().join("proto/orders").join(name)
}

fn text(name: &str) -> String {
    std::fs::read_to_string(schema_path(name)).expect("read schema")
}

fn explain(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_schemabridge"))
        .arg("explain")
        .args(args)
        .output()
        .expect("run schemabridge explain")
}

fn explain_json(args: &[&str]) -> Json {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    let out = explain(&all);
    assert!(
        out.status.success(),
        "explain failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("explain --format json prints JSON")
}

fn file_args(writer: &str, reader: &str) -> Vec<String> {
    vec![
        "--writer-schema".into(),
        schema_path(writer).display().to_string(),
        "--reader-schema".into(),
        schema_path(reader).display().to_string(),
    ]
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Every entry that is not `kept`, as (path, change, the entry without path and change).
fn differences(report: &Json) -> BTreeSet<(String, String, String)> {
    report["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter(|c| c["change"] != "kept")
        .map(|c| {
            let mut rest = c.clone();
            let obj = rest.as_object_mut().expect("entry is an object");
            let path = obj.remove("path").expect("path");
            let change = obj.remove("change").expect("change");
            obj.remove("held_data");
            (
                path.as_str().expect("path string").to_owned(),
                change.as_str().expect("change string").to_owned(),
                canonical(&rest),
            )
        })
        .collect()
}

fn entry(path: &str, change: &str, rest: Json) -> (String, String, String) {
    (path.to_owned(), change.to_owned(), canonical(&rest))
}

/// JSON text with object keys sorted, so that entries compare whatever their key order.
fn canonical(v: &Json) -> String {
    match v {
        Json::Object(o) => {
            let sorted: std::collections::BTreeMap<&String, String> =
                o.iter().map(|(k, v)| (k, canonical(v))).collect();
            let fields: Vec<String> = sorted
                .into_iter()
                .map(|(k, v)| format!("{}:{v}", Json::from(k.as_str())))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Json::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

fn capture<'t>(re: &str, text: &'t str) -> regex::Captures<'t> {
    Regex::new(re)
        .expect("regex")
        .captures(text)
        .unwrap_or_else(|| panic!("the description no longer says {re:?}: {text}"))
}

fn list(s: &str) -> Vec<String> {
    s.split(',').map(|x| x.trim().to_owned()).collect()
}

fn enum_field(record: &Json) -> (&str, &Json) {
    record["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .find(|f| f["type"]["type"] == "enum")
        .map(|f| (f["name"].as_str().expect("name"), &f["type"]))
        .expect("an enum field")
}

/// What order_v1.avsc's doc string says v2 → v1 changes, as report entries.
fn avro_expected() -> BTreeSet<(String, String, String)> {
    let v1: Json = serde_json::from_str(&text("order_v1.avsc")).expect("v1 JSON");
    let v2: Json = serde_json::from_str(&text("order_v2.avsc")).expect("v2 JSON");
    let doc = v1["doc"].as_str().expect("doc");
    let mut expected = BTreeSet::new();
    let writer_field = |path: &str| -> Json {
        let mut t = &v2;
        let mut field = &Json::Null;
        for seg in path.split('.') {
            let name = seg.trim_end_matches("[]");
            field = t["fields"]
                .as_array()
                .expect("fields")
                .iter()
                .find(|f| f["name"] == name)
                .unwrap_or_else(|| panic!("v2 has no field {path}"));
            t = &field["type"];
            if seg.ends_with("[]") {
                t = &t["items"];
            }
        }
        field.clone()
    };
    for path in list(&capture(r"removed fields \(([^)]*)\)", doc)[1]) {
        let f = writer_field(&path);
        let nullable = f["type"]
            .as_array()
            .is_some_and(|b| b.contains(&json!("null")));
        let optional = f.get("default").is_some() || nullable;
        expected.insert(entry(
            &path,
            "dropped",
            json!({"optional": optional, "preserved": false}),
        ));
    }
    let c = capture(r"promoted type \((\w+) (\w+) -> (\w+)\)", doc);
    expected.insert(entry(
        &c[1],
        "promoted",
        json!({"from": &c[2], "to": &c[3]}),
    ));
    let c = capture(r"renamed field \((\w+) read as (\w+) via alias\)", doc);
    expected.insert(entry(&c[2], "renamed", json!({"from": &c[1]})));
    assert!(
        doc.contains("an enum with fewer symbols and a default"),
        "{doc}"
    );
    let (name, reader_enum) = enum_field(&v1);
    let (_, writer_enum) = enum_field(&v2);
    let reader_symbols = reader_enum["symbols"].as_array().expect("symbols");
    for s in writer_enum["symbols"].as_array().expect("symbols") {
        if !reader_symbols.contains(s) {
            expected.insert(entry(
                name,
                "enum_symbol",
                json!({"symbol": s, "to": reader_enum["default"]}),
            ));
        }
    }
    let c = capture(r"a field only v1 has \((\w+), with default\)", doc);
    let default = v1["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .find(|f| f["name"] == c[1])
        .map(|f| f["default"].clone())
        .expect("the v1-only field");
    expected.insert(entry(&c[1], "defaulted", json!({"value": default})));
    expected
}

#[test]
fn avro_reference_pair_lists_exactly_what_the_reader_doc_describes() {
    let args = file_args("order_v2.avsc", "order_v1.avsc");
    let report = explain_json(&refs(&args));
    assert_eq!(report["format"], "avro");
    assert_eq!(report["identical"], false);
    assert_eq!(differences(&report), avro_expected());
    // Every field of both schemas is accounted for: the kept ones too.
    let kept: Vec<&str> = report["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter(|c| c["change"] == "kept")
        .filter_map(|c| c["path"].as_str())
        .collect();
    for p in [
        "order_id",
        "shipping",
        "shipping.city",
        "items[].sku",
        "discount",
    ] {
        assert!(kept.contains(&p), "{p} not kept: {kept:?}");
    }

    // The table says the same, one line per entry.
    let out = explain(&refs(&args));
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    for (path, change, _) in avro_expected() {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(&format!("{path} ")) && l.contains(&change)),
            "no {change} line for {path}:\n{table}"
        );
    }
    assert!(
        table.contains("read from writer field total_cents"),
        "{table}"
    );
    assert!(table.contains("int -> long"), "{table}");
}

/// A v2 record in Avro's JSON encoding, as fastavro / avro-tools write it.
fn v2_record() -> Json {
    let hash: String = (0u8..32).map(|b| char::from(b.wrapping_mul(7))).collect();
    json!({
        "order_id": "o-17", "customer_id": 42, "placed_at": 1_700_000_000_000i64,
        "status": "REFUNDED", "total_cents": 1999, "currency": "EUR", "quantity": 3,
        "discount": {"double": 0.25}, "email": {"string": "a@example.com"},
        "shipping": {"line1": "1 Main St", "city": "Springfield", "postcode": "12345",
                     "country": "US", "geo": null},
        "items": [{"sku": "A", "qty": 2, "unit_cents": 500, "gift_wrap": true},
                  {"sku": "B", "qty": 1, "unit_cents": 999, "gift_wrap": false}],
        "tags": ["x", "y"], "attributes": {"k": "v"},
        "loyalty_tier": null, "fraud_score": 0.0, "payload_hash": hash,
        "notes": "", "channel": "web"
    })
}

fn write_json(dir: &Path, name: &str, value: &Json) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, value.to_string()).expect("write sample");
    path
}

/// fastavro's resolution of `record` (Avro JSON of `writer`) into `reader`, as Avro JSON.
fn fastavro_resolve(writer: &str, reader: &str, record: &Json) -> Json {
    let python = python::fastavro_python();
    let script = r#"
import io, json, sys
import fastavro
case = json.load(sys.stdin)
def strip(s):
    if isinstance(s, dict):
        return {k: strip(v) for k, v in s.items() if k != "logicalType"}
    if isinstance(s, list):
        return [strip(x) for x in s]
    return s
w = fastavro.parse_schema(strip(case["writer"]))
r = fastavro.parse_schema(strip(case["reader"]))
rec = next(fastavro.json_reader(io.StringIO(json.dumps(case["record"])), w))
buf = io.BytesIO()
fastavro.schemaless_writer(buf, w, rec)
buf.seek(0)
resolved = fastavro.schemaless_reader(buf, w, r)
out = io.StringIO()
fastavro.json_writer(out, r, [resolved])
sys.stdout.write(out.getvalue())
"#;
    let case = json!({
        "writer": serde_json::from_str::<Json>(writer).expect("writer"),
        "reader": serde_json::from_str::<Json>(reader).expect("reader"),
        "record": record,
    });
    let mut child = Command::new(&python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(case.to_string().as_bytes())
        .expect("write case");
    let out = child.wait_with_output().expect("python runs");
    assert!(
        out.status.success(),
        "fastavro failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("fastavro prints one JSON record")
}

#[test]
fn avro_sample_before_and_after_flags_dropped_fields_that_held_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let record = v2_record();
    let sample = write_json(dir.path(), "v2.json", &record);
    let mut args = file_args("order_v2.avsc", "order_v1.avsc");
    args.extend(["--sample".into(), sample.display().to_string()]);
    let report = explain_json(&refs(&args));
    let s = &report["sample"];
    assert_eq!(s["before"], record, "before is the writer record as given");

    let after = &s["after"];
    assert_eq!(after["amount_cents"], record["total_cents"]);
    assert_eq!(after["quantity"], record["quantity"]);
    assert_eq!(after["status"], "PENDING", "REFUNDED takes v1's default");
    assert_eq!(after["source"], "unknown");
    assert_eq!(after["shipping"]["city"], "Springfield");
    for gone in ["email", "total_cents", "payload_hash", "channel"] {
        assert!(after.get(gone).is_none(), "{gone} in {after}");
    }
    assert!(after["shipping"].get("geo").is_none());
    assert!(after["items"][0].get("gift_wrap").is_none());
    assert_eq!(after["items"][1]["unit_cents"], 999);

    // Fields that held something other than their default in this record, and only those.
    let held: BTreeSet<&str> = report["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter(|c| c["change"] == "dropped")
        .filter(|c| {
            c["held_data"]
                .as_bool()
                .unwrap_or_else(|| panic!("dropped entry without held_data: {c}"))
        })
        .filter_map(|c| c["path"].as_str())
        .collect();
    assert_eq!(
        held,
        BTreeSet::from(["email", "items[].gift_wrap", "payload_hash"])
    );
    let lost: BTreeSet<&str> = s["lost"]
        .as_array()
        .expect("lost")
        .iter()
        .filter_map(Json::as_str)
        .collect();
    assert_eq!(lost, held);

    // An independent implementation resolves the same record to the same reader record.
    let oracle = fastavro_resolve(&text("order_v2.avsc"), &text("order_v1.avsc"), &record);
    assert_eq!(after, &oracle);

    // The table prints both records and flags the fields.
    let out = explain(&refs(&args));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("before (writer): {"), "{table}");
    assert!(table.contains("after (reader):  {"), "{table}");
    let email = table
        .lines()
        .find(|l| l.starts_with("email "))
        .expect("email line");
    assert!(email.contains("HELD DATA"), "{email}");
    let geo = table
        .lines()
        .find(|l| l.starts_with("shipping.geo "))
        .expect("geo line");
    assert!(geo.contains("empty in the sample"), "{geo}");

    // A union holding a named record (keyed by its full name, as fastavro writes it).
    let mut with_geo = record.clone();
    with_geo["shipping"]["geo"] = json!({"com.example.orders.Geo": {"lat": 1.5, "lon": -2.25}});
    let sample = write_json(dir.path(), "geo.json", &with_geo);
    let mut args = file_args("order_v2.avsc", "order_v1.avsc");
    args.extend(["--sample".into(), sample.display().to_string()]);
    let report = explain_json(&refs(&args));
    assert_eq!(report["sample"]["before"], with_geo);
    assert!(
        report["sample"]["lost"]
            .as_array()
            .expect("lost")
            .contains(&json!("shipping.geo"))
    );
}

/// What order_v1.proto's header comment says v2 → v1 changes, as (path, change) pairs.
fn proto_expected() -> BTreeSet<(String, String)> {
    let comment: String = text("order_v1.proto")
        .lines()
        .take_while(|l| l.starts_with("//"))
        .map(|l| l.trim_start_matches('/').trim())
        .collect::<Vec<_>>()
        .join(" ");
    let mut expected = BTreeSet::new();
    for f in list(&capture(r"fields v2 added \(([^)]*)\)", &comment)[1]) {
        // `coupon_code in the discount oneof`: a oneof member is a plain field; protobuf paths
        // have no `[]` for repeated fields.
        let path = f.split(' ').next().expect("name").replace("[]", "");
        expected.insert((path, "dropped".to_owned()));
    }
    let c = capture(r"a widened type \((\w+):", &comment);
    expected.insert((c[1].to_owned(), "promoted".to_owned()));
    assert!(
        capture(r"an enum with one value fewer \(no (\w+)\)", &comment)[1] == *"REFUNDED",
        "{comment}"
    );
    expected.insert(("status".to_owned(), "unknown_enum_value".to_owned()));
    let c = capture(r"a field only v1 has \((\w+) = \d+", &comment);
    expected.insert((c[1].to_owned(), "defaulted".to_owned()));
    expected
}

fn pairs(report: &Json) -> BTreeSet<(String, String)> {
    differences(report)
        .into_iter()
        .map(|(p, c, _)| (p, c))
        .collect()
}

const PROTO_V2_SAMPLE: &str = r#"{
  "orderId": "o-1", "customerId": "42", "placedAt": "2024-05-01T12:00:00Z",
  "status": "PAID", "totalCents": "1999", "currency": "EUR", "quantity": 3,
  "couponCode": "SPRING",
  "shipping": {"line1": "1 Main St", "city": "Springfield", "postcode": "12345",
               "country": "US", "geo": {"lat": 1.5, "lon": -2.25}},
  "items": [{"sku": "A", "qty": 2, "unitCents": "500"}],
  "email": "a@example.com"
}"#;

#[test]
fn protobuf_reference_pair_lists_what_the_reader_comment_describes_and_a_sample() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sample: Json = serde_json::from_str(PROTO_V2_SAMPLE).expect("sample JSON");
    let sample_path = write_json(dir.path(), "v2.json", &sample);
    let mut args = file_args("order_v2.proto", "order_v1.proto");
    args.extend(["--sample".into(), sample_path.display().to_string()]);
    let report = explain_json(&refs(&args));
    assert_eq!(report["format"], "protobuf");
    assert_eq!(report["unknown_fields"], "preserve");
    assert_eq!(pairs(&report), proto_expected());
    assert!(
        report["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .filter(|c| c["change"] == "dropped")
            .all(|c| c["preserved"] == true)
    );

    let s = &report["sample"];
    assert_eq!(s["before"], sample);
    let after = &s["after"];
    assert_eq!(after["totalCents"], "1999");
    assert_eq!(
        after["quantity"], "3",
        "int64 in canonical JSON is a string"
    );
    assert_eq!(after["shipping"]["city"], "Springfield");
    assert!(after.get("email").is_none() && after.get("couponCode").is_none());
    assert!(after["shipping"].get("geo").is_none());
    let lost: BTreeSet<&str> = s["lost"]
        .as_array()
        .expect("lost")
        .iter()
        .filter_map(Json::as_str)
        .collect();
    assert_eq!(
        lost,
        BTreeSet::from(["coupon_code", "email", "shipping.geo"])
    );

    // Under `drop` the same fields are reported as not preserved.
    args.extend(["--unknown-fields".into(), "drop".into()]);
    let report = explain_json(&refs(&args));
    assert_eq!(pairs(&report), proto_expected());
    assert!(
        report["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .filter(|c| c["change"] == "dropped")
            .all(|c| c["preserved"] == false)
    );
}

#[test]
fn identical_schemas_keep_every_field() {
    let args = file_args("order_v1.avsc", "order_v1.avsc");
    let report = explain_json(&refs(&args));
    assert_eq!(report["identical"], true);
    assert!(differences(&report).is_empty());
    assert!(report["changes"].as_array().expect("changes").len() > 13);
}

#[test]
fn an_incompatible_pair_exits_1_naming_the_field_and_usage_errors_exit_2() {
    let args = file_args("order_v1.avsc", "order_v2.avsc");
    let out = explain(&refs(&args));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("total_cents"), "{stderr}");
    assert!(out.stdout.is_empty());

    let out = explain(&["--writer-schema", "x.avsc"]);
    assert_eq!(out.status.code(), Some(2));
    let out = explain(&["--writer-id", "1", "--reader-schema", "x.avsc"]);
    assert_eq!(out.status.code(), Some(2), "--writer-id needs --registry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_from_a_registry_by_id_and_subject_with_references() {
    let registry = registry::RegistryDouble::start().await;
    let v1 = registry.register_avro("orders-v1-value", &text("order_v1.avsc"));
    let v2 = registry.register_avro("orders-value", &text("order_v2.avsc"));
    assert_ne!(v1, v2);
    let money = registry.register(
        "orders-money",
        Some("PROTOBUF"),
        &text("money.proto"),
        vec![],
    );
    let money_ref = json!({"name": "orders/money.proto", "subject": "orders-money", "version": 1});
    registry.register(
        "orders-common",
        Some("PROTOBUF"),
        &text("common.proto"),
        vec![money_ref.clone()],
    );
    let common_ref =
        json!({"name": "orders/common.proto", "subject": "orders-common", "version": 1});
    let pv1 = registry.register(
        "porders-v1-value",
        Some("PROTOBUF"),
        &text("order_v1.proto"),
        vec![money_ref.clone()],
    );
    let pv2 = registry.register(
        "porders-value",
        Some("PROTOBUF"),
        &text("order_v2.proto"),
        vec![common_ref, money_ref],
    );
    assert!(money > 0 && pv1 != pv2);
    let url = registry.url.clone();
    let run = move |args: Vec<String>| {
        let mut all = vec![
            "--registry".to_owned(),
            url.clone(),
            "--format".to_owned(),
            "json".to_owned(),
        ];
        all.extend(args);
        let out = explain(&refs(&all));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Json>(&out.stdout).expect("JSON")
    };
    let (avro, proto, latest) = tokio::task::spawn_blocking(move || {
        let avro = run(vec![
            "--writer-id".into(),
            v2.to_string(),
            "--reader-subject".into(),
            "orders-v1-value".into(),
            "--reader-version".into(),
            "1".into(),
        ]);
        let proto = run(vec![
            "--writer-id".into(),
            pv2.to_string(),
            "--reader-subject".into(),
            "porders-v1-value".into(),
        ]);
        // The writer's own subject, latest: the same schema, so every field kept.
        let latest = run(vec![
            "--writer-id".into(),
            v2.to_string(),
            "--reader-subject".into(),
            "orders-value".into(),
        ]);
        (avro, proto, latest)
    })
    .await
    .expect("explain runs");
    assert_eq!(differences(&avro), avro_expected());
    assert_eq!(
        avro["writer"],
        format!("registry schema id {v2} (com.example.orders.OrderPlaced)")
    );
    assert_eq!(pairs(&proto), proto_expected());
    assert_eq!(latest["identical"], true);
    assert!(differences(&latest).is_empty());
}
