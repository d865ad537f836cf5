//! The `schemabridge` command line. Parses arguments, loads config and calls into the library;
//! nothing else lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use schemabridge::config::Config;
use schemabridge::pipeline::Gateway;
use schemabridge::telemetry::{self, LogFormat};
use tokio_util::sync::CancellationToken;

/// Kafka schema gateway: consumes Confluent-framed messages, resolves each from the schema it
/// was written with to the schema its consumer reads, and republishes it.
#[derive(Parser)]
#[command(name = "schemabridge", version, about, long_about = None)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogArg::Text)]
    log_format: LogArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogArg {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway with a config file until SIGTERM/SIGINT (then drain, commit, exit 0).
    Run {
        /// YAML config file (see README, "Configuration").
        #[arg(short, long, env = "SCHEMABRIDGE_CONFIG")]
        config: PathBuf,
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
    /// Check a config file and exit: 0 if valid, 1 with every bad key named if not.
    ValidateConfig {
        /// YAML config file.
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = match cli.log_format {
        LogArg::Text => LogFormat::Text,
        LogArg::Json => LogFormat::Json,
    };
    match cli.command {
        Command::ValidateConfig { config } => match Config::load(&config) {
            Ok(c) => {
                println!(
                    "{}: valid ({} route{})",
                    config.display(),
                    c.routes.len(),
                    if c.routes.len() == 1 { "" } else { "s" }
                );
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
        Command::Run { config } => {
            telemetry::init_tracing("info", format);
            report(runtime().and_then(|rt| rt.block_on(run(config))))
        }
        Command::Demo { messages, samples } => {
            telemetry::init_tracing("warn", format);
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

async fn run(path: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&path).map_err(|e| {
        anyhow::anyhow!("{}: invalid configuration\n{e}", path.display())
    })?;
    let gateway = Gateway::new(config)?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let summary = gateway.run(shutdown).await?;
    tracing::info!(?summary, "stopped");
    Ok(())
}

/// Cancels `shutdown` on SIGTERM or SIGINT.
async fn stop_on_signal(shutdown: CancellationToken) {
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
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    shutdown.cancel();
}

