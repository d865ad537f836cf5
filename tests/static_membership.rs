//! Static group membership (`group_instance_id`, librdkafka `group.instance.id`, KIP-345): a
//! gateway restarted within the session timeout gets its partitions back without a rebalance.
//!
//! The group has two members: the real `schemabridge run` process and a plain rdkafka consumer
//! in the test ("B", `support::membership::GroupMember`) that records every rebalance callback
//! it gets and every record it consumes. Input is spread over 4 source partitions in two
//! phases: phase 1 once both members hold partitions; then the gateway is stopped with SIGTERM
//! and started again at once with the same config (its rejoin reaches the broker well inside
//! the session timeout); then phase 2. The gateway's partitions in a phase are the source
//! partitions whose records it forwarded to the target (keys kept); B's are those it consumed.
//! Every input key is accounted for: on the target (v1-framed, same partition, same order id)
//! or consumed by B.
//!
//! - Static (`group_instance_id: gw-0`, B static too): B sees no revoke and no assign from the
//!   end of phase 1 to the end of phase 2, and each member forwards/consumes phase 2 on exactly
//!   the partitions it had in phase 1.
//! - Control (no `group_instance_id`): the gateway leaves the group on SIGTERM and joins again
//!   as a new member, so B sees partitions revoked or assigned: the static assertions can fail.
//!
//! Brokers and protocols (measured 2026-11-25):
//! - tansu 0.6 (`support::tansu`), classic protocol (librdkafka's default): implements static
//!   membership only in part, and not reliably. A static member's JoinGroup and SyncGroup are
//!   each held ~3 s (its `PAUSE_MS`). The gateway test passed 10 of 15 runs; in the others the
//!   first run's consumer close hung past the shutdown timeout, B was revoked and the group
//!   never formed again within 60 s. Two plain rdkafka consumers (no gateway) doing the same
//!   restart: B was revoked and re-assigned and the restarted member waited 29 s for its
//!   partitions. So the tansu tests are `#[ignore]`d (run them with `--ignored`).
//! - librdkafka's mock cluster, KIP-848 protocol (`group.protocol: consumer` in
//!   `source.librdkafka`): implements it (a static member's leave keeps its assignment until
//!   the broker's session timeout, 30 s in the mock; a rejoin with the same instance id takes
//!   it back). Its session timeout is the broker's, so no `session.timeout.ms` is set.
//! - librdkafka's mock cluster, classic protocol: does NOT implement it. The group ignores the
//!   instance id: the restarted gateway joins as a third member next to its own ghost, B is
//!   revoked and assigned twice (the join, then the ghost's session timeout) and the gateway
//!   holds only part of its partitions until the ghost expires. That test is `#[ignore]`d.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use apache_avro::Schema;
use schemabridge::wire;
use support::kafka::{Cluster, ConfigText, Input, Reader, RouteSpec, produce_to, unique};
use support::membership::{GroupMember, RebalanceEvent};
use support::orders::{ORDER_V1, ORDER_V2, SplitMix, order_v2};
use support::orders::{decode, encode, framed, order_id, registry_with_orders};
use support::process::{GatewayProcess, scratch_dir};
use support::tansu::Tansu;

const SOURCE: &str = "orders";
const TARGET: &str = "orders-v1";
const DLQ: &str = "orders-dlq";
/// Source (and target) partitions: two members get half each.
const PARTITIONS: i32 = 4;
/// Records per partition per phase.
const PER_PARTITION: usize = 25;
/// Upper bound of every wait (never reached when things work).
const WAIT: Duration = Duration::from_secs(60);

/// Which group protocol the members use.
#[derive(Clone, Copy, Debug)]
enum Protocol {
    /// Classic JoinGroup/SyncGroup (librdkafka's default), with these `session.timeout.ms`
    /// and `heartbeat.interval.ms`.
    Classic {
        session_timeout_ms: u32,
        heartbeat_interval_ms: u32,
    },
    /// KIP-848 (`group.protocol=consumer`); the session timeout is the broker's.
    Consumer,
}

impl Protocol {
    fn librdkafka(&self) -> Vec<(&'static str, String)> {
        match self {
            Protocol::Classic {
                session_timeout_ms,
                heartbeat_interval_ms,
            } => vec![
                ("session.timeout.ms", session_timeout_ms.to_string()),
                ("heartbeat.interval.ms", heartbeat_interval_ms.to_string()),
            ],
            Protocol::Consumer => vec![("group.protocol", "consumer".to_string())],
        }
    }
}

enum BrokerKind {
    Mock,
    Tansu,
}

/// A broker with the source, target and DLQ topics.
enum Broker {
    Mock(Cluster),
    Tansu(Tansu),
}

impl Broker {
    async fn start(kind: BrokerKind) -> Broker {
        let topics = [(SOURCE, PARTITIONS), (TARGET, PARTITIONS), (DLQ, 1)];
        match kind {
            BrokerKind::Mock => Broker::Mock(Cluster::start(&topics)),
            BrokerKind::Tansu => {
                let t = Tansu::start();
                t.create_topics(&topics).await;
                Broker::Tansu(t)
            }
        }
    }

    fn bootstrap(&self) -> &str {
        match self {
            Broker::Mock(c) => &c.bootstrap,
            Broker::Tansu(t) => &t.bootstrap,
        }
    }
}

/// One phase's input: `PER_PARTITION` v2 orders on each partition, keys `{phase}-{i}`.
struct Phase {
    inputs: Vec<Input>,
    /// key → (source partition, order id)
    expected: BTreeMap<String, (i32, String)>,
}

fn phase(name: &str, v2_id: u32, seed: u64) -> Phase {
    let v2 = Schema::parse_str(ORDER_V2).expect("v2");
    let mut rng = SplitMix(seed);
    let mut expected = BTreeMap::new();
    let inputs = (0..PER_PARTITION * PARTITIONS as usize)
        .map(|i| {
            let v = order_v2(i, &mut rng);
            let partition = (i as i32) % PARTITIONS;
            let key = format!("{name}-{i}");
            expected.insert(key.clone(), (partition, order_id(&v)));
            Input {
                partition,
                key: Some(key.into_bytes()),
                value: Some(framed(v2_id, &encode(&v2, v))),
                ..Input::default()
            }
        })
        .collect();
    Phase { inputs, expected }
}

/// Where one phase's records went.
#[derive(Debug)]
struct Placement {
    /// Source partitions whose records the gateway forwarded.
    gateway: BTreeSet<i32>,
    /// Source partitions whose records B consumed.
    member: BTreeSet<i32>,
}

/// What one restart did.
#[derive(Debug)]
struct Outcome {
    before: Placement,
    after: Placement,
    /// B's rebalance callbacks from the end of phase 1 to the end of phase 2.
    during_restart: Vec<RebalanceEvent>,
    /// B's callbacks before that (its join).
    joining: Vec<RebalanceEvent>,
}

/// Reads the target until every key of `phase` is on it or was consumed by `member`, checking
/// each forwarded record's content; returns where the phase's records went.
async fn account(
    reader: &mut Reader,
    member: &GroupMember,
    phase: &Phase,
    what: &str,
) -> Placement {
    let v1 = Schema::parse_str(ORDER_V1).expect("v1");
    let deadline = Instant::now() + WAIT;
    loop {
        let consumed = member.records();
        let by_member: BTreeSet<&str> = consumed.iter().map(|(_, _, k)| k.as_str()).collect();
        let forwarded: BTreeSet<String> = reader
            .received
            .iter()
            .filter_map(|m| m.key.as_deref())
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        let missing: Vec<&String> = phase
            .expected
            .keys()
            .filter(|k| !forwarded.contains(*k) && !by_member.contains(k.as_str()))
            .collect();
        if missing.is_empty() {
            let mut gateway = BTreeSet::new();
            for m in &reader.received {
                let key = String::from_utf8_lossy(m.key.as_deref().expect("key")).into_owned();
                let Some((partition, id)) = phase.expected.get(&key) else {
                    continue;
                };
                assert_eq!(
                    m.partition, *partition,
                    "{what}: {key} on another partition"
                );
                let f = wire::parse(m.value.as_deref().expect("value")).expect("framed");
                assert_eq!(
                    &order_id(&decode(&v1, f.payload)),
                    id,
                    "{what}: {key} content"
                );
                gateway.insert(*partition);
            }
            let mut member_parts = BTreeSet::new();
            for (partition, _, key) in &consumed {
                if let Some((p, _)) = phase.expected.get(key) {
                    assert_eq!(partition, p, "{what}: B got {key} from another partition");
                    member_parts.insert(*p);
                }
            }
            return Placement {
                gateway,
                member: member_parts,
            };
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} of {} records neither forwarded nor consumed by B within {WAIT:?}, e.g. \
             {:?}; B's rebalances: {:?}, its assignment: {:?}",
            missing.len(),
            phase.expected.len(),
            &missing[..missing.len().min(5)],
            member.events(),
            member.assignment()
        );
        reader
            .read_until(Duration::from_millis(200), Duration::ZERO, |_| false)
            .await;
    }
}

/// Waits (bounded by `WAIT`) until `done` holds.
async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The scenario: gateway joins, B joins, phase 1, SIGTERM + restart of the gateway, phase 2.
async fn restart(kind: BrokerKind, protocol: Protocol, statically: bool, name: &str) -> Outcome {
    let dir = scratch_dir(name);
    let broker = Broker::start(kind).await;
    let bootstrap = broker.bootstrap().to_string();
    let (registry, _v1, v2) = registry_with_orders().await;
    let group = format!("static-{}", unique());
    let settings = protocol.librdkafka();
    let source_librdkafka: Vec<(&str, &str)> =
        settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut yaml = ConfigText {
        bootstrap: &bootstrap,
        registry_url: &registry.url,
        group: &group,
        route: RouteSpec {
            source: SOURCE,
            target: TARGET,
            dlq: DLQ,
            reader_subject: "orders-value",
            reader_version: "1",
            extra_value: "",
        },
        delivery: "at_least_once",
        registry_timeout_ms: 5000,
        source_librdkafka: &source_librdkafka,
    }
    .yaml();
    if statically {
        yaml.push_str("group_instance_id: gw-0\n");
    }

    let mut gw = GatewayProcess::start(&dir, 1, &yaml);
    wait_for("the gateway is assigned partitions", || {
        std::fs::read_to_string(&gw.log)
            .unwrap_or_default()
            .contains("partitions assigned")
    })
    .await;
    let mut member_settings = source_librdkafka.clone();
    if statically {
        member_settings.push(("group.instance.id", "b-0"));
    }
    let member = GroupMember::join(&bootstrap, &group, SOURCE, &member_settings);
    wait_for("B holds half the partitions", || {
        member.assignment().len() == (PARTITIONS / 2) as usize
    })
    .await;

    let mut reader = Reader::new(&bootstrap, &[(TARGET, PARTITIONS)], false);
    let one = phase("one", v2, 1);
    produce_to(&bootstrap, SOURCE, &one.inputs).await;
    let before = account(&mut reader, &member, &one, "phase 1").await;
    let joining = member.events();

    let status = gw.terminate(WAIT).await;
    assert!(status.success(), "first run: {status}\n{}", gw.log_tail());
    let mut gw = GatewayProcess::start(&dir, 2, &yaml);
    let two = phase("two", v2, 2);
    produce_to(&bootstrap, SOURCE, &two.inputs).await;
    let after = account(&mut reader, &member, &two, "phase 2").await;
    let during_restart = member.events()[joining.len()..].to_vec();

    let status = gw.terminate(WAIT).await;
    assert!(status.success(), "second run: {status}\n{}", gw.log_tail());
    member.close();
    let outcome = Outcome {
        before,
        after,
        during_restart,
        joining,
    };
    eprintln!("{name}: {outcome:#?}\nlogs in {}", dir.display());
    outcome
}

/// The static-membership claims: no rebalance seen by B, same partitions on both sides.
fn assert_kept(o: &Outcome) {
    let all: BTreeSet<i32> = (0..PARTITIONS).collect();
    assert!(
        !o.joining.is_empty(),
        "B's own join was not recorded: {o:#?}"
    );
    assert!(
        o.before.gateway.is_disjoint(&o.before.member)
            && (&o.before.gateway | &o.before.member) == all,
        "phase 1 split between the gateway and B: {o:#?}"
    );
    assert!(
        o.during_restart.is_empty(),
        "B saw a rebalance while the gateway restarted: {o:#?}"
    );
    assert_eq!(
        o.after.gateway, o.before.gateway,
        "the restarted gateway's partitions: {o:#?}"
    );
    assert_eq!(o.after.member, o.before.member, "B's partitions: {o:#?}");
}

/// The control's claim: B saw the gateway leave or come back.
fn assert_rebalanced(o: &Outcome) {
    assert!(
        !o.during_restart.is_empty(),
        "B saw no rebalance although the gateway left and rejoined: {o:#?}"
    );
}

fn classic_on_tansu() -> Protocol {
    Protocol::Classic {
        session_timeout_ms: 10_000,
        heartbeat_interval_ms: 1_000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "tansu 0.6's static membership is unreliable: 5 of 15 runs the group stalled (see the module doc)"]
async fn static_member_restart_keeps_its_partitions_on_tansu_classic_protocol() {
    let o = restart(BrokerKind::Tansu, classic_on_tansu(), true, "static-tansu").await;
    assert_kept(&o);
}

/// The control of the (ignored) static test on tansu: without `group_instance_id` the same
/// restart rebalances the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the control of an ignored test (tansu's static membership is unreliable)"]
async fn dynamic_member_restart_rebalances_on_tansu_classic_protocol() {
    let o = restart(
        BrokerKind::Tansu,
        classic_on_tansu(),
        false,
        "dynamic-tansu",
    )
    .await;
    assert_rebalanced(&o);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_member_restart_keeps_its_partitions_on_mock_kip848_protocol() {
    let o = restart(BrokerKind::Mock, Protocol::Consumer, true, "static-kip848").await;
    assert_kept(&o);
}

/// The control: without `group_instance_id` the same restart moves partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_member_restart_rebalances_on_mock_kip848_protocol() {
    let o = restart(
        BrokerKind::Mock,
        Protocol::Consumer,
        false,
        "dynamic-kip848",
    )
    .await;
    assert_rebalanced(&o);
}

/// Documents a limitation of librdkafka's mock cluster (librdkafka 2.12.1): its classic
/// protocol group finds members by member id only (`rd_kafka_mock_cgrp_classic_member_add`),
/// so a static member's rejoin is a new member and rebalances the group. Measured: B saw
/// Revoke, Assign, Revoke, Assign during the restart; the gateway first got 1 of its 2
/// partitions, both only after its ghost's session timed out. Passes on a broker with KIP-345
/// (tansu above; Apache Kafka 2.3+).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "librdkafka's mock cluster ignores group.instance.id in classic-protocol groups (no KIP-345): the rejoin rebalances"]
async fn static_member_restart_keeps_its_partitions_on_mock_classic_protocol() {
    let p = Protocol::Classic {
        session_timeout_ms: 10_000,
        heartbeat_interval_ms: 1_000,
    };
    let o = restart(BrokerKind::Mock, p, true, "static-classic-mock").await;
    assert_kept(&o);
}
