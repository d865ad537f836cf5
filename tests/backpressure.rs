//! Backpressure: with the target cluster unavailable for 30 s while input keeps arriving, the
//! real binary (bridge mode between two mock clusters) pauses its partitions instead of growing
//! memory, its peak resident memory stays under the bound the README states for its settings,
//! and everything flows once the target is back.

use crate::support;

use std::time::Duration;

use support::kafka::{Cluster, Reader, unique};
use support::orders::{
    assert_at_least_once_in_order, ids_by_partition, registry_with_orders, v2_inputs,
};
use support::process::{GatewayProcess, scratch_dir};

/// The README's bound: `64 MiB + source queued.max.messages.kbytes + 2 × max_in_flight_bytes`.
fn stated_bound_kib(queued_kib: u64, max_in_flight_bytes: u64) -> u64 {
    64 * 1024 + queued_kib + 2 * max_in_flight_bytes / 1024
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_down_for_30_s_pauses_within_the_memory_bound_and_then_everything_flows() {
    let source = Cluster::start(&[("orders", 6)]);
    let target = Cluster::start(&[("orders-v1", 6), ("orders-dlq", 1)]);
    let (registry, _v1, v2_id) = registry_with_orders().await;
    let (inputs, expected) = v2_inputs(60_000, 6, v2_id, 21);
    let group = format!("gw-{}", unique());
    let (queued_kib, max_bytes) = (8 * 1024u64, 4 * 1024 * 1024u64);
    let yaml = format!(
        r#"source:
  bootstrap_servers: "{source}"
  librdkafka: {{ queued.max.messages.kbytes: "{queued_kib}" }}
target:
  bootstrap_servers: "{target}"
group_id: {group}
registry:
  url: {registry}
  initial_backoff_ms: 10
  max_backoff_ms: 100
pipeline:
  commit_interval_ms: 200
  max_in_flight: 100000
  max_in_flight_bytes: {max_bytes}
routes:
  - name: test
    source: {{ topics: [orders] }}
    target: orders-v1
    value:
      format: avro
      reader: {{ subject: orders-value, version: 1 }}
      dlq: orders-dlq
"#,
        source = source.bootstrap,
        target = target.bootstrap,
        registry = registry.url,
    );
    let dir = scratch_dir("backpressure");
    let mut gw = GatewayProcess::start(&dir, 0, &yaml);
    let mut reader = Reader::new(
        &target.bootstrap,
        &[("orders-v1", 6), ("orders-dlq", 1)],
        true,
    );

    source.produce("orders", &inputs[..6000]).await;
    assert!(
        reader
            .read_until(Duration::from_secs(60), Duration::ZERO, |r| r.len() >= 6000)
            .await,
        "the first records flow before the outage\n{}",
        gw.log_tail()
    );

    target.mock.broker_down(1).expect("target down");
    // Input keeps arriving during the outage: 54,000 records (~14 MB) over 30 s.
    for chunk in inputs[6000..].chunks(9000) {
        source.produce("orders", chunk).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let peak_during_outage = vm_hwm_kib(gw.pid());
    target.mock.broker_up(1).expect("target up");

    // Counted by records; duplicates could only end the wait early, and the content check
    // below then names what is missing.
    let arrived = reader
        .read_until(Duration::from_secs(120), Duration::from_secs(2), |r| {
            r.len() >= 60_000
        })
        .await;
    let peak = vm_hwm_kib(gw.pid());
    let status = gw.terminate(Duration::from_secs(30)).await;
    assert!(
        arrived,
        "everything flows once the target is back\n{}",
        gw.log_tail()
    );
    assert!(
        status.success(),
        "clean stop: {status:?}\n{}",
        gw.log_tail()
    );
    assert!(reader.received.iter().all(|m| m.topic == "orders-v1"));
    assert_at_least_once_in_order(&ids_by_partition(&reader.received), &expected);
    let log = std::fs::read_to_string(&gw.log).expect("gateway log");
    assert!(
        log.contains("target has no capacity: partitions paused")
            && log.contains("target has capacity again: partitions resumed"),
        "the gateway paused its partitions during the outage and resumed after\n{log}"
    );
    let bound = stated_bound_kib(queued_kib, max_bytes);
    eprintln!(
        "peak RSS during the outage {peak_during_outage} KiB, whole run {peak} KiB, stated bound {bound} KiB"
    );
    assert!(
        peak <= bound,
        "peak RSS {peak} KiB above the stated bound {bound} KiB"
    );
}
