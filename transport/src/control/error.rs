//! What can go wrong on the control plane before a handler runs.

use std::time::Duration;

/// A control-plane failure on the caller's side: bad configuration or a peer
/// that could not be reached. Failures of individual RPCs stay
/// [`tonic::Status`], which is what gRPC callers match on.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The endpoint string is not a usable `http://host:port` URI.
    #[error("invalid control-plane endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },

    /// Every connection attempt failed; `last_error` is the final attempt's.
    #[error(
        "control-plane endpoint {endpoint} unreachable after {attempts} attempts in {elapsed:?}: {last_error}"
    )]
    Unreachable {
        endpoint: String,
        attempts: u32,
        elapsed: Duration,
        last_error: String,
    },

    /// The cluster token cannot be carried in gRPC metadata.
    #[error("invalid cluster token: {reason}")]
    InvalidToken { reason: &'static str },

    /// Connection options that would never connect (for example zero attempts).
    #[error("invalid connect options: {reason}")]
    InvalidOptions { reason: &'static str },
}
