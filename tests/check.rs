//! `schemabridge check`, as a producer team runs it in CI before shipping a schema: the real
//! binary against the registry double (real Confluent REST paths over HTTP), and with
//! `--scan-topic` against librdkafka's mock cluster.

use crate::support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::kafka::{Cluster, Input, RouteSpec};
use support::orders::{ORDER_V1, ORDER_V2, framed};
use support::protos::{proto, register_orders};
use support::registry::RegistryDouble;

/// v3: `quantity` becomes a string, which no reader of v1 or v2 can take.
fn order_v3() -> String {
    let v3 = ORDER_V2.replace(
        r#"{"name": "quantity", "type": "int"}"#,
        r#"{"name": "quantity", "type": "string"}"#,
    );
    assert_ne!(
        v3, ORDER_V2,
        "order_v2.avsc no longer has the quantity field this test edits"
    );
    v3
}

/// The fields order_v1.avsc's doc string says v1 lacks (what a v1 reader drops from v2).
fn dropped_by_v1() -> BTreeSet<String> {
    let doc: Value = serde_json::from_str(ORDER_V1).unwrap();
    let doc = doc["doc"].as_str().unwrap();
    let list = doc
        .split("removed fields (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("order_v1.avsc doc lists the removed fields");
    list.split(", ").map(str::to_string).collect()
}

/// Whether order_v2.avsc gives the field at `path` (`shipping.geo`, `items[].gift_wrap`) a
/// default, read from the schema text itself.
fn v2_field_is_optional(path: &str) -> bool {
    let schema: Value = serde_json::from_str(ORDER_V2).unwrap();
    let mut record = &schema;
    let mut field = &Value::Null;
    for name in path.split('.') {
        let name = name.trim_end_matches("[]");
        field = record["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("{path}: no field {name}"));
        // Descend through arrays and nullable unions to the record inside, if any.
        let mut ty = &field["type"];
        loop {
            ty = match ty {
                Value::Array(branches) => branches.iter().find(|b| *b != "null").unwrap(),
                Value::Object(o) if o.get("type") == Some(&Value::from("array")) => &o["items"],
                _ => break,
            };
        }
        record = ty;
    }
    field.get("default").is_some()
}

/// A one-route config (the reference route, its reader under subject `orders-reader`), written
/// to `dir`.
fn config(dir: &Path, registry: &str, bootstrap: &str) -> PathBuf {
    let route = RouteSpec {
        reader_subject: "orders-reader",
        ..RouteSpec::ORDERS
    };
    let path = dir.join("schemabridge.yaml");
    let text = format!(
        "source:\n  bootstrap_servers: \"{bootstrap}\"\ngroup_id: check-test\nregistry:\n  url: {registry}\n  initial_backoff_ms: 10\n  max_backoff_ms: 100\n{}",
        route.yaml()
    );
    std::fs::write(&path, text).unwrap();
    path
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn check(args: &[&str]) -> Run {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_schemabridge"))
            .arg("check")
            .args(&args)
            .output()
            .expect("run schemabridge check")
    })
    .await
    .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A registry whose `orders-value` holds v1, v2 and the breaking v3, read by a v1 consumer.
async fn registry_with_history(with_v3: bool) -> RegistryDouble {
    let registry = RegistryDouble::start().await;
    registry.register_avro("orders-reader", ORDER_V1);
    registry.register_avro("orders-value", ORDER_V1);
    registry.register_avro("orders-value", ORDER_V2);
    if with_v3 {
        registry.register_avro("orders-value", &order_v3());
    }
    registry.set_compatibility("orders-value", "NONE");
    registry
}

fn writers(report: &Value) -> &Vec<Value> {
    report["parts"][0]["writers"].as_array().expect("writers")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_registered_version_gets_a_verdict_and_a_breaking_one_fails_the_check() {
    let registry = registry_with_history(true).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &registry.url, "127.0.0.1:9");
    let cfg = cfg.to_str().unwrap();

    let json = check(&["--config", cfg, "--format", "json"]).await;
    assert_eq!(json.code, Some(1), "{}\n{}", json.stdout, json.stderr);
    let report: Value = serde_json::from_str(&json.stdout).expect("JSON report");
    assert_eq!(report["result"], "fail");
    let w = writers(&report);
    assert_eq!(w.len(), 3, "{w:#?}");
    let versions: Vec<u64> = w.iter().map(|w| w["version"].as_u64().unwrap()).collect();
    assert_eq!(versions, [1, 2, 3]);
    assert!(w.iter().all(|w| w["subject"] == "orders-value"));

    // v1 is the reader's own schema.
    assert_eq!(w[0]["verdict"], "ok", "{:#}", w[0]);
    // v2: lossy, exactly the fields v1 lacks (all optional in v2), plus the enum symbol v1
    // maps to its default.
    assert_eq!(w[1]["verdict"], "lossy", "{:#}", w[1]);
    let losses = w[1]["losses"].as_array().unwrap();
    let dropped: BTreeSet<String> = losses
        .iter()
        .filter(|l| l["change"] == "dropped")
        .map(|l| l["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(dropped, dropped_by_v1());
    for l in losses.iter().filter(|l| l["change"] == "dropped") {
        let path = l["path"].as_str().unwrap();
        assert_eq!(l["optional"], v2_field_is_optional(path), "{l:#}");
    }
    let others: Vec<&Value> = losses.iter().filter(|l| l["change"] != "dropped").collect();
    assert_eq!(others.len(), 1, "{others:#?}");
    assert_eq!(others[0]["change"], "enum_symbol");
    assert_eq!(others[0]["path"], "status");
    assert!(others[0]["detail"].as_str().unwrap().contains("REFUNDED"));
    // v3: incompatible, naming the field.
    assert_eq!(w[2]["verdict"], "incompatible", "{:#}", w[2]);
    assert_eq!(w[2]["conditional"], false);
    assert!(
        w[2]["reason"].as_str().unwrap().contains("quantity"),
        "{:#}",
        w[2]
    );

    // The subject's history against the registry's levels: v2's total_cents has no default and
    // no alias for v1's amount_cents (v1 carries the alias), so v2 cannot read v1 (BACKWARD
    // broken by 2); v1 reads v2, but v2 cannot read v3's string quantity (FORWARD broken by 3).
    let subject = &report["parts"][0]["subjects"][0];
    assert_eq!(subject["subject"], "orders-value");
    assert_eq!(subject["registry_level"], "NONE");
    let level = |name: &str| {
        subject["levels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["level"] == name)
            .unwrap_or_else(|| panic!("no {name} in {subject:#}"))
            .clone()
    };
    let backward = level("BACKWARD");
    assert_eq!(backward["holds"], false);
    assert_eq!(backward["broken_by"], 2, "{backward:#}");
    let why = backward["broken"].as_str().unwrap();
    assert!(why.starts_with("version 2 cannot read version 1"), "{why}");
    assert!(why.contains("total_cents"), "{why}");
    let forward = level("FORWARD");
    assert_eq!(forward["broken_by"], 3, "{forward:#}");
    assert!(
        forward["broken"]
            .as_str()
            .unwrap()
            .starts_with("version 2 cannot read version 3")
    );
    assert_eq!(level("FULL_TRANSITIVE")["broken_by"], 2);

    // The table says the same to a person.
    let table = check(&["--config", cfg]).await;
    assert_eq!(table.code, Some(1), "{}", table.stderr);
    let line = |needle: &str| {
        table
            .stdout
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in\n{}", table.stdout))
            .to_string()
    };
    assert!(line("orders-value version 1").contains(" ok "));
    let v2 = line("orders-value version 2");
    assert!(v2.contains(" lossy "), "{v2}");
    for field in dropped_by_v1() {
        let how = if v2_field_is_optional(&field) {
            "optional in the writer"
        } else {
            "the writer always fills it"
        };
        line(&format!("  {field}: dropped ({how})"));
    }
    let v3 = line("orders-value version 3");
    assert!(
        v3.contains(" incompatible ") && v3.contains("quantity"),
        "{v3}"
    );
    assert!(line("version 3 breaks FORWARD").contains("cannot repair"));
    assert!(line("result:").contains("1 ok, 1 lossy, 1 incompatible"));
}

#[tokio::test(flavor = "multi_thread")]
async fn lossy_passes_unless_strict() {
    let registry = registry_with_history(false).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &registry.url, "127.0.0.1:9");
    let cfg = cfg.to_str().unwrap();

    let plain = check(&["--config", cfg]).await;
    assert_eq!(plain.code, Some(0), "{}\n{}", plain.stdout, plain.stderr);
    assert!(
        plain.stdout.contains("1 ok, 1 lossy, 0 incompatible"),
        "{}",
        plain.stdout
    );
    let strict = check(&["--config", cfg, "--strict", "--format", "json"]).await;
    assert_eq!(strict.code, Some(1), "{}", strict.stderr);
    let report: Value = serde_json::from_str(&strict.stdout).unwrap();
    assert_eq!(report["result"], "fail");
    assert_eq!(report["strict"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unregistered_breaking_schema_fails_naming_the_field() {
    let registry = registry_with_history(false).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &registry.url, "127.0.0.1:9");
    let v3 = dir.path().join("order_v3.avsc");
    std::fs::write(&v3, order_v3()).unwrap();
    let before = registry.requests();

    let run = check(&[
        "--config",
        cfg.to_str().unwrap(),
        "--writer-schema",
        v3.to_str().unwrap(),
        "--format",
        "json",
    ])
    .await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    let file = writers(&report)
        .iter()
        .find(|w| w["writer"].as_str().unwrap().starts_with("file "))
        .expect("a row for the file");
    assert_eq!(file["verdict"], "incompatible");
    assert!(
        file["reason"].as_str().unwrap().contains("quantity"),
        "{file:#}"
    );
    // The registered versions are still fine; only the file fails.
    assert_eq!(
        writers(&report)
            .iter()
            .filter(|w| w["verdict"] == "incompatible")
            .count(),
        1
    );
    assert!(
        registry.requests() > before,
        "the history came from the registry"
    );

    // The same file, compatible: exit 0.
    let v2 = dir.path().join("order_v2.avsc");
    std::fs::write(&v2, ORDER_V2).unwrap();
    let ok = check(&[
        "--config",
        cfg.to_str().unwrap(),
        "--writer-schema",
        v2.to_str().unwrap(),
    ])
    .await;
    assert_eq!(ok.code, Some(0), "{}\n{}", ok.stdout, ok.stderr);
    assert!(
        ok.stdout
            .lines()
            .any(|l| l.contains("file ") && l.contains(" lossy ")),
        "{}",
        ok.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_and_config_errors_exit_2() {
    let registry = registry_with_history(false).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &registry.url, "127.0.0.1:9");

    let usage = check(&["--config", cfg.to_str().unwrap(), "--format", "yaml"]).await;
    assert_eq!(usage.code, Some(2), "{}", usage.stderr);
    assert!(usage.stderr.contains("--format"), "{}", usage.stderr);

    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("format: avro", "format: avr0");
    std::fs::write(&cfg, text).unwrap();
    let bad = check(&["--config", cfg.to_str().unwrap()]).await;
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    assert!(
        bad.stderr.contains("routes[0].value.format"),
        "{}",
        bad.stderr
    );

    // A reader subject that does not exist is a config error too, not a verdict.
    let cfg = config(dir.path(), &registry.url, "127.0.0.1:9");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("orders-reader", "no-such-subject");
    std::fs::write(&cfg, text).unwrap();
    let missing = check(&["--config", cfg.to_str().unwrap()]).await;
    assert_eq!(missing.code, Some(2), "{}", missing.stderr);
    assert!(
        missing.stderr.contains("no-such-subject"),
        "{}",
        missing.stderr
    );

    // A registry that never answers: retried, then exit 2 at the deadline (not a verdict).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let cfg = config(dir.path(), &url, "127.0.0.1:9");
    let down = check(&["--config", cfg.to_str().unwrap(), "--timeout-secs", "2"]).await;
    assert_eq!(down.code, Some(2), "{}", down.stderr);
    assert!(down.stderr.contains("did not answer"), "{}", down.stderr);
    assert!(down.stdout.is_empty(), "{}", down.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn scan_topic_reports_the_writer_ids_actually_on_the_topic() {
    let registry = registry_with_history(false).await;
    // A schema produced to the topic but registered under another subject: only the scan
    // finds it.
    let stray = registry.register_avro("elsewhere-value", &order_v3());
    let v2 = registry.register_avro("orders-value", ORDER_V2);
    let cluster = Cluster::start(&[("orders", 3)]);
    let input = |partition: i32, id: u32| Input {
        partition,
        value: Some(framed(id, b"\x00")),
        ..Input::default()
    };
    let mut inputs: Vec<Input> = (0..30).map(|i| input(i % 3, v2)).collect();
    inputs.extend((0..4).map(|i| input(i % 3, stray)));
    inputs.push(Input {
        partition: 1,
        value: Some(b"not framed".to_vec()),
        ..Input::default()
    });
    cluster.produce("orders", &inputs).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &registry.url, &cluster.bootstrap);

    let run = check(&[
        "--config",
        cfg.to_str().unwrap(),
        "--scan-topic",
        "--format",
        "json",
    ])
    .await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    let part = &report["parts"][0];
    assert_eq!(part["unframed"], 1);
    let w = writers(&report);
    let v2_row = w.iter().find(|w| w["version"] == 2).unwrap();
    assert_eq!(v2_row["seen"], 30, "{v2_row:#}");
    assert_eq!(v2_row["verdict"], "lossy");
    let stray_row = w
        .iter()
        .find(|w| w["id"] == stray)
        .unwrap_or_else(|| panic!("no row for id {stray}: {w:#?}"));
    assert_eq!(stray_row["seen"], 4);
    assert!(stray_row.get("subject").is_none());
    assert_eq!(stray_row["verdict"], "incompatible");
    assert!(stray_row["reason"].as_str().unwrap().contains("quantity"));
    // Never registered under the subject, never seen: no row, no seen count for v1.
    assert!(
        w.iter()
            .find(|w| w["version"] == 1)
            .unwrap()
            .get("seen")
            .is_none()
    );
}

/// The fields order_v1.proto's header comment says v2 added (what a v1 reader drops), in
/// Protobuf's path form (`items.gift_wrap`: a repeated field adds no `[]`).
fn added_in_v2_proto() -> BTreeSet<String> {
    let text = proto("orders/order_v1.proto");
    let comment: String = text
        .lines()
        .take_while(|l| l.starts_with("//"))
        .map(|l| l.trim_start_matches("//").trim())
        .collect::<Vec<_>>()
        .join(" ");
    let list = comment
        .split("by fields v2 added (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("order_v1.proto lists the fields v2 added");
    list.split(", ")
        .map(|f| f.split_whitespace().next().unwrap().replace("[]", ""))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn protobuf_routes_are_checked_with_their_unknown_field_policy() {
    let registry = RegistryDouble::start().await;
    let ids = register_orders(&registry, "orders-pb-value", proto);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &registry.url, "127.0.0.1:9");
    let base = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("topics: [orders]", "topics: [orders-pb]")
        .replace("format: avro", "format: protobuf")
        .replace("subject: orders-reader", "subject: orders-pb-value");
    let v2_file = format!("{}/proto/orders/order_v2.proto", env!("CARGO_MANIFEST_DIR"));

    for policy in ["preserve", "drop"] {
        let text = format!("{base}      unknown_fields: {policy}\n");
        std::fs::write(&cfg, text).unwrap();
        let run = check(&[
            "--config",
            cfg.to_str().unwrap(),
            "--writer-schema",
            &v2_file,
            "--format",
            "json",
        ])
        .await;
        assert_eq!(
            run.code,
            Some(0),
            "{policy}: {}\n{}",
            run.stdout,
            run.stderr
        );
        let report: Value = serde_json::from_str(&run.stdout).unwrap();
        let w = writers(&report);
        assert_eq!(w.len(), 3, "{w:#?}");
        assert_eq!(w[0]["verdict"], "ok", "{:#}", w[0]);
        // The registered v2 and the same file: the same verdict.
        for v2 in [&w[1], &w[2]] {
            assert_eq!(v2["verdict"], "lossy", "{policy}: {v2:#}");
            let losses = v2["losses"].as_array().unwrap();
            let dropped: BTreeSet<String> = losses
                .iter()
                .filter(|l| l["change"] == "dropped")
                .map(|l| l["path"].as_str().unwrap().replace("[]", ""))
                .collect();
            let others: Vec<&Value> = losses.iter().filter(|l| l["change"] != "dropped").collect();
            // Under preserve the v2 fields travel on as unknown fields: no loss. Only the
            // REFUNDED status reaches a v1 reader as a bare number either way.
            if policy == "preserve" {
                assert!(dropped.is_empty(), "{dropped:?}");
            } else {
                assert_eq!(dropped, added_in_v2_proto());
            }
            assert_eq!(others.len(), 1, "{others:#?}");
            assert!(others[0]["detail"].as_str().unwrap().contains("REFUNDED"));
        }
        assert_eq!(
            w[1]["writer"],
            format!("orders-pb-value version 2 (id {})", ids.1)
        );
        assert!(w[2]["writer"].as_str().unwrap().ends_with("order_v2.proto"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bridge_mode_checks_against_the_reader_in_the_target_registry_without_registering() {
    // Writers in the source registry; the reader only in the target one, under other ids.
    let source = registry_with_history(true).await;
    let target = RegistryDouble::start().await;
    for i in 0..4 {
        target.register_avro(
            "unrelated-value",
            &format!(
                "{{\"type\": \"fixed\", \"name\": \"F{i}\", \"size\": {}}}",
                i + 1
            ),
        );
    }
    let reader_id = target.register_avro("orders-reader", ORDER_V1);
    assert_ne!(reader_id, 1, "the target's ids differ from the source's");
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &source.url, "127.0.0.1:9");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "routes:\n",
        &format!(
            "target_registry:\n  url: {}\n  register: true\nroutes:\n",
            target.url
        ),
    );
    std::fs::write(&cfg, text).unwrap();

    let run = check(&["--config", cfg.to_str().unwrap(), "--format", "json"]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["parts"][0]["reader_id"], reader_id);
    let verdicts: Vec<&str> = writers(&report)
        .iter()
        .map(|w| w["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["ok", "lossy", "incompatible"]);

    // A reader the target lacks is a config error, and check does not register it even with
    // `register: true` (that is `run`'s job).
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("subject: orders-reader", "subject: orders-value");
    std::fs::write(&cfg, text).unwrap();
    let before = target.requests();
    let missing = check(&["--config", cfg.to_str().unwrap()]).await;
    assert_eq!(missing.code, Some(2), "{}", missing.stderr);
    assert!(
        missing.stderr.contains("orders-value"),
        "{}",
        missing.stderr
    );
    assert!(target.requests() > before, "the target registry was asked");
    assert!(
        target
            .versions()
            .iter()
            .all(|(s, _, _)| s != "orders-value"),
        "nothing registered: {:?}",
        target.versions()
    );
}
