//! The benchmark tool's error type. Every variant says what was wrong and
//! where (file, property, flag), because the binary prints it as one line.

use std::path::PathBuf;

/// Result alias for `o3-bench`.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;

/// Everything that stops a benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A YCSB property file or `-p` override is wrong; `source` names the
    /// file (or "command line").
    #[error("{source_name}: {message}")]
    Workload {
        source_name: String,
        message: String,
    },
    /// The TOML configuration file is wrong.
    #[error("config {path}: {message}")]
    Config { path: PathBuf, message: String },
    /// A flag value (after merging config and command line) is unusable.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The engine failed; `context` says during what.
    #[error("{context}: {source}")]
    Engine {
        context: String,
        #[source]
        source: o3_compute::Error,
    },
    /// An experiment ran but could not measure what it is for (e.g. the
    /// offloaded run shipped nothing); the message says what was missing.
    #[error("{experiment}: {message}")]
    NotMeasured {
        experiment: &'static str,
        message: String,
    },
    /// Background jobs (flushes, compactions) failed during the run; `when`
    /// says by the end of what, `message` is the error that stopped the
    /// database, if one did.
    #[error(
        "{count} background job(s) failed by the end of {when}{}",
        message.as_ref().map(|m| format!("; the database stopped accepting writes: {m}")).unwrap_or_default()
    )]
    BackgroundJobs {
        when: String,
        count: u64,
        message: Option<String>,
    },
}

impl BenchError {
    /// The engine refused a value the user gave: an
    /// [`BenchError::InvalidArgument`] naming `context` (the flag; empty for
    /// none) and the engine's reason, without the engine's own "invalid
    /// argument" (which would say it twice).
    pub fn rejected(context: &str, e: o3_compute::Error) -> BenchError {
        let reason = match e {
            o3_compute::Error::InvalidArgument(m) => m,
            other => other.to_string(),
        };
        BenchError::InvalidArgument(if context.is_empty() {
            reason
        } else {
            format!("{context}: {reason}")
        })
    }

    /// Build an [`BenchError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BenchError::Io {
            path: path.into(),
            source,
        }
    }

    /// Wrap an engine error with what the benchmark was doing. The context
    /// becomes a `String` only when there is an error: these wrappers sit on
    /// every operation of a measured loop.
    pub fn engine(context: impl Into<String>) -> impl FnOnce(o3_compute::Error) -> BenchError {
        move |source| BenchError::Engine {
            context: context.into(),
            source,
        }
    }

    /// [`BenchError::engine`] with the context `"{phase}: {op}"`, formatted
    /// only on error.
    pub fn engine_op(
        phase: &'static str,
        op: &'static str,
    ) -> impl FnOnce(o3_compute::Error) -> BenchError {
        move |source| BenchError::Engine {
            context: format!("{phase}: {op}"),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_argument_says_so_once() {
        let engine = o3_compute::Error::InvalidArgument("unknown compression 'zst'".into());
        let e = BenchError::rejected("--compression_type", engine);
        assert_eq!(
            e.to_string(),
            "invalid argument: --compression_type: unknown compression 'zst'"
        );
        let plain = BenchError::InvalidArgument("--num must be positive".into());
        assert_eq!(
            plain.to_string(),
            "invalid argument: --num must be positive"
        );
    }
}
