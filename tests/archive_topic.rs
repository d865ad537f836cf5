//! `schemabridge archive`, run as the binary a user runs, against librdkafka's mock cluster, the
//! registry double, a local directory and moto's S3 API (from PyPI, started here):
//!
//! - every input offset is accounted for, once: in exactly one file (read back with fastavro
//!   and equal to fastavro's own resolution of the input to v1) or in the DLQ with its
//!   original bytes and headers that say why;
//! - files are laid out `topic=T/dt=D/T+P+FIRST-LAST.avro` with D the UTC date of every record
//!   in them, and a partition's files are disjoint offset ranges;
//! - SIGKILLed several times (while files are open, and after uploads whose commits are lost)
//!   and restarted, the S3 dataset still holds every record exactly once, and no listing ever
//!   shows an incomplete object (a poller reads every object it ever sees);
//! - `format: parquet` writes the same layout, each file's rows in offset order (read by
//!   pyarrow);
//! - with `telemetry.listen`, `/readyz` follows the assignment and `/metrics` counts what was
//!   produced and what the directory holds, and exports exactly the catalogue's `archive`
//!   metrics;
//! - through a registry outage longer than `max.poll.interval.ms`, with a member joining and
//!   leaving the group meanwhile, the archive waits unready, stays in its group, and archives
//!   every record once when the registry answers.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apache_avro::Schema;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use schemabridge::archive::store::Store;
use schemabridge::archive::topic::{parse_file_name, utc_date};
use schemabridge::config::Config;
use schemabridge::pipeline::dlq_headers;
use schemabridge::telemetry::events::CATALOGUE;
use support::kafka::{Cluster, Input, Received};
use support::membership::GroupMember;
use support::moto;
use support::orders::{
    ORDER_V1, ORDER_V2, SplitMix, encode, framed, order_id, order_v1, order_v2,
    registry_with_orders,
};
use support::process::{GatewayProcess, scratch_dir};
use support::python::{FASTAVRO, python_with};
use support::registry::StallingFront;
use support::scrape::{Scrape, dashboard_metrics, free_port, get, get_until};

const TOPIC: &str = "orders";
const DLQ: &str = "orders-dlq";
const ROUTE: &str = "orders-archive";
/// 2026-11-24T12:00:00Z; the second date is a day later.
const DAY_A: i64 = 1_795_521_600_000;
const DAY_MS: i64 = 86_400_000;

/// A framed input's writer schema id and datum (`None`: not framed).
type Writer = Option<(u32, Vec<u8>)>;

/// One produced input: where it landed, and (for a framed one) its writer id and datum.
#[derive(Clone, Debug)]
struct Produced {
    partition: i32,
    offset: i64,
    timestamp: i64,
    writer: Writer,
    /// The order's id (framed inputs).
    order: Option<String>,
}

/// `n` orders over `partitions` (every third written with v1, the rest with v2); the first
/// half of each partition dated DAY_A, the rest a day later; plus, if `bad`, one unframed value
/// in partition 1 in the middle.
fn inputs(
    n: usize,
    partitions: i32,
    v1_id: u32,
    v2_id: u32,
    bad: bool,
) -> Vec<(Input, (Writer, Option<String>))> {
    let v1 = Schema::parse_str(ORDER_V1).expect("v1");
    let v2 = Schema::parse_str(ORDER_V2).expect("v2");
    let mut rng = SplitMix(7);
    let mut out = Vec::new();
    for i in 0..n {
        if bad && i == n / 2 {
            out.push((
                Input {
                    partition: 1,
                    key: Some(b"bad".to_vec()),
                    value: Some(b"plain text, no Confluent framing".to_vec()),
                    headers: vec![("origin".into(), b"legacy".to_vec())],
                    timestamp: Some(DAY_A + DAY_MS),
                },
                (None, None),
            ));
        }
        let (id, value) = if i % 3 == 0 {
            (v1_id, order_v1(i, &mut rng))
        } else {
            (v2_id, order_v2(i, &mut rng))
        };
        let order = order_id(&value);
        let datum = encode(if id == v1_id { &v1 } else { &v2 }, value);
        let day = if i < n / 2 { DAY_A } else { DAY_A + DAY_MS };
        out.push((
            Input {
                partition: (i as i32) % partitions,
                key: Some(format!("k{i}").into_bytes()),
                value: Some(framed(id, &datum)),
                headers: Vec::new(),
                timestamp: Some(day + i as i64),
            },
            (Some((id, datum)), Some(order)),
        ));
    }
    out
}

async fn produce(
    cluster: &Cluster,
    items: Vec<(Input, (Writer, Option<String>))>,
) -> Vec<Produced> {
    let (ins, writers): (Vec<Input>, Vec<_>) = items.into_iter().unzip();
    let at = cluster.produce(TOPIC, &ins).await;
    at.into_iter()
        .zip(ins.iter().zip(writers))
        .map(|((partition, offset), (input, writer))| Produced {
            partition,
            offset,
            timestamp: input.timestamp.expect("timestamp"),
            writer: writer.0,
            order: writer.1,
        })
        .collect()
}

fn config_yaml(bootstrap: &str, registry: &str, group: &str, archive: &str) -> String {
    format!(
        r#"source:
  bootstrap_servers: "{bootstrap}"
  librdkafka: {{ session.timeout.ms: "3000", heartbeat.interval.ms: "300", statistics.interval.ms: "500" }}
group_id: {group}
registry:
  url: {registry}
  initial_backoff_ms: 10
  max_backoff_ms: 100
pipeline:
  commit_interval_ms: 200
  shutdown_timeout_ms: 10000
routes:
  - name: {ROUTE}
    source: {{ topics: [{TOPIC}] }}
    archive:
{archive}
    value:
      format: avro
      reader: {{ subject: orders-value, version: 1 }}
      dlq: {DLQ}
"#
    )
}

/// The binary, `schemabridge archive --config dir/schemabridge.yaml`, logging to
/// `dir/run-N.log`.
fn archiver(dir: &Path, run: usize, yaml: &str) -> GatewayProcess {
    GatewayProcess::start_command("archive", dir, run, yaml)
}

/// Checks, with fastavro, every file in `files` (local path, key): its records are, in order,
/// fastavro's resolution to v1 of the inputs at the offsets its name covers (less dead
/// letters), and each is dated as its directory says. Returns how many records it checked.
fn check_with_fastavro(
    files: &[(PathBuf, String)],
    produced: &[Produced],
    dead: &BTreeSet<(i32, i64)>,
) -> usize {
    let python = python_with(&[(FASTAVRO, "fastavro")]);
    let v1: serde_json::Value = serde_json::from_str(ORDER_V1).expect("v1");
    let v2: serde_json::Value = serde_json::from_str(ORDER_V2).expect("v2");
    let inputs: Vec<serde_json::Value> = produced
        .iter()
        .filter_map(|p| {
            let (id, datum) = p.writer.as_ref()?;
            Some(serde_json::json!({
                "p": p.partition, "o": p.offset, "w": id.to_string(),
                "hex": hex(datum), "dt": utc_date(p.timestamp),
            }))
        })
        .collect();
    let ids: BTreeSet<u32> = produced
        .iter()
        .filter_map(|p| p.writer.as_ref().map(|w| w.0))
        .collect();
    let writers: serde_json::Map<String, serde_json::Value> = ids
        .iter()
        .map(|id| {
            // The registry double numbers v1 first, v2 second.
            let schema = if *id == *ids.iter().next().expect("id") {
                v1.clone()
            } else {
                v2.clone()
            };
            (id.to_string(), schema)
        })
        .collect();
    let file_list: Vec<serde_json::Value> = files
        .iter()
        .map(|(path, key)| {
            let (_, p, first, last) = parse_file_name(key).expect("file name");
            let dt = key
                .split('/')
                .find_map(|s| s.strip_prefix("dt="))
                .expect("dt=");
            serde_json::json!({"path": path, "p": p, "first": first, "last": last, "dt": dt})
        })
        .collect();
    let manifest = serde_json::json!({
        "reader": v1, "writers": writers, "inputs": inputs, "files": file_list,
        "dead": dead.iter().map(|(p, o)| vec![*p as i64, *o]).collect::<Vec<_>>(),
    });
    let script = r#"
import sys, json, io, fastavro
m = json.load(sys.stdin)
reader = fastavro.parse_schema(m["reader"])
writers = {k: fastavro.parse_schema(v) for k, v in m["writers"].items()}
want = {}
for i in m["inputs"]:
    v = fastavro.schemaless_reader(io.BytesIO(bytes.fromhex(i["hex"])), writers[i["w"]], reader)
    want[(i["p"], i["o"])] = (v, i["dt"])
dead = {tuple(d) for d in m["dead"]}
n = 0
for f in m["files"]:
    recs = list(fastavro.reader(open(f["path"], "rb")))
    offs = [o for o in range(f["first"], f["last"] + 1) if (f["p"], o) not in dead]
    assert len(recs) == len(offs), (f, len(recs), len(offs))
    for r, o in zip(recs, offs):
        v, dt = want[(f["p"], o)]
        assert r == v, (f["path"], o, r, v)
        assert dt == f["dt"], (f["path"], o, dt)
        n += 1
print(n)
"#;
    let mut child = Command::new(&python)
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(manifest.to_string().as_bytes())
            .expect("write manifest");
    }
    let out = child.wait_with_output().expect("python");
    assert!(
        out.status.success(),
        "fastavro check failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("count")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Per partition, the offset ranges of the files named in `keys`; panics on an overlap.
fn ranges(keys: &[String]) -> BTreeMap<i32, Vec<(i64, i64)>> {
    let mut out: BTreeMap<i32, Vec<(i64, i64)>> = BTreeMap::new();
    for k in keys {
        let (topic, p, first, last) = parse_file_name(k).unwrap_or_else(|| panic!("file name {k}"));
        assert_eq!(topic, TOPIC, "{k}");
        assert!(k.starts_with(&format!("topic={TOPIC}/dt=")), "{k}");
        assert!(first <= last, "{k}");
        out.entry(p).or_default().push((first, last));
    }
    for (p, r) in &mut out {
        r.sort();
        for w in r.windows(2) {
            assert!(
                w[0].1 < w[1].0,
                "partition {p}: files {:?} and {:?} overlap",
                w[0],
                w[1]
            );
        }
    }
    out
}

/// Whether every produced offset is in a file range or dead-lettered.
fn covered(produced: &[Produced], keys: &[String], dead: &BTreeSet<(i32, i64)>) -> bool {
    let mut have: BTreeSet<(i32, i64)> = dead.clone();
    for k in keys {
        if let Some((_, p, first, last)) = parse_file_name(k) {
            have.extend((first..=last).map(|o| (p, o)));
        }
    }
    produced
        .iter()
        .all(|p| have.contains(&(p.partition, p.offset)))
}

fn local_files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(root) {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_archive_holds_every_record_once_and_the_bad_one_is_dead_lettered() {
    let dir = scratch_dir("archive-local");
    let out = dir.join("out");
    let _ = std::fs::remove_dir_all(&out);
    let cluster = Cluster::start(&[(TOPIC, 3), (DLQ, 1)]);
    let (registry, v1_id, v2_id) = registry_with_orders().await;
    let produced = produce(&cluster, inputs(240, 3, v1_id, v2_id, true)).await;
    let bad = produced
        .iter()
        .find(|p| p.writer.is_none())
        .expect("bad input")
        .clone();

    let archive = format!(
        "      url: \"file://{}\"\n      roll: {{ records: 30, interval_ms: 300 }}",
        out.display()
    );
    let group = format!("archive-a-{}", std::process::id());
    let port = free_port();
    let yaml = format!(
        "{}telemetry:\n  listen: \"127.0.0.1:{port}\"\n",
        config_yaml(&cluster.bootstrap, &registry.url, &group, &archive)
    );
    let mut run = archiver(&dir, 0, &yaml);
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let (_, ready) = get_until(addr, "/readyz", Duration::from_secs(60), "ready", |s, _| {
        s == 200
    })
    .await;
    assert_eq!(ready.trim(), "ready: 3 partitions assigned");
    assert_eq!(get(addr, "/healthz"), Some((200, "alive\n".to_string())));

    let dead = BTreeSet::from([(bad.partition, bad.offset)]);
    wait_for_local_files(&mut run, &out, &produced, &dead).await;
    check_archive_metrics(addr, &out, &produced).await;
    let status = run.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "exit {status}:\n{}", run.log_text());

    let keys = local_files(&out);
    assert!(
        keys.iter().all(|k| !k.contains('#')),
        "a staging file is left: {keys:?}"
    );
    let by_partition = ranges(&keys);
    assert_eq!(by_partition.len(), 3, "{keys:?}");
    let dates: BTreeSet<&str> = keys.iter().filter_map(|k| k.split('/').nth(1)).collect();
    assert_eq!(
        dates,
        BTreeSet::from(["dt=2026-11-24", "dt=2026-11-25"]),
        "{keys:?}"
    );
    let files: Vec<(PathBuf, String)> = keys.iter().map(|k| (out.join(k), k.clone())).collect();
    let checked = check_with_fastavro(&files, &produced, &dead);
    assert_eq!(checked, produced.len() - 1, "every good record once");

    // The bad record: in the DLQ with its original bytes and the reason.
    let d = &the_one_dead_letter(&cluster).await;
    assert_eq!(
        d.value.as_deref(),
        Some(&b"plain text, no Confluent framing"[..])
    );
    assert_eq!(d.key.as_deref(), Some(&b"bad"[..]));
    assert_eq!(d.header("origin").as_deref(), Some("legacy"));
    assert_eq!(d.header(dlq_headers::KIND).as_deref(), Some("framing"));
    assert!(d.header(dlq_headers::ERROR).is_some_and(|e| !e.is_empty()));
    assert_eq!(d.header(dlq_headers::TOPIC).as_deref(), Some(TOPIC));
    assert_eq!(
        d.header(dlq_headers::PARTITION),
        Some(bad.partition.to_string())
    );
    assert_eq!(d.header(dlq_headers::OFFSET), Some(bad.offset.to_string()));
    assert_eq!(d.header(dlq_headers::ROUTE).as_deref(), Some(ROUTE));
}

/// The DLQ's only message (it must hold exactly one).
async fn the_one_dead_letter(cluster: &Cluster) -> Received {
    let mut dlq = cluster
        .consume(
            &[DLQ],
            1,
            Duration::from_secs(20),
            Duration::from_millis(300),
        )
        .await;
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    dlq.remove(0)
}

/// `/metrics` of the local run once every record is in a file: what was produced, what the
/// directory holds, the one dead letter, nothing left open and no lag; and exactly the
/// catalogue's `archive` metrics.
async fn check_archive_metrics(addr: std::net::SocketAddr, out: &Path, produced: &[Produced]) {
    let framed = produced.iter().filter(|p| p.writer.is_some()).count();
    let route = [("route", ROUTE)];
    // Counters move a moment after a file is visible, the lag with the next statistics.
    let (_, text) = get_until(
        addr,
        "/metrics",
        Duration::from_secs(30),
        "archived, nothing open, no lag",
        |_, text| {
            let s = Scrape::parse(text);
            let lag = s.by(
                "schemabridge_consumer_lag",
                &[("topic", TOPIC)],
                "partition",
            );
            s.sum(
                "schemabridge_messages_total",
                &[("route", ROUTE), ("outcome", "archived")],
            ) == framed as f64
                && s.sum("schemabridge_archive_open_records", &route) == 0.0
                && lag.len() == 3
                && lag.values().all(|l| *l == 0.0)
        },
    )
    .await;
    let s = Scrape::parse(&text);
    let files = local_files(out);
    let bytes: u64 = files
        .iter()
        .map(|k| std::fs::metadata(out.join(k)).expect("file").len())
        .sum();
    let outcomes = s.by("schemabridge_messages_total", &route, "outcome");
    assert_eq!(
        outcomes,
        BTreeMap::from([
            ("archived".to_string(), framed as f64),
            ("dead_lettered".to_string(), 1.0),
            ("skipped".to_string(), 0.0),
            ("tombstone".to_string(), 0.0),
        ]),
        "{text}"
    );
    assert_eq!(
        s.sum("schemabridge_consumed_total", &route),
        produced.len() as f64
    );
    let nonzero = |m: BTreeMap<String, f64>| -> BTreeMap<String, f64> {
        m.into_iter().filter(|(_, v)| *v != 0.0).collect()
    };
    let framing = BTreeMap::from([("framing".to_string(), 1.0)]);
    assert_eq!(
        nonzero(s.by("schemabridge_failures_total", &route, "kind")),
        framing
    );
    assert_eq!(
        nonzero(s.by("schemabridge_dead_letters_total", &route, "kind")),
        framing
    );
    assert_eq!(
        s.sum("schemabridge_archive_files_total", &route),
        files.len() as f64,
        "{files:?}"
    );
    assert_eq!(
        s.sum("schemabridge_archive_bytes_total", &route),
        bytes as f64
    );
    assert_eq!(
        s.sum("schemabridge_archive_upload_seconds_count", &route),
        files.len() as f64
    );
    // Every framed value's plan was looked up once: from the caches, or (v1 and v2, once each)
    // from the registry.
    let lookups = s.sum("schemabridge_registry_cache_hits_total", &[])
        + s.sum("schemabridge_registry_cache_misses_total", &[]);
    assert_eq!(lookups, framed as f64);
    assert_eq!(s.sum("schemabridge_registry_cache_misses_total", &[]), 2.0);
    assert_eq!(
        s.sum(
            "schemabridge_registry_requests_total",
            &[("outcome", "transient_error")]
        ),
        0.0
    );
    assert_eq!(s.sum("schemabridge_assigned_partitions", &[]), 3.0);
    assert_eq!(s.sum("schemabridge_registry_available", &[]), 1.0);
    assert_eq!(s.sum("schemabridge_ready", &[]), 1.0);
    let exported = s.schemabridge_families();
    let catalogue: BTreeSet<&str> = CATALOGUE
        .iter()
        .filter(|m| m.exporter.archive())
        .map(|m| m.name)
        .collect();
    assert_eq!(
        exported, catalogue,
        "/metrics against the catalogue's `archive` metrics"
    );
    // Every metric the archive's dashboard queries is exported by the archive.
    for name in dashboard_metrics("schemabridge-archive.json") {
        assert!(
            exported.contains(name.as_str()),
            "the archive dashboard queries {name}, which the archive does not export"
        );
    }
}

/// Lists the bucket until stopped; reads every object the first time a listing shows it and
/// records a failure unless it is a complete container holding as many records as its name's
/// offset range.
async fn poll_listings(
    store: Store,
    stop: tokio_util::sync::CancellationToken,
    failures: Arc<Mutex<Vec<String>>>,
) -> usize {
    let mut seen = BTreeSet::new();
    while !stop.is_cancelled() {
        let listed = match store.list(&format!("topic={TOPIC}")).await {
            Ok(l) => l,
            Err(e) => {
                failures.lock().unwrap().push(format!("list: {e}"));
                break;
            }
        };
        for (key, _) in listed {
            if !seen.insert(key.clone()) {
                continue;
            }
            let problem = match (parse_file_name(&key), store.read(&key).await) {
                (None, _) => Some("not an archive file name".to_string()),
                (_, Err(e)) => Some(format!("unreadable: {e}")),
                (Some((_, _, first, last)), Ok(bytes)) => {
                    match apache_avro::Reader::new(&bytes[..]) {
                        Err(e) => Some(format!("not a container: {e}")),
                        Ok(r) => {
                            let mut n = 0i64;
                            let mut bad = None;
                            for v in r {
                                match v {
                                    Ok(_) => n += 1,
                                    Err(e) => bad = Some(format!("record {n}: {e}")),
                                }
                            }
                            bad.or_else(|| {
                                (n != last - first + 1)
                                    .then(|| format!("{n} records for offsets {first}-{last}"))
                            })
                        }
                    }
                }
            };
            if let Some(p) = problem {
                failures.lock().unwrap().push(format!("{key}: {p}"));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    seen.len()
}

/// Commits `offsets` (partition, offset) in `group`, as if the commits after uploads had been
/// lost in a crash: joins the group (once the killed member's session has expired), commits,
/// leaves.
fn rewind(bootstrap: &str, group: &str, partitions: i32, offsets: &BTreeMap<i32, i64>) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "3000")
        .set("heartbeat.interval.ms", "300")
        .create()
        .expect("consumer");
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(30);
    while consumer.assignment().map_or(0, |a| a.count()) < partitions as usize {
        assert!(Instant::now() < deadline, "rewind {group}: no assignment");
        let _ = consumer.poll(Duration::from_millis(100));
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let o = offsets.get(&p).copied().unwrap_or(0);
        tpl.add_partition_offset(TOPIC, p, Offset::Offset(o))
            .expect("offset");
    }
    consumer
        .commit(&tpl, CommitMode::Sync)
        .unwrap_or_else(|e| panic!("rewind {group}: {e}"));
    consumer.unsubscribe();
    let _ = consumer.poll(Duration::from_millis(100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_sigkilled_and_restarted_the_s3_archive_holds_every_record_exactly_once() {
    let dir = scratch_dir("archive-s3");
    let moto = moto::Moto::start(&dir, 1024);
    moto.create_bucket("lake");
    std::fs::write(dir.join("key-id"), moto::KEY_ID).expect("key file");
    std::fs::write(dir.join("secret"), moto::SECRET).expect("secret file");
    let partitions = 4;
    let cluster = Cluster::start(&[(TOPIC, partitions), (DLQ, 1)]);
    let (registry, v1_id, v2_id) = registry_with_orders().await;
    let produced = produce(&cluster, inputs(800, partitions, v1_id, v2_id, false)).await;

    // Small parts: files larger than 2 KiB go up as multipart uploads.
    let archive = format!(
        "      url: s3://lake/exports/v1\n      roll: {{ records: 25, interval_ms: 400 }}\n      part_bytes: 2048\n      s3:\n        endpoint: \"{}\"\n        region: us-east-1\n        allow_http: true\n        access_key_id_file: {}\n        secret_access_key_file: {}",
        moto.endpoint,
        dir.join("key-id").display(),
        dir.join("secret").display()
    );
    let group = format!("archive-b-{}", std::process::id());
    let yaml = config_yaml(&cluster.bootstrap, &registry.url, &group, &archive);
    let cfg = Config::parse(&yaml).expect("config");
    let store =
        Store::open("test", cfg.routes[0].archive.as_ref().expect("archive")).expect("store");

    let stop = tokio_util::sync::CancellationToken::new();
    let failures = Arc::new(Mutex::new(Vec::new()));
    let poller = tokio::spawn(poll_listings(store.clone(), stop.clone(), failures.clone()));
    let listed = || {
        let store = store.clone();
        async move {
            store
                .list(&format!("topic={TOPIC}"))
                .await
                .expect("list")
                .into_iter()
                .map(|(k, _)| k)
                .collect::<Vec<String>>()
        }
    };
    let wait_for = |what: &'static str, run: &mut GatewayProcess, at_least: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        let log = run.log.clone();
        let alive = run.running();
        async move {
            assert!(alive, "archive exited before {what}");
            loop {
                let n = listed().await.len();
                if n >= at_least {
                    return n;
                }
                assert!(
                    Instant::now() < deadline,
                    "{what}: {n} files listed:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };

    // 1: killed right after its first uploads (other partitions have open files).
    let mut run = archiver(&dir, 1, &yaml);
    let n = wait_for("first upload", &mut run, 1).await;
    run.kill();
    // The commits for those files are lost, as if the crash came before them: each partition
    // with a file is set back to just after its first file's first offset (so resuming from the
    // committed offset alone would write a file overlapping that one), the others to 0.
    let mut back = BTreeMap::new();
    for (p, r) in ranges(&listed().await) {
        back.insert(p, r[0].0 + 1);
    }
    rewind(
        &cluster.bootstrap,
        &format!("{group}-archive-{ROUTE}"),
        partitions,
        &back,
    );

    // 2 and 3: killed again once a few more files went up.
    let mut n = n;
    for i in 2..=3 {
        let mut run = archiver(&dir, i, &yaml);
        n = wait_for("more uploads", &mut run, n + 3).await;
        run.kill();
    }

    // 4: runs until every record is in a file, then stops cleanly.
    let mut run = archiver(&dir, 4, &yaml);
    let none = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if covered(&produced, &listed().await, &none) {
            break;
        }
        assert!(run.running(), "archive exited:\n{}", run.log_text());
        assert!(
            Instant::now() < deadline,
            "not every record archived in time:\n{}",
            run.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = run.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "exit {status}:\n{}", run.log_text());
    stop.cancel();
    let seen = poller.await.expect("poller");
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "listings showed incomplete objects: {failures:#?}"
    );

    let keys = listed().await;
    assert!(seen >= keys.len(), "the poller saw every final object");
    let by_partition = ranges(&keys);
    assert_eq!(by_partition.len(), partitions as usize);
    // Download and check every record with fastavro.
    let local = dir.join("download");
    let _ = std::fs::remove_dir_all(&local);
    let mut files = Vec::new();
    for k in &keys {
        let bytes = store.read(k).await.expect("read");
        let path = local.join(k);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, &bytes).expect("write");
        files.push((path, k.clone()));
    }
    let checked = check_with_fastavro(&files, &produced, &none);
    assert_eq!(checked, produced.len(), "every record exactly once");
    assert!(
        moto_multipart_seen(&moto.log),
        "no multipart upload reached moto: part_bytes did not take effect"
    );
}

/// Whether moto's log shows a completed multipart upload (`POST ...?uploadId=`).
fn moto_multipart_seen(log: &Path) -> bool {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains("uploadId=")
}

/// A Parquet route: each file's order ids are the inputs' at the offsets its name covers, in
/// offset order; one v1 record whose order_id is not UTF-8 (the plan copies strings as they
/// are; Parquet cannot hold it) is dead-lettered with why, and the records around it archived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_parquet_archive_files_hold_each_partitions_records_in_offset_order() {
    let dir = scratch_dir("archive-parquet");
    let out = dir.join("out");
    let _ = std::fs::remove_dir_all(&out);
    let cluster = Cluster::start(&[(TOPIC, 2), (DLQ, 1)]);
    let (registry, v1_id, v2_id) = registry_with_orders().await;
    let mut items = inputs(120, 2, v1_id, v2_id, false);
    // A copy of a v1 input (partition 0, in the middle) with its order_id's first byte 0xff:
    // a datum that decodes, but whose string is not UTF-8.
    let (mut bad, _) = items[60].clone();
    let mut value = bad.value.take().expect("value");
    assert_eq!(&value[..5], &framed(v1_id, &[])[..], "a v1 input");
    value[6] = 0xff; // after the framing, the order_id's length, then its first byte
    bad.value = Some(value.clone());
    bad.key = Some(b"not-utf8".to_vec());
    items.insert(61, (bad, (None, None)));
    let produced = produce(&cluster, items).await;
    let not_utf8 = produced
        .iter()
        .find(|p| p.writer.is_none())
        .expect("bad input")
        .clone();
    let dead = BTreeSet::from([(not_utf8.partition, not_utf8.offset)]);
    let archive = format!(
        "      url: \"file://{}\"\n      format: parquet\n      dictionary: none\n      statistics: none\n      encoding_threads: 0\n      roll: {{ records: 25, interval_ms: 300 }}",
        out.display()
    );
    let group = format!("archive-c-{}", std::process::id());
    let yaml = config_yaml(&cluster.bootstrap, &registry.url, &group, &archive);
    let mut run = archiver(&dir, 0, &yaml);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !covered(&produced, &local_files(&out), &dead) {
        assert!(run.running(), "archive exited:\n{}", run.log_text());
        assert!(
            Instant::now() < deadline,
            "not archived in time:\n{}",
            run.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = run.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "exit {status}");

    let keys = local_files(&out);
    assert!(keys.iter().all(|k| k.ends_with(".parquet")), "{keys:?}");
    ranges(&keys);
    // pyarrow reads each file's order_id column; it must be the inputs' ids at the offsets the
    // file's name covers, in offset order (the archive thread encoded them itself:
    // `encoding_threads: 0`). The route's `dictionary: none` and `statistics: none`
    // reach the writer: no column chunk has a dictionary page or min/max statistics (with the
    // defaults, order_id would have both).
    let python = python_with(&[("pyarrow==26.0.1", "pyarrow")]);
    let paths: Vec<String> = keys
        .iter()
        .map(|k| out.join(k).display().to_string())
        .collect();
    let got = Command::new(&python)
        .arg("-c")
        .arg(concat!(
            "import sys, json, pyarrow.parquet as pq\n",
            "def chunks(p):\n",
            "    m = pq.read_metadata(p)\n",
            "    return [m.row_group(g).column(c) for g in range(m.num_row_groups) for c in range(m.num_columns)]\n",
            "print(json.dumps([[pq.read_table(p).column('order_id').to_pylist(),\n",
            "  any(c.has_dictionary_page for c in chunks(p)),\n",
            "  any(c.is_stats_set and c.statistics.has_min_max for c in chunks(p))] for p in sys.argv[1:]]))",
        ))
        .args(&paths)
        .output()
        .expect("python");
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let files: Vec<(Vec<String>, bool, bool)> = serde_json::from_slice(&got.stdout).expect("json");
    let by_offset: BTreeMap<(i32, i64), String> = produced
        .iter()
        .filter(|p| !dead.contains(&(p.partition, p.offset)))
        .map(|p| ((p.partition, p.offset), p.order.clone().expect("order")))
        .collect();
    let mut total = 0;
    for (k, (ids, dictionary, statistics)) in keys.iter().zip(files) {
        assert!(!dictionary, "{k} has a dictionary page");
        assert!(!statistics, "{k} has min/max statistics");
        let (_, p, first, last) = parse_file_name(k).expect("name");
        let want: Vec<String> = (first..=last)
            .filter_map(|o| by_offset.get(&(p, o)).cloned())
            .collect();
        assert_eq!(ids, want, "{k}");
        total += ids.len();
    }
    assert_eq!(total, produced.len() - 1, "every good record once");

    // The record Parquet cannot hold: in the DLQ with its original bytes and why.
    let d = &the_one_dead_letter(&cluster).await;
    assert_eq!(d.value.as_deref(), Some(&value[..]));
    assert_eq!(d.key.as_deref(), Some(&b"not-utf8"[..]));
    assert_eq!(d.header(dlq_headers::KIND).as_deref(), Some("datum"));
    assert_eq!(
        d.header(dlq_headers::ERROR).as_deref(),
        Some("the record cannot be written as Parquet: order_id: a string that is not UTF-8")
    );
    assert_eq!(
        d.header(dlq_headers::OFFSET),
        Some(not_utf8.offset.to_string())
    );
}

/// A registry outage while the archive meets a writer id it has not seen: it waits (the record
/// is neither dead-lettered nor skipped), `/readyz` says why and `/healthz` stays 200. It keeps
/// polling with its partitions paused, so it stays in its group for longer than
/// `max.poll.interval.ms` and serves the rebalances of a second member joining and leaving
/// meanwhile. When the registry answers it is ready again and every record is archived once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_a_registry_outage_makes_the_archive_wait_unready_and_lose_nothing() {
    let dir = scratch_dir("archive-outage");
    let out = dir.join("out");
    let _ = std::fs::remove_dir_all(&out);
    let cluster = Cluster::start(&[(TOPIC, 2), (DLQ, 1)]);
    let (registry, v1_id, v2_id) = registry_with_orders().await;
    let front = StallingFront::start(&registry).await;
    let port = free_port();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let archive = format!(
        "      url: \"file://{}\"\n      roll: {{ records: 1000, interval_ms: 300 }}",
        out.display()
    );
    let group = format!("archive-d-{}", std::process::id());
    // A member that does not poll for 6 s leaves its group; the outage lasts longer.
    let max_poll = Duration::from_secs(6);
    let yaml = format!(
        "{}telemetry:\n  listen: \"127.0.0.1:{port}\"\n",
        config_yaml(&cluster.bootstrap, &front.url, &group, &archive).replace(
            "statistics.interval.ms: \"500\"",
            &format!(
                "statistics.interval.ms: \"500\", max.poll.interval.ms: \"{}\"",
                max_poll.as_millis()
            )
        )
    );
    let mut run = archiver(&dir, 0, &yaml);
    get_until(addr, "/readyz", Duration::from_secs(60), "ready", |s, _| {
        s == 200
    })
    .await;

    // v1 records first (their writer id is then cached), then v2 ones during the outage.
    let (v1_items, v2_items): (Vec<_>, Vec<_>) = inputs(24, 2, v1_id, v2_id, false)
        .into_iter()
        .partition(|(_, (w, _))| w.as_ref().is_some_and(|(id, _)| *id == v1_id));
    let mut produced = produce(&cluster, v1_items).await;
    let none = BTreeSet::new();
    wait_for_local_files(&mut run, &out, &produced, &none).await;

    front.hold_matching("/schemas/ids/");
    let outage = Instant::now();
    produced.extend(produce(&cluster, v2_items).await);
    front.wait_held(1, Duration::from_secs(30)).await;
    let (_, body) = get_until(
        addr,
        "/readyz",
        Duration::from_secs(30),
        "not ready during the outage",
        |s, _| s == 503,
    )
    .await;
    assert!(
        body.starts_with("schema registry unavailable"),
        "/readyz: {body}"
    );
    assert_eq!(get(addr, "/healthz"), Some((200, "alive\n".to_string())));
    let s = Scrape::parse(&get(addr, "/metrics").expect("/metrics").1);
    assert_eq!(s.sum("schemabridge_registry_available", &[]), 0.0);
    assert_eq!(s.sum("schemabridge_ready", &[]), 0.0);
    let route = [("route", ROUTE)];
    let outcomes = s.by("schemabridge_messages_total", &route, "outcome");
    assert_eq!(outcomes.get("dead_lettered"), Some(&0.0), "{outcomes:?}");
    assert_eq!(outcomes.get("skipped"), Some(&0.0), "{outcomes:?}");
    let archived_before = outcomes.get("archived").copied().unwrap_or(0.0);
    assert!(archived_before < produced.len() as f64, "{outcomes:?}");

    // A second member joins during the outage (it reads, never commits) and leaves again: the
    // waiting archive takes part in both rebalances.
    let member = GroupMember::join(
        &cluster.bootstrap,
        &format!("{group}-archive-{ROUTE}"),
        TOPIC,
        &[
            ("enable.auto.commit", "false"),
            ("session.timeout.ms", "3000"),
            ("heartbeat.interval.ms", "300"),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while member.assignment().len() != 1 {
        assert!(
            Instant::now() < deadline,
            "the second member got no partition: {:?}\n{}",
            member.events(),
            run.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    member.close();
    // Held for longer than max.poll.interval.ms in all.
    let held_for = max_poll + Duration::from_secs(2);
    if let Some(rest) = held_for.checked_sub(outage.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    assert_eq!(get(addr, "/healthz"), Some((200, "alive\n".to_string())));

    front.release();
    get_until(
        addr,
        "/readyz",
        Duration::from_secs(60),
        "ready after the outage",
        |s, _| s == 200,
    )
    .await;
    wait_for_local_files(&mut run, &out, &produced, &none).await;
    let (_, text) = get_until(
        addr,
        "/metrics",
        Duration::from_secs(30),
        "every record archived",
        |_, text| {
            Scrape::parse(text).sum(
                "schemabridge_messages_total",
                &[("route", ROUTE), ("outcome", "archived")],
            ) == produced.len() as f64
        },
    )
    .await;
    let s = Scrape::parse(&text);
    assert_eq!(s.sum("schemabridge_registry_outages_total", &[]), 1.0);
    assert_eq!(s.sum("schemabridge_registry_available", &[]), 1.0);
    assert!(
        s.sum("schemabridge_registry_paused_seconds_total", &[]) >= max_poll.as_secs() as f64,
        "{text}"
    );
    assert_eq!(
        s.sum(
            "schemabridge_messages_total",
            &[("route", ROUTE), ("outcome", "dead_lettered")]
        ),
        0.0
    );
    let status = run.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "exit {status}:\n{}", run.log_text());
    let log = run.log_text();
    assert!(
        !log.contains("assignment lost"),
        "the archive left its group during the outage:\n{log}"
    );
    let keys = local_files(&out);
    let files: Vec<(PathBuf, String)> = keys.iter().map(|k| (out.join(k), k.clone())).collect();
    assert_eq!(
        check_with_fastavro(&files, &produced, &none),
        produced.len(),
        "every record once: {keys:?}"
    );
}

/// Waits until the local archive's files cover every produced offset (less `dead`).
async fn wait_for_local_files(
    run: &mut GatewayProcess,
    out: &Path,
    produced: &[Produced],
    dead: &BTreeSet<(i32, i64)>,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let keys = local_files(out);
        if covered(produced, &keys, dead) {
            return;
        }
        assert!(run.running(), "archive exited:\n{}", run.log_text());
        assert!(
            Instant::now() < deadline,
            "not every record archived in time:\n{keys:?}\n{}",
            run.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
