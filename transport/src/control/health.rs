//! The `o3.health.v1.Health` service: proves that the control path to a node
//! works end to end and says who answered.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tonic::{Request, Response, Status};

use super::proto::health::v1::check_response::ServingStatus;
use super::proto::health::v1::health_server::{Health, HealthServer};
use super::proto::health::v1::{CheckRequest, CheckResponse};

/// Answers health checks for one node. Clones share state, so the node keeps
/// a clone to flip serving status (while starting or draining) and to read
/// how many checks it has answered.
#[derive(Clone, Debug)]
pub struct HealthService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    node_id: String,
    serving: AtomicBool,
    checks_answered: AtomicU64,
}

impl HealthService {
    /// A service for node `node_id` that reports `SERVING`.
    pub fn new(node_id: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                node_id: node_id.into(),
                serving: AtomicBool::new(true),
                checks_answered: AtomicU64::new(0),
            }),
        }
    }

    /// Whether checks report `SERVING` (true) or `NOT_SERVING` (false).
    pub fn set_serving(&self, serving: bool) {
        self.inner.serving.store(serving, Ordering::Release);
    }

    /// How many `Check` calls reached the handler.
    pub fn checks_answered(&self) -> u64 {
        self.inner.checks_answered.load(Ordering::Acquire)
    }

    /// The tonic service to add to a server.
    pub fn into_server(self) -> HealthServer<Self> {
        HealthServer::new(self)
    }
}

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        _request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        self.inner.checks_answered.fetch_add(1, Ordering::AcqRel);
        let status = if self.inner.serving.load(Ordering::Acquire) {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        Ok(Response::new(CheckResponse {
            status: status.into(),
            node_id: self.inner.node_id.clone(),
            server_version: env!("CARGO_PKG_VERSION").to_owned(),
        }))
    }
}
