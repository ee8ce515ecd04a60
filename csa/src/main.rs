//! `o3-csa`: the compaction service's processes.
//!
//! - `o3-csa scheduler`: serves `o3.csa.v1.Scheduler` on `--listen` (every
//!   call checked against the cluster token in `--token-file`) until SIGINT
//!   or SIGTERM; prints `listening on ADDR` on stdout once bound (so
//!   `--listen 127.0.0.1:0` is usable).
//! - `o3-csa agent`: registers with `--scheduler` and runs compaction jobs
//!   on the local file system (throttled like remote storage when a
//!   `--storage-*` flag is given) until SIGINT or SIGTERM; prints
//!   `agent NAME registered as ID` on stdout after each registration.
//!
//! Settings come from `--config` (TOML) with flags overriding it; see
//! `o3_csa::config`. Bad input is one line on stderr (`o3-csa: ...`) and a
//! non-zero exit.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use o3_csa::CsaError;
use o3_csa::config::{RawAgentConfig, RawSchedulerConfig};
use o3_storage::env::{LocalFs, Storage, ThrottledStorage};
use o3_transport::control::{init_logging, parse_args};

#[derive(Debug, Parser)]
#[command(about = "o3 compaction service: scheduler and agents", version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the scheduler.
    Scheduler {
        /// TOML file with any of the keys below (flags override it).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to serve on [default: 127.0.0.1:7390].
        #[arg(long)]
        listen: Option<String>,
        /// File holding the cluster token.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// How often agents heartbeat [default: 250].
        #[arg(long)]
        heartbeat_ms: Option<u64>,
        /// Silence after which an agent is removed [default: 1500].
        #[arg(long)]
        heartbeat_timeout_ms: Option<u64>,
        /// Most agents one job is handed to [default: 3].
        #[arg(long)]
        max_tries: Option<u32>,
        /// Queue time after which a job goes first [default: 5000].
        #[arg(long)]
        starvation_ms: Option<u64>,
        /// How long calls may run on after SIGINT/SIGTERM [default: 5s].
        #[arg(long)]
        shutdown_grace: Option<String>,
    },
    /// Run an agent.
    Agent {
        /// TOML file with any of the keys below (flags override it).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The scheduler's host:port [default: 127.0.0.1:7390].
        #[arg(long)]
        scheduler: Option<String>,
        /// File holding the cluster token.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// The agent's name [default: agent-PID].
        #[arg(long)]
        name: Option<String>,
        /// Jobs run at once [default: 2].
        #[arg(long)]
        slots: Option<u32>,
        /// Emulated storage read bandwidth, MB/s [default: unlimited].
        #[arg(long)]
        storage_read_mbps: Option<f64>,
        /// Emulated storage write bandwidth, MB/s [default: unlimited].
        #[arg(long)]
        storage_write_mbps: Option<f64>,
        /// Emulated storage latency per round trip, µs [default: 0].
        #[arg(long)]
        storage_latency_us: Option<u64>,
        /// FROM=TO: job directories under FROM are used under TO here.
        #[arg(long)]
        path_map: Option<String>,
        /// How long running jobs may go on after SIGINT/SIGTERM [default: 5s].
        #[arg(long)]
        shutdown_grace: Option<String>,
    },
}

fn main() -> ExitCode {
    let args: Args = match parse_args("o3-csa") {
        Ok(args) => args,
        Err(code) => return code,
    };
    init_logging();
    match run(args.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("o3-csa: {}", one_line(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}

fn one_line(text: &str) -> String {
    text.replace('\n', " ")
}

fn runtime() -> Result<tokio::runtime::Runtime, CsaError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("o3-csa")
        .build()
        .map_err(|source| CsaError::Io {
            action: "start the runtime".into(),
            source,
        })
}

fn run(command: Command) -> Result<(), CsaError> {
    match command {
        Command::Scheduler {
            config,
            listen,
            token_file,
            heartbeat_ms,
            heartbeat_timeout_ms,
            max_tries,
            starvation_ms,
            shutdown_grace,
        } => {
            let file = match &config {
                Some(path) => RawSchedulerConfig::from_file(path)?,
                None => RawSchedulerConfig::default(),
            };
            let flags = RawSchedulerConfig {
                listen,
                token_file,
                heartbeat_ms,
                heartbeat_timeout_ms,
                max_tries,
                starvation_ms,
                shutdown_grace,
            };
            let settings = file.overridden_by(flags).resolve()?;
            let token = o3_csa::config::read_token(&settings.token_file)?;
            let runtime = runtime()?;
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind(settings.listen)
                    .await
                    .map_err(|source| CsaError::Io {
                        action: format!("listen on {}", settings.listen),
                        source,
                    })?;
                let bound = listener.local_addr().map_err(|source| CsaError::Io {
                    action: format!("listen on {}", settings.listen),
                    source,
                })?;
                let shutdown = shutdown_signal()?;
                announce(&format!("listening on {bound}"))?;
                tracing::info!(%bound, config = ?settings.scheduler, "scheduler serving");
                o3_csa::scheduler::serve(listener, settings.scheduler, token, shutdown).await?;
                tracing::info!("scheduler stopped");
                Ok(())
            })
        }
        Command::Agent {
            config,
            scheduler,
            token_file,
            name,
            slots,
            storage_read_mbps,
            storage_write_mbps,
            storage_latency_us,
            path_map,
            shutdown_grace,
        } => {
            let file = match &config {
                Some(path) => RawAgentConfig::from_file(path)?,
                None => RawAgentConfig::default(),
            };
            let flags = RawAgentConfig {
                scheduler,
                token_file,
                name,
                slots,
                storage_read_mbps,
                storage_write_mbps,
                storage_latency_us,
                path_map,
                shutdown_grace,
            };
            let settings = file.overridden_by(flags).resolve()?;
            let token = o3_csa::config::read_token(&settings.token_file)?;
            let local: Arc<dyn Storage> = Arc::new(LocalFs::new());
            let storage: Arc<dyn Storage> = match settings.storage_model {
                Some(model) => {
                    tracing::info!(%model, "agent storage throttled");
                    Arc::new(ThrottledStorage::new(local, model))
                }
                None => local,
            };
            let runtime = runtime()?;
            let name = settings.agent.name.clone();
            let served = runtime.block_on(async {
                let shutdown = shutdown_signal()?;
                o3_csa::agent::run_with(settings.agent, token, storage, shutdown, move |id| {
                    if let Err(e) = announce(&format!("agent {name} registered as {id}")) {
                        tracing::warn!(error = %e, "cannot print the registration");
                    }
                })
                .await
            });
            // A job past the grace may still be on a blocking thread: do not
            // wait for it.
            runtime.shutdown_background();
            served
        }
    }
}

fn announce(line: &str) -> Result<(), CsaError> {
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .map_err(|source| CsaError::Io {
            action: "print to stdout".into(),
            source,
        })
}

/// Completes on the first SIGINT or SIGTERM.
fn shutdown_signal() -> Result<impl Future<Output = ()>, CsaError> {
    o3_transport::control::shutdown_signal().map_err(|e| CsaError::Io {
        action: format!("watch for {}", e.signal),
        source: e.source,
    })
}
