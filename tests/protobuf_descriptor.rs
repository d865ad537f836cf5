//! Protobuf schemas registered as base64 `FileDescriptorProto` (issue 9 item 3b), end to end.
//!
//! confluent-kafka's Python `ProtobufSerializer` registers each schema and its references as
//! `base64(FileDescriptorProto)`, not `.proto` text. Here the descriptors are made independently
//! of schemabridge (and of protox): Google's `protoc`, as bundled by the PyPI `grpcio-tools`
//! wheel, compiles `proto/orders/*.proto` and Python's `protobuf` base64-encodes every file's
//! serialized descriptor exactly as the serializer does. Those strings are registered in the
//! registry double (money, common, v1, v2, with references); the gateway (mock cluster) must
//! transcode v2 messages to the v1 reader, and every input offset is accounted for on the
//! target with the reader id and the content a v1 parser gets from the original bytes, none in
//! the DLQ. Needs python3 (with venv) and PyPI access once, for `grpcio-tools`.

use crate::support;

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, Value};
use schemabridge::config::Config;
use schemabridge::wire::{self, MessageIndexes};
use serde_json::json;
use support::kafka::{Cluster, Input, Running, unique};
use support::registry::RegistryDouble;

const WAIT: Duration = Duration::from_secs(60);
const SETTLE: Duration = Duration::from_millis(500);
const MESSAGES: usize = 20;
const GRPCIO_TOOLS: &str = "grpcio-tools==1.85.1";
const FILES: [&str; 4] = [
    "orders/money.proto",
    "orders/common.proto",
    "orders/order_v1.proto",
    "orders/order_v2.proto",
];

/// Compiles with grpc_tools' protoc (its bundled well-known types on the include path), then
/// writes {file name: base64(FileDescriptorProto)} as JSON, as confluent-kafka's
/// `_schema_to_str` encodes a file descriptor. Args: proto dir, descriptor set out, JSON out.
const PROTOC_SCRIPT: &str = r#"
import base64, json, sys
from importlib.resources import files
from grpc_tools import protoc
from google.protobuf import descriptor_pb2
proto_dir, fds_out, json_out = sys.argv[1:4]
include = str(files("grpc_tools") / "_proto")
rc = protoc.main(["protoc", "-I" + proto_dir, "-I" + include, "--include_imports",
                  "--descriptor_set_out=" + fds_out] + sys.argv[4:])
if rc != 0:
    sys.exit("protoc failed: %d" % rc)
fds = descriptor_pb2.FileDescriptorSet.FromString(open(fds_out, "rb").read())
with open(json_out, "w") as out:
    json.dump({f.name: base64.standard_b64encode(f.SerializeToString()).decode("ascii")
               for f in fds.file}, out)
"#;

/// protoc's output: the descriptor set (for this test's own v1/v2 descriptors) and each file as
/// the base64 text the Python serializer registers.
fn protoc_descriptors(dir: &Path) -> (DescriptorPool, HashMap<String, String>) {
    let python = support::python::python_with(&[(GRPCIO_TOOLS, "grpc_tools.protoc")]);
    let fds = dir.join("orders.fds");
    let out = dir.join("orders.json");
    let log = dir.join("protoc.log");
    let log_file = File::create(&log).expect("create log");
    let status = Command::new(&python)
        .arg("-c")
        .arg(PROTOC_SCRIPT)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("proto"))
        .arg(&fds)
        .arg(&out)
        .args(FILES)
        .stdout(log_file.try_clone().expect("log handle"))
        .stderr(log_file)
        .status()
        .expect("run python");
    assert!(
        status.success(),
        "protoc via grpc_tools: {status}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let pool = DescriptorPool::decode(&std::fs::read(&fds).expect("read descriptor set")[..])
        .expect("protoc's descriptor set");
    let b64: HashMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("read json")).expect("json");
    for f in FILES {
        let text = &b64[f];
        assert!(
            !text.is_empty() && !text.contains(';'),
            "{f} is base64: {text}"
        );
    }
    (pool, b64)
}

/// Registers money, common, v1 and v2 in base64 form with their references, as the Python
/// serializer would. Returns (v1 id, v2 id).
fn register_orders(registry: &RegistryDouble, b64: &HashMap<String, String>) -> (u32, u32) {
    support::protos::register_orders(registry, "orders-proto-value", |name| b64[name].clone())
}

fn v2_order(desc: &MessageDescriptor, i: usize) -> DynamicMessage {
    let value = json!({
        "orderId": format!("o-{i}"), "customerId": (1000 + i).to_string(),
        "placedAt": "2024-01-01T00:00:00Z", "status": if i % 2 == 0 { "PAID" } else { "REFUNDED" },
        "totalCents": (100 * i).to_string(), "currency": "EUR", "quantity": i,
        "discountAmount": {"currency": "EUR", "cents": i.to_string()},
        "shipping": {"line1": "1 A St", "city": format!("city-{i}"), "postcode": "1000",
                     "country": "PT", "geo": {"lat": 1.5, "lon": 2.5}},
        "items": [{"sku": format!("S{i}"), "qty": 2, "unitCents": "500", "giftWrap": true,
                   "components": [{"sku": "S1a", "qty": 1}]}],
        "tags": ["a", "b"], "attributes": {"k": "v"}, "email": "a@b.c", "channel": "MOBILE"
    })
    .to_string();
    let mut de = serde_json::Deserializer::from_str(&value);
    DynamicMessage::deserialize(desc.clone(), &mut de).expect("v2 order")
}

fn config(bootstrap: &str, registry: &str) -> Config {
    let text = format!(
        r#"
source: {{ bootstrap_servers: "{bootstrap}" }}
group_id: gw-{group}
registry: {{ url: "{registry}", initial_backoff_ms: 10, max_backoff_ms: 100 }}
pipeline: {{ commit_interval_ms: 200 }}
routes:
  - name: proto
    source: {{ topics: [orders-pb] }}
    target: orders-v1
    value:
      format: protobuf
      reader: {{ subject: orders-proto-value, version: 1, message: orders.v1.OrderPlaced }}
      dlq: pb-dlq
"#,
        group = unique()
    );
    Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_serializer_descriptors_in_the_registry_transcode_v2_to_v1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pool, b64) = protoc_descriptors(dir.path());
    let v1 = pool
        .get_message_by_name("orders.v1.OrderPlaced")
        .expect("v1 in protoc's set");
    let v2 = pool
        .get_message_by_name("orders.v2.OrderPlaced")
        .expect("v2 in protoc's set");

    let cluster = Cluster::start(&[("orders-pb", 1), ("orders-v1", 1), ("pb-dlq", 1)]);
    let registry = RegistryDouble::start().await;
    let (v1_id, v2_id) = register_orders(&registry, &b64);
    let originals: Vec<Vec<u8>> = (0..MESSAGES)
        .map(|i| v2_order(&v2, i).encode_to_vec())
        .collect();
    let inputs: Vec<Input> = originals
        .iter()
        .map(|payload| {
            let mut value = Vec::new();
            wire::write_header(v2_id, &mut value);
            wire::write_message_indexes(&MessageIndexes::first(), &mut value);
            value.extend_from_slice(payload);
            Input {
                value: Some(value),
                ..Input::default()
            }
        })
        .collect();
    cluster.produce("orders-pb", &inputs).await;

    let gateway = Running::start(config(&cluster.bootstrap, &registry.url));
    let out = cluster
        .consume(&["orders-v1"], MESSAGES, WAIT, SETTLE)
        .await;
    let dlq = cluster
        .consume(&["pb-dlq"], 0, Duration::from_secs(1), Duration::ZERO)
        .await;
    gateway.stop().await.expect("clean stop");
    assert_eq!(dlq.len(), 0, "dead-lettered: {:?}", dlq.first());
    assert_eq!(out.len(), MESSAGES);

    for (i, (m, original)) in out.iter().zip(&originals).enumerate() {
        let framed = wire::parse(m.value.as_deref().expect("value")).expect("framed");
        let (idx, payload) = wire::parse_message_indexes(framed.payload).expect("indexes");
        assert_eq!((framed.schema_id, idx), (v1_id, MessageIndexes::first()));
        let got = DynamicMessage::decode(v1.clone(), payload).expect("v1 parses it");
        // What a v1 parser makes of the original v2 bytes is what it must make of ours.
        let expected = DynamicMessage::decode(v1.clone(), &original[..]).expect("v1 parse");
        assert_eq!(
            serde_json::to_value(&got).expect("json"),
            serde_json::to_value(&expected).expect("json"),
            "message {i}"
        );
        assert_eq!(
            got.get_field_by_name("order_id")
                .expect("order_id")
                .as_str(),
            Some(format!("o-{i}").as_str())
        );
        assert_eq!(
            got.get_field_by_name("quantity")
                .expect("quantity")
                .as_ref(),
            &Value::I64(i as i64),
            "int32 read as int64"
        );
    }
}
