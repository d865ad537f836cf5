//! Logs of the real binary with stderr in a file: JSON lines by default (never an escape code),
//! plain text with `--log-format text`; one line per dead letter naming route, part, topic,
//! partition, offset, kind and reason (never the payload), rate-limited, with every line held
//! back counted in a summary line.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use schemabridge::pipeline::dlq_headers;
use schemabridge::telemetry::logs::{LINES_PER_WINDOW, WINDOW};
use serde_json::{Map, Value};
use support::kafka::{Cluster, ConfigText, Input, Received, RouteSpec, unique};
use support::logs::{LoggedProcess, json_lines};
use support::orders::{registry_with_orders, v2_inputs};
use support::process::scratch_dir;

const WAIT: Duration = Duration::from_secs(60);
const PARTITIONS: i32 = 2;
/// Malformed values: each is dead-lettered.
const BAD: usize = 30;
const GOOD: usize = 6;
const PAYLOAD: &str = "not avro, payload";

/// A source with `BAD` malformed values and `GOOD` v2 orders interleaved over `PARTITIONS`,
/// and a gateway config (one route, `test`, DLQ `orders-dlq`) on it.
struct Fixture {
    cluster: Cluster,
    _registry: support::registry::RegistryDouble,
    yaml: String,
    /// (partition, offset) of each malformed input.
    bad: BTreeSet<(i32, i64)>,
}

async fn fixture() -> Fixture {
    let cluster = Cluster::start(&[
        ("orders", PARTITIONS),
        ("orders-v1", PARTITIONS),
        ("orders-dlq", 1),
    ]);
    let (registry, _v1, v2_id) = registry_with_orders().await;
    let (good, _) = v2_inputs(GOOD, PARTITIONS, v2_id, 7);
    let mut inputs = Vec::new();
    let mut is_bad = Vec::new();
    for n in 0..BAD {
        inputs.push(Input {
            partition: n as i32 % PARTITIONS,
            key: Some(format!("bad-{n}").into_bytes()),
            value: Some(format!("{PAYLOAD} #{n}").into_bytes()),
            ..Input::default()
        });
        is_bad.push(true);
        if n % (BAD / GOOD) == 0 {
            inputs.push(good[n / (BAD / GOOD)].clone());
            is_bad.push(false);
        }
    }
    let positions = cluster.produce("orders", &inputs).await;
    let bad: BTreeSet<(i32, i64)> = positions
        .into_iter()
        .zip(is_bad)
        .filter_map(|(pos, bad)| bad.then_some(pos))
        .collect();
    assert_eq!(bad.len(), BAD);
    let group = format!("gw-{}", unique());
    let yaml = ConfigText {
        bootstrap: &cluster.bootstrap,
        registry_url: &registry.url,
        group: &group,
        route: RouteSpec::ORDERS,
        delivery: "at_least_once",
        registry_timeout_ms: 5000,
        source_librdkafka: &[],
    }
    .yaml();
    Fixture {
        cluster,
        _registry: registry,
        yaml,
        bad,
    }
}

impl Fixture {
    /// Runs the gateway with `args` until everything is on the target or in the DLQ, stops it
    /// (SIGTERM, exit 0) and returns its stderr, the dead letters by source position, and how
    /// long it ran.
    async fn run(
        &self,
        name: &str,
        args: &[&str],
    ) -> (String, BTreeMap<(i32, i64), Received>, Duration) {
        let dir = scratch_dir(&format!("logs-{name}"));
        let config = dir.join("schemabridge.yaml");
        std::fs::write(&config, &self.yaml).expect("write config");
        let config = config.to_str().expect("utf-8 path");
        let mut all_args = vec!["run", "--config", config];
        all_args.extend(args);
        let started = Instant::now();
        let mut gw = LoggedProcess::start(&dir, name, &all_args, &[]);
        let out = self
            .cluster
            .consume(
                &["orders-v1", "orders-dlq"],
                BAD + GOOD,
                WAIT,
                Duration::ZERO,
            )
            .await;
        let status = gw.terminate(Duration::from_secs(30)).await;
        let ran = started.elapsed();
        let log = gw.log();
        assert!(status.success(), "clean stop: {status}\n{log}");
        assert_eq!(
            out.len(),
            BAD + GOOD,
            "every input on the target or in the DLQ\n{log}"
        );
        let header = |m: &Received, h: &str| {
            m.header(h)
                .unwrap_or_else(|| panic!("dead letter without {h}: {m:?}"))
        };
        let mut dead = BTreeMap::new();
        for m in out.into_iter().filter(|m| m.topic == "orders-dlq") {
            let pos = (
                header(&m, dlq_headers::PARTITION)
                    .parse()
                    .expect("partition"),
                header(&m, dlq_headers::OFFSET).parse().expect("offset"),
            );
            assert!(self.bad.contains(&pos), "dead letter of {pos:?}: {m:?}");
            assert!(dead.insert(pos, m).is_none(), "{pos:?} dead-lettered twice");
        }
        assert_eq!(
            dead.keys().copied().collect::<BTreeSet<_>>(),
            self.bad,
            "every malformed input, and only those, in the DLQ"
        );
        (log, dead, ran)
    }
}

fn str_field<'a>(line: &'a Map<String, Value>, name: &str) -> &'a str {
    line.get(name)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string field {name}: {line:?}"))
}

fn int_field(line: &Map<String, Value>, name: &str) -> i64 {
    line.get(name)
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("no integer field {name}: {line:?}"))
}

/// The most per-message lines the rate limit lets through in `ran`: its windows start at least
/// `WINDOW` apart.
fn most_lines_in(ran: Duration) -> usize {
    LINES_PER_WINDOW as usize * (ran.as_secs() / WINDOW.as_secs() + 1) as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stderr_in_a_file_is_json_lines_with_one_rate_limited_line_per_dead_letter() {
    let fx = fixture().await;
    let (log, dead, ran) = fx.run("json", &[]).await;
    assert!(!log.contains('\u{1b}'), "no escape codes in a file:\n{log}");
    assert!(
        !log.contains(PAYLOAD),
        "no message payload in the logs:\n{log}"
    );
    let lines = json_lines(&log);
    assert!(
        lines
            .iter()
            .all(|l| l.contains_key("timestamp") && l.contains_key("level")),
        "{log}"
    );

    let mut logged = BTreeSet::new();
    let mut suppressed = 0;
    for line in &lines {
        match str_field(line, "message") {
            "dead letter" => {
                assert_eq!(str_field(line, "level"), "WARN", "{line:?}");
                assert_eq!(str_field(line, "route"), "test", "{line:?}");
                assert_eq!(str_field(line, "part"), "value", "{line:?}");
                assert_eq!(str_field(line, "topic"), "orders", "{line:?}");
                let pos = (
                    int_field(line, "partition") as i32,
                    int_field(line, "offset"),
                );
                let m = dead
                    .get(&pos)
                    .unwrap_or_else(|| panic!("a line for {pos:?}, not a dead letter: {line:?}"));
                // Kind and reason: those the dead letter carries.
                assert_eq!(
                    Some(str_field(line, "kind")),
                    m.header(dlq_headers::KIND).as_deref(),
                    "{line:?}"
                );
                assert_eq!(
                    Some(str_field(line, "reason")),
                    m.header(dlq_headers::ERROR).as_deref(),
                    "{line:?}"
                );
                assert!(logged.insert(pos), "{pos:?} logged twice");
            }
            m if m.contains("suppressed by the rate limit") => {
                let n = int_field(line, "suppressed");
                assert!(n > 0, "{line:?}");
                suppressed += n as usize;
            }
            _ => {}
        }
    }
    assert!(
        !logged.is_empty() && logged.len() <= most_lines_in(ran),
        "{} dead-letter lines in {ran:?}: the rate limit allows 1 to {}\n{log}",
        logged.len(),
        most_lines_in(ran)
    );
    assert_eq!(
        logged.len() + suppressed,
        dead.len(),
        "every dead letter logged or counted as held back\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_format_in_a_file_has_no_escape_codes() {
    let fx = fixture().await;
    let (log, dead, _) = fx.run("text", &["--log-format", "text"]).await;
    assert!(!log.contains('\u{1b}'), "no escape codes in a file:\n{log}");
    assert!(!log.is_empty());
    for line in log.lines() {
        assert!(
            serde_json::from_str::<Value>(line).is_err(),
            "a text line, not JSON: {line}"
        );
    }
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("dead letter"))
        .collect();
    assert!(!lines.is_empty(), "{log}");
    for line in lines {
        let named = dead.keys().find(|(p, o)| {
            line.contains(&format!(" partition={p} ")) && line.contains(&format!(" offset={o} "))
        });
        assert!(
            named.is_some()
                && line.contains(" route=test ")
                && line.contains(" topic=\"orders\" ")
                && line.contains(" kind="),
            "{line}"
        );
    }
}

/// A fatal error is a JSON line too when the logs are JSON (the default for a file), and plain
/// `error: ...` with `SCHEMABRIDGE_LOG_FORMAT=text`.
#[tokio::test]
async fn a_fatal_error_is_logged_in_the_chosen_format() {
    let dir = scratch_dir("logs-fatal");
    let missing = dir.join("no-such-config.yaml");
    let missing = missing.to_str().expect("utf-8 path");
    let args = ["run", "--config", missing];

    let mut json = LoggedProcess::start(&dir, "fatal-json", &args, &[]);
    assert_eq!(json.wait(WAIT).await.code(), Some(1));
    let log = json.log();
    let lines = json_lines(&log);
    assert!(
        lines
            .iter()
            .any(|l| str_field(l, "level") == "ERROR" && str_field(l, "error").contains(missing)),
        "{log}"
    );

    let env = [("SCHEMABRIDGE_LOG_FORMAT", "text")];
    let mut text = LoggedProcess::start(&dir, "fatal-text", &args, &env);
    assert_eq!(text.wait(WAIT).await.code(), Some(1));
    let log = text.log();
    assert!(
        log.lines()
            .any(|l| l.starts_with("error: ") && l.contains(missing)),
        "{log}"
    );
    assert!(!log.contains('\u{1b}'), "{log}");
}
