//! `schemabridge bench pipeline`, tiny: the table's shape, and every contender's target holding
//! every input record (counted by consuming it here, with content checks). No assertion on
//! speed. The bench runs as a child process on a mock cluster this test starts, so that the
//! test can read what the contenders wrote after the bench exits.

use crate::support;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use apache_avro::Schema;
use schemabridge::wire;
use support::kafka::{Cluster, Received, unique};
use support::orders::ORDER_V1;

const PARTITIONS: i32 = 2;
const PER_PARTITION: usize = 500;
const INPUTS: usize = PARTITIONS as usize * PER_PARTITION;
/// 1000/s for 0.3 s, plus one warm-up record per partition.
const PACED: usize = 300 + PARTITIONS as usize;
const CONTENDERS: [(&str, &str); 4] = [
    ("(a) rdkafka copy loop", "copy-loop"),
    ("(b) schemabridge passthrough", "passthrough"),
    ("(c) schemabridge avro v2→v1 at_least_once", "avro-alo"),
    ("(d) schemabridge avro v2→v1 exactly_once", "avro-eos"),
];

/// The bench process, killed and reaped if the test panics first.
struct Bench(Child);

impl Drop for Bench {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn run_bench(bootstrap: &str, prefix: &str, dir: &Path) -> (bool, String, String) {
    let (out, err) = (dir.join("bench.stdout"), dir.join("bench.stderr"));
    let child = Command::new(env!("CARGO_BIN_EXE_schemabridge"))
        .args(["bench", "pipeline", "--bootstrap-servers", bootstrap])
        .args(["--partitions", &PARTITIONS.to_string()])
        .args(["--records", &PER_PARTITION.to_string()])
        .args(["--latency-rate", "1000", "--latency-seconds", "0.3"])
        // The mock cluster holds an empty fetch for the whole wait.
        .args(["--fetch-wait-ms", "10"])
        .args(["--topic-prefix", prefix, "--keep-topics"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("start the bench");
    let mut bench = Bench(child);
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(s) = bench.0.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the bench did not finish in 300 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let read = |p: &Path| std::fs::read_to_string(p).expect("bench output");
    (status.success(), read(&out), read(&err))
}

/// The numeric columns of a contender's row, or `None` for a `failed: ...` row.
fn row_figures(table: &str, label: &str) -> Option<Vec<String>> {
    let line = table
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no row for {label}:\n{table}"));
    let rest = line[label.len()..].trim();
    if rest.starts_with("failed: ") {
        return None;
    }
    let cols: Vec<String> = rest.split_whitespace().map(str::to_string).collect();
    assert_eq!(cols.len(), 5, "{line}");
    for c in &cols[..4] {
        let v: f64 = c.parse().unwrap_or_else(|_| panic!("{c} in {line}"));
        assert!(v.is_finite() && v >= 0.0, "{line}");
    }
    assert!(cols[4] == "?" || cols[4].parse::<f64>().is_ok(), "{line}");
    Some(cols)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_contender_delivers_every_input_record_and_the_table_has_its_shape() {
    let prefix = format!("bp-{}", unique());
    let mut topics = vec![(format!("{prefix}-input"), PARTITIONS)];
    for (_, slug) in CONTENDERS {
        topics.push((format!("{prefix}-{slug}-paced"), PARTITIONS));
        topics.push((format!("{prefix}-{slug}-target"), PARTITIONS));
    }
    let refs: Vec<(&str, i32)> = topics.iter().map(|(t, p)| (t.as_str(), *p)).collect();
    let cluster = Cluster::start(&refs);
    let dir = tempfile::tempdir().expect("tempdir");

    let bootstrap = cluster.bootstrap.clone();
    let (p, d) = (prefix.clone(), dir.path().to_path_buf());
    let (ok, table, stderr) = tokio::task::spawn_blocking(move || run_bench(&bootstrap, &p, &d))
        .await
        .expect("bench thread");
    assert!(ok, "bench failed:\n{table}\n{stderr}");
    eprintln!("{stderr}");

    // The table's shape.
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with(&format!(
            "{PARTITIONS} partitions × {PER_PARTITION} records = {INPUTS} OrderPlaced v2 records"
        )),
        "{table}"
    );
    let header: Vec<&str> = lines
        .iter()
        .find(|l| l.starts_with("contender"))
        .unwrap_or_else(|| panic!("no header:\n{table}"))
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "contender",
            "records/s",
            "MB/s",
            "p50",
            "ms",
            "p99",
            "ms",
            "peak",
            "RSS",
            "MiB"
        ]
    );
    let mut ran = Vec::new();
    for (label, slug) in CONTENDERS {
        match row_figures(&table, label) {
            Some(_) => ran.push(slug),
            None => assert!(
                slug == "avro-eos",
                "only (d) may fail (exactly-once may not be implemented):\n{table}"
            ),
        }
    }
    assert!(table.contains("\nlatency: "), "{table}");
    assert!(table.contains("\nrecords/s, MB/s: "), "{table}");
    let last = lines.last().expect("a last line");
    let ratio = last
        .strip_prefix("ratio: ")
        .unwrap_or_else(|| panic!("last line: {last}"));
    assert!(
        ratio.parse::<f64>().is_ok() && ratio.split('.').nth(1).map(str::len) == Some(2),
        "{last}"
    );

    // Every contender's target, counted by consuming it: every input record exactly once (and
    // every paced one), with the input's value (copy loop, passthrough) or its v1 resolution.
    let input = cluster
        .consume(
            &[&format!("{prefix}-input")],
            INPUTS,
            Duration::from_secs(60),
            Duration::from_millis(200),
        )
        .await;
    assert_eq!(input.len(), INPUTS);
    let by_key: HashMap<Vec<u8>, &Received> = input
        .iter()
        .map(|r| (r.key.clone().expect("input key"), r))
        .collect();
    let v1 = Schema::parse_str(ORDER_V1).expect("v1");
    let targets: Vec<String> = ran
        .iter()
        .map(|slug| format!("{prefix}-{slug}-target"))
        .collect();
    let target_refs: Vec<&str> = targets.iter().map(String::as_str).collect();
    let all = cluster
        .consume(
            &target_refs,
            targets.len() * (INPUTS + PACED),
            Duration::from_secs(60),
            Duration::from_millis(300),
        )
        .await;
    for (slug, target) in ran.iter().zip(&targets) {
        let got: Vec<&Received> = all.iter().filter(|r| &r.topic == target).collect();
        let keys: BTreeSet<Vec<u8>> = got
            .iter()
            .filter_map(|r| r.key.clone())
            .filter(|k| k.starts_with(b"order-"))
            .collect();
        let inputs = got
            .iter()
            .filter(|r| r.key.as_deref().is_some_and(|k| k.starts_with(b"order-")))
            .count();
        assert_eq!(
            (inputs, keys.len()),
            (INPUTS, INPUTS),
            "{target}: input records"
        );
        assert_eq!(got.len(), INPUTS + PACED, "{target}: all records");
        for r in &got {
            let Some(original) = r.key.as_ref().and_then(|k| by_key.get(k)) else {
                continue;
            };
            assert_eq!(r.partition, original.partition, "{target}");
            assert_eq!(r.headers, original.headers, "{target}");
            assert_eq!(r.timestamp, original.timestamp, "{target}");
            let value = r.value.as_deref().expect("value");
            if slug.starts_with("avro") {
                let framed = wire::parse(value).expect("framed");
                assert_eq!(framed.schema_id, 1, "{target}: v1 id");
                let mut body = framed.payload;
                #[allow(deprecated)]
                apache_avro::from_avro_datum(&v1, &mut body, None).expect("decodes as v1");
                assert!(body.is_empty(), "{target}: whole datum");
            } else {
                assert_eq!(Some(value), original.value.as_deref(), "{target}");
            }
        }
    }
}
