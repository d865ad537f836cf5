//! Delivery modes end to end on librdkafka's mock cluster with the registry double over HTTP:
//! exactly-once across a stop and restart, replicas joining and leaving a group mid-stream in
//! both modes, records too large for the producer, and start-up refusals. Every test accounts for
//! every input offset.
//!
//! Exactly-once across rebalances runs under the KIP-848 group protocol (`group.protocol:
//! consumer`), because of two gaps in the mock's classic protocol (librdkafka 2.12): its
//! TxnOffsetCommit does not store the offsets (so the gateway's plain group copy of them is the
//! only one), and a classic group that is joining refuses plain offset commits with
//! REBALANCE_IN_PROGRESS for as long as the join lasts (the session timeout less a second),
//! where Kafka accepts the transactional commit of a member of the current generation. So a
//! replica that commits transactions while another joins leaves committed records whose offsets
//! the mock has lost, and the next owner consumes them again: measured, every record of the
//! second batch twice when it arrives just after the second replica joins. Kafka stores the
//! offsets with the transaction and a read_committed consumer fetches them as stable (KIP-447),
//! so the classic protocol is exactly-once there. The mock's KIP-848 group checks commits by
//! member epoch and moves a partition only after its owner revoked it, as Kafka does.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use schemabridge::config::Config;
use schemabridge::pipeline::{GatewayError, dlq_headers};
use support::kafka::{
    Cluster, Input, Reader, Received, RouteSpec, Running, config, record, unique,
};
use support::orders::{
    assert_at_least_once_in_order, framed, ids_by_partition, registry_with_orders, v2_inputs,
};

const WAIT: Duration = Duration::from_secs(60);
const SETTLE: Duration = Duration::from_millis(500);

fn route<'a>(extra: &'a str) -> RouteSpec<'a> {
    RouteSpec {
        extra_value: extra,
        ..RouteSpec::ORDERS
    }
}

/// The test config with `pipeline:` lines added (indented under `pipeline:`).
fn with_pipeline(base: Config, delivery: &str, transactional_id: &str) -> Config {
    let mut cfg = base;
    cfg.pipeline.delivery = match delivery {
        "exactly_once" => schemabridge::config::DeliveryMode::ExactlyOnce,
        _ => schemabridge::config::DeliveryMode::AtLeastOnce,
    };
    cfg.pipeline.transactional_id = Some(transactional_id.to_string());
    cfg.pipeline.transaction_ms = 100;
    cfg
}

/// Exactly once: every id once, in production order, per partition.
fn assert_exactly_once_in_order(
    got: &BTreeMap<i32, Vec<String>>,
    expected: &BTreeMap<i32, Vec<String>>,
) {
    for (p, ids) in expected {
        assert_eq!(
            got.get(p),
            Some(ids),
            "partition {p}: exactly once, in order"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_across_a_stop_and_restart_shows_a_read_committed_reader_each_record_once() {
    let cluster = Cluster::start(&[("orders", 3), ("orders-v1", 3), ("orders-dlq", 1)]);
    let (registry, _v1, v2_id) = registry_with_orders().await;
    let (inputs, expected) = v2_inputs(3000, 3, v2_id, 11);
    cluster.produce("orders", &inputs).await;
    let group = format!("gw-{}", unique());
    let cfg = with_pipeline(
        config(&cluster.bootstrap, &registry.url, &group, &route("")),
        "exactly_once",
        &format!("txn-{group}"),
    );

    let gw = Running::start(cfg.clone());
    let partial = cluster
        .consume(&["orders-v1"], 1, WAIT, Duration::ZERO)
        .await;
    assert!(!partial.is_empty());
    gw.stop().await.expect("clean stop");

    let gw = Running::start(cfg);
    // The mock cluster's consumers read committed records by default (librdkafka's
    // isolation.level default is read_committed).
    let out = cluster
        .consume(&["orders-v1", "orders-dlq"], 3000, WAIT, SETTLE)
        .await;
    gw.stop().await.expect("clean stop");
    assert!(out.iter().all(|m| m.topic == "orders-v1"));
    assert_exactly_once_in_order(&ids_by_partition(&out), &expected);
    assert_eq!(cluster.committed(&group, "orders", 3), vec![Some(1000); 3]);
}

/// Produces `inputs` to `topic` `chunk` records at a time, `gap` apart, each chunk acked
/// before the next.
async fn trickle(bootstrap: String, topic: &str, inputs: Vec<Input>, chunk: usize, gap: Duration) {
    let producer = support::kafka::idempotent_producer(&bootstrap);
    for part in inputs.chunks(chunk) {
        let sent: Vec<_> = part
            .iter()
            .map(|input| {
                producer
                    .send_result(record(topic, input))
                    .map_err(|(e, _)| e)
                    .expect("enqueue")
            })
            .collect();
        for f in sent {
            f.await.expect("delivery future").expect("delivered");
        }
        tokio::time::sleep(gap).await;
    }
}

/// The partitions move twice while input arrives: replica a forwards a first batch of 3,000
/// records alone; replica b joins while the second batch trickles in (100 records every
/// 400 ms, so the group gives b half the partitions part-way through it); then a leaves while
/// the third batch (2,000) arrives. `protocol`: the group protocol (`group.protocol`); under
/// the classic one the session timeout is 6 s, because the mock's classic group waits it less a
/// second for members to join (44 s with librdkafka's default). Asserts what both modes share:
/// the first move came part-way through the second batch (a consumed more than the first batch
/// and less than the first two), b consumed more than the third batch, and the group's offsets
/// end at the last record. Returns the read_committed reader's ids by partition and the
/// expected ones, for the mode's own check.
async fn replicas_join_and_leave(
    delivery: &str,
    protocol: &str,
) -> (BTreeMap<i32, Vec<String>>, BTreeMap<i32, Vec<String>>) {
    let cluster = Cluster::start(&[("orders", 4), ("orders-v1", 4), ("orders-dlq", 1)]);
    let (registry, _v1, v2_id) = registry_with_orders().await;
    let (inputs, expected) = v2_inputs(8000, 4, v2_id, 12);
    let group = format!("gw-{}", unique());
    let mut base = config(&cluster.bootstrap, &registry.url, &group, &route(""));
    let settings = &mut base.source.librdkafka;
    settings.insert("group.protocol".into(), protocol.into());
    if protocol == "classic" {
        settings.insert("session.timeout.ms".into(), "6000".into());
    }
    let replica = |name: &str| {
        Running::start(with_pipeline(
            base.clone(),
            delivery,
            &format!("{name}-{group}"),
        ))
    };
    let mut reader = Reader::new(
        &cluster.bootstrap,
        &[("orders-v1", 4), ("orders-dlq", 1)],
        true,
    );

    let a = replica("a");
    cluster.produce("orders", &inputs[..3000]).await;
    assert!(
        reader
            .read_until(WAIT, Duration::ZERO, |r| r.len() >= 3000)
            .await,
        "a forwards the first batch"
    );
    let b = replica("b");
    trickle(
        cluster.bootstrap.clone(),
        "orders",
        inputs[3000..6000].to_vec(),
        100,
        Duration::from_millis(400),
    )
    .await;
    let third = tokio::spawn(trickle(
        cluster.bootstrap.clone(),
        "orders",
        inputs[6000..].to_vec(),
        200,
        Duration::from_millis(200),
    ));
    let a_summary = a.stop().await.expect("a stops cleanly");
    third.await.expect("third batch produced");
    reader.read_until(WAIT, SETTLE, |r| r.len() >= 8000).await;
    let b_summary = b.stop().await.expect("b stops cleanly");

    assert!(reader.received.iter().all(|m| m.topic == "orders-v1"));
    assert!(
        3000 < a_summary.consumed && a_summary.consumed < 6000,
        "a consumed {} records: the first move did not come during the second batch",
        a_summary.consumed
    );
    assert!(
        b_summary.consumed > 2000,
        "b consumed {}",
        b_summary.consumed
    );
    assert_eq!(cluster.committed(&group, "orders", 4), vec![Some(2000); 4]);
    (ids_by_partition(&reader.received), expected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_replicas_joining_and_leaving_mid_stream_lose_nothing() {
    let (got, expected) = replicas_join_and_leave("at_least_once", "classic").await;
    assert_at_least_once_in_order(&got, &expected);
}

/// Under the KIP-848 protocol: on the mock, the classic one loses the offsets of transactions
/// committed while a member joins (see the header).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_replicas_joining_and_leaving_mid_stream_duplicate_nothing() {
    let (got, expected) = replicas_join_and_leave("exactly_once", "consumer").await;
    assert_exactly_once_in_order(&got, &expected);
}

/// A record the source accepted but the producer's message.max.bytes refuses takes the route's
/// error policy (here the DLQ, without the value, saying why) instead of stopping the gateway;
/// the records around it flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_too_large_for_the_producer_is_dead_lettered_without_its_value() {
    for delivery in ["at_least_once", "exactly_once"] {
        let cluster = Cluster::start(&[("orders", 1), ("orders-v1", 1), ("orders-dlq", 1)]);
        let (registry, _v1, v2_id) = registry_with_orders().await;
        let (mut inputs, _) = v2_inputs(3, 1, v2_id, 13);
        // A 1.5 MB value: framed Avro of a v2 record whose body is followed by a huge string is
        // not valid, so use a valid record with a huge `order_id` instead.
        let big_order_id = "o".repeat(1_500_000);
        let body = {
            use apache_avro::Schema;
            use support::orders::{ORDER_V2, SplitMix, order_v2};
            let v2 = Schema::parse_str(ORDER_V2).unwrap();
            let mut v = order_v2(99, &mut SplitMix(1));
            if let apache_avro::types::Value::Record(fields) = &mut v {
                for (name, value) in fields.iter_mut() {
                    if name == "order_id" {
                        *value = apache_avro::types::Value::String(big_order_id.clone());
                    }
                }
            }
            support::orders::encode(&v2, v)
        };
        inputs.insert(
            1,
            Input {
                key: Some(b"big".to_vec()),
                value: Some(framed(v2_id, &body)),
                headers: vec![("trace".into(), b"t-1".to_vec())],
                ..Input::default()
            },
        );
        let producer_big = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &cluster.bootstrap)
            .set("message.max.bytes", "4000000")
            .create::<rdkafka::producer::FutureProducer>()
            .expect("producer");
        for input in &inputs {
            let mut r = rdkafka::producer::FutureRecord::<[u8], [u8]>::to("orders").partition(0);
            if let Some(k) = &input.key {
                r = r.key(k);
            }
            if let Some(v) = &input.value {
                r = r.payload(v);
            }
            if !input.headers.is_empty() {
                let mut h = rdkafka::message::OwnedHeaders::new();
                for (k, v) in &input.headers {
                    h = h.insert(rdkafka::message::Header {
                        key: k,
                        value: Some(v),
                    });
                }
                r = r.headers(h);
            }
            producer_big
                .send(r, Duration::from_secs(10))
                .await
                .expect("source accepts it");
        }
        let group = format!("gw-{}", unique());
        let cfg = with_pipeline(
            config(&cluster.bootstrap, &registry.url, &group, &route("")),
            delivery,
            &format!("txn-{group}"),
        );
        let gw = Running::start(cfg);
        let out: Vec<Received> = cluster
            .consume(&["orders-v1", "orders-dlq"], 4, WAIT, SETTLE)
            .await;
        gw.stop()
            .await
            .expect("clean stop: an oversized record does not stop the gateway");
        let forwarded: Vec<&Received> = out.iter().filter(|m| m.topic == "orders-v1").collect();
        let dead: Vec<&Received> = out.iter().filter(|m| m.topic == "orders-dlq").collect();
        assert_eq!(forwarded.len(), 3, "{delivery}: the records around it flow");
        assert_eq!(dead.len(), 1, "{delivery}");
        let d = dead[0];
        assert_eq!(d.key.as_deref(), Some(&b"big"[..]));
        assert_eq!(
            d.value, None,
            "{delivery}: the value does not fit; left out"
        );
        assert_eq!(d.header("trace").as_deref(), Some("t-1"));
        assert_eq!(d.header(dlq_headers::KIND).as_deref(), Some("too-large"));
        assert_eq!(d.header(dlq_headers::OFFSET).as_deref(), Some("1"));
        let omitted = d
            .header(dlq_headers::VALUE_OMITTED)
            .expect("says why the value is missing");
        assert!(omitted.contains("message.max.bytes"), "{omitted}");
        assert_eq!(
            cluster.committed(&group, "orders", 1),
            vec![Some(4)],
            "{delivery}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioning_same_onto_fewer_target_partitions_is_refused_at_start_up() {
    let cluster = Cluster::start(&[("orders", 3), ("orders-v1", 2), ("orders-dlq", 1)]);
    let (registry, _v1, _v2) = registry_with_orders().await;
    let mut cfg = config(
        &cluster.bootstrap,
        &registry.url,
        &format!("gw-{}", unique()),
        &route(""),
    );
    cfg.routes[0].partitioning = schemabridge::config::Partitioning::Same;
    let gw = Running::start(cfg);
    let result = tokio::time::timeout(WAIT, gw.task)
        .await
        .expect("fails fast")
        .unwrap();
    match result {
        Err(GatewayError::Startup(msg)) => {
            assert!(msg.contains("partitioning: same"), "{msg}");
            assert!(msg.contains("it has 2 and the source has 3"), "{msg}");
        }
        other => panic!("expected a start-up error, got {other:?}"),
    }
}

/// A `topic_regex` route starts and consumes every matching topic (it used to fail at start-up:
/// the subscription pattern `^(?:orders-.*)$` is not one librdkafka's regex engine takes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_regex_route_consumes_every_matching_topic() {
    let cluster = Cluster::start(&[
        ("orders-eu", 2),
        ("orders-us", 2),
        ("payments", 2),
        ("out-v1", 2),
        ("out-dlq", 1),
    ]);
    let (registry, _v1, v2_id) = registry_with_orders().await;
    let (eu, expected_eu) = v2_inputs(200, 2, v2_id, 41);
    let (us, expected_us) = v2_inputs(200, 2, v2_id, 42);
    let (other, _) = v2_inputs(50, 2, v2_id, 43);
    cluster.produce("orders-eu", &eu).await;
    cluster.produce("orders-us", &us).await;
    cluster.produce("payments", &other).await;
    let mut cfg = config(
        &cluster.bootstrap,
        &registry.url,
        &format!("gw-{}", unique()),
        &RouteSpec {
            source: "unused",
            target: "out-v1",
            dlq: "out-dlq",
            reader_subject: "orders-value",
            reader_version: "1",
            extra_value: "",
        },
    );
    cfg.routes[0].source.topics.clear();
    cfg.routes[0].source.topic_regex = Some("orders-.*".into());
    let gw = Running::start(cfg);
    let out = cluster
        .consume(&["out-v1", "out-dlq"], 400, WAIT, SETTLE)
        .await;
    let summary = gw.stop().await.expect("clean stop");
    assert_eq!(out.len(), 400, "both matching topics, and not `payments`");
    assert!(out.iter().all(|m| m.topic == "out-v1"));
    assert_eq!(summary.forwarded, 400);
    // Both topics' records arrive (the two generators give the same ids, so compare the
    // multiset per partition; partition numbers carry over: 2 partitions everywhere).
    let got = ids_by_partition(&out);
    for p in 0..2 {
        let mut want: Vec<&String> = expected_eu[&p].iter().chain(&expected_us[&p]).collect();
        let mut have: Vec<&String> = got[&p].iter().collect();
        want.sort();
        have.sort();
        assert_eq!(have, want, "partition {p}");
    }
}
