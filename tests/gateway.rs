//! The core gateway end to end: librdkafka's mock cluster (real Kafka protocol) and the
//! Confluent-compatible registry double over HTTP. Every test accounts for every input offset:
//! each lands on the target topic or the DLQ.

use crate::support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use apache_avro::Schema;
use apache_avro::types::Value;
use schemabridge::pipeline::{GatewayError, RunSummary, dlq_headers};
use schemabridge::wire;
use support::kafka::{Cluster, Input, Received, RouteSpec, Running, config, unique};
use support::orders::{ORDER_V1, ORDER_V2, SplitMix, order_v1, order_v2};
use support::orders::{decode, encode, expected_v1, field, framed, order_id, registry_with_orders};
use support::registry::RegistryDouble;

const WAIT: Duration = Duration::from_secs(60);
const SETTLE: Duration = Duration::from_millis(500);

fn route<'a>(source: &'a str, target: &'a str, dlq: &'a str, extra: &'a str) -> RouteSpec<'a> {
    RouteSpec {
        source,
        target,
        dlq,
        reader_subject: "orders-value",
        reader_version: "1",
        extra_value: extra,
    }
}

/// Runs a gateway for `spec` (fresh group) until `expected` messages reached its target and
/// DLQ topics, then stops it; a clean stop is part of what every caller asserts.
async fn run_route(
    cluster: &Cluster,
    registry: &RegistryDouble,
    spec: &RouteSpec<'_>,
    expected: usize,
) -> (Vec<Received>, RunSummary) {
    let cfg = config(
        &cluster.bootstrap,
        &registry.url,
        &format!("gw-{}", unique()),
        spec,
    );
    let gw = Running::start(cfg);
    let out = cluster
        .consume(&[spec.target, spec.dlq], expected, WAIT, SETTLE)
        .await;
    let summary = gw.stop().await.expect("clean stop");
    (out, summary)
}

/// Per partition, the order ids in offset order.
fn by_partition(msgs: &[Received], schema: &Schema) -> BTreeMap<i32, Vec<String>> {
    let mut out: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    for m in msgs {
        let payload = m.value.as_deref().expect("value");
        let f = wire::parse(payload).expect("framed");
        out.entry(m.partition)
            .or_default()
            .push((m.offset, order_id(&decode(schema, f.payload))));
    }
    out.into_iter()
        .map(|(p, mut v)| {
            v.sort();
            (p, v.into_iter().map(|(_, id)| id).collect())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_messages_arrive_as_v1_with_key_headers_timestamp_and_partition_kept() {
    let cluster = Cluster::start(&[("orders", 3), ("orders-v1", 3), ("orders-dlq", 1)]);
    let (registry, v1_id, v2_id) = registry_with_orders().await;
    let v1 = Schema::parse_str(ORDER_V1).unwrap();
    let v2 = Schema::parse_str(ORDER_V2).unwrap();

    let mut rng = SplitMix(7);
    let mut values = HashMap::new();
    let mut inputs = Vec::new();
    for i in 0..150 {
        let v = order_v2(i, &mut rng);
        let id = order_id(&v);
        inputs.push(Input {
            partition: (i % 3) as i32,
            key: Some(id.clone().into_bytes()),
            value: Some(framed(v2_id, &encode(&v2, v.clone()))),
            headers: vec![("trace-id".into(), format!("t-{i}").into_bytes())],
            timestamp: Some(1_700_000_000_000 + i as i64),
        });
        values.insert(id, v);
    }
    // A tombstone is forwarded as a tombstone.
    inputs.push(Input {
        partition: 1,
        key: Some(b"deleted-order".to_vec()),
        value: None,
        ..Input::default()
    });
    cluster.produce("orders", &inputs).await;

    let group = format!("gw-{}", unique());
    let gw = Running::start(config(
        &cluster.bootstrap,
        &registry.url,
        &group,
        &route("orders", "orders-v1", "orders-dlq", ""),
    ));
    let out = cluster
        .consume(&["orders-v1", "orders-dlq"], inputs.len(), WAIT, SETTLE)
        .await;
    let summary = gw.stop().await.expect("clean stop");

    assert_eq!(
        out.len(),
        inputs.len(),
        "every input arrives exactly once in a clean run"
    );
    assert!(
        out.iter().all(|m| m.topic == "orders-v1"),
        "nothing dead-lettered"
    );
    assert_eq!(summary.forwarded, inputs.len() as u64);
    assert_eq!(summary.by_writer.get(&Some(v2_id)), Some(&150));
    let by_key: HashMap<Vec<u8>, &Received> =
        out.iter().map(|m| (m.key.clone().unwrap(), m)).collect();
    for input in &inputs {
        let m = by_key[input.key.as_ref().unwrap()];
        assert_eq!(m.partition, input.partition, "same partition number");
        assert_eq!(m.headers, input.headers, "headers kept");
        if let Some(ts) = input.timestamp {
            assert_eq!(m.timestamp, Some(ts), "timestamp kept");
        }
        let Some(value) = &m.value else {
            assert!(input.value.is_none(), "only the tombstone has no value");
            continue;
        };
        let f = wire::parse(value).unwrap();
        assert_eq!(f.schema_id, v1_id, "framed with the reader schema id");
        let id = String::from_utf8(input.key.clone().unwrap()).unwrap();
        assert_eq!(decode(&v1, f.payload), expected_v1(&values[&id]), "{id}");
    }
    // Offsets committed up to the end of each partition.
    let committed = cluster.committed(&group, "orders", 3);
    assert_eq!(committed, vec![Some(50), Some(51), Some(50)]);
}

/// An upcast: records written by an old producer are read by an upgraded consumer, with the
/// reader's defaults for fields the writer did not have (nested record, enum, union, map, array).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_messages_arrive_as_v2_with_defaults() {
    const OLD: &str = r#"{"type":"record","name":"Customer","namespace":"crm","fields":[
        {"name":"id","type":"long"},
        {"name":"name","type":"string"}]}"#;
    const NEW: &str = r#"{"type":"record","name":"Customer","namespace":"crm","fields":[
        {"name":"id","type":"long"},
        {"name":"name","type":"string"},
        {"name":"email","type":["null","string"],"default":null},
        {"name":"tier","type":{"type":"enum","name":"Tier","symbols":["FREE","PRO"]},"default":"FREE"},
        {"name":"address","type":{"type":"record","name":"Address","fields":[
            {"name":"city","type":"string","default":"?"},
            {"name":"zip","type":["string","null"],"default":"00000"}]},
         "default":{"city":"Nowhere"}},
        {"name":"labels","type":{"type":"map","values":"int"},"default":{"vip":1}},
        {"name":"aliases","type":{"type":"array","items":"string"},"default":["a","b"]},
        {"name":"score","type":"double","default":1.5}]}"#;
    let cluster = Cluster::start(&[("customers", 2), ("customers-v2", 2), ("customers-dlq", 1)]);
    let registry = RegistryDouble::start().await;
    let old_id = registry.register_avro("customers-value", OLD);
    let new_id = registry.register_avro("customers-value", NEW);
    let old = Schema::parse_str(OLD).unwrap();
    let new = Schema::parse_str(NEW).unwrap();

    let inputs: Vec<Input> = (0..20)
        .map(|i| {
            let v = Value::Record(vec![
                ("id".into(), Value::Long(i)),
                ("name".into(), Value::String(format!("customer {i}"))),
            ]);
            Input {
                partition: (i % 2) as i32,
                key: Some(i.to_string().into_bytes()),
                value: Some(framed(old_id, &encode(&old, v))),
                ..Input::default()
            }
        })
        .collect();
    cluster.produce("customers", &inputs).await;
    let spec = RouteSpec {
        source: "customers",
        target: "customers-v2",
        dlq: "customers-dlq",
        reader_subject: "customers-value",
        reader_version: "latest",
        extra_value: "",
    };
    let (out, _) = run_route(&cluster, &registry, &spec, 20).await;

    assert_eq!(out.len(), 20);
    for m in &out {
        assert_eq!(m.topic, "customers-v2");
        let f = wire::parse(m.value.as_deref().unwrap()).unwrap();
        assert_eq!(f.schema_id, new_id);
        let i: i64 = String::from_utf8(m.key.clone().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        let expected = Value::Record(vec![
            ("id".into(), Value::Long(i)),
            ("name".into(), Value::String(format!("customer {i}"))),
            ("email".into(), Value::Union(0, Box::new(Value::Null))),
            ("tier".into(), Value::Enum(0, "FREE".into())),
            (
                "address".into(),
                Value::Record(vec![
                    ("city".into(), Value::String("Nowhere".into())),
                    (
                        "zip".into(),
                        Value::Union(0, Box::new(Value::String("00000".into()))),
                    ),
                ]),
            ),
            (
                "labels".into(),
                Value::Map([("vip".to_string(), Value::Int(1))].into()),
            ),
            (
                "aliases".into(),
                Value::Array(vec![Value::String("a".into()), Value::String("b".into())]),
            ),
            ("score".into(), Value::Double(1.5)),
        ]);
        assert_eq!(decode(&new, f.payload), expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_versions_keep_per_partition_order() {
    let cluster = Cluster::start(&[("orders", 2), ("orders-v1", 2), ("orders-dlq", 1)]);
    let (registry, v1_id, v2_id) = registry_with_orders().await;
    let v1 = Schema::parse_str(ORDER_V1).unwrap();
    let v2 = Schema::parse_str(ORDER_V2).unwrap();
    let mut rng = SplitMix(11);
    let mut expected: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let mut inputs = Vec::new();
    for i in 0..400 {
        let partition = ((i / 3) % 2) as i32;
        let (id, bytes) = if i % 3 == 0 {
            let v = order_v1(i, &mut rng);
            (order_id(&v), framed(v1_id, &encode(&v1, v)))
        } else {
            let v = order_v2(i, &mut rng);
            (order_id(&v), framed(v2_id, &encode(&v2, v)))
        };
        expected.entry(partition).or_default().push(id.clone());
        inputs.push(Input {
            partition,
            key: Some(b"same-key".to_vec()),
            value: Some(bytes),
            ..Input::default()
        });
    }
    cluster.produce("orders", &inputs).await;
    let (out, summary) = run_route(
        &cluster,
        &registry,
        &route("orders", "orders-v1", "orders-dlq", ""),
        400,
    )
    .await;
    assert_eq!(out.len(), 400);
    assert_eq!(summary.by_writer.get(&Some(v1_id)), Some(&134));
    assert_eq!(summary.by_writer.get(&Some(v2_id)), Some(&266));
    assert_eq!(by_partition(&out, &v1), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_unknown_and_unresolvable_messages_land_in_the_dlq_with_original_bytes() {
    let cluster = Cluster::start(&[("orders", 1), ("orders-v1", 1), ("orders-dlq", 1)]);
    let (registry, v1_id, v2_id) = registry_with_orders().await;
    // Same record name, but customer_id is a string: cannot be read as v1's long.
    let incompatible = ORDER_V1.replace(
        r#"{"name": "customer_id", "type": "long"}"#,
        r#"{"name": "customer_id", "type": "string"}"#,
    );
    assert_ne!(incompatible, ORDER_V1);
    let bad_id = registry.register_avro("orders-other", &incompatible);
    let v2 = Schema::parse_str(ORDER_V2).unwrap();
    let mut rng = SplitMix(3);
    let good = |rng: &mut SplitMix, i| framed(v2_id, &encode(&v2, order_v2(i, rng)));

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("good-0", good(&mut rng, 0)),
        (
            "bad-framing",
            b"{\"order_id\":\"json by mistake\"}".to_vec(),
        ),
        ("short", vec![0, 0, 1]),
        ("unknown-id", framed(9999, b"\x02\x04")),
        ("unresolvable", framed(bad_id, b"\x00\x00\x00")),
        ("truncated", good(&mut rng, 1)[..40].to_vec()),
        ("good-1", good(&mut rng, 2)),
    ];
    let inputs: Vec<Input> = cases
        .iter()
        .map(|(k, v)| Input {
            partition: 0,
            key: Some(k.as_bytes().to_vec()),
            value: Some(v.clone()),
            headers: vec![("origin".into(), b"test".to_vec())],
            ..Input::default()
        })
        .collect();
    let offsets = cluster.produce("orders", &inputs).await;
    let (out, summary) = run_route(
        &cluster,
        &registry,
        &route("orders", "orders-v1", "orders-dlq", ""),
        inputs.len(),
    )
    .await;
    assert_eq!(
        out.len(),
        inputs.len(),
        "every input accounted for: {out:#?}"
    );
    assert_eq!(summary.dead_lettered, 5);

    let by_key: HashMap<String, &Received> = out
        .iter()
        .map(|m| (String::from_utf8(m.key.clone().unwrap()).unwrap(), m))
        .collect();
    for key in ["good-0", "good-1"] {
        let m = by_key[key];
        assert_eq!(m.topic, "orders-v1");
        assert_eq!(
            wire::parse(m.value.as_deref().unwrap()).unwrap().schema_id,
            v1_id
        );
    }
    let expect_dlq = [
        ("bad-framing", "framing", None, "magic byte is 0x7b"),
        ("short", "framing", None, "shorter than the 5-byte"),
        (
            "unknown-id",
            "unknown-schema",
            Some(9999),
            "schema id 9999 not found",
        ),
        ("unresolvable", "unresolvable", Some(bad_id), "customer_id"),
        ("truncated", "datum", Some(v2_id), ""),
    ];
    for (key, kind, writer, needle) in expect_dlq {
        let m = by_key[key];
        let (i, input) = inputs
            .iter()
            .enumerate()
            .find(|(_, i)| i.key.as_deref() == Some(key.as_bytes()))
            .unwrap();
        assert_eq!(m.topic, "orders-dlq", "{key}");
        assert_eq!(m.value, input.value, "{key}: original bytes");
        assert_eq!(
            m.header("origin").as_deref(),
            Some("test"),
            "{key}: original headers kept"
        );
        assert_eq!(m.header(dlq_headers::KIND).as_deref(), Some(kind), "{key}");
        assert_eq!(m.header(dlq_headers::ROUTE).as_deref(), Some("test"));
        assert_eq!(m.header(dlq_headers::PART).as_deref(), Some("value"));
        assert_eq!(m.header(dlq_headers::TOPIC).as_deref(), Some("orders"));
        assert_eq!(m.header(dlq_headers::PARTITION).as_deref(), Some("0"));
        assert_eq!(
            m.header(dlq_headers::OFFSET),
            Some(offsets[i].1.to_string()),
            "{key}"
        );
        assert_eq!(
            m.header(dlq_headers::WRITER_ID),
            writer.map(|w: u32| w.to_string()),
            "{key}"
        );
        let error = m.header(dlq_headers::ERROR).unwrap();
        assert!(error.contains(needle), "{key}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_failing_five_times_then_recovering_loses_and_dead_letters_nothing() {
    let cluster = Cluster::start(&[("orders", 2), ("orders-v1", 2), ("orders-dlq", 1)]);
    let (registry, v1_id, v2_id) = registry_with_orders().await;
    let v1 = Schema::parse_str(ORDER_V1).unwrap();
    let v2 = Schema::parse_str(ORDER_V2).unwrap();
    let mut rng = SplitMix(5);

    // The registry is down when the gateway starts (reader lookup) ...
    registry.fail_next(5);
    let gw = Running::start(config(
        &cluster.bootstrap,
        &registry.url,
        &format!("gw-{}", unique()),
        &route("orders", "orders-v1", "orders-dlq", ""),
    ));
    let first: Vec<Input> = (0..10)
        .map(|i| Input {
            partition: (i % 2) as i32,
            value: Some(framed(v1_id, &encode(&v1, order_v1(i, &mut rng)))),
            ..Input::default()
        })
        .collect();
    cluster.produce("orders", &first).await;
    let out = cluster
        .consume(&["orders-v1", "orders-dlq"], 10, WAIT, Duration::ZERO)
        .await;
    assert_eq!(out.len(), 10);
    assert_eq!(registry.failed_requests(), 5);

    // ... and again when a new writer schema id first appears mid-stream.
    registry.fail_next(5);
    let second: Vec<Input> = (10..60)
        .map(|i| Input {
            partition: (i % 2) as i32,
            value: Some(framed(v2_id, &encode(&v2, order_v2(i, &mut rng)))),
            ..Input::default()
        })
        .collect();
    cluster.produce("orders", &second).await;
    let out = cluster
        .consume(&["orders-v1", "orders-dlq"], 60, WAIT, SETTLE)
        .await;
    let summary = gw.stop().await.expect("clean stop");
    assert_eq!(registry.failed_requests(), 10, "both outages were hit");
    assert_eq!(out.len(), 60, "nothing lost, nothing duplicated");
    assert!(
        out.iter().all(|m| m.topic == "orders-v1"),
        "nothing dead-lettered"
    );
    assert_eq!(summary.dead_lettered, 0);
    assert_eq!(summary.skipped, 0);
    let expected: BTreeMap<i32, Vec<String>> =
        first
            .iter()
            .chain(&second)
            .enumerate()
            .fold(BTreeMap::new(), |mut m, (i, input)| {
                m.entry(input.partition)
                    .or_insert_with(Vec::new)
                    .push(format!("ord-{i:06}"));
                m
            });
    assert_eq!(by_partition(&out, &v1), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_mid_stream_and_restarting_delivers_everything_in_order() {
    let cluster = Cluster::start(&[("orders", 3), ("orders-v1", 3), ("orders-dlq", 1)]);
    let (registry, _v1_id, v2_id) = registry_with_orders().await;
    let v1 = Schema::parse_str(ORDER_V1).unwrap();
    let v2 = Schema::parse_str(ORDER_V2).unwrap();
    let mut rng = SplitMix(9);
    let mut expected: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let inputs: Vec<Input> = (0..1500)
        .map(|i| {
            let v = order_v2(i, &mut rng);
            let partition = (i % 3) as i32;
            expected.entry(partition).or_default().push(order_id(&v));
            Input {
                partition,
                value: Some(framed(v2_id, &encode(&v2, v))),
                ..Input::default()
            }
        })
        .collect();
    cluster.produce("orders", &inputs).await;
    let group = format!("gw-{}", unique());
    let cfg = config(
        &cluster.bootstrap,
        &registry.url,
        &group,
        &route("orders", "orders-v1", "orders-dlq", ""),
    );

    let gw = Running::start(cfg.clone());
    // Stop as soon as some output exists: mid-stream.
    let partial = cluster
        .consume(&["orders-v1"], 1, WAIT, Duration::ZERO)
        .await;
    assert!(!partial.is_empty());
    let first = gw.stop().await.expect("clean stop");
    assert!(first.consumed > 0);
    let committed = cluster.committed(&group, "orders", 3);

    let gw = Running::start(cfg);
    let out = cluster
        .consume(&["orders-v1", "orders-dlq"], 1500, WAIT, SETTLE)
        .await;
    let second = gw.stop().await.expect("clean stop");

    // The second run starts where the first committed.
    let resumed: i64 = committed.iter().map(|c| c.unwrap_or(0)).sum();
    assert_eq!(
        second.consumed as i64,
        1500 - resumed,
        "resumed from the committed offsets"
    );
    assert!(out.iter().all(|m| m.topic == "orders-v1"));
    // At least once, in order: per partition, the first occurrence of each id is the input
    // order, and every input is there.
    let got = by_partition(&out, &v1);
    for (p, ids) in &expected {
        let mut seen = std::collections::HashSet::new();
        let firsts: Vec<&String> = got[p].iter().filter(|id| seen.insert(*id)).collect();
        assert_eq!(firsts, ids.iter().collect::<Vec<_>>(), "partition {p}");
    }
    assert_eq!(cluster.committed(&group, "orders", 3), vec![Some(500); 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halt_policy_stops_without_committing_past_the_bad_message() {
    let cluster = Cluster::start(&[("orders", 1), ("orders-v1", 1), ("orders-dlq", 1)]);
    let (registry, _v1_id, v2_id) = registry_with_orders().await;
    let v2 = Schema::parse_str(ORDER_V2).unwrap();
    let mut rng = SplitMix(1);
    let mut inputs: Vec<Input> = (0..10)
        .map(|i| Input {
            value: Some(framed(v2_id, &encode(&v2, order_v2(i, &mut rng)))),
            ..Input::default()
        })
        .collect();
    inputs[6].value = Some(b"not framed".to_vec());
    cluster.produce("orders", &inputs).await;
    let group = format!("gw-{}", unique());
    let gw = Running::start(config(
        &cluster.bootstrap,
        &registry.url,
        &group,
        &route("orders", "orders-v1", "orders-dlq", "on_error: halt"),
    ));
    let result = tokio::time::timeout(WAIT, gw.task)
        .await
        .expect("halts")
        .unwrap();
    match result {
        Err(GatewayError::Halted { at, route, .. }) => {
            assert_eq!(route, "test");
            assert_eq!(
                (at.topic.as_str(), at.partition, at.offset),
                ("orders", 0, 6)
            );
        }
        other => panic!("expected a halt, got {other:?}"),
    }
    let out = cluster
        .consume(&["orders-v1", "orders-dlq"], 6, WAIT, SETTLE)
        .await;
    assert_eq!(
        out.len(),
        6,
        "the six messages before it were delivered, nothing after"
    );
    assert!(out.iter().all(|m| m.topic == "orders-v1"));
    assert_eq!(cluster.committed(&group, "orders", 1), vec![Some(6)]);
}

/// The unknown-field problem: under `on_lossy: dlq`, a message whose dropped field held data goes
/// to the DLQ naming the field; one whose dropped fields held their defaults is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_lossy_dlq_refuses_messages_whose_dropped_fields_held_data() {
    const WRITER: &str = r#"{"type":"record","name":"User","fields":[
        {"name":"id","type":"long"},
        {"name":"nickname","type":["null","string"],"default":null},
        {"name":"prefs","type":{"type":"record","name":"Prefs","fields":[
            {"name":"theme","type":"string","default":"light"}]}}]}"#;
    const READER: &str = r#"{"type":"record","name":"User","fields":[
        {"name":"id","type":"long"},
        {"name":"prefs","type":{"type":"record","name":"Prefs","fields":[]}}]}"#;
    let cluster = Cluster::start(&[("users", 1), ("users-v1", 1), ("users-dlq", 1)]);
    let registry = RegistryDouble::start().await;
    let reader_id = registry.register_avro("users-value", READER);
    let writer_id = registry.register_avro("users-other", WRITER);
    let writer = Schema::parse_str(WRITER).unwrap();
    let user = |id: i64, nick: Option<&str>, theme: &str| {
        let nick = match nick {
            None => Value::Union(0, Box::new(Value::Null)),
            Some(n) => Value::Union(1, Box::new(Value::String(n.into()))),
        };
        Value::Record(vec![
            ("id".into(), Value::Long(id)),
            ("nickname".into(), nick),
            (
                "prefs".into(),
                Value::Record(vec![("theme".into(), Value::String(theme.into()))]),
            ),
        ])
    };
    let values = [
        user(1, None, "light"),
        user(2, Some("zed"), "light"),
        user(3, None, "dark"),
        user(4, None, "light"),
    ];
    let inputs: Vec<Input> = values
        .iter()
        .map(|v| Input {
            key: Some(order_key(v)),
            value: Some(framed(writer_id, &encode(&writer, v.clone()))),
            ..Input::default()
        })
        .collect();
    cluster.produce("users", &inputs).await;
    let spec = RouteSpec {
        source: "users",
        target: "users-v1",
        dlq: "users-dlq",
        reader_subject: "users-value",
        reader_version: "1",
        extra_value: "on_lossy: dlq",
    };
    let (out, summary) = run_route(&cluster, &registry, &spec, 4).await;
    assert_eq!(out.len(), 4);
    let topic_of = |k: &str| {
        out.iter()
            .find(|m| m.key.as_deref() == Some(k.as_bytes()))
            .unwrap()
    };
    assert_eq!(topic_of("1").topic, "users-v1");
    assert_eq!(topic_of("4").topic, "users-v1");
    assert_eq!(
        wire::parse(topic_of("1").value.as_deref().unwrap())
            .unwrap()
            .schema_id,
        reader_id
    );
    for (key, field) in [("2", "nickname"), ("3", "prefs.theme")] {
        let m = topic_of(key);
        assert_eq!(m.topic, "users-dlq", "{key}");
        assert_eq!(m.header(dlq_headers::KIND).as_deref(), Some("lossy"));
        let error = m.header(dlq_headers::ERROR).unwrap();
        assert!(error.contains(field), "{key}: {error}");
        assert_eq!(m.value, inputs[key.parse::<usize>().unwrap() - 1].value);
    }
    assert_eq!(summary.lossy_fields.get("test: value.nickname"), Some(&1));
    assert_eq!(
        summary.lossy_fields.get("test: value.prefs.theme"),
        Some(&1)
    );
}

fn order_key(v: &Value) -> Vec<u8> {
    match field(v, "id") {
        Value::Long(id) => id.to_string().into_bytes(),
        other => panic!("id {other:?}"),
    }
}

/// `output: json`: the reader-resolved value in the Avro JSON encoding (unions as
/// `{"type": value}`, enums as symbols), for consumers without registry support.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_renders_the_reader_value_in_avro_json() {
    let cluster = Cluster::start(&[("orders", 1), ("orders-json", 1), ("orders-dlq", 1)]);
    let (registry, _v1_id, v2_id) = registry_with_orders().await;
    let v2 = Schema::parse_str(ORDER_V2).unwrap();
    let mut rng = SplitMix(21);
    let values: Vec<Value> = (0..5).map(|i| order_v2(i, &mut rng)).collect();
    let inputs: Vec<Input> = values
        .iter()
        .map(|v| Input {
            value: Some(framed(v2_id, &encode(&v2, v.clone()))),
            ..Input::default()
        })
        .collect();
    cluster.produce("orders", &inputs).await;
    let (out, _) = run_route(
        &cluster,
        &registry,
        &route("orders", "orders-json", "orders-dlq", "output: json"),
        5,
    )
    .await;
    assert_eq!(out.len(), 5);
    for (m, v) in out.iter().zip(&values) {
        assert_eq!(m.topic, "orders-json");
        let json: serde_json::Value = serde_json::from_slice(m.value.as_deref().unwrap()).unwrap();
        let expected = expected_v1(v);
        let Value::Record(fields) = &expected else {
            unreachable!()
        };
        let names: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let expected_names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, expected_names, "reader fields, in reader order");
        assert_eq!(json["order_id"], serde_json::json!(order_id(v)));
        assert_eq!(json["source"], "unknown");
        match field(&expected, "discount") {
            Value::Union(0, _) => assert_eq!(json["discount"], serde_json::Value::Null),
            Value::Union(1, d) => match &**d {
                Value::Double(d) => assert_eq!(json["discount"], serde_json::json!({"double": d})),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        match field(&expected, "status") {
            Value::Enum(_, s) => assert_eq!(json["status"], serde_json::json!(s)),
            other => panic!("{other:?}"),
        }
        match field(&expected, "amount_cents") {
            Value::Long(c) => assert_eq!(json["amount_cents"], serde_json::json!(c)),
            other => panic!("{other:?}"),
        }
    }
}

/// schemabridge does not create topics: a missing dead-letter topic stops start-up, naming it,
/// before anything is consumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_dlq_topic_fails_start_up_naming_it() {
    let cluster = Cluster::start(&[("orders", 1), ("orders-v1", 1)]);
    let (registry, _, _) = registry_with_orders().await;
    let group = format!("gw-{}", unique());
    let gw = Running::start(config(
        &cluster.bootstrap,
        &registry.url,
        &group,
        &route("orders", "orders-v1", "no-such-dlq", ""),
    ));
    let result = tokio::time::timeout(WAIT, gw.task)
        .await
        .expect("stops")
        .unwrap();
    let error = result.expect_err("start-up fails").to_string();
    assert!(
        error.contains("route test: dead-letter topic no-such-dlq"),
        "{error}"
    );
}
