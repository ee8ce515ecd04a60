//! The shipping threads: they pick sealed memtables beyond a shard's local
//! budget, ship each to the memory node (allocate a region, write the image
//! with one-sided writes, publish it), then swap the local copy for the
//! offloaded image and free it. Between images they release the regions of
//! dropped images and watch the memory node's session.

use std::sync::Arc;
use std::sync::atomic::Ordering::{self, Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use o3_memnode::ImageMeta;
use o3_memnode::client::{ClientErrorKind, RemoteRegion};
use o3_storage::{Error, Result};

use crate::engine::Engine;
use crate::offload::image::{ImageSummary, OffloadedImage, lost_or_failed, remote_id};
use crate::offload::rebuild::EngineRecovery;
use crate::offload::runtime::{Offload, SHIP_RETRY_PAUSE};
use crate::offload::slot::{Held, ImageSlot};
use crate::state::DbState;

/// Bytes per one-sided write while shipping: large enough that the
/// per-operation cost vanishes, small enough that one operation on a
/// bandwidth-limited link stays far below the operation timeout.
const SHIP_CHUNK: usize = 8 << 20;

/// How often an idle shipping thread checks the memory node is still there
/// while it holds images.
const PROBE_EVERY: Duration = Duration::from_millis(500);

/// Start the shipping threads (none without offloading).
pub(crate) fn start_shippers(engine: &Arc<Engine>) -> Vec<JoinHandle<()>> {
    let Some(offload) = engine.offload.clone() else {
        return Vec::new();
    };
    offload.set_recovery(Arc::new(EngineRecovery::new(engine)));
    (0..offload.options.shipping_threads)
        .filter_map(|i| {
            let engine = engine.clone();
            let offload = offload.clone();
            std::thread::Builder::new()
                .name(format!("o3-ship-{i}"))
                .spawn(move || shipper(&engine, &offload, i == 0))
                .map_err(|e| tracing::error!("cannot start a shipping thread: {e}"))
                .ok()
        })
        .collect()
}

fn shipper(engine: &Arc<Engine>, offload: &Arc<Offload>, prober: bool) {
    let mut last_probe = Instant::now();
    loop {
        if engine.shutting_down.load(Ordering::Acquire) {
            offload.release_dropped();
            return;
        }
        offload.release_dropped();
        if offload.pull_requested() {
            continue;
        }
        if prober && last_probe.elapsed() >= PROBE_EVERY {
            last_probe = Instant::now();
            probe(offload);
            if offload.adaptive() {
                offload.review_copies();
            }
        }
        let picked = {
            let mut st = engine.state.lock();
            match pick(engine, offload, &st) {
                Some(slot) => slot,
                None => {
                    // Short enough that a pull-back asked by a reader
                    // starts soon.
                    engine.bg_cv.wait_for(&mut st, Duration::from_millis(10));
                    continue;
                }
            }
        };
        ship(engine, offload, &picked);
        picked.end_shipping();
    }
}

/// Notice a memory node that died or restarted while nothing else calls
/// it: lost images are rebuilt before a read needs them.
fn probe(offload: &Offload) {
    if offload.counters.images_offloaded.load(Relaxed) == 0 {
        return;
    }
    let lost = match offload.store.stats() {
        Err(e) if e.images_lost() => Some(e.to_string()),
        _ => {
            let shipped = offload.shipped_session.load(Relaxed);
            let now = offload.store.session();
            (shipped != now).then(|| {
                format!(
                    "memory node {}: its session changed (restarted or lease lost)",
                    offload.store.name()
                )
            })
        }
    };
    if let Some(message) = lost {
        let cause = Error::MemoryNode {
            lost: true,
            message,
        };
        if let Err(e) = offload.recover(&cause) {
            offload.record_error(format!("rebuilding lost images: {e}"));
        }
    }
}

/// The next sealed memtable to ship: in a shard holding more unclaimed
/// local sealed memtables than the local budget, its oldest one not being
/// shipped; `None` while shipping is paused, over the cap, or when every
/// shard is within its budget. Marks the slot as being shipped.
fn pick(engine: &Engine, offload: &Offload, st: &DbState) -> Option<Arc<ImageSlot>> {
    if engine.bg_error.get().is_some() {
        return None;
    }
    if let Some(until) = *offload.paused_until.lock()
        && Instant::now() < until
    {
        return None;
    }
    let keep = offload.options.max_local_sealed_memtables;
    for shard in &st.shards {
        // Oldest first. A memtable another thread is shipping is as good
        // as gone: counting it as staying local made a second thread ship
        // the newest one too, leaving none of the `keep` newest local.
        let mut staying = shard
            .sealed
            .iter()
            .map(|s| &s.slot)
            .filter(|s| s.is_local() && !s.is_claimed() && !s.is_empty() && !s.is_shipping());
        if staying.clone().count() <= keep {
            continue;
        }
        let Some(slot) = staying.next() else {
            continue;
        };
        let room = offload.options.max_offloaded_bytes;
        if offload.offloaded_bytes.load(Relaxed) + slot.capacity as u64 > room {
            if slot.note_refusal() {
                offload.counters.refused_no_room.fetch_add(1, Relaxed);
            }
            continue;
        }
        if slot.start_shipping() {
            return Some(Arc::clone(slot));
        }
    }
    None
}

/// Ship `slot`'s memtable and swap it for the offloaded image.
fn ship(engine: &Engine, offload: &Arc<Offload>, slot: &Arc<ImageSlot>) {
    let Some(mem) = slot.local() else { return };
    let start = Instant::now();
    // Counted from the start, so concurrent shippers respect the cap.
    let reserved = slot.capacity as u64;
    offload.offloaded_bytes.fetch_add(reserved, Relaxed);
    let shipped = (|| {
        let summary = ImageSummary::of(&mem, offload.wants_index())?;
        let bytes = mem.image_bytes()?;
        let region = send(offload, slot, bytes)?;
        Ok::<_, ShipError>((region, summary, bytes.len() as u64))
    })();
    offload.offloaded_bytes.fetch_sub(reserved, Relaxed);
    let (region, summary, len) = match shipped {
        Ok(done) => done,
        Err(e) => {
            shipping_failed(offload, slot, &e);
            return;
        }
    };
    offload.offloaded_bytes.fetch_add(len, Relaxed);
    offload.counters.images_offloaded.fetch_add(1, Relaxed);
    offload.shipped_session.store(region.session, Relaxed);
    let image = Arc::new(OffloadedImage::new(
        slot.id,
        offload.clone(),
        region,
        len,
        summary,
    ));
    if image.has_index() {
        let indexed: Arc<dyn crate::offload::runtime::Pullable> = image.clone();
        offload.register_index(Arc::downgrade(&indexed));
    }
    let c = &offload.counters;
    c.images_shipped.fetch_add(1, Relaxed);
    c.bytes_shipped.fetch_add(len, Relaxed);
    c.shipping_micros
        .fetch_add(start.elapsed().as_micros() as u64, Relaxed);
    let st = engine.state.lock();
    let live = st
        .shards
        .get(slot.id.shard as usize)
        .is_some_and(|s| s.sealed.iter().any(|x| Arc::ptr_eq(&x.slot, slot)));
    if live && !slot.is_claimed() {
        slot.set(Held::Offloaded(image));
        // The local memtable is gone from the slot (freed once the last
        // reader drops it): the write stall sees the memory come back.
        let version = engine.super_version.read().version.clone();
        engine.install_super_version(&st, version);
        engine.bg_cv.notify_all();
    }
    // Otherwise a flush claimed it meanwhile: dropping the image releases
    // the region again.
}

/// Why an image was not shipped.
enum ShipError {
    /// The memory node has no room for it now.
    NoRoom(String),
    Failed(Error),
}

impl From<Error> for ShipError {
    fn from(e: Error) -> Self {
        ShipError::Failed(e)
    }
}

/// Allocate, write and publish; the region on success.
fn send(offload: &Offload, slot: &ImageSlot, bytes: &[u8]) -> Result<RemoteRegion, ShipError> {
    let store = &offload.store;
    let failed = |e: o3_memnode::client::ClientError| lost_or_failed(slot.id, &e);
    let region = store.allocate(bytes.len() as u64).map_err(|e| {
        if e.kind == ClientErrorKind::Exhausted {
            ShipError::NoRoom(format!(
                "no room for {} ({} bytes): {e}",
                slot.id,
                bytes.len()
            ))
        } else {
            ShipError::Failed(failed(e))
        }
    })?;
    let written = bytes
        .chunks(SHIP_CHUNK)
        .enumerate()
        .try_for_each(|(i, chunk)| store.write(&region, (i * SHIP_CHUNK) as u64, chunk))
        .and_then(|()| {
            store.publish(
                &region,
                ImageMeta {
                    id: remote_id(slot.id),
                    entries: slot.entries,
                    largest_seq: slot.entries_largest_seq,
                },
            )
        });
    if let Err(e) = written {
        // Best effort: a region that cannot be released now goes with the
        // lease.
        let _ = store.release(&region);
        return Err(ShipError::Failed(failed(e)));
    }
    Ok(region)
}

fn shipping_failed(offload: &Offload, slot: &ImageSlot, e: &ShipError) {
    let e = match e {
        ShipError::NoRoom(reason) => {
            if slot.note_refusal() {
                offload.counters.refused_no_room.fetch_add(1, Relaxed);
            }
            offload.record_error(reason.clone());
            *offload.paused_until.lock() = Some(Instant::now() + SHIP_RETRY_PAUSE);
            return;
        }
        ShipError::Failed(e) => e,
    };
    offload.counters.ship_failures.fetch_add(1, Relaxed);
    offload.record_error(format!("shipping {}: {e}", slot.id));
    // The memtable stays local; the ordinary write stall applies until
    // shipping works again or its flush completes.
    *offload.paused_until.lock() = Some(Instant::now() + SHIP_RETRY_PAUSE);
    if matches!(e, Error::MemoryNode { lost: true, .. })
        && let Err(e) = offload.recover(e)
    {
        offload.record_error(format!("rebuilding lost images: {e}"));
    }
}
