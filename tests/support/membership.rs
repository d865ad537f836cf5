//! A second member of a consumer group, for tests of the gateway's group membership: a plain
//! rdkafka consumer in the test process that records every rebalance it sees and every record
//! it consumes.
//!
//! Owns: one `BaseConsumer` subscribed to the group's topics, polled on a thread of its own
//! until the guard drops (also on panic: the thread is stopped and joined, which closes the
//! consumer); the log of its rebalance callbacks (pre/post_rebalance: what was revoked, what was
//! assigned, errors) and of the (partition, offset, key) of each record it consumed. Must not:
//! start brokers or the gateway, or commit anything itself beyond what its `settings` ask
//! librdkafka to do.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientConfig, Message, TopicPartitionList};

/// One rebalance callback as the member saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RebalanceEvent {
    /// `pre_rebalance(Revoke)`: the partitions taken away (all of them under the eager
    /// protocol, only the moved ones under a cooperative one).
    Revoke(Vec<i32>),
    /// `post_rebalance(Assign)`: the partitions given (all under eager, the added ones under
    /// cooperative).
    Assign(Vec<i32>),
    /// `post_rebalance(Error)`.
    Error(String),
}

/// What the member has seen so far.
#[derive(Default, Debug)]
pub struct Seen {
    pub events: Vec<RebalanceEvent>,
    /// Its assignment after the latest rebalance callback (partition numbers).
    pub assignment: BTreeSet<i32>,
    /// (partition, offset, key) of every record consumed.
    pub records: Vec<(i32, i64, String)>,
}

type Shared = Arc<Mutex<Seen>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Seen> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

fn partitions(tpl: &TopicPartitionList) -> Vec<i32> {
    let mut v: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
    v.sort_unstable();
    v
}

struct Recorder {
    seen: Shared,
}

impl ClientContext for Recorder {}

impl ConsumerContext for Recorder {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            lock(&self.seen)
                .events
                .push(RebalanceEvent::Revoke(partitions(tpl)));
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut seen = lock(&self.seen);
        match rebalance {
            Rebalance::Assign(tpl) => seen.events.push(RebalanceEvent::Assign(partitions(tpl))),
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => seen.events.push(RebalanceEvent::Error(e.to_string())),
        }
        seen.assignment = consumer
            .assignment()
            .map(|a| partitions(&a).into_iter().collect())
            .unwrap_or_default();
    }
}

/// A group member polled on its own thread. Dropping it stops the thread, which closes the
/// consumer (a static member does not leave the group on close; a dynamic one does).
pub struct GroupMember {
    pub seen: Shared,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl GroupMember {
    /// Joins `group` on `bootstrap`, subscribed to `topic`, reading from the earliest offset
    /// where the group has no commit; `settings` are further librdkafka properties (e.g.
    /// `group.instance.id`, `session.timeout.ms`, `group.protocol`).
    pub fn join(bootstrap: &str, group: &str, topic: &str, settings: &[(&str, &str)]) -> Self {
        let seen: Shared = Arc::default();
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false");
        for (k, v) in settings {
            config.set(*k, *v);
        }
        let consumer: BaseConsumer<Recorder> = config
            .create_with_context(Recorder { seen: seen.clone() })
            .expect("group member");
        consumer.subscribe(&[topic]).expect("subscribe");
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::Builder::new()
                .name("group-member".into())
                .spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        match consumer.poll(Duration::from_millis(50)) {
                            Some(Ok(m)) => {
                                let key = String::from_utf8_lossy(m.key().unwrap_or_default());
                                lock(&seen).records.push((
                                    m.partition(),
                                    m.offset(),
                                    key.into_owned(),
                                ));
                            }
                            Some(Err(e)) => eprintln!("group member: consumer error: {e}"),
                            None => {}
                        }
                    }
                    drop(consumer);
                })
                .expect("member thread")
        };
        GroupMember {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    pub fn events(&self) -> Vec<RebalanceEvent> {
        lock(&self.seen).events.clone()
    }

    pub fn assignment(&self) -> BTreeSet<i32> {
        lock(&self.seen).assignment.clone()
    }

    pub fn records(&self) -> Vec<(i32, i64, String)> {
        lock(&self.seen).records.clone()
    }

    /// Stops polling and closes the consumer.
    pub fn close(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for GroupMember {
    fn drop(&mut self) {
        self.shut();
    }
}
