//! The gRPC control plane: registration, allocation, jobs, heartbeats and
//! stats travel here, beside the verbs data plane.
//!
//! Every server installs [`RequireClusterToken`] as a layer over all of its
//! services, so a call without the cluster's shared token is answered with
//! `Unauthenticated` before any handler runs and therefore changes nothing.
//! Clients reach a server with [`connect`] (bounded retries with backoff) and
//! wrap the channel with [`authenticated`] so every call carries the token.
//!
//! The protobufs live under `transport/proto/o3/<component>/v<major>/` and are
//! compiled at build time without a system `protoc`; their generated code is
//! in [`proto`].

mod auth;
mod connect;
mod error;
mod health;
mod lifecycle;
pub mod settings;

pub use auth::{
    AttachClusterToken, AuthenticatedChannel, CLUSTER_TOKEN_HEADER, ClusterToken,
    RequireClusterToken, authenticated,
};
pub use connect::{Backoff, ConnectOptions, connect, describe_error};
pub use error::ControlError;
pub use health::HealthService;
pub use lifecycle::{
    SignalError, StopSignal, init_logging, parse_args, serve_until, shutdown_signal,
};

/// Code generated from `transport/proto/`, one module per protobuf package.
pub mod proto {
    /// `o3.health.v1`: liveness of a control-plane endpoint.
    pub mod health {
        /// Version 1 of the health service.
        #[allow(clippy::all, clippy::pedantic, missing_docs)]
        pub mod v1 {
            tonic::include_proto!("o3.health.v1");
        }
    }

    /// `o3.memnode.v1`: the memory node's leases, regions and images.
    pub mod memnode {
        /// Version 1 of the memory node's control plane.
        #[allow(clippy::all, clippy::pedantic, missing_docs)]
        pub mod v1 {
            tonic::include_proto!("o3.memnode.v1");
        }
    }

    /// `o3.csa.v1`: the compaction service's scheduler (tenants, agents,
    /// jobs).
    pub mod csa {
        /// Version 1 of the compaction service.
        #[allow(clippy::all, clippy::pedantic, missing_docs)]
        pub mod v1 {
            tonic::include_proto!("o3.csa.v1");
        }
    }
}
