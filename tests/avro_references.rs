//! Avro schema references end to end: writer and reader schemas that name a type defined in
//! another subject (`references`, as the Confluent Avro serializer registers them) resolve
//! through the gateway on librdkafka's mock cluster with the registry double over HTTP.
//!
//! The messages are encoded, and the output decoded, with hand-written self-contained schemas
//! (the referenced type spelled out), so the test does not lean on the code under test.

use crate::support;

use std::time::Duration;

use apache_avro::Schema;
use apache_avro::types::Value;
use schemabridge::pipeline::dlq_headers;
use schemabridge::wire;
use serde_json::json;
use support::kafka::{Cluster, Input, RouteSpec, Running, config, unique};
use support::orders::{decode, encode, framed};
use support::registry::RegistryDouble;

const WAIT: Duration = Duration::from_secs(60);
const SETTLE: Duration = Duration::from_millis(500);

const MONEY: &str = r#"{"type":"record","name":"Money","namespace":"com.acme","fields":[
  {"name":"cents","type":"long"},{"name":"currency","type":"string"}]}"#;
const LINE: &str = r#"{"type":"record","name":"Line","namespace":"com.acme","fields":[
  {"name":"sku","type":"string"},{"name":"price","type":"com.acme.Money"}]}"#;

/// v2 as registered: Money and Line by reference (Line references Money itself).
const WRITER: &str = r#"{"type":"record","name":"Order","namespace":"com.shop","fields":[
  {"name":"id","type":"string"},
  {"name":"total","type":"com.acme.Money"},
  {"name":"lines","type":{"type":"array","items":"com.acme.Line"}},
  {"name":"note","type":["null","string"],"default":null}]}"#;
/// v1 as registered: Money by reference, no note.
const READER: &str = r#"{"type":"record","name":"Order","namespace":"com.shop","fields":[
  {"name":"id","type":"string"},
  {"name":"total","type":"com.acme.Money"},
  {"name":"lines","type":{"type":"array","items":"com.acme.Line"}}]}"#;

/// The same two schemas written out in full, for encoding and decoding in the test.
const WRITER_FULL: &str = r#"{"type":"record","name":"Order","namespace":"com.shop","fields":[
  {"name":"id","type":"string"},
  {"name":"total","type":{"type":"record","name":"Money","namespace":"com.acme","fields":[
    {"name":"cents","type":"long"},{"name":"currency","type":"string"}]}},
  {"name":"lines","type":{"type":"array","items":{"type":"record","name":"Line","namespace":"com.acme","fields":[
    {"name":"sku","type":"string"},{"name":"price","type":"com.acme.Money"}]}}},
  {"name":"note","type":["null","string"],"default":null}]}"#;
const READER_FULL: &str = r#"{"type":"record","name":"Order","namespace":"com.shop","fields":[
  {"name":"id","type":"string"},
  {"name":"total","type":{"type":"record","name":"Money","namespace":"com.acme","fields":[
    {"name":"cents","type":"long"},{"name":"currency","type":"string"}]}},
  {"name":"lines","type":{"type":"array","items":{"type":"record","name":"Line","namespace":"com.acme","fields":[
    {"name":"sku","type":"string"},{"name":"price","type":"com.acme.Money"}]}}}]}"#;

fn money(cents: i64) -> Value {
    Value::Record(vec![
        ("cents".into(), Value::Long(cents)),
        ("currency".into(), Value::String("EUR".into())),
    ])
}

fn order(i: usize) -> (Value, Value) {
    let id = Value::String(format!("ord-{i}"));
    let total = money(100 * i as i64 + 7);
    let lines = Value::Array(
        (0..i % 3 + 1)
            .map(|j| {
                Value::Record(vec![
                    ("sku".into(), Value::String(format!("SKU-{i}-{j}"))),
                    ("price".into(), money(j as i64 + 1)),
                ])
            })
            .collect(),
    );
    let note = Value::Union(1, Box::new(Value::String(format!("note {i}"))));
    let v2 = Value::Record(vec![
        ("id".into(), id.clone()),
        ("total".into(), total.clone()),
        ("lines".into(), lines.clone()),
        ("note".into(), note),
    ]);
    let v1 = Value::Record(vec![
        ("id".into(), id),
        ("total".into(), total),
        ("lines".into(), lines),
    ]);
    (v2, v1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_and_reader_schemas_with_references_resolve_end_to_end() {
    const N: usize = 30;
    let cluster = Cluster::start(&[("orders", 2), ("orders-v1", 2), ("orders-dlq", 2)]);
    let registry = RegistryDouble::start().await;
    registry.register_avro("money", MONEY);
    registry.register(
        "line",
        None,
        LINE,
        vec![json!({"name": "com.acme.Money", "subject": "money", "version": 1})],
    );
    let refs = || {
        vec![
            json!({"name": "com.acme.Money", "subject": "money", "version": 1}),
            json!({"name": "com.acme.Line", "subject": "line", "version": 1}),
        ]
    };
    let reader_id = registry.register("orders-value", None, READER, refs());
    let writer_id = registry.register("orders-value", None, WRITER, refs());

    let writer = Schema::parse_str(WRITER_FULL).unwrap();
    let reader = Schema::parse_str(READER_FULL).unwrap();
    let inputs: Vec<Input> = (0..N)
        .map(|i| Input {
            partition: (i % 2) as i32,
            key: Some(format!("k{i}").into_bytes()),
            value: Some(framed(writer_id, &encode(&writer, order(i).0))),
            ..Input::default()
        })
        .collect();
    cluster.produce("orders", &inputs).await;
    let gw = Running::start(config(
        &cluster.bootstrap,
        &registry.url,
        &format!("gw-{}", unique()),
        &RouteSpec {
            reader_version: "1",
            ..RouteSpec::ORDERS
        },
    ));
    let out = cluster
        .consume(&["orders-v1", "orders-dlq"], N, WAIT, SETTLE)
        .await;
    let summary = gw.stop().await.expect("clean stop");

    assert_eq!(out.len(), N, "every input accounted for");
    for m in &out {
        let key = String::from_utf8(m.key.clone().unwrap()).unwrap();
        assert_eq!(
            m.topic,
            "orders-v1",
            "{key} was dead-lettered: {:?}",
            m.header(dlq_headers::ERROR)
        );
        let i: usize = key[1..].parse().unwrap();
        let f = wire::parse(m.value.as_deref().unwrap()).unwrap();
        assert_eq!(f.schema_id, reader_id, "{key}: framed with the reader's id");
        assert_eq!(decode(&reader, f.payload), order(i).1, "{key}");
    }
    assert_eq!((summary.forwarded, summary.dead_lettered), (N as u64, 0));
}
