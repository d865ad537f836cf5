//! Kafka for tests: librdkafka's mock cluster, plus produce/consume helpers and a gateway runner.

use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use schemabridge::config::Config;
use schemabridge::pipeline::{Gateway, GatewayError, RunSummary};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A mock cluster with topics created up front.
pub struct Cluster {
    pub mock: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    pub bootstrap: String,
}

impl Cluster {
    pub fn start(topics: &[(&str, i32)]) -> Cluster {
        let mock = MockCluster::new(1).expect("mock cluster");
        for (topic, partitions) in topics {
            mock.create_topic(topic, *partitions, 1)
                .expect("create topic");
        }
        let bootstrap = mock.bootstrap_servers();
        Cluster { mock, bootstrap }
    }

    /// Produces each input and waits for its ack; returns (partition, offset) per input.
    pub async fn produce(&self, topic: &str, inputs: &[Input]) -> Vec<(i32, i64)> {
        produce_to(&self.bootstrap, topic, inputs).await
    }

    /// Consumes `topics` from the beginning with a fresh group until `expected` messages arrived
    /// (then waits `settle` more to catch extras) or `timeout` passes.
    pub async fn consume(
        &self,
        topics: &[&str],
        expected: usize,
        timeout: Duration,
        settle: Duration,
    ) -> Vec<Received> {
        let group = format!("test-reader-{}", unique());
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", &group)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        consumer.subscribe(topics).expect("subscribe");
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
                Ok(Err(e)) => panic!("consume error: {e}"),
                Ok(Ok(m)) => {
                    out.push(Received {
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
                    });
                    if out.len() >= expected && settle_until.is_none() {
                        settle_until = Some(Instant::now() + settle);
                    }
                }
            }
        }
        out
    }

    /// The group's committed offset per partition of `topic` (`None`: nothing committed).
    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
        committed_on(&self.bootstrap, group, topic, partitions)
    }
}

/// An idempotent producer for test input on any cluster.
pub fn idempotent_producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .expect("producer")
}

/// The record for `input` (partition, key, value, headers, timestamp), to `topic`.
pub fn record<'a>(topic: &'a str, input: &'a Input) -> FutureRecord<'a, [u8], [u8]> {
    let mut record: FutureRecord<'_, [u8], [u8]> =
        FutureRecord::to(topic).partition(input.partition);
    if let Some(k) = &input.key {
        record = record.key(k);
    }
    if let Some(v) = &input.value {
        record = record.payload(v);
    }
    if !input.headers.is_empty() {
        let mut h = OwnedHeaders::new();
        for (k, v) in &input.headers {
            h = h.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        record = record.headers(h);
    }
    if let Some(ts) = input.timestamp {
        record = record.timestamp(ts);
    }
    record
}

/// One message to produce.
#[derive(Clone, Debug, Default)]
pub struct Input {
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub timestamp: Option<i64>,
}

/// One consumed message, owned.
#[derive(Clone, Debug)]
pub struct Received {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub timestamp: Option<i64>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// A running gateway.
pub struct Running {
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<RunSummary, GatewayError>>,
}

impl Running {
    pub fn start(config: Config) -> Running {
        let shutdown = CancellationToken::new();
        let gateway = Gateway::new(config).expect("gateway");
        let task = tokio::spawn(gateway.run(shutdown.clone()));
        Running { shutdown, task }
    }

    /// Asks it to stop and returns how the run ended.
    pub async fn stop(self) -> Result<RunSummary, GatewayError> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("gateway stops within 60 s")
            .expect("gateway task")
    }
}

pub fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A gateway config with one route `source` → `target`; `extra_value` is appended to the route's
/// `value:` block (indented 6 spaces), e.g. "on_error: halt".
pub struct RouteSpec<'a> {
    pub source: &'a str,
    pub target: &'a str,
    pub dlq: &'a str,
    pub reader_subject: &'a str,
    pub reader_version: &'a str,
    pub extra_value: &'a str,
}

impl RouteSpec<'static> {
    /// The reference route: `orders` → `orders-v1`, DLQ `orders-dlq`, reader `orders-value` v1.
    pub const ORDERS: RouteSpec<'static> = RouteSpec {
        source: "orders",
        target: "orders-v1",
        dlq: "orders-dlq",
        reader_subject: "orders-value",
        reader_version: "1",
        extra_value: "",
    };
}

impl RouteSpec<'_> {
    /// The `routes:` block of a config with this one route, named `test`.
    pub fn yaml(&self) -> String {
        let extra = self
            .extra_value
            .lines()
            .map(|l| format!("      {l}\n"))
            .collect::<String>();
        format!(
            r#"routes:
  - name: test
    source: {{ topics: [{source}] }}
    target: {target}
    value:
      format: avro
      reader: {{ subject: {subject}, version: {version} }}
      dlq: {dlq}
{extra}"#,
            source = self.source,
            target = self.target,
            dlq = self.dlq,
            subject = self.reader_subject,
            version = self.reader_version,
        )
    }
}

pub fn config(bootstrap: &str, registry_url: &str, group: &str, route: &RouteSpec<'_>) -> Config {
    let text = format!(
        r#"
source:
  bootstrap_servers: "{bootstrap}"
group_id: {group}
registry:
  url: {registry_url}
  initial_backoff_ms: 10
  max_backoff_ms: 100
pipeline:
  commit_interval_ms: 200
{routes}"#,
        routes = route.yaml(),
    );
    Config::parse(&text).unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"))
}

// ---- Added for tests/faults.rs: clusters with replicas, a long-lived reader, config text. ----

impl Cluster {
    /// A mock cluster of `brokers` brokers whose topics have `replication` replicas (leader
    /// changes need at least 2 of each).
    pub fn start_replicated(brokers: i32, replication: i32, topics: &[(&str, i32)]) -> Cluster {
        let mock = MockCluster::new(brokers).expect("mock cluster");
        for (topic, partitions) in topics {
            mock.create_topic(topic, *partitions, replication)
                .expect("create topic");
        }
        let bootstrap = mock.bootstrap_servers();
        Cluster { mock, bootstrap }
    }

    /// The current leader broker id of each partition of `topic`, from the cluster's metadata.
    pub fn leaders(&self, topic: &str) -> Vec<i32> {
        let consumer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .expect("metadata client");
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        let t = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .expect("topic in metadata");
        let mut out: Vec<(i32, i32)> = t
            .partitions()
            .iter()
            .map(|p| (p.id(), p.leader()))
            .collect();
        out.sort();
        out.into_iter().map(|(_, leader)| leader).collect()
    }
}

/// Converts a consumed message into an owned [`Received`].
pub fn received<M: Message>(m: &M) -> Received {
    Received {
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        headers: m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default(),
        timestamp: m.timestamp().to_millis(),
    }
}

/// A reader of whole topics from the beginning (assigned, no group), kept across the phases of
/// a test: everything it has received so far is in `received`.
pub struct Reader {
    consumer: StreamConsumer,
    pub received: Vec<Received>,
}

impl Reader {
    /// Reads every partition of `topics` (`(name, partitions)`) from the start.
    /// `read_committed`: `isolation.level=read_committed` (records of open or aborted
    /// transactions are never seen); otherwise `read_uncommitted`.
    pub fn new(bootstrap: &str, topics: &[(&str, i32)], read_committed: bool) -> Reader {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", format!("test-reader-{}", unique()))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set(
                "isolation.level",
                if read_committed {
                    "read_committed"
                } else {
                    "read_uncommitted"
                },
            )
            .create()
            .expect("reader");
        let mut tpl = TopicPartitionList::new();
        for (topic, partitions) in topics {
            for p in 0..*partitions {
                tpl.add_partition_offset(topic, p, Offset::Beginning)
                    .expect("partition offset");
            }
        }
        consumer.assign(&tpl).expect("assign");
        Reader {
            consumer,
            received: Vec::new(),
        }
    }

    /// Reads until `done(&received)` holds, then `settle` longer (to catch extras); returns
    /// whether `done` held before `timeout`.
    pub async fn read_until(
        &mut self,
        timeout: Duration,
        settle: Duration,
        mut done: impl FnMut(&[Received]) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        let mut finished = done(&self.received);
        let mut settle_until = finished.then(|| Instant::now() + settle);
        loop {
            let until = settle_until.unwrap_or(deadline).min(deadline);
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return finished;
            }
            match tokio::time::timeout(left, self.consumer.recv()).await {
                Err(_) => {}
                Ok(Err(e)) => eprintln!("reader: consume error (retried): {e}"),
                Ok(Ok(m)) => {
                    self.received.push(received(&m));
                    if !finished && done(&self.received) {
                        finished = true;
                        settle_until = Some(Instant::now() + settle);
                    }
                }
            }
        }
    }
}

/// The YAML text of a one-route gateway config (for the binary, or `Config::parse`).
pub struct ConfigText<'a> {
    pub bootstrap: &'a str,
    pub registry_url: &'a str,
    pub group: &'a str,
    pub route: RouteSpec<'a>,
    /// `at_least_once` or `exactly_once`.
    pub delivery: &'a str,
    /// `registry.timeout_ms`.
    pub registry_timeout_ms: u64,
    /// `source.librdkafka` entries.
    pub source_librdkafka: &'a [(&'a str, &'a str)],
}

impl ConfigText<'_> {
    pub fn yaml(&self) -> String {
        let librdkafka = if self.source_librdkafka.is_empty() {
            String::new()
        } else {
            let entries = self
                .source_librdkafka
                .iter()
                .map(|(k, v)| format!("    {k}: \"{v}\"\n"))
                .collect::<String>();
            format!("  librdkafka:\n{entries}")
        };
        format!(
            r#"source:
  bootstrap_servers: "{bootstrap}"
{librdkafka}group_id: {group}
registry:
  url: {registry}
  timeout_ms: {timeout}
  initial_backoff_ms: 10
  max_backoff_ms: 100
pipeline:
  commit_interval_ms: 200
  delivery: {delivery}
  transaction_ms: 100
  shutdown_timeout_ms: 10000
{routes}"#,
            bootstrap = self.bootstrap,
            group = self.group,
            registry = self.registry_url,
            timeout = self.registry_timeout_ms,
            delivery = self.delivery,
            routes = self.route.yaml(),
        )
    }
}

/// Produces each input to `topic` on any cluster (the mock or an independent broker) and waits
/// for its ack; returns (partition, offset) per input.
pub async fn produce_to(bootstrap: &str, topic: &str, inputs: &[Input]) -> Vec<(i32, i64)> {
    let producer = idempotent_producer(bootstrap);
    let mut futures = Vec::new();
    for input in inputs {
        futures.push(
            producer
                .send_result(record(topic, input))
                .map_err(|(e, _)| e)
                .expect("enqueue"),
        );
    }
    let mut out = Vec::new();
    for f in futures {
        let d = f.await.expect("delivery future").expect("delivered");
        out.push((d.partition, d.offset));
    }
    out
}

/// Creates `topics` (`(name, partitions)`, one replica) with the admin API, for brokers other
/// than the mock (whose topics are created through its own API).
pub async fn create_topics(bootstrap: &str, topics: &[(&str, i32)]) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    let results = admin
        .create_topics(&new, &AdminOptions::new())
        .await
        .expect("create topics");
    for r in results {
        r.unwrap_or_else(|(topic, e)| panic!("create topic {topic}: {e}"));
    }
}

/// A group's committed offset per partition of `topic` on any cluster (`None`: nothing).
pub fn committed_on(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Vec<Option<i64>> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    (0..partitions)
        .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        })
        .collect()
}
