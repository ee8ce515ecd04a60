//! The compaction service's side of flush offloading: whether a flush of
//! offloaded images goes to the service and with which target
//! (`jobs::flush_placement` estimates), where its images are
//! ([`pb::FlushImages`]), submitting it and waiting for its result, and the
//! counters behind `PlacementStats::flush`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use o3_csa::client::RemoteRun;
use o3_transport::control::proto::csa::v1 as pb;

use super::{
    Connection, FlushPlacement, ServiceExecutor, Shared, await_outcome, micros, unavailable,
};
use crate::jobs::executor::{Completion, FlushWork, LocalLoad};
use crate::jobs::flush_placement::{FlushCosts, FlushExecutor, FlushSite, choose};

#[derive(Default)]
pub(super) struct FlushCounters {
    pub(super) local_images: AtomicU64,
    pub(super) local_unreachable: AtomicU64,
    pub(super) local_estimate: AtomicU64,
    pub(super) fallback_failed: AtomicU64,
    pub(super) memnode: AtomicU64,
    pub(super) agent: AtomicU64,
    pub(super) remote_micros: AtomicU64,
    pub(super) bytes_memnode_to_agent: AtomicU64,
    pub(super) bytes_written_memnode: AtomicU64,
    pub(super) bytes_written_agent: AtomicU64,
}

impl ServiceExecutor {
    /// Whether `work` goes to the service (see `Executor::takes_flush`),
    /// counting why not; the chosen target is kept for its submission.
    pub(super) fn place_flush(&self, work: &FlushWork, here: LocalLoad) -> bool {
        let c = &self.shared.counters.flush;
        let Some(images) = flush_images(work) else {
            c.local_images.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        let conn = self.shared.conn.lock();
        let Connection::Up { load, .. } = &*conn else {
            c.local_unreachable.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        let executor = |a: &o3_csa::AgentLoad| FlushExecutor {
            free: a.running < a.slots,
            bytes_per_sec: a.flush_bytes_per_sec,
        };
        let memnode = load
            .memnodes
            .iter()
            .find(|m| m.healthy && m.memnode.as_deref() == Some(images.memnode.as_str()))
            .map(executor);
        // The agent the distributor would pick: one with room, the fastest.
        let agent = load
            .agents
            .iter()
            .filter(|a| a.healthy)
            .map(executor)
            .max_by(|a, b| {
                a.free
                    .cmp(&b.free)
                    .then(a.bytes_per_sec.total_cmp(&b.bytes_per_sec))
            });
        let site = match self.shared.options.flush {
            FlushPlacement::Local => None,
            FlushPlacement::Memnode => memnode.map(|_| FlushSite::Memnode),
            FlushPlacement::Agent => agent.map(|_| FlushSite::Agent),
            FlushPlacement::Auto => {
                let bytes = images.images.iter().map(|i| i.len).sum::<u64>();
                let costs = FlushCosts {
                    bytes,
                    link_bytes_per_sec: link_speed(work),
                    here,
                    memnode,
                    agent,
                    queue_wait: load.queue_wait,
                };
                match choose(&costs) {
                    FlushSite::Local if memnode.is_some() || agent.is_some() => {
                        c.local_estimate.fetch_add(1, Ordering::Relaxed);
                        return false;
                    }
                    FlushSite::Local => None,
                    site => Some(site),
                }
            }
        };
        let Some(site) = site else {
            c.local_unreachable.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        let target = match (self.shared.options.flush, site) {
            (FlushPlacement::Memnode, _) => pb::FlushTarget::Memnode,
            (_, FlushSite::Agent) => pb::FlushTarget::Agent,
            // The memory node while it has room, else an agent.
            _ => pb::FlushTarget::Any,
        };
        self.shared
            .flush_targets
            .lock()
            .insert(work.job.token.job_id, target);
        true
    }

    /// Send a flush of offloaded images to the service; report the result,
    /// or "unavailable" so that the engine runs it here.
    pub(super) fn submit_flush(&self, work: FlushWork, done: Completion) {
        let target = self
            .shared
            .flush_targets
            .lock()
            .remove(&work.job.token.job_id)
            .unwrap_or(pb::FlushTarget::Any);
        let Some(images) = flush_images(&work) else {
            done.complete(Err(unavailable(
                &self.shared,
                "an image of the flush is no longer on the memory node",
            )));
            return;
        };
        let connected = match &*self.shared.conn.lock() {
            Connection::Up {
                client, session, ..
            } => Ok((client.clone(), session.clone())),
            Connection::Down { reason } => Err(reason.clone()),
        };
        let (client, session) = match connected {
            Ok(c) => c,
            Err(reason) => {
                done.complete(Err(unavailable(&self.shared, &reason)));
                return;
            }
        };
        let Some(runtime) = &self.runtime else {
            return;
        };

        let shared = self.shared.clone();
        runtime.spawn(async move {
            let started = Instant::now();
            let epochs = shared.options.max_tries;
            let submitted = client
                .submit_flush(&session, &work.job, images, target, epochs)
                .await;
            let outcome = match submitted {
                Ok(s) => await_outcome(&shared, &client, &session, s.ticket).await,
                Err(e) => {
                    if e.is_unavailable() {
                        shared.lost(e.to_string());
                    }
                    Err(format!("submit refused: {e}"))
                }
            };
            let outcome = match outcome {
                Ok(run) => {
                    shared.note_flush(&run, started.elapsed());
                    Ok(run.result)
                }
                Err(reason) => {
                    shared
                        .counters
                        .flush
                        .fallback_failed
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        "{}: the compaction service gave the flush back: {reason}",
                        work.job.token
                    );
                    Err(unavailable(&shared, &reason))
                }
            };
            done.complete(outcome);
            // The images are released once nothing holds them: after the
            // install (or the local retry) above.
            drop(work);
        });
    }
}

/// The link's speed as shipping the images measured it.
fn link_speed(work: &FlushWork) -> Option<f64> {
    let image = work.images.first()?.offloaded()?;
    let c = &image.runtime.counters;
    let bytes = c.bytes_shipped.load(Ordering::Relaxed);
    let micros = c.shipping_micros.load(Ordering::Relaxed);
    (micros > 0).then(|| bytes as f64 / (micros as f64 / 1e6))
}

/// Where the images of `work` are, when every one is on the memory node
/// with a data-plane region. Asked with the database's lock held, so it
/// never waits on the memory node: an image the node lost meanwhile fails
/// the remote try as unreadable, and the flush then runs here.
fn flush_images(work: &FlushWork) -> Option<pb::FlushImages> {
    let mut plane = None;
    let mut images = Vec::with_capacity(work.images.len());
    for image in &work.images {
        let offloaded = image.offloaded()?;
        let store = &offloaded.runtime.store;
        if plane.is_none() {
            plane = Some(store.data_plane()?);
        }
        let desc = &offloaded.region.desc;
        images.push(pb::ImageLocation {
            pool: Some(pb::PoolRegion {
                region_id: desc.region.0,
                owner: desc.owner.0,
                offset: desc.offset,
                len: desc.len,
                key: desc.key,
            }),
            data: Some(o3_csa::agent::images::data_region(
                offloaded.region.data.as_ref()?,
            )),
            len: offloaded.len,
        });
    }
    let (kind, node) = plane?;
    Some(pb::FlushImages {
        memnode: node.0,
        transport: kind.name().to_owned(),
        images,
    })
}

impl Shared {
    fn note_flush(&self, run: &RemoteRun, round_trip: Duration) {
        let f = &self.counters.flush;
        f.remote_micros
            .fetch_add(micros(round_trip), Ordering::Relaxed);
        if run.on_memnode {
            f.memnode.fetch_add(1, Ordering::Relaxed);
            f.bytes_written_memnode
                .fetch_add(run.bytes_written, Ordering::Relaxed);
        } else {
            f.agent.fetch_add(1, Ordering::Relaxed);
            f.bytes_memnode_to_agent
                .fetch_add(run.bytes_read, Ordering::Relaxed);
            f.bytes_written_agent
                .fetch_add(run.bytes_written, Ordering::Relaxed);
        }
    }
}
