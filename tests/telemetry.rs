//! Telemetry: the real binary with `telemetry.listen` on a free port. `/healthz` answers while
//! it starts; `/readyz` is not ready before the consumer group's assignment and ready after;
//! a known mix of messages (forwarded v1 and lossy v2 records, tombstones, dead letters of two
//! kinds, skips, lossy dead letters) shows up in `/metrics` exactly as sent and as found on the
//! target and dead-letter topics; consumer lag is reported per partition; a registry outage
//! makes it not ready until the registry answers again; /metrics exports exactly the catalogue
//! the README's table lists, and the Grafana dashboard only queries metrics the gateway exports.
//! Under exactly-once the same counters match the topics and transactions are measured.
//!
//! Each test runs its own gateway process, so the process-global metrics recorder never mixes
//! two tests' counters.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use apache_avro::Schema;
use schemabridge::telemetry::events::CATALOGUE;
use support::kafka::{Cluster, Input, Reader, Received, unique};
use support::orders::{ORDER_V1, ORDER_V2, SplitMix, order_v1, order_v2};
use support::orders::{encode, framed};
use support::process::{GatewayProcess, scratch_dir};
use support::registry::{RegistryDouble, StallingFront};
use support::scrape::{Scrape, dashboard_metrics, free_port, get, get_until};

/// What a route was sent.
#[derive(Default)]
struct Sent {
    v1: usize,
    v2: usize,
    tombstones: usize,
    unframed: usize,
    unknown_id: usize,
}

impl Sent {
    fn total(&self) -> usize {
        self.v1 + self.v2 + self.tombstones + self.unframed + self.unknown_id
    }
    fn with_value(&self) -> usize {
        self.total() - self.tombstones
    }
}

/// The mix, spread over 2 partitions: v1 and v2 orders, tombstones, unframed bytes and values
/// framed with a schema id the registry does not have.
fn mix(v1_id: u32, v2_id: u32, unknown_id: u32) -> (Vec<Input>, Sent) {
    let (s1, s2) = (
        Schema::parse_str(ORDER_V1).expect("v1"),
        Schema::parse_str(ORDER_V2).expect("v2"),
    );
    let mut rng = SplitMix(7);
    let mut sent = Sent::default();
    let mut inputs = Vec::new();
    for i in 0..150 {
        let value = match i % 15 {
            0 => {
                sent.tombstones += 1;
                None
            }
            1 | 2 => {
                sent.unframed += 1;
                Some(format!("not framed {i}").into_bytes())
            }
            3 => {
                sent.unknown_id += 1;
                Some(framed(unknown_id, &encode(&s1, order_v1(i, &mut rng))))
            }
            4..=6 => {
                sent.v1 += 1;
                Some(framed(v1_id, &encode(&s1, order_v1(i, &mut rng))))
            }
            _ => {
                sent.v2 += 1;
                Some(framed(v2_id, &encode(&s2, order_v2(i, &mut rng))))
            }
        };
        inputs.push(Input {
            partition: (i % 2) as i32,
            key: Some(format!("k{i}").into_bytes()),
            value,
            ..Input::default()
        });
    }
    (inputs, sent)
}

fn count(msgs: &[Received], topic: &str) -> usize {
    msgs.iter().filter(|m| m.topic == topic).count()
}

fn by_kind(msgs: &[Received], topic: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for m in msgs.iter().filter(|m| m.topic == topic) {
        let kind = m
            .header("schemabridge.error.kind")
            .expect("error kind header");
        *out.entry(kind).or_default() += 1.0;
    }
    out
}

/// Per field named in lossy dead letters' `schemabridge.error` headers, how many there were.
fn lossy_fields(msgs: &[Received], topic: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for m in msgs.iter().filter(|m| m.topic == topic) {
        if m.header("schemabridge.error.kind").as_deref() != Some("lossy") {
            continue;
        }
        let error = m.header("schemabridge.error").expect("error header");
        let (_, fields) = error
            .split_once("hold data: ")
            .unwrap_or_else(|| panic!("lossy error names its fields: {error}"));
        for field in fields.split(", ") {
            *out.entry(field.to_string()).or_default() += 1.0;
        }
    }
    out
}

#[test]
fn the_dashboard_and_the_readme_name_only_metrics_in_the_catalogue() {
    let catalogue: BTreeSet<&str> = CATALOGUE.iter().map(|m| m.name).collect();
    for dashboard in ["schemabridge.json", "schemabridge-archive.json"] {
        for name in dashboard_metrics(dashboard) {
            assert!(
                catalogue.contains(name.as_str()),
                "{dashboard} queries {name}, which schemabridge does not export"
            );
        }
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    for m in CATALOGUE {
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `{}`", m.name)))
            .unwrap_or_else(|| panic!("README: no table row for {}", m.name));
        // | metric | exported by | type | labels | meaning |
        let cells: Vec<&str> = row.split(" | ").map(str::trim).collect();
        assert_eq!(
            cells.get(1).copied(),
            Some(m.exporter.as_str()),
            "README: who exports {}",
            m.name
        );
    }
    let documented = regex::Regex::new(r"^\| `(schemabridge_[a-z_]+)`").expect("regex");
    for line in readme.lines() {
        if let Some(c) = documented.captures(line) {
            assert!(
                catalogue.contains(&c[1]),
                "README documents {}, which schemabridge does not export",
                &c[1]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_was_sent_and_probes_follow_assignment_and_registry() {
    let u = unique();
    let (route_a, route_b) = (format!("tm-allow-{u}"), format!("tm-strict-{u}"));
    let cluster = Cluster::start(&[
        ("in-a", 2),
        ("in-b", 2),
        ("out-a", 2),
        ("out-b", 2),
        ("dlq-a", 1),
        ("dlq-b", 1),
    ]);
    let registry = RegistryDouble::start().await;
    let v1_id = registry.register_avro("orders-value", ORDER_V1);
    let v2_id = registry.register_avro("orders-value", ORDER_V2);
    // A third schema, seen only in the outage phase.
    let v3_text = ORDER_V1.replacen("\"doc\": \"", "\"doc\": \"v3. ", 1);
    let v3_id = registry.register_avro("orders-other-value", &v3_text);
    let unknown_id = v3_id + 100;
    let front = StallingFront::start(&registry).await;
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let yaml = format!(
        r#"source:
  bootstrap_servers: "{bootstrap}"
  librdkafka: {{ statistics.interval.ms: "200" }}
group_id: gw-{u}
registry:
  url: {registry}
  timeout_ms: 1500
  initial_backoff_ms: 10
  max_backoff_ms: 100
pipeline:
  commit_interval_ms: 200
  shutdown_timeout_ms: 10000
telemetry:
  listen: 127.0.0.1:{port}
routes:
  - name: {route_a}
    source: {{ topics: [in-a] }}
    target: out-a
    value:
      format: avro
      reader: {{ subject: orders-value, version: 1 }}
      dlq: dlq-a
  - name: {route_b}
    source: {{ topics: [in-b] }}
    target: out-b
    value:
      format: avro
      reader: {{ subject: orders-value, version: 1 }}
      on_error: skip
      on_lossy: dlq
      dlq: dlq-b
"#,
        bootstrap = cluster.bootstrap,
        registry = front.url,
    );

    // Start-up waits for the reader schema: alive, not ready.
    front.hold_matching("/subjects/");
    let dir = scratch_dir("telemetry");
    let mut gw = GatewayProcess::start(&dir, 0, &yaml);
    front.wait_held(1, Duration::from_secs(30)).await;
    let (status, body) = get_until(
        addr,
        "/healthz",
        Duration::from_secs(30),
        "liveness",
        |_, _| true,
    )
    .await;
    assert_eq!(
        status,
        200,
        "/healthz while starting: {body}\n{}",
        gw.log_tail()
    );
    let (status, body) = get(addr, "/readyz").expect("/readyz answers");
    assert_eq!(
        status,
        503,
        "/readyz before the assignment: {body}\n{}",
        gw.log_tail()
    );
    let scrape = Scrape::parse(&get(addr, "/metrics").expect("/metrics").1);
    assert_eq!(scrape.sum("schemabridge_assigned_partitions", &[]), 0.0);

    front.release();
    let (_, body) = get_until(
        addr,
        "/readyz",
        Duration::from_secs(60),
        "readiness after the assignment",
        |s, _| s == 200,
    )
    .await;
    assert!(body.starts_with("ready"), "{body}");
    let (_, metrics_text) = get_until(
        addr,
        "/metrics",
        Duration::from_secs(10),
        "metrics",
        |s, _| s == 200,
    )
    .await;
    let scrape = Scrape::parse(&metrics_text);
    assert_eq!(
        scrape.sum("schemabridge_assigned_partitions", &[]),
        4.0,
        "both source topics' partitions are assigned to the one replica"
    );
    assert_eq!(scrape.sum("schemabridge_ready", &[]), 1.0);

    // The mix, to both routes.
    let requests_before = registry.requests();
    let (inputs, sent) = mix(v1_id, v2_id, unknown_id);
    cluster.produce("in-a", &inputs).await;
    cluster.produce("in-b", &inputs).await;
    let mut reader = Reader::new(
        &cluster.bootstrap,
        &[("out-a", 2), ("dlq-a", 1), ("out-b", 2), ("dlq-b", 1)],
        true,
    );
    let skipped_b = sent.unframed + sent.unknown_id;
    let arrived = reader
        .read_until(Duration::from_secs(60), Duration::from_millis(500), |r| {
            count(r, "out-a") + count(r, "dlq-a") >= sent.total()
                && count(r, "out-b") + count(r, "dlq-b") >= sent.total() - skipped_b
        })
        .await;
    assert!(arrived, "every message arrives\n{}", gw.log_tail());
    let got = &reader.received;
    // Consumer lag: reported for every source partition, 0 once everything is committed.
    let (_, metrics_text) = get_until(
        addr,
        "/metrics",
        Duration::from_secs(30),
        "consumer lag 0 on every source partition",
        |_, text| {
            let s = Scrape::parse(text);
            let lag = |t: &str| s.by("schemabridge_consumer_lag", &[("topic", t)], "partition");
            let done = |t: &str| {
                let l = lag(t);
                l.len() == 2 && l.values().all(|v| *v == 0.0)
            };
            done("in-a") && done("in-b")
        },
    )
    .await;
    let s = Scrape::parse(&metrics_text);
    let requests_during = registry.requests() - requests_before;

    // Route A: dead letters of two kinds, lossy v2 records forwarded.
    let a = [("route", route_a.as_str())];
    let total = sent.total() as f64;
    assert_eq!(s.sum("schemabridge_consumed_total", &a), total);
    let outcomes = s.by("schemabridge_messages_total", &a, "outcome");
    assert_eq!(outcomes["forwarded"], count(got, "out-a") as f64);
    assert_eq!(
        outcomes["forwarded"],
        (sent.v1 + sent.v2 + sent.tombstones) as f64
    );
    assert_eq!(outcomes["dead_lettered"], count(got, "dlq-a") as f64);
    assert_eq!(outcomes["skipped"], 0.0);
    let kinds_a = by_kind(got, "dlq-a");
    assert_eq!(
        kinds_a,
        BTreeMap::from([
            ("framing".to_string(), sent.unframed as f64),
            ("unknown-schema".to_string(), sent.unknown_id as f64),
        ])
    );
    let nonzero = |m: BTreeMap<String, f64>| -> BTreeMap<String, f64> {
        m.into_iter().filter(|(_, v)| *v > 0.0).collect()
    };
    assert_eq!(
        nonzero(s.by("schemabridge_dead_letters_total", &a, "kind")),
        kinds_a
    );
    assert_eq!(
        nonzero(s.by("schemabridge_failures_total", &a, "kind")),
        kinds_a
    );
    let by_writer = s.by("schemabridge_forwarded_by_schema_total", &a, "writer_id");
    assert_eq!(
        by_writer,
        BTreeMap::from([
            (v1_id.to_string(), sent.v1 as f64),
            (v2_id.to_string(), sent.v2 as f64),
            ("none".to_string(), sent.tombstones as f64),
        ])
    );
    let reader_ids = s.by("schemabridge_forwarded_by_schema_total", &a, "reader_id");
    assert_eq!(reader_ids.keys().collect::<Vec<_>>(), [&v1_id.to_string()]);

    // Route B: lossy records dead-lettered, unresolvable ones skipped.
    let b = [("route", route_b.as_str())];
    assert_eq!(s.sum("schemabridge_consumed_total", &b), total);
    let outcomes = s.by("schemabridge_messages_total", &b, "outcome");
    assert_eq!(outcomes["forwarded"], count(got, "out-b") as f64);
    assert_eq!(outcomes["dead_lettered"], count(got, "dlq-b") as f64);
    assert_eq!(outcomes["skipped"], skipped_b as f64);
    let kinds_b = by_kind(got, "dlq-b");
    let lossy = kinds_b.get("lossy").copied().unwrap_or(0.0);
    assert!(
        lossy > 0.0,
        "v2 records lose fields to a v1 reader: {kinds_b:?}"
    );
    assert_eq!(kinds_b.len(), 1, "only lossy dead letters: {kinds_b:?}");
    assert_eq!(
        nonzero(s.by("schemabridge_dead_letters_total", &b, "kind")),
        kinds_b
    );
    assert_eq!(
        nonzero(s.by("schemabridge_failures_total", &b, "kind")),
        BTreeMap::from([
            ("framing".to_string(), sent.unframed as f64),
            ("lossy".to_string(), lossy),
            ("unknown-schema".to_string(), sent.unknown_id as f64),
        ])
    );

    // The lossy guard: both routes saw the same v2 records, so both counted, per field, what
    // route B's lossy dead letters name.
    let fields = lossy_fields(got, "dlq-b");
    assert!(!fields.is_empty());
    for route in [&route_a, &route_b] {
        assert_eq!(
            s.by(
                "schemabridge_dropped_fields_total",
                &[("route", route.as_str()), ("part", "value")],
                "field"
            ),
            fields,
            "dropped fields of {route}"
        );
    }

    // Registry: every resolution was a cache hit or a miss, and each miss is one request for
    // a writer schema (however fast the registry answered it).
    let hits = s.sum("schemabridge_registry_cache_hits_total", &[]);
    let misses = s.sum("schemabridge_registry_cache_misses_total", &[]);
    assert_eq!(hits + misses, 2.0 * sent.with_value() as f64);
    assert_eq!(
        misses, requests_during as f64,
        "misses against registry requests while running"
    );
    // v1 and v2 fetched once each; the unknown id asked for once (its 404 is believed for
    // registry.not_found_ttl_ms), not once per message of either route.
    assert!(sent.unknown_id > 1);
    assert_eq!(
        requests_during, 3,
        "registry requests during the run (v1, v2, the unknown id)"
    );
    // The reader-schema request held at start-up timed out and was retried.
    assert!(s.sum("schemabridge_registry_retries_total", &[]) >= 1.0);
    assert_eq!(s.sum("schemabridge_produce_errors_total", &[]), 0.0);
    assert_eq!(s.sum("schemabridge_registry_available", &[]), 1.0);

    // The catalogue (the README's table) is what this gateway exports, no more, no less.
    let exported = s.schemabridge_families();
    let catalogue: BTreeSet<&str> = CATALOGUE
        .iter()
        .filter(|m| m.exporter.run())
        .map(|m| m.name)
        .collect();
    assert_eq!(
        exported, catalogue,
        "/metrics against the catalogue's `run` metrics"
    );
    // Every metric the dashboard queries is exported by this gateway.
    for name in dashboard_metrics("schemabridge.json") {
        assert!(
            s.families.contains(&name) || s.samples.contains_key(&name),
            "the dashboard queries {name}, which /metrics does not export:\n{metrics_text}"
        );
    }

    // A registry outage: not ready while paused, ready again when it answers.
    front.hold_matching("/schemas/ids/");
    let v3 = Schema::parse_str(&v3_text).expect("v3");
    let mut rng = SplitMix(9);
    cluster
        .produce(
            "in-a",
            &[Input {
                partition: 0,
                key: Some(b"outage".to_vec()),
                value: Some(framed(v3_id, &encode(&v3, order_v1(0, &mut rng)))),
                ..Input::default()
            }],
        )
        .await;
    front.wait_held(2, Duration::from_secs(30)).await;
    let (_, body) = get_until(
        addr,
        "/readyz",
        Duration::from_secs(30),
        "not ready during the outage",
        |s, _| s == 503,
    )
    .await;
    assert!(body.contains("registry"), "{body}");
    let (status, _) = get(addr, "/healthz").expect("/healthz");
    assert_eq!(status, 200, "an outage does not fail liveness");
    front.release();
    get_until(
        addr,
        "/readyz",
        Duration::from_secs(60),
        "ready after the outage",
        |s, _| s == 200,
    )
    .await;
    assert!(
        reader
            .read_until(Duration::from_secs(30), Duration::ZERO, |r| count(
                r, "out-a"
            ) > sent.v1
                + sent.v2
                + sent.tombstones)
            .await,
        "the held message is forwarded after the outage"
    );
    let s = Scrape::parse(&get(addr, "/metrics").expect("/metrics").1);
    assert_eq!(s.sum("schemabridge_registry_outages_total", &[]), 1.0);
    assert_eq!(s.sum("schemabridge_registry_available", &[]), 1.0);
    assert_eq!(
        s.by("schemabridge_forwarded_by_schema_total", &a, "writer_id")[&v3_id.to_string()],
        1.0
    );

    let status = gw.terminate(Duration::from_secs(30)).await;
    assert!(
        status.success(),
        "clean stop: {status:?}\n{}",
        gw.log_tail()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_reports_its_transactions() {
    let u = unique();
    let route = format!("tm-eos-{u}");
    let cluster = Cluster::start(&[("eos-in", 2), ("eos-out", 2), ("eos-dlq", 1)]);
    let registry = RegistryDouble::start().await;
    let v1_id = registry.register_avro("orders-value", ORDER_V1);
    let v2_id = registry.register_avro("orders-value", ORDER_V2);
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let yaml = format!(
        r#"source:
  bootstrap_servers: "{bootstrap}"
group_id: gw-{u}
registry:
  url: {registry}
pipeline:
  delivery: exactly_once
  transactional_id: tm-eos-{u}
  transaction_ms: 100
  shutdown_timeout_ms: 10000
telemetry:
  listen: 127.0.0.1:{port}
routes:
  - name: {route}
    source: {{ topics: [eos-in] }}
    target: eos-out
    value:
      format: avro
      reader: {{ subject: orders-value, version: 1 }}
      dlq: eos-dlq
"#,
        bootstrap = cluster.bootstrap,
        registry = registry.url,
    );
    let dir = scratch_dir("telemetry-eos");
    let mut gw = GatewayProcess::start(&dir, 0, &yaml);
    get_until(addr, "/readyz", Duration::from_secs(60), "ready", |s, _| {
        s == 200
    })
    .await;
    let (inputs, sent) = mix(v1_id, v2_id, v2_id + 100);
    cluster.produce("eos-in", &inputs).await;
    let mut reader = Reader::new(&cluster.bootstrap, &[("eos-out", 2), ("eos-dlq", 1)], true);
    assert!(
        reader
            .read_until(Duration::from_secs(60), Duration::from_millis(500), |r| r
                .len()
                >= sent.total())
            .await,
        "every message arrives\n{}",
        gw.log_tail()
    );
    let got = &reader.received;
    let (_, text) = get_until(
        addr,
        "/metrics",
        Duration::from_secs(10),
        "metrics",
        |s, _| s == 200,
    )
    .await;
    let s = Scrape::parse(&text);
    let r = [("route", route.as_str())];
    let outcomes = s.by("schemabridge_messages_total", &r, "outcome");
    assert_eq!(outcomes["forwarded"], count(got, "eos-out") as f64);
    assert_eq!(outcomes["dead_lettered"], count(got, "eos-dlq") as f64);
    let nonzero: BTreeMap<String, f64> = s
        .by("schemabridge_dead_letters_total", &r, "kind")
        .into_iter()
        .filter(|(_, v)| *v > 0.0)
        .collect();
    assert_eq!(nonzero, by_kind(got, "eos-dlq"));
    // The records a read_committed reader sees were committed in transactions, and measured.
    assert!(
        s.sum("schemabridge_transaction_seconds_count", &[]) >= 1.0,
        "{text}"
    );
    assert_eq!(s.sum("schemabridge_transaction_failures_total", &[]), 0.0);
    assert_eq!(s.sum("schemabridge_produce_errors_total", &[]), 0.0);
    let status = gw.terminate(Duration::from_secs(30)).await;
    assert!(
        status.success(),
        "clean stop: {status:?}\n{}",
        gw.log_tail()
    );
}
