//! Kafka client settings: the librdkafka properties of the consumer and the producer.
//!
//! Owns: which librdkafka properties schemabridge sets itself (and refuses in a user's
//! `librdkafka` map), and the merge of our settings with the user's for each client. Must not:
//! create clients or connect.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;

use super::{Config, DeliveryMode, KafkaCluster};

/// librdkafka properties schemabridge sets itself because correctness depends on them; a user
/// setting one of them in a `librdkafka` map is an error, not a silent override.
/// Which Kafka client a set of librdkafka properties is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientRole {
    /// Reads the routes' source topics, in the consumer group.
    Consumer,
    /// Writes targets and dead letters.
    Producer,
}

impl ClientRole {
    fn owned_keys(self) -> &'static [&'static str] {
        match self {
            ClientRole::Consumer => OWNED_CONSUMER_KEYS,
            ClientRole::Producer => OWNED_PRODUCER_KEYS,
        }
    }
}

const OWNED_CONSUMER_KEYS: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "group.instance.id",
    "enable.auto.offset.store",
    "enable.auto.commit",
    "auto.commit.interval.ms",
    "isolation.level",
];
const OWNED_PRODUCER_KEYS: &[&str] = &[
    "bootstrap.servers",
    "enable.idempotence",
    "acks",
    "transactional.id",
];

impl Config {
    /// The cluster messages are produced to.
    pub fn target_cluster(&self) -> &KafkaCluster {
        self.target.as_ref().unwrap_or(&self.source)
    }

    /// The librdkafka settings of the client playing `role`.
    pub fn client_config(&self, role: ClientRole) -> ClientConfig {
        match role {
            ClientRole::Consumer => self.consumer_config(),
            ClientRole::Producer => self.producer_config(),
        }
    }

    /// rdkafka consumer settings. Offsets are committed explicitly by the delivery mode (never
    /// automatically), and only committed records of upstream transactions are read.
    pub fn consumer_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in &self.source.librdkafka {
            c.set(k, v);
        }
        c.set("bootstrap.servers", &self.source.bootstrap_servers)
            .set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "false");
        if let Some(id) = &self.group_instance_id {
            c.set("group.instance.id", id);
        }
        if !self.source.librdkafka.contains_key("auto.offset.reset") {
            c.set("auto.offset.reset", "earliest");
        }
        c
    }

    /// rdkafka producer settings: idempotent (per-partition order survives retries), acks=all,
    /// Java-compatible key partitioner; transactional under `delivery: exactly_once`.
    pub fn producer_config(&self) -> ClientConfig {
        let cluster = self.target_cluster();
        let mut c = ClientConfig::new();
        for (k, v) in &cluster.librdkafka {
            c.set(k, v);
        }
        c.set("bootstrap.servers", &cluster.bootstrap_servers)
            .set("enable.idempotence", "true")
            .set("acks", "all");
        if self.pipeline.delivery == DeliveryMode::ExactlyOnce {
            c.set("transactional.id", self.transactional_id());
        }
        if !cluster.librdkafka.contains_key("partitioner") {
            c.set("partitioner", "murmur2_random");
        }
        // schemabridge does not create topics (a typo'd target must not become a new topic).
        if !cluster.librdkafka.contains_key("allow.auto.create.topics") {
            c.set("allow.auto.create.topics", "false");
        }
        if !cluster.librdkafka.contains_key("linger.ms") {
            c.set("linger.ms", "5");
        }
        c
    }

    /// The producer's `message.max.bytes` (librdkafka's default when not set).
    pub fn max_message_bytes(&self) -> usize {
        self.target_cluster()
            .librdkafka
            .get("message.max.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000)
    }

    /// The exactly-once producer's `transactional.id`: `pipeline.transactional_id`, or
    /// `schemabridge-{group_id}-{host}` with the host from `$HOSTNAME` (the pod name in
    /// Kubernetes) or the system's host name: stable across restarts of one replica (so the
    /// restarted one fences its zombie) and distinct between replicas on different hosts.
    pub fn transactional_id(&self) -> String {
        if let Some(id) = &self.pipeline.transactional_id {
            return id.clone();
        }
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.trim().is_empty())
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
                    .filter(|h| !h.is_empty())
            })
            .unwrap_or_else(|| "local".to_string());
        format!("schemabridge-{}-{host}", self.group_id)
    }
}

/// Refuses the keys of `map` that schemabridge owns for any of the `roles` the map configures.
pub(super) fn check_owned_keys(
    at: &str,
    map: &BTreeMap<String, String>,
    roles: &[ClientRole],
    err: &mut impl FnMut(String, String),
) {
    for key in map.keys() {
        if roles.iter().any(|r| r.owned_keys().contains(&key.as_str())) {
            err(
                format!("{at}.{key}"),
                "is set by schemabridge (its delivery guarantees depend on it); remove it".into(),
            );
        }
    }
}
