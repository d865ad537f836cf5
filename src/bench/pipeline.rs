//! `schemabridge bench pipeline`: the gateway end to end on a Kafka broker, next to a minimal
//! rdkafka copy loop on the same broker and the same input, in one run.
//!
//! Four contenders, one after the other, each in its own child process of the `schemabridge`
//! binary (so that each one's peak RSS is its own), each reading the input topic with its own
//! consumer group and writing its own target topic: (a) [`copy_loop`], run by the hidden
//! `bench copy-loop` subcommand; (b) the gateway with a passthrough route; (c) the gateway
//! resolving Avro OrderPlaced v2 → v1 at least once; (d) the same exactly once. The gateway runs
//! exactly as a user runs it: `schemabridge run --config FILE` with an offline `static_dir`
//! registry, stopped with SIGTERM.
//!
//! Owns: the bench's topics and records, the mock cluster it starts (unless given a broker), the
//! contenders' configs, processes and log files, the copy loop, and the table. Must not: be used
//! by the gateway, or reach into its internals (it only writes config files and spawns `run`).

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use apache_avro::Schema;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::config::Config;
use crate::wire;

const ORDER_V1: &str = include_str!("../../proto/orders/order_v1.avsc");
const ORDER_V2: &str = include_str!("../../proto/orders/order_v2.avsc");
/// Registry ids the bench's static schema directory gives the two versions.
const V1_ID: u32 = 1;
const V2_ID: u32 = 2;
const SUBJECT: &str = "orders-value";
/// Seed of the input records: every run benches the same records.
const SEED: u64 = 42;
/// Keys of the pre-loaded input (throughput phase) and of the paced records (latency phase).
const INPUT_KEY: &[u8] = b"order-";
const PACED_KEY: &[u8] = b"paced-";
/// A header every input record carries, copied to the target by every contender.
const HEADER: (&str, &[u8]) = ("bench.producer", b"orders-v2");
/// How long a contender may take to deliver its first record (process start, group join).
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a contender may go without delivering a record once it started.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a contender may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// `fetch.wait.max.ms` for every consumer on the mock cluster: the mock answers a fetch that
/// finds no data only after the full wait, even if data arrives meanwhile (a real broker answers
/// as soon as it has data), which would turn the latency figures into that wait.
const MOCK_FETCH_WAIT_MS: u32 = 10;
/// What librdkafka's mock cluster keeps per partition (it drops the oldest records beyond),
/// with some margin: 100,000 records and 5 MiB.
const MOCK_PARTITION_RECORDS: usize = 95_000;
const MOCK_PARTITION_BYTES: usize = 5 * 1024 * 1024 * 95 / 100;

/// What `bench pipeline` runs.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// The `schemabridge` binary the contenders run as (normally `std::env::current_exe()`).
    pub exe: PathBuf,
    /// A broker to run on instead of an in-process mock cluster.
    pub bootstrap_servers: Option<String>,
    pub partitions: i32,
    /// Input records per partition.
    pub records_per_partition: usize,
    /// Latency phase: records per second produced while the contender runs, and for how long.
    pub latency_rate: u32,
    pub latency_seconds: f64,
    /// `fetch.wait.max.ms` for every consumer (default: 10 on the mock cluster, librdkafka's
    /// default on a broker).
    pub fetch_wait_ms: Option<u32>,
    /// Topic names start with this (default: `schemabridge-bench-<pid>-<time>`).
    pub topic_prefix: Option<String>,
    /// On a broker, leave the topics in place (they are deleted by default).
    pub keep_topics: bool,
    /// Keep the contenders' configs and logs even when every contender succeeded.
    pub keep_logs: bool,
}

/// The four contenders, in the order they run and print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contender {
    CopyLoop,
    Passthrough,
    AvroAtLeastOnce,
    AvroExactlyOnce,
}

impl Contender {
    pub const ALL: [Contender; 4] = [
        Contender::CopyLoop,
        Contender::Passthrough,
        Contender::AvroAtLeastOnce,
        Contender::AvroExactlyOnce,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Contender::CopyLoop => "(a) rdkafka copy loop",
            Contender::Passthrough => "(b) schemabridge passthrough",
            Contender::AvroAtLeastOnce => "(c) schemabridge avro v2→v1 at_least_once",
            Contender::AvroExactlyOnce => "(d) schemabridge avro v2→v1 exactly_once",
        }
    }

    /// Used in topic, group and log file names.
    pub fn slug(self) -> &'static str {
        match self {
            Contender::CopyLoop => "copy-loop",
            Contender::Passthrough => "passthrough",
            Contender::AvroAtLeastOnce => "avro-alo",
            Contender::AvroExactlyOnce => "avro-eos",
        }
    }
}

/// The topics of one run.
#[derive(Debug, Clone)]
pub struct Topics {
    pub input: String,
    prefix: String,
}

impl Topics {
    fn new(prefix: &str) -> Self {
        Topics {
            input: format!("{prefix}-input"),
            prefix: prefix.to_string(),
        }
    }
    /// Where contender `c` writes.
    pub fn target(&self, c: Contender) -> String {
        format!("{}-{}-target", self.prefix, c.slug())
    }
    /// The contender's second source topic, fed only in the latency phase.
    pub fn paced(&self, c: Contender) -> String {
        format!("{}-{}-paced", self.prefix, c.slug())
    }
    fn all(&self) -> Vec<String> {
        let mut all = vec![self.input.clone()];
        for c in Contender::ALL {
            all.push(self.paced(c));
            all.push(self.target(c));
        }
        all
    }
}

/// One contender's figures.
#[derive(Debug, Clone)]
pub struct Figures {
    /// Input records that arrived on the target (all of them, or the contender failed).
    pub records: usize,
    pub records_per_sec: f64,
    /// Input key+value bytes per second.
    pub mb_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Paced records the latency figures come from.
    pub paced: usize,
    /// Peak resident set (VmHWM) of the contender's process, in KiB, if it could be read.
    pub peak_rss_kib: Option<u64>,
    /// From SIGTERM to the process's exit (everything had arrived on the target before).
    pub stop_secs: f64,
}

#[derive(Debug, Clone)]
pub struct ContenderResult {
    pub contender: Contender,
    pub outcome: Result<Figures, String>,
}

/// The outcome of `bench pipeline`.
#[derive(Debug, Clone)]
pub struct PipelineBench {
    pub broker: String,
    pub topics: Topics,
    pub partitions: i32,
    pub records: usize,
    pub input_bytes: usize,
    pub latency_rate: u32,
    pub paced: usize,
    pub fetch_wait_ms: Option<u32>,
    pub results: Vec<ContenderResult>,
    /// Where the contenders' configs and logs are (kept when a contender failed, or asked to).
    pub work_dir: Option<PathBuf>,
}

impl PipelineBench {
    fn result(&self, c: Contender) -> Option<&Figures> {
        self.results
            .iter()
            .find(|r| r.contender == c)
            .and_then(|r| r.outcome.as_ref().ok())
    }

    /// (c) records/s over (a) records/s, when both ran.
    pub fn ratio(&self) -> Option<f64> {
        let a = self.result(Contender::CopyLoop)?;
        let c = self.result(Contender::AvroAtLeastOnce)?;
        Some(c.records_per_sec / a.records_per_sec)
    }

    /// The contenders that failed, other than (d) (which may not be implemented yet).
    pub fn failed(&self) -> Vec<Contender> {
        self.results
            .iter()
            .filter(|r| r.outcome.is_err() && r.contender != Contender::AvroExactlyOnce)
            .map(|r| r.contender)
            .collect()
    }

    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} partitions × {} records = {} OrderPlaced v2 records, {:.1} bytes/record (key+value), on {}\n",
            self.partitions,
            self.records / self.partitions.max(1) as usize,
            self.records,
            self.input_bytes as f64 / self.records.max(1) as f64,
            self.broker
        );
        let _ = writeln!(
            s,
            "{:<42} {:>10} {:>7} {:>8} {:>8} {:>12}",
            "contender", "records/s", "MB/s", "p50 ms", "p99 ms", "peak RSS MiB"
        );
        for r in &self.results {
            match &r.outcome {
                Ok(f) => {
                    let rss = f
                        .peak_rss_kib
                        .map_or("?".to_string(), |k| format!("{:.1}", k as f64 / 1024.0));
                    let _ = writeln!(
                        s,
                        "{:<42} {:>10.0} {:>7.1} {:>8.1} {:>8.1} {:>12}",
                        r.contender.label(),
                        f.records_per_sec,
                        f.mb_per_sec,
                        f.p50_ms,
                        f.p99_ms,
                        rss
                    );
                }
                Err(e) => {
                    let _ = writeln!(s, "{:<42} failed: {e}", r.contender.label());
                }
            }
        }
        let _ = writeln!(
            s,
            "\nrecords/s, MB/s: the pre-loaded input drained by each contender alone (own group, own target), \
             records / (first → last arrival on its target, counted by consuming it); MB/s of input key+value bytes."
        );
        let stops: Vec<String> = self
            .results
            .iter()
            .filter_map(|r| {
                let f = r.outcome.as_ref().ok()?;
                Some(format!(
                    "{} {:.1} s",
                    &r.contender.label()[..3],
                    f.stop_secs
                ))
            })
            .collect();
        let _ = writeln!(
            s,
            "exit after SIGTERM (all records already on the target): {}",
            stops.join(", ")
        );
        let fetch = match self.fetch_wait_ms {
            Some(ms) => format!("; every consumer fetch.wait.max.ms={ms}"),
            None => String::new(),
        };
        let _ = writeln!(
            s,
            "latency: a separate paced phase once the backlog is drained (after one warm-up record per partition): {} new \
             records at {}/s into the contender's second source topic, source record timestamp (set at produce, ms) → \
             arrival on its target{fetch}. \
             peak RSS: VmHWM of the contender's process.",
            self.paced, self.latency_rate
        );
        match self.ratio() {
            Some(r) => {
                let _ = write!(s, "ratio: {r:.2}");
            }
            None => {
                let _ = write!(s, "ratio: n/a ((a) or (c) failed)");
            }
        }
        s
    }
}

/// Runs the four contenders; a contender that fails is reported in its row, the others run.
pub fn run(opts: &PipelineOptions) -> Result<PipelineBench, String> {
    if opts.partitions < 1 || opts.records_per_partition < 1 {
        return Err("--partitions and --records must be at least 1".into());
    }
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let prefix = opts
        .topic_prefix
        .clone()
        .unwrap_or_else(|| format!("schemabridge-bench-{}-{stamp}", std::process::id()));
    let topics = Topics::new(&prefix);
    let started = Instant::now();
    let progress = |what: &str| eprintln!("[{:6.1} s] {what}", started.elapsed().as_secs_f64());
    let work_dir =
        std::env::temp_dir().join(format!("schemabridge-bench-{}-{stamp}", std::process::id()));
    std::fs::create_dir_all(&work_dir)
        .map_err(|e| format!("cannot create {}: {e}", work_dir.display()))?;

    // The broker: on the mock cluster (in this process; contenders connect to its ports) each
    // contender gets a fresh cluster with the input loaded anew, because the mock's fetch path
    // slows down as its logs grow (a linear message-set search), which would favour whoever runs
    // first. On a real broker the topics are shared and each contender has its own target.
    let (broker, fetch_wait_ms) = match &opts.bootstrap_servers {
        Some(b) => {
            create_topics(b, &topics.all(), opts.partitions)?;
            (format!("broker {b}"), opts.fetch_wait_ms)
        }
        None => (
            "librdkafka's mock cluster (in this process, loopback; a fresh one per contender)"
                .to_string(),
            Some(opts.fetch_wait_ms.unwrap_or(MOCK_FETCH_WAIT_MS)),
        ),
    };

    let inputs = Inputs::generate(opts.partitions, opts.records_per_partition)?;
    if opts.bootstrap_servers.is_none() {
        // Key, value, the header and about 20 bytes of record framing per record.
        let per_partition = (inputs.bytes
            + inputs.values.len() * (HEADER.0.len() + HEADER.1.len() + 20))
            / opts.partitions as usize;
        if per_partition > MOCK_PARTITION_BYTES
            || opts.records_per_partition > MOCK_PARTITION_RECORDS
        {
            return Err(format!(
                "{} records ({per_partition} bytes) per partition: the mock cluster keeps only {MOCK_PARTITION_RECORDS} records and {MOCK_PARTITION_BYTES} bytes per partition and drops older ones; use more --partitions or fewer --records",
                opts.records_per_partition
            ));
        }
    }
    write_schema_dir(&work_dir.join("schemas"))?;
    let paced = ((opts.latency_rate as f64 * opts.latency_seconds).round() as usize).max(1);
    let mut shared_loaded = false;
    let mut results = Vec::new();
    for c in Contender::ALL {
        let mut mock = None;
        let bootstrap = match &opts.bootstrap_servers {
            Some(b) => b.clone(),
            None => {
                let m = MockCluster::new(1)
                    .map_err(|e| format!("cannot start the mock cluster: {e}"))?;
                for t in topics.all() {
                    m.create_topic(&t, opts.partitions, 1)
                        .map_err(|e| format!("cannot create topic {t}: {e}"))?;
                }
                let b = m.bootstrap_servers();
                mock = Some(m);
                b
            }
        };
        if mock.is_some() || !shared_loaded {
            inputs.preload(&bootstrap, &topics.input)?;
            shared_loaded = true;
            progress(&format!(
                "{} input records produced to {} on {broker}",
                inputs.values.len(),
                topics.input
            ));
        }
        let paced_producer = bench_producer(&bootstrap, "0")?;
        let env = Env {
            exe: &opts.exe,
            bootstrap: &bootstrap,
            topics: &topics,
            dir: &work_dir,
            partitions: opts.partitions,
            fetch_wait_ms,
            inputs: &inputs,
            paced,
            rate: opts.latency_rate.max(1),
            paced_producer: &paced_producer,
        };
        progress(&format!("{}: running", c.label()));
        let outcome = env.run_contender(c);
        progress(&format!(
            "{}: {}",
            c.label(),
            if outcome.is_ok() { "done" } else { "failed" }
        ));
        results.push(ContenderResult {
            contender: c,
            outcome,
        });
        drop(paced_producer);
        drop(mock);
    }

    let any_failed = results.iter().any(|r| r.outcome.is_err());
    if let Some(bootstrap) = &opts.bootstrap_servers
        && !opts.keep_topics
    {
        delete_topics(bootstrap, &topics.all());
    }
    let work_dir = if any_failed || opts.keep_logs {
        Some(work_dir)
    } else {
        let _ = std::fs::remove_dir_all(&work_dir);
        None
    };
    Ok(PipelineBench {
        broker,
        topics,
        partitions: opts.partitions,
        records: inputs.values.len(),
        input_bytes: inputs.bytes,
        latency_rate: opts.latency_rate,
        paced,
        fetch_wait_ms,
        results,
        work_dir,
    })
}

/// The input: Confluent-framed OrderPlaced v2 records (schema id 2), generated deterministically.
struct Inputs {
    values: Vec<Vec<u8>>,
    partitions: i32,
    /// Key + value bytes of all input records.
    bytes: usize,
}

impl Inputs {
    fn generate(partitions: i32, per_partition: usize) -> Result<Self, String> {
        let v2 = Schema::parse_str(ORDER_V2).map_err(|e| format!("order_v2.avsc: {e}"))?;
        let count = partitions as usize * per_partition;
        let datums = super::random_datums(&v2, count, SEED)?;
        let values: Vec<Vec<u8>> = datums
            .into_iter()
            .map(|d| {
                let mut v = Vec::with_capacity(d.len() + 5);
                wire::write_header(V2_ID, &mut v);
                v.extend(d);
                v
            })
            .collect();
        let bytes = values
            .iter()
            .enumerate()
            .map(|(i, v)| key(INPUT_KEY, i).len() + v.len())
            .sum();
        Ok(Inputs {
            values,
            partitions,
            bytes,
        })
    }

    /// Record `i` goes to partition `i % partitions`, so each partition gets the same count.
    fn partition(&self, i: usize) -> i32 {
        (i % self.partitions as usize) as i32
    }

    fn preload(&self, bootstrap: &str, topic: &str) -> Result<(), String> {
        let producer = bench_producer(bootstrap, "50")?;
        let headers = input_headers();
        for (i, value) in self.values.iter().enumerate() {
            let k = key(INPUT_KEY, i);
            let record = BaseRecord::to(topic)
                .partition(self.partition(i))
                .key(&k[..])
                .payload(&value[..])
                .headers(headers.clone());
            send(&producer, record, topic)?;
        }
        flush(&producer, topic)
    }
}

fn key(prefix: &[u8], i: usize) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend(format!("{i:07}").as_bytes());
    k
}

/// The index in a key made by [`key`] with `prefix`.
fn key_index(prefix: &[u8], key: Option<&[u8]>) -> Option<usize> {
    let rest = key?.strip_prefix(prefix)?;
    std::str::from_utf8(rest).ok()?.parse().ok()
}

fn input_headers() -> OwnedHeaders {
    OwnedHeaders::new().insert(Header {
        key: HEADER.0,
        value: Some(HEADER.1),
    })
}

/// The bench's own producer (input and paced records): idempotent, `linger_ms` as given.
fn bench_producer(bootstrap: &str, linger_ms: &str) -> Result<BaseProducer, String> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", linger_ms)
        .create()
        .map_err(|e| format!("cannot create the bench's producer: {e}"))
}

/// Sends `record`, waiting while librdkafka's queue is full.
fn send<C: ProducerContext>(
    producer: &BaseProducer<C>,
    mut record: BaseRecord<'_, [u8], [u8], C::DeliveryOpaque>,
    topic: &str,
) -> Result<(), String> {
    loop {
        match producer.send(record) {
            Ok(()) => {
                producer.poll(Duration::ZERO);
                return Ok(());
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                producer.poll(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(format!("cannot produce to {topic}: {e}")),
        }
    }
}

fn flush<C: ProducerContext>(producer: &BaseProducer<C>, topic: &str) -> Result<(), String> {
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| format!("cannot flush the records for {topic}: {e}"))
}

/// The static schema directory the gateway contenders read (`registry.static_dir`).
fn write_schema_dir(dir: &Path) -> Result<(), String> {
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    write("order_v1.avsc", ORDER_V1)?;
    write("order_v2.avsc", ORDER_V2)?;
    write(
        "schemas.yaml",
        &format!(
            "schemas:\n  - {{ id: {V1_ID}, subject: {SUBJECT}, version: 1, file: order_v1.avsc }}\n  - {{ id: {V2_ID}, subject: {SUBJECT}, version: 2, file: order_v2.avsc }}\n"
        ),
    )
}

/// Everything a contender run needs.
struct Env<'a> {
    exe: &'a Path,
    bootstrap: &'a str,
    topics: &'a Topics,
    dir: &'a Path,
    partitions: i32,
    fetch_wait_ms: Option<u32>,
    inputs: &'a Inputs,
    paced: usize,
    rate: u32,
    /// One producer for every paced record of the run (linger.ms=0), so that none waits for a
    /// new producer's start-up.
    paced_producer: &'a BaseProducer,
}

impl Env<'_> {
    fn run_contender(&self, c: Contender) -> Result<Figures, String> {
        let group = format!("{}-{}", self.topics.prefix, c.slug());
        let target = self.topics.target(c);
        let paced_topic = self.topics.paced(c);
        let args: Vec<String> = match c {
            Contender::CopyLoop => {
                let mut a: Vec<String> = [
                    "bench",
                    "copy-loop",
                    "--bootstrap-servers",
                    self.bootstrap,
                    "--from",
                    &self.topics.input,
                    "--from",
                    &paced_topic,
                    "--to",
                    &target,
                    "--group",
                    &group,
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                if let Some(ms) = self.fetch_wait_ms {
                    a.extend(["--fetch-wait-ms".to_string(), ms.to_string()]);
                }
                a
            }
            _ => {
                let text = self.gateway_config(c, &group, &paced_topic, &target);
                // Checked here, so that a bad config is a bench bug named as such.
                Config::parse(&text).map_err(|e| format!("bench config for {}: {e}", c.slug()))?;
                let path = self.dir.join(format!("{}.yaml", c.slug()));
                std::fs::write(&path, text)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                let (config, log) = ("--config".to_string(), "--log-format=text".to_string());
                vec!["run".into(), log, config, path.display().to_string()]
            }
        };

        // One unmeasured record per partition first: a contender's first record from a topic
        // may wait for one-off work (the gateway looks up the topic's route and partition count).
        let warmup = self.partitions as usize;
        let reader = TargetReader::start(
            self.bootstrap,
            &target,
            self.partitions,
            self.fetch_wait_ms,
            self.inputs.values.len(),
            (warmup, self.paced),
        )?;
        let logs = (
            self.dir.join(format!("{}.stdout", c.slug())),
            self.dir.join(format!("{}.stderr", c.slug())),
        );
        let mut child = Contestant::spawn(self.exe, &args, &logs)?;
        let fail =
            |child: &Contestant, why: String| format!("{why} (logs: {})", child.stderr.display());

        let started = Instant::now();
        let step = |what: &str| {
            eprintln!(
                "         {}: {what} after {:.1} s",
                c.slug(),
                started.elapsed().as_secs_f64()
            )
        };
        // Throughput: the pre-loaded input.
        if let Err(e) = wait_for(&reader.input_seen, self.inputs.values.len(), &mut child) {
            return Err(fail(&child, e));
        }
        step("input drained");
        // Latency: paced records into the contender's second source topic.
        let paced_phase = |child: &mut Contestant| {
            self.produce_paced(&paced_topic, 0..warmup, None)?;
            wait_for(&reader.paced_seen, warmup, child)?;
            self.produce_paced(&paced_topic, warmup..warmup + self.paced, Some(self.rate))?;
            wait_for(&reader.paced_seen, warmup + self.paced, child)
        };
        if let Err(e) = paced_phase(&mut child) {
            return Err(fail(&child, e));
        }
        step("paced records arrived; SIGTERM");
        let stopping = Instant::now();
        let status = child.stop()?;
        let stop_secs = stopping.elapsed().as_secs_f64();
        step(&format!("exited ({status})"));
        let arrivals = reader.finish()?;
        if !status.success() {
            return Err(fail(
                &child,
                format!(
                    "exited with {status} after SIGTERM{}",
                    child.last_log_line()
                ),
            ));
        }
        if c == Contender::AvroExactlyOnce && !child.log_mentions("transaction") {
            return Err(fail(
                &child,
                "pipeline.delivery: exactly_once is not in effect in this build (the gateway's log never mentions a transaction; it ran at least once)".into(),
            ));
        }
        let mut figures = arrivals.figures(self.inputs.bytes, child.peak_rss_kib())?;
        figures.stop_secs = stop_secs;
        Ok(figures)
    }

    fn gateway_config(&self, c: Contender, group: &str, paced: &str, target: &str) -> String {
        let value = match c {
            Contender::Passthrough => "{ format: passthrough }".to_string(),
            _ => format!(
                "{{ format: avro, reader: {{ subject: {SUBJECT}, version: 1 }}, on_error: halt }}"
            ),
        };
        let delivery = match c {
            Contender::AvroExactlyOnce => "exactly_once",
            _ => "at_least_once",
        };
        let librdkafka = match self.fetch_wait_ms {
            Some(ms) => format!("\n  librdkafka: {{ fetch.wait.max.ms: \"{ms}\" }}"),
            None => String::new(),
        };
        format!(
            r#"source:
  bootstrap_servers: "{bootstrap}"{librdkafka}
group_id: "{group}"
registry:
  static_dir: "{schemas}"
pipeline:
  delivery: {delivery}
routes:
  - name: bench-{slug}
    source: {{ topics: ["{input}", "{paced}"] }}
    target: "{target}"
    value: {value}
"#,
            bootstrap = self.bootstrap,
            schemas = self.dir.join("schemas").display(),
            slug = c.slug(),
            input = self.topics.input,
        )
    }

    /// Produces paced records `range` at `rate` per second (`None`: at once), each timestamped
    /// when it is handed to librdkafka.
    fn produce_paced(
        &self,
        topic: &str,
        range: std::ops::Range<usize>,
        rate: Option<u32>,
    ) -> Result<(), String> {
        let producer = self.paced_producer;
        let headers = input_headers();
        let start = Instant::now();
        for (n, i) in range.enumerate() {
            if let Some(rate) = rate {
                let due = start + Duration::from_secs_f64(n as f64 / f64::from(rate.max(1)));
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
            }
            let value = &self.inputs.values[i % self.inputs.values.len()];
            let k = key(PACED_KEY, i);
            let record = BaseRecord::to(topic)
                .partition((i % self.partitions as usize) as i32)
                .key(&k[..])
                .payload(&value[..])
                .headers(headers.clone())
                .timestamp(now_ms() as i64);
            send(producer, record, topic)?;
        }
        flush(producer, topic)
    }
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or_default()
}

/// Waits until `seen` reaches `expected`, the contender exits, or it stalls.
fn wait_for(seen: &AtomicU64, expected: usize, child: &mut Contestant) -> Result<(), String> {
    let mut last = seen.load(Ordering::Relaxed);
    let mut since = Instant::now();
    loop {
        let now = seen.load(Ordering::Relaxed);
        if now as usize >= expected {
            return Ok(());
        }
        if let Some(status) = child.exited() {
            return Err(format!(
                "exited with {status} after {now} of {expected} records{}",
                child.last_log_line()
            ));
        }
        if now != last {
            last = now;
            since = Instant::now();
        }
        let limit = if now == 0 {
            START_TIMEOUT
        } else {
            STALL_TIMEOUT
        };
        if since.elapsed() > limit {
            return Err(format!(
                "stalled: {now} of {expected} records arrived, none for {} s",
                limit.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A contender's child process, killed (and reaped) on drop if it was not stopped.
struct Contestant {
    child: Child,
    stderr: PathBuf,
    status: Option<ExitStatus>,
    rss: RssSampler,
}

impl Contestant {
    fn spawn(exe: &Path, args: &[String], logs: &(PathBuf, PathBuf)) -> Result<Self, String> {
        let file =
            |p: &Path| File::create(p).map_err(|e| format!("cannot create {}: {e}", p.display()));
        let child = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(file(&logs.0)?)
            .stderr(file(&logs.1)?)
            .spawn()
            .map_err(|e| format!("cannot start {} {}: {e}", exe.display(), args.join(" ")))?;
        let rss = RssSampler::start(child.id());
        Ok(Contestant {
            child,
            stderr: logs.1.clone(),
            status: None,
            rss,
        })
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// SIGTERM, then waits for the exit (SIGKILL after [`STOP_TIMEOUT`]).
    fn stop(&mut self) -> Result<ExitStatus, String> {
        if let Some(s) = self.exited() {
            return Ok(s);
        }
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run kill -TERM {pid}: {e}"))?;
        if !sent.success() {
            return Err(format!("kill -TERM {pid} failed: {sent}"));
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(s) = self.exited() {
                return Ok(s);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let s = self.child.wait().map_err(|e| e.to_string())?;
                self.status = Some(s);
                return Err(format!(
                    "did not exit within {} s of SIGTERM (killed; logs: {})",
                    STOP_TIMEOUT.as_secs(),
                    self.stderr.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn peak_rss_kib(&self) -> Option<u64> {
        self.rss.peak()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn log_mentions(&self, word: &str) -> bool {
        self.log().to_lowercase().contains(word)
    }

    /// `": <last line of stderr>"`, or nothing when it is empty.
    fn last_log_line(&self) -> String {
        self.log()
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| format!(": {}", l.trim()))
            .unwrap_or_default()
    }
}

impl Drop for Contestant {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Samples VmHWM (peak resident set) of a process from /proc until it exits.
struct RssSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let path = format!("/proc/{pid}/status");
            while !s.load(Ordering::Relaxed) {
                // A zombie (exited, not yet reaped) has no VmHWM line: nothing more to read.
                let Some(kib) = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| vm_hwm_kib(&t))
                else {
                    break;
                };
                p.fetch_max(kib, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        RssSampler {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    fn peak(&self) -> Option<u64> {
        Some(self.peak.load(Ordering::Relaxed)).filter(|k| *k > 0)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// What arrived on a contender's target, recorded by a consumer thread of the bench.
struct Arrivals {
    input: Vec<bool>,
    first: Option<Instant>,
    last: Option<Instant>,
    paced: Vec<bool>,
    latencies_ms: Vec<f64>,
    duplicates: u64,
    unexpected: u64,
    error: Option<String>,
}

impl Arrivals {
    fn figures(self, input_bytes: usize, peak_rss_kib: Option<u64>) -> Result<Figures, String> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let records = self.input.iter().filter(|s| **s).count();
        let paced = self.paced.iter().filter(|s| **s).count();
        if records != self.input.len()
            || paced != self.paced.len()
            || self.unexpected > 0
            || self.duplicates > 0
        {
            return Err(format!(
                "target holds {records} of {} input records and {paced} of {} paced records, {} duplicates, {} records not from the bench",
                self.input.len(),
                self.paced.len(),
                self.duplicates,
                self.unexpected
            ));
        }
        let (Some(first), Some(last)) = (self.first, self.last) else {
            return Err("no record arrived".into());
        };
        let secs = (last - first).as_secs_f64().max(1e-6);
        let rate = records as f64 / secs;
        let mut lat = self.latencies_ms;
        lat.sort_by(f64::total_cmp);
        Ok(Figures {
            records,
            records_per_sec: rate,
            mb_per_sec: rate * input_bytes as f64 / records as f64 / 1e6,
            p50_ms: percentile(&lat, 0.50),
            p99_ms: percentile(&lat, 0.99),
            paced: lat.len(),
            peak_rss_kib,
            stop_secs: 0.0,
        })
    }
}

/// Nearest-rank percentile of sorted `v`.
fn percentile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// Consumes a contender's target from the beginning (assigned, no group) while it runs.
struct TargetReader {
    input_seen: Arc<AtomicU64>,
    paced_seen: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Arrivals>>,
}

impl TargetReader {
    fn start(
        bootstrap: &str,
        topic: &str,
        partitions: i32,
        fetch_wait_ms: Option<u32>,
        inputs: usize,
        (warmup, measured): (usize, usize),
    ) -> Result<Self, String> {
        let paced = warmup + measured;
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", bootstrap)
            .set("group.id", format!("{topic}-bench-reader"))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("isolation.level", "read_committed");
        if let Some(ms) = fetch_wait_ms {
            cfg.set("fetch.wait.max.ms", ms.to_string());
        }
        let consumer: BaseConsumer = cfg
            .create()
            .map_err(|e| format!("cannot create the reader of {topic}: {e}"))?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .map_err(|e| format!("{topic}[{p}]: {e}"))?;
        }
        consumer
            .assign(&tpl)
            .map_err(|e| format!("cannot assign {topic}: {e}"))?;
        let input_seen = Arc::new(AtomicU64::new(0));
        let paced_seen = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (is, ps, st) = (input_seen.clone(), paced_seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut a = Arrivals {
                input: vec![false; inputs],
                first: None,
                last: None,
                paced: vec![false; paced],
                latencies_ms: Vec::with_capacity(measured),
                duplicates: 0,
                unexpected: 0,
                error: None,
            };
            while !st.load(Ordering::Relaxed) {
                let Some(m) = consumer.poll(Duration::from_millis(50)) else {
                    continue;
                };
                let m = match m {
                    Ok(m) => m,
                    Err(e) => {
                        a.error
                            .get_or_insert_with(|| format!("reading the target: {e}"));
                        continue;
                    }
                };
                if let Some(i) = key_index(INPUT_KEY, m.key()).filter(|i| *i < inputs) {
                    let now = Instant::now();
                    a.first.get_or_insert(now);
                    a.last = Some(now);
                    if std::mem::replace(&mut a.input[i], true) {
                        a.duplicates += 1;
                    } else {
                        is.fetch_add(1, Ordering::Relaxed);
                    }
                } else if let Some(i) = key_index(PACED_KEY, m.key()).filter(|i| *i < paced) {
                    let arrived = now_ms();
                    if std::mem::replace(&mut a.paced[i], true) {
                        a.duplicates += 1;
                    } else {
                        if let Some(ts) = m.timestamp().to_millis().filter(|_| i >= warmup) {
                            a.latencies_ms.push(arrived - ts as f64);
                        }
                        ps.fetch_add(1, Ordering::Relaxed);
                    }
                } else {
                    a.unexpected += 1;
                }
            }
            a
        });
        Ok(TargetReader {
            input_seen,
            paced_seen,
            stop,
            thread: Some(thread),
        })
    }

    fn finish(mut self) -> Result<Arrivals, String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join())
            .ok_or_else(|| "the target reader already stopped".to_string())?
            .map_err(|_| "the target reader panicked".to_string())
    }
}

impl Drop for TargetReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Creates those of `topics` that do not exist yet on a broker, with `partitions` each, and
/// checks every one's partition count (a broker without the CreateTopics API, like the mock
/// cluster, needs them created beforehand).
fn create_topics(bootstrap: &str, topics: &[String], partitions: i32) -> Result<(), String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| format!("cannot create a metadata client for {bootstrap}: {e}"))?;
    let partition_count = |t: &str| -> Result<usize, String> {
        let md = consumer
            .fetch_metadata(Some(t), Duration::from_secs(30))
            .map_err(|e| format!("metadata of {t} from {bootstrap}: {e}"))?;
        Ok(md
            .topics()
            .iter()
            .find(|m| m.name() == t && m.error().is_none())
            .map_or(0, |m| m.partitions().len()))
    };
    let mut missing = Vec::new();
    for t in topics {
        if partition_count(t)? == 0 {
            missing.push(t);
        }
    }
    let mut why = String::new();
    if !missing.is_empty() {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .map_err(|e| format!("cannot create an admin client for {bootstrap}: {e}"))?;
        let new: Vec<NewTopic> = missing
            .iter()
            .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
            .collect();
        let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
        match futures::executor::block_on(admin.create_topics(&new, &opts)) {
            Err(e) => why = format!("; creating topics failed: {e}"),
            Ok(rs) => {
                for r in rs {
                    if let Err((name, code)) = r {
                        why = format!("; creating {name} failed: {code}");
                    }
                }
            }
        }
    }
    for t in topics {
        let count = partition_count(t)?;
        if count != partitions as usize {
            return Err(format!(
                "topic {t} has {count} partitions on {bootstrap}, the bench needs {partitions}{why}"
            ));
        }
    }
    Ok(())
}

fn delete_topics(bootstrap: &str, topics: &[String]) {
    let admin: Result<AdminClient<DefaultClientContext>, _> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create();
    let Ok(admin) = admin else { return };
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    if let Err(e) = futures::executor::block_on(admin.delete_topics(&names, &opts)) {
        eprintln!(
            "warning: cannot delete the bench topics {}: {e}",
            names.join(", ")
        );
    }
}

/// What the copy loop (`schemabridge bench copy-loop`) reads and writes.
#[derive(Debug, Clone)]
pub struct CopyLoopOptions {
    pub bootstrap_servers: String,
    pub from: Vec<String>,
    pub to: String,
    pub group: String,
    pub fetch_wait_ms: Option<u32>,
}

/// Counts failed deliveries (the copy loop does no per-record bookkeeping beyond that).
#[derive(Default)]
struct CountFailures(AtomicU64);

impl ClientContext for CountFailures {}

impl ProducerContext for CountFailures {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The reference a gateway is measured against: a minimal rdkafka loop that copies every
/// record's key, value, headers and timestamp to the same partition number of `to`, with no
/// schema work. Producer as the gateway's (idempotent, acks=all, linger.ms=5), batching left to
/// librdkafka; offsets auto-stored and auto-committed. Runs until SIGTERM/SIGINT, then flushes,
/// commits and returns how many records it copied.
pub fn copy_loop(opts: &CopyLoopOptions) -> Result<u64, String> {
    let stop = stop_on_signal()?;
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &opts.bootstrap_servers)
        .set("group.id", &opts.group)
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    if let Some(ms) = opts.fetch_wait_ms {
        cc.set("fetch.wait.max.ms", ms.to_string());
    }
    let consumer: BaseConsumer = cc
        .create()
        .map_err(|e| format!("cannot create the consumer: {e}"))?;
    let producer: BaseProducer<CountFailures> = ClientConfig::new()
        .set("bootstrap.servers", &opts.bootstrap_servers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create_with_context(CountFailures::default())
        .map_err(|e| format!("cannot create the producer: {e}"))?;
    let from: Vec<&str> = opts.from.iter().map(String::as_str).collect();
    consumer
        .subscribe(&from)
        .map_err(|e| format!("cannot subscribe to {}: {e}", from.join(", ")))?;
    let mut copied = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let m = match consumer.poll(Duration::from_millis(100)) {
            None => {
                producer.poll(Duration::ZERO);
                continue;
            }
            Some(Err(e)) => {
                eprintln!("consumer error: {e}");
                continue;
            }
            Some(Ok(m)) => m,
        };
        let mut record: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(&opts.to).partition(m.partition());
        if let Some(k) = m.key() {
            record = record.key(k);
        }
        if let Some(v) = m.payload() {
            record = record.payload(v);
        }
        if let Some(h) = m.headers() {
            record = record.headers(h.detach());
        }
        if let Some(ts) = m.timestamp().to_millis() {
            record = record.timestamp(ts);
        }
        send(&producer, record, &opts.to)?;
        copied += 1;
    }
    flush(&producer, &opts.to)?;
    let failed = producer.context().0.load(Ordering::Relaxed);
    if failed > 0 {
        return Err(format!(
            "{failed} records could not be delivered to {}",
            opts.to
        ));
    }
    match consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing stored since the last auto-commit.
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(copied),
        Err(e) => Err(format!("cannot commit: {e}")),
    }
}

/// A flag set on SIGTERM or SIGINT (handlers installed before this returns).
fn stop_on_signal() -> Result<Arc<AtomicBool>, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready_tx.send(Err(e.to_string()));
                return;
            }
        };
        rt.block_on(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (mut term, mut int) = match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(t), Ok(i)) => (t, i),
                (Err(e), _) | (_, Err(e)) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            flag.store(true, Ordering::Relaxed);
        });
    });
    ready_rx
        .recv()
        .map_err(|_| "the signal thread stopped".to_string())?
        .map_err(|e| format!("cannot listen for SIGTERM: {e}"))?;
    Ok(stop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_vm_hwm_parses() {
        assert_eq!(key_index(INPUT_KEY, Some(&key(INPUT_KEY, 42))), Some(42));
        assert_eq!(key_index(PACED_KEY, Some(&key(INPUT_KEY, 42))), None);
        assert_eq!(key_index(INPUT_KEY, None), None);
        assert_eq!(
            vm_hwm_kib("Name:\tx\nVmHWM:\t   12345 kB\nVmRSS:\t 100 kB\n"),
            Some(12345)
        );
        assert_eq!(vm_hwm_kib("Name:\tx\nState:\tZ (zombie)\n"), None);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn the_gateway_configs_parse() {
        let topics = Topics::new("t");
        let inputs = Inputs {
            values: vec![],
            partitions: 1,
            bytes: 0,
        };
        let env = Env {
            exe: Path::new("schemabridge"),
            bootstrap: "127.0.0.1:9092",
            topics: &topics,
            dir: Path::new("/tmp/x"),
            partitions: 1,
            fetch_wait_ms: Some(10),
            inputs: &inputs,
            paced: 1,
            rate: 1,
            paced_producer: &bench_producer("127.0.0.1:9092", "0").unwrap(),
        };
        for c in &Contender::ALL[1..] {
            let text = env.gateway_config(*c, "g", &topics.paced(*c), &topics.target(*c));
            Config::parse(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", c.slug()));
        }
    }
}
