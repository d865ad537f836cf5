//! Protobuf routes end to end (mock cluster + registry double over HTTP): schemas with
//! references from the registry, message-index framing, the unknown-field policy, JSON output,
//! and an incompatible change landing in the DLQ. Every input offset is accounted for.

use crate::support;

use std::time::Duration;

use prost::Message;
use prost_reflect::{DynamicMessage, MessageDescriptor, Value};
use schemabridge::config::Config;
use schemabridge::pipeline::dlq_headers;
use schemabridge::protobuf::{build_pool, message_for_indexes};
use schemabridge::wire::{self, MessageIndexes};
use serde_json::json;
use support::kafka::{Cluster, Input, Running, unique};
use support::protos::proto;
use support::registry::RegistryDouble;

const WAIT: Duration = Duration::from_secs(60);
const SETTLE: Duration = Duration::from_millis(500);

/// Money, common and both OrderPlaced versions, as .proto text. Returns (v1 id, v2 id).
fn register_orders(registry: &RegistryDouble) -> (u32, u32) {
    support::protos::register_orders(registry, "orders-proto-value", proto)
}

/// The OrderPlaced descriptor of `orders/<file>`, built like the pipeline builds it.
fn descriptor(file: &str) -> MessageDescriptor {
    let refs = vec![
        (
            "orders/money.proto".to_string(),
            proto("orders/money.proto"),
        ),
        (
            "orders/common.proto".to_string(),
            proto("orders/common.proto"),
        ),
    ];
    let name = format!("orders/{file}");
    let pool = build_pool(&name, &proto(&name), &refs).unwrap();
    message_for_indexes(&pool, &name, &MessageIndexes::first()).unwrap()
}

fn message(desc: &MessageDescriptor, json: serde_json::Value) -> DynamicMessage {
    let text = json.to_string();
    let mut de = serde_json::Deserializer::from_str(&text);
    DynamicMessage::deserialize(desc.clone(), &mut de).unwrap()
}

/// Confluent Protobuf framing: header, message indexes ([0] as the single byte 0), payload.
fn framed(id: u32, msg: &DynamicMessage) -> Vec<u8> {
    let mut out = Vec::new();
    wire::write_header(id, &mut out);
    wire::write_message_indexes(&MessageIndexes::first(), &mut out);
    out.extend(msg.encode_to_vec());
    out
}

fn unframe(bytes: &[u8]) -> (u32, MessageIndexes, &[u8]) {
    let f = wire::parse(bytes).unwrap();
    let (idx, rest) = wire::parse_message_indexes(f.payload).unwrap();
    (f.schema_id, idx, rest)
}

fn v2_order(i: usize) -> serde_json::Value {
    json!({
        "orderId": format!("o-{i}"), "customerId": "42", "placedAt": "2024-01-01T00:00:00Z",
        "status": "REFUNDED", "totalCents": "1234", "currency": "EUR", "quantity": 3,
        "discountAmount": {"currency": "EUR", "cents": "100"},
        "shipping": {"line1": "1 A St", "city": "Lisbon", "postcode": "1000", "country": "PT",
                     "geo": {"lat": 1.5, "lon": 2.5}},
        "items": [{"sku": "S1", "qty": 2, "unitCents": "500", "giftWrap": true,
                   "components": [{"sku": "S1a", "qty": 1, "giftWrap": true}]}],
        "tags": ["a", "b"], "attributes": {"k": "v"}, "email": "a@b.c", "fraudScore": 0.5,
        "channel": "MOBILE", "adjustments": ["-3", "4"], "warehouseIds": [7, 8]
    })
}

fn route_config(bootstrap: &str, registry: &str, target: &str, value: &str) -> Config {
    let value: String = value.lines().map(|l| format!("      {l}\n")).collect();
    let text = format!(
        r#"
source: {{ bootstrap_servers: "{bootstrap}" }}
group_id: gw-{group}
registry: {{ url: "{registry}", initial_backoff_ms: 10, max_backoff_ms: 100 }}
pipeline: {{ commit_interval_ms: 200 }}
routes:
  - name: proto
    source: {{ topics: [orders-pb] }}
    target: {target}
    value:
{value}"#,
        group = unique()
    );
    Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn field(msg: &DynamicMessage, name: &str) -> Value {
    msg.get_field_by_name(name).unwrap().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_to_v1_preserve_keeps_unknown_fields_for_a_re_encoding_reader_and_drop_removes_them() {
    let cluster = Cluster::start(&[("orders-pb", 1), ("keep", 1), ("strip", 1), ("pb-dlq", 1)]);
    let registry = RegistryDouble::start().await;
    let (v1_id, v2_id) = register_orders(&registry);
    let (v1, v2) = (descriptor("order_v1.proto"), descriptor("order_v2.proto"));
    let originals: Vec<DynamicMessage> = (0..20).map(|i| message(&v2, v2_order(i))).collect();
    let inputs: Vec<Input> = originals
        .iter()
        .map(|m| Input {
            value: Some(framed(v2_id, m)),
            ..Input::default()
        })
        .collect();
    cluster.produce("orders-pb", &inputs).await;

    let reader = "format: protobuf\nreader: { subject: orders-proto-value, version: 1, message: orders.v1.OrderPlaced }\ndlq: pb-dlq";
    let keep = Running::start(route_config(
        &cluster.bootstrap,
        &registry.url,
        "keep",
        reader,
    ));
    let strip = Running::start(route_config(
        &cluster.bootstrap,
        &registry.url,
        "strip",
        &format!("{reader}\nunknown_fields: drop"),
    ));
    let kept = cluster.consume(&["keep"], 20, WAIT, SETTLE).await;
    let stripped = cluster.consume(&["strip"], 20, WAIT, SETTLE).await;
    let dlq = cluster
        .consume(&["pb-dlq"], 0, Duration::from_secs(1), Duration::ZERO)
        .await;
    keep.stop().await.expect("clean stop");
    let summary = strip.stop().await.expect("clean stop");
    assert_eq!((kept.len(), stripped.len(), dlq.len()), (20, 20, 0));
    assert!(
        summary.lossy_fields.contains_key("proto: value.email"),
        "{summary:?}"
    );

    for (m, original) in kept.iter().zip(&originals) {
        let (id, idx, payload) = unframe(m.value.as_deref().unwrap());
        assert_eq!((id, idx), (v1_id, MessageIndexes::first()));
        let as_v1 = DynamicMessage::decode(v1.clone(), payload).unwrap();
        assert_eq!(field(&as_v1, "order_id"), field(original, "order_id"));
        assert_eq!(
            field(&as_v1, "quantity"),
            Value::I64(3),
            "int32 read as int64"
        );
        assert_eq!(
            field(&as_v1, "status"),
            Value::EnumNumber(5),
            "unknown enum value kept"
        );
        let shipping = field(&as_v1, "shipping");
        assert_eq!(
            shipping
                .as_message()
                .unwrap()
                .get_field_by_name("city")
                .unwrap()
                .as_str(),
            Some("Lisbon")
        );
        let discount = field(&as_v1, "discount_amount");
        assert_eq!(
            discount
                .as_message()
                .unwrap()
                .get_field_by_name("cents")
                .unwrap()
                .as_i64(),
            Some(100)
        );
        // A v1 consumer that decodes and re-encodes hands the v2 fields on untouched.
        let re_encoded = as_v1.encode_to_vec();
        assert_eq!(
            &DynamicMessage::decode(v2.clone(), &re_encoded[..]).unwrap(),
            original
        );
    }
    for m in &stripped {
        let (_, _, payload) = unframe(m.value.as_deref().unwrap());
        let as_v1 = DynamicMessage::decode(v1.clone(), payload).unwrap();
        assert_eq!(
            as_v1.unknown_fields().count(),
            0,
            "no unknown fields at the top"
        );
        let as_v2 = DynamicMessage::decode(v2.clone(), payload).unwrap();
        assert!(!as_v2.has_field_by_name("email"));
        assert_eq!(field(&as_v2, "channel"), Value::EnumNumber(0));
        let shipping = field(&as_v2, "shipping");
        assert!(
            !shipping.as_message().unwrap().has_field_by_name("geo"),
            "dropped in nested messages too"
        );
        let items = field(&as_v2, "items");
        let item = items.as_list().unwrap()[0].as_message().unwrap().clone();
        assert_eq!(
            item.get_field_by_name("gift_wrap").unwrap().as_bool(),
            Some(false)
        );
        let components = item.get_field_by_name("components").unwrap();
        let component = components.as_list().unwrap()[0]
            .as_message()
            .unwrap()
            .clone();
        assert_eq!(
            component.get_field_by_name("sku").unwrap().as_str(),
            Some("S1a")
        );
        assert_eq!(
            component.get_field_by_name("gift_wrap").unwrap().as_bool(),
            Some(false)
        );
        assert_eq!(field(&as_v2, "tags"), field(&originals[0], "tags"));
        assert_eq!(
            field(&as_v2, "attributes"),
            field(&originals[0], "attributes")
        );
        assert_eq!(
            field(&as_v2, "warehouse_ids"),
            field(&originals[0], "warehouse_ids")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_to_v2_and_json_output_and_incompatible_change_to_dlq() {
    let cluster = Cluster::start(&[
        ("orders-pb", 1),
        ("v2-out", 1),
        ("json-out", 1),
        ("pb-dlq", 1),
    ]);
    let registry = RegistryDouble::start().await;
    let (v1_id, v2_id) = register_orders(&registry);
    // A producer that changed field 7 from an integer to a string: not readable as v1's int64.
    let broken_text =
        proto("orders/order_v1.proto").replace("int64 quantity = 7;", "string quantity = 7;");
    let broken_id = registry.register(
        "orders-broken",
        Some("PROTOBUF"),
        &broken_text,
        vec![json!({"name": "orders/money.proto", "subject": "orders-money", "version": 1})],
    );
    let v1 = descriptor("order_v1.proto");
    let old = message(
        &v1,
        json!({"orderId": "old-1", "customerId": "7", "quantity": "2", "source": "legacy",
               "status": "PAID", "discountPercent": 0.25, "attributes": {"x": "y"}}),
    );
    let broken_pool = build_pool(
        "orders/order_v1.proto",
        &broken_text,
        &[(
            "orders/money.proto".to_string(),
            proto("orders/money.proto"),
        )],
    )
    .unwrap();
    let broken_desc = message_for_indexes(
        &broken_pool,
        "orders/order_v1.proto",
        &MessageIndexes::first(),
    )
    .unwrap();
    let broken = message(
        &broken_desc,
        json!({"orderId": "bad-1", "quantity": "lots"}),
    );
    let inputs = vec![
        Input {
            key: Some(b"old".to_vec()),
            value: Some(framed(v1_id, &old)),
            ..Input::default()
        },
        Input {
            key: Some(b"broken".to_vec()),
            value: Some(framed(broken_id, &broken)),
            ..Input::default()
        },
    ];
    let offsets = cluster.produce("orders-pb", &inputs).await;
    let up = Running::start(route_config(
        &cluster.bootstrap,
        &registry.url,
        "v2-out",
        "format: protobuf\nreader: { subject: orders-proto-value, version: latest }\ndlq: pb-dlq",
    ));
    let js = Running::start(route_config(
        &cluster.bootstrap,
        &registry.url,
        "json-out",
        "format: protobuf\nreader: { subject: orders-proto-value, version: 1 }\noutput: json\non_error: skip",
    ));
    let out = cluster
        .consume(&["v2-out", "pb-dlq"], 2, WAIT, SETTLE)
        .await;
    let json_out = cluster.consume(&["json-out"], 1, WAIT, SETTLE).await;
    up.stop().await.expect("clean stop");
    let js_summary = js.stop().await.expect("clean stop");

    assert_eq!(out.len(), 2, "{out:#?}");
    let upcast = out.iter().find(|m| m.topic == "v2-out").unwrap();
    assert_eq!(upcast.key.as_deref(), Some(&b"old"[..]));
    let (id, _, payload) = unframe(upcast.value.as_deref().unwrap());
    assert_eq!(id, v2_id);
    let as_v2 = DynamicMessage::decode(descriptor("order_v2.proto"), payload).unwrap();
    assert_eq!(field(&as_v2, "order_id"), Value::String("old-1".into()));
    assert_eq!(field(&as_v2, "quantity"), Value::I32(2));
    assert_eq!(field(&as_v2, "discount_percent"), Value::F64(0.25));
    assert!(!as_v2.has_field_by_name("email"));
    // v2 reserves 14 (v1's `source`): kept as an unknown field under the default policy.
    assert_eq!(as_v2.unknown_fields().count(), 1);

    let dead = out.iter().find(|m| m.topic == "pb-dlq").unwrap();
    assert_eq!(dead.key.as_deref(), Some(&b"broken"[..]));
    assert_eq!(dead.value, inputs[1].value, "original bytes");
    assert_eq!(
        dead.header(dlq_headers::KIND).as_deref(),
        Some("unresolvable")
    );
    assert_eq!(
        dead.header(dlq_headers::OFFSET),
        Some(offsets[1].1.to_string())
    );
    let error = dead.header(dlq_headers::ERROR).unwrap();
    assert!(error.contains("quantity (field 7)"), "{error}");
    assert!(error.contains("string"), "{error}");

    // JSON output: protobuf's canonical JSON of the v1 reading; the broken one skipped.
    assert_eq!(json_out.len(), 1);
    assert_eq!(js_summary.skipped, 1);
    let v: serde_json::Value =
        serde_json::from_slice(json_out[0].value.as_deref().unwrap()).unwrap();
    assert_eq!(
        v,
        json!({"orderId": "old-1", "customerId": "7", "status": "PAID", "quantity": "2",
               "discountPercent": 0.25, "attributes": {"x": "y"}, "source": "legacy"})
    );
}
