//! Every metric schemabridge exports, named in this one module (in the manner of vector's
//! `internal_events`): the catalogue (name, type, one-line help, as the README's table and
//! `/metrics`' `# HELP` lines show it) and typed handles the pipeline registers once and then
//! only increments.
//!
//! Owns: metric names, label sets and help texts. Must not: decide when something happens (the
//! pipeline calls in), or keep state beyond the handles.
//!
//! Hot path: a `metrics::counter!` call with labels is a registry lookup (hashing the key) once
//! a recorder is installed. So per-message metrics are handles registered when a route is built
//! (per route), or at first sight (per writer schema id, per dropped field, per partition) by
//! the pipeline, which keeps them; an increment is one atomic add. Handles registered before a
//! recorder is installed are no-ops, so the binary installs the recorder before building the
//! gateway.

use metrics::{Counter, Gauge, Histogram};

/// What kind of Prometheus metric a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Which command exports a metric: `run` (the gateway), `archive`, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exporter {
    Run,
    Archive,
    Both,
}

impl Exporter {
    /// `run` exports it.
    pub fn run(self) -> bool {
        matches!(self, Exporter::Run | Exporter::Both)
    }

    /// `archive` exports it.
    pub fn archive(self) -> bool {
        matches!(self, Exporter::Archive | Exporter::Both)
    }

    /// As the README's table says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Exporter::Run => "run",
            Exporter::Archive => "archive",
            Exporter::Both => "run, archive",
        }
    }
}

/// One exported metric: its name, type, which command exports it, labels and one-line meaning.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub exporter: Exporter,
    pub labels: &'static str,
    pub help: &'static str,
}

const fn m(
    name: &'static str,
    kind: Kind,
    exporter: Exporter,
    labels: &'static str,
    help: &'static str,
) -> Metric {
    Metric {
        name,
        kind,
        exporter,
        labels,
        help,
    }
}

pub const CONSUMED: &str = "schemabridge_consumed_total";
pub const MESSAGES: &str = "schemabridge_messages_total";
pub const FAILURES: &str = "schemabridge_failures_total";
pub const DEAD_LETTERS: &str = "schemabridge_dead_letters_total";
pub const FORWARDED_BY_SCHEMA: &str = "schemabridge_forwarded_by_schema_total";
pub const DROPPED_FIELDS: &str = "schemabridge_dropped_fields_total";
pub const TRANSCODE_SECONDS: &str = "schemabridge_transcode_seconds";
pub const REGISTRY_CACHE_HITS: &str = "schemabridge_registry_cache_hits_total";
pub const REGISTRY_CACHE_MISSES: &str = "schemabridge_registry_cache_misses_total";
pub const REGISTRY_REQUESTS: &str = "schemabridge_registry_requests_total";
pub const REGISTRY_RETRIES: &str = "schemabridge_registry_retries_total";
pub const REGISTRY_OUTAGES: &str = "schemabridge_registry_outages_total";
pub const REGISTRY_PAUSED_SECONDS: &str = "schemabridge_registry_paused_seconds_total";
pub const REGISTRY_AVAILABLE: &str = "schemabridge_registry_available";
pub const PRODUCE_ERRORS: &str = "schemabridge_produce_errors_total";
pub const COMMIT_SECONDS: &str = "schemabridge_commit_seconds";
pub const COMMIT_FAILURES: &str = "schemabridge_commit_failures_total";
pub const TRANSACTION_SECONDS: &str = "schemabridge_transaction_seconds";
pub const TRANSACTION_FAILURES: &str = "schemabridge_transaction_failures_total";
pub const IN_FLIGHT_RECORDS: &str = "schemabridge_in_flight_records";
pub const IN_FLIGHT_BYTES: &str = "schemabridge_in_flight_bytes";
pub const BACKPRESSURE_PAUSES: &str = "schemabridge_backpressure_pauses_total";
pub const CONSUMER_LAG: &str = "schemabridge_consumer_lag";
pub const ASSIGNED_PARTITIONS: &str = "schemabridge_assigned_partitions";
pub const READY: &str = "schemabridge_ready";
pub const ARCHIVE_FILES: &str = "schemabridge_archive_files_total";
pub const ARCHIVE_BYTES: &str = "schemabridge_archive_bytes_total";
pub const ARCHIVE_UPLOAD_SECONDS: &str = "schemabridge_archive_upload_seconds";
pub const ARCHIVE_OPEN_RECORDS: &str = "schemabridge_archive_open_records";

/// Every metric, in the README's order.
pub const CATALOGUE: &[Metric] = &[
    m(
        CONSUMED,
        Kind::Counter,
        Exporter::Both,
        "route",
        "messages consumed from the route's source topics",
    ),
    m(
        MESSAGES,
        Kind::Counter,
        Exporter::Both,
        "route, outcome",
        "messages dealt with, by outcome: `forwarded`, `dead_lettered`, `skipped`; an archive: `archived` (in a file once it is visible), `dead_lettered`, `skipped`, `tombstone` (no value to write)",
    ),
    m(
        FAILURES,
        Kind::Counter,
        Exporter::Both,
        "route, kind",
        "messages that could not be resolved, by `schemabridge.error.kind` (whatever the policy did with them)",
    ),
    m(
        DEAD_LETTERS,
        Kind::Counter,
        Exporter::Both,
        "route, kind",
        "messages sent to the dead-letter topic, by `schemabridge.error.kind`",
    ),
    m(
        FORWARDED_BY_SCHEMA,
        Kind::Counter,
        Exporter::Run,
        "route, writer_id, reader_id",
        "forwarded messages by the value's writer and reader schema id (`none`: passthrough or tombstone)",
    ),
    m(
        DROPPED_FIELDS,
        Kind::Counter,
        Exporter::Run,
        "route, part, field",
        "messages in which a writer field the reader does not have held data (the lossy guard; whatever `on_lossy` did)",
    ),
    m(
        TRANSCODE_SECONDS,
        Kind::Histogram,
        Exporter::Run,
        "route",
        "time to resolve a message's key and value, sampled: every 64th message, cache hits only",
    ),
    m(
        REGISTRY_CACHE_HITS,
        Kind::Counter,
        Exporter::Both,
        "",
        "key/value resolutions answered from the schema and plan caches, without asking the registry",
    ),
    m(
        REGISTRY_CACHE_MISSES,
        Kind::Counter,
        Exporter::Both,
        "",
        "key/value resolutions that asked the schema registry for a writer schema (however fast it answered, or however long it was down)",
    ),
    m(
        REGISTRY_REQUESTS,
        Kind::Counter,
        Exporter::Both,
        "outcome",
        "requests to the Confluent schema registry, by outcome: `ok`, `not_found`, `transient_error` (retried: unreachable, TLS, 5xx, timeout), `permanent_error` (422, unsupported schema type)",
    ),
    m(
        REGISTRY_RETRIES,
        Kind::Counter,
        Exporter::Both,
        "",
        "registry requests that failed transiently (unavailable, 5xx, timeout) and were retried",
    ),
    m(
        REGISTRY_OUTAGES,
        Kind::Counter,
        Exporter::Both,
        "",
        "times the partitions were paused because the registry did not answer for a second",
    ),
    m(
        REGISTRY_PAUSED_SECONDS,
        Kind::Counter,
        Exporter::Both,
        "",
        "whole seconds spent paused on registry outages (added when an outage ends)",
    ),
    m(
        REGISTRY_AVAILABLE,
        Kind::Gauge,
        Exporter::Both,
        "",
        "0 while the pipeline is paused on a registry outage, else 1",
    ),
    m(
        PRODUCE_ERRORS,
        Kind::Counter,
        Exporter::Run,
        "",
        "records the producer reported as not delivered",
    ),
    m(
        COMMIT_SECONDS,
        Kind::Histogram,
        Exporter::Run,
        "",
        "at-least-once: duration of synchronous offset commits (revokes)",
    ),
    m(
        COMMIT_FAILURES,
        Kind::Counter,
        Exporter::Run,
        "",
        "at-least-once: offset commits that failed (the next one covers them)",
    ),
    m(
        TRANSACTION_SECONDS,
        Kind::Histogram,
        Exporter::Run,
        "",
        "exactly-once: duration of a transaction commit (offsets + commit)",
    ),
    m(
        TRANSACTION_FAILURES,
        Kind::Counter,
        Exporter::Run,
        "",
        "exactly-once: transaction commits that failed (aborted and consumed again, or fatal)",
    ),
    m(
        IN_FLIGHT_RECORDS,
        Kind::Gauge,
        Exporter::Run,
        "",
        "records produced and not yet acknowledged (exactly-once: in the open transaction)",
    ),
    m(
        IN_FLIGHT_BYTES,
        Kind::Gauge,
        Exporter::Run,
        "",
        "bytes (keys + values) of those records",
    ),
    m(
        BACKPRESSURE_PAUSES,
        Kind::Counter,
        Exporter::Run,
        "",
        "times the partitions were paused because the target had no capacity for 500 ms",
    ),
    m(
        CONSUMER_LAG,
        Kind::Gauge,
        Exporter::Both,
        "topic, partition",
        "per assigned source partition, last stable offset minus committed offset (librdkafka statistics, every `statistics.interval.ms`); 0 once the partition is no longer assigned here",
    ),
    m(
        ASSIGNED_PARTITIONS,
        Kind::Gauge,
        Exporter::Both,
        "",
        "source partitions assigned to this replica",
    ),
    m(
        READY,
        Kind::Gauge,
        Exporter::Both,
        "",
        "1 when `/readyz` answers 200, else 0",
    ),
    m(
        ARCHIVE_FILES,
        Kind::Counter,
        Exporter::Archive,
        "route",
        "files that became visible in the archive's store (complete, named by their offsets)",
    ),
    m(
        ARCHIVE_BYTES,
        Kind::Counter,
        Exporter::Archive,
        "route",
        "bytes of those files",
    ),
    m(
        ARCHIVE_UPLOAD_SECONDS,
        Kind::Histogram,
        Exporter::Archive,
        "route",
        "time to finish a file and store it (one PUT, or a multipart upload)",
    ),
    m(
        ARCHIVE_OPEN_RECORDS,
        Kind::Gauge,
        Exporter::Archive,
        "route",
        "records in open files: consumed, not yet in a visible file, their offsets not committed",
    ),
];

/// Registers the help texts with the installed recorder (`# HELP` lines).
pub fn describe() {
    for metric in CATALOGUE {
        match metric.kind {
            Kind::Counter => metrics::describe_counter!(metric.name, metric.help),
            Kind::Gauge => metrics::describe_gauge!(metric.name, metric.help),
            Kind::Histogram => metrics::describe_histogram!(metric.name, metric.help),
        }
    }
}

/// Every how many messages the transcode latency is sampled (a clock read costs about as much
/// as resolving a small record from cache; sampling keeps it off the hot path).
pub const TRANSCODE_SAMPLE_EVERY: u64 = 64;

/// A route's (or an archive route's) failures and dead letters: per failure kind, and the
/// `dead_lettered` outcome.
pub struct Failures {
    by_kind: Vec<(Counter, Counter)>,
    dead_lettered: Counter,
}

impl Failures {
    /// `kinds`: every failure kind, in the order [`Failures::failed`] indexes them.
    fn new(route: &str, kinds: &[&'static str]) -> Self {
        Failures {
            by_kind: kinds
                .iter()
                .map(|kind| {
                    (
                        metrics::counter!(FAILURES, "route" => route.to_string(), "kind" => *kind),
                        metrics::counter!(DEAD_LETTERS, "route" => route.to_string(), "kind" => *kind),
                    )
                })
                .collect(),
            dead_lettered: outcome(route, "dead_lettered"),
        }
    }

    /// A message failed with the kind at `kind` (its index in the route's `kinds`).
    pub fn failed(&self, kind: usize) {
        if let Some((failures, _)) = self.by_kind.get(kind) {
            failures.increment(1);
        }
    }

    /// A message was dead-lettered for the kind at `kind`.
    pub fn dead_lettered(&self, kind: usize) {
        self.dead_lettered.increment(1);
        if let Some((_, dead_letters)) = self.by_kind.get(kind) {
            dead_letters.increment(1);
        }
    }
}

/// The counter of `route`'s messages with `outcome` (MESSAGES).
fn outcome(route: &str, outcome: &'static str) -> Counter {
    metrics::counter!(MESSAGES, "route" => route.to_string(), "outcome" => outcome)
}

/// A route's per-message handles, registered when the route is built.
pub struct RouteEvents {
    pub consumed: Counter,
    pub forwarded: Counter,
    pub skipped: Counter,
    pub transcode: Histogram,
    pub failures: Failures,
}

impl RouteEvents {
    /// `kinds`: every failure kind, in the order [`Failures::failed`] indexes them.
    pub fn new(route: &str, kinds: &[&'static str]) -> Self {
        RouteEvents {
            consumed: metrics::counter!(CONSUMED, "route" => route.to_string()),
            forwarded: outcome(route, "forwarded"),
            skipped: outcome(route, "skipped"),
            transcode: metrics::histogram!(TRANSCODE_SECONDS, "route" => route.to_string()),
            failures: Failures::new(route, kinds),
        }
    }
}

/// An archive route's handles, registered when `schemabridge archive` starts: the gateway's
/// per-route counters (its outcomes are `archived`, `dead_lettered`, `skipped`, `tombstone`)
/// and the files it makes visible.
pub struct ArchiveEvents {
    pub consumed: Counter,
    /// Records in files that became visible (added per file).
    pub archived: Counter,
    pub skipped: Counter,
    pub tombstones: Counter,
    pub files: Counter,
    pub file_bytes: Counter,
    pub upload: Histogram,
    pub open_records: Gauge,
    pub assigned_partitions: Gauge,
    pub failures: Failures,
}

impl ArchiveEvents {
    /// `kinds`: every failure kind, in the order [`Failures::failed`] indexes them.
    pub fn new(route: &str, kinds: &[&'static str]) -> Self {
        let r = || route.to_string();
        ArchiveEvents {
            consumed: metrics::counter!(CONSUMED, "route" => r()),
            archived: outcome(route, "archived"),
            skipped: outcome(route, "skipped"),
            tombstones: outcome(route, "tombstone"),
            files: metrics::counter!(ARCHIVE_FILES, "route" => r()),
            file_bytes: metrics::counter!(ARCHIVE_BYTES, "route" => r()),
            upload: metrics::histogram!(ARCHIVE_UPLOAD_SECONDS, "route" => r()),
            open_records: metrics::gauge!(ARCHIVE_OPEN_RECORDS, "route" => r()),
            assigned_partitions: metrics::gauge!(ASSIGNED_PARTITIONS),
            failures: Failures::new(route, kinds),
        }
    }
}

/// The counter of forwarded messages of `route` written with `writer` and read as `reader`
/// (registered at the first sight of a writer id).
pub fn forwarded_by_schema(route: &str, writer: Option<u32>, reader: Option<u32>) -> Counter {
    let id = |id: Option<u32>| id.map_or_else(|| "none".to_string(), |id| id.to_string());
    metrics::counter!(
        FORWARDED_BY_SCHEMA,
        "route" => route.to_string(),
        "writer_id" => id(writer),
        "reader_id" => id(reader)
    )
}

/// The counter of messages in which `field` of `route`'s `part` was dropped holding data
/// (registered at the first sight of that field).
pub fn dropped_field(route: &str, part: &'static str, field: &str) -> Counter {
    metrics::counter!(
        DROPPED_FIELDS,
        "route" => route.to_string(),
        "part" => part,
        "field" => field.to_string()
    )
}

/// Registry handles, registered once per gateway.
pub struct RegistryEvents {
    /// Registered here so that the series starts at 0; incremented by the registry client.
    pub retries: Counter,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub outages: Counter,
    pub paused_seconds: Counter,
    pub available: Gauge,
}

impl RegistryEvents {
    pub fn new() -> Self {
        let available = metrics::gauge!(REGISTRY_AVAILABLE);
        available.set(1.0);
        RegistryEvents {
            retries: metrics::counter!(REGISTRY_RETRIES),
            cache_hits: metrics::counter!(REGISTRY_CACHE_HITS),
            cache_misses: metrics::counter!(REGISTRY_CACHE_MISSES),
            outages: metrics::counter!(REGISTRY_OUTAGES),
            paused_seconds: metrics::counter!(REGISTRY_PAUSED_SECONDS),
            available,
        }
    }

    /// Counts one key/value resolution: a cache miss when it asked the registry for a schema.
    pub fn resolved(&self, asked_registry: bool) {
        if asked_registry {
            self.cache_misses.increment(1);
        } else {
            self.cache_hits.increment(1);
        }
    }
}

impl Default for RegistryEvents {
    fn default() -> Self {
        Self::new()
    }
}

/// The registry client's handles: one counter per request outcome, registered (all four, so
/// each series starts at 0) at the client's first request.
pub struct RegistryRequestEvents {
    pub ok: Counter,
    pub not_found: Counter,
    pub transient_error: Counter,
    pub permanent_error: Counter,
}

impl RegistryRequestEvents {
    pub fn new() -> Self {
        let outcome =
            |outcome: &'static str| metrics::counter!(REGISTRY_REQUESTS, "outcome" => outcome);
        RegistryRequestEvents {
            ok: outcome("ok"),
            not_found: outcome("not_found"),
            transient_error: outcome("transient_error"),
            permanent_error: outcome("permanent_error"),
        }
    }
}

impl Default for RegistryRequestEvents {
    fn default() -> Self {
        Self::new()
    }
}

/// The delivery modes' handles, registered once per gateway.
pub struct DeliveryEvents {
    pub produce_errors: Counter,
    pub commit_seconds: Histogram,
    pub commit_failures: Counter,
    pub transaction_seconds: Histogram,
    pub transaction_failures: Counter,
    pub in_flight_records: Gauge,
    pub in_flight_bytes: Gauge,
}

impl DeliveryEvents {
    pub fn new() -> Self {
        DeliveryEvents {
            produce_errors: metrics::counter!(PRODUCE_ERRORS),
            commit_seconds: metrics::histogram!(COMMIT_SECONDS),
            commit_failures: metrics::counter!(COMMIT_FAILURES),
            transaction_seconds: metrics::histogram!(TRANSACTION_SECONDS),
            transaction_failures: metrics::counter!(TRANSACTION_FAILURES),
            in_flight_records: metrics::gauge!(IN_FLIGHT_RECORDS),
            in_flight_bytes: metrics::gauge!(IN_FLIGHT_BYTES),
        }
    }

    /// The in-flight gauges (set when the delivery mode is serviced, not per message).
    pub fn in_flight(&self, records: usize, bytes: usize) {
        self.in_flight_records.set(records as f64);
        self.in_flight_bytes.set(bytes as f64);
    }
}

impl Default for DeliveryEvents {
    fn default() -> Self {
        Self::new()
    }
}

/// The consumer's handles: commit callbacks, pauses, assignment, and consumer lag per partition
/// (from librdkafka's statistics; registered at first sight of a partition).
pub struct SourceEvents {
    pub commit_failures: Counter,
    pub backpressure_pauses: Counter,
    pub assigned_partitions: Gauge,
    lag: ConsumerLag,
}

impl SourceEvents {
    pub fn new() -> Self {
        SourceEvents {
            commit_failures: metrics::counter!(COMMIT_FAILURES),
            backpressure_pauses: metrics::counter!(BACKPRESSURE_PAUSES),
            assigned_partitions: metrics::gauge!(ASSIGNED_PARTITIONS),
            lag: ConsumerLag::default(),
        }
    }

    /// Publishes one statistics report (see [`ConsumerLag::report`]).
    pub fn consumer_lag(&self, lags: &[(&str, i32, i64)]) {
        self.lag.report(lags);
    }
}

impl Default for SourceEvents {
    fn default() -> Self {
        Self::new()
    }
}

/// Consumer lag per partition (registered at first sight of a partition).
#[derive(Default)]
pub struct ConsumerLag(std::sync::Mutex<Vec<(String, i32, Gauge)>>);

impl ConsumerLag {
    /// Publishes one statistics report: `lags` holds (topic, partition, lag) for the partitions
    /// whose lag librdkafka knows; every partition seen before and absent now is set to 0 (it is
    /// no longer consumed here, so its lag is another replica's to report).
    pub fn report(&self, lags: &[(&str, i32, i64)]) {
        let mut known = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for (topic, partition, gauge) in known.iter() {
            let lag = lags
                .iter()
                .find(|(t, p, _)| t == topic && p == partition)
                .map_or(0, |(_, _, lag)| *lag);
            gauge.set(lag as f64);
        }
        for &(topic, partition, lag) in lags {
            if !known.iter().any(|(t, p, _)| t == topic && *p == partition) {
                let gauge = metrics::gauge!(
                    CONSUMER_LAG,
                    "topic" => topic.to_string(),
                    "partition" => partition.to_string()
                );
                gauge.set(lag as f64);
                known.push((topic.to_string(), partition, gauge));
            }
        }
    }
}
