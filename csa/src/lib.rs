//! Compaction as a service for o3.
//!
//! Compute nodes (tenants) hand compaction jobs to a **scheduler**, which
//! keeps one global priority queue over every tenant's jobs and assigns them
//! to stateless **agents** that execute them against shared storage. The
//! wire protocol is `o3.csa.v1` (`transport/proto/o3/csa/v1/csa.proto`,
//! which documents tenants, sessions, epochs, fencing and errors).
//!
//! - [`client`]: [`SchedulerClient`], what a compute node uses;
//! - [`scheduler`]: the queue, distributor, monitor and gRPC service
//!   ([`scheduler::serve`]);
//! - [`config`]: settings of the scheduler and the agent;
//! - [`error`]: [`CsaError`], the one error type.

pub mod client;
pub mod config;
pub mod error;
mod failure;

pub use client::{
    AgentLoad, FailureKind, JobStatus, Load, RemoteRun, SchedulerClient, Submitted, TenantSession,
};
pub use error::CsaError;
pub mod agent;
pub mod local;
pub mod scheduler;

pub use local::{LocalService, LocalServiceOptions};
