//! Bridge mode between two registries (`target_registry`): writer schemas come from the source
//! registry, the reader schema and the output's framing ids from the target registry. Two
//! registry doubles over HTTP (the target's ids deliberately different from the source's), the
//! mock Kafka cluster and the library gateway. Every output record is read back the way a
//! consumer that only knows the target registry would: the schema fetched by the record's id
//! from the target registry over HTTP, the bytes decoded with apache-avro.

use crate::support;

use std::collections::HashMap;
use std::time::Duration;

use apache_avro::Schema;
use apache_avro::types::Value;
use schemabridge::config::Config;
use schemabridge::pipeline::{Gateway, GatewayError};
use schemabridge::wire;
use support::kafka::{Cluster, Input, Received, Running, unique};
use support::orders::{
    ORDER_V1, ORDER_V2, SplitMix, decode, encode, expected_v1, framed, order_id, order_v1, order_v2,
};
use support::registry::RegistryDouble;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);
const SETTLE: Duration = Duration::from_millis(500);

/// A target registry whose ids are taken by schemas that have nothing to do with orders, so
/// an id that leaks through from the source registry is caught.
async fn target_with_unrelated(n: u32) -> RegistryDouble {
    let target = RegistryDouble::start().await;
    for i in 0..n {
        let schema = format!(
            r#"{{"type":"record","name":"Unrelated{i}","fields":[{{"name":"x{i}","type":"long"}}]}}"#
        );
        target.register_avro("unrelated-value", &schema);
    }
    target
}

fn bridge_config(
    bootstrap: &str,
    source: &str,
    target: &str,
    register: bool,
    routes: &str,
) -> Config {
    let text = format!(
        r#"
source:
  bootstrap_servers: "{bootstrap}"
group_id: gw-{group}
registry:
  url: {source}
  initial_backoff_ms: 10
  max_backoff_ms: 100
target_registry:
  url: {target}
  register: {register}
pipeline:
  commit_interval_ms: 200
routes:
{routes}"#,
        group = unique()
    );
    Config::parse(&text).unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"))
}

fn route(name: &str, source: &str, target: &str, reader: &str) -> String {
    format!(
        "  - name: {name}\n    source: {{ topics: [{source}] }}\n    target: {target}\n    value:\n      format: avro\n      reader: {reader}\n      dlq: {source}-dlq\n"
    )
}

/// v2 and v1 orders framed with the SOURCE registry's ids, and per key the v1 record a v1
/// consumer must see.
fn inputs(
    n: usize,
    partitions: i32,
    v1_id: u32,
    v2_id: u32,
) -> (Vec<Input>, HashMap<Vec<u8>, Value>) {
    let v1 = Schema::parse_str(ORDER_V1).unwrap();
    let v2 = Schema::parse_str(ORDER_V2).unwrap();
    let mut rng = SplitMix(11);
    let mut expected = HashMap::new();
    let mut out = Vec::new();
    for i in 0..n {
        let (value, want) = if i % 3 == 2 {
            let v = order_v1(i, &mut rng);
            (framed(v1_id, &encode(&v1, v.clone())), v)
        } else {
            let v = order_v2(i, &mut rng);
            (framed(v2_id, &encode(&v2, v.clone())), expected_v1(&v))
        };
        let key = format!("{}-{i}", order_id(&want)).into_bytes();
        expected.insert(key.clone(), want);
        out.push(Input {
            partition: (i as i32) % partitions,
            key: Some(key),
            value: Some(value),
            ..Input::default()
        });
    }
    (out, expected)
}

/// The schema the registry at `url` has under `id`, fetched over HTTP as a consumer would.
async fn schema_by_id(url: &str, id: u32) -> Schema {
    // The product's own client settings (reqwest with rustls on `ring`, as in production).
    let client = schemabridge::registry::tls::client_builder(None)
        .expect("client settings")
        .build()
        .expect("HTTP client");
    let body = client
        .get(format!("{url}/schemas/ids/{id}"))
        .send()
        .await
        .expect("GET /schemas/ids")
        .text()
        .await
        .expect("body");
    let json: serde_json::Value = serde_json::from_str(&body).expect("schema body");
    let text = json["schema"]
        .as_str()
        .unwrap_or_else(|| panic!("id {id} in {url}: {body}"));
    Schema::parse_str(text).expect("the target's schema parses")
}

/// Every input arrived once on `target`, framed with `want_id`, and decodes with the target
/// registry's schema for that id to the expected v1 record.
async fn assert_translated(
    out: &[Received],
    target: &str,
    inputs: &[Input],
    expected: &HashMap<Vec<u8>, Value>,
    registry: &str,
    want_id: u32,
) {
    let mine: Vec<&Received> = out.iter().filter(|m| m.topic == target).collect();
    assert_eq!(
        mine.len(),
        inputs.len(),
        "every input on {target} once, none dead-lettered: {:?}",
        out.iter()
            .filter(|m| m.topic != target)
            .map(|m| m.header("schemabridge.error"))
            .collect::<Vec<_>>()
    );
    let reader = schema_by_id(registry, want_id).await;
    let mut seen = std::collections::HashSet::new();
    for m in mine {
        let f = wire::parse(m.value.as_deref().expect("value")).expect("framed");
        assert_eq!(f.schema_id, want_id, "framed with the target registry's id");
        let key = m.key.clone().expect("key");
        assert_eq!(&decode(&reader, f.payload), &expected[&key], "{key:?}");
        assert!(seen.insert(key), "no duplicates");
    }
    let keys: std::collections::HashSet<Vec<u8>> =
        inputs.iter().map(|i| i.key.clone().unwrap()).collect();
    assert_eq!(seen, keys, "every input offset accounted for");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_is_framed_with_the_target_registrys_ids() {
    let cluster = Cluster::start(&[("orders", 2), ("orders-v1", 2), ("orders-dlq", 1)]);
    let source = RegistryDouble::start().await;
    let v1_id = source.register_avro("orders-value", ORDER_V1);
    let v2_id = source.register_avro("orders-value", ORDER_V2);
    let target = target_with_unrelated(5).await;
    let target_v1 = target.register_avro("orders.v1-value", ORDER_V1);
    assert!(
        ![v1_id, v2_id].contains(&target_v1),
        "the registries' ids differ"
    );

    let (inputs, expected) = inputs(60, 2, v1_id, v2_id);
    cluster.produce("orders", &inputs).await;
    let cfg = bridge_config(
        &cluster.bootstrap,
        &source.url,
        &target.url,
        false,
        &route(
            "orders",
            "orders",
            "orders-v1",
            "{ subject: orders.v1-value, version: 1 }",
        ),
    );
    let gw = Running::start(cfg);
    let out = cluster
        .consume(&["orders-v1", "orders-dlq"], inputs.len(), WAIT, SETTLE)
        .await;
    let summary = gw.stop().await.expect("clean stop");
    assert_translated(
        &out,
        "orders-v1",
        &inputs,
        &expected,
        &target.url,
        target_v1,
    )
    .await;
    assert_eq!(summary.forwarded, inputs.len() as u64);
    assert_eq!(summary.by_writer.get(&Some(v2_id)), Some(&40));
    assert_eq!(summary.by_writer.get(&Some(v1_id)), Some(&20));
    // Nothing was registered on the target: it holds what the test put there.
    assert_eq!(target.versions().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_register_an_absent_reader_is_registered_on_the_target_and_used() {
    let cluster = Cluster::start(&[
        ("orders", 1),
        ("orders-v1", 1),
        ("orders-dlq", 1),
        ("legacy", 1),
        ("legacy-v1", 1),
        ("legacy-dlq", 1),
    ]);
    let source = RegistryDouble::start().await;
    let v1_id = source.register_avro("orders-value", ORDER_V1);
    let v2_id = source.register_avro("orders-value", ORDER_V2);
    let target = target_with_unrelated(3).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("order_v1.avsc");
    std::fs::write(&file, ORDER_V1).unwrap();

    // Route 1: a file, looked up by its text under a target subject; route 2: a subject and
    // version the target lacks, copied from the source registry.
    let routes = route(
        "by-file",
        "orders",
        "orders-v1",
        &format!(
            "{{ schema_file: \"{}\", subject: orders.v1-value }}",
            file.display()
        ),
    ) + &route(
        "by-subject",
        "legacy",
        "legacy-v1",
        "{ subject: orders-value, version: 1 }",
    );
    let (a, expected_a) = inputs(30, 1, v1_id, v2_id);
    let (b, expected_b) = inputs(15, 1, v1_id, v2_id);
    cluster.produce("orders", &a).await;
    cluster.produce("legacy", &b).await;
    let gw = Running::start(bridge_config(
        &cluster.bootstrap,
        &source.url,
        &target.url,
        true,
        &routes,
    ));
    let out = cluster
        .consume(
            &["orders-v1", "orders-dlq", "legacy-v1", "legacy-dlq"],
            a.len() + b.len(),
            WAIT,
            SETTLE,
        )
        .await;
    gw.stop().await.expect("clean stop");

    let registered: HashMap<String, u32> = target
        .versions()
        .into_iter()
        .map(|(subject, _, id)| (subject, id))
        .collect();
    let by_file = registered["orders.v1-value"];
    let by_subject = registered["orders-value"];
    assert!(
        by_file > 3 && by_subject > 3,
        "registered after the unrelated ones"
    );
    let a_out: Vec<Received> = out
        .iter()
        .filter(|m| m.topic.starts_with("orders"))
        .cloned()
        .collect();
    let b_out: Vec<Received> = out
        .iter()
        .filter(|m| m.topic.starts_with("legacy"))
        .cloned()
        .collect();
    assert_translated(&a_out, "orders-v1", &a, &expected_a, &target.url, by_file).await;
    assert_translated(
        &b_out,
        "legacy-v1",
        &b,
        &expected_b,
        &target.url,
        by_subject,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_register_an_absent_reader_fails_start_up_naming_subject_and_registry() {
    let cluster = Cluster::start(&[("orders", 1), ("orders-v1", 1), ("orders-dlq", 1)]);
    let source = RegistryDouble::start().await;
    source.register_avro("orders-value", ORDER_V1);
    let target = target_with_unrelated(2).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("order_v1.avsc");
    std::fs::write(&file, ORDER_V1).unwrap();
    for reader in [
        "{ subject: orders-value, version: 1 }".to_string(),
        format!(
            "{{ schema_file: \"{}\", subject: orders.v1-value }}",
            file.display()
        ),
    ] {
        let cfg = bridge_config(
            &cluster.bootstrap,
            &source.url,
            &target.url,
            false,
            &route("orders", "orders", "orders-v1", &reader),
        );
        let result = tokio::time::timeout(
            WAIT,
            Gateway::new(cfg)
                .expect("gateway")
                .run(CancellationToken::new()),
        )
        .await
        .expect("start-up fails, it does not hang");
        let Err(GatewayError::Startup(message)) = result else {
            panic!("expected a start-up error, got {result:?}");
        };
        let subject = if reader.contains("schema_file") {
            "orders.v1-value"
        } else {
            "orders-value"
        };
        for part in [
            "routes[0].value.reader",
            subject,
            "target registry",
            target.url.as_str(),
            "target_registry.register",
        ] {
            assert!(message.contains(part), "{part:?} in {message}");
        }
        assert_eq!(target.versions().len(), 2, "nothing registered");
    }
}
