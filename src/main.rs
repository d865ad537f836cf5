//! The `schemabridge` command line. Parses arguments, loads config and calls into the library;
//! nothing else lives here.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use schemabridge::config::{Config, ConfigErrors, Preflight};
use schemabridge::pipeline::Gateway;
use schemabridge::registry::SchemaSource;
use schemabridge::telemetry::{self, LogFormat};
use tokio_util::sync::CancellationToken;

/// Kafka schema gateway: consumes Confluent-framed messages, resolves each from the schema it
/// was written with to the schema its consumer reads, and republishes it.
#[derive(Parser)]
#[command(name = "schemabridge", version, about, long_about = None)]
struct Cli {
    /// Log format on stderr: `auto` is text on a terminal and JSON lines otherwise (`demo`:
    /// text). Colour only on a terminal. `RUST_LOG` sets the level.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "SCHEMABRIDGE_LOG_FORMAT",
        default_value_t = LogArg::Auto
    )]
    log_format: LogArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogArg {
    Auto,
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway with a config file until SIGTERM/SIGINT (then drain, commit, exit 0).
    Run {
        /// YAML config file (see README, "Configuration").
        #[arg(short, long, env = "SCHEMABRIDGE_CONFIG", hide_env_values = true)]
        config: PathBuf,
    },
    /// Archive a route's source topics into rolling Avro or Parquet files (`routes[].archive`:
    /// a local directory or S3), partitioned `topic=T/dt=YYYY-MM-DD/`, every record exactly once, until
    /// SIGTERM/SIGINT (then finish the open files, commit, exit 0). With `telemetry.listen`:
    /// `/metrics`, `/healthz` and `/readyz` as for `run`.
    Archive {
        /// YAML config file with an archive route.
        #[arg(short, long, env = "SCHEMABRIDGE_CONFIG", hide_env_values = true)]
        config: PathBuf,
        /// The archive route to run (its `name`); the only archive route when absent.
        #[arg(long, value_name = "NAME")]
        route: Option<String>,
    },
    /// Run the whole job on an in-process Kafka mock cluster with embedded schemas, and print
    /// what a v1 consumer receives from v2 producers. Needs no network and nothing installed.
    Demo {
        /// Messages to produce (every tenth from a v1 producer).
        #[arg(long, default_value_t = 1000)]
        messages: usize,
        /// Before/after record pairs to print.
        #[arg(long, default_value_t = 2)]
        samples: usize,
    },
    /// Check a config file as `run` would, without connecting: every key, `${VAR}`
    /// interpolation, secrets and schema files readable, librdkafka properties accepted, the
    /// registry client buildable. Exit 0 if valid, 1 with every problem named by its key if not.
    ValidateConfig {
        /// YAML config file.
        config: PathBuf,
        /// Also print the effective configuration (secrets redacted).
        #[arg(long)]
        print: bool,
        /// Check the file for another machine (e.g. a Kubernetes ConfigMap in CI): skip reading
        /// secrets, schema files and the static schema directory.
        #[arg(long)]
        offline: bool,
    },
    /// Before shipping a schema: for every route, what its consumer receives from each writer
    /// schema registered under the source subjects (all versions), from a schema file not
    /// registered yet (--writer-schema), and from the ids seen on the topic (--scan-topic): `ok`,
    /// `lossy` (which fields, optional or not) or `incompatible` (why, with the field path); and
    /// what the registry's compatibility levels say of each subject's history. Exit 0 when every
    /// writer is ok (or lossy, without --strict), 1 when records would be dead-lettered, 2 for
    /// a usage, config or connection error.
    Check {
        /// YAML config file (the same one `run` uses).
        #[arg(short, long, env = "SCHEMABRIDGE_CONFIG", hide_env_values = true)]
        config: PathBuf,
        #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
        format: ReportFormat,
        /// A schema that is not registered yet ("what happens if I ship this?"): .avsc, or
        /// .proto (its imports read from beside it), by the route's format.
        #[arg(long, value_name = "FILE")]
        writer_schema: Option<PathBuf>,
        /// The part --writer-schema is for.
        #[arg(long, value_enum, default_value_t = PartArg::Value)]
        part: PartArg,
        /// Also read the source topics from the beginning (assigned partitions: no group join,
        /// nothing committed) and check every writer id actually seen there.
        #[arg(long)]
        scan_topic: bool,
        /// Fail (exit 1) on lossy writers too.
        #[arg(long)]
        strict: bool,
        /// Only this route (repeatable).
        #[arg(long = "route", value_name = "NAME")]
        routes: Vec<String>,
        /// Check these subjects instead of `<topic>-value` / `<topic>-key` (repeatable; for
        /// producers using RecordNameStrategy).
        #[arg(long = "subject", value_name = "SUBJECT")]
        subjects: Vec<String>,
        /// Give up (exit 2) when the registry or brokers do not answer within this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
    },
    /// Rewrite Avro object container files, each written with its own writer schema (from its
    /// header), into ONE file written with the reader schema (an Avro container, or Parquet
    /// with `--to parquet` or an OUT ending in `.parquet`), through the gateway's compiled
    /// plan: `transcode --reader-schema R.avsc -o OUT 'archive/*.avro' more.avro`, or the short
    /// form `transcode --reader-schema R.avsc IN OUT`. On any error OUTPUT is not created.
    Transcode(TranscodeArgs),
    /// Benchmarks, printed as a table.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Explain what reading WRITER data with READER does, field by field: kept, renamed (via
    /// which alias), promoted, defaulted, dropped, enum symbols and union branches remapped.
    /// With --sample, one writer record before and after. Exit 1 when the pair is incompatible.
    Explain(ExplainArgs),
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("writer").required(true).args(["writer_schema", "writer_id"])))]
#[command(group(clap::ArgGroup::new("reader").required(true).args(["reader_schema", "reader_subject"])))]
struct ExplainArgs {
    /// The writer schema file (.avsc, or .proto).
    #[arg(long, value_name = "W.avsc|W.proto")]
    writer_schema: Option<PathBuf>,
    /// The reader schema file (.avsc, or .proto).
    #[arg(long, value_name = "R.avsc|R.proto")]
    reader_schema: Option<PathBuf>,
    /// A Confluent-compatible schema registry, for --writer-id / --reader-subject.
    #[arg(long, value_name = "URL")]
    registry: Option<String>,
    /// The writer schema by registry id.
    #[arg(long, value_name = "N", requires = "registry")]
    writer_id: Option<u32>,
    /// The reader schema by registry subject...
    #[arg(long, value_name = "SUBJECT", requires = "registry")]
    reader_subject: Option<String>,
    /// ...at this version (a number or `latest`).
    #[arg(long, value_name = "V|latest", default_value = "latest", value_parser = parse_version, requires = "reader_subject")]
    reader_version: schemabridge::config::SubjectVersion,
    /// Protobuf: the writer message (fully qualified); default the schema's first message.
    #[arg(long, value_name = "pkg.Message")]
    writer_message: Option<String>,
    /// Protobuf: the reader message (fully qualified); default the schema's first message.
    #[arg(long, value_name = "pkg.Message")]
    reader_message: Option<String>,
    /// Protobuf files: a directory imports are found in (repeatable); default the schema
    /// file's directory and its ancestors.
    #[arg(long, value_name = "DIR")]
    proto_path: Vec<PathBuf>,
    /// Protobuf: what happens to writer fields the reader lacks (as the route option).
    #[arg(long, value_enum, default_value_t = UnknownArg::Preserve)]
    unknown_fields: UnknownArg,
    /// One writer record, JSON (Avro: Avro's JSON encoding as fastavro/avro-tools write it;
    /// Protobuf: canonical JSON): print it before and after, and which dropped fields held data.
    #[arg(long, value_name = "RECORD.json")]
    sample: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = OutputArg::Table)]
    format: OutputArg,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("reader").required(true).args(["reader_schema", "reader_subject"])))]
struct TranscodeArgs {
    /// The reader schema file (.avsc).
    #[arg(long, value_name = "READER.avsc")]
    reader_schema: Option<PathBuf>,
    /// A Confluent-compatible schema registry, for --reader-subject.
    #[arg(long, value_name = "URL")]
    registry: Option<String>,
    /// The reader schema by registry subject...
    #[arg(long, value_name = "SUBJECT", requires = "registry")]
    reader_subject: Option<String>,
    /// ...at this version (a number or `latest`).
    #[arg(long, value_name = "V|latest", default_value = "latest", value_parser = parse_version, requires = "reader_subject")]
    reader_version: schemabridge::config::SubjectVersion,
    /// The output file (replaced only on success). Without it, the last FILE is the output
    /// and exactly one input must come before it.
    #[arg(short, long, value_name = "OUT")]
    output: Option<PathBuf>,
    /// Output format; default from OUT's extension (`.parquet`: parquet, otherwise avro).
    #[arg(long, value_enum)]
    to: Option<ToArg>,
    /// Avro output codec; default the inputs' codec when they all have the same, else deflate.
    #[arg(long, value_enum)]
    codec: Option<CodecArg>,
    /// Parquet output compression: zstd (the default; level 1, as Arrow's writers), snappy or
    /// none.
    #[arg(long, value_enum)]
    compression: Option<CompressionArg>,
    /// Parquet output with zstd: its level, 1-22 (the route key `compression_level`).
    #[arg(long, value_name = "1-22", value_parser = clap::value_parser!(i32).range(1..=22))]
    compression_level: Option<i32>,
    /// Parquet output: dictionary-encoded columns, as the route key `dictionary`: auto (the
    /// default: strings, enums and bytes, except strings and bytes mostly distinct in the
    /// file's first batch), text (strings, enums, bytes), all, none.
    #[arg(long, value_enum)]
    dictionary: Option<DictionaryArg>,
    /// Parquet output: min/max statistics, as the route key `statistics`: page (the default:
    /// per row group and a page index), row-group, none.
    #[arg(long, value_enum)]
    statistics: Option<StatisticsArg>,
    /// Parquet output: a row group is closed once its estimated encoded size reaches this
    /// (the route key `row_group_bytes`; default 128 MiB).
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    row_group_bytes: Option<u64>,
    /// Parquet output: threads that encode the file's batches while the next is read, as the
    /// route key `encoding_threads`: 2 (the default: one, and a helper sharing its columns),
    /// 1, or 0 (encoded on the reading thread).
    #[arg(long, value_name = "0-2", value_parser = clap::value_parser!(u8).range(0..=2))]
    encoding_threads: Option<u8>,
    /// Input container files, read in order; a pattern (`'archive/*.avro'`, quoted so that the
    /// shell leaves it alone) stands for the files it matches, sorted by name.
    #[arg(value_name = "FILE", required = true)]
    files: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ToArg {
    Avro,
    Parquet,
}

#[derive(Clone, Copy, ValueEnum)]
enum DictionaryArg {
    Auto,
    Text,
    All,
    None,
}

impl From<DictionaryArg> for schemabridge::archive::ParquetDictionary {
    fn from(d: DictionaryArg) -> Self {
        match d {
            DictionaryArg::Auto => Self::Auto,
            DictionaryArg::Text => Self::Text,
            DictionaryArg::All => Self::All,
            DictionaryArg::None => Self::None,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum StatisticsArg {
    None,
    RowGroup,
    Page,
}

impl From<StatisticsArg> for schemabridge::archive::ParquetStatistics {
    fn from(s: StatisticsArg) -> Self {
        match s {
            StatisticsArg::None => Self::None,
            StatisticsArg::RowGroup => Self::RowGroup,
            StatisticsArg::Page => Self::Page,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum CompressionArg {
    Zstd,
    Snappy,
    None,
}

#[derive(Clone, Copy, ValueEnum)]
enum CodecArg {
    Null,
    Deflate,
}

#[derive(Clone, Copy, ValueEnum)]
enum UnknownArg {
    Preserve,
    Drop,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputArg {
    Table,
    Json,
}

fn parse_version(s: &str) -> Result<schemabridge::config::SubjectVersion, String> {
    use schemabridge::config::SubjectVersion;
    match s {
        "latest" => Ok(SubjectVersion::Latest),
        n => n
            .parse()
            .map(SubjectVersion::Number)
            .map_err(|_| format!("{n:?} is neither a version number nor `latest`")),
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum ReportFormat {
    Table,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum PartArg {
    Key,
    Value,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Time the compiled plan against apache-avro's decode-to-value-and-encode path on the same
    /// records, single-threaded; the last line is `ratio: N.N` (compiled / apache-avro).
    Transcode {
        #[arg(long, value_name = "W.avsc")]
        writer_schema: PathBuf,
        #[arg(long, value_name = "R.avsc")]
        reader_schema: PathBuf,
        /// Records from an Avro container file (written with the writer schema) instead of
        /// generated ones.
        #[arg(long, value_name = "FILE.avro")]
        input: Option<PathBuf>,
        /// Records to generate from the writer schema when no --input is given.
        #[arg(long, default_value_t = 100_000)]
        records: usize,
        /// Seconds to run each engine for (at least one pass over the records).
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
    },
    /// The gateway end to end on Kafka: records/s, MB/s, latency and peak RSS of (a) a minimal
    /// rdkafka copy loop, (b) a passthrough route, (c) Avro OrderPlaced v2 → v1 at least once and
    /// (d) exactly once, each in its own process on the same input; the last line is
    /// `ratio: N.NN` ((c) / (a) records/s). Runs on an in-process mock cluster unless given a
    /// broker.
    Pipeline {
        /// A broker to run on (topics are created, and deleted afterwards unless
        /// --keep-topics); default: librdkafka's mock cluster in this process.
        #[arg(long)]
        bootstrap_servers: Option<String>,
        /// Partitions of every topic (the mock cluster keeps about 20,000 records, 5 MB, per
        /// partition).
        #[arg(long, default_value_t = 12)]
        partitions: i32,
        /// Input records per partition.
        #[arg(long, default_value_t = 15_000)]
        records: usize,
        /// Latency phase: records per second produced while a contender runs...
        #[arg(long, default_value_t = 4_000)]
        latency_rate: u32,
        /// ...for this many seconds.
        #[arg(long, default_value_t = 3.0)]
        latency_seconds: f64,
        /// fetch.wait.max.ms of every consumer (default: 10 on the mock cluster, whose empty
        /// fetches always wait this long; librdkafka's default on a broker).
        #[arg(long)]
        fetch_wait_ms: Option<u32>,
        /// Topic names start with this (default: schemabridge-bench-PID-TIME).
        #[arg(long)]
        topic_prefix: Option<String>,
        /// On a broker, leave the bench's topics in place.
        #[arg(long)]
        keep_topics: bool,
        /// Keep the contenders' configs and logs (kept anyway when one fails).
        #[arg(long)]
        keep_logs: bool,
    },
    /// Records written with several writer schemas (default: the reference OrderPlaced v2 and
    /// v1 pair, mixed), normalised to the reader schema (default: OrderPlaced v1) and written to
    /// Parquet: schemabridge (plan, visitor, Arrow, Parquet) against apache-avro values + Arrow
    /// builders with the same writer options; the last line is `ratio: N.N` (schemabridge /
    /// apache-avro records/s). The reference schemas get the reference records (the demo's);
    /// any other writer schema gets random records.
    Archive {
        /// A writer schema (repeat for several; records alternate between them). Default: the
        /// reference OrderPlaced v2 and v1.
        #[arg(long = "writer-schema", value_name = "W.avsc")]
        writer_schemas: Vec<PathBuf>,
        /// The reader schema. Default: the reference OrderPlaced v1.
        #[arg(long, value_name = "R.avsc")]
        reader_schema: Option<PathBuf>,
        /// Records to generate (spread evenly over the writer schemas).
        #[arg(long, default_value_t = 100_000)]
        records: usize,
        /// Seconds for each timed loop (at least one pass over the records each): each engine's
        /// whole path, then its decoding and its decoding with the Arrow builders: six loops.
        #[arg(long, default_value_t = 4.0)]
        seconds: f64,
        /// Parquet compression: zstd, zstd:LEVEL, snappy or none.
        #[arg(long, default_value = "zstd")]
        compression: String,
        /// Row group size in bytes (estimated encoded size).
        #[arg(long, default_value_t = 128 * 1024 * 1024)]
        row_group_bytes: u64,
        /// Dictionary-encoded columns (both engines): auto (the archive's default: strings,
        /// enums and bytes, except strings and bytes mostly distinct in a file's first batch),
        /// text (strings, enums, bytes), all, none.
        #[arg(long, value_enum)]
        dictionary: Option<DictionaryArg>,
        /// Min/max statistics: none, row-group, page (both engines); default the archive's.
        #[arg(long, value_enum)]
        statistics: Option<StatisticsArg>,
        /// The Parquet writer's encoding threads per file (both engines): 2 (the archive's
        /// default), 1, or 0 (encoded on the thread that builds the batches).
        #[arg(long, value_name = "0-2", default_value_t = 2,
              value_parser = clap::value_parser!(u8).range(0..=2))]
        encoding_threads: u8,
    },
    /// `bench pipeline`'s contender (a): copies records from --from to --to until SIGTERM.
    #[command(hide = true)]
    CopyLoop {
        #[arg(long)]
        bootstrap_servers: String,
        #[arg(long, required = true)]
        from: Vec<String>,
        #[arg(long)]
        to: String,
        #[arg(long)]
        group: String,
        #[arg(long)]
        fetch_wait_ms: Option<u32>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = match cli.log_format {
        LogArg::Auto => LogFormat::Auto,
        LogArg::Text => LogFormat::Text,
        LogArg::Json => LogFormat::Json,
    };
    match cli.command {
        Command::ValidateConfig {
            config,
            print,
            offline,
        } => match check_config(&config, offline) {
            Ok(c) => {
                println!(
                    "{}: valid ({} route{})",
                    config.display(),
                    c.routes.len(),
                    if c.routes.len() == 1 { "" } else { "s" }
                );
                if print {
                    for line in c.summary() {
                        println!("  {line}");
                    }
                }
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{}: invalid configuration", config.display());
                for e in &errors.0 {
                    eprintln!("  {e}");
                }
                ExitCode::FAILURE
            }
        },
        Command::Check {
            config,
            format: report_format,
            writer_schema,
            part,
            scan_topic,
            strict,
            routes,
            subjects,
            timeout_secs,
        } => {
            telemetry::init_tracing("warn", format);
            let opts = schemabridge::check::CheckOptions {
                writer_schema,
                part: match part {
                    PartArg::Key => schemabridge::check::Part::Key,
                    PartArg::Value => schemabridge::check::Part::Value,
                },
                scan_topic,
                routes,
                subjects,
                timeout: std::time::Duration::from_secs(timeout_secs),
            };
            check(&config, &opts, report_format, strict)
        }
        Command::Transcode(args) => report(transcode(args)),
        Command::Bench(BenchCommand::Transcode {
            writer_schema,
            reader_schema,
            input,
            records,
            seconds,
        }) => report(bench_transcode(
            &writer_schema,
            &reader_schema,
            input.as_deref(),
            records,
            seconds,
        )),
        Command::Bench(BenchCommand::Pipeline {
            bootstrap_servers,
            partitions,
            records,
            latency_rate,
            latency_seconds,
            fetch_wait_ms,
            topic_prefix,
            keep_topics,
            keep_logs,
        }) => report(bench_pipeline(
            schemabridge::bench::pipeline::PipelineOptions {
                exe: PathBuf::new(),
                bootstrap_servers,
                partitions,
                records_per_partition: records,
                latency_rate,
                latency_seconds,
                fetch_wait_ms,
                topic_prefix,
                keep_topics,
                keep_logs,
            },
        )),
        Command::Bench(BenchCommand::Archive {
            writer_schemas,
            reader_schema,
            records,
            seconds,
            compression,
            row_group_bytes,
            dictionary,
            statistics,
            encoding_threads,
        }) => report(
            schemabridge::bench::archive::run(&schemabridge::bench::archive::ArchiveArgs {
                writer_schemas,
                reader_schema,
                records,
                seconds,
                compression,
                row_group_bytes,
                dictionary: dictionary.map_or(
                    schemabridge::archive::ParquetOptions::default().dictionary,
                    DictionaryArg::into,
                ),
                statistics: statistics.map_or(
                    schemabridge::archive::ParquetOptions::default().statistics,
                    StatisticsArg::into,
                ),
                encoding_threads,
            })
            .map(|table| println!("{table}"))
            .map_err(anyhow::Error::msg),
        ),
        Command::Bench(BenchCommand::CopyLoop {
            bootstrap_servers,
            from,
            to,
            group,
            fetch_wait_ms,
        }) => report(
            schemabridge::bench::pipeline::copy_loop(
                &schemabridge::bench::pipeline::CopyLoopOptions {
                    bootstrap_servers,
                    from,
                    to,
                    group,
                    fetch_wait_ms,
                },
            )
            .map(|n| eprintln!("copy loop stopped: {n} records copied"))
            .map_err(anyhow::Error::msg),
        ),
        Command::Explain(args) => report(explain(args)),
        Command::Run { config } => {
            let format = telemetry::init_tracing("info", format);
            let result = runtime().and_then(|rt| rt.block_on(run(config)));
            match result {
                // A log collector gets the reason the gateway stopped as a JSON line too.
                Err(e) if format == LogFormat::Json => {
                    let reason = format!("{e:#}");
                    tracing::error!(error = %reason, "schemabridge stopped");
                    ExitCode::FAILURE
                }
                result => report(result),
            }
        }
        Command::Archive { config, route } => {
            telemetry::init_tracing("info", format);
            let archive = async move {
                let (cfg, source) = load_checked(&config).map_err(|e| {
                    let indented: Vec<String> = e.0.iter().map(|e| format!("  {e}")).collect();
                    anyhow::anyhow!(
                        "{}: invalid configuration\n{}",
                        config.display(),
                        indented.join("\n")
                    )
                })?;
                let index = schemabridge::archive::topic::pick_route(&cfg, route.as_deref())?;
                // Before the archive registers its metric handles.
                serve_telemetry(cfg.telemetry.listen).await?;
                let timeout = std::time::Duration::from_millis(cfg.pipeline.shutdown_timeout_ms);
                let shutdown = CancellationToken::new();
                tokio::spawn(stop_on_signal(shutdown.clone(), timeout));
                let summary =
                    schemabridge::archive::topic::run(cfg, source, index, shutdown).await?;
                tracing::info!(?summary, "stopped");
                anyhow::Ok(())
            };
            report(runtime().and_then(|rt| rt.block_on(archive)))
        }
        Command::Demo { messages, samples } => {
            // The demo is read by a person (its report is on stdout): text unless asked for
            // JSON, also when stderr is a file; colour still only on a terminal.
            let format = match format {
                LogFormat::Auto => LogFormat::Text,
                f => f,
            };
            telemetry::init_tracing("error", format);
            let opts = schemabridge::demo::DemoOptions { messages, samples };
            report(runtime().and_then(|rt| {
                let text = rt
                    .block_on(schemabridge::demo::run(opts))
                    .map_err(anyhow::Error::msg)
                    .context("demo failed")?;
                print!("{text}");
                Ok(())
            }))
        }
    }
}

/// `check`: exit 0 pass, 1 records would be dead-lettered (or lossy, `strict`), 2 could not
/// check (config, registry or brokers).
fn check(
    path: &Path,
    opts: &schemabridge::check::CheckOptions,
    format: ReportFormat,
    strict: bool,
) -> ExitCode {
    let config = match Config::load(path).and_then(|c| c.preflight(Preflight::Full).map(|()| c)) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{}: invalid configuration", path.display());
            for e in &errors.0 {
                eprintln!("  {e}");
            }
            return ExitCode::from(2);
        }
    };
    let result = runtime().map_err(|e| format!("{e:#}")).and_then(|rt| {
        rt.block_on(schemabridge::check::check(&config, opts))
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(report) => {
            match format {
                ReportFormat::Table => print!("{}", report.table(strict)),
                ReportFormat::Json => match serde_json::to_string_pretty(&report.json(strict)) {
                    Ok(json) => println!("{json}"),
                    Err(e) => {
                        eprintln!("error: cannot render the report: {e}");
                        return ExitCode::from(2);
                    }
                },
            }
            if report.failed(strict) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn transcode(mut args: TranscodeArgs) -> anyhow::Result<()> {
    use schemabridge::archive::{self, FileFormat, ReaderSchema};
    use schemabridge::schema::ParsedSchema;
    use schemabridge::schema::arg::{self, SchemaArg};

    let mut files = std::mem::take(&mut args.files);
    let output = match args.output.take() {
        Some(o) => o,
        None if files.len() == 2 => PathBuf::from(files.pop().unwrap_or_default()),
        None => anyhow::bail!(
            "give the output file with --output OUT (without it, transcode takes exactly one \
             input and then the output; {} files were given)",
            files.len()
        ),
    };
    let to = args.to.unwrap_or(
        if output
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
        {
            ToArg::Parquet
        } else {
            ToArg::Avro
        },
    );
    let format = transcode_format(&args, to)?;
    let inputs = expand_inputs(&files)?;
    let format = match format {
        Some(format) => format,
        // Avro output without --codec: the inputs' codec when they all have the same.
        None => FileFormat::Avro {
            codec: archive::common_codec(&inputs)?,
        },
    };
    let reader_arg = match (args.reader_schema, args.reader_subject) {
        (Some(file), _) => SchemaArg::File(file),
        (None, Some(subject)) => SchemaArg::Subject {
            subject,
            version: args.reader_version,
        },
        (None, None) => anyhow::bail!("give --reader-schema FILE or --reader-subject SUBJECT"),
    };
    let registry = match &args.registry {
        Some(url) => Some(arg::registry_at(url).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (origin, reader) = rt
        .block_on(arg::load(&reader_arg, registry.as_ref(), &[]))
        .map_err(anyhow::Error::msg)?;
    let ParsedSchema::Avro(reader) = reader else {
        anyhow::bail!("{origin}: transcode writes Avro records; this is a Protobuf schema");
    };
    let reader = ReaderSchema::new(reader)?;
    let stats = archive::transcode_files(&inputs, &reader, &origin, format, &output)?;
    for input in &stats.inputs {
        let how = if input.identity {
            "already the reader schema".to_string()
        } else if input.dropped_fields.is_empty() {
            "resolved".to_string()
        } else {
            format!(
                "resolved; writer fields not in the reader schema: {} ({} records held data in them)",
                input.dropped_fields.join(", "),
                input.lossy_records
            )
        };
        println!(
            "{}: {} records in {} blocks ({} codec), written with {}: {how}",
            input.path.display(),
            input.records,
            input.blocks,
            input.codec,
            input.writer,
        );
    }
    println!(
        "{}: {} records from {} file{} written as {} with {origin}",
        output.display(),
        stats.records(),
        stats.inputs.len(),
        if stats.inputs.len() == 1 { "" } else { "s" },
        format.describe(),
    );
    Ok(())
}

/// The output format `transcode`'s flags ask for, checked before anything is read: a flag
/// for the other format is an error naming it. None: Avro output without `--codec` (the
/// inputs' codec decides).
fn transcode_format(
    args: &TranscodeArgs,
    to: ToArg,
) -> anyhow::Result<Option<schemabridge::archive::FileFormat>> {
    use schemabridge::archive::{AvroCodec, FileFormat, ParquetCompression, ParquetOptions};
    let parquet_flags = [
        (args.compression.is_some(), "--compression"),
        (args.compression_level.is_some(), "--compression-level"),
        (args.dictionary.is_some(), "--dictionary"),
        (args.statistics.is_some(), "--statistics"),
        (args.row_group_bytes.is_some(), "--row-group-bytes"),
        (args.encoding_threads.is_some(), "--encoding-threads"),
    ];
    match to {
        ToArg::Avro => {
            if let Some((_, flag)) = parquet_flags.iter().find(|(set, _)| *set) {
                anyhow::bail!(
                    "{flag} is for Parquet output (--to parquet or an OUT ending in .parquet); \
                     Avro output takes --codec"
                );
            }
            Ok(args.codec.map(|codec| FileFormat::Avro {
                codec: match codec {
                    CodecArg::Null => AvroCodec::Null,
                    CodecArg::Deflate => AvroCodec::Deflate,
                },
            }))
        }
        ToArg::Parquet => {
            if args.codec.is_some() {
                anyhow::bail!("--codec is for Avro output; Parquet output takes --compression");
            }
            let defaults = ParquetOptions::default();
            let compression = match (args.compression, args.compression_level) {
                (None | Some(CompressionArg::Zstd), Some(level)) => ParquetCompression::Zstd(level),
                (None | Some(CompressionArg::Zstd), None) => defaults.compression,
                (Some(CompressionArg::Snappy), None) => ParquetCompression::Snappy,
                (Some(CompressionArg::None), None) => ParquetCompression::None,
                (Some(_), Some(_)) => {
                    anyhow::bail!("--compression-level is for zstd compression only")
                }
            };
            Ok(Some(FileFormat::Parquet(ParquetOptions {
                compression,
                row_group_bytes: args.row_group_bytes.unwrap_or(defaults.row_group_bytes),
                dictionary: args.dictionary.map_or(defaults.dictionary, Into::into),
                statistics: args.statistics.map_or(defaults.statistics, Into::into),
                encoding_threads: args.encoding_threads.unwrap_or(defaults.encoding_threads),
            })))
        }
    }
}

/// Input arguments as files: an argument naming no file but holding a glob pattern stands for
/// the files it matches (sorted); one that matches nothing is an error.
fn expand_inputs(args: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    let mut inputs = Vec::new();
    for a in args {
        let path = PathBuf::from(a);
        if path.exists() || !a.contains(['*', '?', '[']) {
            inputs.push(path);
            continue;
        }
        let mut matched: Vec<PathBuf> = glob::glob(a)
            .with_context(|| format!("{a}: not a valid pattern"))?
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .collect();
        anyhow::ensure!(!matched.is_empty(), "{a}: no file matches this pattern");
        matched.sort();
        inputs.append(&mut matched);
    }
    Ok(inputs)
}

fn bench_transcode(
    writer_path: &std::path::Path,
    reader_path: &std::path::Path,
    input: Option<&std::path::Path>,
    records: usize,
    seconds: f64,
) -> anyhow::Result<()> {
    use schemabridge::avro::Schema;
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
    };
    let writer_text = read(writer_path)?;
    let reader_text = read(reader_path)?;
    let writer = Schema::parse_str(&writer_text)
        .with_context(|| format!("{}: not an Avro schema", writer_path.display()))?;
    let datums = match input {
        Some(file) => {
            let (file_schema, datums) = schemabridge::archive::read_datums(file)?;
            let file_schema = Schema::parse_str(&file_schema)?;
            anyhow::ensure!(
                file_schema.canonical_form() == writer.canonical_form(),
                "{} was not written with {}",
                file.display(),
                writer_path.display()
            );
            datums
        }
        None => {
            schemabridge::bench::random_datums(&writer, records, 42).map_err(anyhow::Error::msg)?
        }
    };
    anyhow::ensure!(!datums.is_empty(), "no records to time");
    let result = schemabridge::bench::transcode(
        &writer,
        &reader_text,
        &datums,
        std::time::Duration::from_secs_f64(seconds),
    )
    .map_err(anyhow::Error::msg)?;
    println!("{}", result.table());
    Ok(())
}

fn bench_pipeline(mut opts: schemabridge::bench::pipeline::PipelineOptions) -> anyhow::Result<()> {
    opts.exe = std::env::current_exe().context("cannot find this executable")?;
    let result = schemabridge::bench::pipeline::run(&opts).map_err(anyhow::Error::msg)?;
    println!("{}", result.table());
    if let Some(dir) = &result.work_dir {
        eprintln!("contenders' configs and logs: {}", dir.display());
    }
    let failed = result.failed();
    if !failed.is_empty() {
        let names: Vec<&str> = failed.iter().map(|c| c.label()).collect();
        anyhow::bail!(
            "contenders failed: {}{}",
            names.join(", "),
            result
                .work_dir
                .as_ref()
                .map(|d| format!(" (configs and logs in {})", d.display()))
                .unwrap_or_default()
        );
    }
    Ok(())
}

fn explain(args: ExplainArgs) -> anyhow::Result<()> {
    use schemabridge::explain::{self, Request, SchemaArg};
    let side = |file: Option<PathBuf>, registry: SchemaArg| file.map_or(registry, SchemaArg::File);
    let req = Request {
        writer: side(
            args.writer_schema,
            SchemaArg::Id(args.writer_id.unwrap_or_default()),
        ),
        reader: side(
            args.reader_schema,
            SchemaArg::Subject {
                subject: args.reader_subject.unwrap_or_default(),
                version: args.reader_version,
            },
        ),
        writer_message: args.writer_message,
        reader_message: args.reader_message,
        registry: args.registry,
        proto_paths: args.proto_path,
        unknown_fields: match args.unknown_fields {
            UnknownArg::Preserve => schemabridge::protobuf::UnknownFields::Preserve,
            UnknownArg::Drop => schemabridge::protobuf::UnknownFields::Drop,
        },
    };
    let sample: Option<serde_json::Value> = match &args.sample {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Some(
                serde_json::from_str(&text)
                    .with_context(|| format!("{}: not JSON", path.display()))?,
            )
        }
        None => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (writer, reader) = rt.block_on(explain::load(&req))?;
    let e = explain::explain(&writer, &reader, req.unknown_fields, sample.as_ref())?;
    let text = match args.format {
        OutputArg::Table => explain::render_table(&e),
        OutputArg::Json => serde_json::to_string_pretty(&e)? + "\n",
    };
    std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes()).context("stdout")
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A config file parsed, validated and checked against this machine (secrets, files,
/// librdkafka properties), with the schema source it names built but not contacted.
fn load_checked(path: &Path) -> Result<(Config, SchemaSource), ConfigErrors> {
    let config = Config::load(path)?;
    config.preflight(Preflight::Full)?;
    let source = SchemaSource::from_config(&config.registry).map_err(|e| ConfigErrors(vec![e]))?;
    Ok((config, source))
}

/// `validate-config`: [`load_checked`], or with `offline` the file and librdkafka properties
/// only.
fn check_config(path: &Path, offline: bool) -> Result<Config, ConfigErrors> {
    if offline {
        let config = Config::load(path)?;
        config.preflight(Preflight::Offline)?;
        Ok(config)
    } else {
        load_checked(path).map(|(config, _)| config)
    }
}

async fn run(path: PathBuf) -> anyhow::Result<()> {
    let (config, source) = load_checked(&path).map_err(|e| {
        let indented: Vec<String> = e.0.iter().map(|e| format!("  {e}")).collect();
        anyhow::anyhow!(
            "{}: invalid configuration\n{}",
            path.display(),
            indented.join("\n")
        )
    })?;
    tracing::info!(
        config = %config.summary().join("; "),
        "effective configuration"
    );
    let shutdown_timeout = std::time::Duration::from_millis(config.pipeline.shutdown_timeout_ms);
    // Before the gateway is built: metric handles registered earlier would be no-ops.
    serve_telemetry(config.telemetry.listen).await?;
    let gateway = Gateway::with_schema_source(config, source);
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone(), shutdown_timeout));
    // Rate-limited per-message lines: the count held back is logged once its window ends.
    tokio::spawn(async {
        let mut every = tokio::time::interval(telemetry::logs::WINDOW);
        loop {
            every.tick().await;
            telemetry::logs::report_due();
        }
    });
    let summary = gateway.run(shutdown).await?;
    tracing::info!(?summary, "stopped");
    Ok(())
}

/// With `telemetry.listen` set: installs the metrics recorder and serves `/metrics`, `/healthz`
/// and `/readyz` there (a port in use fails start-up). Call before registering any metric
/// handle.
async fn serve_telemetry(listen: Option<std::net::SocketAddr>) -> anyhow::Result<()> {
    let Some(listen) = listen else {
        return Ok(());
    };
    let recorder = telemetry::server::install_recorder()?;
    let server =
        telemetry::server::Telemetry::bind(listen, recorder, telemetry::health::shared()).await?;
    tracing::info!(listen = ?server.local_addr(), "telemetry: /metrics, /healthz, /readyz");
    tokio::spawn(server.serve());
    Ok(())
}

/// Cancels `shutdown` on SIGTERM or SIGINT. A second signal, or a drain that outlives
/// `shutdown_timeout` by more than a few seconds, exits at once: offsets are committed only
/// after delivery, so whatever was not committed is consumed again (at-least-once holds).
async fn stop_on_signal(shutdown: CancellationToken, shutdown_timeout: std::time::Duration) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping (a second signal exits at once)"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping (a second signal exits at once)"),
        }
        shutdown.cancel();
        let grace = shutdown_timeout + std::time::Duration::from_secs(5);
        tokio::select! {
            _ = term.recv() => tracing::warn!("second signal: exiting without waiting for the drain"),
            _ = tokio::signal::ctrl_c() => tracing::warn!("second signal: exiting without waiting for the drain"),
            _ = tokio::time::sleep(grace) => tracing::warn!("shutdown took longer than pipeline.shutdown_timeout_ms: exiting"),
        }
        std::process::exit(130);
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        shutdown.cancel();
    }
}
