//! A control-plane process's life: serving until asked to stop, with a
//! bounded grace for the calls in flight, and the signals that ask.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;

/// The future a server stops on, handed to the closure that builds it.
pub type StopSignal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Run the server `serve` builds (give its `serve_with_incoming_shutdown`
/// the [`StopSignal`]) until `shutdown` completes; then call `on_shutdown`
/// (answer long-polls, say), stop accepting calls and give the calls in
/// flight up to `grace` to finish. The grace is bounded because graceful
/// HTTP/2 shutdown also waits for idle clients to hang up, which a stuck
/// client never does.
pub async fn serve_until<F>(
    serve: impl FnOnce(StopSignal) -> F,
    shutdown: impl Future<Output = ()>,
    on_shutdown: impl FnOnce(),
    grace: Duration,
) -> Result<(), tonic::transport::Error>
where
    F: Future<Output = Result<(), tonic::transport::Error>>,
{
    let stopping = Arc::new(Notify::new());
    let stopped = Arc::clone(&stopping);
    let server = serve(Box::pin(async move { stopped.notified().await }));
    tokio::pin!(server);
    tokio::pin!(shutdown);
    tokio::select! {
        served = &mut server => served,
        () = &mut shutdown => {
            on_shutdown();
            // `notify_one` keeps a permit if the server is not waiting yet.
            stopping.notify_one();
            match tokio::time::timeout(grace, &mut server).await {
                Ok(served) => served,
                Err(_) => {
                    tracing::warn!(?grace, "calls still open after the shutdown grace; stopping anyway");
                    Ok(())
                }
            }
        }
    }
}

/// A signal that could not be watched.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch for {signal}: {source}")]
pub struct SignalError {
    pub signal: &'static str,
    #[source]
    pub source: std::io::Error,
}

/// Completes on the first SIGINT or SIGTERM (and logs which). The handlers
/// are installed before this returns, so a signal arriving after is never
/// lost.
pub fn shutdown_signal() -> Result<impl Future<Output = ()>, SignalError> {
    let watch = |kind: SignalKind, name: &'static str| {
        signal(kind).map_err(|source| SignalError {
            signal: name,
            source,
        })
    };
    let mut interrupt = watch(SignalKind::interrupt(), "SIGINT")?;
    let mut terminate = watch(SignalKind::terminate(), "SIGTERM")?;
    Ok(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!(signal = name, "shutting down");
    })
}

/// Parse a node binary's command line. `--help` and `--version` print and
/// return `Err(ExitCode::SUCCESS)`; a bad argument prints one line,
/// `NAME: reason`, and returns `Err(ExitCode::from(2))`.
pub fn parse_args<A: clap::Parser>(name: &str) -> Result<A, std::process::ExitCode> {
    match A::try_parse() {
        Ok(args) => Ok(args),
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            Err(std::process::ExitCode::SUCCESS)
        }
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            eprintln!("{name}: {}", first.trim_start_matches("error: "));
            Err(std::process::ExitCode::from(2))
        }
    }
}

/// Log with `tracing` to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: logs piped to a file or a test
        // stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
