//! Rebuilding images lost with their memory node. The WAL holds every
//! record of an offloaded image until its flush is installed (a segment is
//! deleted only once every memtable holding its records is in a table), so
//! each lost image is rebuilt exactly: the entries of its shard whose
//! sequence lies in its range, replayed into a fresh memtable of its
//! capacity, checked against its entry count and largest sequence, and
//! swapped in for the offloaded image.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};

use o3_storage::batch::WriteBatch;
use o3_storage::filename::wal_path;
use o3_storage::job::shard_of;
use o3_storage::memtable::Memtable;
use o3_storage::wal::{LogReader, TailTolerance};
use o3_storage::{Error, Result};

use crate::engine::Engine;
use crate::image_id::ImageId;
use crate::offload::runtime::Recovery;
use crate::offload::slot::{Held, ImageSlot};

/// [`Recovery`] over a running engine.
pub(crate) struct EngineRecovery {
    engine: Weak<Engine>,
}

impl EngineRecovery {
    pub fn new(engine: &Arc<Engine>) -> EngineRecovery {
        EngineRecovery {
            engine: Arc::downgrade(engine),
        }
    }
}

impl Recovery for EngineRecovery {
    fn recover(&self, cause: &Error) -> Result<()> {
        let engine = self.engine.upgrade().ok_or(Error::Closed("database"))?;
        rebuild_lost(&engine, cause)
    }
}

/// A lost image to rebuild.
struct Lost {
    slot: Arc<ImageSlot>,
    first_wal: u64,
}

/// Rebuild every offloaded image from the WAL. After a memory node failure
/// every image on it is presumed lost (a restarted node starts empty, and
/// an unreachable one may never answer again); images are shipped again
/// once the node works.
fn rebuild_lost(engine: &Engine, cause: &Error) -> Result<()> {
    let Some(offload) = engine.offload.as_ref() else {
        return Ok(());
    };
    // One rebuild at a time: a caller that waited here finds the images
    // already rebuilt.
    let _rebuilding = offload.rebuild_turn(cause)?;
    let (lost, segments) = {
        let st = engine.state.lock();
        let lost: Vec<Lost> = st
            .shards
            .iter()
            .flat_map(|s| s.sealed.iter())
            .filter(|s| !s.slot.is_local())
            .map(|s| Lost {
                slot: s.slot.clone(),
                first_wal: s.first_wal,
            })
            .collect();
        let oldest = lost.iter().map(|l| l.first_wal).min().unwrap_or(0);
        let mut segments: Vec<u64> = st.wal_segments.range(oldest..).map(|(&n, _)| n).collect();
        if !segments.contains(&st.wal_number) {
            segments.push(st.wal_number);
        }
        (lost, segments)
    };
    if lost.is_empty() {
        return Ok(());
    }
    offload.counters.memory_node_failures.fetch_add(1, Relaxed);
    let ids: Vec<String> = lost.iter().map(|l| l.slot.id.to_string()).collect();
    offload.record_error(format!(
        "{cause}; rebuilding {} from the WAL",
        ids.join(", ")
    ));
    if engine.options.disable_wal {
        let e = Error::MemoryNode {
            lost: true,
            message: format!(
                "{cause}: {} held writes that exist nowhere else (the WAL is disabled); they are lost",
                ids.join(", ")
            ),
        };
        engine.poison(&e);
        return Err(e);
    }
    // Records an earlier write handed to the WAL writer but not yet to the
    // file must be readable.
    if let Some(w) = engine.wal.lock().writer.as_mut()
        && let Err(e) = w.flush()
    {
        engine.poison(&e);
        return Err(e);
    }
    let rebuilt = replay(engine, &lost, &segments).inspect_err(|e| {
        offload.record_error(format!("rebuilding lost images failed: {e}"));
    })?;
    let st = engine.state.lock();
    for l in &lost {
        if let Some(mem) = rebuilt.get(&l.slot.id) {
            l.slot.set(Held::Local(mem.clone()));
        }
    }
    offload
        .counters
        .images_rebuilt
        .fetch_add(lost.len() as u64, Relaxed);
    let version = engine.super_version.read().version.clone();
    engine.install_super_version(&st, version);
    engine.bg_cv.notify_all();
    tracing::info!(
        "rebuilt {} offloaded image(s) from the WAL after: {cause}",
        lost.len()
    );
    Ok(())
}

/// Replay `segments` into one fresh memtable per lost image.
fn replay(
    engine: &Engine,
    lost: &[Lost],
    segments: &[u64],
) -> Result<HashMap<ImageId, Arc<Memtable>>> {
    // Every sealed memtable is of the current layout (a re-split waits
    // until all are flushed).
    let splits = engine.shard_splits();
    let mut fresh: Vec<(&Lost, Memtable)> = lost
        .iter()
        .map(|l| Ok((l, Memtable::new(l.slot.capacity, l.slot.id.shard)?)))
        .collect::<Result<_>>()?;
    for &number in segments {
        let path = wal_path(&engine.dir, number);
        let location = path.display().to_string();
        let file = match engine.storage.open(&path) {
            Ok(f) => f,
            // A segment after the oldest lost image's may have been empty
            // and removed; every segment an image's records are in is kept.
            Err(_) if !lost.iter().any(|l| l.first_wal == number) => continue,
            Err(e) => return Err(e),
        };
        let mut reader = LogReader::new(file, number, location.clone());
        // The live segment may end in a record being appended right now:
        // every record of a sealed memtable was complete before it sealed.
        reader.set_tail_tolerance(TailTolerance::AnyDamage);
        while let Some((record, offset)) = reader.read_record()? {
            let batch = WriteBatch::from_encoded(record, &location, offset)?;
            let base = batch.sequence();
            for (i, op) in batch.iter().enumerate() {
                let Some(kind) = op.kind.entry_kind() else {
                    // Range deletions stayed on the compute node.
                    continue;
                };
                let seq = base + i as u64;
                let shard = shard_of(&splits, op.key);
                for (l, mem) in fresh.iter_mut() {
                    let s = &l.slot;
                    if s.id.shard == shard
                        && (s.entries_smallest_seq..=s.entries_largest_seq).contains(&seq)
                    {
                        mem.insert(op.key, seq, kind, op.value)?;
                    }
                }
            }
        }
    }
    let mut out = HashMap::new();
    for (l, mem) in fresh {
        let s = &l.slot;
        if mem.entries() != s.entries || mem.entries_largest_seq() != s.entries_largest_seq {
            return Err(Error::corruption(
                format!("WAL segments {segments:?}"),
                0,
                format!(
                    "rebuilding {} found {} entries up to sequence {}, the image held {} up to {}",
                    s.id,
                    mem.entries(),
                    mem.entries_largest_seq(),
                    s.entries,
                    s.entries_largest_seq
                ),
            ));
        }
        mem.seal()?;
        out.insert(s.id, Arc::new(mem));
    }
    Ok(out)
}
