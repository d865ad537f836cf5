//! `schemabridge archive`: one archive route's source topics into rolling files, exactly once.
//!
//! Owns: the archive's consumer (group `<group_id>-archive-<route>`, eager rebalancing) and its
//! thread, resolving each value to the route's reader with the schema layer (the same
//! `Schemas` caches, `CompiledPlan::apply` and failure kinds as the gateway), the route's
//! error policy (dead letters to the DLQ topic with the gateway's `dlq_headers`, skip, halt),
//! one open file per source partition, file names and the Hive-style layout
//! `<prefix>/topic=<topic>/dt=<YYYY-MM-DD>/<topic>+<partition>+<first>-<last>.<ext>` (date of
//! the record timestamp, UTC), rolling (records, bytes, interval, or a new date), when offsets
//! are committed, and what the archive reports to telemetry (its `ArchiveEvents` handles,
//! consumer lag, liveness from its loop and its uploads' parts, and readiness from its
//! assignment, the registry and failures). Must not: lay out records in a file (`output`
//! formats do), talk to storage other than through [`Store`], or name a metric
//! (`telemetry::events` does).
//!
//! Exactly once into files. A partition has at most one open file at a time; records go into
//! it in offset order and it is uploaded before the next one starts, so the files of a
//! partition are disjoint, increasing offset ranges, each named by its first and last offset.
//! A file becomes visible only complete: it is written to an unlinked spool file (a crash
//! leaves nothing), then stored with one PUT (local: a staged `name#N` renamed into place;
//! S3: a PUT is atomic) or a multipart upload completed only after its last part (S3 never
//! lists an incomplete one). A partition's offset is committed only up to the first offset of
//! its open file (or past everything consumed when none is open): everything below is in a
//! visible file, or in the DLQ (the DLQ producer is flushed before the commit), or skipped.
//! A crash between an upload and its commit leaves a visible file whose records are not
//! committed: so when a partition is assigned, its resume point is max(committed offset, last
//! offset in any listed file of that partition + 1), set on the assignment itself (before any
//! fetch). A record is therefore in exactly one file; dead letters are at-least-once (a crash
//! after a dead letter and before the commit sends it again). On an orderly revoke the open
//! files of the revoked partitions are finished, uploaded and committed inside the rebalance
//! callback, before the new owner can be assigned them (eager protocol: it waits for this
//! member to rejoin); on a lost assignment they are discarded, never uploaded late. Shutdown
//! (SIGTERM) finishes every open file and commits. Leftovers: the local store's staging files
//! are removed at start; S3's incomplete multipart uploads are invisible and need a bucket
//! lifecycle rule (`AbortIncompleteMultipartUpload`) to be reclaimed.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use thiserror::Error;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use super::output::{self, FileFormat, ReaderSchema as OutputSchema, RecordFile};
use super::store::{Store, StoreError};
use super::{ArchiveError, AvroCodec};
use crate::config::{
    ArchiveCodec, ArchiveCompression, ArchiveConfig, ArchiveDictionary, ArchiveFormat,
    ArchiveStatistics, Config, ErrorPolicy, LossyPolicy, Output, RouteConfig,
};
use crate::pipeline::{Outage, block_on, consumer_lags, kind_index, with_statistics};
use crate::registry::{Backoff, SchemaSource};
use crate::schema::{
    CachePolicy, FailureKind, ParsedSchema, PartFailure, ReaderSchema, ResolveError, Schemas,
};
use crate::telemetry::events::{ArchiveEvents, ConsumerLag, RegistryEvents};
use crate::telemetry::health::{self, Health};
use crate::wire::{self, MessageIndexes};

/// How long one poll waits when no message is ready.
const POLL: Duration = Duration::from_millis(50);
/// How long a blocking Kafka call (commit, committed offsets, flush) may take.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);
/// Every how many polls with a message the thread reports it is alive (and on every idle poll).
const HEARTBEAT_EVERY: u32 = 256;

#[derive(Debug, Error)]
pub enum TopicError {
    #[error("{0}")]
    Route(String),
    #[error("start-up: {0}")]
    Startup(String),
    #[error("cannot create the Kafka {what}: {message}")]
    Client { what: &'static str, message: String },
    #[error("route {route}: {source}")]
    Store { route: String, source: StoreError },
    #[error("route {route}: {source}")]
    File { route: String, source: ArchiveError },
    #[error(
        "halted by route {route} at {topic}[{partition}]@{offset}: {reason}; offsets are committed only up to the last file before it"
    )]
    Halted {
        route: String,
        topic: String,
        partition: i32,
        offset: i64,
        reason: String,
    },
    #[error("route {route}: dead letter to {topic}: {message}")]
    DeadLetter {
        route: String,
        topic: String,
        message: String,
    },
    #[error("route {route}: {what}: {source}")]
    Kafka {
        route: String,
        what: &'static str,
        source: Box<KafkaError>,
    },
}

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ArchiveSummary {
    pub consumed: u64,
    /// Records written into files that became visible.
    pub archived: u64,
    pub files: u64,
    pub dead_lettered: u64,
    pub skipped: u64,
    /// Records without a value (nothing to archive).
    pub tombstones: u64,
}

/// The archive route `route` (index into `routes`), or the only archive route when `None`;
/// first, the source settings the archive cannot run with are refused, naming the key.
pub fn pick_route(cfg: &Config, route: Option<&str>) -> Result<usize, TopicError> {
    // The rebalance callback hands partitions over whole (it finishes and commits the revoked
    // partitions' files, then unassigns): an eager assignor only. (The value is not echoed: it
    // is a librdkafka property's.)
    if cfg
        .source
        .librdkafka
        .get("partition.assignment.strategy")
        .is_some_and(|s| s.contains("cooperative"))
    {
        return Err(TopicError::Route(
            "source.librdkafka.partition.assignment.strategy: the archive takes an eager \
             assignor only (range, roundrobin; librdkafka's default): it finishes and commits \
             the revoked partitions' files inside each rebalance. cooperative-sticky is for `run`"
                .to_string(),
        ));
    }
    match route {
        Some(name) => match cfg.routes.iter().position(|r| r.name == name) {
            Some(i) if cfg.routes[i].archive.is_some() => Ok(i),
            Some(i) => Err(TopicError::Route(format!(
                "--route {name}: routes[{i}] has a `target`, not an `archive`"
            ))),
            None => Err(TopicError::Route(format!(
                "--route {name}: no route has that name"
            ))),
        },
        None => {
            let archives: Vec<&str> = cfg
                .routes
                .iter()
                .filter(|r| r.archive.is_some())
                .map(|r| r.name.as_str())
                .collect();
            match archives.as_slice() {
                [name] => pick_route(cfg, Some(name)),
                [] => Err(TopicError::Route(
                    "no route has an `archive` block".to_string(),
                )),
                _ => Err(TopicError::Route(format!(
                    "routes {} are archive routes: pick one with --route NAME (one process per \
                     archive route)",
                    archives.join(", ")
                ))),
            }
        }
    }
}

/// Runs archive route `index` until `shutdown` (then finishes every open file and commits), a
/// halt, or a fatal error.
pub async fn run(
    cfg: Config,
    source: SchemaSource,
    index: usize,
    shutdown: CancellationToken,
) -> Result<ArchiveSummary, TopicError> {
    let route = cfg
        .routes
        .get(index)
        .cloned()
        .ok_or_else(|| TopicError::Route(format!("no routes[{index}]")))?;
    let archive = route
        .archive
        .clone()
        .ok_or_else(|| TopicError::Route(format!("routes[{index}] has no `archive`")))?;
    let format = file_format(&archive)
        .map_err(|why| TopicError::Route(format!("routes[{index}].archive.format: {why}")))?;
    let store = Store::open(&format!("routes[{index}].archive"), &archive).map_err(|source| {
        TopicError::Store {
            route: route.name.clone(),
            source,
        }
    })?;
    let removed = store
        .remove_unfinished()
        .map_err(|source| TopicError::Store {
            route: route.name.clone(),
            source,
        })?;
    if removed > 0 {
        tracing::info!(route = %route.name, removed, "removed unfinished uploads left by an earlier run");
    }
    let schemas = Schemas::new(
        Arc::new(source),
        Backoff::from_config(&cfg.registry),
        CachePolicy {
            capacity: cfg.registry.cache_size,
            not_found_ttl: Duration::from_millis(cfg.registry.not_found_ttl_ms),
        },
        shutdown.clone(),
    );
    let at = format!("routes[{index}].value.reader");
    let reader = match schemas.readers(None).reader(&at, &route.value).await {
        Ok(Some(r)) => r,
        Ok(None) => return Err(TopicError::Route(format!("{at}: required for an archive"))),
        Err(ResolveError::Cancelled) => return Ok(ArchiveSummary::default()),
        Err(ResolveError::Failed(f)) => return Err(TopicError::Startup(f.message)),
    };
    let ParsedSchema::Avro(schema) = &*reader.schema else {
        return Err(TopicError::Route(format!(
            "{at}: an archive writes Avro records: the reader must be an Avro schema"
        )));
    };
    let out_schema = OutputSchema::new(schema.clone()).map_err(|source| TopicError::File {
        route: route.name.clone(),
        source,
    })?;
    // Files hold the reader's binary encoding whatever the route's `output` says.
    let reader = ReaderSchema {
        output: Output::Framed,
        ..reader
    };
    tracing::info!(route = %route.name, reader_id = reader.id, origin = %reader.origin, store = store.url(), "archiving");
    let runtime = Handle::current();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let job = Job {
        cfg,
        route,
        archive,
        format,
        store,
        schemas,
        reader,
        out_schema,
        runtime,
        stop: shutdown,
        last: None,
        health: health::shared(),
        registry: Arc::new(RegistryEvents::new()),
    };
    std::thread::Builder::new()
        .name("schemabridge-archive".into())
        .spawn(move || {
            let _ = done_tx.send(job.run());
        })
        .map_err(|e| TopicError::Startup(format!("cannot start the archive thread: {e}")))?;
    done_rx
        .await
        .unwrap_or_else(|_| Err(TopicError::Startup("the archive thread panicked".into())))
}

/// The output seam's format for the route's `format`/`codec`.
fn file_format(a: &ArchiveConfig) -> Result<FileFormat, String> {
    match a.format {
        ArchiveFormat::Avro => Ok(FileFormat::Avro {
            codec: match a.codec {
                ArchiveCodec::Deflate => AvroCodec::Deflate,
                ArchiveCodec::Null => AvroCodec::Null,
            },
        }),
        ArchiveFormat::Parquet => Ok(FileFormat::Parquet(super::ParquetOptions {
            compression: match a.compression {
                ArchiveCompression::Zstd => super::ParquetCompression::Zstd(
                    a.compression_level.unwrap_or(super::ZSTD_LEVEL),
                ),
                ArchiveCompression::Snappy => super::ParquetCompression::Snappy,
                ArchiveCompression::None => super::ParquetCompression::None,
            },
            row_group_bytes: a.row_group_bytes,
            dictionary: match a.dictionary {
                ArchiveDictionary::Auto => super::ParquetDictionary::Auto,
                ArchiveDictionary::Text => super::ParquetDictionary::Text,
                ArchiveDictionary::All => super::ParquetDictionary::All,
                ArchiveDictionary::None => super::ParquetDictionary::None,
            },
            statistics: match a.statistics {
                ArchiveStatistics::Page => super::ParquetStatistics::Page,
                ArchiveStatistics::RowGroup => super::ParquetStatistics::RowGroup,
                ArchiveStatistics::None => super::ParquetStatistics::None,
            },
            encoding_threads: a.encoding_threads,
        })),
    }
}

struct Job {
    cfg: Config,
    route: RouteConfig,
    archive: ArchiveConfig,
    format: FileFormat,
    store: Store,
    schemas: Schemas,
    reader: ReaderSchema,
    out_schema: Arc<OutputSchema>,
    runtime: Handle,
    stop: CancellationToken,
    /// The partition of the last message handled.
    last: Option<Key>,
    /// Liveness and readiness (telemetry).
    health: Arc<Health>,
    /// Registry cache hits and misses, outages.
    registry: Arc<RegistryEvents>,
}

/// A source partition: topic (shared, so a key is cloned without allocating) and partition.
type Key = (Arc<str>, i32);

/// A file being written for one source partition.
struct OpenFile {
    file: Box<dyn RecordFile>,
    dt: String,
    first: i64,
    last: i64,
    opened: Instant,
}

/// One assigned source partition.
struct PartitionState {
    open: Option<OpenFile>,
    /// One past the last offset consumed (dealt with: in a file, open or finished, in the DLQ,
    /// or skipped); `None` before the first message.
    consumed: Option<i64>,
    /// The offset last committed.
    committed: Option<i64>,
}

impl PartitionState {
    /// Everything below this offset is in a visible file, in the DLQ (once flushed) or skipped.
    fn safe(&self) -> Option<i64> {
        match &self.open {
            Some(f) => Some(f.first),
            None => self.consumed,
        }
    }
}

/// What the rebalance callback and the loop share (both run on the archive thread).
struct Shared {
    route: String,
    store: Store,
    format: FileFormat,
    out_schema: Arc<OutputSchema>,
    spool_dir: PathBuf,
    runtime: Handle,
    parts: BTreeMap<Key, PartitionState>,
    dlq: Option<BaseProducer<DlqContext>>,
    summary: ArchiveSummary,
    failure: Option<TopicError>,
    events: ArchiveEvents,
    health: Arc<Health>,
}

/// Unique spool file names within this process.
static SPOOL: AtomicU64 = AtomicU64::new(0);

impl Shared {
    /// Sets the open-records gauge (when files open or finish, partitions move, and at each
    /// commit tick: not per record).
    fn publish_open(&self) {
        let open: u64 = self
            .parts
            .values()
            .filter_map(|s| s.open.as_ref())
            .map(|f| f.file.records())
            .sum();
        self.events.open_records.set(open as f64);
    }

    /// Health and the gauge follow the partitions now assigned.
    fn assigned(&self) {
        let n = self.parts.len();
        self.health.assigned(n);
        self.events.assigned_partitions.set(n as f64);
    }

    fn store_err(&self) -> impl FnOnce(StoreError) -> TopicError {
        let route = self.route.clone();
        move |source| TopicError::Store { route, source }
    }

    fn file_err(&self) -> impl FnOnce(ArchiveError) -> TopicError {
        let route = self.route.clone();
        move |source| TopicError::File { route, source }
    }

    /// A new spool file, unlinked at once: it lives as long as its handle, also through a
    /// crash.
    fn spool(&self) -> Result<File, TopicError> {
        let n = SPOOL.fetch_add(1, Ordering::Relaxed);
        let path = self
            .spool_dir
            .join(format!(".schemabridge-spool-{}-{n}", std::process::id()));
        let io = |source| TopicError::Store {
            route: self.route.clone(),
            source: StoreError::Io {
                path: path.clone(),
                source,
            },
        };
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io)?;
        std::fs::remove_file(&path).map_err(io)?;
        Ok(f)
    }

    /// Finishes and uploads the open file of `key`, if any (offsets move only at the commit).
    fn finish(&mut self, key: &Key) -> Result<(), TopicError> {
        let Some(state) = self.parts.get_mut(key) else {
            return Ok(());
        };
        let Some(open) = state.open.take() else {
            return Ok(());
        };
        let records = open.file.records();
        let started = Instant::now();
        let mut file = open.file.finish().map_err(self.file_err())?;
        let size = file
            .metadata()
            .map_err(|source| TopicError::Store {
                route: self.route.clone(),
                source: StoreError::Io {
                    path: "(spool file)".into(),
                    source,
                },
            })?
            .len();
        let (topic, partition) = key;
        let name = format!(
            "topic={topic}/dt={}/{topic}+{partition}+{:012}-{:012}.{}",
            open.dt,
            open.first,
            open.last,
            self.format.extension()
        );
        let store = self.store.clone();
        let health = Arc::clone(&self.health);
        self.runtime
            .block_on(store.upload(&name, &mut file, size, || health.heartbeat()))
            .map_err(self.store_err())?;
        tracing::info!(route = %self.route, file = %name, records, bytes = size, "file archived");
        self.events.upload.record(started.elapsed());
        self.events.files.increment(1);
        self.events.file_bytes.increment(size);
        self.events.archived.increment(records);
        self.summary.files += 1;
        self.summary.archived += records;
        self.publish_open();
        Ok(())
    }

    /// Finishes every open file of the partitions `which` accepts.
    fn finish_where(&mut self, which: impl Fn(&Key) -> bool) -> Result<(), TopicError> {
        let keys: Vec<Key> = self.parts.keys().filter(|k| which(k)).cloned().collect();
        for k in keys {
            self.finish(&k)?;
        }
        Ok(())
    }

    /// Flushes dead letters, then commits the safe offset of every partition `which` accepts
    /// that moved since its last commit.
    fn commit<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        which: impl Fn(&Key) -> bool,
    ) -> Result<(), TopicError> {
        let mut tpl = TopicPartitionList::new();
        for (k, s) in &self.parts {
            if !which(k) {
                continue;
            }
            if let Some(safe) = s.safe()
                && s.committed.is_none_or(|c| c < safe)
            {
                let _ = tpl.add_partition_offset(&k.0, k.1, Offset::Offset(safe));
            }
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        if let Some(dlq) = &self.dlq {
            dlq.flush(KAFKA_TIMEOUT).map_err(|e| TopicError::Kafka {
                route: self.route.clone(),
                what: "flushing dead letters",
                source: Box::new(e),
            })?;
            if let Some((topic, message)) = dlq.context().take_failure() {
                return Err(TopicError::DeadLetter {
                    route: self.route.clone(),
                    topic,
                    message,
                });
            }
        }
        consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(|e| TopicError::Kafka {
                route: self.route.clone(),
                what: "committing offsets",
                source: Box::new(e),
            })?;
        for e in tpl.elements() {
            if let (Some(s), Offset::Offset(o)) = (
                self.parts.get_mut(&(Arc::from(e.topic()), e.partition())),
                e.offset(),
            ) {
                s.committed = Some(o);
            }
        }
        Ok(())
    }

    /// The resume point of each partition in `tpl`: max(committed, last listed offset + 1).
    fn resume_points<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        tpl: &TopicPartitionList,
    ) -> Result<Vec<(String, i32, Option<i64>)>, TopicError> {
        let committed = consumer
            .committed_offsets(tpl.clone(), KAFKA_TIMEOUT)
            .map_err(|e| TopicError::Kafka {
                route: self.route.clone(),
                what: "reading committed offsets",
                source: Box::new(e),
            })?;
        let mut listed: HashMap<String, HashMap<i32, i64>> = HashMap::new();
        let mut out = Vec::new();
        for e in committed.elements() {
            let topic = e.topic().to_string();
            if !listed.contains_key(&topic) {
                let store = self.store.clone();
                let files = (self.runtime)
                    .block_on(store.list(&format!("topic={topic}")))
                    .map_err(self.store_err())?;
                let mut last: HashMap<i32, i64> = HashMap::new();
                for (name, _) in files {
                    if let Some((t, p, _, l)) = parse_file_name(&name)
                        && t == topic
                    {
                        let e = last.entry(p).or_insert(l);
                        *e = (*e).max(l);
                    }
                }
                listed.insert(topic.clone(), last);
            }
            let committed = match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            };
            let in_files = listed
                .get(&topic)
                .and_then(|m| m.get(&e.partition()))
                .map(|l| l + 1);
            let resume = match (committed, in_files) {
                (Some(c), Some(f)) => Some(c.max(f)),
                (c, f) => c.or(f),
            };
            out.push((topic, e.partition(), resume));
        }
        Ok(out)
    }
}

/// The archive consumer's context: rebalances finish or discard open files, and set the resume
/// point of each assigned partition before its first fetch.
struct ArchiveContext {
    shared: Mutex<Shared>,
    /// Revocations so far: a message polled before one (possible only across a registry
    /// outage, which polls while the message waits) is not handled; its partition's position
    /// was set anew by the assignment.
    generation: AtomicU64,
    /// Consumer lag per partition.
    lag: ConsumerLag,
}

impl ArchiveContext {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

impl ClientContext for ArchiveContext {
    /// librdkafka statistics (served inside `poll` on the archive thread): consumer lag.
    fn stats(&self, statistics: rdkafka::Statistics) {
        self.lag.report(&consumer_lags(&statistics));
    }
}

impl ConsumerContext for ArchiveContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let mut shared = self.lock();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                match shared.resume_points(consumer, tpl) {
                    Ok(points) => {
                        for (topic, partition, resume) in points {
                            if let Some(o) = resume {
                                let _ =
                                    tpl.set_partition_offset(&topic, partition, Offset::Offset(o));
                            }
                            tracing::info!(route = %shared.route, topic = %topic, partition, resume = ?resume, "partition assigned");
                            shared.parts.insert(
                                (Arc::from(topic), partition),
                                PartitionState {
                                    open: None,
                                    consumed: None,
                                    committed: None,
                                },
                            );
                        }
                    }
                    Err(e) => {
                        shared.failure.get_or_insert(e);
                    }
                }
                shared.assigned();
                if let Err(e) = consumer.assign(tpl) {
                    let route = shared.route.clone();
                    shared.failure.get_or_insert(TopicError::Kafka {
                        route,
                        what: "assigning partitions",
                        source: Box::new(e),
                    });
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.generation.fetch_add(1, Ordering::AcqRel);
                let revoked: Vec<Key> = tpl
                    .elements()
                    .iter()
                    .map(|e| (Arc::from(e.topic()), e.partition()))
                    .collect();
                let is_revoked = |k: &Key| revoked.contains(k);
                if consumer.assignment_lost() {
                    tracing::warn!(route = %shared.route, "assignment lost: discarding open files (their records are consumed again by the new owner)");
                } else if shared.failure.is_none() {
                    let done = shared
                        .finish_where(is_revoked)
                        .and_then(|()| shared.commit(consumer, is_revoked));
                    if let Err(e) = done {
                        shared.failure.get_or_insert(e);
                    }
                }
                for k in &revoked {
                    shared.parts.remove(k);
                }
                shared.assigned();
                shared.publish_open();
                let _ = consumer.unassign();
            }
            _ => {
                self.generation.fetch_add(1, Ordering::AcqRel);
                tracing::warn!(route = %shared.route, error = ?err, "rebalance error");
                let _ = consumer.unassign();
            }
        }
    }
}

/// DLQ producer context: remembers the first failed dead letter.
#[derive(Default)]
struct DlqContext {
    failed: Mutex<Option<(String, String)>>,
}

impl DlqContext {
    fn take_failure(&self) -> Option<(String, String)> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl ClientContext for DlqContext {
    /// Producer statistics are not used (as for `run`'s producer: without a `target` it shares
    /// the source's `librdkafka` map and its `statistics.interval.ms`; the default would log
    /// every report).
    fn stats_raw(&self, _statistics: &[u8]) {}
}

impl ProducerContext for DlqContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, m)) = result {
            self.failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert((m.topic().to_string(), e.to_string()));
        }
    }
}

/// `topic=<t>/dt=<d>/<t>+<partition>+<first>-<last>.<ext>` → (topic, partition, first, last).
pub fn parse_file_name(key: &str) -> Option<(String, i32, i64, i64)> {
    let name = key.rsplit('/').next()?;
    let (stem, _ext) = name.rsplit_once('.')?;
    let (rest, range) = stem.rsplit_once('+')?;
    let (topic, partition) = rest.rsplit_once('+')?;
    let (first, last) = range.split_once('-')?;
    Some((
        topic.to_string(),
        partition.parse().ok()?,
        first.parse().ok()?,
        last.parse().ok()?,
    ))
}

/// `YYYY-MM-DD` (UTC) of a timestamp in milliseconds since the epoch.
pub fn utc_date(millis: i64) -> String {
    // Howard Hinnant's days-to-civil.
    let z = millis.div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

type ArchiveConsumer = BaseConsumer<ArchiveContext>;

/// What became of a message's value before its partition's file sees it.
enum Resolved {
    /// Resolved: the framed reader encoding is in `Buffers::value`.
    Value,
    /// No value (nothing to archive).
    Tombstone,
    /// Not archivable: the route's error policy decides.
    Failed(PartFailure),
    /// Shutdown while waiting for the registry.
    Cancelled,
}

/// What a registry outage needs to keep the consumer in its group (see [`Outage`]).
struct Keepalive<'a> {
    consumer: &'a ArchiveConsumer,
    outage: Outage,
    registry: Arc<RegistryEvents>,
    health: Arc<Health>,
}

/// The per-message buffers the archive thread reuses.
struct Buffers {
    value: Vec<u8>,
    scratch: Vec<u8>,
    lossy: Vec<Arc<str>>,
}

impl Job {
    fn client_err(&self, what: &'static str) -> impl FnOnce(KafkaError) -> TopicError + '_ {
        move |e| TopicError::Client {
            what,
            message: crate::config::kafka_error_text(&e, &self.cfg),
        }
    }

    fn run(mut self) -> Result<ArchiveSummary, TopicError> {
        let _runtime = self.runtime.enter();
        let group = format!("{}-archive-{}", self.cfg.group_id, self.route.name);
        let needs_dlq = [&self.route.key, &self.route.value]
            .iter()
            .any(|p| p.dlq.is_some());
        let dlq = if needs_dlq {
            // Idempotent, never transactional: a dead letter is flushed before the commit
            // that passes it (at-least-once, whatever `pipeline.delivery` says for `run`).
            let mut pc = self.cfg.producer_config();
            pc.remove("transactional.id");
            Some(
                pc.create_with_context::<_, BaseProducer<DlqContext>>(DlqContext::default())
                    .map_err(self.client_err("dead-letter producer"))?,
            )
        } else {
            None
        };
        let spool_dir = self
            .archive
            .spool_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        let shared = Shared {
            route: self.route.name.clone(),
            store: self.store.clone(),
            format: self.format,
            out_schema: self.out_schema.clone(),
            spool_dir,
            runtime: self.runtime.clone(),
            parts: BTreeMap::new(),
            dlq,
            summary: ArchiveSummary::default(),
            failure: None,
            events: ArchiveEvents::new(
                &self.route.name,
                &crate::pipeline::KINDS.map(FailureKind::as_str),
            ),
            health: self.health.clone(),
        };
        let mut cc = self.cfg.consumer_config();
        cc.set("group.id", &group)
            .set("partition.assignment.strategy", "range,roundrobin");
        with_statistics(&self.cfg, &mut cc);
        let consumer: ArchiveConsumer = cc
            .create_with_context(ArchiveContext {
                shared: Mutex::new(shared),
                lag: ConsumerLag::default(),
                generation: AtomicU64::new(0),
            })
            .map_err(self.client_err("consumer"))?;
        let src = &self.route.source;
        let mut topics: Vec<String> = src.topics.clone();
        if let Some(re) = &src.topic_regex {
            topics.push(format!("^({re})$"));
        }
        let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&refs)
            .map_err(self.client_err("subscription"))?;
        tracing::info!(route = %self.route.name, group = %group, topics = ?topics, "consuming");
        self.health
            .pipeline_started(Duration::from_millis(self.cfg.pipeline.shutdown_timeout_ms));

        let ended = self.consume(&consumer);
        match &ended {
            Ok(()) => self.health.stopping(),
            Err(e) => self.health.fatal(e.to_string()),
        }
        let mut shared = consumer.context().lock();
        let finished = match &ended {
            // A halt or failure: open files are discarded (also from the revoke that closing
            // the consumer runs), nothing past them committed.
            Err(_) => {
                shared.parts.clear();
                Ok(())
            }
            Ok(()) => shared
                .finish_where(|_| true)
                .and_then(|()| shared.commit(&consumer, |_| true)),
        };
        shared.publish_open();
        let summary = shared.summary.clone();
        drop(shared);
        ended?;
        if let Err(e) = &finished {
            self.health.fatal(e.to_string());
        }
        finished?;
        tracing::info!(route = %self.route.name, ?summary, "archive stopped");
        Ok(summary)
    }

    fn consume(&mut self, consumer: &ArchiveConsumer) -> Result<(), TopicError> {
        let roll = self.archive.roll;
        let interval = Duration::from_millis(roll.interval_ms);
        let commit_every = Duration::from_millis(self.cfg.pipeline.commit_interval_ms);
        let mut last_commit = Instant::now();
        let mut bufs = Buffers {
            value: Vec::with_capacity(4096),
            scratch: Vec::new(),
            lossy: Vec::new(),
        };
        let mut keep = Keepalive {
            consumer,
            outage: Outage::default(),
            registry: Arc::clone(&self.registry),
            health: Arc::clone(&self.health),
        };
        let mut polls = 0u32;
        while !self.stop.is_cancelled() {
            let msg = consumer.poll(POLL);
            // Liveness: a clock read, so not on every message.
            polls = polls.wrapping_add(1);
            if msg.is_none() || polls % HEARTBEAT_EVERY == 0 {
                self.health.heartbeat();
            }
            let polled_at = consumer.context().generation();
            let resolved = match &msg {
                Some(Ok(m)) => Some(self.resolve_value(m, &mut keep, &mut bufs)),
                _ => None,
            };
            let mut shared = consumer.context().lock();
            if let Some(e) = shared.failure.take() {
                return Err(e);
            }
            if let Some(dlq) = &shared.dlq {
                dlq.poll(Duration::ZERO);
            }
            match msg {
                None => {}
                Some(Err(e)) => {
                    tracing::warn!(route = %self.route.name, error = %e, "consumer error");
                }
                Some(Ok(m)) => {
                    // Revoked while its value waited for the registry: consumed again from
                    // the position its partition was assigned with.
                    if let Some(resolved) = resolved
                        && consumer.context().generation() == polled_at
                    {
                        self.handle(&mut shared, &m, resolved, &bufs.value)?;
                    }
                }
            }
            // Roll by time; commit what finished files made safe.
            let due: Vec<Key> = shared
                .parts
                .iter()
                .filter(|(_, s)| {
                    s.open
                        .as_ref()
                        .is_some_and(|f| f.opened.elapsed() >= interval)
                })
                .map(|(k, _)| k.clone())
                .collect();
            for k in &due {
                shared.finish(k)?;
            }
            if !due.is_empty() || last_commit.elapsed() >= commit_every {
                shared.commit(consumer, |_| true)?;
                shared.publish_open();
                last_commit = Instant::now();
            }
        }
        Ok(())
    }

    /// A message's value resolved to the reader (into `value`), before `shared` is locked: a
    /// registry outage meanwhile pauses the partitions and keeps polling the consumer (so the
    /// member stays in its group; rebalances run and lock `shared`), through `outage`.
    fn resolve_value(
        &mut self,
        m: &BorrowedMessage<'_>,
        keep: &mut Keepalive<'_>,
        bufs: &mut Buffers,
    ) -> Resolved {
        let Some(input) = m.payload() else {
            return Resolved::Tombstone;
        };
        bufs.value.clear();
        bufs.lossy.clear();
        let resolved = self.resolve(
            input,
            &mut bufs.value,
            &mut bufs.scratch,
            &mut bufs.lossy,
            &mut || {
                keep.outage
                    .keepalive(keep.consumer, &keep.registry, &keep.health, &|| {
                        keep.consumer.context().generation()
                    })
            },
        );
        keep.outage.end(
            keep.consumer,
            &keep.registry,
            &keep.health,
            keep.consumer.context().generation(),
        );
        match resolved {
            Ok(()) if bufs.lossy.is_empty() || self.route.value.on_lossy == LossyPolicy::Allow => {
                Resolved::Value
            }
            Ok(()) => Resolved::Failed(PartFailure {
                kind: FailureKind::Lossy,
                message: format!(
                    "the reader ({}) would not see fields that hold data: {}",
                    self.reader.origin,
                    bufs.lossy
                        .iter()
                        .map(|f| &**f)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                writer_id: wire::parse(input).ok().map(|f| f.schema_id),
            }),
            Err(None) => Resolved::Cancelled,
            Err(Some(f)) => Resolved::Failed(f),
        }
    }

    /// One message, its value resolved: into its partition's file, or the error policy.
    fn handle(
        &mut self,
        shared: &mut Shared,
        m: &BorrowedMessage<'_>,
        resolved: Resolved,
        value: &[u8],
    ) -> Result<(), TopicError> {
        if let Resolved::Cancelled = resolved {
            return Ok(()); // shutdown while waiting for the registry
        }
        // The assigned partition's own key, no allocation per message: the last message's
        // (messages come in runs per partition), else searched among the assigned ones.
        let same = |(t, p): &Key| **t == *m.topic() && *p == m.partition();
        let key = match self.last.take() {
            Some(k) if same(&k) && shared.parts.contains_key(&k) => k,
            _ => {
                let Some(k) = shared.parts.keys().find(|k| same(k)).cloned() else {
                    return Ok(()); // revoked since it was fetched
                };
                k
            }
        };
        self.last = Some(key.clone());
        let offset = m.offset();
        shared.summary.consumed += 1;
        shared.events.consumed.increment(1);
        match resolved {
            Resolved::Value => {}
            Resolved::Tombstone => {
                shared.summary.tombstones += 1;
                shared.events.tombstones.increment(1);
                return self.dealt_with(shared, &key, offset);
            }
            Resolved::Failed(f) => return self.fail(shared, &key, m, f),
            Resolved::Cancelled => return Ok(()),
        }
        // The datum without the Confluent framing (5 bytes: magic and schema id).
        let datum = value.get(5..).unwrap_or_default();
        let dt = m
            .timestamp()
            .to_millis()
            .map_or_else(|| "none".to_string(), utc_date);
        let roll = self.archive.roll;
        let state_open_dt = shared
            .parts
            .get(&key)
            .and_then(|s| s.open.as_ref())
            .map(|f| f.dt.clone());
        if state_open_dt.is_some_and(|d| d != dt) {
            shared.finish(&key)?;
        }
        let needs_open = shared.parts.get(&key).is_some_and(|s| s.open.is_none());
        if needs_open {
            let sink = shared.spool()?;
            let file =
                output::open(shared.format, &shared.out_schema, sink).map_err(shared.file_err())?;
            if let Some(s) = shared.parts.get_mut(&key) {
                s.open = Some(OpenFile {
                    file,
                    dt,
                    first: offset,
                    last: offset,
                    opened: Instant::now(),
                });
            }
        }
        let full = {
            let route = self.route.name.clone();
            let Some(s) = shared.parts.get_mut(&key) else {
                return Ok(());
            };
            let Some(open) = s.open.as_mut() else {
                return Ok(());
            };
            match open.file.append(datum) {
                Ok(()) => {}
                Err(ArchiveError::Rejected { why }) => {
                    // Not in the file (a file it would have opened is dropped): the error
                    // policy deals with the message, as with one that cannot be resolved.
                    if open.file.records() == 0 {
                        s.open = None;
                    }
                    let failure = PartFailure {
                        kind: FailureKind::Datum,
                        message: format!(
                            "the record cannot be written as {}: {why}",
                            shared.format.name()
                        ),
                        writer_id: m
                            .payload()
                            .and_then(|p| wire::parse(p).ok())
                            .map(|f| f.schema_id),
                    };
                    return self.fail(shared, &key, m, failure);
                }
                Err(source) => return Err(TopicError::File { route, source }),
            }
            open.last = offset;
            s.consumed = Some(offset + 1);
            open.file.records() >= roll.records || open.file.bytes() >= roll.bytes
        };
        if full {
            shared.finish(&key)?;
        }
        Ok(())
    }

    /// Marks `offset` dealt with outside any file (dead letter, skip, tombstone).
    fn dealt_with(&self, shared: &mut Shared, key: &Key, offset: i64) -> Result<(), TopicError> {
        if let Some(s) = shared.parts.get_mut(key) {
            s.consumed = Some(offset + 1);
        }
        Ok(())
    }

    /// Resolves `input` to the reader into `out` (framed), calling `idle` every second while
    /// the registry does not answer. `Err(None)`: shutdown.
    fn resolve(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
        lossy: &mut Vec<Arc<str>>,
        idle: &mut dyn FnMut(),
    ) -> Result<(), Option<PartFailure>> {
        let framed = wire::parse(input).map_err(|e| {
            Some(PartFailure {
                kind: FailureKind::Framing,
                message: e.to_string(),
                writer_id: None,
            })
        })?;
        let writer_id = framed.schema_id;
        let before = self.schemas.registry_lookups();
        let plan = block_on(
            &self.runtime,
            self.schemas
                .plan(writer_id, MessageIndexes::default(), &self.reader),
            idle,
        );
        self.registry
            .resolved(self.schemas.registry_lookups() != before);
        let plan = plan.map_err(|e| match e {
            ResolveError::Cancelled => None,
            ResolveError::Failed(f) => Some(f),
        })?;
        plan.apply(
            writer_id,
            input,
            framed.payload,
            &self.reader,
            out,
            scratch,
            lossy,
        )
        .map_err(Some)
    }

    /// The route's policy for a record that cannot be archived.
    fn fail(
        &self,
        shared: &mut Shared,
        key: &Key,
        m: &BorrowedMessage<'_>,
        f: PartFailure,
    ) -> Result<(), TopicError> {
        let part = &self.route.value;
        let kind = kind_index(f.kind);
        shared.events.failures.failed(kind);
        let policy = if f.kind == FailureKind::Lossy {
            match part.on_lossy {
                LossyPolicy::Dlq => ErrorPolicy::Dlq,
                LossyPolicy::Halt | LossyPolicy::Allow => ErrorPolicy::Halt,
            }
        } else {
            part.on_error
        };
        match (policy, &part.dlq, &shared.dlq) {
            (ErrorPolicy::Dlq, Some(topic), Some(producer)) => {
                let headers =
                    crate::pipeline::dead_letter_headers(m, &self.route.name, "value", &f);
                let mut r: BaseRecord<'_, [u8], [u8], ()> = BaseRecord::to(topic).headers(headers);
                if let Some(k) = m.key() {
                    r = r.key(k);
                }
                if let Some(v) = m.payload() {
                    r = r.payload(v);
                }
                if let Some(ts) = m.timestamp().to_millis() {
                    r = r.timestamp(ts);
                }
                loop {
                    match producer.send(r) {
                        Ok(()) => break,
                        Err((
                            KafkaError::MessageProduction(
                                rdkafka::types::RDKafkaErrorCode::QueueFull,
                            ),
                            back,
                        )) => {
                            producer.poll(Duration::from_millis(5));
                            r = back;
                        }
                        Err((e, _)) => {
                            return Err(TopicError::DeadLetter {
                                route: self.route.name.clone(),
                                topic: topic.clone(),
                                message: e.to_string(),
                            });
                        }
                    }
                }
                tracing::warn!(route = %self.route.name, topic = m.topic(), partition = m.partition(), offset = m.offset(), kind = f.kind.as_str(), reason = %f.message, "dead letter");
                shared.summary.dead_lettered += 1;
                shared.events.failures.dead_lettered(kind);
                self.dealt_with(shared, key, m.offset())
            }
            (ErrorPolicy::Skip, _, _) => {
                shared.summary.skipped += 1;
                shared.events.skipped.increment(1);
                self.dealt_with(shared, key, m.offset())
            }
            _ => Err(TopicError::Halted {
                route: self.route.name.clone(),
                topic: m.topic().to_string(),
                partition: m.partition(),
                offset: m.offset(),
                reason: format!("{}: {}", f.kind.as_str(), f.message),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_names() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(1_795_564_800_000), "2026-11-25");
        assert_eq!(utc_date(-1), "1969-12-31");
        assert_eq!(
            parse_file_name("p/topic=a.b-c/dt=2026-11-25/a.b-c+3+000000000120-000000000245.avro"),
            Some(("a.b-c".into(), 3, 120, 245))
        );
        assert_eq!(parse_file_name("topic=x/dt=y/README"), None);
    }

    #[test]
    fn a_cooperative_assignor_is_refused_naming_the_key() {
        let config = |strategy: &str| {
            Config::parse(&format!(
                "source:\n  bootstrap_servers: localhost:9092\n  librdkafka:\n    \
                 partition.assignment.strategy: {strategy}\ngroup_id: bridge\nregistry:\n  \
                 url: http://localhost:8081\nroutes:\n  - name: lake\n    source: {{ topics: \
                 [orders] }}\n    archive:\n      url: file:///tmp/lake\n    value:\n      \
                 format: avro\n      reader: {{ subject: orders-value, version: 1 }}\n      \
                 dlq: orders-dlq\n"
            ))
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let e = pick_route(&config("roundrobin,cooperative-sticky"), None).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("source.librdkafka.partition.assignment.strategy: "),
            "{e}"
        );
        assert!(
            !e.to_string().contains("roundrobin,"),
            "the value is echoed: {e}"
        );
        assert_eq!(pick_route(&config("range,roundrobin"), None).unwrap(), 0);
    }
}
