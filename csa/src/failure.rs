//! [`FailureKind`]: why a try of a job failed, mirroring the protobuf enum
//! `o3.csa.v1.FailureKind`. The agent classifies its errors into it, the
//! scheduler decides on retries by it, and a tenant sees it when a job is
//! given back.

use std::fmt;

use o3_transport::control::proto::csa::v1 as pb;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// An input table is missing or unreadable from the agent.
    InputUnreadable,
    /// An input's bytes are damaged.
    Corruption,
    /// Writing the outputs failed.
    Storage,
    /// The job's bytes did not decode or made no sense.
    InvalidJob,
    /// The agent died or stopped heartbeating while it held the job.
    AgentLost,
    /// The agent refused the job (no free slot, shutting down).
    Refused,
    Internal,
    /// Its tenant withdrew it.
    Cancelled,
}

impl FailureKind {
    /// The kind a protobuf value means; unknown and unspecified values are
    /// `Internal` (a newer peer's kind this side cannot act on).
    pub fn from_proto(value: i32) -> FailureKind {
        match pb::FailureKind::try_from(value) {
            Ok(pb::FailureKind::InputUnreadable) => FailureKind::InputUnreadable,
            Ok(pb::FailureKind::Corruption) => FailureKind::Corruption,
            Ok(pb::FailureKind::Storage) => FailureKind::Storage,
            Ok(pb::FailureKind::InvalidJob) => FailureKind::InvalidJob,
            Ok(pb::FailureKind::AgentLost) => FailureKind::AgentLost,
            Ok(pb::FailureKind::Refused) => FailureKind::Refused,
            Ok(pb::FailureKind::Cancelled) => FailureKind::Cancelled,
            Ok(pb::FailureKind::Internal | pb::FailureKind::Unspecified) | Err(_) => {
                FailureKind::Internal
            }
        }
    }

    pub fn to_proto(self) -> pb::FailureKind {
        match self {
            FailureKind::InputUnreadable => pb::FailureKind::InputUnreadable,
            FailureKind::Corruption => pb::FailureKind::Corruption,
            FailureKind::Storage => pb::FailureKind::Storage,
            FailureKind::InvalidJob => pb::FailureKind::InvalidJob,
            FailureKind::AgentLost => pb::FailureKind::AgentLost,
            FailureKind::Refused => pb::FailureKind::Refused,
            FailureKind::Internal => pb::FailureKind::Internal,
            FailureKind::Cancelled => pb::FailureKind::Cancelled,
        }
    }

    /// The name used in logs and flags (`input-unreadable`, ...).
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::InputUnreadable => "input-unreadable",
            FailureKind::Corruption => "corruption",
            FailureKind::Storage => "storage",
            FailureKind::InvalidJob => "invalid-job",
            FailureKind::AgentLost => "agent-lost",
            FailureKind::Refused => "refused",
            FailureKind::Internal => "internal",
            FailureKind::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_the_protobuf_value() {
        for kind in [
            FailureKind::InputUnreadable,
            FailureKind::Corruption,
            FailureKind::Storage,
            FailureKind::InvalidJob,
            FailureKind::AgentLost,
            FailureKind::Refused,
            FailureKind::Internal,
            FailureKind::Cancelled,
        ] {
            assert_eq!(FailureKind::from_proto(kind.to_proto() as i32), kind);
        }
        assert_eq!(FailureKind::from_proto(0), FailureKind::Internal);
        assert_eq!(FailureKind::from_proto(99), FailureKind::Internal);
    }
}
