//! Routes at run time: which route a source topic belongs to, its reader schemas, its target
//! partition rule and its metric handles (registered once, not per message).
//!
//! Owns: matching topics to routes, start-up checks of target and dead-letter topics, the
//! partition rule settled once per source topic when it is first assigned (metadata calls are
//! blocking: made on the pipeline thread, never on the async runtime), and the readers a route
//! part holds: selected at start-up (in the target registry in bridge mode), re-selected every
//! `registry.reader_refresh_ms` by a task on the async runtime when they can change (`latest`,
//! `metadata`), and taken up by the pipeline thread between two messages, so each message is
//! resolved with one reader from start to end. Must not: produce or consume.

use std::cell::{Cell, Ref, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::Counter;
use rdkafka::ClientContext;
use rdkafka::client::Client;
use regex::Regex;

use super::GatewayError;
use super::resolve::{FailureKind, ReaderSchema, ResolveError, Resolver};
use crate::config::{Config, PartConfig, Partitioning};
use crate::schema::{Readers, RefreshError, TargetRegistry};
use crate::telemetry::events::{self, RouteEvents};

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Key,
    Value,
}

impl Part {
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Key => "key",
            Part::Value => "value",
        }
    }
}

pub struct PartRuntime {
    pub config: PartConfig,
    /// `None` for passthrough.
    reader: Option<ReaderCell>,
    route: String,
    part: Part,
    /// Per dropped field name (as the plan shares it): its metric handle and the messages
    /// counted this run. Few entries; found by pointer, so no string is hashed per message.
    lossy: Mutex<Vec<(Arc<str>, Counter, u64)>>,
}

/// A part's reader on the pipeline thread, and where the refresh task publishes a new one.
struct ReaderCell {
    current: RefCell<ReaderSchema>,
    /// The `published` generation `current` reflects.
    seen: Cell<u64>,
    published: Arc<Published>,
}

/// A reader the refresh task selected, waiting for the pipeline thread to take it up.
#[derive(Default)]
struct Published {
    /// Bumped after `next` is set: the pipeline thread reads only this, per message.
    generation: AtomicU64,
    next: Mutex<Option<ReaderSchema>>,
}

impl Published {
    fn publish(&self, reader: ReaderSchema) {
        *self.next.lock().unwrap_or_else(|p| p.into_inner()) = Some(reader);
        self.generation.fetch_add(1, Ordering::Release);
    }
}

impl PartRuntime {
    /// The reader to resolve with (`None`: passthrough). Borrowed for one message; call
    /// [`Route::take_up_readers`] between messages, never while a borrow is held.
    pub fn reader(&self) -> Option<Ref<'_, ReaderSchema>> {
        self.reader.as_ref().map(|c| c.current.borrow())
    }

    pub fn has_reader(&self) -> bool {
        self.reader.is_some()
    }

    /// Takes up a reader the refresh task published since the last message (one atomic load
    /// when there is none).
    fn take_up_reader(&self) {
        let Some(cell) = &self.reader else { return };
        let generation = cell.published.generation.load(Ordering::Acquire);
        if generation == cell.seen.get() {
            return;
        }
        let next = cell
            .published
            .next
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(next) = next {
            *cell.current.borrow_mut() = next;
        }
        cell.seen.set(generation);
    }

    /// Counts one message in which `field` was dropped while holding data.
    pub fn record_lossy(&self, field: &Arc<str>) {
        let mut seen = self.lossy.lock().unwrap_or_else(|p| p.into_inner());
        let i = match seen.iter().position(|(f, _, _)| Arc::ptr_eq(f, field)) {
            Some(i) => i,
            None => {
                let counter = events::dropped_field(&self.route, self.part.as_str(), field);
                seen.push((field.clone(), counter, 0));
                seen.len() - 1
            }
        };
        let (_, counter, n) = &mut seen[i];
        counter.increment(1);
        *n += 1;
    }
}

/// Every failure kind, in the order [`kind_index`] numbers them (the route's per-kind handles).
pub const KINDS: [FailureKind; 7] = [
    FailureKind::Framing,
    FailureKind::UnknownSchema,
    FailureKind::InvalidSchema,
    FailureKind::Unresolvable,
    FailureKind::Datum,
    FailureKind::Lossy,
    FailureKind::TooLarge,
];

/// The index of `kind` in [`KINDS`] (exhaustive: a new kind does not compile until listed).
pub fn kind_index(kind: FailureKind) -> usize {
    match kind {
        FailureKind::Framing => 0,
        FailureKind::UnknownSchema => 1,
        FailureKind::InvalidSchema => 2,
        FailureKind::Unresolvable => 3,
        FailureKind::Datum => 4,
        FailureKind::Lossy => 5,
        FailureKind::TooLarge => 6,
    }
}

/// A route's metric handles: registered with the route, plus forwarded messages per value
/// writer schema id, registered at the first sight of an id.
pub struct RouteMetrics {
    pub events: RouteEvents,
    /// Per (value writer id, value reader id): few entries (ids in use; the reader changes only
    /// on a refresh), searched linearly: no hashing per message.
    by_writer: Mutex<Vec<ForwardedBy>>,
}

/// (value writer id, value reader id, their forwarded counter).
type ForwardedBy = (Option<u32>, Option<u32>, Counter);

impl RouteMetrics {
    /// Counts a forwarded message whose value was written with `writer` and resolved to
    /// `reader`.
    pub fn forwarded(&self, route: &str, writer: Option<u32>, reader: Option<u32>) {
        self.events.forwarded.increment(1);
        let mut seen = self.by_writer.lock().unwrap_or_else(|p| p.into_inner());
        match seen.iter().find(|(w, r, _)| *w == writer && *r == reader) {
            Some((_, _, counter)) => counter.increment(1),
            None => {
                let counter = events::forwarded_by_schema(route, writer, reader);
                counter.increment(1);
                seen.push((writer, reader, counter));
            }
        }
    }
}

pub struct Route {
    pub name: String,
    pub target: String,
    partitioning: Partitioning,
    key: PartRuntime,
    value: PartRuntime,
    pub metrics: RouteMetrics,
    target_partitions: i32,
}

impl Route {
    pub fn part(&self, part: Part) -> &PartRuntime {
        match part {
            Part::Key => &self.key,
            Part::Value => &self.value,
        }
    }

    /// Takes up readers the refresh task selected since the last message: call between two
    /// messages (no reader borrowed), so each message sees one reader per part.
    pub fn take_up_readers(&self) {
        self.key.take_up_reader();
        self.value.take_up_reader();
    }

    /// `partitioning: same` needs a target partition for every source partition.
    fn check_same(&self, source: &str, source_partitions: i32) -> Result<(), GatewayError> {
        if source_partitions > self.target_partitions {
            return Err(GatewayError::Startup(format!(
                "route {}: `partitioning: same` needs the target {} to have at least as many partitions as the source {source}, but it has {} and the source has {source_partitions}; use `partitioning: key` or add target partitions",
                self.name, self.target, self.target_partitions
            )));
        }
        Ok(())
    }
}

struct Matcher {
    topics: Vec<String>,
    regex: Option<Regex>,
    /// The pattern as librdkafka's subscription takes it: a leading `^` marks a regex, and its
    /// POSIX-style engine has no `(?:` groups.
    subscription: Option<String>,
}

pub struct RouteTable {
    routes: Vec<Route>,
    matchers: Vec<Matcher>,
    /// Settled source topics: route index and whether partition numbers carry over.
    by_topic: HashMap<String, Option<(usize, bool)>>,
}

impl RouteTable {
    /// Resolves every route's reader schemas (in the target registry in bridge mode), and
    /// starts the task that re-selects those that can change. `None` if shutdown came first.
    pub async fn build(cfg: &Config, resolver: &Resolver) -> Result<Option<Self>, GatewayError> {
        let target = match &cfg.target_registry {
            Some(t) => Some(TargetRegistry::from_config(t)?),
            None => None,
        };
        let readers = resolver.readers(target);
        let mut refresh = Vec::new();
        let mut routes = Vec::new();
        let mut matchers = Vec::new();
        for (i, rc) in cfg.routes.iter().enumerate() {
            let mut parts = Vec::new();
            for (part, pc) in [(Part::Key, &rc.key), (Part::Value, &rc.value)] {
                let at = format!("routes[{i}].{}.reader", part.as_str());
                let reader = match readers.reader(&at, pc).await {
                    Ok(r) => r,
                    Err(ResolveError::Cancelled) => return Ok(None),
                    Err(ResolveError::Failed(f)) => return Err(GatewayError::Startup(f.message)),
                };
                let reader = reader.map(|r| {
                    tracing::info!(route = %rc.name, part = part.as_str(), reader_id = r.id, origin = %r.origin, "reader schema");
                    let published = Arc::new(Published::default());
                    if pc.reader.as_ref().is_some_and(|r| r.source.can_change()) {
                        refresh.push(Refreshed {
                            at: at.clone(),
                            route: rc.name.clone(),
                            part,
                            config: pc.clone(),
                            id: r.id,
                            origin: r.origin.clone(),
                            published: published.clone(),
                        });
                    }
                    ReaderCell {
                        current: RefCell::new(r),
                        seen: Cell::new(0),
                        published,
                    }
                });
                parts.push(PartRuntime {
                    config: pc.clone(),
                    reader,
                    route: rc.name.clone(),
                    part,
                    lossy: Mutex::new(Vec::new()),
                });
            }
            let value = parts
                .pop()
                .ok_or_else(|| GatewayError::Startup("route parts".into()))?;
            let key = parts
                .pop()
                .ok_or_else(|| GatewayError::Startup("route parts".into()))?;
            let kinds = KINDS.map(FailureKind::as_str);
            routes.push(Route {
                name: rc.name.clone(),
                target: rc.target.clone(),
                partitioning: rc.partitioning,
                key,
                value,
                metrics: RouteMetrics {
                    events: RouteEvents::new(&rc.name, &kinds),
                    by_writer: Mutex::new(Vec::new()),
                },
                target_partitions: 0,
            });
            let regex = match &rc.source.topic_regex {
                Some(re) => Some(Regex::new(&format!("^(?:{re})$")).map_err(|e| {
                    GatewayError::Startup(format!("routes[{i}].source.topic_regex: {e}"))
                })?),
                None => None,
            };
            matchers.push(Matcher {
                topics: rc.source.topics.clone(),
                regex,
                subscription: rc.source.topic_regex.as_ref().map(|re| format!("^({re})$")),
            });
        }
        if !refresh.is_empty() {
            let every = Duration::from_millis(cfg.registry.reader_refresh_ms);
            tokio::spawn(refresh_readers(readers, refresh, every));
        }
        Ok(Some(RouteTable {
            routes,
            matchers,
            by_topic: HashMap::new(),
        }))
    }

    /// Per `route: part.field`, the messages in which that dropped field held data.
    pub fn lossy_summary(&self) -> std::collections::BTreeMap<String, u64> {
        let mut out = std::collections::BTreeMap::new();
        for route in &self.routes {
            for part in [&route.key, &route.value] {
                let seen = part.lossy.lock().unwrap_or_else(|p| p.into_inner());
                for (field, _, n) in seen.iter() {
                    // Plans for different writer schemas may drop the same field: add them up.
                    *out.entry(format!("{}: {}.{field}", route.name, part.part.as_str()))
                        .or_default() += *n;
                }
            }
        }
        out
    }

    /// Topic names and `^regex` patterns for `subscribe`.
    pub fn subscription(&self) -> Vec<String> {
        let mut out = Vec::new();
        for m in &self.matchers {
            out.extend(m.topics.iter().cloned());
            out.extend(m.subscription.iter().cloned());
        }
        out.sort();
        out.dedup();
        out
    }

    /// Fails start-up when a target or dead-letter topic does not exist (schemabridge does not
    /// create topics), or when `partitioning: same` sends a source partition to a target
    /// partition that does not exist; records target partition counts. Blocking metadata calls:
    /// runs on the pipeline thread, never on the async runtime.
    pub fn check_targets<P: ClientContext, S: ClientContext>(
        &mut self,
        target: &Client<P>,
        source: &Client<S>,
    ) -> Result<(), GatewayError> {
        for (route, matcher) in self.routes.iter_mut().zip(&self.matchers) {
            let dlqs = [&route.key, &route.value]
                .into_iter()
                .filter(|p| p.has_reader())
                .filter_map(|p| p.config.dlq.clone());
            let topics: Vec<(&str, String)> = std::iter::once(("target", route.target.clone()))
                .chain(dlqs.map(|t| ("dead-letter", t)))
                .collect();
            for (i, (role, topic)) in topics.into_iter().enumerate() {
                let count = partition_count(target, &topic).map_err(|e| {
                    GatewayError::Startup(format!(
                        "route {}: {role} topic {topic}: {e}",
                        route.name
                    ))
                })?;
                if i == 0 {
                    route.target_partitions = count;
                }
            }
            if route.partitioning == Partitioning::Same {
                for topic in &matcher.topics {
                    let count = partition_count(source, topic).map_err(|e| {
                        GatewayError::Startup(format!(
                            "route {}: source topic {topic}: {e}",
                            route.name
                        ))
                    })?;
                    route.check_same(topic, count)?;
                }
            }
        }
        Ok(())
    }

    /// The route for a newly assigned source topic, and whether its partition numbers carry over
    /// to the target; settled once per topic (a metadata call the first time).
    pub fn settle<C: ClientContext>(
        &mut self,
        topic: &str,
        source: &Client<C>,
    ) -> Result<Option<(usize, bool)>, GatewayError> {
        if let Some(settled) = self.by_topic.get(topic) {
            return Ok(*settled);
        }
        let idx = self.matchers.iter().position(|m| {
            m.topics.iter().any(|t| t == topic)
                || m.regex.as_ref().is_some_and(|r| r.is_match(topic))
        });
        let settled = match idx {
            None => None,
            Some(i) => {
                let source_count = partition_count(source, topic);
                let route = &mut self.routes[i];
                let same = match (route.partitioning, source_count) {
                    (Partitioning::Key, _) => false,
                    (Partitioning::Same, Ok(n)) => {
                        route.check_same(topic, n)?;
                        true
                    }
                    (Partitioning::Same, Err(_)) => true,
                    (Partitioning::Auto, Ok(n)) => n == route.target_partitions,
                    (Partitioning::Auto, Err(e)) => {
                        tracing::warn!(topic, error = %e, "cannot read source partition count; partitioning by key");
                        false
                    }
                };
                tracing::info!(route = %route.name, source = topic, target = %route.target, same_partition = same, "route");
                Some((i, same))
            }
        };
        self.by_topic.insert(topic.to_string(), settled);
        Ok(settled)
    }

    pub fn get(&self, idx: usize) -> &Route {
        &self.routes[idx]
    }
}

fn partition_count<C: ClientContext>(client: &Client<C>, topic: &str) -> Result<i32, String> {
    let md = client
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(|e| format!("cannot read metadata: {e}"))?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| "not in the cluster's metadata".to_string())?;
    if let Some(err) = t.error() {
        return Err(format!(
            "{} (schemabridge does not create topics)",
            rdkafka::error::RDKafkaErrorCode::from(err)
        ));
    }
    Ok(t.partitions().len() as i32)
}

/// Warns when a record the source topics accept may not fit into a target or dead-letter topic
/// or the producer's `message.max.bytes`: such records take the route's error policy (as
/// `too-large`) instead of being forwarded. Best effort: a cluster that does not answer
/// DescribeConfigs (or a topic that does not report `max.message.bytes`) is skipped silently.
/// Runs on a thread of its own, so a cluster that never answers (librdkafka's mock cluster) does
/// not hold up start-up.
pub fn warn_size_limits(
    source: rdkafka::ClientConfig,
    target: rdkafka::ClientConfig,
    routes: &RouteTable,
    producer_max: usize,
) {
    // (route, source topics, target and dead-letter topics)
    let checks: Vec<(String, Vec<String>, Vec<String>)> = routes
        .routes
        .iter()
        .zip(&routes.matchers)
        .map(|(route, matcher)| {
            let targets = std::iter::once(route.target.clone())
                .chain(
                    [&route.key, &route.value]
                        .into_iter()
                        .filter_map(|p| p.config.dlq.clone()),
                )
                .collect();
            (route.name.clone(), matcher.topics.clone(), targets)
        })
        .collect();
    let spawned = std::thread::Builder::new()
        .name("schemabridge-size-check".into())
        .spawn(move || check_size_limits(&source, &target, &checks, producer_max));
    if let Err(e) = spawned {
        tracing::debug!(error = %e, "size-limit check not started");
    }
}

/// A reader that can change, as the refresh task tracks it.
struct Refreshed {
    at: String,
    route: String,
    part: Part,
    config: PartConfig,
    /// The reader the pipeline has (or will take up next).
    id: u32,
    origin: String,
    published: Arc<Published>,
}

/// Every `every`, selects each changing reader again and publishes the ones that changed
/// (logged at INFO, old → new). A registry that cannot answer leaves every reader as it is
/// and is asked again after the registry backoff (doubling, at most `every`); an answer that
/// is not a usable reader (subject gone, no version matches the metadata any more) is logged
/// and asked again at the next refresh. Ends at shutdown, or once the pipeline has dropped
/// its routes.
async fn refresh_readers(readers: Readers, mut parts: Vec<Refreshed>, every: Duration) {
    let backoff = readers.backoff();
    let shutdown = readers.shutdown().clone();
    let mut delay = every;
    let mut retry = backoff.initial;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        if parts.iter().all(|p| Arc::strong_count(&p.published) == 1) {
            return; // the pipeline is gone
        }
        let mut unavailable = false;
        for p in &mut parts {
            match readers.refresh(&p.at, &p.config, p.id).await {
                Ok(None) => {}
                Ok(Some(new)) => {
                    tracing::info!(
                        route = %p.route, part = p.part.as_str(), old_reader_id = p.id,
                        old_origin = %p.origin, reader_id = new.id, origin = %new.origin,
                        "reader schema changed: {} -> {}; messages from now on are framed with {}", p.id, new.id, new.id
                    );
                    p.id = new.id;
                    p.origin = new.origin.clone();
                    p.published.publish(new);
                }
                Err(RefreshError::Cancelled) => return,
                Err(RefreshError::Unavailable(e)) => {
                    unavailable = true;
                    tracing::warn!(route = %p.route, part = p.part.as_str(), reader_id = p.id, error = %e, retry_in = ?retry.min(every), "reader refresh failed (registry unavailable); keeping the current reader");
                }
                Err(RefreshError::Failed(e)) => {
                    tracing::warn!(route = %p.route, part = p.part.as_str(), reader_id = p.id, error = %e, "reader refresh found no usable reader; keeping the current one until the next refresh");
                }
            }
        }
        if unavailable {
            delay = retry.min(every);
            retry = (retry * 2).min(backoff.max);
        } else {
            delay = every;
            retry = backoff.initial;
        }
    }
}

fn check_size_limits(
    source: &rdkafka::ClientConfig,
    target: &rdkafka::ClientConfig,
    checks: &[(String, Vec<String>, Vec<String>)],
    producer_max: usize,
) {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    let limits = |cfg: &rdkafka::ClientConfig, topics: &[&str]| -> Vec<(String, usize)> {
        let Ok(admin) = cfg.create::<AdminClient<DefaultClientContext>>() else {
            return Vec::new();
        };
        let specs: Vec<ResourceSpecifier<'_>> =
            topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
        let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(5)));
        let Ok(results) = futures::executor::block_on(admin.describe_configs(&specs, &opts)) else {
            return Vec::new();
        };
        results
            .into_iter()
            .zip(topics)
            .filter_map(|(r, t)| {
                let value = r.ok()?.get("max.message.bytes")?.value.clone()?;
                Some((t.to_string(), value.parse().ok()?))
            })
            .collect()
    };
    for (route, sources, targets) in checks {
        let sources: Vec<&str> = sources.iter().map(String::as_str).collect();
        let Some((source_topic, source_max)) =
            limits(source, &sources).into_iter().max_by_key(|(_, n)| *n)
        else {
            continue;
        };
        let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
        let target_limits = limits(target, &targets);
        let smallest = target_limits
            .iter()
            .map(|(t, n)| (t.as_str(), *n))
            .chain(std::iter::once((
                "the producer's message.max.bytes",
                producer_max,
            )))
            .min_by_key(|(_, n)| *n);
        if let Some((what, n)) = smallest
            && n < source_max
        {
            tracing::warn!(
                route = %route,
                "source topic {source_topic} accepts records up to {source_max} bytes, but {what} takes only {n}: larger records take the route's error policy as `too-large`"
            );
        }
    }
}
