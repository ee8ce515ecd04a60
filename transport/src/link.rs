//! The link model: wraps any [`Connection`] so that it behaves like a
//! slower network, for experiments (an RDMA fabric, a 10 GbE storage
//! network, a cross-datacentre link).
//!
//! Bandwidth is a token bucket with no stored burst: each operation's bytes
//! reserve the link from the later of now and the end of the previous
//! reservation, for `bytes / bandwidth` seconds, so the link never delivers
//! faster than configured, however operations are sized or interleaved
//! across threads. Every operation (a batch, a send, a call) then pays the
//! configured latency once. Waits are never shorter than computed (short
//! ones spin, long ones sleep), so both are lower bounds.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::Result;
use crate::verbs::{
    CallWait, Completion, ConnectOptions, Connection, NodeId, PendingCall, WorkRequest,
};

/// Latency and bandwidth of an emulated link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkModel {
    /// Added to every operation.
    pub latency: Duration,
    /// Bytes per second across the link; `None` = unlimited.
    pub bandwidth_bytes_per_sec: Option<u64>,
}

impl LinkModel {
    /// No added cost.
    pub const UNLIMITED: LinkModel = LinkModel {
        latency: Duration::ZERO,
        bandwidth_bytes_per_sec: None,
    };

    /// A 100 Gb/s RDMA fabric: ~2 µs per operation, 12.5 GB/s.
    pub const RDMA_FABRIC: LinkModel = LinkModel {
        latency: Duration::from_micros(2),
        bandwidth_bytes_per_sec: Some(12_500_000_000),
    };

    /// A 10 GbE data-centre network: ~50 µs per operation, 1.25 GB/s.
    pub const TEN_GBE: LinkModel = LinkModel {
        latency: Duration::from_micros(50),
        bandwidth_bytes_per_sec: Some(1_250_000_000),
    };

    /// A cross-datacentre link: ~10 ms per operation, 1 Gb/s.
    pub const CROSS_DC: LinkModel = LinkModel {
        latency: Duration::from_millis(10),
        bandwidth_bytes_per_sec: Some(125_000_000),
    };

    /// A preset by name (`unlimited`, `rdma-fabric`, `10gbe`, `cross-dc`).
    pub fn preset(name: &str) -> Option<LinkModel> {
        Some(match name {
            "unlimited" => Self::UNLIMITED,
            "rdma-fabric" => Self::RDMA_FABRIC,
            "10gbe" => Self::TEN_GBE,
            "cross-dc" => Self::CROSS_DC,
            _ => return None,
        })
    }

    /// Wrap `inner` so that it obeys this model.
    pub fn wrap(self, inner: Arc<dyn Connection>) -> Arc<dyn Connection> {
        Arc::new(ModeledConnection {
            inner,
            model: self,
            link_free_at: Mutex::new(Instant::now()),
        })
    }

    /// The time `bytes` occupy the link.
    pub fn transfer_time(&self, bytes: u64) -> Duration {
        match self.bandwidth_bytes_per_sec {
            None | Some(0) => Duration::ZERO,
            Some(rate) => {
                let nanos = u128::from(bytes) * 1_000_000_000 / u128::from(rate);
                // Round up: never faster than configured.
                let nanos =
                    nanos + u128::from((u128::from(bytes) * 1_000_000_000) % u128::from(rate) != 0);
                Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
            }
        }
    }
}

impl fmt::Display for LinkModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "latency {:?}, bandwidth ", self.latency)?;
        match self.bandwidth_bytes_per_sec {
            None => f.write_str("unlimited"),
            Some(rate) if rate >= 1_000_000_000 => {
                write!(f, "{:.2} GB/s", rate as f64 / 1e9)
            }
            Some(rate) => write!(f, "{:.1} MB/s", rate as f64 / 1e6),
        }
    }
}

/// A connection slowed down by a [`LinkModel`].
#[derive(Debug)]
pub struct ModeledConnection {
    inner: Arc<dyn Connection>,
    model: LinkModel,
    /// When the link finishes the transfers reserved so far.
    link_free_at: Mutex<Instant>,
}

impl ModeledConnection {
    /// Reserve the link for `bytes`; returns when their transfer ends.
    fn reserve(&self, bytes: u64) -> Instant {
        let mut free_at = self.link_free_at.lock();
        let start = (*free_at).max(Instant::now());
        *free_at = start + self.model.transfer_time(bytes);
        *free_at
    }

    /// Pay for `bytes` and, if `with_latency`, one operation's latency.
    fn pay(&self, bytes: u64, with_latency: bool) {
        let mut until = self.reserve(bytes);
        if with_latency {
            until += self.model.latency;
        }
        wait_until(until);
    }
}

/// Block until `deadline`: sleep while far, spin the last stretch so that
/// microsecond latencies are honoured.
fn wait_until(deadline: Instant) {
    const SPIN: Duration = Duration::from_micros(200);
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        let left = deadline - now;
        if left > SPIN {
            std::thread::sleep(left - SPIN);
        } else {
            std::hint::spin_loop();
        }
    }
}

fn request_bytes(batch: &[WorkRequest<'_>]) -> u64 {
    batch
        .iter()
        .map(|r| match r {
            WorkRequest::Read { buf, .. } => buf.len() as u64,
            WorkRequest::Write { data, .. } => data.len() as u64,
            _ => 8,
        })
        .sum()
}

impl Connection for ModeledConnection {
    fn peer(&self) -> &NodeId {
        self.inner.peer()
    }

    fn options(&self) -> &ConnectOptions {
        self.inner.options()
    }

    fn post(&self, batch: &mut [WorkRequest<'_>]) -> Vec<Result<Completion>> {
        let started = Instant::now();
        let results = self.inner.post(batch);
        let until = self.reserve(request_bytes(batch)).max(started) + self.model.latency;
        wait_until(until);
        results
    }

    fn send(&self, message: &[u8]) -> Result<()> {
        self.pay(message.len() as u64, true);
        self.inner.send(message)
    }

    fn recv(&self) -> Result<Vec<u8>> {
        let message = self.inner.recv()?;
        self.pay(message.len() as u64, false);
        Ok(message)
    }

    fn start_call(&self, request: &[u8]) -> Result<PendingCall<'_>> {
        self.pay(request.len() as u64, false);
        let inner = self.inner.start_call(request)?;
        Ok(PendingCall::new(Box::new(ModeledCall {
            connection: self,
            inner,
        })))
    }
}

struct ModeledCall<'c> {
    connection: &'c ModeledConnection,
    inner: PendingCall<'c>,
}

impl CallWait for ModeledCall<'_> {
    fn wait(self: Box<Self>) -> Result<Vec<u8>> {
        let response = self.inner.wait()?;
        self.connection.pay(response.len() as u64, true);
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_time_rounds_up() {
        let m = LinkModel {
            latency: Duration::ZERO,
            bandwidth_bytes_per_sec: Some(3),
        };
        assert_eq!(m.transfer_time(3), Duration::from_secs(1));
        assert!(m.transfer_time(1) > Duration::from_nanos(333_333_333));
        assert_eq!(LinkModel::UNLIMITED.transfer_time(1 << 40), Duration::ZERO);
    }

    #[test]
    fn presets_print_their_condition() {
        assert_eq!(
            LinkModel::TEN_GBE.to_string(),
            "latency 50µs, bandwidth 1.25 GB/s"
        );
        assert_eq!(
            LinkModel::CROSS_DC.to_string(),
            "latency 10ms, bandwidth 125.0 MB/s"
        );
        assert_eq!(
            LinkModel::preset("rdma-fabric"),
            Some(LinkModel::RDMA_FABRIC)
        );
        assert_eq!(LinkModel::preset("carrier pigeon"), None);
    }
}
