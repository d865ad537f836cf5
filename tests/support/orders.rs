//! The reference OrderPlaced records for gateway tests: encoding, Confluent framing, and reading
//! back what arrived (by partition, in offset order). The record generator is the demo's own
//! (`src/demo/orders.rs`), compiled in here: the library does not export test fixtures.

use std::collections::BTreeMap;

use apache_avro::Schema;
use apache_avro::types::Value;
use schemabridge::wire;

use super::kafka::{Input, Received};
use super::registry::RegistryDouble;

/// The reference schema pair (the same files the demo and the benchmarks embed).
pub const ORDER_V1: &str = include_str!("../../proto/orders/order_v1.avsc");
pub const ORDER_V2: &str = include_str!("../../proto/orders/order_v2.avsc");

/// The demo's deterministic record generator, compiled from the library's own source file so
/// the tests generate exactly what the demo does, without the library exporting it.
#[path = "../../src/demo/orders.rs"]
mod generator;

pub use generator::{order_v1, order_v2};
/// The generator's random numbers (SplitMix64), the benchmarks' `Rng`.
pub use schemabridge::bench::Rng as SplitMix;

#[allow(deprecated)]
pub fn encode(schema: &Schema, value: Value) -> Vec<u8> {
    apache_avro::to_avro_datum(schema, value).expect("encode")
}

#[allow(deprecated)]
pub fn decode(schema: &Schema, mut bytes: &[u8]) -> Value {
    apache_avro::from_avro_datum(schema, &mut bytes, None).expect("decode with reader schema")
}

pub fn framed(id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    wire::write_header(id, &mut out);
    out.extend_from_slice(body);
    out
}

pub fn field<'a>(v: &'a Value, name: &str) -> &'a Value {
    match v {
        Value::Record(fields) => &fields.iter().find(|(n, _)| n == name).expect(name).1,
        other => panic!("not a record: {other:?}"),
    }
}

pub fn without(v: &Value, drop: &[&str]) -> Value {
    match v {
        Value::Record(fields) => Value::Record(
            fields
                .iter()
                .filter(|(n, _)| !drop.contains(&n.as_str()))
                .cloned()
                .collect(),
        ),
        other => panic!("not a record: {other:?}"),
    }
}

/// What the Avro specification says a v1 reader sees for a v2 OrderPlaced, written out by hand
/// (independent of the engine under test).
pub fn expected_v1(v2: &Value) -> Value {
    let status = match field(v2, "status") {
        Value::Enum(_, s) if s == "REFUNDED" => Value::Enum(0, "PENDING".into()),
        other => other.clone(),
    };
    let quantity = match field(v2, "quantity") {
        Value::Int(q) => Value::Long(i64::from(*q)),
        other => panic!("quantity {other:?}"),
    };
    let items = match field(v2, "items") {
        Value::Array(items) => {
            Value::Array(items.iter().map(|i| without(i, &["gift_wrap"])).collect())
        }
        other => panic!("items {other:?}"),
    };
    let f = |n: &str| field(v2, n).clone();
    Value::Record(vec![
        ("order_id".into(), f("order_id")),
        ("customer_id".into(), f("customer_id")),
        ("placed_at".into(), f("placed_at")),
        ("status".into(), status),
        ("amount_cents".into(), f("total_cents")),
        ("currency".into(), f("currency")),
        ("quantity".into(), quantity),
        ("discount".into(), f("discount")),
        ("shipping".into(), without(field(v2, "shipping"), &["geo"])),
        ("items".into(), items),
        ("tags".into(), f("tags")),
        ("attributes".into(), f("attributes")),
        ("source".into(), Value::String("unknown".into())),
    ])
}

pub fn order_id(v: &Value) -> String {
    match v {
        Value::Record(fields) => match &fields.iter().find(|(n, _)| n == "order_id") {
            Some((_, Value::String(s))) => s.clone(),
            other => panic!("order_id {other:?}"),
        },
        other => panic!("not a record: {other:?}"),
    }
}

/// A registry with order v1 (id returned first) and v2 under `orders-value`.
pub async fn registry_with_orders() -> (RegistryDouble, u32, u32) {
    let registry = RegistryDouble::start().await;
    let v1 = registry.register_avro("orders-value", ORDER_V1);
    let v2 = registry.register_avro("orders-value", ORDER_V2);
    (registry, v1, v2)
}

/// `n` v2 orders spread round-robin over `partitions`, framed with `v2_id`; and per partition
/// the order ids in production order.
pub fn v2_inputs(
    n: usize,
    partitions: i32,
    v2_id: u32,
    seed: u64,
) -> (Vec<Input>, BTreeMap<i32, Vec<String>>) {
    let v2 = Schema::parse_str(ORDER_V2).expect("v2");
    let mut rng = SplitMix(seed);
    let mut expected: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let inputs = (0..n)
        .map(|i| {
            let v = order_v2(i, &mut rng);
            let partition = (i as i32) % partitions;
            expected.entry(partition).or_default().push(order_id(&v));
            Input {
                partition,
                key: Some(format!("k{i}").into_bytes()),
                value: Some(framed(v2_id, &encode(&v2, v))),
                ..Input::default()
            }
        })
        .collect();
    (inputs, expected)
}

/// Per partition, the order ids of v1-framed records in offset order.
pub fn ids_by_partition(msgs: &[Received]) -> BTreeMap<i32, Vec<String>> {
    let v1 = Schema::parse_str(ORDER_V1).expect("v1");
    let mut out: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    for m in msgs {
        let payload = m.value.as_deref().expect("value");
        let f = wire::parse(payload).expect("framed");
        out.entry(m.partition)
            .or_default()
            .push((m.offset, order_id(&decode(&v1, f.payload))));
    }
    out.into_iter()
        .map(|(p, mut v)| {
            v.sort();
            (p, v.into_iter().map(|(_, id)| id).collect())
        })
        .collect()
}

/// At least once, in order: every expected id is there, and per partition the first
/// occurrences are in production order.
pub fn assert_at_least_once_in_order(
    got: &BTreeMap<i32, Vec<String>>,
    expected: &BTreeMap<i32, Vec<String>>,
) {
    for (p, ids) in expected {
        let mut seen = std::collections::HashSet::new();
        let firsts: Vec<&String> = got
            .get(p)
            .map(|v| v.iter().filter(|id| seen.insert(*id)).collect())
            .unwrap_or_default();
        assert_eq!(
            firsts.len(),
            ids.len(),
            "partition {p}: {} distinct of {} arrived",
            firsts.len(),
            ids.len()
        );
        assert_eq!(
            firsts,
            ids.iter().collect::<Vec<_>>(),
            "partition {p}: order"
        );
    }
}
