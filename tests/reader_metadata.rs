//! Reader selection by schema metadata (Confluent's `use.latest.with.metadata`) and its
//! periodic refresh: a reader `{subject, metadata: {major: "1"}}` picks the newest version
//! whose `metadata.properties` match, and a newer match registered while the gateway runs
//! takes over for later messages, with nothing lost or duplicated. Registry double over HTTP,
//! the mock Kafka cluster, the library gateway. A refresh that meets a registry outage keeps the
//! current reader and tries again.

use crate::support;

use std::time::Duration;

use apache_avro::Schema;
use schemabridge::config::Config;
use schemabridge::wire;
use support::kafka::{Cluster, Input, Reader, Running, unique};
use support::orders::{
    ORDER_V1, ORDER_V2, SplitMix, decode, encode, expected_v1, framed, order_id, order_v2,
};
use support::registry::RegistryDouble;

const WAIT: Duration = Duration::from_secs(60);
const SETTLE: Duration = Duration::from_millis(300);

/// ORDER_V1 written out differently (same schema, other text: another id in the registry).
fn v1_text(pretty: bool) -> String {
    let v: serde_json::Value = serde_json::from_str(ORDER_V1).unwrap();
    if pretty {
        serde_json::to_string_pretty(&v).unwrap()
    } else {
        serde_json::to_string(&v).unwrap()
    }
}

fn batch(
    from: usize,
    n: usize,
    v2_id: u32,
    rng: &mut SplitMix,
) -> (Vec<Input>, Vec<apache_avro::types::Value>) {
    let v2 = Schema::parse_str(ORDER_V2).unwrap();
    let mut inputs = Vec::new();
    let mut expected = Vec::new();
    for i in from..from + n {
        let v = order_v2(i, rng);
        expected.push(expected_v1(&v));
        inputs.push(Input {
            partition: 0,
            key: Some(order_id(&v).into_bytes()),
            value: Some(framed(v2_id, &encode(&v2, v))),
            ..Input::default()
        });
    }
    (inputs, expected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_reader_picks_the_newest_match_and_follows_a_new_one() {
    let cluster = Cluster::start(&[("orders", 1), ("orders-v1", 1), ("orders-dlq", 1)]);
    let registry = RegistryDouble::start().await;
    let first = registry.register_avro_with_metadata("orders-value", ORDER_V1, &[("major", "1")]);
    let newest_1 =
        registry.register_avro_with_metadata("orders-value", &v1_text(false), &[("major", "1")]);
    let v2_id = registry.register_avro_with_metadata("orders-value", ORDER_V2, &[("major", "2")]);
    assert_eq!(
        registry
            .versions()
            .iter()
            .filter(|(s, _, _)| s == "orders-value")
            .count(),
        3
    );
    let text = format!(
        r#"
source:
  bootstrap_servers: "{bootstrap}"
group_id: gw-{group}
registry:
  url: {url}
  initial_backoff_ms: 10
  max_backoff_ms: 100
  reader_refresh_ms: 100
pipeline:
  commit_interval_ms: 200
routes:
  - name: orders
    source: {{ topics: [orders] }}
    target: orders-v1
    value:
      format: avro
      reader: {{ subject: orders-value, metadata: {{ major: "1" }} }}
      dlq: orders-dlq
"#,
        bootstrap = cluster.bootstrap,
        group = unique(),
        url = registry.url,
    );
    let cfg = Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let gw = Running::start(cfg);
    let mut reader = Reader::new(
        &cluster.bootstrap,
        &[("orders-v1", 1), ("orders-dlq", 1)],
        false,
    );
    let mut rng = SplitMix(5);
    let mut expected = Vec::new();

    // Phase 1: the newest major=1 version (not the first, not major=2) frames everything.
    let (inputs, want) = batch(0, 20, v2_id, &mut rng);
    cluster.produce("orders", &inputs).await;
    expected.extend(want);
    assert!(
        reader
            .read_until(WAIT, Duration::ZERO, |r| r.len() >= expected.len())
            .await,
        "phase 1 arrived"
    );
    let ids = |r: &[support::kafka::Received]| -> Vec<u32> {
        r.iter()
            .map(|m| wire::parse(m.value.as_deref().unwrap()).unwrap().schema_id)
            .collect()
    };
    assert!(
        ids(&reader.received).iter().all(|id| *id == newest_1),
        "framed with the newest major=1 version ({newest_1}), not {first} or {v2_id}: {:?}",
        ids(&reader.received)
    );

    // The registry fails the next requests (the refreshes; writer schemas are cached): the
    // current reader stays and messages keep flowing. Then a newer major=1 version appears
    // while the gateway runs: produce in small batches until the refresh has taken it up (a
    // message framed with it arrives), then one more batch.
    registry.fail_next(5);
    let newer =
        registry.register_avro_with_metadata("orders-value", &v1_text(true), &[("major", "1")]);
    assert!(![first, newest_1, v2_id].contains(&newer));
    let mut switched = false;
    for round in 0..200 {
        let (inputs, want) = batch(expected.len(), 2, v2_id, &mut rng);
        cluster.produce("orders", &inputs).await;
        expected.extend(want);
        let n = expected.len();
        assert!(
            reader
                .read_until(WAIT, Duration::ZERO, |r| r.len() >= n)
                .await,
            "round {round} arrived"
        );
        if ids(&reader.received).contains(&newer) {
            switched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(switched, "the new major=1 version was taken up");
    assert_eq!(
        registry.failed_requests(),
        5,
        "the refresh met the outage and retried"
    );
    let (inputs, want) = batch(expected.len(), 10, v2_id, &mut rng);
    cluster.produce("orders", &inputs).await;
    expected.extend(want);
    let n = expected.len();
    reader.read_until(WAIT, SETTLE, |r| r.len() >= n).await;
    gw.stop().await.expect("clean stop");

    // Nothing lost, nothing twice, in order; old id up to one point, the new one after it.
    let got = &reader.received;
    assert!(
        got.iter().all(|m| m.topic == "orders-v1"),
        "nothing dead-lettered"
    );
    assert_eq!(got.len(), expected.len(), "every input once");
    let frame_ids = ids(got);
    let switch = frame_ids.iter().position(|id| *id == newer).unwrap();
    assert!(switch >= 20, "phase 1 kept the old reader");
    assert!(
        frame_ids[..switch].iter().all(|id| *id == newest_1),
        "{frame_ids:?}"
    );
    assert!(
        frame_ids[switch..].iter().all(|id| *id == newer),
        "{frame_ids:?}"
    );
    let v1 = Schema::parse_str(ORDER_V1).unwrap();
    let mut sorted: Vec<_> = got.iter().collect();
    sorted.sort_by_key(|m| m.offset);
    for (m, want) in sorted.iter().zip(&expected) {
        let f = wire::parse(m.value.as_deref().unwrap()).unwrap();
        assert_eq!(&decode(&v1, f.payload), want, "offset {}", m.offset);
    }
}
