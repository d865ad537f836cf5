//! `check --scan-topic`: which writer schema ids are actually on a route's source topics.
//!
//! Owns: reading every partition of the source topics from the beginning to the end as it is
//! now, with assigned partitions (no group join, nothing committed), and counting records per
//! (writer id, message indexes) for each route part, plus those that are not Confluent-framed.
//! Must not: produce, commit, or resolve schemas (the caller does that with the counts).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::Part;
use crate::config::{Config, Format};
use crate::wire::{self, MessageIndexes, SchemaId};

type Counts = BTreeMap<(SchemaId, MessageIndexes), u64>;

/// What the scan found, per (route, part).
#[derive(Debug, Default)]
pub struct Seen {
    ids: HashMap<(String, Part), Counts>,
    unframed: HashMap<(String, Part), u64>,
}

impl Seen {
    pub fn ids(&self, route: &str, part: Part) -> Counts {
        self.ids
            .get(&(route.to_string(), part))
            .cloned()
            .unwrap_or_default()
    }

    pub fn unframed(&self, route: &str, part: Part) -> u64 {
        self.unframed
            .get(&(route.to_string(), part))
            .copied()
            .unwrap_or(0)
    }
}

/// Reads the source topics of `routes` (all when empty) to their current end.
pub fn scan(config: &Config, routes: &[String], timeout: Duration) -> Result<Seen, String> {
    let deadline = Instant::now() + timeout;
    let mut cc = config.consumer_config();
    cc.remove("group.instance.id");
    cc.set(
        "group.id",
        format!("{}-check-{}", config.group_id, std::process::id()),
    )
    .set("enable.partition.eof", "true")
    .set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer = cc.create().map_err(|e| {
        format!(
            "cannot create a consumer: {}",
            crate::config::kafka_error_text(&e, config)
        )
    })?;
    let metadata = consumer
        .fetch_metadata(None, timeout)
        .map_err(|e| format!("cannot read the topic list from the brokers: {e}"))?;

    // Topic -> the route reading it (the config refuses a topic read by two routes).
    let mut route_of: HashMap<String, usize> = HashMap::new();
    for (i, route) in config.routes.iter().enumerate() {
        if !routes.is_empty() && !routes.contains(&route.name) {
            continue;
        }
        let re = match &route.source.topic_regex {
            Some(re) => Some(
                regex::Regex::new(&format!("^(?:{re})$"))
                    .map_err(|e| format!("route {}: topic_regex: {e}", route.name))?,
            ),
            None => None,
        };
        for t in metadata.topics() {
            let listed = route.source.topics.iter().any(|x| x == t.name());
            if listed || re.as_ref().is_some_and(|re| re.is_match(t.name())) {
                route_of.insert(t.name().to_string(), i);
            }
        }
    }
    let mut tpl = TopicPartitionList::new();
    let mut open: HashSet<(String, i32)> = HashSet::new();
    for t in metadata.topics() {
        if route_of.contains_key(t.name()) {
            for p in t.partitions() {
                tpl.add_partition_offset(t.name(), p.id(), Offset::Beginning)
                    .map_err(|e| e.to_string())?;
                open.insert((t.name().to_string(), p.id()));
            }
        }
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;

    let mut seen = Seen::default();
    while !open.is_empty() {
        if Instant::now() >= deadline {
            return Err(format!(
                "the topic scan did not reach the end of {} partition(s), e.g. {:?}",
                open.len(),
                open.iter().next()
            ));
        }
        let Some(result) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let msg = match result {
            Ok(m) => m,
            Err(KafkaError::PartitionEOF(p)) => {
                // The EOF error carries the partition only; the topic is whichever open
                // partition has that number and is at its end, so ask for positions.
                let positions = consumer.position().map_err(|e| e.to_string())?;
                for el in positions.elements() {
                    if el.partition() == p {
                        let (lo, hi) = consumer
                            .fetch_watermarks(el.topic(), p, timeout)
                            .map_err(|e| e.to_string())?;
                        let at_end = match el.offset() {
                            Offset::Offset(o) => o >= hi,
                            _ => hi <= lo,
                        };
                        if at_end {
                            open.remove(&(el.topic().to_string(), p));
                        }
                    }
                }
                continue;
            }
            Err(e) => return Err(format!("reading the source topics: {e}")),
        };
        let Some(&route) = route_of.get(msg.topic()) else {
            continue;
        };
        let route = &config.routes[route];
        for (part, cfg, bytes) in [
            (Part::Key, &route.key, msg.key()),
            (Part::Value, &route.value, msg.payload()),
        ] {
            if cfg.format.is_none() {
                continue;
            }
            let key = (route.name.clone(), part);
            let framed = bytes.map(wire::parse);
            match framed {
                Some(Ok(f)) => {
                    let indexes = match cfg.format {
                        Some(Format::Protobuf) => match wire::parse_message_indexes(f.payload) {
                            Ok((idx, _)) => idx,
                            Err(_) => {
                                *seen.unframed.entry(key).or_default() += 1;
                                continue;
                            }
                        },
                        _ => MessageIndexes::first(),
                    };
                    *seen
                        .ids
                        .entry(key)
                        .or_default()
                        .entry((f.schema_id, indexes))
                        .or_default() += 1;
                }
                // A null key or value is forwarded as it is (a tombstone), not a dead letter.
                None => {}
                Some(Err(_)) => *seen.unframed.entry(key).or_default() += 1,
            }
        }
    }
    Ok(seen)
}
