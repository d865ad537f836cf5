//! Hostile inputs and hostile surroundings (issue 7, item 9), end to end on librdkafka's mock
//! cluster with the Confluent-compatible registry double over HTTP, and a proxy in front of it
//! where the test needs an ingress or a hung server. Every test accounts for every input offset:
//! on the target topic, in the DLQ with its reason, or (shutdown) not committed.
//!
//! - a datum whose writer schema is the reader's is checked before it is forwarded unchanged;
//! - routes that feed each other, or claim one topic twice, are refused at start-up;
//! - shutdown does not wait for a registry request that never gets an answer;
//! - a 404 that is not the registry's own "not found" is an outage, not a dead letter;
//! - an id the registry does not have is asked for once per `registry.not_found_ttl_ms`, not
//!   once per message.

use crate::support;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use apache_avro::Schema;
use apache_avro::types::Value;
use schemabridge::config::Config;
use schemabridge::pipeline::dlq_headers;
use schemabridge::wire;
use support::kafka::{Cluster, Input, Received, RouteSpec, Running, config, unique};
use support::orders::{ORDER_V1, ORDER_V2, SplitMix, order_v1, order_v2};
use support::registry::{ProxyAction, RegistryDouble, RegistryProxy};

const WAIT: Duration = Duration::from_secs(60);
const SETTLE: Duration = Duration::from_millis(500);

#[allow(deprecated)]
fn encode(schema: &Schema, value: Value) -> Vec<u8> {
    apache_avro::to_avro_datum(schema, value).expect("encode")
}

#[allow(deprecated)]
fn decode(schema: &Schema, mut bytes: &[u8]) -> Value {
    let v = apache_avro::from_avro_datum(schema, &mut bytes, None).expect("decode");
    assert!(bytes.is_empty(), "{} trailing bytes", bytes.len());
    v
}

fn framed(id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    wire::write_header(id, &mut out);
    out.extend_from_slice(body);
    out
}

fn order_id(v: &Value) -> String {
    match v {
        Value::Record(fields) => match fields.iter().find(|(n, _)| n == "order_id") {
            Some((_, Value::String(s))) => s.clone(),
            other => panic!("order_id {other:?}"),
        },
        other => panic!("not a record: {other:?}"),
    }
}

fn key_of(m: &Received) -> String {
    String::from_utf8(m.key.clone().expect("key")).expect("utf-8 key")
}

fn spec<'a>(reader_version: &'a str) -> RouteSpec<'a> {
    RouteSpec {
        source: "orders",
        target: "orders-out",
        dlq: "orders-dlq",
        reader_subject: "orders-value",
        reader_version,
        extra_value: "",
    }
}

/// The path of an HTTP request line, without its query (`GET /schemas/ids/1?deleted=true ...`).
fn request_path(line: &str) -> &str {
    let target = line.split(' ').nth(1).unwrap_or_default();
    target.split('?').next().unwrap_or_default()
}

/// Waits (up to `WAIT`) until `done` holds; panics naming `what` otherwise.
async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writer schema = reader schema: the bytes are forwarded unchanged with the reader's id, but
/// only after a skip pass found exactly one well-formed datum. A truncated datum, one with
/// trailing bytes, and one holding an out-of-range union index go to the DLQ as `datum`, naming
/// what is wrong; the good ones arrive byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_schemas_forward_only_well_formed_datums() {
    let cluster = Cluster::start(&[("orders", 1), ("orders-out", 1), ("orders-dlq", 1)]);
    let registry = RegistryDouble::start().await;
    registry.register_avro("orders-value", ORDER_V1);
    let v2_id = registry.register_avro("orders-value", ORDER_V2);
    // The same schema under another id (the text differs only in white space): the reader's id
    // goes on the output, the bytes stay.
    let mirror_id = registry.register_avro("orders-mirror", &format!("{ORDER_V2}\n "));
    assert_ne!(mirror_id, v2_id);
    let v2 = Schema::parse_str(ORDER_V2).unwrap();
    let mut rng = SplitMix(11);
    let mut body = |i| encode(&v2, order_v2(i, &mut rng));

    let good_0 = body(0);
    let mut padded = body(1);
    padded.extend_from_slice(b"\xde\xad");
    let truncated = body(2)[..60].to_vec();
    let mut one_short = body(3);
    one_short.pop();
    // The first field is the order id string: its length prefix (8191) claims more than is there.
    let mut bad_length = vec![0xfe, 0x7f];
    bad_length.extend_from_slice(&body(4)[1..]);
    let good_1 = body(5);
    let cases: Vec<(&str, u32, Vec<u8>)> = vec![
        ("good-0", v2_id, good_0),
        ("trailing", v2_id, padded),
        ("truncated", v2_id, truncated),
        ("one-short", mirror_id, one_short),
        ("bad-length", v2_id, bad_length),
        ("good-1", mirror_id, good_1),
    ];
    let inputs: Vec<Input> = cases
        .iter()
        .map(|(k, id, b)| Input {
            key: Some(k.as_bytes().to_vec()),
            value: Some(framed(*id, b)),
            ..Input::default()
        })
        .collect();
    let offsets = cluster.produce("orders", &inputs).await;

    // Reader: v2 itself, so every message takes the identity path.
    let gw = Running::start(config(
        &cluster.bootstrap,
        &registry.url,
        &format!("gw-{}", unique()),
        &spec("2"),
    ));
    let out = cluster
        .consume(&["orders-out", "orders-dlq"], inputs.len(), WAIT, SETTLE)
        .await;
    let summary = gw.stop().await.expect("clean stop");
    assert_eq!(
        out.len(),
        inputs.len(),
        "every input accounted for: {out:#?}"
    );
    assert_eq!((summary.forwarded, summary.dead_lettered), (2, 4));

    let by_key: HashMap<String, &Received> = out.iter().map(|m| (key_of(m), m)).collect();
    for key in ["good-0", "good-1"] {
        let m = by_key[key];
        let (_, _, body) = cases.iter().find(|(k, _, _)| *k == key).unwrap();
        assert_eq!(m.topic, "orders-out", "{key}");
        let f = wire::parse(m.value.as_deref().unwrap()).unwrap();
        assert_eq!(f.schema_id, v2_id, "{key}: framed with the reader's id");
        assert_eq!(f.payload, &body[..], "{key}: bytes forwarded unchanged");
        decode(&v2, f.payload);
    }
    // (key, writer id, what the error must say: any of these)
    let expect_dlq: [(&str, u32, &[&str]); 4] = [
        ("trailing", v2_id, &["2 trailing byte(s) after the datum"]),
        (
            "truncated",
            v2_id,
            &["input truncated", "left in the input"],
        ),
        ("one-short", mirror_id, &["OrderPlaced.channel (byte"]),
        (
            "bad-length",
            v2_id,
            &["OrderPlaced.order_id (byte 0): length 8191 is invalid or exceeds"],
        ),
    ];
    for (key, writer, needles) in expect_dlq {
        let m = by_key[key];
        let i = cases.iter().position(|(k, _, _)| *k == key).unwrap();
        assert_eq!(m.topic, "orders-dlq", "{key}");
        assert_eq!(m.value, inputs[i].value, "{key}: original bytes");
        assert_eq!(
            m.header(dlq_headers::KIND).as_deref(),
            Some("datum"),
            "{key}"
        );
        assert_eq!(m.header(dlq_headers::WRITER_ID), Some(writer.to_string()));
        assert_eq!(
            m.header(dlq_headers::OFFSET),
            Some(offsets[i].1.to_string())
        );
        let error = m.header(dlq_headers::ERROR).unwrap();
        assert!(
            needles.iter().any(|n| error.contains(n))
                && error.contains(&format!("writer schema id {writer}")),
            "{key}: {error}"
        );
    }
}

/// A→B plus B→A on one cluster, and a second route on a routed topic, never start.
#[test]
fn looping_and_overlapping_routes_are_refused_naming_both_routes() {
    let text = |routes: &str| {
        format!(
            "source: {{ bootstrap_servers: localhost:9092 }}\ngroup_id: g\nregistry: {{ url: http://localhost:8081 }}\nroutes:\n{routes}"
        )
    };
    let route = |name: &str, source: &str, target: &str| {
        format!(
            "  - {{ name: {name}, source: {source}, target: {target}, value: {{ format: passthrough }} }}\n"
        )
    };
    let errors = |routes: String| match Config::parse(&text(&routes)) {
        Ok(_) => panic!("expected a refusal:\n{routes}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
    };
    let ab_ba = route("a-to-b", "{ topics: [a] }", "b") + &route("b-to-a", "{ topics: [b] }", "a");
    assert_eq!(
        errors(ab_ba.clone()),
        vec![
            "routes[0].target: topic b is consumed by routes[1].source.topics[0] (b-to-a) on the same cluster: the gateway would consume its own output and messages would loop",
            "routes[1].target: topic a is consumed by routes[0].source.topics[0] (a-to-b) on the same cluster: the gateway would consume its own output and messages would loop",
        ]
    );
    // Between two clusters the same routes are a bridge, not a loop.
    Config::parse(&text(&ab_ba).replace(
        "group_id: g",
        "target: { bootstrap_servers: other:9092 }\ngroup_id: g",
    ))
    .expect("a bridge");
    let twice =
        route("first", "{ topics: [orders] }", "x") + &route("second", "{ topics: [orders] }", "y");
    assert_eq!(
        errors(twice),
        vec![
            "routes[1].source.topics[0]: topic orders is already routed by routes[0].source.topics[0] (first); a topic can have one route only"
        ]
    );
    let regex_loop = route("all", "{ topic_regex: \"orders.*\" }", "orders-v1");
    assert_eq!(
        errors(regex_loop),
        vec![
            "routes[0].target: topic orders-v1 is consumed by routes[0].source.topic_regex (all) on the same cluster: the gateway would consume its own output and messages would loop"
        ]
    );
}

/// Shutdown while the registry holds a request unanswered (`timeout_ms: 60000`): the gateway
/// returns at once, having delivered and committed everything before the waiting message and
/// nothing from it on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_a_hung_registry_request_returns_at_once_and_commits_nothing_past_it() {
    let cluster = Cluster::start(&[("orders", 1), ("orders-out", 1), ("orders-dlq", 1)]);
    let registry = RegistryDouble::start().await;
    let v1_id = registry.register_avro("orders-value", ORDER_V1);
    let v2_id = registry.register_avro("orders-value", ORDER_V2);
    let hang = format!("/schemas/ids/{v2_id}");
    let proxy = RegistryProxy::start(&registry.url, move |_, line| {
        if request_path(line) == hang {
            ProxyAction::Hang
        } else {
            ProxyAction::Forward
        }
    })
    .await;
    let v1 = Schema::parse_str(ORDER_V1).unwrap();
    let v2 = Schema::parse_str(ORDER_V2).unwrap();
    let mut rng = SplitMix(13);
    // Offsets 0..5 written by v1 (their schema id is answered), offset 5 by v2 (its lookup
    // hangs), then more v1.
    let inputs: Vec<Input> = (0..10)
        .map(|i| {
            let body = if i == 5 {
                framed(v2_id, &encode(&v2, order_v2(i, &mut rng)))
            } else {
                framed(v1_id, &encode(&v1, order_v1(i, &mut rng)))
            };
            Input {
                value: Some(body),
                ..Input::default()
            }
        })
        .collect();
    cluster.produce("orders", &inputs).await;
    let group = format!("gw-{}", unique());
    let mut cfg = config(&cluster.bootstrap, &proxy.url, &group, &spec("1"));
    cfg.registry.timeout_ms = 60_000;
    let gw = Running::start(cfg);

    let before = cluster
        .consume(&["orders-out", "orders-dlq"], 5, WAIT, Duration::ZERO)
        .await;
    assert_eq!(before.len(), 5);
    wait_for("the lookup of the v2 schema id to hang", || {
        proxy.count(ProxyAction::Hang) > 0
    })
    .await;

    gw.shutdown.cancel();
    // A bound for correctness (the request would hold shutdown for up to 60 s), not a speed
    // measurement.
    let summary = tokio::time::timeout(Duration::from_secs(10), gw.task)
        .await
        .expect("shutdown does not wait for the hung registry request")
        .expect("gateway task")
        .expect("clean stop");
    assert_eq!(summary.forwarded, 5);
    assert_eq!(summary.dead_lettered, 0);
    assert_eq!(
        cluster.committed(&group, "orders", 1),
        vec![Some(5)],
        "committed up to the waiting message, not past it"
    );

    // Every input accounted for: offsets 0..5 on the target, in order; 5..10 neither
    // forwarded nor committed, so the group's next member starts at the waiting message.
    let out = cluster
        .consume(&["orders-out", "orders-dlq"], 5, WAIT, SETTLE)
        .await;
    let mut ids: Vec<(i64, String)> = out
        .iter()
        .map(|m| {
            assert_eq!(m.topic, "orders-out");
            let f = wire::parse(m.value.as_deref().unwrap()).unwrap();
            (m.offset, order_id(&decode(&v1, f.payload)))
        })
        .collect();
    ids.sort();
    let ids: Vec<String> = ids.into_iter().map(|(_, id)| id).collect();
    let expected: Vec<String> = (0..5).map(|i| format!("ord-{i:06}")).collect();
    assert_eq!(ids, expected);
}

/// A proxy (an ingress default backend) answers 404 with an HTML page for the first attempts at
/// every registry path, at start-up and mid-stream: an outage, so the gateway retries; nothing
/// is dead-lettered, everything is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_without_a_registry_error_body_is_retried_not_dead_lettered() {
    let cluster = Cluster::start(&[("orders", 2), ("orders-out", 2), ("orders-dlq", 1)]);
    let registry = RegistryDouble::start().await;
    let v1_id = registry.register_avro("orders-value", ORDER_V1);
    let v2_id = registry.register_avro("orders-value", ORDER_V2);
    const HTML_ANSWERS: u32 = 3;
    let seen: Mutex<BTreeMap<String, u32>> = Mutex::default();
    let proxy = RegistryProxy::start(&registry.url, move |_, line| {
        let mut seen = seen.lock().unwrap();
        let n = seen.entry(line.to_string()).or_default();
        *n += 1;
        if *n <= HTML_ANSWERS {
            ProxyAction::NotFoundHtml
        } else {
            ProxyAction::Forward
        }
    })
    .await;
    let v1 = Schema::parse_str(ORDER_V1).unwrap();
    let v2 = Schema::parse_str(ORDER_V2).unwrap();
    let mut rng = SplitMix(17);
    let inputs: Vec<Input> = (0..20)
        .map(|i| {
            let body = if i % 3 == 0 {
                framed(v1_id, &encode(&v1, order_v1(i, &mut rng)))
            } else {
                framed(v2_id, &encode(&v2, order_v2(i, &mut rng)))
            };
            Input {
                partition: (i % 2) as i32,
                value: Some(body),
                ..Input::default()
            }
        })
        .collect();
    cluster.produce("orders", &inputs).await;

    let gw = Running::start(config(
        &cluster.bootstrap,
        &proxy.url,
        &format!("gw-{}", unique()),
        &spec("1"),
    ));
    let out = cluster
        .consume(&["orders-out", "orders-dlq"], inputs.len(), WAIT, SETTLE)
        .await;
    let summary = gw.stop().await.expect("clean stop");
    assert_eq!(out.len(), inputs.len(), "every input accounted for");
    assert!(
        out.iter().all(|m| m.topic == "orders-out"),
        "nothing dead-lettered: {:?}",
        out.iter()
            .filter_map(|m| m.header(dlq_headers::ERROR))
            .collect::<Vec<_>>()
    );
    assert_eq!((summary.forwarded, summary.dead_lettered), (20, 0));
    // The HTML 404s were met at start-up (reader subject) and for both writer ids.
    let log = proxy.log();
    for path in [
        "/subjects/orders-value/versions/1".to_string(),
        format!("/schemas/ids/{v1_id}"),
        format!("/schemas/ids/{v2_id}"),
    ] {
        let html = log
            .iter()
            .filter(|(line, a)| request_path(line) == path && *a == ProxyAction::NotFoundHtml)
            .count();
        assert_eq!(html, HTML_ANSWERS as usize, "{path}: {log:?}");
    }
    // In order per partition, each once, read as v1.
    let mut got: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    for m in &out {
        let f = wire::parse(m.value.as_deref().unwrap()).unwrap();
        assert_eq!(f.schema_id, v1_id);
        got.entry(m.partition)
            .or_default()
            .push((m.offset, order_id(&decode(&v1, f.payload))));
    }
    let mut expected: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for i in 0..inputs.len() {
        expected
            .entry((i % 2) as i32)
            .or_default()
            .push(format!("ord-{i:06}"));
    }
    let got: BTreeMap<i32, Vec<String>> = got
        .into_iter()
        .map(|(p, mut v)| {
            v.sort();
            (p, v.into_iter().map(|(_, id)| id).collect())
        })
        .collect();
    assert_eq!(got, expected);
}

/// 10,000 messages framed with an id the registry does not have: every one is dead-lettered as
/// `unknown-schema` with its original bytes, and the registry is asked about that id once (the
/// answer is believed for `registry.not_found_ttl_ms`, 60 s by default), not 10,000 times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_schema_id_is_asked_for_once_per_ttl_not_once_per_message() {
    const UNKNOWN: u32 = 4242;
    const N: usize = 10_000;
    let cluster = Cluster::start(&[("orders", 2), ("orders-out", 2), ("orders-dlq", 2)]);
    let registry = RegistryDouble::start().await;
    let v1_id = registry.register_avro("orders-value", ORDER_V1);
    let v1 = Schema::parse_str(ORDER_V1).unwrap();
    let mut rng = SplitMix(5);

    // One good message first: once it is through, the reader and its writer are cached.
    let good = Input {
        key: Some(b"good".to_vec()),
        value: Some(framed(v1_id, &encode(&v1, order_v1(0, &mut rng)))),
        ..Input::default()
    };
    cluster.produce("orders", &[good]).await;
    let gw = Running::start(config(
        &cluster.bootstrap,
        &registry.url,
        &format!("gw-{}", unique()),
        &spec("1"),
    ));
    let first = cluster.consume(&["orders-out"], 1, WAIT, SETTLE).await;
    assert_eq!(first.len(), 1, "{first:#?}");
    let before = registry.requests();

    let inputs: Vec<Input> = (0..N)
        .map(|i| Input {
            partition: (i % 2) as i32,
            key: Some(format!("k{i}").into_bytes()),
            value: Some(framed(UNKNOWN, format!("body-{i}").as_bytes())),
            ..Input::default()
        })
        .collect();
    cluster.produce("orders", &inputs).await;
    let dlq = cluster.consume(&["orders-dlq"], N, WAIT, SETTLE).await;
    let summary = gw.stop().await.expect("clean stop");
    let asked = registry.requests() - before;

    assert_eq!(dlq.len(), N, "every message dead-lettered");
    let mut keys = std::collections::HashSet::new();
    for m in &dlq {
        let key = key_of(m);
        let i: usize = key[1..].parse().unwrap();
        assert_eq!(m.value, inputs[i].value, "{key}: original bytes");
        assert_eq!(
            m.header(dlq_headers::KIND).as_deref(),
            Some("unknown-schema"),
            "{key}"
        );
        assert_eq!(m.header(dlq_headers::WRITER_ID), Some(UNKNOWN.to_string()));
        keys.insert(key);
    }
    assert_eq!(keys.len(), N, "each input once");
    assert_eq!(summary.dead_lettered, N as u64);
    assert_eq!(
        asked, 1,
        "registry requests for {N} messages with one unknown id"
    );
}
