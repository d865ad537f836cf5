//! The gateway's at-least-once path end to end against tansu, an independent Kafka-API broker
//! (written by others, run as a separate process by `support::tansu`), with the
//! Confluent-compatible registry double over HTTP and the reference Avro schemas (OrderPlaced
//! v2 → v1). Every test accounts for every input offset tansu acknowledged: each lands on the
//! target topic or in the DLQ.
//!
//! Only at-least-once runs here: tansu leaves aborted transactional records visible, so
//! exactly-once is tested on the mock cluster only. Counts come from consuming, never from
//! watermarks (tansu reports the first offset of the newest batch + 1 as the end offset).

use crate::support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use apache_avro::Schema;
use schemabridge::pipeline::dlq_headers;
use schemabridge::wire;
use support::kafka::{Input, Received, RouteSpec, Running, unique};
use support::orders::{ORDER_V1, ORDER_V2, SplitMix, order_v1, order_v2};
use support::orders::{decode, encode, expected_v1, framed, order_id};
use support::process::{GatewayProcess, scratch_dir};
use support::registry::RegistryDouble;
use support::tansu::{Tansu, gateway_config, gateway_config_text, send_all};

const WAIT: Duration = Duration::from_secs(60);
const SETTLE: Duration = Duration::from_millis(500);
const PARTITIONS: i32 = 3;

/// A registry with order v1 (id returned first) and v2 under `orders-value`.
async fn registry_with_orders() -> (RegistryDouble, u32, u32) {
    let registry = RegistryDouble::start().await;
    let v1 = registry.register_avro("orders-value", ORDER_V1);
    let v2 = registry.register_avro("orders-value", ORDER_V2);
    (registry, v1, v2)
}

const ROUTE: RouteSpec<'static> = RouteSpec::ORDERS;

/// A tansu broker with the route's three topics.
async fn tansu_with_topics() -> Tansu {
    let tansu = tokio::task::spawn_blocking(Tansu::start)
        .await
        .expect("start tansu");
    tansu
        .create_topics(&[
            (ROUTE.source, PARTITIONS),
            (ROUTE.target, PARTITIONS),
            (ROUTE.dlq, 1),
        ])
        .await;
    tansu
}

/// Per partition, the end offset tansu acknowledged (last acked offset + 1), from the
/// producer's delivery reports: what a caught-up group must have committed.
fn acked_ends(acks: &[(i32, i64)]) -> Vec<Option<i64>> {
    (0..PARTITIONS)
        .map(|p| {
            acks.iter()
                .filter(|(ap, _)| *ap == p)
                .map(|(_, o)| o + 1)
                .max()
        })
        .collect()
}

/// The order id of a target record (framed with `reader_id`, decoded as v1).
fn target_order_id(m: &Received, v1: &Schema, reader_id: u32) -> String {
    let f = wire::parse(m.value.as_deref().expect("value")).expect("framed");
    assert_eq!(f.schema_id, reader_id, "framed with the reader schema id");
    order_id(&decode(v1, f.payload))
}

/// Per partition, the order ids of target records in target offset order.
fn ids_by_partition(out: &[Received], v1: &Schema, reader_id: u32) -> BTreeMap<i32, Vec<String>> {
    let mut sorted: Vec<&Received> = out.iter().collect();
    sorted.sort_by_key(|m| (m.partition, m.offset));
    let mut ids: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for m in sorted {
        ids.entry(m.partition)
            .or_default()
            .push(target_order_id(m, v1, reader_id));
    }
    ids
}

/// (1) v2 records arrive as v1: key, headers, timestamp and partition kept, content what a v1
/// reader expects; a tombstone stays a tombstone; offsets committed to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_records_arrive_as_v1_with_key_headers_timestamp_and_partition_kept() {
    let tansu = tansu_with_topics().await;
    let (registry, v1_id, v2_id) = registry_with_orders().await;
    let v1 = Schema::parse_str(ORDER_V1).unwrap();
    let v2 = Schema::parse_str(ORDER_V2).unwrap();

    let mut rng = SplitMix(7);
    let mut values = HashMap::new();
    let mut inputs = Vec::new();
    for i in 0..600 {
        let v = order_v2(i, &mut rng);
        let id = order_id(&v);
        inputs.push(Input {
            partition: (i % PARTITIONS as usize) as i32,
            key: Some(id.clone().into_bytes()),
            value: Some(framed(v2_id, &encode(&v2, v.clone()))),
            headers: vec![
                ("trace-id".into(), format!("t-{i}").into_bytes()),
                ("empty".into(), Vec::new()),
            ],
            timestamp: Some(1_700_000_000_000 + i as i64),
        });
        values.insert(id, v);
    }
    inputs.push(Input {
        partition: 1,
        key: Some(b"deleted-order".to_vec()),
        value: None,
        timestamp: Some(1_700_000_001_000),
        ..Input::default()
    });
    let acks = tansu.produce(ROUTE.source, &inputs).await;

    let group = format!("gw-{}", unique());
    let gw = Running::start(gateway_config(
        &tansu.bootstrap,
        &registry.url,
        &group,
        &ROUTE,
    ));
    let out = tansu
        .consume(&[ROUTE.target, ROUTE.dlq], inputs.len(), WAIT, SETTLE)
        .await;
    let summary = gw.stop().await.expect("clean stop");

    assert_eq!(
        out.len(),
        inputs.len(),
        "every input arrives once in a clean run; tansu log: {}",
        tansu.log.display()
    );
    assert!(
        out.iter().all(|m| m.topic == ROUTE.target),
        "nothing dead-lettered"
    );
    assert_eq!(summary.forwarded, inputs.len() as u64);
    assert_eq!(summary.by_writer.get(&Some(v2_id)), Some(&600));
    let by_key: HashMap<Vec<u8>, &Received> = out
        .iter()
        .map(|m| (m.key.clone().expect("key kept"), m))
        .collect();
    for (input, (_, offset)) in inputs.iter().zip(&acks) {
        let key = input.key.as_ref().unwrap();
        let name = String::from_utf8_lossy(key);
        let m = by_key
            .get(key)
            .unwrap_or_else(|| panic!("input at offset {offset} ({name}) missing"));
        assert_eq!(
            m.partition, input.partition,
            "{name}: same partition number"
        );
        assert_eq!(m.headers, input.headers, "{name}: headers kept");
        assert_eq!(m.timestamp, input.timestamp, "{name}: timestamp kept");
        let Some(value) = &m.value else {
            assert!(
                input.value.is_none(),
                "{name}: only the tombstone has no value"
            );
            continue;
        };
        assert!(
            input.value.is_some(),
            "{name}: a tombstone stays a tombstone"
        );
        let f = wire::parse(value).unwrap();
        assert_eq!(
            f.schema_id, v1_id,
            "{name}: framed with the reader schema id"
        );
        assert_eq!(
            decode(&v1, f.payload),
            expected_v1(&values[name.as_ref()]),
            "{name}"
        );
    }
    assert_eq!(
        tansu.committed(&group, ROUTE.source, PARTITIONS),
        acked_ends(&acks),
        "committed up to the end of each partition"
    );
}

/// (2) Two producers, one writing v1 and one writing v2, interleave on every partition; the
/// target keeps each partition's source order (as tansu acknowledged it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_v1_and_v2_writers_keep_per_partition_order() {
    let tansu = tansu_with_topics().await;
    let (registry, v1_id, v2_id) = registry_with_orders().await;
    let v1 = Schema::parse_str(ORDER_V1).unwrap();
    let v2 = Schema::parse_str(ORDER_V2).unwrap();
    let mut rng = SplitMix(11);
    let mut old_writer = Vec::new();
    let mut new_writer = Vec::new();
    for i in 0..1200usize {
        let partition = ((i / 3) % PARTITIONS as usize) as i32;
        if i % 3 == 1 {
            let v = order_v1(i, &mut rng);
            old_writer.push((order_id(&v), framed(v1_id, &encode(&v1, v)), partition));
        } else {
            let v = order_v2(i, &mut rng);
            new_writer.push((order_id(&v), framed(v2_id, &encode(&v2, v)), partition));
        }
    }
    let as_inputs = |w: &[(String, Vec<u8>, i32)]| -> Vec<Input> {
        w.iter()
            .map(|(_, bytes, partition)| Input {
                partition: *partition,
                key: Some(b"same-key".to_vec()),
                value: Some(bytes.clone()),
                ..Input::default()
            })
            .collect()
    };
    let (old_inputs, new_inputs) = (as_inputs(&old_writer), as_inputs(&new_writer));
    // Two producer sessions take turns (each waits for its batch's acks before the other's
    // turn), so every partition holds runs from both writers, interleaved.
    let (old_producer, new_producer) = (tansu.producer(), tansu.producer());
    let (mut old_acks, mut new_acks) = (Vec::new(), Vec::new());
    for (old, new) in old_inputs.chunks(20).zip(new_inputs.chunks(40)) {
        old_acks
            .extend(send_all(&old_producer, ROUTE.source, old, usize::MAX, Duration::ZERO).await);
        new_acks
            .extend(send_all(&new_producer, ROUTE.source, new, usize::MAX, Duration::ZERO).await);
    }
    assert_eq!(
        (old_acks.len(), new_acks.len()),
        (old_inputs.len(), new_inputs.len())
    );
    // The source order per partition is the order of the offsets tansu acknowledged.
    let mut source: Vec<(i32, i64, &String)> = old_writer
        .iter()
        .zip(&old_acks)
        .chain(new_writer.iter().zip(&new_acks))
        .map(|((id, _, partition), (p, o))| {
            assert_eq!(p, partition, "{id}: acked on the partition it was sent to");
            (*p, *o, id)
        })
        .collect();
    source.sort();
    let mut expected: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for (p, _, id) in source {
        expected.entry(p).or_default().push(id.clone());
    }
    let old_ids: HashSet<&String> = old_writer.iter().map(|(id, _, _)| id).collect();
    for (p, ids) in &expected {
        let switches = ids
            .windows(2)
            .filter(|w| old_ids.contains(&w[0]) != old_ids.contains(&w[1]))
            .count();
        assert!(switches > 2, "partition {p}: the writers interleave");
    }
    let total = old_writer.len() + new_writer.len();

    let gw = Running::start(gateway_config(
        &tansu.bootstrap,
        &registry.url,
        &format!("gw-{}", unique()),
        &ROUTE,
    ));
    let out = tansu
        .consume(&[ROUTE.target, ROUTE.dlq], total, WAIT, SETTLE)
        .await;
    let summary = gw.stop().await.expect("clean stop");

    assert_eq!(out.len(), total, "tansu log: {}", tansu.log.display());
    assert!(
        out.iter().all(|m| m.topic == ROUTE.target),
        "nothing dead-lettered"
    );
    assert_eq!(
        summary.by_writer.get(&Some(v1_id)),
        Some(&(old_writer.len() as u64))
    );
    assert_eq!(
        summary.by_writer.get(&Some(v2_id)),
        Some(&(new_writer.len() as u64))
    );
    assert_eq!(ids_by_partition(&out, &v1, v1_id), expected);
}

/// (3) Malformed framing, unknown schema ids, unresolvable and truncated records reach the DLQ
/// with their original key, bytes and headers plus the reason headers; good ones around them
/// are forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unknown_id_messages_reach_the_dlq_with_original_bytes() {
    let tansu = tansu_with_topics().await;
    let (registry, v1_id, v2_id) = registry_with_orders().await;
    let incompatible = ORDER_V1.replace(
        r#"{"name": "customer_id", "type": "long"}"#,
        r#"{"name": "customer_id", "type": "string"}"#,
    );
    assert_ne!(incompatible, ORDER_V1);
    let bad_id = registry.register_avro("orders-other", &incompatible);
    let v2 = Schema::parse_str(ORDER_V2).unwrap();
    let mut rng = SplitMix(3);
    let mut good = |i| framed(v2_id, &encode(&v2, order_v2(i, &mut rng)));

    // (key, value, expected kind, writer id header, error text it contains); None: forwarded.
    type Case = (
        String,
        Vec<u8>,
        Option<(&'static str, Option<u32>, &'static str)>,
    );
    let mut cases: Vec<Case> = Vec::new();
    for round in 0..4usize {
        let k = |name: &str| format!("{name}-{round}");
        cases.push((k("good-a"), good(round * 2), None));
        cases.push((
            k("bad-framing"),
            b"{\"order_id\":\"json by mistake\"}".to_vec(),
            Some(("framing", None, "magic byte is 0x7b")),
        ));
        cases.push((
            k("short"),
            vec![0, 0, 1],
            Some(("framing", None, "shorter than the 5-byte")),
        ));
        cases.push((
            k("unknown-id"),
            framed(9999, b"\x02\x04"),
            Some(("unknown-schema", Some(9999), "schema id 9999 not found")),
        ));
        cases.push((
            k("unresolvable"),
            framed(bad_id, b"\x00\x00\x00"),
            Some(("unresolvable", Some(bad_id), "customer_id")),
        ));
        cases.push((
            k("truncated"),
            good(round * 2 + 1)[..40].to_vec(),
            Some(("datum", Some(v2_id), "")),
        ));
        cases.push((k("good-b"), good(100 + round), None));
    }
    let inputs: Vec<Input> = cases
        .iter()
        .enumerate()
        .map(|(i, (k, v, _))| Input {
            partition: (i % PARTITIONS as usize) as i32,
            key: Some(k.as_bytes().to_vec()),
            value: Some(v.clone()),
            headers: vec![("origin".into(), b"test".to_vec())],
            ..Input::default()
        })
        .collect();
    let acks = tansu.produce(ROUTE.source, &inputs).await;
    let gw = Running::start(gateway_config(
        &tansu.bootstrap,
        &registry.url,
        &format!("gw-{}", unique()),
        &ROUTE,
    ));
    let out = tansu
        .consume(&[ROUTE.target, ROUTE.dlq], inputs.len(), WAIT, SETTLE)
        .await;
    let summary = gw.stop().await.expect("clean stop");

    assert_eq!(
        out.len(),
        inputs.len(),
        "every input accounted for (tansu log: {}): {out:#?}",
        tansu.log.display()
    );
    let dead = cases.iter().filter(|c| c.2.is_some()).count() as u64;
    assert_eq!(summary.dead_lettered, dead);
    let by_key: HashMap<String, &Received> = out
        .iter()
        .map(|m| (String::from_utf8(m.key.clone().unwrap()).unwrap(), m))
        .collect();
    assert_eq!(by_key.len(), inputs.len(), "each input once");
    for (((key, _, expect), input), (partition, offset)) in cases.iter().zip(&inputs).zip(&acks) {
        let m = by_key[key];
        let Some((kind, writer, needle)) = expect else {
            assert_eq!(m.topic, ROUTE.target, "{key}");
            assert_eq!(m.headers, input.headers, "{key}: headers kept");
            assert_eq!(m.partition, *partition, "{key}");
            let f = wire::parse(m.value.as_deref().unwrap()).unwrap();
            assert_eq!(f.schema_id, v1_id, "{key}");
            continue;
        };
        assert_eq!(m.topic, ROUTE.dlq, "{key}");
        assert_eq!(m.value, input.value, "{key}: original bytes");
        assert_eq!(m.header("origin").as_deref(), Some("test"), "{key}");
        assert_eq!(m.header(dlq_headers::KIND).as_deref(), Some(*kind), "{key}");
        assert_eq!(m.header(dlq_headers::ROUTE).as_deref(), Some("test"));
        assert_eq!(m.header(dlq_headers::PART).as_deref(), Some("value"));
        assert_eq!(m.header(dlq_headers::TOPIC).as_deref(), Some(ROUTE.source));
        assert_eq!(
            m.header(dlq_headers::PARTITION),
            Some(partition.to_string()),
            "{key}"
        );
        assert_eq!(
            m.header(dlq_headers::OFFSET),
            Some(offset.to_string()),
            "{key}: names the source offset tansu acknowledged"
        );
        assert_eq!(
            m.header(dlq_headers::WRITER_ID),
            writer.map(|w| w.to_string()),
            "{key}"
        );
        let error = m.header(dlq_headers::ERROR).expect("error header");
        assert!(error.contains(needle), "{key}: {error}");
    }
}

/// `n` v2 orders spread over the partitions; their order ids, and the inputs.
fn v2_orders(n: usize, seed: u64, v2_id: u32) -> (Vec<String>, Vec<Input>) {
    let v2 = Schema::parse_str(ORDER_V2).unwrap();
    let mut rng = SplitMix(seed);
    (0..n)
        .map(|i| {
            let v = order_v2(i, &mut rng);
            let input = Input {
                partition: (i % PARTITIONS as usize) as i32,
                value: Some(framed(v2_id, &encode(&v2, v.clone()))),
                ..Input::default()
            };
            (order_id(&v), input)
        })
        .unzip()
}

/// Per partition, the ids in the order of the offsets tansu acknowledged for them.
fn source_order(acks: &[(i32, i64)], ids: &[String]) -> BTreeMap<i32, Vec<String>> {
    assert_eq!(acks.len(), ids.len(), "one ack per input");
    let mut source: Vec<(i32, i64, &String)> = acks
        .iter()
        .zip(ids)
        .map(|((p, o), id)| (*p, *o, id))
        .collect();
    source.sort();
    let mut expected: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for (p, _, id) in source {
        expected.entry(p).or_default().push(id.clone());
    }
    expected
}

/// At least once, in order: per partition, the first occurrence of each id on the target is the
/// source order, and every input is there.
fn assert_first_occurrences_in_order(
    out: &[Received],
    expected: &BTreeMap<i32, Vec<String>>,
    v1: &Schema,
    v1_id: u32,
) {
    let got = ids_by_partition(out, v1, v1_id);
    let known: HashSet<&String> = expected.values().flatten().collect();
    for (p, ids) in &got {
        for id in ids {
            assert!(known.contains(id), "partition {p}: {id} is no input");
        }
    }
    for (p, want) in expected {
        let mut seen = HashSet::new();
        let firsts: Vec<&String> = got
            .get(p)
            .map(|ids| ids.iter().filter(|id| seen.insert(*id)).collect())
            .unwrap_or_default();
        assert_eq!(
            firsts,
            want.iter().collect::<Vec<_>>(),
            "partition {p}: first occurrences in source order, none missing"
        );
    }
}

/// Reads the target until every id in `ids` arrived on it.
async fn wait_for_all(tansu: &Tansu, ids: &[String], v1: &Schema, v1_id: u32) {
    let mut missing: HashSet<&String> = ids.iter().collect();
    tansu
        .consume_until(&[ROUTE.target], WAIT, Duration::ZERO, |m| {
            missing.remove(&target_order_id(m, v1, v1_id));
            missing.is_empty()
        })
        .await;
}

/// The three phases of writes of a stop/restart test: `early` before the first run, `during`
/// while it forwards (it is stopped in the middle of them), `late` after it stopped; and how
/// many records on the target trigger the stop (a third into `during`).
fn phases(inputs: &[Input]) -> (&[Input], &[Input], &[Input], usize) {
    let (early, rest) = inputs.split_at(inputs.len() / 5);
    let (during, late) = rest.split_at(rest.len() * 3 / 4);
    let stop_at = early.len() + during.len() / 3 + 7;
    (early, during, late, stop_at)
}

/// Writes `during` as a steady stream while counting target records; once `stop_at` arrived
/// (the gateway still forwarding, the writer still writing) runs `stop`. Returns the acks of
/// `during` and what `stop` returned.
async fn stop_mid_stream<T>(
    tansu: &Tansu,
    during: &[Input],
    stop_at: usize,
    stop: impl AsyncFnOnce() -> T,
) -> (Vec<(i32, i64)>, T) {
    let writer = tansu.produce_paced(ROUTE.source, during, 10, Duration::from_millis(5));
    let stopper = async {
        let mut n = 0;
        tansu
            .consume_until(&[ROUTE.target], WAIT, Duration::ZERO, |_| {
                n += 1;
                n >= stop_at
            })
            .await;
        stop().await
    };
    tokio::join!(writer, stopper)
}

/// (4) Stopped mid-stream (the token a SIGTERM cancels) and restarted with the same group:
/// every input arrives at least once, first occurrences in source order per partition; the
/// second run resumes from what the first committed, and ends committed to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_mid_stream_and_restarting_loses_nothing_and_keeps_order() {
    let tansu = tansu_with_topics().await;
    let (registry, v1_id, v2_id) = registry_with_orders().await;
    let v1 = Schema::parse_str(ORDER_V1).unwrap();
    let (ids, inputs) = v2_orders(3000, 9, v2_id);
    let group = format!("gw-{}", unique());
    let cfg = gateway_config(&tansu.bootstrap, &registry.url, &group, &ROUTE);
    let (early, during, late, stop_at) = phases(&inputs);
    let mut acks = tansu.produce(ROUTE.source, early).await;

    let gw = Running::start(cfg.clone());
    let joined = tansu
        .consume(&[ROUTE.target], 1, WAIT, Duration::ZERO)
        .await;
    assert!(!joined.is_empty(), "tansu log: {}", tansu.log.display());
    let (during_acks, first) = stop_mid_stream(&tansu, during, stop_at, async || {
        gw.stop().await.expect("clean stop")
    })
    .await;
    acks.extend(during_acks);
    let committed = tansu.committed(&group, ROUTE.source, PARTITIONS);
    eprintln!(
        "first run: consumed {} forwarded {} of {} (stop requested at {stop_at} on the target), \
         committed {committed:?}",
        first.consumed,
        first.forwarded,
        inputs.len(),
    );
    assert!(first.forwarded >= stop_at as u64);
    acks.extend(tansu.produce(ROUTE.source, late).await);
    assert!(
        (first.consumed as usize) < inputs.len(),
        "the first run cannot have seen the late writes"
    );

    let gw = Running::start(cfg);
    wait_for_all(&tansu, &ids, &v1, v1_id).await;
    let second = gw.stop().await.expect("clean stop");
    let resumed: i64 = committed.iter().map(|c| c.unwrap_or(0)).sum();
    assert_eq!(
        second.consumed as i64,
        inputs.len() as i64 - resumed,
        "the second run resumed from the committed offsets"
    );
    // Everything both runs forwarded, read back after both stopped.
    let forwarded = (first.forwarded + second.forwarded) as usize;
    let out = tansu
        .consume(&[ROUTE.target, ROUTE.dlq], forwarded, WAIT, SETTLE)
        .await;
    assert_eq!(
        out.len(),
        forwarded,
        "the target holds what both runs forwarded (tansu log: {})",
        tansu.log.display()
    );
    assert!(
        out.iter().all(|m| m.topic == ROUTE.target),
        "nothing dead-lettered"
    );
    assert_first_occurrences_in_order(&out, &source_order(&acks, &ids), &v1, v1_id);
    assert_eq!(
        tansu.committed(&group, ROUTE.source, PARTITIONS),
        acked_ends(&acks),
        "committed up to the end of each partition"
    );
}

/// (5) The gateway process is killed (SIGKILL, a crash: nothing drained, nothing committed)
/// mid-stream and started again with the same group: every input arrives at least once (all
/// the first run forwarded comes twice: it had committed nothing), first occurrences in source
/// order per partition; then SIGTERM stops it cleanly, exit 0, committed to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_gateway_process_restarted_delivers_everything_at_least_once_in_order() {
    let tansu = tansu_with_topics().await;
    let (registry, v1_id, v2_id) = registry_with_orders().await;
    let v1 = Schema::parse_str(ORDER_V1).unwrap();
    let (ids, inputs) = v2_orders(3000, 13, v2_id);
    let group = format!("gw-{}", unique());
    // Commits only on shutdown (README: every commit_interval_ms and on shutdown), so the crash
    // leaves nothing committed and the restart must redeliver all the first run forwarded.
    let config = gateway_config_text(&tansu.bootstrap, &registry.url, &group, &ROUTE);
    let config = config.replace("commit_interval_ms: 200", "commit_interval_ms: 600000");
    assert!(config.contains("commit_interval_ms: 600000"));
    let (early, during, late, stop_at) = phases(&inputs);
    let mut acks = tansu.produce(ROUTE.source, early).await;

    let dir = scratch_dir("tansu-crash");
    let mut gw = GatewayProcess::start(&dir, 1, &config);
    let joined = tansu
        .consume(&[ROUTE.target], 1, WAIT, Duration::ZERO)
        .await;
    assert!(!joined.is_empty(), "gateway log: {}", gw.log.display());
    let (during_acks, ()) = stop_mid_stream(&tansu, during, stop_at, async || gw.kill()).await;
    acks.extend(during_acks);
    assert_eq!(
        tansu.committed(&group, ROUTE.source, PARTITIONS),
        vec![None; PARTITIONS as usize],
        "nothing committed before the crash"
    );
    acks.extend(tansu.produce(ROUTE.source, late).await);

    let mut gw = GatewayProcess::start(&dir, 2, &config);
    wait_for_all(&tansu, &ids, &v1, v1_id).await;
    let status = gw.terminate(Duration::from_secs(60)).await;
    assert!(
        status.success(),
        "SIGTERM: exit 0 ({status}); log: {}",
        gw.log.display()
    );

    let mut missing: HashSet<&String> = ids.iter().collect();
    let out = tansu
        .consume_until(&[ROUTE.target, ROUTE.dlq], WAIT, SETTLE, |m| {
            if m.topic == ROUTE.target {
                missing.remove(&target_order_id(m, &v1, v1_id));
            }
            missing.is_empty()
        })
        .await;
    eprintln!(
        "crash after {stop_at}+ records on the target; {} records on the target for {} inputs",
        out.len(),
        inputs.len()
    );
    assert!(
        out.len() >= inputs.len() + stop_at,
        "what the first run forwarded (at least {stop_at}) was delivered again"
    );
    assert!(
        out.iter().all(|m| m.topic == ROUTE.target),
        "nothing dead-lettered"
    );
    assert_first_occurrences_in_order(&out, &source_order(&acks, &ids), &v1, v1_id);
    assert_eq!(
        tansu.committed(&group, ROUTE.source, PARTITIONS),
        acked_ends(&acks),
        "committed up to the end of each partition"
    );
}
