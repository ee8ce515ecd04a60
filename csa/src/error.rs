//! `CsaError`: what a call to the compaction service, or starting one of its
//! processes, can fail with. gRPC statuses from the scheduler map onto the
//! variants one to one (see `transport/proto/o3/csa/v1/csa.proto`), so a
//! caller matches on the variant, never on a message.

use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum CsaError {
    /// The scheduler could not be reached, stopped answering, or a call ran
    /// past its deadline. Retrying later (or running the job locally) is
    /// the caller's choice.
    #[error("compaction scheduler {endpoint} unavailable: {reason}")]
    Unavailable { endpoint: String, reason: String },
    /// The cluster token was missing or wrong.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The scheduler does not know this tenant or agent (it restarted or
    /// removed it): register again.
    #[error("session lost: {0}")]
    SessionLost(String),
    /// A wrong session, or a job naming files outside the tenant's root.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The ticket is unknown to this tenant (never issued, forgotten, or
    /// another tenant's).
    #[error("unknown ticket {0}")]
    UnknownTicket(u64),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A tenant root overlapping another tenant's.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// Bad configuration of a binary or an in-process service.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A listener or runtime could not be set up.
    #[error("cannot {action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    /// Anything else, with the scheduler's or the local reason.
    #[error("internal error: {0}")]
    Internal(String),
}

impl CsaError {
    /// True when the scheduler was not reached or did not answer in time:
    /// the call may not have happened at all.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, CsaError::Unavailable { .. })
    }

    /// The error a status from the scheduler at `endpoint` means; `ticket`
    /// names the ticket a NOT_FOUND is about.
    pub(crate) fn from_status(endpoint: &str, status: &Status, ticket: Option<u64>) -> CsaError {
        let message = status.message().to_owned();
        match status.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
                CsaError::Unavailable {
                    endpoint: endpoint.to_owned(),
                    reason: if message.is_empty() {
                        status.code().to_string()
                    } else {
                        message
                    },
                }
            }
            Code::Unauthenticated => CsaError::Unauthenticated(message),
            Code::FailedPrecondition => CsaError::SessionLost(message),
            Code::PermissionDenied => CsaError::PermissionDenied(message),
            Code::NotFound => match ticket {
                Some(ticket) => CsaError::UnknownTicket(ticket),
                None => CsaError::Internal(format!("not found: {message}")),
            },
            Code::InvalidArgument | Code::OutOfRange => CsaError::InvalidArgument(message),
            Code::AlreadyExists => CsaError::AlreadyExists(message),
            code => CsaError::Internal(format!("{code}: {message}")),
        }
    }
}
