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
//! - [`agent`]: the stateless agent ([`agent::run`]);
//! - [`local`]: [`LocalService`], a scheduler and agents in this process;
//! - [`error`]: [`CsaError`], the one error type.
//!
//! The `o3-csa` binary runs the scheduler (`o3-csa scheduler`) and agents
//! (`o3-csa agent`) as processes.
//!
//! A scheduler and two agents served from this process ([`LocalService`],
//! on a loopback port), asked for their load by a compute node's client:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use o3_csa::scheduler::SchedulerConfig;
//! use o3_csa::{LocalService, LocalServiceOptions, SchedulerClient};
//! use o3_storage::env::LocalFs;
//! use o3_transport::control::ClusterToken;
//!
//! let token = ClusterToken::new("doc-token")?;
//! let service = LocalService::start(LocalServiceOptions {
//!     agents: 2,
//!     slots_per_agent: 1,
//!     token: token.clone(),
//!     storage: Arc::new(LocalFs::new()),
//!     scheduler: SchedulerConfig::default(),
//! })?;
//! let runtime = tokio::runtime::Runtime::new()?;
//! let load = runtime.block_on(async {
//!     let timeout = Duration::from_secs(5);
//!     let client = SchedulerClient::connect(service.endpoint(), token, timeout).await?;
//!     client.load().await
//! })?;
//! assert_eq!((load.agents.len(), load.slots_total, load.queued), (2, 2, 0));
//! service.shutdown();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod client;
pub mod config;
pub mod error;
mod failure;

pub use client::{
    AgentLoad, CancelledFrom, FailureKind, JobStatus, Load, RemoteRun, SchedulerClient, Submitted,
    TenantSession,
};
pub use error::CsaError;
pub mod agent;
pub mod local;
pub mod scheduler;

pub use local::{LocalService, LocalServiceOptions};
